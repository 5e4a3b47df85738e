"""Store interface for pairing requests, per-node grants and ceilings, and node keys."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

PAIR_PENDING = "pending"
PAIR_APPROVED = "approved"
PAIR_REJECTED = "rejected"
PAIR_WITHDRAWN = "withdrawn"  # the agent's socket closed before anyone decided


class PairingLimitError(Exception):
    """Too many pairing requests are pending; the oldest must be decided or expire first."""


@dataclass(frozen=True)
class PairingRequest:
    request_id: str
    public_key: str
    hostname: str
    code: str
    created_at: float
    expires_at: float
    facts: dict[str, Any] = field(default_factory=dict)
    offered: list[str] = field(default_factory=list)
    ceiling: dict[str, Any] = field(default_factory=dict)
    peer: str = ""
    key_changed_node: str | None = None  # a live node this request claims to be (same host and name), with another key
    status: str = PAIR_PENDING
    node_id: str | None = None
    decided_by: str = ""
    decided_at: float | None = None
    name: str = ""  # the agent's --name; empty means its hostname


@dataclass(frozen=True)
class NodeGrants:
    node_id: str
    grants: list[str]
    ceiling: dict[str, Any]
    offered: list[str]
    updated_at: float | None = None


class PairingStore(abc.ABC):
    @abc.abstractmethod
    async def add_pairing_request(self, request: PairingRequest, *, max_pending: int, now: float) -> None:
        """Keep a request; one per public key (a newer one replaces the older), at most max_pending pending.

        Raises PairingLimitError when max_pending unexpired requests from other keys are pending.
        """

    @abc.abstractmethod
    async def get_pairing_request(self, request_id: str) -> PairingRequest | None: ...

    @abc.abstractmethod
    async def list_pairing_requests(self, *, now: float, pending_only: bool = True) -> list[PairingRequest]:
        """Unexpired pending requests (or all recent ones), oldest first."""

    @abc.abstractmethod
    async def decide_pairing_request(self, request_id: str, *, status: str, node_id: str | None, decided_by: str, now: float) -> PairingRequest | None:
        """Approve or reject a pending, unexpired request atomically; None if it was not pending."""

    @abc.abstractmethod
    async def get_grants(self, node_id: str) -> NodeGrants: ...

    @abc.abstractmethod
    async def all_grants(self) -> dict[str, NodeGrants]: ...

    @abc.abstractmethod
    async def set_grants(self, node_id: str, grants: list[str], *, now: float) -> None: ...

    @abc.abstractmethod
    async def set_ceiling(self, node_id: str, ceiling: dict[str, Any], offered: list[str], *, now: float) -> None:
        """What the agent says its own ceiling is and which capabilities it offers."""

    @abc.abstractmethod
    async def set_node_key(self, node_id: str, public_key: str) -> None:
        """Rotate a node's key; ValueError if another node has that key."""

    @abc.abstractmethod
    async def revoked_node_ids(self) -> set[str]: ...

    @abc.abstractmethod
    async def set_token_preset(self, token_id: str, grants: list[str]) -> None:
        """The capabilities a join token grants to the nodes that enrol with it."""

    @abc.abstractmethod
    async def get_token_preset(self, token_id: str) -> list[str] | None: ...
