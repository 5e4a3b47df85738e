"""Capabilities: dotted names the hub grants per node, limited on the agent by its owner's ceiling."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import voluptuous as vol

MODE_READ_ONLY = "read-only"
MODE_EXECUTE = "execute"
CAPABILITY_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_PATTERN_RE = re.compile(r"^[a-z0-9_.*?\[\]-]+$")
# A capability is read-only when one of its segments says so
# (host.metrics.read, proxmox.readonly, filesystem.read.scoped).
READ_SEGMENTS = frozenset({"read", "readonly"})

# Capabilities Roost itself knows, with what each allows.
KNOWN: dict[str, str] = {
    "host.metrics.read": "read CPU, memory, disk, sensor, uptime and network throughput metrics and host facts",
    "network.info.read": "read network interfaces, their addresses and MACs",
    "host.processes.read": "read the process list (top processes with their command lines and users)",
    "services.read": "read systemd service states",
    "network.probe.read": "read whether the TCP targets this host's owner configured answer, and how fast",
    "logs.read": "read logs from configured sources",
    "filesystem.read.scoped": "list and read files under configured roots",
    "docker.read": "read containers, images and volumes",
    "docker.manage": "start, stop and restart containers",
    "proxmox.readonly": "read the Proxmox cluster, guests and backups",
    "proxmox.manage": "run Proxmox guest lifecycle actions",
    "process.execute.limited": "run commands named in the agent's allowlist",
    "services.manage": "start, stop and restart systemd services",
    "network.wol.send": "send Wake-on-LAN packets",
    "agent.update": "update the agent to a newer release signed with the operator key",
    "backup.read": "read backup repositories, their snapshots and the results of backups, checks and restore tests",
    "backup.run": "run backups, repository checks, restore tests into agent-made scratch space, and signed retention",
    "backup.restore": "restore a snapshot to a new path (over an existing one only with an operator signature)",
    "agent.update.read": "read the agent's self-update state: whether its last update was rolled back, and why",
    "storage.read": "read disk SMART health, ZFS pools, md arrays, btrfs, LVM thin pools and the expected storage targets",
    "storage.mount": "mount a USB drive listed in the node's storage manifest at its listed mount point",
}


def is_capability(name: Any) -> bool:
    return isinstance(name, str) and len(name) <= 100 and bool(CAPABILITY_RE.match(name))


def is_read_only(name: str) -> bool:
    return any(part in READ_SEGMENTS for part in name.split("."))


def _pattern(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 100 or not _PATTERN_RE.match(value):
        raise vol.Invalid("expected a capability name or glob such as docker.* or host.metrics.read")
    return value


CEILING_SCHEMA = vol.Schema(
    {
        vol.Optional("mode", default=MODE_READ_ONLY): vol.In([MODE_READ_ONLY, MODE_EXECUTE], msg="must be read-only or execute"),
        vol.Optional("allow", default=lambda: ["*"]): [_pattern],
        vol.Optional("deny", default=list): [_pattern],
    }
)


@dataclass(frozen=True)
class Ceiling:
    """What the host owner allows on this agent, whatever the hub grants."""

    mode: str = MODE_READ_ONLY
    allow: tuple[str, ...] = ("*",)
    deny: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Ceiling:
        clean = CEILING_SCHEMA(dict(data or {}))
        return cls(mode=clean["mode"], allow=tuple(clean["allow"]), deny=tuple(clean["deny"]))

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "allow": list(self.allow), "deny": list(self.deny)}

    def permits(self, capability: str) -> bool:
        if not is_capability(capability):
            return False
        if any(fnmatch.fnmatchcase(capability, p) for p in self.deny):
            return False
        if not any(fnmatch.fnmatchcase(capability, p) for p in self.allow):
            return False
        return self.mode == MODE_EXECUTE or is_read_only(capability)


    def allowing(self, capability: str) -> Ceiling:
        """The smallest change to this ceiling that permits ``capability`` (itself when it already does)."""
        deny = tuple(p for p in self.deny if not fnmatch.fnmatchcase(capability, p))
        allow = self.allow if any(fnmatch.fnmatchcase(capability, p) for p in self.allow) else (*self.allow, capability)
        mode = self.mode if self.mode == MODE_EXECUTE or is_read_only(capability) else MODE_EXECUTE
        return Ceiling(mode=mode, allow=allow, deny=deny)

    def as_toml(self) -> str:
        """The ``[agent.ceiling]`` table of an agent's config that sets exactly this ceiling."""
        import json

        return (
            "[agent.ceiling]\n"
            f"mode = {json.dumps(self.mode)}\n"
            f"allow = [{', '.join(json.dumps(p) for p in self.allow)}]\n"
            f"deny = [{', '.join(json.dumps(p) for p in self.deny)}]\n"
        )


def effective(grants: Iterable[str], ceiling: Ceiling) -> list[str]:
    """What may run: the grant intersected with the ceiling."""
    return sorted({c for c in grants if ceiling.permits(c)})


def is_known(name: Any) -> bool:
    """Defined by one of Roost's integrations: a name a node merely claims is not."""
    return isinstance(name, str) and name in KNOWN


def default_grants(offered: Iterable[str]) -> list[str]:
    """What an approval grants unless the admin chooses otherwise: the read-only part of what is offered that Roost knows.

    A node chooses what it claims to offer; a made-up name such as
    ``secrets.read`` is shown to the admin but never granted without them.
    """
    return sorted({c for c in offered if is_known(c) and is_read_only(c)})


UNKNOWN_DESCRIPTION = "not defined by any Roost integration: claimed by the node, granted only if an admin chooses it"


def describe(name: str) -> str:
    return KNOWN.get(name, UNKNOWN_DESCRIPTION)
