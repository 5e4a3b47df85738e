"""Self-update of an installed agent: fetch a signed release from the hub, check it, stage it beside the current version, switch, and commit only once healthy.

The layout is the install script's: ``<root>/<version>/roost`` and a
``<root>/current`` symlink (root /opt/roost), state in the agent's data dir
under ``update/``. Reverting is not this module's job: the supervisor
(deploy/supervise.sh, run by systemd before every start) switches back when a
new version is still uncommitted at its next start or past its deadline.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roost.core.const import __version__
from roost.core.release import MAX_MANIFEST_BYTES, Release, ReleaseError, artefact_name, check_file, verify_manifest, version_key

_LOGGER = logging.getLogger(__name__)

UPDATE_DIR = "update"
PENDING = "pending"
GOOD = "good"
FAILED = "failed"
REPORTED = "failed.reported"
HEALTH_WINDOW = 120.0
BACKOFF_SECONDS = 24 * 3600
MAX_RELEASE_BYTES = 512 * 1024 * 1024
HEALTHY_CYCLES = 2


class UpdateRefused(Exception):
    """An update that was not made; the message says why and that the running version stays."""


@dataclass(frozen=True)
class Layout:
    root: Path  # holds <version>/roost and current
    data_dir: Path

    @property
    def update_dir(self) -> Path:
        return self.data_dir / UPDATE_DIR

    def current_version(self) -> str:
        return os.readlink(self.root / "current")


def running_layout(data_dir: Path) -> Layout | None:
    """The layout this process runs from (an installed roost: <root>/<version>/roost with <root>/current), else None."""
    exe = Path(sys.executable if getattr(sys, "frozen", False) else sys.argv[0]).resolve()
    root = exe.parent.parent
    if exe.name != "roost" or not (root / "current").is_symlink():
        return None
    return Layout(root=root, data_dir=Path(data_dir))


def _read_kv(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _write_kv(path: Path, values: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    tmp.replace(path)


def backoff(data_dir: Path, version: str, *, now: float | None = None) -> str:
    """Why `version` is refused for now ('' when it is not): it was rolled back here less than 24 hours ago."""
    failed = _read_kv(Path(data_dir) / UPDATE_DIR / FAILED)
    now = time.time() if now is None else now
    at = float(failed.get("at", "0") or 0)
    if failed.get("version") == version and now < at + BACKOFF_SECONDS:
        left = (at + BACKOFF_SECONDS - now) / 3600
        return f"roost {version} was rolled back here {(now - at) / 3600:.1f} h ago ({failed.get('reason', 'unhealthy')}); not trying it again for {left:.1f} h"
    return ""


def check_offer(release: Release, *, running: str, data_dir: Path, now: float | None = None) -> None:
    """Refuse a downgrade, a replay of the running version and a version still backed off from."""
    if version_key(release.version) < version_key(running):
        raise UpdateRefused(f"roost {release.version} is older than the running {running}: a downgrade is refused; still running {running}")
    if version_key(release.version) == version_key(running):
        raise UpdateRefused(f"roost {running} is already running: that manifest is a replay, nothing to do")
    why = backoff(data_dir, release.version, now=now)
    if why:
        raise UpdateRefused(f"{why}; still running {running}")


def stage(layout: Layout, release: Release, downloaded: Path) -> Path:
    """Copy the checked download to <root>/<version>/roost through a staging dir; a full disk leaves nothing behind."""
    final = layout.root / release.version
    if (final / "roost").is_file():
        try:
            check_file(final / "roost", release)
            return final
        except ReleaseError:
            shutil.rmtree(final)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{release.version}-", dir=layout.root))
    try:
        target = staging / "roost"
        with open(downloaded, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
            dst.flush()
            os.fsync(dst.fileno())
        check_file(target, release)
        os.chmod(target, 0o755)
        (staging / "release.manifest").write_bytes(release.raw)
        os.chmod(staging, 0o755)
        staging.rename(final)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UpdateRefused(f"no space left in {layout.root} to stage roost {release.version} ({release.size / 1e6:.0f} MB needed); "
                                f"free some and try again; still running {__version__}") from None
        raise UpdateRefused(f"cannot stage roost {release.version} in {layout.root}: {err.strerror or err}; still running {__version__}") from None
    except ReleaseError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise UpdateRefused(f"{err}; still running {__version__}") from None
    return final


def switch(layout: Layout, release: Release, *, health_window: float = HEALTH_WINDOW, now: float | None = None) -> None:
    """Record the pending update, then point current at the new version (the supervisor reverts it if it never commits)."""
    previous = layout.current_version()
    now = time.time() if now is None else now
    # Generous: the new version must start (PyInstaller unpacks), connect and collect twice.
    deadline = int(now + health_window * 3)
    _write_kv(layout.update_dir / PENDING, {"version": release.version, "previous": previous, "deadline": deadline, "starts": 0, "window": int(health_window)})
    tmp = layout.root / "current.update"
    tmp.unlink(missing_ok=True)
    os.symlink(release.version, tmp)
    os.replace(tmp, layout.root / "current")


def pending_for(data_dir: Path, version: str = __version__) -> dict[str, str] | None:
    """The pending update when it is this version's to commit."""
    pending = _read_kv(Path(data_dir) / UPDATE_DIR / PENDING)
    return pending if pending.get("version") == version else None


def commit(data_dir: Path, version: str = __version__) -> None:
    """This version is good: it stays after the next restart, and becomes what the supervisor falls back to."""
    update = Path(data_dir) / UPDATE_DIR
    good = update / GOOD
    tmp = good.with_name("good.tmp")
    tmp.write_text(version + "\n")
    tmp.replace(good)
    (update / PENDING).unlink(missing_ok=True)


def unreported_failure(data_dir: Path) -> dict[str, str] | None:
    """A rollback the supervisor made that this agent has not reported yet."""
    update = Path(data_dir) / UPDATE_DIR
    failed = _read_kv(update / FAILED)
    if not failed or _read_kv(update / REPORTED).get("at") == failed.get("at"):
        return None
    return failed


def mark_reported(data_dir: Path, failure: dict[str, str]) -> None:
    _write_kv(Path(data_dir) / UPDATE_DIR / REPORTED, {"at": failure.get("at", "")})


async def fetch_release(hub_url: str, arch: str, ssl_context: Any, into: Path, keys: list[str]) -> tuple[Release, Path]:
    """Download the manifest, its signature and the executable from the hub (pinned TLS), checking each before the next."""
    import aiohttp

    name = artefact_name(arch)
    timeout = aiohttp.ClientTimeout(total=1800, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def small(path: str) -> bytes:
            async with session.get(hub_url.rstrip("/") + path, ssl=ssl_context) as resp:
                if resp.status != 200:
                    raise UpdateRefused(f"the hub has no {path} ({resp.status}): add a signed release there with `roost release add`")
                data = await resp.content.read(MAX_MANIFEST_BYTES + 1)
                if len(data) > MAX_MANIFEST_BYTES:
                    raise UpdateRefused(f"{path} from the hub is too large to be a release manifest or signature")
                return data

        raw = await small(f"/download/{name}.manifest")
        sig = await small(f"/download/{name}.sig")
        try:
            release = verify_manifest(raw, sig, keys)
        except ReleaseError as err:
            raise UpdateRefused(f"{err}; still running {__version__}") from None
        if release.size > MAX_RELEASE_BYTES:
            raise UpdateRefused(f"roost {release.version} claims {release.size} bytes; refused")
        path = into / name
        async with session.get(hub_url.rstrip("/") + f"/download/{name}", ssl=ssl_context) as resp:
            if resp.status != 200:
                raise UpdateRefused(f"the hub did not serve /download/{name} ({resp.status}); still running {__version__}")
            written = 0
            try:
                with open(path, "wb") as fh:
                    async for block in resp.content.iter_chunked(1024 * 1024):
                        written += len(block)
                        if written > release.size:
                            raise UpdateRefused(f"the download of roost {release.version} is longer than its signed size; refused, still running {__version__}")
                        fh.write(block)
            except OSError as err:
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise UpdateRefused(f"no space left in {into} for the download of roost {release.version}; still running {__version__}") from None
                raise
    try:
        check_file(path, release)
    except ReleaseError as err:
        raise UpdateRefused(f"{err}; still running {__version__}") from None
    return release, path


async def watch_health(rt: Any, pending: dict[str, str], stop: Any, *, window: float | None = None) -> bool:
    """Commit this (new) version once it has been connected to the hub and collecting; on timeout ask the process to stop.

    Returns True when committed. When the window passes first it sets `stop`
    and returns False: the agent exits non-zero, systemd starts it again and
    the supervisor, seeing the update still pending, switches back.
    """
    import asyncio

    from roost.core.audit import OUTCOME_FAILED

    window = float(pending.get("window") or HEALTH_WINDOW) if window is None else window
    start_cycles = rt.cycles
    deadline = time.monotonic() + window
    while time.monotonic() < deadline and not stop.is_set():
        if getattr(rt, "connected_at", None) and rt.cycles - start_cycles >= HEALTHY_CYCLES:
            commit(rt.data_dir)
            _LOGGER.info("roost %s is healthy (connected and collecting); committed as the good version", __version__)
            await rt.note_event("agent.update.committed", target=f"node:{rt.node_id}",
                                details={"version": __version__, "previous": pending.get("previous", "")})
            return True
        await asyncio.sleep(0.5)
    if stop.is_set():
        return False
    reason = "not connected to the hub" if not getattr(rt, "connected_at", None) else "not collecting"
    _LOGGER.error("roost %s stayed unhealthy (%s) for its %g s health window; stopping so the supervisor rolls back to %s",
                  __version__, reason, window, pending.get("previous", "?"))
    await rt.note_event("agent.update.unhealthy", target=f"node:{rt.node_id}", outcome=OUTCOME_FAILED,
                        details={"version": __version__, "reason": reason, "previous": pending.get("previous", "")})
    stop.set()
    return False


async def report_rollback(rt: Any) -> dict[str, str] | None:
    """After the supervisor rolled an update back: audit it here and tell the hub (in this agent's facts) why."""
    from roost.core.audit import OUTCOME_FAILED

    failure = unreported_failure(rt.data_dir)
    if failure is None:
        return None
    _LOGGER.error("update to roost %s was rolled back: %s", failure.get("version", "?"), failure.get("reason", ""))
    await rt.note_event("agent.update.rolled_back", target=f"node:{rt.node_id}", outcome=OUTCOME_FAILED,
                        details={"version": failure.get("version", ""), "reason": failure.get("reason", ""), "running": __version__})
    mark_reported(rt.data_dir, failure)
    return failure


def last_failure_fact(data_dir: Path) -> dict[str, Any] | None:
    """What the hub is told about the last rolled-back update while it is backed off from."""
    failed = _read_kv(Path(data_dir) / UPDATE_DIR / FAILED)
    if not failed or not backoff(data_dir, failed.get("version", "")):
        return None
    return {"version": failed.get("version", ""), "reason": failed.get("reason", ""), "at": float(failed.get("at", "0") or 0),
            "retry_after": float(failed.get("at", "0") or 0) + BACKOFF_SECONDS}


async def update_from_hub(data_dir: Path, *, restart: bool = True) -> str:
    """`roost update` on an installed agent host: the newest signed release from the agent's own hub, staged and switched to.

    Everything is checked before anything changes: the manifest's operator
    signature (keys pinned at enrolment), expiry, version (no downgrade, no
    replay, no version rolled back in the last 24 h), size and SHA-256, then
    the staged copy again. Both outcomes are written to this host's audit log.
    """
    import platform

    from roost.agent.audit import AUDIT_FILE, AgentAudit
    from roost.agent.runtime import load_state
    from roost.agent.trust import pinned_context
    from roost.core.audit import OUTCOME_REFUSED

    data_dir = Path(data_dir)
    state = load_state(data_dir)
    layout = running_layout(data_dir)
    audit = AgentAudit(data_dir / AUDIT_FILE)
    await audit.open()
    try:
        try:
            if not state.get("node_id"):
                raise UpdateRefused(f"this host is not enrolled (no {data_dir}/agent.json); install it with the hub's install.sh first")
            if layout is None:
                raise UpdateRefused("this roost is not an installed one (/opt/roost/<version>/roost with a current link); update it the way it was installed")
            keys = list(state.get("operator_keys", []))
            machine = platform.machine().lower()
            arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
            with tempfile.TemporaryDirectory(prefix=".download-", dir=layout.root) as tmp:
                release, path = await fetch_release(state["hub"], arch, pinned_context(state["hub"], data_dir), Path(tmp), keys)
                check_offer(release, running=layout.current_version(), data_dir=data_dir)
                stage(layout, release, path)
            switch(layout, release)
        except (UpdateRefused, ReleaseError, OSError) as err:
            message = str(err) if not isinstance(err, OSError) else f"update failed: {err}; still running {__version__}"
            await audit.record("agent.update.refused", target=f"node:{state.get('node_id', '')}", outcome=OUTCOME_REFUSED,
                               peer=state.get("hub", ""), details={"reason": message})
            raise UpdateRefused(message) from None
        await audit.record("agent.update.staged", target=f"node:{state['node_id']}", peer=state["hub"],
                           details={"version": release.version, "previous": __version__, "sha256": release.sha256})
    finally:
        await audit.close()
    if restart and shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        import subprocess

        subprocess.run(["systemctl", "restart", "--no-block", "roost-agent.service"], check=False, timeout=30)
    return release.version
