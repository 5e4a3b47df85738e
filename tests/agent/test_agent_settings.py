"""Integration settings pushed from the hub to an agent like grants: sent on connect and on change, checked, kept, and a report on request."""

from __future__ import annotations

import asyncio
import json
import logging
import threading

from roost.agent.runtime import SETTINGS_FILE, AgentRuntime
from roost.agent.uplink import Backoff, WebSocketUplink
from roost.core.config import AgentSettings

from .test_uplink import _true, started_hub, wait_until

ECHO = '''
import voluptuous as vol
from roost.core import hookimpl
from roost.core.reads import Reads

READS = Reads(state={"*": "echo.read"}, metrics={"*": "echo.read"})
SETTINGS_SCHEMA = vol.Schema({vol.Required("colour"): vol.In(["red", "green"])})

@hookimpl
def roost_setup(ctx):
    ctx.data["seen_at_setup"] = dict(ctx.settings)

@hookimpl
def roost_collect(ctx):
    return {"state": {"settings": ctx.settings, "at_setup": ctx.data["seen_at_setup"]}}
'''
PLAIN = '''
from roost.core import hookimpl

@hookimpl
def roost_collect(ctx):
    return {"state": {"settings": ctx.settings}}
'''


def make_agent(agent_dir, interval=0.2):
    for domain, code in (("echo", ECHO), ("plain", PLAIN)):
        folder = agent_dir / "custom_integrations" / domain
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text(json.dumps({"domain": domain, "name": domain, "version": "1.0", "roles": ["agent"]}))
        (folder / "__init__.py").write_text(code)
    return AgentRuntime(data_dir=agent_dir, settings=AgentSettings(interval=interval, heartbeat=1), integrations_config={"linux_host": {"enabled": False}}, entry_points=False)


async def _state(hub, node_id, domain):
    detail = await hub.node_detail(node_id)
    return ((detail or {}).get("state") or {}).get(domain)


async def test_settings_reach_the_agent_now_and_on_every_connect(tmp_path, caplog):
    port, _config, server, hub = await started_hub(tmp_path)
    rt = make_agent(tmp_path / "agent")
    node = await hub.add_node(public_key=rt.identity.public_key, hostname="t", name="t", facts={}, grants=["echo.read", "plain.read"])
    rt.node_id = node.node_id
    # Kept on the hub before the agent ever connected: sent with the grants on its first connect.
    await hub.set_agent_settings(node.node_id, "echo", {"colour": "red"})
    await rt.start()
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(WebSocketUplink(f"http://127.0.0.1:{port}", backoff=Backoff(0.05, 0.2)), stop))
    try:
        await wait_until(lambda: _true_state(hub, node.node_id, "echo", {"colour": "red"}))
        # Changed while connected: pushed at once.
        await hub.set_agent_settings(node.node_id, "echo", {"colour": "green"})
        await wait_until(lambda: _true_state(hub, node.node_id, "echo", {"colour": "green"}))
        assert json.loads((tmp_path / "agent" / SETTINGS_FILE).read_text()) == {"echo": {"colour": "green"}}
        # Refused by the integration's schema: the agent keeps what it had and says why.
        with caplog.at_level(logging.ERROR, logger="roost.agent.runtime"):
            await hub.set_agent_settings(node.node_id, "echo", {"colour": "blue"})
            await wait_until(lambda: _true("refuses" in caplog.text))
        assert "colour" in caplog.text and "keeping the ones it had" in caplog.text
        # An integration without a SETTINGS_SCHEMA takes nothing from the hub.
        await hub.set_agent_settings(node.node_id, "plain", {"anything": 1})
        await wait_until(lambda: _true("takes none from the hub" in caplog.text))
        cycles = rt.cycles
        await wait_until(lambda: _true(rt.cycles >= cycles + 2))
        assert (await _state(hub, node.node_id, "echo"))["settings"] == {"colour": "green"}
        assert (await _state(hub, node.node_id, "plain"))["settings"] == {}
        assert json.loads((tmp_path / "agent" / SETTINGS_FILE).read_text()) == {"echo": {"colour": "green"}}
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await rt.stop()
        await server.close()


async def _true_state(hub, node_id, domain, expected):
    state = await _state(hub, node_id, domain)
    return isinstance(state, dict) and state.get("settings") == expected


async def test_settings_hold_across_a_restart_without_the_hub(tmp_path):
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    (agent_dir / SETTINGS_FILE).write_text(json.dumps({"echo": {"colour": "red"}, "plain": {"x": 1}}))
    rt = make_agent(agent_dir)
    await rt.start()
    try:
        echo = rt.manager.integrations["echo"].context
        # Applied before setup, so the integration's first look already sees them.
        assert echo.settings == {"colour": "red"} and echo.data["seen_at_setup"] == {"colour": "red"}
        assert rt.manager.integrations["plain"].context.settings == {}
    finally:
        await rt.stop()


async def test_report_now_starts_a_cycle_at_once_from_any_thread(tmp_path):
    rt = make_agent(tmp_path / "agent", interval=3600)
    await rt.start()
    stop = asyncio.Event()
    task = asyncio.create_task(rt.collect_loop(stop))
    try:
        await wait_until(lambda: _true(rt.cycles == 1))
        ctx = rt.manager.integrations["echo"].context
        # Many calls from another thread before the loop runs make one cycle, not many.
        thread = threading.Thread(target=lambda: [ctx.report_now() for _ in range(50)])
        thread.start()
        thread.join()
        await wait_until(lambda: _true(rt.cycles >= 2), timeout=10)
        await asyncio.sleep(0.3)
        assert rt.cycles == 2
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await rt.stop()
