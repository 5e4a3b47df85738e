"""What the hub accepts from a script pushing docker state (scripts/roost-docker-push.sh): the schema, and masking again.

The script builds the same state the collector builds, from `docker inspect`
and `docker stats`. The hub checks its shape and sizes, and masks secrets a
second time with the default pattern: a script cannot be trusted to have done
it (this module never imports the docker SDK, so the hub needs none).
"""

from __future__ import annotations

import math
from typing import Any

import voluptuous as vol

from .collector import container_metrics
from .const import DEFAULT_SECRET_PATTERN, DOMAIN
from .masking import Masker

MAX_CONTAINERS = 2000
MAX_LIST = 5000
MAX_TEXT = 4096
MAX_NAME = 255
STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead", "unknown")


def _number(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise vol.Invalid("expected a finite number")
    return value


def _text(limit: int = MAX_TEXT) -> Any:
    return vol.All(str, vol.Length(max=limit, msg=f"longer than {limit} characters"))


_OPT_TEXT = vol.Any(None, _text())
_OPT_NUMBER = vol.Any(None, _number)
_ENV_ENTRY = vol.Any(
    _text(),
    vol.Schema({vol.Required("key"): _text(MAX_NAME), vol.Optional("value"): _OPT_TEXT, vol.Optional("masked"): bool}),
)
_PORT = vol.Schema(
    {
        vol.Optional("host_ip"): _OPT_TEXT,
        vol.Optional("host_port"): vol.Any(None, int, _text(16)),
        vol.Required("container_port"): vol.Any(int, _text(16)),
        vol.Optional("protocol", default="tcp"): vol.In(["tcp", "udp", "sctp"]),
    }
)
_NETWORK = vol.Schema({vol.Required("name"): _text(MAX_NAME)}, extra=vol.ALLOW_EXTRA)
_MOUNT = vol.Schema(
    {
        vol.Optional("type"): _OPT_TEXT,
        vol.Optional("name"): _OPT_TEXT,
        vol.Optional("source"): _OPT_TEXT,
        vol.Required("destination"): _text(),
        vol.Optional("rw"): bool,
    }
)
_STATS = vol.Schema({_text(64): _number})
CONTAINER_SCHEMA = vol.Schema(
    {
        vol.Required("name"): vol.All(_text(MAX_NAME), vol.Length(min=1, msg="must not be empty")),
        vol.Required("state"): vol.In(STATES, msg=f"must be one of {', '.join(STATES)}"),
        vol.Optional("id"): _text(128),
        vol.Optional("image"): _text(),
        vol.Optional("status"): _text(),
        vol.Optional("health"): vol.Any(None, vol.In(["starting", "healthy", "unhealthy"])),
        vol.Optional("created"): _OPT_NUMBER,
        vol.Optional("started_at"): _OPT_NUMBER,
        vol.Optional("finished_at"): _OPT_NUMBER,
        vol.Optional("restart_count"): vol.All(int, vol.Range(min=0)),
        vol.Optional("exit_code"): vol.Any(None, int),
        vol.Optional("ports"): vol.All([_PORT], vol.Length(max=MAX_LIST)),
        vol.Optional("networks"): vol.All([_NETWORK], vol.Length(max=100)),
        vol.Optional("mounts"): vol.All([_MOUNT], vol.Length(max=MAX_LIST)),
        vol.Optional("env"): vol.All([_ENV_ENTRY], vol.Length(max=MAX_LIST)),
        vol.Optional("labels"): vol.All({_text(MAX_NAME): vol.Any(None, _text())}, vol.Length(max=MAX_LIST)),
        vol.Optional("command"): vol.All([_text()], vol.Length(max=1000)),
        vol.Optional("entrypoint"): vol.All([_text()], vol.Length(max=1000)),
        vol.Optional("compose_project"): _OPT_TEXT,
        vol.Optional("compose_service"): _OPT_TEXT,
        vol.Optional("stats"): _STATS,
    },
    extra=vol.ALLOW_EXTRA,
)
STATE_SCHEMA = vol.Schema(
    {
        vol.Required("containers"): vol.All([CONTAINER_SCHEMA], vol.Length(max=MAX_CONTAINERS, msg=f"at most {MAX_CONTAINERS} containers")),
        vol.Optional("engine"): dict,
        vol.Optional("images"): vol.All([dict], vol.Length(max=MAX_LIST)),
        vol.Optional("volumes"): vol.All([dict], vol.Length(max=MAX_LIST)),
        vol.Optional("events"): vol.All([dict], vol.Length(max=1000)),
        vol.Optional("disk_usage"): dict,
    },
    extra=vol.ALLOW_EXTRA,
)


def clean_state(state: Any, masker: Masker | None = None) -> dict[str, Any]:
    """Validate a pushed docker state and mask it again; raises vol.Invalid saying what is wrong."""
    clean = STATE_SCHEMA(state)
    masker = masker or Masker(DEFAULT_SECRET_PATTERN)
    for container in clean["containers"]:
        if "env" in container:
            container["env"] = _mask_env(container["env"], masker)
        if "labels" in container:
            container["labels"] = masker.labels(container["labels"])
        for key in ("command", "entrypoint"):
            if key in container:
                container[key] = masker.args(container[key])
        container.setdefault("id", container["name"])
        container.setdefault("ports", [])
        container.setdefault("networks", [])
        container.setdefault("mounts", [])
    clean["containers"].sort(key=lambda c: c["name"].casefold())
    return clean


def _mask_env(entries: list[Any], masker: Masker) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entry in entries:
        if isinstance(entry, str):
            out.extend(masker.env([entry]))
            continue
        value = entry.get("value")
        raw = entry["key"] if value is None else f"{entry['key']}={value}"
        masked = masker.env([raw])[0]
        masked["masked"] = bool(masked["masked"] or entry.get("masked"))
        out.append(masked)
    return out


def metrics_for(state: dict[str, Any]) -> dict[str, float]:
    """The metrics the agent would send for this state (prefixed with the domain), when the script sends none."""
    return {f"{DOMAIN}.{k}": float(v) for k, v in container_metrics(state["containers"]).items()}
