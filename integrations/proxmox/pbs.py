"""Proxmox Backup Server: datastore usage, backup groups, snapshots (size, verification, protection), garbage collection and the verify and prune jobs, read with a PBS API token."""

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
# Snapshots kept in the state per datastore (newest first); the counts stay whole.
MAX_SNAPSHOTS_IN_STATE = 500


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


def parse_snapshots(items: Any) -> list[dict[str, Any]]:
    """GET /admin/datastore/{store}/snapshots: each snapshot with its size, verification state and protection, newest first."""
    snaps = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("backup-type"), str) or item.get("backup-id") is None:
            continue
        when = _num(item.get("backup-time"))
        if when is None:
            continue
        snap: dict[str, Any] = {"type": item["backup-type"], "id": str(item["backup-id"]), "time": int(when)}
        size = _num(item.get("size"))
        if size is not None:
            snap["size_bytes"] = int(size)
        verification = item.get("verification")
        if isinstance(verification, dict) and isinstance(verification.get("state"), str):
            snap["verification"] = {"state": verification["state"], **({"upid": verification["upid"]} if isinstance(verification.get("upid"), str) else {})}
        snap["protected"] = bool(item.get("protected"))
        for key in ("owner", "comment"):
            if isinstance(item.get(key), str):
                snap[key] = item[key]
        snaps.append(snap)
    snaps.sort(key=lambda s: s["time"], reverse=True)
    return snaps


_GC_FIELDS = {
    "removed-bytes": "removed_bytes",
    "pending-bytes": "pending_bytes",
    "disk-bytes": "disk_bytes",
    "index-data-bytes": "index_data_bytes",
    "removed-bad": "removed_bad",
    "still-bad": "still_bad",
    "last-run-endtime": "last_run_at",
    "next-run": "next_run_at",
    "duration": "duration_s",
}


def parse_gc(item: Any) -> dict[str, Any]:
    """GET /admin/datastore/{store}/gc: the last garbage collection (what it removed, what is still bad) and the next run."""
    if not isinstance(item, dict):
        return {}
    out: dict[str, Any] = {}
    for key, name in _GC_FIELDS.items():
        value = _num(item.get(key))
        if value is not None:
            out[name] = int(value)
    for key, name in (("last-run-state", "last_run_state"), ("schedule", "schedule"), ("upid", "upid")):
        if isinstance(item.get(key), str):
            out[name] = item[key]
    return out


def parse_jobs(items: Any) -> dict[str, list[dict[str, Any]]]:
    """GET /admin/verify or /admin/prune: each job's schedule and last run, by datastore."""
    by_store: dict[str, list[dict[str, Any]]] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("store"), str) or not isinstance(item.get("id"), str):
            continue
        job: dict[str, Any] = {"id": item["id"]}
        for key, name in (("schedule", "schedule"), ("last-run-state", "last_run_state"), ("comment", "comment")):
            if isinstance(item.get(key), str):
                job[name] = item[key]
        for key, name in (("last-run-endtime", "last_run_at"), ("next-run", "next_run_at"), ("outdated-after", "outdated_after_days")):
            value = _num(item.get(key))
            if value is not None:
                job[name] = int(value)
        keep = {k.replace("-", "_"): int(v) for k, v in item.items() if k.startswith("keep-") and _num(v) is not None}
        if keep:
            job["retention"] = keep
        by_store.setdefault(item["store"], []).append(job)
    return by_store


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
        try:
            snaps = parse_snapshots(client.get(f"admin/datastore/{store['store']}/snapshots", what=f"list the snapshots of {store['store']}"))
        except ProxmoxApiError as err:
            problems.append({"scope": f"PBS datastore {store['store']}", "severity": "warn", "kind": err.kind, "message": str(err)})
        else:
            store["_snapshots"] = snaps
            store["snapshot_count"] = len(snaps)
            store["verify_failed"] = sum(1 for s in snaps if s.get("verification", {}).get("state") == "failed")
            store["unverified"] = sum(1 for s in snaps if "verification" not in s)
            store["protected"] = sum(1 for s in snaps if s.get("protected"))
        try:
            store["gc"] = parse_gc(client.get(f"admin/datastore/{store['store']}/gc", what=f"read the garbage collection status of {store['store']}"))
        except ProxmoxApiError as err:
            _LOGGER.debug("PBS %s: no garbage collection status: %s", store["store"], err)
    # Verify and prune jobs are read once for every datastore; an older PBS or a token without Sys.Audit has none to show.
    for path, key in (("admin/verify", "verify_jobs"), ("admin/prune", "prune_jobs")):
        try:
            jobs = parse_jobs(client.get(path, what=f"list the {key.replace('_', ' ')}"))
        except ProxmoxApiError as err:
            _LOGGER.debug("PBS: cannot list %s: %s", key, err)
            continue
        for store in stores:
            store[key] = jobs.get(store["store"], [])
    return stores, problems


def public_datastores(stores: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The datastores as state: groups capped, private keys dropped."""
    out = []
    for store in stores:
        entry = {k: v for k, v in store.items() if not k.startswith("_")}
        groups = store.get("_groups")
        if groups is not None:
            entry["backup_groups"] = groups[:MAX_GROUPS_IN_STATE]
        snaps = store.get("_snapshots")
        if snaps is not None:
            entry["snapshots"] = snaps[:MAX_SNAPSHOTS_IN_STATE]
        out.append(entry)
    return out
