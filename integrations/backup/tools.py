"""restic and borg as this host runs them: argv (never a shell), the repository's secret only in the child's environment, JSON read back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from roost.core.actions import ActionError

from .const import DEFAULT_BINARIES, ERROR_TAIL_CHARS, KIND_BORG, KIND_RESTIC, PROGRESS_EVERY_SECONDS, RETENTION_KEYS

Progress = Callable[[str, float | None], Awaitable[None]]
_READ_CHUNK = 256 * 1024
_BORG_LINE_ID = re.compile(r"\[([0-9a-f]{64})\]")


class ToolError(ActionError):
    """restic or borg ran and failed; the message carries the tail of what it said."""

    def __init__(self, message: str, *, code: int | None = None, output: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.output = output


@dataclass(frozen=True)
class Repository:
    """One repository as the host owner configured it. Only ``public()`` ever leaves this host."""

    name: str
    kind: str
    location: str
    password_file: str | None = None
    password_command: str | None = None
    paths: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    binary: str = ""
    # Bandwidth a backup may use (restic --limit-upload, borg --upload-ratelimit), KiB/s.
    upload_limit_kib: int | None = None

    @property
    def program(self) -> str:
        return self.binary or shutil.which(DEFAULT_BINARIES[self.kind]) or DEFAULT_BINARIES[self.kind]

    def public(self) -> dict[str, Any]:
        """What the hub may know: the name, kind, where (without any user:password in a URL) and the configured paths."""
        return {"name": self.name, "kind": self.kind, "location": redact_location(self.location), "paths": list(self.paths), "excludes": list(self.excludes)}


def redact_location(location: str) -> str:
    """A repository URL without credentials: rest:https://user:pw@host/ becomes rest:https://host/."""
    prefix = ""
    rest = location
    for scheme in ("rest:", "s3:", "sftp:", "b2:", "azure:", "gs:", "swift:", "rclone:"):
        if rest.startswith(scheme):
            prefix, rest = scheme, rest[len(scheme):]
            break
    if "://" in rest:
        parts = urlsplit(rest)
        if parts.username or parts.password:
            host = parts.hostname or ""
            if parts.port:
                host = f"{host}:{parts.port}"
            rest = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    elif "@" in rest and not rest.startswith("/"):
        # scp-like user@host:path (sftp, ssh): the user name is no secret, but a password never goes here anyway.
        user, _, after = rest.partition("@")
        if ":" in user:
            rest = user.split(":", 1)[0] + "@" + after
    return prefix + rest


def parse_time(text: Any) -> float | None:
    """restic's RFC 3339 with nanoseconds, borg's naive ISO local time, as epoch seconds."""
    if not isinstance(text, str) or not text:
        return None
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", value)
    if match:
        frac = (match.group(2) or "")[:7]
        value = match.group(1) + frac + match.group(3)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp()


def retention_args(kind: str, rule: dict[str, Any]) -> list[str]:
    args = []
    for key in RETENTION_KEYS:
        count = rule.get(key)
        if count:
            flag = "--" + key.replace("_", "-")
            args += [flag, str(int(count))]
    if not args:
        raise ActionError("the retention rule keeps nothing: set at least one of " + ", ".join(RETENTION_KEYS))
    return args


class Tool:
    """Runs one repository's program. Every call holds the repository's lock: restic and borg lock repositories themselves,
    and a listing that meets a running check would only fail."""

    def __init__(self, repo: Repository, lock: asyncio.Lock) -> None:
        self.repo = repo
        self.lock = lock

    # ------------------------------------------------------------- plumbing

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(self.repo.env)
        return env

    async def run(
        self,
        args: list[str],
        *,
        cwd: str | None = None,
        ok_codes: tuple[int, ...] = (0,),
        on_line: Callable[[str, str], Awaitable[None]] | None = None,
        stdout_sink: Callable[[bytes], None] | None = None,
        what: str = "",
    ) -> tuple[int, str, str]:
        """(exit code, stdout, stderr); ToolError when the code is not one of ``ok_codes``.

        ``on_line(stream, line)`` sees each line as it comes (progress);
        ``stdout_sink`` takes stdout as bytes instead of keeping it (a dump).
        """
        argv = [self.repo.program, *args]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.environment(),
                cwd=cwd,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ToolError(f"{self.repo.kind} is not installed here ({self.repo.program}): apt-get install {'borgbackup' if self.repo.kind == KIND_BORG else 'restic'} or set binary") from None
        out_parts: list[str] = []
        err_parts: list[str] = []

        async def pump(stream: asyncio.StreamReader, name: str, parts: list[str]) -> None:
            pending = b""
            while True:
                chunk = await stream.read(_READ_CHUNK)
                if not chunk:
                    break
                if name == "stdout" and stdout_sink is not None:
                    stdout_sink(chunk)
                    continue
                parts.append(chunk.decode("utf-8", "replace"))
                if on_line is not None:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        await on_line(name, line.decode("utf-8", "replace"))
            if on_line is not None and pending:
                await on_line(name, pending.decode("utf-8", "replace"))

        try:
            await asyncio.gather(pump(proc.stdout, "stdout", out_parts), pump(proc.stderr, "stderr", err_parts))
            code = await proc.wait()
        except asyncio.CancelledError:
            # A cancelled or timed-out job stops its program too; restic and borg leave a stale lock at worst.
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
            raise
        out, err = "".join(out_parts), "".join(err_parts)
        if code not in ok_codes:
            tail = _tail(err or out)
            raise ToolError(f"{self.repo.kind} {what or args[0]} on {self.repo.name} failed (exit {code}): {tail}", code=code, output=tail)
        return code, out, err

    # ------------------------------------------------------------- the calls

    def _password_env(self) -> dict[str, str]:
        return {}

    async def backup(self, paths: list[str], excludes: list[str], tags: list[str], progress: Progress) -> dict[str, Any]:
        raise NotImplementedError

    async def snapshots(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def latest_size(self) -> int | None:
        raise NotImplementedError

    async def verify(self, *, subset: str | None, verify_data: bool) -> dict[str, Any]:
        raise NotImplementedError

    async def files(self, snapshot: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def extract(self, snapshot: str, paths: list[str], target: Path) -> None:
        raise NotImplementedError

    async def expected_sha256(self, snapshot: str, entry: dict[str, Any]) -> str:
        raise NotImplementedError

    def extracted_path(self, target: Path, entry: dict[str, Any]) -> Path:
        return target / entry["path"].lstrip("/")

    async def forget(self, rule: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
        raise NotImplementedError


class Restic(Tool):
    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["RESTIC_REPOSITORY"] = self.repo.location
        if self.repo.password_file:
            env["RESTIC_PASSWORD_FILE"] = self.repo.password_file
        if self.repo.password_command:
            env["RESTIC_PASSWORD_COMMAND"] = self.repo.password_command
        return env

    async def backup(self, paths: list[str], excludes: list[str], tags: list[str], progress: Progress) -> dict[str, Any]:
        args = ["backup", "--json"]
        if self.repo.upload_limit_kib:
            args += ["--limit-upload", str(self.repo.upload_limit_kib)]
        for pattern in excludes:
            args += ["--exclude", pattern]
        for tag in tags:
            args += ["--tag", tag]
        summary: dict[str, Any] = {}
        last = [0.0]

        async def on_line(stream: str, line: str) -> None:
            if stream != "stdout" or not line.startswith("{"):
                return
            try:
                item = json.loads(line)
            except ValueError:
                return
            kind = item.get("message_type")
            if kind == "summary":
                summary.update(item)
            elif kind == "status" and time.monotonic() - last[0] >= PROGRESS_EVERY_SECONDS:
                last[0] = time.monotonic()
                done = item.get("files_done", 0)
                total = item.get("total_files", 0)
                await progress(f"{done}/{total} files, {_size(item.get('bytes_done', 0))} of {_size(item.get('total_bytes', 0))}", _percent(item.get("percent_done")))

        # exit 3: some files could not be read; the snapshot was still made, and the run says so.
        code, _, err = await self.run([*args, "--", *paths], on_line=on_line, ok_codes=(0, 3), what="backup")
        if not summary.get("snapshot_id"):
            raise ToolError(f"restic backup on {self.repo.name} made no snapshot: {_tail(err)}")
        return {
            "snapshot_id": summary["snapshot_id"],
            "files": int(summary.get("total_files_processed", 0)),
            "bytes": int(summary.get("total_bytes_processed", 0)),
            "bytes_added": int(summary.get("data_added", 0)),
            "duration_seconds": round(float(summary.get("total_duration", 0.0)), 3),
            "warnings": _tail(err) if code == 3 else "",
        }

    async def snapshots(self) -> list[dict[str, Any]]:
        _, out, _ = await self.run(["snapshots", "--json", "--no-lock"], what="snapshots")
        items = json.loads(out or "[]") or []
        snaps = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            snaps.append(
                {
                    "id": item["id"],
                    "short_id": item.get("short_id") or item["id"][:8],
                    "time": parse_time(item.get("time")),
                    "host": item.get("hostname", ""),
                    "paths": list(item.get("paths") or []),
                    "tags": list(item.get("tags") or []),
                }
            )
        snaps.sort(key=lambda s: s["time"] or 0, reverse=True)
        return snaps

    async def latest_size(self) -> int | None:
        _, out, _ = await self.run(["stats", "--json", "--no-lock", "latest"], what="stats")
        value = json.loads(out or "{}").get("total_size")
        return int(value) if isinstance(value, (int, float)) else None

    async def verify(self, *, subset: str | None, verify_data: bool) -> dict[str, Any]:
        args = ["check"]
        if subset:
            args.append(f"--read-data-subset={subset}")
        elif verify_data:
            args.append("--read-data")
        code, out, err = await self.run(args, ok_codes=(0, 1), what="check")
        return {"ok": code == 0, "exit_code": code, "read_data_subset": subset or ("all" if verify_data else None), "output": _tail(out + err)}

    async def files(self, snapshot: str) -> list[dict[str, Any]]:
        _, out, _ = await self.run(["ls", "--json", "--no-lock", snapshot], what="ls")
        entries = []
        for line in out.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("struct_type") == "node" and item.get("type") == "file" and isinstance(item.get("path"), str):
                entries.append({"path": item["path"], "size": int(item.get("size") or 0)})
        return entries

    async def extract(self, snapshot: str, paths: list[str], target: Path) -> None:
        args = ["restore", snapshot, "--no-lock", "--target", str(target)]
        for path in paths:
            args += ["--include", _restic_literal(path)]
        await self.run(args, what="restore")

    async def expected_sha256(self, snapshot: str, entry: dict[str, Any]) -> str:
        digest = hashlib.sha256()
        await self.run(["dump", "--no-lock", snapshot, entry["path"]], stdout_sink=digest.update, what="dump")
        return digest.hexdigest()

    async def forget(self, rule: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
        args = ["forget", "--json", *retention_args(KIND_RESTIC, rule)]
        args.append("--dry-run" if dry_run else "--prune")
        _, out, err = await self.run(args, what="forget")
        keep, remove = [], []
        # With --prune restic prints the prune's text after the JSON line.
        first = next((line for line in out.splitlines() if line.startswith("[")), "[]")
        for group in json.loads(first) or []:
            keep += [s["id"] for s in group.get("keep") or []]
            remove += [s["id"] for s in group.get("remove") or []]
        return {"keep": keep, "remove": remove, "output": _tail(err)}


class Borg(Tool):
    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["BORG_REPO"] = self.repo.location
        env.setdefault("BORG_DISPLAY_PASSPHRASE", "no")
        env.setdefault("BORG_RELOCATED_REPO_ACCESS_IS_OK", "no")
        if self.repo.password_file:
            try:
                env["BORG_PASSPHRASE"] = Path(self.repo.password_file).read_text().splitlines()[0]
            except (OSError, IndexError) as err:
                raise ToolError(f"borg repository {self.repo.name}: cannot read its password_file ({err.__class__.__name__})") from None
        if self.repo.password_command:
            env["BORG_PASSCOMMAND"] = self.repo.password_command
        return env

    async def backup(self, paths: list[str], excludes: list[str], tags: list[str], progress: Progress) -> dict[str, Any]:
        name = "{hostname}-{now:%Y-%m-%dT%H:%M:%S.%f}"
        args = ["create", "--json", "--progress", "--log-json"]
        if self.repo.upload_limit_kib:
            args += ["--upload-ratelimit", str(self.repo.upload_limit_kib)]
        for pattern in excludes:
            args += ["--exclude", pattern]
        if tags:
            args += ["--comment", " ".join(f"tag:{t}" for t in tags)]
        last = [0.0]

        async def on_line(stream: str, line: str) -> None:
            if stream != "stderr" or not line.startswith("{"):
                return
            try:
                item = json.loads(line)
            except ValueError:
                return
            if item.get("type") == "archive_progress" and not item.get("finished") and time.monotonic() - last[0] >= PROGRESS_EVERY_SECONDS:
                last[0] = time.monotonic()
                await progress(f"{item.get('nfiles', 0)} files, {_size(item.get('original_size', 0))} read, {_size(item.get('deduplicated_size', 0))} new", None)

        # exit 1: a warning (a file changed while read); the archive was made.
        code, out, err = await self.run([*args, f"::{name}", *paths], on_line=on_line, ok_codes=(0, 1), what="create")
        try:
            archive = json.loads(out)["archive"]
        except (ValueError, KeyError, TypeError):
            raise ToolError(f"borg create on {self.repo.name} gave no archive: {_tail(err)}") from None
        stats = archive.get("stats") or {}
        return {
            "snapshot_id": archive.get("id"),
            "name": archive.get("name"),
            "files": int(stats.get("nfiles", 0)),
            "bytes": int(stats.get("original_size", 0)),
            "bytes_added": int(stats.get("deduplicated_size", 0)),
            "duration_seconds": round(float(archive.get("duration", 0.0)), 3),
            "warnings": _borg_messages(err) if code == 1 else "",
        }

    async def snapshots(self) -> list[dict[str, Any]]:
        _, out, _ = await self.run(["list", "--json", "--bypass-lock"], what="list")
        archives = (json.loads(out or "{}") or {}).get("archives") or []
        snaps = [
            {"id": a.get("id"), "short_id": (a.get("id") or "")[:8], "name": a.get("name"), "time": parse_time(a.get("time") or a.get("start")), "host": "", "paths": [], "tags": []}
            for a in archives
            if isinstance(a, dict) and a.get("name")
        ]
        snaps.sort(key=lambda s: s["time"] or 0, reverse=True)
        return snaps

    async def latest_size(self) -> int | None:
        _, out, _ = await self.run(["info", "--json", "--bypass-lock", "--last", "1"], what="info")
        archives = (json.loads(out or "{}") or {}).get("archives") or []
        if not archives:
            return None
        value = (archives[0].get("stats") or {}).get("original_size")
        return int(value) if isinstance(value, (int, float)) else None

    async def verify(self, *, subset: str | None, verify_data: bool) -> dict[str, Any]:
        args = ["check"]
        if verify_data:
            args.append("--verify-data")
        code, out, err = await self.run(args, ok_codes=(0, 1), what="check")
        return {"ok": code == 0, "exit_code": code, "verify_data": verify_data, "output": _tail(out + err)}

    def _archive(self, snapshot: str) -> str:
        return f"::{snapshot}"

    async def files(self, snapshot: str) -> list[dict[str, Any]]:
        _, out, _ = await self.run(["list", "--json-lines", "--bypass-lock", "--format", "{type}{path}{size}{sha256}", self._archive(snapshot)], what="list")
        entries = []
        for line in out.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("type") == "-" and isinstance(item.get("path"), str):
                entries.append({"path": item["path"], "size": int(item.get("size") or 0), "sha256": item.get("sha256") or ""})
        return entries

    async def extract(self, snapshot: str, paths: list[str], target: Path) -> None:
        await self.run(["extract", "--bypass-lock", self._archive(snapshot), *paths], cwd=str(target), what="extract")

    async def expected_sha256(self, snapshot: str, entry: dict[str, Any]) -> str:
        # The archive's own metadata: borg keeps each file's SHA-256 in its listing.
        if entry.get("sha256"):
            return entry["sha256"]
        digest = hashlib.sha256()
        await self.run(["extract", "--stdout", "--bypass-lock", self._archive(snapshot), entry["path"]], stdout_sink=digest.update, what="extract --stdout")
        return digest.hexdigest()

    async def forget(self, rule: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
        args = ["prune", "--list", "--log-json", *retention_args(KIND_BORG, rule)]
        if dry_run:
            args.append("--dry-run")
        _, _, err = await self.run(args, what="prune")
        keep, remove = [], []
        for message in _borg_lines(err):
            found = _BORG_LINE_ID.search(message)
            if not found:
                continue
            if message.startswith("Keeping"):
                keep.append(found.group(1))
            elif message.startswith(("Would prune", "Pruning")):
                remove.append(found.group(1))
        output = ""
        if not dry_run:
            _, out, cerr = await self.run(["compact"], what="compact")
            output = _tail(out + cerr)
        return {"keep": keep, "remove": remove, "output": output}


def tool_for(repo: Repository, lock: asyncio.Lock) -> Tool:
    return (Restic if repo.kind == KIND_RESTIC else Borg)(repo, lock)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_READ_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _restic_literal(path: str) -> str:
    # --include takes a pattern: escape the pattern characters of a literal path.
    return re.sub(r"([*?\[\]\\])", r"\\\1", path)


def _borg_lines(err: str) -> list[str]:
    messages = []
    for line in err.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            messages.append(line)
            continue
        if isinstance(item, dict) and isinstance(item.get("message"), str):
            messages.append(item["message"])
    return messages


def _borg_messages(err: str) -> str:
    return _tail("\n".join(m for m in _borg_lines(err) if m))


def _tail(text: str) -> str:
    text = (text or "").strip()
    return text if len(text) <= ERROR_TAIL_CHARS else "…" + text[-ERROR_TAIL_CHARS:]


def _percent(value: Any) -> float | None:
    return round(float(value) * 100, 1) if isinstance(value, (int, float)) else None


def _size(value: Any) -> str:
    number = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if number < 1024 or unit == "TiB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return f"{number:.1f} TiB"
