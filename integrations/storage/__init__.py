"""The storage integration's agent half: SMART, ZFS, md, btrfs and LVM thin pools, and the hub's list of expected targets, watched."""

from __future__ import annotations

import os
from typing import Any

import voluptuous as vol

from roost.core import hookimpl
from roost.core.actions import ActionSpec
from roost.core.config import duration
from roost.core.integration import IntegrationContext

from .actions import action_specs
from .collector import Collector
from .const import CAP_MOUNT, CAP_READ, DEFAULT_COMMAND_INTERVAL, DEFAULT_COMMAND_TIMEOUT, DEFAULT_PATHS, DEFAULT_SMART_INTERVAL, DEFAULT_SMART_TIMEOUT, METRIC_FIELDS, READS
from .targets import MANIFEST_SCHEMA, MountWatch

__all__ = ["CONFIG_SCHEMA", "READS", "SETTINGS_SCHEMA"]


def _seconds(low: float, high: float) -> Any:
    return duration(low, high)


def _roots(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.startswith("/") and v != "/" for v in value):
        raise vol.Invalid('expected a list of absolute directories other than /, such as ["/mnt", "/media"]')
    return [os.path.normpath(v) for v in value]


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise vol.Invalid("expected a command name or path")
    return value


CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional("smart", default=True): bool,
        vol.Optional("zfs", default=True): bool,
        vol.Optional("mdraid", default=True): bool,
        vol.Optional("btrfs", default=True): bool,
        vol.Optional("lvm", default=True): bool,
        # Watch /proc/self/mountinfo so a listed target that goes is reported at once, not at the next cycle.
        vol.Optional("watch", default=True): bool,
        # Where storage.mount may mount a listed USB drive; a manifest naming another place is refused here.
        vol.Optional("mount_roots", default=lambda: ["/mnt", "/media"]): _roots,
        vol.Optional("smart_interval", default=DEFAULT_SMART_INTERVAL): _seconds(60, 7 * 86400),
        vol.Optional("smart_timeout", default=DEFAULT_SMART_TIMEOUT): _seconds(1, 600),
        vol.Optional("command_interval", default=DEFAULT_COMMAND_INTERVAL): _seconds(0, 3600),
        vol.Optional("command_timeout", default=DEFAULT_COMMAND_TIMEOUT): _seconds(0.5, 120),
        **{vol.Optional(key, default=value): _path for key, value in DEFAULT_PATHS.items()},
    }
)

# What the hub may set for this integration on a node: its manifest of expected targets (roost.core.integration,
# IntegrationContext.settings). The agent refuses anything else, keeping the manifest it had.
SETTINGS_SCHEMA = MANIFEST_SCHEMA


@hookimpl
def roost_setup(ctx: IntegrationContext) -> None:
    collector = Collector(ctx.config, ctx.data_dir / "storage", ctx.logger)
    ctx.data["collector"] = collector
    ctx.data["settings"] = lambda: ctx.settings
    if ctx.config["watch"]:
        watch = MountWatch(lambda: list(ctx.settings.get("targets") or []), lambda: ctx.report_now(), collector.block_ids, mountinfo=ctx.config["mountinfo"], logger=ctx.logger)
        try:
            watch.start()
        except OSError as err:
            ctx.logger.warning("storage: cannot watch %s (%s); targets are checked each cycle only", ctx.config["mountinfo"], err)
        else:
            ctx.data["watch"] = watch


@hookimpl
def roost_collect(ctx: IntegrationContext) -> dict[str, Any]:
    out = ctx.data["collector"].collect(ctx.settings)
    watch = ctx.data.get("watch")
    out["state"]["watch"] = {"active": watch is not None, "mount_events": watch.events if watch else 0}
    return out


@hookimpl
def roost_metric_fields(ctx: IntegrationContext) -> dict[str, dict[str, str]]:
    return METRIC_FIELDS


@hookimpl
def roost_capabilities(ctx: IntegrationContext) -> list[str]:
    return [CAP_READ, CAP_MOUNT]


@hookimpl
def roost_actions(ctx: IntegrationContext) -> list[ActionSpec]:
    return action_specs(ctx.config)


@hookimpl
def roost_shutdown(ctx: IntegrationContext) -> None:
    watch = ctx.data.pop("watch", None)
    if watch is not None:
        watch.stop()
