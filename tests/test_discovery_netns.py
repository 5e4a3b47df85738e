"""Zeroconf follows the hub's bind address: a hub on 127.0.0.1 is not announced on the LAN; an explicit discovery_interfaces still wins.

Each test runs a real `roost hub` inside a network namespace of its own
(tests/netns.py), with a second namespace on the other end of a veth pair
playing the LAN. Nothing is announced or browsed outside those namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import netns
import pytest
from support import need, wait_for

pytestmark = pytest.mark.e2e

ROOST = [sys.executable, "-m", "roost.core.cli"]
PORT = 8765  # each namespace has its own ports
# What a browser bound to one address sees of the hubs announced there, as JSON.
BROWSE = """
import asyncio, json, sys
from roost.core.discovery import HUB_SERVICE, browse
found = asyncio.run(browse(HUB_SERVICE, interfaces=[sys.argv[1]], timeout=float(sys.argv[2])))
print(json.dumps([{"addresses": list(f.addresses), "port": f.port, "id": f.properties.get("id", "")} for f in found]))
"""


def browse_from(lan: netns.NetnsPair, ns: str, address: str, seconds: float) -> list[dict]:
    proc = subprocess.run(lan.cmd(ns, sys.executable, "-c", BROWSE, address, str(seconds)), capture_output=True, text=True, timeout=seconds + 60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def start_hub(lan: netns.NetnsPair, tmp_path: Path, stack: ExitStack, hub_table: str) -> subprocess.Popen[bytes]:
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\nwol_broadcast = "127.0.0.1"\n{hub_table}\n[agent]\nenabled = false\n', encoding="utf-8")
    # The test suite pins every hub's zeroconf to loopback through this variable; here the hub must choose by itself.
    env = {k: v for k, v in os.environ.items() if k != "ROOST_DISCOVERY_INTERFACES"}
    log = open(tmp_path / "hub.log", "ab")
    stack.callback(log.close)
    argv = [*ROOST, "hub", "--config", str(config), "--data-dir", str(tmp_path / "hub"), "--bind", "127.0.0.1", "--port", str(PORT)]
    hub = subprocess.Popen(lan.hub_cmd(*argv), stdout=log, stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1"})

    def stop() -> None:
        if hub.poll() is None:
            hub.terminate()
            try:
                hub.wait(15)
            except subprocess.TimeoutExpired:
                hub.kill()
                hub.wait(5)

    stack.callback(stop)
    return hub


def hub_log(tmp_path: Path) -> str:
    return (tmp_path / "hub.log").read_text(errors="replace")[-3000:]


def lan_pair() -> netns.NetnsPair:
    why = netns.unavailable()
    need(not why, why)
    return netns.netns_pair()


def test_a_hub_bound_to_loopback_announces_itself_on_loopback_only(tmp_path):
    with lan_pair() as lan, ExitStack() as stack:
        hub = start_hub(lan, tmp_path, stack, "")
        # On its own host the hub is announced (so silence on the LAN below is not a hub that never announced) ...
        seen = wait_for(
            lambda: hub.poll() is None and [f for f in browse_from(lan, lan.hub_ns, "127.0.0.1", 2.0) if f["port"] == PORT] or hub.poll() is not None,
            90,
            "the hub's announcement on loopback",
        )
        assert hub.poll() is None, hub_log(tmp_path)
        assert seen[0]["addresses"] == ["127.0.0.1"], seen
        # ... and a browser on the LAN's side of the veth hears of no hub at all.
        assert browse_from(lan, lan.agent_ns, lan.agent_addr, 4.0) == [], hub_log(tmp_path)
        assert "announcing roost-" in hub_log(tmp_path) and f"on 127.0.0.1" in hub_log(tmp_path)


def test_discovery_interfaces_set_in_the_config_still_win_over_the_bind_address(tmp_path):
    with lan_pair() as lan, ExitStack() as stack:
        hub = start_hub(lan, tmp_path, stack, f'discovery_interfaces = ["{lan.hub_addr}"]')
        seen = wait_for(
            lambda: hub.poll() is None and browse_from(lan, lan.agent_ns, lan.agent_addr, 2.0) or hub.poll() is not None,
            90,
            "the hub's announcement on the veth",
        )
        assert hub.poll() is None, hub_log(tmp_path)
        assert [(f["addresses"], f["port"]) for f in seen] == [([lan.hub_addr], PORT)]
