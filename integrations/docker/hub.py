"""The hub half of the docker integration: the Containers pages, the panel on a Docker host's node page and the container alert rule kinds.

Agents never import this module (the kernel loads it in the hub role only), so
the agent half stays free of the dashboard.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from roost.core import hookimpl
from roost.core.hub_integration import AlertRuleKind, HeadlineFigure, HubContext, NodePanel, Page, SearchResult

from . import alerts, pages


@hookimpl
def roost_hub_pages(ctx: HubContext) -> list[Page]:
    return [
        Page("/containers", pages.containers_page, nav="Containers", order=10),
        Page("/containers/{node_id}/{container}", pages.container_page),
    ]


@hookimpl
def roost_hub_headline_figures(ctx: HubContext) -> list[HeadlineFigure]:
    # Container health on the overview: one unhealthy or restart-looping container is a problem on its host.
    return [
        HeadlineFigure("containers_running", "docker.containers_running", "Containers", "count", order=60),
        HeadlineFigure("containers_unhealthy", "docker.containers_unhealthy", "Unhealthy", "count", order=61, problem_above=0),
        HeadlineFigure("containers_restarting", "docker.containers_restarting", "Restarting", "count", order=62, problem_above=0),
    ]


@hookimpl
def roost_hub_node_panels(ctx: HubContext, node: Mapping[str, Any], state: Any) -> list[NodePanel]:
    return [NodePanel("Containers", "_panel.html", pages.panel_context(dict(node), state), order=10, stylesheets=("containers.css",))]


@hookimpl
async def roost_hub_search(ctx: HubContext, query: str, limit: int) -> list[SearchResult]:
    return await pages.search(ctx, query, limit)


@hookimpl
def roost_hub_alert_rule_kinds(ctx: HubContext) -> list[AlertRuleKind]:
    return alerts.rule_kinds()
