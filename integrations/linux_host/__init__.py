"""The linux_host integration: CPU, memory, disks, network, sensors, processes and services of the host, via psutil."""

from __future__ import annotations

import sys
from typing import Any

import voluptuous as vol

from roost.core import hookimpl
from roost.core.actions import ActionContext, ActionError, ActionSpec
from roost.core.integration import IntegrationContext, NotAvailable

from .collector import Collector
from .const import (
    CONF_IGNORE_INTERFACES,
    CONF_IGNORE_MOUNTS,
    CONF_PROC_ROOT,
    CONF_SERVICES,
    CONF_SYS_ROOT,
    CONF_TOP_PROCESSES,
    DEFAULT_IGNORE_INTERFACES,
    DEFAULT_IGNORE_MOUNTS,
    DEFAULT_PROC_ROOT,
    DEFAULT_SERVICES,
    DEFAULT_SYS_ROOT,
    DEFAULT_TOP_PROCESSES,
    MAX_TOP_PROCESSES,
    METRIC_FIELDS,
    READS,
)

DATA_COLLECTOR = "collector"


def _int(value: Any) -> int:
    # bool is an int to Python; "top_processes = true" is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise vol.Invalid("expected a whole number")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid("expected true or false")
    return value


_GLOBS = vol.All([vol.All(str, vol.Length(min=1))], vol.Coerce(list))

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_TOP_PROCESSES, default=DEFAULT_TOP_PROCESSES): vol.All(
            _int, vol.Range(min=0, max=MAX_TOP_PROCESSES, msg=f"must be between 0 and {MAX_TOP_PROCESSES}")
        ),
        vol.Optional(CONF_IGNORE_MOUNTS, default=list(DEFAULT_IGNORE_MOUNTS)): _GLOBS,
        vol.Optional(CONF_IGNORE_INTERFACES, default=list(DEFAULT_IGNORE_INTERFACES)): _GLOBS,
        vol.Optional(CONF_SERVICES, default=DEFAULT_SERVICES): _bool,
        vol.Optional(CONF_PROC_ROOT, default=DEFAULT_PROC_ROOT): vol.All(str, vol.IsDir(msg="not a directory")),
        vol.Optional(CONF_SYS_ROOT, default=DEFAULT_SYS_ROOT): vol.All(str, vol.IsDir(msg="not a directory")),
    },
    extra=vol.PREVENT_EXTRA,
)


def _collector(ctx: IntegrationContext) -> Collector:
    return ctx.data[DATA_COLLECTOR]


@hookimpl
def roost_setup(ctx: IntegrationContext) -> None:
    if not sys.platform.startswith("linux"):
        raise NotAvailable(f"linux_host reads Linux's /proc and /sys; this host runs {sys.platform}")
    collector = Collector(ctx.config)
    collector.start()
    ctx.data[DATA_COLLECTOR] = collector


@hookimpl
def roost_collect(ctx: IntegrationContext) -> dict[str, Any]:
    return _collector(ctx).collect()


@hookimpl
def roost_metric_fields(ctx: IntegrationContext) -> dict[str, dict[str, str]]:
    return {name: dict(meta) for name, meta in METRIC_FIELDS.items()}


@hookimpl
def roost_capabilities(ctx: IntegrationContext) -> list[str]:
    return _collector(ctx).capabilities()


async def disk_usage(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Measure one reported filesystem now, as the collector would (an automation confirming a stale sample)."""
    import asyncio

    collector: Collector = ctx.data[DATA_COLLECTOR]
    entry = await asyncio.to_thread(collector.disk_usage, params["mount"])
    if entry is None:
        raise ActionError(f"{params['mount']} is not one of the filesystems this node reports; see its Disks section")
    if "percent" not in entry:
        raise ActionError(f"{params['mount']}: {entry.get('error', 'cannot be measured')}")
    return {
        "mount": entry["mount"],
        "device": entry.get("device", ""),
        "fstype": entry.get("fstype", ""),
        "total_bytes": entry["total_bytes"],
        "used_bytes": entry["used_bytes"],
        "free_bytes": entry["free_bytes"],
        "used_percent": entry["percent"],
    }


@hookimpl
def roost_actions(ctx: IntegrationContext) -> list[ActionSpec]:
    return [
        ActionSpec(
            name="linux_host.disk_usage",
            capability="host.metrics.read",
            handler=disk_usage,
            schema=vol.Schema({vol.Required("mount"): vol.All(str, vol.Length(min=1, max=4096))}, extra=vol.PREVENT_EXTRA),
            description="Measure one of the node's filesystems now (total, used, free bytes and used percent, like df).",
            idempotent=True,
            timeout=30.0,
        )
    ]


@hookimpl
def roost_shutdown(ctx: IntegrationContext) -> None:
    collector = ctx.data.pop(DATA_COLLECTOR, None)
    if collector is not None:
        collector.close()
