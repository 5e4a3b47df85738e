"""Expected storage targets: the manifest the hub sends, whether each target is here, and a watch that notices at once when one goes.

A target is named by something that survives a reboot and a replug: a
filesystem UUID or label for disks (``UUID=...``, ``LABEL=...`` or the bare
value), ``server:/export`` for NFS, ``//server/share`` for CIFS, and the
repository (``user@pbs@host:datastore``) for Proxmox Backup Server. Nothing
here ever mounts or unmounts anything.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import voluptuous as vol

TYPES = ("local-dir", "usb", "nfs", "cifs", "pbs")
CLASSES = ("fast", "slow")
ROLES = ("primary", "backup", "offsite", "bulk")
# attached: must be here; disconnected: away on purpose (an offsite drive), not alerted; decommissioned: kept for the record.
STATES = ("attached", "disconnected", "decommissioned")
MAX_TARGETS = 200
TARGET_ID_RE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$|^[0-9a-fA-F]{4}-[0-9a-fA-F]{4}$|^[0-9a-fA-F]{16}$")
NETWORK_PORTS = {"nfs": 2049, "cifs": 445, "pbs": 8007}
PROBE_TIMEOUT = 1.0

PRESENT = "present"
MISSING = "missing"
UNMOUNTED = "unmounted"
ELSEWHERE = "mounted_elsewhere"
UNREACHABLE = "unreachable"
AWAY = "away"
RETIRED = "decommissioned"


def _durable_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 300 or any(c in value for c in "\n\r\0"):
        raise vol.Invalid("expected the filesystem UUID or label (UUID=..., LABEL=...), server:/export, //server/share, or a PBS repository")
    return value.strip()


def _mountpoint(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 4096 or "\0" in value:
        raise vol.Invalid("expected an absolute mount point such as /mnt/backup")
    return os.path.normpath(value)


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _bytes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise vol.Invalid("expected a whole number of bytes, 0 or more")
    return value


def _fingerprint(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^[0-9a-fA-F:]{32,128}$", value):
        raise vol.Invalid("fingerprint must be the PBS certificate's SHA-256 in hex, with or without colons")
    return value


TARGET_SCHEMA = vol.Schema(
    {
        vol.Required("id"): vol.All(str, vol.Match(TARGET_ID_RE, msg="id must be lower case letters, digits, - _ . (1-64), such as usb-backup")),
        vol.Optional("name", default=""): vol.All(str, vol.Length(max=100)),
        vol.Required("type"): vol.In(TYPES, msg=f"type must be one of {', '.join(TYPES)}"),
        vol.Required("durable_id"): _durable_id,
        vol.Optional("class", default="slow"): vol.In(CLASSES, msg="class must be fast or slow"),
        vol.Optional("role", default="primary"): vol.In(ROLES, msg=f"role must be one of {', '.join(ROLES)}"),
        vol.Optional("mountpoint"): _mountpoint,
        vol.Optional("min_free_bytes"): _optional(_bytes),
        vol.Optional("fingerprint"): _optional(_fingerprint),
        vol.Optional("state", default="attached"): vol.In(STATES, msg=f"state must be one of {', '.join(STATES)}"),
    }
)


def _unique_ids(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = set()
    for target in targets:
        if target["id"] in seen:
            raise vol.Invalid(f"target id {target['id']!r} is used twice; each target needs its own id")
        seen.add(target["id"])
    return targets


# What the hub sends an agent (its SETTINGS_SCHEMA): the manifest of one node.
MANIFEST_SCHEMA = vol.Schema(
    {vol.Optional("targets", default=list): vol.All([TARGET_SCHEMA], vol.Length(max=MAX_TARGETS, msg=f"at most {MAX_TARGETS} targets per node"), _unique_ids)}
)


# ------------------------------------------------------------------ mountinfo


@dataclass(frozen=True)
class Mount:
    mount_id: int
    major_minor: str
    root: str
    mountpoint: str
    fstype: str
    source: str


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[Mount]:
    """proc(5)'s /proc/self/mountinfo: id parent major:minor root mountpoint options [optional...] - fstype source superoptions."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append(Mount(int(fields[0]), fields[2], _unescape(fields[3]), _unescape(fields[4]), tail[0], _unescape(tail[1])))
    return mounts


class BlockIds:
    """Filesystem UUID and label of block devices, from ``blkid -p`` (which reads the device itself, so it works without udev), cached per device.

    The cache key holds the device number, its size and the kernel's
    ``diskseq`` (a number every newly attached medium gets), so another
    drive that comes back under the same name and number is probed anew.
    """

    def __init__(self, blkid: str = "blkid", sys_dev_block: Path = Path("/sys/dev/block")) -> None:
        self.blkid = blkid
        self.sys_dev_block = sys_dev_block
        self._cache: dict[tuple[str, int, str], dict[str, str]] = {}
        self._lock = threading.Lock()

    def _identity(self, rdev: int) -> str:
        node = self.sys_dev_block / f"{os.major(rdev)}:{os.minor(rdev)}"
        parts = []
        for name in ("diskseq", "../diskseq", "size"):
            try:
                parts.append((node / name).read_text().strip())
            except OSError:
                parts.append("")
        return "/".join(parts)

    def of(self, device: str) -> dict[str, str]:
        try:
            st = os.stat(device)
        except OSError:
            return {}
        key = (device, st.st_rdev, self._identity(st.st_rdev))
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        try:
            proc = subprocess.run([self.blkid, "-p", "-o", "export", device], capture_output=True, text=True, timeout=5, check=False)
            found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line) if proc.returncode == 0 else {}
        except (OSError, subprocess.TimeoutExpired):
            found = {}
        with self._lock:
            for old in [k for k in self._cache if k[0] == device]:
                del self._cache[old]
            self._cache[key] = found
        return found

    def forget_missing(self) -> None:
        """Drop devices that are gone or were replaced (a new loop device under an old name)."""
        with self._lock:
            for key in list(self._cache):
                device, rdev, identity = key
                try:
                    if os.stat(device).st_rdev != rdev or self._identity(rdev) != identity:
                        del self._cache[key]
                except OSError:
                    del self._cache[key]

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def _wanted(durable_id: str) -> tuple[str, str]:
    """("UUID" | "LABEL" | "ANY", value) for a disk target's durable id."""
    for prefix in ("UUID=", "LABEL=", "PARTUUID="):
        if durable_id.upper().startswith(prefix):
            return prefix[:-1].upper(), durable_id[len(prefix):].strip('"')
    return ("UUID" if UUID_RE.match(durable_id) else "ANY"), durable_id


def _matches(ids: Mapping[str, str], durable_id: str) -> bool:
    kind, value = _wanted(durable_id)
    if kind == "ANY":
        return ids.get("UUID", "").lower() == value.lower() or ids.get("LABEL") == value
    if kind == "UUID" or kind == "PARTUUID":
        return ids.get(kind, "").lower() == value.lower()
    return ids.get(kind) == value


def _device_alive(mount: Mount, sys_dev_block: Path) -> bool:
    """A yanked USB disk stays in mountinfo until someone unmounts it; its block device is gone from sysfs at once."""
    return (sys_dev_block / mount.major_minor).exists()


def _probe(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> float | None:
    """Milliseconds to open a TCP connection, or None (bounded by timeout)."""
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return round((time.monotonic() - started) * 1000, 1)
    except OSError:
        return None


def _network_host(target: Mapping[str, Any]) -> str | None:
    durable = target["durable_id"]
    if target["type"] == "nfs":
        return durable.split(":", 1)[0].strip("[]") or None
    if target["type"] == "cifs":
        return durable.lstrip("/").split("/", 1)[0] or None
    if target["type"] == "pbs":  # user@realm@host:datastore, host:datastore
        return durable.rsplit("@", 1)[-1].rsplit(":", 1)[0].strip("[]") or None
    return None


def _free_bytes(path: str) -> tuple[int, int] | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


STATVFS_TIMEOUT = 2.0
_stuck: dict[str, threading.Thread] = {}
_stuck_lock = threading.Lock()


def bounded_free(path: str, timeout: float = STATVFS_TIMEOUT) -> tuple[int, int] | None | str:
    """statvfs of a network mount in its own thread, bounded: a hung NFS server blocks that thread, not the cycle.

    Returns the figures, None on an error, or "hung" while a statvfs of that path has not returned
    (no second one is started for it until it does).
    """
    with _stuck_lock:
        thread = _stuck.get(path)
        if thread is not None and thread.is_alive():
            return "hung"
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(_free_bytes(path)), name="roost-storage-statvfs", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        with _stuck_lock:
            _stuck[path] = thread
        return "hung"
    return result[0] if result else None


def evaluate(
    targets: list[Mapping[str, Any]],
    mounts: list[Mount],
    block_ids: BlockIds,
    *,
    sys_dev_block: Path = Path("/sys/dev/block"),
    probe: Callable[[str, int], float | None] = _probe,
    free: Callable[[str], tuple[int, int] | None] = _free_bytes,
    network_free: Callable[[str], Any] = bounded_free,
    network: bool = True,
) -> list[dict[str, Any]]:
    """Each target's status: present / missing / unmounted / mounted elsewhere / unreachable, with free space and why.

    ``network=False`` (the mount watch) skips the TCP probes and the
    statvfs of network mounts, which can hang; the collection cycle does them.
    """
    out = []
    block_mounts = [m for m in mounts if m.source.startswith("/dev/")]
    for target in targets:
        status: dict[str, Any] = {"id": target["id"], "type": target["type"], "durable_id": target["durable_id"], "state": target.get("state", "attached")}
        if target.get("mountpoint"):
            status["expected_mountpoint"] = target["mountpoint"]
        if target.get("state") == "decommissioned":
            status["status"] = RETIRED
            out.append(status)
            continue
        found: list[Mount] = []
        if target["type"] in ("local-dir", "usb"):
            for mount in block_mounts:
                if _device_alive(mount, sys_dev_block) and _matches(block_ids.of(mount.source), target["durable_id"]):
                    found.append(mount)
        elif target["type"] in ("nfs", "cifs"):
            want = target["durable_id"].rstrip("/")
            kinds = ("nfs", "nfs4") if target["type"] == "nfs" else ("cifs", "smb3", "smbfs")
            found = [m for m in mounts if m.fstype in kinds and m.source.rstrip("/") == want]
        if target["type"] == "pbs":
            where = None
        else:
            expected = target.get("mountpoint")
            where = next((m for m in found if not expected or m.mountpoint == expected), None)
        if target["type"] == "pbs":
            status["status"] = PRESENT
        elif where is not None:
            status["status"] = PRESENT
            status["mountpoint"] = where.mountpoint
            status["device"] = where.source
        elif found:
            status["status"] = ELSEWHERE
            status["mountpoint"] = found[0].mountpoint
            status["reason"] = f"mounted at {found[0].mountpoint}, not at {target.get('mountpoint')}"
        else:
            status["status"] = MISSING
            status["reason"] = "not mounted" if target["type"] in ("nfs", "cifs") else "no mounted filesystem with that UUID or label"
        host = _network_host(target)
        if network and host and target["type"] in NETWORK_PORTS:
            latency = probe(host, NETWORK_PORTS[target["type"]])
            status["reachable"] = latency is not None
            if latency is not None:
                status["probe_ms"] = latency
            elif status["status"] == PRESENT:
                status["status"] = UNREACHABLE
                status["reason"] = f"{host}:{NETWORK_PORTS[target['type']]} does not answer within {PROBE_TIMEOUT:g} s"
        mountpoint = status.get("mountpoint")
        if mountpoint and status["status"] in (PRESENT, ELSEWHERE) and (network or target["type"] in ("local-dir", "usb")):
            space = free(mountpoint) if target["type"] in ("local-dir", "usb") else network_free(mountpoint)
            if space == "hung":
                status["status"] = UNREACHABLE
                status["reason"] = f"statvfs of {mountpoint} did not return within {STATVFS_TIMEOUT:g} s (the server does not answer)"
            elif space is not None:
                status["free_bytes"], status["size_bytes"] = space
        if target.get("min_free_bytes") is not None:
            status["min_free_bytes"] = target["min_free_bytes"]
        if target.get("state") == "disconnected" and status["status"] != PRESENT:
            status["status"] = AWAY
        out.append(status)
    return out


def presence(statuses: list[Mapping[str, Any]]) -> dict[str, str]:
    return {s["id"]: str(s.get("status")) for s in statuses}


# ------------------------------------------------------------------ the watch


class MountWatch:
    """A thread blocked in poll() on /proc/self/mountinfo (POLLPRI on each mount change) and on the kernel's uevents.

    On a change it checks the listed targets again (without network probes)
    and calls ``changed()`` when one's presence moved: the agent then reports
    at once instead of at its next cycle. While nothing changes it is
    blocked in the kernel and costs nothing.
    """

    def __init__(self, targets: Callable[[], list[Mapping[str, Any]]], changed: Callable[[], None], block_ids: BlockIds, *, mountinfo: str = "/proc/self/mountinfo", logger: Any = None) -> None:
        self._targets = targets
        self._changed = changed
        self._block_ids = block_ids
        self._path = mountinfo
        self._logger = logger
        self._stop_r, self._stop_w = os.pipe()
        self._thread: threading.Thread | None = None
        self.last: dict[str, str] = {}
        self.events = 0  # mount changes seen (the bench and the tests read it)
        self.wakeups = 0

    def start(self) -> None:
        self.last = self._check()
        self._thread = threading.Thread(target=self._run, name="roost-storage-mountwatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5)
        for fd in (self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _check(self) -> dict[str, str]:
        targets = self._targets()
        if not targets:
            return {}
        try:
            with open(self._path) as fh:
                mounts = parse_mountinfo(fh.read())
        except OSError:
            return {}
        return presence(evaluate(list(targets), mounts, self._block_ids, network=False))

    @staticmethod
    def _uevent_socket() -> socket.socket | None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK, 15)  # NETLINK_KOBJECT_UEVENT
            sock.bind((0, 1))  # the kernel's own uevent group: no udevd needed
            return sock
        except (OSError, AttributeError):
            return None

    def _run(self) -> None:
        uevents = self._uevent_socket()
        with open(self._path, "rb") as fh:
            poller = select.poll()
            poller.register(fh.fileno(), select.POLLPRI | select.POLLERR)
            poller.register(self._stop_r, select.POLLIN)
            if uevents is not None:
                poller.register(uevents.fileno(), select.POLLIN)
            try:
                while True:
                    ready = poller.poll()
                    self.wakeups += 1
                    if any(fd == self._stop_r for fd, _ in ready):
                        return
                    relevant = False
                    for fd, _ in ready:
                        if fd == fh.fileno():
                            self.events += 1
                            relevant = True
                        elif uevents is not None and fd == uevents.fileno():
                            if self._block_uevent(uevents):
                                relevant = True
                                self._block_ids.clear()  # a disk came or went: probe every device anew
                    if not relevant:
                        continue
                    self._block_ids.forget_missing()
                    now = self._check()
                    if now != self.last:
                        self.last = now
                        self._changed()
            except Exception:  # never take the agent down; the 10 s cycle still reports
                if self._logger is not None:
                    self._logger.exception("storage: the mount watch stopped; targets are checked each cycle only")
            finally:
                if uevents is not None:
                    uevents.close()

    @staticmethod
    def _block_uevent(sock: socket.socket) -> bool:
        """Drain pending uevents; True if a block device was added or removed."""
        relevant = False
        while True:
            try:
                data = sock.recv(16384)
            except (BlockingIOError, InterruptedError):
                return relevant
            except OSError:
                return relevant
            text = data.split(b"\0")
            if b"SUBSYSTEM=block" in text and (b"ACTION=remove" in text or b"ACTION=add" in text):
                relevant = True
