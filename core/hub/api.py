"""The hub's REST API under /api/v1 and its live event stream."""

from __future__ import annotations

import asyncio
import json
import time

import voluptuous as vol
from aiohttp import web

from roost.core.const import __version__
from roost.core.integration import humanize_invalid
from roost.core.store import RES_HOUR, RES_MINUTE, RES_RAW, RESOLUTIONS

from .state import HUB_KEY

RANGES = {"5m": 300, "15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "1y": 365 * 86400}
MAX_SERIES = 20
SSE_PING_SECONDS = 15.0


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def auto_resolution(span: float) -> str:
    if span <= 3 * 3600:
        return RES_RAW
    if span <= 3 * 86400:
        return RES_MINUTE
    return RES_HOUR


HISTORY_QUERY = vol.Schema(
    {
        vol.Optional("series"): vol.All(str, vol.Length(min=1, max=4000)),
        vol.Optional("range"): vol.In(list(RANGES), msg=f"must be one of {', '.join(RANGES)}"),
        vol.Optional("start"): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("end"): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("resolution", default="auto"): vol.In(["auto", *RESOLUTIONS], msg="must be auto, raw, minute or hour"),
    }
)


async def health(request: web.Request) -> web.Response:
    """Up or not, for anyone; the exact version only for someone logged in (a scanner learns nothing to match)."""
    from .auth import identity_of

    body = {"status": "ok"}
    if identity_of(request) is not None:
        body["version"] = __version__
    return web.json_response(body)


async def nodes(request: web.Request) -> web.Response:
    return web.json_response(await request.app[HUB_KEY].nodes_summary())


async def node_detail(request: web.Request) -> web.Response:
    detail = await request.app[HUB_KEY].node_detail(request.match_info["node_id"])
    if detail is None:
        return json_error(404, f"no node with id {request.match_info['node_id']!r}")
    return web.json_response(detail)


async def node_series(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    node_id = request.match_info["node_id"]
    if hub.node(node_id) is None:
        return json_error(404, f"no node with id {node_id!r}")
    return web.json_response({"series": await hub.store.metric_series(node_id)})


async def node_metrics(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    node_id = request.match_info["node_id"]
    if hub.node(node_id) is None:
        return json_error(404, f"no node with id {node_id!r}")
    try:
        query = HISTORY_QUERY(dict(request.query))
    except vol.Invalid as err:
        return json_error(400, f"invalid query: {humanize_invalid(err)}")
    now = time.time()
    end = query.get("end", now)
    if "start" in query:
        start = query["start"]
    else:
        start = end - RANGES[query.get("range", "1h")]
    if start >= end:
        return json_error(400, "invalid query: start must be before end")
    series = [s for s in query.get("series", "").split(",") if s] or list(hub.headline.values())
    if len(series) > MAX_SERIES:
        return json_error(400, f"invalid query: at most {MAX_SERIES} series per request")
    resolution = query["resolution"] if query["resolution"] != "auto" else auto_resolution(end - start)
    points = await hub.store.history(node_id, series, start, end, resolution)
    return web.json_response(
        {
            "node_id": node_id,
            "resolution": resolution,
            "start": start,
            "end": end,
            "series": {name: [list(p) for p in points.get(name, [])] for name in series},
        }
    )


async def integrations(request: web.Request) -> web.Response:
    return web.json_response(await request.app[HUB_KEY].integrations_overview())


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `node` when a node reports or changes status, `ping` to keep proxies awake."""
    hub = request.app[HUB_KEY]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    async with hub.events.subscribe() as queue:
        await resp.write(b"retry: 3000\n\n")
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), SSE_PING_SECONDS)
            except asyncio.TimeoutError:
                chunk = f"event: ping\ndata: {time.time():.0f}\n\n"
            else:
                if event is None:
                    break
                chunk = f"event: {event.kind}\ndata: {json.dumps(event.data, separators=(',', ':'))}\n\n"
            try:
                await resp.write(chunk.encode())
            except (ConnectionResetError, RuntimeError):
                break
    return resp


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/health", health)
    r.add_get("/api/v1/nodes", nodes)
    r.add_get("/api/v1/nodes/{node_id}", node_detail)
    r.add_get("/api/v1/nodes/{node_id}/series", node_series)
    r.add_get("/api/v1/nodes/{node_id}/metrics", node_metrics)
    r.add_get("/api/v1/integrations", integrations)
    r.add_get("/api/v1/events", events)
