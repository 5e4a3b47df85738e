"""The alerts API under /api/v1/alerts: instances (acknowledge, snooze), history, the event log, rules with a preview, silences,
maintenance windows, and node labels. Roles come from the one permission table (permissions.py); every change is audited."""

from __future__ import annotations

import json
import time
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.integration import humanize_invalid

from .alert_eval import PENDING, FIRING, RESOLVED, SEVERITIES
from .alert_rules import LABELS, RuleError, safe_id
from .auth import actor_of, identity_of
from .state import HUB_KEY

MAX_BODY = 64 * 1024
MAX_SNOOZE = 30 * 86400.0

HISTORY_QUERY = vol.Schema(
    {
        vol.Optional("node_id"): vol.All(str, vol.Match(r"^[A-Za-z0-9_-]{1,64}$", msg="must be a node id")),
        vol.Optional("rule_id"): vol.All(str, vol.Length(max=200)),
        vol.Optional("state"): vol.In([PENDING, FIRING, RESOLVED], msg="must be pending, firing or resolved"),
        vol.Optional("severity"): vol.In(SEVERITIES, msg="must be warning or critical"),
        vol.Optional("since"): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("until"): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("limit", default=200): vol.All(vol.Coerce(int), vol.Range(min=1, max=1000, msg="must be between 1 and 1000")),
    }
)
EVENTS_QUERY = vol.Schema(
    {
        vol.Optional("after", default=0): vol.All(vol.Coerce(int), vol.Range(min=0)),
        vol.Optional("limit", default=500): vol.All(vol.Coerce(int), vol.Range(min=1, max=5000, msg="must be between 1 and 5000")),
    }
)
ACK = vol.Schema({vol.Optional("note", default=""): vol.All(str, vol.Length(max=1000, msg="must be at most 1000 characters"))})
SNOOZE = vol.Schema(
    {
        vol.Exclusive("until", "when"): vol.Any(None, vol.All(vol.Coerce(float), vol.Range(min=0))),
        vol.Exclusive("for", "when"): vol.All(vol.Coerce(float), vol.Range(min=60, max=MAX_SNOOZE, msg=f"must be between 60 and {MAX_SNOOZE:g} seconds")),
    }
)
NODE_LABELS = vol.Schema({vol.Required("labels"): LABELS})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    if request.can_read_body and request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text=json.dumps({"error": "send the body as JSON (Content-Type: application/json)"}), content_type="application/json")
    raw = await request.content.read(MAX_BODY + 1) if request.can_read_body else b""
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
    if not raw:
        return {}
    from roost.core import jsonparse

    try:
        return jsonparse.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"request body is not valid JSON: {err}"}), content_type="application/json") from None


def _checked(schema: vol.Schema, data: Any, what: str = "request") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": f"invalid {what}: the body must be a JSON object"}), content_type="application/json")
    try:
        return schema(data)
    except vol.Invalid as err:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"invalid {what}: {humanize_invalid(err, data)}"}), content_type="application/json") from None


def author(request: web.Request) -> str:
    """Who did it, as alerts show it: ``user:<name>`` (an API token acts for its user; the audit log keeps the token id)."""
    identity = identity_of(request)
    return f"user:{identity.name}" if identity is not None else actor_of(request)


async def _audit(request: web.Request, action: str, target: str, details: dict[str, Any] | None = None) -> None:
    await request.app[HUB_KEY].audit(action, actor=author(request), target=target, details=details)


# ----------------------------------------------------------------- instances


async def list_alerts(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    node_id = request.query.get("node_id")
    instances = await hub.alerts.live_instances(node_id)
    return web.json_response(
        {
            "instances": instances,
            "firing": sum(1 for i in instances if i["state"] == FIRING),
            "pending": sum(1 for i in instances if i["state"] == PENDING),
        }
    )


async def history(request: web.Request) -> web.Response:
    query = _checked(HISTORY_QUERY, dict(request.query), "query")
    return web.json_response({"instances": await request.app[HUB_KEY].alerts.history(**query)})


async def events(request: web.Request) -> web.Response:
    query = _checked(EVENTS_QUERY, dict(request.query), "query")
    return web.json_response({"events": await request.app[HUB_KEY].alerts.events_after(query["after"], query["limit"])})


async def acknowledge(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    body = _checked(ACK, await _body(request))
    instance_id = request.match_info["instance_id"]
    inst = await hub.alerts.acknowledge(instance_id, actor=author(request), note=body["note"])
    if inst is None:
        return _error(404, f"no pending or firing alert with id {instance_id!r} (resolved alerts cannot be acknowledged)")
    await _audit(request, "alerts.acknowledged", f"alert:{instance_id}", {"note": body["note"], "rule": inst["rule_name"], "node": inst["node_id"]})
    return web.json_response(inst)


async def snooze(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    body = _checked(SNOOZE, await _body(request))
    now = time.time()
    until = now + body["for"] if "for" in body else body.get("until")
    if until is not None and not (now < until <= now + MAX_SNOOZE):
        return _error(400, f"invalid request: until must be in the future and at most {MAX_SNOOZE / 86400:g} days away (null ends a snooze)")
    instance_id = request.match_info["instance_id"]
    inst = await hub.alerts.snooze(instance_id, actor=author(request), until=until)
    if inst is None:
        return _error(404, f"no pending or firing alert with id {instance_id!r}")
    await _audit(request, "alerts.snoozed", f"alert:{instance_id}", {"until": until, "rule": inst["rule_name"], "node": inst["node_id"]})
    return web.json_response(inst)


# --------------------------------------------------------------------- rules


def _rule_view(hub: Any, rule: dict[str, Any]) -> dict[str, Any]:
    out = dict(rule)
    kinds = hub.alerts.kinds()
    out["available"] = rule["kind"] in kinds
    out["error"] = hub.alerts.rule_errors.get(rule["id"])
    out["firing"] = sum(1 for i in hub.alerts.live.values() if i["rule_id"] == rule["id"] and i["state"] == FIRING)
    return out


async def list_rules(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    rules = sorted(hub.alerts.rules.values(), key=lambda r: r["name"].lower())
    return web.json_response({"rules": [_rule_view(hub, r) for r in rules], "kinds": hub.alerts.kind_list()})


async def list_kinds(request: web.Request) -> web.Response:
    return web.json_response({"kinds": request.app[HUB_KEY].alerts.kind_list()})


async def get_rule(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    rule = hub.alerts.rules.get(request.match_info["rule_id"])
    if rule is None:
        return _error(404, f"no alert rule with id {request.match_info['rule_id']!r}")
    return web.json_response(_rule_view(hub, rule))


async def create_rule(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    try:
        rule = await hub.alerts.save_rule(await _body(request), actor=author(request))
    except RuleError as err:
        return _error(400, str(err))
    await _audit(request, "alerts.rule_created", f"alert_rule:{rule['id']}", {"name": rule["name"], "kind": rule["kind"]})
    return web.json_response(_rule_view(hub, rule), status=201)


async def update_rule(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    rule_id = request.match_info["rule_id"]
    if rule_id not in hub.alerts.rules:
        return _error(404, f"no alert rule with id {rule_id!r}")
    before = hub.alerts.rules[rule_id]
    try:
        rule = await hub.alerts.save_rule(await _body(request), actor=author(request), rule_id=rule_id)
    except RuleError as err:
        return _error(400, str(err))
    changed = sorted(k for k in set(before) | set(rule) if k not in ("updated_at", "updated_by") and before.get(k) != rule.get(k))
    await _audit(request, "alerts.rule_changed", f"alert_rule:{rule_id}", {"name": rule["name"], "changed": changed, "enabled": rule["enabled"]})
    return web.json_response(_rule_view(hub, rule))


async def delete_rule(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    rule_id = request.match_info["rule_id"]
    rule = hub.alerts.rules.get(rule_id)
    if rule is None or not await hub.alerts.delete_rule(rule_id):
        return _error(404, f"no alert rule with id {rule_id!r}")
    await _audit(request, "alerts.rule_deleted", f"alert_rule:{rule_id}", {"name": rule["name"], "kind": rule["kind"]})
    return web.json_response({"deleted": rule_id})


async def preview_rule(request: web.Request) -> web.Response:
    try:
        return web.json_response(await request.app[HUB_KEY].alerts.preview(await _body(request)))
    except RuleError as err:
        return _error(400, str(err))


# ------------------------------------------------------------------ silences


async def list_silences(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    now = time.time()
    out = []
    for s in sorted(hub.alerts.silences.values(), key=lambda s: -s["ends_at"]):
        out.append({**s, "active": s["starts_at"] <= now < s["ends_at"], "expired": s["ends_at"] <= now})
    return web.json_response({"silences": out})


async def create_silence(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    try:
        silence = await hub.alerts.add_silence(await _body(request), actor=author(request))
    except RuleError as err:
        return _error(400, str(err))
    await _audit(request, "alerts.silence_created", f"silence:{silence['id']}", {"matchers": silence["matchers"], "ends_at": silence["ends_at"], "reason": silence["reason"]})
    return web.json_response(silence, status=201)


async def expire_silence(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    silence_id = request.match_info["silence_id"]
    silence = await hub.alerts.expire_silence(silence_id, actor=author(request))
    if silence is None:
        return _error(404, f"no silence with id {silence_id!r}")
    await _audit(request, "alerts.silence_expired", f"silence:{silence_id}")
    return web.json_response(silence)


# ------------------------------------------------------- maintenance windows


def _window_view(hub: Any, window: dict[str, Any], now: float) -> dict[str, Any]:
    active = hub.alerts.window_active(window, now)
    return {**window, "active": active is not None, "active_until": active[1] if active else None, "next_start": hub.alerts.next_window(window, now)}


async def list_windows(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    now = time.time()
    windows = sorted(hub.alerts.windows.values(), key=lambda w: w["name"].lower())
    return web.json_response({"windows": [_window_view(hub, w, now) for w in windows], "timezone": str(hub.alerts.timezone())})


async def create_window(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    try:
        window = await hub.alerts.save_window(await _body(request), actor=author(request))
    except RuleError as err:
        return _error(400, str(err))
    await _audit(request, "alerts.window_created", f"maintenance:{window['id']}", {"name": window["name"], "cron": window["cron"], "duration": window["duration"]})
    return web.json_response(_window_view(hub, window, time.time()), status=201)


async def update_window(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    window_id = request.match_info["window_id"]
    if window_id not in hub.alerts.windows:
        return _error(404, f"no maintenance window with id {window_id!r}")
    try:
        window = await hub.alerts.save_window(await _body(request), actor=author(request), window_id=window_id)
    except RuleError as err:
        return _error(400, str(err))
    await _audit(request, "alerts.window_changed", f"maintenance:{window_id}", {"name": window["name"], "cron": window["cron"], "enabled": window["enabled"]})
    return web.json_response(_window_view(hub, window, time.time()))


async def delete_window(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    window_id = request.match_info["window_id"]
    if not await hub.alerts.delete_window(window_id):
        return _error(404, f"no maintenance window with id {window_id!r}")
    await _audit(request, "alerts.window_deleted", f"maintenance:{window_id}")
    return web.json_response({"deleted": window_id})


# --------------------------------------------------------------- node labels


async def get_labels(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    node_id = request.match_info["node_id"]
    if hub.node(node_id) is None:
        return _error(404, f"no node with id {node_id!r}")
    return web.json_response(hub.alerts.label_sources(node_id))


async def put_labels(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    node_id = request.match_info["node_id"]
    if not safe_id(node_id) or hub.node(node_id) is None:
        return _error(404, f"no node with id {node_id!r}")
    body = _checked(NODE_LABELS, await _body(request), "labels")
    before = hub.alerts.label_sources(node_id)["set"]
    out = await hub.alerts.set_labels(node_id, body["labels"])
    await _audit(request, "node.labels_changed", f"node:{node_id}", {"before": before, "after": body["labels"]})
    hub._publish_node(node_id, force=True)
    return web.json_response(out)


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/alerts", list_alerts)
    r.add_get("/api/v1/alerts/history", history)
    r.add_get("/api/v1/alerts/events", events)
    r.add_post("/api/v1/alerts/instances/{instance_id}/ack", acknowledge)
    r.add_post("/api/v1/alerts/instances/{instance_id}/snooze", snooze)
    r.add_get("/api/v1/alerts/kinds", list_kinds)
    r.add_get("/api/v1/alerts/rules", list_rules)
    r.add_post("/api/v1/alerts/rules", create_rule)
    r.add_post("/api/v1/alerts/rules/preview", preview_rule)
    r.add_get("/api/v1/alerts/rules/{rule_id}", get_rule)
    r.add_put("/api/v1/alerts/rules/{rule_id}", update_rule)
    r.add_delete("/api/v1/alerts/rules/{rule_id}", delete_rule)
    r.add_get("/api/v1/alerts/silences", list_silences)
    r.add_post("/api/v1/alerts/silences", create_silence)
    r.add_delete("/api/v1/alerts/silences/{silence_id}", expire_silence)
    r.add_get("/api/v1/alerts/maintenance", list_windows)
    r.add_post("/api/v1/alerts/maintenance", create_window)
    r.add_put("/api/v1/alerts/maintenance/{window_id}", update_window)
    r.add_delete("/api/v1/alerts/maintenance/{window_id}", delete_window)
    r.add_get("/api/v1/nodes/{node_id}/labels", get_labels)
    r.add_put("/api/v1/nodes/{node_id}/labels", put_labels)
