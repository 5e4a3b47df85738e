"""The systemd journal through `journalctl -o json`: whether there is one, the argv (never a shell), and parsing its lines."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import voluptuous as vol

from roost.core.actions import ActionError
from roost.core.config import parse_duration

from .const import JOURNAL_DIRS, JOURNAL_FIELDS, JOURNAL_LINE_LIMIT, MAX_MATCH_CHARS, STDERR_CAP

# A unit name as systemd allows it (letters, digits, : _ . @ - and \x escapes);
# no glob characters, no leading '-', nothing a shell or journalctl could read otherwise.
UNIT_RE = re.compile(r"^[A-Za-z0-9_:\\][A-Za-z0-9_:.@\\-]{0,250}$")
_UNIT_SUFFIXES = (".service", ".socket", ".timer", ".mount", ".target", ".path", ".scope", ".slice", ".swap", ".device", ".automount")


def unit_name(value: Any) -> str:
    """voluptuous validator: a unit name, with .service added when it has no unit suffix (as journalctl does)."""
    if not isinstance(value, str) or not UNIT_RE.match(value):
        raise vol.Invalid("must be a systemd unit name such as nginx.service (letters, digits, : _ . @ -)")
    return value if value.endswith(_UNIT_SUFFIXES) else value + ".service"


def match_text(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_MATCH_CHARS or "\x00" in value or "\n" in value:
        raise vol.Invalid(f"must be 1 to {MAX_MATCH_CHARS} characters of text to look for in each line")
    return value


def since_time(value: Any) -> float:
    """voluptuous validator: '1h' / '30m' / '2d' ago, an ISO 8601 time, or a Unix time -> Unix time."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        stamp = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            stamp = time.time() - parse_duration(text)
        except vol.Invalid:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise vol.Invalid("must be a time span ago such as 1h, 30m or 2d, or a time such as 2024-05-01T10:00:00") from None
            stamp = parsed.timestamp()  # a time without a zone is this host's local time
    else:
        raise vol.Invalid("must be a time span ago such as 1h, 30m or 2d, or a time such as 2024-05-01T10:00:00")
    if not 0 <= stamp <= time.time() + 86400:
        raise vol.Invalid("must not be before 1970 or in the future")
    return stamp


def journal_problem(directory: str = "") -> str | None:
    """Why the journal cannot be read here, or None when it can."""
    if shutil.which("journalctl") is None:
        return "journalctl is not installed on this host, so there is no systemd journal to read; read log files with logs.file"
    if directory:
        if not os.path.isdir(directory):
            return f"the journal directory {directory} (integrations.logs.directory) does not exist"
        return None
    if not any(os.path.isdir(d) for d in JOURNAL_DIRS):
        return "this host has no systemd journal (no /run/log/journal or /var/log/journal; systemd does not run here); read log files with logs.file"
    return None


def journal_argv(unit: str, scan: int, *, since: float | None = None, directory: str = "") -> list[str]:
    """journalctl's argv: newest first (-r) so reading can stop early; every value its own element or a fixed --opt=number."""
    exe = shutil.which("journalctl")
    if exe is None:
        raise ActionError(journal_problem() or "journalctl is not installed")
    # --all: without it journalctl writes fields over 4096 bytes as null; the caps here decide what is too long.
    argv = [exe, "-o", "json", "--no-pager", "-n", str(int(scan)), "-u", unit, "-r", "--all", "--output-fields=" + ",".join(JOURNAL_FIELDS)]
    if since is not None:
        argv.append(f"--since=@{int(since)}")
    if directory:
        argv.extend(["--directory", directory])
    return argv


# ------------------------------------------------------------------ parsing


def _field_text(value: Any) -> str | None:
    """A journal field as text: journalctl -o json writes binary values as arrays of byte values and repeated fields as arrays."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if all(isinstance(b, int) and 0 <= b <= 255 for b in value):
            return bytes(value).decode("utf-8", "replace")
        parts = [_field_text(v) for v in value]
        return "\n".join(p for p in parts if p is not None)
    return str(value)


def _int(value: Any) -> int | None:
    text = _field_text(value)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Entry:
    time: float | None
    priority: int | None
    identifier: str
    pid: int | None
    unit: str
    host: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "priority": self.priority,
            "identifier": self.identifier,
            "pid": self.pid,
            "unit": self.unit,
            "host": self.host,
            "message": self.message,
        }

    def line(self) -> str:
        stamp = datetime.fromtimestamp(self.time, timezone.utc).isoformat(timespec="seconds") if self.time is not None else "-"
        who = self.identifier or "?"
        if self.pid is not None:
            who += f"[{self.pid}]"
        return f"{stamp} {self.host or '-'} {who}: {self.message}"


def parse_entry(raw: dict[str, Any]) -> Entry:
    """One journal record (a parsed `journalctl -o json` line) as an Entry."""
    realtime = _int(raw.get("__REALTIME_TIMESTAMP"))
    message = raw.get("MESSAGE")
    text = _field_text(message)
    if text is None:
        text = "[message not shown: over 4096 bytes, which journalctl -o json leaves out without --all]" if "MESSAGE" in raw else ""
    return Entry(
        time=realtime / 1e6 if realtime is not None else None,
        priority=_int(raw.get("PRIORITY")),
        identifier=_field_text(raw.get("SYSLOG_IDENTIFIER")) or _field_text(raw.get("_COMM")) or "",
        pid=_int(raw.get("_PID")),
        unit=_field_text(raw.get("_SYSTEMD_UNIT")) or _field_text(raw.get("OBJECT_SYSTEMD_UNIT")) or _field_text(raw.get("UNIT")) or "",
        host=_field_text(raw.get("_HOSTNAME")) or "",
        message=text,
    )


def parse_line(line: str | bytes) -> Entry | None:
    """A line of `journalctl -o json` output, or None for a line that is not a record (blank, '-- No entries --')."""
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    return parse_entry(raw) if isinstance(raw, dict) else None


def parse_output(text: str) -> list[Entry]:
    """Every record in a whole `journalctl -o json` output, in its order."""
    return [e for e in (parse_line(line) for line in text.splitlines() if line.strip()) if e is not None]


# ------------------------------------------------------------------ reading


@dataclass
class Collected:
    entries: list[Entry]  # oldest first
    scanned: int
    truncated: bool


async def read_journal(argv: list[str], *, lines: int, max_bytes: int, match: str | None, timeout: float) -> Collected:
    """Run journalctl (newest first) and keep the newest ``lines`` matching entries within ``max_bytes`` of messages."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "SYSTEMD_LESS": ""}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
            limit=JOURNAL_LINE_LIMIT,
        )
    except OSError as err:
        raise ActionError(f"cannot run journalctl: {err.strerror or err}") from None
    assert proc.stdout is not None and proc.stderr is not None
    needle = match.casefold() if match else None
    kept: list[Entry] = []
    used = 0
    scanned = 0
    truncated = False
    stopped = False

    async def errors() -> bytes:
        data = await proc.stderr.read(STDERR_CAP)
        while await proc.stderr.read(65536):
            pass
        return data

    err_task = asyncio.create_task(errors())

    async def collect() -> None:
        nonlocal used, scanned, truncated, stopped
        while True:
            try:
                line = await proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue  # one absurdly long record: skip it
            if not line:
                return
            entry = parse_line(line)
            if entry is None:
                continue
            scanned += 1
            if needle is not None and needle not in entry.message.casefold():
                continue
            size = len(entry.message.encode("utf-8", "replace")) + 100
            if kept and used + size > max_bytes:
                truncated = True
                stopped = True
                return
            kept.append(entry)
            used += size
            if len(kept) >= lines:
                stopped = True
                return

    finished = False
    try:
        await asyncio.wait_for(collect(), timeout)
        finished = True
    except asyncio.TimeoutError:
        raise ActionError(f"journalctl did not answer within {timeout:g} s; ask for fewer lines or a later since") from None
    finally:
        if stopped or not finished:  # enough read, timed out or cancelled: journalctl has nothing more to say
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        await proc.wait()
        stderr = await err_task
    if not stopped and proc.returncode != 0:
        detail = stderr.decode("utf-8", "replace").strip().splitlines()
        raise ActionError(f"journalctl failed: {detail[0] if detail else f'exit status {proc.returncode}'}")
    kept.reverse()
    return Collected(entries=kept, scanned=scanned, truncated=truncated)
