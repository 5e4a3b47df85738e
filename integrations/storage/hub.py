"""The hub half of storage: the Storage page and device detail, the node panel, the manifest and acknowledgement API, and the alert rule kinds.

Agents never import this module. Each node's manifest of expected targets is
kept in the integration's store (``manifests/<node_id>``) and pushed to that
node's agent through ``ctx.agent_settings``; acknowledgements live under
``acks/<node_id>`` as ``{device: {attribute: value}}`` and are held in memory
for the alert handlers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from roost.core import hookimpl
from roost.core.hub_integration import ADMIN, OPERATOR, AlertRuleKind, ApiRoute, HubContext, NodePanel, Page, RouteError, RouteRequest, as_dict, as_list
from roost.core.integration import humanize_invalid

from . import alerts, pages
from .targets import MANIFEST_SCHEMA
from .views import fleet_rows, node_view

ACK_SCHEMA = vol.Schema(
    {
        vol.Required("node_id"): vol.All(str, vol.Match(r"^[A-Za-z0-9_-]{1,64}$", msg="must be a node id")),
        vol.Required("device"): vol.All(str, vol.Length(min=1, max=200)),
        vol.Required("attribute"): vol.All(str, vol.Match(r"^[a-z0-9_]{1,64}$", msg="must be an attribute name such as reallocated_sectors")),
    }
)


def _acks(ctx: HubContext) -> dict[str, dict[str, dict[str, Any]]]:
    return ctx.data.setdefault("acks", {})


def acks_of(ctx: HubContext):
    return lambda node_id: _acks(ctx).get(node_id, {})


@hookimpl
async def roost_hub_setup(ctx: HubContext) -> None:
    found = await ctx.store.items("acks/") if ctx.store is not None else {}
    ctx.data["acks"] = {key.split("/", 1)[1]: value for key, value in found.items() if isinstance(value, dict)}


@hookimpl
def roost_hub_pages(ctx: HubContext) -> list[Page]:
    return [
        Page("/storage", pages.storage_page, nav="Storage", order=30),
        # Before the device page: its two segments would match this path too (node ids never read "manifest").
        Page("/storage/manifest/{node_id}", pages.manifest_page),
        Page("/storage/{node_id}/{device}", pages.device_page),
    ]


@hookimpl
def roost_hub_node_panels(ctx: HubContext, node: Mapping[str, Any], state: Any) -> list[NodePanel]:
    view = node_view({"node": dict(node), "state": {"storage": state}}, acks_of(ctx)(str(node.get("id") or "")))
    return [NodePanel("Storage", "_panel.html", {"node": dict(node), "view": view}, order=20, stylesheets=("storage.css",))]


@hookimpl
def roost_hub_alert_rule_kinds(ctx: HubContext) -> list[AlertRuleKind]:
    return alerts.rule_kinds(acks_of(ctx))


# ------------------------------------------------------------------ API


async def _node(request: RouteRequest, node_id: str) -> dict[str, Any]:
    detail = await request.hub.nodes.get(node_id)
    if detail is None:
        raise RouteError(f"no node {node_id!r}", 404)
    return detail


async def overview(request: RouteRequest) -> dict[str, Any]:
    ctx = request.hub
    nodes = await ctx.nodes.with_integration("storage")
    return {"rows": fleet_rows(nodes, acks_of(ctx))}


async def node_storage(request: RouteRequest) -> dict[str, Any]:
    node_id = request.match_info["node_id"]
    detail = await _node(request, node_id)
    return {"node_id": node_id, "collected_at": detail.get("collected_at"), "storage": node_view(detail, acks_of(request.hub)(node_id)), "manifest": await _manifest(request.hub, node_id)}


async def _manifest(ctx: HubContext, node_id: str) -> dict[str, Any]:
    found = await ctx.store.get(f"manifests/{node_id}") if ctx.store is not None else None
    return found if isinstance(found, dict) else {"targets": []}


async def get_manifest(request: RouteRequest) -> dict[str, Any]:
    node_id = request.match_info["node_id"]
    await _node(request, node_id)
    return await _manifest(request.hub, node_id)


async def put_manifest(request: RouteRequest) -> dict[str, Any]:
    """Replace a node's manifest; it reaches the agent at once (or on its next connect)."""
    node_id = request.match_info["node_id"]
    await _node(request, node_id)
    try:
        manifest = MANIFEST_SCHEMA(request.params)
    except vol.Invalid as err:
        raise RouteError(f"invalid manifest: {humanize_invalid(err, request.params)}; nothing was changed", 400) from None
    ctx = request.hub
    before = await _manifest(ctx, node_id)
    await ctx.store.put(f"manifests/{node_id}", manifest)
    await ctx.agent_settings.put(node_id, manifest)
    await ctx.audit(
        "storage.manifest_changed", actor=request.actor, target=f"node:{node_id}",
        details={"before": [t["id"] for t in before.get("targets", [])], "after": [t["id"] for t in manifest["targets"]]},
    )
    return manifest


def _current_value(detail: Mapping[str, Any], device: str, attribute: str) -> tuple[bool, Any]:
    for dev in as_list(as_dict(as_dict(as_dict(detail.get("state")).get("storage")).get("smart")).get("devices")):
        if dev.get("key") != device:
            continue
        for reason in as_list(dev.get("reasons")):
            if reason.get("attribute") == attribute:
                return True, reason.get("value")
    return False, None


async def acknowledge(request: RouteRequest) -> dict[str, Any]:
    """Set a disk's reason aside at its present value: it comes back when the value changes."""
    node_id, device, attribute = request.params["node_id"], request.params["device"], request.params["attribute"]
    detail = await _node(request, node_id)
    found, value = _current_value(detail, device, attribute)
    if not found:
        raise RouteError(f"node {node_id} reports no reason {attribute!r} for device {device!r} now; nothing to acknowledge", 404)
    ctx = request.hub
    acks = _acks(ctx)
    node_acks = {d: dict(a) for d, a in acks.get(node_id, {}).items()}
    node_acks.setdefault(device, {})[attribute] = value
    await ctx.store.put(f"acks/{node_id}", node_acks)
    acks[node_id] = node_acks
    await ctx.audit("storage.acknowledged", actor=request.actor, target=f"node:{node_id}", details={"device": device, "attribute": attribute, "value": value})
    return {"node_id": node_id, "device": device, "attribute": attribute, "value": value, "acknowledged_at": time.time()}


async def unacknowledge(request: RouteRequest) -> dict[str, Any]:
    node_id, device, attribute = request.params["node_id"], request.params["device"], request.params["attribute"]
    ctx = request.hub
    acks = _acks(ctx)
    node_acks = {d: dict(a) for d, a in acks.get(node_id, {}).items()}
    if attribute not in node_acks.get(device, {}):
        raise RouteError(f"no acknowledgement of {attribute!r} on {device!r} of node {node_id}", 404)
    del node_acks[device][attribute]
    node_acks = {d: a for d, a in node_acks.items() if a}
    await ctx.store.put(f"acks/{node_id}", node_acks)
    acks[node_id] = node_acks
    await ctx.audit("storage.unacknowledged", actor=request.actor, target=f"node:{node_id}", details={"device": device, "attribute": attribute})
    return {"removed": True}


async def device_detail(request: RouteRequest) -> dict[str, Any]:
    node_id, key = request.match_info["node_id"], request.match_info["device"]
    detail = await _node(request, node_id)
    device = next((d for d in node_view(detail, acks_of(request.hub)(node_id))["devices"] if d.get("key") == key), None)
    if device is None:
        raise RouteError(f"node {node_id} reports no device {key!r}", 404)
    return {"node_id": node_id, "device": device, "series": pages.device_series(key)}


@hookimpl
def roost_hub_routes(ctx: HubContext) -> list[ApiRoute]:
    return [
        ApiRoute("GET", "", overview),
        ApiRoute("GET", "/nodes/{node_id}", node_storage),
        ApiRoute("GET", "/manifests/{node_id}", get_manifest),
        # Admin: a manifest decides where storage.mount may mount a drive.
        ApiRoute("PUT", "/manifests/{node_id}", put_manifest, role=ADMIN),
        ApiRoute("POST", "/acknowledgements", acknowledge, role=OPERATOR, schema=ACK_SCHEMA),
        ApiRoute("DELETE", "/acknowledgements", unacknowledge, role=OPERATOR, schema=ACK_SCHEMA),
        ApiRoute("GET", "/devices/{node_id}/{device}", device_detail),
    ]


