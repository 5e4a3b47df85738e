"""The SQLite Store: the hub's embedded default, on aiosqlite in WAL mode.

Metric history has three resolutions. ``metric_raw`` holds one row per
accepted report with all of its metrics as JSON; it is the durable log. The
minute and hour rollups (sum, count, min, max per series and bucket) are
derived from it: ingest keeps the accepted metrics in memory, grouped by node
and minute, and at most ``rollup_flush_seconds`` later (0: in every ingest
call) aggregates them in Python and merges the result into the rollup tables
with one upsert per (series, bucket). ``rollup_state.raw_watermark`` records
the last raw row merged, in the same transaction as the merge, so nothing is
counted twice or lost:

- reads of minute/hour history fold the raw rows above the watermark on the
  fly, so a chart is never behind;
- after a crash, a failed transaction, or when another process merged first,
  the in-memory metrics are dropped and rebuilt from the raw rows above the
  watermark at the next merge.

Deferring the merge is what keeps ingest fast: a (series, bucket) row is
written about once per merge instead of once per report, and the aggregation
runs over whole columns of values (see scripts/bench_store.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

import aiosqlite

from . import (
    BUCKET_SECONDS,
    RES_HOUR,
    RES_MINUTE,
    RES_RAW,
    RESOLUTIONS,
    JoinToken,
    NodeRecord,
    NodeState,
    Report,
    Retention,
    Store,
)
from .sqlite_jobs import SQLiteJobStore
from .sqlite_automations import SQLiteAutomationStore
from .sqlite_pairing import SQLitePairingStore
from .sqlite_integration_data import SQLiteIntegrationDataStore
from .sqlite_push import SQLitePushStore
from .sqlite_users import SQLiteUserStore
from .sqlite_audit import SQLiteAuditStore
from .sqlite_limits import SQLiteLimitStore
from .sqlite_notify import SQLiteNotifyStore
from .sqlite_alerts import SQLiteAlertStore
from .migrations import migrate, prepare_new_database

_LOGGER = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT = 10.0
DEFAULT_CACHE_KIB = 32 * 1024
DEFAULT_ROLLUP_FLUSH_SECONDS = 60.0
# ~2 KB of memory per pending report with 30 metrics.
DEFAULT_MAX_PENDING_REPORTS = 20_000
# Checkpoint the WAL every 64 MiB instead of SQLite's 4 MiB: the latest-state
# rows are rewritten with every report, and a longer WAL lets a checkpoint
# copy each hot page once instead of once per ingest batch.
DEFAULT_WAL_AUTOCHECKPOINT_PAGES = 16384
DEFAULT_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
# Used-up, revoked or expired join tokens stay listed this long, then go.
JOIN_TOKEN_KEEP_SECONDS = 86400.0
# prune() gives free pages back to the file system only beyond this share of
# the pages in use; below it they are reused by the next inserts anyway.
FREE_PAGES_KEPT_RATIO = 0.10
# Aggregating more pending reports than this happens off the event loop.
_AGGREGATE_IN_THREAD_REPORTS = 2000
# Bound on ? variables in one IN (...) list.
_MAX_IN_VARS = 500

_MINUTE = BUCKET_SECONDS[RES_MINUTE]
_HOUR = BUCKET_SECONDS[RES_HOUR]
_ROLLUP_TABLES = {RES_MINUTE: "metric_minute", RES_HOUR: "metric_hour"}

# Everything encoded here came from JSON (or dataclasses of it), so there is no
# reference cycle to look for.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
_decode = json.loads

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the standard library writes the same values
    _orjson = None  # type: ignore[assignment]
# Dataclasses, datetimes and str/int subclasses go to json, which refuses or writes them as it always has.
_ORJSON_OPTIONS = (
    (_orjson.OPT_PASSTHROUGH_DATACLASS | _orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_SUBCLASS) if _orjson else 0
)


def _encode_report(value: Any) -> str:
    """``_encode`` for a report's metrics and state, through orjson where it writes the same values.

    orjson writes NaN and infinities as ``null`` (json writes ``NaN``), so an
    answer with ``null`` in it, and anything orjson refuses (integers past 64
    bits, surrogates, other types), is encoded by json instead. Floats may be
    spelled differently (``1e-7`` for ``1e-07``); every reader decodes the same number.
    """
    if _orjson is not None:
        try:
            text = _orjson.dumps(value, option=_ORJSON_OPTIONS)
        except TypeError:
            return _encode(value)
        if b"null" not in text:
            return text.decode()
    return _encode(value)

_NODE_COLUMNS = (
    "node_id, name, hostname, public_key, created_at, last_seen, revoked, local, facts, "
    "integrations, fields, capabilities, agent_version, epoch, last_seq, interval, spool_dropped"
)

_SQL_INSERT_RAW = 'INSERT INTO metric_raw (node_id, ts, "values") VALUES (?, ?, ?)'
_SQL_UPSERT_LATEST_METRICS = """
    INSERT INTO node_metrics_latest (node_id, collected_at, metrics) VALUES (?, ?, ?)
    ON CONFLICT (node_id) DO UPDATE
        SET collected_at = excluded.collected_at, metrics = excluded.metrics
        WHERE excluded.collected_at > node_metrics_latest.collected_at
"""
_SQL_UPSERT_STATE = """
    INSERT INTO node_state (node_id, domain, collected_at, data) VALUES (?, ?, ?, ?)
    ON CONFLICT (node_id, domain) DO UPDATE
        SET collected_at = excluded.collected_at, data = excluded.data
        WHERE excluded.collected_at > node_state.collected_at
"""
# ?1 node_id, ?2 epoch, ?3 last_seq, ?4 received_at, ?5 spool_dropped,
# ?6 collected_at, ?7 integrations, ?8 interval. Integrations and interval come
# from the newest report by collected_at, so late backlog cannot roll them back.
_SQL_UPDATE_NODE_INGEST = """
    UPDATE nodes SET
        epoch = ?2,
        last_seq = ?3,
        last_seen = max(coalesce(last_seen, ?4), ?4),
        spool_dropped = max(spool_dropped, ?5),
        integrations = CASE WHEN last_collected_at IS NULL OR ?6 >= last_collected_at
                            THEN ?7 ELSE integrations END,
        interval = CASE WHEN ?8 IS NOT NULL AND (last_collected_at IS NULL OR ?6 >= last_collected_at)
                        THEN ?8 ELSE interval END,
        last_collected_at = max(coalesce(last_collected_at, ?6), ?6)
    WHERE node_id = ?1
"""
_SQL_MERGE_ROLLUP = """
    INSERT INTO {table} (series_id, bucket_ts, sum, count, min, max) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (series_id, bucket_ts) DO UPDATE SET
        sum = sum + excluded.sum,
        count = count + excluded.count,
        min = min(min, excluded.min),
        max = max(max, excluded.max)
"""

# Reports not merged into the rollups yet, grouped by node and minute:
# {(node_id, minute_ts): [metrics of each report collected in that minute]}
_Pending = dict[tuple[str, int], list[Mapping[str, float]]]
# (series_id, bucket_ts, sum, count, min, max)
_RollupRow = tuple[int, int, float, int, float, float]


def _finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Return the metrics that are finite numbers, as floats.

    NaN or infinity would make the stored JSON unreadable for SQLite's JSON
    functions and poison min/max; strings and None are not metrics.
    """
    for value in metrics.values():
        if type(value) is not float or not math.isfinite(value):
            break
    else:
        # The common case, already clean. A copy all the same: the store keeps
        # it until the next rollup merge, and the caller owns the original.
        return dict(metrics)
    return {
        name: float(value)
        for name, value in metrics.items()
        if type(value) in (float, int, bool) and math.isfinite(value)
    }


def _aggregate(
    ids: Mapping[str, int], reports: list[Mapping[str, float]]
) -> list[tuple[int, float, int, float, float]]:
    """(series_id, sum, count, min, max) per series over the reports of one node and minute."""
    first = reports[0]
    if len(reports) == 1:
        return [(ids[name], value, 1, value, value) for name, value in first.items()]
    names = tuple(first)
    if len(names) > 1 and all(len(report) == len(names) for report in reports):
        # The usual case, every report with the same series: transpose in C.
        try:
            columns = zip(*map(itemgetter(*names), reports))
        except KeyError:
            pass
        else:
            return [
                (ids[name], sum(column), len(column), min(column), max(column))
                for name, column in zip(names, columns)
            ]
    by_series: dict[str, list[float]] = {}
    for report in reports:
        for name, value in report.items():
            values = by_series.get(name)
            if values is None:
                by_series[name] = [value]
            else:
                values.append(value)
    return [
        (ids[name], sum(values), len(values), min(values), max(values)) for name, values in by_series.items()
    ]


def _rollup_rows(
    pending: _Pending, series: Mapping[str, Mapping[str, int]]
) -> tuple[list[_RollupRow], list[_RollupRow]]:
    """Minute and hour rollup rows for the pending reports; ``series`` maps node and name to series_id."""
    minute_rows: list[_RollupRow] = []
    append = minute_rows.append
    hours: dict[tuple[int, int], list[Any]] = {}
    for (node_id, minute_ts), reports in pending.items():
        hour_ts = minute_ts - minute_ts % _HOUR
        for series_id, total, count, low, high in _aggregate(series[node_id], reports):
            append((series_id, minute_ts, total, count, low, high))
            key = (series_id, hour_ts)
            acc = hours.get(key)
            if acc is None:
                hours[key] = [total, count, low, high]
            else:
                acc[0] += total
                acc[1] += count
                if low < acc[2]:
                    acc[2] = low
                if high > acc[3]:
                    acc[3] = high
    hour_rows = [(key[0], key[1], acc[0], acc[1], acc[2], acc[3]) for key, acc in hours.items()]
    return minute_rows, hour_rows


def _chunks(items: Sequence[Any], size: int = _MAX_IN_VARS) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


def _node_from_row(row: Sequence[Any]) -> NodeRecord:
    return NodeRecord(
        node_id=row[0],
        name=row[1],
        hostname=row[2],
        public_key=row[3],
        created_at=row[4],
        last_seen=row[5],
        revoked=bool(row[6]),
        local=bool(row[7]),
        facts=_decode(row[8]),
        integrations=_decode(row[9]),
        fields=_decode(row[10]),
        capabilities=_decode(row[11]),
        agent_version=row[12],
        epoch=row[13],
        last_seq=row[14],
        interval=row[15],
        spool_dropped=row[16],
    )


def _token_from_row(row: Sequence[Any]) -> JoinToken:
    token_id, created_at, expires_at, uses_left, revoked, note = row
    return JoinToken(
        token_id=token_id,
        created_at=created_at,
        expires_at=expires_at,
        uses_left=uses_left,
        revoked=bool(revoked),
        note=note,
    )


class _NodeBatch:
    """What one ingest call learned about one node."""

    __slots__ = ("epoch", "last_seq", "received_at", "spool_dropped", "collected_at", "integrations", "interval")

    def __init__(self, report: Report) -> None:
        self.epoch = report.epoch
        self.last_seq = report.seq
        self.received_at = report.received_at
        self.spool_dropped = report.spool_dropped
        self.collected_at = report.collected_at
        self.integrations = report.integrations
        self.interval = report.interval

    def add(self, report: Report) -> None:
        self.epoch = report.epoch
        self.last_seq = report.seq
        if report.received_at > self.received_at:
            self.received_at = report.received_at
        if report.spool_dropped > self.spool_dropped:
            self.spool_dropped = report.spool_dropped
        if report.collected_at >= self.collected_at:
            self.collected_at = report.collected_at
            self.integrations = report.integrations
            self.interval = report.interval


class _Ingested:
    """What one batch stored, as SQLite's thread hands it back to the event loop."""

    __slots__ = ("accepted", "unknown", "kept", "raw_rows", "newest_raw", "first_received", "last_received")

    def __init__(self) -> None:
        self.accepted: list[bool] = []
        self.unknown: set[str] = set()
        # (node_id, collected_at, finite metrics) of each stored report, for the rollup aggregates.
        self.kept: list[tuple[str, float, dict[str, float]]] = []
        self.raw_rows = 0
        self.newest_raw = 0
        self.first_received: float | None = None
        self.last_received = -math.inf


def _ingest_rows(conn: sqlite3.Connection, reports: Sequence[Report], own_transaction: bool) -> _Ingested:
    """Store a batch of reports; runs in SQLite's thread, touching nothing but ``conn`` and the reports.

    A report is stored unless its node is unknown or it is not newer (same
    epoch, seq not above the node's last) than what is stored: dedupe by
    sequence, so a resent report is acknowledged without being stored twice.
    With ``own_transaction`` it is a whole transaction (BEGIN IMMEDIATE ...
    COMMIT, rolled back on any error); otherwise it runs in the caller's.
    """
    if own_transaction:
        conn.execute("BEGIN IMMEDIATE")
    try:
        done = _ingest_statements(conn, reports)
        if own_transaction:
            conn.execute("COMMIT")
        return done
    except BaseException as ended:
        if own_transaction and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as err:
                _LOGGER.debug("rollback after %r: %s", ended, err)
        raise


def _ingest_statements(conn: sqlite3.Connection, reports: Sequence[Report]) -> _Ingested:
    done = _Ingested()
    cursors: dict[str, list[Any]] = {}
    for chunk in _chunks(sorted({report.node_id for report in reports})):
        rows = conn.execute(f"SELECT node_id, epoch, last_seq FROM nodes WHERE node_id IN ({_placeholders(len(chunk))})", chunk)
        for node_id, epoch, last_seq in rows:
            cursors[node_id] = [epoch, last_seq]

    accepted = done.accepted
    raw_rows: list[tuple[str, float, str]] = []
    nodes: dict[str, _NodeBatch] = {}
    newest_metrics: dict[str, tuple[float, str]] = {}
    newest_state: dict[tuple[str, str], tuple[float, Any]] = {}
    for report in reports:
        node_id = report.node_id
        cursor = cursors.get(node_id)
        if cursor is None:
            done.unknown.add(node_id)
            accepted.append(False)
            continue
        if report.epoch == cursor[0] and report.seq <= cursor[1]:
            accepted.append(False)
            continue
        cursor[0] = report.epoch
        cursor[1] = report.seq
        accepted.append(True)

        collected_at = report.collected_at
        metrics = _finite_metrics(report.metrics)
        values = _encode_report(metrics)
        raw_rows.append((node_id, collected_at, values))
        done.kept.append((node_id, collected_at, metrics))
        previous = newest_metrics.get(node_id)
        if previous is None or collected_at >= previous[0]:
            newest_metrics[node_id] = (collected_at, values)
        for domain, state in report.data.items():
            key = (node_id, domain)
            previous_state = newest_state.get(key)
            if previous_state is None or collected_at >= previous_state[0]:
                newest_state[key] = (collected_at, state)

        batch = nodes.get(node_id)
        if batch is None:
            nodes[node_id] = _NodeBatch(report)
        else:
            batch.add(report)
        if done.first_received is None:
            done.first_received = report.received_at
        if report.received_at > done.last_received:
            done.last_received = report.received_at
    if not nodes:
        return done

    conn.executemany(_SQL_INSERT_RAW, raw_rows)
    done.raw_rows = len(raw_rows)
    done.newest_raw = int(conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'metric_raw'").fetchone()[0])
    conn.executemany(
        _SQL_UPSERT_LATEST_METRICS,
        [(node_id, collected_at, values) for node_id, (collected_at, values) in newest_metrics.items()],
    )
    if newest_state:
        conn.executemany(
            _SQL_UPSERT_STATE,
            [(node_id, domain, collected_at, _encode_report(state)) for (node_id, domain), (collected_at, state) in newest_state.items()],
        )
    conn.executemany(
        _SQL_UPDATE_NODE_INGEST,
        [
            (
                node_id,
                batch.epoch,
                batch.last_seq,
                batch.received_at,
                batch.spool_dropped,
                batch.collected_at,
                _encode(batch.integrations),
                batch.interval,
            )
            for node_id, batch in nodes.items()
        ],
    )
    return done


class SQLiteStore(SQLitePairingStore, SQLitePushStore, SQLiteIntegrationDataStore, SQLiteUserStore, SQLiteAuditStore, SQLiteJobStore, SQLiteLimitStore, SQLiteAlertStore, SQLiteNotifyStore, SQLiteAutomationStore, Store):
    """Hub state in one SQLite file.

    One connection per store; an asyncio lock keeps the transactions of
    concurrent callers apart. Other processes (the CLI creating join tokens)
    may open the same file at the same time: writes use ``BEGIN IMMEDIATE``
    and wait up to ``busy_timeout`` seconds for each other.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        rollup_flush_seconds: float = DEFAULT_ROLLUP_FLUSH_SECONDS,
        max_pending_reports: int = DEFAULT_MAX_PENDING_REPORTS,
        cache_kib: int = DEFAULT_CACHE_KIB,
    ) -> None:
        """``rollup_flush_seconds`` is how long (in reports' received_at time)
        rollup aggregates may stay in memory before they are merged into the
        rollup tables; ``max_pending_reports`` forces a merge earlier."""
        self._path = Path(path)
        self._busy_timeout = busy_timeout
        self._flush_seconds = rollup_flush_seconds
        self._max_pending = max_pending_reports
        self._cache_kib = cache_kib
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._incremental_vacuum = False
        # Series catalog cache: {node_id: {series: series_id}}.
        self._series: dict[str, dict[str, int]] = {}
        self._series_max_id = 0
        self._series_stale = True
        # The metrics of raw rows (self._watermark, newest], not merged yet.
        self._pending: _Pending = {}
        self._pending_reports = 0
        self._pending_valid = False
        self._watermark: int | None = None
        self._folded_until: int | None = None
        self._pending_since: float | None = None

    @property
    def path(self) -> Path:
        return self._path

    # -- lifetime -------------------------------------------------------------
    async def open(self) -> None:
        if self._db is not None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self._path, isolation_level=None)
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            await prepare_new_database(db)
            mode = await self._enable_wal(db)
            if mode.lower() != "wal":
                _LOGGER.warning(
                    "%s: SQLite refused WAL mode (journal_mode is %s); the file system may not "
                    "support it — keep the hub database on a local disk",
                    self._path,
                    mode,
                )
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await db.execute(f"PRAGMA cache_size = -{int(self._cache_kib)}")
            await db.execute("PRAGMA temp_store = MEMORY")
            await db.execute(f"PRAGMA wal_autocheckpoint = {DEFAULT_WAL_AUTOCHECKPOINT_PAGES}")
            await db.execute(f"PRAGMA journal_size_limit = {DEFAULT_JOURNAL_SIZE_LIMIT}")
            await migrate(db, where=str(self._path))
            auto_vacuum = next(iter(await db.execute_fetchall("PRAGMA auto_vacuum")))[0]
            self._incremental_vacuum = auto_vacuum == 2
            watermark, newest = await self._rollup_marks(db)
        except BaseException:
            await db.close()
            raise
        self._db = db
        self._series_stale = True
        self._pending, self._pending_reports = {}, 0
        self._pending_since = None
        # A clean shutdown leaves nothing above the watermark; otherwise the
        # first merge rebuilds the aggregates from the raw rows.
        self._pending_valid = watermark == newest
        self._watermark, self._folded_until = watermark, newest

    async def _enable_wal(self, db: aiosqlite.Connection) -> str:
        """Switch to WAL and return the journal mode now in force.

        The switch needs an exclusive lock and SQLite answers "database is
        locked" at once instead of calling the busy handler, so when several
        processes open a new file together the losers retry for up to
        busy_timeout.
        """
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.01
        while True:
            try:
                return str(next(iter(await db.execute_fetchall("PRAGMA journal_mode = WAL")))[0])
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def close(self) -> None:
        db = self._db
        if db is None:
            return
        # No PRAGMA optimize here: statistics taken while the hub is young (a
        # handful of series) would later steer the planner into table scans,
        # and without statistics it picks the indexes every query here needs.
        try:
            if self._pending:
                await self.flush_rollups()
        finally:
            self._db = None
            await db.close()

    async def flush_rollups(self) -> None:
        """Merge the in-memory rollup aggregates into the rollup tables now.

        SQLite-specific; close() and prune() do it on their own, and history()
        never needs it.
        """
        await self._write(self._flush)

    async def release_memory(self) -> None:
        """See Store.release_memory: merge the rollup aggregates held in memory, then empty SQLite's page cache."""
        if self._pending_reports:
            await self.flush_rollups()
        db = self._conn()
        async with self._lock:
            await db.execute("PRAGMA shrink_memory")

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError(f"{self._path}: the store is not open — call open() first")
        return self._db

    @asynccontextmanager
    async def _transaction(self, mode: str = "IMMEDIATE") -> AsyncIterator[aiosqlite.Connection]:
        """Hold the store lock for one transaction; commit on success, roll back on error."""
        db = self._conn()
        async with self._lock:
            try:
                await db.execute(f"BEGIN {mode}")
            except BaseException:
                # A BEGIN cancelled while it ran (a stopping hub cancels its tasks) still opens the
                # transaction in the worker thread; the ROLLBACK queued behind it ends it before the
                # lock is released, or the next caller's BEGIN fails "within a transaction".
                try:
                    await db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the BEGIN itself failed: nothing to end
                raise
            try:
                yield db
                await db.execute("COMMIT")
            except BaseException as ended:
                if db.in_transaction:
                    try:
                        await db.execute("ROLLBACK")
                    except sqlite3.Error as err:
                        # A COMMIT cancelled while it ran finishes in the worker
                        # thread anyway; the ROLLBACK then finds no transaction.
                        # Raise what ended the transaction (above all a
                        # cancellation, which a loop's `except Exception` must
                        # not swallow), never this.
                        _LOGGER.debug("rollback after %r: %s", ended, err)
                raise

    async def _write(self, work: Any, *args: Any) -> Any:
        """Run ``work(db, *args)`` in a write transaction that may touch the rollup aggregates.

        If anything fails the in-memory aggregates no longer match the
        database, so they are dropped and rebuilt from raw rows at the next merge.
        """
        try:
            async with self._transaction() as db:
                return await work(db, *args)
        except BaseException:
            self._invalidate_pending()
            raise

    def _invalidate_pending(self) -> None:
        self._pending, self._pending_reports = {}, 0
        self._pending_valid = False
        self._watermark = self._folded_until = None
        self._pending_since = None
        self._series_stale = True

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        db = self._conn()
        async with self._lock:
            return list(await db.execute_fetchall(sql, params))

    # -- hub metadata -----------------------------------------------------------
    async def get_meta(self, key: str) -> str | None:
        rows = await self._fetchall("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    async def set_meta(self, key: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- nodes ------------------------------------------------------------------
    async def add_node(self, node: NodeRecord) -> None:
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT node_id FROM nodes WHERE node_id = ? OR public_key = ?",
                (node.node_id, node.public_key),
            )
            for (existing,) in rows:
                if existing == node.node_id:
                    raise ValueError(f"node {node.node_id!r} already exists")
                raise ValueError(
                    f"cannot add node {node.node_id!r}: its public key already belongs to node {existing!r}"
                )
            await db.execute(
                f"INSERT INTO nodes ({_NODE_COLUMNS}) VALUES ({_placeholders(17)})",
                (
                    node.node_id,
                    node.name,
                    node.hostname,
                    node.public_key,
                    node.created_at,
                    node.last_seen,
                    int(node.revoked),
                    int(node.local),
                    _encode(node.facts),
                    _encode(node.integrations),
                    _encode(node.fields),
                    _encode(node.capabilities),
                    node.agent_version,
                    node.epoch,
                    node.last_seq,
                    node.interval,
                    node.spool_dropped,
                ),
            )

    async def get_node(self, node_id: str) -> NodeRecord | None:
        rows = await self._fetchall(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE node_id = ?", (node_id,))
        return _node_from_row(rows[0]) if rows else None

    async def get_node_by_key(self, public_key: str) -> NodeRecord | None:
        rows = await self._fetchall(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE public_key = ?", (public_key,))
        return _node_from_row(rows[0]) if rows else None

    async def list_nodes(self) -> list[NodeRecord]:
        rows = await self._fetchall(f"SELECT {_NODE_COLUMNS} FROM nodes ORDER BY created_at, node_id")
        return [_node_from_row(row) for row in rows]

    async def update_node_hello(
        self,
        node_id: str,
        *,
        hostname: str,
        facts: dict[str, Any],
        integrations: list[dict[str, Any]],
        fields: dict[str, dict[str, str]],
        capabilities: list[str],
        agent_version: str,
        epoch: str,
        seen_at: float,
    ) -> NodeRecord:
        """See Store.update_node_hello; raises KeyError if there is no such node."""
        async with self._transaction() as db:
            cursor = await db.execute(
                """
                UPDATE nodes SET
                    hostname = ?, facts = ?, integrations = ?, fields = ?, capabilities = ?,
                    agent_version = ?,
                    last_seq = CASE WHEN epoch = ?7 THEN last_seq ELSE 0 END,
                    epoch = ?7,
                    last_seen = max(coalesce(last_seen, ?8), ?8)
                WHERE node_id = ?9
                """,
                (
                    hostname,
                    _encode(facts),
                    _encode(integrations),
                    _encode(fields),
                    _encode(capabilities),
                    agent_version,
                    epoch,
                    seen_at,
                    node_id,
                ),
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no node {node_id!r}")
            rows = await db.execute_fetchall(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE node_id = ?", (node_id,))
            return _node_from_row(next(iter(rows)))

    async def touch_nodes(self, seen: dict[str, float]) -> None:
        if not seen:
            return
        async with self._transaction() as db:
            await db.executemany(
                "UPDATE nodes SET last_seen = max(coalesce(last_seen, ?1), ?1) WHERE node_id = ?2",
                [(seen_at, node_id) for node_id, seen_at in seen.items()],
            )

    async def set_node_revoked(self, node_id: str, revoked: bool) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE nodes SET revoked = ? WHERE node_id = ?", (int(revoked), node_id)
            )
            return cursor.rowcount > 0

    # -- join tokens ------------------------------------------------------------
    async def add_join_token(self, token_id: str, secret_hash: str, token: JoinToken) -> None:
        """Store a join token; raises ValueError if ``token_id`` exists.

        ``token.token_id`` is ignored in favour of ``token_id``.
        """
        try:
            async with self._transaction() as db:
                await db.execute(
                    "INSERT INTO join_tokens (token_id, secret_hash, created_at, expires_at, uses_left, revoked, note) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        token_id,
                        secret_hash,
                        token.created_at,
                        token.expires_at,
                        token.uses_left,
                        int(token.revoked),
                        token.note,
                    ),
                )
        except aiosqlite.IntegrityError as err:
            raise ValueError(f"join token {token_id!r} already exists") from err

    async def use_join_token(self, token_id: str, secret_hash: str, now: float) -> JoinToken | None:
        """See Store.use_join_token; the returned token shows the uses left after this one."""
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT secret_hash, created_at, expires_at, uses_left, revoked, note "
                "FROM join_tokens WHERE token_id = ?",
                (token_id,),
            )
            if not rows:
                return None
            stored_hash, created_at, expires_at, uses_left, revoked, note = next(iter(rows))
            if not hmac.compare_digest(stored_hash.encode(), secret_hash.encode()):
                return None
            if revoked or expires_at <= now or uses_left <= 0:
                return None
            cursor = await db.execute(
                "UPDATE join_tokens SET uses_left = uses_left - 1 "
                "WHERE token_id = ? AND uses_left > 0 AND revoked = 0",
                (token_id,),
            )
            if cursor.rowcount != 1:
                return None
            return JoinToken(token_id, created_at, expires_at, uses_left - 1, False, note)

    async def list_join_tokens(self) -> list[JoinToken]:
        rows = await self._fetchall(
            "SELECT token_id, created_at, expires_at, uses_left, revoked, note "
            "FROM join_tokens ORDER BY created_at, token_id"
        )
        return [_token_from_row(row) for row in rows]

    async def revoke_join_token(self, token_id: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute("UPDATE join_tokens SET revoked = 1 WHERE token_id = ?", (token_id,))
            return cursor.rowcount > 0

    # -- reports and metrics ----------------------------------------------------
    async def ingest(self, reports: list[Report]) -> list[bool]:
        """See Store.ingest. Reports for node ids the store does not know are skipped (False).

        The common batch (every series known, no rollup merge due) is one trip
        to SQLite's thread: BEGIN, the nodes' cursors, every insert and upsert
        and COMMIT run there as one call, instead of one thread hand-off per
        statement, which is what a report cost most at a steady 1 report/s per
        agent. Anything else takes the general path with the same rows.
        """
        if not reports:
            return []
        if self._series_stale or self._flush_due(reports) or self._new_series(reports):
            return await self._write(self._ingest, reports)
        db = self._conn()
        try:
            async with self._lock:
                done = await db._execute(_ingest_rows, db._conn, reports, True)  # noqa: SLF001 - aiosqlite's own thread
                return self._ingested(done)
        except BaseException:
            self._invalidate_pending()
            raise

    def _flush_due(self, reports: list[Report]) -> bool:
        """Could storing ``reports`` make a rollup merge due? (Errs towards yes: then the general path decides exactly.)"""
        if self._pending_reports + len(reports) >= self._max_pending:
            return True
        received = [report.received_at for report in reports]
        since = self._pending_since if self._pending_since is not None else min(received)
        return max(received) - since >= self._flush_seconds

    def _new_series(self, reports: list[Report]) -> bool:
        series = self._series
        for report in reports:
            known = series.get(report.node_id)
            if known is None or not known.keys() >= report.metrics.keys():
                return True
        return False

    async def _ingest(self, db: aiosqlite.Connection, reports: list[Report]) -> list[bool]:
        if self._series_stale:
            await self._load_series(db)
        done = await db._execute(_ingest_rows, db._conn, reports, False)  # noqa: SLF001 - inside the open transaction
        accepted = self._ingested(done)
        if not done.raw_rows:
            return accepted
        missing: dict[str, set[str]] = {}
        series_cache = self._series
        for node_id, _, metrics in done.kept:
            known = series_cache.get(node_id)
            new = metrics.keys() - known.keys() if known is not None else set(metrics)
            if new:
                missing.setdefault(node_id, set()).update(new)
        if missing:
            await self._ensure_series(db, missing)
        assert self._pending_since is not None
        if done.last_received - self._pending_since >= self._flush_seconds or self._pending_reports >= self._max_pending:
            await self._flush(db)
        return accepted

    def _ingested(self, done: _Ingested) -> list[bool]:
        """Fold what a batch stored into the rollup aggregates kept in memory; returns which reports were stored."""
        if done.unknown:
            _LOGGER.warning(
                "ingest: skipped reports for %d unknown node(s): %s", len(done.unknown), ", ".join(sorted(done.unknown))
            )
        if not done.raw_rows:
            return done.accepted
        pending = self._pending
        for node_id, collected_at, metrics in done.kept:
            if metrics:
                key = (node_id, int(collected_at // _MINUTE) * _MINUTE)
                group = pending.get(key)
                if group is None:
                    pending[key] = [metrics]
                else:
                    group.append(metrics)
                self._pending_reports += 1
        if self._folded_until is None or done.newest_raw - done.raw_rows != self._folded_until:
            # Raw rows from elsewhere arrived since our last look; the next
            # merge rebuilds the aggregates from the raw table.
            self._pending_valid = False
        self._folded_until = done.newest_raw
        if self._pending_since is None:
            self._pending_since = done.first_received
        return done.accepted

    async def _load_series(self, db: aiosqlite.Connection) -> None:
        series: dict[str, dict[str, int]] = {}
        max_id = 0
        for series_id, node_id, name in await db.execute_fetchall(
            "SELECT series_id, node_id, series FROM metric_series"
        ):
            series.setdefault(node_id, {})[name] = series_id
            if series_id > max_id:
                max_id = series_id
        self._series, self._series_max_id, self._series_stale = series, max_id, False

    async def _ensure_series(self, db: aiosqlite.Connection, missing: dict[str, set[str]]) -> None:
        """Give every (node, series) in ``missing`` a catalog id, in the cache too."""
        await db.executemany(
            "INSERT OR IGNORE INTO metric_series (node_id, series) VALUES (?, ?)",
            [(node_id, name) for node_id, names in missing.items() for name in names],
        )
        rows = await db.execute_fetchall(
            "SELECT series_id, node_id, series FROM metric_series WHERE series_id > ?", (self._series_max_id,)
        )
        for series_id, node_id, name in rows:
            self._series.setdefault(node_id, {})[name] = series_id
            if series_id > self._series_max_id:
                self._series_max_id = series_id
        for node_id, names in missing.items():
            if not names <= self._series.get(node_id, {}).keys():
                # The cache had fallen behind the catalog in a way ids cannot show.
                await self._load_series(db)
                return

    async def _rollup_marks(self, db: aiosqlite.Connection) -> tuple[int, int]:
        """(raw_watermark, id of the newest raw row ever inserted)."""
        rows = await db.execute_fetchall(
            "SELECT raw_watermark, "
            "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'metric_raw'), 0) "
            "FROM rollup_state WHERE id = 1"
        )
        watermark, newest = next(iter(rows))
        return int(watermark), int(newest)

    async def _flush(self, db: aiosqlite.Connection) -> None:
        """Merge the aggregates into the rollup tables; runs inside a write transaction."""
        watermark, newest = await self._rollup_marks(db)
        # The aggregates in memory are usable only if they cover exactly the
        # raw rows (watermark, newest]: nobody else merged or ingested since.
        if not self._pending_valid or watermark != self._watermark or newest != self._folded_until:
            if self._pending_valid:
                _LOGGER.debug("%s: another process merged rollups; rebuilding from raw rows", self._path)
            self._pending, self._pending_reports = {}, 0
            await self._load_series(db)
            await self._fold_raw_after(db, watermark)
        if self._pending:
            if self._pending_reports >= _AGGREGATE_IN_THREAD_REPORTS:
                # Keep the event loop responsive while a big merge is computed.
                minute_rows, hour_rows = await asyncio.to_thread(_rollup_rows, self._pending, self._series)
            else:
                minute_rows, hour_rows = _rollup_rows(self._pending, self._series)
            await db.executemany(_SQL_MERGE_ROLLUP.format(table="metric_minute"), minute_rows)
            await db.executemany(_SQL_MERGE_ROLLUP.format(table="metric_hour"), hour_rows)
        if newest != watermark:
            await db.execute("UPDATE rollup_state SET raw_watermark = ? WHERE id = 1", (newest,))
        self._pending, self._pending_reports = {}, 0
        self._watermark = self._folded_until = newest
        self._pending_valid = True
        self._pending_since = None

    async def _fold_raw_after(self, db: aiosqlite.Connection, watermark: int) -> None:
        rows = await db.execute_fetchall(
            'SELECT node_id, ts, "values" FROM metric_raw WHERE id > ? ORDER BY id', (watermark,)
        )
        if not rows:
            return
        parsed = [(node_id, _decode(values), ts) for node_id, ts, values in rows]
        missing: dict[str, set[str]] = {}
        for node_id, metrics, _ts in parsed:
            new = metrics.keys() - self._series.get(node_id, {}).keys()
            if new:
                missing.setdefault(node_id, set()).update(new)
        if missing:
            await self._ensure_series(db, missing)
        for node_id, metrics, ts in parsed:
            if metrics:
                self._pending.setdefault((node_id, int(ts // _MINUTE) * _MINUTE), []).append(metrics)
                self._pending_reports += 1
        _LOGGER.info("%s: folded %d raw report(s) into the metric rollups", self._path, len(rows))

    async def latest_state(self, node_id: str) -> NodeState:
        async with self._transaction("DEFERRED") as db:
            state_rows = await db.execute_fetchall(
                "SELECT domain, collected_at, data FROM node_state WHERE node_id = ? ORDER BY domain", (node_id,)
            )
            metric_rows = await db.execute_fetchall(
                "SELECT collected_at, metrics FROM node_metrics_latest WHERE node_id = ?", (node_id,)
            )
        data = {domain: _decode(raw) for domain, _collected_at, raw in state_rows}
        collected_at: float | None = None
        metrics: dict[str, float] = {}
        for row_collected_at, raw in metric_rows:
            collected_at = row_collected_at
            metrics = _decode(raw)
        if collected_at is None and state_rows:
            collected_at = max(row[1] for row in state_rows)
        return NodeState(node_id=node_id, collected_at=collected_at, data=data, metrics=metrics)

    async def latest_metrics(self) -> dict[str, dict[str, float]]:
        rows = await self._fetchall("SELECT node_id, metrics FROM node_metrics_latest")
        return {node_id: _decode(raw) for node_id, raw in rows}

    async def metric_series(self, node_id: str) -> list[str]:
        rows = await self._fetchall(
            "SELECT series FROM metric_series WHERE node_id = ? ORDER BY series", (node_id,)
        )
        return [name for (name,) in rows]

    async def history(
        self, node_id: str, series: list[str], start: float, end: float, resolution: str
    ) -> dict[str, list[tuple[float, float, float, float]]]:
        """See Store.history. A rollup point is included when its bucket start is in [start, end].

        Raises ValueError for a resolution other than raw, minute or hour.
        """
        if resolution not in RESOLUTIONS:
            raise ValueError(f"unknown resolution {resolution!r}; use one of {', '.join(RESOLUTIONS)}")
        names = list(dict.fromkeys(series))
        result: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in names}
        if not names or end < start:
            return result
        if resolution == RES_RAW:
            await self._raw_history(node_id, names, start, end, result)
        else:
            await self._rollup_history(node_id, names, start, end, resolution, result)
        return result

    async def _raw_history(
        self,
        node_id: str,
        names: list[str],
        start: float,
        end: float,
        result: dict[str, list[tuple[float, float, float, float]]],
    ) -> None:
        # json_each rather than json_extract: a series name is a JSON key that
        # may hold any character, and a path expression cannot quote all of them.
        async with self._transaction("DEFERRED") as db:
            for chunk in _chunks(names):
                rows = await db.execute_fetchall(
                    f"""
                    SELECT r.ts, j.key, j.value
                    FROM metric_raw AS r, json_each(r."values") AS j
                    WHERE r.node_id = ? AND r.ts >= ? AND r.ts <= ?
                      AND j.key IN ({_placeholders(len(chunk))})
                    ORDER BY r.ts, r.id
                    """,
                    (node_id, start, end, *chunk),
                )
                for ts, name, value in rows:
                    value = float(value)
                    result[name].append((ts, value, value, value))

    async def _rollup_history(
        self,
        node_id: str,
        names: list[str],
        start: float,
        end: float,
        resolution: str,
        result: dict[str, list[tuple[float, float, float, float]]],
    ) -> None:
        width = BUCKET_SECONDS[resolution]
        table = _ROLLUP_TABLES[resolution]
        buckets: dict[str, dict[int, list[float]]] = {name: {} for name in names}
        async with self._transaction("DEFERRED") as db:
            watermark, _newest = await self._rollup_marks(db)
            series_names: dict[int, str] = {}
            for chunk in _chunks(names):
                rows = await db.execute_fetchall(
                    f"SELECT series_id, series FROM metric_series "
                    f"WHERE node_id = ? AND series IN ({_placeholders(len(chunk))})",
                    (node_id, *chunk),
                )
                series_names.update(rows)
            for chunk in _chunks(list(series_names)):
                rows = await db.execute_fetchall(
                    f"SELECT series_id, bucket_ts, sum, count, min, max FROM {table} "
                    f"WHERE series_id IN ({_placeholders(len(chunk))}) AND bucket_ts >= ? AND bucket_ts <= ?",
                    (*chunk, start, end),
                )
                for series_id, bucket_ts, total, count, low, high in rows:
                    buckets[series_names[series_id]][bucket_ts] = [total, count, low, high]
            # Raw rows not merged yet; "+node_id" keeps SQLite on the rowid range,
            # which is short, instead of the node's whole raw history.
            tail = await db.execute_fetchall(
                'SELECT ts, "values" FROM metric_raw WHERE id > ? AND +node_id = ? AND ts >= ? AND ts < ?',
                (watermark, node_id, math.floor(start / width) * width, end + width),
            )
        for ts, raw in tail:
            bucket_ts = int(ts // width) * width
            if not start <= bucket_ts <= end:
                continue
            metrics = _decode(raw)
            for name in names:
                value = metrics.get(name)
                if value is None:
                    continue
                acc = buckets[name].get(bucket_ts)
                if acc is None:
                    buckets[name][bucket_ts] = [value, 1, value, value]
                else:
                    acc[0] += value
                    acc[1] += 1
                    acc[2] = min(acc[2], value)
                    acc[3] = max(acc[3], value)
        for name, by_bucket in buckets.items():
            result[name] = [
                (float(bucket_ts), total / count, low, high)
                for bucket_ts, (total, count, low, high) in sorted(by_bucket.items())
            ]

    async def prune(self, now: float, retention: Retention) -> dict[str, int]:
        counts = await self._write(self._prune, now, retention)
        await self._release_free_pages()
        return counts

    async def _prune(self, db: aiosqlite.Connection, now: float, retention: Retention) -> dict[str, int]:
        # Fold the raw tail first: raw rows about to go must reach the rollups.
        await self._flush(db)
        # The IN (SELECT ...) forms let SQLite walk each node's or series' index
        # range instead of scanning the whole table.
        raw = await db.execute(
            "DELETE FROM metric_raw WHERE node_id IN (SELECT node_id FROM nodes) AND ts < ?",
            (now - retention.raw,),
        )
        minute = await db.execute(
            "DELETE FROM metric_minute WHERE series_id IN (SELECT series_id FROM metric_series) AND bucket_ts < ?",
            (now - retention.minute,),
        )
        hour = await db.execute(
            "DELETE FROM metric_hour WHERE series_id IN (SELECT series_id FROM metric_series) AND bucket_ts < ?",
            (now - retention.hour,),
        )
        # Series whose history is all gone leave the catalog (containers come and go).
        gone = await db.execute(
            """
            DELETE FROM metric_series
            WHERE NOT EXISTS (SELECT 1 FROM metric_hour AS h WHERE h.series_id = metric_series.series_id)
              AND NOT EXISTS (SELECT 1 FROM metric_minute AS m WHERE m.series_id = metric_series.series_id)
            """
        )
        if gone.rowcount:
            self._series_stale = True
        await db.execute(
            "DELETE FROM join_tokens WHERE expires_at < ?1 "
            "OR ((uses_left <= 0 OR revoked) AND created_at < ?1)",
            (now - JOIN_TOKEN_KEEP_SECONDS,),
        )
        return {RES_RAW: raw.rowcount, RES_MINUTE: minute.rowcount, RES_HOUR: hour.rowcount}

    async def _release_free_pages(self) -> None:
        """Give free pages beyond FREE_PAGES_KEPT_RATIO of the used ones back to the file system."""
        if not self._incremental_vacuum:
            return
        db = self._conn()
        async with self._lock:
            free = next(iter(await db.execute_fetchall("PRAGMA freelist_count")))[0]
            pages = next(iter(await db.execute_fetchall("PRAGMA page_count")))[0]
            excess = free - int((pages - free) * FREE_PAGES_KEPT_RATIO)
            if excess > 0:
                # Through execute() the sqlite3 module steps this pragma once,
                # which frees a single page; executescript runs it to the end.
                await db.executescript(f"PRAGMA incremental_vacuum({int(excess)});")
