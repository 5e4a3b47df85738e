"""The dashboard's pages: routes, the jinja2 environment and the handlers that render hub data."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from roost.core.const import __version__

from . import formatting

_LOGGER = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"

# Pages whose parts the browser re-fetches as HTML fragments (?fragment=NAME)
# to stay current without a reload; each maps to the template that renders it.
OVERVIEW_FRAGMENTS = {"nodes": "overview/_nodes.html"}
NODE_FRAGMENTS = {"details": "node/_details.html"}
INTEGRATIONS_FRAGMENTS = {"integrations": "integrations/_tables.html"}

JINJA_ENV_KEY = web.AppKey("roost_frontend_jinja", jinja2.Environment)

_STATUS_ORDER = {"online": 0, "stale": 1, "new": 2, "offline": 3}


def setup(app: web.Application) -> None:
    """Register the dashboard's pages and static files on the hub's application."""
    app[JINJA_ENV_KEY] = create_environment()
    app.router.add_get("/", overview, name="overview")
    app.router.add_get("/nodes/{node_id}", node_page, name="node")
    app.router.add_get("/integrations", integrations_page, name="integrations")
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, name="static", append_version=False)
    app.on_response_prepare.append(_cache_versioned_static)
    from . import auth_views, jobs_views, pairing_views

    auth_views.setup(app)
    pairing_views.setup(app)
    jobs_views.setup(app)


async def _cache_versioned_static(request: web.Request, response: web.StreamResponse) -> None:
    # A URL carrying the file's content hash never changes meaning, so browsers may keep it.
    if request.path.startswith(STATIC_PREFIX) and "v" in request.query and response.status == 200:
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"


def create_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("roost.frontend", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        # Hub data may lack any key; a missing one renders as "—" instead of failing the page.
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(formatting.FILTERS)
    env.filters["segment"] = path_segment
    env.filters["pretty_json"] = pretty_json
    env.globals["static_url"] = static_url
    env.globals["version"] = __version__
    return env


def path_segment(value: Any) -> str:
    """Quote a value for one URL path segment (a node id may hold '/' or '?')."""
    return quote(str(value), safe="")


def pretty_json(value: Any) -> str:
    """Indented JSON as plain text; autoescape makes it safe in the page."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@lru_cache(maxsize=None)
def static_url(path: str) -> str:
    """The URL of a static file with a content hash, so a new release is never served stale."""
    try:
        digest = hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:12]
    except OSError:
        _LOGGER.warning("dashboard: static file %s is missing from %s", path, STATIC_DIR)
        return STATIC_PREFIX + path
    return f"{STATIC_PREFIX}{path}?v={digest}"


def _hub(request: web.Request) -> Any:
    # Imported here so that importing roost.frontend never imports the hub.
    from roost.core.hub.app import HUB_KEY

    return request.app[HUB_KEY]


def _render(
    request: web.Request,
    template: str,
    context: dict[str, Any],
    *,
    fragments: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    env = request.app[JINJA_ENV_KEY]
    fragment = request.query.get("fragment")
    if fragment is not None:
        if not fragments or fragment not in fragments:
            raise web.HTTPNotFound(text=f"no fragment named {fragment!r} on this page")
        template = fragments[fragment]
    context = {"now": time.time(), "path": request.path, **_identity_context(request), **context}
    html = env.get_template(template).render(context)
    response = web.Response(text=html, content_type="text/html", status=status)
    # Pages show live data: a back button or a proxy must never show an old copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def _identity_context(request: web.Request) -> dict[str, Any]:
    """Who is logged in, for the user menu, and the session's CSRF token for forms and the page's script."""
    from roost.core.hub.auth import IDENTITY_KEY

    identity = request.get(IDENTITY_KEY)
    if identity is None:
        # No one to check (a hub without accounts): nothing is hidden; the API still decides.
        return {"me": None, "csrf_token": "", "can": lambda name: True}
    from roost.core.hub.permissions import allows

    return {"me": identity, "csrf_token": identity.csrf_token, "can": lambda name: allows(identity, name)}


def _node_sort_key(node: dict[str, Any]) -> tuple[Any, ...]:
    return (
        not node.get("local", False),
        _STATUS_ORDER.get(node.get("status"), 9),
        str(node.get("name") or node.get("hostname") or node.get("id") or "").casefold(),
    )


def _status_counts(nodes: list[dict[str, Any]]) -> dict[str, int]:
    counts = {status: 0 for status in ("online", "stale", "offline", "new")}
    for node in nodes:
        status = node.get("status")
        if status in counts:
            counts[status] += 1
    return counts


async def overview(request: web.Request) -> web.Response:
    """All nodes at a glance: status, CPU, memory and disk."""
    summary = await _hub(request).nodes_summary()
    nodes = sorted(summary.get("nodes", []), key=_node_sort_key)
    return _render(
        request,
        "overview/page.html",
        {"nodes": nodes, "counts": _status_counts(nodes), "page": "overview"},
        fragments=OVERVIEW_FRAGMENTS,
    )


RANGES = ("1h", "24h", "7d", "30d")
DEFAULT_RANGE = "1h"


async def node_page(request: web.Request) -> web.Response:
    """One node: facts, history charts, disks, network, processes, services, integrations."""
    node_id = request.match_info["node_id"]
    detail = await _hub(request).node_detail(node_id)
    if detail is None:
        return _render(
            request,
            "not_found.html",
            {"page": "not_found", "what": "node", "node_id": node_id},
            status=404,
        )
    from .jobs_views import node_actions
    from .pairing_views import node_trust

    node = detail.get("node") or {}
    state = detail.get("state") or {}
    selected_range = request.query.get("range", DEFAULT_RANGE)
    if selected_range not in RANGES:
        selected_range = DEFAULT_RANGE
    other_state = {domain: value for domain, value in state.items() if domain != "linux_host"}
    withheld = _withheld_rows(node.get("withheld"))
    # What the page's script needs, read from a <script type="application/json"> block.
    page_data = {
        "id": node.get("id", node_id),
        "fields": node.get("fields") or {},
        "range": selected_range,
        "ranges": list(RANGES),
    }
    return _render(
        request,
        "node/page.html",
        {
            "page": "node",
            "node": node,
            "detail": detail,
            "host": state.get("linux_host") or {},
            "other_state": other_state,
            "withheld": withheld,
            "host_withheld": (node.get("withheld") or {}).get("linux_host") or {},
            "collected_at": detail.get("collected_at"),
            "ranges": RANGES,
            "selected_range": selected_range,
            "page_data": page_data,
            **await node_trust(request, node),
            **await node_actions(request, node),
        },
        fragments=NODE_FRAGMENTS,
    )


def _withheld_rows(withheld: Any) -> list[dict[str, Any]]:
    """What a node's agent leaves out for want of a grant, one row per integration and capability to grant."""
    from roost.core.reads import PART_METRIC_PREFIX, PART_METRICS, PART_STATE_REST

    rows = []
    for domain, parts in sorted((withheld or {}).items()) if isinstance(withheld, dict) else ():
        by_capability: dict[str, list[str]] = {}
        for part, capability in (parts or {}).items() if isinstance(parts, dict) else ():
            if part == PART_STATE_REST:
                label = "its state"
            elif part == PART_METRICS:
                label = "metrics"
            elif part.startswith(PART_METRIC_PREFIX):
                label = "metric " + part[len(PART_METRIC_PREFIX):]
            else:
                label = part
            by_capability.setdefault(str(capability), []).append(label)
        for capability, labels in sorted(by_capability.items()):
            rows.append({"domain": domain, "capability": capability, "parts": sorted(labels)})
    return rows


async def integrations_page(request: web.Request) -> web.Response:
    """Every integration's state and reason, on the hub and on each node."""
    overview_data = await _hub(request).integrations_overview()
    nodes = overview_data.get("nodes") or {}
    node_rows = sorted(
        nodes.items(),
        key=lambda item: str((item[1] or {}).get("name") or item[0]).casefold(),
    )
    return _render(
        request,
        "integrations/page.html",
        {"page": "integrations", "hub_integrations": overview_data.get("hub") or [], "node_rows": node_rows},
        fragments=INTEGRATIONS_FRAGMENTS,
    )
