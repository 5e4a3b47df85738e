"""The storage state of nodes shaped for the hub: every disk, pool, array and target with a verdict and its reasons, worst first.

Part of the hub half. Node state is never trusted to have any key or type;
acknowledgements (per node, device and attribute, holding the value that was
acknowledged) set a reason aside only while that value stays the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from roost.core.hub_integration import as_dict, as_list

from . import btrfs, lvm, mdraid, zfs
from .smart import COUNTER_LABELS, effective_verdict

DOMAIN = "storage"
# Verdicts of every kind of thing, worst first; tones for the templates.
ORDER = {"failing": 0, "critical": 0, "missing": 0, "warning": 1, "unknown": 2, "passed": 3, "ok": 3}
TONES = {"failing": "bad", "critical": "bad", "warning": "warn", "unknown": "muted", "passed": "ok", "ok": "ok"}
TARGET_BAD = ("missing", "unmounted", "mounted_elsewhere", "unreachable")


def storage_state(node: Mapping[str, Any]) -> dict[str, Any]:
    return as_dict(as_dict(node.get("state")).get(DOMAIN))


def node_id_of(node: Mapping[str, Any]) -> str:
    return str(as_dict(node.get("node")).get("id") or node.get("id") or "")


def acknowledged(reason: Mapping[str, Any], acks: Mapping[str, Any]) -> bool:
    """A reason is set aside while its attribute's acknowledged value is still its value."""
    attribute = reason.get("attribute")
    return isinstance(attribute, str) and attribute in acks and acks[attribute] == reason.get("value")


def device_view(device: Mapping[str, Any], acks: Mapping[str, Any]) -> dict[str, Any]:
    """One device with each reason marked acknowledged or not and the verdict that remains."""
    out = dict(device)
    reasons = []
    for reason in as_list(device.get("reasons")):
        reasons.append({**reason, "acknowledged": acknowledged(reason, acks)})
    out["reasons"] = reasons
    out["drive_verdict"] = str(device.get("verdict") or "unknown")
    out["verdict"] = effective_verdict(reasons) if reasons else out["drive_verdict"]
    out["tone"] = TONES.get(out["verdict"], "muted")
    out["counter_labels"] = {k: COUNTER_LABELS.get(k, k) for k in as_dict(device.get("counters"))}
    return out


def _worst(problems: list[tuple[str, str]]) -> str:
    if any(s == "critical" for s, _ in problems):
        return "failing"
    return "warning" if problems else "passed"


def pool_problems(pool: Mapping[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    state = str(pool.get("state") or "")
    if state and state != zfs.HEALTHY:
        severity = "critical" if state in zfs.CRITICAL_STATES else "warning"
        bad = zfs.bad_vdevs(as_dict(pool.get("vdevs")) or None)
        out.append((severity, f"pool {pool.get('name')} is {state}" + (f": {', '.join(bad[:5])}" if bad else "")))
    scan = as_dict(pool.get("scan"))
    if scan.get("errors"):
        out.append(("critical", f"pool {pool.get('name')}: the last {scan.get('function', 'scan')} found {scan['errors']} errors"))
    if isinstance(pool.get("data_errors"), int) and pool["data_errors"] and not scan.get("errors"):
        out.append(("critical", f"pool {pool.get('name')} has {pool['data_errors']} data errors"))
    errors = zfs.vdev_errors(as_dict(pool.get("vdevs")) or None)
    if errors and state == zfs.HEALTHY:
        out.append(("warning", f"pool {pool.get('name')}: {errors} read/write/checksum errors on its devices"))
    return out


def node_view(node: Mapping[str, Any], acks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Everything storage about one node, each thing with verdict, tone and reasons."""
    state = storage_state(node)
    smart = as_dict(state.get("smart"))
    devices = [device_view(d, as_dict(acks.get(str(d.get("key") or "")))) for d in as_list(smart.get("devices"))]
    pools = []
    for pool in as_list(as_dict(state.get("zfs")).get("pools")):
        problems = pool_problems(pool)
        pools.append({**pool, "kind": "zfs", "verdict": _worst(problems), "reasons": [t for _, t in problems]})
    for fs in as_list(state.get("btrfs")):
        problems = btrfs.problems(fs)
        pools.append({"name": fs.get("label") or fs.get("uuid"), "kind": "btrfs", "state": "DEGRADED" if problems and problems[0][0] == "critical" else "ONLINE", "verdict": _worst(problems), "reasons": [t for _, t in problems], "allocation": fs.get("allocation"), "devices": fs.get("devices")})
    for thin in as_list(as_dict(state.get("lvm")).get("thin_pools")):
        problems = lvm.problems(thin)
        pools.append({**thin, "kind": "lvm-thin", "verdict": _worst(problems), "reasons": [t for _, t in problems]})
    arrays = []
    for array in as_list(state.get("mdraid")):
        problems = mdraid.problems(array)
        arrays.append({**array, "verdict": _worst(problems), "reasons": [t for _, t in problems]})
    targets = []
    for target in as_list(state.get("targets")):
        status = str(target.get("status") or "")
        reasons = []
        verdict = "passed"
        if status in TARGET_BAD and target.get("state") == "attached":
            verdict = "failing" if status == "missing" else "warning"
            reasons.append(f"{status.replace('_', ' ')}" + (f": {target['reason']}" if target.get("reason") else ""))
        free, floor = target.get("free_bytes"), target.get("min_free_bytes")
        if isinstance(free, (int, float)) and isinstance(floor, (int, float)) and free < floor:
            verdict = "failing" if verdict == "failing" else "warning"
            reasons.append(f"{int(free)} bytes free, below its minimum {int(floor)}")
        targets.append({**target, "verdict": verdict, "reasons": reasons})
    for group in (devices, pools, arrays, targets):
        for item in group:
            item["tone"] = TONES.get(item["verdict"], "muted")
        group.sort(key=lambda i: (ORDER.get(i["verdict"], 9), str(i.get("key") or i.get("name") or i.get("id") or "")))
    everything = devices + pools + arrays + targets
    worst = min((ORDER.get(i["verdict"], 9) for i in everything), default=3)
    return {
        "smart_available": bool(smart.get("available")),
        "smart_reason": str(smart.get("reason") or ""),
        "smart_checked_at": smart.get("checked_at"),
        "devices": devices,
        "pools": pools,
        "arrays": arrays,
        "targets": targets,
        "watch": as_dict(state.get("watch")),
        "worst": {0: "failing", 1: "warning", 2: "unknown"}.get(worst, "passed"),
        "problems": sum(1 for i in everything if ORDER.get(i["verdict"], 9) <= 1),
    }


def fleet_rows(nodes: list[Mapping[str, Any]], acks_of: Any) -> list[dict[str, Any]]:
    """One row per disk, pool, array and target across nodes, worst first."""
    rows = []
    for node in nodes:
        info = as_dict(node.get("node"))
        view = node_view(node, acks_of(node_id_of(node)))
        where = {"node_id": node_id_of(node), "host": str(info.get("name") or info.get("hostname") or node_id_of(node))}
        for d in view["devices"]:
            rows.append({**where, "kind": f"disk ({d.get('protocol') or '?'})", "name": d.get("model") or d.get("name"), "key": d.get("key"), "detail": d.get("name"), "verdict": d["verdict"], "tone": d["tone"],
                         "reasons": [r["text"] for r in d["reasons"] if not r["acknowledged"]], "link": f"/storage/{where['node_id']}/{d['key']}" if d.get("key") else ""})
        for p in view["pools"]:
            rows.append({**where, "kind": p["kind"], "name": p.get("name"), "detail": p.get("state") or "", "verdict": p["verdict"], "tone": p["tone"], "reasons": p["reasons"], "link": ""})
        for a in view["arrays"]:
            rows.append({**where, "kind": f"md {a.get('level') or ''}".strip(), "name": a.get("name"), "detail": a.get("member_status") or a.get("array_state") or "", "verdict": a["verdict"], "tone": a["tone"], "reasons": a["reasons"], "link": ""})
        for t in view["targets"]:
            rows.append({**where, "kind": f"target ({t.get('type')})", "name": t.get("id"), "detail": t.get("status") or "", "verdict": t["verdict"], "tone": t["tone"], "reasons": t["reasons"], "link": ""})
    rows.sort(key=lambda r: (ORDER.get(r["verdict"], 9), r["host"].casefold(), str(r["name"] or "")))
    return rows
