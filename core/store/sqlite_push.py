"""SQLite implementation of push tokens (a mixin of SQLiteStore)."""

from __future__ import annotations

import sqlite3
from typing import Any

from .push import PushHost, PushToken

_COLUMNS = "token_id, node_id, created_at, created_by, note, last_used, revoked, multi_host"


def _token_from_row(row: Any) -> PushToken:
    return PushToken(
        token_id=row[0],
        node_id=row[1],
        created_at=row[2],
        created_by=row[3],
        note=row[4],
        last_used=row[5],
        revoked=bool(row[6]),
        multi_host=bool(row[7]),
    )


class SQLitePushStore:
    """Relies on SQLiteStore's _transaction and _fetchall."""

    async def add_push_token(self, token: PushToken, secret_hash: str) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            try:
                await db.execute(
                    f"INSERT INTO push_tokens ({_COLUMNS}, secret_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        token.token_id,
                        token.node_id,
                        token.created_at,
                        token.created_by,
                        token.note,
                        token.last_used,
                        int(token.revoked),
                        int(token.multi_host),
                        secret_hash,
                    ),
                )
            except sqlite3.IntegrityError as err:
                raise ValueError(f"cannot add push token {token.token_id}: {err}") from None

    async def get_push_token(self, token_id: str) -> tuple[PushToken, str] | None:
        rows = await self._fetchall(f"SELECT {_COLUMNS}, secret_hash FROM push_tokens WHERE token_id = ?", (token_id,))  # type: ignore[attr-defined]
        if not rows:
            return None
        return _token_from_row(rows[0]), rows[0][8]

    async def list_push_tokens(self) -> list[PushToken]:
        rows = await self._fetchall(f"SELECT {_COLUMNS} FROM push_tokens ORDER BY created_at DESC")  # type: ignore[attr-defined]
        return [_token_from_row(r) for r in rows]

    async def revoke_push_token(self, token_id: str) -> bool:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute("UPDATE push_tokens SET revoked = 1 WHERE token_id = ?", (token_id,))
            return cur.rowcount == 1

    async def touch_push_token(self, token_id: str, now: float) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute("UPDATE push_tokens SET last_used = ? WHERE token_id = ?", (now, token_id))

    async def add_push_host(self, host: PushHost) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            try:
                await db.execute(
                    "INSERT INTO push_hosts (token_id, host_id, node_id, created_at) VALUES (?, ?, ?, ?)",
                    (host.token_id, host.host_id, host.node_id, host.created_at),
                )
            except sqlite3.IntegrityError as err:
                raise ValueError(f"cannot add push host {host.host_id!r} of token {host.token_id}: {err}") from None

    async def list_push_hosts(self, token_id: str | None = None) -> list[PushHost]:
        where, args = ("WHERE token_id = ?", (token_id,)) if token_id else ("", ())
        rows = await self._fetchall(  # type: ignore[attr-defined]
            f"SELECT token_id, host_id, node_id, created_at FROM push_hosts {where} ORDER BY created_at, host_id", args
        )
        return [PushHost(token_id=r[0], host_id=r[1], node_id=r[2], created_at=r[3]) for r in rows]
