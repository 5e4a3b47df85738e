"""SQLite implementation of persisted rate-limit state (a mixin of SQLiteStore)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .limits import LimitRow

# Failures older than this are of no use to any limiter (their windows are minutes).
KEEP_FAILURES_SECONDS = 86400.0


class SQLiteLimitStore:
    """Relies on SQLiteStore's _transaction."""

    async def load_rate_limits(self, limiter: str, *, now: float) -> list[LimitRow]:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(
                "DELETE FROM rate_limits WHERE limiter = ? AND (banned_until IS NULL OR banned_until <= ?) AND updated_at < ?",
                (limiter, now, now - KEEP_FAILURES_SECONDS),
            )
            rows = await db.execute_fetchall("SELECT key, failures, banned_until FROM rate_limits WHERE limiter = ?", (limiter,))
        out: list[LimitRow] = []
        for key, failures, until in rows:
            try:
                times = [float(t) for t in json.loads(failures)]
            except (ValueError, TypeError):
                times = []
            out.append((key, times, until))
        return out

    async def save_rate_limits(self, limiter: str, rows: Sequence[LimitRow], *, now: float) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            for key, failures, until in rows:
                if not failures and until is None:
                    await db.execute("DELETE FROM rate_limits WHERE limiter = ? AND key = ?", (limiter, key))
                    continue
                await db.execute(
                    "INSERT INTO rate_limits (limiter, key, failures, banned_until, updated_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (limiter, key) DO UPDATE SET failures = excluded.failures, banned_until = excluded.banned_until, updated_at = excluded.updated_at",
                    (limiter, key, json.dumps([round(t, 3) for t in failures]), until, now),
                )
