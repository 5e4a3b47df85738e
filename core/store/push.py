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
