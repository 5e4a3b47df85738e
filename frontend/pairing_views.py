"""The dashboard's trust pages: pending pairing requests, join tokens, and the grants section of a node's page.

The pages only read. Every change (approve, reject, grants, revoke, join
tokens) is a fetch from ``static/js/pairing.js`` to the hub's JSON API,
which checks the role, the CSRF token and writes the audit log. Who may see
each page, and which controls it renders, come from the one permission table
the API uses (``roost.core.hub.permissions``): the pairing and join token
pages are for admins, like ``GET /api/v1/pairing`` and ``/api/v1/join-tokens``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.capabilities import KNOWN, Ceiling, is_read_only

from .render import _hub, _render

# "count" feeds the menu badge on every page, with the page's own access rules.
PAIRING_FRAGMENTS = {"pending": "pairing/_pending.html", "count": "pairing/_count.html"}
TOKENS_FRAGMENTS = {"tokens": "tokens/_list.html"}

# How long a new join token lasts: the API takes any duration from 1 min to 365 d.
TOKEN_EXPIRY_CHOICES = (("10m", "10 minutes"), ("1h", "1 hour"), ("24h", "1 day"), ("7d", "7 days"), ("30d", "30 days"))
DEFAULT_TOKEN_EXPIRY = "1h"
MAX_TOKEN_USES = 1000

# Facts worth a glance when deciding whether to trust a host; the rest is one click away.
FACT_SUMMARY = (
    ("os", "OS"),
    ("os_version", "Version"),
    ("kernel", "Kernel"),
    ("arch", "Architecture"),
    ("cpu_model", "CPU"),
    ("cpu_cores_logical", "CPU threads"),
    ("mem_total_bytes", "Memory"),
    ("virtualization", "Virtualization"),
    ("container", "Container"),
)


def setup(app: web.Application) -> None:
    """Register the pairing and join token pages."""
    app.router.add_get("/pairing", pairing_page, name="pairing")
    app.router.add_get("/join-tokens", join_tokens_page, name="join_tokens")


def can(request: web.Request, permission: str) -> bool:
    """Whether to show controls that need this permission (roost.core.hub.permissions); the API checks again on every change.

    Who may open these pages at all is the same table's decision, made before the view runs.
    """
    from roost.core.hub.permissions import can as allowed

    return allowed(request, permission)


def group_hex(value: Any, size: int = 4) -> str:
    """A hex fingerprint in groups of four ("3f2a 9c01 …"), the way the agent prints it."""
    text = "".join(str(value or "").split()).lower()
    return " ".join(text[i : i + size] for i in range(0, len(text), size))


def _ceiling(data: Any) -> Ceiling:
    try:
        return Ceiling.from_dict(data if isinstance(data, dict) else None)
    except vol.Invalid:  # an agent's malformed ceiling: show what the hub falls back to
        return Ceiling()


def capability_rows(items: list[dict[str, Any]], *, ceiling: Ceiling | None, checked: set[str]) -> list[dict[str, Any]]:
    """One row per capability: whether it only reads, whether the agent's ceiling permits it (no ceiling: yes), whether it is ticked."""
    rows = []
    for item in items:
        name = str(item.get("name", ""))
        rows.append(
            {
                "name": name,
                "description": item.get("description") or KNOWN.get(name, ""),
                "read_only": is_read_only(name),
                "known": name in KNOWN,
                "permitted": ceiling is None or ceiling.permits(name),
                "checked": name in checked,
            }
        )
    return rows


def fact_summary(facts: Any) -> list[tuple[str, Any, str]]:
    """(label, value, format) for the facts that help recognise a host."""
    if not isinstance(facts, dict):
        return []
    out = []
    for key, label in FACT_SUMMARY:
        value = facts.get(key)
        if value in (None, "", [], {}):
            continue
        fmt = "bytes" if key.endswith("_bytes") else "integer" if key == "cpu_cores_logical" else "text"
        out.append((label, value, fmt))
    return out


def request_card(request: dict[str, Any], hub: Any) -> dict[str, Any]:
    """A pending pairing request as the card shows it."""
    ceiling = _ceiling(request.get("ceiling"))
    changed_id = request.get("key_changed_node")
    changed = None
    if changed_id:
        node = hub.node(changed_id) if hasattr(hub, "node") else None
        changed = {"id": changed_id, "name": getattr(node, "name", "") or changed_id}
    return {
        **request,
        "key_fingerprint": group_hex(request.get("key_fingerprint")),
        "ceiling": ceiling.as_dict(),
        "capabilities": capability_rows(request.get("offered") or [], ceiling=ceiling, checked=set(request.get("default_grants") or [])),
        "facts_summary": fact_summary(request.get("facts")),
        "key_changed": changed,
    }


async def _hub_url(hub: Any) -> str:
    """The URL agents use to reach this hub (may look up this host's name, so off the event loop)."""
    config = getattr(hub, "config", None)
    if config is None or not hasattr(config, "url"):
        return ""
    return await asyncio.to_thread(config.url)


async def pairing_page(request: web.Request) -> web.Response:
    """Pending pairing requests with their codes, agents discovered on the network, and the hub's CA fingerprint."""
    hub = _hub(request)
    pending = sorted(await hub.pairing.pending(), key=lambda r: r.get("created_at") or 0, reverse=True)
    if request.query.get("fragment") == "count":
        return _render(request, "pairing/page.html", {"count": len(pending)}, fragments=PAIRING_FRAGMENTS)
    ca = hub.ca_fingerprint or ""
    context = {
        "page": "pairing",
        "pending": [request_card(r, hub) for r in pending],
        "pairing_pending": len(pending),
        "discovered": [dict(d, key_fingerprint=group_hex(d.get("key_fingerprint"))) for d in hub.pairing.discovered()],
        "ca_fingerprint": group_hex(ca),
        "ca_short": group_hex(ca[:16]),
        "can_admin": can(request, "pairing.decide"),
        "hub_url": await _hub_url(hub),
    }
    return _render(request, "pairing/page.html", context, fragments=PAIRING_FRAGMENTS)


async def node_trust(request: web.Request, node: dict[str, Any]) -> dict[str, Any]:
    """The node page's grants section: granted, what the agent's ceiling permits, and what runs.

    Empty when the hub keeps no grants (a hub built without pairing), so the
    node page renders without the section.
    """
    hub = _hub(request)
    pairing, store = getattr(hub, "pairing", None), getattr(hub, "store", None)
    node_id = node.get("id")
    # The section is not part of any fragment, so live refreshes skip the query.
    if pairing is None or store is None or not node_id or "fragment" in request.query:
        return {}
    view = pairing.grants_view(await store.get_grants(node_id))
    ceiling = _ceiling(view.get("ceiling"))
    effective = set(view.get("effective") or [])
    rows = capability_rows(view.get("offered") or [], ceiling=ceiling, checked=set(view.get("grants") or []))
    for row in rows:
        row["effective"] = row["name"] in effective
    revoked = node.get("status") == "revoked"
    return {
        "trust": {
            "node_id": node_id,
            "rows": rows,
            "ceiling": ceiling.as_dict(),
            "effective": sorted(effective),
            "updated_at": view.get("updated_at"),
            "local": bool(node.get("local")),
            "revoked": revoked,
            "can_edit": can(request, "grants.change") and not revoked,
            "can_revoke": can(request, "nodes.revoke") and not revoked and not node.get("local"),
        }
    }


async def join_tokens_page(request: web.Request) -> web.Response:
    """Join tokens for scripted installs: create one (shown once, with the agent command), see their state, revoke."""
    from roost.core.hub.jointokens import token_view

    hub = _hub(request)
    now = time.time()
    tokens = sorted((token_view(t, now) for t in await hub.store.list_join_tokens()), key=lambda t: t["created_at"], reverse=True)
    known = [{"name": name, "description": description} for name, description in sorted(KNOWN.items())]
    context = {
        "page": "join_tokens",
        "tokens": tokens,
        "can_admin": can(request, "join_tokens.manage"),
        "capabilities": capability_rows(known, ceiling=None, checked={c["name"] for c in known if is_read_only(c["name"])}),
        "expiry_choices": TOKEN_EXPIRY_CHOICES,
        "default_expiry": DEFAULT_TOKEN_EXPIRY,
        "max_uses": MAX_TOKEN_USES,
    }
    return _render(request, "tokens/page.html", context, fragments=TOKENS_FRAGMENTS)
