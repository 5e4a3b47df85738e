"""The docker integration's dashboard pages: every host's containers in one table, and one container in detail
(a page, or a tab's fragment), plus the panel on a Docker host's node page.

Part of the hub half (imported from hub.py only, so agents never load it).
The data is the latest ``docker`` state of every node whose docker
integration reports (agents and script-only push nodes alike), read through
``page.hub.nodes``. The views shape it for the
templates; hub data is never trusted to have any key or type, and a field a
source lacks renders as "—".
"""

from __future__ import annotations

import logging
from typing import Any

from roost.core.hub_integration import HubContext, PageRequest, SearchResult, chart_specs
from roost.core.hub_integration import as_dict as _dict
from roost.core.hub_integration import as_list as _list
from roost.core.hub_integration import selected_range as pick_range

from .const import DOMAIN

_LOGGER = logging.getLogger(__name__)

PAGE_FRAGMENTS = {"containers": "_table.html"}
DETAIL_FRAGMENTS = {"detail": "_detail.html"}
# Integration states of a node worth listing: it runs the docker integration, or tried to.
SHOWN_STATES = ("loaded", "collect_error", "setup_retry", "setup_error", "not_available")
STATE_ORDER = {"running": 0, "restarting": 1, "paused": 2, "created": 3, "exited": 4, "dead": 5}
STATE_TONES = {"running": "ok", "restarting": "warn", "paused": "warn", "created": "muted", "exited": "muted", "dead": "bad", "removing": "warn"}
HEALTH_TONES = {"healthy": "ok", "starting": "warn", "unhealthy": "bad"}
DETAIL_RANGES = ("5m", "15m", "1h", "6h", "24h", "7d")
DETAIL_DEFAULT_RANGE = "1h"
# Charts of one container: (key, title, unit, [(metric, label)]).
CONTAINER_CHARTS = (
    ("cpu", "CPU", "percent", (("cpu_percent", "CPU"),)),
    ("memory", "Memory", "bytes", (("mem_used_bytes", "Used"),)),
    ("network", "Network", "bytes_per_second", (("net_rx_bytes_per_s", "Receive"), ("net_tx_bytes_per_s", "Send"))),
    ("block_io", "Disk I/O", "bytes_per_second", (("block_read_bytes_per_s", "Read"), ("block_write_bytes_per_s", "Write"))),
)
# Actions the detail tab offers (the agent runs them as jobs); remove stays out: it needs a signed operation.
LIFECYCLE_ACTIONS = (
    ("docker.container.start", "Start", ("created", "exited", "dead")),
    ("docker.container.stop", "Stop", ("running", "restarting", "paused")),
    ("docker.container.restart", "Restart", ("running", "restarting", "exited", "created", "paused")),
    ("docker.container.pause", "Pause", ("running",)),
    ("docker.container.unpause", "Unpause", ("paused",)),
)


# ---------------------------------------------------------------- shaping


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def port_text(port: dict[str, Any]) -> str:
    """8080→80/tcp, or 80/tcp when the port is not published."""
    inner = f"{port.get('container_port', '—')}/{port.get('protocol') or 'tcp'}"
    host_port = port.get("host_port")
    if host_port in (None, ""):
        return inner
    host_ip = port.get("host_ip")
    prefix = f"[{host_ip}]:" if host_ip and ":" in str(host_ip) and host_ip != "::" else (f"{host_ip}:" if host_ip and host_ip not in ("0.0.0.0", "::") else "")
    return f"{prefix}{host_port}→{inner}"


def ports_text(ports: Any) -> str:
    texts: list[str] = []
    for port in _list(ports):
        text = port_text(port)
        if text not in texts:  # 0.0.0.0 and :: publish the same port twice
            texts.append(text)
    return ", ".join(texts)


def image_text(container: dict[str, Any]) -> str:
    name, tag = container.get("image_name"), container.get("image_tag")
    if isinstance(name, str) and name:
        return f"{name}:{tag}" if isinstance(tag, str) and tag else name
    return str(container.get("image") or "—")


def shape_row(node: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """One table row: the container plus where it runs, with sort keys."""
    stats = _dict(container.get("stats"))
    state = str(container.get("state") or "unknown")
    health = container.get("health") if isinstance(container.get("health"), str) else None
    name = str(container.get("name") or container.get("id") or "?")
    return {
        "c": container,
        "name": name,
        "node_id": str(node.get("id") or ""),
        "host": str(node.get("name") or node.get("hostname") or node.get("id") or "—"),
        "node_status": node.get("status"),
        "image": image_text(container),
        "state": state,
        "state_tone": STATE_TONES.get(state, "muted"),
        "state_rank": STATE_ORDER.get(state, 9),
        "health": health,
        "health_tone": HEALTH_TONES.get(health or "", "muted"),
        "cpu": _number(stats.get("cpu_percent")),
        "mem": _number(stats.get("mem_used_bytes")),
        "mem_limit": _number(stats.get("mem_limit_bytes")) if container.get("mem_limit_bytes") else None,
        "ports": ports_text(container.get("ports")),
        "project": container.get("compose_project") if isinstance(container.get("compose_project"), str) else None,
        "service": container.get("compose_service") if isinstance(container.get("compose_service"), str) else None,
        "status": container.get("status") if isinstance(container.get("status"), str) else None,
        # How it ended, for one that is not running (None while it runs or when the source does not say).
        "exit_code": _number(container.get("exit_code")) if state in ("exited", "dead") else None,
        # Since when it runs, for the uptime column.
        "started_at": _number(container.get("started_at")) if state in ("running", "paused", "restarting") else None,
        "actions": [action for action, _label, states in LIFECYCLE_ACTIONS if state in states],
    }


def group_rows(rows: list[dict[str, Any]], by_project: bool) -> list[dict[str, Any]]:
    """Rows in one group, or one group per compose project (containers without one last)."""
    if not by_project:
        return [{"name": None, "rows": rows}]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["project"] or "", []).append(row)
    ordered = sorted(groups.items(), key=lambda item: (item[0] == "", item[0].casefold()))
    return [
        {"name": name or None, "rows": members, "running": sum(1 for r in members if r["state"] == "running")}
        for name, members in ordered
    ]


async def _sources(page: PageRequest) -> list[dict[str, Any]]:
    """Every node whose docker integration reports or tried to, with its latest docker state (None when it has none)."""
    sources = []
    for detail in await page.hub.nodes.with_integration(DOMAIN, SHOWN_STATES):
        node, status = _node_of(detail), detail["status"]
        state = _dict(detail.get("state")).get(DOMAIN)
        sources.append({"node": node, "status": status, "state": state if isinstance(state, dict) else None, "collected_at": detail.get("collected_at")})
    sources.sort(key=lambda s: str(s["node"].get("name") or s["node"].get("id")).casefold())
    return sources


def _events(sources: list[dict[str, Any]], limit: int = 20) -> list[dict[str, Any]]:
    events = []
    for source in sources:
        for event in _list(_dict(source["state"]).get("events")):
            events.append({**event, "node_id": source["node"].get("id"), "host": source["node"].get("name") or source["node"].get("id")})
    events.sort(key=lambda e: _number(e.get("at")) or 0, reverse=True)
    return events[:limit]


def _node_of(detail: dict[str, Any], node_id: str = "") -> dict[str, Any]:
    node = _dict(detail.get("node"))
    return {**node, "id": node.get("id", node_id)}


async def search(ctx: HubContext, query: str, limit: int) -> list[SearchResult]:
    """Containers whose name, image, compose project or host holds every word of the query."""
    from urllib.parse import quote

    words = query.casefold().split()
    found = []
    for detail in await ctx.nodes.with_integration(DOMAIN, SHOWN_STATES):
        node = _node_of(detail)
        for container in _list(_dict(_dict(detail.get("state")).get(DOMAIN)).get("containers")):
            row = shape_row(node, container)
            text = " ".join(str(v) for v in (row["name"], row["image"], row["project"], row["host"], row["state"]) if v).casefold()
            if all(w in text for w in words):
                url = f"/containers/{quote(row['node_id'], safe='')}/{quote(row['name'], safe='')}"
                found.append(SearchResult("Containers", row["name"], url, f"{row['image']} on {row['host']} · {row['state']}"))
    found.sort(key=lambda r: r.title.casefold())
    return found[:limit]


# ------------------------------------------------------------------ pages


async def containers_page(page: PageRequest) -> Any:
    """Every host's containers in one sortable, filterable table, grouped by compose project on demand."""
    sources = await _sources(page)
    rows = [shape_row(s["node"], c) for s in sources for c in _list(_dict(s["state"]).get("containers"))]
    rows.sort(key=lambda r: (r["host"].casefold(), r["name"].casefold()))
    by_project = page.query.get("group") == "project"
    hosts = [
        {
            "node": s["node"],
            "status": s["status"],
            "has_state": s["state"] is not None,
            "engine": _dict(_dict(s["state"]).get("engine")),
            "count": len(_list(_dict(s["state"]).get("containers"))),
            "collected_at": s["collected_at"],
        }
        for s in sources
    ]
    page_data = {
        "nodes": [s["node"].get("id") for s in sources],
        "grouped": by_project,
        "actions": {action: label for action, label, _states in LIFECYCLE_ACTIONS},
    }
    return page.render(
        "page.html",
        {
            "page": "containers",
            "rows": rows,
            "groups": group_rows(rows, by_project),
            "grouped": by_project,
            "hosts": hosts,
            "events": _events(sources),
            "states": sorted({r["state"] for r in rows}, key=lambda s: STATE_ORDER.get(s, 9)),
            "page_data": page_data,
        },
        fragments=PAGE_FRAGMENTS,
    )


def find_container(state: dict[str, Any], wanted: str) -> dict[str, Any] | None:
    """By name, full id or short id."""
    for container in _list(state.get("containers")):
        if wanted in (container.get("name"), container.get("id"), container.get("short_id")):
            return container
    return None


def detail_context(node: dict[str, Any], container: dict[str, Any], collected_at: Any, selected_range: str) -> dict[str, Any]:
    name = str(container.get("name") or container.get("id") or "?")
    charts = chart_specs(DOMAIN, CONTAINER_CHARTS, name)
    row = shape_row(node, container)
    state = row["state"]
    return {
        "node": node,
        "c": container,
        "row": row,
        "stats": _dict(container.get("stats")),
        "health_last": _dict(container.get("health_last")),
        "healthcheck": _dict(container.get("healthcheck")),
        "env": _list(container.get("env")),
        "labels": sorted(_dict(container.get("labels")).items()),
        "ports": _list(container.get("ports")),
        "networks": _list(container.get("networks")),
        "mounts": _list(container.get("mounts")),
        "collected_at": collected_at,
        "actions": [{"name": action, "label": label, "enabled": state in states} for action, label, states in LIFECYCLE_ACTIONS],
        "chart_data": {"node": node.get("id"), "container": name, "range": selected_range, "ranges": list(DETAIL_RANGES), "charts": charts},
        "ranges": DETAIL_RANGES,
        "selected_range": selected_range,
        "push_node": _dict(node.get("facts")).get("source") == "push",
    }


async def container_page(page: PageRequest) -> Any:
    """One container: overview, state and health, stats and history, ports, networks, mounts, env, labels, command, logs."""
    node_id = page.match_info["node_id"]
    wanted = page.match_info["container"]
    detail = await page.hub.nodes.get(node_id)
    state = _dict(_dict(detail.get("state")).get(DOMAIN)) if detail else {}
    container = find_container(state, wanted) if state else None
    if detail is None or container is None:
        return page.render(
            "not_found.html",
            {"page": "not_found", "node_id": node_id, "container": wanted, "known_node": detail is not None},
            status=404,
        )
    node = _node_of(detail, node_id)
    selected_range = pick_range(page.query, DETAIL_RANGES, DETAIL_DEFAULT_RANGE)
    context = detail_context(node, container, detail.get("collected_at"), selected_range)
    # The page's own heading is the container; in a tab of /containers it sits under that page's h1.
    context["title_tag"] = "h2" if page.query.get("fragment") == "detail" else "h1"
    return page.render("container.html", {"page": "container", **context}, fragments=DETAIL_FRAGMENTS)


# ------------------------------------------------------------- node panel


def panel_context(node: dict[str, Any], state: Any) -> dict[str, Any]:
    """What the node page's Containers panel shows: the engine and each container's state, image, ports and health."""
    rows = [shape_row(node, c) for c in _list(_dict(state).get("containers"))]
    rows.sort(key=lambda r: (STATE_ORDER.get(r["state"], 9), r["name"].casefold()))
    return {
        "rows": rows,
        "engine": _dict(_dict(state).get("engine")),
        "running": sum(1 for r in rows if r["state"] == "running"),
    }
