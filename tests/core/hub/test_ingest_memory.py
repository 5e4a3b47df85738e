"""After a run of reports the hub gives memory back: the rollup aggregates are merged, SQLite's cache and the C heap trimmed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from roost.core import memory
from roost.core.hub import ingest
from roost.core.hub.ingest import Ingestor
from roost.core.store import NodeRecord, Report
from roost.core.store.sqlite import SQLiteStore


def _report(seq: int, at: float) -> Report:
    return Report(
        node_id="node-1", seq=seq, epoch="e1", collected_at=at, received_at=at, data={"linux_host": {"seq": seq}},
        metrics={"linux_host.cpu_percent": float(seq)}, integrations=[], interval=1.0, spool_dropped=0,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_release_memory_trims_the_c_heap() -> None:
    assert memory.release_memory() is True


async def test_a_drained_burst_merges_rollups_and_trims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "BURST_BATCH", 20)
    monkeypatch.setattr(ingest, "TRIM_DELAY", 0.01)
    store = SQLiteStore(tmp_path / "hub.db", rollup_flush_seconds=3600)
    await store.open()
    released = asyncio.Event()
    real_release = store.release_memory

    async def release() -> None:
        assert ingestor._lock.locked()  # between the ingestor's transactions, never inside one
        await real_release()
        released.set()

    monkeypatch.setattr(store, "release_memory", release)
    ingestor = Ingestor(store, lambda reports, results: None)
    try:
        await store.add_node(NodeRecord(node_id="node-1", name="n", hostname="h", public_key="k", created_at=1.0, epoch="e1"))
        ingestor.start()
        # One report at a time, each stored before the next: steady, no burst, nothing released.
        for seq in range(1, 6):
            assert await (await ingestor.submit(_report(seq, 1_763_107_200.0 + seq)))
        await asyncio.sleep(0.1)
        assert not released.is_set() and ingestor.trims == 0
        # Then 55 at once: they queue up behind each other and are stored in batches of 20 and more, a burst.
        futures = [await ingestor.submit(_report(seq, 1_763_107_200.0 + seq)) for seq in range(6, 61)]
        assert all(await asyncio.gather(*futures))
        assert store._pending_reports > 0  # the deferred merge holds them in memory
        await asyncio.wait_for(released.wait(), 30)
        assert store._pending_reports == 0
        history = await store.history("node-1", ["linux_host.cpu_percent"], 1_763_107_200.0, 1_763_107_300.0, "minute")
        assert sum(1 for _ in history["linux_host.cpu_percent"]) >= 1
        for _ in range(100):  # the C heap is trimmed right after the store let go
            if ingestor.trims or not sys.platform.startswith("linux"):
                break
            await asyncio.sleep(0.05)
        assert ingestor.trims == (1 if sys.platform.startswith("linux") else 0)
    finally:
        await ingestor.stop()
        await store.close()
