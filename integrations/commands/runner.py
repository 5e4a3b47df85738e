"""Running one allowed command: exec (never a shell), its own process group, a chosen user, a timeout and an output cap."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import signal
import time
from dataclasses import dataclass
from typing import Any

from roost.core.actions import ActionError

from .allowlist import Command
from .const import ERROR_OUTPUT_CHARS, KILL_GRACE_SECONDS, SAFE_PATH

_READ_CHUNK = 64 * 1024


class AccountError(ValueError):
    """A configured user or group that this host cannot run a command as."""


@dataclass(frozen=True)
class RunAs:
    """Who a command runs as; ``uid`` None means the agent's own user, unchanged."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()
    name: str = ""
    home: str = "/"

    def popen_kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}


def resolve_account(user: str | int | None, group: str | int | None) -> RunAs:
    """Look the configured user and group up on this host; AccountError says what is wrong."""
    if user is None and group is None:
        me = pwd.getpwuid(os.geteuid())
        return RunAs(name=me.pw_name, home=me.pw_dir or "/")
    try:
        entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user) if user is not None else pwd.getpwuid(os.geteuid())
    except KeyError:
        raise AccountError(f"user {user!r} does not exist on this host; create it (useradd --system {user}) or change the config") from None
    gid = entry.pw_gid
    if group is not None:
        try:
            gid = grp.getgrgid(group).gr_gid if isinstance(group, int) else grp.getgrnam(group).gr_gid
        except KeyError:
            raise AccountError(f"group {group!r} does not exist on this host") from None
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, gid))))
    if os.geteuid() != 0:
        if entry.pw_uid != os.geteuid() or gid != os.getegid():
            raise AccountError(
                f"the agent runs as {pwd.getpwuid(os.geteuid()).pw_name}, not root, so it cannot run commands as "
                f"{entry.pw_name}; leave user out or run the agent as root"
            )
        return RunAs(name=entry.pw_name, home=entry.pw_dir or "/")
    return RunAs(uid=entry.pw_uid, gid=gid, groups=groups, name=entry.pw_name, home=entry.pw_dir or "/")


def environment(extra: dict[str, str], run_as: RunAs) -> dict[str, str]:
    """A minimal environment: nothing of the agent's own leaks into the command."""
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": run_as.home, "USER": run_as.name, "LOGNAME": run_as.name}
    env.update(extra)
    return env


@dataclass
class Outcome:
    exit_code: int | None
    output: bytes
    total_bytes: int
    truncated: bool
    duration_s: float
    timed_out: bool


async def _read_capped(stream: asyncio.StreamReader, cap: int, sink: list[bytes]) -> tuple[int, bool]:
    """Read to EOF, keeping the first ``cap`` bytes and counting (then dropping) the rest."""
    kept = 0
    total = 0
    while True:
        chunk = await stream.read(_READ_CHUNK)
        if not chunk:
            return total, total > kept
        total += len(chunk)
        if kept < cap:
            piece = chunk[: cap - kept]
            sink.append(piece)
            kept += len(piece)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def run(command: Command, argv: list[str], run_as: RunAs) -> Outcome:
    """Run one allowed command's argv as its user, with its timeout and output cap."""
    return await run_argv(
        argv,
        label=f"command {command.name}",
        timeout=command.timeout,
        max_output=command.max_output,
        cwd=command.cwd,
        env=environment(command.env, run_as),
        run_as=run_as,
    )


async def run_argv(
    argv: list[str],
    *,
    label: str,
    timeout: float,
    max_output: int,
    env: dict[str, str],
    cwd: str = "/",
    run_as: RunAs | None = None,
) -> Outcome:
    """Exec argv (no shell) in a new session, stdin from /dev/null, stdout and stderr together, capped.

    On timeout the process group gets SIGTERM, then SIGKILL after a grace;
    whatever happens (done, timed out, the job cancelled) the group is killed
    at the end, so nothing the command started outlives it.
    """
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
            umask=0o077,
            **(run_as.popen_kwargs() if run_as is not None else {}),
        )
    except FileNotFoundError:
        raise ActionError(f"{label}: {argv[0]} does not exist on this host (or the directory {cwd} does not)") from None
    except PermissionError as err:
        raise ActionError(f"{label}: cannot run {argv[0]}: {err.strerror}") from None
    except OSError as err:
        raise ActionError(f"{label}: cannot start {argv[0]}: {err.strerror or err}") from None
    sink: list[bytes] = []
    assert proc.stdout is not None

    async def finish() -> tuple[int, bool]:
        counted = await _read_capped(proc.stdout, max_output, sink)
        await proc.wait()
        return counted

    timed_out = False
    total, truncated = 0, False
    try:
        total, truncated = await asyncio.wait_for(finish(), timeout)
    except asyncio.TimeoutError:
        timed_out = True
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE_SECONDS)
        except asyncio.TimeoutError:
            pass
    finally:
        _signal_group(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            try:
                await asyncio.shield(proc.wait())
            except asyncio.CancelledError:
                pass
    data = b"".join(sink)
    return Outcome(
        exit_code=proc.returncode,
        output=data,
        total_bytes=max(total, len(data)),
        truncated=truncated,
        duration_s=round(time.monotonic() - started, 3),
        timed_out=timed_out,
    )


def describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def tail(text: str, chars: int = ERROR_OUTPUT_CHARS) -> str:
    return text if len(text) <= chars else "…" + text[-chars:]
