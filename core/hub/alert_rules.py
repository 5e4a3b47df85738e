"""Alert rules as data: their schema (with errors that name the field), the kinds the core brings, silences, windows and the defaults."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

import voluptuous as vol
from croniter import croniter

from roost.core.integration import humanize_invalid

from .alert_eval import CRITICAL, MATCHER_OPS, OPS, REDUCERS, SEVERITIES, WARNING

# Kinds the core judges itself (the rest come from integrations' roost_hub_alert_rule_kinds).
KIND_METRIC = "metric.threshold"
KIND_OFFLINE = "node.offline"
KIND_INTEGRATION = "integration.error"
CORE_KINDS = {
    KIND_METRIC: "a series a node reports crosses a warning or critical threshold (per label with [*]), with hysteresis",
    KIND_OFFLINE: "a node stops reporting: judged against its own interval, as its status goes offline",
    KIND_INTEGRATION: "an integration on a node is in error (setup error, failing collection)",
}
# Kinds judged on the clock as well as on reports.
TIMED_KINDS = frozenset({KIND_OFFLINE})

MAX_RULES = 500
MAX_SILENCES = 1000
MAX_WINDOWS = 200
MAX_MATCHERS = 20
MAX_LABELS = 32
LABEL_KEY = r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}\Z"
MAX_LABEL_VALUE = 200
MAX_DURATION = 30 * 86400.0

_LABEL_KEY = vol.All(str, vol.Match(LABEL_KEY, msg="must be a label name: a letter or _, then letters, digits, _ . - (at most 63)"))
_LABEL_VALUE = vol.All(str, vol.Length(max=MAX_LABEL_VALUE, msg=f"must be at most {MAX_LABEL_VALUE} characters"), vol.Match(r"^[^\x00-\x1f\x7f]*\Z", msg="must not contain control characters"))
LABELS = vol.All(dict, vol.Length(max=MAX_LABELS, msg=f"at most {MAX_LABELS} labels"), {_LABEL_KEY: _LABEL_VALUE})
_SECONDS = vol.All(vol.Coerce(float), vol.Range(min=0, max=MAX_DURATION, msg=f"must be between 0 and {MAX_DURATION:g} seconds"))
_NUMBER = vol.All(vol.Coerce(float), vol.Range(min=-1e15, max=1e15))
_SERIES = vol.All(
    str,
    vol.Length(min=3, max=200),
    vol.Match(r"^[a-z][a-z0-9_]*\.[A-Za-z0-9_.:-]+(\[[^\[\]\x00-\x1f]{1,150}\])?\Z", msg="must be a series such as linux_host.disk_used_percent[*] (domain.name, optional [label or glob])"),
)

SELECTOR = vol.Schema(
    {
        vol.Optional("nodes", default=list): vol.All([vol.All(str, vol.Match(r"^[A-Za-z0-9_-]{1,64}$", msg="must be a node id"))], vol.Length(max=1000)),
        vol.Optional("name", default=""): vol.All(str, vol.Length(max=200)),
        vol.Optional("labels", default=dict): LABELS,
    }
)

METRIC_SETTINGS = vol.Schema(
    {
        vol.Required("series"): _SERIES,
        vol.Optional("reducer", default="last"): vol.In(REDUCERS, msg=f"must be one of {', '.join(REDUCERS)}"),
        vol.Optional("window", default=0.0): vol.All(vol.Coerce(float), vol.Range(min=0, max=86400, msg="must be between 0 and 86400 seconds")),
        vol.Optional("op", default=">="): vol.In(OPS, msg=f"must be one of {', '.join(OPS)}"),
        vol.Optional("warning"): _NUMBER,
        vol.Optional("warning_clear"): _NUMBER,
        vol.Optional("critical"): _NUMBER,
        vol.Optional("critical_clear"): _NUMBER,
        # The finding label the [..] part becomes: mountpoint for disks, container for containers.
        vol.Optional("label", default="instance"): _LABEL_KEY,
    }
)

RULE = vol.Schema(
    {
        vol.Required("name"): vol.All(str, vol.Length(min=1, max=100), vol.Match(r"^[^\x00-\x1f\x7f]+\Z", msg="must not contain control characters")),
        vol.Required("kind"): vol.All(str, vol.Match(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", msg="must be a rule kind such as metric.threshold")),
        vol.Optional("enabled", default=True): bool,
        vol.Optional("severity", default=WARNING): vol.In(SEVERITIES, msg="must be warning or critical"),
        vol.Optional("selector", default=dict): SELECTOR,
        vol.Optional("settings", default=dict): dict,
        vol.Optional("for", default=0.0): _SECONDS,
        vol.Optional("clear_for", default=0.0): _SECONDS,
        vol.Optional("description", default=""): vol.All(str, vol.Length(max=1000)),
    }
)

MATCHER = vol.Schema(
    {
        vol.Required("name"): _LABEL_KEY,
        vol.Optional("op", default="="): vol.In(MATCHER_OPS, msg="must be one of = != ~ !~ (~ is a glob such as disk*)"),
        vol.Required("value"): _LABEL_VALUE,
    }
)
MATCHERS = vol.All([MATCHER], vol.Length(min=1, max=MAX_MATCHERS, msg=f"must have 1 to {MAX_MATCHERS} matchers"))

SILENCE = vol.Schema(
    {
        vol.Required("matchers"): MATCHERS,
        vol.Optional("starts_at"): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Required("ends_at"): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Required("reason"): vol.All(str, vol.Length(min=1, max=500, msg="must say why, in at most 500 characters")),
    }
)

WINDOW = vol.Schema(
    {
        vol.Required("name"): vol.All(str, vol.Length(min=1, max=100)),
        vol.Required("cron"): vol.All(str, vol.Length(min=9, max=100)),
        vol.Required("duration"): vol.All(vol.Coerce(float), vol.Range(min=60, max=7 * 86400, msg="must be between 60 s and 7 days")),
        vol.Optional("matchers", default=list): vol.All([MATCHER], vol.Length(max=MAX_MATCHERS)),
        vol.Optional("enabled", default=True): bool,
        vol.Optional("reason", default=""): vol.All(str, vol.Length(max=500)),
    }
)


class RuleError(ValueError):
    """A rule, silence or window that cannot be accepted: the message names the field and what to do."""


def _invalid(what: str, err: vol.Invalid, data: Any) -> RuleError:
    return RuleError(f"invalid {what}: {humanize_invalid(err, data)}")


def validate_rule(data: Any, kinds: Mapping[str, Any]) -> dict[str, Any]:
    """A rule body checked against its kind: ``kinds`` maps every known kind to its settings schema (None for the core's own)."""
    if not isinstance(data, dict):
        raise RuleError("invalid rule: the body must be a JSON object")
    try:
        rule = RULE(data)
    except vol.Invalid as err:
        raise _invalid("rule", err, data) from None
    kind = rule["kind"]
    if kind not in kinds:
        raise RuleError(f"invalid rule: kind {kind!r} is not known here; known kinds: {', '.join(sorted(kinds))}")
    try:
        if kind == KIND_METRIC:
            rule["settings"] = METRIC_SETTINGS(rule["settings"])
        elif kinds[kind] is not None:
            rule["settings"] = kinds[kind](rule["settings"])
        elif rule["settings"]:
            raise RuleError(f"invalid rule: settings: kind {kind} takes no settings")
    except vol.Invalid as err:
        raise RuleError(f"invalid rule: settings: {humanize_invalid(err, rule['settings'])}") from None
    if kind == KIND_METRIC:
        check_thresholds(rule["settings"])
    return rule


def check_thresholds(settings: dict[str, Any]) -> None:
    if settings.get(WARNING) is None and settings.get(CRITICAL) is None:
        raise RuleError("invalid rule: settings: give a warning or a critical threshold (or both)")
    rising = settings["op"] in (">=", ">")
    for level in SEVERITIES:
        clear = settings.get(f"{level}_clear")
        threshold = settings.get(level)
        if clear is not None and threshold is None:
            raise RuleError(f"invalid rule: settings.{level}_clear is given without settings.{level}")
        if clear is not None and (clear > threshold if rising else clear < threshold):
            side = "at or below" if rising else "at or above"
            raise RuleError(f"invalid rule: settings.{level}_clear ({clear:g}) must be {side} settings.{level} ({threshold:g}) for op {settings['op']}")
    if settings.get(WARNING) is not None and settings.get(CRITICAL) is not None:
        if (settings[CRITICAL] < settings[WARNING]) if rising else (settings[CRITICAL] > settings[WARNING]):
            raise RuleError(f"invalid rule: settings.critical ({settings[CRITICAL]:g}) must be past settings.warning ({settings[WARNING]:g}) for op {settings['op']}")
    if settings["reducer"] != "last" and not settings["window"]:
        raise RuleError(f"invalid rule: settings.window: reducer {settings['reducer']} needs a window in seconds")


def validate_silence(data: Any, now: float) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RuleError("invalid silence: the body must be a JSON object")
    try:
        silence = SILENCE(data)
    except vol.Invalid as err:
        raise _invalid("silence", err, data) from None
    silence.setdefault("starts_at", now)
    if silence["ends_at"] <= max(now, silence["starts_at"]):
        raise RuleError("invalid silence: ends_at must be in the future and after starts_at")
    if silence["ends_at"] - silence["starts_at"] > 366 * 86400:
        raise RuleError("invalid silence: ends_at: a silence lasts at most a year; use a maintenance window for something recurring")
    return silence


def validate_window(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RuleError("invalid maintenance window: the body must be a JSON object")
    try:
        window = WINDOW(data)
    except vol.Invalid as err:
        raise _invalid("maintenance window", err, data) from None
    if not croniter.is_valid(window["cron"]) or len(window["cron"].split()) != 5:
        raise RuleError(f"invalid maintenance window: cron {window['cron']!r} is not a five-field cron expression (minute hour day month weekday), e.g. '0 2 * * *'")
    return window


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(6)


def safe_id(value: str) -> bool:
    return bool(re.match(r"^[A-Za-z0-9_-]{1,64}$", value))


# ----------------------------------------------------------------- defaults

# Made once on first start; a default a user deleted is never made again (its key is remembered).
DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {
        "id": "default-node-offline",
        "name": "Node offline",
        "kind": KIND_OFFLINE,
        "severity": CRITICAL,
        "description": "A node stopped reporting (judged against its own report interval).",
    },
    {
        "id": "default-filesystem-full",
        "name": "Filesystem almost full",
        "kind": KIND_METRIC,
        "severity": WARNING,
        "settings": {
            "series": "linux_host.disk_used_percent[*]",
            "label": "mountpoint",
            "warning": 90.0,
            "warning_clear": 87.0,
            "critical": 95.0,
            "critical_clear": 93.0,
        },
        "for": 60.0,
        "clear_for": 60.0,
        "description": "A filesystem is at least 90 % used (critical at 95 %); it clears below 87 %.",
    },
    {
        "id": "default-memory-high",
        "name": "Memory almost exhausted",
        "kind": KIND_METRIC,
        "severity": WARNING,
        "settings": {"series": "linux_host.mem_used_percent", "warning": 95.0, "warning_clear": 92.0},
        "for": 300.0,
        "clear_for": 60.0,
        "description": "Memory at least 95 % used for 5 minutes.",
    },
    {
        "id": "default-container-unhealthy",
        "name": "Container unhealthy",
        "kind": "docker.container_unhealthy",
        "severity": WARNING,
        "for": 60.0,
        "description": "A container's health check has been failing.",
    },
    {
        "id": "default-container-restart-loop",
        "name": "Container restart-looping",
        "kind": "docker.restart_loop",
        "severity": CRITICAL,
        "description": "A container keeps restarting.",
    },
    {
        "id": "default-ping-check",
        "name": "Ping check late or failed",
        "kind": "ping.check",
        "severity": WARNING,
        "settings": {"failed_severity": CRITICAL},
        "description": "A cron job or backup hook did not ping its check in time (warning) or reported a failure (critical).",
    },
    {
        "id": "default-proxmox-quorum",
        "name": "Proxmox quorum lost",
        "kind": "proxmox.quorum_lost",
        "severity": CRITICAL,
        "description": "The Proxmox cluster lost quorum: /etc/pve is read-only.",
    },
)


def default_rules() -> list[dict[str, Any]]:
    """The defaults as full rule bodies (every field the schema fills in)."""
    out = []
    for spec in DEFAULT_RULES:
        body = {k: v for k, v in spec.items() if k != "id"}
        rule = RULE(body)
        if rule["kind"] == KIND_METRIC:
            rule["settings"] = METRIC_SETTINGS(rule["settings"])
        rule.update(id=spec["id"], default_key=spec["id"], created_by="system")
        out.append(rule)
    return out
