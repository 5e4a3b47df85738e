"""Container detection and the memory and CPU limits that cgroups (v1 or v2) put on this process."""

from __future__ import annotations

import logging
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

# cgroup v1 writes PAGE_COUNTER_MAX rounded to a page (9223372036854771712)
# for "no limit"; anything this large is no limit on any real machine.
V1_UNLIMITED = 1 << 62

# Markers a container runtime leaves in the process's cgroup path, most specific first.
_CGROUP_PATH_RUNTIMES = (
    (re.compile(r"libpod"), "podman"),
    (re.compile(r"/docker[/-]|docker-[0-9a-f]{12,}"), "docker"),
    (re.compile(r"/lxc[/.]|lxc\.payload"), "lxc"),
    (re.compile(r"kubepods"), "kubernetes"),
)


# --------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Mount:
    """One line of /proc/<pid>/mountinfo."""

    major_minor: str
    root: str
    mount_point: str
    fstype: str
    source: str
    super_options: tuple[str, ...]


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse mountinfo text; malformed lines are skipped."""
    mounts = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        left = head.split()
        right = tail.split()
        if len(left) < 6 or len(right) < 2:
            continue
        mounts.append(
            Mount(
                major_minor=left[2],
                root=_unescape(left[3]),
                mount_point=_unescape(left[4]),
                fstype=right[0],
                source=_unescape(right[1]),
                super_options=tuple(right[2].split(",")) if len(right) > 2 else (),
            )
        )
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Map each controller to this process's cgroup path; the v2 unified entry is under ""."""
    groups: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if parts[0] == "0" and controllers == "":
            groups[""] = path
            continue
        for controller in controllers.split(","):
            if controller:
                groups[controller] = path
    return groups


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_stat(path: Path) -> dict[str, int]:
    """Read a flat 'key value' file such as memory.stat or cpu.stat."""
    text = _read(path)
    out: dict[str, int] = {}
    if text is None:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


# ------------------------------------------------------------------- container


def detect_container(proc_root: Path, root: Path) -> str | None:
    """Name the container runtime this process runs under ("docker", "lxc", "podman", ...), or None on a host."""
    try:
        environ = (proc_root / "1" / "environ").read_bytes()
    except OSError:
        environ = b""
    for item in environ.split(b"\0"):
        if item.startswith(b"container=") and len(item) > len(b"container="):
            return item[len(b"container=") :].decode("utf-8", "replace")
    if (root / "run" / ".containerenv").exists():
        return "podman"
    if (root / ".dockerenv").exists():
        return "docker"
    membership = _read(proc_root / "self" / "cgroup") or ""
    for pattern, runtime in _CGROUP_PATH_RUNTIMES:
        if pattern.search(membership):
            return runtime
    return None


# --------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Hierarchy:
    """Where one controller's files are: the process's own cgroup first, then each parent up to the mount point."""

    version: int
    dirs: tuple[Path, ...]


@dataclass(frozen=True)
class CgroupLayout:
    """The cgroup directories that hold this process's memory and CPU accounting."""

    memory: Hierarchy | None = None
    cpu: Hierarchy | None = None  # quota files
    cpuacct: Hierarchy | None = None  # usage counter; the same directories on v2

    @property
    def version(self) -> int | None:
        for hierarchy in (self.memory, self.cpu):
            if hierarchy is not None:
                return hierarchy.version
        return None


def _local_path(mount_point: str, sys_root: Path) -> Path:
    # Mount points under /sys move with sys_root so a fixture tree can stand in for sysfs.
    if mount_point == "/sys" or mount_point.startswith("/sys/"):
        return sys_root / mount_point[len("/sys") :].lstrip("/")
    return Path(mount_point)


def _dirs(mount: Mount, cgroup_path: str, sys_root: Path) -> tuple[Path, ...]:
    top = _local_path(mount.mount_point, sys_root)
    root = mount.root.rstrip("/") or "/"
    leaf = top
    if cgroup_path == root or root == "/" or cgroup_path.startswith(root + "/"):
        rel = posixpath.relpath(cgroup_path, root)
        # In a cgroup namespace the path is relative to the namespace root and
        # may climb out of it ("/../.."); the mount point is then our group.
        if rel != "." and not rel.startswith(".."):
            leaf = top / rel
    if not leaf.is_dir():
        leaf = top
    dirs = [leaf]
    while dirs[-1] != top and top in dirs[-1].parents:
        dirs.append(dirs[-1].parent)
    return tuple(dirs)


def resolve_layout(proc_root: Path, sys_root: Path) -> CgroupLayout:
    """Find this process's cgroup directories from <proc_root>/self/cgroup and mountinfo."""
    membership = _read(proc_root / "self" / "cgroup")
    mountinfo = _read(proc_root / "self" / "mountinfo")
    if membership is None or mountinfo is None:
        return CgroupLayout()
    groups = parse_proc_cgroup(membership)
    v1_mounts: dict[str, Mount] = {}
    v2_mount: Mount | None = None
    for mount in parse_mountinfo(mountinfo):
        if mount.fstype == "cgroup":
            for option in mount.super_options:
                v1_mounts.setdefault(option, mount)
        elif mount.fstype == "cgroup2" and v2_mount is None:
            v2_mount = mount

    def v1(controller: str) -> Hierarchy | None:
        mount = v1_mounts.get(controller)
        path = groups.get(controller)
        if mount is None or path is None:
            return None
        return Hierarchy(1, _dirs(mount, path, sys_root))

    def v2(probe: str) -> Hierarchy | None:
        path = groups.get("")
        if v2_mount is None or path is None:
            return None
        dirs = _dirs(v2_mount, path, sys_root)
        # A controller not enabled for our group has no files; the root group never has limit files.
        if not any((d / probe).exists() for d in dirs):
            return None
        return Hierarchy(2, dirs)

    memory = v1("memory") or v2("memory.max")
    cpu = v1("cpu")
    if cpu is not None:
        cpuacct = v1("cpuacct")
    else:
        cpu = cpuacct = v2("cpu.max")
    return CgroupLayout(memory=memory, cpu=cpu, cpuacct=cpuacct)


# --------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryLimit:
    """The tightest memory limit over this process's cgroup and its parents, with that cgroup's usage."""

    limit_bytes: int
    usage_bytes: int
    inactive_file_bytes: int
    swap_limit_bytes: int | None = None
    swap_used_bytes: int | None = None

    @property
    def used_bytes(self) -> int:
        # Inactive page cache is reclaimed before the OOM killer runs, so it is not "used".
        return max(0, self.usage_bytes - self.inactive_file_bytes)


def read_memory_limit(hierarchy: Hierarchy | None) -> MemoryLimit | None:
    """Read the memory limit and usage, or None when no cgroup limits memory."""
    if hierarchy is None:
        return None
    best: tuple[int, Path] | None = None
    for directory in hierarchy.dirs:
        if hierarchy.version == 2:
            text = _read(directory / "memory.max")
            if text is None or text == "max":
                continue
            try:
                limit = int(text)
            except ValueError:
                continue
        else:
            limit = _read_int(directory / "memory.limit_in_bytes")
            if limit is None or limit >= V1_UNLIMITED:
                continue
        if best is None or limit < best[0]:
            best = (limit, directory)
    if best is None:
        return None
    limit, directory = best
    if hierarchy.version == 2:
        usage = _read_int(directory / "memory.current")
        stat = _read_stat(directory / "memory.stat")
        inactive = stat.get("inactive_file", 0)
        swap_text = _read(directory / "memory.swap.max")
        swap_limit = int(swap_text) if swap_text and swap_text.isdigit() else None
        swap_used = _read_int(directory / "memory.swap.current") if swap_limit is not None else None
    else:
        usage = _read_int(directory / "memory.usage_in_bytes")
        stat = _read_stat(directory / "memory.stat")
        inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        # v1 accounts memory+swap together; swap alone is the difference.
        memsw_limit = _read_int(directory / "memory.memsw.limit_in_bytes")
        memsw_usage = _read_int(directory / "memory.memsw.usage_in_bytes")
        swap_limit = swap_used = None
        if memsw_limit is not None and memsw_limit < V1_UNLIMITED and memsw_usage is not None and usage is not None:
            swap_limit = max(0, memsw_limit - limit)
            swap_used = max(0, memsw_usage - usage)
    if usage is None:
        _LOGGER.debug("cgroup %s has a memory limit but no readable usage", directory)
        return None
    return MemoryLimit(limit, usage, inactive, swap_limit, swap_used)


# ------------------------------------------------------------------------ cpu


@dataclass(frozen=True)
class CpuQuota:
    """The tightest CPU quota over this process's cgroup and its parents, and where its usage counter is."""

    cores: float
    version: int
    usage_dir: Path

    def usage_seconds(self) -> float | None:
        """Cumulative CPU time used by the cgroup, in seconds."""
        if self.version == 2:
            usec = _read_stat(self.usage_dir / "cpu.stat").get("usage_usec")
            return None if usec is None else usec / 1e6
        nsec = _read_int(self.usage_dir / "cpuacct.usage")
        return None if nsec is None else nsec / 1e9


def read_cpu_quota(cpu: Hierarchy | None, cpuacct: Hierarchy | None) -> CpuQuota | None:
    """Read the CPU quota in cores, or None when no cgroup limits CPU time."""
    if cpu is None or cpuacct is None:
        return None
    best: tuple[float, int] | None = None
    for level, directory in enumerate(cpu.dirs):
        if cpu.version == 2:
            text = _read(directory / "cpu.max")
            if text is None:
                continue
            quota_text, _, period_text = text.partition(" ")
            if quota_text == "max":
                continue
            try:
                quota, period = int(quota_text), int(period_text or "100000")
            except ValueError:
                continue
        else:
            quota_v1 = _read_int(directory / "cpu.cfs_quota_us")
            period_v1 = _read_int(directory / "cpu.cfs_period_us")
            if quota_v1 is None or period_v1 is None:
                continue
            quota, period = quota_v1, period_v1
        if quota <= 0 or period <= 0:
            continue
        cores = quota / period
        if best is None or cores < best[0]:
            best = (cores, level)
    if best is None:
        return None
    cores, level = best
    # On v1 cpu and cpuacct are separate trees that mirror each other; take the same level.
    usage_dir = cpuacct.dirs[min(level, len(cpuacct.dirs) - 1)]
    return CpuQuota(cores=cores, version=cpu.version, usage_dir=usage_dir)
