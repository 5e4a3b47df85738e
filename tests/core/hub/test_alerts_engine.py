"""The alert engine in the real hub app: reports in over the agent socket, instances and alert_events in the real SQLite store."""

from __future__ import annotations

import time

import pytest
from support import until
from support_auth import seed_user
from support_hub import FakeAgent, hub_config

from roost.core.hub.app import HUB_KEY, create_app

DISK = "linux_host.disk_used_percent[/srv]"


@pytest.fixture
async def setup(aiohttp_client, tmp_path):
    config = hub_config(tmp_path)
    tokens = {role: await seed_user(config, f"{role}-user", role) for role in ("viewer", "operator", "admin")}
    client = await aiohttp_client(create_app(config))
    agent = FakeAgent(client)
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    return client, agent, tokens


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def report(agent: FakeAgent, value: float, **metrics: float) -> None:
    await agent.send(agent.report(metrics={"linux_host.mem_used_percent": 40.0, DISK: value, **metrics}))
    ack = await agent.expect("ack")
    assert ack["seq"] == agent.seq


async def events(hub) -> list[dict]:
    return await hub.alerts.events_after(0)


async def test_defaults_are_made_on_first_start_and_a_deleted_one_never_comes_back(aiohttp_client, tmp_path):
    config = hub_config(tmp_path)
    token = await seed_user(config, "admin", "admin")
    client = await aiohttp_client(create_app(config))
    resp = await client.get("/api/v1/alerts/rules", headers=auth(token))
    rules = {r["id"]: r for r in (await resp.json())["rules"]}
    assert {"default-node-offline", "default-filesystem-full", "default-memory-high", "default-container-unhealthy",
            "default-container-restart-loop", "default-proxmox-quorum"} <= set(rules)
    fs = rules["default-filesystem-full"]
    assert fs["settings"]["warning"] == 90 and fs["settings"]["critical"] == 95 and fs["settings"]["series"] == "linux_host.disk_used_percent[*]"
    assert rules["default-memory-high"]["for"] == 300 and rules["default-memory-high"]["settings"]["warning"] == 95
    resp = await client.delete("/api/v1/alerts/rules/default-memory-high", headers=auth(token))
    assert resp.status == 200
    resp = await client.put("/api/v1/alerts/rules/default-filesystem-full", headers=auth(token), json={**{k: fs[k] for k in ("name", "kind", "severity", "settings", "for", "clear_for")}, "enabled": False})
    assert resp.status == 200, await resp.text()
    await client.close()
    client = await aiohttp_client(create_app(config))
    rules = {r["id"]: r for r in (await (await client.get("/api/v1/alerts/rules", headers=auth(token))).json())["rules"]}
    assert "default-memory-high" not in rules
    assert rules["default-filesystem-full"]["enabled"] is False


async def test_a_full_disk_fires_once_and_resolves_once_with_events_in_the_store(setup):
    client, agent, tokens = setup
    hub = client.app[HUB_KEY]
    rule = {"name": "Disk", "kind": "metric.threshold", "severity": "warning", "for": 0, "clear_for": 0,
            "settings": {"series": "linux_host.disk_used_percent[*]", "label": "mountpoint", "warning": 90, "warning_clear": 85}}
    resp = await client.post("/api/v1/alerts/rules", headers=auth(tokens["admin"]), json=rule)
    assert resp.status == 201, await resp.text()
    rule_id = (await resp.json())["id"]
    await report(agent, 91.0)
    await until(lambda: _firing(hub, rule_id), 10, "the disk alert to fire")
    await report(agent, 88.0)  # above the clear threshold: still firing
    await report(agent, 92.0)
    await report(agent, 80.0)
    await until(lambda: _resolved(hub, rule_id), 10, "the disk alert to resolve")
    mine = [e for e in await events(hub) if e["rule_id"] == rule_id]
    assert [e["status"] for e in mine] == ["firing", "resolved"]
    assert mine[0]["labels"]["mountpoint"] == "/srv" and mine[0]["labels"]["alertname"] == "Disk"
    assert mine[0]["labels"]["node"] == agent.node_id and mine[0]["ends_at"] is None and mine[1]["ends_at"] is not None
    assert mine[0]["instance_id"] == mine[1]["instance_id"]
    summary = (await (await client.get("/api/v1/nodes", headers=auth(tokens["viewer"]))).json())["nodes"][0]
    assert summary["alerts"] == {"firing": 0, "critical": 0, "warning": 0}


async def _firing(hub, rule_id):
    return [i for i in hub.alerts.live.values() if i["rule_id"] == rule_id and i["state"] == "firing"]


async def _resolved(hub, rule_id):
    return [e for e in await hub.alerts.events_after(0) if e["rule_id"] == rule_id and e["status"] == "resolved"]


DOCKER = [{"domain": "linux_host", "state": "loaded", "reason": ""}, {"domain": "docker", "state": "loaded", "reason": ""}]


def docker_state(health: str = "healthy", events: list | None = None, state: str = "running") -> dict:
    return {"docker": {"containers": [{"name": "web", "short_id": "abc", "state": state, "health": health, "health_failing_streak": 3, "restart_count": 0}], "events": events or []}}


async def send(agent: FakeAgent, **over) -> None:
    await agent.send(agent.report(**over))
    assert (await agent.expect("ack"))["seq"] == agent.seq


async def test_docker_rule_kinds_name_each_container_and_clear_when_it_recovers(setup):
    client, agent, tokens = setup
    hub = client.app[HUB_KEY]
    for kind in ("docker.container_unhealthy", "docker.unexpected_exit"):
        resp = await client.post("/api/v1/alerts/rules", headers=auth(tokens["admin"]), json={"name": kind, "kind": kind, "severity": "critical"})
        assert resp.status == 201, await resp.text()
    await send(agent, integrations=DOCKER, data=docker_state("unhealthy"))
    found = await until(lambda: _kind(hub, "docker.container_unhealthy", "firing"), 10, "the unhealthy container to fire")
    assert found[0]["labels"] == {"container": "web"} and "unhealthy (3 failed checks" in found[0]["summary"]
    now = time.time()
    await send(agent, integrations=DOCKER, collected_at=now, data=docker_state("healthy", [{"type": "exited_unexpectedly", "container": "web", "at": now - 5, "detail": "exit code 137 (OOM)"}], state="exited"))
    exited = await until(lambda: _kind(hub, "docker.unexpected_exit", "firing"), 10, "the unexpected exit to fire")
    assert "exit code 137" in exited[0]["summary"]
    assert await until(lambda: _resolved_kind(hub, "docker.container_unhealthy"), 10, "the unhealthy alert to resolve")
    # Back up and running: the exit alert clears too.
    await send(agent, integrations=DOCKER, data=docker_state("healthy"))
    assert await until(lambda: _resolved_kind(hub, "docker.unexpected_exit"), 10, "the exit alert to resolve")


async def test_proxmox_quorum_lost_default_fires_and_integration_errors_are_alerts(setup):
    client, agent, tokens = setup
    hub = client.app[HUB_KEY]
    resp = await client.post("/api/v1/alerts/rules", headers=auth(tokens["admin"]), json={"name": "Integration broken", "kind": "integration.error"})
    assert resp.status == 201
    integrations = [{"domain": "proxmox", "state": "loaded", "reason": ""}, {"domain": "zfs", "state": "setup_error", "reason": "no zpool binary"}]
    await send(agent, integrations=integrations, data={"proxmox": {"cluster": {"name": "lab", "quorate": False, "nodes_online": 1, "nodes_total": 3}, "nodes": []}})
    quorum = await until(lambda: _kind(hub, "proxmox.quorum_lost", "firing"), 10, "quorum lost to fire")
    assert quorum[0]["rule_id"] == "default-proxmox-quorum" and "1 of 3 nodes online" in quorum[0]["summary"] and quorum[0]["severity"] == "critical"
    broken = await until(lambda: _kind(hub, "integration.error", "firing"), 10, "the integration error to fire")
    assert broken[0]["labels"] == {"integration": "zfs"} and "no zpool binary" in broken[0]["summary"]
    summary = (await (await client.get(f"/api/v1/nodes/{agent.node_id}", headers=auth(tokens["viewer"]))).json())["node"]
    assert summary["alerts"] == {"firing": 2, "critical": 1, "warning": 1}


async def _kind(hub, kind, state):
    return [i for i in hub.alerts.live.values() if i["kind"] == kind and i["state"] == state]


async def _resolved_kind(hub, kind):
    return [e for e in await hub.alerts.events_after(0) if e["status"] == "resolved" and e["labels"]["kind"] == kind]


async def test_offline_node_fires_node_offline_and_inhibits_its_other_alerts(aiohttp_client, tmp_path):
    config = hub_config(tmp_path, stale_after="1s", offline_after="2s")
    token = await seed_user(config, "admin", "admin")
    client = await aiohttp_client(create_app(config))
    hub = client.app[HUB_KEY]
    agent = FakeAgent(client)
    await agent.enroll()
    await agent.connect()
    resp = await client.post("/api/v1/alerts/rules", headers=auth(token), json={"name": "Late disk", "kind": "metric.threshold", "for": 3,
                              "settings": {"series": DISK, "warning": 90}})
    rule_id = (await resp.json())["id"]
    await send(agent, interval=0.2, metrics={DISK: 97.0})
    # Pending first (a loaded machine may only look once its 3 s are over: then it is firing already).
    await until(lambda: _any_state(hub, rule_id), 10, "the disk alert to be pending")
    offline = await until(lambda: _kind(hub, "node.offline", "firing"), 20, "node offline to fire")
    assert offline[0]["rule_id"] == "default-node-offline"
    fired = await until(lambda: _firing(hub, rule_id), 20, "the pending disk alert to fire on the clock")
    assert fired[0]["inhibited"] is True
    evs = await hub.alerts.events_after(0)
    disk = [e for e in evs if e["rule_id"] == rule_id]
    assert [(e["status"], e["inhibited"]) for e in disk] == [("firing", True)]
    assert [e["inhibited"] for e in evs if e["rule_id"] == "default-node-offline"] == [False]
    # Back: node offline resolves, once.
    await send(agent, interval=0.2, metrics={DISK: 50.0})
    await until(lambda: _resolved(hub, "default-node-offline"), 10, "node offline to resolve")
    offline_events = [e["status"] for e in await hub.alerts.events_after(0) if e["rule_id"] == "default-node-offline"]
    assert offline_events == ["firing", "resolved"]


async def test_silenced_firing_has_no_resolve_and_a_window_silences_too(setup):
    client, agent, tokens = setup
    hub = client.app[HUB_KEY]
    rule = {"name": "Disk", "kind": "metric.threshold", "settings": {"series": "linux_host.disk_used_percent[*]", "label": "mountpoint", "warning": 90}}
    rule_id = (await (await client.post("/api/v1/alerts/rules", headers=auth(tokens["admin"]), json=rule)).json())["id"]
    resp = await client.post("/api/v1/alerts/silences", headers=auth(tokens["operator"]), json={
        "matchers": [{"name": "alertname", "value": "Disk"}, {"name": "mountpoint", "op": "~", "value": "/s*"}], "ends_at": time.time() + 3600, "reason": "resizing /srv"})
    assert resp.status == 201, await resp.text()
    silence = await resp.json()
    assert silence["created_by"] == "user:operator-user"
    await report(agent, 95.0)
    fired = await until(lambda: _firing(hub, rule_id), 10, "the silenced alert to fire")
    assert fired[0]["silenced"] is True
    await report(agent, 10.0)
    await until(lambda: _gone(hub, rule_id), 10, "the alert to resolve")
    assert [(e["status"], e["silenced"]) for e in await hub.alerts.events_after(0) if e["rule_id"] == rule_id] == [("firing", True)]
    # A maintenance window that is open now (every minute, for an hour) covers the next one.
    resp = await client.delete(f"/api/v1/alerts/silences/{silence['id']}", headers=auth(tokens["operator"]))
    assert resp.status == 200
    resp = await client.post("/api/v1/alerts/maintenance", headers=auth(tokens["admin"]), json={"name": "always", "cron": "* * * * *", "duration": 3600, "matchers": [{"name": "node", "value": agent.node_id}]})
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["active"] is True
    await report(agent, 96.0)
    again = await until(lambda: _firing(hub, rule_id), 10, "the alert to fire in the window")
    assert again[0]["silenced"] is True


async def _any_state(hub, rule_id):
    return [i for i in hub.alerts.live.values() if i["rule_id"] == rule_id]


async def _gone(hub, rule_id):
    return not [i for i in hub.alerts.live.values() if i["rule_id"] == rule_id]


async def test_acknowledge_and_snooze_by_operators_not_viewers_and_audited(setup):
    client, agent, tokens = setup
    hub = client.app[HUB_KEY]
    rule = {"name": "Disk", "kind": "metric.threshold", "settings": {"series": DISK, "warning": 90}}
    rule_id = (await (await client.post("/api/v1/alerts/rules", headers=auth(tokens["admin"]), json=rule)).json())["id"]
    await report(agent, 95.0)
    (inst,) = await until(lambda: _firing(hub, rule_id), 10, "the alert to fire")
    url = f"/api/v1/alerts/instances/{inst['id']}"
    resp = await client.post(url + "/ack", headers=auth(tokens["viewer"]), json={"note": "mine"})
    assert resp.status == 403 and "cannot change" in (await resp.json())["error"]
    resp = await client.post(url + "/ack", headers=auth(tokens["operator"]), json={"note": "looking at it"})
    assert resp.status == 200
    assert (await resp.json())["acknowledged"]["note"] == "looking at it"
    resp = await client.post(url + "/snooze", headers=auth(tokens["operator"]), json={"for": 3600})
    body = await resp.json()
    assert resp.status == 200 and body["snoozed"] is True and body["snoozed_until"] > time.time() + 3500
    resp = await client.post(url + "/snooze", headers=auth(tokens["operator"]), json={"for": 5})
    assert resp.status == 400 and "for" in (await resp.json())["error"]
    listed = (await (await client.get("/api/v1/alerts", headers=auth(tokens["viewer"]))).json())
    assert listed["firing"] == 1 and listed["instances"][0]["acknowledged"]["by"] == "user:operator-user"
    entries = [e.action for e in await hub.store.list_audit(limit=200)]
    assert "alerts.acknowledged" in entries and "alerts.snoozed" in entries and "alerts.rule_created" in entries
    # Viewers may not edit rules; operators neither.
    for role in ("viewer", "operator"):
        resp = await client.post("/api/v1/alerts/rules", headers=auth(tokens[role]), json=rule)
        assert resp.status == 403
    resp = await client.delete(f"/api/v1/alerts/rules/{rule_id}", headers=auth(tokens["operator"]))
    assert resp.status == 403
    # Resolved: acknowledging is refused with a reason.
    await report(agent, 10.0)
    await until(lambda: _gone(hub, rule_id), 10, "the alert to resolve")
    resp = await client.post(url + "/ack", headers=auth(tokens["operator"]), json={"note": "late"})
    assert resp.status == 404 and "resolved" in (await resp.json())["error"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"kind": "metric.threshold"}, "name"),
        ({"name": "x", "kind": "metric.thresold"}, "kind 'metric.thresold' is not known"),
        ({"name": "x", "kind": "metric.threshold", "settings": {"warning": 90}}, "settings: series"),
        ({"name": "x", "kind": "metric.threshold", "settings": {"series": "disk"}}, "settings: series"),
        ({"name": "x", "kind": "metric.threshold", "settings": {"series": "linux_host.cpu_percent"}}, "give a warning or a critical threshold"),
        ({"name": "x", "kind": "metric.threshold", "settings": {"series": "linux_host.cpu_percent", "warning": 90, "warning_clear": 95}}, "settings.warning_clear (95) must be at or below settings.warning (90)"),
        ({"name": "x", "kind": "metric.threshold", "settings": {"series": "linux_host.cpu_percent", "warning": 90, "critical": 80}}, "settings.critical (80) must be past settings.warning"),
        ({"name": "x", "kind": "metric.threshold", "settings": {"series": "linux_host.cpu_percent", "warning": 90, "reducer": "avg"}}, "settings.window"),
        ({"name": "x", "kind": "metric.threshold", "settings": {"series": "linux_host.cpu_percent", "warning": 90, "reducer": "median"}}, "settings: reducer: must be one of"),
        ({"name": "x", "kind": "metric.threshold", "for": -1, "settings": {"series": "linux_host.cpu_percent", "warning": 90}}, "for"),
        ({"name": "x", "kind": "node.offline", "severity": "page-me"}, "severity: must be warning or critical"),
        ({"name": "x", "kind": "node.offline", "settings": {"after": 3}}, "takes no settings"),
        ({"name": "x", "kind": "proxmox.backup_age", "settings": {"days": 0}}, "settings: days"),
        ({"name": "x", "kind": "node.offline", "selector": {"labels": {"bad key!": "v"}}}, "selector.labels"),
        ({"name": "x", "kind": "node.offline", "selector": {"nodes": ["../etc"]}}, "selector.nodes"),
        ({"name": "x\x00y", "kind": "node.offline"}, "name: must not contain control characters"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
async def test_bad_rules_are_refused_with_the_field_named(setup, body, words):
    client, _, tokens = setup
    before = len(client.app[HUB_KEY].alerts.rules)
    resp = await client.post("/api/v1/alerts/rules", headers=auth(tokens["admin"]), json=body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert words in error, error
    assert len(client.app[HUB_KEY].alerts.rules) == before  # nothing was added


async def test_hostile_labels_matchers_and_oversized_bodies_are_refused_or_inert(setup):
    client, agent, tokens = setup
    hub = client.app[HUB_KEY]
    labels_url = f"/api/v1/nodes/{agent.node_id}/labels"
    # A value with SQL and markup in it is kept as text, never run or rendered.
    hostile = "x'); DROP TABLE alert_events; -- <script>alert(1)</script>"
    resp = await client.put(labels_url, headers=auth(tokens["admin"]), json={"labels": {"env": hostile}})
    assert resp.status == 200
    assert (await (await client.get(labels_url, headers=auth(tokens["viewer"]))).json())["labels"] == {"env": hostile}
    await hub.alerts.events_after(0)  # the table is still there
    for bad in ({"labels": {"bad key": "v"}}, {"labels": {"k": "v\n"}}, {"labels": {f"k{i}": "v" for i in range(40)}}, {"labels": {"k": "v" * 201}}):
        resp = await client.put(labels_url, headers=auth(tokens["admin"]), json=bad)
        assert resp.status == 400, bad
        assert "labels" in (await resp.json())["error"]
    resp = await client.put(labels_url, headers=auth(tokens["operator"]), json={"labels": {}})
    assert resp.status == 403
    # Matchers: only = != ~ !~, names and values bounded.
    for matchers in ([{"name": "a", "op": "=~", "value": "(a+)+$"}], [{"name": "a b", "value": "x"}], [], [{"name": "a", "value": "x"}] * 21):
        resp = await client.post("/api/v1/alerts/silences", headers=auth(tokens["operator"]), json={"matchers": matchers, "ends_at": time.time() + 60, "reason": "r"})
        assert resp.status == 400, matchers
    resp = await client.post("/api/v1/alerts/silences", headers=auth(tokens["operator"]), json={"matchers": [{"name": "a", "value": "x"}], "ends_at": time.time() - 1, "reason": "r"})
    assert resp.status == 400 and "ends_at" in (await resp.json())["error"]
    resp = await client.post("/api/v1/alerts/maintenance", headers=auth(tokens["admin"]), json={"name": "n", "cron": "every night", "duration": 600})
    assert resp.status == 400 and "cron" in (await resp.json())["error"]
    # Oversized and non-JSON bodies.
    resp = await client.post("/api/v1/alerts/rules", headers={**auth(tokens["admin"]), "Content-Type": "application/json"}, data=b'{"name": "' + b"x" * 70_000 + b'"}')
    assert resp.status == 413
    resp = await client.post("/api/v1/alerts/rules", headers={**auth(tokens["admin"]), "Content-Type": "text/plain"}, data=b"name=x")
    assert resp.status == 415
    # History filters are bound values, not SQL.
    resp = await client.get("/api/v1/alerts/history", headers=auth(tokens["viewer"]), params={"node_id": "n' OR '1'='1"})
    assert resp.status == 400
    resp = await client.get("/api/v1/alerts/history", headers=auth(tokens["viewer"]), params={"rule_id": "' OR 1=1 --"})
    assert resp.status == 200 and (await resp.json())["instances"] == []


async def test_agent_labels_from_the_hello_and_hub_labels_win(setup):
    client, agent, tokens = setup
    hub = client.app[HUB_KEY]
    await hub.hello(agent.node_id, {"hostname": "box", "facts": {}, "integrations": [], "fields": {}, "capabilities": [], "agent_version": "t", "epoch": "e1",
                                    "labels": {"env": "dev", "rack": "r1", "bad key": "dropped"}})
    assert hub.alerts.node_labels(agent.node_id) == {"env": "dev", "rack": "r1"}
    await client.put(f"/api/v1/nodes/{agent.node_id}/labels", headers=auth(tokens["admin"]), json={"labels": {"env": "prod"}})
    assert hub.alerts.node_labels(agent.node_id) == {"env": "prod", "rack": "r1"}
    # A rule selecting env=prod takes this node; the preview says so.
    body = {"name": "prod disk", "kind": "metric.threshold", "selector": {"labels": {"env": "prod"}}, "settings": {"series": DISK, "warning": 50}}
    await report(agent, 70.0)
    preview = await (await client.post("/api/v1/alerts/rules/preview", headers=auth(tokens["admin"]), json=body)).json()
    assert preview["nodes_selected"] == 1 and preview["matches"][0]["value"] == 70.0 and preview["matches"][0]["severity"] == "warning"
    body["selector"] = {"labels": {"env": "dev"}}
    preview = await (await client.post("/api/v1/alerts/rules/preview", headers=auth(tokens["admin"]), json=body)).json()
    assert preview == {"nodes_selected": 0, "matches": [], "error": None}
    assert not hub.alerts.live  # a preview keeps nothing


async def test_raise_and_resolve_alert_for_automations(setup):
    client, agent, _ = setup
    hub = client.app[HUB_KEY]
    inst = await hub.alerts.raise_alert(source="automation:a1", node_id=agent.node_id, name="Backup failed", summary="borg exited 2", severity="critical",
                                        labels={"job": "nightly"}, cause={"automation": "a1", "run": "r1", "depth": 1})
    assert inst["state"] == "firing" and inst["cause"]["automation"] == "a1" and inst["labels"] == {"job": "nightly"}
    again = await hub.alerts.raise_alert(source="automation:a1", node_id=agent.node_id, name="Backup failed", summary="borg exited 2", severity="critical", labels={"job": "nightly"})
    assert again["id"] == inst["id"]
    assert await hub.alerts.resolve_alert("automation:a1", agent.node_id, "Backup failed", {"job": "nightly"})
    assert not await hub.alerts.resolve_alert("automation:a1", agent.node_id, "Backup failed", {"job": "nightly"})
    assert [e["status"] for e in await hub.alerts.events_after(0)] == ["firing", "resolved"]


async def test_resolving_a_raised_alert_leaves_its_other_label_sets_firing(setup):
    client, agent, _ = setup
    hub = client.app[HUB_KEY]
    root = await hub.alerts.raise_alert(source="automation:a1", node_id=agent.node_id, name="Disk full", summary="/ full", severity="critical", labels={"mountpoint": "/"})
    srv = await hub.alerts.raise_alert(source="automation:a1", node_id=agent.node_id, name="Disk full", summary="/srv full", severity="critical", labels={"mountpoint": "/srv"})
    assert await hub.alerts.resolve_alert("automation:a1", agent.node_id, "Disk full", {"mountpoint": "/"})
    firing = {i["id"] for i in await hub.alerts.firing(agent.node_id)}
    assert srv["id"] in firing and root["id"] not in firing
    assert [(e["status"], e["labels"]["mountpoint"]) for e in await hub.alerts.events_after(0)] == [("firing", "/"), ("firing", "/srv"), ("resolved", "/")]


async def test_history_is_bounded_by_retention_and_live_alerts_stay(setup):
    client, agent, _ = setup
    hub = client.app[HUB_KEY]
    old = await hub.alerts.raise_alert(source="test", node_id=agent.node_id, name="Old", summary="long ago", severity="warning")
    await hub.alerts.resolve_alert("test", agent.node_id, "Old")
    live = await hub.alerts.raise_alert(source="test", node_id=agent.node_id, name="Live", summary="now", severity="critical")
    assert {i["id"] for i in await hub.alerts.history()} == {old["id"], live["id"]}
    later = time.time() + hub.config.alerts_retention + 60
    assert await hub.alerts.prune(later) == 1
    assert {i["id"] for i in await hub.alerts.history()} == {live["id"]}
    # The newest event is kept whatever its age, so a reader's cursor stays meaningful.
    events = await hub.alerts.events_after(0)
    assert [e["status"] for e in events] == ["firing"] and events[0]["instance_id"] == live["id"]


def test_maintenance_windows_follow_cron_in_the_hubs_time_zone():
    from datetime import datetime
    from types import SimpleNamespace
    from zoneinfo import ZoneInfo

    from roost.core.hub.alerts import AlertEngine

    engine = AlertEngine(SimpleNamespace(config=SimpleNamespace(timezone="Europe/Berlin")))
    window = {"name": "nightly", "cron": "0 2 * * *", "duration": 3600, "matchers": [{"name": "node_name", "op": "~", "value": "nas*"}], "enabled": True}
    engine.windows = {"w1": window}
    berlin = ZoneInfo("Europe/Berlin")
    at = lambda h, m: datetime(2026, 7, 1, h, m, tzinfo=berlin).timestamp()  # noqa: E731
    start, end = engine.window_active(window, at(2, 30))
    assert (start, end) == (at(2, 0), at(3, 0))
    assert engine.window_active(window, at(3, 0)) is None and engine.window_active(window, at(1, 59)) is None
    # 02:30 in Berlin is 00:30 UTC in summer: the window is the hub's night, not UTC's.
    assert engine.in_maintenance({"node_name": "nas-1"}, at(2, 30)) and not engine.in_maintenance({"node_name": "web"}, at(2, 30))
    assert engine.next_window(window, at(2, 30)) == at(2, 0) + 86400
    engine.windows["w1"] = {**window, "enabled": False}
    assert not engine.in_maintenance({"node_name": "nas-1"}, at(2, 30))
