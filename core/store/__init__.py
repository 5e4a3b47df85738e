"""The hub's storage interface: every read and write of hub state goes through a Store; SQL stays in its implementations."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from ..config import Retention
from .pairing import NodeGrants, PairingLimitError, PairingRequest, PairingStore
from .integration_data import IntegrationDataStore
from .push import PushHost, PushStore, PushToken
from .users import ApiTokenRecord, LastAdminError, SessionRecord, UserExistsError, UserRecord, UserStore
from .audit import AuditFilter, AuditStore
from .jobs import Job, JobFilter, JobStore, Schedule
from .automations import AutomationStore
from .limits import LimitStore
from .notify import NotifyStore

__all__ = ["Retention", "Store", "IntegrationDataStore", "PushHost", "PushToken", "NodeRecord", "JoinToken", "Report", "NodeState", "NodeGrants", "PairingLimitError", "PairingRequest",
           "UserRecord", "SessionRecord", "ApiTokenRecord", "UserExistsError", "LastAdminError",
           "AuditFilter", "Job", "JobFilter", "JobStore", "Schedule"]

RES_RAW = "raw"
RES_MINUTE = "minute"
RES_HOUR = "hour"
RESOLUTIONS = (RES_RAW, RES_MINUTE, RES_HOUR)
BUCKET_SECONDS = {RES_MINUTE: 60, RES_HOUR: 3600}


@dataclass
class NodeRecord:
    node_id: str
    name: str
    hostname: str
    public_key: str  # base64 raw Ed25519 public key
    created_at: float
    last_seen: float | None = None
    revoked: bool = False
    local: bool = False  # the hub's own host
    facts: dict[str, Any] = field(default_factory=dict)
    integrations: list[dict[str, Any]] = field(default_factory=list)
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)
    agent_version: str = ""
    epoch: str = ""  # the agent spool's identity; last_seq belongs to it
    last_seq: int = 0
    interval: float | None = None
    spool_dropped: int = 0  # total reports the agent reported dropping from a full spool


@dataclass(frozen=True)
class JoinToken:
    token_id: str
    created_at: float
    expires_at: float
    uses_left: int
    revoked: bool = False
    note: str = ""


@dataclass(frozen=True)
class Report:
    """One accepted agent report, as the ingest pipeline hands it to the store."""

    node_id: str
    seq: int
    epoch: str
    collected_at: float
    received_at: float
    data: dict[str, Any]  # {domain: state}
    metrics: dict[str, float]  # {"domain.name[label]": value}
    integrations: list[dict[str, Any]]
    interval: float | None = None
    spool_dropped: int = 0


@dataclass(frozen=True)
class NodeState:
    node_id: str
    collected_at: float | None
    data: dict[str, Any]
    metrics: dict[str, float]


class Store(PairingStore, PushStore, IntegrationDataStore, UserStore, AuditStore, JobStore, LimitStore, NotifyStore, AutomationStore, abc.ABC):
    """Hub state. Implementations: roost.core.store.sqlite (default)."""

    async def release_memory(self) -> None:
        """The hub went quiet after a burst: give back what is only kept to go faster (caches, buffered aggregates)."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Open or create the store and bring its schema up to date."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and close."""

    # -- hub metadata -------------------------------------------------------
    @abc.abstractmethod
    async def get_meta(self, key: str) -> str | None: ...

    @abc.abstractmethod
    async def set_meta(self, key: str, value: str) -> None: ...

    # -- nodes --------------------------------------------------------------
    @abc.abstractmethod
    async def add_node(self, node: NodeRecord) -> None:
        """Insert a new node; raise ValueError if node_id or public_key exists."""

    @abc.abstractmethod
    async def get_node(self, node_id: str) -> NodeRecord | None: ...

    @abc.abstractmethod
    async def get_node_by_key(self, public_key: str) -> NodeRecord | None: ...

    @abc.abstractmethod
    async def list_nodes(self) -> list[NodeRecord]: ...

    @abc.abstractmethod
    async def update_node_hello(
        self,
        node_id: str,
        *,
        hostname: str,
        facts: dict[str, Any],
        integrations: list[dict[str, Any]],
        fields: dict[str, dict[str, str]],
        capabilities: list[str],
        agent_version: str,
        epoch: str,
        seen_at: float,
    ) -> NodeRecord:
        """Record what an agent said in its hello. A new epoch resets last_seq to 0.

        Returns the updated node.
        """

    @abc.abstractmethod
    async def touch_nodes(self, seen: dict[str, float]) -> None:
        """Set last_seen for many nodes at once (heartbeats)."""

    @abc.abstractmethod
    async def set_node_revoked(self, node_id: str, revoked: bool) -> bool:
        """Return False if there is no such node."""

    # -- join tokens --------------------------------------------------------
    @abc.abstractmethod
    async def add_join_token(self, token_id: str, secret_hash: str, token: JoinToken) -> None: ...

    @abc.abstractmethod
    async def use_join_token(self, token_id: str, secret_hash: str, now: float) -> JoinToken | None:
        """Atomically check and spend one use. None if unknown, wrong secret, expired, revoked or used up.

        The secret hash is compared in constant time.
        """

    @abc.abstractmethod
    async def list_join_tokens(self) -> list[JoinToken]: ...

    @abc.abstractmethod
    async def revoke_join_token(self, token_id: str) -> bool: ...

    # -- reports and metrics ------------------------------------------------
    @abc.abstractmethod
    async def ingest(self, reports: list[Report]) -> list[bool]:
        """Persist a batch of reports in one transaction.

        For each report: skip it (False) if its (epoch, seq) is not newer than
        the node's (an agent resending after a lost ack); otherwise (True)
        store raw metrics, merge them into the minute and hour rollups
        (average, min, max), replace the node's latest state for each domain
        in ``data`` when the report is newer than what is stored, update
        integrations, last_seen, last_seq and spool_dropped.
        """

    @abc.abstractmethod
    async def latest_state(self, node_id: str) -> NodeState: ...

    @abc.abstractmethod
    async def latest_metrics(self) -> dict[str, dict[str, float]]:
        """Latest metrics of every node: {node_id: {series: value}}."""

    @abc.abstractmethod
    async def metric_series(self, node_id: str) -> list[str]:
        """Names of every series the node has history for."""

    @abc.abstractmethod
    async def history(
        self, node_id: str, series: list[str], start: float, end: float, resolution: str
    ) -> dict[str, list[tuple[float, float, float, float]]]:
        """Points in [start, end] as (ts, avg, min, max), oldest first, per series.

        Raw points have avg == min == max. Rollup ts is the bucket start.
        """

    @abc.abstractmethod
    async def prune(self, now: float, retention: Retention) -> dict[str, int]:
        """Delete history older than retention; return rows deleted per resolution."""
