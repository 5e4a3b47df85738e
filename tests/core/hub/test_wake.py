"""Waking a node from the hub: MACs remembered from its facts and reports, sent by the hub or relayed by an agent, roles, audit."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import psutil
import pytest
from support_actions import ActionRig
from support_hub import FakeAgent

from roost.core.hub.app import HUB_KEY

# A NIC with a burned-in address, and a docker bridge with a locally administered one.
MACS = {"eno1": "00:1B:21:3A:4F:01", "docker0": "02:42:ac:11:00:01", "lo": "00:00:00:00:00:00"}
NIC = b"\xff" * 6 + bytes.fromhex("001b213a4f01") * 16


@pytest.fixture
def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


async def received(sock: socket.socket, timeout: float = 5.0) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1024), timeout)


async def offline_node(hub, macs=MACS, name="nas"):
    from roost.core.identity import Identity

    return await hub.add_node(public_key=Identity.generate().public_key, hostname=name, name=name, facts={"macs": macs}, grants=[])


async def test_the_hub_wakes_an_offline_node_by_the_macs_in_its_facts(make_hub, udp):
    port = udp.getsockname()[1]
    client = await make_hub(as_role="operator", wol_broadcast="127.0.0.1", wol_port=port)
    hub = client.app[HUB_KEY]
    node = await offline_node(hub)
    info = await (await client.get(f"/api/v1/nodes/{node.node_id}/wake")).json()
    assert info["status"] != "online" and info["targets"] == ["00:1b:21:3a:4f:01"]
    assert {m["interface"]: m["universal"] for m in info["macs"]} == {"docker0": False, "eno1": True}
    assert info["hub"]["broadcast"] == "127.0.0.1" and info["hub"]["port"] == port and info["relays"] == []
    # What a wake may use: the configured target, 7 and 9, and the hub's own networks (always the limited broadcast).
    assert {"127.0.0.1", "255.255.255.255"} <= set(info["hub"]["allowed"]["broadcasts"]) and info["hub"]["allowed"]["ports"] == sorted({7, 9, port})
    assert info["wakes_per_minute"] == 6
    resp = await client.post(f"/api/v1/nodes/{node.node_id}/wake", json={})
    body = await resp.json()
    assert resp.status == 200, body
    assert body == {"node_id": node.node_id, "via": "hub", "macs": ["00:1b:21:3a:4f:01"], "broadcast": "127.0.0.1", "port": port}
    assert await received(udp) == NIC  # byte-exact, and only the NIC: the bridge's MAC wakes nothing
    entry = (await hub.store.list_audit(limit=10))[0]
    assert entry.action == "node.wake" and entry.actor.startswith("token:") and entry.target == f"node:{node.node_id}"
    assert entry.details["via"] == "hub" and entry.details["macs"] == ["00:1b:21:3a:4f:01"]
    # One chosen MAC, and a per-request port.
    resp = await client.post(f"/api/v1/nodes/{node.node_id}/wake", json={"mac": "02-42-AC-11-00-01", "port": port})
    assert resp.status == 200 and await received(udp) == b"\xff" * 6 + bytes.fromhex("0242ac110001") * 16


async def test_macs_come_from_the_latest_report_too(make_hub, udp):
    port = udp.getsockname()[1]
    client = await make_hub(wol_broadcast="127.0.0.1", wol_port=port)
    agent = FakeAgent(client)
    await agent.enroll()
    await agent.connect()
    report = agent.report(data={"linux_host": {"facts": {"macs": {"enp3s0": "a8:a1:59:00:11:22"}}}})
    await agent.send(report)
    await agent.expect("ack")
    await agent.ws.close()
    resp = await client.post(f"/api/v1/nodes/{agent.node_id}/wake")
    assert resp.status == 200 and (await resp.json())["macs"] == ["a8:a1:59:00:11:22"]
    assert await received(udp) == b"\xff" * 6 + bytes.fromhex("a8a159001122") * 16


async def test_refusals(make_hub):
    client = await make_hub()
    hub = client.app[HUB_KEY]
    node = await offline_node(hub)
    bare = await offline_node(hub, macs={}, name="bare")
    cases = [
        ("/api/v1/nodes/nnope/wake", {}, 404, "no active node"),
        (f"/api/v1/nodes/{bare.node_id}/wake", {}, 409, "no MAC address is known"),
        (f"/api/v1/nodes/{node.node_id}/wake", {"mac": "00:11:22:33:44:55"}, 400, "not a MAC address nas reported"),
        (f"/api/v1/nodes/{node.node_id}/wake", {"mac": "ff:ff:ff:ff:ff:ff"}, 400, "one machine"),
        (f"/api/v1/nodes/{node.node_id}/wake", {"broadcast": "lan.example"}, 400, "IP address"),
        (f"/api/v1/nodes/{node.node_id}/wake", {"via": node.node_id}, 400, "cannot relay its own"),
        (f"/api/v1/nodes/{node.node_id}/wake", {"via": "nnope"}, 404, "no active relay"),
        (f"/api/v1/nodes/{node.node_id}/wake", {"via": bare.node_id}, 409, "does not offer action 'wol.send'"),
    ]
    for path, body, status, why in cases:
        resp = await client.post(path, json=body)
        assert resp.status == status and why in (await resp.json())["error"], (path, body, await resp.text())
    viewer = await make_hub(as_role="viewer")
    assert (await viewer.post(f"/api/v1/nodes/{node.node_id}/wake", json={})).status == 403
    assert (await viewer.get(f"/api/v1/nodes/{node.node_id}/wake")).status == 200


async def test_a_relay_agent_on_the_lan_wakes_the_node(tmp_path, udp):
    port = udp.getsockname()[1]
    rig = ActionRig(tmp_path, {"wol": {"broadcast": "127.0.0.1", "port": port}}, grants=["network.wol.send"])
    await rig.start(api_role="operator")
    try:
        node = await offline_node(rig.hub)
        status, info = await rig.api("GET", f"/api/v1/nodes/{node.node_id}/wake")
        assert status == 200 and info["relays"] == [{"id": rig.node_id, "name": "box"}]
        status, body = await rig.api("POST", f"/api/v1/nodes/{node.node_id}/wake", json={"via": rig.node_id})
        assert status == 202, body
        assert body["via"] == rig.node_id and [j["action"] for j in body["jobs"]] == ["wol.send"]
        done = await rig.final(body["jobs"][0]["id"])
        assert done.state == "succeeded" and done.params == {"mac": "00:1b:21:3a:4f:01"} and done.created_by.startswith("token:")
        assert await received(udp) == NIC
        wakes = [e for e in await rig.hub.store.list_audit(limit=50) if e.action == "node.wake"]
        assert wakes and wakes[0].details["via"] == f"node:{rig.node_id}"
        # A relay whose ceiling does not allow sending: the hub refuses up front.
        await rig.hub.set_grants(rig.node_id, [], actor="user:test")
        status, body = await rig.api("POST", f"/api/v1/nodes/{node.node_id}/wake", json={"via": rig.node_id})
        assert status == 409 and "network.wol.send" in body["error"]
        refused = [e for e in await rig.hub.store.list_audit(limit=50) if e.action == "node.wake" and e.outcome == "refused"]
        assert refused
    finally:
        await rig.close()


def lan_unicast() -> str:
    """A unicast address on one of this host's own networks (its own address), else a private one it is not on."""
    for addresses in psutil.net_if_addrs().values():
        for entry in addresses:
            if entry.family == socket.AF_INET and entry.netmask and not ipaddress.ip_address(entry.address).is_loopback:
                if ipaddress.ip_network(f"{entry.address}/{entry.netmask}", strict=False).prefixlen < 31:
                    return entry.address
    return "192.168.77.7"


def nothing_arrived(sock: socket.socket) -> bool:
    # Loopback delivers before sendto returns, so a packet the hub had sent would already be queued.
    try:
        sock.recv(1024)
    except BlockingIOError:
        return True
    return False


async def test_the_hub_sends_only_to_wake_addresses_and_ports(make_hub, udp):
    port = udp.getsockname()[1]
    client = await make_hub(as_role="operator", wol_broadcast="127.0.0.1", wol_port=port)
    node = await offline_node(client.app[HUB_KEY])
    path = f"/api/v1/nodes/{node.node_id}/wake"
    unicast = lan_unicast()
    cases = [
        ({"broadcast": "127.0.0.1", "port": 47999}, f"port 47999 is not a Wake-on-LAN port the hub sends to; allowed: 255.255.255.255"),
        ({"broadcast": "169.254.169.254"}, "169.254.169.254 is not a broadcast address the hub wakes machines at; allowed: 255.255.255.255"),
        ({"broadcast": unicast}, f"{unicast} is not a broadcast address the hub wakes machines at"),
        ({"port": 47999}, "port 47999 is not a Wake-on-LAN port"),
        ({"broadcast": "::1"}, "::1 is not a broadcast address"),
    ]
    for body, why in cases:
        resp = await client.post(path, json=body)
        answer = await resp.json()
        assert resp.status == 403 and why in answer["error"], (body, answer)
        # It says every address and port that is allowed, and where to allow more.
        assert "127.0.0.1" in answer["error"] and f"on ports 7, 9, {port} (7 and 9, and [hub] wol_port and wol_allowed_ports)" in answer["error"]
        assert "[hub] wol_broadcast and wol_allowed_broadcasts" in answer["error"]
        assert "127.0.0.1" in answer["allowed"]["broadcasts"] and answer["allowed"]["ports"] == sorted({7, 9, port})
    assert nothing_arrived(udp)
    # The configured target still works, and so does a port the owner allowed.
    assert (await client.post(path, json={})).status == 200 and await received(udp) == NIC


async def test_a_configured_allow_list_widens_what_the_hub_may_send_to(make_hub):
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.2", 0))
    other.setblocking(False)
    try:
        port = other.getsockname()[1]
        client = await make_hub(as_role="operator", wol_allowed_broadcasts=["127.0.0.2"], wol_allowed_ports=[port])
        node = await offline_node(client.app[HUB_KEY])
        resp = await client.post(f"/api/v1/nodes/{node.node_id}/wake", json={"broadcast": "127.0.0.2", "port": port})
        assert resp.status == 200, await resp.text()
        assert await received(other) == NIC
    finally:
        other.close()


async def test_wakes_are_rate_limited_per_node(make_hub, udp):
    port = udp.getsockname()[1]
    client = await make_hub(as_role="operator", wol_broadcast="127.0.0.1", wol_port=port, wol_wakes_per_minute=3)
    hub = client.app[HUB_KEY]
    nas, pi = await offline_node(hub), await offline_node(hub, name="pi")
    for _ in range(3):
        assert (await client.post(f"/api/v1/nodes/{nas.node_id}/wake")).status == 200
        assert await received(udp) == NIC
    flood = [await client.post(f"/api/v1/nodes/{nas.node_id}/wake") for _ in range(20)]
    assert {r.status for r in flood} == {429}
    answer = await flood[0].json()
    assert "nas was woken 3 times in the last minute, the most [hub] wol_wakes_per_minute allows; try again in" in answer["error"]
    assert 1 <= int(flood[0].headers["Retry-After"]) <= 60
    assert nothing_arrived(udp)
    # Relayed wakes of the same node count too, and another node is not held back.
    resp = await client.post(f"/api/v1/nodes/{nas.node_id}/wake", json={"via": pi.node_id})
    assert resp.status == 429
    assert (await client.post(f"/api/v1/nodes/{pi.node_id}/wake")).status == 200 and await received(udp) == NIC


async def test_a_relay_agent_sends_only_to_wake_addresses_and_ports(tmp_path, udp):
    port = udp.getsockname()[1]
    rig = ActionRig(tmp_path, {"wol": {"broadcast": "127.0.0.1", "port": port, "rate_limit_per_minute": 7}}, grants=["network.wol.send"], wol_wakes_per_minute=100)
    await rig.start(api_role="operator")
    try:
        node = await offline_node(rig.hub)
        unicast = lan_unicast()
        cases = [
            ({"broadcast": "127.0.0.1", "port": 47999}, "port 47999 is not a Wake-on-LAN port this agent sends to; allowed: 255.255.255.255"),
            ({"broadcast": "169.254.169.254"}, "169.254.169.254 is not a broadcast address this agent wakes machines at; allowed: 255.255.255.255"),
            ({"broadcast": unicast}, f"{unicast} is not a broadcast address this agent wakes machines at"),
        ]
        for extra, why in cases:
            # Through the hub's wake endpoint: the relay's agent refuses the job it gets.
            status, body = await rig.api("POST", f"/api/v1/nodes/{node.node_id}/wake", json={"via": rig.node_id, **extra})
            assert status == 202, body
            done = await rig.final(body["jobs"][0]["id"])
            assert done.state == "refused" and why in done.error, (extra, done.error)
            assert "127.0.0.1" in done.error and f"on ports 7, 9, {port} (7 and 9, and [integrations.wol] port and allowed_ports)" in done.error
            assert "[integrations.wol] broadcast and allowed_broadcasts" in done.error
            # And a wol.send job asked for directly.
            direct = await rig.run("wol.send", {"mac": "00:1b:21:3a:4f:01", **extra})
            assert direct.state == "refused" and why in direct.error
        assert nothing_arrived(udp)
        # A legitimate wake still goes out (the 7th wol.send this minute, refusals counted)...
        ok = await rig.run("wol.send", {"mac": "00:1b:21:3a:4f:01"})
        assert ok.state == "succeeded" and await received(udp) == NIC
        # ...and past the agent's own limit a flood is refused without sending.
        flood = [await rig.run("wol.send", {"mac": "00:1b:21:3a:4f:01"}) for _ in range(5)]
        assert all(j.state == "refused" and "rate limit: wol.send runs at most 7 times a minute here" in j.error for j in flood), [(j.state, j.error) for j in flood]
        assert nothing_arrived(udp)
    finally:
        await rig.close()
