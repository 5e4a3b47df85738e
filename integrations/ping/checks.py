"""Ping checks: what a check expects, what one ping does to it, and where it stands at a given time.

Everything here is a pure function of a check's dict, a ping and the clock,
so the lifecycle is tested without a hub. A check is

- ``simple``: a ping is due ``period`` seconds after the last success, or
- ``cron``: a ping is due at the first time of ``schedule`` (five-field cron,
  in the check's ``tz``, else the hub's time zone) after the last success,

and in both cases it is *late* between the due time and ``grace`` seconds
after it, and *down* past that. A check never pinged counts from the moment
it was created, so a job that never runs at all is caught too. ``/start``
opens a run that must end (a success or a failure) within ``grace``; a
failure (``/fail`` or a non-zero exit status) keeps the check *failed* until
the next success.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import voluptuous as vol
from croniter import croniter

KIND_SIMPLE = "simple"
KIND_CRON = "cron"

# What a ping says, from its URL: /ping/<uuid> success, /start, /fail, /log (no change), /<exit status>.
PING_SUCCESS = "success"
PING_START = "start"
PING_FAIL = "fail"
PING_LOG = "log"
PING_KINDS = (PING_SUCCESS, PING_START, PING_FAIL, PING_LOG)

# Where a check stands.
STATUS_NEW = "new"  # never pinged, not yet due
STATUS_UP = "up"
STATUS_STARTED = "started"  # a /start awaits its end
STATUS_LATE = "late"  # due, still within grace
STATUS_DOWN = "down"  # not pinged within period + grace (or a run did not end within grace)
STATUS_FAILED = "failed"  # the last run reported a failure
STATUS_PAUSED = "paused"
# The statuses an alert is raised for, and the problem label each carries.
PROBLEM_LATE = "late"
PROBLEM_FAILED = "failed"

MIN_PERIOD = 60
MAX_PERIOD = 366 * 86400
MIN_GRACE = 60
MAX_GRACE = 31 * 86400
# The most a ping may carry (healthchecks.io's limit too); a check may accept less.
MAX_BODY = 100_000
# The most of a body kept in the ping log (the tail: a failing job's error is at the end).
LOG_BODY = 10_000
# Pings kept per check, newest last.
LOG_ENTRIES = 50
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CHECK_ID_RE = re.compile(r"^c[0-9a-f]{12}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:@()/-]{0,79}$")
METHODS = ("GET", "POST")


def new_ping_key() -> str:
    """An unguessable ping key: a random (version 4) UUID, 122 bits from the OS's random source."""
    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))


def new_check_id() -> str:
    """The check's public id (API paths, alert labels); it lets nobody ping."""
    return "c" + secrets.token_hex(6)


def _schedule(value: Any) -> str:
    text = " ".join(str(value).split())
    if len(text.split(" ")) != 5:
        raise vol.Invalid("a cron schedule has five fields: minute hour day-of-month month day-of-week (e.g. '30 2 * * *')")
    if not croniter.is_valid(text):
        raise vol.Invalid(f"{text!r} is not a valid cron schedule (e.g. '30 2 * * *' for 02:30 every day)")
    return text


def _zone(value: Any) -> str:
    text = str(value).strip()
    if not text:
        return ""
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise vol.Invalid(f"{text!r} is not a time zone name (e.g. 'Europe/Berlin', 'UTC')") from None
    return text


def _name(value: Any) -> str:
    text = str(value).strip() if isinstance(value, str) else value
    if not isinstance(text, str) or not NAME_RE.match(text):
        raise vol.Invalid("a name is 1 to 80 letters, digits, spaces and _ . : @ ( ) / - starting with a letter or digit")
    return text


def _methods(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise vol.Invalid("expected a non-empty list of GET and/or POST")
    found = []
    for method in value:
        method = str(method).upper()
        if method not in METHODS:
            raise vol.Invalid(f"{method!r}: a ping is a GET or a POST")
        if method not in found:
            found.append(method)
    return found


# The settings a user gives a check (created or changed); the rest of a check is its state.
SETTINGS = {
    vol.Optional("name"): _name,
    vol.Optional("node_id"): vol.All(str, vol.Length(min=1, max=64)),
    vol.Optional("kind"): vol.In([KIND_SIMPLE, KIND_CRON], msg="must be simple (a period) or cron (a schedule)"),
    vol.Optional("period"): vol.All(vol.Coerce(int), vol.Range(min=MIN_PERIOD, max=MAX_PERIOD, msg=f"must be {MIN_PERIOD} s to 366 days")),
    vol.Optional("schedule"): _schedule,
    vol.Optional("tz"): _zone,
    vol.Optional("grace"): vol.All(vol.Coerce(int), vol.Range(min=MIN_GRACE, max=MAX_GRACE, msg=f"must be {MIN_GRACE} s to 31 days")),
    vol.Optional("allow_start"): bool,
    vol.Optional("methods"): _methods,
    vol.Optional("max_body"): vol.All(int, vol.Range(min=0, max=MAX_BODY, msg=f"must be 0 (no body) to {MAX_BODY} bytes")),
    vol.Optional("paused"): bool,
    vol.Optional("description"): vol.All(str, vol.Length(max=500)),
}
DEFAULTS: dict[str, Any] = {
    "kind": KIND_SIMPLE,
    "period": 86400,
    "schedule": "",
    "tz": "",
    "grace": 3600,
    "allow_start": True,
    "methods": list(METHODS),
    "max_body": MAX_BODY,
    "paused": False,
    "description": "",
}
# Markers compare by their key, so the required ones replace their optional twins rather than sit beside them.
CREATE_SCHEMA = vol.Schema(
    {
        vol.Required("name"): _name,
        vol.Required("node_id"): SETTINGS[vol.Optional("node_id")],
        **{key: value for key, value in SETTINGS.items() if key not in ("name", "node_id")},
    }
)
UPDATE_SCHEMA = vol.Schema(SETTINGS)


def complete(settings: dict[str, Any]) -> None:
    """Refuse settings that do not add up (raises vol.Invalid naming the field)."""
    if settings["kind"] == KIND_CRON and not settings.get("schedule"):
        raise vol.Invalid("a cron check needs a schedule (e.g. '30 2 * * *')", path=["schedule"])


def new_check(settings: dict[str, Any], *, actor: str, now: float) -> dict[str, Any]:
    check = {**DEFAULTS, **settings}
    complete(check)
    check.update(
        id=new_check_id(),
        key=new_ping_key(),
        created_at=now,
        created_by=actor,
        last_ping=None,
        last_kind=None,
        last_success=None,
        last_failure=None,
        last_exit=None,
        started_at=None,
        pings=0,
    )
    return check


# ---------------------------------------------------------------- one ping


@dataclass(frozen=True)
class Ping:
    """One ping as it arrived: what the URL says, and what to keep of it for the log."""

    kind: str
    at: float
    method: str = "GET"
    exit_status: int | None = None
    body: bytes = b""
    peer: str = ""
    user_agent: str = ""


class Refused(Exception):
    """A ping the check does not accept, with the status and the sentence to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def parse_op(op: str | None) -> tuple[str, int | None]:
    """The kind and exit status of ``/ping/<uuid>/<op>``: start, fail, log, or an exit status 0-255."""
    if op is None or op == "":
        return PING_SUCCESS, None
    if op in (PING_START, PING_FAIL, PING_LOG):
        return op, None
    if op.isdigit() and len(op) <= 3 and int(op) <= 255:
        code = int(op)
        return (PING_SUCCESS if code == 0 else PING_FAIL), code
    raise Refused(f"{op!r} is not something to ping: use /start, /fail, /log or an exit status 0-255", 404)


def admit(check: dict[str, Any], ping: Ping) -> None:
    """Raise Refused unless the check accepts this ping as sent."""
    if ping.method not in check.get("methods", METHODS):
        raise Refused(f"this check accepts only {' and '.join(check['methods'])} pings", 405)
    if ping.kind == PING_START and not check.get("allow_start", True):
        raise Refused("this check does not accept /start (allow_start is off); ping when the job has ended", 400)
    limit = int(check.get("max_body", MAX_BODY))
    if len(ping.body) > limit:
        what = "no body" if limit == 0 else f"at most {limit} bytes of body"
        raise Refused(f"this check accepts {what}; send less (the tail of the log)", 413)


def apply(check: dict[str, Any], ping: Ping) -> dict[str, Any]:
    """The check after this (admitted) ping."""
    after = dict(check)
    after["last_ping"] = ping.at
    after["pings"] = int(check.get("pings") or 0) + 1
    if ping.kind == PING_LOG:
        return after
    after["last_kind"] = ping.kind
    if ping.kind == PING_START:
        after["started_at"] = ping.at
        return after
    after["started_at"] = None
    after["last_exit"] = ping.exit_status
    if ping.kind == PING_SUCCESS:
        after["last_success"] = ping.at
    else:
        after["last_failure"] = ping.at
    return after


def log_entry(ping: Ping, check_before: dict[str, Any]) -> dict[str, Any]:
    """What the ping log keeps of one ping: the body's tail up to LOG_BODY bytes, as text."""
    body = ping.body
    entry: dict[str, Any] = {
        "at": ping.at,
        "kind": ping.kind,
        "exit_status": ping.exit_status,
        "method": ping.method,
        "peer": ping.peer,
        "user_agent": ping.user_agent,
        "body_bytes": len(body),
        "body": body[-LOG_BODY:].decode("utf-8", errors="replace"),
        "body_truncated": len(body) > LOG_BODY,
    }
    started = check_before.get("started_at")
    if ping.kind in (PING_SUCCESS, PING_FAIL) and isinstance(started, (int, float)):
        entry["duration"] = round(ping.at - started, 3)
    return entry


def bounded_log(log: list[dict[str, Any]] | None, entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(log or [])[-(LOG_ENTRIES - 1) :], entry]


# ---------------------------------------------------------------- where a check stands


def zone(name: str, hub_zone: str = "") -> tzinfo:
    """The check's time zone, else the hub's configured one, else the zone of the machine the hub runs on."""
    for candidate in (name, hub_zone):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    local = datetime.now().astimezone().tzinfo
    return local if local is not None else timezone.utc


def due_at(check: dict[str, Any], *, hub_zone: str = "") -> float:
    """When the next success is due: period after the last one, or the schedule's next time after it."""
    baseline = check.get("last_success") or check.get("created_at") or 0.0
    if check.get("kind") == KIND_CRON:
        start = datetime.fromtimestamp(baseline, zone(check.get("tz", ""), hub_zone))
        return float(croniter(check["schedule"], start).get_next(float))
    return float(baseline) + float(check.get("period") or DEFAULTS["period"])


@dataclass(frozen=True)
class Standing:
    status: str
    summary: str
    due_at: float | None = None
    problem: str | None = None  # late or failed: the alert this status raises


def _when(ts: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M %Z").strip()


def standing(check: dict[str, Any], now: float | None = None, *, hub_zone: str = "") -> Standing:
    """Where the check stands at ``now``."""
    now = time.time() if now is None else now
    name = check.get("name", check.get("id", "?"))
    tz = zone(check.get("tz", ""), hub_zone)
    grace = float(check.get("grace") or DEFAULTS["grace"])
    if check.get("paused"):
        return Standing(STATUS_PAUSED, f"{name} is paused")
    started = check.get("started_at")
    if isinstance(started, (int, float)):
        if now > started + grace:
            return Standing(
                STATUS_DOWN,
                f"check {name} started at {_when(started, tz)} and did not finish within its {_span(grace)} grace",
                started + grace,
                PROBLEM_LATE,
            )
        return Standing(STATUS_STARTED, f"{name} is running since {_when(started, tz)}", started + grace)
    failure, success = check.get("last_failure"), check.get("last_success")
    if isinstance(failure, (int, float)) and (not isinstance(success, (int, float)) or failure > success):
        code = check.get("last_exit")
        how = f"exit status {code}" if isinstance(code, int) else "a failure"
        return Standing(STATUS_FAILED, f"check {name} failed: its last run at {_when(failure, tz)} reported {how}", None, PROBLEM_FAILED)
    due = due_at(check, hub_zone=hub_zone)
    if now <= due:
        return Standing(STATUS_UP if success else STATUS_NEW, f"{name}: next ping due {_when(due, tz)}", due)
    if now <= due + grace:
        return Standing(STATUS_LATE, f"{name} is late: a ping was due {_when(due, tz)}", due)
    last = f"last success {_when(success, tz)}" if success else "never pinged"
    return Standing(
        STATUS_DOWN, f"check {name} is late: a ping was due {_when(due, tz)} and none came within {_span(grace)} ({last})", due, PROBLEM_LATE
    )


def _span(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
