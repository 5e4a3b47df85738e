"""Helpers shared by the dashboard pages built from one integration's state on every node (containers, Proxmox)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from . import views


def as_list(value: Any) -> list[dict[str, Any]]:
    """The dicts of value when it is a list, else nothing: hub data is never trusted to have a type."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def integration_status(integrations: Any, domain: str) -> dict[str, Any] | None:
    """The entry for domain in a node's integrations list, or None."""
    for item in as_list(integrations):
        if item.get("domain") == domain:
            return item
    return None


async def nodes_running(request: web.Request, domain: str, shown_states: Iterable[str]) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(node, integration status, node detail) of every node whose domain integration is in one of shown_states."""
    hub = views._hub(request)
    overview = await hub.integrations_overview()
    found = []
    for node_id, info in as_dict(overview.get("nodes")).items():
        status = integration_status(as_dict(info).get("integrations"), domain)
        if status is None or status.get("state") not in shown_states:
            continue
        detail = await hub.node_detail(node_id)
        if detail is None:
            continue
        node = {**as_dict(detail.get("node")), "id": as_dict(detail.get("node")).get("id", node_id)}
        found.append((node, status, detail))
    return found


def chart_specs(domain: str, charts: Iterable[tuple[str, str, str, Iterable[tuple[str, str]]]], instance: Any) -> list[dict[str, Any]]:
    """The charts js/charts.js draws for one instance (a guest, a container): (key, title, unit, [(metric, label)])
    become dicts whose series are named ``domain.metric[instance]``."""
    return [
        {"key": key, "title": title, "unit": unit, "series": [{"name": f"{domain}.{metric}[{instance}]", "label": label} for metric, label in series]}
        for key, title, unit, series in charts
    ]


def selected_range(request: web.Request, ranges: Iterable[str], default: str) -> str:
    """The ?range= of the request when it is one of ranges, else default."""
    wanted = request.query.get("range", default)
    return wanted if wanted in tuple(ranges) else default
