"""The dashboard side of integrations' hub halves: their pages, nav entries, node panels, templates and static files.

An integration's page handler gets a ``PageRequest`` and renders its own
templates (``templates/`` in its folder, named ``<domain>/...`` in the shared
jinja2 environment, extending the shell's ``base.html``). Whatever a page or
a panel raises is shown as an error naming the integration; the rest of the
dashboard keeps working.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup

from roost.core.hub.auth import IDENTITY_KEY, require
from roost.core.hub.integrations import DeclaredPage, PanelView
from roost.core.hub_integration import STATIC_PREFIX, VIEWER, HubContext
from roost.core.integration import Integration

from .render import JINJA_ENV_KEY, NAV_KEY, _render

_LOGGER = logging.getLogger(__name__)

ERROR_TEMPLATE = "integration_error.html"


def integration_folder(integ: Integration) -> Path | None:
    """The folder an integration was loaded from (its templates/ and static/ live there)."""
    module = integ.module
    location = getattr(module, "__file__", None)
    return Path(location).parent if location else None


def template_loaders(integrations: list[Integration]) -> dict[str, jinja2.BaseLoader]:
    loaders: dict[str, jinja2.BaseLoader] = {}
    for integ in integrations:
        folder = integration_folder(integ)
        if folder is not None and (folder / "templates").is_dir():
            loaders[integ.domain] = jinja2.FileSystemLoader(str(folder / "templates"))
    return loaders


def static_dirs(integrations: list[Integration]) -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for integ in integrations:
        folder = integration_folder(integ)
        if folder is not None and (folder / "static").is_dir():
            dirs[integ.domain] = folder / "static"
    return dirs


def setup(app: web.Application, plugins: Any) -> None:
    """Serve each hub half's static files and register its pages and nav entries."""
    loaded = plugins.loaded() if plugins is not None else []
    for domain, folder in sorted(static_dirs(loaded).items()):
        app.router.add_static(f"{STATIC_PREFIX}/{domain}/", folder, name=f"static_{domain}", append_version=False)
    nav: list[dict[str, Any]] = []
    for declared in plugins.pages if plugins is not None else []:
        page = declared.page
        app.router.add_get(page.path, _page_handler(declared))
        if page.nav:
            nav.append({"label": page.nav, "path": page.path, "role": page.role, "order": page.order})
    nav.sort(key=lambda entry: (entry["order"], entry["label"]))
    app[NAV_KEY] = nav


class PageRequest:
    """What an integration's page handler gets (roost.core.hub_integration.PageRequest)."""

    def __init__(self, request: web.Request, integ: Integration) -> None:
        self._request = request
        self._domain = integ.domain
        self.path = request.path
        self.query: Mapping[str, str] = request.query
        self.match_info: Mapping[str, str] = request.match_info
        identity = request.get(IDENTITY_KEY)
        self.user = identity.name if identity is not None else ""
        self.user_role = identity.role if identity is not None else ""
        self.hub: HubContext = integ.context  # type: ignore[assignment]

    def render(
        self, template: str, context: dict[str, Any], *, fragments: Mapping[str, str] | None = None, status: int = 200
    ) -> web.Response:
        prefix = f"{self._domain}/"
        return _render(
            self._request,
            prefix + template,
            {"integration": self._domain, **context},
            fragments={name: prefix + name_template for name, name_template in (fragments or {}).items()} or None,
            status=status,
        )


def _page_handler(declared: DeclaredPage) -> Any:
    integ, page = declared.integration, declared.page

    async def handle(request: web.Request) -> web.StreamResponse:
        if page.role != VIEWER:
            require(request, page.role)  # the auth middleware has already let only logged-in users (viewers and up) in
        if not integ.active:
            why = f"it is {integ.state}" + (f": {integ.reason}" if integ.reason else "")
            return error_page(request, integ, f"This page is not available because {why}.", status=503)
        try:
            return await page.handler(PageRequest(request, integ))
        except web.HTTPException:
            raise
        except Exception as err:
            _LOGGER.exception("integration %s: page %s failed", integ.domain, request.path)
            return error_page(request, integ, f"{type(err).__name__}: {err}", status=500)

    handle.__name__ = f"integration_{integ.domain}_page"
    return handle


def error_page(request: web.Request, integ: Integration, error: str, *, status: int) -> web.Response:
    return _render(
        request,
        ERROR_TEMPLATE,
        {"page": "integration_error", "domain": integ.domain, "name": integ.manifest.name, "error": error},
        status=status,
    )


async def node_panels(request: web.Request, plugins: Any, node: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
    """The node page's integration panels as HTML, each rendered on its own: one that fails shows its error instead."""
    if plugins is None:
        return []
    env: jinja2.Environment = request.app[JINJA_ENV_KEY]
    rendered = []
    views: list[PanelView] = await plugins.node_panels(node, state)
    for view in views:
        item = {
            "domain": view.domain,
            "name": view.name,
            "title": view.title,
            "error": view.error,
            "html": Markup(""),
            "stylesheets": view.stylesheets,
        }
        if not view.error:
            try:
                template = env.get_template(f"{view.domain}/{view.template}")
                base = {"now": time.time(), "path": request.path, "node": node, "integration": view.domain}
                item["html"] = Markup(template.render({**base, **view.context}))
            except Exception as err:
                _LOGGER.exception("integration %s: node panel template %s failed", view.domain, view.template)
                item["error"] = f"{type(err).__name__}: {err}"
        rendered.append(item)
    return rendered
