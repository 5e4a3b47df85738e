"""The docker integration's alert rule kinds: a container unhealthy, restart-looping, or exited when nobody asked it to.

Each handler reads the node's docker state as the hub holds it (the
containers and the events the agent's tracker found) and names each
container it finds wrong, so one rule covers every container of a host.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from roost.core.hub_integration import AlertFinding, AlertRuleKind, as_dict, as_list

from .const import DOMAIN, EVENT_EXITED, EVENT_RESTART_LOOP, RESTART_LOOP_WINDOW_SECONDS

_CONTAINERS = vol.All(str, vol.Length(max=200))
UNHEALTHY_SCHEMA = vol.Schema({vol.Optional("containers", default="*"): _CONTAINERS})
EVENT_SCHEMA = vol.Schema(
    {
        vol.Optional("containers", default="*"): _CONTAINERS,
        # How long after the agent saw it an event keeps the alert up (the alert clears after).
        vol.Optional("window", default=RESTART_LOOP_WINDOW_SECONDS * 2): vol.All(vol.Coerce(float), vol.Range(min=60, max=86400)),
    }
)


def _state(node: Mapping[str, Any]) -> dict[str, Any]:
    return as_dict(as_dict(node.get("state")).get(DOMAIN))


def _wanted(settings: Mapping[str, Any], name: str) -> bool:
    return fnmatch.fnmatchcase(name, str(settings.get("containers") or "*"))


def unhealthy(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
    found = []
    for c in as_list(_state(node).get("containers")):
        name = str(c.get("name") or c.get("short_id") or "")
        if c.get("health") == "unhealthy" and c.get("state") == "running" and _wanted(settings, name):
            streak = c.get("health_failing_streak")
            extra = f" ({streak} failed checks in a row)" if isinstance(streak, int) and streak else ""
            found.append(AlertFinding(f"container {name} is unhealthy{extra}", {"container": name}))
    return found


def _recent_events(settings: Mapping[str, Any], node: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The newest event of this kind per container within the window before the node's last report."""
    state = _state(node)
    now = node.get("collected_at") or 0.0
    newest: dict[str, dict[str, Any]] = {}
    for event in as_list(state.get("events")):
        at = event.get("at")
        name = str(event.get("container") or "")
        if event.get("type") != kind or not isinstance(at, (int, float)) or at < now - float(settings["window"]) or not _wanted(settings, name):
            continue
        if name not in newest or at > newest[name]["at"]:
            newest[name] = event
    return newest


def restart_loop(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
    running = {str(c.get("name")): c for c in as_list(_state(node).get("containers"))}
    found = []
    for name, event in sorted(_recent_events(settings, node, EVENT_RESTART_LOOP).items()):
        count = running.get(name, {}).get("restart_count")
        found.append(AlertFinding(f"container {name} is restart-looping: {event.get('detail') or 'restarting again and again'}", {"container": name}, value=float(count) if isinstance(count, int) else None))
    # A container docker itself shows as restarting right now counts too.
    for name, c in sorted(running.items()):
        if c.get("state") == "restarting" and name not in {f.labels["container"] for f in found} and _wanted(settings, name):
            found.append(AlertFinding(f"container {name} is restarting (restart count {c.get('restart_count', '?')})", {"container": name}))
    return found


def unexpected_exit(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
    containers = {str(c.get("name")): c for c in as_list(_state(node).get("containers"))}
    found = []
    for name, event in sorted(_recent_events(settings, node, EVENT_EXITED).items()):
        if containers.get(name, {}).get("state") == "running":
            continue  # back up since (a restart policy brought it back)
        found.append(AlertFinding(f"container {name} exited unexpectedly: {event.get('detail') or 'non-zero exit'}", {"container": name}))
    return found


def rule_kinds() -> list[AlertRuleKind]:
    return [
        AlertRuleKind("docker.container_unhealthy", "a running container's health check is failing", UNHEALTHY_SCHEMA, unhealthy),
        AlertRuleKind("docker.restart_loop", "a container keeps restarting (several restarts within a few minutes)", EVENT_SCHEMA, restart_loop),
        AlertRuleKind("docker.unexpected_exit", "a container exited with an error or was OOM-killed, and nobody stopped it", EVENT_SCHEMA, unexpected_exit),
    ]
