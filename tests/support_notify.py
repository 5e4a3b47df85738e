"""Helpers for the notification tests: a real webhook receiver on loopback and alert events written the way the contract shapes them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from typing import Any

from aiohttp import web


class WebhookReceiver:
    """A real aiohttp server on 127.0.0.1 that keeps every request it got; ``status`` is what it answers (503: down)."""

    def __init__(self, port: int, *, status: int = 200) -> None:
        self.port = port
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self._runner: web.AppRunner | None = None
        self.arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.status >= 300:
            self.refused += 1
            return web.Response(status=self.status, text="down for maintenance")
        self.received.append({"headers": dict(request.headers), "body": body, "json": json.loads(body)})
        self.arrived.set()
        return web.Response(text="ok")

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def payloads(self) -> list[dict[str, Any]]:
        return [r["json"] for r in self.received]


def verify_signature(key: str, request: dict[str, Any]) -> bool:
    """Check a received webhook's X-Roost-Signature the way a receiver's owner would."""
    stamp = request["headers"]["X-Roost-Timestamp"]
    expected = "sha256=" + hmac.new(key.encode(), stamp.encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request["headers"].get("X-Roost-Signature", ""))


def alert_event(
    seq: int,
    status: str,
    *,
    instance: str = "i1",
    node_id: str = "n1",
    node_name: str = "nas",
    rule: str = "node_offline",
    alertname: str = "NodeOffline",
    severity: str = "critical",
    summary: str = "nas stopped reporting",
    starts_at: float | None = None,
    ends_at: float | None = None,
    silenced: bool = False,
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One decoded alert_events row as the contract (section 2) shapes it."""
    labels = {"alertname": alertname, "node": node_id, "node_name": node_name, "severity": severity, **(extra_labels or {})}
    return {
        "seq": seq,
        "instance_id": instance,
        "fingerprint": hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16],
        "status": status,
        "severity": severity,
        "rule_id": rule,
        "rule_name": alertname,
        "node_id": node_id,
        "labels": labels,
        "annotations": {"summary": summary, "value": None, "url": None},
        "starts_at": starts_at if starts_at is not None else time.time(),
        "ends_at": ends_at,
        "silenced": int(silenced),
        "inhibited": 0,
        "created_at": time.time(),
    }


class ThreadedWebhook:
    """The aiohttp webhook receiver on its own event loop in a thread, for tests that drive real processes synchronously."""

    def __init__(self, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.receiver = asyncio.run_coroutine_threadsafe(WebhookReceiver(port).start(), self.loop).result(10)

    @property
    def url(self) -> str:
        return self.receiver.url

    def set_status(self, status: int) -> None:
        self.loop.call_soon_threadsafe(setattr, self.receiver, "status", status)

    def payloads(self) -> list[dict]:
        return asyncio.run_coroutine_threadsafe(_copy(self.receiver), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _copy(receiver: WebhookReceiver) -> list[dict]:
    return [{**r["json"], "_id": r["headers"].get("X-Roost-Notification-Id", "")} for r in receiver.received]
