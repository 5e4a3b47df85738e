"""wol.send: the magic packet received byte-exact on loopback and as a real broadcast across a veth pair; MAC and address checks."""

from __future__ import annotations

import socket
import subprocess
from types import SimpleNamespace

import pytest
import voluptuous as vol
from netns import netns_pair, unavailable
from support import need
from support_actions import make_ctx, set_up

from roost.integrations.wol import CONFIG_SCHEMA
from roost.core.actions import ActionRefused
from roost.integrations.wol.actions import SEND_SCHEMA, destinations, send_packet
from roost.integrations.wol.magic import is_universal, magic_packet, normalize_mac, send
from roost.integrations.wol.policy import Destinations, own_broadcasts

MAC = "52:54:00:12:34:56"
EXPECTED = b"\xff" * 6 + bytes.fromhex("525400123456") * 16


@pytest.fixture
def udp():
    """A UDP socket bound to a free port on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_the_packet_is_byte_exact_on_loopback(udp):
    port = udp.getsockname()[1]
    ctx = make_ctx(CONFIG_SCHEMA({"broadcast": "127.0.0.1", "port": port}))
    result = send_packet(ctx, SEND_SCHEMA({"mac": "52-54-00-12-34-56"}))
    data, _ = udp.recvfrom(1024)
    assert data == EXPECTED and len(data) == 102 == result["bytes"]
    assert result["mac"] == MAC and result["broadcast"] == "127.0.0.1" and result["port"] == port
    assert magic_packet(MAC) == EXPECTED


def test_broadcast_and_port_can_be_given_per_request(udp):
    port = udp.getsockname()[1]
    # Defaults 255.255.255.255:9; loopback and the test's port only because the owner allows them.
    ctx = make_ctx(CONFIG_SCHEMA({"allowed_broadcasts": ["127.0.0.1"], "allowed_ports": [port]}))
    assert ctx.config["broadcast"] == "255.255.255.255" and ctx.config["port"] == 9
    send_packet(ctx, SEND_SCHEMA({"mac": "525400123456", "broadcast": "127.0.0.1", "port": port}))
    assert udp.recvfrom(1024)[0] == EXPECTED


@pytest.mark.parametrize("mac", ["52:54:00:12:34:56", "52-54-00-12-34-56", "525400123456", "5254.0012.3456", "52:54:00:12:34:56 "])
def test_mac_formats(mac):
    assert normalize_mac(mac) == MAC


@pytest.mark.parametrize(
    "mac",
    ["", "52:54:00:12:34", "52:54:00:12:34:56:78", "52:54-00:12:34:56", "zz:54:00:12:34:56", "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:fb", "52:54:00:12:34:56; reboot", "52:54:00:12:34:56/aa:bb:cc:dd:ee:ff", 525400123456, None],
)
def test_bad_macs_are_refused(mac):
    with pytest.raises(vol.Invalid):
        SEND_SCHEMA({"mac": mac})


@pytest.mark.parametrize("params", [{"mac": MAC, "broadcast": "evil.example.com"}, {"mac": MAC, "broadcast": "10.0.0.255; id"}, {"mac": MAC, "port": 0}, {"mac": MAC, "port": 70000}, {"mac": MAC, "port": True}, {"mac": MAC, "extra": 1}])
def test_addresses_are_literal_and_ports_real(params):
    with pytest.raises(vol.Invalid):
        SEND_SCHEMA(params)


def test_config_is_checked():
    for bad in ({"broadcast": "lan.local"}, {"port": 99999}, {"interface": "eth0"}):
        with pytest.raises(vol.Invalid):
            CONFIG_SCHEMA(bad)


def test_universal_and_local_addresses():
    assert is_universal("00:1b:21:3a:4f:01") and not is_universal("02:42:ac:11:00:02") and not is_universal(MAC)


async def test_it_offers_network_wol_send(tmp_path):
    manager, integ = await set_up("wol", {}, tmp_path)
    assert integ.state == "loaded" and manager.capabilities() == ["network.wol.send"] and list(manager.actions()) == ["wol.send"]
    await manager.shutdown_all()


def test_a_real_broadcast_crosses_the_lan():
    """Inside two network namespaces joined by a veth pair: the subnet broadcast and 255.255.255.255 both arrive byte-exact."""
    why = unavailable()
    need(not why, why or "network namespaces")
    with netns_pair() as pair:
        subnet_broadcast = pair.hub_addr.rsplit(".", 1)[0] + ".255"
        # A LAN host has a default route; the limited broadcast leaves through it.
        subprocess.run(["ip", "-n", pair.hub_ns, "route", "add", "default", "dev", pair.hub_if], check=True, capture_output=True)
        with pair.executor(pair.agent_ns) as agent, pair.executor(pair.hub_ns) as hub:
            receiver = agent.submit(_bound_socket).result()
            try:
                port = receiver.getsockname()[1]
                for target in (subnet_broadcast, "255.255.255.255"):
                    hub.submit(send, [MAC], host=target, port=port).result()
                    data, sender = agent.submit(receiver.recvfrom, 1024).result()
                    assert data == EXPECTED and sender[0] == pair.hub_addr, target
            finally:
                receiver.close()


def test_an_agent_allows_the_broadcast_of_its_own_lan_and_nothing_else_there():
    """Inside a namespace: the subnet's broadcast, found from the interfaces and configured nowhere, is allowed and arrives; the peer's unicast address is refused."""
    why = unavailable()
    need(not why, why or "network namespaces")
    with netns_pair() as pair:
        subnet_broadcast = pair.hub_addr.rsplit(".", 1)[0] + ".255"
        with pair.executor(pair.agent_ns) as agent, pair.executor(pair.hub_ns) as hub:
            receiver = agent.submit(_bound_socket).result()
            try:
                port = receiver.getsockname()[1]
                ctx = make_ctx(CONFIG_SCHEMA({"allowed_ports": [port]}))  # default broadcast 255.255.255.255, no allowed addresses
                allowed = hub.submit(destinations(ctx.config).allowed_broadcasts).result()
                assert allowed == ["255.255.255.255", subnet_broadcast]  # loopback's 127.255.255.255 is no LAN
                result = hub.submit(send_packet, ctx, SEND_SCHEMA({"mac": MAC, "broadcast": subnet_broadcast, "port": port})).result()
                assert result["broadcast"] == subnet_broadcast
                data, sender = agent.submit(receiver.recvfrom, 1024).result()
                assert data == EXPECTED and sender[0] == pair.hub_addr
                with pytest.raises(ActionRefused) as refused:
                    hub.submit(send_packet, ctx, SEND_SCHEMA({"mac": MAC, "broadcast": pair.agent_addr, "port": port})).result()
                assert f"{pair.agent_addr} is not a broadcast address this agent wakes machines at; allowed: 255.255.255.255, {subnet_broadcast}" in str(refused.value)
            finally:
                receiver.close()


def test_own_broadcasts_come_from_the_interfaces():
    def addr(address, netmask, family=socket.AF_INET):
        return SimpleNamespace(family=family, address=address, netmask=netmask, broadcast=None)

    interfaces = {
        "lo": [addr("127.0.0.1", "255.0.0.0"), addr("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", socket.AF_INET6)],
        "eth0": [addr("192.168.1.20", "255.255.255.0"), addr("10.8.0.9", "255.255.0.0")],
        "wg0": [addr("10.99.0.2", "255.255.255.255")],  # point-to-point: no broadcast
        "ptp": [addr("100.64.0.1", "255.255.255.254")],
        "eth1": [addr("192.168.1.21", "255.255.255.0")],  # same LAN twice: listed once
    }
    assert own_broadcasts(interfaces) == ["255.255.255.255", "192.168.1.255", "10.8.255.255"]
    policy = Destinations.of(["192.168.9.255"], [4000], sender="the hub", broadcasts_setting="X", ports_setting="Y")
    assert policy.refusal("192.168.1.255", 9, interfaces) == "" and policy.refusal("192.168.9.255", 4000, interfaces) == ""
    for host, port in (("192.168.1.20", 9), ("127.0.0.1", 9), ("169.254.169.254", 9), ("192.168.1.255", 47999), ("127.255.255.255", 7)):
        assert policy.refusal(host, port, interfaces), (host, port)


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    sock.settimeout(5)
    return sock
