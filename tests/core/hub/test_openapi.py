"""GET /api/v1/openapi.json: every route of the real hub app is in it, with the schemas its handler validates with."""

from __future__ import annotations

import voluptuous as vol
from aiohttp import web

from roost.core.hub import alert_rules, api, auth
from roost.core.hub.app import create_app
from roost.core.hub.openapi import _is_dashboard, json_schema
from roost.core.hub.permissions import ROUTES
from roost.integrations.ping import checks as ping_checks
from support_auth import seed_user
from support_hub import hub_config


def undescribed(doc: dict) -> list[str]:
    """What a developer must add for each route the document cannot describe, in words."""
    problems = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if op.get("x-roost-undescribed"):
                problems.append(
                    f"{method.upper()} {path} has no description of what it takes: add "
                    f"'{method.upper()} {path}': RouteSchema(summary, query=..., body=...) to roost.core.hub.route_schemas.SCHEMAS "
                    "(and the route to roost.core.hub.permissions.PERMISSIONS unless it is public)"
                )
    return problems


async def document(client, token: str) -> dict:
    async with client.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_every_route_of_the_hub_is_in_the_document_and_described(aiohttp_client, tmp_path):
    config = hub_config(tmp_path)
    token = await seed_user(config, "viewer", "viewer")
    client = await aiohttp_client(create_app(config))
    doc = await document(client, token)
    assert doc["openapi"] == "3.1.0"
    missing = []
    for route in client.app.router.routes():
        if route.resource is None or route.method == "HEAD":
            continue
        method, path = ("POST" if route.method == "*" else route.method), route.resource.canonical
        if _is_dashboard(method, path, route.handler):
            continue
        if method.lower() not in doc["paths"].get(path, {}):
            missing.append(f"{method} {path}")
    assert not missing, f"routes missing from the OpenAPI document: {missing}"
    assert not undescribed(doc), "\n".join(undescribed(doc))
    # Dashboard pages are not API operations; the API's own routes all are.
    assert "/" not in doc["paths"] and "/pings" not in doc["paths"] and "/api/v1/openapi.json" in doc["paths"]


async def test_a_route_added_to_the_hub_shows_up_and_the_test_says_what_to_add(aiohttp_client, tmp_path):
    config = hub_config(tmp_path)
    token = await seed_user(config, "viewer", "viewer")
    app = create_app(config)

    async def frobnicate(request: web.Request) -> web.Response:
        """Frobnicate the nodes."""
        return web.json_response({})

    app.router.add_post("/api/v1/frobnicate", frobnicate)
    client = await aiohttp_client(app)
    doc = await document(client, token)
    op = doc["paths"]["/api/v1/frobnicate"]["post"]
    assert op["summary"] == "Frobnicate the nodes." and op["x-roost-undescribed"] is True
    [problem] = undescribed(doc)
    assert "POST /api/v1/frobnicate" in problem and "route_schemas.SCHEMAS" in problem and "PERMISSIONS" in problem


async def test_operations_carry_the_handlers_own_schemas_and_their_auth(aiohttp_client, tmp_path):
    config = hub_config(tmp_path)
    token = await seed_user(config, "viewer", "viewer")
    client = await aiohttp_client(create_app(config))
    doc = await document(client, token)
    paths = doc["paths"]
    # Derived, not written twice: the document holds exactly the converted schema object the handler calls.
    assert paths["/api/v1/alerts/rules"]["post"]["requestBody"]["content"]["application/json"]["schema"] == json_schema(alert_rules.RULE)
    assert paths["/api/v1/session"]["post"]["requestBody"]["content"]["application/json"]["schema"] == json_schema(auth.LOGIN_SCHEMA)
    metrics = {p["name"]: p for p in paths["/api/v1/nodes/{node_id}/metrics"]["get"]["parameters"]}
    assert metrics["node_id"]["in"] == "path" and metrics["range"]["schema"]["enum"] == list(api.RANGES)
    assert metrics["resolution"]["schema"]["default"] == "auto"
    # An integration's ApiRoute brings its schema and role; its public ping URLs need no login.
    create = paths["/api/v1/integrations/ping/checks"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == json_schema(ping_checks.CREATE_SCHEMA)
    assert create["x-roost-role"] == "operator" and {"bearerAuth": []} in create["security"]
    assert paths["/ping/{uuid}"]["get"]["security"] == [] and "text/plain" in paths["/ping/{uuid}/{op}"]["post"]["requestBody"]["content"]
    # Auth from the permission table, for every operation that is in it.
    for path, ops in paths.items():
        for method, op in ops.items():
            name = ROUTES.get(f"{method.upper()} {path}")
            if name is not None:
                assert op["security"] and op["x-roost-role"], (method, path)
    assert paths["/api/v1/users"]["post"]["x-roost-role"] == "admin"
    assert paths["/api/v1/health"]["get"]["security"] == []


def test_the_converter():
    schema = vol.Schema(
        {
            vol.Required("name"): vol.All(str, vol.Length(min=1, max=10)),
            vol.Optional("count", default=3): vol.All(vol.Coerce(int), vol.Range(min=1, max=9)),
            vol.Optional("ratio"): vol.All(vol.Coerce(float), vol.Range(min=0, max=1, min_included=False)),
            vol.Optional("kind", default="a"): vol.In(["a", "b"]),
            vol.Optional("tags", default=list): vol.All([vol.Match(r"^[a-z]+$")], vol.Length(max=5)),
            vol.Optional("either"): vol.Any(None, int),
            vol.Optional("labels"): {str: str},
            vol.Optional("on"): bool,
            vol.Optional("type"): "report",
        },
        extra=vol.PREVENT_EXTRA,
    )
    out = json_schema(schema)
    assert out["required"] == ["name"] and out["additionalProperties"] is False
    p = out["properties"]
    assert p["name"] == {"type": "string", "minLength": 1, "maxLength": 10}
    assert p["count"] == {"type": "integer", "minimum": 1, "maximum": 9, "default": 3}
    assert p["ratio"] == {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
    assert p["kind"] == {"enum": ["a", "b"], "default": "a"}
    assert p["tags"] == {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}, "maxItems": 5, "default": []}
    assert p["either"] == {"anyOf": [{"type": "null"}, {"type": "integer"}]}
    assert p["labels"] == {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}
    assert p["on"] == {"type": "boolean"} and p["type"] == {"const": "report"}
    assert "additionalProperties" not in json_schema(vol.Schema({"a": int}, extra=vol.ALLOW_EXTRA))
