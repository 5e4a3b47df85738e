"""Nothing from outside reaches the process log raw: a real hub process is fed CR, LF, ESC, OSC, NUL and U+202E at every entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import free_port, wait_for
from websockets.sync.client import connect

from roost.core import protocol
from roost.core.const import WS_PATH
from roost.core.identity import Identity
from roost.core.pairing import new_nonce, pair_payload
from support_hub import enrol_body
from test_e2e import ROOST, Proc

pytestmark = pytest.mark.e2e

# A forged log line, a terminal-title (OSC) and colour (ANSI CSI) escape, NUL and a bidi override.
EVIL = "x\r\n2026-01-01 00:00:00,000 INFO    roost: FORGED LINE\x1b]0;owned\x07\x1b[31mred\x00\u202eesrever\x85c1"
RAW = ("\r", "\x1b", "\x07", "\x00", "\u202e", "\x85")
LINE_START = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} |Roost hub |CA fingerprint |Traceback |  |\S+Error|\S+Exception|The above|During handling)")


def _request(method: str, url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, {"text": raw.decode(errors="replace")}


def test_every_entry_point_reaches_the_log_escaped(tmp_path: Path) -> None:
    port, wol_port = free_port(), free_port()
    hub_dir = tmp_path / "hub"
    conf = tmp_path / "hub.toml"
    conf.write_text(
        '[hub]\ndiscovery = false\nwol_broadcast = "127.0.0.1"\n'
        # Wakes go to a free loopback port, which only an explicit allow-list lets the hub send to.
        f'wol_allowed_ports = [{wol_port}]\ntrusted_proxies = ["127.0.0.1"]\n[agent]\nenabled = false\n[logging]\nlevel = "info"\n'
    )
    base = f"http://127.0.0.1:{port}"
    cli = {"capture_output": True, "text": True, "timeout": 60, "check": True}
    subprocess.run([*ROOST, "users", "add", "op", "--role", "admin", "--data-dir", str(hub_dir)], input="a long test passphrase\n", **cli)
    token = subprocess.run([*ROOST, "api-token", "create", "--user", "op", "--scope", "admin", "--data-dir", str(hub_dir)], **cli).stdout.strip()
    auth = {"Authorization": f"Bearer {token}"}
    join = subprocess.run([*ROOST, "join-token", "create", "--data-dir", str(hub_dir), "--hub-url", base], **cli).stdout.strip()

    hub = Proc([*ROOST, "hub", "--data-dir", str(hub_dir), "--port", str(port), "--bind", "127.0.0.1", "--config", str(conf)], tmp_path / "hub.log")
    try:
        wait_for(lambda: _request("GET", f"{base}/api/v1/health")[0] == 200, 30, "the hub to answer")

        # 1. An unauthenticated pairing request whose hostname is the payload.
        agent = Identity.generate()
        with connect(f"ws://127.0.0.1:{port}{WS_PATH}") as ws:
            challenge = json.loads(ws.recv(timeout=10))
            agent_nonce = new_nonce()
            ws.send(
                protocol.encode(
                    protocol.TYPE_PAIR,
                    public_key=agent.public_key,
                    signature=agent.sign(pair_payload(challenge["hub_id"], agent.public_key, challenge["nonce"], agent_nonce)),
                    agent_nonce=agent_nonce,
                    agent_version="test",
                    hostname="pair-" + EVIL,
                )
            )
            assert json.loads(ws.recv(timeout=10))["type"] == "pair_pending"
        wait_for(lambda: "pairing request" in hub.text(), 20, "the pairing request in the log")

        # 2. Enrolment: the node's name and hostname are the payload; its facts give it a MAC to wake.
        enrolled = Identity.generate()
        status, body = _request(
            "POST",
            f"{base}/api/v1/enroll",
            enrol_body(join, enrolled, name="node-" + EVIL, hostname="host-" + EVIL, facts={"macs": {"eth0": "02:00:00:aa:bb:cc"}}),
        )
        assert status == 200, body
        node_id = body["node_id"]
        wait_for(lambda: "enrolled with join token" in hub.text(), 20, "the enrolment in the log")

        # 3. Wake-on-LAN: the node's name is logged by the wake; bad parameters carry the payload too.
        status, body = _request("POST", f"{base}/api/v1/nodes/{node_id}/wake", {"broadcast": "127.0.0.1", "port": wol_port}, auth)
        assert status == 200, body
        for bad in ({"via": EVIL}, {"mac": EVIL}, {"broadcast": EVIL}, {"port": EVIL}):
            assert _request("POST", f"{base}/api/v1/nodes/{node_id}/wake", bad, auth)[0] in (400, 404), bad
        wait_for(lambda: "woke node-" in hub.text(), 20, "the wake in the log")

        # 4. X-Forwarded-For from a trusted proxy, and a request path, both holding what HTTP lets through:
        # the path is percent-decoded (CR, LF, ESC), the header may carry bidi controls (as UTF-8).
        forwarded = "xff\u202eesrever\u2066".encode().decode("latin-1")  # http.client sends latin-1; the hub decodes UTF-8
        status, _ = _request("GET", f"{base}/api/v1/nodes/%0d%0aFORGED%1b%5b31m", headers={"X-Forwarded-For": forwarded})
        assert status == 403
        wait_for(lambda: "LAN-only mode" in hub.text(), 20, "the LAN-only refusal in the log")
        # A header with ESC in it is a malformed request: one escaped line, no traceback.
        status, _ = _request("GET", f"{base}/api/v1/health", headers={"X-Forwarded-For": "esc\x1b]0;owned\x07"})
        assert status == 400
        wait_for(lambda: "malformed HTTP request" in hub.text(), 20, "the malformed request in the log")
    finally:
        hub.stop()

    log = hub.text()
    for char in RAW:
        assert char not in log, f"{char!r} reached the log raw"
    for line in log.splitlines():
        assert "FORGED" not in line or LINE_START.match(line), f"a forged line: {line!r}"
        if line:
            assert LINE_START.match(line), f"a line the hub did not start: {line!r}"
    assert "pair-x\\r\\n2026-01-01" in log and "\\x1b]0;owned\\x07" in log and "\\u202eesrever" in log and "\\x00" in log
    assert "node-x\\r\\n2026" in log  # the enrolled node's name, in the enrolment and wake lines
    assert re.search(r"woke node-x\\r\\n2026.*\\x1b\[31mred", log)
    assert re.search(r"refused GET /api/v1/nodes/\\r\\nFORGED\\x1b\[31m from xff\\u202eesrever\\u2066: ", log)
    assert "Traceback" not in log  # the malformed request too is one line
