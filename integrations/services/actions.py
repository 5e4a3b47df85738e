"""The services integration's actions: services.status (services.read) and services.start|stop|restart (services.manage)."""

from __future__ import annotations

import fnmatch
from typing import Any

import voluptuous as vol

from roost.core.actions import ActionContext, ActionError, ActionRefused, ActionSpec
from roost.integrations.commands.runner import describe_exit, tail
from roost.integrations.fields import CheckedText

from .const import (
    ACTION_GRACE_SECONDS,
    ACTION_STATUS,
    CAP_SERVICES_MANAGE,
    CAP_SERVICES_READ,
    CONF_ALLOW,
    CONF_DENY,
    CONF_RATE_LIMIT,
    CONF_SYSTEMCTL_TIMEOUT,
    STATUS_TIMEOUT_SECONDS,
    VERBS,
)
from .systemctl import UNIT_HINT, call, describe, parse_show, service_name, show_argv, status_view, systemctl, verb_argv

UNIT_SCHEMA = vol.Schema({vol.Required("unit", description="service, e.g. nginx or nginx.service"): CheckedText(service_name, UNIT_HINT)})


# The dashboard offers the units the host's services list reports for the "unit" parameter.
UNIT_PICKER = {"unit": "linux_host.services.units[].name"}


def action_specs(config: dict[str, Any]) -> list[ActionSpec]:
    specs = [
        ActionSpec(
            name=ACTION_STATUS,
            capability=CAP_SERVICES_READ,
            handler=status,
            schema=UNIT_SCHEMA,
            pickers=UNIT_PICKER,
            description="Show a systemd service's state.",
            idempotent=True,
            timeout=STATUS_TIMEOUT_SECONDS + ACTION_GRACE_SECONDS,
        )
    ]
    for name, verb in VERBS.items():
        specs.append(
            ActionSpec(
                name=name,
                capability=CAP_SERVICES_MANAGE,
                handler=_manage(verb),
                schema=UNIT_SCHEMA,
                pickers=UNIT_PICKER,
                description=f"{verb.capitalize()} a systemd service and wait until systemd has done it.",
                # Starting a started service or stopping a stopped one changes nothing; restart is not safe to repeat.
                idempotent=verb in ("start", "stop"),
                timeout=config[CONF_SYSTEMCTL_TIMEOUT] + STATUS_TIMEOUT_SECONDS + ACTION_GRACE_SECONDS,
                rate_limit_per_minute=config[CONF_RATE_LIMIT] or None,
            )
        )
    return specs


def check_unit(config: dict[str, Any], raw: Any) -> str:
    try:  # checked by the schema already; a handler called some other way must not trust that
        unit = service_name(raw)
    except vol.Invalid as err:
        raise ActionRefused(f"invalid parameters: unit: {err.msg}") from None
    if any(fnmatch.fnmatchcase(unit, p) for p in config[CONF_DENY]) or not any(fnmatch.fnmatchcase(unit, p) for p in config[CONF_ALLOW]):
        raise ActionRefused(f"{unit} is not a service this agent lets the hub manage (integrations.services.allow / deny)")
    return unit


async def read_status(unit: str) -> dict[str, Any]:
    outcome = await call(show_argv(systemctl(), unit), STATUS_TIMEOUT_SECONDS)
    text = outcome.output.decode("utf-8", "replace")
    if outcome.timed_out:
        raise ActionError(f"systemctl show {unit} did not answer within {STATUS_TIMEOUT_SECONDS:g} s")
    if outcome.exit_code != 0:
        raise ActionError(f"systemctl show {unit} {describe_exit(outcome.exit_code)}: {tail(text.strip(), 500)}")
    return status_view(unit, parse_show(text))


async def status(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    unit = check_unit(ctx.config, params.get("unit"))
    view = await read_status(unit)
    if view.get("load") == "not-found":
        raise ActionError(f"there is no {unit} on this host")
    return {"unit": unit, "status": view, "output": describe(view)}


def _manage(verb: str) -> Any:
    async def handler(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        return await manage(ctx, params, verb)

    handler.__name__ = f"services_{verb}"
    return handler


async def manage(ctx: ActionContext, params: dict[str, Any], verb: str) -> dict[str, Any]:
    if verb not in VERBS.values():
        raise ActionError(f"systemctl {verb} is not something this integration does")
    unit = check_unit(ctx.config, params.get("unit"))
    timeout = ctx.config[CONF_SYSTEMCTL_TIMEOUT]
    outcome = await call(verb_argv(systemctl(), verb, unit), timeout)
    text = outcome.output.decode("utf-8", "replace").strip()
    if outcome.timed_out:
        raise ActionError(f"systemctl {verb} {unit} did not finish within {timeout:g} s (systemctl_timeout); systemd may still be working on it")
    if outcome.exit_code != 0:
        raise ActionError(f"systemctl {verb} {unit} failed ({describe_exit(outcome.exit_code)})" + (f": {tail(text, 1000)}" if text else ""))
    view = await read_status(unit)
    return {"unit": unit, "verb": verb, "status": view, "output": "\n".join(p for p in (text, describe(view)) if p)}
