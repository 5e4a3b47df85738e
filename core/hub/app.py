"""The hub application: the app factory and every resource's lifetime.

This module sits on top of core/hub: it imports the shared state (state.py)
and every route module, and no module here imports it back.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import psutil
from aiohttp import web

from roost.core.config import HubConfig
from roost.core.const import __version__
from roost.core.discovery import HUB_SERVICE, Announcer
from roost.core.store import Store
from roost.core.store.sqlite import SQLiteStore
from roost.core.tls import CA_PEM_CONTENT_TYPE, HubTLS, ensure_hub_tls

from . import alerts_api, api, archnest, audit, auth, automations_api, gateway, jobs_api, jointokens, mcp_http, mqtt, notify, openapi, pairing, permissions, prometheus, push, security, wake
from .gateway import AGENT_AUTH_LIMITS, MESSAGE_BURST, MESSAGE_RATE
from .automations import AutomationEngine
from .integrations import HubIntegrations
from .local_agent import local_agent_ctx
from .pairing import Pairing
from .security import RateLimiter
from .security_events import PersistentLimits, SecurityEvents, ServerLog, security_ctx
from .state import HUB_KEY, Hub, create_join_token, load_hub_identity

try:
    from roost.frontend import setup as setup_frontend
except ImportError:  # the dashboard is optional for API-only use
    setup_frontend = None

_LOGGER = logging.getLogger(__name__)


def build_hub(config: HubConfig, store: Store) -> Hub:
    """The Hub with the parts whose modules also serve routes (so they import state.py, not the other way)."""
    hub = Hub(config, store)
    hub.pairing = Pairing(hub)
    hub.plugins = HubIntegrations(hub)
    hub.notifications = notify.Notifier(hub)
    hub.automations = AutomationEngine(hub)
    hub.manager.context_factory = hub.plugins.context
    # Repeated refusals are counted, not written one by one; bans and failures outlive a restart.
    hub.security_events = SecurityEvents(hub.audit)
    hub.limits = PersistentLimits(store)
    hub.agent_messages = RateLimiter(rate=MESSAGE_RATE, burst=MESSAGE_BURST, max_keys=100_000)
    hub.agent_auth = hub.limits.add("agent", RateLimiter(**AGENT_AUTH_LIMITS))
    # Automation webhooks are public: a burst of calls is fine, guessing secrets gets an address banned.
    hub.automations.webhook_limits = hub.limits.add("webhook", RateLimiter(rate=2.0, burst=30, max_failures=20, failure_window=600, ban_seconds=900))
    per_minute = config.pairing_attempts_per_minute
    hub.pairing_attempts = hub.limits.add(
        "pairing", RateLimiter(rate=per_minute / 60.0, burst=max(1, per_minute // 2), max_failures=5, ban_seconds=300)
    )
    return hub


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB_KEY]
    await hub.open()
    _LOGGER.info("hub %s: store at %s", hub.hub_id, hub.config.store_path)
    yield
    if hub._dirty_seen:
        await hub.store.touch_nodes(hub._dirty_seen)
    await hub.store.close()


async def _ingest_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB_KEY]
    hub.ingestor.start()
    yield
    for ws in list(hub.connections.values()):
        await ws.close(code=1001, message=b"hub shutting down")
    await hub.ingestor.stop()


async def _integrations_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB_KEY]
    hub.manager.load()
    await hub.manager.setup_all()
    hub.plugins.collect()
    yield
    await hub.manager.shutdown_all()


async def _alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Judge alert rules once the integrations' rule kinds are known; stop before the store closes."""
    hub = app[HUB_KEY]
    hub.alerts.start()
    yield
    await hub.alerts.stop()


async def _discovery_ctx(app: web.Application) -> AsyncIterator[None]:
    """Announce the hub (a hint; the CA fingerprint in it is checked by the agent) and watch for unpaired agents."""
    hub = app[HUB_KEY]
    config = hub.config
    announcer = None
    if config.discovery:
        interfaces = config.discovery_interfaces or None
        try:
            announcer = Announcer(
                HUB_SERVICE,
                f"roost-{socket.gethostname()}",
                config.port,
                {"id": hub.hub_id, "ca": hub.ca_fingerprint, "tls": "1" if config.tls else "0"},
                interfaces=interfaces,
            )
            await announcer.start()
            await hub.pairing.start_discovery(config.discovery_interfaces)
        except Exception as err:  # discovery is a convenience; the hub works without it
            _LOGGER.error("zeroconf discovery unavailable (%s); agents need --hub", err)
            announcer = None
    yield
    await hub.pairing.stop_discovery()
    if announcer is not None:
        await announcer.stop()


async def _jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB_KEY]
    hub.jobs.start()
    yield
    await hub.jobs.stop()


async def _automations_ctx(app: web.Application) -> AsyncIterator[None]:
    """Automations start once the integrations registered their trigger and step kinds and jobs run; runs left waiting resume."""
    hub = app[HUB_KEY]
    await hub.automations.start()
    yield
    await hub.automations.stop()


async def _maintenance_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[HUB_KEY].maintenance(), name="roost-maintenance")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _on_shutdown(app: web.Application) -> None:
    """End long-lived connections first, so the server stops without waiting them out."""
    hub = app[HUB_KEY]
    hub.events.close()
    for ws in list(hub.connections.values()):
        await ws.close(code=1001, message=b"hub shutting down")


def hub_tls(config: HubConfig, hub_id: str = "") -> HubTLS:
    """The hub's CA and server certificate: made on first start, reused and renewed after."""
    names = sorted({socket.gethostname(), socket.getfqdn(), "localhost"} - {""})
    addresses = [config.bind] if config.bind not in ("0.0.0.0", "::", "") and not config.bind.isalpha() else []
    if config.bind in ("0.0.0.0", "::"):
        addresses = sorted({a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6)})
    return ensure_hub_tls(
        config.data_dir / "tls",
        hostnames=names,
        addresses=addresses,
        cert_file=config.tls_cert,
        key_file=config.tls_key,
        ca_file=config.tls_ca,
        hub_id=hub_id,
    )


async def _tls_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB_KEY]
    if hub.tls is None:
        hub.tls = await asyncio.to_thread(hub_tls, hub.config, hub.hub_id)
    hub.ca_fingerprint = hub.tls.ca_fingerprint
    yield


async def ca_pem(request: web.Request) -> web.Response:
    """The hub's CA, for agents to pin (after checking its fingerprint) and for users to trust."""
    return web.Response(body=request.app[HUB_KEY].tls.ca_document, content_type=CA_PEM_CONTENT_TYPE)


def create_app(config: HubConfig, *, store: Store | None = None, tls: HubTLS | None = None) -> web.Application:
    """Build the hub's aiohttp application; nothing starts until the app does."""
    hub = build_hub(config, store or SQLiteStore(config.store_path))
    # aiohttp's HTTP server logs through ServerLog: a malformed request is one counted line, not a traceback.
    app = web.Application(client_max_size=1024 * 1024, handler_args={"logger": ServerLog(hub.security_events)})
    app[HUB_KEY] = hub
    app[HUB_KEY].tls = tls
    app.cleanup_ctx.append(_store_ctx)
    # LAN-only first, then login, for every route (auth's cleanup context needs the open store).
    security.setup(app, lan_only=config.lan_only, trusted_proxies=config.trusted_proxies, events=hub.security_events)
    auth.setup(app, session_days=config.session_days)
    permissions.setup(app)
    app.cleanup_ctx.append(security_ctx)
    app.cleanup_ctx.append(_tls_ctx)
    app.cleanup_ctx.append(_ingest_ctx)
    app.cleanup_ctx.append(_integrations_ctx)
    # After the integrations: receiver kinds come from their hub halves.
    app.cleanup_ctx.append(notify.notifications_ctx)
    app.cleanup_ctx.append(_jobs_ctx)
    app.cleanup_ctx.append(_alerts_ctx)
    app.cleanup_ctx.append(_automations_ctx)
    app.cleanup_ctx.append(_maintenance_ctx)
    app.cleanup_ctx.append(_discovery_ctx)
    if config.local_agent_enabled:
        app.cleanup_ctx.append(local_agent_ctx)
    app.on_shutdown.append(_on_shutdown)
    app.router.add_get("/api/v1/ca.pem", ca_pem)
    # Hub halves are imported now: the routing table is fixed before the app starts.
    app[HUB_KEY].manager.load()
    app[HUB_KEY].plugins.declare()
    app[HUB_KEY].plugins.setup_routes(app)
    api.setup(app)
    alerts_api.setup(app)
    gateway.setup(app)
    pairing.setup(app)
    jointokens.setup(app)
    jobs_api.setup(app)
    automations_api.setup(app)
    audit.setup(app)
    push.setup(app)
    archnest.setup(app)
    prometheus.setup(app)
    mqtt.setup(app)
    mcp_http.setup(app)
    wake.setup(app)
    notify.setup(app)
    openapi.setup(app)
    from . import downloads

    downloads.setup(app)
    if setup_frontend is None:
        _LOGGER.warning("dashboard not available: roost.frontend has no setup()")
    else:
        setup_frontend(app)
    return app


__all__ = ["HUB_KEY", "Hub", "create_app", "create_join_token", "load_hub_identity", "__version__"]
