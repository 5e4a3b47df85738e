"""The logs integration: journald units and files under configured log roots, tailed, filtered and capped (logs.read)."""

from __future__ import annotations

import voluptuous as vol

from roost.core import hookimpl
from roost.core.actions import ActionSpec
from roost.core.integration import IntegrationContext, NotAvailable
from roost.integrations.fields import whole_number
from roost.integrations.files.paths import roots_schema

from .actions import action_specs
from .const import (
    READS,
    CAP_LOGS_READ,
    CONF_DIRECTORY,
    CONF_JOURNAL,
    CONF_MAX_BYTES,
    CONF_MAX_ENTRIES,
    CONF_MAX_LINES,
    CONF_MAX_SCAN,
    CONF_ROOTS,
    CONF_UNITS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_LINES,
    DEFAULT_MAX_SCAN,
    DEFAULT_UNITS,
    MAX_MAX_BYTES,
    MAX_MAX_LINES,
    MAX_MAX_SCAN,
)
from .journal import journal_problem


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid("expected true or false")
    return value


def _range(low: int, high: int, what: str = "") -> vol.All:
    return whole_number(min=low, max=high, msg=f"must be between {low} and {high}{what}")


CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_JOURNAL, default=True): _bool,
        # Globs of the units whose journal the hub may read.
        vol.Optional(CONF_UNITS, default=list(DEFAULT_UNITS)): vol.All([vol.All(str, vol.Length(min=1, max=256))], vol.Length(min=1)),
        # Read journal files from this directory (journalctl --directory), e.g. the host's journal mounted into a container.
        vol.Optional(CONF_DIRECTORY, default=""): vol.All(str, vol.Match(r"^(/.*)?$", msg="must be an absolute directory path")),
        vol.Optional(CONF_ROOTS, default=dict): roots_schema("log"),
        vol.Optional(CONF_MAX_LINES, default=DEFAULT_MAX_LINES): _range(1, MAX_MAX_LINES),
        vol.Optional(CONF_MAX_BYTES, default=DEFAULT_MAX_BYTES): _range(1024, MAX_MAX_BYTES, " bytes"),
        vol.Optional(CONF_MAX_SCAN, default=DEFAULT_MAX_SCAN): _range(1, MAX_MAX_SCAN),
        vol.Optional(CONF_MAX_ENTRIES, default=DEFAULT_MAX_ENTRIES): _range(1, 10_000),
    },
    extra=vol.PREVENT_EXTRA,
)


@hookimpl
def roost_setup(ctx: IntegrationContext) -> None:
    problem = journal_problem(ctx.config[CONF_DIRECTORY]) if ctx.config[CONF_JOURNAL] else "the journal is off (integrations.logs.journal = false)"
    if problem and not ctx.config[CONF_ROOTS]:
        raise NotAvailable(f"{problem}; and no log roots are configured ([integrations.logs.roots], e.g. system = \"/var/log\")")
    if problem and ctx.config[CONF_JOURNAL]:
        ctx.logger.info("logs.journal will say: %s", problem)


@hookimpl
def roost_capabilities(ctx: IntegrationContext) -> list[str]:
    return [CAP_LOGS_READ]


@hookimpl
def roost_actions(ctx: IntegrationContext) -> list[ActionSpec]:
    return action_specs(ctx.config)
