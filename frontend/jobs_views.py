"""The dashboard's action and job pages: a node's actions as forms, the jobs list, one job with live output, and cron schedules.

The pages only read. Running an action, preparing a signed envelope,
cancelling a job, waking a node and changing schedules are fetches from
``static/js/jobs.js`` to the hub's JSON API, which checks the role and the
CSRF token. Run, Cancel, Wake and the schedule controls are rendered for
operators and admins only; a viewer sees the same forms, disabled.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from aiohttp import web

from .formatting import DASH, fmt_duration
from .render import JINJA_ENV_KEY, _hub, _render

# Job state -> (label, tone). The label carries the meaning; the tone only colours it.
JOB_STATES = {
    "queued": ("Queued", "muted"),
    "dispatched": ("Dispatched", "info"),
    "running": ("Running", "info"),
    "succeeded": ("Succeeded", "ok"),
    "failed": ("Failed", "bad"),
    "timed_out": ("Timed out", "bad"),
    "cancelled": ("Cancelled", "warn"),
    "refused": ("Refused", "bad"),
}
ACTIVE_STATES = ("queued", "dispatched", "running")

JOBS_PAGE_SIZE = 50
RECENT_JOBS_ON_NODE = 5
# Statuses of a node that has gone quiet, the ones a Wake button makes sense for.
WAKEABLE = ("offline", "stale")
# A new envelope lasts this long unless the operator picks another.
ENVELOPE_TTL_CHOICES = (("300", "5 minutes"), ("900", "15 minutes"), ("3600", "1 hour"))
DEFAULT_ENVELOPE_TTL = "900"

# Cron presets for the schedule form (the hub evaluates cron in UTC).
CRON_PRESETS = (
    ("*/15 * * * *", "Every 15 minutes"),
    ("0 * * * *", "Every hour"),
    ("0 3 * * *", "Every day at 03:00"),
    ("0 3 * * 0", "Every Sunday at 03:00"),
    ("0 3 1 * *", "On the 1st of every month at 03:00"),
)

JOBS_FRAGMENTS = {"jobs": "jobs/_list.html"}
JOB_FRAGMENTS = {"detail": "jobs/_detail.html"}
SCHEDULES_FRAGMENTS = {"schedules": "jobs/_schedules.html"}


def setup(app: web.Application) -> None:
    """Register the jobs, job and schedules pages, and the filters their templates use."""
    env = app[JINJA_ENV_KEY]
    env.filters.update(job_state_label=job_state_label, job_state_tone=job_state_tone, until=fmt_until)
    app.router.add_get("/jobs", jobs_page, name="jobs")
    app.router.add_get("/jobs/{job_id}", job_page, name="job")
    app.router.add_get("/schedules", schedules_page, name="schedules")


# -------------------------------------------------------------------- filters


def job_state_label(state: Any) -> str:
    return JOB_STATES.get(str(state), (str(state or "unknown").replace("_", " ").capitalize(), "muted"))[0]


def job_state_tone(state: Any) -> str:
    return JOB_STATES.get(str(state), ("", "muted"))[1]


def fmt_until(value: Any, now: float | None = None) -> str:
    """A future unix timestamp relative to now: 'in 5 min'; a past one: '5 min ago'; '—' for none."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return DASH
    delta = value - (time.time() if now is None else now)
    if abs(delta) < 2:
        return "now"
    return f"in {fmt_duration(delta)}" if delta > 0 else f"{fmt_duration(-delta)} ago"


# ---------------------------------------------------------------- roles


def can_operate(request: web.Request) -> bool:
    """Whether to render run, cancel, schedule and wake controls: the permission table's jobs.run; the API checks again on every change."""
    from roost.core.hub.permissions import can

    return can(request, "jobs.run")


# ----------------------------------------------------------- forms from schemas

# What a browser's ``pattern`` (compiled with the ``v`` flag) accepts after a backslash.
_JS_SYNTAX = set("^$\\.*+?()[]{}|/")
_JS_CLASS_PUNCT = set("&-!#%,:;<=>@`~")
_JS_ESCAPES = set("dDwWsSnrtfv")
_JS_DOUBLE_PUNCT = ("&&", "!!", "##", "$$", "%%", "**", "++", ",,", "..", "::", ";;", "<<", "==", ">>", "??", "@@", "^^", "``", "~~")


def html_pattern(pattern: Any) -> str | None:
    """A Python regular expression as an HTML ``pattern`` attribute, or None when a browser might read it differently.

    Browsers compile ``pattern`` with the ``v`` flag, which rejects things
    Python accepts: ``(?P<name>``, ``\\A``, ``\\-`` outside a class, a bare ``-``
    or ``(`` inside one. The usual patterns are rewritten to mean the same;
    anything else is left to the agent, which checks every parameter anyway.
    """
    if not isinstance(pattern, str) or not pattern or len(pattern) > 500:
        return None
    if re.search(r"\(\?(?![:=!])", pattern):
        return None
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            if nxt in _JS_ESCAPES or nxt in _JS_SYNTAX or (in_class and nxt in _JS_CLASS_PUNCT):
                out.append("\\" + nxt)
            elif nxt == "b" and not in_class:
                out.append("\\b")
            elif nxt and not nxt.isalnum() and nxt not in _JS_CLASS_PUNCT:
                out.append(nxt)  # an escaped literal such as "\\ " or "\\'"
            elif nxt in _JS_CLASS_PUNCT and nxt and not in_class:
                out.append(nxt)  # "\\-" outside a class is a plain "-"
            else:
                return None
            i += 2
            continue
        if in_class:
            if pattern[i : i + 2] in _JS_DOUBLE_PUNCT:
                return None
            if ch == "]":
                in_class = False
            elif ch == "-" and (out[-1] in ("[", "[^") or pattern[i + 1 : i + 2] == "]"):
                ch = "\\-"
            elif ch in "()[{}/|":
                ch = "\\" + ch
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "^":
                out.append("[^")
                i += 2
                continue
            if pattern[i + 1 : i + 2] == "]":
                return None  # Python's "[]...]" (a literal "]" first) means something else in JavaScript
        out.append(ch)
        i += 1
    return None if in_class else "".join(out)


def _label(name: str) -> str:
    return name.replace("_", " ").strip().capitalize() or name


def _number_attr(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return f"{value:g}" if isinstance(value, float) else str(value)


def _range_hint(kind: str, low: str | None, high: str | None) -> str:
    what = "A whole number" if kind == "integer" else "A number"
    if low is not None and high is not None:
        return f"{what} from {low} to {high}."
    if low is not None:
        return f"{what}, at least {low}."
    if high is not None:
        return f"{what}, at most {high}."
    return f"{what}."


def form_fields(params: Any) -> list[dict[str, Any]]:
    """The inputs for an action's parameters, from its voluptuous-serialize description.

    Each field says which input to draw (``text``, ``integer``, ``float``,
    ``boolean``, ``select``, ``json``), whether it is required, its default,
    pattern, length and value bounds. Anything unrecognised is a text input;
    the agent validates the parameters whatever the form lets through.
    """
    fields: list[dict[str, Any]] = []
    for raw in params if isinstance(params, list) else []:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            continue
        kind = str(raw.get("type") or "string")
        default = raw.get("default")
        if default is not None and not isinstance(default, (str, int, float, bool)):
            default = json.dumps(default) if kind == "json" else None
        field: dict[str, Any] = {
            "name": raw["name"],
            "label": _label(raw["name"]),
            "description": str(raw.get("description") or ""),
            "required": bool(raw.get("required")),
            "kind": {"string": "text", "integer": "integer", "float": "float", "boolean": "boolean", "select": "select", "json": "json"}.get(kind, "text"),
            "type_name": kind,
            "default": default,
        }
        if field["kind"] == "text":
            field["pattern"] = html_pattern(raw.get("pattern"))
            field["pattern_text"] = str(raw.get("pattern") or "")
            field["minlength"] = _number_attr(raw.get("lengthMin"))
            field["maxlength"] = _number_attr(raw.get("lengthMax"))
            if field["maxlength"]:
                field["hint"] = f"Up to {field['maxlength']} characters."
        elif field["kind"] in ("integer", "float"):
            field["min"] = _number_attr(raw.get("valueMin"))
            field["max"] = _number_attr(raw.get("valueMax"))
            field["step"] = "1" if field["kind"] == "integer" else "any"
            field["hint"] = _range_hint(field["kind"], field["min"], field["max"])
        elif field["kind"] == "json":
            field["hint"] = "JSON."
        elif field["kind"] == "select":
            options = []
            for option in raw.get("options") or []:
                value, label = (option[0], option[1]) if isinstance(option, (list, tuple)) and len(option) == 2 else (option, option)
                # The option's value is JSON, so an integer choice goes back as an integer.
                options.append({"value": json.dumps(value), "label": str(label), "selected": default is not None and value == default})
            field["options"] = options
        if field["kind"] == "json":
            field["whole"] = raw["name"] == "params" and len(params) == 1
        fields.append(field)
    return fields


# ------------------------------------------------------------- node actions


def refusal_reason(capability: str, granted: set[str], effective: set[str]) -> str:
    """Why a node cannot run an action, and what would change that."""
    if capability in effective:
        return ""
    if capability in granted:
        return f"Needs {capability}: granted, but the agent's own ceiling refuses it. Change the ceiling in the agent's config on that host."
    return f"Needs {capability}, which this node is not granted. An admin can grant it under Grants."


def ceiling_fix(capability: str, ceiling: Any) -> str:
    """The ``[agent.ceiling]`` table to put in the agent's config so its ceiling allows ``capability``; "" if unknown."""
    from roost.core.capabilities import Ceiling

    try:
        current = Ceiling.from_dict(ceiling if isinstance(ceiling, dict) else None)
    except Exception:  # a ceiling the agent reported in a shape this hub does not read
        return ""
    changed = current.allowing(capability)
    return "" if changed == current else changed.as_toml()


def action_title(name: str, described_title: Any = None) -> str:
    """A person's name for an action: its declared title, else its id in words ("demo.thing.restart" -> "Restart thing")."""
    if isinstance(described_title, str) and described_title.strip():
        return described_title.strip()
    parts = [p for p in str(name).split(".") if p]
    if len(parts) < 2:
        return _label(str(name))
    verb = parts[-1].replace("_", " ")
    thing = " ".join(p.replace("_", " ") for p in parts[1:-1]) or parts[0].replace("_", " ")
    return f"{verb} {thing}".strip().capitalize()


def known_values(state: Any, path: Any) -> list[str]:
    """The values a parameter may take on this node, read from its state: ``"<domain>.<list>[].<field>"``
    (``"demo.things[].name"``) lists every item's field. Unknown paths and odd data give none."""
    if not isinstance(path, str) or not isinstance(state, dict):
        return []
    match = re.fullmatch(r"([a-z][a-z0-9_]*)\.([a-z][a-z0-9_.]*)\[\]\.([a-z][a-z0-9_]*)", path)
    if not match:
        return []
    domain, list_path, key = match.groups()
    value: Any = state.get(domain)
    for part in list_path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    values = []
    for item in value if isinstance(value, list) else []:
        v = item.get(key) if isinstance(item, dict) else None
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v) not in values:
            values.append(str(v))
    return sorted(values, key=str.casefold)[:500]


def action_card(described: dict[str, Any], *, granted: set[str], effective: set[str], ceiling: Any = None, state: Any = None) -> dict[str, Any]:
    """One action as its card shows it: name, flags, the reason it is greyed out, its form fields."""
    capability = str(described.get("capability") or "")
    reason = refusal_reason(capability, granted, effective)
    fix = ceiling_fix(capability, ceiling) if reason and capability in granted else ""
    fields = form_fields(described.get("params"))
    pickers = described.get("pickers") if isinstance(described.get("pickers"), dict) else {}
    for f in fields:
        if f["kind"] in ("text", "integer") and f["name"] in pickers:
            f["known"] = known_values(state, pickers[f["name"]])
    return {
        "title": action_title(str(described.get("name") or ""), described.get("title")),
        "ceiling_fix": fix,
        "name": str(described.get("name") or ""),
        "capability": capability,
        "description": str(described.get("description") or ""),
        "destructive": bool(described.get("destructive")),
        "idempotent": bool(described.get("idempotent")),
        "timeout": described.get("timeout"),
        "target": described.get("target") or "",
        "allowed": not reason,
        "reason": reason,
        "fields": fields,
    }


async def _wake_view(hub: Any, node_id: str) -> dict[str, Any]:
    """The MACs a Wake button would wake and the connected nodes that could relay the packet, as the wake API sees them."""
    from roost.core.hub import wake

    relays = await wake.relays(hub, node_id)
    return {"macs": wake.wake_targets(await wake.node_macs(hub, node_id)), "relays": sorted(relays, key=lambda r: str(r["name"]).casefold())}


async def node_actions(request: web.Request, node: dict[str, Any], state: Any = None) -> dict[str, Any]:
    """The node page's Actions section: every action the node offers, a Wake button when it is quiet, its latest jobs.

    Empty when the hub runs no job engine (a hub built without one), so the
    node page renders without the section.
    """
    from roost.core.store.jobs import JobFilter

    hub = _hub(request)
    engine, store = getattr(hub, "jobs", None), getattr(hub, "store", None)
    node_id = node.get("id")
    # The section is not part of any fragment, so live refreshes skip the queries.
    if engine is None or store is None or not node_id or "fragment" in request.query:
        return {}
    grants = await store.get_grants(node_id)
    effective = set(await engine.effective_for(node_id))
    described = engine.actions.get(node_id, {})
    cards = [
        action_card(d, granted=set(grants.grants), effective=effective, ceiling=grants.ceiling, state=state)
        for _, d in sorted(described.items())
    ]
    recent = [_job_row(j) for j in await store.list_jobs(JobFilter(node_id=node_id, limit=RECENT_JOBS_ON_NODE))]
    wake = await _wake_view(hub, node_id)
    return {
        "actions_section": {
            "node_id": node_id,
            "online": node_id in engine.channels,
            "status": node.get("status"),
            "cards": cards,
            "can_run": can_operate(request) and node.get("status") != "revoked",
            "recent": recent,
            "macs": wake["macs"],
            "relays": wake["relays"],
            "wakeable": node.get("status") in WAKEABLE,
            "ttl_choices": ENVELOPE_TTL_CHOICES,
            "default_ttl": DEFAULT_ENVELOPE_TTL,
        }
    }


# ------------------------------------------------------------------- jobs


def _job_row(job: Any) -> dict[str, Any]:
    from roost.core.hub.jobs import job_view

    view = job_view(job, with_output=False)
    end = view.get("finished_at")
    start = view.get("started_at")
    view["duration"] = end - start if isinstance(end, (int, float)) and isinstance(start, (int, float)) else None
    view["active"] = view.get("state") in ACTIVE_STATES
    return view


def _with_target(hub: Any, row: dict[str, Any]) -> dict[str, Any]:
    engine = getattr(hub, "jobs", None)
    described = engine.actions.get(row.get("node_id"), {}).get(row.get("action")) if engine is not None else None
    row["target"] = job_target(row, described)
    row["title"] = action_title(str(row.get("action") or ""), (described or {}).get("title") if isinstance(described, dict) else None)
    return row


async def _node_names(hub: Any) -> dict[str, str]:
    summary = await hub.nodes_summary()
    return {str(n.get("id")): str(n.get("name") or n.get("hostname") or n.get("id")) for n in summary.get("nodes", [])}


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


async def jobs_page(request: web.Request) -> web.Response:
    """Every job, newest first, filtered by node, state, action prefix or schedule; states change live."""
    from roost.core.store.jobs import JobFilter

    hub = _hub(request)
    query = request.query
    filters = {
        "node": query.get("node", "")[:64],
        "state": query.get("state", "") if query.get("state") in JOB_STATES else "",
        "action": query.get("action", "").strip()[:200],
        "schedule": query.get("schedule", "")[:64],
    }
    before = _float(query.get("before"))
    jobs = await hub.store.list_jobs(
        JobFilter(
            node_id=filters["node"] or None,
            state=filters["state"] or None,
            action_prefix=filters["action"] or None,
            schedule_id=filters["schedule"] or None,
            limit=JOBS_PAGE_SIZE + 1,
            before=before,
        )
    )
    older = None
    if len(jobs) > JOBS_PAGE_SIZE:
        jobs = jobs[:JOBS_PAGE_SIZE]
        older = {**{k: v for k, v in filters.items() if v}, "before": repr(jobs[-1].created_at)}
    names = await _node_names(hub)
    context = {
        "page": "jobs",
        "jobs": [_with_target(hub, _job_row(j)) for j in jobs],
        "filters": filters,
        "filtered": any(filters.values()) or before is not None,
        "before": before,
        "older": older,
        "node_names": names,
        "node_options": sorted(names.items(), key=lambda item: item[1].casefold()),
        "states": [(state, label) for state, (label, _tone) in JOB_STATES.items()],
        "page_data": {"filters": filters, "paged": before is not None},
    }
    return _render(request, "jobs/page.html", context, fragments=JOBS_FRAGMENTS)


# Words a result may use to say why there is nothing to show ("no journal on this host").
RESULT_NOTES = ("message", "reason", "note", "detail")


def job_target(view: dict[str, Any], described: Any) -> str:
    """What a job acts on, for the jobs list: its action's declared target parameter, else its one text or number parameter."""
    params = view.get("params") if isinstance(view.get("params"), dict) else {}
    target = described.get("target") if isinstance(described, dict) else None
    if isinstance(target, str) and target in params:
        return str(params[target])
    scalars = [v for v in params.values() if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    return str(scalars[0]) if len(scalars) == 1 or (scalars and len(params) <= 3) else ""


def result_note(result: Any) -> str:
    """What a job's result says about itself in words (why it is empty, what it did), or ""."""
    if isinstance(result, dict):
        for key in RESULT_NOTES:
            if isinstance(result.get(key), str) and result[key].strip():
                return result[key].strip()
    return ""


def result_is_empty(result: Any) -> bool:
    """Nothing to show: no result, or one whose every value is empty."""
    if result in (None, "", [], {}):
        return True
    if isinstance(result, dict):
        return all(v in (None, "", [], {}) or k in RESULT_NOTES for k, v in result.items())
    return False


def result_without_output(result: Any) -> Any:
    """The structured result minus its text output, which the page shows as the job's output already."""
    if isinstance(result, dict) and isinstance(result.get("output"), str):
        rest = {k: v for k, v in result.items() if k != "output"}
        return rest or None
    return result


async def job_page(request: web.Request) -> web.Response:
    """One job: its state and timeline, parameters, result, error and output, which grows live while it runs."""
    from roost.core.hub.jobs import job_view

    hub = _hub(request)
    job_id = request.match_info["job_id"]
    job = await hub.store.get_job(job_id)
    if job is None:
        return _render(request, "jobs/not_found.html", {"page": "job_not_found", "job_id": job_id}, status=404)
    view = job_view(job)
    view["active"] = view["state"] in ACTIVE_STATES
    node = hub.node(job.node_id) if hasattr(hub, "node") else None
    schedule = await hub.store.get_schedule(job.schedule_id) if job.schedule_id else None
    context = {
        "page": "job",
        "job": view,
        "node_name": getattr(node, "name", "") or job.node_id,
        "schedule": schedule,
        "result": result_without_output(view.get("result")),
        "result_note": result_note(view.get("result")),
        "result_empty": result_is_empty(result_without_output(view.get("result"))) and not view.get("output"),
        "action_title": action_title(job.action, (getattr(hub, "jobs", None) and hub.jobs.actions.get(job.node_id, {}).get(job.action, {}) or {}).get("title")),
        "can_cancel": can_operate(request),
        "page_data": {"id": job.job_id, "node_id": job.node_id, "state": job.state, "active": view["active"]},
    }
    return _render(request, "jobs/job.html", context, fragments=JOB_FRAGMENTS)


# -------------------------------------------------------------- schedules


async def schedules_page(request: web.Request) -> web.Response:
    """Cron schedules with their next run and last job; operators create, pause and delete them."""
    from roost.core.hub.jobs_api import schedule_view

    hub = _hub(request)
    engine = getattr(hub, "jobs", None)
    names = await _node_names(hub)
    if request.query.get("fragment") == "params":
        return _params_fragment(request, engine)
    schedules = []
    for schedule in await hub.store.list_schedules():
        view = schedule_view(schedule)
        last = await hub.store.get_job(schedule.last_job_id) if schedule.last_job_id else None
        view["last_job_state"] = last.state if last is not None else None
        view["preset"] = dict(CRON_PRESETS).get(schedule.cron, "")
        schedules.append(view)
    schedules.sort(key=lambda s: (not s["enabled"], s["next_run"] if isinstance(s["next_run"], (int, float)) else math.inf))
    choices = await _schedule_choices(engine, names) if engine is not None else []
    context = {
        "page": "schedules",
        "schedules": schedules,
        "node_names": names,
        "can_edit": can_operate(request),
        "presets": CRON_PRESETS,
        "choices": choices,
        "page_data": {"nodes": {c["id"]: c["actions"] for c in choices}},
    }
    return _render(request, "jobs/schedules.html", context, fragments=SCHEDULES_FRAGMENTS)


async def _schedule_choices(engine: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    """Nodes with actions and, for each, which actions a schedule can run, with the reason for those it cannot."""
    out = []
    for node_id, actions in engine.actions.items():
        if not actions or node_id not in names:
            continue
        effective = set(await engine.effective_for(node_id))
        listed = []
        for name, described in sorted(actions.items()):
            capability = str(described.get("capability") or "")
            if described.get("destructive"):
                why = "needs an operator signature every time"
            elif capability not in effective:
                why = f"needs {capability}"
            else:
                why = ""
            listed.append({"name": name, "disabled": why})
        out.append({"id": node_id, "name": names[node_id], "actions": listed})
    return sorted(out, key=lambda c: c["name"].casefold())


def _params_fragment(request: web.Request, engine: Any) -> web.Response:
    """The schedule form's parameter inputs for one node's action, drawn by the same macro as the node page's."""
    node_id = request.query.get("node", "")
    action = request.query.get("action", "")
    described = engine.actions.get(node_id, {}).get(action) if engine is not None else None
    if described is None:
        raise web.HTTPNotFound(text=f"node {node_id!r} offers no action {action!r}")
    env = request.app[JINJA_ENV_KEY]
    html = env.get_template("jobs/_params.html").render(fields=form_fields(described.get("params")), prefix="schedule", enabled=True)
    response = web.Response(text=html, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response
