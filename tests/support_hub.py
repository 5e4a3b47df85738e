"""Helpers for tests that drive a real hub app: its config, and an agent that speaks the wire protocol by hand."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType

from roost.core import protocol
from roost.core.config import load_hub_config
from roost.core.const import ENROLL_PATH, WS_PATH
from roost.core.hub.app import HUB_KEY, create_join_token
from roost.core.identity import Identity


def enrol_body(token: str, identity: Identity, *, public_key: str | None = None, csr: str | None = None, **extra: Any) -> dict[str, Any]:
    """A POST /api/v1/enroll body signed by ``identity``, as the agent sends it (``public_key`` overrides the key it names)."""
    import secrets

    key = public_key or identity.public_key
    timestamp, nonce = int(time.time()), secrets.token_hex(16)
    body = {
        "token": token,
        "public_key": key,
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": identity.sign(protocol.enroll_payload(token, key, csr or "", timestamp, nonce)),
        **extra,
    }
    if csr:
        body["csr"] = csr
    return body


def hub_config(tmp_path: Path, **hub: Any):
    return load_hub_config(
        None,
        overrides={
            # Tests make many pairing requests from 127.0.0.1; the limit has its own test.
            "hub": {"data_dir": str(tmp_path / "hub"), "discovery": False, "pairing_attempts_per_minute": 600, **hub},
            "agent": {"enabled": False},
        },
    )


@dataclass
class FakeAgent:
    """Speaks the agent side of the protocol by hand, so tests can also break it on purpose."""

    client: Any
    identity: Identity = field(default_factory=Identity.generate)
    node_id: str = ""
    epoch: str = "e1"
    ws: Any = None
    seq: int = 0
    grants: list = field(default_factory=list)
    challenge: dict = field(default_factory=dict)

    @property
    def hub(self):
        return self.client.app[HUB_KEY]

    async def enroll(self, **extra: Any) -> dict[str, Any]:
        token, _ = await create_join_token(self.hub.store, ttl=3600, uses=1)
        resp = await self.client.post(ENROLL_PATH, json=enrol_body(token, self.identity, **{"hostname": "box", **extra}))
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        self.node_id = body["node_id"]
        return body

    async def connect(self, *, sign_as: Identity | None = None, node_id: str | None = None, version: int = 1) -> dict[str, Any]:
        self.ws = await self.client.ws_connect(WS_PATH)
        challenge = self.challenge = await self.ws.receive_json(timeout=5)
        assert challenge["type"] == "challenge"
        nid = node_id or self.node_id
        signer = sign_as or self.identity
        hello = {
            "v": version,
            "type": "hello",
            "node_id": nid,
            "signature": signer.sign(protocol.auth_payload(challenge["hub_id"], nid, challenge["nonce"])),
            "agent_version": "test",
            "epoch": self.epoch,
            "hostname": "box",
            "facts": {"os": "Testix"},
            "integrations": [{"domain": "linux_host", "state": "loaded", "reason": ""}],
            "fields": {"linux_host.cpu_percent": {"unit": "percent", "description": "CPU"}},
            "capabilities": ["host.metrics.read"],
        }
        await self.ws.send_str(json.dumps(hello))
        answer = await self.ws.receive_json(timeout=5)
        if answer["type"] == "welcome":
            self.grants = (await self.expect("grants"))["grants"]
        return answer

    def report(self, *, seq: int | None = None, collected_at: float | None = None, **over: Any) -> dict[str, Any]:
        if seq is None:
            self.seq += 1
            seq = self.seq
        body = {
            "v": 1,
            "type": "report",
            "node_id": self.node_id,
            "seq": seq,
            "collected_at": collected_at or time.time(),
            "interval": 10,
            "integrations": [{"domain": "linux_host", "state": "loaded", "reason": ""}],
            "data": {"linux_host": {"cpu": {"percent": 12.5}}},
            "metrics": {"linux_host.cpu_percent": 12.5, "linux_host.mem_used_percent": 40.0},
        }
        body.update(over)
        return body

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def expect(self, type_: str, timeout: float = 5) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == WSMsgType.TEXT, f"expected a {type_} message, got {msg.type} {msg.data!r} {msg.extra!r}"
        data = json.loads(msg.data)
        assert data["type"] == type_, data
        return data

    async def expect_closed(self, timeout: float = 5) -> int:
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type == WSMsgType.CLOSE:
                return msg.data
            if msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING):
                return self.ws.close_code
            assert msg.type == WSMsgType.TEXT, msg
