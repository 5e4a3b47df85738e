"""SQLite implementation of the audit chain (a mixin of SQLiteStore); the table is migration 3.

Triggers refuse UPDATE and DELETE on ``audit_log``, so no code path of the
hub can change history by mistake. They are no defence against someone who
can write the file (they can drop the triggers); the hash chain and a head
kept elsewhere are (see roost.core.audit and docs/audit.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..audit import HEAD_KEY, AuditEntry, AuditHead, append_in_transaction, entry_from_row, make_record, parse_head
from .audit import DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE, AuditFilter

_LOGGER = logging.getLogger(__name__)

ITER_PAGE = 500

_COLUMNS = "seq, ts, action, actor, target, outcome, peer, details, prev_hash, hash"


def _where(filters: AuditFilter | None, before_seq: int | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if filters is not None:
        prefix = filters.action.strip().rstrip(".")
        if prefix:
            # '/' sorts right after '.', so this range is "prefix." followed by anything.
            clauses.append("(action = ? OR (action >= ? AND action < ?))")
            params += [prefix, prefix + ".", prefix + "/"]
        for column in ("actor", "target", "outcome"):
            value = getattr(filters, column)
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if filters.since is not None:
            clauses.append("ts >= ?")
            params.append(float(filters.since))
        if filters.until is not None:
            clauses.append("ts < ?")
            params.append(float(filters.until))
    if before_seq is not None:
        clauses.append("seq < ?")
        params.append(int(before_seq))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class SQLiteAuditStore:
    """Relies on SQLiteStore's _transaction and _fetchall."""

    _audit_tail_warned = False

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
        record = make_record(action, actor=actor, target=target, outcome=outcome, details=details, peer=peer)
        async with self._transaction() as db:  # type: ignore[attr-defined]
            entry, tampered = await append_in_transaction(db, record, now=time.time() if now is None else now)
            if tampered and not self._audit_tail_warned:
                self._audit_tail_warned = True
                _LOGGER.error("audit log: %s — it was changed outside Roost; run `roost audit verify`", tampered)
        return entry

    async def list_audit(
        self, filters: AuditFilter | None = None, *, limit: int = DEFAULT_AUDIT_PAGE, before_seq: int | None = None
    ) -> list[AuditEntry]:
        where, params = _where(filters, before_seq)
        limit = max(1, min(int(limit), MAX_AUDIT_PAGE))
        rows = await self._fetchall(  # type: ignore[attr-defined]
            f"SELECT {_COLUMNS} FROM audit_log{where} ORDER BY seq DESC LIMIT ?", (*params, limit)
        )
        return [entry_from_row(row) for row in rows]

    async def iter_audit(self, *, after_seq: int = 0) -> AsyncIterator[AuditEntry]:
        last = after_seq
        while True:
            rows = await self._fetchall(  # type: ignore[attr-defined]
                f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", (last, ITER_PAGE)
            )
            for row in rows:
                yield entry_from_row(row)
            if len(rows) < ITER_PAGE:
                return
            last = rows[-1][0]

    async def audit_head(self) -> AuditHead | None:
        rows = await self._fetchall("SELECT value FROM meta WHERE key = ?", (HEAD_KEY,))  # type: ignore[attr-defined]
        return parse_head(rows[0][0]) if rows else None
