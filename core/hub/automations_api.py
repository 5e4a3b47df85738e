"""The automations API: authoring (JSON, YAML or TOML, validated with the path of each bad field), runs and traces, approvals, webhooks, blueprints."""

from __future__ import annotations

import json
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.integration import humanize_invalid
from roost.core.signing import EnvelopeError, check_shape

from .auth import IDENTITY_KEY, ROLE_OPERATOR, ROLE_VIEWER, VIA_SESSION, AccessDenied, actor_of, add_public_path, requires
from .automation_model import AutomationInvalid, describe_fields, parse_text, to_text
from .automation_blueprints import BLUEPRINTS, BlueprintInvalid, instantiate
from .automations import approval_view, run_view
from .events import Event
from .security import peer_of, rate_key, read_json
from .state import HUB_KEY

MAX_BODY = 256 * 1024
MAX_WEBHOOK_BODY = 64 * 1024
RESERVED_IDS = ("webhook", "validate", "kinds", "blueprints")
FORMATS = ("yaml", "toml", "json")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def _body(request: web.Request, limit: int = MAX_BODY) -> Any:
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    return await read_json(request, empty={})


# What the authoring routes take: the raw text of the editor's YAML/TOML/JSON view, the definition wrapped, or the
# definition itself (each then checked against the trigger, condition and step schemas by the engine).
TEXT_BODY = vol.Schema({vol.Required("text"): str, vol.Optional("format", default="yaml"): vol.In(FORMATS)}, extra=vol.PREVENT_EXTRA)
DEFINITION_BODY = vol.Any(TEXT_BODY, vol.Schema({vol.Required("definition"): dict}, extra=vol.PREVENT_EXTRA), vol.Schema(dict, extra=vol.ALLOW_EXTRA))
BLUEPRINT_BODY = vol.Schema({vol.Optional("inputs"): dict}, extra=vol.ALLOW_EXTRA)
RUNS_QUERY = vol.Schema({vol.Optional("limit"): vol.All(str, vol.Match(r"^[0-9]{1,6}$"))})
APPROVALS_QUERY = vol.Schema({vol.Optional("state"): vol.In(("pending", "approved", "denied", "expired"))})


def _definition_from(body: Any) -> Any:
    """``{"definition": {...}}``, ``{"text": "...", "format": "yaml"|"toml"|"json"}`` or the definition itself."""
    if not isinstance(body, dict):
        raise AutomationInvalid([("(body)", "send a JSON object: {definition: {...}} or {text: ..., format: yaml|toml}")])
    if "text" in body:
        try:
            body = TEXT_BODY(body)
        except vol.Invalid:
            raise AutomationInvalid([("format", "format must be yaml, toml or json, and text a string")]) from None
        return parse_text(body["text"], body["format"])
    if "definition" in body:
        return body["definition"]
    return body


def _invalid(err: AutomationInvalid) -> web.Response:
    return _error(400, f"invalid automation: {err}", errors=err.as_list())


@requires(ROLE_VIEWER)
async def list_automations(request: web.Request) -> web.Response:
    engine = request.app[HUB_KEY].automations
    records = await request.app[HUB_KEY].store.list_automations()
    out = []
    for record in records:
        loaded = engine.automations.get(record.automation_id)
        out.append(engine.view(loaded or record))
    errors = [{"source": k[5:], "errors": v} for k, v in engine.file_errors.items() if k.startswith("file:")]
    return web.json_response({"automations": out, "file_errors": errors})


@requires(ROLE_VIEWER)
async def kinds(request: web.Request) -> web.Response:
    registry = request.app[HUB_KEY].plugins.registry

    def describe(items: dict[str, tuple[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for name, (domain, decl) in sorted(items.items()):
            try:
                fields = describe_fields(decl.schema)
            except Exception:
                fields = []
            out.append({"name": name, "domain": domain, "description": decl.description, "fields": fields})
        return out

    return web.json_response(
        {
            "triggers": describe(registry.automation_triggers),
            "actions": describe(registry.automation_actions),
            "steps": ["delay", "wait_for_approval", "wait_for_trigger", "choose", "if", "stop", "variables"],
            "conditions": ["and", "or", "not", "node_online", "labels", "metric", "time", "template", "not_in_maintenance", "not_silenced"],
        }
    )


@requires(ROLE_OPERATOR)
async def validate_automation(request: web.Request) -> web.Response:
    """Check without saving; answers the normalised definition and the text in the other formats (the editor's raw view)."""
    engine = request.app[HUB_KEY].automations
    try:
        raw = _definition_from(await _body(request))
    except AutomationInvalid as err:
        return web.json_response({"ok": False, "errors": err.as_list(), "error": str(err), "texts": {}})
    texts = {}
    if isinstance(raw, dict):
        try:
            texts = {fmt: to_text(raw, fmt) for fmt in FORMATS}
        except Exception as err:  # TOML cannot hold a null, for one
            texts = {"yaml": to_text(raw, "yaml"), "json": to_text(raw, "json")}
            texts["toml_error"] = str(err)
    try:
        definition = engine.validate(raw)
    except AutomationInvalid as err:
        return web.json_response({"ok": False, "errors": err.as_list(), "error": str(err), "texts": texts, "raw": raw})
    return web.json_response({"ok": True, "definition": definition, "texts": texts, "errors": [], "raw": raw})


@requires(ROLE_OPERATOR)
async def create_automation(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    try:
        raw = _definition_from(await _body(request))
        if isinstance(raw, dict) and raw.get("id") in RESERVED_IDS:
            raise AutomationInvalid([("id", f"{raw['id']!r} is a word the API uses; pick another id")])
        record = await hub.automations.save(raw, actor=actor_of(request))
    except AutomationInvalid as err:
        return _invalid(err)
    except FileExistsError as err:
        return _error(409, str(err))
    except PermissionError as err:
        return _error(409, str(err))
    return web.json_response(hub.automations.view(hub.automations.automations.get(record.automation_id) or record, with_secret=True), status=201)


async def _record_or_404(request: web.Request) -> Any:
    hub = request.app[HUB_KEY]
    record = await hub.store.get_automation(request.match_info["automation_id"])
    if record is None:
        raise web.HTTPNotFound(text=json.dumps({"error": f"no automation {request.match_info['automation_id']!r}"}), content_type="application/json")
    return record


@requires(ROLE_VIEWER)
async def get_automation(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    record = await _record_or_404(request)
    identity = request.get(IDENTITY_KEY)
    view = hub.automations.view(hub.automations.automations.get(record.automation_id) or record, with_secret=identity is not None and identity.allows(ROLE_OPERATOR))
    view["texts"] = {fmt: to_text(record.definition, fmt) for fmt in ("yaml", "toml")}
    return web.json_response(view)


@requires(ROLE_OPERATOR)
async def put_automation(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    await _record_or_404(request)
    try:
        raw = _definition_from(await _body(request))
        if isinstance(raw, dict) and raw.get("id") not in (None, request.match_info["automation_id"]):
            raise AutomationInvalid([("id", "the id in the body differs from the URL's; an automation's id does not change")])
        record = await hub.automations.save(raw, actor=actor_of(request), automation_id=request.match_info["automation_id"])
    except AutomationInvalid as err:
        return _invalid(err)
    except PermissionError as err:
        return _error(409, str(err))
    return web.json_response(hub.automations.view(hub.automations.automations.get(record.automation_id) or record, with_secret=True))


@requires(ROLE_OPERATOR)
async def delete_automation(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    try:
        gone = await hub.automations.delete(request.match_info["automation_id"], actor=actor_of(request))
    except PermissionError as err:
        return _error(409, str(err))
    if not gone:
        return _error(404, f"no automation {request.match_info['automation_id']!r}")
    return web.json_response({"deleted": request.match_info["automation_id"]})


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    hub = request.app[HUB_KEY]
    record = await _record_or_404(request)
    if record.source.startswith("file:"):
        return _error(409, f"automation {record.automation_id} comes from {record.source[5:]}; set enabled in that file")
    record = await hub.automations.set_enabled(record.automation_id, enabled, actor=actor_of(request))
    return web.json_response(hub.automations.view(hub.automations.automations.get(record.automation_id) or record))


@requires(ROLE_OPERATOR)
async def enable(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


@requires(ROLE_OPERATOR)
async def disable(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


RUN_SCHEMA = vol.Schema({vol.Optional("trigger", default=dict): dict, vol.Optional("dry_run", default=False): bool}, extra=vol.PREVENT_EXTRA)


@requires(ROLE_OPERATOR)
async def run_now(request: web.Request) -> web.Response:
    """Run now with test trigger data, or a dry run that says what each step would do and does nothing."""
    hub = request.app[HUB_KEY]
    record = await _record_or_404(request)
    try:
        body = RUN_SCHEMA(await _body(request))
    except vol.Invalid as err:
        return _error(400, f"invalid request: {humanize_invalid(err)}")
    if record.automation_id not in hub.automations.automations:
        return _error(409, f"automation {record.automation_id} is invalid; fix it first", errors=hub.automations.file_errors.get(record.automation_id, []))
    actor = actor_of(request)
    trigger = {**body["trigger"], "kind": "manual", "by": actor}
    run = await hub.automations.trigger(record.automation_id, trigger, actor=actor, dry_run=body["dry_run"])
    await hub.audit("automation.run_requested", actor=actor, target=f"automation:{record.automation_id}", details={"run": run.run_id, "dry_run": body["dry_run"], "state": run.state})
    return web.json_response(run_view(run), status=201 if run.state not in ("skipped",) else 200)


@requires(ROLE_VIEWER)
async def list_runs(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    aid = request.match_info.get("automation_id")
    try:
        limit = max(1, min(500, int(request.query.get("limit", "50"))))
    except ValueError:
        return _error(400, "limit must be a whole number")
    runs = await hub.store.list_runs(aid, limit=limit)
    return web.json_response({"runs": [run_view(r) for r in runs]})


@requires(ROLE_VIEWER)
async def get_run(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    run = await hub.store.get_run(request.match_info["run_id"])
    if run is None:
        return _error(404, f"no run {request.match_info['run_id']!r}")
    out = run_view(run)
    out["approvals"] = [approval_view(a) for a in await hub.store.list_approvals(run_id=run.run_id)]
    return web.json_response(out)


@requires(ROLE_OPERATOR)
async def cancel_run(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    run = await hub.automations.cancel_run(request.match_info["run_id"], actor=actor_of(request), why="by hand")
    if run is None:
        return _error(404, f"no run {request.match_info['run_id']!r}")
    return web.json_response(run_view(run))


@requires(ROLE_VIEWER)
async def list_approvals(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    state = request.query.get("state") or None
    approvals = await hub.store.list_approvals(state=state if state != "expired" else "pending", limit=200)
    views = [approval_view(a) for a in approvals]
    if state:
        views = [v for v in views if v["state"] == state]
    return web.json_response({"approvals": views})


@requires(ROLE_VIEWER)
async def get_approval(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    approval = await hub.store.get_approval(request.match_info["approval_id"])
    if approval is None:
        return _error(404, f"no approval {request.match_info['approval_id']!r}")
    return web.json_response(approval_view(approval))


DECIDE_SCHEMA = vol.Schema(
    {
        vol.Required("decision", msg="decision is approve or deny"): vol.In(("approve", "deny"), msg="decision is approve or deny"),
        vol.Optional("note", default=""): vol.All(str, vol.Length(max=500)),
        vol.Optional("envelope"): vol.Any(None, dict),
    },
    extra=vol.PREVENT_EXTRA,
)


@requires(ROLE_OPERATOR)
async def decide_approval(request: web.Request) -> web.Response:
    """Only a person logged in to the dashboard (operator or admin) decides; no API token, whatever its scope."""
    hub = request.app[HUB_KEY]
    identity = request.get(IDENTITY_KEY)
    if identity is None or identity.via != VIA_SESSION:
        await hub.audit(
            "automation.approval_refused", actor=actor_of(request), target=f"approval:{request.match_info['approval_id']}", outcome="refused",
            details={"why": "not a dashboard session"},
        )
        raise AccessDenied(request, "approvals are decided by an operator or admin logged in to the dashboard, never with an API token")
    try:
        body = DECIDE_SCHEMA(await _body(request))
    except vol.Invalid as err:
        return _error(400, f"invalid request: {humanize_invalid(err)}")
    envelope = body.get("envelope")
    if envelope:
        try:
            check_shape(envelope, signed=True)
        except EnvelopeError as err:
            return _error(400, f"the envelope is not a signed Roost envelope: {err}")
    try:
        decided = await hub.automations.decide(
            request.match_info["approval_id"], approve=body["decision"] == "approve", actor=actor_of(request), note=body["note"], envelope=envelope
        )
    except LookupError as err:
        return _error(404, str(err))
    except ValueError as err:
        return _error(409, str(err))
    return web.json_response(approval_view(decided))


async def webhook(request: web.Request) -> web.Response:
    """A webhook trigger's URL: the secret in it is the only credential (compared in constant time); public, rate limited by the shared limits."""
    hub = request.app[HUB_KEY]
    limits = hub.automations.webhook_limits
    key = rate_key(peer_of(request))
    wait = limits.allow(key) if limits is not None else 0.0
    if wait:
        return web.json_response({"error": f"too many webhook calls (or wrong URLs) from this address; try again in {wait:.0f} s"}, status=429, headers={"Retry-After": str(int(wait) + 1)})
    loaded = hub.automations.webhook_target(request.match_info["secret"])
    if loaded is None or not loaded.record.enabled or not any(t.get("kind") == "automation.webhook" for t in loaded.definition["triggers"]):
        if loaded is None and limits is not None and limits.failure(key):
            await hub.security_events.record(
                "automation.webhook_banned", key=key, actor="anonymous", peer=peer_of(request), outcome="refused",
                details={"why": "too many wrong webhook URLs"}, phrase="bans for wrong webhook URLs",
            )
        return _error(404, "no automation listens at this URL")
    body: Any = None
    if request.can_read_body:
        if request.content_length is not None and request.content_length > MAX_WEBHOOK_BODY:
            return _error(413, f"a webhook body is at most {MAX_WEBHOOK_BODY} bytes")
        raw = await request.content.read(MAX_WEBHOOK_BODY + 1)
        if len(raw) > MAX_WEBHOOK_BODY:
            return _error(413, f"a webhook body is at most {MAX_WEBHOOK_BODY} bytes")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
    event = Event("automation.webhook", {"automation": loaded.record.automation_id, "body": body, "query": dict(request.query), "peer": peer_of(request)})
    await hub.automations.on_event(event)
    latest = await hub.store.list_runs(loaded.record.automation_id, limit=1)
    run = latest[0] if latest and latest[0].trigger.get("event") == "automation.webhook" else None
    return web.json_response({"accepted": True, "run": run.run_id if run else None, "state": run.state if run else None}, status=202)


@requires(ROLE_VIEWER)
async def list_blueprints(request: web.Request) -> web.Response:
    return web.json_response({"blueprints": [bp.describe() for bp in BLUEPRINTS.values()]})


@requires(ROLE_OPERATOR)
async def use_blueprint(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    name = request.match_info["name"]
    if name not in BLUEPRINTS:
        return _error(404, f"no blueprint {name!r}; blueprints: {', '.join(sorted(BLUEPRINTS))}")
    body = await _body(request)
    try:
        definition = instantiate(name, body.get("inputs", body) if isinstance(body, dict) else {})
        record = await hub.automations.save(definition, actor=actor_of(request))
    except BlueprintInvalid as err:
        return _error(400, f"invalid blueprint inputs: {err}", errors=err.as_list())
    except AutomationInvalid as err:
        return _invalid(err)
    except FileExistsError as err:
        return _error(409, str(err))
    return web.json_response(hub.automations.view(hub.automations.automations.get(record.automation_id) or record, with_secret=True), status=201)


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/automations/webhook/{secret}", webhook)
    add_public_path(app, "/api/v1/automations/webhook/", prefix=True)
    r.add_get("/api/v1/automations", list_automations)
    r.add_post("/api/v1/automations", create_automation)
    r.add_get("/api/v1/automations/kinds", kinds)
    r.add_post("/api/v1/automations/validate", validate_automation)
    r.add_get("/api/v1/automations/blueprints", list_blueprints)
    r.add_post("/api/v1/automations/blueprints/{name}", use_blueprint)
    r.add_get("/api/v1/automations/{automation_id}", get_automation)
    r.add_put("/api/v1/automations/{automation_id}", put_automation)
    r.add_delete("/api/v1/automations/{automation_id}", delete_automation)
    r.add_post("/api/v1/automations/{automation_id}/enable", enable)
    r.add_post("/api/v1/automations/{automation_id}/disable", disable)
    r.add_post("/api/v1/automations/{automation_id}/run", run_now)
    r.add_get("/api/v1/automations/{automation_id}/runs", list_runs)
    r.add_get("/api/v1/automation-runs", list_runs)
    r.add_get("/api/v1/automation-runs/{run_id}", get_run)
    r.add_post("/api/v1/automation-runs/{run_id}/cancel", cancel_run)
    r.add_get("/api/v1/approvals", list_approvals)
    r.add_get("/api/v1/approvals/{approval_id}", get_approval)
    r.add_post("/api/v1/approvals/{approval_id}", decide_approval)


__all__ = ["setup"]
