"""The ArchNest Docker push report (camelCase, one host per report): its schema, and both ways to Roost's docker state.

An ArchNest-style bash agent (docker ps/inspect/stats, jq, curl) POSTs one
report per host to ``/api/agents/docker/report``. The hub checks it here,
turns it into the same docker state the Roost agent collects (so the
Containers page, the node page and the metrics treat it like any other
Docker host), masks secrets a second time, and serves it back in the
report's own shape on the ArchNest read endpoints. This module never
imports the docker SDK, so the hub needs none.
"""

from __future__ import annotations

import math
import re
import shlex
from datetime import datetime, timezone
from typing import Any, Mapping

import voluptuous as vol

from .collector import split_image
from .push import MAX_CONTAINERS, MAX_LIST, MAX_NAME, MAX_TEXT

HOST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
STATES = ("running", "exited", "paused", "created", "restarting", "dead")
HEALTHS = ("healthy", "unhealthy", "starting", "none")
PROTOCOLS = ("tcp", "udp", "sctp")
# ArchNest stats field -> Roost's per-container stats key.
STATS_FIELDS = {
    "cpuPercent": "cpu_percent",
    "memUsage": "mem_used_bytes",
    "memLimit": "mem_limit_bytes",
    "netRxBytes": "net_rx_bytes",
    "netTxBytes": "net_tx_bytes",
    "blockReadBytes": "block_read_bytes",
    "blockWriteBytes": "block_write_bytes",
}
# Byte counters whose rate between two reports becomes a chartable series.
RATE_FIELDS = {
    "net_rx_bytes": "net_rx_bytes_per_s",
    "net_tx_bytes": "net_tx_bytes_per_s",
    "block_read_bytes": "block_read_bytes_per_s",
    "block_write_bytes": "block_write_bytes_per_s",
}


def _number(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise vol.Invalid("expected a finite number")
    return value


def _counter(value: Any) -> float | int:
    value = _number(value)
    if value < 0:
        raise vol.Invalid("must not be negative")
    return value


def _text(limit: int = MAX_TEXT) -> Any:
    return vol.All(str, vol.Length(max=limit, msg=f"longer than {limit} characters"))


def parse_iso(value: Any) -> float | None:
    """An ISO 8601 time ("2026-06-20T19:30:00Z", Docker's nanosecond form too) as unix seconds; None for Docker's zero time."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise vol.Invalid("expected an ISO 8601 time such as 2026-06-20T19:30:00Z")
    text = value.strip()
    # Docker writes nanoseconds; Python reads at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise vol.Invalid("expected an ISO 8601 time such as 2026-06-20T19:30:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    ts = moment.timestamp()
    return round(ts, 3) if ts > 0 else None


def iso(ts: float | None) -> str | None:
    """Unix seconds as the report's ISO form, in UTC with a Z."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    text = moment.isoformat(timespec="milliseconds" if ts % 1 else "seconds")
    return text.replace("+00:00", "Z")


_PORT = vol.Schema(
    {
        vol.Optional("hostIp"): vol.Any(None, _text(64)),
        vol.Optional("hostPort"): vol.Any(None, vol.All(int, vol.Range(min=0, max=65535))),
        vol.Required("containerPort"): vol.All(int, vol.Range(min=0, max=65535)),
        vol.Optional("proto", default="tcp"): vol.In(PROTOCOLS, msg=f"must be one of {', '.join(PROTOCOLS)}"),
    },
    extra=vol.ALLOW_EXTRA,
)
_NETWORK = vol.Schema({vol.Required("name"): _text(MAX_NAME), vol.Optional("ip"): vol.Any(None, _text(64))}, extra=vol.ALLOW_EXTRA)
_MOUNT = vol.Schema(
    {
        vol.Optional("type"): vol.Any(None, _text(32)),
        vol.Optional("source"): vol.Any(None, _text()),
        vol.Required("destination"): _text(),
        vol.Optional("rw"): bool,
    },
    extra=vol.ALLOW_EXTRA,
)
_ENV = vol.Schema({vol.Required("key"): _text(MAX_NAME), vol.Optional("value"): vol.Any(None, _text())}, extra=vol.ALLOW_EXTRA)
_STATS = vol.Schema({vol.Optional(k): vol.Any(None, _counter) for k in STATS_FIELDS}, extra=vol.ALLOW_EXTRA)
CONTAINER_SCHEMA = vol.Schema(
    {
        vol.Required("id"): vol.All(_text(128), vol.Length(min=1, msg="must not be empty")),
        vol.Required("name"): vol.All(_text(MAX_NAME), vol.Length(min=1, msg="must not be empty")),
        vol.Required("state"): vol.In(STATES, msg=f"must be one of {', '.join(STATES)}"),
        vol.Optional("image"): vol.Any(None, _text()),
        vol.Optional("imageId"): vol.Any(None, _text(128)),
        vol.Optional("status"): vol.Any(None, _text()),
        vol.Optional("createdAt"): parse_iso,
        vol.Optional("startedAt"): parse_iso,
        vol.Optional("restartCount"): vol.All(int, vol.Range(min=0)),
        vol.Optional("restartPolicy"): vol.Any(None, _text(64)),
        vol.Optional("health", default="none"): vol.Any(None, vol.In(HEALTHS, msg=f"must be one of {', '.join(HEALTHS)}")),
        vol.Optional("ports", default=list): vol.All([_PORT], vol.Length(max=MAX_LIST)),
        vol.Optional("networks", default=list): vol.All([_NETWORK], vol.Length(max=100)),
        vol.Optional("mounts", default=list): vol.All([_MOUNT], vol.Length(max=MAX_LIST)),
        vol.Optional("env", default=list): vol.All([_ENV], vol.Length(max=MAX_LIST)),
        vol.Optional("command"): vol.Any(None, _text()),
        vol.Optional("labels", default=dict): vol.All({_text(MAX_NAME): vol.Any(None, _text())}, vol.Length(max=MAX_LIST)),
        vol.Optional("stats"): vol.Any(None, _STATS),
    },
    extra=vol.ALLOW_EXTRA,
)
REPORT_SCHEMA = vol.Schema(
    {
        vol.Required("hostId"): vol.All(str, vol.Match(HOST_ID_RE, msg="must be 1 to 128 of A-Z a-z 0-9 . _ -")),
        vol.Optional("hostname"): vol.Any(None, _text(MAX_NAME)),
        vol.Optional("agentVersion"): vol.Any(None, _text(64)),
        vol.Optional("reportedAt"): parse_iso,
        vol.Required("containers"): vol.All([CONTAINER_SCHEMA], vol.Length(max=MAX_CONTAINERS, msg=f"at most {MAX_CONTAINERS} containers")),
    },
    extra=vol.ALLOW_EXTRA,
)


def _argv(command: str | None) -> list[str]:
    if not command:
        return []
    try:
        return shlex.split(command)
    except ValueError:
        # Unbalanced quotes: keep the text whole rather than guess.
        return [command]


def to_state(report: Mapping[str, Any], previous: Mapping[str, Any] | None = None, elapsed: float | None = None) -> dict[str, Any]:
    """The docker state (as the agent's collector shapes it) of a checked report.

    ``previous`` is the state of the host's last report and ``elapsed`` the
    seconds between the two: byte counters that grew become the per-second
    rates the dashboard charts, as the agent computes them between samples.
    The result still has to go through ``push.clean_state`` (masking again).
    """
    before = {c.get("id"): c.get("stats") or {} for c in (previous or {}).get("containers", ())}
    containers = []
    for c in report["containers"]:
        image = c.get("image") or ""
        name, tag = split_image(image)
        labels = c.get("labels") or {}
        stats: dict[str, Any] = {}
        for field, key in STATS_FIELDS.items():
            value = (c.get("stats") or {}).get(field)
            if value is not None:
                stats[key] = value
        if stats.get("mem_limit_bytes") and "mem_used_bytes" in stats:
            stats["mem_percent"] = round(stats["mem_used_bytes"] / stats["mem_limit_bytes"] * 100, 2)
        old = before.get(c["id"])
        if old and elapsed and elapsed > 0:
            for counter, rate in RATE_FIELDS.items():
                if counter in stats and counter in old and stats[counter] >= old[counter]:
                    stats[rate] = round((stats[counter] - old[counter]) / elapsed, 1)
        container = {
            "id": c["id"],
            "short_id": c["id"][:12],
            "name": c["name"],
            "image": image,
            "image_name": name,
            "image_tag": tag,
            "image_id": c.get("imageId") or "",
            "state": c["state"],
            "status": c.get("status") or "",
            "health": None if c.get("health") in (None, "none") else c["health"],
            "created": c.get("createdAt"),
            "started_at": c.get("startedAt"),
            "restart_count": c.get("restartCount", 0),
            "restart_policy": c.get("restartPolicy") or "no",
            "ports": [
                {"host_ip": p.get("hostIp") or None, "host_port": p.get("hostPort"), "container_port": p["containerPort"], "protocol": p["proto"]}
                for p in c["ports"]
            ],
            "networks": [{"name": n["name"], "ip": n.get("ip") or None} for n in c["networks"]],
            "mounts": [
                {"type": m.get("type"), "source": m.get("source"), "destination": m["destination"], "rw": bool(m.get("rw", True))}
                for m in c["mounts"]
            ],
            "env": [{"key": e["key"], "value": e.get("value")} for e in c["env"]],
            "command": _argv(c.get("command")),
            "labels": labels,
            "compose_project": labels.get("com.docker.compose.project") or None,
            "compose_service": labels.get("com.docker.compose.service") or None,
        }
        if stats:
            container["stats"] = stats
        containers.append(container)
    return {"containers": containers, "engine": {"kind": "docker", "source": "archnest", "agent_version": report.get("agentVersion")}}


def to_report_container(container: Mapping[str, Any]) -> dict[str, Any]:
    """One container of a stored docker state in the report's own shape (what the read endpoints serve)."""
    stats = container.get("stats") or {}
    out: dict[str, Any] = {
        "id": container.get("id") or container.get("name"),
        "name": container.get("name"),
        "image": container.get("image"),
        "imageId": container.get("image_id") or None,
        "state": container.get("state"),
        "status": container.get("status"),
        "createdAt": iso(container.get("created")),
        "startedAt": iso(container.get("started_at")),
        "restartCount": container.get("restart_count"),
        "restartPolicy": container.get("restart_policy"),
        "health": container.get("health") or "none",
        "ports": [
            {"hostIp": p.get("host_ip"), "hostPort": p.get("host_port"), "containerPort": p.get("container_port"), "proto": p.get("protocol")}
            for p in container.get("ports") or ()
        ],
        "networks": [{"name": n.get("name"), "ip": n.get("ip")} for n in container.get("networks") or ()],
        "mounts": [
            {"type": m.get("type"), "source": m.get("source"), "destination": m.get("destination"), "rw": m.get("rw")}
            for m in container.get("mounts") or ()
        ],
        "env": [{"key": e.get("key"), "value": e.get("value")} for e in container.get("env") or ()],
        "command": shlex.join(container["command"]) if container.get("command") else None,
        "labels": container.get("labels") or {},
    }
    numbers = {field: stats[key] for field, key in STATS_FIELDS.items() if key in stats}
    if numbers:
        out["stats"] = numbers
    return out
