"""Bounded series and real actions only: one node flooding the hub with metric names, or a schedule for a made-up action."""

from __future__ import annotations

import time

import pytest

from roost.core.config import ConfigError, load_hub_config
from roost.core.hub.app import HUB_KEY


async def messages_until_ack(agent, seq: int, timeout: float = 10) -> list[dict]:
    """Every message the hub sends until it acknowledges report ``seq`` (errors included)."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        msg = await agent.ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
        got.append(msg)
        if msg["type"] == "ack" and msg["seq"] >= seq:
            return got


async def connected(client, agent_for):
    agent = agent_for(client)
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    return agent


async def series_of(hub, node_id: str) -> list[str]:
    return await hub.store.metric_series(node_id)


async def test_series_over_the_limit_are_refused_with_a_reason_and_the_rest_is_stored(make_hub, agent_for):
    client = await make_hub(max_series_per_node=20, max_metric_name=40)
    hub = client.app[HUB_KEY]
    agent = await connected(client, agent_for)
    neighbour = await connected(client, agent_for)

    await agent.send(agent.report(metrics={f"t.m{i}": float(i) for i in range(15)}))
    first = await messages_until_ack(agent, 1)
    assert [m["type"] for m in first] == ["ack"]

    # Ten new names (five over the limit), one known one, a name too long, and a state.
    metrics = {f"t.m{i}": float(i) for i in range(15, 25)} | {"t.m0": 100.0, "t." + "x" * 60: 1.0}
    await agent.send(agent.report(metrics=metrics, data={"linux_host": {"cpu": {"percent": 99.0}}}))
    second = await messages_until_ack(agent, 2)
    [error] = [m for m in second if m["type"] == "error"]
    assert error["code"] == "limit_exceeded"
    assert "report 2: 5 new metric series refused" in error["message"] and "max_series_per_node" in error["message"]
    assert "longer than 40 characters" in error["message"] and "max_metric_name" in error["message"]
    assert "the rest of the report was stored" in error["message"]
    assert not agent.ws.closed  # not fatal: the node keeps reporting

    # What was within the limits is stored; what was over is not.
    assert len(await series_of(hub, agent.node_id)) == 20
    state = await hub.store.latest_state(agent.node_id)
    assert state.data["linux_host"]["cpu"]["percent"] == 99.0 and state.metrics["t.m0"] == 100.0
    history = await hub.store.history(agent.node_id, ["t.m19", "t.m20"], 0, time.time() + 60, "raw")
    assert history.get("t.m19") and not history.get("t.m20")

    # The node says so on its page and in the API; the neighbour is untouched.
    detail = await (await client.get(f"/api/v1/nodes/{agent.node_id}")).json()
    assert detail["node"]["limits"]["new_series_refused"] == 5 and detail["node"]["limits"]["long_names_refused"] == 1
    assert "max_series_per_node" in detail["node"]["limits"]["message"]
    page = await client.get(f"/nodes/{agent.node_id}")
    assert "Over the hub&#39;s series limits" in await page.text() or "Over the hub's series limits" in await page.text()
    await neighbour.send(neighbour.report(metrics={f"n.m{i}": 1.0 for i in range(20)}))
    assert [m["type"] for m in await messages_until_ack(neighbour, 1)] == ["ack"]
    assert len(await series_of(hub, neighbour.node_id)) == 20
    assert (await (await client.get(f"/api/v1/nodes/{neighbour.node_id}")).json())["node"]["limits"] is None

    # Back within the limits, the state clears.
    await agent.send(agent.report(metrics={"t.m1": 1.0}))
    assert [m["type"] for m in await messages_until_ack(agent, 3)] == ["ack"]
    assert (await (await client.get(f"/api/v1/nodes/{agent.node_id}")).json())["node"]["limits"] is None


async def test_the_flood_from_the_issue_is_cut_to_the_default_limits(client, agent_for):
    """5 reports of 5,000 unique 150-character names once made 25,000 series; now none of those is kept."""
    hub = client.app[HUB_KEY]
    agent = await connected(client, agent_for)
    for n in range(3):
        flood = {f"x.{n}.{i:05d}".ljust(150, "y"): 1.0 for i in range(4990)} | {"linux_host.cpu_percent": 5.0}
        await agent.send(agent.report(metrics=flood))
        got = await messages_until_ack(agent, n + 1, timeout=30)
        assert any(m["type"] == "error" and "4990 metric name(s) longer than 128 characters" in m["message"] for m in got)
    assert await series_of(hub, agent.node_id) == ["linux_host.cpu_percent"]
    # Short names still stop at the per-node cap.
    for n in range(3):
        await agent.send(agent.report(metrics={f"s.{n}.{i}": 1.0 for i in range(1500)}))
        await messages_until_ack(agent, 4 + n, timeout=30)
    assert len(await series_of(hub, agent.node_id)) == 3000


def test_the_limits_are_config_values_with_checked_ranges(tmp_path):
    config = load_hub_config(None, overrides={"hub": {"data_dir": str(tmp_path)}})
    assert (config.max_series_per_node, config.max_metric_name) == (3000, 128)
    config = load_hub_config(None, overrides={"hub": {"data_dir": str(tmp_path), "max_series_per_node": 500, "max_metric_name": 64}})
    assert (config.max_series_per_node, config.max_metric_name) == (500, 64)
    for key, value in (("max_series_per_node", 0), ("max_metric_name", 1000)):
        with pytest.raises(ConfigError, match=f"hub.{key}"):
            load_hub_config(None, overrides={"hub": {"data_dir": str(tmp_path), key: value}})


# ------------------------------------------------------------------ schedules


async def test_a_schedule_for_an_action_no_integration_has_is_refused_and_not_stored(client, agent_for):
    hub = client.app[HUB_KEY]
    offline = agent_for(client)
    await offline.enroll()  # known to the hub, never connected: its actions are unknown

    async def schedule(node_id: str, action: str):
        return await client.post("/api/v1/schedules", json={"node_id": node_id, "action": action, "cron": "0 3 * * *"})

    for action in ("__class__", "__init__.__globals__", "Services.Restart", "x"):
        resp = await schedule(offline.node_id, action)
        assert resp.status == 400, (action, await resp.text())
        assert "is not an action name" in (await resp.json())["error"] or "at least 3" in (await resp.json())["error"]
    resp = await schedule(offline.node_id, "nosuch.thing")
    assert resp.status == 400 and "no integration 'nosuch'" in (await resp.json())["error"]
    assert await hub.store.list_schedules(None) == []

    # A node that said what it offers: only those.
    online = await connected(client, agent_for)
    resp = await schedule(online.node_id, "services.restart")
    assert resp.status == 400 and "offers no action 'services.restart'" in (await resp.json())["error"]
    assert await hub.store.list_schedules(None) == []

    # A real integration's action, for a node not connected yet, is still allowed.
    resp = await schedule(offline.node_id, "services.status")
    assert resp.status == 201, await resp.text()
    assert [s.action for s in await hub.store.list_schedules(None)] == ["services.status"]


async def test_a_push_over_the_limits_is_stored_without_the_refused_metrics_and_says_so(make_hub):
    client = await make_hub(push=True, max_series_per_node=10)
    created = await client.post("/api/v1/push-tokens", json={"name": "nas"})
    token = (await created.json())["token"]
    body = {"collected_at": time.time(), "data": {"docker": {"containers": [{"name": "web", "state": "running"}]}},
            "metrics": {f"docker.m{i}": 1.0 for i in range(15)}}
    resp = await client.post("/api/v1/push/docker", json=body, headers={"Authorization": f"Bearer {token}"})
    answer = await resp.json()
    assert resp.status == 200 and answer["accepted"] is True, answer
    assert "5 new metric series refused" in answer["refused"] and "max_series_per_node" in answer["refused"]
    hub = client.app[HUB_KEY]
    assert len(await hub.store.metric_series(answer["node_id"])) == 10
    assert (await hub.store.latest_state(answer["node_id"])).data["docker"]["containers"][0]["name"] == "web"
