"""vzdump retention on a PVE storage through the PVE API: a dry run any reader may ask for, and the prune itself,
signed for the guest (prunebackups with a keep-* rule, as `pvesm prune-backups` does)."""

from __future__ import annotations

import asyncio
from typing import Any

import voluptuous as vol

from roost.core.actions import ActionContext, ActionError, ActionSpec

from .actions import _GUEST, STORAGE_ID_RE, Runner, check_envelope, refuse_if_read_only
from .const import CAP_MANAGE, CAP_READ
from .pbs_actions import KEEP_KEYS, RETENTION

PREVIEW = "proxmox.vzdump.prune.preview"
PRUNE = "proxmox.vzdump.prune"
SCHEMA_VZDUMP_PRUNE = vol.Schema(
    {
        **_GUEST,
        vol.Required("storage", description="Storage that holds the guest's vzdump archives"): vol.All(str, vol.Match(STORAGE_ID_RE, msg="not a storage id")),
        vol.Required("retention"): RETENTION,
    }
)


def _rule(retention: dict[str, Any]) -> str:
    return ",".join(f"{key.replace('_', '-')}={retention[key]}" for key in KEEP_KEYS if retention.get(key))


async def _marks(run: Runner, params: dict[str, Any]) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    guest = await run.find_guest(params["vmid"], params.get("node"))
    assert guest is not None
    items = await run.call(
        "get",
        f"nodes/{guest.node}/storage/{params['storage']}/prunebackups",
        what=f"list what a prune of {guest.label}'s backups on {params['storage']} keeps",
        node=guest.node,
        **{"prune-backups": _rule(params["retention"]), "vmid": guest.vmid, "type": guest.type},
    )
    keep, remove = [], []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("volid"), str):
            continue
        entry = {"volid": item["volid"], "time": int(item.get("ctime") or 0), "protected": item.get("mark") == "protected"}
        (remove if item.get("mark") == "remove" else keep).append(entry)
    return guest, keep, remove


def _result(params: dict[str, Any], guest: Any, keep: list[dict[str, Any]], remove: list[dict[str, Any]], *, dry_run: bool) -> dict[str, Any]:
    verb = "would remove" if dry_run else "removed"
    return {
        "vmid": guest.vmid,
        "node": guest.node,
        "storage": params["storage"],
        "rule": _rule(params["retention"]),
        "dry_run": dry_run,
        "keep": keep,
        "remove": remove,
        "output": f"{guest.label} on {params['storage']}: keeps {len(keep)}, {verb} {len(remove)} vzdump archives",
    }


async def prune_preview(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    run = Runner(ctx, PREVIEW)
    try:
        guest, keep, remove = await _marks(run, params)
        return _result(params, guest, keep, remove, dry_run=True)
    finally:
        await asyncio.to_thread(run.close)


async def prune(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    refuse_if_read_only(ctx, PRUNE)
    check_envelope(ctx, PRUNE_SPEC, params)
    run = Runner(ctx, PRUNE)
    try:
        guest, keep, remove = await _marks(run, params)
        if not remove:
            await run.progress(f"nothing of {guest.label} on {params['storage']} to remove", 100)
            return _result(params, guest, keep, remove, dry_run=False)
        what = f"prune {guest.label}'s backups on {params['storage']}"
        reply = await run.call(
            "delete",
            f"nodes/{guest.node}/storage/{params['storage']}/prunebackups",
            what=what,
            node=guest.node,
            **{"prune-backups": _rule(params["retention"]), "vmid": guest.vmid, "type": guest.type},
        )
        task = await run.run_task(reply, what=what, node=guest.node, end=95)
        if task.exit_status != "OK":
            raise ActionError(f"{PRUNE}: {what} ended with {task.exit_status}")
        return _result(params, guest, keep, remove, dry_run=False) | {"upid": task.upid}
    finally:
        await asyncio.to_thread(run.close)


PREVIEW_SPEC = ActionSpec(
    PREVIEW, CAP_READ, prune_preview, SCHEMA_VZDUMP_PRUNE,
    "Dry run of a vzdump prune: which of a guest's archives on a storage a retention rule keeps and removes.",
    idempotent=True, timeout=300, pickers={"vmid": "proxmox.guests[].vmid"},
)
PRUNE_SPEC = ActionSpec(
    PRUNE, CAP_MANAGE, prune, SCHEMA_VZDUMP_PRUNE,
    "Prune a guest's vzdump archives on a storage by a retention rule (signed for the guest).",
    destructive=True, target="vmid", timeout=1800, pickers={"vmid": "proxmox.guests[].vmid"},
)


def vzdump_prune_actions() -> list[ActionSpec]:
    return [PREVIEW_SPEC, PRUNE_SPEC]
