"""Store interface for the hub's append-only, hash-chained audit log (chain logic in roost.core.audit)."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..audit import AuditEntry, AuditHead, VerifyResult, verify_live

DEFAULT_AUDIT_PAGE = 100
MAX_AUDIT_PAGE = 1000


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to list; empty fields match everything.

    ``action`` is a dotted prefix: ``pairing`` matches ``pairing`` and
    ``pairing.approved`` but not ``pairings.x``. ``actor``, ``target`` and
    ``outcome`` match exactly. ``since`` <= ts < ``until``.
    """

    action: str = ""
    actor: str = ""
    target: str = ""
    outcome: str = ""
    since: float | None = None
    until: float | None = None


class AuditStore(abc.ABC):
    """The audit chain in the hub's store. Entries are only ever appended; nothing here updates or deletes one."""

    @abc.abstractmethod
    async def append_audit(
        self,
        action: str,
        *,
        actor: str,
        target: str = "",
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
        peer: str = "",
        now: float | None = None,
    ) -> AuditEntry:
        """Append one entry and move the head, atomically, and return the entry.

        seq and prev_hash come from the recorded head, read in the same write
        transaction, so concurrent appends (other tasks, other processes such
        as the CLI) chain one after the other. Raises ValueError for a
        malformed action or outcome (see roost.core.audit.make_record) and
        whatever the storage raises when it cannot write: callers must not
        carry on as if the event were recorded.
        """

    @abc.abstractmethod
    async def list_audit(
        self, filters: AuditFilter | None = None, *, limit: int = DEFAULT_AUDIT_PAGE, before_seq: int | None = None
    ) -> list[AuditEntry]:
        """Matching entries, newest first, at most ``limit`` (capped at MAX_AUDIT_PAGE), with seq < ``before_seq``."""

    @abc.abstractmethod
    def iter_audit(self, *, after_seq: int = 0) -> AsyncIterator[AuditEntry]:
        """Every entry with seq > ``after_seq``, oldest first, read in pages (memory stays flat)."""

    @abc.abstractmethod
    async def audit_head(self) -> AuditHead | None:
        """The recorded head (count and last hash), or None before the first entry."""

    async def verify_audit(self, *, anchors: Iterable[AuditHead] = ()) -> VerifyResult:
        """Verify the whole chain against its head, while the hub may be appending."""
        return await verify_live(lambda after: self.iter_audit(after_seq=after), self.audit_head, anchors=anchors)
