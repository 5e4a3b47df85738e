"""The ArchNest Docker push contract: ``POST /api/agents/docker/report`` and its read endpoints, on Roost's push tokens.

An ArchNest-style agent script keeps working unchanged against Roost: it
sends its camelCase report with ``Authorization: Bearer <push token>``; the
hub answers 503 while ``[hub] push`` is off, 401 for a wrong token, 400 with
the offending field for a bad payload, and otherwise stores the report as the
same docker state (and per-container metrics) the Roost agent produces, on
the node its ``hostId`` belongs to. A token is for one ``hostId`` unless an
admin made it multi-host (``"multi_host": true``), in which case each
``hostId`` becomes a node of its own. The read endpoints serve every pushed
host in the contract's shape, behind the normal user login.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from dataclasses import replace
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.integration import humanize_invalid
from roost.core.store import PushHost, PushToken
from roost.integrations.docker import archnest
from roost.integrations.docker.push import clean_state, metrics_for

from .state import HUB_KEY
from .auth import add_public_path, requires
from .ingest import IngestError
from .push import NODE_SOURCE, PUSH_KEY, _error, accept_push

_LOGGER = logging.getLogger(__name__)

REPORT_PATH = "/api/agents/docker/report"
HOSTS_PATH = "/api/agents/docker/hosts"
DOMAIN = "docker"
# The contract's STALE_AFTER_MS default: a host not heard from for this long is stale.
STALE_AFTER_SECONDS = 90.0
# A multi-host token cannot make nodes without end.
MAX_HOSTS_PER_TOKEN = 500


class HostRefused(Exception):
    """A report for a hostId this token may not report for; the message says what to do."""


class ArchNestHosts:
    """Which node each (token, hostId) reports to; lives on the app under ARCHNEST_KEY."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._locks: dict[str, asyncio.Lock] = {}

    async def node_for(self, token: PushToken, host_id: str, hostname: str | None) -> str:
        hub = self.app[HUB_KEY]
        async with self._locks.setdefault(token.token_id, asyncio.Lock()):
            hosts = await hub.store.list_push_hosts(token.token_id)
            for host in hosts:
                if host.host_id == host_id:
                    return host.node_id
            if hosts and not token.multi_host:
                raise HostRefused(
                    f"this push token reports for host {hosts[0].host_id!r}, not {host_id!r}; use that host's own token, "
                    "or ask an admin for a multi-host token (POST /api/v1/push-tokens with \"multi_host\": true)"
                )
            if len(hosts) >= MAX_HOSTS_PER_TOKEN:
                raise HostRefused(f"this multi-host push token already reports for {MAX_HOSTS_PER_TOKEN} hosts; make another token")
            if not hosts:
                node_id = token.node_id  # the first host takes the node the admin made with the token
            else:
                name = (hostname or host_id)[:100]
                node = await hub.add_node(
                    public_key=base64.b64encode(secrets.token_bytes(32)).decode(),
                    hostname=name,
                    name=name,
                    facts={"source": NODE_SOURCE, "hostname": name, "host_id": host_id},
                )
                node_id = node.node_id
                await hub.audit(
                    "push_host.added", actor=f"push_token:{token.token_id}", target=f"node:{node_id}", details={"host_id": host_id}
                )
            await hub.store.add_push_host(PushHost(token_id=token.token_id, host_id=host_id, node_id=node_id, created_at=time.time()))
            return node_id


ARCHNEST_KEY = web.AppKey("roost_archnest", ArchNestHosts)


async def report(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    service = request.app[PUSH_KEY]
    if not hub.config.push:
        return _error(503, "push is disabled on this hub; set push = true in the [hub] table of its config to accept Docker reports from scripts")
    accepted = await accept_push(request, "a JSON object with hostId and containers")
    if isinstance(accepted, web.Response):
        return accepted
    token, payload = accepted
    try:
        body = archnest.REPORT_SCHEMA(payload)
    except vol.Invalid as err:
        return _error(400, f"invalid report: {humanize_invalid(err)}")
    try:
        node_id = await request.app[ARCHNEST_KEY].node_for(token, body["hostId"], body.get("hostname"))
    except HostRefused as err:
        return _error(403, str(err))
    now = time.time()
    previous = await hub.store.latest_state(node_id)
    elapsed = now - previous.collected_at if previous.collected_at else None
    try:
        state = clean_state(archnest.to_state(body, previous.data.get(DOMAIN), elapsed))
    except vol.Invalid as err:
        return _error(400, f"invalid report: {humanize_invalid(err)}")
    state["host_id"] = body["hostId"]
    state["hostname"] = body.get("hostname")
    state["reported_at"] = body.get("reportedAt")
    try:
        # receivedAt is the truth for staleness: the report is filed at the hub's time, its own clock kept as reported_at.
        stored, refused = await service.ingest(replace(token, node_id=node_id), DOMAIN, {"collected_at": now}, state, metrics_for(state))
    except IngestError as err:
        return _error(503, f"the hub could not store the report ({err}); send it again", **{"Retry-After": "10"})
    answer = {"ok": True, "hostId": body["hostId"], "node_id": stored.node_id, "containers": len(state["containers"])}
    if refused is not None:
        answer["refused"] = refused.message  # metrics over the series limits; the rest is stored
    return web.json_response(answer)


# ------------------------------------------------------------------ reading


async def _hosts(request: web.Request) -> list[tuple[PushHost, dict[str, Any], float]]:
    hub = request.app[HUB_KEY]
    out = []
    for host in await hub.store.list_push_hosts():
        node = hub.node(host.node_id)
        if node is None or node.revoked:
            continue
        latest = await hub.store.latest_state(host.node_id)
        out.append((host, latest.data.get(DOMAIN) or {}, latest.collected_at or 0.0))
    return out


def _host_view(host: PushHost, state: dict[str, Any], received_at: float, now: float) -> dict[str, Any]:
    return {
        "hostId": host.host_id,
        "hostname": state.get("hostname"),
        "nodeId": host.node_id,
        "receivedAt": archnest.iso(received_at) if received_at else None,
        "reportedAt": archnest.iso(state.get("reported_at")),
        "containerCount": len(state.get("containers") or ()),
        "stale": not received_at or now - received_at > STALE_AFTER_SECONDS,
    }


async def _one_host(request: web.Request) -> tuple[PushHost, dict[str, Any], float]:
    wanted = request.match_info["host_id"]
    for entry in await _hosts(request):
        if entry[0].host_id == wanted:
            return entry
    raise web.HTTPNotFound(text=json.dumps({"error": f"no pushed Docker host {wanted!r}"}), content_type="application/json")


@requires()
async def list_hosts(request: web.Request) -> web.Response:
    now = time.time()
    return web.json_response([_host_view(h, s, r, now) for h, s, r in await _hosts(request)])


@requires()
async def list_containers(request: web.Request) -> web.Response:
    _, state, _ = await _one_host(request)
    return web.json_response([archnest.to_report_container(c) for c in state.get("containers") or ()])


@requires()
async def one_container(request: web.Request) -> web.Response:
    host, state, _ = await _one_host(request)
    wanted = request.match_info["container_id"]
    for container in state.get("containers") or ():
        if wanted in (container.get("id"), container.get("name")) or (len(wanted) >= 12 and str(container.get("id", "")).startswith(wanted)):
            return web.json_response(archnest.to_report_container(container))
    return _error(404, f"host {host.host_id!r} has no container {wanted!r}")


def setup(app: web.Application) -> None:
    """Register the contract's report endpoint (public: it checks its own tokens) and its read endpoints (user login)."""
    app[ARCHNEST_KEY] = ArchNestHosts(app)
    add_public_path(app, REPORT_PATH)
    app.router.add_post(REPORT_PATH, report)
    app.router.add_get(HOSTS_PATH, list_hosts)
    app.router.add_get(HOSTS_PATH + "/{host_id}/containers", list_containers)
    app.router.add_get(HOSTS_PATH + "/{host_id}/containers/{container_id}", one_container)
