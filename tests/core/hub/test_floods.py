"""Floods of refused attempts: counted, not written one by one; banned per address; refused privileged requests audited; bans outlive a restart."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

from aiohttp import WSMsgType
from support import until

from roost.core import protocol
from roost.core.const import ENROLL_PATH, WS_PATH
from roost.core.hub.app import HUB_KEY, create_join_token
from roost.core.hub.auth import LOGIN_MAX_FAILURES
from roost.core.hub.gateway import AGENT_AUTH_LIMITS
from roost.core.identity import Identity
from roost.core.pairing import new_nonce, pair_payload
from roost.core.store import AuditFilter
from support_auth import TEST_PASSWORD
from support_hub import enrol_body

FAILURES_TO_BAN = AGENT_AUTH_LIMITS["max_failures"]


async def _async_true(value: Any) -> Any:
    return value


async def entries(client, action: str) -> list[Any]:
    return await client.app[HUB_KEY].store.list_audit(AuditFilter(action=action), limit=1000)


async def total(client, action: str) -> int:
    """Attempts the audit log accounts for: one per entry written on its own, ``repeats`` per summary."""
    return sum(e.details.get("repeats", 1) for e in await entries(client, action))


def long_window(client) -> None:
    """However slow the machine, a whole flood falls into one window..."""
    client.app[HUB_KEY].security_events.window = 3600.0


def short_window(client, seconds: float = 0.3) -> None:
    """...which then ends at once: the real background writer summarises it within a second or so."""
    client.app[HUB_KEY].security_events.window = seconds


async def bogus_hello(client, node_id: str = "nobody") -> dict[str, Any]:
    ws = await client.ws_connect(WS_PATH)
    try:
        first = await ws.receive_json(timeout=5)
        if first["type"] != "challenge":
            return first
        hello = {"v": 1, "type": "hello", "node_id": node_id, "signature": "AAAA", "agent_version": "x", "epoch": "e"}
        await ws.send_str(json.dumps(hello))
        return await ws.receive_json(timeout=5)
    finally:
        await ws.close()


async def test_a_flood_of_bogus_hellos_is_banned_and_counted_not_written_each(anon_client, caplog) -> None:
    client = anon_client
    long_window(client)
    caplog.set_level(logging.INFO)
    sent = 60
    answers = [await bogus_hello(client) for _ in range(sent)]
    short_window(client)

    failed = [a for a in answers if a["code"] == protocol.ERR_AUTH]
    limited = [a for a in answers if a["code"] == protocol.ERR_RATE_LIMITED]
    assert len(failed) == FAILURES_TO_BAN and len(limited) == sent - FAILURES_TO_BAN
    assert "banned for another 15 min" in limited[-1]["message"] and "127.0.0.1" in limited[-1]["message"]

    async def summarised() -> bool:
        return await total(client, "agent.auth_failed") == FAILURES_TO_BAN and await total(client, "agent.rate_limited") == sent - FAILURES_TO_BAN

    await until(summarised, 10, "the summaries of both floods")
    auth_failed = await entries(client, "agent.auth_failed")
    assert len(auth_failed) == 2, [e.details for e in auth_failed]  # one at once, then one summary
    summary = next(e for e in auth_failed if "repeats" in e.details)
    assert summary.peer == "127.0.0.1" and "more failed agent logins from 127.0.0.1 in the last" in summary.details["summary"]
    assert len(await entries(client, "agent.rate_limited")) == 2
    assert len(await entries(client, "agent.banned")) == 1
    # The process log: one line and one summary, not one per attempt.
    await until(lambda: _async_true(any("refused agent sockets" in r.getMessage() for r in caplog.records)), 10, "the log summary")
    refused_lines = [r for r in caplog.records if "agent unauthenticated" in r.getMessage() or "refused agent sockets" in r.getMessage()]
    assert len(refused_lines) == 2, [r.getMessage() for r in refused_lines]


async def test_a_flood_of_bad_join_tokens_is_banned_with_429_and_counted(anon_client) -> None:
    client = anon_client
    long_window(client)
    statuses = []
    for _ in range(25):
        body = enrol_body(f"rjt_0000_{secrets.token_hex(8)}", Identity.generate(), hostname="h")
        resp = await client.post(ENROLL_PATH, json=body)
        statuses.append(resp.status)
        if resp.status == 429:
            assert "banned for another 15 min" in (await resp.json())["error"] and int(resp.headers["Retry-After"]) > 800
    assert statuses == [403] * FAILURES_TO_BAN + [429] * (25 - FAILURES_TO_BAN)
    short_window(client)

    async def counted() -> bool:
        return await total(client, "node.enrolment_refused") == FAILURES_TO_BAN
    await until(counted, 10, "the enrolment refusals summarised")
    assert len(await entries(client, "node.enrolment_refused")) == 2

    # A valid token from a banned address is refused too: the ban is on the address.
    token, _ = await create_join_token(client.app[HUB_KEY].store, ttl=600, uses=1)
    resp = await client.post(ENROLL_PATH, json=enrol_body(token, Identity.generate()))
    assert resp.status == 429


async def test_a_malformed_http_flood_is_one_line_each_and_counted(anon_client, caplog) -> None:
    client = anon_client
    long_window(client)
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    caplog.set_level(logging.INFO, logger="roost")
    sent = 30
    for _ in range(sent):
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Bad: \x1b]0;t\x07\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
        assert head.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")) and b"Python/" not in head and b"aiohttp" not in head, head[:300]
    short_window(client)

    def malformed() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "malformed HTTP request" in r.getMessage()]

    async def summarised() -> bool:
        return any("more malformed HTTP requests from 127.0.0.1" in r.getMessage() for r in malformed())

    await until(summarised, 10, "the summary line")
    assert all(r.exc_info is None for r in caplog.records if r.name.startswith("aiohttp") or "malformed" in r.getMessage())
    first = [r for r in malformed() if "more malformed" not in r.getMessage()]
    assert len(first) == 1 and "127.0.0.1" in first[0].getMessage()
    total = len(first) + sum(int(r.getMessage().split(": ", 1)[1].split()[0]) for r in malformed() if "more malformed" in r.getMessage())
    assert total == sent


# ------------------------------------------------------------ item 6: refusals audited


async def test_refused_privileged_requests_are_audited(make_hub, tmp_path) -> None:
    admin = await make_hub()
    hub = admin.app[HUB_KEY]
    agent_identity = Identity.generate()
    token, _ = await create_join_token(hub.store, ttl=600, uses=1)
    node_id = (await (await admin.post(ENROLL_PATH, json=enrol_body(token, agent_identity))).json())["node_id"]

    from support_auth import seed_user

    operator_token = await seed_user(hub.config, "ops", "operator")
    viewer_token = await seed_user(hub.config, "eve", "viewer")

    async def call(token: str, method: str, path: str, body: Any = None) -> int:
        resp = await admin.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
        return resp.status

    assert await call(operator_token, "PUT", f"/api/v1/nodes/{node_id}/grants", {"grants": ["docker.manage"]}) == 403
    assert await call(operator_token, "POST", f"/api/v1/nodes/{node_id}/revoke") == 403
    assert await call(operator_token, "POST", "/api/v1/pairing/p0123456789ab/approve", {}) == 403
    assert await call(viewer_token, "POST", "/api/v1/tokens", {"scope": "admin"}) == 403
    assert await call("rst_0123456789ab_" + "0" * 64, "GET", "/api/v1/nodes") == 401
    assert await call(admin.roost_token, "POST", "/api/v1/pairing/p0123456789ab/approve", {}) == 409

    denied = await entries(admin, "access.denied")
    targets = {e.target: e for e in denied}
    for target in (f"PUT /api/v1/nodes/{node_id}/grants", f"POST /api/v1/nodes/{node_id}/revoke", "POST /api/v1/pairing/p0123456789ab/approve", "POST /api/v1/tokens"):
        assert target in targets, (target, list(targets))
        assert targets[target].outcome == "refused" and targets[target].peer == "127.0.0.1"
    assert "admin" in targets[f"PUT /api/v1/nodes/{node_id}/grants"].details["why"]
    assert targets["POST /api/v1/tokens"].details["role"] == "viewer"
    [unknown] = await entries(admin, "api_token.refused")
    assert unknown.actor == "token:0123456789ab" and unknown.target == "GET /api/v1/nodes" and unknown.outcome == "refused"
    [approve] = await entries(admin, "pairing.approve_refused")
    assert approve.target == "pairing:p0123456789ab" and "no pending pairing request" in approve.details["why"]


async def test_repeated_refusals_by_one_actor_are_counted(client, make_hub) -> None:
    long_window(client)
    from support_auth import seed_user

    operator_token = await seed_user(client.app[HUB_KEY].config, "ops", "operator")
    for _ in range(40):
        resp = await client.post("/api/v1/pairing/p0123456789ab/approve", json={}, headers={"Authorization": f"Bearer {operator_token}"})
        assert resp.status == 403
    short_window(client)

    async def counted() -> bool:
        return await total(client, "access.denied") == 40
    await until(counted, 10, "the refusals summarised")
    found = await entries(client, "access.denied")
    assert len(found) == 2 and any("more refused requests from" in e.details.get("summary", "") for e in found)


# ------------------------------------------------------------ item 7: across a restart


async def test_an_agent_ban_survives_a_restart(make_hub) -> None:
    first = await make_hub(as_role=None)
    for _ in range(FAILURES_TO_BAN):
        assert (await bogus_hello(first))["code"] == protocol.ERR_AUTH
    assert (await bogus_hello(first))["code"] == protocol.ERR_RATE_LIMITED
    await first.close()

    second = await make_hub(as_role=None)  # a new app on the same SQLite file
    answer = await bogus_hello(second)
    assert answer["code"] == protocol.ERR_RATE_LIMITED and "banned for another" in answer["message"]


async def test_login_failures_and_bans_survive_restarts(make_hub) -> None:
    async def login(client, password: str) -> int:
        return (await client.post("/api/v1/session", json={"username": "admin", "password": password})).status

    first = await make_hub(as_role="admin")
    for _ in range(LOGIN_MAX_FAILURES - 2):
        assert await login(first, "wrong password!") == 401
    await first.close()

    second = await make_hub(as_role="admin")  # the failures so far count on
    assert await login(second, "wrong password!") == 401
    assert await login(second, "wrong password!") == 429  # the fifth in five minutes: banned
    await second.close()

    third = await make_hub(as_role="admin")
    resp = await third.post("/api/v1/session", json={"username": "admin", "password": TEST_PASSWORD})
    assert resp.status == 429 and "too many login attempts" in (await resp.json())["error"] and int(resp.headers["Retry-After"]) > 800


async def test_a_pairing_ban_survives_a_restart(make_hub) -> None:
    async def forged_pair(client) -> dict[str, Any]:
        key = Identity.generate()
        ws = await client.ws_connect(WS_PATH)
        try:
            challenge = await ws.receive_json(timeout=5)
            nonce = new_nonce()
            wrong = pair_payload(challenge["hub_id"], key.public_key, "not the challenge nonce", nonce)
            await ws.send_str(
                protocol.encode(protocol.TYPE_PAIR, public_key=key.public_key, signature=key.sign(wrong), agent_nonce=nonce, agent_version="x", hostname="h")
            )
            msg = await ws.receive(timeout=5)
            return json.loads(msg.data) if msg.type == WSMsgType.TEXT else {"closed": msg.type}
        finally:
            await ws.close()

    first = await make_hub(as_role=None)
    answers = [await forged_pair(first) for _ in range(6)]
    assert [a["code"] for a in answers] == [protocol.ERR_AUTH] * 5 + [protocol.ERR_RATE_LIMITED]
    assert len(await entries(first, "pairing.banned")) == 1
    await first.close()

    second = await make_hub(as_role=None)
    answer = await forged_pair(second)
    assert answer["code"] == protocol.ERR_RATE_LIMITED and "too many pairing requests" in answer["message"]


async def test_the_aggregator_summarises_per_window_and_bounds_its_keys() -> None:
    from roost.core.hub.security_events import SecurityEvents

    written: list[dict[str, Any]] = []

    async def audit(action: str, **fields: Any) -> None:
        written.append({"action": action, **fields})

    now = [1000.0]
    events = SecurityEvents(audit, window=60, max_keys=3, clock=lambda: now[0])
    for _ in range(5):
        await events.record("agent.auth_failed", key="10.0.0.1", actor="node:x", peer="10.0.0.1", phrase="failed agent logins")
    assert [w["action"] for w in written] == ["agent.auth_failed"]  # the first at once, the rest counted
    assert await events.flush() == 0  # the minute is not over
    now[0] += 60
    assert await events.flush() == 1
    assert written[-1]["details"] == {"repeats": 4, "window_seconds": 60, "summary": "4 more failed agent logins from 10.0.0.1 in the last minute"}
    now[0] += 60
    await events.flush()  # a quiet minute ends the tally: the next one is news again
    await events.record("agent.auth_failed", key="10.0.0.1", actor="node:x", peer="10.0.0.1")
    assert len(written) == 3 and "repeats" not in (written[-1]["details"] or {})

    # Past max_keys, new addresses share one tally per kind.
    for i in range(2, 50):
        await events.record("agent.auth_failed", key=f"10.0.0.{i}", actor="anonymous")
    assert len(events) == 4 and len(written) == 5  # three keys with their own first entry, then one shared tally
    now[0] += 60
    await events.flush()
    assert any(w["details"].get("summary") == "46 more attempts like this from 46 other addresses in the last minute" for w in written if w["details"])
