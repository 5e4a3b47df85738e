"""Linux software RAID (md): /proc/mdstat for the overview, /sys/block/md*/md/ for state, sync action and mismatches."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_ARRAY_RE = re.compile(r"^(md\S+)\s*:\s*(\S+)\s+(?:\((\S+)\)\s+)?(?:(raid\d+|linear|multipath|faulty)\s+)?(.*)$")
_MEMBER_RE = re.compile(r"^(\S+?)\[(\d+)\]((?:\([A-Z]\))*)$")
_PROGRESS_RE = re.compile(r"\b(resync|recovery|reshape|check|repair)\s*=\s*([\d.]+)%")
_FINISH_RE = re.compile(r"finish=([\d.]+)min")


def parse_mdstat(text: str) -> list[dict[str, Any]]:
    """Every array in /proc/mdstat: level, members (failed, spare), [n/m] [UU_], and any sync in progress."""
    arrays: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        m = _ARRAY_RE.match(line)
        if m:
            current = {"name": m.group(1), "active": m.group(2) == "active", "level": m.group(4) or "", "members": []}
            if m.group(3):
                current["mode"] = m.group(3)
            for token in m.group(5).split():
                mm = _MEMBER_RE.match(token)
                if mm:
                    flags = mm.group(3)
                    current["members"].append({"device": mm.group(1), "slot": int(mm.group(2)), "failed": "(F)" in flags, "spare": "(S)" in flags, "write_mostly": "(W)" in flags})
            arrays.append(current)
            continue
        if current is None or not line.startswith((" ", "\t")):
            if not line.strip():
                current = None
            continue
        status = re.search(r"\[(\d+)/(\d+)\]\s+\[([U_]+)\]", line)
        if status:
            current["raid_disks"], current["working_disks"], current["member_status"] = int(status.group(1)), int(status.group(2)), status.group(3)
        blocks = re.match(r"^\s*(\d+) blocks", line)
        if blocks:
            current["size_bytes"] = int(blocks.group(1)) * 1024
        progress = _PROGRESS_RE.search(line)
        if progress:
            current["sync_action"] = progress.group(1)
            current["sync_percent"] = float(progress.group(2))
            finish = _FINISH_RE.search(line)
            if finish:
                current["sync_finish_minutes"] = float(finish.group(1))
        delayed = re.search(r"\b(resync|recovery|reshape|check)\s*=\s*(DELAYED|PENDING)", line)
        if delayed:
            current["sync_action"] = delayed.group(1)
            current["sync_pending"] = True
    for array in arrays:
        missing = array.get("raid_disks", 0) - array.get("working_disks", array.get("raid_disks", 0))
        array["degraded_disks"] = max(missing, 0)
    return arrays


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def read_sysfs(sys_block: Path, name: str) -> dict[str, Any]:
    """What /sys/block/<md>/md/ says: array_state, degraded, sync_action, sync_completed and mismatch_cnt."""
    md = sys_block / name / "md"
    out: dict[str, Any] = {}
    for key in ("array_state", "sync_action", "level"):
        value = _read(md / key)
        if value is not None:
            out[key] = value
    for key, out_key in (("degraded", "degraded_disks"), ("mismatch_cnt", "mismatch_count"), ("raid_disks", "raid_disks")):
        value = _read(md / key)
        if value is not None and value.isdigit():
            out[out_key] = int(value)
    completed = _read(md / "sync_completed")
    if completed and "/" in completed:
        done, total = (p.strip() for p in completed.split("/", 1))
        if done.isdigit() and total.isdigit() and int(total):
            out["sync_percent"] = round(100.0 * int(done) / int(total), 1)
    return out


def collect(mdstat: Path, sys_block: Path) -> list[dict[str, Any]] | None:
    """Every md array with sysfs's word over mdstat's where both speak; None when md is not here."""
    try:
        text = mdstat.read_text()
    except OSError:
        return None
    arrays = parse_mdstat(text)
    for array in arrays:
        sysfs = read_sysfs(sys_block, array["name"])
        if sysfs.get("sync_action") == "idle":
            array.pop("sync_action", None)
            array.pop("sync_percent", None)
            sysfs.pop("sync_action")
        if sysfs.get("sync_action") == "recover":  # sysfs's word for what mdstat calls recovery
            sysfs["sync_action"] = "recovery"
        array.update(sysfs)
    return arrays


def problems(array: dict[str, Any]) -> list[tuple[str, str]]:
    """What is wrong with one array: (severity, sentence)."""
    out = []
    failed = [m["device"] for m in array.get("members", []) if m.get("failed")]
    if array.get("degraded_disks"):
        out.append(("critical", f"{array['name']} is degraded: {array['degraded_disks']} of {array.get('raid_disks', '?')} disks missing"
                    + (f" (failed: {', '.join(failed)})" if failed else "")
                    + (f"; {array['sync_action']} at {array.get('sync_percent', 0):g} %" if array.get("sync_action") in ("recovery", "resync") else "")))
    elif failed:
        out.append(("warning", f"{array['name']} has failed members: {', '.join(failed)}"))
    if array.get("array_state") in ("inactive", "broken", "readonly") or array.get("active") is False:
        out.append(("critical", f"{array['name']} is {array.get('array_state') or 'inactive'}"))
    return out
