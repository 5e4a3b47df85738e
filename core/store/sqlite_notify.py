"""SQLite implementation of receivers, the outbox and alert groups (a mixin of SQLiteStore)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .notify import OUTBOX_DELIVERED, OUTBOX_PENDING, OUTBOX_STATES, OutboxRow, ReceiverRow

_RECEIVER_COLS = ("name", "kind", "settings", "route", "is_default", "allow_private", "enabled", "created_by", "created_at", "updated_at")
_OUTBOX_COLS = ("id", "receiver", "group_key", "message", "state", "attempts", "next_attempt_at", "last_error", "created_at", "delivered_at")
_OUTBOX_CHANGES = {"state", "attempts", "next_attempt_at", "last_error", "delivered_at", "created_at"}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _receiver(row: Sequence[Any]) -> ReceiverRow:
    out = dict(zip(_RECEIVER_COLS, row))
    out["settings"] = json.loads(out["settings"])
    out["route"] = json.loads(out["route"])
    for flag in ("is_default", "allow_private", "enabled"):
        out[flag] = bool(out[flag])
    return out


def _outbox(row: Sequence[Any]) -> OutboxRow:
    out = dict(zip(_OUTBOX_COLS, row))
    out["message"] = json.loads(out["message"])
    return out


class SQLiteNotifyStore:
    """Relies on SQLiteStore's _transaction and _fetchall."""

    async def list_receivers(self) -> list[ReceiverRow]:
        rows = await self._fetchall(f"SELECT {', '.join(_RECEIVER_COLS)} FROM notify_receivers ORDER BY name")  # type: ignore[attr-defined]
        return [_receiver(r) for r in rows]

    async def put_receiver(self, row: ReceiverRow, *, create: bool) -> bool:
        values = [
            _dumps(row[c]) if c in ("settings", "route") else int(bool(row[c])) if c in ("is_default", "allow_private", "enabled") else row[c]
            for c in _RECEIVER_COLS
        ]
        async with self._transaction() as db:  # type: ignore[attr-defined]
            found = await db.execute_fetchall("SELECT 1 FROM notify_receivers WHERE name = ?", (row["name"],))
            if bool(found) == create:
                return False
            await db.execute(
                f"INSERT OR REPLACE INTO notify_receivers ({', '.join(_RECEIVER_COLS)}) VALUES ({', '.join('?' * len(values))})", values
            )
        return True

    async def delete_receiver(self, name: str) -> bool:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute("DELETE FROM notify_receivers WHERE name = ?", (name,))
            if cur.rowcount == 0:
                return False
            await db.execute("DELETE FROM notify_groups WHERE receiver = ?", (name,))
            await db.execute("DELETE FROM notify_outbox WHERE receiver = ? AND state = ?", (name, OUTBOX_PENDING))
        return True

    async def notify_commit(
        self,
        *,
        cursor: tuple[str, int] | None = None,
        groups: Sequence[tuple[str, str, dict[str, Any] | None, float | None]] = (),
        outbox: Sequence[dict[str, Any]] = (),
    ) -> list[int]:
        ids: list[int] = []
        async with self._transaction() as db:  # type: ignore[attr-defined]
            if cursor is not None:
                await db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (cursor[0], str(int(cursor[1]))),
                )
            for receiver, key, state, next_flush_at in groups:
                if state is None:
                    await db.execute("DELETE FROM notify_groups WHERE receiver = ? AND group_key = ?", (receiver, key))
                else:
                    await db.execute(
                        "INSERT OR REPLACE INTO notify_groups (receiver, group_key, state, next_flush_at) VALUES (?, ?, ?, ?)",
                        (receiver, key, _dumps(state), next_flush_at),
                    )
            for row in outbox:
                cur = await db.execute(
                    "INSERT INTO notify_outbox (receiver, group_key, message, state, attempts, next_attempt_at, created_at) "
                    "VALUES (?, ?, ?, ?, 0, ?, ?)",
                    (row["receiver"], row.get("group_key", ""), _dumps(row["message"]), OUTBOX_PENDING, row["next_attempt_at"], row["created_at"]),
                )
                ids.append(int(cur.lastrowid))
        return ids

    async def notify_groups(self) -> list[tuple[str, str, dict[str, Any], float | None]]:
        rows = await self._fetchall("SELECT receiver, group_key, state, next_flush_at FROM notify_groups ORDER BY receiver, group_key")  # type: ignore[attr-defined]
        return [(r, k, json.loads(s), n) for r, k, s, n in rows]

    _HEADS = (
        "SELECT {cols} FROM notify_outbox WHERE id IN "
        "(SELECT MIN(id) FROM notify_outbox WHERE state = 'pending' GROUP BY receiver)"
    )

    async def outbox_heads(self, now: float) -> list[OutboxRow]:
        sql = self._HEADS.format(cols=", ".join(_OUTBOX_COLS)) + " AND next_attempt_at <= ? ORDER BY id"
        return [_outbox(r) for r in await self._fetchall(sql, (now,))]  # type: ignore[attr-defined]

    async def outbox_next_due(self, *, skip: Sequence[str] = ()) -> float | None:
        sql = self._HEADS.format(cols="MIN(next_attempt_at)")
        if skip:
            sql += f" AND receiver NOT IN ({', '.join('?' * len(skip))})"
        rows = await self._fetchall(sql, list(skip))  # type: ignore[attr-defined]
        return rows[0][0] if rows and rows[0][0] is not None else None

    async def outbox_update(self, outbox_id: int, **changes: Any) -> bool:
        unknown = set(changes) - _OUTBOX_CHANGES
        if unknown:
            raise ValueError(f"outbox rows have no field(s) {sorted(unknown)}")
        if not changes:
            return False
        sets = ", ".join(f"{name} = ?" for name in changes)
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute(f"UPDATE notify_outbox SET {sets} WHERE id = ?", (*changes.values(), outbox_id))
            return cur.rowcount > 0

    async def outbox_list(self, *, states: Sequence[str] = OUTBOX_STATES, receiver: str | None = None, limit: int = 100) -> list[OutboxRow]:
        states = [s for s in states if s in OUTBOX_STATES] or ["-"]
        sql = f"SELECT {', '.join(_OUTBOX_COLS)} FROM notify_outbox WHERE state IN ({', '.join('?' * len(states))})"
        params: list[Any] = list(states)
        if receiver is not None:
            sql += " AND receiver = ?"
            params.append(receiver)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(int(limit))
        return [_outbox(r) for r in await self._fetchall(sql, params)]  # type: ignore[attr-defined]

    async def outbox_counts(self) -> dict[str, dict[str, int]]:
        rows = await self._fetchall("SELECT receiver, state, COUNT(*) FROM notify_outbox GROUP BY receiver, state")  # type: ignore[attr-defined]
        out: dict[str, dict[str, int]] = {}
        for receiver, state, count in rows:
            out.setdefault(receiver, {})[state] = count
        return out

    async def outbox_prune(self, before: float) -> int:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute("DELETE FROM notify_outbox WHERE state = ? AND delivered_at < ?", (OUTBOX_DELIVERED, before))
            return cur.rowcount
