"""PBS retention through the PBS API: a dry run any reader may ask for, and the prune itself, signed and only where the host owner allows it."""

from __future__ import annotations

import asyncio
from typing import Any

import voluptuous as vol

from roost.core.actions import ActionContext, ActionError, ActionRefused, ActionSpec

from .client import ConfigError, ProxmoxClient, settings_from_config
from .const import CAP_MANAGE, CAP_READ, CONF_API_TIMEOUT, CONF_PBS, DEFAULT_API_TIMEOUT, DEFAULT_PBS_PORT
from .errors import ProxmoxApiError

CONF_ALLOW_PRUNE = "allow_prune"
KEEP_KEYS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
_NAME = vol.All(str, vol.Match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", msg="must be a datastore name"))
_GROUP = vol.All(str, vol.Match(r"^(vm|ct|host)/[A-Za-z0-9_.-]{1,64}$", msg="must be a backup group such as vm/100, ct/200 or host/name"))


def _keeps(rule: dict[str, Any]) -> dict[str, Any]:
    if not any(rule.get(k) for k in KEEP_KEYS):
        raise vol.Invalid("a retention rule must keep something: set at least one of " + ", ".join(KEEP_KEYS))
    return rule


RETENTION = vol.All(vol.Schema({vol.Optional(k, default=0): vol.All(int, vol.Range(min=0, max=100000)) for k in KEEP_KEYS}, extra=vol.PREVENT_EXTRA), _keeps)
SCHEMA_PRUNE = vol.Schema({vol.Required("datastore"): _NAME, vol.Required("group"): _GROUP, vol.Required("retention"): RETENTION})


def _client(ctx: ActionContext, name: str) -> ProxmoxClient:
    table = ctx.config.get(CONF_PBS)
    if not table:
        raise ActionError(f"{name}: no Proxmox Backup Server is configured here (integrations.proxmox.pbs)")
    try:
        settings = settings_from_config(
            {**table, CONF_API_TIMEOUT: ctx.config.get(CONF_API_TIMEOUT, DEFAULT_API_TIMEOUT)},
            where="integrations.proxmox.pbs",
            service="PBS",
            default_port=DEFAULT_PBS_PORT,
            local_default=False,
        )
    except ConfigError as err:
        raise ActionError(f"{name}: {err}") from None
    assert settings is not None
    return ProxmoxClient(settings)


async def _prune(ctx: ActionContext, params: dict[str, Any], *, dry_run: bool, name: str) -> dict[str, Any]:
    kind, _, ident = params["group"].partition("/")
    data: dict[str, Any] = {"backup-type": kind, "backup-id": ident, "dry-run": 1 if dry_run else 0}
    for key, count in params["retention"].items():
        if count:
            data[key.replace("_", "-")] = count
    client = _client(ctx, name)
    what = f"{'dry-run ' if dry_run else ''}prune {params['group']} on {params['datastore']}"
    try:
        items = await asyncio.to_thread(client.post, f"admin/datastore/{params['datastore']}/prune", what=what, **data)
    except ProxmoxApiError as err:
        raise ActionError(str(err)) from None
    finally:
        await asyncio.to_thread(client.close)
    keep, remove = [], []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("backup-time") is None:
            continue
        entry = {"group": f"{item.get('backup-type')}/{item.get('backup-id')}", "time": int(item["backup-time"]), "protected": bool(item.get("protected"))}
        (keep if item.get("keep") else remove).append(entry)
    verb = "would remove" if dry_run else "removed"
    return {
        "datastore": params["datastore"],
        "group": params["group"],
        "dry_run": dry_run,
        "keep": keep,
        "remove": remove,
        "output": f"{params['group']} on {params['datastore']}: keeps {len(keep)}, {verb} {len(remove)} snapshots",
    }


async def prune_preview(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return await _prune(ctx, params, dry_run=True, name="proxmox.pbs.prune.preview")


async def prune(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    name = "proxmox.pbs.prune"
    if ctx.config.get("read_only"):
        raise ActionRefused(f"{name}: the proxmox integration on this agent is read-only (integrations.proxmox.read_only = true)")
    if not (ctx.config.get(CONF_PBS) or {}).get(CONF_ALLOW_PRUNE):
        raise ActionRefused(
            f"{name}: PBS is read-only on this agent; to let signed prunes through, set integrations.proxmox.pbs.allow_prune = true "
            "and give the PBS token Datastore.Prune on that datastore"
        )
    return await _prune(ctx, params, dry_run=False, name=name)


def pbs_actions() -> list[ActionSpec]:
    return [
        ActionSpec("proxmox.pbs.prune.preview", CAP_READ, prune_preview, SCHEMA_PRUNE, "Dry run of a PBS prune: which snapshots of a group a retention rule keeps and removes.", idempotent=True, timeout=300),
        ActionSpec(
            "proxmox.pbs.prune",
            CAP_MANAGE,
            prune,
            SCHEMA_PRUNE,
            "Prune a PBS backup group by a retention rule (signed; needs pbs.allow_prune on the agent).",
            destructive=True,
            target="group",
            timeout=1800,
        ),
    ]
