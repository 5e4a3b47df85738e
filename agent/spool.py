"""The agent's local spool: every report is written here first and deleted only once the hub has persisted it."""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

_LOGGER = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collected_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class SpooledReport:
    seq: int
    collected_at: float
    body: dict[str, Any]


class Spool:
    """An ordered, bounded queue of reports in SQLite.

    Sequence numbers only grow (AUTOINCREMENT), so the hub can tell a resent
    report from a new one. ``epoch`` names this spool file: a new file starts
    a new sequence, and the hub learns that from the epoch.
    """

    def __init__(self, path: Path, max_reports: int) -> None:
        self.path = Path(path)
        self.max_reports = max_reports
        self.epoch = ""
        self.dropped = 0
        self._db: aiosqlite.Connection | None = None
        self._count = 0

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = await aiosqlite.connect(self.path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.executescript(_SCHEMA)
        self.epoch = await self._meta("epoch") or ""
        if not self.epoch:
            self.epoch = secrets.token_hex(8)
            await self._set_meta("epoch", self.epoch)
        self.dropped = int(await self._meta("dropped") or 0)
        async with self._db.execute("SELECT COUNT(*) FROM reports") as cur:
            self._count = (await cur.fetchone())[0]
        await self._db.commit()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        assert self._db is not None, "spool is not open"
        return self._db

    def __len__(self) -> int:
        return self._count

    async def _meta(self, key: str) -> str | None:
        async with self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def _set_meta(self, key: str, value: str) -> None:
        await self.db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    async def append(self, collected_at: float, body: dict[str, Any]) -> int:
        """Store one report; when the spool is full, drop the oldest and count the drop."""
        cur = await self.db.execute(
            "INSERT INTO reports(collected_at, body) VALUES(?, ?)", (collected_at, json.dumps(body, separators=(",", ":")))
        )
        seq = cur.lastrowid
        self._count += 1
        excess = self._count - self.max_reports
        if excess > 0:
            await self.db.execute(
                "DELETE FROM reports WHERE seq IN (SELECT seq FROM reports ORDER BY seq LIMIT ?)", (excess,)
            )
            self._count -= excess
            self.dropped += excess
            await self._set_meta("dropped", str(self.dropped))
            _LOGGER.warning("spool full (%d reports): dropped the oldest %d; %d dropped in all", self.max_reports, excess, self.dropped)
        await self.db.commit()
        assert seq is not None
        return seq

    async def after(self, seq: int, limit: int) -> list[SpooledReport]:
        """Reports with a sequence number above seq, oldest first."""
        async with self.db.execute(
            "SELECT seq, collected_at, body FROM reports WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ) as cur:
            rows = await cur.fetchall()
        return [SpooledReport(r[0], r[1], json.loads(r[2])) for r in rows]

    async def delete_upto(self, seq: int) -> int:
        """Forget reports the hub has persisted."""
        cur = await self.db.execute("DELETE FROM reports WHERE seq <= ?", (seq,))
        await self.db.commit()
        removed = cur.rowcount or 0
        self._count = max(0, self._count - removed)
        return removed
