"""The linux_host collector: one psutil snapshot per cycle, shaped into Roost state and metrics."""

from __future__ import annotations

import concurrent.futures
import fnmatch
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from .cgroups import CgroupLayout, Mount, detect_container, parse_mountinfo, read_cpu_quota, read_memory_limit, resolve_layout
from .const import (
    CAP_HOST_METRICS,
    CAP_NETWORK_INFO,
    CAP_PROCESSES,
    CAP_SERVICES,
    CMDLINE_MAX_CHARS,
    CONF_IGNORE_INTERFACES,
    CONF_IGNORE_MOUNTS,
    CONF_PROC_ROOT,
    CONF_SERVICES,
    CONF_SYS_ROOT,
    CONF_TOP_PROCESSES,
    DEFAULT_IGNORE_INTERFACES,
    DEFAULT_IGNORE_MOUNTS,
    DEFAULT_PROC_ROOT,
    DEFAULT_SERVICES,
    DEFAULT_SYS_ROOT,
    DEFAULT_TOP_PROCESSES,
    FACTS_REFRESH_SECONDS,
    INTERFACES_REFRESH_SECONDS,
    MIN_CPU_WINDOW_SECONDS,
    NON_DISK_BLOCK_PREFIXES,
    PSEUDO_FILESYSTEMS,
    REMOTE_FILESYSTEMS,
    SERVICES_REFRESH_SECONDS,
    STATVFS_TIMEOUT_SECONDS,
)
from .facts import collect_facts
from .systemd import NOT_RUNNING_REASON, list_services, systemd_running

_LOGGER = logging.getLogger(__name__)

# ----------------------------------------------------------------- pure helpers


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def real_mounts(
    mounts: Sequence[Mount],
    ignore: Sequence[str] = (),
    is_dir: Callable[[str], bool] = os.path.isdir,
) -> list[Mount]:
    """Keep the mounts that hold data: no pseudo filesystems, one mount per device, "/" always."""
    # A later mount on the same point hides the earlier one.
    visible: dict[str, Mount] = {}
    for mount in mounts:
        visible.pop(mount.mount_point, None)
        visible[mount.mount_point] = mount

    def rank(mount: Mount) -> tuple[bool, bool, int]:
        return (mount.mount_point != "/", mount.root != "/", len(mount.mount_point))

    best: dict[str, Mount] = {}
    for mount in visible.values():
        if mount.mount_point != "/":
            if mount.fstype in PSEUDO_FILESYSTEMS or mount.mount_point.startswith("/snap/"):
                continue
            # Docker bind-mounts single files (/etc/hosts, /etc/resolv.conf) from the host disk.
            if mount.root != "/" and not is_dir(mount.mount_point):
                continue
        if _matches(mount.mount_point, ignore):
            continue
        key = mount.major_minor
        if key not in best or rank(mount) < rank(best[key]):
            best[key] = mount
    return sorted(best.values(), key=lambda m: (m.mount_point != "/", m.mount_point))


def _rate(new: int, old: int, seconds: float) -> float | None:
    # A counter that went backwards was reset (device re-added, wrap); no honest rate this cycle.
    if seconds <= 0 or new < old:
        return None
    return round((new - old) / seconds, 1)


def _cpu_total(times: Any) -> float:
    # guest time is already counted in user/nice; psutil's cpu_percent leaves it out the same way.
    total = sum(times)
    return total - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _cpu_busy(times: Any) -> float:
    return _cpu_total(times) - times.idle - getattr(times, "iowait", 0.0)


def _cpu_percent(new: Any, old: Any) -> float | None:
    total = _cpu_total(new) - _cpu_total(old)
    if total <= 0:
        return None
    busy = _cpu_busy(new) - _cpu_busy(old)
    return round(min(100.0, max(0.0, busy / total * 100)), 1)


def _sum_times(per_core: Sequence[Any]) -> Any:
    fields = per_core[0]._fields
    summed = [sum(getattr(core, f) for core in per_core) for f in fields]
    return type(per_core[0])(*summed)


def _finite(value: Any) -> bool:
    # The state must be JSON, and NaN is not.
    return isinstance(value, (int, float)) and math.isfinite(value)


def _allowed(getter: Callable[[], Any]) -> Any:
    """Call a psutil getter; None when the kernel denies it (hidepid, another user's process)."""
    try:
        return getter()
    except psutil.AccessDenied:
        return None


@dataclass
class _Sample:
    at: float
    values: Any


@dataclass
class _TrackedProcess:
    pid: int
    start: int  # start time in clock ticks since boot: a pid reused by a younger process has another
    cpu_seconds: float | None = None  # user + system time at the last scan
    username: str | None = None
    process: psutil.Process | None = None  # made for the processes that make a top list, then kept


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _read_stat(pid: int) -> tuple[float, int, int]:
    """(user + system CPU seconds, resident bytes, start ticks) of one process from /proc/PID/stat.

    The same kernel figures psutil's cpu_times() and memory_info().rss read
    (utime and stime, and the resident pages statm also shows), in one read
    instead of two and without a Process object per process. Raises OSError
    as open() does: FileNotFoundError or ProcessLookupError once it exited,
    PermissionError where the kernel hides it.
    """
    with open(f"{psutil.PROCFS_PATH}/{pid}/stat", "rb") as f:
        data = f.read()
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    fields = data[data.rfind(b")") + 2 :].split()
    # From field 3 (state) on: utime is field 14, stime 15, starttime 22, rss 24.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, int(fields[21]) * _PAGE_SIZE, int(fields[19])


# ------------------------------------------------------------------- collector


class Collector:
    """Holds what one cycle needs from the last: counters, Process objects, cached facts."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.top_processes: int = config.get(CONF_TOP_PROCESSES, DEFAULT_TOP_PROCESSES)
        self.ignore_mounts: tuple[str, ...] = tuple(config.get(CONF_IGNORE_MOUNTS, DEFAULT_IGNORE_MOUNTS))
        self.ignore_interfaces: tuple[str, ...] = tuple(config.get(CONF_IGNORE_INTERFACES, DEFAULT_IGNORE_INTERFACES))
        self.services_enabled: bool = config.get(CONF_SERVICES, DEFAULT_SERVICES)
        self.proc_root = Path(config.get(CONF_PROC_ROOT, DEFAULT_PROC_ROOT))
        self.sys_root = Path(config.get(CONF_SYS_ROOT, DEFAULT_SYS_ROOT))
        # The filesystem that proc_root belongs to: "/" normally, a fixture tree in tests.
        self.root = self.proc_root.parent
        self.live = self.proc_root == Path(DEFAULT_PROC_ROOT)

        self.facts: dict[str, Any] = {}
        self._facts_at = 0.0
        self.container: str | None = None
        self.systemd = False
        self._layout = CgroupLayout()
        self._logical_cpus = psutil.cpu_count(logical=True) or 1

        self._cpu: _Sample | None = None
        self._cgroup_cpu: _Sample | None = None
        self._disk_io: _Sample | None = None
        self._net_io: _Sample | None = None
        self._processes: dict[int, _TrackedProcess] = {}
        self._scan_at: float | None = None
        self._sensors = True
        self._mountinfo_text: str | None = None
        self._mounts: list[Mount] = []
        self._statvfs_pending: dict[str, concurrent.futures.Future[os.statvfs_result]] = {}
        self._block_names: frozenset[str] = frozenset()
        self._disks: dict[str, bool] = {}  # whole-disk name -> is physical (has no slaves)
        self._ifaces_at = -INTERFACES_REFRESH_SECONDS
        self._if_names: frozenset[str] = frozenset()
        self._if_stats: dict[str, Any] = {}
        self._if_addrs: dict[str, Any] = {}
        self._services: dict[str, Any] | None = None
        self._services_at = 0.0

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Read the facts and prime every counter that needs a previous reading."""
        self._refresh_facts(time.monotonic())
        self._cpu = _Sample(time.monotonic(), psutil.cpu_times(percpu=True))
        self._container_cpu()
        if self.top_processes:
            self._scan_processes()

    def close(self) -> None:
        self._processes.clear()

    def capabilities(self) -> list[str]:
        caps = [CAP_HOST_METRICS, CAP_NETWORK_INFO, CAP_PROCESSES]
        if self.systemd and self.services_enabled:
            caps.append(CAP_SERVICES)
        return caps

    def _refresh_facts(self, now: float) -> None:
        self.facts = collect_facts(self.proc_root, self.sys_root, self.root, use_systemd_detect=self.live)
        self.container = detect_container(self.proc_root, self.root)
        self._layout = resolve_layout(self.proc_root, self.sys_root)
        self.systemd = systemd_running(self.root / "run")
        # Sensors rarely appear at run time; a host without them skips the hwmon scan until the next refresh.
        self._sensors = True
        self._facts_at = now

    # --------------------------------------------------------------- collect

    def collect(self) -> dict[str, Any]:
        """One snapshot: {"state": {...}, "metrics": {...}}."""
        now = time.monotonic()
        if now - self._facts_at >= FACTS_REFRESH_SECONDS:
            self._refresh_facts(now)
        if self._cpu is not None and now - self._cpu.at < MIN_CPU_WINDOW_SECONDS:
            time.sleep(MIN_CPU_WINDOW_SECONDS - (now - self._cpu.at))
        metrics: dict[str, float] = {}
        state: dict[str, Any] = {"facts": dict(self.facts)}

        state["cpu"] = cpu = self._collect_cpu()
        if "percent" in cpu:
            metrics["cpu_percent"] = cpu["percent"]
        for key, value in zip(("load_1", "load_5", "load_15"), cpu.get("load", ())):
            metrics[key] = value

        state["memory"] = memory = self._collect_memory()
        metrics["mem_used_percent"] = memory["percent"]
        metrics["mem_used_bytes"] = memory["used_bytes"]
        metrics["mem_total_bytes"] = memory["total_bytes"]
        if "swap_percent" in memory:
            metrics["swap_used_percent"] = memory["swap_percent"]

        state["disks"] = disks = self._collect_disks()
        sized = [d for d in disks if "percent" in d]
        for disk in sized:
            metrics[f"disk_used_percent[{disk['mount']}]"] = disk["percent"]
            metrics[f"disk_total_bytes[{disk['mount']}]"] = disk["total_bytes"]
            metrics[f"disk_free_bytes[{disk['mount']}]"] = disk["free_bytes"]
        headline = next((d for d in sized if d["mount"] == "/"), None) or max(
            sized, key=lambda d: d["percent"], default=None
        )
        if headline is not None:
            metrics["disk_used_percent"] = headline["percent"]

        state["disk_io"] = disk_io = self._collect_disk_io()
        for key in ("read_bytes_per_s", "write_bytes_per_s"):
            if key in disk_io:
                metrics[f"disk_{key}"] = disk_io[key]

        state["network"], net_metrics = self._collect_network()
        metrics.update(net_metrics)

        sensors, sensor_metrics = self._collect_sensors()
        if sensors:
            state["sensors"] = sensors
            metrics.update(sensor_metrics)

        if "boot_time" in self.facts:
            state["uptime_s"] = max(0, int(time.time() - self.facts["boot_time"]))
            metrics["uptime_s"] = state["uptime_s"]

        state["processes"] = processes = self._collect_processes(memory["total_bytes"])
        metrics["process_count"] = processes["count"]

        state["services"] = self._collect_services()
        return {"state": state, "metrics": metrics}

    # ------------------------------------------------------------------- cpu

    def _container_cpu(self) -> tuple[float, float | None] | None:
        """In a container with a CPU quota: (quota in cores, percent of it used since the last call)."""
        if self.container is None:
            return None
        quota = read_cpu_quota(self._layout.cpu, self._layout.cpuacct)
        # A quota above the host's core count does not bind; the host's numbers are the truth then.
        if quota is None or quota.cores > self._logical_cpus:
            self._cgroup_cpu = None
            return None
        now = time.monotonic()
        usage = quota.usage_seconds()
        previous = self._cgroup_cpu
        self._cgroup_cpu = None if usage is None else _Sample(now, (quota.usage_dir, usage))
        percent = None
        if usage is not None and previous is not None and previous.values[0] == quota.usage_dir:
            wall = now - previous.at
            used = usage - previous.values[1]
            if wall > 0 and used >= 0:
                percent = round(min(100.0, used / (wall * quota.cores) * 100), 1)
        return quota.cores, percent

    def _collect_cpu(self) -> dict[str, Any]:
        now = time.monotonic()
        per_core = psutil.cpu_times(percpu=True)
        cpu: dict[str, Any] = {"count": self._logical_cpus}
        if self._cpu is not None and per_core and len(per_core) == len(self._cpu.values):
            percents = [_cpu_percent(new, old) for new, old in zip(per_core, self._cpu.values)]
            if all(p is not None for p in percents):
                cpu["per_core_percent"] = percents
            total = _cpu_percent(_sum_times(per_core), _sum_times(self._cpu.values))
            if total is not None:
                cpu["percent"] = total
        self._cpu = _Sample(now, per_core)

        container = self._container_cpu()
        if container is not None:
            cores, percent = container
            cpu["limit_cores"] = round(cores, 3)
            # The host's busy time says nothing about the container's share of its quota.
            cpu.pop("percent", None)
            if percent is not None:
                cpu["percent"] = percent
        try:
            cpu["load"] = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            pass
        return cpu

    # ---------------------------------------------------------------- memory

    def _collect_memory(self) -> dict[str, Any]:
        vm = psutil.virtual_memory()
        swap = psutil.swap_memory()
        memory: dict[str, Any] = {
            "total_bytes": vm.total,
            "used_bytes": vm.total - vm.available,
            "available_bytes": vm.available,
            "percent": round(vm.percent, 1),
            "swap_total_bytes": swap.total,
            "swap_used_bytes": swap.used,
            "swap_percent": round(swap.percent, 1),
            "limit_source": "host",
        }
        if self.container is None:
            return memory
        limit = read_memory_limit(self._layout.memory)
        # A limit above physical RAM does not bind; the host's numbers are the truth then.
        if limit is None or limit.limit_bytes > vm.total:
            return memory
        used = min(limit.used_bytes, limit.limit_bytes)
        memory.update(
            total_bytes=limit.limit_bytes,
            used_bytes=used,
            available_bytes=limit.limit_bytes - used,
            percent=round(used / limit.limit_bytes * 100, 1) if limit.limit_bytes else 0.0,
            limit_source="cgroup",
        )
        if limit.swap_limit_bytes is not None and limit.swap_used_bytes is not None:
            swap_total = min(limit.swap_limit_bytes, swap.total)
            swap_used = min(limit.swap_used_bytes, swap_total)
            memory.update(
                swap_total_bytes=swap_total,
                swap_used_bytes=swap_used,
                swap_percent=round(swap_used / swap_total * 100, 1) if swap_total else 0.0,
            )
        return memory

    # ----------------------------------------------------------------- disks

    def _mount_table(self) -> list[Mount]:
        try:
            text = (self.proc_root / "self" / "mountinfo").read_text(errors="replace")
        except OSError as err:
            _LOGGER.debug("cannot read mountinfo: %s", err)
            return []
        if text != self._mountinfo_text:
            self._mountinfo_text = text
            self._mounts = real_mounts(parse_mountinfo(text), self.ignore_mounts)
        return self._mounts

    def _statvfs(self, mount: Mount) -> os.statvfs_result | None:
        if mount.fstype not in REMOTE_FILESYSTEMS and not mount.fstype.startswith("fuse."):
            return os.statvfs(mount.mount_point)
        # A dead NFS or SMB server can block statvfs for minutes; ask in a worker with a deadline.
        pending = self._statvfs_pending.get(mount.mount_point)
        if pending is not None and not pending.done():
            return None
        future: concurrent.futures.Future[os.statvfs_result] = concurrent.futures.Future()

        def ask(path: str = mount.mount_point) -> None:
            try:
                future.set_result(os.statvfs(path))
            except OSError as err:
                future.set_exception(err)

        # A daemon thread, not a pool: a thread stuck on a dead server must not hold up the agent's exit.
        threading.Thread(target=ask, name="roost-statvfs", daemon=True).start()
        try:
            result = future.result(timeout=STATVFS_TIMEOUT_SECONDS)
        except concurrent.futures.TimeoutError:
            self._statvfs_pending[mount.mount_point] = future
            return None
        self._statvfs_pending.pop(mount.mount_point, None)
        return result

    def _collect_disks(self) -> list[dict[str, Any]]:
        disks = []
        for mount in self._mount_table():
            entry: dict[str, Any] = {"mount": mount.mount_point, "device": mount.source, "fstype": mount.fstype}
            try:
                st = self._statvfs(mount)
            except OSError as err:
                _LOGGER.debug("statvfs %s: %s", mount.mount_point, err)
                continue
            if st is None:
                entry["error"] = "not responding"
                disks.append(entry)
                continue
            total = st.f_blocks * st.f_frsize
            if total == 0:
                continue
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            free = st.f_bavail * st.f_frsize
            # Like df: percent of the space an unprivileged user can have, so root's reserve counts as full.
            percent = used / (used + free) * 100 if used + free else 0.0
            entry.update(total_bytes=total, used_bytes=used, free_bytes=free, percent=round(percent, 1))
            disks.append(entry)
        return disks

    def disk_usage(self, mount_point: str) -> dict[str, Any] | None:
        """A fresh measurement of one of the mounts the collector reports (the disk_usage action), or None if it reports no such mount."""
        for entry in self._collect_disks():
            if entry["mount"] == mount_point:
                return entry
        return None

    def _whole_disks(self, names: frozenset[str]) -> dict[str, bool]:
        if names == self._block_names:
            return self._disks
        self._block_names = names
        disks: dict[str, bool] = {}
        block = self.sys_root / "block"
        for name in names:
            if name.startswith(NON_DISK_BLOCK_PREFIXES) or not (block / name).exists():
                continue  # partitions are not in /sys/block; loop and ram devices are not disks
            try:
                physical = not any((block / name / "slaves").iterdir())
            except OSError:
                physical = True
            disks[name] = physical
        self._disks = disks
        return disks

    def _collect_disk_io(self) -> dict[str, Any]:
        now = time.monotonic()
        counters = psutil.disk_io_counters(perdisk=True) or {}
        disks = self._whole_disks(frozenset(counters))
        current = {name: (counters[name].read_bytes, counters[name].write_bytes) for name in disks}
        previous = self._disk_io
        self._disk_io = _Sample(now, current)
        devices = []
        # Totals count physical disks only: an LVM or md device repeats the I/O of the disks under it.
        totals: list[float] | None = [0.0, 0.0] if previous is not None else None
        for name in sorted(current):
            device: dict[str, Any] = {"name": name}
            old = previous.values.get(name) if previous is not None else None
            rates = None
            if old is not None:
                read = _rate(current[name][0], old[0], now - previous.at)  # type: ignore[union-attr]
                write = _rate(current[name][1], old[1], now - previous.at)  # type: ignore[union-attr]
                if read is not None and write is not None:
                    rates = (read, write)
                    device["read_bytes_per_s"], device["write_bytes_per_s"] = rates
            if disks[name] and totals is not None:
                if rates is None:
                    totals = None
                else:
                    totals[0] += rates[0]
                    totals[1] += rates[1]
            devices.append(device)
        result: dict[str, Any] = {}
        if totals is not None:
            result["read_bytes_per_s"] = round(totals[0], 1)
            result["write_bytes_per_s"] = round(totals[1], 1)
        result["devices"] = devices
        return result

    # --------------------------------------------------------------- network

    def _refresh_interfaces(self, now: float, names: frozenset[str]) -> None:
        if names == self._if_names and now - self._ifaces_at < INTERFACES_REFRESH_SECONDS:
            return
        self._if_stats = psutil.net_if_stats()
        self._if_addrs = psutil.net_if_addrs()
        self._if_names = names
        self._ifaces_at = now

    def _is_loopback(self, name: str) -> bool:
        stats = self._if_stats.get(name)
        flags = getattr(stats, "flags", "") or ""
        return name == "lo" or "loopback" in flags.split(",")

    def _collect_network(self) -> tuple[list[dict[str, Any]], dict[str, float]]:
        now = time.monotonic()
        counters = psutil.net_io_counters(pernic=True) or {}
        self._refresh_interfaces(now, frozenset(counters))
        previous = self._net_io
        self._net_io = _Sample(now, {n: (c.bytes_recv, c.bytes_sent) for n, c in counters.items()})
        seconds = now - previous.at if previous is not None else 0.0
        interfaces = []
        metrics: dict[str, float] = {}
        rx_total = tx_total = 0.0
        totals_complete = previous is not None
        for name in sorted(counters):
            if _matches(name, self.ignore_interfaces):
                continue
            io = counters[name]
            entry: dict[str, Any] = {"name": name}
            for addr in self._if_addrs.get(name, ()):
                if addr.family == psutil.AF_LINK and addr.address:
                    entry["mac"] = addr.address
            stats = self._if_stats.get(name)
            if stats is not None:
                entry["is_up"] = stats.isup
                if stats.speed > 0:  # 0 means the driver does not say
                    entry["speed_mbps"] = stats.speed
                entry["mtu"] = stats.mtu
            entry["addresses"] = [
                {
                    "family": "ipv4" if addr.family == socket.AF_INET else "ipv6",
                    "address": addr.address,
                    **({"netmask": addr.netmask} if addr.netmask else {}),
                }
                for addr in self._if_addrs.get(name, ())
                if addr.family in (socket.AF_INET, socket.AF_INET6)
            ]
            entry["rx_bytes"] = io.bytes_recv
            entry["tx_bytes"] = io.bytes_sent
            old = previous.values.get(name) if previous is not None else None
            rx = tx = None
            if old is not None:
                rx = _rate(io.bytes_recv, old[0], seconds)
                tx = _rate(io.bytes_sent, old[1], seconds)
            if rx is not None and tx is not None:
                entry["rx_bytes_per_s"] = rx
                entry["tx_bytes_per_s"] = tx
            entry["errors"] = io.errin + io.errout
            entry["drops"] = io.dropin + io.dropout
            interfaces.append(entry)
            if self._is_loopback(name):
                continue
            if rx is None or tx is None:
                totals_complete = False
                continue
            metrics[f"net_rx_bytes_per_s[{name}]"] = rx
            metrics[f"net_tx_bytes_per_s[{name}]"] = tx
            rx_total += rx
            tx_total += tx
        if totals_complete:
            metrics["net_rx_bytes_per_s"] = round(rx_total, 1)
            metrics["net_tx_bytes_per_s"] = round(tx_total, 1)
        return interfaces, metrics

    # --------------------------------------------------------------- sensors

    def _collect_sensors(self) -> tuple[dict[str, Any], dict[str, float]]:
        if not self._sensors:
            return {}, {}
        temps = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
        fans = psutil.sensors_fans() if hasattr(psutil, "sensors_fans") else {}
        if not temps and not fans:
            self._sensors = False
            return {}, {}
        sensors: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        seen: set[str] = set()

        def key(chip: str, label: str) -> str:
            # Two chips of one driver (two NVMe drives) share a name; number the repeats.
            base = f"{chip}/{label}"
            name, n = base, 1
            while name in seen:
                n += 1
                name = f"{base}#{n}"
            seen.add(name)
            return name

        readings = []
        for chip, entries in temps.items():
            for index, reading in enumerate(entries, 1):
                if not _finite(reading.current):  # a sensor that failed to read
                    continue
                label = reading.label or f"temp{index}"
                item: dict[str, Any] = {"chip": chip, "label": label, "current_c": round(reading.current, 1)}
                if _finite(reading.high):
                    item["high_c"] = round(reading.high, 1)
                if _finite(reading.critical):
                    item["critical_c"] = round(reading.critical, 1)
                readings.append(item)
                metrics[f"temperature_c[{key(chip, label)}]"] = item["current_c"]
        if readings:
            sensors["temperatures"] = readings
            metrics["temperature_c"] = max(item["current_c"] for item in readings)
        fan_items = []
        for chip, entries in fans.items():
            for index, fan in enumerate(entries, 1):
                if not _finite(fan.current):
                    continue
                label = fan.label or f"fan{index}"
                fan_items.append({"chip": chip, "label": label, "rpm": fan.current})
                metrics[f"fan_rpm[{key(chip, label)}]"] = fan.current
        if fan_items:
            sensors["fans"] = fan_items
        return sensors, metrics

    # ------------------------------------------------------------- processes

    def _scan_processes(self) -> tuple[int, list[tuple[_TrackedProcess, float | None, int]]]:
        """Read CPU time and RSS of every process, keeping Process objects from one scan to the next.

        Returns the number of live processes and (process, CPU percent since the
        last scan or None when not measured yet, rss bytes) rows for those we may
        read. CPU percent is of one core, as top shows it: a busy process with
        two threads reads 200.
        """
        # One read per process (stat) and one clock for the whole scan: cheaper than psutil's own
        # cpu_percent loop, which reads stat and statm through a Process object per process.
        now = time.monotonic()
        elapsed = now - self._scan_at if self._scan_at is not None else None
        self._scan_at = now
        rows = []
        count = 0
        tracked: dict[int, _TrackedProcess] = {}
        for pid in psutil.pids():
            try:
                busy, rss, start = _read_stat(pid)
            except PermissionError:
                count += 1
                continue
            except (OSError, ValueError, IndexError):  # exited since the listing, or a stat line cut short as it exited
                continue
            count += 1
            entry = self._processes.get(pid)
            if entry is None or entry.start != start:
                entry = _TrackedProcess(pid, start)
            cpu = None
            if entry.cpu_seconds is not None and elapsed:
                delta = busy - entry.cpu_seconds
                if delta >= 0:
                    cpu = round(delta / elapsed * 100, 1)
                else:  # less CPU time than last scan: the pid now belongs to another process
                    entry = _TrackedProcess(pid, start)
            entry.cpu_seconds = busy
            tracked[pid] = entry
            rows.append((entry, cpu, rss))
        self._processes = tracked
        return count, rows

    def _describe_process(
        self, entry: _TrackedProcess, cpu: float | None, rss: int, mem_total: int
    ) -> dict[str, Any] | None:
        """The dashboard row for one process; None when it exited meanwhile."""
        item: dict[str, Any] = {"pid": entry.pid}
        try:
            if entry.process is None:
                entry.process = psutil.Process(entry.pid)
            proc = entry.process
            with proc.oneshot():
                name = _allowed(proc.name)
                if entry.username is None:
                    entry.username = _allowed(proc.username)
                cmdline = _allowed(proc.cmdline)
        except psutil.NoSuchProcess:  # includes zombies
            return None
        if name is not None:
            item["name"] = name
        if entry.username is not None:
            item["username"] = entry.username
        if cpu is not None:
            item["cpu_percent"] = cpu
        item["mem_bytes"] = rss
        if mem_total:
            item["mem_percent"] = round(rss / mem_total * 100, 2)
        if cmdline is not None:
            item["cmdline"] = " ".join(cmdline)[:CMDLINE_MAX_CHARS]
        return item

    def _collect_processes(self, mem_total: int) -> dict[str, Any]:
        if self.top_processes == 0:
            return {"count": len(psutil.pids())}
        count, rows = self._scan_processes()
        n = self.top_processes
        by_cpu = sorted((r for r in rows if r[1] is not None), key=lambda r: (r[1], r[2]), reverse=True)
        by_mem = sorted(rows, key=lambda r: r[2], reverse=True)

        described: dict[int, dict[str, Any] | None] = {}

        def describe(selected: Iterable[tuple[_TrackedProcess, float | None, int]]) -> list[dict[str, Any]]:
            items = []
            for entry, cpu, rss in selected:
                pid = entry.pid
                if pid not in described:  # the two lists mostly share their processes
                    described[pid] = self._describe_process(entry, cpu, rss, mem_total)
                item = described[pid]
                if item is not None:
                    items.append(item)
                if len(items) == n:
                    break
            return items

        return {"count": count, "top_cpu": describe(by_cpu), "top_memory": describe(by_mem)}

    # -------------------------------------------------------------- services

    def _collect_services(self) -> dict[str, Any]:
        if not self.services_enabled:
            return {"available": False, "reason": "service listing is off (integrations.linux_host.services = false)"}
        if not self.systemd:
            return {"available": False, "reason": NOT_RUNNING_REASON}
        now = time.monotonic()
        if self._services is None or now - self._services_at >= SERVICES_REFRESH_SECONDS:
            self._services = list_services()
            self._services_at = now
        return self._services
