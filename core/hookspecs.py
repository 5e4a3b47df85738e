"""Every hook an integration can implement: this module is the integration author's manual.

An integration is a package with a ``manifest.json`` and hook implementations
marked with ``roost.core.hookimpl``::

    from roost.core import hookimpl

    @hookimpl
    def roost_collect(ctx):
        return {"state": {...}, "metrics": {"temperature_c": 41.0}}

Rules that hold for every hook:

* Hooks are called with keyword arguments; an implementation may accept only
  the arguments it needs.
* A hook may be a plain function or ``async def``. The core awaits what is
  awaitable. A plain function may block (psutil, a subprocess, an HTTP client):
  the core runs plain functions of ``roost_setup``, ``roost_collect`` and
  ``roost_shutdown`` in a worker thread so they never stall the event loop. An
  ``async def`` hook runs on the event loop and must not block.
* An implementation must be marked with ``@hookimpl``; one whose name is not
  a hook below, or that asks for an argument the hook does not offer, puts the
  integration in ``setup_error`` before any of its hooks is called.
* Hooks named ``roost_hub_*`` run in the hub and get a
  ``roost.core.hub_integration.HubContext``; the others run wherever the
  integration collects (agents, and the hub's own in-process agent). An
  integration whose manifest says ``"roles": ["agent", "hub"]`` keeps its
  hub hooks in ``hub.py`` beside ``__init__.py``: agents never import that
  module, so it may import jinja2-free hub code freely. A hub hook found in
  the module agents load, or an agent hook in ``hub.py``, puts the
  integration in ``setup_error`` in that role.
* Roost calls each integration's implementation on its own, never as a chain:
  an exception raised by one integration marks that integration failed (with
  the reason shown in the dashboard and API) and every other integration keeps
  running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Mapping

import pluggy

from .const import HOOK_NAMESPACE

if TYPE_CHECKING:
    from .actions import ActionSpec
    from .hub_integration import (
        AlertRuleKind,
        ApiRoute,
        AutomationAction,
        AutomationTrigger,
        HeadlineFigure,
        HubContext,
        NodePanel,
        NotificationReceiver,
        Page,
        PublicRoute,
        SearchResult,
    )
    from .integration import IntegrationContext

hookspec = pluggy.HookspecMarker(HOOK_NAMESPACE)


@hookspec
def roost_setup(ctx: IntegrationContext) -> None | Awaitable[None]:
    """Prepare the integration once, before its first collection.

    Called once per process (hub or agent) after the integration's config has
    been validated against its ``CONFIG_SCHEMA``, in dependency order, and
    again after each ``NotReady`` backoff. It may take the integration's
    ``timeout`` or 30 s, whichever is longer.

    :param ctx: the integration's context: its validated ``config``, the
        process ``role``, a private ``data`` dict for state kept between calls,
        its ``data_dir``, a ``logger``, the ``settings`` the hub sent for this
        node (checked against the module's ``SETTINGS_SCHEMA``; ``{}`` until
        any, already there at setup when kept from an earlier run) and
        ``report_now()``, which asks for a collection cycle at once and may be
        called from any thread.

    Return nothing. To signal an outcome other than success, raise:

    * ``roost.core.integration.NotAvailable("why")``: this host lacks what the
      integration needs (no Docker socket, no systemd). The state becomes
      ``not_available`` with the reason; it is not an error and is not retried.
    * ``roost.core.integration.NotReady("why")``: a transient failure (a
      service still starting). The core retries with exponential backoff and
      shows ``setup_retry`` meanwhile.
    * Any other exception: the state becomes ``setup_error`` with the message;
      the integration is not collected until the process restarts.
    """


@hookspec
def roost_collect(ctx: IntegrationContext) -> Mapping[str, Any] | None | Awaitable[Mapping[str, Any] | None]:
    """Take one snapshot of what the integration observes.

    Called on every collection cycle (``agent.interval``, 10 s by default) for
    each integration whose setup succeeded. A call that takes longer than the
    integration's ``timeout`` (8 s by default, ``integrations.<domain>.timeout``)
    is abandoned (an ``async`` one is cancelled) and the cycle reports
    ``collect_error``; while an abandoned call is still running, the
    integration is not called again. Integrations are collected concurrently.

    :param ctx: the integration's context (see ``roost_setup``).

    Return a mapping with two optional keys, or ``None`` for nothing this cycle:

    * ``"state"``: JSON-serialisable data describing the present (disks,
      interfaces, containers). The hub keeps the latest per node and shows it.
    * ``"metrics"``: a flat ``{name: number}`` mapping of numeric samples that
      the hub keeps as history. Put units in names (``mem_used_bytes``,
      ``cpu_percent``); a per-instance series carries its label in brackets:
      ``disk_used_percent[/srv]``. The core prefixes each name with the domain.

    Only the parts whose read capability the node holds (the hub's grant
    intersected with the host's ceiling) leave the agent: declare the
    capability of each state key and metric in a module-level ``READS``
    (``roost.core.reads.Reads``). When none of them is effective the hook is
    not called at all; an integration without ``READS`` needs
    ``<domain>.read`` for everything it reports.

    Leave out a value the platform cannot give; never fake one. Raising, or
    returning a state that is not JSON (NaN included), marks the integration
    ``collect_error`` for this cycle with the message; the next good cycle
    makes it ``loaded`` again. A metric whose value is not a finite number is
    dropped with a warning; the others are kept.
    """


@hookspec
def roost_metric_fields(ctx: IntegrationContext) -> Mapping[str, Mapping[str, str]] | None:
    """Describe the integration's metrics so the dashboard and API can label them.

    Called once, right after a successful ``roost_setup``, on the event loop
    (it must not block); the agent sends the result to the hub with its
    hello. Keys are metric names as returned by ``roost_collect`` without the
    bracketed label; values are mappings with ``unit`` (``percent``, ``bytes``,
    ``bytes_per_second``, ``seconds``, ``milliseconds``, ``celsius``,
    ``rpm``, ``count`` or ``""``), ``description`` (one sentence) and
    optionally ``label`` (short display name).

    :param ctx: the integration's context.

    Return the mapping, or ``None`` when the integration reports no metrics.
    Exceptions are logged; the integration keeps running without field
    descriptions.
    """


@hookspec
def roost_capabilities(ctx: IntegrationContext) -> list[str] | None:
    """Name the capabilities this integration offers on this host.

    Called once, right after a successful ``roost_setup``, on the event loop
    (it must not block). The agent tells the hub which capabilities it can
    offer (for example ``host.metrics.read``, ``docker.read``); the hub grants
    them per node and the agent's own ceiling limits what runs.

    :param ctx: the integration's context.

    Return a list of dotted capability names, or ``None`` for none. Only
    integrations that set up offer their capabilities; an exception is logged
    and counts as none.
    """


@hookspec
def roost_actions(ctx: IntegrationContext) -> list[ActionSpec] | None:
    """Declare the named actions this integration lets the hub ask for.

    Called once, right after a successful ``roost_setup``, on the event loop
    (it must not block). Each ``roost.core.actions.ActionSpec`` names the
    action (dotted, e.g. ``docker.container.restart``), the capability it
    needs, a voluptuous parameter schema (the dashboard builds a form from
    it), whether it is destructive (then it only runs with an operator's
    signed envelope, and ``target`` names the parameter the signature binds),
    whether it is idempotent (then a failed or lost run may be retried), a
    timeout and the handler. The agent runs an action only when the hub's
    grant and this host's ceiling both allow its capability, after its
    parameters validate.

    :param ctx: the integration's context.

    Return a list of ActionSpec, or ``None`` for none. An invalid spec, or a
    name another integration already uses, is logged and left out; the
    integration keeps its other actions.
    """


@hookspec
def roost_shutdown(ctx: IntegrationContext) -> None | Awaitable[None]:
    """Release what the integration holds (connections, files, threads).

    Called once when the process stops, in reverse dependency order, for each
    integration whose setup succeeded, with a 10 s limit.

    :param ctx: the integration's context.

    Return nothing; a return value is ignored. Exceptions are logged and
    ignored: the other integrations still shut down.
    """


# ------------------------------------------------------------------ the hub half


@hookspec
def roost_hub_setup(ctx: HubContext) -> None | Awaitable[None]:
    """Prepare the integration's hub half once, before the hub serves requests.

    Called once when the hub starts, after its store is open, in dependency
    order, and again after each ``NotReady`` backoff, with the same time
    limit as ``roost_setup``.

    :param ctx: the hub context: the integration's validated ``config``, a
        ``logger``, ``data_dir``, a private ``data`` dict, ``nodes`` (a
        read-only view of every node, its latest state and its history),
        ``events`` (publish and subscribe to live events of its own kind,
        ``<domain>.*``), ``jobs`` (queue an action on a node through the
        normal grant, ceiling and signature checks), ``audit`` (append an
        entry whose action starts with ``<domain>.``) and ``store`` (JSON
        values by key in the integration's own namespace of the hub's store,
        kept across restarts: ``await ctx.store.put(key, value)``, ``get``,
        ``delete``, ``items(prefix)``). It never holds the raw store or the
        web application.

    Return nothing. Raise ``NotAvailable`` or ``NotReady`` as in
    ``roost_setup``; any other exception puts the integration in
    ``setup_error``: its pages then show that reason, its routes answer 503,
    and the rest of the hub keeps working.
    """


@hookspec
def roost_hub_pages(ctx: HubContext) -> list[Page] | None:
    """Declare the dashboard pages the integration adds.

    Called once while the hub builds its web application (after the config
    is validated, before ``roost_hub_setup``: the routing table is fixed
    before the hub starts), as a plain function (not ``async def``) on the
    thread that builds the app; it must not block and must not use
    ``ctx.nodes``, ``ctx.jobs`` or ``ctx.audit`` yet.

    :param ctx: the hub context (see ``roost_hub_setup``).

    Return a list of ``roost.core.hub_integration.Page``: each has a ``path``
    (``/containers``, ``/containers/{node_id}/{name}``), an ``async``
    ``handler(page)`` taking a ``PageRequest`` and returning
    ``page.render(template, context)``, an optional ``nav`` label for the top
    navigation, the lowest ``role`` that may see it and an ``order``.
    Templates come from the integration's ``templates/`` folder (named
    without a prefix; they extend ``base.html``) and its ``static/`` folder
    is served at ``/static/integrations/<domain>/`` (in a template:
    ``static_url('app.js', domain)``). A handler that raises renders an error
    panel naming the integration (status 500); a page of an integration that
    did not set up shows why (503). A path that is invalid, reserved by the
    dashboard or taken by another integration is logged and left out.
    """


@hookspec
def roost_hub_routes(ctx: HubContext) -> list[ApiRoute | PublicRoute] | None:
    """Declare the API routes the integration adds under ``/api/v1/integrations/<domain>``.

    Called once while the hub builds its web application, like
    ``roost_hub_pages`` (a plain function that must not block).

    :param ctx: the hub context (see ``roost_hub_setup``).

    Return a list of ``roost.core.hub_integration.ApiRoute`` (``method``,
    ``path`` below the prefix, ``async handler(request)``, the lowest
    ``role``, an optional voluptuous ``schema`` for the query or JSON body).
    The core API's rules apply before the handler runs: login or API token,
    the CSRF token on a session's state-changing request, read-scope tokens
    refused for writes, LAN-only mode, the 64 KiB body limit and the schema
    (400 with what was wrong). The handler returns JSON data (200) or raises
    ``RouteError(message, status)``; any other exception answers 500 and is
    logged naming the integration.

    A built-in integration may also return ``PublicRoute`` items: routes at
    ``/<domain><path>`` that answer without a login (a ping URL whose
    unguessable id is the secret), limited per caller address and per path
    parameter, with bounded bodies; see ``roost.core.hub_integration.PublicRoute``.
    """


@hookspec
def roost_hub_node_panels(ctx: HubContext, node: Mapping[str, Any], state: Any) -> list[NodePanel] | None | Awaitable[list[NodePanel] | None]:
    """Give the panels this integration adds to one node's page.

    Called each time a node's page (or its live-refreshed details) renders,
    for a node whose latest state has an entry for this integration; it may
    be ``async`` and must not block. Integrations are asked one by one.

    :param ctx: the hub context (see ``roost_hub_setup``).
    :param node: the node as the API shows it (``id``, ``name``, ``status``,
        ``facts``, ``integrations``, ``fields``).
    :param state: this integration's latest state on that node, exactly as
        its ``roost_collect`` returned it (never trusted to have a key).

    Return a list of ``roost.core.hub_integration.NodePanel`` (a ``title``,
    one of the integration's ``template`` names and its ``context``), or
    ``None`` for none. A hook or template that raises shows an error panel
    naming the integration in its place; the rest of the page renders.
    """


@hookspec
def roost_hub_search(ctx: HubContext, query: str, limit: int) -> list[SearchResult] | None | Awaitable[list[SearchResult] | None]:
    """Find this integration's things (containers, guests) for the dashboard's search box.

    Called each time someone searches from the top bar, with what they
    typed; it may be ``async`` and must not block. Integrations are asked
    one by one; one that raises or takes too long is left out of the
    results (and logged), the others still answer.

    :param ctx: the hub context (see ``roost_hub_setup``); ``ctx.nodes`` reads
        the nodes' latest states.
    :param query: the words searched for, stripped, at most 100 characters;
        match them case-insensitively, each word somewhere in the thing.
    :param limit: the most results the page shows from one integration.

    Return a list of ``roost.core.hub_integration.SearchResult`` (``kind``,
    ``title``, the ``url`` of its page on this hub, a short ``detail``),
    best first, or ``None`` for none.
    """


@hookspec
def roost_hub_headline_figures(ctx: HubContext) -> list[HeadlineFigure] | None:
    """Declare the figures this integration puts on the node cards and lists.

    Called once, right after a successful ``roost_hub_setup``, on the event
    loop (it must not block).

    :param ctx: the hub context (see ``roost_hub_setup``).

    Return a list of ``roost.core.hub_integration.HeadlineFigure`` (``key``
    in a node summary's ``headline``, the ``metric`` series it shows, a
    ``label``, a ``unit``, an ``order`` and optionally ``problem_above``: a
    value above it is a problem the overview counts and sorts first, such as
    unhealthy containers), or ``None``. Each node summary
    (API, overview, live events) then carries ``headline[key]`` with the
    latest value of that series when the node reports it. A key another
    integration already declared is logged and left out.
    """


@hookspec
def roost_hub_notification_receivers(ctx: HubContext) -> list[NotificationReceiver] | None:
    """Declare where notifications can be sent through this integration (mail, ntfy, a webhook).

    Called once, right after a successful ``roost_hub_setup``, on the event
    loop (it must not block).

    :param ctx: the hub context (see ``roost_hub_setup``).

    Return a list of ``roost.core.hub_integration.NotificationReceiver``
    (``name`` dotted and starting with the domain, a ``description``, a
    voluptuous ``schema`` for a receiver's settings and an ``async
    handler(settings, message)``), or ``None``. The hub's registry
    (``Hub.registry.notification_receivers``) collects them by name; an
    invalid or duplicate one is logged and left out.
    """


@hookspec
def roost_hub_alert_rule_kinds(ctx: HubContext) -> list[AlertRuleKind] | None:
    """Declare the kinds of alert rule this integration can evaluate.

    Called once, right after a successful ``roost_hub_setup``, on the event
    loop (it must not block).

    :param ctx: the hub context (see ``roost_hub_setup``).

    Return a list of ``roost.core.hub_integration.AlertRuleKind`` (name,
    description, settings schema and an ``async handler(settings, node)``
    that returns ``None`` or what is wrong), or ``None``. Collected in
    ``Hub.registry.alert_rule_kinds``; an invalid or duplicate one is logged
    and left out.
    """


@hookspec
def roost_hub_automation_triggers(ctx: HubContext) -> list[AutomationTrigger] | None:
    """Declare the triggers automations can start on through this integration.

    Called once, right after a successful ``roost_hub_setup``, on the event
    loop (it must not block).

    :param ctx: the hub context (see ``roost_hub_setup``).

    Return a list of ``roost.core.hub_integration.AutomationTrigger`` (name,
    description, settings schema and a ``handler(settings, event, state)``
    that says whether a hub event fires it: falsy, ``True`` or the trigger's
    data as a mapping; ``state`` is a ``TriggerState`` with the trigger's own
    memory), or ``None``. Collected in ``Hub.registry.automation_triggers``;
    an invalid or duplicate one is logged and left out. The built-in kinds
    (cron, webhook, metric, node status, job finished, alert, event) come
    through the same registry, from the ``automation`` integration.
    """


@hookspec
def roost_hub_automation_actions(ctx: HubContext) -> list[AutomationAction] | None:
    """Declare the steps automations can take through this integration.

    Called once, right after a successful ``roost_hub_setup``, on the event
    loop (it must not block).

    :param ctx: the hub context (see ``roost_hub_setup``).

    Return a list of ``roost.core.hub_integration.AutomationAction`` (name,
    description, settings schema and an ``async handler(settings, step)``
    that carries the step out with the filled-in settings and a ``StepCall``
    (the run, its variables, ``run_job`` through grants, ceiling and
    signatures, a dry-run flag) and returns its result), or ``None``.
    Collected in ``Hub.registry.automation_actions``; an invalid or
    duplicate one is logged and left out. The built-in steps (job, confirm,
    notify, raise_alert) come through the same registry.
    """


@hookspec
def roost_hub_shutdown(ctx: HubContext) -> None | Awaitable[None]:
    """Release what the integration's hub half holds (tasks, connections).

    Called once when the hub stops, in reverse dependency order, for each
    integration whose ``roost_hub_setup`` succeeded, with a 10 s limit.

    :param ctx: the hub context (see ``roost_hub_setup``).

    Return nothing; a return value is ignored. Exceptions are logged and
    ignored: the other integrations still shut down.
    """
