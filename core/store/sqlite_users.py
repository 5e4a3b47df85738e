"""SQLite implementation of users, sessions and API tokens (a mixin of SQLiteStore)."""

from __future__ import annotations

from typing import Any

import aiosqlite

from .users import ROLE_ADMIN, ApiTokenRecord, LastAdminError, SessionRecord, UserExistsError, UserRecord

# Revoked or expired tokens stay listed this long (the owner sees what happened), then go.
TOKEN_KEEP_SECONDS = 30 * 86400.0

_USER_COLUMNS = "user_id, name, role, password_hash, created_at, password_changed_at, disabled"
_SESSION_COLUMNS = "session_id, user_id, created_at, last_seen, expires_at, csrf_token, peer, user_agent"
_TOKEN_COLUMNS = "token_id, user_id, name, scope, secret_hash, created_at, expires_at, last_used, revoked"


def _user(row: Any) -> UserRecord:
    return UserRecord(
        user_id=row[0],
        name=row[1],
        role=row[2],
        password_hash=row[3],
        created_at=row[4],
        password_changed_at=row[5],
        disabled=bool(row[6]),
    )


def _session(row: Any) -> SessionRecord:
    return SessionRecord(*row)


def _token(row: Any) -> ApiTokenRecord:
    return ApiTokenRecord(*row[:8], revoked=bool(row[8]))


def _prefixed(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


async def _check_admin_left(db: aiosqlite.Connection) -> None:
    rows = await db.execute_fetchall("SELECT COUNT(*) FROM users WHERE role = ? AND disabled = 0", (ROLE_ADMIN,))
    if next(iter(rows))[0] == 0:
        raise LastAdminError("this would leave no enabled admin; make another user admin first")


class SQLiteUserStore:
    """Relies on SQLiteStore's _transaction and _fetchall.

    Every check that must not race (first user, last admin) runs inside the
    write transaction that makes the change; BEGIN IMMEDIATE serialises it
    with other processes (the CLI) on the same file.
    """

    # -- users ----------------------------------------------------------------
    async def add_user(self, user: UserRecord, *, only_if_none: bool = False) -> bool:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            if only_if_none:
                rows = await db.execute_fetchall("SELECT EXISTS (SELECT 1 FROM users)")
                if next(iter(rows))[0]:
                    return False
            try:
                await db.execute(
                    f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        user.user_id,
                        user.name,
                        user.role,
                        user.password_hash,
                        user.created_at,
                        user.password_changed_at,
                        int(user.disabled),
                    ),
                )
            except aiosqlite.IntegrityError:
                raise UserExistsError(f"a user named {user.name!r} exists already") from None
        return True

    async def count_users(self) -> int:
        rows = await self._fetchall("SELECT COUNT(*) FROM users")  # type: ignore[attr-defined]
        return int(rows[0][0])

    async def get_user(self, user_id: str) -> UserRecord | None:
        rows = await self._fetchall(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?", (user_id,))  # type: ignore[attr-defined]
        return _user(rows[0]) if rows else None

    async def get_user_by_name(self, name: str) -> UserRecord | None:
        rows = await self._fetchall(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ? COLLATE NOCASE", (name,))  # type: ignore[attr-defined]
        return _user(rows[0]) if rows else None

    async def list_users(self) -> list[UserRecord]:
        rows = await self._fetchall(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name COLLATE NOCASE")  # type: ignore[attr-defined]
        return [_user(row) for row in rows]

    async def update_user(
        self,
        user_id: str,
        *,
        role: str | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
        now: float,
    ) -> UserRecord | None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            sets: list[str] = []
            params: list[Any] = []
            if role is not None:
                sets.append("role = ?")
                params.append(role)
            if password_hash is not None:
                sets += ["password_hash = ?", "password_changed_at = ?"]
                params += [password_hash, now]
            if disabled is not None:
                sets.append("disabled = ?")
                params.append(int(disabled))
            if sets:
                cursor = await db.execute(f"UPDATE users SET {', '.join(sets)} WHERE user_id = ?", (*params, user_id))
                if cursor.rowcount == 0:
                    return None
                await _check_admin_left(db)
                await db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            rows = await db.execute_fetchall(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?", (user_id,))
            return _user(next(iter(rows))) if rows else None

    async def delete_user(self, user_id: str) -> bool:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            # Explicit deletes as well as ON DELETE CASCADE: correct even where foreign keys are off.
            await db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            await db.execute("DELETE FROM api_tokens WHERE user_id = ?", (user_id,))
            cursor = await db.execute("DELETE FROM users WHERE user_id = ?", (user_id,))
            if cursor.rowcount == 0:
                return False
            await _check_admin_left(db)
            return True

    # -- sessions -------------------------------------------------------------
    async def add_session(self, session: SessionRecord) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(
                f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.session_id,
                    session.user_id,
                    session.created_at,
                    session.last_seen,
                    session.expires_at,
                    session.csrf_token,
                    session.peer,
                    session.user_agent,
                ),
            )

    async def get_session(self, session_id: str) -> tuple[SessionRecord, UserRecord] | None:
        rows = await self._fetchall(  # type: ignore[attr-defined]
            f"SELECT {_prefixed(_SESSION_COLUMNS, 's')}, {_prefixed(_USER_COLUMNS, 'u')} "
            "FROM sessions AS s JOIN users AS u ON u.user_id = s.user_id WHERE s.session_id = ?",
            (session_id,),
        )
        if not rows:
            return None
        row = rows[0]
        return _session(row[:8]), _user(row[8:])

    async def touch_session(self, session_id: str, last_seen: float) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(
                "UPDATE sessions SET last_seen = max(last_seen, ?) WHERE session_id = ?", (last_seen, session_id)
            )

    async def delete_session(self, session_id: str) -> bool:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cursor = await db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
            return cursor.rowcount > 0

    async def delete_user_sessions(self, user_id: str) -> int:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cursor = await db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            return cursor.rowcount

    # -- API tokens -----------------------------------------------------------
    async def add_api_token(self, token: ApiTokenRecord) -> None:
        try:
            async with self._transaction() as db:  # type: ignore[attr-defined]
                await db.execute(
                    f"INSERT INTO api_tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        token.token_id,
                        token.user_id,
                        token.name,
                        token.scope,
                        token.secret_hash,
                        token.created_at,
                        token.expires_at,
                        token.last_used,
                        int(token.revoked),
                    ),
                )
        except aiosqlite.IntegrityError as err:
            raise ValueError(f"cannot store API token {token.token_id!r}: {err}") from None

    async def get_api_token(self, token_id: str) -> tuple[ApiTokenRecord, UserRecord] | None:
        rows = await self._fetchall(  # type: ignore[attr-defined]
            f"SELECT {_prefixed(_TOKEN_COLUMNS, 't')}, {_prefixed(_USER_COLUMNS, 'u')} "
            "FROM api_tokens AS t JOIN users AS u ON u.user_id = t.user_id WHERE t.token_id = ?",
            (token_id,),
        )
        if not rows:
            return None
        row = rows[0]
        return _token(row[:9]), _user(row[9:])

    async def list_api_tokens(self, user_id: str | None = None) -> list[ApiTokenRecord]:
        if user_id is None:
            rows = await self._fetchall(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at DESC")  # type: ignore[attr-defined]
        else:
            rows = await self._fetchall(  # type: ignore[attr-defined]
                f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE user_id = ? ORDER BY created_at DESC", (user_id,)
            )
        return [_token(row) for row in rows]

    async def revoke_api_token(self, token_id: str, *, user_id: str | None = None) -> bool:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            if user_id is None:
                cursor = await db.execute("UPDATE api_tokens SET revoked = 1 WHERE token_id = ?", (token_id,))
            else:
                cursor = await db.execute(
                    "UPDATE api_tokens SET revoked = 1 WHERE token_id = ? AND user_id = ?", (token_id, user_id)
                )
            return cursor.rowcount > 0

    async def touch_api_token(self, token_id: str, last_used: float) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(
                "UPDATE api_tokens SET last_used = max(coalesce(last_used, ?1), ?1) WHERE token_id = ?2",
                (last_used, token_id),
            )

    async def prune_auth(self, now: float, *, idle_seconds: float) -> int:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            sessions = await db.execute(
                "DELETE FROM sessions WHERE expires_at <= ? OR last_seen <= ?", (now, now - idle_seconds)
            )
            tokens = await db.execute(
                "DELETE FROM api_tokens WHERE (revoked AND created_at < ?1) OR expires_at < ?1",
                (now - TOKEN_KEEP_SECONDS,),
            )
            return sessions.rowcount + tokens.rowcount
