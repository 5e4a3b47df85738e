"""The agent runtime and its WebSocket uplink against a real hub app: delivery, outage, backlog in order."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp.test_utils import TestServer
from support import free_port

from roost.agent.runtime import AgentRuntime
from roost.agent.uplink import Backoff, WebSocketUplink
from roost.core.config import AgentSettings, load_hub_config
from roost.core.hub.app import HUB_KEY, create_app

TICKER = '''
from roost.core import hookimpl

@hookimpl
def roost_collect(ctx):
    ctx.data["n"] = ctx.data.get("n", 0) + 1
    return {"state": {"n": ctx.data["n"]}, "metrics": {"tick": ctx.data["n"]}}
'''


def make_ticker(root):
    folder = root / "custom_integrations" / "ticker"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"domain": "ticker", "name": "Ticker", "version": "1.0", "roles": ["agent"]}))
    (folder / "__init__.py").write_text(TICKER)


async def wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def started_hub(tmp_path):
    """A real hub app on a free loopback port with its data in tmp_path; (port, config, server, hub)."""
    port = free_port()
    config = load_hub_config(None, overrides={"hub": {"data_dir": str(tmp_path / "hub")}, "agent": {"enabled": False}})
    server = TestServer(create_app(config), host="127.0.0.1", port=port)
    await server.start_server()
    return port, config, server, server.app[HUB_KEY]


def ticking_agent(agent_dir):
    """An agent runtime whose only integration is the test's ticker, collecting every 0.1 s."""
    make_ticker(agent_dir)
    return AgentRuntime(data_dir=agent_dir, settings=AgentSettings(interval=0.1, heartbeat=1), integrations_config={"linux_host": {"enabled": False}}, entry_points=False)


async def test_backlog_from_a_hub_outage_arrives_complete_and_in_order(tmp_path):
    port, config, server, hub = await started_hub(tmp_path)

    agent_dir = tmp_path / "agent"
    make_ticker(agent_dir)
    rt = AgentRuntime(
        data_dir=agent_dir,
        settings=AgentSettings(interval=0.1, heartbeat=1),
        integrations_config={"linux_host": {"enabled": False}},
        entry_points=False,
    )
    # The ticker declares no READS, so its reports need ticker.read, granted here by name as an admin would.
    node = await hub.add_node(public_key=rt.identity.public_key, hostname="t", name="t", facts={}, grants=["ticker.read"])
    rt.node_id = node.node_id
    await rt.start()
    uplink = WebSocketUplink(f"http://127.0.0.1:{port}", backoff=Backoff(0.05, 0.2))
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(uplink, stop))
    try:
        await wait_until(lambda: _true(hub.ingestor.persisted >= 3))
        await server.close()
        before = rt.cycles
        await wait_until(lambda: _true(rt.cycles >= before + 8))
        assert len(rt.spool) >= 8  # collected while the hub was away

        server = TestServer(create_app(config), host="127.0.0.1", port=port)
        await server.start_server()
        hub = server.app[HUB_KEY]
        target = rt.cycles + 3
        await wait_until(lambda: _true(hub.ingestor.persisted > 0 and len(rt.spool) <= 1 and rt.cycles >= target))
        hist = await hub.store.history(rt.node_id, ["ticker.tick"], 0, time.time() + 10, "raw")
        ticks = [p[1] for p in hist["ticker.tick"]]
        assert ticks == [float(i) for i in range(1, len(ticks) + 1)], ticks  # none missing, none twice, in order
        assert len(ticks) >= target - 1
        detail = await hub.node_detail(rt.node_id)
        assert detail["node"]["status"] == "online"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await rt.stop()
        await server.close()


async def test_agent_with_a_revoked_key_keeps_spooling_and_says_why(tmp_path, caplog):
    port, config, server, hub = await started_hub(tmp_path)
    agent_dir = tmp_path / "agent"
    rt = ticking_agent(agent_dir)
    node = await hub.add_node(public_key=rt.identity.public_key, hostname="t", name="t", facts={})
    await hub.revoke_node(node.node_id)
    rt.node_id = node.node_id
    await rt.start()
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(WebSocketUplink(f"http://127.0.0.1:{port}", backoff=Backoff(0.05, 0.2)), stop))
    try:
        await wait_until(lambda: _true(rt.cycles >= 5))
        assert hub.ingestor.persisted == 0
        assert len(rt.spool) >= 5
        assert any("hub rejected this node" in r.getMessage() for r in caplog.records)
    finally:
        stop.set()
        # The run ends after its current reconnect attempt and collection: a loaded machine needs more than a few seconds.
        await asyncio.wait_for(task, 60)
        await rt.stop()
        await server.close()


async def _true(value: bool) -> bool:
    return value


async def test_the_agent_rotates_its_key_over_its_connection(tmp_path):
    port, config, server, hub = await started_hub(tmp_path)
    agent_dir = tmp_path / "agent"
    make_ticker(agent_dir)
    settings = AgentSettings(interval=0.1, heartbeat=1)
    rt = AgentRuntime(data_dir=agent_dir, settings=settings, integrations_config={"linux_host": {"enabled": False}}, entry_points=False)
    old_key = rt.identity.public_key
    node = await hub.add_node(public_key=old_key, hostname="t", name="t", facts={})
    rt.node_id = node.node_id
    await rt.start()
    rt.prepare_key_rotation()
    new_key = rt.next_identity.public_key
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(WebSocketUplink(f"http://127.0.0.1:{port}", backoff=Backoff(0.05, 0.2)), stop))
    try:
        await wait_until(lambda: _true(hub.node(node.node_id).public_key == new_key and rt.next_identity is None))
        assert rt.identity.public_key == new_key
        assert not (agent_dir / "node_key.pem.next").exists()
        from roost.core.identity import Identity

        assert Identity.load(agent_dir / "node_key.pem").public_key == new_key  # survives a restart
        assert (await hub.store.get_node(node.node_id)).public_key == new_key
        before = hub.ingestor.persisted
        await wait_until(lambda: _true(hub.ingestor.persisted > before + 2))  # still reporting with the new key
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await rt.stop()
        await server.close()


def test_an_oversized_report_keeps_the_rest_and_says_what_was_left_out():
    from roost.agent.runtime import MAX_REPORT_BYTES, _fit

    body = {"collected_at": 1.0, "data": {"huge": {"blob": "x" * (2 * MAX_REPORT_BYTES)}, "small": {"ok": 1}}, "metrics": {"small.ok": 1.0}}
    _fit(body)
    assert "left out" in body["data"]["huge"]["error"] and body["data"]["small"] == {"ok": 1} and body["metrics"] == {"small.ok": 1.0}
    import json

    assert len(json.dumps(body)) <= MAX_REPORT_BYTES


async def test_an_agent_enrolled_before_hub_keys_pins_the_key_of_its_first_proven_connect(tmp_path, caplog):
    from roost.agent.runtime import load_state, save_state
    from roost.core.identity import Identity

    port, config, server, hub = await started_hub(tmp_path)
    agent_dir = tmp_path / "agent"
    rt = ticking_agent(agent_dir)
    node = await hub.add_node(public_key=rt.identity.public_key, hostname="t", name="t", facts={})
    rt.node_id = node.node_id
    url = f"http://127.0.0.1:{port}"
    # What an agent enrolled by an older Roost kept: the hub id, no hub key.
    save_state(agent_dir, {"node_id": node.node_id, "hub_id": hub.hub_id, "hub": url})
    await rt.start()
    stop = asyncio.Event()
    uplink = WebSocketUplink(url, backoff=Backoff(0.05, 0.2), hub_id=hub.hub_id)
    task = asyncio.create_task(rt.run(uplink, stop))
    try:
        await wait_until(lambda: _true(load_state(agent_dir).get("hub_key") == hub.identity.public_key))
        assert "plain http: trusted on first use" in caplog.text
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)

    # From then on a hub with another identity key (same id, same URL) is refused, and nothing it sends is taken.
    hub.identity = Identity.generate()
    rt.grants = []
    stop = asyncio.Event()
    pinned = WebSocketUplink(url, backoff=Backoff(0.05, 0.2), hub_id=load_state(agent_dir)["hub_id"], hub_key=load_state(agent_dir)["hub_key"])
    task = asyncio.create_task(rt.run(pinned, stop))
    try:
        await wait_until(lambda: _true("but this agent pinned hub key" in caplog.text))
        assert not pinned.connected.is_set() and rt.grants == []
        assert load_state(agent_dir)["hub_key"] != hub.identity.public_key
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await rt.stop()
        await server.close()
