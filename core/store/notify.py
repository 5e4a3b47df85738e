"""Store interface for notifications: receivers, the persisted outbox, alert groups and the alert-event cursor."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

OUTBOX_PENDING = "pending"
OUTBOX_DELIVERED = "delivered"
OUTBOX_DEAD = "dead"
OUTBOX_STATES = (OUTBOX_PENDING, OUTBOX_DELIVERED, OUTBOX_DEAD)

# A receiver row: {"name", "kind", "settings" (dict, secrets encrypted), "route" (dict), "is_default",
# "allow_private", "enabled", "created_by", "created_at", "updated_at"}.
ReceiverRow = dict[str, Any]
# An outbox row: {"id", "receiver", "group_key", "message" (dict), "state", "attempts", "next_attempt_at",
# "last_error", "created_at", "delivered_at"}.
OutboxRow = dict[str, Any]


class NotifyStore(abc.ABC):
    @abc.abstractmethod
    async def list_receivers(self) -> list[ReceiverRow]:
        """Every receiver, by name."""

    @abc.abstractmethod
    async def put_receiver(self, row: ReceiverRow, *, create: bool) -> bool:
        """Insert (``create``; False if the name is taken) or replace (False if there is no such receiver)."""

    @abc.abstractmethod
    async def delete_receiver(self, name: str) -> bool:
        """Delete a receiver, its groups and its pending outbox rows (delivered and dead ones stay as history)."""

    @abc.abstractmethod
    async def notify_commit(
        self,
        *,
        cursor: tuple[str, int] | None = None,
        groups: Sequence[tuple[str, str, dict[str, Any] | None, float | None]] = (),
        outbox: Sequence[dict[str, Any]] = (),
    ) -> list[int]:
        """One transaction: set the meta ``cursor`` (key, seq), put or delete (state None) each
        (receiver, group_key, state, next_flush_at), and add each outbox row
        (receiver, group_key, message, next_attempt_at, created_at). Returns the new outbox ids in order."""

    @abc.abstractmethod
    async def notify_groups(self) -> list[tuple[str, str, dict[str, Any], float | None]]:
        """Every group: (receiver, group_key, state, next_flush_at)."""

    @abc.abstractmethod
    async def outbox_heads(self, now: float) -> list[OutboxRow]:
        """The oldest pending row of each receiver, if it is due at ``now`` (later rows wait their turn: order is kept)."""

    @abc.abstractmethod
    async def outbox_next_due(self, *, skip: Sequence[str] = ()) -> float | None:
        """The earliest next_attempt_at of any receiver's oldest pending row (receivers in ``skip`` left out)."""

    @abc.abstractmethod
    async def outbox_update(self, outbox_id: int, **changes: Any) -> bool:
        """Set state, attempts, next_attempt_at, last_error, delivered_at or created_at (a requeue) of one row."""

    @abc.abstractmethod
    async def outbox_list(self, *, states: Sequence[str] = OUTBOX_STATES, receiver: str | None = None, limit: int = 100) -> list[OutboxRow]:
        """Rows in those states, newest first."""

    @abc.abstractmethod
    async def outbox_counts(self) -> dict[str, dict[str, int]]:
        """{receiver: {state: count}}."""

    @abc.abstractmethod
    async def outbox_prune(self, before: float) -> int:
        """Delete delivered rows delivered before ``before``; returns how many."""
