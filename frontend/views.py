"""The dashboard's shell pages (overview, node, integrations) and the setup that registers them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .jobs_views import node_actions
from .pairing_views import node_trust
from .integration_pages import node_panels
from .render import JINJA_ENV_KEY, STATIC_DIR, STATIC_PREFIX, _hub, _render

# Pages whose parts the browser re-fetches as HTML fragments (?fragment=NAME)
# to stay current without a reload; each maps to the template that renders it.
OVERVIEW_FRAGMENTS = {"nodes": "overview/_nodes.html"}
NODE_FRAGMENTS = {"details": "node/_details.html"}
INTEGRATIONS_FRAGMENTS = {"integrations": "integrations/_tables.html"}

_STATUS_ORDER = {"online": 0, "stale": 1, "new": 2, "offline": 3}
# Up to this many nodes the overview shows cards; more become one table row each.
CARDS_UP_TO = 6
OVERVIEW_VIEWS = ("table", "cards")
# Problems first: offline (or revoked), then firing critical alerts, then warnings, stale, any other problem.
RANK_OFFLINE, RANK_CRITICAL, RANK_WARNING, RANK_STALE, RANK_PROBLEM, RANK_WELL = range(6)


def setup(app: web.Application) -> None:
    """Register the shell's pages and static files (frontend.setup has made the jinja2 environment)."""
    app.router.add_get("/", overview, name="overview")
    app.router.add_get("/nodes/{node_id}", node_page, name="node")
    app.router.add_get("/integrations", integrations_page, name="integrations")
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, name="static", append_version=False)
    app.on_response_prepare.append(_cache_versioned_static)


async def _cache_versioned_static(request: web.Request, response: web.StreamResponse) -> None:
    # A URL carrying the file's content hash never changes meaning, so browsers may keep it.
    if request.path.startswith(STATIC_PREFIX) and "v" in request.query and response.status == 200:
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"


def alert_counts(node: dict[str, Any]) -> dict[str, int]:
    """The node's firing alerts {firing, critical, warning}; a summary without them (no alert engine) counts zero."""
    raw = node.get("alerts")
    raw = raw if isinstance(raw, dict) else {}
    counts = {}
    for key in ("firing", "critical", "warning"):
        value = raw.get(key)
        counts[key] = int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0
    return counts


def figure_problems(node: dict[str, Any], figures: list[dict[str, Any]]) -> int:
    """How many of the node's headline figures are over their declared problem threshold."""
    headline = node.get("headline") or {}
    n = 0
    for figure in figures:
        limit = figure.get("problem_above")
        value = headline.get(figure["key"])
        if limit is not None and isinstance(value, (int, float)) and value > limit:
            n += 1
    return n


def problem_count(node: dict[str, Any], figures: list[dict[str, Any]]) -> int:
    """Everything wrong on a node in one number: firing alerts, failed integrations, figures over their threshold."""
    integrations = (node.get("integrations_summary") or {}).get("problems") or 0
    return alert_counts(node)["firing"] + int(integrations) + figure_problems(node, figures)


def problem_rank(node: dict[str, Any], figures: list[dict[str, Any]]) -> int:
    """Where a node goes in the problems-first order (js/overview.js ranks live updates the same way)."""
    status = node.get("status")
    if status in ("offline", "revoked"):
        return RANK_OFFLINE
    alerts = alert_counts(node)
    if alerts["critical"]:
        return RANK_CRITICAL
    if alerts["warning"]:
        return RANK_WARNING
    if status == "stale":
        return RANK_STALE
    if problem_count(node, figures):
        return RANK_PROBLEM
    return RANK_WELL


def _node_sort_key(node: dict[str, Any], figures: list[dict[str, Any]] | None = None) -> tuple[Any, ...]:
    return (
        problem_rank(node, figures or []),
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
    """All nodes at a glance, problems first: a card each for a few nodes, a sortable table for more."""
    hub = _hub(request)
    summary = await hub.nodes_summary()
    figures = headline_figures(hub)
    nodes = sorted(summary.get("nodes", []), key=lambda node: _node_sort_key(node, figures))
    for node in nodes:
        node["rank"] = problem_rank(node, figures)
        node["problems"] = problem_count(node, figures)
        node["alert_counts"] = alert_counts(node)
    view = request.query.get("view")
    if view not in OVERVIEW_VIEWS:
        view = "table" if len(nodes) > CARDS_UP_TO else "cards"
    return _render(
        request,
        "overview/page.html",
        {
            "nodes": nodes,
            "counts": _status_counts(nodes),
            "page": "overview",
            "figures": figures,
            "view": view,
            # The table is drawn by js/overview.js from these summaries, one page of rows at a time: 500 nodes
            # cost one JSON document, not 500 server-rendered rows.
            "overview_data": {
                "figures": figures,
                "view": view,
                "ranks": {"offline": RANK_OFFLINE, "critical": RANK_CRITICAL, "warning": RANK_WARNING, "stale": RANK_STALE,
                          "problem": RANK_PROBLEM, "well": RANK_WELL},
                "nodes": nodes if view == "table" else [],
            },
            "problems": sum(node["alert_counts"]["firing"] for node in nodes),
        },
        fragments=OVERVIEW_FRAGMENTS,
    )


RANGES = ("5m", "15m", "1h", "6h", "24h", "7d", "30d")
DEFAULT_RANGE = "1h"


def headline_figures(hub: Any) -> list[dict[str, Any]]:
    """The figures the integrations declared for the node cards (key, label, unit), in order."""
    plugins = getattr(hub, "plugins", None)
    return plugins.headline_figures() if plugins is not None else []


async def node_page(request: web.Request) -> web.Response:
    """One node: facts, history charts, disks, network, processes, services, integrations."""
    from roost.core.hub.downloads import rollback_of

    node_id = request.match_info["node_id"]
    hub = _hub(request)
    detail = await hub.node_detail(node_id)
    if detail is None:
        return _render(
            request,
            "not_found.html",
            {"page": "not_found", "what": "node", "node_id": node_id},
            status=404,
        )
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
            "panels": await node_panels(request, getattr(hub, "plugins", None), node, state),
            "figures": headline_figures(hub),
            "update_failed": rollback_of(state),
            "node_alerts": await hub.alerts.live_instances(node_id) if hasattr(hub, "alerts") else [],
            "node_labels": hub.alerts.label_sources(node_id) if hasattr(hub, "alerts") else None,
            **await node_trust(request, node),
            **await node_actions(request, node, state),
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
