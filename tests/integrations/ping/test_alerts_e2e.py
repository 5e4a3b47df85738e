"""End to end through the real alert engine: a check that is not pinged in time fires the default ping rule on its
node, and the ping that comes at last resolves it, each exactly once in alert_events.

The hub, its engine (and its 1 s timer), the store and the agent socket are real; only the ping integration's clock
is moved on, so "two hours later" takes no two hours (the engine's own clock stays real, so the node stays online).
"""

from __future__ import annotations

import pytest
from support import until
from support_auth import seed_user
from support_hub import FakeAgent, hub_config

from roost.core.hub.app import HUB_KEY, create_app
from roost.integrations.ping import SERVICE

API = "/api/v1/integrations/ping/checks"


@pytest.fixture
async def setup(aiohttp_client, tmp_path):
    config = hub_config(tmp_path)
    token = await seed_user(config, "operator", "operator")
    client = await aiohttp_client(create_app(config), headers={"Authorization": f"Bearer {token}"})
    agent = FakeAgent(client)
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    await agent.send(agent.report())
    await agent.expect("ack")
    hub = client.app[HUB_KEY]
    [ping] = [i for i in hub.manager.integrations.values() if i.domain == "ping"]
    return client, agent, hub, ping.context.data[SERVICE]


async def ping_events(hub):
    return [e for e in await hub.alerts.events_after(0) if e["rule_id"] == "default-ping-check"]


async def test_a_check_not_pinged_in_time_fires_and_a_ping_resolves_it(setup):
    client, agent, hub, svc = setup
    assert "default-ping-check" in hub.alerts.rules
    resp = await client.post(API, json={"name": "nightly borg", "node_id": agent.node_id, "period": 3600, "grace": 600})
    assert resp.status == 200, await resp.text()
    check = await resp.json()
    base = svc.clock()
    async with client.get(check["ping_path"]) as r:
        assert r.status == 200
    svc.clock = lambda: base + 3600 + 300  # late, still within grace: no alert
    await until(lambda: _ticked(hub), 10, "two timer rounds of the alert engine")
    assert await ping_events(hub) == []

    svc.clock = lambda: base + 3600 + 601  # past period and grace
    firing = await until(lambda: ping_events(hub), 15, "the ping check's alert to fire on the engine's timer")
    assert [e["status"] for e in firing] == ["firing"]
    event = firing[0]
    assert event["node_id"] == agent.node_id and event["severity"] == "warning"
    assert event["labels"]["check"] == "nightly borg" and event["labels"]["problem"] == "late"
    assert "nightly borg" in event["annotations"]["summary"] and "late" in event["annotations"]["summary"]
    assert check["ping_path"].removeprefix("/ping/") not in str(event)  # the URL's secret goes into no alert
    assert hub.alerts.counts(agent.node_id)["firing"] >= 1

    async with client.post(check["ping_path"], data=b"done") as r:  # the job ran at last
        assert r.status == 200
    await until(lambda: _statuses(hub, ["firing", "resolved"]), 15, "the ping to resolve the alert")
    await until(lambda: _ticked(hub), 10, "two more timer rounds")
    assert [e["status"] for e in await ping_events(hub)] == ["firing", "resolved"]  # once each


async def test_a_failed_run_fires_critical_and_the_next_success_resolves_it(setup):
    client, agent, hub, svc = setup
    resp = await client.post(API, json={"name": "vzdump", "node_id": agent.node_id, "period": 86400, "grace": 3600})
    check = await resp.json()
    async with client.post(check["ping_path"] + "/2", data=b"ERROR: Backup of VM 100 failed") as r:
        assert r.status == 200
    firing = await until(lambda: ping_events(hub), 15, "the failed check's alert to fire")
    assert firing[0]["severity"] == "critical" and firing[0]["labels"]["problem"] == "failed"
    assert "exit status 2" in firing[0]["annotations"]["summary"]
    async with client.get(check["ping_path"] + "/0") as r:
        assert r.status == 200
    await until(lambda: _statuses(hub, ["firing", "resolved"]), 15, "the success to resolve it")


async def _statuses(hub, wanted):
    return [e["status"] for e in await ping_events(hub)] == wanted


_seen: dict[int, int] = {}


async def _ticked(hub):
    """True once the engine has judged twice more since the first call for this hub (its timer runs every second)."""
    start = _seen.setdefault(id(hub), hub.alerts.evaluations)
    if hub.alerts.evaluations >= start + 2:
        _seen.pop(id(hub))
        return True
    return False
