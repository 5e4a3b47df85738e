"""Ping checks, the hub's dead-man's switch: a job pings ``/ping/<uuid>`` when it runs, and a check not pinged in time,
or pinged with a failure, raises an alert (rule kind ``ping.check``).

The URLs are those of healthchecks.io (``/ping/<uuid>``, ``/start``, ``/fail``,
``/log``, ``/<exit status>``, GET or POST with the job's output as the body),
so a cron line, a borgmatic hook or a Proxmox vzdump hook script written for
healthchecks.io works by changing the host. The UUID is the secret: it is
random, shown to operators only, and a caller that keeps guessing is banned;
every address and every check have a rate limit. Checks and a bounded log of
their pings are kept in the hub's store (``ctx.store``).

Hub only: agents never load it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import voluptuous as vol

from roost.core import hookimpl
from roost.core.hub_integration import (
    OPERATOR,
    AlertFinding,
    AlertRuleKind,
    ApiRoute,
    HubContext,
    Page,
    PublicRequest,
    PublicRoute,
    RouteError,
    RouteRequest,
)
from roost.core.integration import humanize_invalid
from roost.core.reads import Reads

from . import checks as c
from . import pages

DOMAIN = "ping"
# Hub only: no node reports anything for it.
READS = Reads()
RULE_KIND = "ping.check"
SERVICE = "service"
CONFIG_SCHEMA = vol.Schema({vol.Optional("timezone", default=""): c._zone}, extra=vol.PREVENT_EXTRA)
# Per caller address: one ping a second on average, bursts of 30 (a host running many jobs at midnight).
PING_RATE = 1.0
PING_BURST = 30
MAX_CHECKS = 1000


class PingChecks:
    """The checks in memory (the alert rule kind reads them without I/O), written through to ``ctx.store``."""

    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx
        self.checks: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # What "now" is for pings and for judging checks (a test moves it on).
        self.clock = time.time

    @property
    def hub_zone(self) -> str:
        """[integrations.ping] timezone if set, else the hub's [hub] timezone (else the machine's zone, in checks.zone)."""
        return str(self.ctx.config.get("timezone") or getattr(self.ctx, "timezone", "") or "")

    async def load(self) -> None:
        for key, check in (await self.ctx.store.items("check/")).items():
            if isinstance(check, dict) and c.CHECK_ID_RE.match(str(check.get("id", ""))) and c.UUID_RE.match(str(check.get("key", ""))):
                self.checks[check["id"]] = check
                self.by_key[check["key"]] = check["id"]
            else:
                self.ctx.logger.warning("ping: store entry %s is not a check; ignored", key)

    def lock(self, check_id: str) -> asyncio.Lock:
        return self._locks.setdefault(check_id, asyncio.Lock())

    def standing(self, check: dict[str, Any], now: float | None = None) -> c.Standing:
        return c.standing(check, now, hub_zone=self.hub_zone)

    def find(self, check_id: str) -> dict[str, Any]:
        check = self.checks.get(check_id)
        if check is None:
            raise RouteError(f"no ping check with id {check_id!r}", 404)
        return check

    async def save(self, check: dict[str, Any]) -> None:
        await self.ctx.store.put(f"check/{check['id']}", check)
        old = self.checks.get(check["id"])
        if old is not None and old["key"] != check["key"]:
            self.by_key.pop(old["key"], None)
        self.checks[check["id"]] = check
        self.by_key[check["key"]] = check["id"]

    async def log(self, check_id: str) -> list[dict[str, Any]]:
        found = await self.ctx.store.get(f"log/{check_id}")
        return found if isinstance(found, list) else []

    async def receive(self, key: str, ping: c.Ping) -> dict[str, Any]:
        """Record one ping for the check whose key it is; raises Refused when there is none or it does not accept this."""
        check_id = self.by_key.get(key)
        if check_id is None:
            raise c.Refused("no check has this ping URL; copy it again from the Pings page (it changes when rotated)", 404)
        async with self.lock(check_id):
            before = self.checks.get(check_id)
            if before is None or before["key"] != key:
                raise c.Refused("no check has this ping URL; copy it again from the Pings page (it changes when rotated)", 404)
            c.admit(before, ping)
            after = c.apply(before, ping)
            log = c.bounded_log(await self.log(check_id), c.log_entry(ping, before))
            await self.ctx.store.put(f"log/{check_id}", log)
            await self.save(after)
        standing = self.standing(after, ping.at)
        self.ctx.events.publish(
            "ping.received", {"check_id": check_id, "name": after["name"], "node_id": after["node_id"], "kind": ping.kind, "at": ping.at, "status": standing.status}
        )
        return after

    def findings(self, node_id: str, settings: dict[str, Any], now: float | None = None) -> list[AlertFinding]:
        """The ping.check rule's findings on one node: each of its checks that is down (late) or failed."""
        now = self.clock() if now is None else now
        names = set(settings.get("checks") or ())
        found = []
        for check in sorted(self.checks.values(), key=lambda x: x["name"]):
            if check.get("node_id") != node_id or (names and check["name"] not in names and check["id"] not in names):
                continue
            standing = self.standing(check, now)
            if standing.problem is None or standing.problem not in settings["problems"]:
                continue
            severity = settings.get(f"{standing.problem}_severity")
            found.append(AlertFinding(standing.summary, {"check": check["name"], "problem": standing.problem}, severity, check.get("last_exit")))
        return found


def service(ctx: HubContext | None) -> PingChecks:
    found = ctx.data.get(SERVICE) if ctx is not None else None
    if not isinstance(found, PingChecks):
        raise RouteError("ping checks are not set up yet; try again in a moment", 409)
    return found


# ---------------------------------------------------------------- the API


def check_view(svc: PingChecks, check: dict[str, Any], *, secret: bool, now: float | None = None) -> dict[str, Any]:
    """A check as the API shows it; the ping key (the URL's secret) only to operators and admins."""
    standing = svc.standing(check, svc.clock() if now is None else now)
    view = {k: v for k, v in check.items() if k != "key"}
    view.update(status=standing.status, summary=standing.summary, due_at=standing.due_at, problem=standing.problem)
    if secret:
        view["ping_path"] = f"/ping/{check['key']}"
    return view


def _sees_secrets(role: str) -> bool:
    return role in (OPERATOR, "admin")


async def list_checks(request: RouteRequest) -> dict[str, Any]:
    svc = service(request.hub)
    now = svc.clock()
    node = request.params.get("node_id")
    found = [check_view(svc, ch, secret=_sees_secrets(request.role), now=now) for ch in svc.checks.values() if not node or ch["node_id"] == node]
    return {"checks": sorted(found, key=lambda v: v["name"].casefold())}


async def get_check(request: RouteRequest) -> dict[str, Any]:
    svc = service(request.hub)
    check = svc.find(request.match_info["check_id"])
    view = check_view(svc, check, secret=_sees_secrets(request.role))
    log = await svc.log(check["id"])
    if not _sees_secrets(request.role):  # a job's output may name hosts and paths; viewers see when and how, not what
        log = [{k: v for k, v in entry.items() if k not in ("body", "peer", "user_agent")} for entry in log]
    view["pings"] = list(reversed(log))
    return view


async def _node_must_exist(svc: PingChecks, node_id: str) -> None:
    if await svc.ctx.nodes.get(node_id) is None:
        raise RouteError(f"node_id: no node with id {node_id!r}; a check belongs to the node whose job pings it (its alert is that node's)", 400)


def _unique_name(svc: PingChecks, name: str, check_id: str = "") -> None:
    if any(ch["name"] == name and ch["id"] != check_id for ch in svc.checks.values()):
        raise RouteError(f"name: a check named {name!r} already exists; names tell alerts apart, pick another", 409)


def _settled(check: dict[str, Any]) -> None:
    try:
        c.complete(check)
    except vol.Invalid as err:
        raise RouteError(f"invalid request: {humanize_invalid(err)}", 400) from None


async def create_check(request: RouteRequest) -> dict[str, Any]:
    svc = service(request.hub)
    if len(svc.checks) >= MAX_CHECKS:
        raise RouteError(f"this hub has {MAX_CHECKS} ping checks, the most it keeps; delete some first", 409)
    params = request.params
    _unique_name(svc, params["name"])
    await _node_must_exist(svc, params["node_id"])
    try:
        check = c.new_check(params, actor=request.actor, now=svc.clock())
    except vol.Invalid as err:
        raise RouteError(f"invalid request: {humanize_invalid(err)}", 400) from None
    await svc.save(check)
    await request.hub.audit("ping.check.created", actor=request.actor, target=f"ping:{check['id']}", details=_audited(check))
    return check_view(svc, check, secret=True)


def _audited(check: dict[str, Any]) -> dict[str, Any]:
    return {k: check.get(k) for k in ("name", "node_id", "kind", "period", "schedule", "tz", "grace", "allow_start", "methods", "max_body", "paused")}


async def update_check(request: RouteRequest) -> dict[str, Any]:
    svc = service(request.hub)
    check_id = request.match_info["check_id"]
    async with svc.lock(check_id):
        before = svc.find(check_id)
        changes = dict(request.params)
        if "name" in changes:
            _unique_name(svc, changes["name"], check_id)
        if "node_id" in changes and changes["node_id"] != before["node_id"]:
            await _node_must_exist(svc, changes["node_id"])
        after = {**before, **changes}
        _settled(after)
        await svc.save(after)
    changed = {k: v for k, v in changes.items() if before.get(k) != v}
    await request.hub.audit("ping.check.changed", actor=request.actor, target=f"ping:{check_id}", details={"changed": changed})
    return check_view(svc, after, secret=True)


async def rotate_key(request: RouteRequest) -> dict[str, Any]:
    """A new ping URL for the check; the old one stops working at once (it leaked, or a host is retired)."""
    svc = service(request.hub)
    check_id = request.match_info["check_id"]
    async with svc.lock(check_id):
        after = {**svc.find(check_id), "key": c.new_ping_key()}
        await svc.save(after)
    await request.hub.audit("ping.check.key_rotated", actor=request.actor, target=f"ping:{check_id}")
    return check_view(svc, after, secret=True)


async def delete_check(request: RouteRequest) -> dict[str, Any]:
    svc = service(request.hub)
    check_id = request.match_info["check_id"]
    async with svc.lock(check_id):
        check = svc.find(check_id)
        await svc.ctx.store.delete(f"check/{check_id}")
        await svc.ctx.store.delete(f"log/{check_id}")
        svc.checks.pop(check_id, None)
        svc.by_key.pop(check["key"], None)
    await request.hub.audit("ping.check.deleted", actor=request.actor, target=f"ping:{check_id}", details={"name": check["name"]})
    return {"id": check_id, "deleted": True}


# ---------------------------------------------------------------- the ping URLs


async def ping(request: PublicRequest) -> str:
    """``/ping/<uuid>[/<op>]``: what a job calls. Answers ``OK`` like healthchecks.io."""
    svc = service(request.hub)
    key = request.match_info.get("uuid", "").lower()
    if not c.UUID_RE.match(key):
        raise RouteError("no check has this ping URL; copy it again from the Pings page", 404)
    try:
        kind, code = c.parse_op(request.match_info.get("op"))
        if key not in svc.by_key:  # an unknown key is a guess, whatever comes after it
            raise c.Refused("no check has this ping URL; copy it again from the Pings page (it changes when rotated)", 404)
        await svc.receive(
            key, c.Ping(kind, svc.clock(), request.method, code, request.body, request.peer, request.user_agent)
        )
    except c.Refused as err:
        raise RouteError(err.message, err.status) from None
    return "OK"


def _public_routes() -> list[PublicRoute]:
    common = {"max_body": c.MAX_BODY, "rate": PING_RATE, "burst": PING_BURST, "limit_by": "uuid"}
    return [PublicRoute(method, path, ping, **common) for path in ("/{uuid}", "/{uuid}/{op}") for method in c.METHODS]


# ---------------------------------------------------------------- the alert rule kind

RULE_SCHEMA = vol.Schema(
    {
        # Names or ids of the checks the rule covers; none: every check of the nodes it selects.
        vol.Optional("checks", default=list): [vol.All(str, vol.Length(min=1, max=80))],
        vol.Optional("problems", default=lambda: [c.PROBLEM_LATE, c.PROBLEM_FAILED]): vol.All(
            [vol.In([c.PROBLEM_LATE, c.PROBLEM_FAILED], msg="must be late or failed")], vol.Length(min=1)
        ),
        vol.Optional("late_severity"): vol.In(["warning", "critical"], msg="must be warning or critical"),
        vol.Optional("failed_severity"): vol.In(["warning", "critical"], msg="must be warning or critical"),
    },
    extra=vol.PREVENT_EXTRA,
)


@hookimpl
def roost_hub_alert_rule_kinds(ctx: HubContext) -> list[AlertRuleKind]:
    # A rule's settings with their defaults, validated once per distinct settings rather than once per node and second.
    validated: dict[str, dict[str, Any]] = {}

    async def evaluate(settings: dict[str, Any], node: Any) -> list[AlertFinding]:
        node_id = str((node.get("node") or {}).get("id", "")) if hasattr(node, "get") else ""
        svc = ctx.data.get(SERVICE)
        if not node_id or not isinstance(svc, PingChecks):
            return []
        key = json.dumps(settings, sort_keys=True, default=str)
        full = validated.get(key)
        if full is None:
            if len(validated) > 1000:
                validated.clear()
            full = validated[key] = RULE_SCHEMA(dict(settings))
        return svc.findings(node_id, full)

    return [
        AlertRuleKind(
            RULE_KIND,
            "A ping check of the node was not pinged within its period (or schedule) and grace, or its last run reported a failure",
            RULE_SCHEMA,
            evaluate,
            timed=True,
        )
    ]


# ---------------------------------------------------------------- hooks


@hookimpl
async def roost_hub_setup(ctx: HubContext) -> None:
    svc = PingChecks(ctx)
    await svc.load()
    ctx.data[SERVICE] = svc


@hookimpl
def roost_hub_routes(ctx: HubContext) -> list[ApiRoute | PublicRoute]:
    id_ok = vol.Schema({}, extra=vol.PREVENT_EXTRA)
    return [
        ApiRoute("GET", "/checks", list_checks, schema=vol.Schema({vol.Optional("node_id"): vol.All(str, vol.Length(max=64))}, extra=vol.PREVENT_EXTRA)),
        ApiRoute("POST", "/checks", create_check, role=OPERATOR, schema=c.CREATE_SCHEMA),
        ApiRoute("GET", "/checks/{check_id}", get_check, schema=id_ok),
        ApiRoute("PATCH", "/checks/{check_id}", update_check, role=OPERATOR, schema=c.UPDATE_SCHEMA),
        ApiRoute("POST", "/checks/{check_id}/rotate", rotate_key, role=OPERATOR, schema=id_ok),
        ApiRoute("DELETE", "/checks/{check_id}", delete_check, role=OPERATOR, schema=id_ok),
        *_public_routes(),
    ]


@hookimpl
def roost_hub_pages(ctx: HubContext) -> list[Page]:
    return [Page("/pings", pages.pings_page, nav="Pings", order=70), Page("/pings/{check_id}", pages.check_page)]
