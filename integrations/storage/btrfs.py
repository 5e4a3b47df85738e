"""btrfs filesystems from /sys/fs/btrfs: label, devices (missing ones), per-device error counters and space allocation."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def read_filesystem(fs_dir: Path) -> dict[str, Any]:
    fs: dict[str, Any] = {"uuid": fs_dir.name, "label": _read(fs_dir / "label") or "", "devices": []}
    devinfo = fs_dir / "devinfo"
    names = {}
    try:
        for link in (fs_dir / "devices").iterdir():
            names[link.name] = link.name
    except OSError:
        pass
    try:
        entries = sorted(devinfo.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else 0)
    except OSError:
        entries = []
    for entry in entries:
        dev: dict[str, Any] = {"devid": int(entry.name) if entry.name.isdigit() else entry.name, "missing": _int(entry / "missing") == 1}
        errors: dict[str, int] = {}
        for line in (_read(entry / "error_stats") or "").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                errors[parts[0]] = int(parts[1])
        if errors:
            dev["errors"] = errors
        fs["devices"].append(dev)
    if not entries:
        fs["devices"] = [{"name": n, "missing": False} for n in sorted(names)]
    allocation: dict[str, dict[str, int]] = {}
    for kind in ("data", "metadata", "system"):
        part = {}
        for key in ("total_bytes", "bytes_used", "disk_total", "disk_used"):
            value = _int(fs_dir / "allocation" / kind / key)
            if value is not None:
                part[key] = value
        if part:
            allocation[kind] = part
    if allocation:
        fs["allocation"] = allocation
    return fs


def collect(sys_fs_btrfs: Path) -> list[dict[str, Any]] | None:
    """Every mounted btrfs filesystem, or None when btrfs is not loaded here."""
    try:
        entries = sorted(p for p in sys_fs_btrfs.iterdir() if p.is_dir() and len(p.name) == 36)
    except OSError:
        return None
    return [read_filesystem(p) for p in entries]


def problems(fs: dict[str, Any]) -> list[tuple[str, str]]:
    name = fs.get("label") or fs.get("uuid", "?")
    out = []
    missing = [str(d.get("devid", d.get("name"))) for d in fs.get("devices", []) if d.get("missing")]
    if missing:
        out.append(("critical", f"btrfs {name} is missing device(s) {', '.join(missing)}"))
    for dev in fs.get("devices", []):
        total = sum((dev.get("errors") or {}).values())
        if total:
            out.append(("warning", f"btrfs {name} device {dev.get('devid')} has {total} errors ({', '.join(f'{k} {v}' for k, v in dev['errors'].items() if v)})"))
    return out
