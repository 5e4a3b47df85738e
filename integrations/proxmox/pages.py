"""The proxmox integration's dashboard pages: each cluster with its nodes, guests, storage and backup health, one
guest in detail, and the Guests panel on a Proxmox node's page.

Part of the hub half (imported from hub.py only, so agents never load it).
The data is the latest ``proxmox`` state of every node that runs the proxmox
integration, read through ``page.hub.nodes``. The views only
shape it for the templates; hub data is never trusted to have any key or type.
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

PAGE_FRAGMENTS = {"clusters": "_clusters.html"}
GUEST_FRAGMENTS = {"guest": "_guest.html"}
# Integration states of a node worth a section even without data: it was configured for Proxmox and something is off.
SHOWN_STATES = ("loaded", "collect_error", "setup_retry", "setup_error")
# The same choices as the node page's charts.
GUEST_RANGES = ("5m", "15m", "1h", "6h", "24h", "7d", "30d")
DEFAULT_RANGE = "1h"
NODE_STATUS_ORDER = {"online": 0, "unreachable": 1, "offline": 2}
GUEST_STATUS_ORDER = {"running": 0, "paused": 1, "unknown": 2, "stopped": 3}
# Guest series charted on the guest page: (chart key, title, unit, [(metric base, label)]).
GUEST_CHARTS = (
    ("cpu", "CPU", "percent", (("guest_cpu_percent", "CPU"),)),
    ("memory", "Memory", "bytes", (("guest_mem_used_bytes", "Used"),)),
    ("network", "Network", "bytes_per_second", (("guest_net_in_bytes_per_s", "Receive"), ("guest_net_out_bytes_per_s", "Send"))),
    ("disk_io", "Disk I/O", "bytes_per_second", (("guest_disk_read_bytes_per_s", "Read"), ("guest_disk_write_bytes_per_s", "Write"))),
)


# ---------------------------------------------------------------- shaping


def _vmid_key(guest: dict[str, Any]) -> tuple[int, str]:
    vmid = guest.get("vmid")
    return (vmid if isinstance(vmid, int) and not isinstance(vmid, bool) else 0, str(vmid))


def shape_cluster(source: dict[str, Any]) -> dict[str, Any]:
    """One reporting node's proxmox state as the page shows it: nodes with their guests, storage, backups, tasks."""
    state = _dict(source.get("state"))
    cluster = _dict(state.get("cluster"))
    guests = sorted(_list(state.get("guests")), key=_vmid_key)
    nodes = sorted(_list(state.get("nodes")), key=lambda n: (NODE_STATUS_ORDER.get(n.get("status"), 9), str(n.get("name"))))
    by_node: dict[str, list[dict[str, Any]]] = {}
    for guest in guests:
        by_node.setdefault(str(guest.get("node")), []).append(guest)
    shaped_nodes = []
    for node in nodes:
        members = by_node.pop(str(node.get("name")), [])
        shaped_nodes.append({"node": node, "guests": members, "running": sum(1 for g in members if g.get("status") == "running")})
    # Guests whose node the state does not list (a filter changed, a node left the cluster).
    orphans = [g for members in by_node.values() for g in members]
    backups = _dict(state.get("backups"))
    overdue = [g for g in guests if _dict(g.get("backup")).get("overdue") is True]
    problems = _list(state.get("problems"))
    api = _dict(state.get("api"))
    if cluster.get("standalone") is False and cluster.get("name"):
        title = f"Cluster {cluster['name']}"
    elif len(nodes) == 1 and nodes[0].get("name"):
        title = f"Proxmox node {nodes[0]['name']}"
    else:
        title = f"Proxmox at {api.get('host') or '—'}"
    real = [g for g in guests if not g.get("template")]
    return {
        "roost_node": _dict(source.get("node")),
        "status": source.get("status") or {},
        "collected_at": source.get("collected_at"),
        "has_state": bool(state),
        "title": title,
        "cluster": cluster,
        "api": api,
        "nodes": shaped_nodes,
        "orphans": orphans,
        "guest_count": len(real),
        "running_count": sum(1 for g in real if g.get("status") == "running"),
        "storages": _list(state.get("storages")),
        "tasks": _list(state.get("tasks")),
        "backups": backups,
        "backup_jobs": _list(backups.get("jobs")),
        "backup_tasks": _list(backups.get("tasks")),
        "overdue": overdue,
        "problems": sorted(problems, key=lambda p: {"bad": 0, "warn": 1}.get(p.get("severity"), 2)),
        "partial": state.get("partial") is True,
        "pbs": _dict(state.get("pbs")) if "pbs" in state else None,
    }


def _node_of(detail: dict[str, Any], node_id: str = "") -> dict[str, Any]:
    node = _dict(detail.get("node"))
    return {**node, "id": node.get("id", node_id)}


async def _sources(page: PageRequest) -> list[dict[str, Any]]:
    """Every node that runs the proxmox integration, with its latest proxmox state (None when it has none)."""
    sources = []
    for detail in await page.hub.nodes.with_integration(DOMAIN, SHOWN_STATES):
        sources.append(
            {
                "node": _node_of(detail),
                "status": detail["status"],
                "state": _dict(detail.get("state")).get(DOMAIN),
                "collected_at": detail.get("collected_at"),
            }
        )
    sources.sort(key=lambda s: str(s["node"].get("name") or s["node"].get("id")).casefold())
    return sources


async def search(ctx: HubContext, query: str, limit: int) -> list[SearchResult]:
    """Guests whose name, VMID, tags or Proxmox node holds every word of the query."""
    from urllib.parse import quote

    words = query.casefold().split()
    found = []
    for detail in await ctx.nodes.with_integration(DOMAIN, SHOWN_STATES):
        node = _node_of(detail)
        for guest in _list(_dict(_dict(detail.get("state")).get(DOMAIN)).get("guests")):
            vmid = guest.get("vmid")
            if not isinstance(vmid, int):
                continue
            name = str(guest.get("name") or vmid)
            tags = " ".join(str(t) for t in guest.get("tags") or [] if isinstance(t, str)) if isinstance(guest.get("tags"), list) else ""
            text = f"{name} {vmid} {tags} {guest.get('node') or ''} {guest.get('type') or ''}".casefold()
            if all(w in text for w in words):
                url = f"/proxmox/{quote(str(node.get('id')), safe='')}/guests/{vmid}"
                found.append(SearchResult("Guests", f"{name} ({vmid})", url, f"{guest.get('type') or 'guest'} on {guest.get('node') or '—'} · {guest.get('status')}"))
    found.sort(key=lambda r: r.title.casefold())
    return found[:limit]


# ------------------------------------------------------------------ pages


async def proxmox_page(page: PageRequest) -> Any:
    """Every Proxmox cluster Roost reads: cluster → nodes → guests, storage, backups, tasks."""
    clusters = [shape_cluster(s) for s in await _sources(page)]
    page_data = {"nodes": [c["roost_node"].get("id") for c in clusters]}
    return page.render(
        "page.html",
        {"page": "proxmox", "clusters": clusters, "page_data": page_data},
        fragments=PAGE_FRAGMENTS,
    )


async def guest_page(page: PageRequest) -> Any:
    """One guest: what it is, where it runs, its backups and tasks, and its history charts."""
    node_id = page.match_info["node_id"]
    vmid_text = page.match_info["vmid"]
    detail = await page.hub.nodes.get(node_id)
    state = _dict(_dict(detail.get("state")).get(DOMAIN)) if detail else {}
    guest = None
    if vmid_text.isdigit():
        guest = next((g for g in _list(state.get("guests")) if g.get("vmid") == int(vmid_text)), None)
    if detail is None or guest is None:
        return page.render(
            "not_found.html",
            {"page": "not_found", "node_id": node_id, "vmid": vmid_text, "known_node": detail is not None},
            status=404,
        )
    node = _node_of(detail, node_id)
    selected_range = pick_range(page.query, GUEST_RANGES, DEFAULT_RANGE)
    vmid = guest["vmid"]
    charts = chart_specs(DOMAIN, GUEST_CHARTS, vmid)
    seen: set[Any] = set()
    guest_tasks = []
    for task in [*_list(state.get("tasks")), *_list(_dict(state.get("backups")).get("tasks"))]:
        if str(task.get("id")) == str(vmid) and task.get("upid") not in seen:
            seen.add(task.get("upid"))
            guest_tasks.append(task)
    guest_tasks.sort(key=lambda t: t.get("started_at") if isinstance(t.get("started_at"), (int, float)) else 0, reverse=True)
    pve_node = next((n for n in _list(state.get("nodes")) if n.get("name") == guest.get("node")), {})
    cluster = shape_cluster({"node": node, "state": state})
    page_data = {"id": node["id"], "vmid": vmid, "range": selected_range, "ranges": list(GUEST_RANGES), "charts": charts}
    return page.render(
        "guest.html",
        {
            "page": "proxmox_guest",
            "node": node,
            "guest": guest,
            "pve_node": pve_node,
            "cluster": cluster,
            "guest_tasks": guest_tasks,
            "warn_days": _dict(state.get("backups")).get("warn_days"),
            "collected_at": detail.get("collected_at"),
            "ranges": GUEST_RANGES,
            "selected_range": selected_range,
            "page_data": page_data,
        },
        fragments=GUEST_FRAGMENTS,
    )


# ------------------------------------------------------------- node panel


def panel_context(node: dict[str, Any], state: Any) -> dict[str, Any]:
    """What a Proxmox node's Guests panel shows: each guest's id, name, kind, status and the PVE node it runs on."""
    cluster = shape_cluster({"node": node, "state": state if isinstance(state, dict) else None, "status": {}, "collected_at": None})
    guests = sorted(_list(_dict(state).get("guests")), key=lambda g: (GUEST_STATUS_ORDER.get(str(g.get("status")), 9), _vmid_key(g)))
    return {"cluster": cluster, "guests": guests, "running": sum(1 for g in guests if g.get("status") == "running")}
