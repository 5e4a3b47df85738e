"""The dashboard's API reference page: the hub's OpenAPI document rendered by the vendored Swagger UI."""

from __future__ import annotations

from aiohttp import web

from .views import _render


async def api_reference_page(request: web.Request) -> web.Response:
    return _render(request, "api/reference.html", {"page": "api_reference"})


def setup(app: web.Application) -> None:
    app.router.add_get("/api-reference", api_reference_page, name="api_reference")
