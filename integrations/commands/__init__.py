"""The commands integration: run only the commands in the agent's allowlist (process.execute.limited)."""

from __future__ import annotations

import os

from roost.core import hookimpl
from roost.core.actions import ActionSpec
from roost.core.integration import IntegrationContext, NotAvailable

from .actions import DATA_ACCOUNTS, DATA_COMMANDS, action_specs
from .allowlist import CONFIG_SCHEMA
from .const import CAP_EXECUTE_LIMITED, CONF_ALLOW, CONF_GROUP, CONF_RATE_LIMIT, CONF_USER, READS
from .runner import AccountError, resolve_account

__all__ = ["CONFIG_SCHEMA"]


@hookimpl
def roost_setup(ctx: IntegrationContext) -> None:
    commands = ctx.config[CONF_ALLOW]
    if not commands:
        raise NotAvailable("no commands allowed; list them as [[integrations.commands.allow]] entries in the agent's config")
    accounts = {}
    for name, command in commands.items():
        user = command.user if command.user is not None else ctx.config.get(CONF_USER)
        group = command.group if command.group is not None else ctx.config.get(CONF_GROUP)
        try:
            accounts[name] = resolve_account(user, group)
        except AccountError as err:
            raise ValueError(f"command {name}: {err}") from None
        if accounts[name].uid is None and os.geteuid() == 0 and user is None:
            ctx.logger.warning("command %s runs as root; set user = \"...\" for it (or for all commands) in [integrations.commands]", name)
        if not os.access(command.argv[0], os.X_OK):
            ctx.logger.warning("command %s: %s is not an executable file on this host (yet)", name, command.argv[0])
    ctx.data[DATA_COMMANDS] = commands
    ctx.data[DATA_ACCOUNTS] = accounts


@hookimpl
def roost_capabilities(ctx: IntegrationContext) -> list[str]:
    return [CAP_EXECUTE_LIMITED]


@hookimpl
def roost_actions(ctx: IntegrationContext) -> list[ActionSpec]:
    return action_specs(ctx.data[DATA_COMMANDS], ctx.config[CONF_RATE_LIMIT])
