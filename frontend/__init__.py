"""Roost's dashboard: jinja2 templates, vendored static assets and the views that render them."""

from __future__ import annotations

from typing import Any

from .views import setup as _setup_views


def setup(app: Any) -> None:
    """Register every dashboard page and the static files on the hub's application."""
    _setup_views(app)
    from . import containers_views, proxmox_views, updates_views

    containers_views.setup(app)
    proxmox_views.setup(app)
    updates_views.setup(app)


__all__ = ["setup"]
