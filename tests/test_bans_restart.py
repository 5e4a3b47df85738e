"""Bans outlive the hub process: a real hub is killed with SIGKILL right after banning an address, and the new process still refuses it."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import free_port, wait_for
from websockets.sync.client import connect

from roost.core.const import WS_PATH
from test_e2e import ROOST, Proc

pytestmark = pytest.mark.e2e


def _hello(port: int) -> dict:
    with connect(f"ws://127.0.0.1:{port}{WS_PATH}") as ws:
        first = json.loads(ws.recv(timeout=10))
        if first["type"] != "challenge":
            return first
        ws.send(json.dumps({"v": 1, "type": "hello", "node_id": "nobody", "signature": "AAAA", "agent_version": "x", "epoch": "e"}))
        return json.loads(ws.recv(timeout=10))


def _login(base: str, password: str) -> int:
    req = urllib.request.Request(
        f"{base}/api/v1/session", data=json.dumps({"username": "owner", "password": password}).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_agent_and_login_bans_survive_a_killed_hub(tmp_path: Path) -> None:
    port = free_port()
    hub_dir = tmp_path / "hub"
    conf = tmp_path / "hub.toml"
    conf.write_text('[hub]\ndiscovery = false\nwol_broadcast = "127.0.0.1"\n[agent]\nenabled = false\n')
    base = f"http://127.0.0.1:{port}"
    subprocess.run([*ROOST, "users", "add", "owner", "--role", "admin", "--data-dir", str(hub_dir)], input="a long test passphrase\n", capture_output=True, text=True, timeout=60, check=True)

    def start() -> Proc:
        hub = Proc([*ROOST, "hub", "--data-dir", str(hub_dir), "--port", str(port), "--bind", "127.0.0.1", "--config", str(conf)], tmp_path / "hub.log")
        wait_for(lambda: urllib.request.urlopen(f"{base}/api/v1/health", timeout=5).status == 200, 30, "the hub to answer")
        return hub

    hub = start()
    try:
        codes = [_hello(port)["code"] for _ in range(11)]
        assert codes == ["auth_failed"] * 10 + ["rate_limited"]
        assert [_login(base, "wrong password!") for _ in range(5)] == [401] * 4 + [429]
    finally:
        hub.stop(signal.SIGKILL)  # no clean shutdown: only what was written at once survives

    hub = start()
    try:
        answer = _hello(port)
        assert answer["code"] == "rate_limited" and "banned for another" in answer["message"]
        assert _login(base, "a long test passphrase") == 429
    finally:
        hub.stop()
