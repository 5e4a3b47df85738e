"""The dashboard's Alerts page: firing and pending now (acknowledge, snooze), history with filters, rules with a preview,
silences and maintenance windows. Every change goes through the JSON API (js/alerts.js), so the page and the API answer alike."""

from __future__ import annotations

import time
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.hub.alert_eval import FIRING, PENDING
from roost.core.hub.alerts_api import HISTORY_QUERY

from .render import _hub, _render

ALERTS_FRAGMENTS = {"now": "alerts/_now.html"}
# The Alerts page's sections (anchor, label); notifications and pings add theirs (with a page path) as they land.
SECTIONS: list[dict[str, str]] = [
    {"id": "now", "label": "Now", "href": "#now"},
    {"id": "history", "label": "History", "href": "#history"},
    {"id": "rules", "label": "Rules", "href": "#rules"},
    {"id": "silences", "label": "Silences", "href": "#silences"},
    {"id": "maintenance", "label": "Maintenance windows", "href": "#maintenance"},
]


async def alerts_page(request: web.Request) -> web.Response:
    hub = _hub(request)
    alerts = hub.alerts
    try:
        filters = HISTORY_QUERY({k: v for k, v in request.query.items() if k in ("node_id", "rule_id", "state", "severity") and v})
    except vol.Invalid:
        filters = {"limit": 200}
    filters.setdefault("limit", 100)
    live = await alerts.live_instances()
    now = time.time()
    rules = sorted(alerts.rules.values(), key=lambda r: r["name"].lower())
    nodes = sorted(((nid, n.name) for nid, n in hub._nodes.items()), key=lambda p: p[1].lower())
    windows = sorted(alerts.windows.values(), key=lambda w: w["name"].lower())
    context: dict[str, Any] = {
        "page": "alerts",
        "sections": SECTIONS,
        "firing": [i for i in live if i["state"] == FIRING],
        "pending": [i for i in live if i["state"] == PENDING],
        "history": await alerts.history(**filters),
        "filters": filters,
        "highlight": request.query.get("instance", ""),
        "rules": [
            {**r, "available": r["kind"] in alerts.kinds(), "error": alerts.rule_errors.get(r["id"]),
             "firing": sum(1 for i in live if i["rule_id"] == r["id"] and i["state"] == FIRING)}
            for r in rules
        ],
        "kinds": alerts.kind_list(),
        "silences": sorted(alerts.silences.values(), key=lambda s: -s["ends_at"]),
        "windows": [{**w, "active": alerts.window_active(w, now) is not None, "next_start": alerts.next_window(w, now)} for w in windows],
        "timezone": str(alerts.timezone()),
        "nodes": nodes,
        "node_names": dict(nodes),
        "now": now,
    }
    return _render(request, "alerts/page.html", context, fragments=ALERTS_FRAGMENTS)


def setup(app: web.Application) -> None:
    app.router.add_get("/alerts", alerts_page, name="alerts")
