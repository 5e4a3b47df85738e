"""Built-in blueprints: parameterised automations a user makes with a few fields (the low-disk cleanup)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from roost.core.config import parse_duration


class BlueprintInvalid(ValueError):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{p}: {m}" for p, m in errors))

    def as_list(self) -> list[dict[str, str]]:
        return [{"path": p, "message": m} for p, m in self.errors]


@dataclass(frozen=True)
class Blueprint:
    name: str
    title: str
    description: str
    inputs: vol.Schema
    build: Callable[[dict[str, Any]], dict[str, Any]]

    def describe(self) -> dict[str, Any]:
        import voluptuous_serialize

        return {"name": self.name, "title": self.title, "description": self.description, "inputs": voluptuous_serialize.convert(self.inputs, custom_serializer=lambda v: {"type": "string"})}


def _duration(value: Any) -> str:
    parse_duration(value)
    return value if isinstance(value, str) else f"{float(value):g}s"


LOW_DISK_INPUTS = vol.Schema(
    {
        vol.Optional("id"): vol.All(str, vol.Match(r"^[a-z0-9][a-z0-9_-]{0,63}$", msg="1-64 of a-z, 0-9, _ and -")),
        vol.Optional("name"): vol.All(str, vol.Length(min=1, max=120)),
        vol.Optional("node", default="*"): vol.All(str, vol.Length(min=1, max=200)),
        vol.Optional("mount", default="*"): vol.All(str, vol.Length(min=1, max=300)),
        vol.Optional("threshold", default=90): vol.All(vol.Any(int, float), vol.Range(min=1, max=100, msg="threshold is a percentage, 1-100")),
        vol.Optional("for", default="10m"): _duration,
        # docker_image_prune: the docker integration's docker.image.prune (dangling images); docker_system_prune:
        # docker.system.prune (also stopped containers and unused networks: destructive, so the approval must carry
        # the operator's signed envelope); command: an allowlisted command.
        vol.Optional("cleanup", default="command"): vol.In(
            ("command", "docker_image_prune", "docker_system_prune"), msg="cleanup is command, docker_image_prune or docker_system_prune"
        ),
        vol.Optional("cleanup_command"): vol.All(str, vol.Length(min=1, max=100)),
        vol.Optional("cleanup_args", default=dict): dict,
        vol.Optional("approval_timeout", default="1h"): _duration,
        vol.Optional("throttle", default="6h"): _duration,
        vol.Optional("receivers"): vol.Any(None, [str]),
    },
    extra=vol.PREVENT_EXTRA,
)


def _cleanup_named(inputs: dict[str, Any]) -> dict[str, Any]:
    if inputs["cleanup"] == "command" and not inputs.get("cleanup_command"):
        raise vol.Invalid("name the allowlisted command that cleans up (e.g. journal_vacuum), or set cleanup: docker_image_prune or docker_system_prune", path=["cleanup_command"])
    return inputs


LOW_DISK_INPUTS = vol.Schema(vol.All(LOW_DISK_INPUTS, _cleanup_named))


def low_disk(inputs: dict[str, Any]) -> dict[str, Any]:
    mount = inputs["mount"]
    if inputs["cleanup"] == "docker_image_prune":
        what, cleanup_with = "docker image prune", {"action": "docker.image.prune", "params": {}}
    elif inputs["cleanup"] == "docker_system_prune":
        what, cleanup_with = "docker system prune", {"action": "docker.system.prune", "params": {}}
    else:
        what, cleanup_with = inputs["cleanup_command"], {"action": "commands.run", "params": {"command": inputs["cleanup_command"], "args": inputs["cleanup_args"]}}
    series = f"linux_host.disk_used_percent[{mount}]"
    threshold = inputs["threshold"]
    node = "{{ trigger.node_id }}"
    where = "{{ trigger.instance }} on {{ trigger.node_id }}"
    receivers = inputs.get("receivers")
    notify_extra = {"receivers": receivers} if receivers else {}
    definition: dict[str, Any] = {
        "name": inputs.get("name") or f"Low disk ({mount}): confirm, alert, clean up after approval",
        "description": (
            f"Filesystem {mount} at or above {threshold}% for {inputs['for']} → the agent re-measures → still above → alert → "
            f"wait for an operator's approval → run {what} on that node → re-measure and report the space freed."
        ),
        "mode": "parallel",
        "max": 10,
        "throttle": {"period": inputs["throttle"], "max": 1, "per": "node"},
        "blueprint": {"name": "low_disk", "inputs": inputs},
        "variables": {"threshold": threshold},
        "triggers": [{"kind": "metric", "series": series, "node": inputs["node"], "above": threshold - 0.0001, "for": inputs["for"]}],
        "steps": [
            {
                "id": "measure",
                "name": "The agent measures again",
                "action": "confirm",
                "with": {"node": node, "action": "linux_host.disk_usage", "params": {"mount": "{{ trigger.instance }}"}, "value": "used_percent", "above": threshold - 0.0001},
            },
            {
                "id": "alert",
                "name": "Raise the low-disk alert",
                "action": "raise_alert",
                "continue_on_error": True,
                "with": {
                    "node": node,
                    "name": "low_disk",
                    "summary": where + " is {{ steps.measure.value }}% full (confirmed by the agent)",
                    "severity": "warning",
                    "labels": {"mountpoint": "{{ trigger.instance }}"},
                },
            },
            {
                "id": "approval",
                "name": "Wait for an operator",
                "wait_for_approval": {
                    "summary": f"Run {what} on {{{{ trigger.node_id }}}} to free space on {{{{ trigger.instance }}}} ({{{{ steps.measure.value }}}}% full)?",
                    "timeout": inputs["approval_timeout"],
                    "details": {"cleanup": what, **cleanup_with},
                    "notify": {"title": "Approval needed: low disk on " + where, **notify_extra},
                },
            },
            {
                "id": "cleanup",
                "name": "Clean up",
                "action": "job",
                "with": {"node": node, **cleanup_with},
            },
            {
                "id": "after",
                "name": "Measure after the cleanup",
                "action": "job",
                "with": {"node": node, "action": "linux_host.disk_usage", "params": {"mount": "{{ trigger.instance }}"}},
            },
            {
                "variables": {
                    "freed_bytes": "{{ steps.measure.result.used_bytes - steps.after.result.used_bytes }}",
                    "now_percent": "{{ steps.after.result.used_percent }}",
                }
            },
            {
                "name": "Report the space freed",
                "action": "notify",
                "continue_on_error": True,
                "with": {
                    "title": "Cleanup done: " + where,
                    "body": "{{ inputs_command }} freed {{ (freed_bytes / 1048576) | round(1) }} MiB; now {{ now_percent }}% full.".replace("{{ inputs_command }}", what),
                    "severity": "info",
                    "node": node,
                    **notify_extra,
                },
            },
            {
                "if": [{"template": "{{ now_percent < threshold }}"}],
                "then": [{"action": "resolve_alert", "continue_on_error": True, "with": {"node": node, "name": "low_disk", "labels": {"mountpoint": "{{ trigger.instance }}"}}}],
            },
        ],
    }
    if inputs.get("id"):
        definition["id"] = inputs["id"]
    return definition


BLUEPRINTS: dict[str, Blueprint] = {
    "low_disk": Blueprint(
        "low_disk",
        "Low disk: confirm, alert, clean up after approval",
        "A filesystem at or above a threshold for a while: the agent re-measures, Roost raises an alert, an operator approves, "
        "the node runs an allowlisted cleanup command, and the space freed is reported.",
        LOW_DISK_INPUTS,
        low_disk,
    )
}


def instantiate(name: str, inputs: Any) -> dict[str, Any]:
    blueprint = BLUEPRINTS[name]
    try:
        checked = blueprint.inputs(dict(inputs) if isinstance(inputs, dict) else inputs)
    except vol.MultipleInvalid as err:
        raise BlueprintInvalid([(".".join(str(p) for p in e.path) or "(inputs)", e.msg) for e in err.errors]) from None
    except vol.Invalid as err:
        raise BlueprintInvalid([(".".join(str(p) for p in err.path) or "(inputs)", err.msg)]) from None
    return blueprint.build(checked)
