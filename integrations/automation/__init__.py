"""The automation integration (hub only): Roost's built-in automation trigger kinds and steps, and the Automations pages.

The engine lives in the core (``roost.core.hub.automations``); it finds every
trigger and step kind, these included, through the hub's registry, so an
integration's own kinds are used exactly like the built-in ones.
"""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from roost.core import hookimpl
from roost.core.hub_integration import AutomationAction, AutomationTrigger, HubContext, Page

from . import pages
from .const import READS  # noqa: F401 - every integration declares what its reports need
from .actions import actions
from .triggers import triggers

CONFIG_SCHEMA = vol.Schema(
    {
        # A broker whose messages the mqtt trigger sees (mqtt://host:port); topics are the filters to subscribe to.
        vol.Optional("mqtt_url"): vol.All(str, vol.Match(r"^mqtts?://", msg="expected mqtt://host:port")),
        vol.Optional("mqtt_topics", default=list): [vol.All(str, vol.Length(min=1, max=300))],
    },
    extra=vol.PREVENT_EXTRA,
)


@hookimpl
async def roost_hub_setup(ctx: HubContext) -> None:
    if ctx.config.get("mqtt_url") and ctx.config.get("mqtt_topics"):
        from .mqtt import start

        start(ctx)


@hookimpl
def roost_hub_automation_triggers(ctx: HubContext) -> list[AutomationTrigger]:
    return triggers()


@hookimpl
def roost_hub_automation_actions(ctx: HubContext) -> list[AutomationAction]:
    return actions()


@hookimpl
def roost_hub_pages(ctx: HubContext) -> list[Page]:
    return [
        Page("/automations", pages.list_page, nav="Automations", order=40),
        Page("/automations/approvals/{approval_id}", pages.approval_page),
        Page("/automations/runs/{run_id}", pages.run_page),
        Page("/automations/edit/{automation_id}", pages.edit_page),
    ]


@hookimpl
async def roost_hub_shutdown(ctx: HubContext) -> None:
    task: Any = ctx.data.pop("mqtt_task", None)
    if task is not None:
        task.cancel()
