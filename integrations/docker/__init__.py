"""The docker integration: containers, stats, images, volumes and engine of the local Docker (or Podman) engine, and container actions."""

from __future__ import annotations

import re
from typing import Any

import voluptuous as vol

from roost.core import hookimpl
from roost.core.actions import ActionSpec
from roost.core.integration import IntegrationContext, NotAvailable, NotReady

from .actions import DATA_COLLECTOR, action_specs, close_action_client
from .collector import Collector
from .const import (
    READS,
    CAP_LOGS,
    CAP_MANAGE,
    CAP_READ,
    CONF_API_TIMEOUT,
    CONF_DISK_USAGE_INTERVAL,
    CONF_MAX_EVENTS,
    CONF_SECRET_PATTERN,
    CONF_SHOW_ENV,
    CONF_STATS,
    CONF_STATS_WORKERS,
    CONF_URL,
    DEFAULT_API_TIMEOUT,
    DEFAULT_DISK_USAGE_INTERVAL,
    DEFAULT_MAX_EVENTS,
    DEFAULT_SECRET_PATTERN,
    DEFAULT_SHOW_ENV,
    DEFAULT_STATS,
    DEFAULT_STATS_WORKERS,
    MAX_EVENTS_LIMIT,
    MAX_STATS_WORKERS,
    METRIC_FIELDS,
)
from .engine import DENIED, MISSING, EngineUnreachable


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid("expected true or false")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise vol.Invalid("expected a whole number")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise vol.Invalid("expected a number of seconds")
    return float(value)


def _regex(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise vol.Invalid("expected a regular expression such as PASS|SECRET|TOKEN")
    try:
        re.compile(value)
    except re.error as err:
        raise vol.Invalid(f"not a regular expression: {err}") from None
    return value


def _url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^(unix|tcp|http|https|ssh|npipe)://\S+$", value):
        raise vol.Invalid("expected an engine URL such as unix:///var/run/docker.sock or tcp://10.0.0.5:2375")
    return value


CONFIG_SCHEMA = vol.Schema(
    {
        # Default: $DOCKER_HOST, else /var/run/docker.sock, else Podman's socket.
        vol.Optional(CONF_URL): _url,
        vol.Optional(CONF_API_TIMEOUT, default=DEFAULT_API_TIMEOUT): vol.All(_seconds, vol.Range(min=1, max=300, msg="must be between 1 and 300 seconds")),
        vol.Optional(CONF_SECRET_PATTERN, default=DEFAULT_SECRET_PATTERN): _regex,
        vol.Optional(CONF_SHOW_ENV, default=DEFAULT_SHOW_ENV): _bool,
        vol.Optional(CONF_STATS, default=DEFAULT_STATS): _bool,
        vol.Optional(CONF_STATS_WORKERS, default=DEFAULT_STATS_WORKERS): vol.All(
            _int, vol.Range(min=1, max=MAX_STATS_WORKERS, msg=f"must be between 1 and {MAX_STATS_WORKERS}")
        ),
        vol.Optional(CONF_DISK_USAGE_INTERVAL, default=DEFAULT_DISK_USAGE_INTERVAL): vol.All(
            _seconds, vol.Range(min=0, max=86400, msg="must be between 0 (off) and 86400 seconds")
        ),
        vol.Optional(CONF_MAX_EVENTS, default=DEFAULT_MAX_EVENTS): vol.All(
            _int, vol.Range(min=1, max=MAX_EVENTS_LIMIT, msg=f"must be between 1 and {MAX_EVENTS_LIMIT}")
        ),
    },
    extra=vol.PREVENT_EXTRA,
)


def _collector(ctx: IntegrationContext) -> Collector:
    return ctx.data[DATA_COLLECTOR]


@hookimpl
def roost_setup(ctx: IntegrationContext) -> None:
    collector = Collector(ctx.config)
    try:
        collector.start()
    except EngineUnreachable as err:
        # No engine or no permission is how this host is, not a failure; a silent socket may be an engine still starting.
        if err.why in (MISSING, DENIED):
            raise NotAvailable(str(err)) from None
        raise NotReady(str(err)) from None
    ctx.data[DATA_COLLECTOR] = collector


@hookimpl
def roost_collect(ctx: IntegrationContext) -> dict[str, Any]:
    return _collector(ctx).collect()


@hookimpl
def roost_metric_fields(ctx: IntegrationContext) -> dict[str, dict[str, str]]:
    return {name: dict(meta) for name, meta in METRIC_FIELDS.items()}


@hookimpl
def roost_capabilities(ctx: IntegrationContext) -> list[str]:
    # docker.manage and logs.read are offered, not taken: the hub grants them per node and this host's ceiling
    # (execute mode for docker.manage) has the last word.
    return [CAP_READ, CAP_MANAGE, CAP_LOGS]


@hookimpl
def roost_actions(ctx: IntegrationContext) -> list[ActionSpec]:
    return action_specs()


@hookimpl
def roost_shutdown(ctx: IntegrationContext) -> None:
    collector = ctx.data.pop(DATA_COLLECTOR, None)
    if collector is not None:
        collector.close()
    close_action_client(ctx.data)
