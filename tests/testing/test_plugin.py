"""roost.testing, the pytest plugin for integration authors: its fixtures load integrations and run hubs for real."""

from __future__ import annotations

import importlib.metadata
import json
import socket
from pathlib import Path

import pytest

from roost.testing import Collection, JobRefused

REPO = Path(__file__).resolve().parents[2]
TCP_PROBE = REPO / "custom_integrations" / "tcp_probe"

# A custom integration with one read action and one that changes things, both counting their runs.
COUNTER = '''
import voluptuous as vol
from pathlib import Path
from roost.core import hookimpl
from roost.core.actions import ActionSpec
from roost.core.reads import Reads

CONFIG_SCHEMA = vol.Schema({vol.Required("counter_dir"): str})
READS = Reads.every("counter.read")

def bump(ctx, params):
    path = Path(ctx.config["counter_dir"]) / params["name"]
    runs = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(runs))
    return {"runs": runs}

@hookimpl
def roost_collect(ctx):
    return {"state": {"files": sorted(p.name for p in Path(ctx.config["counter_dir"]).iterdir())}, "metrics": {"files": len(list(Path(ctx.config["counter_dir"]).iterdir()))}}

@hookimpl
def roost_capabilities(ctx):
    return ["counter.read", "counter.manage"]

@hookimpl
def roost_actions(ctx):
    schema = vol.Schema({vol.Required("name"): vol.All(str, vol.Match(r"^[a-z]+$"))})
    return [
        ActionSpec(name="counter.peek", capability="counter.read", handler=bump, schema=schema),
        ActionSpec(name="counter.bump", capability="counter.manage", handler=bump, schema=schema),
    ]
'''


@pytest.fixture
def counter(tmp_path: Path) -> Path:
    folder = tmp_path / "src" / "counter"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"domain": "counter", "name": "Counter", "version": "1.0", "roles": ["agent"]}))
    (folder / "__init__.py").write_text(COUNTER)
    # A sibling the test must not load: the fixtures take only the folder they are given.
    (tmp_path / "src" / "broken").mkdir()
    (tmp_path / "src" / "broken" / "manifest.json").write_text("{not json")
    return folder


@pytest.fixture
def counts(tmp_path: Path) -> Path:
    path = tmp_path / "counts"
    path.mkdir()
    return path


def test_the_plugin_is_registered_by_installing_roost(pytestconfig: pytest.Config) -> None:
    entry = [e for e in importlib.metadata.entry_points(group="pytest11") if e.value == "roost.testing.plugin"]
    assert entry, "pyproject.toml must register roost.testing.plugin under [project.entry-points.pytest11]"
    assert pytestconfig.pluginmanager.has_plugin(entry[0].name)


async def test_loads_a_folder_through_the_real_kernel(roost_integration) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        integ = await roost_integration(TCP_PROBE, config={"targets": [{"name": "here", "host": "127.0.0.1", "port": port}]})
        assert integ.state == "loaded", integ.reason
        assert integ.status["source"] == "custom"
        assert integ.capabilities == ["network.probe.read"]
        assert integ.fields["tcp_probe.latency_ms"]["unit"] == "milliseconds"
        snapshot = await integ.collect()
    assert isinstance(snapshot, Collection)
    assert snapshot.metrics["tcp_probe.up[here]"] == 1
    assert snapshot.state["targets"][0]["up"] is True


async def test_a_bad_config_is_a_state_not_an_exception(roost_integration) -> None:
    integ = await roost_integration(TCP_PROBE, config={"targets": []})
    assert integ.state == "setup_error"
    assert "add at least one target" in integ.reason
    assert integ.capabilities == [] and integ.actions == {}


async def test_loads_a_builtin_by_domain(roost_integration) -> None:
    integ = await roost_integration("wol", config={"broadcast": "127.0.0.1"})
    assert integ.state == "loaded", integ.reason
    assert integ.status["source"] == "builtin"
    assert "wol.send" in integ.actions


async def test_loads_a_domain_from_a_custom_integrations_folder(roost_integration) -> None:
    integ = await roost_integration("tcp_probe", config={"targets": [{"name": "x", "host": "127.0.0.1", "port": 9}]}, custom_dirs=[TCP_PROBE.parent])
    assert integ.state == "loaded", integ.reason
    assert integ.status["source"] == "custom"


async def test_an_agent_only_integration_is_not_loaded_on_the_hub(roost_integration, counter: Path, counts: Path) -> None:
    integ = await roost_integration(counter, config={"counter_dir": str(counts)}, role="hub")
    with pytest.raises(LookupError, match="roles"):
        integ.state


async def test_a_folder_that_is_not_an_integration_is_refused(roost_integration, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an integration folder"):
        await roost_integration(tmp_path)


async def test_hub_stores_what_a_triggered_collection_reports(roost_hub, counter: Path, counts: Path) -> None:
    hub = await roost_hub(counter, config={"counter_dir": str(counts)})
    (counts / "one").write_text("1")
    stored = await hub.collect()
    assert stored.state == {"files": ["one"]}
    assert stored.metrics == {"counter.files": 1.0}
    (counts / "two").write_text("1")
    stored = await hub.collect()
    assert stored.metrics == {"counter.files": 2.0}
    assert [value for _, value in await hub.history("counter.files")][-2:] == [1.0, 2.0]
    node = await hub.node()
    states = {i["domain"]: i["state"] for i in node["node"]["integrations"]}
    assert states.pop("counter") == "loaded"
    assert set(states.values()) == {"disabled"}  # the built-ins are off, so the test sees only its integration
    # The sibling folder with a broken manifest was never looked at.
    assert "broken" not in json.dumps(node)


async def test_actions_run_as_jobs_through_grant_and_ceiling(roost_hub, counter: Path, counts: Path) -> None:
    hub = await roost_hub(counter, config={"counter_dir": str(counts)})
    # An approval grants the read-only part of what the node offers.
    job = await hub.run_action("counter.peek", {"name": "peek"})
    assert job["state"] == "succeeded" and job["result"] == {"runs": 1}
    with pytest.raises(JobRefused, match="counter.manage") as refused:
        await hub.run_action("counter.bump", {"name": "bump"})
    assert refused.value.status == 409
    await hub.grant(["counter.read", "counter.manage"])
    job = await hub.run_action("counter.bump", {"name": "bump"})
    assert job["state"] == "succeeded" and job["result"] == {"runs": 1}
    bad = await hub.run_action("counter.bump", {"name": "NOT valid"})
    assert bad["state"] == "refused", bad
    assert (counts / "bump").read_text() == "1"


async def test_the_agents_ceiling_holds_whatever_the_hub_grants(roost_hub, counter: Path, counts: Path) -> None:
    hub = await roost_hub(counter, config={"counter_dir": str(counts)}, grants=["counter.read", "counter.manage"], ceiling={"mode": "read-only"})
    # The agent tells the hub its ceiling, so the hub already refuses; the agent would refuse again.
    with pytest.raises(JobRefused, match="ceiling"):
        await hub.run_action("counter.bump", {"name": "bump"})
    assert not (counts / "bump").exists()
    assert (await hub.run_action("counter.peek", {"name": "peek"}))["state"] == "succeeded"


async def test_pages_are_served_to_the_admin(roost_hub, counter: Path, counts: Path) -> None:
    hub = await roost_hub(counter, config={"counter_dir": str(counts)})
    html = await hub.node_page()
    assert "roost-test" in html and "counter" in html
    with pytest.raises(AssertionError, match="404"):
        await hub.page("/no/such/page")


def test_panels_are_found_in_the_node_page_markup() -> None:
    from roost.testing.hub import _panels

    html = (
        '<section class="card"><h2>Facts</h2></section>'
        '<section class="card section integration-panel" data-integration="ba" aria-label="Backup age">'
        '<h2>Backup age</h2><p>two <b>files</b></p><section>nested</section></section>'
        '<section class="card section integration-panel" data-integration="bad" aria-label="Bad"><h2>Bad</h2>'
        '<p class="notice tone-bad panel-error" role="alert">The Bad integration (<code>bad</code>) could not draw this panel: boom</p></section>'
    )
    panels = _panels(html)
    assert sorted(panels) == ["Backup age", "Bad"]
    assert panels["Backup age"] == {"domain": "ba", "html": "<h2>Backup age</h2><p>two <b>files</b></p><section>nested</section>", "error": ""}
    assert panels["Bad"]["error"] == "The Bad integration (bad) could not draw this panel: boom"


HUB_HALF = '''
from roost.core import hookimpl
from roost.core.hub_integration import NodePanel, Page


async def listing(page):
    found = await page.hub.nodes.with_integration("counter")
    return page.render("list.html", {"names": [item["node"]["name"] for item in found]})


@hookimpl
def roost_hub_pages(ctx):
    return [Page(path="/counter", handler=listing, nav="Counter")]


@hookimpl
def roost_hub_node_panels(ctx, node, state):
    return [NodePanel(title="Counted files", template="panel.html", context={"files": state.get("files", [])})]
'''


def two_roles(folder: Path, hub_source: str) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "roles": ["agent", "hub"]}))
    (folder / "hub.py").write_text(hub_source)
    (folder / "templates").mkdir()
    (folder / "templates" / "panel.html").write_text("<ul>{% for f in files %}<li>{{ f }}</li>{% endfor %}</ul>")
    (folder / "templates" / "list.html").write_text('{% extends "base.html" %}{% block content %}<p id="names">{{ names | join(",") }}</p>{% endblock %}')


async def test_renders_the_hub_halfs_page_and_panel(roost_hub, counter: Path, counts: Path) -> None:
    two_roles(counter, HUB_HALF)
    (counts / "alpha").write_text("1")
    hub = await roost_hub(counter, config={"counter_dir": str(counts)})
    await hub.collect()
    assert await hub.node_panel("Counted files") == "<h2>Counted files</h2>\n  <ul><li>alpha</li></ul>"
    assert '<p id="names">roost-test</p>' in await hub.page("/counter")
    (counts / "beta").write_text("1")
    await hub.collect()
    assert "<li>beta</li>" in await hub.node_panel("Counted files")


async def test_a_panel_that_fails_to_draw_fails_with_its_error(roost_hub, counter: Path, counts: Path) -> None:
    two_roles(counter, HUB_HALF.replace('state.get("files", [])', "state['missing']"))
    hub = await roost_hub(counter, config={"counter_dir": str(counts)})
    await hub.collect()
    with pytest.raises(AssertionError, match=r"shows an error instead: .*could not draw this panel.*missing"):
        await hub.node_panel("Counted files")


async def test_a_missing_panel_says_what_the_hub_made_of_the_integration(roost_hub, counter: Path, counts: Path) -> None:
    two_roles(counter, HUB_HALF.replace("from roost.core.hub_integration import", "from roost.core.no_such_module import"))
    hub = await roost_hub(counter, config={"counter_dir": str(counts)})
    await hub.collect()
    with pytest.raises(AssertionError, match=r"no panel titled 'Counted files'.*on the hub, counter is setup_error \(import of hub.py failed"):
        await hub.node_panel("Counted files")


ROUTE_HALF = HUB_HALF.replace(
    "from roost.core.hub_integration import NodePanel, Page",
    "from roost.core.hub_integration import ApiRoute, NodePanel, Page, RouteError",
) + '''

async def total(request):
    found = await request.hub.nodes.with_integration("counter")
    if not found:
        raise RouteError("no node counts anything yet", 404)
    return {"files": sum(len((item["state"] or {}).get("counter", {}).get("files", [])) for item in found), "actor": request.actor}


@hookimpl
def roost_hub_routes(ctx):
    return [ApiRoute(method="GET", path="/total", handler=total), ApiRoute(method="POST", path="/total", handler=total, role="admin")]
'''


async def test_calls_the_integrations_api_routes_as_each_role(roost_hub, counter: Path, counts: Path) -> None:
    two_roles(counter, ROUTE_HALF)
    (counts / "alpha").write_text("1")
    hub = await roost_hub(counter, config={"counter_dir": str(counts)})
    await hub.collect()
    status, body = await hub.api("GET", "/total")
    assert status == 200 and body["files"] == 1
    viewer = await hub.token_for("viewer")
    assert (await hub.api("GET", "/total", token=viewer))[0] == 200
    assert (await hub.api("POST", "/total", json={}, token=viewer))[0] == 403
    assert (await hub.api("POST", "/total", json={}))[0] == 200
    assert (await hub.api("GET", "/total", token="rst_not_a_token"))[0] == 401


async def test_a_headline_figure_reaches_the_node_summary(roost_hub, counter: Path, counts: Path) -> None:
    two_roles(
        counter,
        HUB_HALF.replace("import NodePanel, Page", "import HeadlineFigure, NodePanel, Page")
        + '''

@hookimpl
def roost_hub_headline_figures(ctx):
    return [HeadlineFigure(key="counted", metric="counter.files", label="Counted", unit="count")]
''',
    )
    (counts / "alpha").write_text("1")
    (counts / "beta").write_text("1")
    hub = await roost_hub(counter, config={"counter_dir": str(counts)})
    await hub.collect()
    status, body = await hub.get("/api/v1/nodes")
    assert status == 200
    [node] = body["nodes"]
    assert node["headline"]["counted"] == 2.0


def test_loading_the_plugin_imports_no_hub_code() -> None:
    """pytest loads the plugin in every run where Roost is installed; it must stay light until a fixture is used."""
    import subprocess
    import sys

    script = "import sys, roost.testing.plugin; print(sorted(m for m in sys.modules if m.startswith(('roost.core.hub', 'roost.agent', 'aiohttp', 'jinja2'))))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
