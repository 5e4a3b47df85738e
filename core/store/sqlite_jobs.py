"""SQLite implementation of jobs and schedules (a mixin of SQLiteStore)."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from .jobs import JOB_ACTIVE, JOB_QUEUED, MAX_OUTPUT_CHARS, Job, JobFilter, Schedule

_JOB_FIELDS = [f.name for f in fields(Job)]
_JSON_JOB = {"params", "envelope", "result"}
_BOOL_JOB = {"idempotent"}
_SCHEDULE_FIELDS = [f.name for f in fields(Schedule)]
_JSON_SCHEDULE = {"params"}
_BOOL_SCHEDULE = {"enabled"}


def _encode(name: str, value: Any, json_fields: set[str], bool_fields: set[str]) -> Any:
    if name in json_fields:
        return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)
    if name in bool_fields:
        return int(bool(value))
    return value


def _decode(row: Any, names: list[str], json_fields: set[str], bool_fields: set[str]) -> dict[str, Any]:
    out = {}
    for name, value in zip(names, row):
        if name in json_fields:
            value = None if value is None else json.loads(value)
        elif name in bool_fields:
            value = bool(value)
        out[name] = value
    return out


def _job(row: Any) -> Job:
    data = _decode(row, _JOB_FIELDS, _JSON_JOB, _BOOL_JOB)
    if data["params"] is None:
        data["params"] = {}
    return Job(**data)


def _schedule(row: Any) -> Schedule:
    data = _decode(row, _SCHEDULE_FIELDS, _JSON_SCHEDULE, _BOOL_SCHEDULE)
    return Schedule(**data)


_JOB_COLS = ", ".join(_JOB_FIELDS)
_SCHEDULE_COLS = ", ".join(_SCHEDULE_FIELDS)


class SQLiteJobStore:
    """Relies on SQLiteStore's _transaction and _fetchall."""

    async def add_job(self, job: Job) -> None:
        values = [_encode(n, getattr(job, n), _JSON_JOB, _BOOL_JOB) for n in _JOB_FIELDS]
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(f"INSERT INTO jobs ({_JOB_COLS}) VALUES ({', '.join('?' * len(values))})", values)

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._fetchall(f"SELECT {_JOB_COLS} FROM jobs WHERE job_id = ?", (job_id,))  # type: ignore[attr-defined]
        return _job(rows[0]) if rows else None

    async def list_jobs(self, filt: JobFilter) -> list[Job]:
        where, params = [], []
        if filt.node_id:
            where.append("node_id = ?")
            params.append(filt.node_id)
        if filt.state:
            where.append("state = ?")
            params.append(filt.state)
        if filt.action_prefix:
            where.append("action LIKE ? ESCAPE '!'")
            params.append(filt.action_prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%")
        if filt.schedule_id:
            where.append("schedule_id = ?")
            params.append(filt.schedule_id)
        if filt.before is not None:
            where.append("created_at < ?")
            params.append(filt.before)
        sql = f"SELECT {_JOB_COLS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"
        params.append(max(1, min(filt.limit, 1000)))
        return [_job(r) for r in await self._fetchall(sql, params)]  # type: ignore[attr-defined]

    async def due_jobs(self, now: float, limit: int) -> list[Job]:
        rows = await self._fetchall(  # type: ignore[attr-defined]
            f"SELECT {_JOB_COLS} FROM jobs WHERE state = ? AND next_attempt_at <= ? ORDER BY created_at LIMIT ?",
            (JOB_QUEUED, now, limit),
        )
        return [_job(r) for r in rows]

    async def active_jobs(self) -> list[Job]:
        rows = await self._fetchall(  # type: ignore[attr-defined]
            f"SELECT {_JOB_COLS} FROM jobs WHERE state IN ({', '.join('?' * len(JOB_ACTIVE))}) ORDER BY created_at", JOB_ACTIVE
        )
        return [_job(r) for r in rows]

    async def update_job(self, job_id: str, *, expect: tuple[str, ...] | None = None, append_output: str = "", **changes: Any) -> Job | None:
        unknown = set(changes) - set(_JOB_FIELDS) - {"job_id"}
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        assigns = [f"{n} = ?" for n in changes]
        values = [_encode(n, v, _JSON_JOB, _BOOL_JOB) for n, v in changes.items()]
        if append_output:
            assigns.append("output = substr(output || ?, -?)")
            values += [append_output, MAX_OUTPUT_CHARS]
        sets = ", ".join(assigns)
        sql = f"UPDATE jobs SET {sets} WHERE job_id = ?"
        values.append(job_id)
        if expect:
            sql += f" AND state IN ({', '.join('?' * len(expect))})"
            values.extend(expect)
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute(sql, values)
            if cur.rowcount != 1:
                return None
            rows = await db.execute_fetchall(f"SELECT {_JOB_COLS} FROM jobs WHERE job_id = ?", (job_id,))
        return _job(next(iter(rows)))

    async def append_job_output(self, job_id: str, text: str, *, progress: str | None = None, percent: float | None = None) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(
                "UPDATE jobs SET output = substr(output || ?, -?), progress = COALESCE(?, progress), percent = COALESCE(?, percent) WHERE job_id = ?",
                (text, MAX_OUTPUT_CHARS, progress, percent, job_id),
            )

    async def add_schedule(self, schedule: Schedule) -> None:
        values = [_encode(n, getattr(schedule, n), _JSON_SCHEDULE, _BOOL_SCHEDULE) for n in _SCHEDULE_FIELDS]
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(f"INSERT INTO schedules ({_SCHEDULE_COLS}) VALUES ({', '.join('?' * len(values))})", values)

    async def list_schedules(self, node_id: str | None = None) -> list[Schedule]:
        if node_id:
            rows = await self._fetchall(f"SELECT {_SCHEDULE_COLS} FROM schedules WHERE node_id = ? ORDER BY created_at", (node_id,))  # type: ignore[attr-defined]
        else:
            rows = await self._fetchall(f"SELECT {_SCHEDULE_COLS} FROM schedules ORDER BY created_at")  # type: ignore[attr-defined]
        return [_schedule(r) for r in rows]

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        rows = await self._fetchall(f"SELECT {_SCHEDULE_COLS} FROM schedules WHERE schedule_id = ?", (schedule_id,))  # type: ignore[attr-defined]
        return _schedule(rows[0]) if rows else None

    async def update_schedule(self, schedule_id: str, **changes: Any) -> Schedule | None:
        unknown = set(changes) - set(_SCHEDULE_FIELDS)
        if unknown:
            raise ValueError(f"unknown schedule fields: {sorted(unknown)}")
        sets = ", ".join(f"{n} = ?" for n in changes)
        values = [_encode(n, v, _JSON_SCHEDULE, _BOOL_SCHEDULE) for n, v in changes.items()]
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute(f"UPDATE schedules SET {sets} WHERE schedule_id = ?", [*values, schedule_id])
            if cur.rowcount != 1:
                return None
        return await self.get_schedule(schedule_id)

    async def delete_schedule(self, schedule_id: str) -> bool:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute("DELETE FROM schedules WHERE schedule_id = ?", (schedule_id,))
            return cur.rowcount == 1
