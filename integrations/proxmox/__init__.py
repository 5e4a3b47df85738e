"""The proxmox integration: a Proxmox VE cluster or node read through its API with a token, and guest actions."""

from __future__ import annotations

import os
from typing import Any

import voluptuous as vol

from roost.core import hookimpl
from roost.core.actions import ActionSpec
from roost.core.integration import IntegrationContext, NotAvailable, NotReady

from .client import TOKEN_ID_RE, settings_from_config
from .const import (
    READS,
    CONF_API_TIMEOUT,
    CONF_BACKUP_EXCLUDE,
    CONF_BACKUP_REFRESH,
    CONF_BACKUP_WARN_DAYS,
    CONF_CA_FILE,
    CONF_DATASTORES,
    CONF_HOST,
    CONF_NODES,
    CONF_PBS,
    CONF_PORT,
    CONF_READ_ONLY,
    CONF_TASKS,
    CONF_TOKEN_ID,
    CONF_TOKEN_SECRET,
    CONF_TOKEN_SECRET_FILE,
    CONF_VERIFY_SSL,
    DEFAULT_API_TIMEOUT,
    DEFAULT_BACKUP_REFRESH,
    DEFAULT_BACKUP_WARN_DAYS,
    DEFAULT_PBS_PORT,
    DEFAULT_PORT,
    DEFAULT_TASKS,
    MAX_TASKS,
    METRIC_FIELDS,
    PVE_CONFIG_DIR,
)
from .errors import ProxmoxApiError
from .restore_test import CONF_RESTORE_TEST, DATA_RESULTS, DATA_SCRATCH, RESTORE_TEST_SCHEMA, results_file, scratch_ledger

DATA_COLLECTOR = "collector"
WHERE = "integrations.proxmox"


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid("expected true or false")
    return value


def _number(minimum: float, maximum: float) -> Any:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise vol.Invalid("expected a number")
        if not minimum <= value <= maximum:
            raise vol.Invalid(f"must be between {minimum:g} and {maximum:g}")
        return float(value)

    return check


def _whole(minimum: int, maximum: int) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise vol.Invalid("expected a whole number")
        if not minimum <= value <= maximum:
            raise vol.Invalid(f"must be between {minimum} and {maximum}")
        return value

    return check


def _secret(value: Any) -> str:
    # The message never repeats the value: it is a secret.
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid("expected the token secret as text")
    return value


def _needs_secret(where: str) -> Any:
    def check(table: dict[str, Any]) -> dict[str, Any]:
        if table.get(CONF_TOKEN_SECRET) and table.get(CONF_TOKEN_SECRET_FILE):
            raise vol.Invalid(f"set either {CONF_TOKEN_SECRET} or {CONF_TOKEN_SECRET_FILE} in {where}, not both")
        if table.get(CONF_TOKEN_ID) and not (table.get(CONF_TOKEN_SECRET) or table.get(CONF_TOKEN_SECRET_FILE)):
            raise vol.Invalid(f"{where} has {CONF_TOKEN_ID} but neither {CONF_TOKEN_SECRET} nor {CONF_TOKEN_SECRET_FILE}")
        if (table.get(CONF_TOKEN_SECRET) or table.get(CONF_TOKEN_SECRET_FILE)) and not table.get(CONF_TOKEN_ID):
            raise vol.Invalid(f"{where} has a token secret but no {CONF_TOKEN_ID} (USER@REALM!TOKENID)")
        return table

    return check


_HOST = vol.All(str, vol.Length(min=1, max=253, msg="expected a host name or address"))
_HOSTS = vol.Any(_HOST, vol.All([_HOST], vol.Length(min=1, msg="name at least one host")), msg="expected a host or a list of hosts")
_TOKEN_ID = vol.All(str, vol.Match(TOKEN_ID_RE, msg="must look like USER@REALM!TOKENID, e.g. roost@pve!monitor"))
_NAME = vol.All(str, vol.Length(min=1, max=64))

PBS_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required(CONF_HOST): _HOSTS,
            vol.Optional(CONF_PORT, default=DEFAULT_PBS_PORT): _whole(1, 65535),
            vol.Required(CONF_TOKEN_ID): _TOKEN_ID,
            vol.Optional(CONF_TOKEN_SECRET): _secret,
            vol.Optional(CONF_TOKEN_SECRET_FILE): vol.All(str, vol.Length(min=1)),
            vol.Optional(CONF_VERIFY_SSL, default=True): _bool,
            vol.Optional(CONF_CA_FILE): vol.All(str, vol.IsFile(msg="no such file")),
            vol.Optional(CONF_DATASTORES, default=list): [_NAME],
            # Signed PBS prunes run only where the host owner says so (the token then needs Datastore.Prune).
            vol.Optional("allow_prune", default=False): _bool,
        },
        extra=vol.PREVENT_EXTRA,
    ),
    _needs_secret(f"{WHERE}.pbs"),
)

CONFIG_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Optional(CONF_HOST): _HOSTS,
            vol.Optional(CONF_PORT, default=DEFAULT_PORT): _whole(1, 65535),
            vol.Optional(CONF_TOKEN_ID): _TOKEN_ID,
            vol.Optional(CONF_TOKEN_SECRET): _secret,
            vol.Optional(CONF_TOKEN_SECRET_FILE): vol.All(str, vol.Length(min=1)),
            vol.Optional(CONF_VERIFY_SSL, default=True): _bool,
            vol.Optional(CONF_CA_FILE): vol.All(str, vol.IsFile(msg="no such file")),
            vol.Optional(CONF_API_TIMEOUT, default=DEFAULT_API_TIMEOUT): _number(0.2, 120),
            vol.Optional(CONF_NODES, default=list): [_NAME],
            vol.Optional(CONF_READ_ONLY, default=False): _bool,
            vol.Optional(CONF_BACKUP_WARN_DAYS, default=DEFAULT_BACKUP_WARN_DAYS): _number(0.01, 3650),
            vol.Optional(CONF_BACKUP_REFRESH, default=DEFAULT_BACKUP_REFRESH): _number(0, 86400),
            vol.Optional(CONF_BACKUP_EXCLUDE, default=list): [_whole(100, 999_999_999)],
            vol.Optional(CONF_TASKS, default=DEFAULT_TASKS): _whole(1, MAX_TASKS),
            vol.Optional(CONF_PBS): PBS_SCHEMA,
            vol.Optional(CONF_RESTORE_TEST): RESTORE_TEST_SCHEMA,
        },
        extra=vol.PREVENT_EXTRA,
    ),
    _needs_secret(WHERE),
)


def _collector(ctx: IntegrationContext) -> Any:
    return ctx.data[DATA_COLLECTOR]


@hookimpl
def roost_setup(ctx: IntegrationContext) -> None:
    settings = settings_from_config(ctx.config, where=WHERE)
    if settings is None:
        if os.path.isdir(PVE_CONFIG_DIR):
            raise NotAvailable(
                "this host is a Proxmox VE node, but integrations.proxmox has no API token: create one "
                "(pveum user token add roost@pve monitor --privsep 0, with the PVEAuditor role) and set token_id "
                "and token_secret_file"
            )
        raise NotAvailable("not configured: set integrations.proxmox.host, token_id and token_secret to read a Proxmox cluster")
    pbs_settings = None
    if ctx.config.get(CONF_PBS):
        pbs_table = {**ctx.config[CONF_PBS], CONF_API_TIMEOUT: ctx.config.get(CONF_API_TIMEOUT, DEFAULT_API_TIMEOUT)}
        pbs_settings = settings_from_config(
            pbs_table, where=f"{WHERE}.pbs", service="PBS", default_port=DEFAULT_PBS_PORT, local_default=False
        )
    # Imported only once configured: an agent without Proxmox never loads the collector (docs/benchmarks.md).
    from .collector import Collector

    collector = Collector(ctx.config, settings, pbs_settings)
    try:
        collector.start()
    except ProxmoxApiError as err:
        collector.close()
        raise NotReady(str(err)) from None
    ctx.data[DATA_COLLECTOR] = collector
    from .restore_test import sweep_in_background

    # The scratch guests this agent made for restore tests (its own provenance) and their results.
    ctx.data[DATA_SCRATCH] = scratch_ledger(ctx.data_dir)
    ctx.data[DATA_RESULTS] = results_file(ctx.data_dir)
    if not ctx.config.get(CONF_READ_ONLY):
        sweep_in_background(ctx.config, ctx.data[DATA_SCRATCH], ctx.logger)


@hookimpl
def roost_collect(ctx: IntegrationContext) -> dict[str, Any]:
    snapshot = _collector(ctx).collect()
    results = ctx.data.get(DATA_RESULTS)
    if results is not None and isinstance(snapshot.get("state"), dict):
        # Per tested guest, its last restore test (the backup integration's verdicts and alerts read it).
        snapshot["state"]["restore_tests"] = results.read()
    return snapshot


@hookimpl
def roost_metric_fields(ctx: IntegrationContext) -> dict[str, dict[str, str]]:
    return {name: dict(meta) for name, meta in METRIC_FIELDS.items()}


@hookimpl
def roost_capabilities(ctx: IntegrationContext) -> list[str]:
    return _collector(ctx).capabilities()


@hookimpl
def roost_actions(ctx: IntegrationContext) -> list[ActionSpec]:
    from .actions import build_actions
    from .pbs_actions import pbs_actions
    from .restore_test import restore_test_actions
    from .vzdump_prune import vzdump_prune_actions

    return build_actions() + vzdump_prune_actions() + (pbs_actions() if ctx.config.get(CONF_PBS) else []) + restore_test_actions()


@hookimpl
def roost_shutdown(ctx: IntegrationContext) -> None:
    collector = ctx.data.pop(DATA_COLLECTOR, None)
    if collector is not None:
        collector.close()
