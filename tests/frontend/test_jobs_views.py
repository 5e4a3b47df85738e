"""The action, job and schedule pages rendered by a real hub app: forms drawn from action schemas, greyed-out actions with their reason, roles, escaping."""

from __future__ import annotations

import asyncio
import json
import re
import time
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
import voluptuous as vol
from roost.core import protocol
from roost.core.actions import ActionSpec
from roost.core.hub.app import HUB_KEY, create_app
from roost.core.identity import Identity
from roost.frontend import jobs_views
from support_auth import seed_user
from support_hub import hub_config

EVIL = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
USERS = {"admin": "alice", "operator": "olga", "viewer": "victor"}


def _noop(ctx, params):
    return {}


# Real action specs, described the way an agent sends them in its hello.
SPECS = [
    ActionSpec(
        name="demo.echo",
        capability="test.read",
        handler=_noop,
        description="Say something back.",
        idempotent=True,
        timeout=5,
        schema=vol.Schema(
            {
                vol.Required("text"): vol.All(str, vol.Length(max=50)),
                vol.Optional("times", default=1): vol.All(int, vol.Range(min=1, max=5)),
                vol.Optional("loud", default=False): bool,
                vol.Optional("tone", default="calm"): vol.In(["calm", "sharp"]),
                vol.Optional("ratio", default=0.5): vol.Coerce(float),
            }
        ),
    ),
    ActionSpec(
        name="demo.name",
        capability="test.read",
        handler=_noop,
        schema=vol.Schema({vol.Required("name"): vol.Match(r"^[a-z][a-z0-9-]*$"), vol.Required("level"): vol.In({1: "low", 2: "high"})}),
    ),
    ActionSpec(name="demo.steps", capability="test.manage", handler=_noop, timeout=30, schema=vol.Schema({vol.Optional("steps", default=3): int})),
    ActionSpec(
        name="demo.wipe",
        capability="test.destroy",
        handler=_noop,
        destructive=True,
        target="disk",
        description="Erase a disk.",
        schema=vol.Schema({vol.Required("disk"): str}),
    ),
    ActionSpec(name="demo.free", capability="test.read", handler=_noop, schema=vol.Schema({vol.Required("items"): [str]})),
]


@pytest.fixture
async def rig(aiohttp_client, tmp_path):
    """A real hub app on a real SQLite file, one node offering the sample actions, and a token per role."""
    config = hub_config(tmp_path)
    tokens = {role: await seed_user(config, name, role) for role, name in USERS.items()}
    client = await aiohttp_client(create_app(config))
    hub = client.app[HUB_KEY]
    node = await hub.add_node(
        public_key=Identity.generate().public_key,
        hostname="box.lan",
        name="box",
        facts={"macs": {"eth0": "52:54:00:aa:bb:cc"}},
        grants=["test.read", "test.destroy"],
        ceiling={"mode": "execute"},
        offered=["test.read", "test.manage", "test.destroy"],
    )
    sent: list[dict] = []

    async def to_agent(text: str) -> None:
        sent.append(json.loads(text))

    hub.jobs.attach(node.node_id, to_agent, [spec.describe() for spec in SPECS])
    hub.mark_seen(node.node_id)
    return SimpleNamespace(client=client, hub=hub, tokens=tokens, node_id=node.node_id, sent=sent)


def auth(rig, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {rig.tokens[role]}"}


async def page(rig, path: str, role: str = "operator", status: int = 200) -> str:
    resp = await rig.client.get(path, headers=auth(rig, role))
    text = await resp.text()
    assert resp.status == status, text[:800]
    return text


async def call(rig, method: str, path: str, body=None, role: str = "operator", status: int | None = None):
    resp = await rig.client.request(method, path, json=body, headers=auth(rig, role))
    data = await resp.json()
    if status is None:
        assert resp.status < 300, data
    else:
        assert resp.status == status, data
    return data


async def run(rig, action: str, params: dict) -> dict:
    return await call(rig, "POST", f"/api/v1/nodes/{rig.node_id}/actions/{action}", {"params": params})


async def dispatched(rig, job_id: str) -> None:
    """Wait until the hub has sent the job to the node's (recording) channel."""
    deadline = time.monotonic() + 10
    while not any(m.get("job_id") == job_id and m.get("type") == "job" for m in rig.sent):
        assert time.monotonic() < deadline, f"job {job_id} was never dispatched"
        await asyncio.sleep(0.02)


async def agent_says(rig, type_: str, **fields) -> None:
    """A message from the node's agent, through the same schema check the socket applies."""
    message = protocol.parse(protocol.encode(type_, **fields), protocol.AGENT_MESSAGES)
    await rig.hub.jobs.handle(rig.node_id, message)


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_scripts: list[str] = []
        self.inline_styles = 0
        self._script: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        attrs_d = dict(attrs)
        self.tags.append((tag, attrs_d))
        self._script = attrs_d if tag == "script" else None
        if tag == "style" or "style" in attrs_d or any(name.startswith("on") for name in attrs_d):
            self.inline_styles += 1

    def handle_endtag(self, tag):
        self._script = None

    def handle_data(self, data):
        if self._script is not None and data.strip() and self._script.get("type") != "application/json":
            self.inline_scripts.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


def card_of(html: str, action: str) -> str:
    start = html.index(f'data-action="{action}"')
    ends = [i for i in (html.find('<details class="card action-card"', start), html.find("</section>", start)) if i != -1]
    return html[start : min(ends)]


def the(tags: Tags, tag: str, **attrs: str) -> dict[str, str | None]:
    found = tags.find(tag, **attrs)
    assert len(found) == 1, (tag, attrs, found)
    return found[0]


# ------------------------------------------------------------- node page


async def test_each_action_gets_a_form_drawn_from_its_schema(rig):
    html = await page(rig, f"/nodes/{rig.node_id}")
    echo = parse(card_of(html, "demo.echo"))
    text = the(echo, "input", data_param="text")
    assert text["type"] == "text" and "required" in text and text["maxlength"] == "50" and text["data-kind"] == "text"
    times = the(echo, "input", data_param="times")
    assert (times["type"], times["min"], times["max"], times["step"], times["value"]) == ("number", "1", "5", "1", "1")
    assert "required" not in times
    ratio = the(echo, "input", data_param="ratio")
    assert (ratio["type"], ratio["step"], ratio["value"], ratio["data-kind"]) == ("number", "any", "0.5", "float")
    loud = the(echo, "input", data_param="loud")
    assert loud["type"] == "checkbox" and "checked" not in loud
    assert the(echo, "select", data_param="tone")["data-kind"] == "select"
    assert "selected" in the(echo, "option", value='"calm"')
    assert "selected" not in the(echo, "option", value='"sharp"')
    assert the(echo, "button", data_testid="run")["type"] == "submit"
    # Required fields are marked in words for screen readers, and visibly.
    text_label = card_of(html, "demo.echo").split('data-param="text"')[0]
    assert "(required)" in text_label and 'class="req"' in text_label
    assert "Say something back." in card_of(html, "demo.echo")
    assert "A whole number from 1 to 5." in card_of(html, "demo.echo")

    named = parse(card_of(html, "demo.name"))
    name = the(named, "input", data_param="name")
    assert name["pattern"] == r"^[a-z][a-z0-9\-]*$"  # a bare "-" at the end of a class is an error under the browser's v flag
    # An integer choice goes back as an integer: the option values are JSON.
    assert [o["value"] for o in named.find("option") if o["value"]] == ["1", "2"]
    assert "required" in the(named, "select", data_param="level")

    # A schema voluptuous-serialize cannot describe becomes one JSON object.
    free = the(parse(card_of(html, "demo.free")), "textarea", data_param="params")
    assert free["data-kind"] == "json" and "data-whole" in free


async def test_an_action_the_node_may_not_run_is_greyed_out_with_the_reason(rig):
    html = await page(rig, f"/nodes/{rig.node_id}")
    steps = card_of(html, "demo.steps")
    assert 'data-allowed="false"' in steps
    assert "Needs test.manage, which this node is not granted. An admin can grant it under Grants." in steps
    assert '<fieldset class="params" disabled>' in steps
    assert 'data-testid="run"' not in steps
    assert 'data-allowed="true"' in card_of(html, "demo.echo")

    # Granted, but above the agent's own ceiling: the reason says where to change it.
    await rig.hub.store.set_grants(rig.node_id, ["test.read", "test.manage"], now=time.time())
    await rig.hub.store.set_ceiling(rig.node_id, {"mode": "read-only"}, ["test.read", "test.manage"], now=time.time())
    steps = card_of(await page(rig, f"/nodes/{rig.node_id}"), "demo.steps")
    assert "Needs test.manage: granted, but the agent&#39;s own ceiling refuses it." in steps
    # The API refuses the same action for the same reason the page greys it out for.
    refused = await call(rig, "POST", f"/api/v1/nodes/{rig.node_id}/actions/demo.steps", {"params": {}}, status=409)
    assert "test.manage" in refused["error"]


async def test_a_destructive_action_asks_for_a_signed_envelope(rig):
    wipe = card_of(await page(rig, f"/nodes/{rig.node_id}"), "demo.wipe")
    assert "data-destructive" in wipe and "destructive" in wipe
    assert 'data-testid="prepare-envelope"' in wipe and 'data-testid="signed-envelope"' in wipe
    assert 'data-testid="run-signed"' in wipe and 'data-testid="run"' not in wipe
    assert "<dt>Signature binds</dt><dd>disk</dd>" in wipe


async def test_a_viewer_sees_the_forms_but_no_run_cancel_or_wake(rig):
    rig.hub.mark_seen(rig.node_id, time.time() - 10 * 3600)  # quiet: an operator would get a Wake button
    html = await page(rig, f"/nodes/{rig.node_id}", role="viewer")
    assert 'data-testid="run"' not in html and 'data-testid="prepare-envelope"' not in html
    assert 'data-testid="wake"' not in html
    assert 'data-param="text"' in html
    assert html.count('<fieldset class="params" disabled>') == len(SPECS)
    assert "running an action needs the operator role" in html

    job = await run(rig, "demo.echo", {"text": "hi"})
    assert 'data-testid="cancel-job"' in await page(rig, f"/jobs/{job['id']}", role="operator")
    assert 'data-testid="cancel-job"' not in await page(rig, f"/jobs/{job['id']}", role="viewer")
    assert 'data-schedule-toggle' not in await page(rig, "/schedules", role="viewer")
    assert 'id="schedule-form"' not in await page(rig, "/schedules", role="viewer")


async def test_a_quiet_node_has_a_wake_button_with_its_macs_and_relays(rig):
    html = await page(rig, f"/nodes/{rig.node_id}")
    wake = parse(html).find("div", id="wake")
    assert wake and "hidden" in wake[0]  # online: there, for when it goes quiet (jobs.js shows it), but hidden
    rig.hub.mark_seen(rig.node_id, time.time() - 10 * 3600)
    rig.hub._last_seen[rig.node_id] = time.time() - 10 * 3600
    html = await page(rig, f"/nodes/{rig.node_id}")
    assert 'data-status="offline"' in html
    assert "hidden" not in the(parse(html), "div", id="wake")
    assert '<span class="mono" data-testid="wake-macs">52:54:00:aa:bb:cc</span>' in html
    assert 'data-testid="wake-via"' not in html  # no node could relay

    # A neighbour on the same LAN that may send magic packets.
    relay = await rig.hub.add_node(public_key=Identity.generate().public_key, hostname="pi.lan", name="pi <3", facts={}, grants=["network.wol.send"], ceiling={"mode": "execute"})

    async def to_relay(text: str) -> None:
        pass

    rig.hub.jobs.attach(relay.node_id, to_relay, [{"name": "wol.send", "capability": "network.wol.send", "params": []}])
    html = await page(rig, f"/nodes/{rig.node_id}")
    via = the(parse(html), "select", data_testid="wake-via")
    assert via["name"] == "via"
    assert f'<option value="{relay.node_id}">pi &lt;3</option>' in html


async def test_a_quiet_node_without_a_known_mac_says_so(rig):
    node = await rig.hub.add_node(public_key=Identity.generate().public_key, hostname="old.lan", name="old", facts={})
    rig.hub.mark_seen(node.node_id, time.time() - 10 * 3600)
    rig.hub._last_seen[node.node_id] = time.time() - 10 * 3600
    html = await page(rig, f"/nodes/{node.node_id}")
    assert 'data-testid="wake-no-macs"' in html and 'data-testid="wake"' not in html


async def test_the_latest_jobs_of_a_node_are_linked_from_its_page(rig):
    job = await run(rig, "demo.echo", {"text": "hi"})
    html = await page(rig, f"/nodes/{rig.node_id}")
    assert f'href="/jobs/{job["id"]}"' in html
    assert f'href="/jobs?node={rig.node_id}"' in html


# --------------------------------------------------------------- jobs


async def test_a_job_shows_its_timeline_params_result_and_escaped_output(rig):
    job = await run(rig, "demo.echo", {"text": EVIL})
    await dispatched(rig, job["id"])
    await agent_says(rig, "job_started", job_id=job["id"], attempt=1)
    await agent_says(rig, "job_progress", job_id=job["id"], attempt=1, message=EVIL, percent=40, output=EVIL + "\n")
    html = await page(rig, f"/jobs/{job['id']}")
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert 'data-state="running"' in html and ">Running<" in html
    assert '<progress max="100" value="40.0"' in html
    assert 'data-testid="cancel-job"' in html
    tags = parse(html)
    assert not tags.inline_scripts and not tags.inline_styles
    data = json.loads(re.search(r'<script type="application/json" id="job-data">(.*?)</script>', html, re.S).group(1))
    assert data == {"id": job["id"], "node_id": rig.node_id, "state": "running", "active": True}

    await agent_says(rig, "job_result", job_id=job["id"], attempt=1, status="succeeded", result={"output": "said " + EVIL, "said": EVIL}, output="said " + EVIL)
    html = await page(rig, f"/jobs/{job['id']}")
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert ">Succeeded<" in html and 'data-testid="cancel-job"' not in html
    for step in ("created", "dispatched", "started", "finished"):
        assert re.search(rf'<li data-step="{step}" data-done>', html), step
    result = re.search(r'data-testid="job-result">(.*?)</pre>', html, re.S).group(1)
    assert '&#34;said&#34;' in result and "output" not in result  # the output is shown once, as output
    output = re.search(r'data-testid="job-output">(.*?)</pre>', html, re.S).group(1)
    assert output.count("&lt;script&gt;") == 2  # the progress chunk and the result's output


async def test_a_failed_job_shows_its_error_and_a_missing_one_is_404(rig):
    job = await run(rig, "demo.name", {"name": "x", "level": 1})
    await agent_says(rig, "job_result", job_id=job["id"], attempt=1, status="refused", error="invalid parameters: " + EVIL)
    html = await page(rig, f"/jobs/{job['id']}")
    assert ">Refused<" in html and "invalid parameters: &lt;script&gt;" in html
    assert 'data-testid="job-result-none">—<' in html
    html = await page(rig, "/jobs/jnothere", status=404)
    assert "No such job" in html


async def test_the_jobs_list_filters_by_node_state_and_action(rig):
    echo = await run(rig, "demo.echo", {"text": "a"})
    name = await run(rig, "demo.name", {"name": "b", "level": 2})
    await agent_says(rig, "job_result", job_id=name["id"], attempt=1, status="failed", error="no")

    def rows(html: str) -> list[str]:
        return re.findall(r'<tr data-job-id="([^"]+)"', html)

    assert rows(await page(rig, "/jobs")) == [name["id"], echo["id"]]
    assert rows(await page(rig, "/jobs?action=demo.e")) == [echo["id"]]
    assert rows(await page(rig, "/jobs?action=demo.")) == [name["id"], echo["id"]]
    assert rows(await page(rig, "/jobs?state=failed")) == [name["id"]]
    assert rows(await page(rig, f"/jobs?node={rig.node_id}&state=failed&action=demo.e")) == []
    assert "No jobs match these filters." in await page(rig, "/jobs?node=nobody")
    # An unknown state is ignored rather than an error page.
    assert rows(await page(rig, "/jobs?state=%3Cscript%3E")) == [name["id"], echo["id"]]
    html = await page(rig, "/jobs?state=failed")
    assert '<option value="failed" selected>Failed</option>' in html
    assert ">Failed<" in html and "Clear" in html
    fragment = await page(rig, "/jobs?fragment=jobs&state=failed")
    assert rows(fragment) == [name["id"]] and "<html" not in fragment
    assert not parse(await page(rig, "/jobs")).inline_scripts


async def test_the_jobs_list_pages_back_with_before(rig, monkeypatch):
    monkeypatch.setattr(jobs_views, "JOBS_PAGE_SIZE", 2)
    ids = [(await run(rig, "demo.echo", {"text": str(i)}))["id"] for i in range(3)]
    html = await page(rig, "/jobs")
    assert re.findall(r'<tr data-job-id="([^"]+)"', html) == [ids[2], ids[1]]
    older = re.search(r'href="(/jobs\?[^"]+)" data-testid="older-jobs"', html).group(1).replace("&amp;", "&")
    assert re.findall(r'<tr data-job-id="([^"]+)"', await page(rig, older)) == [ids[0]]


# ------------------------------------------------------------ schedules


async def test_schedules_show_cron_next_run_and_last_job(rig):
    created = await call(rig, "POST", "/api/v1/schedules", {"node_id": rig.node_id, "action": "demo.echo", "params": {"text": EVIL}, "cron": "0 3 * * *", "note": "nightly " + EVIL})
    html = await page(rig, "/schedules")
    row = html[html.index(f'data-schedule-id="{created["id"]}"') :]
    row = row[: row.index("</tr>")]
    assert "<code class=\"schedule-cron\">0 3 * * *</code>" in row and "Every day at 03:00 (UTC)" in row
    assert f'data-until="{created["next_run"]}"' in row and re.search(r">in \d+ (h|min|s)", row)
    assert "<script>" not in row and "nightly &lt;script&gt;" in row
    assert "data-schedule-toggle checked" in row
    assert 'data-testid="confirm-delete-schedule"' in row
    data = json.loads(re.search(r'<script type="application/json" id="schedules-data">(.*?)</script>', html, re.S).group(1))
    offered = {a["name"]: a["disabled"] for a in data["nodes"][rig.node_id]}
    assert offered["demo.echo"] == "" and offered["demo.steps"] == "needs test.manage"
    assert offered["demo.wipe"] == "needs an operator signature every time"

    await call(rig, "PATCH", f"/api/v1/schedules/{created['id']}", {"enabled": False})
    row = await page(rig, "/schedules?fragment=schedules")
    assert 'data-enabled="false"' in row and ">paused<" in row and "data-schedule-toggle checked" not in row


async def test_the_schedule_form_draws_the_chosen_actions_parameters(rig):
    html = await page(rig, f"/schedules?fragment=params&node={rig.node_id}&action=demo.echo")
    tags = parse(html)
    assert the(tags, "input", data_param="text")["maxlength"] == "50"
    assert "<html" not in html
    resp = await rig.client.get(f"/schedules?fragment=params&node={rig.node_id}&action=demo.nope", headers=auth(rig, "operator"))
    assert resp.status == 404


async def test_an_empty_schedules_page_and_no_inline_script(rig):
    html = await page(rig, "/schedules")
    assert 'data-testid="no-schedules"' in html and 'id="schedule-form"' in html
    tags = parse(html)
    assert not tags.inline_scripts and not tags.inline_styles
    assert 'aria-current="page">Schedules<' in html


# ------------------------------------------------------------ helpers


@pytest.mark.parametrize(
    ("python", "html"),
    [
        (r"^[a-z]+$", r"^[a-z]+$"),
        (r"^[a-z][a-z0-9-]*$", r"^[a-z][a-z0-9\-]*$"),
        (r"^[-\w.]+$", r"^[\-\w.]+$"),
        (r"^\d{1,3}(\.\d{1,3}){3}$", r"^\d{1,3}(\.\d{1,3}){3}$"),
        (r"^[\w\-]+\.service$", r"^[\w\-]+\.service$"),
        (r"^a\-b$", r"^a-b$"),
        (r"^[a-z(]$", r"^[a-z\(]$"),
        (r"^(?:ab|cd)$", r"^(?:ab|cd)$"),
        (r"^(?P<x>a)$", None),
        (r"\Aabc\Z", None),
        (r"^[a-z]", r"^[a-z]"),
        (r"[&&]", None),
        (r"[abc", None),
        ("", None),
        (None, None),
    ],
)
def test_python_patterns_become_browser_patterns_or_none(python, html):
    assert jobs_views.html_pattern(python) == html


def test_relative_future_times():
    assert jobs_views.fmt_until(1000 + 300, now=1000) == "in 5 min"
    assert jobs_views.fmt_until(1000 - 7200, now=1000) == "2 h ago"
    assert jobs_views.fmt_until(1000.5, now=1000) == "now"
    assert jobs_views.fmt_until(None) == "—"


# ------------------------------------------------- readable names, pickers, targets and results


async def test_actions_show_a_human_name_and_their_id(rig):
    html = await page(rig, f"/nodes/{rig.node_id}")
    assert '<span class="action-human">Wipe demo</span>' in card_of(html, "demo.wipe")
    assert '<span class="action-human">Echo demo</span>' in card_of(html, "demo.echo")
    # A declared title wins over the worded id.
    titled = ActionSpec(name="demo.reboot_now", capability="test.read", handler=_noop, title="Reboot the box")
    rig.hub.jobs.attach(rig.node_id, rig.hub.jobs.channels[rig.node_id], [s.describe() for s in [*SPECS, titled]])
    assert '<span class="action-human">Reboot the box</span>' in card_of(await page(rig, f"/nodes/{rig.node_id}"), "demo.reboot_now")


async def test_a_parameter_with_a_picker_offers_what_the_node_reports(rig):
    from roost.core.store import Report

    picked = ActionSpec(name="demo.poke", capability="test.read", handler=_noop, schema=vol.Schema({vol.Required("thing"): str}),
                        pickers={"thing": "demo.things[].name"})
    rig.hub.jobs.attach(rig.node_id, rig.hub.jobs.channels[rig.node_id], [s.describe() for s in [*SPECS, picked]])
    now = time.time()
    await rig.hub.store.ingest([Report(node_id=rig.node_id, seq=1, epoch="e", collected_at=now, received_at=now,
                                       data={"demo": {"things": [{"name": "web"}, {"name": "db"}, {"name": EVIL}, {"other": 1}]}},
                                       metrics={}, integrations=[])])
    card = card_of(await page(rig, f"/nodes/{rig.node_id}"), "demo.poke")
    field = the(parse(card), "input", data_param="thing")
    assert field["list"] and field["list"].endswith("-known")
    options = re.findall(r'<option value="([^"]*)"></option>', card)
    assert options == ["&lt;script&gt;window.__xss=1&lt;/script&gt;&lt;img src=x onerror=&#34;window.__xss=2&#34;&gt;", "db", "web"]


def test_known_values_read_only_the_declared_list():
    from roost.frontend.jobs_views import known_values

    state = {"docker": {"containers": [{"name": "b"}, {"name": "a"}, {"name": "a"}, {"name": None}, "junk"]}}
    assert known_values(state, "docker.containers[].name") == ["a", "b"]
    assert known_values(state, "docker.containers.name") == []
    assert known_values(state, "docker.images[].name") == []
    assert known_values({"docker": {"containers": "nope"}}, "docker.containers[].name") == []
    assert known_values(None, "docker.containers[].name") == []


async def test_a_ceiling_refusal_says_exactly_what_to_put_in_the_agent_config(rig):
    await rig.hub.store.set_grants(rig.node_id, ["test.read", "test.manage"], now=time.time())
    await rig.hub.store.set_ceiling(rig.node_id, {"mode": "read-only", "allow": ["test.*"], "deny": ["test.manage", "x.y"]},
                                    ["test.read", "test.manage"], now=time.time())
    steps = card_of(await page(rig, f"/nodes/{rig.node_id}"), "demo.steps")
    fix = re.search(r'data-testid="ceiling-fix">(.*?)</div>', steps, re.S).group(1)
    assert "/etc/roost/agent.toml" in fix
    assert '[agent.ceiling]\nmode = &#34;execute&#34;\nallow = [&#34;test.*&#34;]\ndeny = [&#34;x.y&#34;]\n' in fix
    # What the snippet says is what the agent needs: that ceiling permits the capability.
    from roost.core.capabilities import Ceiling

    assert Ceiling(mode="execute", allow=("test.*",), deny=("x.y",)).permits("test.manage")
    assert not Ceiling.from_dict({"mode": "read-only", "allow": ["test.*"], "deny": ["test.manage", "x.y"]}).permits("test.manage")
    # Not granted at all: the fix is a grant, not the agent's config.
    echo_card = card_of(await page(rig, f"/nodes/{rig.node_id}"), "demo.wipe")
    assert 'data-testid="ceiling-fix"' not in echo_card


async def test_the_jobs_list_has_a_target_column_and_human_names(rig):
    wipe_less = await run(rig, "demo.name", {"name": "alpha", "level": 1})
    echo = await run(rig, "demo.echo", {"text": "hello"})
    html = await page(rig, "/jobs")
    row = lambda job_id: re.search(rf'<tr data-job-id="{job_id}".*?</tr>', html, re.S).group(0)  # noqa: E731
    assert re.search(r'data-testid="job-target">hello<', row(echo["id"]))
    assert ">Echo demo</a>" in row(echo["id"])
    assert '<th>Target</th>' in html
    assert 'data-testid="job-target">' in row(wipe_less["id"])


async def test_a_result_reads_as_tables_and_an_empty_success_says_why(rig):
    job = await run(rig, "demo.echo", {"text": "x"})
    await agent_says(rig, "job_result", job_id=job["id"], attempt=1, status="succeeded",
                     result={"units": [{"name": "ssh.service", "active": "active"}, {"name": EVIL, "active": "failed"}], "count": 2})
    html = await page(rig, f"/jobs/{job['id']}")
    readable = re.search(r'data-testid="job-result-readable">(.*?)<details', html, re.S).group(1)
    assert '<table class="result-table">' in readable and "<th scope=\"col\">active</th>" in readable
    assert "ssh.service" in readable and "&lt;script&gt;" in readable and "<script>window" not in readable
    assert "<dt>count</dt><dd>2</dd>" in readable
    assert 'data-testid="job-result">' in html  # the JSON is still there, folded

    empty = await run(rig, "demo.echo", {"text": "y"})
    await agent_says(rig, "job_result", job_id=empty["id"], attempt=1, status="succeeded", result={"entries": [], "reason": "no journal on this host"})
    html = await page(rig, f"/jobs/{empty['id']}")
    assert 'data-testid="job-result-empty">Done, with nothing to show: no journal on this host<' in html


def test_the_built_in_actions_pick_from_what_their_hosts_report():
    from roost.frontend.jobs_views import known_values
    from roost.integrations.docker.actions import action_specs as docker_specs
    from roost.integrations.proxmox.actions import build_actions as proxmox_specs
    from roost.integrations.services.actions import action_specs as services_specs
    from roost.integrations.services.const import CONF_RATE_LIMIT, CONF_SYSTEMCTL_TIMEOUT

    state = {
        "docker": {"containers": [{"name": "web", "compose_project": "site"}, {"name": "db", "compose_project": "site"}]},
        "proxmox": {"guests": [{"vmid": 101}, {"vmid": 100}]},
        "linux_host": {"services": {"units": [{"name": "ssh.service"}]}},
    }
    docker = {s.name: s.describe() for s in docker_specs()}
    assert known_values(state, docker["docker.container.restart"]["pickers"]["container"]) == ["db", "web"]
    assert known_values(state, docker["docker.compose.restart"]["pickers"]["project"]) == ["site"]
    proxmox = {s.name: s.describe() for s in proxmox_specs()}
    assert known_values(state, proxmox["proxmox.guest.start"]["pickers"]["vmid"]) == ["100", "101"]
    services = {s.name: s.describe() for s in services_specs({CONF_SYSTEMCTL_TIMEOUT: 30, CONF_RATE_LIMIT: 0})}
    assert all(known_values(state, d["pickers"]["unit"]) == ["ssh.service"] for d in services.values())
