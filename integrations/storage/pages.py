"""The Storage pages: every disk, pool, array and target across the fleet, worst first, and one disk in detail with its history.

Part of the hub half (imported from hub.py only).
"""

from __future__ import annotations

import json
from typing import Any

from roost.core.hub_integration import PageRequest, as_dict, selected_range

from .const import DOMAIN
from .views import fleet_rows, node_view

DETAIL_RANGES = ("24h", "7d", "30d")
# The attributes that matter, charted per device: (key, title, unit, [(metric, label)]).
DEVICE_CHARTS = (
    ("temperature", "Temperature", "celsius", (("smart_temperature_celsius", "Temperature"),)),
    ("sectors", "Failure counters", "count", (
        ("smart_reallocated_sectors", "Reallocated"), ("smart_pending_sectors", "Pending"), ("smart_uncorrectable_sectors", "Uncorrectable"),
        ("smart_reported_uncorrectable", "Reported uncorrectable"), ("smart_crc_errors", "CRC"), ("smart_media_errors", "Media errors"), ("smart_grown_defects", "Grown defects"),
    )),
    ("wear", "Wear and spare", "percent", (("smart_percentage_used", "Used"), ("smart_available_spare_percent", "Spare"))),
    ("written", "Data written", "bytes", (("smart_data_written_bytes", "Written"),)),
)


def device_series(key: str) -> list[dict[str, Any]]:
    return [
        {"key": k, "title": title, "unit": unit, "series": [{"name": f"{DOMAIN}.{metric}[{key}]", "label": label} for metric, label in series]}
        for k, title, unit, series in DEVICE_CHARTS
    ]


def _acks(page: PageRequest, node_id: str) -> dict[str, Any]:
    return page.hub.data.get("acks", {}).get(node_id, {})


async def storage_page(page: PageRequest) -> Any:
    nodes = await page.hub.nodes.with_integration(DOMAIN)
    rows = fleet_rows(nodes, lambda node_id: _acks(page, node_id))
    hosts = []
    for node in nodes:
        info = as_dict(node.get("node"))
        view = node_view(node, _acks(page, str(info.get("id"))))
        hosts.append({"id": info.get("id"), "name": info.get("name") or info.get("id"), "status": as_dict(node.get("status")), "view": view})
    counts = {v: sum(1 for r in rows if r["verdict"] == v) for v in ("failing", "warning", "unknown", "passed")}
    return page.render("page.html", {"page": "storage", "rows": rows, "hosts": hosts, "counts": counts})


async def device_page(page: PageRequest) -> Any:
    node_id, key = page.match_info["node_id"], page.match_info["device"]
    detail = await page.hub.nodes.get(node_id)
    device = None
    if detail is not None:
        device = next((d for d in node_view(detail, _acks(page, node_id))["devices"] if d.get("key") == key), None)
    if detail is None or device is None:
        return page.render("not_found.html", {"page": "storage_not_found", "node_id": node_id, "device": key, "known_node": detail is not None}, status=404)
    node = as_dict(detail.get("node"))
    chosen = selected_range(page.query, DETAIL_RANGES, DETAIL_RANGES[0])
    charts = {"node": node_id, "range": chosen, "ranges": list(DETAIL_RANGES), "charts": device_series(key)}
    return page.render("device.html", {
        "page": "storage_device", "node": node, "node_id": node_id, "d": device, "collected_at": detail.get("collected_at"),
        "chart_data": charts, "ranges": DETAIL_RANGES, "selected_range": chosen, "can_ack": page.user_role in ("operator", "admin"),
    })


async def manifest_page(page: PageRequest) -> Any:
    """A node's expected storage targets as JSON, which admins edit and save (PUT .../manifests/{node_id})."""
    node_id = page.match_info["node_id"]
    detail = await page.hub.nodes.get(node_id)
    if detail is None:
        return page.render("not_found.html", {"page": "storage_not_found", "node_id": node_id, "device": "", "known_node": False}, status=404)
    stored = await page.hub.store.get(f"manifests/{node_id}") if page.hub.store is not None else None
    manifest = stored if isinstance(stored, dict) else {"targets": []}
    view = node_view(detail, _acks(page, node_id))
    return page.render("manifest.html", {
        "page": "storage_manifest", "node": as_dict(detail.get("node")), "node_id": node_id, "targets": view["targets"],
        "manifest_text": json.dumps(manifest, indent=2), "can_edit": page.user_role == "admin",
    })
