"""Roost's dashboard: jinja2 templates, vendored static assets and the views that render them."""

from .views import setup

__all__ = ["setup"]
