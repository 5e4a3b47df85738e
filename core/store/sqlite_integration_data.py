"""SQLite implementation of integration data (a mixin of SQLiteStore)."""

from __future__ import annotations


class SQLiteIntegrationDataStore:
    """Relies on SQLiteStore's _transaction and _fetchall."""

    async def get_integration_data(self, domain: str, key: str) -> str | None:
        rows = await self._fetchall("SELECT value FROM integration_data WHERE domain = ? AND key = ?", (domain, key))  # type: ignore[attr-defined]
        return rows[0][0] if rows else None

    async def put_integration_data(self, domain: str, key: str, value: str, *, now: float) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(
                "INSERT INTO integration_data (domain, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (domain, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (domain, key, value, now),
            )

    async def delete_integration_data(self, domain: str, key: str) -> bool:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cursor = await db.execute("DELETE FROM integration_data WHERE domain = ? AND key = ?", (domain, key))
            return cursor.rowcount > 0

    async def list_integration_data(self, domain: str, prefix: str = "") -> list[tuple[str, str]]:
        # substr() rather than LIKE: a prefix holding % or _ is matched literally.
        rows = await self._fetchall(  # type: ignore[attr-defined]
            "SELECT key, value FROM integration_data WHERE domain = ? AND substr(key, 1, ?) = ? ORDER BY key",
            (domain, len(prefix), prefix),
        )
        return [(row[0], row[1]) for row in rows]
