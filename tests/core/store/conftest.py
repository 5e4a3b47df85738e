"""Fixtures for the SQLite store tests: a real database file in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core.store.sqlite import SQLiteStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "hub.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(db_path)
    await store.open()
    yield store
    await store.close()


@pytest.fixture(params=[0.0, 60.0], ids=["merge-every-batch", "deferred-merge"])
async def rollup_store(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[SQLiteStore]:
    """A store for each way rollups reach their tables: in every ingest, or deferred."""
    store = SQLiteStore(db_path, rollup_flush_seconds=request.param)
    await store.open()
    yield store
    await store.close()
