"""What the hub half of an integration receives and declares.

An integration whose manifest says ``"roles": ["agent", "hub"]`` keeps its
agent hooks in ``__init__.py`` and its hub hooks in ``hub.py`` (a module the
agent never imports); a hub-only integration (``"roles": ["hub"]``) may keep
them in ``__init__.py``. The hub calls its hooks with a ``HubContext``: the
integration's config, a narrow read API over nodes, the event bus, job
creation through the normal grant, ceiling and signature checks, the audit
log and a logger. It never hands out the raw store or the aiohttp app.

The declarations (``Page``, ``NodePanel``, ``HeadlineFigure``, ``ApiRoute``
and the extension points ``NotificationReceiver``, ``AlertRuleKind``,
``AutomationTrigger``, ``AutomationAction``) are plain frozen dataclasses;
the hookspecs in ``roost.core.hookspecs`` say when each is asked for.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import voluptuous as vol

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
PAGE_ROLES = (VIEWER, OPERATOR, ADMIN)
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# The prefix every integration's API routes live under: /api/v1/integrations/<domain>/<path>.
API_PREFIX = "/api/v1/integrations"
# Where an integration's static/ folder is served: /static/integrations/<domain>/<file>
# (under the shell's /static/, so the same CSP, public access and cache rules apply).
STATIC_PREFIX = "/static/integrations"
# Paths the dashboard shell owns; an integration's page may not take them.
RESERVED_PAGE_PATHS = (
    "/",
    "/api",
    "/static",
    "/integrations",
    "/nodes",
    "/login",
    "/logout",
    "/onboarding",
    "/account",
    "/users",
    "/jobs",
    "/schedules",
    "/pairing",
    "/join-tokens",
    "/api-tokens",
    "/audit",
    "/ws",
    "/enroll",
)
_PAGE_PATH_RE = re.compile(r"^(/[A-Za-z0-9_.-]+|/\{[a-z_]+\})+$")
_ROUTE_PATH_RE = re.compile(r"^(/[A-Za-z0-9_.-]+|/\{[a-z_]+\})*/?$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class DeclarationError(ValueError):
    """A page, panel, figure, route or extension that cannot be registered as declared."""


# ---------------------------------------------------------------- the context


class NodeReader(Protocol):
    """Read-only view of the hub's nodes. Every value returned is a fresh copy the caller may keep."""

    async def list(self) -> list[dict[str, Any]]:
        """Every node's summary (id, name, status, headline, facts), as ``GET /api/v1/nodes`` gives it."""

    async def get(self, node_id: str) -> dict[str, Any] | None:
        """One node in full, as ``GET /api/v1/nodes/{id}``: ``{"node", "state", "collected_at", "metrics"}``; None if unknown."""

    async def with_integration(self, domain: str, states: tuple[str, ...] = ...) -> list[dict[str, Any]]:
        """Every node whose ``domain`` integration is in one of ``states`` (all states by default):
        each is ``get(node_id)`` plus ``"status"``, that integration's entry of the node's integrations list."""

    async def history(
        self, node_id: str, series: list[str], *, start: float, end: float, resolution: str = "auto"
    ) -> dict[str, list[tuple[float, float, float, float]]]:
        """Points of the named series in [start, end] as (ts, avg, min, max), oldest first."""


class EventPublisher(Protocol):
    """The hub's event bus, as an integration may use it."""

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send a live event to dashboard subscribers; ``kind`` must start with ``<domain>.``."""

    def subscribe(self) -> AbstractAsyncContextManager[Any]:
        """``async with ctx.events.subscribe() as queue``: events (``.kind``, ``.data``) until the hub stops (None)."""


class JobCreator(Protocol):
    """Job creation through the same checks as ``POST /api/v1/jobs``."""

    async def create(
        self, node_id: str, action: str, params: dict[str, Any], *, actor: str, envelope: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Queue an action on a node; the node's grants, its agent's ceiling and, for a destructive action,
        an operator's signed envelope all apply. Returns the job as the API shows it; raises
        ``roost.core.hub.jobs.JobError`` with the reason when refused (the refusal is audited)."""


class AuditWriter(Protocol):
    """The append-only, hash-chained audit log."""

    async def __call__(
        self, action: str, *, actor: str, target: str = "", outcome: str = "ok", details: dict[str, Any] | None = None
    ) -> None:
        """Record an entry; ``action`` must start with ``<domain>.``. Raises ``AuditWriteError`` when it cannot be written."""


class IntegrationStore(Protocol):
    """What the integration's hub half keeps between runs (settings, manifests, policies), in the hub's store.

    One namespace per integration domain; values are anything ``json.dumps`` takes, returned as
    fresh copies. Keys are 1 to 200 characters; a value's JSON is at most 1 MiB. Bulk time series
    belong in the metrics history (report them as metrics) rather than here.
    """

    async def get(self, key: str) -> Any | None:
        """The value kept under ``key``, or None."""

    async def put(self, key: str, value: Any) -> None:
        """Keep ``value`` under ``key``, replacing what was there; raises ValueError for a bad key or value."""

    async def delete(self, key: str) -> bool:
        """Forget ``key``; True if it was there."""

    async def items(self, prefix: str = "") -> dict[str, Any]:
        """Every key starting with ``prefix`` (taken literally) and its value, in key order."""


class AgentSettings(Protocol):
    """The integration's settings for each node, pushed to that node's agent the way grants are.

    The hub keeps them and sends them over the agent's connection now (or on
    its next connect); the agent checks them against the integration's
    module-level ``SETTINGS_SCHEMA`` (refusing them, and keeping what it had,
    when they do not validate or the integration declares none), keeps them
    across restarts and hands them to the integration as ``ctx.settings``.
    A JSON object of at most 512 KiB.
    """

    async def get(self, node_id: str) -> dict[str, Any] | None:
        """The settings last put for ``node_id``, or None."""

    async def put(self, node_id: str, settings: dict[str, Any]) -> None:
        """Keep ``settings`` for ``node_id`` and send them to its agent; raises ValueError for a value that cannot be sent."""


@dataclass
class HubContext:
    """The one object passed to an integration's hub hooks."""

    domain: str
    config: dict[str, Any]
    data_dir: Path
    logger: logging.Logger
    nodes: NodeReader
    events: EventPublisher
    jobs: JobCreator
    audit: AuditWriter
    # Values kept between runs in the hub's store (None only where no store exists).
    store: IntegrationStore | None = None
    # Settings pushed to each node's agent (None only where no hub runs).
    agent_settings: AgentSettings | None = None
    role: str = "hub"
    # The hub's time zone ([hub] timezone, an IANA name; "" = the zone of the machine it runs on), for schedules.
    timezone: str = ""
    # The integration's own place for state kept between calls.
    data: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------ dashboard pages


class PageRequest(Protocol):
    """One request for an integration's page, with what a page may read and how it renders."""

    path: str
    query: Mapping[str, str]
    match_info: Mapping[str, str]
    # The logged-in user's name and role (viewer, operator or admin).
    user: str
    user_role: str
    hub: HubContext

    def render(
        self, template: str, context: dict[str, Any], *, fragments: Mapping[str, str] | None = None, status: int = 200
    ) -> Any:
        """Render one of the integration's templates (``templates/<name>`` in its folder, extending the
        shell's ``base.html``) into the response the handler returns. ``?fragment=NAME`` renders
        ``fragments[NAME]`` instead, for a part the browser refreshes."""


PageHandler = Callable[[PageRequest], Awaitable[Any]]


@dataclass(frozen=True)
class Page:
    """A dashboard page at ``path`` (``/containers``, ``/containers/{node_id}/{name}``).

    ``nav`` is the label of its entry in the top navigation ("" for none, as
    for a detail page); ``role`` the lowest role that may see it (and its
    nav entry); ``order`` sorts nav entries (lower first).
    """

    path: str
    handler: PageHandler
    nav: str = ""
    role: str = VIEWER
    order: int = 100

    def check(self) -> None:
        if not isinstance(self.path, str) or not _PAGE_PATH_RE.match(self.path):
            raise DeclarationError(f"page path {self.path!r} must look like /name or /name/{{param}}")
        first = "/" + self.path.split("/")[1]
        if first in RESERVED_PAGE_PATHS:
            raise DeclarationError(f"page path {self.path!r} is under {first}, which the dashboard itself uses")
        if not callable(self.handler):
            raise DeclarationError(f"page {self.path}: handler is not callable")
        if self.role not in PAGE_ROLES:
            raise DeclarationError(f"page {self.path}: role must be one of {', '.join(PAGE_ROLES)}, got {self.role!r}")


@dataclass(frozen=True)
class NodePanel:
    """A panel on a node's page: a title and one of the integration's templates with its context."""

    title: str
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)
    # Lower first; the node's own sections (facts, charts) come before every panel.
    order: int = 100
    # Files of the integration's static/ folder the node page links for this panel (``panel.css``).
    stylesheets: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchResult:
    """One thing the dashboard's search found: what ``kind`` of thing (``"Container"``), its ``title``, the
    dashboard ``url`` that shows it (a path on this hub) and a short ``detail`` (where it runs, its state)."""

    kind: str
    title: str
    url: str
    detail: str = ""

    def check(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith("/") or self.url.startswith("//"):
            raise DeclarationError(f"search result {self.title!r}: url {self.url!r} must be a path on this hub")


@dataclass(frozen=True)
class HeadlineFigure:
    """A figure on the node cards and lists: ``key`` names it in a node summary's ``headline``,
    ``metric`` is the series it shows (``linux_host.cpu_percent``), ``unit`` one of the metric units."""

    key: str
    metric: str
    label: str
    unit: str = ""
    order: int = 100
    # A value above this is something wrong on the node (an unhealthy container): the overview
    # counts it among the node's problems and lists the node before the healthy ones. None: never.
    problem_above: float | None = None

    def check(self) -> None:
        if not re.match(r"^[a-z][a-z0-9_]{0,63}$", str(self.key)):
            raise DeclarationError(f"headline figure key {self.key!r} must be lower_snake_case")
        if not isinstance(self.metric, str) or "." not in self.metric:
            raise DeclarationError(f"headline figure {self.key}: metric {self.metric!r} must be a full series name, domain.name")
        if self.problem_above is not None and not isinstance(self.problem_above, (int, float)):
            raise DeclarationError(f"headline figure {self.key}: problem_above must be a number or None")


class RouteRequest(Protocol):
    """One call of an integration's API route, already authenticated and validated."""

    method: str
    match_info: Mapping[str, str]
    # The validated query (GET, DELETE) or JSON body (POST, PUT, PATCH).
    params: dict[str, Any]
    # Who asked: user:<name> or token:<id>, and their role.
    actor: str
    role: str
    hub: HubContext


class RouteError(Exception):
    """Raise from a route handler to answer ``{"error": message}`` with ``status`` (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


RouteHandler = Callable[[RouteRequest], Awaitable[Any]]


@dataclass(frozen=True)
class ApiRoute:
    """An API route at ``/api/v1/integrations/<domain><path>``.

    The handler returns JSON-serialisable data (answered with 200) or raises
    ``RouteError``. ``role`` is the lowest role that may call it (a route that
    changes anything should say ``operator``); ``schema`` validates the query
    or JSON body before the handler sees it (a failure answers 400 with what
    was wrong).
    """

    method: str
    path: str
    handler: RouteHandler
    role: str = VIEWER
    schema: vol.Schema | None = None

    def check(self) -> None:
        if self.method not in HTTP_METHODS:
            raise DeclarationError(f"route method must be one of {', '.join(HTTP_METHODS)}, got {self.method!r}")
        if not isinstance(self.path, str) or not _ROUTE_PATH_RE.match(self.path):
            raise DeclarationError(f"route path {self.path!r} must be '' or look like /name or /name/{{param}}")
        if not callable(self.handler):
            raise DeclarationError(f"route {self.method} {self.path}: handler is not callable")
        if self.role not in PAGE_ROLES:
            raise DeclarationError(f"route {self.method} {self.path}: role must be one of {', '.join(PAGE_ROLES)}")
        if self.method in ("POST", "PUT", "PATCH", "DELETE") and self.role == VIEWER:
            raise DeclarationError(f"route {self.method} {self.path} changes state, so its role must be operator or admin")


class PublicRequest(Protocol):
    """One call of a public route: no login, so only what the caller sent and where from."""

    method: str
    path: str
    match_info: Mapping[str, str]
    query: Mapping[str, str]
    # The body as sent, at most the route's max_body bytes.
    body: bytes
    # The caller's address (after the hub's trusted proxies) and its User-Agent, for the integration's log.
    peer: str
    user_agent: str
    hub: HubContext


PublicHandler = Callable[[PublicRequest], Awaitable[str]]


@dataclass(frozen=True)
class PublicRoute:
    """A route at ``/<domain><path>`` that answers without a login, for callers holding a secret in the URL
    (a ping URL a cron job calls with curl). Only built-in integrations may declare one.

    The handler returns the text answered with 200 (``text/plain``) or raises
    ``RouteError``; a refusal with 401, 403 or 404 counts against the caller's
    address, and an address refused ``max_failures`` times in 5 minutes is
    banned for 15 (429, kept across restarts). Every call takes a token from
    the address's bucket (``rate`` per second, ``burst``) and, with
    ``limit_by``, from the bucket of that path parameter (one check pinged in a
    loop by many hosts), answering 429 with Retry-After when empty. A body over
    ``max_body`` bytes answers 413 before the handler runs.
    """

    method: str
    path: str
    handler: PublicHandler
    max_body: int = 100_000
    rate: float = 1.0
    burst: int = 30
    limit_by: str = ""
    max_failures: int = 10

    def check(self, domain: str) -> None:
        if self.method not in ("GET", "POST", "PUT"):
            raise DeclarationError(f"public route method must be GET, POST or PUT, got {self.method!r}")
        if not isinstance(self.path, str) or not _ROUTE_PATH_RE.match(self.path) or not self.path.startswith("/"):
            raise DeclarationError(f"public route path {self.path!r} must look like /name or /name/{{param}}")
        if not callable(self.handler):
            raise DeclarationError(f"public route {self.method} {self.path}: handler is not callable")
        if self.limit_by and "{" + self.limit_by + "}" not in self.path:
            raise DeclarationError(f"public route {self.path}: limit_by {self.limit_by!r} is not one of its path parameters")
        if not (0 <= self.max_body <= 1024 * 1024) or self.rate <= 0 or self.burst < 1 or self.max_failures < 1:
            raise DeclarationError(f"public route {self.path}: max_body must be 0..1 MiB, rate > 0, burst and max_failures >= 1")


# ------------------------------------------------- helpers for page authors


def as_list(value: Any) -> list[dict[str, Any]]:
    """The dicts of value when it is a list, else nothing: node state is never trusted to have a type."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def integration_status(integrations: Any, domain: str) -> dict[str, Any] | None:
    """The entry for domain in a node's integrations list, or None."""
    for item in as_list(integrations):
        if item.get("domain") == domain:
            return item
    return None


def chart_specs(domain: str, charts: Any, instance: Any) -> list[dict[str, Any]]:
    """The charts the shell's js/charts.js draws for one instance (a guest, a container): (key, title, unit,
    [(metric, label)]) become dicts whose series are named ``domain.metric[instance]``."""
    return [
        {"key": key, "title": title, "unit": unit, "series": [{"name": f"{domain}.{metric}[{instance}]", "label": label} for metric, label in series]}
        for key, title, unit, series in charts
    ]


def selected_range(query: Mapping[str, str], ranges: Any, default: str) -> str:
    """The ?range= of a page's query when it is one of ranges, else default."""
    wanted = query.get("range", default)
    return wanted if wanted in tuple(ranges) else default


# ------------------------------------------------------- extension points


@dataclass(frozen=True)
class _Extension:
    """What every extension point declares: a dotted name starting with the domain, a sentence, a schema, a handler."""

    name: str
    description: str
    schema: vol.Schema
    handler: Callable[..., Awaitable[Any]]

    def check(self, domain: str) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name) or not self.name.startswith(domain + "."):
            raise DeclarationError(f"{type(self).__name__} name {self.name!r} must be dotted and start with {domain + '.'!r}")
        if not callable(self.schema):
            raise DeclarationError(f"{self.name}: schema must be a voluptuous Schema")
        if not callable(self.handler):
            raise DeclarationError(f"{self.name}: handler is not callable")


@dataclass(frozen=True)
class NotificationReceiver(_Extension):
    """Somewhere to send a notification (mail, ntfy, a webhook).

    ``schema`` validates a receiver's settings; ``handler(settings, message)``
    (sync or async) delivers one ``message`` and raises to report a failed
    delivery (the outbox then retries it with backoff). ``message`` is
    ``{"id", "title", "body", "severity", "node_id", "url", "status"
    ('firing' | 'resolved' | 'info'), "alerts" (Alertmanager-webhook-shaped),
    "group_key", "group_labels", "common_labels", "receiver", "cause"}``; ``id``
    is the same on every retry of one notification, for receivers that can
    drop duplicates. ``settings`` carries the hub's ``allow_private`` flag:
    connect through ``roost.core.hub.outbound`` so private targets stay
    refused unless an admin allowed them. ``secrets`` names the settings
    stored encrypted and never shown back (a password, an HMAC key).
    """

    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertFinding:
    """One thing a rule kind found wrong on one node; each (rule, node, labels) is one alert instance.

    ``labels`` tell instances of one rule on one node apart (``{"mountpoint": "/"}``,
    ``{"device": "wwn-0x5000c500a1b2c3d4"}``); ``severity`` is ``"warning"`` or
    ``"critical"`` (None: the rule's own); ``value`` is the figure judged, if any.
    """

    summary: str
    labels: Mapping[str, str] = field(default_factory=dict)
    severity: str | None = None
    value: float | None = None


@dataclass(frozen=True)
class AlertRuleKind(_Extension):
    """A kind of alert rule (a threshold on a series, a node going offline).

    ``schema`` validates one rule's settings; ``handler(settings, node)``
    (sync or async) evaluates it for one node, given read-only in the
    ``NodeReader.get`` shape, and returns ``None`` when all is well, a
    one-sentence description of what is wrong, an ``AlertFinding`` or an
    iterable of them (one per thing wrong: a filesystem, a device).

    ``timed``: what the kind judges changes with the clock alone (a ping that
    did not come, a backup growing old), so the hub also judges it on its
    timer, not only when a node reports. A hub-only integration's kind is
    judged on every node its rules select; an agent integration's only on
    nodes that run it.
    """

    timed: bool = False


@dataclass(frozen=True)
class AutomationTrigger(_Extension):
    """Something an automation can start on (an event kind, a schedule, a metric crossing a line).

    ``schema`` validates the trigger's settings (everything of the trigger but
    ``kind`` and ``id``; ``{{ }}`` templates are not filled in triggers).
    ``handler(settings, event, state)`` (sync or async) is called for every
    hub event (``.kind``, ``.data``: ``"node"``, ``"job"``, ``"alert.firing"``,
    an integration's own ``"<domain>.<thing>"``) and once a second with
    ``Event("automation.tick", {"now": ts})``. It returns a falsy value when
    the event does not fire the trigger, ``True`` to fire it with the event's
    data as the trigger's data, or a mapping to fire it with that data (give
    ``node_id`` and ``labels`` when the trigger is about a node: throttles and
    conditions read them). ``state`` is a ``TriggerState``: the trigger's own
    memory (what it saw last), the time, and the hub's latest metrics.
    """


@dataclass
class TriggerState:
    """What a trigger handler gets besides its settings and the event."""

    # The trigger's own memory while its automation stays loaded (a previous status, since when a value is over).
    memo: dict[str, Any]
    now: float
    automation_id: str
    # A node's latest metrics ({series: value}) and status (online, stale, offline), from memory.
    metrics: Callable[[str], Mapping[str, float]]
    status: Callable[[str], str]


class StepFailed(Exception):
    """Raise from an action handler: the step failed; the run fails (or goes on, with continue_on_error)."""


class StepRefused(StepFailed):
    """The step was refused by Roost's trust rules (grants, the agent's ceiling, a missing signature)."""


class StepStop(Exception):
    """Raise from an action handler to end the run early and cleanly (a re-measurement that says all is well)."""


class StepCall(Protocol):
    """What an action handler gets: the run it belongs to and the only ways it may act."""

    hub: HubContext
    automation_id: str
    run_id: str
    # ``{"automation": id, "run": run_id, "depth": n}``: put it in what the step causes, so loops are caught.
    cause: dict[str, Any]
    variables: Mapping[str, Any]
    # A dry run: say what would be done (return it) and do nothing.
    dry_run: bool

    async def run_job(
        self, node_id: str, action: str, params: dict[str, Any], *, timeout: float = 3600.0
    ) -> dict[str, Any]:
        """Run an action as a job on a node as ``automation:<id>`` (grants, the agent's ceiling and, for a
        destructive action, the operator's envelope given with the run's approval all apply) and wait for
        its end. At most once per step, even across a hub restart. Returns the job as the API shows it;
        raises ``StepRefused`` or ``StepFailed``. In a dry run, checks what it can and returns what would run."""

    def node_status(self, node_id: str) -> str:
        """online, stale, offline or new."""

    def described(self, node_id: str, action: str) -> dict[str, Any]:
        """How the node describes the action (capability, destructive, timeout), {} when it does not offer it."""

    async def notify(self, **message: Any) -> list[str]:
        """Queue a notification (``hub.notifications.send`` keywords) caused by this run; returns outbox ids."""

    async def raise_alert(self, **alert: Any) -> dict[str, Any]:
        """Raise an alert (``hub.alerts.raise_alert`` keywords but source and cause) as this automation."""

    async def resolve_alert(self, node_id: str, name: str, labels: Mapping[str, str]) -> None:
        """Resolve an alert this automation raised."""


@dataclass(frozen=True)
class AutomationAction(_Extension):
    """Something an automation can do (run a job, send a notification, raise an alert).

    ``schema`` validates the step's ``with`` settings as written (templates
    may stand for values and are filled just before the step runs).
    ``handler(settings, step)`` (async) carries it out with the filled
    settings and a ``StepCall``, and returns a JSON-serialisable result (kept
    in the run's trace, and in a variable with ``save_as``). It raises
    ``StepFailed``/``StepRefused`` when the step failed, ``StepStop`` to end
    the run early without failing it.
    """


EXTENSION_KINDS: dict[str, type[_Extension]] = {
    "notification_receivers": NotificationReceiver,
    "alert_rule_kinds": AlertRuleKind,
    "automation_triggers": AutomationTrigger,
    "automation_actions": AutomationAction,
}

__all__ = [
    "AgentSettings",
    "API_PREFIX",
    "AlertFinding",
    "AlertRuleKind",
    "ApiRoute",
    "AuditWriter",
    "AutomationAction",
    "AutomationTrigger",
    "DeclarationError",
    "StepCall",
    "StepFailed",
    "StepRefused",
    "StepStop",
    "TriggerState",
    "EventPublisher",
    "EXTENSION_KINDS",
    "HeadlineFigure",
    "HubContext",
    "IntegrationStore",
    "JobCreator",
    "NodePanel",
    "NodeReader",
    "NotificationReceiver",
    "Page",
    "PageRequest",
    "PublicRequest",
    "PublicRoute",
    "RouteError",
    "RouteRequest",
    "SearchResult",
    "as_dict",
    "as_list",
    "chart_specs",
    "integration_status",
    "selected_range",
]
