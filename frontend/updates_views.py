"""The dashboard's Updates page: every node's agent version against the hub's newest signed release, with "update" per node and for all outdated ones."""

from __future__ import annotations

from aiohttp import web

from .views import _hub, _render


async def updates_page(request: web.Request) -> web.Response:
    from roost.core.hub.auth import IDENTITY_KEY, ROLE_OPERATOR
    from roost.core.hub.downloads import _versions

    hub = _hub(request)
    nodes = sorted(await _versions(hub), key=lambda n: (not n["outdated"], n["name"]))
    identity = request.get(IDENTITY_KEY)
    context = {
        "page": "updates",
        "nodes": nodes,
        "outdated": sum(1 for n in nodes if n["outdated"]),
        "can_operate": identity is not None and identity.allows(ROLE_OPERATOR),
    }
    return _render(request, "updates/page.html", context)


def setup(app: web.Application) -> None:
    app.router.add_get("/updates", updates_page, name="updates")
