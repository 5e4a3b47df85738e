"""The agent gateway: enrolment and the one WebSocket per agent, strict about every message it accepts."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import voluptuous as vol
from aiohttp import WSMsgType, web

from roost.core import protocol
from roost.core.const import ENROLL_PATH, HUB_IDENTITY_PATH, MAX_MESSAGE_BYTES, WS_PATH
from roost.core.identity import load_public_key, verify
from roost.core.integration import humanize_invalid
from roost.core.pairing import commitment, new_nonce
from roost.core.store import Report
from roost.core.tls import csr_key

from .security import peer_of, rate_key, read_json, retry_after_header, wait_words
from .state import HUB_KEY, Hub, JoinTokenError

_LOGGER = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
MAX_BAD_MESSAGES = 10
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_REPLACED = 4000
CLOSE_INTERNAL = 1011
# Agent message flood limits, per node: generous enough for a backlog after an outage.
MESSAGE_RATE = 1000.0
MESSAGE_BURST = 20_000
# How far an enrolment's timestamp may be from the hub's clock: bounds how long a captured request could be replayed.
ENROLL_CLOCK_SKEW = 300

# Unauthenticated attempts per client address, enrolments and agent sockets together: a burst of 30,
# then 2 a second; 10 failed hellos or enrolments within 5 minutes ban the address for 15 minutes.
AGENT_AUTH_LIMITS = {"rate": 2.0, "burst": 30, "max_failures": 10, "failure_window": 300.0, "ban_seconds": 900.0}


def attempt_refusal(hub: Hub, peer: str) -> tuple[str, float]:
    """('', 0) if ``peer`` may try to enrol or authenticate now, else (why, seconds to wait); takes a token."""
    key = rate_key(peer)
    banned = hub.agent_auth.banned(key)
    if banned:
        return f"too many failed enrolments or agent logins from {peer}; banned for another {wait_words(banned)} — check the agent's join token or node key", banned
    wait = hub.agent_auth.allow(key)
    if wait:
        return f"too many enrolments or agent connections from {peer}; try again in {wait_words(wait)}", wait
    return "", 0.0


async def refused_attempt(hub: Hub, peer: str, why: str) -> None:
    """Audit (counted) an attempt refused because of the limits above."""
    await hub.security_events.record(
        "agent.rate_limited", key=rate_key(peer), actor="anonymous", peer=peer, details={"why": why}, phrase="attempts refused by the rate limit or a ban"
    )


async def failed_attempt(hub: Hub, peer: str) -> float:
    """Count a failed enrolment or hello from ``peer``; the one that earns a ban is audited and the ban saved at once."""
    key = rate_key(peer)
    banned = hub.agent_auth.failure(key)
    if banned:
        _LOGGER.warning("agent gateway: %s banned for %s after %d failed enrolments or agent logins", peer, wait_words(banned), hub.agent_auth.max_failures)
        await hub.audit(
            "agent.banned", actor="system", target=f"peer:{key}", outcome="refused", peer=peer, details={"seconds": int(banned), "failures": hub.agent_auth.max_failures}
        )
        await hub.limits.save()
    return banned


def _public_key(value: Any) -> str:
    try:
        load_public_key(value)
    except (ValueError, TypeError):
        raise vol.Invalid("must be a base64 raw Ed25519 public key (32 bytes)") from None
    return value


ENROLL_SCHEMA = vol.Schema(
    {
        vol.Required("token"): vol.All(str, vol.Length(min=1, max=200)),
        vol.Required("public_key"): vol.All(str, vol.Length(max=100), _public_key),
        vol.Optional("hostname", default=""): vol.All(str, vol.Length(max=255)),
        vol.Optional("name", default=""): vol.All(str, vol.Length(max=100)),
        vol.Optional("facts", default=dict): dict,
        vol.Optional("csr"): vol.All(str, vol.Length(max=4096)),
        # Proof of possession: the key being enrolled signs protocol.enroll_payload(token, key, csr, timestamp, nonce).
        vol.Required("timestamp"): vol.All(int, vol.Range(min=0, max=2**33)),
        vol.Required("nonce"): vol.All(str, vol.Length(min=16, max=128)),
        vol.Required("signature"): vol.All(str, vol.Length(max=200)),
    }
)


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def enroll(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    peer = peer_of(request)
    why, wait = attempt_refusal(hub, peer)
    if why:
        await refused_attempt(hub, peer, why)
        response = json_error(429, why)
        response.headers["Retry-After"] = retry_after_header(wait)
        return response
    if request.content_length is not None and request.content_length > 64 * 1024:
        return json_error(413, "enrolment request is larger than 64 KiB")
    body = await read_json(request)
    try:
        data = ENROLL_SCHEMA(body)
    except vol.Invalid as err:
        if _unsigned(body):
            await hub.refuse_enrolment(body["token"], "not signed by the key it enrols", peer=peer_of(request), hostname=body.get("hostname", ""))
            return json_error(400, "enrolment must be signed by the key it enrols (timestamp, nonce, signature): this agent is older than the hub — upgrade it")
        return json_error(400, f"invalid enrolment request: {humanize_invalid(err)}")
    refusal = _enrolment_proof_problem(data)
    if refusal:
        await hub.refuse_enrolment(data["token"], refusal, peer=peer_of(request), hostname=data["hostname"])
        hub.security_events.note("enrolment.refused", key=rate_key(peer), message="refused enrolment from %s: %s", args=(peer, refusal), phrase="refused enrolments")
        await failed_attempt(hub, peer)
        return json_error(403, refusal)
    try:
        node = await hub.enroll(
            token=data["token"],
            public_key=data["public_key"],
            hostname=data["hostname"],
            name=data["name"],
            facts=data["facts"],
            peer=peer_of(request),
        )
    except JoinTokenError as err:
        hub.security_events.note("enrolment.refused", key=rate_key(peer), message="refused enrolment from %s: %s", args=(peer, str(err)), phrase="refused enrolments")
        await failed_attempt(hub, peer)
        return json_error(403, str(err))
    answer = {"node_id": node.node_id, "hub_id": hub.hub_id, "name": node.name, "hub_key": hub.identity.public_key}
    cert = hub.client_cert_for(node.node_id, data.get("csr"), node.public_key)
    if cert:
        answer["client_cert"] = cert
    if hub.config.operator_keys:
        answer["operator_keys"] = list(hub.config.operator_keys)
    return web.json_response(answer)


_UNSIGNED_ENROLL_SCHEMA = ENROLL_SCHEMA.extend({vol.Optional(k): object for k in ("timestamp", "nonce", "signature")})


def _unsigned(body: Any) -> bool:
    """A well-formed enrolment, but without its proof of possession (what an older agent sends)."""
    try:
        _UNSIGNED_ENROLL_SCHEMA(body)
    except vol.Invalid:
        return False
    return not all(k in body for k in ("timestamp", "nonce", "signature"))


def _enrolment_proof_problem(data: dict[str, Any]) -> str:
    """Why an enrolment does not prove possession of its key ("" when it does)."""
    skew = abs(time.time() - data["timestamp"])
    if skew > ENROLL_CLOCK_SKEW:
        return f"enrolment timestamp is {skew:.0f} s away from the hub's clock (at most {ENROLL_CLOCK_SKEW} s): set this host's clock and try again"
    payload = protocol.enroll_payload(data["token"], data["public_key"], data.get("csr", ""), data["timestamp"], data["nonce"])
    if not verify(data["public_key"], data["signature"], payload):
        return "enrolment is not signed by the key it enrols"
    if data.get("csr") and csr_key(data["csr"]) != data["public_key"]:
        return "the certificate request must be for the key being enrolled (made with the node key)"
    return ""


async def hub_identity(request: web.Request) -> web.Response:
    """The hub proves which hub it is before an agent sends it a join token's secret: it signs the caller's nonce."""
    hub = request.app[HUB_KEY]
    nonce = request.query.get("nonce", "")
    if not 16 <= len(nonce) <= 128 or not nonce.isalnum():
        return json_error(400, "pass ?nonce= with 16 to 128 letters or digits")
    signature = hub.identity.sign(protocol.hub_proof_payload(protocol.HUB_PROOF_IDENTITY, hub.hub_id, "", "", nonce))
    return web.json_response({"hub_id": hub.hub_id, "hub_key": hub.identity.public_key, "signature": signature})


class AgentConnection:
    """One authenticated agent socket: reads in order, persists through the ingestor, acks in order."""

    def __init__(self, hub: Hub, ws: web.WebSocketResponse, peer: str) -> None:
        self.hub = hub
        self.ws = ws
        self.peer = peer
        self.node_id = ""
        self.epoch = ""
        self.bad = 0
        self.nonce = ""
        self.cert_node_id: str | None = None  # from a verified client certificate, when mTLS is in use
        self._acks: asyncio.Queue[tuple[int, asyncio.Future[bool]] | None] = asyncio.Queue()

    async def send_error(self, code: str, message: str, *, close: int | None = None) -> None:
        if self.node_id:
            _LOGGER.warning("agent %s (%s): %s: %s", self.node_id, self.peer, code, message)
        else:  # anyone can open a socket: repeats from one address are counted, not logged one by one
            self.hub.security_events.note(
                "agent.refused", key=rate_key(self.peer), message="agent unauthenticated (%s): %s: %s", args=(self.peer, code, message), phrase="refused agent sockets"
            )
        if not self.ws.closed:
            await self.ws.send_str(protocol.error(code, message))
            if close is not None:
                await self.ws.close(code=close, message=message[:120].encode())

    async def handshake(self) -> bool:
        why, _wait = attempt_refusal(self.hub, self.peer)
        if why:
            await refused_attempt(self.hub, self.peer, why)
            await self.send_error(protocol.ERR_RATE_LIMITED, why, close=CLOSE_POLICY)
            return False
        nonce = secrets.token_urlsafe(24)
        # Committed now, revealed only if the agent asks to pair (see roost.core.pairing).
        hub_nonce = new_nonce()
        await self.ws.send_str(
            protocol.encode(
                protocol.TYPE_CHALLENGE, nonce=nonce, hub_id=self.hub.hub_id, commitment=commitment(hub_nonce), hub_key=self.hub.identity.public_key
            )
        )
        try:
            msg = await self.ws.receive(timeout=HANDSHAKE_TIMEOUT)
        except asyncio.TimeoutError:
            await self.send_error(protocol.ERR_AUTH, "no hello within 10 s", close=CLOSE_POLICY)
            return False
        if msg.type != WSMsgType.TEXT:
            await self.send_error(protocol.ERR_BAD_MESSAGE, "expected a hello text message", close=CLOSE_POLICY)
            return False
        try:
            hello = protocol.parse(msg.data, protocol.AGENT_OPENERS)
        except protocol.ProtocolError as err:
            await self.send_error(err.code, str(err), close=CLOSE_TOO_BIG if err.code == protocol.ERR_TOO_LARGE else CLOSE_POLICY)
            return False
        if hello["type"] == protocol.TYPE_PAIR:
            wait = self.hub.pairing_attempts.allow(rate_key(self.peer))
            if wait:
                await self.hub.security_events.record(
                    "pairing.refused", key=rate_key(self.peer), actor="anonymous", peer=self.peer, details={"why": "rate limited"}, phrase="rate-limited pairing requests"
                )
                await self.send_error(protocol.ERR_RATE_LIMITED, f"too many pairing requests from {self.peer}; try again in {wait:.0f} s", close=CLOSE_POLICY)
                return False
            await self.hub.pairing.serve(self, hello, nonce, hub_nonce)
            return False
        node = await self.hub.find_node(hello["node_id"])
        payload = protocol.auth_payload(self.hub.hub_id, hello["node_id"], nonce)
        # One answer for unknown, revoked and bad signature: nothing to probe.
        if node is None or node.revoked or node.local or not verify(node.public_key, hello["signature"], payload):
            await self.hub.security_events.record(
                "agent.auth_failed",
                key=rate_key(self.peer),
                actor=f"node:{hello['node_id']}",
                outcome="refused",
                peer=self.peer,
                details={"why": "unknown node" if node is None else "revoked" if node.revoked else "bad signature"},
                phrase="failed agent logins",
            )
            await failed_attempt(self.hub, self.peer)
            await self.send_error(protocol.ERR_AUTH, "unknown node, revoked node or bad signature — enrol again with a new join token", close=CLOSE_POLICY)
            return False
        if self.hub.config.require_client_cert and self.cert_node_id != node.node_id:
            await self.hub.audit("agent.auth_failed", actor=f"node:{node.node_id}", outcome="refused", peer=self.peer, details={"why": "no client certificate for this node"})
            await self.send_error(protocol.ERR_AUTH, "this hub requires a client certificate issued to this node — pair or enrol the agent again", close=CLOSE_POLICY)
            return False
        self.node_id = node.node_id
        previous = self.hub.connections.get(self.node_id)
        self.hub.connections[self.node_id] = self.ws
        if previous is not None and not previous.closed:
            await previous.close(code=CLOSE_REPLACED, message=b"replaced by a newer connection of this node")
        node = await self.hub.hello(self.node_id, hello)
        self.epoch = hello["epoch"]
        last_seq = node.last_seq if node.epoch == self.epoch else 0
        self.nonce = nonce
        proof = protocol.hub_proof_payload(protocol.HUB_PROOF_CONNECT, self.hub.hub_id, self.node_id, nonce, hello["agent_nonce"])
        await self.ws.send_str(
            protocol.encode(
                protocol.TYPE_WELCOME,
                node_id=self.node_id,
                epoch=node.epoch,
                last_seq=last_seq,
                hub_key=self.hub.identity.public_key,
                hub_signature=self.hub.identity.sign(proof),
            )
        )
        grants = await self.hub.store.get_grants(self.node_id)
        await self.ws.send_str(protocol.encode(protocol.TYPE_GRANTS, grants=grants.grants))
        for domain, settings in sorted((await self.hub.agent_settings(self.node_id)).items()):
            await self.ws.send_str(protocol.encode(protocol.TYPE_SETTINGS, domain=domain, settings=settings))
        self.hub.jobs.attach(self.node_id, self.ws.send_str, hello.get("actions") or [])
        _LOGGER.info("agent %s connected from %s (last report %d)", self.node_id, self.peer, last_seq)
        return True

    async def acker(self) -> None:
        while (item := await self._acks.get()) is not None:
            seq, future = item
            try:
                await future
            except Exception as err:
                await self.send_error(protocol.ERR_INTERNAL, f"report {seq} was not stored ({err}); reconnect and resend", close=CLOSE_INTERNAL)
                return
            if self.ws.closed:
                return
            await self.ws.send_str(protocol.encode(protocol.TYPE_ACK, seq=seq))

    async def serve(self) -> None:
        acker = asyncio.create_task(self.acker())
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self.handle(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.bad_message(protocol.ProtocolError(protocol.ERR_BAD_MESSAGE, "binary frames are not part of the protocol; send JSON text"))
                elif msg.type == WSMsgType.ERROR:
                    _LOGGER.warning("agent %s: connection error: %s", self.node_id, self.ws.exception())
                if self.ws.closed:
                    break
        finally:
            self._acks.put_nowait(None)
            await asyncio.gather(acker, return_exceptions=True)

    async def bad_message(self, err: protocol.ProtocolError) -> None:
        self.bad += 1
        if err.fatal:
            await self.send_error(err.code, str(err), close=CLOSE_TOO_BIG if err.code == protocol.ERR_TOO_LARGE else CLOSE_POLICY)
        elif self.bad >= MAX_BAD_MESSAGES:
            await self.send_error(err.code, f"{err} (too many bad messages; closing)", close=CLOSE_POLICY)
        else:
            await self.send_error(err.code, str(err))

    async def handle(self, text: str) -> None:
        if self.hub.agent_messages.allow(self.node_id):
            await self.send_error(
                protocol.ERR_RATE_LIMITED,
                f"more than {MESSAGE_BURST} messages in a burst or {MESSAGE_RATE:g}/s sustained; slow down",
                close=CLOSE_POLICY,
            )
            return
        try:
            message = protocol.parse(text, protocol.AGENT_MESSAGES)
        except protocol.ProtocolError as err:
            await self.bad_message(err)
            return
        now = time.time()
        if message["type"] == protocol.TYPE_HEARTBEAT:
            self.hub.mark_seen(self.node_id, now)
            return
        if message["type"] == protocol.TYPE_ROTATE_KEY:
            await self.rotate_key(message)
            return
        if message["type"] in (protocol.TYPE_JOB_STARTED, protocol.TYPE_JOB_PROGRESS, protocol.TYPE_JOB_RESULT):
            self.hub.mark_seen(self.node_id, now)
            await self.hub.jobs.handle(self.node_id, message)
            return
        if message["node_id"] != self.node_id:
            await self.send_error(protocol.ERR_WRONG_NODE, f"report is for node {message['node_id']!r} but this connection is {self.node_id!r}", close=CLOSE_POLICY)
            return
        report = Report(
            node_id=self.node_id,
            seq=message["seq"],
            epoch=self.epoch,
            collected_at=message["collected_at"],
            received_at=now,
            data=message["data"],
            metrics=message["metrics"],
            integrations=message["integrations"],
            interval=message.get("interval"),
            spool_dropped=message["spool_dropped"],
        )
        report, refused = await self.hub.admit(report)
        future = await self.hub.ingestor.submit(report)
        self._acks.put_nowait((report.seq, future))
        if refused is not None and not self.ws.closed:
            # Not fatal: the rest of the report is stored and acknowledged as usual.
            await self.ws.send_str(protocol.error(protocol.ERR_LIMIT, f"report {report.seq}: {refused.message}"))


    async def rotate_key(self, message: dict[str, Any]) -> None:
        """The node proves the new key on this authenticated connection; the old key stops working at once."""
        new_key = message["new_public_key"]
        payload = protocol.rotate_payload(self.hub.hub_id, self.node_id, new_key, self.nonce)
        try:
            load_public_key(new_key)
            valid = verify(new_key, message["signature"], payload)
        except ValueError:
            valid = False
        if not valid:
            await self.send_error(protocol.ERR_AUTH, "key rotation not signed by the new key for this connection")
            return
        try:
            await self.hub.rotate_key(self.node_id, new_key)
        except ValueError as err:
            await self.send_error(protocol.ERR_BAD_MESSAGE, f"cannot rotate key: {err}")
            return
        await self.ws.send_str(protocol.encode(protocol.TYPE_KEY_ROTATED, public_key=new_key))


async def agent_socket(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    # aiohttp closes with 1009 past max_msg_size; below it, parse() sends a JSON error first.
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_MESSAGE_BYTES * 2)
    await ws.prepare(request)
    conn = AgentConnection(hub, ws, peer_of(request))
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is not None and hub.tls is not None:
        conn.cert_node_id = hub.tls.client_cert_node_id(ssl_object.getpeercert(binary_form=True))
    try:
        if await conn.handshake():
            await conn.serve()
    finally:
        if conn.node_id:
            hub.jobs.detach(conn.node_id, ws.send_str)
        if conn.node_id and hub.connections.get(conn.node_id) is ws:
            del hub.connections[conn.node_id]
            _LOGGER.info("agent %s disconnected", conn.node_id)
        if not ws.closed:
            await ws.close()
    return ws


def setup(app: web.Application) -> None:
    app.router.add_post(ENROLL_PATH, enroll)
    app.router.add_get(WS_PATH, agent_socket)
    app.router.add_get(HUB_IDENTITY_PATH, hub_identity)
    from .auth import add_public_path

    add_public_path(app, HUB_IDENTITY_PATH)  # the hub's proof of identity, asked for before enrolment
