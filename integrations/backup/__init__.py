"""The backup integration's agent half: restic and borg repositories this host owns, their inventory, and the actions that back up, verify, restore-test and prune."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import voluptuous as vol

from roost.core import hookimpl
from roost.core.actions import ActionSpec
from roost.core.integration import IntegrationContext, NotAvailable

from .const import (
    CAP_READ,
    CAP_RESTORE,
    CAP_RUN,
    CONF_BINARY,
    CONF_CHECK_SUBSETS,
    CONF_ENV,
    CONF_EXCLUDES,
    CONF_INVENTORY_REFRESH,
    CONF_KIND,
    CONF_NAME,
    CONF_PASSWORD_COMMAND,
    CONF_PASSWORD_FILE,
    CONF_PATHS,
    CONF_REPOSITORIES,
    CONF_REPOSITORY,
    CONF_RESTORE_MAX_BYTES,
    CONF_RESTORE_ROOTS,
    CONF_RESTORE_SAMPLE,
    CONF_SCRATCH_DIR,
    CONF_TICK_SECONDS,
    CONF_UPLOAD_LIMIT,
    DEFAULT_BINARIES,
    DEFAULT_CHECK_SUBSETS,
    DEFAULT_INVENTORY_REFRESH,
    DEFAULT_RESTORE_MAX_BYTES,
    DEFAULT_RESTORE_SAMPLE,
    DEFAULT_TICK_SECONDS,
    KINDS,
    METRIC_FIELDS,
    READS,
)
from .tools import Repository

__all__ = ["CONFIG_SCHEMA", "READS"]

DATA_BACKUPS = "backups"
WHERE = "integrations.backup"
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _absolute(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise vol.Invalid("expected an absolute path")
    return value


def _one_secret(table: dict[str, Any]) -> dict[str, Any]:
    if bool(table.get(CONF_PASSWORD_FILE)) == bool(table.get(CONF_PASSWORD_COMMAND)):
        raise vol.Invalid(
            f"repository {table.get(CONF_NAME)!r}: set exactly one of {CONF_PASSWORD_FILE} (a file only the agent's user can read) "
            f"or {CONF_PASSWORD_COMMAND}; the secret stays on this host"
        )
    return table


REPOSITORY_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required(CONF_NAME): vol.All(str, vol.Match(NAME_RE, msg="a name of letters, digits, _ . - (at most 64)")),
            vol.Required(CONF_KIND): vol.In(KINDS, msg="must be restic or borg"),
            vol.Required(CONF_REPOSITORY): vol.All(str, vol.Length(min=1, max=1000)),
            vol.Optional(CONF_PASSWORD_FILE): vol.All(str, vol.IsFile(msg="no such file")),
            vol.Optional(CONF_PASSWORD_COMMAND): vol.All(str, vol.Length(min=1)),
            vol.Optional(CONF_PATHS, default=list): [_absolute],
            vol.Optional(CONF_EXCLUDES, default=list): [str],
            vol.Optional(CONF_ENV, default=dict): {vol.Match(r"^[A-Z_][A-Z0-9_]*$"): str},
            vol.Optional(CONF_BINARY): _absolute,
            vol.Optional(CONF_UPLOAD_LIMIT): vol.All(int, vol.Range(min=1)),
        },
        extra=vol.PREVENT_EXTRA,
    ),
    _one_secret,
)


def _unique(repos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = [r[CONF_NAME] for r in repos]
    doubles = sorted({n for n in names if names.count(n) > 1})
    if doubles:
        raise vol.Invalid(f"repository names must be unique; {', '.join(doubles)} appear more than once")
    return repos


CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_REPOSITORIES, default=list): vol.All([REPOSITORY_SCHEMA], _unique),
        vol.Optional(CONF_SCRATCH_DIR): _absolute,
        vol.Optional(CONF_RESTORE_ROOTS, default=list): [_absolute],
        vol.Optional(CONF_INVENTORY_REFRESH, default=DEFAULT_INVENTORY_REFRESH): vol.All(vol.Coerce(float), vol.Range(min=0, max=86400)),
        vol.Optional(CONF_RESTORE_SAMPLE, default=DEFAULT_RESTORE_SAMPLE): vol.All(int, vol.Range(min=1, max=10000)),
        vol.Optional(CONF_RESTORE_MAX_BYTES, default=DEFAULT_RESTORE_MAX_BYTES): vol.All(int, vol.Range(min=0)),
        vol.Optional(CONF_CHECK_SUBSETS, default=DEFAULT_CHECK_SUBSETS): vol.All(int, vol.Range(min=1, max=1000)),
        # Hub: how often the policy scheduler looks for due backups, checks, restore tests and prunes.
        vol.Optional(CONF_TICK_SECONDS, default=DEFAULT_TICK_SECONDS): vol.All(vol.Coerce(float), vol.Range(min=1, max=3600)),
    },
    extra=vol.PREVENT_EXTRA,
)


def repositories_from_config(config: dict[str, Any]) -> list[Repository]:
    return [
        Repository(
            name=table[CONF_NAME],
            kind=table[CONF_KIND],
            location=table[CONF_REPOSITORY],
            password_file=table.get(CONF_PASSWORD_FILE),
            password_command=table.get(CONF_PASSWORD_COMMAND),
            paths=tuple(table.get(CONF_PATHS, ())),
            excludes=tuple(table.get(CONF_EXCLUDES, ())),
            env=dict(table.get(CONF_ENV, {})),
            binary=table.get(CONF_BINARY, ""),
            upload_limit_kib=table.get(CONF_UPLOAD_LIMIT),
        )
        for table in config.get(CONF_REPOSITORIES, [])
    ]


@hookimpl
def roost_setup(ctx: IntegrationContext) -> None:
    repos = repositories_from_config(ctx.config)
    if not repos:
        raise NotAvailable(
            "no repositories configured: add [[integrations.backup.repositories]] with name, kind (restic or borg), "
            "repository and password_file to this agent's config"
        )
    missing = sorted({r.kind for r in repos if not (r.binary and os.access(r.binary, os.X_OK)) and not shutil.which(DEFAULT_BINARIES[r.kind])})
    for kind in missing:
        ctx.logger.error("backup: %s is not installed on this host: apt-get install %s (or set binary in its repository)", kind, "borgbackup" if kind == "borg" else kind)
    base = Path(ctx.data_dir) / "backup"
    scratch_root = Path(ctx.config[CONF_SCRATCH_DIR]) if ctx.config.get(CONF_SCRATCH_DIR) else base / "scratch"
    from .inventory import Backups  # only with repositories configured

    backups = Backups(repos, base, scratch_root, ctx.config)
    swept = backups.scratch.sweep()
    if swept:
        ctx.logger.info("backup: removed %d scratch directories left by an interrupted restore test", swept)
    ctx.data[DATA_BACKUPS] = backups


@hookimpl
async def roost_collect(ctx: IntegrationContext) -> dict[str, Any]:
    return await ctx.data[DATA_BACKUPS].collect()


@hookimpl
def roost_metric_fields(ctx: IntegrationContext) -> dict[str, dict[str, str]]:
    return {name: dict(meta) for name, meta in METRIC_FIELDS.items()}


@hookimpl
def roost_capabilities(ctx: IntegrationContext) -> list[str]:
    return [CAP_READ, CAP_RUN, CAP_RESTORE]


@hookimpl
def roost_actions(ctx: IntegrationContext) -> list[ActionSpec]:
    from .actions import build_actions

    return build_actions([r.name for r in ctx.data[DATA_BACKUPS].repos.values()])
