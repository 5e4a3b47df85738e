"""The backup integration's hub half: policies, the scheduler, verdicts, the Backups page and node panel, the API and the alert rule kinds.

Agents never import this module. The hub holds no repository secret: it sees
names and results, queues named actions through ctx.jobs (grants, ceiling and
signatures all apply on the agent) and keeps policies in ctx.store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from roost.core import hookimpl
from roost.core.hub_integration import OPERATOR, AlertRuleKind, ApiRoute, HubContext, NodePanel, Page, RouteError, RouteRequest, as_dict

from . import pages
from .actions import RETENTION
from .alerting import rule_kinds
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
)
from .policies import repositories, valid_policy_id
from .service import BackupService

DATA_SERVICE = "service"
_SNAPSHOT = vol.All(str, vol.Match(r"^[A-Za-z0-9_.:{}%-]{1,200}$", msg="expected a snapshot id or archive name"))
_PATH = vol.All(str, vol.Match(r"^/", msg="must be an absolute path"), vol.Length(max=4096))
_ENVELOPE = vol.Any(None, dict)


def service(ctx: HubContext) -> BackupService:
    found = ctx.data.get(DATA_SERVICE)
    if found is None:
        found = ctx.data[DATA_SERVICE] = BackupService(ctx)
    return found


@hookimpl
async def roost_hub_setup(ctx: HubContext) -> None:
    if ctx.store is None:
        raise RuntimeError("this hub has no integration store; backup policies need one")
    service(ctx).start()


@hookimpl
async def roost_hub_shutdown(ctx: HubContext) -> None:
    found = ctx.data.get(DATA_SERVICE)
    if found is not None:
        await found.stop()


@hookimpl
def roost_hub_pages(ctx: HubContext) -> list[Page]:
    return [Page("/backups", pages.backups_page, nav="Backups", order=40), Page("/backups/{node_id}/{repository}", pages.repository_page)]


@hookimpl
def roost_hub_node_panels(ctx: HubContext, node: Mapping[str, Any], state: Any) -> list[NodePanel]:
    return [NodePanel("Backups", "_panel.html", pages.panel_context(dict(node), state), order=30, stylesheets=("backups.css",))]


@hookimpl
def roost_hub_alert_rule_kinds(ctx: HubContext) -> list[AlertRuleKind]:
    return rule_kinds(ctx)


# ------------------------------------------------------------------ the API


async def _repo(request: RouteRequest) -> tuple[str, str, dict[str, Any]]:
    node_id, name = request.match_info["node_id"], request.match_info["repository"]
    detail = await request.hub.nodes.get(node_id)
    if detail is None:
        raise RouteError(f"no node {node_id!r}", 404)
    repo = repositories(as_dict(detail.get("state")).get("backup")).get(name)
    if repo is None:
        raise RouteError(f"node {node_id} reports no backup repository {name!r} (configured on that agent? backup.read granted?)", 404)
    return node_id, name, repo


async def _job(request: RouteRequest, action: str, params: dict[str, Any], envelope: dict[str, Any] | None = None) -> dict[str, Any]:
    from roost.core.hub.jobs import JobError

    node_id = request.match_info["node_id"]
    if envelope is not None:
        # The operator signed exactly these parameters; they are sent as signed (the agent checks them again).
        signed = envelope.get("params") if isinstance(envelope.get("params"), dict) else {}
        if signed.get("repository") != params.get("repository"):
            raise RouteError(f"the envelope is signed for repository {signed.get('repository')!r}, not {params.get('repository')!r}", 409)
        params = dict(signed)
    try:
        job = await request.hub.jobs.create(node_id, action, params, actor=request.actor, envelope=envelope)
    except JobError as err:
        raise RouteError(str(err), 409) from None
    return {"job": job}


async def get_overview(request: RouteRequest) -> dict[str, Any]:
    data = await service(request.hub).overview()
    return {"rows": [pages.api_row(r) for r in data["rows"]], "counts": data["counts"], "at": data["at"]}


async def list_policies(request: RouteRequest) -> dict[str, Any]:
    return {"policies": await service(request.hub).policies()}


async def add_policy(request: RouteRequest) -> dict[str, Any]:
    return {"policy": await service(request.hub).save_policy(request.params, actor=request.actor)}


def _policy_id(request: RouteRequest) -> str:
    policy_id = request.match_info["policy_id"]
    if not valid_policy_id(policy_id):
        raise RouteError(f"{policy_id!r} is not a policy id", 404)
    return policy_id


async def get_policy(request: RouteRequest) -> dict[str, Any]:
    return {"policy": await service(request.hub).policy(_policy_id(request))}


async def put_policy(request: RouteRequest) -> dict[str, Any]:
    return {"policy": await service(request.hub).save_policy(request.params, actor=request.actor, policy_id=_policy_id(request))}


async def delete_policy(request: RouteRequest) -> dict[str, Any]:
    await service(request.hub).delete_policy(_policy_id(request), actor=request.actor)
    return {"deleted": True}


async def get_repository(request: RouteRequest) -> dict[str, Any]:
    node_id, _, repo = await _repo(request)
    return {"node_id": node_id, "repository": repo}


async def run_backup(request: RouteRequest) -> dict[str, Any]:
    _, name, _ = await _repo(request)
    return await _job(request, ACTION_RUN, {"repository": name, **request.params})


async def list_snapshots(request: RouteRequest) -> dict[str, Any]:
    _, name, _ = await _repo(request)
    return await _job(request, ACTION_SNAPSHOTS, {"repository": name})


async def verify(request: RouteRequest) -> dict[str, Any]:
    _, name, _ = await _repo(request)
    return await _job(request, ACTION_VERIFY, {"repository": name, **request.params})


async def restore_test(request: RouteRequest) -> dict[str, Any]:
    _, name, _ = await _repo(request)
    return await _job(request, ACTION_RESTORE_TEST, {"repository": name, **request.params})


async def prune_preview(request: RouteRequest) -> dict[str, Any]:
    _, name, _ = await _repo(request)
    return await _job(request, ACTION_PRUNE_PREVIEW, {"repository": name, "retention": request.params["retention"]})


async def prune(request: RouteRequest) -> dict[str, Any]:
    """One signed prune, or (``approved: true``) a prune by the rule the operator signed for this repository."""
    _, name, _ = await _repo(request)
    params = {"repository": name, "retention": request.params["retention"]}
    if request.params.get("approved"):
        return await _job(request, ACTION_PRUNE_APPROVED, params)
    return await _job(request, ACTION_PRUNE, params, request.params.get("envelope"))


async def approve(request: RouteRequest) -> dict[str, Any]:
    _, name, _ = await _repo(request)
    return await _job(request, ACTION_APPROVE, {"repository": name, "retention": request.params["retention"]}, request.params.get("envelope"))


async def revoke(request: RouteRequest) -> dict[str, Any]:
    _, name, _ = await _repo(request)
    return await _job(request, ACTION_REVOKE, {"repository": name})


async def restore(request: RouteRequest) -> dict[str, Any]:
    """To a new path (backup.restore), or over an existing one with the operator's envelope (backup.restore.overwrite)."""
    _, name, _ = await _repo(request)
    params = {"repository": name, "snapshot": request.params["snapshot"], "target": request.params["target"], "include": request.params.get("include", [])}
    if request.params.get("overwrite"):
        return await _job(request, ACTION_RESTORE_OVERWRITE, params, request.params.get("envelope"))
    return await _job(request, ACTION_RESTORE, params)


_REPO_PATH = "/nodes/{node_id}/repositories/{repository}"
_RETENTION_BODY = vol.Schema({vol.Required("retention"): RETENTION, vol.Optional("envelope"): _ENVELOPE, vol.Optional("approved", default=False): bool})


@hookimpl
def roost_hub_routes(ctx: HubContext) -> list[ApiRoute]:
    return [
        ApiRoute("GET", "/overview", get_overview),
        ApiRoute("GET", "/policies", list_policies),
        ApiRoute("POST", "/policies", add_policy, role=OPERATOR, schema=vol.Schema(dict)),
        ApiRoute("GET", "/policies/{policy_id}", get_policy),
        ApiRoute("PUT", "/policies/{policy_id}", put_policy, role=OPERATOR, schema=vol.Schema(dict)),
        ApiRoute("DELETE", "/policies/{policy_id}", delete_policy, role=OPERATOR),
        ApiRoute("GET", _REPO_PATH, get_repository),
        ApiRoute("POST", _REPO_PATH + "/run", run_backup, role=OPERATOR, schema=vol.Schema({vol.Optional("paths"): [_PATH], vol.Optional("excludes"): [str]})),
        ApiRoute("POST", _REPO_PATH + "/snapshots", list_snapshots, role=OPERATOR, schema=vol.Schema({})),
        ApiRoute("POST", _REPO_PATH + "/verify", verify, role=OPERATOR, schema=vol.Schema({vol.Optional("read_data"): bool})),
        ApiRoute("POST", _REPO_PATH + "/restore-test", restore_test, role=OPERATOR, schema=vol.Schema({vol.Optional("snapshot"): _SNAPSHOT, vol.Optional("sample_files"): int})),
        ApiRoute("POST", _REPO_PATH + "/prune/preview", prune_preview, role=OPERATOR, schema=vol.Schema({vol.Required("retention"): RETENTION})),
        ApiRoute("POST", _REPO_PATH + "/prune", prune, role=OPERATOR, schema=_RETENTION_BODY),
        ApiRoute("POST", _REPO_PATH + "/retention/approve", approve, role=OPERATOR, schema=vol.Schema({vol.Required("retention"): RETENTION, vol.Optional("envelope"): _ENVELOPE})),
        ApiRoute("POST", _REPO_PATH + "/retention/revoke", revoke, role=OPERATOR, schema=vol.Schema({})),
        ApiRoute(
            "POST",
            _REPO_PATH + "/restore",
            restore,
            role=OPERATOR,
            schema=vol.Schema({vol.Required("snapshot"): _SNAPSHOT, vol.Required("target"): _PATH, vol.Optional("include"): [_PATH], vol.Optional("overwrite", default=False): bool, vol.Optional("envelope"): _ENVELOPE}),
        ),
    ]
