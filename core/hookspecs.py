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
        its ``data_dir`` and a ``logger``.

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
