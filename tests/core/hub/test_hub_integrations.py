"""Integrations' hub halves in a real hub: pages, nav, node panels, headline figures, API routes, the extension
registry, and deliberately broken hub halves that must never take the hub down."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from support import until
from support_auth import TEST_PASSWORD, seed_user
from support_hub import FakeAgent

from roost.core.const import ROLE_AGENT, STATE_LOADED, STATE_SETUP_ERROR
from roost.core.hub.app import HUB_KEY
from roost.core.hub_integration import AlertRuleKind, AutomationAction, AutomationTrigger, NotificationReceiver
from roost.core.plugins import CUSTOM_PACKAGE, IntegrationManager
from roost.core.store import AuditFilter

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hub_integrations"


@pytest.fixture
def hub_with(make_hub):
    async def make(*, as_role: str | None = "admin", **hub):
        return await make_hub(as_role=as_role, custom_integrations=[str(FIXTURES)], **hub)

    return make


async def report_demo(client, fake_agent, greeting: str = "hi") -> str:
    """An agent that runs hub_demo reports its state and a value; returns its node id."""
    agent = fake_agent()
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    await agent.send(
        agent.report(
            integrations=[{"domain": "linux_host", "state": "loaded", "reason": ""}, {"domain": "hub_demo", "state": "loaded", "reason": ""}],
            data={"linux_host": {"cpu": {"percent": 5.0}}, "hub_demo": {"greeting": greeting}},
            metrics={"linux_host.cpu_percent": 5.0, "hub_demo.value": 7},
        )
    )
    hub = client.app[HUB_KEY]

    async def stored() -> bool:
        detail = await hub.node_detail(agent.node_id)
        return bool(detail and "hub_demo" in (detail.get("state") or {}))

    await until(stored, 10, "the hub_demo report to be stored")
    return agent.node_id


def statuses(client) -> dict[str, dict]:
    return {s["domain"]: s for s in client.app[HUB_KEY].manager.statuses()}


# ------------------------------------------------------------------ the good one


async def test_a_hub_half_adds_a_page_with_its_nav_entry(hub_with) -> None:
    client = await hub_with(as_role="viewer")
    assert statuses(client)["hub_demo"]["state"] == STATE_LOADED
    resp = await client.get("/hub-demo")
    html = await resp.text()
    assert resp.status == 200, html
    assert '<p id="demo-greeting">hello, viewer</p>' in html  # its config default, and who is looking
    assert '<a href="/hub-demo" aria-current="page">Hub demo</a>' in html
    # The admin-only page is neither in a viewer's nav nor open to them.
    assert 'href="/hub-demo/admin"' not in html
    assert (await client.get("/hub-demo/admin")).status == 403
    # Its static file is served under its own prefix with the shell's CSP and a content hash.
    [css] = [part.split('"')[0] for part in html.split('href="') if part.startswith("/static/integrations/hub_demo/")]
    asset = await client.get(css)
    assert asset.status == 200 and "demo-panel" in await asset.text()
    assert "immutable" in asset.headers["Cache-Control"] and "Content-Security-Policy" in asset.headers


async def test_the_admin_page_is_in_an_admins_nav(hub_with) -> None:
    client = await hub_with(as_role="admin")
    resp = await client.get("/hub-demo/admin")
    html = await resp.text()
    assert resp.status == 200 and "admins only" in html
    assert '<a href="/hub-demo/admin" aria-current="page">Demo admin</a>' in html


async def test_a_hub_half_draws_a_panel_on_the_node_page_and_a_headline_figure(hub_with, fake_agent) -> None:
    client = await hub_with()
    fake_agent = lambda: FakeAgent(client)  # noqa: E731 - agents of this hub, not of the fixture's own
    node_id = await report_demo(client, fake_agent, greeting="bonjour")
    resp = await client.get(f"/nodes/{node_id}")
    html = await resp.text()
    assert resp.status == 200, html
    assert 'data-integration="hub_demo"' in html and '<p class="demo-panel">The node says bonjour.</p>' in html
    assert "/static/integrations/hub_demo/demo.css?v=" in html
    # The figure comes from the hub half's declaration, not a table in the core.
    summary = await (await client.get("/api/v1/nodes")).json()
    [node] = [n for n in summary["nodes"] if n["id"] == node_id]
    assert node["headline"]["demo_value"] == 7
    overview = await (await client.get("/")).text()
    assert 'data-field="headline.demo_value"' in overview and "Demo value" in overview


async def test_routes_live_under_the_integrations_prefix_with_the_core_rules(hub_with) -> None:
    client = await hub_with(as_role="operator")
    node_id = await report_demo(client, lambda: FakeAgent(client))
    resp = await client.get("/api/v1/integrations/hub_demo/nodes")
    assert resp.status == 200
    body = await resp.json()
    assert node_id in body["nodes"] and body["role"] == "operator" and body["actor"].startswith("token:")
    history = await client.get(f"/api/v1/integrations/hub_demo/nodes/{node_id}/history")
    assert history.status == 200 and (await history.json())["points"] >= 1
    missing = await client.get("/api/v1/integrations/hub_demo/nodes/nope/history")
    assert missing.status == 404 and (await missing.json()) == {"error": "no node nope"}
    # The schema runs first: a clear 400, the handler never sees it.
    bad = await client.post("/api/v1/integrations/hub_demo/echo", json={"text": ""})
    assert bad.status == 400 and "text" in (await bad.json())["error"]
    too_big = await client.post("/api/v1/integrations/hub_demo/echo", json={"text": "x" * 70_000})
    assert too_big.status == 413
    teapot = await client.post("/api/v1/integrations/hub_demo/echo", json={"text": "teapot"})
    assert teapot.status == 418 and (await teapot.json()) == {"error": "I refuse to echo teapots"}
    ok = await client.post("/api/v1/integrations/hub_demo/echo", json={"text": "hi"})
    assert ok.status == 200 and (await ok.json()) == {"echo": "hi", "setup_ran": True}
    [entry] = await client.app[HUB_KEY].store.list_audit(AuditFilter(action="hub_demo"))
    assert entry.action == "hub_demo.echoed" and entry.actor == body["actor"] and entry.details == {"text": "hi"}
    # Job creation goes through the engine's checks: this node offers no such action.
    job = await client.post("/api/v1/integrations/hub_demo/job", json={"node_id": node_id})
    assert job.status == 409 and "does not offer action 'demo.nothing'" in (await job.json())["error"]


async def test_routes_refuse_the_anonymous_viewers_read_tokens_and_requests_without_csrf(hub_with) -> None:
    anon = await hub_with(as_role=None)
    assert (await anon.get("/api/v1/integrations/hub_demo/nodes")).status == 401
    viewer = await hub_with(as_role="viewer")
    refused = await viewer.post("/api/v1/integrations/hub_demo/echo", json={"text": "hi"})
    assert refused.status == 403
    # A logged-in session must send its CSRF token on a state-changing call, as with every core route.
    await seed_user(anon.app[HUB_KEY].config, "op", "operator", token=False)
    login = await anon.post("/api/v1/session", json={"username": "op", "password": TEST_PASSWORD})
    assert login.status == 200, await login.text()
    csrf = (await login.json())["csrf_token"]
    no_csrf = await anon.post("/api/v1/integrations/hub_demo/echo", json={"text": "hi"})
    assert no_csrf.status == 403 and "CSRF" in (await no_csrf.json())["error"]
    with_csrf = await anon.post("/api/v1/integrations/hub_demo/echo", json={"text": "hi"}, headers={"X-CSRF-Token": csrf})
    assert with_csrf.status == 200, await with_csrf.text()


async def test_the_registry_collects_one_extension_of_each_kind(hub_with) -> None:
    client = await hub_with()
    registry = client.app[HUB_KEY].plugins.registry
    # Beside the built-in receivers of the notify and apprise integrations.
    assert set(registry.notification_receivers) - {"notify.webhook", "notify.email", "notify.mqtt", "notify.alertmanager", "apprise.url"} == {"hub_demo.log"}
    # Built-in integrations (docker, proxmox, storage, ping) bring rule kinds of their own; the demo's is the one it declared.
    assert {name for name, (domain, _) in registry.alert_rule_kinds.items() if domain == "hub_demo"} == {"hub_demo.value_high"}
    # Beside the built-in kinds of the automation integration, which go through the same registry.
    assert {n for n in registry.automation_triggers if not n.startswith("automation.")} == {"hub_demo.echoed"}
    assert {n for n in registry.automation_actions if not n.startswith("automation.")} == {"hub_demo.say"}  # other.say is not under its domain: left out
    assert {"automation.cron", "automation.metric", "automation.alert", "automation.webhook"} <= set(registry.automation_triggers)
    assert {"automation.job", "automation.confirm", "automation.notify", "automation.raise_alert"} <= set(registry.automation_actions)
    domain, receiver = registry.notification_receivers["hub_demo.log"]
    assert domain == "hub_demo" and isinstance(receiver, NotificationReceiver)
    assert isinstance(registry.alert_rule_kinds["hub_demo.value_high"][1], AlertRuleKind)
    assert isinstance(registry.automation_triggers["hub_demo.echoed"][1], AutomationTrigger)
    assert isinstance(registry.automation_actions["hub_demo.say"][1], AutomationAction)
    assert registry.alert_rule_kinds["hub_demo.value_high"][1].schema({"limit": 3}) == {"limit": 3}


async def test_hub_shutdown_runs(hub_with) -> None:
    client = await hub_with()
    data_dir = client.app[HUB_KEY].config.data_dir
    await client.close()
    assert (data_dir / "hub_demo_shutdown").read_text() == "bye"


# ------------------------------------------------------------ the broken ones


async def test_a_page_that_raises_renders_an_error_panel_and_the_dashboard_keeps_working(hub_with, caplog) -> None:
    client = await hub_with()
    caplog.set_level(logging.ERROR)
    resp = await client.get("/broken")
    html = await resp.text()
    assert resp.status == 500
    assert 'data-integration="hub_broken"' in html and "Broken hub half" in html and "the broken page fell over" in html
    assert any("hub_broken" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    template = await client.get("/broken/template")
    assert template.status == 500 and "missing.html" in await template.text()
    # The rest keeps working: the shell, another integration's page, the API.
    for path in ("/", "/integrations", "/hub-demo", "/jobs"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/api/v1/nodes")).status == 200
    # The invalid and reserved paths it declared were left out; the shell's /jobs is still the shell's.
    assert (await client.get("/jobs/mine")).status == 404


async def test_a_route_that_raises_answers_500_naming_the_integration(hub_with, caplog) -> None:
    client = await hub_with()
    caplog.set_level(logging.ERROR)
    resp = await client.get("/api/v1/integrations/hub_broken/boom")
    assert resp.status == 500
    assert "integration hub_broken failed" in (await resp.json())["error"]
    assert any("integration hub_broken: route GET /api/v1/integrations/hub_broken/boom failed" in r.getMessage() for r in caplog.records)
    not_json = await client.get("/api/v1/integrations/hub_broken/not-json")
    assert not_json.status == 500
    assert (await client.get("/api/v1/integrations/hub_demo/nodes")).status == 200
    # A state-changing route declared for viewers is refused at declaration: it does not exist.
    assert (await client.post("/api/v1/integrations/hub_broken/open", json={})).status in (404, 405)


async def test_a_panel_that_raises_shows_an_error_in_its_place(hub_with) -> None:
    client = await hub_with()
    agent = FakeAgent(client)
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    # This node reports state for both hub_demo and hub_broken, whose panel hook raises.
    await agent.send(agent.report(data={"hub_demo": {"greeting": "hi"}, "hub_broken": {"anything": 1}}))
    hub = client.app[HUB_KEY]

    async def stored() -> bool:
        detail = await hub.node_detail(agent.node_id)
        return bool(detail and "hub_broken" in (detail.get("state") or {}))

    await until(stored, 10, "the report to be stored")
    resp = await client.get(f"/nodes/{agent.node_id}")
    html = await resp.text()
    assert resp.status == 200, html
    assert "The Broken hub half integration (<code>hub_broken</code>) could not draw this panel: ValueError: panel could not be drawn" in html
    assert '<p class="demo-panel">The node says hi.</p>' in html  # the other integration's panel is still drawn
    fragment = await client.get(f"/nodes/{agent.node_id}?fragment=details")
    assert fragment.status == 200 and "panel could not be drawn" in await fragment.text()


async def test_a_setup_that_raises_is_setup_error_and_its_page_and_routes_say_why(hub_with) -> None:
    client = await hub_with()
    status = statuses(client)["hub_setup_raises"]
    assert status["state"] == STATE_SETUP_ERROR and "cannot open the demo database" in status["reason"]
    page = await client.get("/setup-raises")
    html = await page.text()
    assert page.status == 503 and "Setup raises" in html and "cannot open the demo database" in html
    route = await client.get("/api/v1/integrations/hub_setup_raises/status")
    assert route.status == 503 and "setup_error" in (await route.json())["error"]
    assert (await client.get("/hub-demo")).status == 200


async def test_declaring_pages_that_raises_is_setup_error_and_the_hub_starts(hub_with) -> None:
    client = await hub_with()
    status = statuses(client)["hub_declare_raises"]
    assert status["state"] == STATE_SETUP_ERROR and "no pages today" in status["reason"]
    assert (await client.get("/")).status == 200
    overview = await (await client.get("/api/v1/integrations")).json()
    assert any(s["domain"] == "hub_declare_raises" and s["state"] == STATE_SETUP_ERROR for s in overview["hub"])


# ------------------------------------------------------------- the agent's side


async def test_agents_never_import_the_hub_half_and_refuse_hub_hooks_in_init(tmp_path) -> None:
    manager = IntegrationManager(
        role=ROLE_AGENT, config={}, data_dir=tmp_path, custom_dirs=[FIXTURES], entry_points=False, only=["hub_demo", "hub_hooks_in_init"]
    )
    manager.load()
    await manager.setup_all()
    assert f"{CUSTOM_PACKAGE}.hub_demo" in sys.modules
    assert f"{CUSTOM_PACKAGE}.hub_demo.hub" not in sys.modules
    out = await manager.collect_all()
    assert out["data"]["hub_demo"] == {"greeting": "hello"}
    state = {s["domain"]: s for s in manager.statuses()}
    assert state["hub_hooks_in_init"]["state"] == STATE_SETUP_ERROR
    assert "roost_hub_pages is a hub hook in the module agents load; move it to hub.py" in state["hub_hooks_in_init"]["reason"]
    await manager.shutdown_all()


async def test_the_hub_refuses_an_agent_hook_in_hub_py_and_async_declarations(hub_with) -> None:
    client = await hub_with()
    state = statuses(client)
    assert state["agent_hook_in_hub"]["state"] == STATE_SETUP_ERROR
    assert "roost_capabilities is an agent hook in hub.py" in state["agent_hook_in_hub"]["reason"]
    assert state["async_pages"]["state"] == STATE_SETUP_ERROR
    assert "roost_hub_pages must be a plain function" in state["async_pages"]["reason"]
    assert state["hub_demo"]["state"] == STATE_LOADED


def test_a_hub_half_is_found_where_no_hub_py_is_on_disk(tmp_path, monkeypatch) -> None:
    """As in the one-file executable, whose modules live in its archive: the hub half is asked of the import system."""
    import zipfile

    archive = tmp_path / "modules.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("roost_zipped_half/__init__.py", "")
        zf.writestr("roost_zipped_half/hub.py", "HALF = True\n")
        zf.writestr("roost_zipped_whole/__init__.py", "")
    monkeypatch.syspath_prepend(str(archive))
    import importlib

    try:
        half = IntegrationManager._hub_half(importlib.import_module("roost_zipped_half"))
        whole = importlib.import_module("roost_zipped_whole")
        assert half.__name__ == "roost_zipped_half.hub" and half.HALF
        assert IntegrationManager._hub_half(whole) is whole  # no hub module: the package itself
    finally:
        for name in [m for m in sys.modules if m.startswith(("roost_zipped_half", "roost_zipped_whole"))]:
            del sys.modules[name]


async def test_only_built_in_integrations_answer_without_a_login(hub_with) -> None:
    anon = await hub_with(as_role=None)
    routes = anon.app[HUB_KEY].plugins.public_routes
    assert {r.url for r in routes if r.integration.domain == "ping"} == {"/ping/{uuid}", "/ping/{uuid}/{op}"}
    assert not [r for r in routes if r.integration.domain == "hub_demo"]
    async with anon.get("/hub_demo/open/anything", allow_redirects=False, headers={"Accept": "application/json"}) as resp:
        assert resp.status in (302, 303, 401, 404) and await resp.text() != "opened\n"  # hub_demo declared it; the hub left it out
    async with anon.get("/ping/00000000-0000-4000-8000-000000000000") as resp:  # the built-in ping's: no login needed
        assert resp.status == 404 and "no check has this ping URL" in await resp.text()
