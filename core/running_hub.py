"""Where a running hub records itself, so the commands run on its host find its data dir and its real URL."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PREFIX = "hub-"


def records_dir() -> Path:
    """$XDG_RUNTIME_DIR/roost (gone at logout or reboot), else ~/.local/state/roost; one per user either way."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "roost"
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "roost"


@dataclass(frozen=True)
class RunningHub:
    """One hub process of this user on this host, as it recorded itself once it listened."""

    pid: int
    data_dir: Path
    url: str
    config: Path | None
    record: Path


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a live process (ticks since boot), None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _alive(pid: int, started: str | None) -> bool:
    if Path("/proc/self/stat").exists():
        # The start time tells a recycled pid from the hub that wrote the record.
        now = _process_start(pid)
        return now is not None and (started is None or now == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def record(data_dir: Path, url: str, config: Path | None) -> Path:
    """Write this process's record (atomically, readable only by its user); returns its path."""
    folder = records_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    pid = os.getpid()
    body: dict[str, Any] = {
        "pid": pid,
        "started": _process_start(pid),
        "data_dir": str(Path(data_dir).resolve()),
        "url": url,
        "config": str(Path(config).resolve()) if config else None,
    }
    path = folder / f"{_PREFIX}{pid}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(body, fh)
    os.replace(tmp, path)
    return path


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def running_hubs() -> list[RunningHub]:
    """The hubs of this user that are running now; records left by a hub that died are deleted."""
    found = []
    try:
        paths = sorted(records_dir().glob(f"{_PREFIX}*.json"))
    except OSError:
        return []
    for path in paths:
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            pid = int(body["pid"])
            hub = RunningHub(
                pid=pid,
                data_dir=Path(body["data_dir"]),
                url=str(body["url"]),
                config=Path(body["config"]) if body.get("config") else None,
                record=path,
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # half-written or not ours: never a reason to fail a command
        if not _alive(pid, body.get("started")):
            remove(path)
            continue
        found.append(hub)
    return found
