"""The hub half of tcp_probe: a panel on each probing node's page, a page of every target, a headline figure and an
API route listing the targets that are down.

The hub imports this module; agents never do (their half is __init__.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from roost.core import hookimpl
from roost.core.hub_integration import (
    ApiRoute,
    HeadlineFigure,
    HubContext,
    NodePanel,
    Page,
    PageRequest,
    RouteRequest,
    as_dict,
    as_list,
)

from .const import DOMAIN, METRIC_TARGETS_UP


def targets_of(state: Any) -> list[dict[str, Any]]:
    """The targets of one node's tcp_probe state, down ones first, then by name."""
    return sorted(as_list(as_dict(state).get("targets")), key=lambda t: (t.get("up") is True, str(t.get("name"))))


async def probing_nodes(hub: HubContext) -> list[dict[str, Any]]:
    """Every node that runs tcp_probe, with its targets."""
    found = []
    for detail in await hub.nodes.with_integration(DOMAIN):
        node = as_dict(detail.get("node"))
        found.append({"node": node, "status": detail["status"], "targets": targets_of(as_dict(detail.get("state")).get(DOMAIN))})
    return sorted(found, key=lambda n: str(n["node"].get("name") or n["node"].get("id")).casefold())


async def probes_page(page: PageRequest) -> Any:
    nodes = await probing_nodes(page.hub)
    down = sum(1 for n in nodes for t in n["targets"] if t.get("up") is not True)
    return page.render("page.html", {"page": "tcp_probe", "nodes": nodes, "down": down})


async def down_targets(request: RouteRequest) -> dict[str, Any]:
    """GET /api/v1/integrations/tcp_probe/down: every target that did not accept a connection in its last probe."""
    down = [
        {"node_id": n["node"].get("id"), "node": n["node"].get("name"), **t}
        for n in await probing_nodes(request.hub)
        for t in n["targets"]
        if t.get("up") is not True
    ]
    return {"down": down}


@hookimpl
def roost_hub_pages(ctx: HubContext) -> list[Page]:
    return [Page("/tcp-probe", probes_page, nav="TCP probes", order=50)]


@hookimpl
def roost_hub_node_panels(ctx: HubContext, node: Mapping[str, Any], state: Any) -> list[NodePanel]:
    return [NodePanel("TCP probes", "_panel.html", {"targets": targets_of(state)}, stylesheets=("tcp_probe.css",))]


@hookimpl
def roost_hub_headline_figures(ctx: HubContext) -> list[HeadlineFigure]:
    return [HeadlineFigure("probes_up", f"{DOMAIN}.{METRIC_TARGETS_UP}", "Probes up", "count", order=60)]


@hookimpl
def roost_hub_routes(ctx: HubContext) -> list[ApiRoute]:
    return [ApiRoute("GET", "/down", down_targets)]
