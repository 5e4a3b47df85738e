"""What the hub knows at run time: the Hub object every route module reads through HUB_KEY, and join tokens.

Route modules import this module; the app factory in app.py imports them and wires the parts that
need them (pairing, the agent message limiter), so core/hub reads top-down with no import cycle.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from roost.core.audit import (
    ACTION_JOIN_TOKEN_CREATED,
    ACTION_NODE_ENROLLED,
    ACTION_NODE_ENROLMENT_REFUSED,
    AuditWriteError,
    escape,
    format_entry,
)
from roost.core.config import HubConfig
from roost.core.const import (
    NODE_NEW,
    NODE_OFFLINE,
    NODE_ONLINE,
    NODE_STALE,
    ROLE_HUB,
    STATE_LOADED,
    STATE_SETUP_RETRY,
    __version__,
)
from roost.core.identity import Identity, fingerprint, key_digest
from roost.core.jointoken import JOIN_TOKEN_PREFIX, JoinTokenError, split_join_token
from roost.core.plugins import IntegrationManager
from roost.core.store import JoinToken, NodeRecord, Report, Store

from roost.core import protocol
from roost.core.capabilities import default_grants
from roost.core.tls import HubTLS, compact_fingerprint

from .alerts import AlertEngine
from .events import EventBus
from .ingest import Ingestor
from .jobs import JobEngine
from .limits import Refusal, SeriesGuard
from .security import rate_key

if TYPE_CHECKING:
    from .automations import AutomationEngine
    from .integrations import HubIntegrations
    from .notify import Notifier
    from .pairing import Pairing
    from .security import RateLimiter
    from .security_events import PersistentLimits, SecurityEvents

_LOGGER = logging.getLogger(__name__)

SUMMARY_FACTS = ("os", "kernel", "arch", "cpu_cores_logical", "virtualization", "container")
# Capabilities split out of an older one: a node granted the old one before keeps what it allowed.
SPLIT_GRANTS = {"host.metrics.read": "host.processes.read", "network.probe": "network.probe.read"}
META_GRANTS_SPLIT = "grants_split_v1"
# Facts the hub alone sets; the same key claimed by a node in its hello, enrolment or pairing request is dropped.
HUB_FACTS = frozenset({"source"})
LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}\Z")
LIVENESS_CHECK_SECONDS = 1.0
PRUNE_EVERY_SECONDS = 3600.0
TOUCH_FLUSH_SECONDS = 10.0
EVENT_MIN_GAP_SECONDS = 1.0
# The hub's long-term identity key (Ed25519, 0600 in its data dir): agents pin it and it signs every connect.
HUB_KEY_FILE = "hub_key.pem"


def new_node_id() -> str:
    return "n" + secrets.token_hex(6)


def claimed_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """What a node says about itself, without the facts only the hub may set (``source``: how the node reports)."""
    return {k: v for k, v in facts.items() if k not in HUB_FACTS}


def agent_labels(labels: Any, who: str) -> dict[str, str]:
    """The well-formed labels of an agent's hello (at most 32; name and value rules as on the hub); the rest are dropped and logged."""
    if not isinstance(labels, dict):
        return {}
    good: dict[str, str] = {}
    for key, value in list(labels.items())[:64]:
        if len(good) < 32 and isinstance(key, str) and isinstance(value, str) and LABEL_NAME_RE.match(key) and len(value) <= 200 and value.isprintable():
            good[key] = value
    if len(good) != len(labels):
        _LOGGER.warning("node %s: %d of its agent's labels are malformed or too many; left out", who, len(labels) - len(good))
    return good


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def load_hub_identity(data_dir: Any) -> Identity:
    """The hub's identity key, made on first start; the CLI uses it too, to put its fingerprint in join tokens."""
    return Identity.load_or_create(Path(data_dir) / HUB_KEY_FILE)


def same_host(a: str, b: str) -> bool:
    """Host names compared as DNS does: case-insensitively and without a trailing dot."""
    return bool(a) and a.strip().rstrip(".").lower() == b.strip().rstrip(".").lower()


def key_changed_node(nodes: Any, *, hostname: str, name: str, public_key: str) -> str | None:
    """The live node that a newcomer with another key claims to be, if any (docs/security.md, "Key changed").

    A newcomer claims (hostname, name), its name being `roost agent --name`
    or its hostname when it has none. It claims an existing node when the
    hostnames match and its name is that node's name or the host's own name:
    an impersonator cannot dodge the flag by changing case or adding a dot,
    and a second agent on the same host with a name of its own is not taken
    for the first one.
    """
    claimed = (name or hostname).strip().rstrip(".").lower()
    for node in nodes:
        if node.revoked or node.local or node.public_key == public_key or not same_host(node.hostname, hostname):
            continue
        if claimed in {node.name.strip().rstrip(".").lower(), node.hostname.strip().rstrip(".").lower()}:
            return node.node_id
    return None


async def create_join_token(
    store: Store,
    *,
    ttl: float,
    uses: int,
    note: str = "",
    ca_fingerprint: str = "",
    actor: str = "system",
    grants: list[str] | None = None,
    hub_key: str = "",
) -> tuple[str, JoinToken]:
    """Make a join token; only its hash is stored, so the returned string is the one chance to copy it.

    The token ends with the hub CA's fingerprint and the hub identity key's,
    so the agent can pin the hub before it sends the secret part. The audit
    log records who made it (never the secret); if it cannot, this raises and
    the token is never shown.
    """
    token_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(24).replace("_", "-")
    now = time.time()
    record = JoinToken(token_id=token_id, created_at=now, expires_at=now + ttl, uses_left=uses, note=note)
    await store.add_join_token(token_id, hash_secret(secret), record)
    if grants is not None:
        await store.set_token_preset(token_id, grants)
    try:
        await store.append_audit(
            ACTION_JOIN_TOKEN_CREATED,
            actor=actor,
            target=f"token:{token_id}",
            details={"uses": uses, "expires_at": record.expires_at, "note": note, "grants": grants},
        )
    except Exception as err:
        _LOGGER.error("audit log: cannot record the creation of join token %s; revoking it", token_id, exc_info=True)
        try:
            await store.revoke_join_token(token_id)
        except Exception:
            _LOGGER.error("cannot revoke join token %s either; revoke it with `roost join-token revoke %s`", token_id, token_id)
        raise AuditWriteError(f"the audit log cannot record the new join token: {err}") from err
    token = f"{JOIN_TOKEN_PREFIX}_{token_id}_{secret}"
    if ca_fingerprint:
        token += "." + compact_fingerprint(ca_fingerprint)
        if hub_key:
            token += "." + compact_fingerprint(key_digest(hub_key))
    return token, record


# Where each node's integration settings live in the integration data store: keys "<node_id>/<domain>".
# Not a domain name (it has a dot), so no integration's own ctx.store namespace can reach it.
AGENT_SETTINGS_NAMESPACE = "core.agent_settings"
# A settings message must fit the protocol's 1 MiB with room for the envelope.
MAX_AGENT_SETTINGS_BYTES = 512 * 1024


class Hub:
    """Everything the hub knows at run time; lives on the app under HUB_KEY."""

    def __init__(self, config: HubConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.hub_id = ""
        self.identity: Identity | None = None  # loaded by open(): what the hub proves itself with
        self.events = EventBus()
        self.ingestor = Ingestor(store, self._persisted)
        self.series = SeriesGuard(store, max_series=config.max_series_per_node, max_name=config.max_metric_name)
        self.connections: dict[str, web.WebSocketResponse] = {}
        self.local_node_id = ""
        self.manager = IntegrationManager(
            role=ROLE_HUB,
            config=config.integrations,
            data_dir=config.data_dir,
            custom_dirs=[config.data_dir / "custom_integrations", *config.custom_integrations],
        )
        self.started_at = time.time()
        # Headline key -> metric series, as the hub halves' roost_hub_headline_figures declared them.
        self.headline: dict[str, str] = {}
        # Called with (job_id, action, state) on every job state change (the Prometheus job counts).
        self.job_observers: list[Callable[[str, str, str], None]] = []
        # Called with the node id after each stored report (the alert engine first; automations may add theirs).
        self.report_observers: list[Callable[[str], None]] = []
        # The newest state of each node by domain, as its reports brought it (references, never copies), for rule kinds.
        self._latest_data: dict[str, dict[str, Any]] = {}
        self.alerts = AlertEngine(self)
        self.report_observers.append(self.alerts.observe)
        self.jobs = JobEngine(self)
        self.local_grants: Any = None  # the in-process agent's grant setter
        self.local_settings: Any = None  # the in-process agent's integration-settings setter
        # Wired by the app factory (app.build_hub): their modules serve routes, so they import this one.
        self.pairing: Pairing
        self.plugins: HubIntegrations
        self.automations: AutomationEngine
        self.notifications: Notifier
        self.agent_messages: RateLimiter
        self.pairing_attempts: RateLimiter
        # Repeated refusals are counted, not written one by one; bans and failures outlive a restart.
        self.security_events: SecurityEvents
        self.limits: PersistentLimits
        self.agent_auth: RateLimiter
        # Set by the TLS setup: what agents pin and what pairing codes mix in.
        self.tls: HubTLS | None = None
        self.ca_fingerprint = ""
        # Caches kept in step with the store so summaries never touch the disk.
        self._nodes: dict[str, NodeRecord] = {}
        self._metrics: dict[str, dict[str, float]] = {}
        self._metrics_at: dict[str, float] = {}
        self._last_seen: dict[str, float] = {}
        self._dirty_seen: dict[str, float] = {}
        self._status: dict[str, str] = {}
        self._event_at: dict[str, float] = {}
        self._event_later: set[str] = set()

    # ------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.store.open()
        self.hub_id = await self.store.get_meta("hub_id") or ""
        if not self.hub_id:
            self.hub_id = "h" + secrets.token_hex(8)
            await self.store.set_meta("hub_id", self.hub_id)
        self.identity = load_hub_identity(self.config.data_dir)
        for node in await self.store.list_nodes():
            self._remember(node)
        await self._carry_split_grants()
        self._metrics = await self.store.latest_metrics()
        now = time.time()
        for node_id in self._nodes:
            self._status[node_id] = self.node_status(node_id, now)
        await self.alerts.open()

    async def _carry_split_grants(self) -> None:
        """Once: a grant made before a capability was split keeps allowing what it allowed.

        Process lists used to come with host.metrics.read; TCP probe results
        were network.probe before they became network.probe.read.
        """
        if await self.store.get_meta(META_GRANTS_SPLIT):
            return
        now = time.time()
        for node_id, grants in (await self.store.all_grants()).items():
            added = sorted(new for old, new in SPLIT_GRANTS.items() if old in grants.grants and new not in grants.grants)
            if added:
                after = sorted({*grants.grants, *added})
                await self.store.set_grants(node_id, after, now=now)
                await self.store.append_audit(
                    "grants.changed", actor="system", target=f"node:{node_id}",
                    details={"before": grants.grants, "after": after, "why": "capability split: " + ", ".join(added) + " kept from the old grant"},
                )
        await self.store.set_meta(META_GRANTS_SPLIT, "1")

    def remember(self, node: NodeRecord) -> None:
        """Take a node created elsewhere (pairing, the CLI) into the caches."""
        self._remember(node)
        self._status[node.node_id] = self.node_status(node.node_id)
        self._publish_node(node.node_id, force=True)

    async def find_node(self, node_id: str) -> NodeRecord | None:
        """A node from the cache, or from the store when the CLI made it behind this process's back."""
        node = self._nodes.get(node_id)
        if node is None:
            node = await self.store.get_node(node_id)
            if node is not None:
                self.remember(node)
        return node

    def _remember(self, node: NodeRecord) -> None:
        self._nodes[node.node_id] = node
        if node.last_seen:
            self._last_seen[node.node_id] = max(node.last_seen, self._last_seen.get(node.node_id, 0))

    # ----------------------------------------------------------------- nodes

    def node(self, node_id: str) -> NodeRecord | None:
        return self._nodes.get(node_id)

    def node_status(self, node_id: str, now: float | None = None) -> str:
        seen = self._last_seen.get(node_id)
        if seen is None:
            return NODE_NEW
        age = (now or time.time()) - seen
        # A node that reports rarely (a cron push every minute) is not stale between reports.
        node = self._nodes.get(node_id)
        interval = (node.interval or 0.0) if node is not None else 0.0
        stale_after = max(self.config.stale_after, 3 * interval)
        offline_after = max(self.config.offline_after, stale_after + 3 * interval)
        if age < stale_after:
            return NODE_ONLINE
        if age < offline_after:
            return NODE_STALE
        return NODE_OFFLINE

    def mark_seen(self, node_id: str, when: float | None = None) -> None:
        when = when or time.time()
        if when > self._last_seen.get(node_id, 0):
            self._last_seen[node_id] = when
            self._dirty_seen[node_id] = when
        self._check_status(node_id)

    def _check_status(self, node_id: str, now: float | None = None) -> None:
        status = self.node_status(node_id, now)
        if self._status.get(node_id) != status:
            old = self._status.get(node_id)
            self._status[node_id] = status
            if old is not None:
                _LOGGER.info("node %s is now %s (was %s)", self._label(node_id), status, old)
            self._publish_node(node_id, force=True)

    def _label(self, node_id: str) -> str:
        node = self._nodes.get(node_id)
        return f"{node.name} ({node_id})" if node else node_id

    def summary(self, node_id: str, now: float | None = None) -> dict[str, Any]:
        node = self._nodes[node_id]
        metrics = self._metrics.get(node_id, {})
        headline = {key: metrics[series] for key, series in self.headline.items() if series in metrics}
        problems = sum(1 for i in node.integrations if i.get("state") not in (STATE_LOADED, "disabled", "not_available"))
        loaded = sum(1 for i in node.integrations if i.get("state") == STATE_LOADED)
        return {
            "id": node.node_id,
            "name": node.name,
            "hostname": node.hostname,
            "status": "revoked" if node.revoked else self.node_status(node_id, now),
            "last_seen": self._last_seen.get(node_id),
            "local": node.local,
            "agent_version": node.agent_version,
            "facts": {k: node.facts[k] for k in SUMMARY_FACTS if k in node.facts},
            "headline": headline,
            "integrations_summary": {"loaded": loaded, "problems": problems},
            "spool_dropped": node.spool_dropped,
            "limits": refusal.as_dict() if (refusal := self.series.refusals.get(node_id)) is not None else None,
            "alerts": self.alerts.counts(node_id),
            "labels": self.alerts.node_labels(node_id),
        }

    def withheld(self, node_id: str) -> dict[str, dict[str, str]]:
        """What the node's agent leaves out of its reports because its read capability is not effective: {domain: {part: capability}}."""
        from roost.core.capabilities import is_capability

        node = self._nodes.get(node_id)
        out: dict[str, dict[str, str]] = {}
        for status in node.integrations if node is not None else []:
            parts = status.get("withheld") if isinstance(status, dict) else None
            if isinstance(parts, dict) and isinstance(status.get("domain"), str):
                clean = {str(p)[:200]: c for p, c in list(parts.items())[:200] if is_capability(c)}
                if clean:
                    out[status["domain"]] = clean
        return out

    async def nodes_summary(self) -> dict[str, Any]:
        now = time.time()
        nodes = [self.summary(node_id, now) for node_id in self._nodes]
        nodes.sort(key=lambda n: (not n["local"], n["name"].lower()))
        return {"nodes": nodes}

    async def node_detail(self, node_id: str) -> dict[str, Any] | None:
        node = self._nodes.get(node_id)
        if node is None:
            return None
        state = await self.store.latest_state(node_id)
        detail = self.summary(node_id)
        detail.update(
            facts=node.facts,
            integrations=node.integrations,
            capabilities=node.capabilities,
            fields=node.fields,
            created_at=node.created_at,
            interval=node.interval,
            withheld=self.withheld(node_id),
        )
        return {"node": detail, "state": state.data, "collected_at": state.collected_at, "metrics": state.metrics}

    async def integrations_overview(self) -> dict[str, Any]:
        return {
            "hub": self.manager.statuses(),
            "nodes": {nid: {"name": n.name, "integrations": n.integrations} for nid, n in self._nodes.items()},
        }

    def client_cert_for(self, node_id: str, csr: str | None, public_key: str) -> str | None:
        """Sign a node's CSR for mTLS, only for the node's own key; a bad CSR just means no certificate (logged)."""
        if not csr or self.tls is None:
            return None
        try:
            return self.tls.sign_client_csr(csr.encode(), node_id, node_key=public_key).decode()
        except Exception as err:
            _LOGGER.warning("node %s sent a certificate request that cannot be signed: %s", node_id, err)
            return None

    def new_node_id(self) -> str:
        return new_node_id()

    async def add_node(
        self,
        *,
        public_key: str,
        hostname: str,
        name: str,
        facts: dict[str, Any],
        local: bool = False,
        node_id: str | None = None,
        grants: list[str] | None = None,
        ceiling: dict[str, Any] | None = None,
        offered: list[str] | None = None,
    ) -> NodeRecord:
        node = NodeRecord(
            node_id=node_id or new_node_id(),
            name=name or hostname or "node",
            hostname=hostname,
            public_key=public_key,
            created_at=time.time(),
            local=local,
            facts=facts,
        )
        await self.store.add_node(node)
        now = time.time()
        if grants is not None:
            await self.store.set_grants(node.node_id, grants, now=now)
        if ceiling is not None or offered is not None:
            await self.store.set_ceiling(node.node_id, ceiling or {}, offered or [], now=now)
        self._remember(node)
        self._status[node.node_id] = self.node_status(node.node_id)
        self._publish_node(node.node_id, force=True)
        return node

    async def enroll(
        self, *, token: str, public_key: str, hostname: str, name: str, facts: dict[str, Any], peer: str = ""
    ) -> NodeRecord:
        """Trade a join token for a node; every outcome is audited (refusals with the peer that asked).

        The caller has checked that the request is signed by the key it enrols.
        """

        async def refuse(actor: str, why: str, message: str, target: str = "") -> JoinTokenError:
            return await self.refuse_enrolment(token, why, message, peer=peer, hostname=hostname, target=target)

        try:
            token_id, secret = split_join_token(token)
        except JoinTokenError as err:
            raise await refuse("anonymous", "malformed join token", str(err)) from None
        actor = f"token:{token_id}"
        used = await self.store.use_join_token(token_id, hash_secret(secret), time.time())
        if used is None:
            raise await refuse(
                actor,
                "join token unknown, expired, revoked or used up",
                "join token is unknown, expired, revoked or used up — create a new one with `roost join-token create`",
            )
        existing = await self.store.get_node_by_key(public_key)
        if existing is not None:
            if existing.revoked:
                raise await refuse(
                    actor,
                    "key of a revoked node",
                    "this agent's key belongs to a revoked node; give the agent a new key (delete its node_key.pem)",
                    target=f"node:{existing.node_id}",
                )
            await self.audit(
                ACTION_NODE_ENROLLED, actor=actor, target=f"node:{existing.node_id}", peer=peer, details={"hostname": hostname, "again": True}
            )
            return existing
        preset = await self.store.get_token_preset(token_id)
        # A token is no licence to take over a known host: flagged exactly like a pairing request.
        changed = key_changed_node(self._nodes.values(), hostname=hostname, name=name, public_key=public_key)
        node = await self.add_node(public_key=public_key, hostname=hostname, name=name, facts=claimed_facts(facts), grants=preset)
        details: dict[str, Any] = {"name": node.name, "hostname": hostname, "key": fingerprint(public_key)}
        if changed:
            details["key_changed_node"] = changed
        await self.audit(ACTION_NODE_ENROLLED, actor=actor, target=f"node:{node.node_id}", peer=peer, details=details)
        if changed:
            _LOGGER.warning(
                "node %s enrolled with join token %s — KEY CHANGED: it claims to be node %s (same host and name, another key); "
                "revoke one of them if that is not what you did",
                self._label(node.node_id), token_id, self._label(changed),
            )
        else:
            _LOGGER.info("node %s enrolled with join token %s", self._label(node.node_id), token_id)
        return node

    async def refuse_enrolment(self, token: str, why: str, message: str = "", *, peer: str, hostname: str, target: str = "") -> JoinTokenError:
        """Audit a refused enrolment (the token's id as actor when it has one, never its secret) and return the error to raise."""
        try:
            actor = f"token:{split_join_token(token)[0]}"
        except JoinTokenError:
            actor = "anonymous"
        # Counted per address and reason (the hub's own few words): a flood of bad tokens writes one entry a minute, not one each.
        await self.security_events.record(
            ACTION_NODE_ENROLMENT_REFUSED,
            key=f"{rate_key(peer)} {why}",
            phrase="refused enrolments",
            actor=actor,
            target=target,
            outcome="refused",
            peer=peer,
            details={"why": why, "hostname": hostname},
        )
        return JoinTokenError(message)

    async def hello(self, node_id: str, hello: dict[str, Any]) -> NodeRecord:
        node = await self.store.update_node_hello(
            node_id,
            hostname=hello["hostname"],
            facts=claimed_facts(hello["facts"]),
            integrations=hello["integrations"],
            fields=hello["fields"],
            capabilities=hello["capabilities"],
            agent_version=hello["agent_version"],
            epoch=hello["epoch"],
            seen_at=time.time(),
        )
        await self.store.set_ceiling(node_id, hello.get("ceiling") or {}, hello.get("capabilities") or [], now=time.time())
        if (await self.store.get_grants(node_id)).updated_at is None:
            # Enrolled with a token that named no grants: the read-only part of what it offers that Roost
            # knows, never a name the node made up.
            await self.store.set_grants(node_id, default_grants(hello.get("capabilities") or []), now=time.time())
        self._remember(node)
        await self.alerts.set_agent_labels(node_id, agent_labels(hello.get("labels"), self._label(node_id)))
        self.ingestor.reset_node(node_id)
        self.mark_seen(node_id)
        self._publish_node(node_id, force=True)
        return node

    # ---------------------------------------------------------------- ingest

    async def admit(self, report: Report) -> tuple[Report, Refusal | None]:
        """Hold a report to the series limits: what is over is left out (and said), the rest goes on to be stored."""
        had = report.node_id in self.series.refusals
        report, refusal = await self.series.admit(report)
        if refusal is not None and not had:
            # Once per episode: a node over its limit says so with every report.
            _LOGGER.warning("node %s is over its series limits: %s", self._label(report.node_id), refusal.message)
            self._publish_node(report.node_id, force=True)
        elif refusal is None and had:
            _LOGGER.info("node %s is within its series limits again", self._label(report.node_id))
        return report, refusal

    def _persisted(self, reports: list[Report], results: list[bool]) -> None:
        now = time.time()
        for report, fresh in zip(reports, results):
            node = self._nodes.get(report.node_id)
            if node is None:
                continue
            if report.received_at > self._last_seen.get(report.node_id, 0):
                self._last_seen[report.node_id] = report.received_at
            if not fresh:
                continue
            if report.seq > node.last_seq or report.epoch != node.epoch:
                updated = replace(node, last_seq=report.seq, epoch=report.epoch, spool_dropped=max(node.spool_dropped, report.spool_dropped))
                if report.collected_at >= self._metrics_at.get(report.node_id, 0.0):
                    updated.integrations = report.integrations
                    updated.interval = report.interval
                    self._metrics[report.node_id] = report.metrics
                    self._metrics_at[report.node_id] = report.collected_at
                    self._latest_data[report.node_id] = {**self._latest_data.get(report.node_id, {}), **report.data}
                self._nodes[report.node_id] = updated
        for node_id in {r.node_id for r in reports}:
            self._check_status(node_id, now)
            self._publish_node(node_id)
            for observer in self.report_observers:
                try:
                    observer(node_id)
                except Exception:
                    _LOGGER.exception("report observer %r failed", observer)

    def _publish_node(self, node_id: str, *, force: bool = False) -> None:
        """Tell subscribers (the dashboard, the MQTT bridge) a node changed: at most once a second per node, the last change always."""
        if not self.events.has_subscribers or node_id not in self._nodes:
            return
        now = time.monotonic()
        wait = EVENT_MIN_GAP_SECONDS - (now - self._event_at.get(node_id, 0))
        if not force and wait > 0:
            # Too soon after the last one: publish once the gap is over, so the newest state is never left unsent.
            if node_id not in self._event_later:
                self._event_later.add(node_id)
                asyncio.get_running_loop().call_later(wait, self._publish_later, node_id)
            return
        self._event_at[node_id] = now
        self.events.publish("node", self.summary(node_id))

    def _publish_later(self, node_id: str) -> None:
        self._event_later.discard(node_id)
        self._publish_node(node_id)

    # ----------------------------------------------------------------- audit

    async def audit(
        self,
        action: str,
        *,
        actor: str,
        target: str = "",
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
        peer: str = "",
    ) -> None:
        """Record a security-relevant event in the append-only, hash-chained audit log.

        ``action`` is dotted (``login.failed``, ``pairing.approved``), ``actor``
        is ``user:<name>``, ``node:<id>``, ``token:<id>`` or ``system``,
        ``outcome`` is ``ok``, ``refused`` or ``failed``.

        Raises AuditWriteError when the entry cannot be written, so the
        action that wanted it fails closed instead of going unrecorded.
        Never put secrets (passwords, token secrets) in ``details``.
        """
        try:
            entry = await self.store.append_audit(action, actor=actor, target=target, outcome=outcome, details=details, peer=peer)
        except Exception as err:
            _LOGGER.error(
                "audit log: cannot record %s (actor %s, target %s): %s",
                action,
                escape(str(actor)),
                escape(str(target)),
                err,
                exc_info=True,
            )
            raise AuditWriteError(f"the audit log cannot record {action!r}: {err}") from err
        _LOGGER.info("audit %s", format_entry(entry))

    # ---------------------------------------------------------- maintenance

    async def maintenance(self) -> None:
        """Watch liveness, write heartbeats to the store, prune history: forever, in the background."""
        last_prune = 0.0
        last_touch = time.monotonic()
        while True:
            await asyncio.sleep(LIVENESS_CHECK_SECONDS)
            now = time.time()
            for node_id in list(self._nodes):
                self._check_status(node_id, now)
            # Revocations made by the CLI on the same store take effect within a second.
            try:
                for node_id in await self.store.revoked_node_ids():
                    node = self._nodes.get(node_id)
                    if node is not None and (not node.revoked or node_id in self.connections):
                        await self._cut_off(node_id)
            except Exception:
                _LOGGER.exception("cannot read revocations")
            if time.monotonic() - last_touch >= TOUCH_FLUSH_SECONDS and self._dirty_seen:
                dirty, self._dirty_seen = self._dirty_seen, {}
                try:
                    await self.store.touch_nodes(dirty)
                except Exception:
                    _LOGGER.exception("cannot record heartbeats")
                last_touch = time.monotonic()
            if any(i.state == STATE_SETUP_RETRY for i in self.manager.integrations.values()):
                # A hub half that was not ready gets its backoff retries here, then its figures and extensions count.
                await self.manager.retry_due()
                self.plugins.collect()
            if now - last_prune >= PRUNE_EVERY_SECONDS:
                try:
                    deleted = await self.store.prune(now, self.config.retention)
                    deleted["alerts"] = await self.alerts.prune(now)
                    self.series.forget()
                    if any(deleted.values()):
                        _LOGGER.info("pruned history: %s", deleted)
                except Exception:
                    _LOGGER.exception("cannot prune history")
                last_prune = now

    async def revoke_node(self, node_id: str, *, actor: str = "system") -> bool:
        if not await self.store.set_node_revoked(node_id, True):
            return False
        await self.audit("node.revoked", actor=actor, target=f"node:{node_id}")
        await self._cut_off(node_id)
        return True

    async def _cut_off(self, node_id: str) -> None:
        """A revoked node loses its socket at once."""
        node = self._nodes.get(node_id)
        if node is not None and not node.revoked:
            self._nodes[node_id] = replace(node, revoked=True)
        ws = self.connections.pop(node_id, None)
        if ws is not None:
            await ws.close(code=4003, message=b"node revoked")
        self._publish_node(node_id, force=True)

    async def rotate_key(self, node_id: str, public_key: str) -> None:
        old = self._nodes[node_id].public_key
        await self.store.set_node_key(node_id, public_key)
        self._nodes[node_id] = replace(self._nodes[node_id], public_key=public_key)
        await self.audit("node.key_rotated", actor=f"node:{node_id}", target=f"node:{node_id}", details={"old": fingerprint(old), "new": fingerprint(public_key)})

    async def set_grants(self, node_id: str, grants: list[str], *, actor: str) -> None:
        before = (await self.store.get_grants(node_id)).grants
        await self.store.set_grants(node_id, grants, now=time.time())
        await self.audit("grants.changed", actor=actor, target=f"node:{node_id}", details={"before": before, "after": sorted(set(grants))})
        ws = self.connections.get(node_id)
        if ws is not None and not ws.closed:
            await ws.send_str(protocol.encode(protocol.TYPE_GRANTS, grants=sorted(set(grants))))
        if node_id == self.local_node_id and self.local_grants is not None:
            self.local_grants(sorted(set(grants)))

    # ------------------------------------------------ integration settings per node

    async def agent_settings(self, node_id: str) -> dict[str, dict[str, Any]]:
        """Every integration's settings for one node, as its agent is sent them on each connect: {domain: settings}."""
        found: dict[str, dict[str, Any]] = {}
        for key, text in await self.store.list_integration_data(AGENT_SETTINGS_NAMESPACE, f"{node_id}/"):
            value = json.loads(text)
            if isinstance(value, dict):
                found[key.split("/", 1)[1]] = value
        return found

    async def set_agent_settings(self, node_id: str, domain: str, settings: dict[str, Any]) -> None:
        """Keep one integration's settings for a node and send them to its agent now if it is connected (else on its next connect).

        The agent checks them against that integration's SETTINGS_SCHEMA before they take effect.
        """
        text = json.dumps(settings, separators=(",", ":"), allow_nan=False)
        if len(text) > MAX_AGENT_SETTINGS_BYTES:
            raise ValueError(f"settings for {domain} on {node_id} are {len(text)} bytes of JSON; at most {MAX_AGENT_SETTINGS_BYTES} fit in one message")
        await self.store.put_integration_data(AGENT_SETTINGS_NAMESPACE, f"{node_id}/{domain}", text, now=time.time())
        ws = self.connections.get(node_id)
        if ws is not None and not ws.closed:
            try:
                await ws.send_str(protocol.encode(protocol.TYPE_SETTINGS, domain=domain, settings=settings))
            except (ConnectionError, RuntimeError) as err:
                # Kept above: the agent gets them with its grants when it connects again.
                _LOGGER.info("agent %s: settings for %s not sent now (%s); sent on its next connect", node_id, domain, err)
        if node_id == self.local_node_id and self.local_settings is not None:
            self.local_settings(domain, json.loads(text))

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        if self.events.has_subscribers:
            self.events.publish(kind, data)


HUB_KEY = web.AppKey("roost_hub", Hub)
