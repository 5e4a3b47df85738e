"""Roost's dashboard: jinja2 templates, vendored static assets and the views that render them."""

from __future__ import annotations

from typing import Any

from . import auth_views, containers_views, jobs_views, pairing_views, proxmox_views, views


def setup(app: Any) -> None:
    """Register every dashboard page and the static files on the hub's application."""
    views.setup(app)
    auth_views.setup(app)
    pairing_views.setup(app)
    jobs_views.setup(app)
    containers_views.setup(app)
    proxmox_views.setup(app)


__all__ = ["setup"]
