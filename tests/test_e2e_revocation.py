"""Credentials ended outside the hub's API end its open event streams within a second: the real CLI on the store of a real hub, and a token's expiry."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time

import pytest
from support import wait_for
from support_procs import HubProc

pytestmark = pytest.mark.e2e

# Checked every 0.5 s; the bound allows for a loaded machine, the promise is "within a second".
CLOSE_BOUND_SECONDS = 1.5
PASSWORD = "a long test passphrase"


class Stream:
    """GET /api/v1/events in a thread: the events it delivers, and when the hub closed it."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.request("GET", "/api/v1/events", headers={"Accept": "text/event-stream", **headers})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.events: list[str] = []
        self.closed_at: float | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                line = self.response.fp.readline()
                if not line:
                    break
                if line.startswith(b"event: "):
                    self.events.append(line[7:].strip().decode())
        except (OSError, ValueError, AttributeError):  # closed by the test itself
            pass
        self.closed_at = time.monotonic()

    def delivering(self) -> bool:
        """Wait until it delivers a node event (the hub's own node reports every second)."""
        seen = len(self.events)
        wait_for(lambda: self.closed_at is None and "node" in self.events[seen:], 30, "a node event on the stream")
        return True

    def close(self) -> None:
        self.conn.close()


def _closed_within(stream: Stream, since: float, what: str) -> float:
    wait_for(lambda: stream.closed_at is not None, 10, what)
    took = stream.closed_at - since
    assert took <= CLOSE_BOUND_SECONDS, f"{what} took {took:.2f} s"
    return took


def _login_cookie(hub: HubProc, user: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=30)
    try:
        conn.request("POST", "/api/v1/session", body=json.dumps({"username": user, "password": PASSWORD}), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        cookie = resp.getheader("Set-Cookie")
        resp.read()
    finally:
        conn.close()
    return cookie.split(";", 1)[0]


def _short_lived_token(hub: HubProc, user: str, seconds: float) -> str:
    """A token that expires in seconds (the CLI's shortest is a minute): made with the hub's own code on its store file."""
    from roost.core.config import load_hub_config
    from roost.core.hub.auth import create_api_token
    from roost.core.store.sqlite import SQLiteStore

    async def make() -> str:
        config = load_hub_config(hub.config, overrides={"hub": {"data_dir": str(hub.data_dir)}})
        store = SQLiteStore(config.store_path)
        await store.open()
        try:
            owner = await store.get_user_by_name(user)
            token, _ = await create_api_token(store, owner, scope="read", ttl=seconds)
            return token
        finally:
            await store.close()

    return asyncio.run(make())


def _token_id(token: str) -> str:
    return token.split("_")[1]


def test_cli_revocations_and_expiry_end_open_event_streams(tmp_path):
    hub = HubProc(tmp_path, '\n[agent]\ninterval = "1s"\n')
    admin = hub.user_token("owner", "admin", "admin")
    revoked = hub.user_token("rita", "viewer", "read")
    deleted = hub.user_token("dave", "viewer", "read")
    changed = hub.user_token("pat", "operator", "read")
    streams: list[Stream] = []

    def stream(**headers: str) -> Stream:
        s = Stream(hub.port, headers)
        streams.append(s)
        assert s.status == 200
        return s

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    try:
        hub.start()
        control = stream(**bearer(admin))
        control.delivering()

        # roost api-token revoke
        s = stream(**bearer(revoked))
        s.delivering()
        hub.cli("api-token", "revoke", _token_id(revoked))
        _closed_within(s, time.monotonic(), "the revoked token's stream to close")
        assert hub.api("GET", "/api/v1/nodes", revoked)[0] == 401

        # roost users delete: the user's token streams and session streams alike
        s_token = stream(**bearer(deleted))
        s_session = stream(Cookie=_login_cookie(hub, "dave"))
        s_token.delivering() and s_session.delivering()
        hub.cli("users", "delete", "dave")
        done = time.monotonic()
        _closed_within(s_token, done, "the deleted user's token stream to close")
        _closed_within(s_session, done, "the deleted user's session stream to close")

        # roost users passwd: their sessions end, and (as through the API) their open streams with them
        s_token = stream(**bearer(changed))
        s_session = stream(Cookie=_login_cookie(hub, "pat"))
        s_token.delivering() and s_session.delivering()
        hub.cli("users", "passwd", "pat", stdin="another long passphrase\n")
        done = time.monotonic()
        _closed_within(s_token, done, "the token stream of a user whose password changed to close")
        _closed_within(s_session, done, "the session stream of a user whose password changed to close")

        # A token's expiry, with nothing else happening.
        expiring = _short_lived_token(hub, "owner", 4.0)
        expires_at = time.monotonic() + 4.0
        s = stream(**bearer(expiring))
        s.delivering()
        wait_for(lambda: s.closed_at is not None, 15, "the expired token's stream to close")
        assert s.closed_at - expires_at <= CLOSE_BOUND_SECONDS + 0.5, f"closed {s.closed_at - expires_at:.2f} s after expiry"
        assert s.closed_at >= expires_at - 0.5  # not before its time

        # Nobody else's stream was touched.
        assert control.closed_at is None
        control.delivering()
        assert "closed an event stream of token:" in hub.proc.text()
    finally:
        for s in streams:
            s.close()
        hub.stop()
