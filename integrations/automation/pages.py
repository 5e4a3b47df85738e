"""The Automations pages: the list with pending approvals, an approval to decide, a run's trace, the editor.

The pages are frames the browser fills from the automations API (what the API
gives a user is exactly what the page shows them); deciding, saving and
running go through the same API with the session's CSRF token.
"""

from __future__ import annotations

from typing import Any

from roost.core.hub_integration import PageRequest


def _context(page: PageRequest, view: str, **extra: Any) -> dict[str, Any]:
    return {"page": "automations", "view": view, "user": page.user, "user_role": page.user_role, "can_operate": page.user_role in ("operator", "admin"), **extra}


async def list_page(page: PageRequest) -> Any:
    return page.render("automations.html", _context(page, "list"))


async def approval_page(page: PageRequest) -> Any:
    return page.render("automations.html", _context(page, "approval", approval_id=page.match_info["approval_id"]))


async def run_page(page: PageRequest) -> Any:
    return page.render("automations.html", _context(page, "run", run_id=page.match_info["run_id"]))


async def edit_page(page: PageRequest) -> Any:
    return page.render("automations.html", _context(page, "edit", automation_id=page.match_info["automation_id"]))
