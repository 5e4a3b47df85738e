"""Whether this process may read SMART data, and what to tell the host owner when it may not."""

from __future__ import annotations

import os
from pathlib import Path

CAP_SYS_RAWIO = 17
CAP_SYS_ADMIN = 21

MISSING_RAWIO = (
    "smartctl needs CAP_SYS_RAWIO (and CAP_SYS_ADMIN for NVMe) and access to the disks: run the agent as root, or add a drop-in "
    "to its systemd unit (systemctl edit roost-agent) with [Service] AmbientCapabilities=CAP_SYS_RAWIO CAP_SYS_ADMIN, "
    "CapabilityBoundingSet=CAP_SYS_RAWIO CAP_SYS_ADMIN, PrivateDevices=no, DeviceAllow=block-sd rw, DeviceAllow=char-nvme r, "
    "SupplementaryGroups=disk (docs/integrations/storage.md, Privileges)"
)
IN_CONTAINER = (
    "this agent runs in a container: pass the disks in (docker run --device /dev/sda --device /dev/nvme0 ... "
    "--cap-add SYS_RAWIO --cap-add SYS_ADMIN) or run the agent on the host to see its SMART data"
)


def effective_capabilities(status: Path = Path("/proc/self/status")) -> int | None:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def has_rawio(status: Path = Path("/proc/self/status")) -> bool:
    caps = effective_capabilities(status)
    if caps is None:
        return os.geteuid() == 0
    return bool(caps & (1 << CAP_SYS_RAWIO))


def in_container(root: Path = Path("/")) -> bool:
    if (root / ".dockerenv").exists() or (root / "run/.containerenv").exists():
        return True
    try:
        return any(word in (root / "proc/1/cgroup").read_text() for word in ("/docker/", "/lxc/", "kubepods", "libpod"))
    except OSError:
        return False


def permission_problem(messages: list[str]) -> bool:
    """smartctl's words for a device it was not allowed to open."""
    return any(("Permission denied" in m or "Operation not permitted" in m) for m in messages)
