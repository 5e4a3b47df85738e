"""The services integration: status, start, stop and restart of systemd services, where systemd runs (services.manage)."""

from __future__ import annotations

from pathlib import Path

import voluptuous as vol

from roost.core import hookimpl
from roost.core.actions import ActionSpec
from roost.core.config import duration
from roost.core.integration import IntegrationContext, NotAvailable
from roost.integrations.linux_host.systemd import NOT_RUNNING_REASON, systemd_running

from .actions import action_specs
from .const import (
    READS,
    CAP_SERVICES_MANAGE,
    CAP_SERVICES_READ,
    CONF_ALLOW,
    CONF_DENY,
    CONF_RATE_LIMIT,
    CONF_RUN_ROOT,
    CONF_SYSTEMCTL_TIMEOUT,
    DEFAULT_ALLOW,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RUN_ROOT,
    DEFAULT_SYSTEMCTL_TIMEOUT,
    MAX_SYSTEMCTL_TIMEOUT,
)


def _globs(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 256 for v in value):
        raise vol.Invalid("expected a list of unit globs, e.g. [\"nginx.service\", \"docker*.service\"]")
    return value


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
        raise vol.Invalid("expected a whole number between 0 and 10000 (0: no limit)")
    return value


CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_ALLOW, default=list(DEFAULT_ALLOW)): _globs,
        vol.Optional(CONF_DENY, default=list): _globs,
        vol.Optional(CONF_SYSTEMCTL_TIMEOUT, default=DEFAULT_SYSTEMCTL_TIMEOUT): duration(1, MAX_SYSTEMCTL_TIMEOUT),
        # Where systemd's runtime directory is: /run, or the host's /run mounted into the agent's container.
        vol.Optional(CONF_RUN_ROOT, default=DEFAULT_RUN_ROOT): vol.All(str, vol.Match(r"^/", msg="must be an absolute path")),
        vol.Optional(CONF_RATE_LIMIT, default=DEFAULT_RATE_LIMIT): _count,
    },
    extra=vol.PREVENT_EXTRA,
)


@hookimpl
def roost_setup(ctx: IntegrationContext) -> None:
    if not systemd_running(Path(ctx.config[CONF_RUN_ROOT])):
        raise NotAvailable(f"{NOT_RUNNING_REASON} (no {ctx.config[CONF_RUN_ROOT]}/systemd/system)")
    if not ctx.config[CONF_ALLOW]:
        raise NotAvailable("no services allowed (integrations.services.allow is empty)")


@hookimpl
def roost_capabilities(ctx: IntegrationContext) -> list[str]:
    return [CAP_SERVICES_READ, CAP_SERVICES_MANAGE]


@hookimpl
def roost_actions(ctx: IntegrationContext) -> list[ActionSpec]:
    return action_specs(ctx.config)
