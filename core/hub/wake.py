"""Wake-on-LAN from the hub: wake a node by the MAC addresses it reported, sent by the hub itself or relayed by an agent on its LAN.

``GET /api/v1/nodes/{node_id}/wake`` says what a Wake button needs: the
node's MACs, where the hub would send, and which online nodes could relay.
``POST`` wakes it (operator role). Body, every key optional::

    {"via": "<relay node id>", "mac": "aa:bb:cc:dd:ee:ff", "broadcast": "192.168.1.255", "port": 9}

Without ``via`` the hub sends the packets itself to ``[hub] wol_broadcast``
and ``wol_port``; with it, one ``wol.send`` job per MAC goes to the relay's
agent, which needs ``network.wol.send`` granted and within its ceiling.
Every wake is audited (``node.wake``) before anything is sent.

A request's ``broadcast`` and ``port`` are checked by whoever sends: the hub
sends only to its own networks' broadcast addresses or configured ones, on
ports 7, 9 or configured ones (``roost.integrations.wol.policy``), and a
relay agent checks the same against its own interfaces and config. One node
is woken at most ``[hub] wol_wakes_per_minute`` times a minute.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.integration import humanize_invalid
from roost.integrations.wol.const import ACTION_SEND, CAP_WOL_SEND, DEFAULT_BROADCAST, DEFAULT_PORT
from roost.integrations.wol.magic import ip_literal, is_universal, mac_address, normalize_mac, port_number, send
from roost.integrations.wol.policy import Destinations, WakeLimiter

from .state import HUB_KEY, Hub
from .auth import ROLE_OPERATOR, ROLE_VIEWER, actor_of, requires
from .jobs import JobError, job_view
from .security import read_json

_LOGGER = logging.getLogger(__name__)

WAKE_LIMITER_KEY = web.AppKey("roost_wake_limiter", WakeLimiter)
DEFAULT_WAKES_PER_MINUTE = 6
MAX_BODY = 4096
WAKE_SCHEMA = vol.Schema(
    {
        vol.Optional("via"): vol.All(str, vol.Length(min=1, max=64)),
        vol.Optional("mac"): mac_address,
        vol.Optional("broadcast"): ip_literal,
        vol.Optional("port"): port_number,
    }
)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def node_macs(hub: Hub, node_id: str) -> list[dict[str, Any]]:
    """The node's MACs by interface: from its latest linux_host report, else from the facts of its last hello."""
    node = await hub.find_node(node_id)
    if node is None:
        return []
    state = await hub.store.latest_state(node_id)
    sources = []
    host = state.data.get("linux_host")
    if isinstance(host, dict) and isinstance(host.get("facts"), dict):
        sources.append(host["facts"].get("macs"))
    sources.append(node.facts.get("macs"))
    for macs in sources:
        if not isinstance(macs, dict) or not macs:
            continue
        out, seen = [], set()
        for interface in sorted(macs, key=str):
            try:
                mac = normalize_mac(macs[interface])
            except ValueError:
                continue
            if mac not in seen:
                seen.add(mac)
                out.append({"interface": str(interface), "mac": mac, "universal": is_universal(mac)})
        if out:
            return out
    return []


def wake_targets(macs: list[dict[str, Any]]) -> list[str]:
    """Burned-in addresses when there are any (bridges, veths and containers have locally administered ones), else all."""
    universal = [m["mac"] for m in macs if m["universal"]]
    return universal or [m["mac"] for m in macs]


async def relays(hub: Hub, node_id: str) -> list[dict[str, Any]]:
    """Connected nodes that offer wol.send and may run it."""
    out = []
    for other, actions in sorted(hub.jobs.actions.items()):
        if other == node_id or other not in hub.jobs.channels or ACTION_SEND not in actions:
            continue
        if CAP_WOL_SEND not in await hub.jobs.effective_for(other):
            continue
        node = await hub.find_node(other)
        if node is not None and not node.revoked:
            out.append({"id": other, "name": node.name})
    return out


def _hub_target(hub: Hub) -> tuple[str, int]:
    return getattr(hub.config, "wol_broadcast", DEFAULT_BROADCAST), getattr(hub.config, "wol_port", DEFAULT_PORT)


def hub_destinations(hub: Hub) -> Destinations:
    """Where the hub itself may send: its own networks' broadcasts, wol_broadcast and wol_allowed_broadcasts; ports 7, 9, wol_port, wol_allowed_ports."""
    broadcast, port = _hub_target(hub)
    return Destinations.of(
        [broadcast, *getattr(hub.config, "wol_allowed_broadcasts", ())],
        [port, *getattr(hub.config, "wol_allowed_ports", ())],
        sender="the hub",
        broadcasts_setting="[hub] wol_broadcast and wol_allowed_broadcasts",
        ports_setting="[hub] wol_port and wol_allowed_ports",
    )


@requires(ROLE_VIEWER)
async def wake_info(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    node_id = request.match_info["node_id"]
    node = await hub.find_node(node_id)
    if node is None:
        return _error(404, f"no node with id {node_id!r}")
    macs = await node_macs(hub, node_id)
    broadcast, port = _hub_target(hub)
    return web.json_response(
        {
            "node_id": node_id,
            "status": hub.node_status(node_id),
            "macs": macs,
            "targets": wake_targets(macs),
            "hub": {"broadcast": broadcast, "port": port, "allowed": await asyncio.to_thread(hub_destinations(hub).as_dict)},
            "wakes_per_minute": request.app[WAKE_LIMITER_KEY].per_minute,
            "relays": await relays(hub, node_id),
        }
    )


@requires(ROLE_OPERATOR)
async def wake_node(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    node_id = request.match_info["node_id"]
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _error(413, f"request body is larger than {MAX_BODY} bytes")
    try:
        raw = await read_json(request, empty={})
    except ValueError:
        return _error(400, "body must be JSON")
    try:
        body = WAKE_SCHEMA(raw if raw is not None else {})
    except vol.Invalid as err:
        return _error(400, f"invalid request: {humanize_invalid(err)}")
    node = await hub.find_node(node_id)
    if node is None or node.revoked:
        return _error(404, f"no active node with id {node_id!r}")
    known = await node_macs(hub, node_id)
    if not known:
        return _error(409, f"no MAC address is known for {node.name}: its agent reports them (linux_host facts) once it has run; wake it by hand this time")
    if "mac" in body:
        if body["mac"] not in {m["mac"] for m in known}:
            return _error(400, f"{body['mac']} is not a MAC address {node.name} reported ({', '.join(m['mac'] for m in known)})")
        macs = [body["mac"]]
    else:
        macs = wake_targets(known)
    actor = actor_of(request)
    target = f"node:{node_id}"
    via = body.get("via")
    if via == node_id:
        return _error(400, "a node cannot relay its own wake-up; choose another node on its LAN")
    broadcast = body.get("broadcast") or _hub_target(hub)[0]
    port = body.get("port") or _hub_target(hub)[1]
    if not via:  # a relay checks its own networks and config when its job runs
        destinations = hub_destinations(hub)
        why = await asyncio.to_thread(destinations.refusal, broadcast, port)
        if why:
            return web.json_response({"error": why, "allowed": await asyncio.to_thread(destinations.as_dict)}, status=403)
    limiter = request.app[WAKE_LIMITER_KEY]
    wait = limiter.wait(node_id)
    if wait:
        response = _error(429, f"{node.name} was woken {limiter.per_minute} times in the last minute, the most [hub] wol_wakes_per_minute allows; try again in {wait:.0f} s")
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response
    if via:
        return await _relay(hub, node, via, macs, body, actor)
    await hub.audit("node.wake", actor=actor, target=target, details={"via": "hub", "macs": macs, "broadcast": broadcast, "port": port})
    try:
        await asyncio.to_thread(send, macs, host=broadcast, port=port)
    except OSError as err:
        why = f"the hub cannot send to {broadcast}:{port}: {err.strerror or err}"
        await hub.audit("node.wake", actor=actor, target=target, outcome="failed", details={"via": "hub", "macs": macs, "why": why})
        return _error(502, f"{why}; send it through an agent on the node's LAN with {{\"via\": \"<node id>\"}}")
    _LOGGER.info("woke %s (%s) from the hub via %s:%s", node.name, ", ".join(macs), broadcast, port)
    return web.json_response({"node_id": node_id, "via": "hub", "macs": macs, "broadcast": broadcast, "port": port})


async def _relay(hub: Hub, node: Any, via: str, macs: list[str], body: dict[str, Any], actor: str) -> web.Response:
    target = f"node:{node.node_id}"
    relay = await hub.find_node(via)
    if relay is None or relay.revoked:
        return _error(404, f"no active relay node with id {via!r}")
    extra = {k: body[k] for k in ("broadcast", "port") if k in body}
    await hub.audit("node.wake", actor=actor, target=target, details={"via": f"node:{via}", "macs": macs, **extra})
    jobs = []
    try:
        for mac in macs:
            jobs.append(await hub.jobs.create(via, ACTION_SEND, {"mac": mac, **extra}, actor=actor))
    except JobError as err:
        await hub.audit("node.wake", actor=actor, target=target, outcome="refused", details={"via": f"node:{via}", "why": str(err)})
        return _error(409, str(err))
    return web.json_response({"node_id": node.node_id, "via": via, "macs": macs, "jobs": [job_view(j) for j in jobs]}, status=202)


def setup(app: web.Application) -> None:
    app[WAKE_LIMITER_KEY] = WakeLimiter(getattr(app[HUB_KEY].config, "wol_wakes_per_minute", DEFAULT_WAKES_PER_MINUTE))
    app.router.add_get("/api/v1/nodes/{node_id}/wake", wake_info)
    app.router.add_post("/api/v1/nodes/{node_id}/wake", wake_node)
