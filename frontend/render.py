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
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from roost.core.const import __version__
from roost.core.hub.auth import IDENTITY_KEY
from roost.core.hub.state import HUB_KEY

from . import formatting

_LOGGER = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"

JINJA_ENV_KEY = web.AppKey("roost_frontend_jinja", jinja2.Environment)



def create_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("roost.frontend", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        # Hub data may lack any key; a missing one renders as "—" instead of failing the page.
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(formatting.FILTERS)
    env.filters["segment"] = path_segment
    env.filters["pretty_json"] = pretty_json
    env.globals["static_url"] = static_url
    env.globals["version"] = __version__
    return env


def path_segment(value: Any) -> str:
    """Quote a value for one URL path segment (a node id may hold '/' or '?')."""
    return quote(str(value), safe="")


def pretty_json(value: Any) -> str:
    """Indented JSON as plain text; autoescape makes it safe in the page."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@lru_cache(maxsize=None)
def static_url(path: str) -> str:
    """The URL of a static file with a content hash, so a new release is never served stale."""
    try:
        digest = hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:12]
    except OSError:
        _LOGGER.warning("dashboard: static file %s is missing from %s", path, STATIC_DIR)
        return STATIC_PREFIX + path
    return f"{STATIC_PREFIX}{path}?v={digest}"


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
    context = {"now": time.time(), "path": request.path, **_identity_context(request), **context}
    html = env.get_template(template).render(context)
    response = web.Response(text=html, content_type="text/html", status=status)
    # Pages show live data: a back button or a proxy must never show an old copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def _identity_context(request: web.Request) -> dict[str, Any]:
    """Who is logged in, for the user menu, and the session's CSRF token for forms and the page's script."""
    identity = request.get(IDENTITY_KEY)
    if identity is None:
        return {"me": None, "csrf_token": ""}
    return {"me": identity, "csrf_token": identity.csrf_token}
