"""The Pings pages: every check with where it stands, its ping URL to copy and a timeline of its last pings; one
check with its ping log."""

from __future__ import annotations

import time
from typing import Any

from roost.core.hub_integration import PageRequest

from . import checks as c

TONES = {
    c.STATUS_UP: "tone-ok",
    c.STATUS_NEW: "tone-muted",
    c.STATUS_STARTED: "tone-ok",
    c.STATUS_LATE: "tone-warn",
    c.STATUS_DOWN: "tone-bad",
    c.STATUS_FAILED: "tone-bad",
    c.STATUS_PAUSED: "tone-muted",
}
# Pings shown in a check's timeline on the list page.
TIMELINE = 20


def _service(page: PageRequest) -> Any:
    from . import SERVICE, PingChecks

    svc = page.hub.data.get(SERVICE)
    return svc if isinstance(svc, PingChecks) else None


def _row(svc: Any, check: dict[str, Any], log: list[dict[str, Any]], *, secret: bool, now: float) -> dict[str, Any]:
    standing = svc.standing(check, now)
    return {
        "check": check,
        "status": standing.status,
        "tone": TONES.get(standing.status, "tone-muted"),
        "summary": standing.summary,
        "due_at": standing.due_at,
        "ping_path": f"/ping/{check['key']}" if secret else "",
        "timeline": log[-TIMELINE:],
    }


def _node_names(nodes: list[dict[str, Any]]) -> dict[str, str]:
    return {str(n.get("id")): str(n.get("name") or n.get("id")) for n in nodes}


async def pings_page(page: PageRequest) -> Any:
    svc = _service(page)
    secret = page.user_role in ("operator", "admin")
    now = svc.clock() if svc is not None else time.time()
    rows = []
    if svc is not None:
        for check in sorted(svc.checks.values(), key=lambda ch: ch["name"].casefold()):
            rows.append(_row(svc, check, await svc.log(check["id"]), secret=secret, now=now))
    nodes = await page.hub.nodes.list()
    problems = sum(1 for r in rows if r["status"] in (c.STATUS_DOWN, c.STATUS_FAILED))
    return page.render(
        "page.html",
        {"page": "pings", "rows": rows, "problems": problems, "can_manage": secret, "nodes": nodes, "node_names": _node_names(nodes)},
    )


async def check_page(page: PageRequest) -> Any:
    svc = _service(page)
    check = svc.checks.get(page.match_info["check_id"]) if svc is not None else None
    if check is None:
        return page.render("missing.html", {"page": "pings", "check_id": page.match_info["check_id"]}, status=404)
    secret = page.user_role in ("operator", "admin")
    log = await svc.log(check["id"])
    row = _row(svc, check, log, secret=secret, now=svc.clock())
    nodes = await page.hub.nodes.list()
    return page.render(
        "check.html",
        {"page": "pings", "row": row, "pings": list(reversed(log)), "can_manage": secret, "node_names": _node_names(nodes)},
    )
