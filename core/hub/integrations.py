"""The hub halves of integrations at run time: their context, their pages and API routes, node panels, headline figures
and the registry of extension points (notification receivers, alert rule kinds, automation triggers and actions).

Every call into an integration goes through the plugin kernel one integration
at a time; whatever one raises is that integration's failure, logged with its
domain, and the hub answers for it (an error panel, a 500, ``setup_error``).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.audit import AuditWriteError
from roost.core.const import STATE_SETUP_ERROR
from roost.core.hub_integration import (
    API_PREFIX,
    EXTENSION_KINDS,
    ApiRoute,
    DeclarationError,
    HeadlineFigure,
    HubContext,
    NodePanel,
    Page,
    PublicRoute,
    SearchResult,
    RouteError,
)
from roost.core.integration import SOURCE_BUILTIN, Integration, IntegrationContext, humanize_invalid

from .api import auto_resolution
from .auth import AuthError, add_public_path, error_response, read_fields, require
from .jobs import JobError, job_view
from .security import RateLimiter, peer_of, rate_key, retry_after_header
from .state import Hub

# ctx.store limits: a key's length and a value's JSON size.
MAX_STORE_KEY = 200
MAX_STORE_VALUE = 1024 * 1024

_LOGGER = logging.getLogger(__name__)

# The core API's body limit for small JSON requests (pairing, tokens): the same for integrations.
MAX_ROUTE_BODY = 64 * 1024
# Methods whose parameters come in the query string (a DELETE may carry no body).
QUERY_METHODS = ("GET", "HEAD", "OPTIONS", "DELETE")


# ---------------------------------------------------------------- the context's parts


class HubNodes:
    """The read-only view of nodes an integration's hub half gets as ``ctx.nodes``."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def list(self) -> list[dict[str, Any]]:
        return copy.deepcopy((await self._hub.nodes_summary())["nodes"])

    async def get(self, node_id: str) -> dict[str, Any] | None:
        detail = await self._hub.node_detail(node_id)
        return copy.deepcopy(detail) if detail is not None else None

    async def with_integration(self, domain: str, states: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        overview = await self._hub.integrations_overview()
        found = []
        for node_id, info in (overview.get("nodes") or {}).items():
            entries = info.get("integrations") if isinstance(info, dict) else None
            status = next((i for i in entries or [] if isinstance(i, dict) and i.get("domain") == domain), None)
            if status is None or (states and status.get("state") not in states):
                continue
            detail = await self.get(node_id)
            if detail is None:
                continue
            detail["status"] = copy.deepcopy(status)
            found.append(detail)
        return found

    async def history(
        self, node_id: str, series: list[str], *, start: float, end: float, resolution: str = "auto"
    ) -> dict[str, list[tuple[float, float, float, float]]]:
        if resolution == "auto":
            resolution = auto_resolution(end - start)
        return await self._hub.store.history(node_id, list(series), start, end, resolution)


class HubEvents:
    """``ctx.events``: publish events of the integration's own kind, subscribe to all."""

    def __init__(self, hub: Hub, domain: str) -> None:
        self._hub = hub
        self._domain = domain

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        if not isinstance(kind, str) or not kind.startswith(self._domain + "."):
            raise ValueError(f"event kind {kind!r} must start with {self._domain + '.'!r}")
        self._hub.publish(kind, data)

    def subscribe(self) -> AbstractAsyncContextManager[Any]:
        return self._hub.events.subscribe()


class HubJobs:
    """``ctx.jobs``: queue an action through the job engine, so grants, ceiling and signatures all apply."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def create(
        self, node_id: str, action: str, params: dict[str, Any], *, actor: str, envelope: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        job = await self._hub.jobs.create(node_id, action, dict(params), actor=actor, envelope=envelope)
        return job_view(job)


class HubAudit:
    """``ctx.audit``: append to the hub's audit log, under the integration's own action names."""

    def __init__(self, hub: Hub, domain: str) -> None:
        self._hub = hub
        self._domain = domain

    async def __call__(
        self, action: str, *, actor: str, target: str = "", outcome: str = "ok", details: dict[str, Any] | None = None
    ) -> None:
        if not isinstance(action, str) or not action.startswith(self._domain + "."):
            raise ValueError(f"audit action {action!r} must start with {self._domain + '.'!r}; core actions are the hub's own")
        await self._hub.audit(action, actor=actor, target=target, outcome=outcome, details=details)


class HubStore:
    """``ctx.store``: the integration's own keys in the hub's store, as JSON."""

    def __init__(self, hub: Hub, domain: str) -> None:
        self._hub = hub
        self._domain = domain

    def _key(self, key: Any) -> str:
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_STORE_KEY:
            raise ValueError(f"{self._domain}: a store key must be a string of 1 to {MAX_STORE_KEY} characters, not {str(key)[:40]!r}")
        return key

    async def get(self, key: str) -> Any | None:
        text = await self._hub.store.get_integration_data(self._domain, self._key(key))
        return None if text is None else json.loads(text)

    async def put(self, key: str, value: Any) -> None:
        key = self._key(key)
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{self._domain}: the value for {key!r} cannot be kept as JSON: {err}") from None
        if len(text.encode()) > MAX_STORE_VALUE:
            raise ValueError(f"{self._domain}: the value for {key!r} is {len(text.encode())} bytes of JSON; at most {MAX_STORE_VALUE} are kept")
        await self._hub.store.put_integration_data(self._domain, key, text, now=time.time())

    async def delete(self, key: str) -> bool:
        return await self._hub.store.delete_integration_data(self._domain, self._key(key))

    async def items(self, prefix: str = "") -> dict[str, Any]:
        if not isinstance(prefix, str):
            raise ValueError(f"{self._domain}: a store prefix must be a string")
        return {key: json.loads(text) for key, text in await self._hub.store.list_integration_data(self._domain, prefix)}


class HubAgentSettings:
    """``ctx.agent_settings``: the integration's settings per node, sent to each agent like grants."""

    def __init__(self, hub: Hub, domain: str) -> None:
        self._hub = hub
        self._domain = domain

    async def get(self, node_id: str) -> dict[str, Any] | None:
        return copy.deepcopy((await self._hub.agent_settings(node_id)).get(self._domain))

    async def put(self, node_id: str, settings: dict[str, Any]) -> None:
        if not isinstance(settings, dict):
            raise ValueError(f"{self._domain}: agent settings must be a JSON object, not {type(settings).__name__}")
        if await self._hub.store.get_node(node_id) is None:
            raise ValueError(f"{self._domain}: no node {node_id!r}")
        await self._hub.set_agent_settings(node_id, self._domain, settings)


# ---------------------------------------------------------------- what was declared


@dataclass(frozen=True)
class DeclaredPage:
    integration: Integration
    page: Page


@dataclass(frozen=True)
class DeclaredRoute:
    integration: Integration
    route: ApiRoute

    @property
    def url(self) -> str:
        return f"{API_PREFIX}/{self.integration.domain}{self.route.path}"


@dataclass(frozen=True)
class DeclaredPublicRoute:
    integration: Integration
    route: PublicRoute

    @property
    def url(self) -> str:
        return f"/{self.integration.domain}{self.route.path}"


# A public route's refusals that count against the caller's address (a guessed or revoked secret).
PUBLIC_FAILURES = (401, 403, 404)
PUBLIC_FAILURE_WINDOW = 300.0
PUBLIC_BAN_SECONDS = 900.0


@dataclass(frozen=True)
class PanelView:
    """A panel ready for the node page: an integration's template and context, or the error it raised."""

    domain: str
    name: str
    title: str
    template: str = ""
    context: Mapping[str, Any] = field(default_factory=dict)
    order: int = 100
    error: str = ""
    stylesheets: tuple[str, ...] = ()


@dataclass
class Registry:
    """The extension points every hub half provided, by kind then name: (domain, declaration)."""

    notification_receivers: dict[str, tuple[str, Any]] = field(default_factory=dict)
    alert_rule_kinds: dict[str, tuple[str, Any]] = field(default_factory=dict)
    automation_triggers: dict[str, tuple[str, Any]] = field(default_factory=dict)
    automation_actions: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def kinds(self) -> dict[str, dict[str, tuple[str, Any]]]:
        return {kind: getattr(self, kind) for kind in EXTENSION_KINDS}


class HubIntegrations:
    """The hub's side of the plugin kernel: contexts, declarations, panels, figures and the extension registry."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.pages: list[DeclaredPage] = []
        self.routes: list[DeclaredRoute] = []
        self.public_routes: list[DeclaredPublicRoute] = []
        self.figures: list[tuple[str, HeadlineFigure]] = []
        self.registry = Registry()

    @property
    def manager(self) -> Any:
        return self.hub.manager

    def context(self, base: IntegrationContext) -> HubContext:
        """The kernel's context factory for the hub role."""
        return HubContext(
            domain=base.domain,
            config=base.config,
            data_dir=base.data_dir,
            logger=base.logger,
            nodes=HubNodes(self.hub),
            events=HubEvents(self.hub, base.domain),
            jobs=HubJobs(self.hub),
            audit=HubAudit(self.hub, base.domain),
            store=HubStore(self.hub, base.domain),
            agent_settings=HubAgentSettings(self.hub, base.domain),
            timezone=str(getattr(getattr(self.hub, "config", None), "timezone", "") or ""),
            data=base.data,
        )

    def loaded(self) -> list[Integration]:
        return [i for i in self.manager.integrations.values() if i.module is not None and i.context is not None]

    # ----------------------------------------------------------- declare (build time)

    def declare(self) -> None:
        """Ask each hub half for its pages and routes while the app is built; a broken one goes to setup_error."""
        taken_pages = {p.page.path for p in self.pages}
        taken_routes = {(r.route.method, r.url) for r in self.routes}
        for integ in self.loaded():
            if integ.state == STATE_SETUP_ERROR:
                continue
            try:
                pages = self._declared(integ, self.manager.call_now(integ, "roost_hub_pages"), Page, "roost_hub_pages")
                found = self.manager.call_now(integ, "roost_hub_routes")
                public = self._public_declared(integ, found)
                routes = self._declared(integ, self._without_public(found), ApiRoute, "roost_hub_routes")
            except Exception as err:
                _LOGGER.exception("integration %s: declaring its pages or routes failed", integ.domain)
                integ.set_state(STATE_SETUP_ERROR, f"declaring pages or routes failed: {type(err).__name__}: {err}")
                continue
            for page in pages:
                if page.path in taken_pages:
                    _LOGGER.warning("integration %s: page %s is already taken; left out", integ.domain, page.path)
                    continue
                taken_pages.add(page.path)
                self.pages.append(DeclaredPage(integ, page))
            for route in routes:
                declared = DeclaredRoute(integ, route)
                if (route.method, declared.url) in taken_routes:
                    _LOGGER.warning("integration %s: route %s %s is declared twice; left out", integ.domain, route.method, declared.url)
                    continue
                taken_routes.add((route.method, declared.url))
                self.routes.append(declared)
            for route in public:
                declared_public = DeclaredPublicRoute(integ, route)
                if (route.method, declared_public.url) in taken_routes or declared_public.url in taken_pages:
                    _LOGGER.warning("integration %s: public route %s %s is taken; left out", integ.domain, route.method, declared_public.url)
                    continue
                taken_routes.add((route.method, declared_public.url))
                self.public_routes.append(declared_public)

    @staticmethod
    def _without_public(found: Any) -> Any:
        return [item for item in found if not isinstance(item, PublicRoute)] if isinstance(found, (list, tuple)) else found

    @staticmethod
    def _public_declared(integ: Integration, found: Any) -> list[PublicRoute]:
        """The PublicRoutes among what roost_hub_routes returned; only a built-in integration may serve routes without a login."""
        public = [item for item in found if isinstance(item, PublicRoute)] if isinstance(found, (list, tuple)) else []
        good = []
        for route in public:
            if integ.source != SOURCE_BUILTIN:
                _LOGGER.warning("integration %s: public route %s is refused: only built-in integrations may answer without a login", integ.domain, route.path)
                continue
            try:
                route.check(integ.domain)
            except DeclarationError as err:
                _LOGGER.warning("integration %s: %s; left out", integ.domain, err)
                continue
            good.append(route)
        return good

    @staticmethod
    def _declared(integ: Integration, found: Any, kind: type, hook: str) -> list[Any]:
        if found is None:
            return []
        if not isinstance(found, (list, tuple)):
            raise TypeError(f"{hook} must return a list of {kind.__name__}, got {type(found).__name__}")
        good = []
        for item in found:
            if not isinstance(item, kind):
                _LOGGER.warning("integration %s: %s returned %r, not a %s; left out", integ.domain, hook, item, kind.__name__)
                continue
            try:
                item.check()
            except DeclarationError as err:
                _LOGGER.warning("integration %s: %s; left out", integ.domain, err)
                continue
            good.append(item)
        return good

    # --------------------------------------------------------------- collect (after setup)

    def collect(self) -> None:
        """Gather headline figures and extension points from every hub half that set up."""
        self.figures = []
        self.registry = Registry()
        keys: set[str] = set()
        for integ in sorted(self.loaded(), key=lambda i: i.domain):
            if not integ.active:
                continue
            declared = integ.hub_declarations
            for figure in declared.get("headline_figures", []):
                if not isinstance(figure, HeadlineFigure):
                    _LOGGER.warning("integration %s: %r is not a HeadlineFigure; left out", integ.domain, figure)
                    continue
                try:
                    figure.check()
                except DeclarationError as err:
                    _LOGGER.warning("integration %s: %s; left out", integ.domain, err)
                    continue
                if figure.key in keys:
                    _LOGGER.warning("integration %s: headline figure %s is already declared; left out", integ.domain, figure.key)
                    continue
                keys.add(figure.key)
                self.figures.append((integ.domain, figure))
            for kind, cls in EXTENSION_KINDS.items():
                table = getattr(self.registry, kind)
                for item in declared.get(kind, []):
                    if not isinstance(item, cls):
                        _LOGGER.warning("integration %s: %r is not a %s; left out", integ.domain, item, cls.__name__)
                        continue
                    try:
                        item.check(integ.domain)
                    except DeclarationError as err:
                        _LOGGER.warning("integration %s: %s; left out", integ.domain, err)
                        continue
                    if item.name in table:
                        _LOGGER.warning("integration %s: %s %s is already declared; left out", integ.domain, cls.__name__, item.name)
                        continue
                    table[item.name] = (integ.domain, item)
        self.figures.sort(key=lambda pair: (pair[1].order, pair[1].key))
        self.hub.headline = {figure.key: figure.metric for _, figure in self.figures}

    def headline_figures(self) -> list[dict[str, Any]]:
        """The figures for the node cards, in order, as the dashboard and API describe them."""
        return [
            {"key": f.key, "metric": f.metric, "label": f.label, "unit": f.unit, "domain": domain, "problem_above": f.problem_above}
            for domain, f in self.figures
        ]

    # ------------------------------------------------------------------ node panels

    async def node_panels(self, node: Mapping[str, Any], state: Mapping[str, Any]) -> list[PanelView]:
        """The panels of every hub half whose domain is in this node's state; a failing one becomes an error panel."""
        views: list[PanelView] = []
        for integ in sorted(self.loaded(), key=lambda i: i.domain):
            if not integ.active or integ.domain not in state or not self.manager.has_hook(integ, "roost_hub_node_panels"):
                continue
            name = integ.manifest.name
            try:
                panels = await self.manager.call(
                    integ,
                    "roost_hub_node_panels",
                    timeout=integ.timeout,
                    args={"node": copy.deepcopy(dict(node)), "state": copy.deepcopy(state[integ.domain])},
                )
                if panels is None:
                    continue
                if not isinstance(panels, (list, tuple)) or not all(isinstance(p, NodePanel) for p in panels):
                    raise TypeError("roost_hub_node_panels must return a list of NodePanel")
            except Exception as err:
                _LOGGER.exception("integration %s: node panels for %s failed", integ.domain, node.get("id"))
                views.append(PanelView(integ.domain, name, name, error=f"{type(err).__name__}: {err}"))
                continue
            views.extend(
                PanelView(integ.domain, name, str(p.title), p.template, dict(p.context), p.order, stylesheets=tuple(p.stylesheets))
                for p in panels
            )
        views.sort(key=lambda v: (v.order, v.domain))
        return views

    # ---------------------------------------------------------------------- search

    async def search(self, query: str, limit: int) -> tuple[list[dict[str, Any]], list[str]]:
        """What every hub half finds for ``query``: (results as dicts with the domain, names of integrations that failed)."""
        results: list[dict[str, Any]] = []
        failed: list[str] = []
        for integ in sorted(self.loaded(), key=lambda i: i.domain):
            if not integ.active or not self.manager.has_hook(integ, "roost_hub_search"):
                continue
            try:
                found = await self.manager.call(integ, "roost_hub_search", timeout=integ.timeout, args={"query": query, "limit": limit})
                if found is None:
                    continue
                if not isinstance(found, (list, tuple)) or not all(isinstance(r, SearchResult) for r in found):
                    raise TypeError("roost_hub_search must return a list of SearchResult")
                for result in found[:limit]:
                    result.check()
            except Exception:
                _LOGGER.exception("integration %s: search for %r failed", integ.domain, query)
                failed.append(integ.manifest.name)
                continue
            results.extend(
                {"domain": integ.domain, "kind": str(r.kind), "title": str(r.title), "url": r.url, "detail": str(r.detail)}
                for r in found[:limit]
            )
        return results, failed

    # ---------------------------------------------------------------------- routes

    def setup_routes(self, app: web.Application) -> None:
        for declared in self.routes:
            app.router.add_route(declared.route.method, declared.url, self._route_handler(declared))
        limiters: dict[str, tuple[RateLimiter, RateLimiter]] = {}
        for declared in self.public_routes:
            domain, route = declared.integration.domain, declared.route
            if domain not in limiters:
                # One bucket per caller address for all of an integration's public routes; bans outlive a restart.
                by_peer = RateLimiter(
                    rate=route.rate, burst=route.burst, max_failures=route.max_failures,
                    failure_window=PUBLIC_FAILURE_WINDOW, ban_seconds=PUBLIC_BAN_SECONDS, max_keys=10_000,
                )
                if getattr(self.hub, "limits", None) is not None:
                    self.hub.limits.add(f"public.{domain}", by_peer)
                limiters[domain] = (by_peer, RateLimiter(rate=route.rate, burst=route.burst, max_keys=10_000))
            prefix = f"/{domain}/"
            add_public_path(app, declared.url)
            if "{" in declared.url:
                add_public_path(app, prefix, prefix=True)
            app.router.add_route(route.method, declared.url, self._public_handler(declared, *limiters[domain]))

    def _public_handler(self, declared: DeclaredPublicRoute, by_peer: RateLimiter, by_param: RateLimiter) -> Callable[[web.Request], Any]:
        integ, route = declared.integration, declared.route
        domain = integ.domain

        def text(status: int, message: str, **headers: str) -> web.Response:
            return web.Response(status=status, text=message + "\n", content_type="text/plain", headers=headers or None)

        async def handle(request: web.Request) -> web.StreamResponse:
            peer = rate_key(peer_of(request))
            wait = by_peer.allow(peer)
            if not wait and route.limit_by:
                wait = by_param.allow(f"{route.limit_by}:{request.match_info.get(route.limit_by, '')}")
            if wait:
                return text(429, "too many requests; slow down", **{"Retry-After": retry_after_header(wait)})
            if not integ.active:
                return text(503, f"integration {domain} is {integ.state}; try again later")
            if request.content_length is not None and request.content_length > route.max_body:
                return text(413, f"the body is larger than the {route.max_body}-byte limit; send less (the tail of a log)")
            chunks: list[bytes] = []
            size = 0
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > route.max_body:
                    return text(413, f"the body is larger than the {route.max_body}-byte limit; send less (the tail of a log)")
                chunks.append(chunk)
            call = _PublicCall(
                method=request.method,
                path=request.path,
                match_info=dict(request.match_info),
                query=dict(request.query),
                body=b"".join(chunks),
                peer=peer,
                user_agent=request.headers.get("User-Agent", "")[:200],
                hub=integ.context,
            )
            try:
                answer = await route.handler(call)
            except RouteError as err:
                status = err.status if 400 <= err.status < 500 else 400
                if status in PUBLIC_FAILURES:
                    banned = by_peer.failure(peer)
                    if banned:
                        await self.hub.audit(
                            f"{domain}.banned", actor=f"peer:{peer}", target=request.path.rsplit("/", 1)[0][:60], outcome="refused",
                            details={"seconds": banned, "why": err.message},
                        )
                return text(status, err.message)
            except (AuditWriteError, OSError) as err:
                return text(503, f"the hub could not record this ({type(err).__name__}); try again", **{"Retry-After": "10"})
            except Exception:
                _LOGGER.exception("integration %s: public route %s %s failed", domain, request.method, request.path)
                return text(500, f"integration {domain} failed to answer; the hub's log has the details")
            return text(200, str(answer))

        handle.__name__ = f"integration_{domain}_public"
        return handle

    def _route_handler(self, declared: DeclaredRoute) -> Callable[[web.Request], Any]:
        integ, route = declared.integration, declared.route
        domain = integ.domain

        async def handle(request: web.Request) -> web.StreamResponse:
            if not integ.active:
                why = f"integration {domain} is {integ.state}" + (f": {integ.reason}" if integ.reason else "")
                return web.json_response({"error": why}, status=503)
            identity = require(request, route.role)
            try:
                if request.method in QUERY_METHODS and not request.can_read_body:
                    params: dict[str, Any] = dict(request.query)
                else:
                    params = await read_fields(request, MAX_ROUTE_BODY, json_only=True)
            except AuthError as err:
                return error_response(request, err)
            if route.schema is not None:
                try:
                    params = route.schema(params)
                except vol.Invalid as err:
                    return web.json_response({"error": f"invalid request: {humanize_invalid(err, params)}"}, status=400)
            call = _RouteCall(request.method, dict(request.match_info), params, identity.actor, identity.role, integ.context)
            started = time.monotonic()
            try:
                result = await route.handler(call)
                body = json.dumps(result, allow_nan=False)
            except RouteError as err:
                status = err.status if 400 <= err.status < 500 else 400
                return web.json_response({"error": err.message}, status=status)
            except (AuditWriteError, JobError) as err:
                return web.json_response({"error": str(err)}, status=409 if isinstance(err, JobError) else 503)
            except Exception:
                _LOGGER.exception(
                    "integration %s: route %s %s failed after %.3f s", domain, request.method, request.path, time.monotonic() - started
                )
                return web.json_response(
                    {"error": f"integration {domain} failed to answer {request.method} {request.path}; the hub's log has the details"},
                    status=500,
                )
            return web.Response(text=body, content_type="application/json")

        handle.__name__ = f"integration_{domain}_route"
        return handle


@dataclass(frozen=True)
class _RouteCall:
    method: str
    match_info: Mapping[str, str]
    params: dict[str, Any]
    actor: str
    role: str
    hub: HubContext | None


@dataclass(frozen=True)
class _PublicCall:
    method: str
    path: str
    match_info: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    peer: str
    user_agent: str
    hub: HubContext | None


__all__ = ["DeclaredPage", "DeclaredPublicRoute", "DeclaredRoute", "HubIntegrations", "PanelView", "Registry"]
