"""Zeroconf on loopback: the hub announces itself with its CA fingerprint, an unpaired agent is listed as discovered."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer
from support import free_port
from support_hub import hub_config

from roost.agent.pairing import PairingFailed, find_hub
from roost.core.discovery import AGENT_SERVICE, HUB_SERVICE, Announcer, Browser
from roost.core.hub.app import HUB_KEY, create_app
from roost.core.identity import Identity, fingerprint

LOOPBACK = ["127.0.0.1"]


async def seen_on_loopback(hub_id: str, timeout: float = 20.0):
    """The hub announcing itself with this id, as a browser on loopback sees it; waits for that event, bounded."""
    watcher = Browser(HUB_SERVICE, interfaces=LOOPBACK)
    await watcher.start()
    try:
        for _ in range(int(timeout / 0.05)):
            found = [f for f in watcher.found.values() if f.properties.get("id") == hub_id]
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"hub {hub_id} never showed on loopback within {timeout:g} s")
    finally:
        await watcher.stop()


async def test_hub_announces_itself_and_lists_unpaired_agents(tmp_path):
    port = free_port()
    config = hub_config(tmp_path, discovery=True, discovery_interfaces=LOOPBACK, port=port)
    server = TestServer(create_app(config), host="127.0.0.1", port=port)
    await server.start_server()
    hub = server.app[HUB_KEY]
    key = Identity.generate().public_key
    agent = Announcer(AGENT_SERVICE, "pi-garage", 9, {"key": fingerprint(key), "hostname": "pi-garage"}, interfaces=LOOPBACK)
    try:
        # Other hubs of concurrent test runs may announce on loopback too: pick ours by id, once it shows (bounded).
        found = await seen_on_loopback(hub.hub_id)
        assert found.port == port and found.addresses == ("127.0.0.1",)
        assert found.properties["id"] == hub.hub_id
        assert found.properties["ca"] == hub.ca_fingerprint  # a hint the agent checks against what the hub presents
        await agent.start()
        for _ in range(60):
            if hub.pairing.discovered():
                break
            await asyncio.sleep(0.1)
        [listed] = hub.pairing.discovered()
        assert listed["hostname"] == "pi-garage" and listed["key_fingerprint"] == fingerprint(key)
    finally:
        await agent.stop()
        await server.close()


async def test_several_hubs_is_a_clear_error():
    # (Other test processes may announce hubs on loopback too; that only adds to "several".)
    one = Announcer(HUB_SERVICE, "hub-a", 8765, {"id": "ha", "ca": "aa"}, interfaces=LOOPBACK)
    two = Announcer(HUB_SERVICE, "hub-b", 8766, {"id": "hb", "ca": "bb"}, interfaces=LOOPBACK)
    await one.start()
    await two.start()
    try:
        # Wait until both announcements can be seen (an event, bounded), so a busy machine cannot make it one hub.
        watcher = Browser(HUB_SERVICE, interfaces=LOOPBACK)
        await watcher.start()
        try:
            for _ in range(400):
                if {"ha", "hb"} <= {f.properties.get("id") for f in watcher.found.values()}:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the two hubs' announcements never showed on loopback within 20 s")
        finally:
            await watcher.stop()
        try:
            await find_hub(interfaces=LOOPBACK, timeout=2.0)
        except PairingFailed as err:
            assert "several" in str(err) and "--hub" in str(err) and "8765" in str(err) and "8766" in str(err)
        else:
            raise AssertionError("several hubs must not be chosen between silently")
    finally:
        await one.stop()
        await two.stop()
