"""A task cancelled at any point of a store transaction (a stopping hub cancels its tasks) leaves no transaction open behind it."""

from __future__ import annotations

import asyncio

from roost.core.store.sqlite import SQLiteStore


async def test_a_write_cancelled_at_any_await_leaves_the_store_usable(tmp_path):
    store = SQLiteStore(tmp_path / "roost.db")
    await store.open()
    try:
        for round_ in range(120):
            task = asyncio.create_task(store.set_meta("cancelled", str(round_)))
            for _ in range(round_ % 6):  # cancel it in BEGIN, in the INSERT, in COMMIT...
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            # Before the fix a BEGIN cut short left its transaction open: this failed "within a transaction".
            await store.set_meta("after", str(round_))
            assert await store.get_meta("after") == str(round_)
    finally:
        await store.close()
