"""The agent's own audit chain in <data dir>/audit.db: what this host did and was told, verifiable without the hub."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiosqlite

from roost.core.audit import (
    ENTRY_FIELDS,
    HEAD_KEY,
    AuditEntry,
    AuditHead,
    VerifyResult,
    append_in_transaction,
    entry_from_row,
    make_record,
    parse_head,
    verify_live,
)

_LOGGER = logging.getLogger(__name__)

AUDIT_FILE = "audit.db"
PAGE = 500
ACTOR_AGENT = "agent"

_COLUMNS = ", ".join(ENTRY_FIELDS)
# The same table as the hub's (roost.core.store.migrations, version 3), with the
# same append-only triggers; ``meta`` holds the head.
_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS audit_log (
        seq INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        outcome TEXT NOT NULL,
        peer TEXT NOT NULL DEFAULT '',
        details TEXT NOT NULL DEFAULT '{}',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )
    """,
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """
    CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
    """,
)


class AgentAudit:
    """An append-only, hash-chained log in one small SQLite file, kept by the agent for itself.

    Same chain and head as the hub's (roost.core.audit), so `roost audit
    verify --agent` checks it the same way. ``record`` raises when it cannot
    write; callers that must fail closed (actions) let it propagate.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        self._warned = False
        # One connection: its transactions must not interleave between tasks.
        self._lock = asyncio.Lock()

    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def open(self, *, create: bool = True) -> None:
        if self._db is not None:
            return
        if not create and not self.path.exists():
            raise FileNotFoundError(f"no agent audit log at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await db.execute("PRAGMA busy_timeout = 10000")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
            if create:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA:
                        await db.execute(statement)
                    await db.execute("COMMIT")
                except BaseException:
                    await db.execute("ROLLBACK")
                    raise
        except BaseException:
            await db.close()
            raise
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError(f"{self.path}: the agent audit log is not open")
        return self._db

    async def record(
        self,
        action: str,
        *,
        actor: str = ACTOR_AGENT,
        target: str = "",
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
        peer: str = "",
        now: float | None = None,
    ) -> AuditEntry:
        """Append one entry; opens the file on first use."""
        record = make_record(action, actor=actor, target=target, outcome=outcome, details=details, peer=peer)
        async with self._lock:
            if self._db is None:
                await self.open()
            return await self._append(self._conn(), record, time.time() if now is None else now)

    async def _append(self, db: aiosqlite.Connection, record: Any, now: float) -> AuditEntry:
        await db.execute("BEGIN IMMEDIATE")
        try:
            entry, tampered = await append_in_transaction(db, record, now=now)
            if tampered and not self._warned:
                self._warned = True
                _LOGGER.error("agent audit log %s: %s — it was changed outside Roost; run `roost audit verify --agent`", self.path, tampered)
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
        return entry

    async def entries(self, *, after_seq: int = 0) -> AsyncIterator[AuditEntry]:
        """Every entry after ``after_seq``, oldest first, in pages."""
        db = self._conn()
        last = after_seq
        while True:
            rows = list(
                await db.execute_fetchall(
                    f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", (last, PAGE)
                )
            )
            for row in rows:
                yield entry_from_row(row)
            if len(rows) < PAGE:
                return
            last = rows[-1][0]

    async def recent(self, limit: int = 50) -> list[AuditEntry]:
        rows = await self._conn().execute_fetchall(
            f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT ?", (max(1, int(limit)),)
        )
        return [entry_from_row(row) for row in rows]

    async def head(self) -> AuditHead | None:
        rows = list(await self._conn().execute_fetchall("SELECT value FROM meta WHERE key = ?", (HEAD_KEY,)))
        return parse_head(rows[0][0]) if rows else None

    async def verify(self, *, anchors: Iterable[AuditHead] = ()) -> VerifyResult:
        """Check the chain against its head; see roost.core.audit.Verifier."""
        self._conn()
        return await verify_live(lambda after: self.entries(after_seq=after), self.head, anchors=anchors)
