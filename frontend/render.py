"""What every dashboard page shares: the jinja2 environment, static URLs and rendering a page for a request.

Page modules (views.py, auth_views.py, jobs_views.py, pairing_views.py) import
this module; the package's setup() imports them, so frontend/ reads top-down
with no import cycle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import lru_cache
from pathlib import Path
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from roost.core.const import __version__
from roost.core.hub.auth import IDENTITY_KEY
from roost.core.hub.permissions import allows
from roost.core.hub.state import HUB_KEY
from roost.core.hub_integration import STATIC_PREFIX as INTEGRATION_STATIC_PREFIX
from roost.core.hub_integration import VIEWER

from . import formatting

_LOGGER = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"

JINJA_ENV_KEY = web.AppKey("roost_frontend_jinja", jinja2.Environment)
# The integrations' entries in the top navigation: dicts of label, path, role, order.
NAV_KEY = web.AppKey("roost_frontend_integration_nav", list)


def create_environment(
    integration_templates: Mapping[str, jinja2.BaseLoader] | None = None,
    integration_static: Mapping[str, Path] | None = None,
) -> jinja2.Environment:
    """The dashboard's jinja2 environment: the shell's templates, then each integration's as ``<domain>/<name>``."""
    loader: jinja2.BaseLoader = jinja2.PackageLoader("roost.frontend", "templates")
    if integration_templates:
        loader = jinja2.ChoiceLoader([loader, jinja2.PrefixLoader(dict(integration_templates), delimiter="/")])
    static = dict(integration_static or {})

    def url(path: str, domain: str | None = None) -> str:
        if domain is None:
            return static_url(path)
        folder = static.get(domain)
        prefix = f"{INTEGRATION_STATIC_PREFIX}/{domain}/"
        if folder is None:
            _LOGGER.warning("dashboard: integration %s has no static folder for %s", domain, path)
            return prefix + path
        return _hashed_url(folder, prefix, path)

    env = jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        # Hub data may lack any key; a missing one renders as "—" instead of failing the page.
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(formatting.FILTERS)
    env.filters["segment"] = path_segment
    env.filters["pretty_json"] = pretty_json
    env.globals["static_url"] = url
    env.globals["version"] = __version__
    return env


def path_segment(value: Any) -> str:
    """Quote a value for one URL path segment (a node id may hold '/' or '?')."""
    return quote(str(value), safe="")


def pretty_json(value: Any) -> str:
    """Indented JSON as plain text; autoescape makes it safe in the page."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def static_url(path: str) -> str:
    """The URL of a static file with a content hash, so a new release is never served stale."""
    return _hashed_url(STATIC_DIR, STATIC_PREFIX, path)


@lru_cache(maxsize=None)
def _hashed_url(folder: Path, prefix: str, path: str) -> str:
    try:
        digest = hashlib.sha256((folder / path).read_bytes()).hexdigest()[:12]
    except OSError:
        _LOGGER.warning("dashboard: static file %s is missing from %s", path, folder)
        return prefix + path
    return f"{prefix}{path}?v={digest}"


def _hub(request: web.Request) -> Any:
    return request.app[HUB_KEY]


def _render(
    request: web.Request,
    template: str,
    context: dict[str, Any],
    *,
    fragments: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    env = request.app[JINJA_ENV_KEY]
    fragment = request.query.get("fragment")
    if fragment is not None:
        if not fragments or fragment not in fragments:
            raise web.HTTPNotFound(text=f"no fragment named {fragment!r} on this page")
        template = fragments[fragment]
    context = {
        "now": time.time(),
        "path": request.path,
        "integration_nav": nav_entries(request),
        **_identity_context(request),
        **context,
    }
    html = env.get_template(template).render(context)
    response = web.Response(text=html, content_type="text/html", status=status)
    # Pages show live data: a back button or a proxy must never show an old copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def nav_entries(request: web.Request) -> list[dict[str, Any]]:
    """The integrations' nav entries this user may see, the current one marked."""
    identity = request.get(IDENTITY_KEY)
    entries = []
    for entry in request.app.get(NAV_KEY, []):
        if entry["role"] != VIEWER and (identity is None or not identity.allows(entry["role"])):
            continue
        path = entry["path"]
        current = request.path == path or request.path.startswith(path.rstrip("/") + "/")
        entries.append({"label": entry["label"], "path": path, "current": current})
    return entries


def _identity_context(request: web.Request) -> dict[str, Any]:
    """Who is logged in, for the user menu, and the session's CSRF token for forms and the page's script."""
    identity = request.get(IDENTITY_KEY)
    if identity is None:
        # No one to check (a hub without accounts): nothing is hidden; the API still decides.
        return {"me": None, "csrf_token": "", "can": lambda name: True}
    return {"me": identity, "csrf_token": identity.csrf_token, "can": lambda name: allows(identity, name)}
