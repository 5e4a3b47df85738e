"""SQLite implementation of automations, their runs and approvals (a mixin of SQLiteStore)."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from .automations import APPROVAL_PENDING, RUN_SKIPPED, ApprovalRecord, AutomationRecord, RunRecord

_AUTO_FIELDS = [f.name for f in fields(AutomationRecord)]
_RUN_FIELDS = [f.name for f in fields(RunRecord)]
_APPROVAL_FIELDS = [f.name for f in fields(ApprovalRecord)]
_JSON = {"definition", "trigger", "context", "trace", "details", "envelope"}
_BOOL = {"enabled", "dry_run"}


def _encode(name: str, value: Any) -> Any:
    if name in _JSON:
        return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    if name in _BOOL:
        return int(bool(value))
    return value


def _decode(row: Any, names: list[str]) -> dict[str, Any]:
    out = {}
    for name, value in zip(names, row):
        if name in _JSON:
            value = None if value is None else json.loads(value)
        elif name in _BOOL:
            value = bool(value)
        out[name] = value
    return out


def _cols(names: list[str]) -> str:
    return ", ".join(names)


class SQLiteAutomationStore:
    """Relies on SQLiteStore's _transaction and _fetchall."""

    async def put_automation(self, record: AutomationRecord) -> None:
        values = [_encode(n, getattr(record, n)) for n in _AUTO_FIELDS]
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(f"INSERT OR REPLACE INTO automations ({_cols(_AUTO_FIELDS)}) VALUES ({', '.join('?' * len(values))})", values)

    async def get_automation(self, automation_id: str) -> AutomationRecord | None:
        rows = await self._fetchall(f"SELECT {_cols(_AUTO_FIELDS)} FROM automations WHERE automation_id = ?", (automation_id,))  # type: ignore[attr-defined]
        return AutomationRecord(**_decode(rows[0], _AUTO_FIELDS)) if rows else None

    async def list_automations(self) -> list[AutomationRecord]:
        rows = await self._fetchall(f"SELECT {_cols(_AUTO_FIELDS)} FROM automations ORDER BY created_at, automation_id")  # type: ignore[attr-defined]
        return [AutomationRecord(**_decode(r, _AUTO_FIELDS)) for r in rows]

    async def delete_automation(self, automation_id: str) -> bool:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute("DELETE FROM automations WHERE automation_id = ?", (automation_id,))
            return cur.rowcount == 1

    async def add_run(self, run: RunRecord) -> None:
        values = [_encode(n, getattr(run, n)) for n in _RUN_FIELDS]
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(f"INSERT INTO automation_runs ({_cols(_RUN_FIELDS)}) VALUES ({', '.join('?' * len(values))})", values)

    async def update_run(self, run_id: str, *, expect: tuple[str, ...] | None = None, **changes: Any) -> RunRecord | None:
        unknown = set(changes) - set(_RUN_FIELDS) - {"run_id"}
        if unknown:
            raise ValueError(f"unknown run fields: {sorted(unknown)}")
        sql = f"UPDATE automation_runs SET {', '.join(f'{n} = ?' for n in changes)} WHERE run_id = ?"
        values = [_encode(n, v) for n, v in changes.items()] + [run_id]
        if expect:
            sql += f" AND state IN ({', '.join('?' * len(expect))})"
            values.extend(expect)
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute(sql, values)
            if cur.rowcount != 1:
                return None
            rows = await db.execute_fetchall(f"SELECT {_cols(_RUN_FIELDS)} FROM automation_runs WHERE run_id = ?", (run_id,))
        return RunRecord(**_decode(next(iter(rows)), _RUN_FIELDS))

    async def get_run(self, run_id: str) -> RunRecord | None:
        rows = await self._fetchall(f"SELECT {_cols(_RUN_FIELDS)} FROM automation_runs WHERE run_id = ?", (run_id,))  # type: ignore[attr-defined]
        return RunRecord(**_decode(rows[0], _RUN_FIELDS)) if rows else None

    async def list_runs(self, automation_id: str | None = None, *, states: tuple[str, ...] = (), limit: int = 50) -> list[RunRecord]:
        where, params = [], []
        if automation_id:
            where.append("automation_id = ?")
            params.append(automation_id)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(states)
        sql = f"SELECT {_cols(_RUN_FIELDS)} FROM automation_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        params.append(max(1, min(limit, 1000)))
        return [RunRecord(**_decode(r, _RUN_FIELDS)) for r in await self._fetchall(sql, params)]  # type: ignore[attr-defined]

    async def count_runs_since(self, automation_id: str, throttle_key: str, since: float) -> int:
        rows = await self._fetchall(  # type: ignore[attr-defined]
            "SELECT COUNT(*) FROM automation_runs WHERE automation_id = ? AND throttle_key = ? AND started_at >= ? AND state != ? AND dry_run = 0",
            (automation_id, throttle_key, since, RUN_SKIPPED),
        )
        return int(rows[0][0])

    async def add_approval(self, approval: ApprovalRecord) -> None:
        values = [_encode(n, getattr(approval, n)) for n in _APPROVAL_FIELDS]
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(f"INSERT INTO automation_approvals ({_cols(_APPROVAL_FIELDS)}) VALUES ({', '.join('?' * len(values))})", values)

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        rows = await self._fetchall(f"SELECT {_cols(_APPROVAL_FIELDS)} FROM automation_approvals WHERE approval_id = ?", (approval_id,))  # type: ignore[attr-defined]
        return ApprovalRecord(**_decode(rows[0], _APPROVAL_FIELDS)) if rows else None

    async def list_approvals(self, *, state: str | None = None, run_id: str | None = None, limit: int = 100) -> list[ApprovalRecord]:
        where, params = [], []
        if state:
            where.append("state = ?")
            params.append(state)
        if run_id:
            where.append("run_id = ?")
            params.append(run_id)
        sql = f"SELECT {_cols(_APPROVAL_FIELDS)} FROM automation_approvals"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"
        params.append(max(1, min(limit, 1000)))
        return [ApprovalRecord(**_decode(r, _APPROVAL_FIELDS)) for r in await self._fetchall(sql, params)]  # type: ignore[attr-defined]

    async def decide_approval(
        self, approval_id: str, *, state: str, by: str, at: float, note: str = "", envelope: dict[str, Any] | None = None
    ) -> ApprovalRecord | None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute(
                "UPDATE automation_approvals SET state = ?, decided_by = ?, decided_at = ?, note = ?, envelope = ? WHERE approval_id = ? AND state = ?",
                (state, by, at, note, _encode("envelope", envelope), approval_id, APPROVAL_PENDING),
            )
            if cur.rowcount != 1:
                return None
            rows = await db.execute_fetchall(f"SELECT {_cols(_APPROVAL_FIELDS)} FROM automation_approvals WHERE approval_id = ?", (approval_id,))
        return ApprovalRecord(**_decode(next(iter(rows)), _APPROVAL_FIELDS))
