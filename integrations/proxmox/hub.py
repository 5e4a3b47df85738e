"""The hub half of the proxmox integration: the Proxmox pages, the Guests panel on a Proxmox node's page and the cluster alert rule kinds.

Agents never import this module (the kernel loads it in the hub role only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from roost.core import hookimpl
from roost.core.hub_integration import AlertRuleKind, HubContext, NodePanel, Page, SearchResult

from . import alerts, pages


@hookimpl
def roost_hub_pages(ctx: HubContext) -> list[Page]:
    return [
        Page("/proxmox", pages.proxmox_page, nav="Proxmox", order=20),
        Page("/proxmox/{node_id}/guests/{vmid}", pages.guest_page),
    ]


@hookimpl
def roost_hub_node_panels(ctx: HubContext, node: Mapping[str, Any], state: Any) -> list[NodePanel]:
    return [NodePanel("Proxmox guests", "_panel.html", pages.panel_context(dict(node), state), order=20, stylesheets=("proxmox.css",))]


@hookimpl
async def roost_hub_search(ctx: HubContext, query: str, limit: int) -> list[SearchResult]:
    return await pages.search(ctx, query, limit)


@hookimpl
def roost_hub_alert_rule_kinds(ctx: HubContext) -> list[AlertRuleKind]:
    return alerts.rule_kinds()
