"""Roost's dashboard: jinja2 templates, vendored static assets and the views that render them."""
