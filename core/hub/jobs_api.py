"""The jobs API: a node's actions, running one (with a signed envelope when destructive), the jobs list and detail, cancel, schedules."""

from __future__ import annotations

import shlex
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.integration import humanize_invalid
from roost.core.signing import DEFAULT_TTL, MAX_TTL, MIN_TTL, EnvelopeError, check_shape, describe_envelope, encode_envelope, make_envelope, same_params
from roost.core.store.jobs import JOB_ACTIVE, JOB_FINAL, JobFilter

from .state import HUB_KEY
from .auth import ROLE_OPERATOR, ROLE_VIEWER, actor_of, requires
from .jobs import JobError, job_view, valid_cron
from .security import read_json

MAX_BODY = 256 * 1024


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _json(request: web.Request, schema: vol.Schema) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        raw = await read_json(request, empty={})
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "body must be JSON"}', content_type="application/json") from None
    try:
        return schema(raw if raw is not None else {})
    except vol.Invalid as err:
        import json

        raise web.HTTPBadRequest(text=json.dumps({"error": f"invalid request: {humanize_invalid(err)}"}), content_type="application/json") from None


RUN_SCHEMA = vol.Schema({vol.Optional("params"): dict, vol.Optional("envelope"): vol.Any(None, dict)})
ENVELOPE_SCHEMA = vol.Schema(
    {
        vol.Optional("params", default=dict): dict,
        vol.Optional("ttl", default=DEFAULT_TTL): vol.All(vol.Coerce(int), vol.Range(min=MIN_TTL, max=MAX_TTL, msg=f"must be between {MIN_TTL} and {MAX_TTL} seconds")),
    }
)
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
    node_id, action = request.match_info["node_id"], request.match_info["action"]
    envelope = body.get("envelope")
    params = body.get("params")
    described = hub.jobs.actions.get(node_id, {}).get(action) or {}
    if described.get("destructive"):
        # Only a courtesy: the agent checks the signature, and everything else again, whatever passes here.
        if params is None and isinstance(envelope, dict) and isinstance(envelope.get("params"), dict):
            params = envelope["params"]
        why = _envelope_mismatch(envelope, node_id, action, params or {}, described.get("target"))
        if why:
            await hub.audit("job.refused", actor=actor_of(request), target=f"node:{node_id}", outcome="refused", details={"action": action, "why": why})
            return _error(409, why)
    try:
        job = await hub.jobs.create(node_id, action, params or {}, actor=actor_of(request), envelope=envelope)
    except JobError as err:
        return _error(409, str(err))
    return web.json_response(job_view(job), status=201)


def _envelope_mismatch(envelope: Any, node_id: str, action: str, params: dict[str, Any], target: str | None) -> str:
    if not envelope:
        return f"{action} is destructive: it needs an envelope signed with the operator key (ask for one at .../envelope, then `roost sign` it)"
    try:
        check_shape(envelope, signed=True)
    except EnvelopeError as err:
        return f"{action}: {err}"
    if envelope["action"] != action or envelope["node_id"] != node_id:
        return f"{action}: the signed envelope is for {envelope['action']} on node {envelope['node_id']}, not this action on this node"
    if not same_params(envelope["params"], params):
        return f"{action}: the parameters differ from the signed ones; send the envelope's params (or none), or sign again"
    if target and str(envelope["target"]) != str(params.get(target)):
        return f"{action}: the envelope is signed for target {envelope['target']!r}, not {params.get(target)!r}"
    return ""


@requires(ROLE_OPERATOR)
async def action_envelope(request: web.Request) -> web.Response:
    """The unsigned envelope for one run of a destructive action, and the `roost sign` command line that signs it."""
    hub = request.app[HUB_KEY]
    body = await _json(request, ENVELOPE_SCHEMA)
    node_id, action = request.match_info["node_id"], request.match_info["action"]
    node = await hub.find_node(node_id)
    if node is None or node.revoked:
        return _error(404, f"no active node with id {node_id!r}")
    described = hub.jobs.actions.get(node_id, {}).get(action)
    if described is None:
        return _error(409, f"node {node.name} does not offer action {action!r} (is it online and is the integration loaded?)")
    if not described.get("destructive"):
        return _error(409, f"{action} is not destructive: it needs no signature, run it directly")
    target_param = described.get("target")
    params = body["params"]
    if target_param and target_param not in params:
        return _error(400, f"invalid request: params: {action} needs {target_param!r}, the target the signature binds")
    target = params.get(target_param) if target_param else None
    if isinstance(target, bool) or not isinstance(target, (str, int, type(None))):
        return _error(400, f"invalid request: params: {target_param} must be a string or an integer to be signed as the target")
    try:
        envelope = make_envelope(action, params, node_id, target, body["ttl"])
    except EnvelopeError as err:
        return _error(400, f"invalid request: {err}")
    text = encode_envelope(envelope)
    await hub.audit("job.envelope_issued", actor=actor_of(request), target=f"node:{node_id}", details={"action": action, "nonce": envelope["nonce"], "expires_at": envelope["expires_at"]})
    return web.json_response(
        {
            "envelope": envelope,
            "envelope_text": text,
            "summary": describe_envelope(envelope),
            "command": f"printf '%s\\n' {shlex.quote(text)} | roost sign",
            "expires_at": envelope["expires_at"],
            "submit": f"/api/v1/nodes/{node_id}/actions/{action}",
        }
    )


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
    if await hub.find_node(body["node_id"]) is not None and (why := hub.jobs.unknown_action(body["node_id"], body["action"])):
        return _error(400, f"invalid request: action: {why}")
    try:
        schedule = await hub.jobs.add_schedule(body["node_id"], body["action"], body["params"], body["cron"], actor=actor_of(request), note=body["note"])
    except JobError as err:
        return _error(409, str(err))
    return web.json_response(schedule_view(schedule), status=201)


@requires(ROLE_OPERATOR)
async def patch_schedule(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    body = await _json(request, PATCH_SCHEDULE)
    current = await hub.store.get_schedule(request.match_info["schedule_id"])
    if current is None:
        return _error(404, "no such schedule")
    changes: dict[str, Any] = {"enabled": body["enabled"]}
    if body["enabled"] and not current.enabled:
        # A schedule resumed after its time passed waits for its next time; it does not fire at once.
        import time

        from .jobs import next_run

        changes["next_run"] = next_run(current.cron, time.time())
    schedule = await hub.store.update_schedule(current.schedule_id, **changes)
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
    r.add_post("/api/v1/nodes/{node_id}/actions/{action}/envelope", action_envelope)
    r.add_get("/api/v1/jobs", list_jobs)
    r.add_get("/api/v1/jobs/{job_id}", get_job)
    r.add_post("/api/v1/jobs/{job_id}/cancel", cancel_job)
    r.add_get("/api/v1/schedules", list_schedules)
    r.add_post("/api/v1/schedules", add_schedule)
    r.add_patch("/api/v1/schedules/{schedule_id}", patch_schedule)
    r.add_delete("/api/v1/schedules/{schedule_id}", delete_schedule)
