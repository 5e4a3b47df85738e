"""Constants of the linux_host integration: config keys, defaults, refresh periods and metric metadata."""

from __future__ import annotations

from typing import Final

from roost.core.reads import Reads

DOMAIN: Final = "linux_host"

CONF_TOP_PROCESSES: Final = "top_processes"
CONF_IGNORE_MOUNTS: Final = "ignore_mounts"
CONF_IGNORE_INTERFACES: Final = "ignore_interfaces"
CONF_SERVICES: Final = "services"
# Hidden: where procfs and sysfs live. The parent of proc_root also stands in
# for "/" when looking for /.dockerenv, /run/.containerenv, /run/systemd/system
# and /etc/os-release, so a tree tmp/{proc,sys,run,etc} can play a whole host
# in tests (or a host filesystem mounted at /host, as node_exporter does).
CONF_PROC_ROOT: Final = "proc_root"
CONF_SYS_ROOT: Final = "sys_root"

DEFAULT_TOP_PROCESSES: Final = 10
MAX_TOP_PROCESSES: Final = 50
DEFAULT_IGNORE_MOUNTS: Final[tuple[str, ...]] = ()
DEFAULT_IGNORE_INTERFACES: Final[tuple[str, ...]] = ("lo",)
DEFAULT_SERVICES: Final = True
DEFAULT_PROC_ROOT: Final = "/proc"
DEFAULT_SYS_ROOT: Final = "/sys"

# How often slow-changing things are read again, in seconds.
FACTS_REFRESH_SECONDS: Final = 3600.0
SERVICES_REFRESH_SECONDS: Final = 60.0
INTERFACES_REFRESH_SECONDS: Final = 60.0
# A CPU percentage over a shorter window is noise; the first cycle after setup
# waits out the remainder once.
MIN_CPU_WINDOW_SECONDS: Final = 0.1

SYSTEMCTL_TIMEOUT_SECONDS: Final = 5.0
DETECT_VIRT_TIMEOUT_SECONDS: Final = 2.0
CMDLINE_MAX_CHARS: Final = 200

# Filesystems that hold no user data. "overlay" is here because Docker's
# per-container overlays would repeat on a Docker host; the collector keeps
# "/" whatever its type, so a container still reports its root.
PSEUDO_FILESYSTEMS: Final = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fuse.gvfsd-fuse",
        "fuse.lxcfs",
        "fuse.portal",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nfsd",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",  # snap packages and live images: always 100 % full, never user data
        "sysfs",
        "tmpfs",
        "tracefs",
    }
)
# Filesystems whose statvfs can hang when a server goes away; the collector
# asks them in a worker thread with a deadline.
REMOTE_FILESYSTEMS: Final = frozenset(
    {"9p", "afs", "ceph", "cifs", "glusterfs", "nfs", "nfs4", "smb3", "smbfs", "sshfs"}
)
STATVFS_TIMEOUT_SECONDS: Final = 1.0
# Block devices whose I/O is not disk I/O.
NON_DISK_BLOCK_PREFIXES: Final = ("loop", "ram", "zram", "fd", "sr")

CAP_HOST_METRICS: Final = "host.metrics.read"
CAP_NETWORK_INFO: Final = "network.info.read"
CAP_SERVICES: Final = "services.read"
CAP_PROCESSES: Final = "host.processes.read"

# The capability each part of a report needs before it leaves the agent. The
# MACs among the facts are network identity; every metric (network throughput
# included) is a host metric.
READS: Final = Reads(
    state={
        "facts": CAP_HOST_METRICS,
        "facts.macs": CAP_NETWORK_INFO,
        "cpu": CAP_HOST_METRICS,
        "memory": CAP_HOST_METRICS,
        "disks": CAP_HOST_METRICS,
        "disk_io": CAP_HOST_METRICS,
        "sensors": CAP_HOST_METRICS,
        "uptime_s": CAP_HOST_METRICS,
        "network": CAP_NETWORK_INFO,
        "processes": CAP_PROCESSES,
        "services": CAP_SERVICES,
    },
    metrics={"*": CAP_HOST_METRICS},
)

UNIT_PERCENT: Final = "percent"
UNIT_BYTES: Final = "bytes"
UNIT_BYTES_PER_SECOND: Final = "bytes_per_second"
UNIT_SECONDS: Final = "seconds"
UNIT_CELSIUS: Final = "celsius"
UNIT_RPM: Final = "rpm"
UNIT_COUNT: Final = "count"
UNIT_NONE: Final = ""

# Metric metadata, keyed by metric name without its [label]; roost_metric_fields
# returns it as is and the dashboard labels charts with it.
METRIC_FIELDS: Final[dict[str, dict[str, str]]] = {
    "cpu_percent": {
        "unit": UNIT_PERCENT,
        "description": "CPU busy time over the last interval, of all cores or of the container's CPU quota.",
        "label": "CPU",
    },
    "load_1": {"unit": UNIT_NONE, "description": "Load average over 1 minute.", "label": "Load 1m"},
    "load_5": {"unit": UNIT_NONE, "description": "Load average over 5 minutes.", "label": "Load 5m"},
    "load_15": {"unit": UNIT_NONE, "description": "Load average over 15 minutes.", "label": "Load 15m"},
    "mem_used_percent": {
        "unit": UNIT_PERCENT,
        "description": "Memory in use, of the host's RAM or of the container's memory limit.",
        "label": "Memory",
    },
    "mem_used_bytes": {
        "unit": UNIT_BYTES,
        "description": "Memory in use, not counting reclaimable page cache.",
        "label": "Memory used",
    },
    "mem_total_bytes": {
        "unit": UNIT_BYTES,
        "description": "Memory this node can use: the host's RAM or the container's memory limit.",
        "label": "Memory total",
    },
    "swap_used_percent": {"unit": UNIT_PERCENT, "description": "Swap space in use.", "label": "Swap"},
    "disk_used_percent": {
        "label_name": "mountpoint",
        "unit": UNIT_PERCENT,
        "description": "Space used on a mounted filesystem; without a label, the root filesystem (or the fullest one).",
        "label": "Disk",
    },
    "disk_total_bytes": {
        "label_name": "mountpoint",
        "unit": UNIT_BYTES,
        "description": "Size of a mounted filesystem, labelled by its mount point.",
        "label": "Disk size",
    },
    "disk_free_bytes": {
        "label_name": "mountpoint",
        "unit": UNIT_BYTES,
        "description": "Space an unprivileged user can still write on a mounted filesystem (as df shows it).",
        "label": "Disk free",
    },
    "disk_read_bytes_per_s": {
        "unit": UNIT_BYTES_PER_SECOND,
        "description": "Bytes read from physical disks per second.",
        "label": "Disk read",
    },
    "disk_write_bytes_per_s": {
        "unit": UNIT_BYTES_PER_SECOND,
        "description": "Bytes written to physical disks per second.",
        "label": "Disk write",
    },
    "net_rx_bytes_per_s": {
        "label_name": "device",
        "unit": UNIT_BYTES_PER_SECOND,
        "description": "Bytes received per second; without a label, summed over non-loopback interfaces.",
        "label": "Net in",
    },
    "net_tx_bytes_per_s": {
        "label_name": "device",
        "unit": UNIT_BYTES_PER_SECOND,
        "description": "Bytes sent per second; without a label, summed over non-loopback interfaces.",
        "label": "Net out",
    },
    "temperature_c": {
        "label_name": "sensor",
        "unit": UNIT_CELSIUS,
        "description": "Temperature of a hardware sensor, labelled chip/sensor; without a label, the hottest sensor.",
        "label": "Temperature",
    },
    "fan_rpm": {"label_name": "sensor", "unit": UNIT_RPM, "description": "Fan speed, labelled chip/fan.", "label": "Fan"},
    "uptime_s": {"unit": UNIT_SECONDS, "description": "Time since the host booted.", "label": "Uptime"},
    "process_count": {"prometheus_name": "processes", "unit": UNIT_COUNT, "description": "Number of processes.", "label": "Processes"},
}
