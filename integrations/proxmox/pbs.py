"""Proxmox Backup Server: datastore usage and the newest snapshot of each backup group, read with a PBS API token."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from .client import ProxmoxClient
from .errors import ProxmoxApiError

_LOGGER = logging.getLogger(__name__)

# Groups kept in the state per datastore; the rest still count for guests' backup times.
MAX_GROUPS_IN_STATE = 500


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_datastore_usage(items: Any, wanted: Iterable[str] = ()) -> list[dict[str, Any]]:
    """GET /status/datastore-usage as Roost state (the long usage history arrays are dropped)."""
    wanted = set(wanted)
    stores: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("store"), str):
            continue
        if wanted and item["store"] not in wanted:
            continue
        entry: dict[str, Any] = {"store": item["store"]}
        total, used, avail = _num(item.get("total")), _num(item.get("used")), _num(item.get("avail"))
        if total is not None:
            entry["total_bytes"] = int(total)
        if used is not None:
            entry["used_bytes"] = int(used)
        if avail is not None:
            entry["avail_bytes"] = int(avail)
        if total and used is not None:
            entry["percent"] = round(used / total * 100, 1)
        full = _num(item.get("estimated-full-date"))
        if full is not None and full > 0:
            entry["estimated_full_at"] = int(full)
        if item.get("error"):
            entry["error"] = str(item["error"])
        gc = item.get("gc-status")
        if isinstance(gc, dict) and _num(gc.get("removed-bytes")) is not None:
            entry["gc_removed_bytes"] = int(_num(gc.get("removed-bytes")) or 0)
        stores.append(entry)
    return sorted(stores, key=lambda s: s["store"])


def parse_groups(items: Any) -> list[dict[str, Any]]:
    """GET /admin/datastore/{store}/groups: one entry per backup group (vm/100, ct/200, host/name)."""
    groups = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind, ident = item.get("backup-type"), item.get("backup-id")
        if not isinstance(kind, str) or ident is None:
            continue
        group: dict[str, Any] = {"type": kind, "id": str(ident)}
        last = _num(item.get("last-backup"))
        if last is not None:
            group["last_backup_at"] = int(last)
        count = _num(item.get("backup-count"))
        if count is not None:
            group["count"] = int(count)
        if isinstance(item.get("owner"), str):
            group["owner"] = item["owner"]
        if isinstance(item.get("comment"), str):
            group["comment"] = item["comment"]
        groups.append(group)
    groups.sort(key=lambda g: (g["type"], int(g["id"]) if g["id"].isdigit() else 0, g["id"]))
    return groups


def guest_backups(datastores: list[dict[str, Any]]) -> dict[int, tuple[float, str]]:
    """The newest PBS snapshot time per guest id, with the datastore it is in."""
    newest: dict[int, tuple[float, str]] = {}
    for store in datastores:
        for group in store.get("_groups", ()):
            if group["type"] not in ("vm", "ct") or not group["id"].isdigit() or "last_backup_at" not in group:
                continue
            vmid = int(group["id"])
            if vmid not in newest or group["last_backup_at"] > newest[vmid][0]:
                newest[vmid] = (group["last_backup_at"], store["store"])
    return newest


def read_pbs(client: ProxmoxClient, wanted: Iterable[str] = ()) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Datastores (with their groups under the private key ``_groups``) and the problems met reading them."""
    problems: list[dict[str, str]] = []
    usage = client.get("status/datastore-usage", what="read the datastore usage")
    stores = parse_datastore_usage(usage, wanted)
    for store in stores:
        try:
            groups = parse_groups(client.get(f"admin/datastore/{store['store']}/groups", what=f"list the backup groups of {store['store']}"))
        except ProxmoxApiError as err:
            problems.append({"scope": f"PBS datastore {store['store']}", "severity": "warn", "kind": err.kind, "message": str(err)})
            continue
        store["_groups"] = groups
        store["groups"] = len(groups)
        times = [g["last_backup_at"] for g in groups if "last_backup_at" in g]
        if times:
            store["last_backup_at"] = max(times)
    return stores, problems


def public_datastores(stores: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The datastores as state: groups capped, private keys dropped."""
    out = []
    for store in stores:
        entry = {k: v for k, v in store.items() if not k.startswith("_")}
        groups = store.get("_groups")
        if groups is not None:
            entry["backup_groups"] = groups[:MAX_GROUPS_IN_STATE]
        out.append(entry)
    return out
