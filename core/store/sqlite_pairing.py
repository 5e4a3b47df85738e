"""SQLite implementation of pairing requests, grants and node keys (a mixin of SQLiteStore)."""

from __future__ import annotations

import json
from typing import Any

from .pairing import PAIR_PENDING, NodeGrants, PairingLimitError, PairingRequest

_COLUMNS = (
    "request_id, public_key, hostname, code, created_at, expires_at, facts, offered, ceiling, peer, "
    "key_changed_node, status, node_id, decided_by, decided_at, name"
)


def _request_from_row(row: Any) -> PairingRequest:
    return PairingRequest(
        request_id=row[0],
        public_key=row[1],
        hostname=row[2],
        code=row[3],
        created_at=row[4],
        expires_at=row[5],
        facts=json.loads(row[6]),
        offered=json.loads(row[7]),
        ceiling=json.loads(row[8]),
        peer=row[9],
        key_changed_node=row[10],
        status=row[11],
        node_id=row[12],
        decided_by=row[13] or "",
        decided_at=row[14],
        name=row[15],
    )


class SQLitePairingStore:
    """Relies on SQLiteStore's _transaction and _fetchall."""

    async def add_pairing_request(self, request: PairingRequest, *, max_pending: int, now: float) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute("DELETE FROM pairing_requests WHERE public_key = ? AND status = ?", (request.public_key, PAIR_PENDING))
            await db.execute("DELETE FROM pairing_requests WHERE expires_at < ? AND status = ?", (now - 86400, PAIR_PENDING))
            rows = await db.execute_fetchall(
                "SELECT COUNT(*) FROM pairing_requests WHERE status = ? AND expires_at > ?", (PAIR_PENDING, now)
            )
            if next(iter(rows))[0] >= max_pending:
                raise PairingLimitError(f"{max_pending} pairing requests are already waiting; approve or reject some in the dashboard")
            await db.execute(
                f"INSERT OR REPLACE INTO pairing_requests ({_COLUMNS}) VALUES ({', '.join('?' * 16)})",
                (
                    request.request_id, request.public_key, request.hostname, request.code, request.created_at,
                    request.expires_at, json.dumps(request.facts), json.dumps(request.offered), json.dumps(request.ceiling),
                    request.peer, request.key_changed_node, request.status, request.node_id, request.decided_by, request.decided_at, request.name,
                ),
            )

    async def get_pairing_request(self, request_id: str) -> PairingRequest | None:
        rows = await self._fetchall(f"SELECT {_COLUMNS} FROM pairing_requests WHERE request_id = ?", (request_id,))  # type: ignore[attr-defined]
        return _request_from_row(rows[0]) if rows else None

    async def list_pairing_requests(self, *, now: float, pending_only: bool = True) -> list[PairingRequest]:
        if pending_only:
            rows = await self._fetchall(  # type: ignore[attr-defined]
                f"SELECT {_COLUMNS} FROM pairing_requests WHERE status = ? AND expires_at > ? ORDER BY created_at",
                (PAIR_PENDING, now),
            )
        else:
            rows = await self._fetchall(f"SELECT {_COLUMNS} FROM pairing_requests ORDER BY created_at")  # type: ignore[attr-defined]
        return [_request_from_row(r) for r in rows]

    async def decide_pairing_request(self, request_id: str, *, status: str, node_id: str | None, decided_by: str, now: float) -> PairingRequest | None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute(
                "UPDATE pairing_requests SET status = ?, node_id = ?, decided_by = ?, decided_at = ? "
                "WHERE request_id = ? AND status = ? AND expires_at > ?",
                (status, node_id, decided_by, now, request_id, PAIR_PENDING, now),
            )
            if cur.rowcount != 1:
                return None
            rows = await db.execute_fetchall(f"SELECT {_COLUMNS} FROM pairing_requests WHERE request_id = ?", (request_id,))
        return _request_from_row(next(iter(rows)))

    async def get_grants(self, node_id: str) -> NodeGrants:
        rows = await self._fetchall("SELECT grants, ceiling, offered, updated_at FROM node_grants WHERE node_id = ?", (node_id,))  # type: ignore[attr-defined]
        if not rows:
            return NodeGrants(node_id, [], {}, [])
        grants, ceiling, offered, updated = rows[0]
        return NodeGrants(node_id, json.loads(grants), json.loads(ceiling), json.loads(offered), updated)

    async def all_grants(self) -> dict[str, NodeGrants]:
        rows = await self._fetchall("SELECT node_id, grants, ceiling, offered, updated_at FROM node_grants")  # type: ignore[attr-defined]
        return {r[0]: NodeGrants(r[0], json.loads(r[1]), json.loads(r[2]), json.loads(r[3]), r[4]) for r in rows}

    async def set_grants(self, node_id: str, grants: list[str], *, now: float) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(
                "INSERT INTO node_grants (node_id, grants, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (node_id) DO UPDATE SET grants = excluded.grants, updated_at = excluded.updated_at",
                (node_id, json.dumps(sorted(set(grants))), now),
            )

    async def set_ceiling(self, node_id: str, ceiling: dict[str, Any], offered: list[str], *, now: float) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(
                # updated_at tracks grant changes only: NULL means never granted.
                "INSERT INTO node_grants (node_id, ceiling, offered) VALUES (?, ?, ?) "
                "ON CONFLICT (node_id) DO UPDATE SET ceiling = excluded.ceiling, offered = excluded.offered",
                (node_id, json.dumps(ceiling, sort_keys=True), json.dumps(sorted(set(offered)))),
            )

    async def set_node_key(self, node_id: str, public_key: str) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            rows = await db.execute_fetchall("SELECT node_id FROM nodes WHERE public_key = ? AND node_id != ?", (public_key, node_id))
            if rows:
                raise ValueError("another node already uses that key")
            cur = await db.execute("UPDATE nodes SET public_key = ? WHERE node_id = ?", (public_key, node_id))
            if cur.rowcount != 1:
                raise ValueError(f"no node {node_id!r}")

    async def revoked_node_ids(self) -> set[str]:
        rows = await self._fetchall("SELECT node_id FROM nodes WHERE revoked = 1")  # type: ignore[attr-defined]
        return {r[0] for r in rows}

    async def set_token_preset(self, token_id: str, grants: list[str]) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(
                "INSERT OR REPLACE INTO join_token_presets (token_id, grants) VALUES (?, ?)", (token_id, json.dumps(sorted(set(grants))))
            )

    async def get_token_preset(self, token_id: str) -> list[str] | None:
        rows = await self._fetchall("SELECT grants FROM join_token_presets WHERE token_id = ?", (token_id,))  # type: ignore[attr-defined]
        return json.loads(rows[0][0]) if rows else None
