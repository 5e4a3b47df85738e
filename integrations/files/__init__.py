"""The files integration: list and read files under the roots the host owner configured (filesystem.read.scoped)."""

from __future__ import annotations

import voluptuous as vol

from roost.core import hookimpl
from roost.core.actions import ActionSpec
from roost.core.integration import IntegrationContext, NotAvailable

from roost.integrations.fields import whole_number

from .actions import action_specs
from .const import (
    READS,
    CAP_READ_SCOPED,
    CONF_MAX_ENTRIES,
    CONF_MAX_READ_BYTES,
    CONF_ROOTS,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_READ_BYTES,
    MAX_ENTRIES,
    MAX_READ_BYTES,
)
from .paths import roots_schema

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_ROOTS, default=dict): roots_schema("files"),
        vol.Optional(CONF_MAX_READ_BYTES, default=DEFAULT_MAX_READ_BYTES): whole_number(min=1, max=MAX_READ_BYTES, msg=f"must be between 1 and {MAX_READ_BYTES} bytes"),
        vol.Optional(CONF_MAX_ENTRIES, default=DEFAULT_MAX_ENTRIES): whole_number(min=1, max=MAX_ENTRIES, msg=f"must be between 1 and {MAX_ENTRIES}"),
    },
    extra=vol.PREVENT_EXTRA,
)


@hookimpl
def roost_setup(ctx: IntegrationContext) -> None:
    if not ctx.config[CONF_ROOTS]:
        raise NotAvailable('no roots configured; name directories in [integrations.files.roots], e.g. share = "/srv/share"')


@hookimpl
def roost_capabilities(ctx: IntegrationContext) -> list[str]:
    return [CAP_READ_SCOPED]


@hookimpl
def roost_actions(ctx: IntegrationContext) -> list[ActionSpec]:
    return action_specs(ctx.config)
