"""The ingest pipeline: reports from every agent are batched into few store transactions before they are acknowledged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from roost.core.memory import release_memory
from roost.core.store import Report, Store

_LOGGER = logging.getLogger(__name__)

MAX_BATCH = 2000
# Reports waiting for the store; each holds ~40 KiB while queued, so keep it near two batches.
QUEUE_SIZE = 4_000
# A batch this big means reports queued up (a burst: agents resending after an outage, a hub restart).
# Once the queue has drained, what the burst took goes back to the system (see _release); a steady
# hub, whose batches hold a report or a few, is left alone, caches and deferred rollup merges included.
BURST_BATCH = 200
TRIM_DELAY = 2.0


class IngestError(Exception):
    """A report could not be persisted; its sender keeps it and resends."""


class Ingestor:
    """Persists reports in batches; a report's future resolves only once it is on disk.

    Batching is natural: while one transaction runs, the next batch gathers in
    the queue, so a quiet hub writes each report at once and a busy one writes
    thousands per transaction.
    """

    def __init__(self, store: Store, on_persisted: Callable[[list[Report], list[bool]], None]) -> None:
        self.store = store
        self.on_persisted = on_persisted
        self._queue: asyncio.Queue[tuple[Report, asyncio.Future[bool]]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # A report taken off the queue by a task cancelled before it could write it.
        self._leftover: tuple[Report, asyncio.Future[bool]] | None = None
        self._failed_nodes: set[str] = set()
        self.persisted = 0
        self.batches = 0
        self.trims = 0
        self._burst = False
        self._trim_timer: asyncio.TimerHandle | None = None
        self._trim_task: asyncio.Task[None] | None = None

    def reset_node(self, node_id: str) -> None:
        """A node reconnected and will resend from the hub's last persisted report."""
        self._failed_nodes.discard(node_id)

    async def submit(self, report: Report) -> asyncio.Future[bool]:
        """Queue a report; the returned future is True once persisted (False if it was a duplicate)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self._queue.put((report, future))  # back-pressure reaches the sockets when the store lags
        return future

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="roost-ingest")

    async def stop(self) -> None:
        """Persist what is queued, then stop."""
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None
        if self._trim_task is not None:
            await asyncio.gather(self._trim_task, return_exceptions=True)
        if self._task is None:
            return
        async with self._lock:  # let a running transaction finish
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        first, self._leftover = self._leftover, None
        await self._flush(first)
        while not self._queue.empty():
            await self._flush()

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            self._leftover = first
            async with self._lock:
                self._leftover = None
                await self._flush(first)
            if self._burst and self._trim_timer is None and self._queue.empty():
                self._trim_timer = asyncio.get_running_loop().call_later(TRIM_DELAY, self._trim)

    def _trim(self) -> None:
        """A while after a run of reports the queue is (nearly) empty: give the freed heap back."""
        self._trim_timer = None
        if self._queue.qsize() > MAX_BATCH // 10 or self._task is None:
            return  # still busy (the next drained batch asks again), or stopping
        self._burst = False
        self._trim_task = asyncio.create_task(self._release(), name="roost-ingest-trim")

    async def _release(self) -> None:
        try:
            async with self._lock:  # between transactions, never inside one
                await self.store.release_memory()
        except Exception:
            _LOGGER.exception("could not release the store's memory")
        if release_memory():
            self.trims += 1

    async def _flush(self, first: tuple[Report, asyncio.Future[bool]] | None = None) -> None:
        batch = [first] if first is not None else []
        while len(batch) < MAX_BATCH and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if not batch:
            return
        # After a failed write, later reports of the same node must not land
        # before the failed ones are resent, or dedupe by sequence would lose them.
        for item in [i for i in batch if i[0].node_id in self._failed_nodes]:
            batch.remove(item)
            if not item[1].done():
                item[1].set_exception(IngestError("an earlier report of this node was not persisted; reconnect and resend"))
        if not batch:
            return
        reports = [r for r, _ in batch]
        if len(reports) >= BURST_BATCH:
            self._burst = True
        try:
            results = await self.store.ingest(reports)
        except Exception as err:  # the agents keep these in their spools and resend
            _LOGGER.exception("cannot persist %d reports; agents will resend them", len(batch))
            self._failed_nodes.update(r.node_id for r in reports)
            for _, future in batch:
                if not future.done():
                    future.set_exception(IngestError(f"store write failed: {err}"))
            return
        self.persisted += sum(results)
        self.batches += 1
        for (_, future), ok in zip(batch, results):
            if not future.done():
                future.set_result(ok)
        try:
            self.on_persisted(reports, results)
        except Exception:
            _LOGGER.exception("post-ingest hook failed")
