"""The audit log over HTTP: GET /api/v1/audit (filters, paging), its head and verification, and the dashboard's audit page; admins only."""

from __future__ import annotations

import inspect
import logging
import math
import time
from datetime import datetime, timezone
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.audit import MAX_ACTION_CHARS, MAX_NAME_CHARS, OUTCOMES, AuditEntry, escape, iso
from roost.core.integration import humanize_invalid
from roost.core.store import AuditFilter
from roost.core.store.audit import DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE

from .state import HUB_KEY

_LOGGER = logging.getLogger(__name__)

API_PATH = "/api/v1/audit"
PAGE_PATH = "/audit"
ROLE_NEEDED = "admin"
# Parts of the page a script may re-fetch alone (?fragment=NAME), as on the other dashboard pages.
PAGE_FRAGMENTS = {"entries": "audit/_entries.html"}


def parse_time(value: Any) -> float:
    """Unix seconds, or an ISO 8601 date or date-time; one without a zone is UTC."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or number < 0:
            raise vol.Invalid("must be a time after 1970")
        return number
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise vol.Invalid("must be unix seconds or an ISO 8601 time such as 2024-05-01T12:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


QUERY_SCHEMA = vol.Schema(
    {
        vol.Optional("action", default=""): vol.All(str, vol.Length(max=MAX_ACTION_CHARS)),
        vol.Optional("actor", default=""): vol.All(str, vol.Length(max=MAX_NAME_CHARS)),
        vol.Optional("target", default=""): vol.All(str, vol.Length(max=MAX_NAME_CHARS)),
        vol.Optional("outcome", default=""): vol.Any("", vol.In(OUTCOMES, msg=f"must be one of {', '.join(OUTCOMES)}")),
        vol.Optional("since"): vol.All(_blank_to_none, vol.Any(None, parse_time)),
        vol.Optional("until"): vol.All(_blank_to_none, vol.Any(None, parse_time)),
        vol.Optional("limit", default=DEFAULT_AUDIT_PAGE): vol.All(
            vol.Coerce(int), vol.Range(min=1, max=MAX_AUDIT_PAGE, msg=f"must be between 1 and {MAX_AUDIT_PAGE}")
        ),
        vol.Optional("before"): vol.All(_blank_to_none, vol.Any(None, vol.All(vol.Coerce(int), vol.Range(min=1)))),
        # The dashboard page's own switches.
        vol.Optional("verify"): str,
        vol.Optional("fragment"): str,
    }
)


class QueryError(ValueError):
    pass


def parse_query(query: Any) -> tuple[AuditFilter, int, int | None]:
    try:
        data = QUERY_SCHEMA(dict(query))
    except vol.Invalid as err:
        raise QueryError(f"invalid query: {humanize_invalid(err)}") from None
    since, until = data.get("since"), data.get("until")
    if since is not None and until is not None and since >= until:
        raise QueryError("invalid query: since must be before until")
    filters = AuditFilter(
        action=data["action"].strip(),
        actor=data["actor"],
        target=data["target"],
        outcome=data["outcome"],
        since=since,
        until=until,
    )
    return filters, data["limit"], data.get("before")


async def require_admin(request: web.Request) -> None:
    """Only admins read the audit log; roost.core.hub.auth decides who that is.

    Without the auth module nobody can be shown to be an admin, so the log
    stays closed rather than open to all.
    """
    try:
        from .auth import require
    except ImportError:
        _LOGGER.error("audit log: roost.core.hub.auth is missing, so no one can be checked as an admin; refusing")
        raise web.HTTPServiceUnavailable(
            text='{"error": "the audit log needs user accounts (roost.core.hub.auth), which this hub does not have"}',
            content_type="application/json",
        ) from None
    result = require(request, ROLE_NEEDED)
    if inspect.isawaitable(result):
        await result


def _head_dict(head: Any) -> dict[str, Any] | None:
    return {"count": head.count, "hash": head.hash} if head is not None else None


async def list_entries(request: web.Request) -> web.Response:
    await require_admin(request)
    try:
        filters, limit, before = parse_query(request.query)
    except QueryError as err:
        return web.json_response({"error": str(err)}, status=400)
    store = request.app[HUB_KEY].store
    entries = await store.list_audit(filters, limit=limit, before_seq=before)
    return web.json_response(
        {
            "entries": [entry.to_dict() for entry in entries],
            # Ask again with before=next_before for older entries; null when there are none.
            "next_before": entries[-1].seq if len(entries) == limit else None,
            "head": _head_dict(await store.audit_head()),
        }
    )


async def head(request: web.Request) -> web.Response:
    """The head to note down or forward; `roost audit verify --head COUNT:HASH` checks the log still holds it."""
    await require_admin(request)
    head = await request.app[HUB_KEY].store.audit_head()
    body = _head_dict(head) or {"count": 0, "hash": None}
    body["text"] = f"{head.count}:{head.hash}" if head else None
    return web.json_response(body)


async def verify(request: web.Request) -> web.Response:
    await require_admin(request)
    started = time.monotonic()
    result = await request.app[HUB_KEY].store.verify_audit()
    if not result.ok:
        _LOGGER.error("audit log verification failed: %s", escape(str(result.problem)))
    return web.json_response({**result.to_dict(), "seconds": round(time.monotonic() - started, 3)})


# --------------------------------------------------------------- dashboard


def _row(entry: AuditEntry) -> dict[str, Any]:
    """What the page shows of an entry: every name with control and bidi characters made visible."""
    from roost.core.audit import canonical_json

    try:
        details = canonical_json(entry.details) if entry.details else ""
    except (TypeError, ValueError):
        details = escape(repr(entry.details))
    return {
        "seq": entry.seq,
        "ts": entry.ts,
        "iso": iso(entry.ts),
        "when": _when(entry.ts),
        "action": escape(entry.action),
        "outcome": escape(entry.outcome),
        "actor": escape(entry.actor),
        "target": escape(entry.target),
        "peer": escape(entry.peer),
        "details": details,
    }


def _when(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return escape(repr(ts))


def _form_time(value: float | None) -> str:
    if value is None:
        return ""
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%dT%H:%M")


async def page(request: web.Request) -> web.Response:
    """The audit page: newest first, the API's filters as a form, older entries a page at a time."""
    from roost.frontend.views import _render

    await require_admin(request)
    hub = request.app[HUB_KEY]
    error = ""
    try:
        filters, limit, before = parse_query(request.query)
    except QueryError as err:
        error = str(err)
        filters, limit, before = AuditFilter(), DEFAULT_AUDIT_PAGE, None
    entries = await hub.store.list_audit(filters, limit=limit, before_seq=before)
    result = await hub.store.verify_audit() if request.query.get("verify") else None
    if result is not None and not result.ok:
        _LOGGER.error("audit log verification failed: %s", escape(str(result.problem)))
    keep = {
        key: value
        for key, value in {
            "action": filters.action,
            "actor": filters.actor,
            "target": filters.target,
            "outcome": filters.outcome,
            "since": _form_time(filters.since),
            "until": _form_time(filters.until),
        }.items()
        if value
    }
    if limit != DEFAULT_AUDIT_PAGE:
        keep["limit"] = str(limit)
    context = {
        "page": "audit",
        "rows": [_row(entry) for entry in entries],
        "form": {**keep, "since": _form_time(filters.since), "until": _form_time(filters.until)},
        "filtered": bool(keep),
        "outcomes": OUTCOMES,
        "older": {**keep, "before": str(entries[-1].seq)} if len(entries) == limit else None,
        "newest": keep if before is not None else None,
        "head": await hub.store.audit_head(),
        "result": result,
        "problem_line": escape(str(result.problem)) if result is not None and result.problem else "",
        "error": error,
    }
    # The dashboard's own renderer: same user menu, CSRF token and no-store as every page.
    return _render(request, "audit/page.html", context, fragments=PAGE_FRAGMENTS, status=400 if error else 200)


def setup(app: web.Application) -> None:
    app.router.add_get(API_PATH, list_entries)
    app.router.add_get(API_PATH + "/head", head)
    app.router.add_get(API_PATH + "/verify", verify)
    try:
        import roost.frontend  # noqa: F401
    except ImportError:  # API-only hub: no page
        return
    app.router.add_get(PAGE_PATH, page, name="audit")
