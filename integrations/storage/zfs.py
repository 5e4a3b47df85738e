"""ZFS pools: ``zpool status`` as JSON (OpenZFS 2.3 and later) or as text, ``zpool list`` for capacity, and the kstats."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

HEALTHY = "ONLINE"
# Pool and vdev states worse than ONLINE, from zpoolconcepts(7).
CRITICAL_STATES = ("FAULTED", "UNAVAIL", "SUSPENDED", "REMOVED")


def _int(text: Any) -> int:
    """An error count as zpool prints it (0, 12, 1.2K, 3M) or as --json-int gives it."""
    if isinstance(text, bool):
        return 0
    if isinstance(text, (int, float)):
        return int(text)
    match = re.match(r"^(\d+(?:\.\d+)?)([KMGTP]?)$", str(text).strip())
    if not match:
        return 0
    scale = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}[match.group(2)]
    return int(float(match.group(1)) * scale)


def _when(value: Any) -> float | None:
    """A time from zpool: epoch seconds (--json-int) or text such as 'Sun Nov 10 00:34:13 2024' (local time)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if value > 0 else None
    if isinstance(value, str) and value.strip():
        text = " ".join(value.split())
        for fmt in ("%a %b %d %H:%M:%S %Y", "%b %d %H:%M:%S %Y"):
            try:
                return time.mktime(time.strptime(text, fmt))
            except ValueError:
                continue
    return None


# ------------------------------------------------------------------ JSON


def _json_vdev(raw: dict[str, Any]) -> dict[str, Any]:
    vdev = {
        "name": str(raw.get("name") or ""),
        "type": str(raw.get("vdev_type") or ""),
        "state": str(raw.get("state") or ""),
        "read_errors": _int(raw.get("read_errors", 0)),
        "write_errors": _int(raw.get("write_errors", 0)),
        "checksum_errors": _int(raw.get("checksum_errors", 0)),
    }
    if raw.get("path"):
        vdev["path"] = str(raw["path"])
    children = raw.get("vdevs")
    if isinstance(children, dict):
        vdev["children"] = [_json_vdev(c) for c in children.values() if isinstance(c, dict)]
    return vdev


def _json_scan(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or not raw.get("function"):
        return None
    function = str(raw["function"]).lower()
    state = str(raw.get("state") or "").lower()
    scan: dict[str, Any] = {"function": function, "state": state, "errors": _int(raw.get("errors", 0))}
    start, end = _when(raw.get("start_time")), _when(raw.get("end_time"))
    if start:
        scan["started_at"] = start
    if end and state != "scanning":
        scan["ended_at"] = end
    to_examine, examined = _int(raw.get("to_examine", 0)), _int(raw.get("issued", raw.get("examined", 0)))
    if state == "scanning" and to_examine:
        scan["progress_percent"] = round(100.0 * examined / to_examine, 1)
    return scan


def parse_status_json(text: str) -> list[dict[str, Any]]:
    """``zpool status -j --json-int`` into one dict per pool."""
    doc = json.loads(text)
    pools = []
    for name, raw in sorted((doc.get("pools") or {}).items()):
        if not isinstance(raw, dict):
            continue
        vdevs = raw.get("vdevs") if isinstance(raw.get("vdevs"), dict) else {}
        root = vdevs.get(name) or next(iter(vdevs.values()), None)
        pool = {
            "name": name,
            "state": str(raw.get("state") or ""),
            "status": str(raw.get("status") or ""),
            "action": str(raw.get("action") or ""),
            "scan": _json_scan(raw.get("scan_stats")),
            "vdevs": _json_vdev(root) if isinstance(root, dict) else None,
            "data_errors": _int(raw.get("error_count", 0)),
        }
        # Spares, cache and log devices live beside the root vdev.
        extra = [_json_vdev(v) for k, v in (raw.get("spares") or {}).items() if isinstance(v, dict)]
        if extra:
            pool["spares"] = extra
        pools.append(pool)
    return pools


# ------------------------------------------------------------------ text

_FIELD_RE = re.compile(r"^\s*(pool|state|status|action|see|scan|scrub|config|errors):\s?(.*)$")


def _text_scan(text: str) -> dict[str, Any] | None:
    text = " ".join(text.split())
    if not text or text.startswith("none requested"):
        return None
    m = re.match(r"^(scrub|resilver) in progress since (.+?)(?: \d| [\d.]+[KMGTP]?B? scanned|$)", text)
    if m:
        scan: dict[str, Any] = {"function": m.group(1), "state": "scanning", "errors": 0}
        started = _when(m.group(2)) or _when(" ".join(m.group(2).split()[:5]))
        if started:
            scan["started_at"] = started
        done = re.search(r"([\d.]+)% done", text)
        if done:
            scan["progress_percent"] = float(done.group(1))
        return scan
    m = re.match(r"^(scrub repaired|resilvered) (\S+) in (\S+(?: days? \S+)?) with (\d+) errors on (.+)$", text)
    if m:
        return {"function": "scrub" if m.group(1).startswith("scrub") else "resilver", "state": "finished", "errors": int(m.group(4)), "repaired": m.group(2), "ended_at": _when(m.group(5))}
    m = re.match(r"^(scrub|resilver) canceled on (.+)$", text)
    if m:
        return {"function": m.group(1), "state": "canceled", "errors": 0, "ended_at": _when(m.group(2))}
    return {"function": "unknown", "state": "unknown", "errors": 0, "text": text}


def parse_status_text(text: str) -> list[dict[str, Any]]:
    """Plain ``zpool status`` (every OpenZFS version) into the same shape as parse_status_json."""
    pools: list[dict[str, Any]] = []
    pool: dict[str, Any] | None = None
    field = None
    fields: dict[str, list[str]] = {}
    config: list[str] = []

    def finish() -> None:
        if pool is None:
            return
        pool["state"] = " ".join(fields.get("state", [])).strip()
        pool["status"] = " ".join(" ".join(fields.get("status", [])).split())
        pool["action"] = " ".join(" ".join(fields.get("action", [])).split())
        pool["scan"] = _text_scan(" ".join(fields.get("scan", []) + fields.get("scrub", [])))
        errors = " ".join(fields.get("errors", [])).strip()
        m = re.match(r"^(\d+) data errors", errors)
        pool["data_errors"] = int(m.group(1)) if m else 0
        pool["vdevs"], spares = _text_tree(config)
        if spares:
            pool["spares"] = spares
        pools.append(pool)

    for line in text.splitlines():
        m = _FIELD_RE.match(line)
        if m and not (field == "config" and line.startswith("\t")):
            field = m.group(1)
            if field == "pool":
                finish()
                pool, fields, config = {"name": m.group(2).strip()}, {}, []
            elif field != "config":
                fields.setdefault(field, []).append(m.group(2))
            continue
        if field == "config":
            if line.strip():
                config.append(line)
        elif field and line.strip():
            fields.setdefault(field, []).append(line.strip())
    finish()
    return pools


def _text_tree(lines: list[str]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The NAME STATE READ WRITE CKSUM table into a vdev tree (indentation is two spaces per level)."""
    root: dict[str, Any] | None = None
    stack: list[tuple[int, dict[str, Any]]] = []
    spares: list[dict[str, Any]] = []
    section = "pool"
    for line in lines:
        body = line.expandtabs(8)
        stripped = body.strip()
        if stripped.startswith("NAME") and "STATE" in stripped:
            continue
        indent = len(body) - len(body.lstrip(" "))
        parts = stripped.split()
        if len(parts) == 1 and parts[0] in ("logs", "cache", "spares", "special", "dedup"):
            section = parts[0]
            stack = []
            continue
        vdev: dict[str, Any] = {"name": parts[0], "state": parts[1] if len(parts) > 1 else "", "read_errors": 0, "write_errors": 0, "checksum_errors": 0}
        if len(parts) >= 5 and section != "spares":
            vdev["read_errors"], vdev["write_errors"], vdev["checksum_errors"] = _int(parts[2]), _int(parts[3]), _int(parts[4])
            if len(parts) > 5:
                vdev["note"] = " ".join(parts[5:])
        vdev["type"] = re.sub(r"-\d+$", "", parts[0]) if re.match(r"^(mirror|raidz\d?|draid\d?\S*|replacing|spare)-\d+", parts[0]) else "disk"
        if section == "spares":
            spares.append(vdev)
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if not stack:
            if root is None and section == "pool":
                vdev["type"] = "root"
                root = vdev
                stack.append((indent, vdev))
            elif root is not None:
                root.setdefault("children", []).append({**vdev, "class": section})
                stack.append((indent, root["children"][-1]))
            continue
        stack[-1][1].setdefault("children", []).append(vdev)
        stack.append((indent, vdev))
    return root, spares


# ------------------------------------------------------------------ list and kstat


def parse_list(text: str) -> dict[str, dict[str, float]]:
    """``zpool list -Hp -o name,size,alloc,free,frag,cap``: capacity figures per pool."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 6:
            continue
        name, size, alloc, free, frag, cap = parts[:6]
        figures: dict[str, float] = {}
        for key, raw in (("size_bytes", size), ("allocated_bytes", alloc), ("free_bytes", free), ("fragmentation_percent", frag), ("capacity_percent", cap)):
            raw = raw.strip().rstrip("%")
            if re.match(r"^\d+(\.\d+)?$", raw):
                figures[key] = float(raw)
        out[name] = figures
    return out


def read_arcstats(kstat_dir: Path) -> dict[str, float]:
    """ARC size and hit ratio from /proc/spl/kstat/zfs/arcstats."""
    try:
        text = (kstat_dir / "arcstats").read_text()
    except OSError:
        return {}
    values: dict[str, int] = {}
    for line in text.splitlines()[2:]:
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            values[parts[0]] = int(parts[2])
    out: dict[str, float] = {}
    if "size" in values:
        out["arc_size_bytes"] = float(values["size"])
    if "c_max" in values:
        out["arc_max_bytes"] = float(values["c_max"])
    hits, misses = values.get("hits"), values.get("misses")
    if hits is not None and misses is not None and hits + misses > 0:
        out["arc_hit_percent"] = round(100.0 * hits / (hits + misses), 2)
    return out


def kstat_pool_states(kstat_dir: Path) -> dict[str, str]:
    """Each pool's state from /proc/spl/kstat/zfs/<pool>/state (present without the zpool command)."""
    out = {}
    try:
        entries = list(kstat_dir.iterdir())
    except OSError:
        return {}
    for entry in entries:
        try:
            out[entry.name] = (entry / "state").read_text().strip()
        except OSError:
            continue
    return out


def collect(zpool: str, kstat_dir: Path, timeout: float) -> dict[str, Any] | None:
    """Every pool on this host, or None when ZFS is not here."""
    has_kstat = kstat_dir.is_dir()
    pools: list[dict[str, Any]] = []
    source = ""
    try:
        proc = subprocess.run([zpool, "status", "-j", "--json-int"], capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode == 0 and proc.stdout.lstrip().startswith("{"):
            pools, source = parse_status_json(proc.stdout), "json"
        else:
            proc = subprocess.run([zpool, "status"], capture_output=True, text=True, timeout=timeout, check=False)
            if proc.returncode == 0:
                pools, source = parse_status_text(proc.stdout), "text"
        listing = subprocess.run([zpool, "list", "-Hp", "-o", "name,size,alloc,free,frag,cap"], capture_output=True, text=True, timeout=timeout, check=False)
        capacity = parse_list(listing.stdout) if listing.returncode == 0 else {}
    except FileNotFoundError:
        if not has_kstat:
            return None
        capacity = {}
        pools = [{"name": name, "state": state, "vdevs": None, "scan": None, "data_errors": 0} for name, state in sorted(kstat_pool_states(kstat_dir).items())]
        source = "kstat"
    except subprocess.TimeoutExpired:
        return {"pools": [], "error": f"zpool did not answer within {timeout:g} s"}
    for pool in pools:
        pool.update(capacity.get(pool["name"], {}))
    out: dict[str, Any] = {"pools": pools, "source": source}
    if has_kstat:
        out["arc"] = read_arcstats(kstat_dir)
    return out


def vdev_errors(vdev: dict[str, Any] | None) -> int:
    """Read, write and checksum errors over a vdev tree."""
    if not vdev:
        return 0
    total = vdev.get("read_errors", 0) + vdev.get("write_errors", 0) + vdev.get("checksum_errors", 0)
    return total + sum(vdev_errors(c) for c in vdev.get("children") or [])


def bad_vdevs(vdev: dict[str, Any] | None) -> list[str]:
    """Leaf or inner vdevs that are not ONLINE (or that have errors), by name and state."""
    if not vdev:
        return []
    out = []
    errors = vdev.get("read_errors", 0) + vdev.get("write_errors", 0) + vdev.get("checksum_errors", 0)
    if vdev.get("state") not in (HEALTHY, "") or errors:
        out.append(f"{vdev['name']} {vdev.get('state', '')}{f' ({errors} errors)' if errors else ''}".strip())
    for child in vdev.get("children") or []:
        out.extend(bad_vdevs(child))
    return out
