"""The backup actions the hub may ask for, each under its capability; retention and overwriting restores are signed."""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from roost.core.actions import ActionContext, ActionError, ActionSpec

from .const import (
    ACTION_APPROVE,
    ACTION_PRUNE,
    ACTION_PRUNE_APPROVED,
    ACTION_PRUNE_PREVIEW,
    ACTION_RESTORE,
    ACTION_RESTORE_OVERWRITE,
    ACTION_RESTORE_TEST,
    ACTION_REVOKE,
    ACTION_RUN,
    ACTION_SNAPSHOTS,
    ACTION_VERIFY,
    CAP_READ,
    CAP_RESTORE,
    CAP_RUN,
    RETENTION_KEYS,
)
from .inventory import Backups
from .records import rule_key

DATA_BACKUPS = "backups"
_PATH = vol.All(str, vol.Length(min=1, max=4096), vol.Match(r"^/", msg="must be an absolute path"))
_SNAPSHOT = vol.All(str, vol.Match(r"^[A-Za-z0-9_.:{}%-]{1,200}$", msg="expected a snapshot id or archive name"))
_TAG = vol.All(str, vol.Match(r"^[A-Za-z0-9_.:-]{1,100}$", msg="a tag of letters, digits, _ . : -"))


def _no_dotdot(value: str) -> str:
    if "/../" in value + "/" or value.endswith("/.."):
        raise vol.Invalid("must not contain '..'")
    return value


def _keeps_something(rule: dict[str, Any]) -> dict[str, Any]:
    if not any(rule.get(k) for k in RETENTION_KEYS):
        raise vol.Invalid("a retention rule must keep something: set at least one of " + ", ".join(RETENTION_KEYS))
    return rule


RETENTION = vol.All(
    vol.Schema({vol.Optional(k, default=0): vol.All(int, vol.Range(min=0, max=100000)) for k in RETENTION_KEYS}, extra=vol.PREVENT_EXTRA),
    _keeps_something,
)


def _backups(ctx: ActionContext) -> Backups:
    return ctx.data[DATA_BACKUPS]


def build_actions(names: list[str]) -> list[ActionSpec]:
    repo = vol.In(names, msg=f"must be one of this host's repositories: {', '.join(names)}")

    async def run(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        return await _backups(ctx).backup(params["repository"], params, ctx.progress, ctx.job_id)

    async def snapshots(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        return await _backups(ctx).list_snapshots(params["repository"])

    async def verify(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        return await _backups(ctx).verify(params["repository"], params, ctx.progress, ctx.job_id)

    async def restore_test(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        return await _backups(ctx).restore_test(params["repository"], params, ctx.progress, ctx.job_id)

    async def preview(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        return await _backups(ctx).prune(params["repository"], params["retention"], dry_run=True, job_id=ctx.job_id, how="dry run")

    async def prune(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        # The executor verified the operator's envelope for exactly these parameters before this runs.
        nonce = (ctx.envelope or {}).get("nonce", "")
        return await _backups(ctx).prune(params["repository"], params["retention"], dry_run=False, job_id=ctx.job_id, how=f"signed envelope {nonce[:12]}")

    async def approve(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        backups = _backups(ctx)
        backups.tool(params["repository"])
        entry = backups.approvals.approve(params["repository"], params["retention"], ctx.envelope or {})
        backups._dirty.add(params["repository"])
        return {"repository": params["repository"], "approved_rule": entry["rule"], "output": f"retention {entry['rule']} approved for {params['repository']} on this host"}

    async def revoke(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        found = _backups(ctx).approvals.revoke(params["repository"])
        return {"repository": params["repository"], "revoked": found, "output": "approval revoked" if found else "there was no approval"}

    async def prune_approved(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        backups = _backups(ctx)
        approval = backups.check_approved(params["repository"], params["retention"])
        if params.get("dry_run"):
            return await backups.prune(params["repository"], params["retention"], dry_run=True, job_id=ctx.job_id, how="dry run")
        return await backups.prune(params["repository"], params["retention"], dry_run=False, job_id=ctx.job_id, how=f"signed rule {str(approval.get('nonce', ''))[:12]}")

    async def restore(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        return await _backups(ctx).restore(params["repository"], params, overwrite=False, progress=ctx.progress)

    async def restore_overwrite(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        return await _backups(ctx).restore(params["repository"], params, overwrite=True, progress=ctx.progress)

    base = {vol.Required("repository"): repo}
    run_schema = vol.Schema(
        {
            **base,
            vol.Optional("paths", default=list): [vol.All(_PATH, _no_dotdot)],
            vol.Optional("excludes", default=list): [vol.All(str, vol.Length(min=1, max=1000))],
            vol.Optional("tags", default=list): [_TAG],
            vol.Optional("policy"): vol.All(str, vol.Length(max=100)),
        }
    )
    retention = vol.Schema({**base, vol.Required("retention"): RETENTION})
    restore_schema = vol.Schema({**base, vol.Required("snapshot"): _SNAPSHOT, vol.Required("target"): vol.All(_PATH, _no_dotdot), vol.Optional("include", default=list): [_PATH]})
    return [
        ActionSpec(ACTION_RUN, CAP_RUN, run, run_schema, "back up the repository's paths now, with live progress", timeout=24 * 3600),
        ActionSpec(ACTION_SNAPSHOTS, CAP_READ, snapshots, vol.Schema(base), "list the repository's snapshots", idempotent=True, timeout=300),
        ActionSpec(
            ACTION_VERIFY,
            CAP_RUN,
            verify,
            vol.Schema({**base, vol.Optional("read_data", default=False): bool}),
            "check the repository (restic: the next data subset of a rotation; read_data reads everything, borg: --verify-data)",
            timeout=24 * 3600,
        ),
        ActionSpec(
            ACTION_RESTORE_TEST,
            CAP_RUN,
            restore_test,
            vol.Schema({**base, vol.Optional("snapshot"): _SNAPSHOT, vol.Optional("sample_files"): vol.All(int, vol.Range(min=1, max=10000))}),
            "restore a sample of a snapshot into scratch space this agent makes, compare content hashes, remove the scratch copy",
            timeout=6 * 3600,
        ),
        ActionSpec(ACTION_PRUNE_PREVIEW, CAP_READ, preview, retention, "dry run of a retention rule: what it would keep and remove", idempotent=True, timeout=600),
        ActionSpec(ACTION_PRUNE, CAP_RUN, prune, retention, "delete the snapshots a retention rule does not keep (signed)", destructive=True, target="repository", timeout=6 * 3600),
        ActionSpec(
            ACTION_APPROVE,
            CAP_RUN,
            approve,
            retention,
            "approve, once, a retention rule for scheduled pruning of this repository (signed; a different rule is refused)",
            destructive=True,
            target="repository",
            timeout=30,
        ),
        ActionSpec(ACTION_REVOKE, CAP_RUN, revoke, vol.Schema(base), "withdraw the approved retention rule of a repository", timeout=30),
        ActionSpec(
            ACTION_PRUNE_APPROVED,
            CAP_RUN,
            prune_approved,
            vol.Schema({**base, vol.Required("retention"): RETENTION, vol.Optional("dry_run", default=False): bool}),
            "prune by the retention rule the operator approved for this repository; any other rule is refused",
            timeout=6 * 3600,
        ),
        ActionSpec(ACTION_RESTORE, CAP_RESTORE, restore, restore_schema, "restore a snapshot to a new (absent or empty) path", timeout=24 * 3600),
        ActionSpec(
            ACTION_RESTORE_OVERWRITE,
            CAP_RESTORE,
            restore_overwrite,
            restore_schema,
            "restore a snapshot over an existing path (signed)",
            destructive=True,
            target="target",
            timeout=24 * 3600,
        ),
    ]


__all__ = ["build_actions", "rule_key", "ActionError"]
