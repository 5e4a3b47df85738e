"""Roost's dashboard: the shell (layout, nav, auth pages, overview, node page frame, shared JS) and the integrations' pages."""

from __future__ import annotations

from typing import Any

from roost.core.hub.state import HUB_KEY

from . import auth_views, integration_pages, jobs_views, pairing_views, views
from .render import JINJA_ENV_KEY, create_environment


def setup(app: Any) -> None:
    """Register every dashboard page and the static files on the hub's application.

    The hub halves of integrations (``hub.plugins``) bring their own pages,
    templates and static files; they are registered before the shell's
    ``/static/`` so each integration's ``/static/integrations/<domain>/`` wins.
    """
    plugins = getattr(app.get(HUB_KEY), "plugins", None)
    loaded = plugins.loaded() if plugins is not None else []
    app[JINJA_ENV_KEY] = create_environment(
        integration_pages.template_loaders(loaded), integration_pages.static_dirs(loaded)
    )
    integration_pages.setup(app, plugins)
    views.setup(app)
    auth_views.setup(app)
    pairing_views.setup(app)
    jobs_views.setup(app)
    from . import alerts_views, notifications_views, search_views, updates_views

    updates_views.setup(app)
    alerts_views.setup(app)
    notifications_views.setup(app)
    search_views.setup(app)
    from . import api_views

    api_views.setup(app)


__all__ = ["setup"]
