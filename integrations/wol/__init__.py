"""The Wake-on-LAN integration: this agent sends magic packets on its own LAN segment for the hub (network.wol.send)."""

from __future__ import annotations

import voluptuous as vol

from roost.core import hookimpl
from roost.core.actions import ActionSpec
from roost.core.integration import IntegrationContext

from .actions import action_specs
from .const import (
    CAP_WOL_SEND,
    CONF_ALLOWED_BROADCASTS,
    CONF_ALLOWED_PORTS,
    CONF_BROADCAST,
    CONF_INTERFACE,
    CONF_PORT,
    CONF_RATE_LIMIT,
    DEFAULT_BROADCAST,
    DEFAULT_PORT,
    DEFAULT_RATE_LIMIT,
    READS,
)
from .magic import PORT, ip_literal


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
        raise vol.Invalid("expected a whole number between 0 and 10000 (0: no limit)")
    return value


CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_BROADCAST, default=DEFAULT_BROADCAST): ip_literal,
        vol.Optional(CONF_PORT, default=DEFAULT_PORT): PORT,
        # The address of this host's interface to send from, when it has several.
        vol.Optional(CONF_INTERFACE): ip_literal,
        vol.Optional(CONF_RATE_LIMIT, default=DEFAULT_RATE_LIMIT): _count,
        # Where a request may send besides `broadcast` and this host's own networks'
        # broadcast addresses, and ports besides `port`, 7 and 9 (see policy.py).
        vol.Optional(CONF_ALLOWED_BROADCASTS, default=list): vol.All([ip_literal], vol.Length(max=64)),
        vol.Optional(CONF_ALLOWED_PORTS, default=list): vol.All([PORT], vol.Length(max=64)),
    },
    extra=vol.PREVENT_EXTRA,
)


@hookimpl
def roost_capabilities(ctx: IntegrationContext) -> list[str]:
    return [CAP_WOL_SEND]


@hookimpl
def roost_actions(ctx: IntegrationContext) -> list[ActionSpec]:
    return action_specs(ctx.config)
