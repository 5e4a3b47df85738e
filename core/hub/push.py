"""Script-only push: nodes that cannot run the agent POST their report with a per-node bearer token.

``POST /api/v1/push/docker`` takes the body an agent's report carries for the
docker domain (``{"collected_at", "interval", "data": {"docker": {...}},
"metrics": {...}}``; ``v``, ``type``, ``node_id`` and ``seq`` may be there and
are checked or ignored) and puts it through the same ingest pipeline as agent
reports. The token (``rpt_<id>_<secret>``) is compared in constant time
against the SHA-256 kept in the store; the secret itself is never stored.

Answers: 503 while ``[hub] push`` is off, 401 for a missing, unknown or
revoked token, 413 past the size limit, 400 with the reason for a body that
is not a valid report, 429 after repeated bad tokens from one address,
200 with the node and sequence once the report is on disk.

Admins manage tokens under ``/api/v1/push-tokens``: creating one makes a push
node (or takes an existing push node) and shows the token once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib
import json
import logging
import math
import re
import secrets
import time
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core import jsonparse
from roost.core.const import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, STATE_LOADED, __version__
from roost.core.integration import humanize_invalid
from roost.core.protocol import NODE_ID_RE
from roost.core.store import Report
from roost.core.store.push import PushToken

from .state import HUB_KEY, Hub
from .auth import ROLE_ADMIN, actor_of, add_public_path, requires
from .ingest import IngestError
from .security import RateLimiter, peer_of, rate_key, read_json, retry_after_header

_LOGGER = logging.getLogger(__name__)

PUSH_PATH = "/api/v1/push/{domain}"
TOKENS_PATH = "/api/v1/push-tokens"
TOKEN_PREFIX = "rpt"
TOKEN_RE = re.compile(r"^rpt_([0-9a-f]{8})_([A-Za-z0-9-]{20,64})$")
# A push node's reports share one epoch; its sequence numbers are handed out by the hub.
PUSH_EPOCH = "push"
NODE_SOURCE = "push"
MAX_PUSH_BYTES = MAX_MESSAGE_BYTES
MAX_FUTURE_SECONDS = 300.0
TOUCH_EVERY_SECONDS = 60.0
# Bad tokens from one address: 10 in 5 minutes bans it for 15 minutes.
BAD_TOKEN_LIMIT = 10
BAD_TOKEN_WINDOW = 300.0
BAD_TOKEN_BAN = 900.0
# The domains a script may push, and the module that checks what it sends.
PUSH_DOMAINS = {"docker": "roost.integrations.docker.push"}
DOMAIN_NAMES = {"docker": "Docker"}
_DUMMY_HASH = hashlib.sha256(b"roost-push-dummy").hexdigest()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise vol.Invalid("expected a finite number")
    return float(value)


def _body_schema(domain: str) -> vol.Schema:
    return vol.Schema(
        {
            vol.Optional("v"): vol.All(int, vol.In([PROTOCOL_VERSION], msg=f"this hub speaks protocol version {PROTOCOL_VERSION}")),
            vol.Optional("type"): vol.In(["report"], msg="must be 'report'"),
            vol.Optional("node_id"): vol.Match(NODE_ID_RE),
            vol.Optional("seq"): int,
            vol.Optional("collected_at"): vol.All(_finite, vol.Range(min=0, max=2**33)),
            vol.Optional("interval"): vol.All(_finite, vol.Range(min=1, max=86400)),
            vol.Optional("integrations"): list,
            vol.Optional("spool_dropped"): int,
            vol.Required("data"): vol.Schema({vol.Required(domain): object}, extra=vol.PREVENT_EXTRA),
            vol.Optional("metrics", default=dict): vol.All({vol.All(str, vol.Length(min=1, max=200)): _finite}, vol.Length(max=5000)),
        },
        extra=vol.PREVENT_EXTRA,
    )


class PushService:
    """Tokens, sequence numbers and bad-token limits of the push endpoint; lives on the app under PUSH_KEY."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.limiter = RateLimiter(max_failures=BAD_TOKEN_LIMIT, failure_window=BAD_TOKEN_WINDOW, ban_seconds=BAD_TOKEN_BAN)
        if getattr(hub, "limits", None) is not None:  # bans are kept in the store across restarts
            hub.limits.add("push", self.limiter)
        self._locks: dict[str, asyncio.Lock] = {}
        self._seq: dict[str, int] = {}
        self._touched: dict[str, float] = {}

    async def authenticate(self, header: str | None) -> PushToken | None:
        """The token's record if the header carries a valid, unrevoked token of a live node."""
        if not header:
            return None
        scheme, _, value = header.strip().partition(" ")
        match = TOKEN_RE.match(value.strip()) if scheme.lower() == "bearer" else None
        if match is None:
            return None
        token_id, secret = match.groups()
        found = await self.hub.store.get_push_token(token_id)
        # Compare even for an unknown id, so timing does not tell which ids exist.
        stored = found[1] if found is not None else _DUMMY_HASH
        valid = hmac.compare_digest(stored.encode(), hash_secret(secret).encode())
        if found is None or not valid or found[0].revoked:
            return None
        node = await self.hub.find_node(found[0].node_id)
        if node is None or node.revoked:
            return None
        return found[0]

    async def create(self, *, name: str, node_id: str | None, note: str, actor: str, multi_host: bool = False) -> tuple[str, PushToken]:
        hub = self.hub
        if node_id:
            node = await hub.find_node(node_id)
            if node is None:
                raise LookupError(f"no node with id {node_id!r}")
            if node.facts.get("source") != NODE_SOURCE:
                raise ValueError(f"node {node_id!r} runs an agent; push tokens are for script-only nodes (create one without node_id)")
        else:
            # A key nobody holds: the node can never log in over the agent socket, only push.
            node = await hub.add_node(
                public_key=base64.b64encode(secrets.token_bytes(32)).decode(),
                hostname=name,
                name=name,
                facts={"source": NODE_SOURCE, "hostname": name},
            )
        token_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(24).replace("_", "-")
        record = PushToken(
            token_id=token_id, node_id=node.node_id, created_at=time.time(), created_by=actor, note=note, multi_host=multi_host
        )
        await hub.store.add_push_token(record, hash_secret(secret))
        await hub.audit(
            "push_token.created", actor=actor, target=f"node:{node.node_id}", details={"token": token_id, "note": note, "name": node.name, "multi_host": multi_host}
        )
        return f"{TOKEN_PREFIX}_{token_id}_{secret}", record

    async def ingest(self, token: PushToken, domain: str, body: dict[str, Any], state: dict[str, Any], metrics: dict[str, float]) -> tuple[Report, Any]:
        """Hand the report to the ingest pipeline and wait until it is on disk; sequence numbers stay in order per node.

        Returns the stored report and what of it the series limits refused (None when nothing was).
        """
        hub = self.hub
        node_id = token.node_id
        lock = self._locks.setdefault(node_id, asyncio.Lock())
        async with lock:
            node = hub.node(node_id)
            last = node.last_seq if node is not None and node.epoch == PUSH_EPOCH else 0
            seq = max(last, self._seq.get(node_id, 0)) + 1
            now = time.time()
            report = Report(
                node_id=node_id,
                seq=seq,
                epoch=PUSH_EPOCH,
                collected_at=body.get("collected_at", now),
                received_at=now,
                data={domain: state},
                metrics=metrics,
                integrations=[
                    {
                        "domain": domain,
                        "name": DOMAIN_NAMES.get(domain, domain),
                        "version": __version__,
                        "source": NODE_SOURCE,
                        "state": STATE_LOADED,
                        "reason": "",
                        "since": now,
                    }
                ],
                interval=body.get("interval"),
            )
            report, refused = await hub.admit(report)
            future = await hub.ingestor.submit(report)
            await future
            self._seq[node_id] = seq
        if now - self._touched.get(token.token_id, 0.0) >= TOUCH_EVERY_SECONDS:
            self._touched[token.token_id] = now
            await hub.store.touch_push_token(token.token_id, now)
        return report, refused


PUSH_KEY = web.AppKey("roost_push", PushService)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


async def _read_body(request: web.Request) -> bytes | web.Response:
    too_big = _error(413, f"payload is larger than the {MAX_PUSH_BYTES}-byte limit; push fewer containers or leave out images and volumes")
    if request.content_length is not None and request.content_length > MAX_PUSH_BYTES:
        return too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_PUSH_BYTES:
            return too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def accept_push(request: web.Request, shape: str) -> tuple[PushToken, dict[str, Any]] | web.Response:
    """The checks every push endpoint makes first: the address not banned, a valid token, a body within the limit that is a JSON object.

    Returns the token and the parsed object, or the answer to send (429, 401,
    413 or 400 naming ``shape``, what the body must be). The caller has
    checked that push is on.
    """
    service = request.app[PUSH_KEY]
    peer = rate_key(peer_of(request))
    banned = service.limiter.banned(peer)
    if banned:
        return _error(429, "too many bad push tokens from this address; wait and check the token", **{"Retry-After": retry_after_header(banned)})
    token = await service.authenticate(request.headers.get("Authorization"))
    if token is None:
        service.limiter.failure(peer)
        return _error(
            401,
            "send a valid push token as 'Authorization: Bearer rpt_...'; it may be unknown or revoked (an admin creates one with POST /api/v1/push-tokens)",
            **{"WWW-Authenticate": 'Bearer realm="roost-push"'},
        )
    raw = await _read_body(request)
    if isinstance(raw, web.Response):
        return raw
    try:
        payload = jsonparse.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        return _error(400, f"payload is not valid JSON: {err}")
    if not isinstance(payload, dict):
        return _error(400, f"payload must be {shape}")
    return token, payload


async def push(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    service = request.app[PUSH_KEY]
    domain = request.match_info["domain"]
    if not hub.config.push:
        return _error(503, "push is disabled on this hub; set push = true in the [hub] table of its config to accept reports from scripts")
    module_name = PUSH_DOMAINS.get(domain)
    if module_name is None:
        return _error(404, f"nothing can be pushed for {domain!r}; pushable: {', '.join(sorted(PUSH_DOMAINS))}")
    accepted = await accept_push(request, "a JSON object with a data.docker state")
    if isinstance(accepted, web.Response):
        return accepted
    token, payload = accepted
    try:
        body = _body_schema(domain)(payload)
    except vol.Invalid as err:
        return _error(400, f"invalid report: {humanize_invalid(err)}")
    if body.get("node_id") not in (None, token.node_id):
        return _error(400, f"report is for node {body['node_id']!r} but this token belongs to node {token.node_id!r}")
    if body.get("collected_at", 0) > time.time() + MAX_FUTURE_SECONDS:
        return _error(400, "invalid report: collected_at is in the future; check the pushing machine's clock")
    checker = importlib.import_module(module_name)
    try:
        state = checker.clean_state(body["data"][domain])
    except vol.Invalid as err:
        return _error(400, f"invalid report: data.{domain}.{humanize_invalid(err)}")
    prefix = f"{domain}."
    metrics = {name if name.startswith(prefix) else prefix + name: value for name, value in body["metrics"].items()}
    if not metrics:
        metrics = checker.metrics_for(state)
    try:
        report, refused = await service.ingest(token, domain, body, state, metrics)
    except IngestError as err:
        return _error(503, f"the hub could not store the report ({err}); push again", **{"Retry-After": "10"})
    answer = {"accepted": True, "node_id": report.node_id, "seq": report.seq, "containers": len(state.get("containers", ()))}
    if refused is not None:
        answer["refused"] = refused.message
    return web.json_response(answer)


# ---------------------------------------------------------------- token admin

CREATE_SCHEMA = vol.Schema(
    {
        vol.Optional("name", default=""): vol.All(str, vol.Length(max=100)),
        vol.Optional("node_id"): vol.Match(NODE_ID_RE),
        vol.Optional("note", default=""): vol.All(str, vol.Length(max=200)),
        # ArchNest's shared-token mode: one token for several hostIds, each its own node.
        vol.Optional("multi_host", default=False): bool,
    }
)


def token_view(token: PushToken) -> dict[str, Any]:
    return {
        "id": token.token_id,
        "node_id": token.node_id,
        "created_at": token.created_at,
        "created_by": token.created_by,
        "note": token.note,
        "last_used": token.last_used,
        "state": "revoked" if token.revoked else "active",
        "multi_host": token.multi_host,
    }


@requires(ROLE_ADMIN)
async def list_tokens(request: web.Request) -> web.Response:
    tokens = await request.app[HUB_KEY].store.list_push_tokens()
    return web.json_response({"tokens": [token_view(t) for t in tokens], "push_enabled": request.app[HUB_KEY].config.push})


@requires(ROLE_ADMIN)
async def create_token(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    try:
        body = CREATE_SCHEMA(await read_json(request, empty={}))
    except ValueError:
        return _error(400, "body must be JSON")
    except vol.Invalid as err:
        return _error(400, f"invalid request: {humanize_invalid(err)}")
    if not body.get("node_id") and not body["name"].strip():
        return _error(400, "invalid request: name: give the new push node a name (or the node_id of an existing push node)")
    try:
        token, record = await request.app[PUSH_KEY].create(
            name=body["name"].strip(), node_id=body.get("node_id"), note=body["note"], actor=actor_of(request), multi_host=body["multi_host"]
        )
    except LookupError as err:
        return _error(404, str(err))
    except ValueError as err:
        return _error(400, str(err))
    url = f"{hub.config.url()}{PUSH_PATH.format(domain='docker')}"
    return web.json_response(
        {
            "token": token,
            "push_url": url,
            "archnest_url": f"{hub.config.url()}/api/agents/docker/report",
            "push_enabled": hub.config.push,
            **token_view(record),
        },
        status=201,
    )


@requires(ROLE_ADMIN)
async def revoke_token(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    token_id = request.match_info["token_id"]
    if not await hub.store.revoke_push_token(token_id):
        return _error(404, f"no push token {token_id!r}")
    await hub.audit("push_token.revoked", actor=actor_of(request), target=f"push_token:{token_id}")
    return web.json_response({"id": token_id, "state": "revoked"})


def setup(app: web.Application) -> None:
    """Register the push endpoint (public: it checks its own tokens) and the admin token API."""
    app[PUSH_KEY] = PushService(app[HUB_KEY])
    for domain in PUSH_DOMAINS:
        add_public_path(app, PUSH_PATH.format(domain=domain))
    app.router.add_post(PUSH_PATH, push)
    app.router.add_get(TOKENS_PATH, list_tokens)
    app.router.add_post(TOKENS_PATH, create_token)
    app.router.add_delete(TOKENS_PATH + "/{token_id}", revoke_token)
