"""Pairing on the hub: pending requests with matching codes, approval with grants, per-node grants and their API."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

import voluptuous as vol
from aiohttp import web

from roost.core import protocol
from roost.core.capabilities import Ceiling, default_grants, describe, effective, is_capability, is_known
from roost.core.discovery import AGENT_SERVICE, Browser
from roost.core.identity import fingerprint, verify
from roost.core.integration import humanize_invalid
from roost.core.pairing import pair_payload, short_code
from roost.core.store import NodeGrants, NodeRecord, PairingLimitError, PairingRequest
from roost.core.store.pairing import PAIR_APPROVED, PAIR_PENDING, PAIR_REJECTED, PAIR_WITHDRAWN

from .auth import ROLE_ADMIN, ROLE_VIEWER, actor_of, requires
from .security import read_json
from .state import HUB_KEY, Hub, claimed_facts, key_changed_node, new_node_id

if TYPE_CHECKING:
    from .gateway import AgentConnection

_LOGGER = logging.getLogger(__name__)

DECISION_POLL_SECONDS = 1.0
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008


class PairingError(Exception):
    """A pairing decision that cannot be made (not pending, expired, unknown)."""


def _grants_list(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 200 or not all(is_capability(c) for c in value):
        raise vol.Invalid("must be a list of capability names such as host.metrics.read")
    return sorted(set(value))


APPROVE_SCHEMA = vol.Schema({vol.Optional("grants"): _grants_list, vol.Optional("name"): vol.All(str, vol.Length(min=1, max=100))})
REJECT_SCHEMA = vol.Schema({vol.Optional("reason", default="rejected by an admin"): vol.All(str, vol.Length(max=200))})
GRANTS_SCHEMA = vol.Schema({vol.Required("grants"): _grants_list})


class Pairing:
    """Pending requests live in the store, so the CLI can decide them too; waiting sockets are woken at once or within a second."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._waiters: dict[str, asyncio.Event] = {}
        # Requests whose agent socket is open here: only they may hold a pending slot.
        self._live: set[str] = set()
        self.browser: Browser | None = None

    # ------------------------------------------------------------ discovery

    async def start_discovery(self, interfaces: list[str]) -> None:
        self.browser = Browser(AGENT_SERVICE, interfaces=interfaces or None)
        await self.browser.start()

    async def stop_discovery(self) -> None:
        if self.browser is not None:
            await self.browser.stop()
            self.browser = None

    def discovered(self) -> list[dict[str, Any]]:
        """Unpaired agents announcing themselves; a hint for the admin, never trusted."""
        if self.browser is None:
            return []
        paired = {fingerprint(n.public_key) for n in self.hub._nodes.values()}
        out = []
        for found in self.browser.found.values():
            key = found.properties.get("key", "")
            if key and key in paired:
                continue
            out.append({"name": found.name, "hostname": found.properties.get("hostname", ""), "addresses": list(found.addresses), "key_fingerprint": key})
        return out

    # ------------------------------------------------------------- requests

    def view(self, request: PairingRequest) -> dict[str, Any]:
        offered = [c for c in request.offered if is_capability(c)]
        return {
            "id": request.request_id,
            "hostname": request.hostname,
            "name": request.name or request.hostname,
            "code": request.code,
            "key_fingerprint": fingerprint(request.public_key),
            "peer": request.peer,
            "created_at": request.created_at,
            "expires_at": request.expires_at,
            "facts": request.facts,
            "offered": [{"name": c, "description": describe(c), "known": is_known(c)} for c in offered],
            "ceiling": request.ceiling,
            "default_grants": default_grants(offered),
            "key_changed_node": request.key_changed_node,
            "status": request.status,
        }

    async def pending(self) -> list[dict[str, Any]]:
        return [self.view(r) for r in await self.hub.store.list_pairing_requests(now=time.time())]

    async def approve(self, request_id: str, *, actor: str, grants: list[str] | None = None, name: str | None = None) -> str:
        node = await approve_request(self.hub.store, request_id, actor=actor, grants=grants, name=name, new_node_id=self.hub.new_node_id)
        self.hub.remember(node)
        self._wake(request_id)
        return node.node_id

    async def reject(self, request_id: str, *, actor: str, reason: str = "rejected by an admin") -> None:
        await reject_request(self.hub.store, request_id, actor=actor, reason=reason)
        self._wake(request_id)

    def _wake(self, request_id: str) -> None:
        event = self._waiters.get(request_id)
        if event is not None:
            event.set()

    # -------------------------------------------------------- the socket side

    async def serve(self, conn: AgentConnection, message: dict[str, Any], nonce: str, hub_nonce: str) -> None:
        """An unpaired agent asked to pair on this socket: keep it pending until a person decides."""
        hub = self.hub
        public_key = message["public_key"]
        if not verify(public_key, message["signature"], pair_payload(hub.hub_id, public_key, nonce, message["agent_nonce"])):
            from .security import rate_key

            # A forged request counts towards the address's pairing ban (kept across restarts).
            if hub.pairing_attempts.failure(rate_key(conn.peer)):
                await hub.audit("pairing.banned", actor="system", target=f"peer:{rate_key(conn.peer)}", outcome="refused", peer=conn.peer)
                await hub.limits.save()
            await hub.security_events.record(
                "pairing.refused", key=rate_key(conn.peer), actor="anonymous", peer=conn.peer, details={"why": "bad signature"}, phrase="badly signed pairing requests"
            )
            await conn.send_error(protocol.ERR_AUTH, "pairing request not signed by the key it carries", close=CLOSE_POLICY)
            return
        node = await hub.store.get_node_by_key(public_key)
        if node is not None:
            if node.revoked or node.local:
                await conn.send_error(protocol.ERR_AUTH, "this key belongs to a revoked node — give the agent a new key (delete its node_key.pem)", close=CLOSE_POLICY)
                return
            # The agent lost its state but kept its key: it is already approved.
            await self._approved(conn, node.node_id, message, nonce)
            return
        hostname, name = message["hostname"], message["name"]
        key_changed = key_changed_node(hub._nodes.values(), hostname=hostname, name=name, public_key=public_key)
        now = time.time()
        request = PairingRequest(
            request_id="p" + secrets.token_hex(6),
            public_key=public_key,
            hostname=hostname,
            name=name,
            code=short_code(
                agent_public_key=public_key,
                ca_fingerprint=hub.ca_fingerprint,
                hub_key=hub.identity.public_key,
                agent_nonce=message["agent_nonce"],
                hub_nonce=hub_nonce,
            ),
            created_at=now,
            expires_at=now + hub.config.pairing_ttl,
            facts=message["facts"],
            offered=[c for c in message["capabilities"] if is_capability(c)],
            ceiling=message["ceiling"],
            peer=conn.peer,
            key_changed_node=key_changed,
        )
        self._live.add(request.request_id)
        try:
            await self._queue(conn, request, message, nonce, hub_nonce)
        finally:
            self._live.discard(request.request_id)

    async def _queue(self, conn: AgentConnection, request: PairingRequest, message: dict[str, Any], nonce: str, hub_nonce: str) -> None:
        """Hold a slot for the request (freeing those of agents that went away first) and wait for the decision."""
        hub, hostname, name, key_changed, public_key = self.hub, request.hostname, request.name, request.key_changed_node, request.public_key
        await self._withdraw_dead(request.created_at)
        try:
            await hub.store.add_pairing_request(request, max_pending=hub.config.pairing_max_pending, now=request.created_at)
        except PairingLimitError as err:
            await hub.audit("pairing.refused", actor="anonymous", outcome="refused", peer=conn.peer, details={"hostname": hostname, "why": "too many pending"})
            await conn.send_error(protocol.ERR_RATE_LIMITED, str(err), close=CLOSE_POLICY)
            return
        await hub.audit(
            "pairing.requested",
            actor="anonymous",
            target=f"pairing:{request.request_id}",
            peer=conn.peer,
            details={"hostname": hostname, "key": fingerprint(public_key), "code": request.code, "key_changed_node": key_changed},
        )
        _LOGGER.info("pairing request %s from %s (%s), code %s%s", request.request_id, name or hostname, conn.peer, request.code, f" — KEY CHANGED for node {key_changed}" if key_changed else "")
        await conn.ws.send_str(protocol.encode(protocol.TYPE_PAIR_PENDING, request_id=request.request_id, hub_nonce=hub_nonce, expires_at=request.expires_at))
        hub.publish("pairing", {"pending": len(await hub.store.list_pairing_requests(now=time.time()))})
        await self._wait(conn, request, message, nonce)

    async def _wait(self, conn: AgentConnection, request: PairingRequest, message: dict[str, Any], nonce: str) -> None:
        event = self._waiters.setdefault(request.request_id, asyncio.Event())
        reader = asyncio.create_task(self._drain(conn))
        try:
            while not conn.ws.closed and not reader.done():
                decided = asyncio.ensure_future(event.wait())
                # Woken by a decision, by the agent going away, or once a second to notice the CLI's decisions.
                await asyncio.wait({decided, reader}, timeout=DECISION_POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
                decided.cancel()
                if reader.done():
                    break
                event.clear()
                current = await self.hub.store.get_pairing_request(request.request_id)
                if current is None:
                    return
                if current.status == PAIR_APPROVED and current.node_id:
                    await self._approved(conn, current.node_id, message, nonce)
                    return
                if current.status == PAIR_REJECTED:
                    await conn.ws.send_str(protocol.encode(protocol.TYPE_PAIR_REJECTED, reason="an admin rejected this pairing request"))
                    await conn.ws.close(code=CLOSE_NORMAL, message=b"pairing rejected")
                    return
                if current.expires_at <= time.time():
                    await conn.send_error(protocol.ERR_PAIRING, "pairing request expired; start the agent again for a new code", close=CLOSE_NORMAL)
                    return
        finally:
            self._live.discard(request.request_id)  # before the write below: a newcomer may take this slot at once
            self._waiters.pop(request.request_id, None)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await self._withdraw(request)

    async def _withdraw_dead(self, now: float) -> None:
        """Free the slots of pending requests with no socket here (closed before a decision, or left from before a restart)."""
        for pending in await self.hub.store.list_pairing_requests(now=now):
            if pending.request_id not in self._live:
                await self._withdraw(pending)

    async def _withdraw(self, request: PairingRequest) -> None:
        """A request whose socket is gone holds no slot: only that socket could carry the approval and its code."""
        withdrawn = await self.hub.store.decide_pairing_request(request.request_id, status=PAIR_WITHDRAWN, node_id=None, decided_by="agent disconnected", now=time.time())
        if withdrawn is not None:
            _LOGGER.info("pairing request %s withdrawn: its agent disconnected before a decision", request.request_id)
            self.hub.publish("pairing", {"pending": len(await self.hub.store.list_pairing_requests(now=time.time()))})

    async def _drain(self, conn: AgentConnection) -> None:
        """A pending agent may not report or ask for anything; it only waits."""
        from aiohttp import WSMsgType

        async for msg in conn.ws:
            if msg.type == WSMsgType.TEXT:
                await conn.send_error(protocol.ERR_AUTH, "this agent is not paired yet: wait for an admin to approve it")

    async def _approved(self, conn: AgentConnection, node_id: str, message: dict[str, Any], nonce: str) -> None:
        hub = self.hub
        grants = await hub.store.get_grants(node_id)
        extra = {}
        cert = hub.client_cert_for(node_id, message.get("csr"), message["public_key"])
        if cert:
            extra["client_cert"] = cert
        if hub.config.operator_keys:
            extra["operator_keys"] = list(hub.config.operator_keys)
        # The key the agent pins from now on, proven for this node and this connection.
        proof = protocol.hub_proof_payload(protocol.HUB_PROOF_PAIR, hub.hub_id, node_id, nonce, message["agent_nonce"])
        extra["hub_key"] = hub.identity.public_key
        extra["hub_signature"] = hub.identity.sign(proof)
        await conn.ws.send_str(protocol.encode(protocol.TYPE_PAIR_APPROVED, node_id=node_id, hub_id=hub.hub_id, grants=grants.grants, **extra))
        await conn.ws.close(code=CLOSE_NORMAL, message=b"paired; reconnect with hello")

    # ---------------------------------------------------------------- grants

    def grants_view(self, grants: NodeGrants) -> dict[str, Any]:
        try:
            ceiling = Ceiling.from_dict(grants.ceiling or None)
        except vol.Invalid:
            ceiling = Ceiling()
        offered = sorted(set(grants.offered) | set(grants.grants))
        return {
            "node_id": grants.node_id,
            "grants": grants.grants,
            "ceiling": ceiling.as_dict(),
            "offered": [
                {"name": c, "description": describe(c), "known": is_known(c), "granted": c in grants.grants, "permitted": ceiling.permits(c)}
                for c in offered
            ],
            "effective": effective(grants.grants, ceiling),
            "updated_at": grants.updated_at,
        }


# ------------------------------------------------------- decisions on the store


async def approve_request(
    store: Any, request_id: str, *, actor: str, grants: list[str] | None, name: str | None, new_node_id: Any
) -> NodeRecord:
    """Approve a pending request: the node, its grants and the audit entry. The hub and the CLI both use this."""
    request = await store.get_pairing_request(request_id)
    if request is None or request.status != PAIR_PENDING or request.expires_at <= time.time():
        raise PairingError("no pending pairing request with that id (it may have expired or been decided)")
    if await store.get_node_by_key(request.public_key) is not None:
        raise PairingError("that key already belongs to a node")
    chosen = default_grants(request.offered) if grants is None else sorted(set(grants))
    node_id = new_node_id()
    decided = await store.decide_pairing_request(request_id, status=PAIR_APPROVED, node_id=node_id, decided_by=actor, now=time.time())
    if decided is None:
        raise PairingError("the request was decided by someone else or expired")
    now = time.time()
    node = NodeRecord(
        node_id=node_id,
        name=name or request.name or request.hostname,
        hostname=request.hostname,
        public_key=request.public_key,
        created_at=now,
        facts=claimed_facts(request.facts),
    )
    await store.add_node(node)
    await store.set_grants(node_id, chosen, now=now)
    await store.set_ceiling(node_id, request.ceiling, request.offered, now=now)
    await store.append_audit(
        "pairing.approved",
        actor=actor,
        target=f"node:{node_id}",
        details={"request": request_id, "hostname": request.hostname, "key": fingerprint(request.public_key), "grants": chosen, "code": request.code},
    )
    return node


def new_node_id_for_cli() -> str:
    return new_node_id()


async def reject_request(store: Any, request_id: str, *, actor: str, reason: str) -> None:
    decided = await store.decide_pairing_request(request_id, status=PAIR_REJECTED, node_id=None, decided_by=actor, now=time.time())
    if decided is None:
        raise PairingError("no pending pairing request with that id (it may have expired or been decided)")
    await store.append_audit(
        "pairing.rejected",
        actor=actor,
        target=f"pairing:{request_id}",
        details={"hostname": decided.hostname, "key": fingerprint(decided.public_key), "reason": reason},
    )


# ------------------------------------------------------------------ routes


def _hub(request: web.Request) -> Hub:
    return request.app[HUB_KEY]


async def _body(request: web.Request, schema: vol.Schema) -> dict[str, Any]:
    if request.content_length and request.content_length > 64 * 1024:
        raise web.HTTPRequestEntityTooLarge(max_size=64 * 1024, actual_size=request.content_length)
    try:
        raw = await read_json(request, empty={})
    except ValueError:
        raise _json_error(400, "body must be JSON") from None
    try:
        return schema(raw if raw is not None else {})
    except vol.Invalid as err:
        raise _json_error(400, f"invalid request: {humanize_invalid(err)}") from None


def _json_error(status: int, message: str) -> web.HTTPException:
    exc = web.HTTPException(text=json.dumps({"error": message}), content_type="application/json")
    exc.set_status(status)
    return exc


async def _refused_decision(request: web.Request, action: str, err: PairingError) -> None:
    """Deciding a request that is not pending (unknown, expired, decided) is audited; repeats by one actor counted."""
    from .security import peer_of

    actor = actor_of(request)
    await _hub(request).security_events.record(
        action,
        key=actor,
        actor=actor,
        target=f"pairing:{request.match_info['request_id']}",
        peer=peer_of(request),
        details={"why": str(err)},
        phrase="decisions on requests that are not pending",
    )


@requires(ROLE_ADMIN)
async def list_pairing(request: web.Request) -> web.Response:
    hub = _hub(request)
    return web.json_response({"pending": await hub.pairing.pending(), "discovered": hub.pairing.discovered(), "ca_fingerprint": hub.ca_fingerprint})


@requires(ROLE_ADMIN)
async def approve_pairing(request: web.Request) -> web.Response:
    hub = _hub(request)
    body = await _body(request, APPROVE_SCHEMA)
    try:
        node_id = await hub.pairing.approve(request.match_info["request_id"], actor=actor_of(request), grants=body.get("grants"), name=body.get("name"))
    except PairingError as err:
        await _refused_decision(request, "pairing.approve_refused", err)
        return web.json_response({"error": str(err)}, status=409)
    return web.json_response({"node_id": node_id})


@requires(ROLE_ADMIN)
async def reject_pairing(request: web.Request) -> web.Response:
    hub = _hub(request)
    body = await _body(request, REJECT_SCHEMA)
    try:
        await hub.pairing.reject(request.match_info["request_id"], actor=actor_of(request), reason=body["reason"])
    except PairingError as err:
        await _refused_decision(request, "pairing.reject_refused", err)
        return web.json_response({"error": str(err)}, status=409)
    return web.json_response({"rejected": True})


@requires(ROLE_VIEWER)
async def get_grants(request: web.Request) -> web.Response:
    hub = _hub(request)
    node_id = request.match_info["node_id"]
    if hub.node(node_id) is None:
        return web.json_response({"error": f"no node with id {node_id!r}"}, status=404)
    return web.json_response(hub.pairing.grants_view(await hub.store.get_grants(node_id)))


@requires(ROLE_ADMIN)
async def put_grants(request: web.Request) -> web.Response:
    hub = _hub(request)
    node_id = request.match_info["node_id"]
    if hub.node(node_id) is None:
        return web.json_response({"error": f"no node with id {node_id!r}"}, status=404)
    body = await _body(request, GRANTS_SCHEMA)
    await hub.set_grants(node_id, body["grants"], actor=actor_of(request))
    return web.json_response(hub.pairing.grants_view(await hub.store.get_grants(node_id)))


@requires(ROLE_ADMIN)
async def revoke_node(request: web.Request) -> web.Response:
    hub = _hub(request)
    node_id = request.match_info["node_id"]
    node = hub.node(node_id)
    if node is None:
        return web.json_response({"error": f"no node with id {node_id!r}"}, status=404)
    if node.local:
        return web.json_response({"error": "the hub's own node cannot be revoked"}, status=409)
    await hub.revoke_node(node_id, actor=actor_of(request))
    return web.json_response({"revoked": True})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/pairing", list_pairing)
    r.add_post("/api/v1/pairing/{request_id}/approve", approve_pairing)
    r.add_post("/api/v1/pairing/{request_id}/reject", reject_pairing)
    r.add_get("/api/v1/nodes/{node_id}/grants", get_grants)
    r.add_put("/api/v1/nodes/{node_id}/grants", put_grants)
    r.add_post("/api/v1/nodes/{node_id}/revoke", revoke_node)


__all__ = ["Pairing", "PairingError", "setup", "PAIR_PENDING"]
