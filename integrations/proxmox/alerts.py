"""The proxmox integration's alert rule kinds: the cluster lost quorum, a cluster node is down, a guest's backup is too old.

They read the cluster state the agent reports (quorum, members, guests with
their newest successful backup); each finding names what it is about, so one
rule covers every node and guest of a cluster.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from roost.core.hub_integration import AlertFinding, AlertRuleKind, as_dict, as_list

from .const import DOMAIN

DAY = 86400.0
QUORUM_SCHEMA = vol.Schema({})
NODE_DOWN_SCHEMA = vol.Schema({vol.Optional("nodes", default="*"): vol.All(str, vol.Length(max=200))})
BACKUP_AGE_SCHEMA = vol.Schema(
    {
        vol.Optional("days", default=7.0): vol.All(vol.Coerce(float), vol.Range(min=0.1, max=3650, msg="must be between 0.1 and 3650 days")),
        vol.Optional("guests", default="*"): vol.All(str, vol.Length(max=200)),
        # Guests no backup job covers are reported too unless this is false.
        vol.Optional("include_uncovered", default=True): bool,
    }
)


def _state(node: Mapping[str, Any]) -> dict[str, Any]:
    return as_dict(as_dict(node.get("state")).get(DOMAIN))


def quorum_lost(settings: Mapping[str, Any], node: Mapping[str, Any]) -> AlertFinding | None:
    cluster = as_dict(_state(node).get("cluster"))
    if cluster.get("quorate") is not False:
        return None
    name = cluster.get("name") or "the cluster"
    online, total = cluster.get("nodes_online"), cluster.get("nodes_total")
    members = f" ({online} of {total} nodes online)" if isinstance(online, int) and isinstance(total, int) else ""
    return AlertFinding(f"Proxmox cluster {name} has lost quorum{members}: /etc/pve is read-only", {"cluster": str(cluster.get("name") or "")})


def node_down(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
    found = []
    for member in as_list(_state(node).get("nodes")):
        name = str(member.get("name") or "")
        if member.get("status") in ("offline", "unreachable") and fnmatch.fnmatchcase(name, settings.get("nodes") or "*"):
            found.append(AlertFinding(f"Proxmox node {name} is {member['status']}", {"pve_node": name}))
    return found


def backup_age(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
    state = _state(node)
    now = node.get("collected_at") or time.time()
    limit = float(settings["days"]) * DAY
    found = []
    for guest in as_list(state.get("guests")):
        vmid = guest.get("vmid")
        label = f"{guest.get('name') or vmid}"
        backup = as_dict(guest.get("backup"))
        if vmid is None or backup.get("excluded") or not fnmatch.fnmatchcase(label, settings.get("guests") or "*"):
            continue
        if backup.get("in_job") is False and not settings.get("include_uncovered", True):
            continue
        last = backup.get("last_ok_at")
        if not isinstance(last, (int, float)):
            if backup:
                found.append(AlertFinding(f"guest {label} ({vmid}) has no successful backup", {"vmid": str(vmid), "guest": str(guest.get("name") or "")}))
            continue
        age = now - last
        if age > limit:
            found.append(AlertFinding(f"guest {label} ({vmid}): newest backup is {age / DAY:.1f} days old (limit {settings['days']:g})", {"vmid": str(vmid), "guest": str(guest.get("name") or "")}, value=round(age / DAY, 2)))
    return found


def rule_kinds() -> list[AlertRuleKind]:
    return [
        AlertRuleKind("proxmox.quorum_lost", "the Proxmox cluster lost quorum (/etc/pve read-only)", QUORUM_SCHEMA, quorum_lost),
        AlertRuleKind("proxmox.node_down", "a Proxmox cluster node is offline or unreachable", NODE_DOWN_SCHEMA, node_down),
        AlertRuleKind("proxmox.backup_age", "a guest's newest successful backup is older than N days", BACKUP_AGE_SCHEMA, backup_age),
    ]
