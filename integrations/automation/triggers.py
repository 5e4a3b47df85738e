"""The built-in trigger kinds: each a schema and a handler(settings, event, state) that says whether the event fires it."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from roost.core.config import duration
from roost.core.hub.automation_model import labels_match
from roost.core.hub.jobs import next_run, valid_cron
from roost.core.hub_integration import AutomationTrigger, TriggerState

from .const import ALERT_STATUSES, JOB_STATES, NODE_STATUSES, SEVERITIES

_INSTANCE = re.compile(r"^(?P<base>[^\[]+)\[(?P<instance>.*)\]$")


def _glob(pattern: str | None, value: Any) -> bool:
    """``*`` and ``?`` as wildcards; brackets are literal, so ``disk_used_percent[*]`` matches every mount."""
    if pattern in (None, "", "*"):
        return True
    if not isinstance(value, str):
        return False
    return value == pattern or fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _cron(value: Any) -> str:
    if not isinstance(value, str) or not valid_cron(value):
        raise vol.Invalid("expected a cron expression such as '0 1 * * *' (minute hour day month weekday)")
    return value


MANUAL = vol.Schema({}, extra=vol.PREVENT_EXTRA)
CRON = vol.Schema({vol.Required("cron", msg="cron needs the schedule, such as '0 1 * * *'"): _cron}, extra=vol.PREVENT_EXTRA)
WEBHOOK = vol.Schema({}, extra=vol.PREVENT_EXTRA)
_METRIC_SHAPE = vol.Schema(
    {
        vol.Required("series", msg="metric needs the series, such as linux_host.disk_used_percent[*]"): vol.All(str, vol.Length(min=3, max=300)),
        vol.Optional("node", default="*"): vol.All(str, vol.Length(min=1, max=200)),
        vol.Optional("above"): vol.Any(int, float, msg="above is a number"),
        vol.Optional("below"): vol.Any(int, float, msg="below is a number"),
        vol.Optional("for", default=0): duration(0, 7 * 86400),
    },
    extra=vol.PREVENT_EXTRA,
)


def _a_line(value: dict[str, Any]) -> dict[str, Any]:
    if "above" not in value and "below" not in value:
        raise vol.Invalid("a metric trigger needs above, below or both")
    return value


METRIC = vol.Schema(vol.All(_METRIC_SHAPE, _a_line))
NODE_STATUS = vol.Schema(
    {
        vol.Optional("to", default="offline"): vol.In(NODE_STATUSES, msg=f"to is one of {', '.join(NODE_STATUSES)}"),
        vol.Optional("from", default="any"): vol.In(NODE_STATUSES, msg=f"from is one of {', '.join(NODE_STATUSES)}"),
        vol.Optional("node", default="*"): vol.All(str, vol.Length(min=1, max=200)),
    },
    extra=vol.PREVENT_EXTRA,
)
JOB_FINISHED = vol.Schema(
    {
        vol.Optional("action", default="*"): vol.All(str, vol.Length(min=1, max=200)),
        vol.Optional("state", default=list(JOB_STATES)): vol.All(vol.Any(str, [str]), vol.Coerce(lambda v: [v] if isinstance(v, str) else v), [vol.In(JOB_STATES, msg=f"a job state is one of {', '.join(JOB_STATES)}")]),
        vol.Optional("node", default="*"): vol.All(str, vol.Length(min=1, max=200)),
    },
    extra=vol.PREVENT_EXTRA,
)
ALERT = vol.Schema(
    {
        vol.Optional("status", default="firing"): vol.In(ALERT_STATUSES, msg="status is firing or resolved"),
        vol.Optional("rule", default="*"): vol.All(str, vol.Length(min=1, max=200)),
        vol.Optional("severity"): vol.All(vol.Any(str, [str]), vol.Coerce(lambda v: [v] if isinstance(v, str) else v), [vol.In(SEVERITIES, msg="a severity is info, warning or critical")]),
        vol.Optional("labels", default=dict): {str: vol.Any(str, [str])},
        vol.Optional("node", default="*"): vol.All(str, vol.Length(min=1, max=200)),
    },
    extra=vol.PREVENT_EXTRA,
)
EVENT = vol.Schema(
    {
        vol.Required("event", msg="event needs the event kind, such as docker.container.health or a glob like proxmox.*"): vol.All(str, vol.Length(min=1, max=200)),
        vol.Optional("match", default=dict): {str: vol.Any(str, int, float, bool, [str])},
    },
    extra=vol.PREVENT_EXTRA,
)
MQTT = vol.Schema(
    {
        vol.Required("topic", msg="mqtt needs the topic filter, such as home/door/+"): vol.All(str, vol.Length(min=1, max=300)),
        vol.Optional("payload"): str,
    },
    extra=vol.PREVENT_EXTRA,
)


def manual(settings: Mapping[str, Any], event: Any, state: TriggerState) -> None:
    return None  # only "run now" starts it


def cron(settings: Mapping[str, Any], event: Any, state: TriggerState) -> dict[str, Any] | None:
    if event.kind != "automation.tick":
        return None
    memo = state.memo
    if "next" not in memo:
        memo["next"] = next_run(settings["cron"], state.now)
        return None
    if state.now < memo["next"]:
        return None
    scheduled = memo["next"]
    memo["next"] = next_run(settings["cron"], state.now)
    return {"scheduled_at": scheduled, "cron": settings["cron"]}


def webhook(settings: Mapping[str, Any], event: Any, state: TriggerState) -> dict[str, Any] | None:
    if event.kind != "automation.webhook" or event.data.get("automation") != state.automation_id:
        return None
    body = event.data.get("body")
    out = {"body": body, "query": event.data.get("query", {}), "peer": event.data.get("peer", "")}
    if isinstance(body, Mapping) and isinstance(body.get("node_id"), str):
        out["node_id"] = body["node_id"]
    return out


def _labels(series: str) -> dict[str, str]:
    match = _INSTANCE.match(series)
    if not match:
        return {}
    labels = {"instance": match.group("instance")}
    if "disk" in match.group("base") or "fs_" in match.group("base"):
        labels["mountpoint"] = match.group("instance")
    return labels


def _over(settings: Mapping[str, Any], value: float) -> bool:
    if "above" in settings and not value > settings["above"]:
        return False
    if "below" in settings and not value < settings["below"]:
        return False
    return True


def metric(settings: Mapping[str, Any], event: Any, state: TriggerState) -> dict[str, Any] | None:
    """Fires once when a series stays past the line for the duration; again only after it came back."""
    memo = state.memo
    if event.kind == "automation.report" and isinstance(event.data.get("id"), str):
        node_ids = [event.data["id"]] if _glob(settings["node"], event.data["id"]) else []
    elif event.kind == "automation.tick":
        node_ids = sorted({key.split("\n", 1)[0] for key, entry in memo.items() if entry.get("since") is not None and not entry.get("fired")})
    else:
        return None
    for node_id in node_ids:
        # A report's own figures (each report is judged, not only the newest); the latest ones on a tick.
        metrics = event.data.get("metrics") if event.kind == "automation.report" and isinstance(event.data.get("metrics"), Mapping) else state.metrics(node_id)
        for series, value in sorted(metrics.items()):
            if not _glob(settings["series"], series) or not isinstance(value, (int, float)):
                continue
            key = f"{node_id}\n{series}"
            entry = memo.setdefault(key, {"since": None, "fired": False})
            if not _over(settings, value):
                entry.update(since=None, fired=False)
                continue
            if entry["since"] is None:
                entry["since"] = state.now
            if not entry["fired"] and state.now - entry["since"] >= settings["for"]:
                entry["fired"] = True
                return {
                    "node_id": node_id,
                    "series": series,
                    "value": value,
                    "since": entry["since"],
                    "labels": _labels(series),
                    **({"instance": _labels(series)["instance"]} if _labels(series) else {}),
                }
    return None


def node_status(settings: Mapping[str, Any], event: Any, state: TriggerState) -> dict[str, Any] | None:
    if event.kind != "node" or not isinstance(event.data.get("id"), str):
        return None
    node_id, status = event.data["id"], event.data.get("status")
    before = state.memo.get(node_id)
    state.memo[node_id] = status
    if before is None or before == status or not _glob(settings["node"], node_id):
        return None
    if settings["to"] != "any" and status != settings["to"]:
        return None
    if settings["from"] != "any" and before != settings["from"]:
        return None
    return {"node_id": node_id, "node_name": event.data.get("name", ""), "from": before, "to": status, "labels": {"node": node_id}}


def job_finished(settings: Mapping[str, Any], event: Any, state: TriggerState) -> dict[str, Any] | None:
    if event.kind != "job" or event.data.get("state") not in settings["state"]:
        return None
    job_id = event.data.get("id")
    seen = state.memo.setdefault("seen", [])
    if job_id in seen:
        return None
    if not _glob(settings["action"], event.data.get("action")) or not _glob(settings["node"], event.data.get("node_id")):
        return None
    seen.append(job_id)
    del seen[:-200]
    return {
        "node_id": event.data.get("node_id"),
        "job_id": job_id,
        "action": event.data.get("action"),
        "state": event.data.get("state"),
        "error": event.data.get("error", ""),
        "result": event.data.get("result"),
        "created_by": event.data.get("created_by", ""),
    }


def alert(settings: Mapping[str, Any], event: Any, state: TriggerState) -> dict[str, Any] | None:
    if event.kind != f"alert.{settings['status']}" or not isinstance(event.data, Mapping):
        return None
    data = event.data
    labels = data.get("labels") if isinstance(data.get("labels"), Mapping) else {}
    if not any(_glob(settings["rule"], data.get(key)) for key in ("rule_name", "rule_id", "kind")):
        return None
    if "severity" in settings and data.get("severity") not in settings["severity"]:
        return None
    if not _glob(settings["node"], data.get("node_id")) or not labels_match(settings["labels"], labels):
        return None
    return {
        "node_id": data.get("node_id"),
        "labels": dict(labels),
        "alert": dict(data),
        "rule_id": data.get("rule_id"),
        "rule_name": data.get("rule_name"),
        "severity": data.get("severity"),
        "summary": data.get("summary"),
        "value": data.get("value"),
        "cause": data.get("cause"),
    }


def event_trigger(settings: Mapping[str, Any], event: Any, state: TriggerState) -> Any:
    if event.kind in ("automation.tick",) or not _glob(settings["event"], event.kind) or not isinstance(event.data, Mapping):
        return None
    for key, want in settings["match"].items():
        have = event.data.get(key)
        if isinstance(want, list):
            if str(have) not in want:
                return None
        elif isinstance(want, str):
            if not _glob(want, str(have) if have is not None else None):
                return None
        elif have != want:
            return None
    return True


def mqtt_matches(topic_filter: str, topic: str) -> bool:
    want, have = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(have) or (part != "+" and part != have[i]):
            return False
    return len(want) == len(have)


def mqtt(settings: Mapping[str, Any], event: Any, state: TriggerState) -> dict[str, Any] | None:
    if event.kind != "automation.mqtt" or not mqtt_matches(settings["topic"], str(event.data.get("topic", ""))):
        return None
    if "payload" in settings and event.data.get("payload") != settings["payload"]:
        return None
    return {"topic": event.data.get("topic"), "payload": event.data.get("payload")}


def triggers() -> list[AutomationTrigger]:
    return [
        AutomationTrigger("automation.manual", "Only by hand: run now, with test trigger data.", MANUAL, manual),
        AutomationTrigger("automation.cron", "On a cron schedule, read in the hub's time zone.", CRON, cron),
        AutomationTrigger("automation.webhook", "A POST to the automation's own unguessable URL.", WEBHOOK, webhook),
        AutomationTrigger("automation.metric", "A node's series past a line (above/below) for a duration, judged on every stored report.", METRIC, metric),
        AutomationTrigger("automation.node_status", "A node going offline, stale or coming back online.", NODE_STATUS, node_status),
        AutomationTrigger("automation.job_finished", "A job ending (by action, state, node).", JOB_FINISHED, job_finished),
        AutomationTrigger("automation.alert", "An alert firing or resolving (by rule, severity, labels).", ALERT, alert),
        AutomationTrigger("automation.event", "Any hub event by kind (docker.*, proxmox.*, pings.*), with data matchers.", EVENT, event_trigger),
        AutomationTrigger("automation.mqtt", "An MQTT message on a topic (the integration's mqtt_url broker).", MQTT, mqtt),
    ]
