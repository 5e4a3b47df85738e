"""The jobs API: a node's actions, running one, the jobs list and detail, cancel, schedules."""

from __future__ import annotations

from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.integration import humanize_invalid
from roost.core.store.jobs import JOB_ACTIVE, JOB_FINAL, JobFilter

from .app import HUB_KEY
from .auth import ROLE_OPERATOR, ROLE_VIEWER, actor_of, requires
from .jobs import JobError, job_view, valid_cron

MAX_BODY = 256 * 1024


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _json(request: web.Request, schema: vol.Schema) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        raw = await request.json() if request.can_read_body else {}
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "body must be JSON"}', content_type="application/json") from None
    try:
        return schema(raw if raw is not None else {})
    except vol.Invalid as err:
        import json

        raise web.HTTPBadRequest(text=json.dumps({"error": f"invalid request: {humanize_invalid(err)}"}), content_type="application/json") from None


RUN_SCHEMA = vol.Schema({vol.Optional("params", default=dict): dict, vol.Optional("envelope"): vol.Any(None, dict)})
SCHEDULE_SCHEMA = vol.Schema(
    {
        vol.Required("node_id"): vol.All(str, vol.Length(min=1, max=64)),
        vol.Required("action"): vol.All(str, vol.Length(min=3, max=200)),
        vol.Optional("params", default=dict): dict,
        vol.Required("cron"): vol.All(str, vol.Length(min=1, max=100)),
        vol.Optional("note", default=""): vol.All(str, vol.Length(max=200)),
    }
)
PATCH_SCHEDULE = vol.Schema({vol.Required("enabled"): bool})
LIST_QUERY = vol.Schema(
    {
        vol.Optional("node"): vol.All(str, vol.Length(max=64)),
        vol.Optional("state"): vol.In([*JOB_ACTIVE, *JOB_FINAL], msg="unknown job state"),
        vol.Optional("action"): vol.All(str, vol.Length(max=200)),
        vol.Optional("schedule"): vol.All(str, vol.Length(max=64)),
        vol.Optional("limit", default=100): vol.All(vol.Coerce(int), vol.Range(min=1, max=1000)),
        vol.Optional("before"): vol.Coerce(float),
    }
)


@requires(ROLE_VIEWER)
async def node_actions(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    node_id = request.match_info["node_id"]
    if await hub.find_node(node_id) is None:
        return _error(404, f"no node with id {node_id!r}")
    allowed = set(await hub.jobs.effective_for(node_id))
    out = []
    for name, described in sorted(hub.jobs.actions.get(node_id, {}).items()):
        capability = described.get("capability", "")
        ok = capability in allowed
        out.append({**described, "allowed": ok, "reason": "" if ok else f"needs {capability}: grant it to this node and allow it in the agent's ceiling"})
    return web.json_response({"node_id": node_id, "online": node_id in hub.jobs.channels, "actions": out})


@requires(ROLE_OPERATOR)
async def run_action(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    body = await _json(request, RUN_SCHEMA)
    try:
        job = await hub.jobs.create(
            request.match_info["node_id"], request.match_info["action"], body["params"], actor=actor_of(request), envelope=body.get("envelope")
        )
    except JobError as err:
        return _error(409, str(err))
    return web.json_response(job_view(job), status=201)


@requires(ROLE_VIEWER)
async def list_jobs(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    try:
        query = LIST_QUERY(dict(request.query))
    except vol.Invalid as err:
        return _error(400, f"invalid query: {humanize_invalid(err)}")
    jobs = await hub.store.list_jobs(
        JobFilter(node_id=query.get("node"), state=query.get("state"), action_prefix=query.get("action"), schedule_id=query.get("schedule"), limit=query["limit"], before=query.get("before"))
    )
    return web.json_response({"jobs": [job_view(j, with_output=False) for j in jobs]})


@requires(ROLE_VIEWER)
async def get_job(request: web.Request) -> web.Response:
    job = await request.app[HUB_KEY].store.get_job(request.match_info["job_id"])
    if job is None:
        return _error(404, f"no job {request.match_info['job_id']!r}")
    return web.json_response(job_view(job))


@requires(ROLE_OPERATOR)
async def cancel_job(request: web.Request) -> web.Response:
    try:
        job = await request.app[HUB_KEY].jobs.cancel(request.match_info["job_id"], actor=actor_of(request))
    except JobError as err:
        return _error(409, str(err))
    return web.json_response(job_view(job))


@requires(ROLE_VIEWER)
async def list_schedules(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    schedules = await hub.store.list_schedules(request.query.get("node") or None)
    return web.json_response({"schedules": [schedule_view(s) for s in schedules]})


@requires(ROLE_OPERATOR)
async def add_schedule(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    body = await _json(request, SCHEDULE_SCHEMA)
    if not valid_cron(body["cron"]):
        return _error(400, f"invalid request: cron: {body['cron']!r} is not a cron expression such as '0 3 * * *' (03:00 daily)")
    try:
        schedule = await hub.jobs.add_schedule(body["node_id"], body["action"], body["params"], body["cron"], actor=actor_of(request), note=body["note"])
    except JobError as err:
        return _error(409, str(err))
    return web.json_response(schedule_view(schedule), status=201)


@requires(ROLE_OPERATOR)
async def patch_schedule(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    body = await _json(request, PATCH_SCHEDULE)
    schedule = await hub.store.update_schedule(request.match_info["schedule_id"], enabled=body["enabled"])
    if schedule is None:
        return _error(404, "no such schedule")
    await hub.audit("schedule.changed", actor=actor_of(request), target=f"node:{schedule.node_id}", details={"schedule": schedule.schedule_id, "enabled": body["enabled"]})
    return web.json_response(schedule_view(schedule))


@requires(ROLE_OPERATOR)
async def delete_schedule(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    schedule = await hub.store.get_schedule(request.match_info["schedule_id"])
    if schedule is None or not await hub.store.delete_schedule(schedule.schedule_id):
        return _error(404, "no such schedule")
    await hub.audit("schedule.deleted", actor=actor_of(request), target=f"node:{schedule.node_id}", details={"schedule": schedule.schedule_id})
    return web.json_response({"deleted": True})


def schedule_view(schedule: Any) -> dict[str, Any]:
    return {
        "id": schedule.schedule_id,
        "node_id": schedule.node_id,
        "action": schedule.action,
        "params": schedule.params,
        "cron": schedule.cron,
        "enabled": schedule.enabled,
        "next_run": schedule.next_run,
        "last_job_id": schedule.last_job_id,
        "created_by": schedule.created_by,
        "created_at": schedule.created_at,
        "note": schedule.note,
    }


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/nodes/{node_id}/actions", node_actions)
    r.add_post("/api/v1/nodes/{node_id}/actions/{action}", run_action)
    r.add_get("/api/v1/jobs", list_jobs)
    r.add_get("/api/v1/jobs/{job_id}", get_job)
    r.add_post("/api/v1/jobs/{job_id}/cancel", cancel_job)
    r.add_get("/api/v1/schedules", list_schedules)
    r.add_post("/api/v1/schedules", add_schedule)
    r.add_patch("/api/v1/schedules/{schedule_id}", patch_schedule)
    r.add_delete("/api/v1/schedules/{schedule_id}", delete_schedule)
