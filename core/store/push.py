"""Store interface for script-only push tokens: one bearer token per pushing node, kept as a hash."""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class PushToken:
    """A node's push token, without its secret (only the secret's hash is stored)."""

    token_id: str
    node_id: str
    created_at: float
    created_by: str = ""
    note: str = ""
    last_used: float | None = None
    revoked: bool = False
    # A multi-host token (ArchNest's shared-token mode) accepts reports for several hostIds, each its own node.
    multi_host: bool = False


@dataclass(frozen=True)
class PushHost:
    """A hostId that reported with a push token, and the node its reports land on."""

    token_id: str
    host_id: str
    node_id: str
    created_at: float


class PushStore(abc.ABC):
    @abc.abstractmethod
    async def add_push_token(self, token: PushToken, secret_hash: str) -> None:
        """Keep a new token; raise ValueError if its id exists or its node does not."""

    @abc.abstractmethod
    async def get_push_token(self, token_id: str) -> tuple[PushToken, str] | None:
        """The token and its secret hash (the caller compares in constant time), or None."""

    @abc.abstractmethod
    async def list_push_tokens(self) -> list[PushToken]:
        """Every token, newest first."""

    @abc.abstractmethod
    async def revoke_push_token(self, token_id: str) -> bool:
        """Revoke at once; False if there is no such token."""

    @abc.abstractmethod
    async def touch_push_token(self, token_id: str, now: float) -> None:
        """Record the token's last use."""

    @abc.abstractmethod
    async def add_push_host(self, host: PushHost) -> None:
        """Remember which node a token's hostId reports land on; raise ValueError if that hostId is taken."""

    @abc.abstractmethod
    async def list_push_hosts(self, token_id: str | None = None) -> list[PushHost]:
        """Every push host (of one token, or of all), oldest first."""
