"""The hub's OpenAPI 3.1 document, ``GET /api/v1/openapi.json``, built from the routes the hub really has.

Every route of the router is in it except the dashboard's own pages and
static files: its parameters from the path, its auth from the permission
table (or the route being public), its query and JSON body from the
voluptuous schemas the handlers validate with (``route_schemas.SCHEMAS``
for the core's routes, ``ApiRoute.schema`` for an integration's), turned into
JSON Schema by ``json_schema`` below. A route nobody described is still in
the document, marked ``x-roost-undescribed``; a test names each one and
what to add.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.const import __version__

from .permissions import PERMISSIONS, ROUTES
from .route_schemas import SCHEMAS, RouteSchema
from .state import HUB_KEY

OPENAPI_PATH = "/api/v1/openapi.json"
OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
_PARAM_RE = re.compile(r"\{([^}/:]+)(?::[^}]*)?\}")
ERROR = {"type": "object", "properties": {"error": {"type": "string", "description": "what was wrong and what to do"}}, "required": ["error"]}
ROLE_TEXT = {"viewer": "any logged-in user", "operator": "operators and admins", "admin": "admins"}


# ------------------------------------------------------------ voluptuous → JSON Schema

_TYPES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    dict: {"type": "object"},
    list: {"type": "array"},
    type(None): {"type": "null"},
    object: {},
}


def _json_value(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool)) or (
        isinstance(value, (list, tuple)) and all(_json_value(v) for v in value)
    ) or (isinstance(value, dict) and all(isinstance(k, str) and _json_value(v) for k, v in value.items()))


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Both constraints at once (vol.All): keys that agree merge, a conflict goes to allOf."""
    for key, value in extra.items():
        if key not in into:
            into[key] = value
        elif into[key] != value:
            if key == "type" and value == "number" and into[key] == "integer":
                continue
            if key == "type" and into[key] == "number" and value == "integer":
                into[key] = "integer"
                continue
            into.setdefault("allOf", []).append({key: value})
    return into


def _length(validator: vol.Length, kind: str | None) -> dict[str, Any]:
    words = {"array": ("minItems", "maxItems"), "object": ("minProperties", "maxProperties")}.get(kind or "", ("minLength", "maxLength"))
    out: dict[str, Any] = {}
    if validator.min is not None:
        out[words[0]] = validator.min
    if validator.max is not None:
        out[words[1]] = validator.max
    return out


def _range(validator: vol.Range) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if validator.min is not None:
        out["minimum" if validator.min_included else "exclusiveMinimum"] = validator.min
    if validator.max is not None:
        out["maximum" if validator.max_included else "exclusiveMaximum"] = validator.max
    return out


def _key_name(key: Any) -> str | None:
    name = key.schema if isinstance(key, vol.Marker) else key
    return name if isinstance(name, str) else None


def _object(schema: Mapping[Any, Any], extra: int, all_required: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    additional: Any = extra != vol.PREVENT_EXTRA
    for key, value in schema.items():
        name = _key_name(key)
        if name is None:  # a type as key ({str: int}): the values of any other key
            additional = json_schema(value)
            continue
        prop = json_schema(value)
        if isinstance(key, vol.Optional) and key.default is not vol.UNDEFINED:
            try:
                default = key.default() if callable(key.default) else key.default
            except Exception:
                default = vol.UNDEFINED
            if default is not vol.UNDEFINED and _json_value(default):
                prop = {**prop, "default": default}
        if getattr(key, "description", None):
            prop = {**prop, "description": key.description}
        properties[name] = prop
        if isinstance(key, vol.Required) or (all_required and not isinstance(key, vol.Optional)):
            required.append(name)
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    if additional is not True:
        out["additionalProperties"] = additional
    return out


def json_schema(schema: Any) -> dict[str, Any]:
    """The JSON Schema (2020-12, as OpenAPI 3.1 takes it) of what a voluptuous schema accepts.

    Types, dicts (Required/Optional, defaults, extra keys), lists, All, Any,
    In, Range, Length, Match, Coerce, Msg and literals convert exactly; a
    custom function becomes ``{}`` (anything) unless it carries a
    ``json_schema`` attribute with its own JSON Schema, and its docstring's
    first line as the description.
    """
    if isinstance(schema, vol.Schema):
        inner = schema.schema
        if isinstance(inner, Mapping):
            return _object(inner, schema.extra, bool(schema.required))
        return json_schema(inner)
    if isinstance(schema, Mapping):
        return _object(schema, vol.PREVENT_EXTRA, False)
    if isinstance(schema, (list, tuple)) and not isinstance(schema, str):
        if not schema:
            return {"type": "array"}
        items = [json_schema(s) for s in schema]
        return {"type": "array", "items": items[0] if len(items) == 1 else {"anyOf": items}}
    if schema is None or (isinstance(schema, type) and schema in _TYPES):
        return dict(_TYPES[schema if schema is not None else type(None)])
    if isinstance(schema, vol.All):
        out: dict[str, Any] = {}
        for validator in schema.validators:
            if isinstance(validator, vol.Length):
                _merge(out, _length(validator, out.get("type")))
            else:
                _merge(out, json_schema(validator))
        return _described(out, schema.msg)
    if isinstance(schema, vol.Any):
        options = [json_schema(v) for v in schema.validators]
        if all(set(o) <= {"const"} and o for o in options):
            return {"enum": [o["const"] for o in options]}
        return _described({"anyOf": options}, schema.msg)
    if isinstance(schema, vol.In):
        container = schema.container
        values = list(container.keys() if isinstance(container, Mapping) else container)
        return _described({"enum": values} if all(_json_value(v) for v in values) else {}, schema.msg)
    if isinstance(schema, vol.NotIn):
        values = list(schema.container)
        return {"not": {"enum": values}} if all(_json_value(v) for v in values) else {}
    if isinstance(schema, vol.Range):
        return _range(schema)
    if isinstance(schema, vol.Clamp):
        return {}
    if isinstance(schema, vol.Length):
        return _length(schema, None)
    if isinstance(schema, vol.Match):
        return _described({"type": "string", "pattern": schema.pattern.pattern}, schema.msg)
    if isinstance(schema, vol.Coerce):
        return _described(dict(_TYPES.get(schema.type, {})), schema.msg)
    if isinstance(schema, vol.Msg):
        return json_schema(schema._schema)
    if isinstance(schema, vol.Unique):
        return {"uniqueItems": True}
    if isinstance(schema, vol.Datetime):
        return {"type": "string", "format": "date-time"}
    if isinstance(schema, (str, int, float, bool)):
        return {"const": schema}
    own = getattr(schema, "json_schema", None)
    if isinstance(own, dict):
        return dict(own)
    if callable(schema):
        doc = inspect.getdoc(schema) if not isinstance(schema, type) else None
        return {"description": doc.splitlines()[0]} if doc and not doc.startswith(("Create", "Return a new", "Convert")) else {}
    return {}


def _described(out: dict[str, Any], msg: Any) -> dict[str, Any]:
    if isinstance(msg, str) and msg and "description" not in out:
        out["description"] = msg
    return out


# ------------------------------------------------------------------ the document


def _is_dashboard(method: str, path: str, handler: Any) -> bool:
    """Pages and static files are the dashboard's, not the API's."""
    module = getattr(handler, "__module__", "") or ""
    if module.startswith("roost.frontend") or module.startswith("aiohttp."):
        return True
    return method == "GET" and any(path in p.pages for p in PERMISSIONS.values())


def _summary(handler: Any, described: RouteSchema | None) -> str:
    if described is not None and described.summary:
        return described.summary
    doc = inspect.getdoc(inspect.unwrap(handler)) or ""
    return doc.split("\n\n")[0].replace("\n", " ")[:300]


def _parameters(path: str, query: Any) -> list[dict[str, Any]]:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in _PARAM_RE.findall(path)]
    if query is not None:
        converted = json_schema(query)
        required = set(converted.get("required", ()))
        for name, prop in (converted.get("properties") or {}).items():
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    return params


def _security(key: str, public: bool, role: str | None) -> tuple[list[dict[str, list[str]]], str]:
    if public:
        return [], "No login: this route checks its own credential (see its description)."
    if role is None:
        return [{"bearerAuth": []}, {"sessionCookie": []}], "Needs a login."
    return [{"bearerAuth": []}, {"sessionCookie": []}], f"Needs a login; allowed for {ROLE_TEXT.get(role, role)} ({role} role or higher)."


def _response_content(described: RouteSchema | None, fallback: str = JSON) -> dict[str, Any]:
    content = described.content if described is not None else fallback
    if content == JSON:
        response = described.response if described is not None and described.response is not None else {"type": "object"}
        schema = response if isinstance(response, dict) and not isinstance(response, vol.Schema) else json_schema(response)
        return {JSON: {"schema": schema}}
    return {content: {"schema": {"type": "string"}}}


def _operation(
    method: str, path: str, handler: Any, described: RouteSchema | None, *, public: bool, role: str | None, tag: str,
    query: Any = None, body: Any = None, undescribed: bool = False, text_body: bool = False,
) -> dict[str, Any]:
    if described is not None:
        query = described.query if described.query is not None else query
        body = described.body if described.body is not None else body
    security, auth_text = _security(f"{method} {path}", public, role)
    summary = _summary(handler, described)
    op: dict[str, Any] = {
        "operationId": re.sub(r"[^A-Za-z0-9]+", "_", f"{method.lower()}{path}").strip("_"),
        "summary": summary[:120],
        "description": f"{summary}\n\n{auth_text}",
        "tags": [tag],
        "parameters": _parameters(path, query),
        "security": security,
        "responses": {
            "2XX": {"description": "done", "content": _response_content(described)},
            "4XX": {"description": "refused: the answer says why", "content": {JSON: {"schema": ERROR}, "text/plain": {"schema": {"type": "string"}}}},
        },
    }
    if role is not None:
        op["x-roost-role"] = role
    if body is not None:
        op["requestBody"] = {"required": described.body_required if described is not None else True, "content": {JSON: {"schema": json_schema(body)}}}
    elif text_body:
        op["requestBody"] = {"required": False, "content": {"text/plain": {"schema": {"type": "string"}}, "application/octet-stream": {"schema": {"type": "string"}}}}
    if undescribed:
        op["x-roost-undescribed"] = True
    if not op["parameters"]:
        del op["parameters"]
    return op


def _tag(path: str) -> str:
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    parts = parts[2:] if parts[:2] == ["api", "v1"] else parts[1:] if parts[:1] == ["api"] else parts
    if parts[:1] == ["integrations"] and len(parts) > 1:
        return parts[1]
    return parts[0] if parts else "hub"


def build(app: web.Application) -> dict[str, Any]:
    """The document for this app's routes (built per request: integrations' routes are part of it)."""
    from .auth import AUTH_KEY

    hub = app[HUB_KEY]
    auth = app[AUTH_KEY]
    plugin_routes: dict[str, Any] = {}
    public_routes: dict[str, Any] = {}
    plugins = getattr(hub, "plugins", None)
    if plugins is not None:
        plugin_routes = {f"{r.route.method} {r.url}": r.route for r in plugins.routes}
        public_routes = {f"{r.route.method} {r.url}": r.route for r in plugins.public_routes}
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        path = resource.canonical
        methods = ["POST"] if route.method == "*" else [route.method]
        for method in methods:
            if _is_dashboard(method, path, route.handler):
                continue
            key = f"{method} {path}"
            public = _is_public(auth, path)
            permission = ROUTES.get(key)
            role = PERMISSIONS[permission].role if permission else None
            described = SCHEMAS.get(key)
            if key in plugin_routes:
                declared = plugin_routes[key]
                schema = declared.schema
                in_query = method in ("GET", "DELETE")
                op = _operation(
                    method, path, declared.handler, described, public=False, role=role or declared.role, tag=_tag(path),
                    query=schema if in_query else None, body=None if in_query else schema,
                )
            elif key in public_routes:
                declared = public_routes[key]
                op = _operation(method, path, declared.handler, described or RouteSchema(content="text/plain"), public=True, role=None,
                                tag=_tag(path), text_body=method != "GET")
            else:
                op = _operation(method, path, route.handler, described, public=public, role=role, tag=_tag(path), undescribed=described is None)
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Roost hub API",
            "version": __version__,
            "description": (
                "The hub's REST API. Log in with an API token as `Authorization: Bearer rst_...` (or the dashboard's "
                "session cookie, with `X-CSRF-Token` on changes). Each operation says the lowest role it needs; a refusal "
                "is `{\"error\": \"...\"}` with 401, 403 or another 4xx saying what was wrong."
            ),
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "an API token, rst_<id>_<secret> (the account page makes one)"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "roost_session", "description": "the dashboard's session; changes need X-CSRF-Token"},
            },
            "schemas": {"Error": ERROR},
        },
        "paths": dict(sorted(paths.items())),
    }


def _is_public(auth: Any, path: str) -> bool:
    parts, pos = [], 0
    for match in _PARAM_RE.finditer(path):
        parts += [re.escape(path[pos : match.start()]), "[^/]+"]
        pos = match.end()
    pattern = re.compile("".join([*parts, re.escape(path[pos:])]))
    return any(pattern.fullmatch(p) for p in auth.public_paths) or any((path + "/").startswith(p) for p in auth.public_prefixes)


async def openapi(request: web.Request) -> web.Response:
    """This document: every route of the hub with its parameters, bodies, answers and the role it needs."""
    return web.json_response(build(request.app), headers={"Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, openapi)
