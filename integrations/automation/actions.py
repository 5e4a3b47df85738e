"""The built-in steps: run a job, confirm with a fresh read, notify, raise or resolve an alert."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from roost.core.config import duration
from roost.core.hub_integration import AutomationAction, StepCall, StepFailed, StepRefused, StepStop

from .const import DEFAULT_CONFIRM_ACTION, SEVERITIES

NO_ENVELOPE = (
    "an automation cannot carry a signed envelope: an operator gives it with the approval "
    "(a wait_for_approval step before this one), and the agent checks it"
)


def _no_envelope(value: dict[str, Any]) -> dict[str, Any]:
    if "envelope" in value:
        raise vol.Invalid(NO_ENVELOPE, path=["envelope"])
    return value


def _number_or_template(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise vol.Invalid("expected a number (or a {{ template }})")
    return value


_NODE = vol.All(str, vol.Length(min=1, max=200))
JOB = vol.Schema(
    vol.All(
        _no_envelope,
        vol.Schema(
            {
                vol.Required("node", msg="job needs the node to run on, such as '{{ trigger.node_id }}'"): _NODE,
                vol.Required("action", msg="job needs the action to run, such as commands.run"): vol.All(str, vol.Length(min=3, max=200)),
                vol.Optional("params", default=dict): dict,
                vol.Optional("timeout", default=3600.0): vol.Any(duration(1, 7 * 86400), vol.All(str, vol.Match(r".*\{\{"))),
            },
            extra=vol.PREVENT_EXTRA,
        ),
    )
)
CONFIRM = vol.Schema(
    vol.All(
        _no_envelope,
        vol.Schema(
            {
                vol.Required("node", msg="confirm needs the node to measure on"): _NODE,
                vol.Optional("action", default=DEFAULT_CONFIRM_ACTION): vol.All(str, vol.Length(min=3, max=200)),
                vol.Optional("params", default=dict): dict,
                vol.Optional("value", default="used_percent"): vol.All(str, vol.Length(min=1, max=200)),
                vol.Optional("above"): _number_or_template,
                vol.Optional("below"): _number_or_template,
                vol.Optional("timeout", default=300.0): duration(1, 86400),
            },
            extra=vol.PREVENT_EXTRA,
        ),
    )
)
NOTIFY = vol.Schema(
    {
        vol.Required("title", msg="notify needs a title"): vol.All(str, vol.Length(min=1, max=300)),
        vol.Optional("body", default=""): vol.All(str, vol.Length(max=20000)),
        vol.Optional("severity", default="info"): vol.In(SEVERITIES, msg="severity is info, warning or critical"),
        vol.Optional("node"): vol.Any(None, str),
        vol.Optional("url"): vol.Any(None, str),
        vol.Optional("receivers"): vol.Any(None, [str]),
    },
    extra=vol.PREVENT_EXTRA,
)
RAISE_ALERT = vol.Schema(
    {
        vol.Required("node", msg="raise_alert needs the node the alert is about"): _NODE,
        vol.Required("name", msg="raise_alert needs the alert's name, such as low_disk"): vol.All(str, vol.Length(min=1, max=120)),
        vol.Required("summary", msg="raise_alert needs a one-sentence summary"): vol.All(str, vol.Length(min=1, max=1000)),
        vol.Optional("severity", default="warning"): vol.In(("warning", "critical"), msg="severity is warning or critical"),
        vol.Optional("labels", default=dict): {str: vol.Any(str, int, float)},
    },
    extra=vol.PREVENT_EXTRA,
)
RESOLVE_ALERT = vol.Schema(
    {
        vol.Required("node"): _NODE,
        vol.Required("name"): vol.All(str, vol.Length(min=1, max=120)),
        vol.Optional("labels", default=dict): {str: vol.Any(str, int, float)},
    },
    extra=vol.PREVENT_EXTRA,
)


def dig(value: Any, path: str) -> Any:
    """``result.used_percent`` or ``used_percent`` out of a job's result."""
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


async def run_job(settings: dict[str, Any], step: StepCall) -> dict[str, Any]:
    return await step.run_job(settings["node"], settings["action"], settings["params"], timeout=float(settings["timeout"]))


async def confirm(settings: dict[str, Any], step: StepCall) -> dict[str, Any]:
    """Measure again on the node (a read action) and go on only if the fresh value is still past the line."""
    described = step.described(settings["node"], settings["action"])
    if described and (described.get("destructive") or not str(described.get("capability", "")).endswith(".read")):
        raise StepRefused(f"confirm runs read actions only; {settings['action']} needs {described.get('capability')}")
    job = await step.run_job(settings["node"], settings["action"], settings["params"], timeout=float(settings["timeout"]))
    if step.dry_run:
        return {"would_confirm": {"value": settings["value"], "above": settings.get("above"), "below": settings.get("below")}, **job}
    value = dig(job.get("result"), settings["value"])
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise StepFailed(f"{settings['action']} gave no number at {settings['value']!r} (result: {str(job.get('result'))[:300]})")
    out = {"value": value, "job_id": job.get("id"), "result": job.get("result")}
    above, below = settings.get("above"), settings.get("below")
    if above is not None and not value > float(above):
        stop = StepStop(f"not confirmed: the fresh value is {value:g}, not above {float(above):g}; nothing to do")
        stop.result = {**out, "confirmed": False}  # type: ignore[attr-defined]
        raise stop
    if below is not None and not value < float(below):
        stop = StepStop(f"not confirmed: the fresh value is {value:g}, not below {float(below):g}; nothing to do")
        stop.result = {**out, "confirmed": False}  # type: ignore[attr-defined]
        raise stop
    return {**out, "confirmed": True}


async def notify(settings: dict[str, Any], step: StepCall) -> dict[str, Any]:
    message = {
        "title": settings["title"],
        "body": settings["body"],
        "severity": settings["severity"],
        "node_id": settings.get("node") or None,
        "url": settings.get("url") or None,
        "receivers": settings.get("receivers") or None,
    }
    if step.dry_run:
        return {"would_notify": message}
    return {"outbox": await step.notify(**message)}


async def raise_alert(settings: dict[str, Any], step: StepCall) -> dict[str, Any]:
    labels = {k: str(v) for k, v in settings["labels"].items()}
    if step.dry_run:
        return {"would_raise": {**settings, "labels": labels}}
    alert = await step.raise_alert(node_id=settings["node"], name=settings["name"], summary=settings["summary"], severity=settings["severity"], labels=labels)
    return {"alert": {k: alert.get(k) for k in ("id", "fingerprint", "state", "severity", "summary", "labels")}}


async def resolve_alert(settings: dict[str, Any], step: StepCall) -> dict[str, Any]:
    labels = {k: str(v) for k, v in settings["labels"].items()}
    if step.dry_run:
        return {"would_resolve": {**settings, "labels": labels}}
    await step.resolve_alert(settings["node"], settings["name"], labels)
    return {"resolved": True}


def actions() -> list[AutomationAction]:
    return [
        AutomationAction("automation.job", "Run an action as a job on a node (grants ∩ ceiling, as automation:<id>), and wait for it.", JOB, run_job),
        AutomationAction("automation.confirm", "Ask the agent to measure again (a read action) and go on only if the fresh value is still past the line.", CONFIRM, confirm),
        AutomationAction("automation.notify", "Send a notification through the configured receivers.", NOTIFY, notify),
        AutomationAction("automation.raise_alert", "Raise an alert (same lifecycle and events as a rule's).", RAISE_ALERT, raise_alert),
        AutomationAction("automation.resolve_alert", "Resolve an alert this automation raised.", RESOLVE_ALERT, resolve_alert),
    ]
