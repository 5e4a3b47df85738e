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
