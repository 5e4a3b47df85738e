"""Schema migrations of the SQLite store: from empty, idempotent re-open, refusal of newer schemas."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from roost.core.store.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    SchemaTooNewError,
    migrate,
    schema_version,
)
from roost.core.store import NodeRecord
from roost.core.store.sqlite import SQLiteStore


EXPECTED_TABLES = {
    "meta",
    "nodes",
    "join_tokens",
    "node_state",
    "node_metrics_latest",
    "metric_raw",
    "metric_series",
    "metric_minute",
    "metric_hour",
    "rollup_state",
}


def make_node(n: int) -> NodeRecord:
    return NodeRecord(node_id=f"node-{n}", name=f"n{n}", hostname=f"h{n}", public_key=f"key-{n}", created_at=0.0)


def _inspect(path: Path) -> dict[str, object]:
    with sqlite3.connect(path) as db:
        return {
            "user_version": db.execute("PRAGMA user_version").fetchone()[0],
            "auto_vacuum": db.execute("PRAGMA auto_vacuum").fetchone()[0],
            "journal_mode": db.execute("PRAGMA journal_mode").fetchone()[0],
            "tables": {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")},
            "without_rowid": {
                row[0]
                for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%WITHOUT ROWID%'")
            },
        }


async def test_open_creates_the_latest_schema_from_an_empty_file(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.close()

    found = _inspect(db_path)
    assert found["user_version"] == LATEST_VERSION
    assert EXPECTED_TABLES <= found["tables"]  # type: ignore[operator]
    assert {"metric_minute", "metric_hour"} <= found["without_rowid"]  # type: ignore[operator]
    assert found["journal_mode"] == "wal"
    assert found["auto_vacuum"] == 2  # incremental


async def test_connection_settings(store: SQLiteStore) -> None:
    db = store._conn()
    pragmas = {}
    for name in ("foreign_keys", "synchronous", "busy_timeout"):
        pragmas[name] = next(iter(await db.execute_fetchall(f"PRAGMA {name}")))[0]
    assert pragmas["foreign_keys"] == 1
    assert pragmas["synchronous"] == 1  # NORMAL
    assert pragmas["busy_timeout"] >= 1000


async def test_reopen_keeps_data_and_applies_nothing(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.add_node(make_node(1))
    await store.set_meta("hub_id", "abc")
    await store.close()
    schema_before = sqlite3.connect(db_path).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()

    for _ in range(2):
        store = SQLiteStore(db_path)
        await store.open()
        assert await store.get_meta("hub_id") == "abc"
        assert [n.node_id for n in await store.list_nodes()] == ["node-1"]
        await store.close()

    assert _inspect(db_path)["user_version"] == LATEST_VERSION
    assert sqlite3.connect(db_path).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema_before


async def test_a_newer_schema_is_refused_and_left_alone(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.close()
    with sqlite3.connect(db_path) as db:
        db.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")

    newer = SQLiteStore(db_path)
    with pytest.raises(SchemaTooNewError, match=r"newer Roost.*Upgrade Roost"):
        await newer.open()
    assert _inspect(db_path)["user_version"] == LATEST_VERSION + 1
    with pytest.raises(RuntimeError, match="not open"):
        await newer.get_meta("hub_id")


async def test_two_processes_opening_a_new_file_at_once(db_path: Path) -> None:
    stores = [SQLiteStore(db_path) for _ in range(3)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        await stores[0].add_node(make_node(1))
        assert (await stores[2].get_node("node-1")) is not None
    finally:
        for store in stores:
            await store.close()
    assert _inspect(db_path)["user_version"] == LATEST_VERSION


async def _connect(path: Path) -> aiosqlite.Connection:
    return await aiosqlite.connect(path, isolation_level=None)


async def test_migrations_run_in_order_each_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    applied: list[int] = []

    async def record_two(db: aiosqlite.Connection) -> None:
        applied.append(2)
        await db.execute("INSERT INTO t (x) VALUES (2)")

    first = Migration(1, "table t", ("CREATE TABLE t (x INTEGER)", "INSERT INTO t (x) VALUES (1)"))
    second = Migration(2, "second row", (record_two,))
    broken = Migration(3, "breaks half-way", ("CREATE TABLE u (y)", "INSERT INTO no_such_table VALUES (1)"))

    db = await _connect(path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            await migrate(db, migrations=(first, second, broken))
        # 1 and 2 committed; 3 rolled back as a whole.
        assert await schema_version(db) == 2
        assert [row[0] for row in await db.execute_fetchall("SELECT x FROM t ORDER BY x")] == [1, 2]
        assert not await db.execute_fetchall("SELECT name FROM sqlite_master WHERE name = 'u'")
        assert not db.in_transaction

        fixed = Migration(3, "fixed", ("CREATE TABLE u (y)",))
        assert await migrate(db, migrations=(first, second, fixed)) == 3
        assert applied == [2]  # never re-applied
        assert await migrate(db, migrations=(first, second, fixed)) == 3
    finally:
        await db.close()


async def test_migration_numbering_must_have_no_gaps(tmp_path: Path) -> None:
    db = await _connect(tmp_path / "m.db")
    try:
        with pytest.raises(ValueError, match="without gaps"):
            await migrate(db, migrations=(Migration(1, "a", ()), Migration(3, "b", ())))
    finally:
        await db.close()


def test_shipped_migrations_are_numbered_from_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert LATEST_VERSION == len(MIGRATIONS)
