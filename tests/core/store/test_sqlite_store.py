"""The SQLite store against real database files: nodes, join tokens, ingest, history, prune."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from roost.core.store import NodeRecord, Report, Retention
from roost.core.store.sqlite import SQLiteStore

# The start of an hour (2025-11-14 08:00:00 UTC), so bucket arithmetic stays readable.
T0 = 1_763_107_200.0
CPU = "linux_host.cpu_percent"
MEM = "linux_host.mem_used_bytes"


def make_node(n: int, **overrides: Any) -> NodeRecord:
    values: dict[str, Any] = {
        "node_id": f"node-{n}",
        "name": f"Node {n}",
        "hostname": f"host{n}.lan",
        "public_key": f"pubkey-{n}",
        "created_at": T0 - 86400 + n,
        "epoch": "e1",
    }
    values.update(overrides)
    return NodeRecord(**values)


def make_report(
    node_id: str,
    seq: int,
    collected_at: float,
    metrics: dict[str, Any] | None = None,
    *,
    data: dict[str, Any] | None = None,
    epoch: str = "e1",
    received_at: float | None = None,
    integrations: list[dict[str, Any]] | None = None,
    interval: float | None = 10.0,
    spool_dropped: int = 0,
) -> Report:
    return Report(
        node_id=node_id,
        seq=seq,
        epoch=epoch,
        collected_at=collected_at,
        received_at=collected_at + 0.5 if received_at is None else received_at,
        data={"linux_host": {"seq": seq}} if data is None else data,
        metrics={CPU: float(seq)} if metrics is None else metrics,
        integrations=[{"domain": "linux_host", "state": "loaded"}] if integrations is None else integrations,
        interval=interval,
        spool_dropped=spool_dropped,
    )


def rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the file with plain sqlite3, as a second process would."""
    with sqlite3.connect(path) as db:
        return db.execute(sql, params).fetchall()


def rollup_table(path: Path, table: str, node_id: str, series: str) -> list[tuple[Any, ...]]:
    return rows(
        path,
        f"SELECT m.bucket_ts, m.sum, m.count, m.min, m.max FROM {table} AS m "
        "JOIN metric_series AS s USING (series_id) WHERE s.node_id = ? AND s.series = ? ORDER BY m.bucket_ts",
        (node_id, series),
    )


# -- hub metadata --------------------------------------------------------------


async def test_meta_set_get_overwrite(store: SQLiteStore) -> None:
    assert await store.get_meta("hub_id") is None
    await store.set_meta("hub_id", "one")
    await store.set_meta("hub_id", "two")
    assert await store.get_meta("hub_id") == "two"


# -- nodes -----------------------------------------------------------------------


async def test_node_round_trip_keeps_every_field(store: SQLiteStore) -> None:
    node = make_node(
        1,
        last_seen=T0,
        revoked=True,
        local=True,
        facts={"os": "Debian", "cpus": 4, "nested": {"a": [1, 2]}},
        integrations=[{"domain": "docker", "state": "loaded"}],
        fields={"linux_host.cpu_percent": {"unit": "%", "label": "CPU"}},
        capabilities=["host.metrics.read", "docker.read"],
        agent_version="0.1.0",
        epoch="spool-1",
        last_seq=42,
        interval=15.0,
        spool_dropped=3,
    )
    await store.add_node(node)
    await store.add_node(make_node(2))

    assert await store.get_node("node-1") == node
    assert await store.get_node_by_key("pubkey-1") == node
    assert await store.get_node("nope") is None
    assert await store.get_node_by_key("nope") is None
    assert [n.node_id for n in await store.list_nodes()] == ["node-1", "node-2"]


async def test_add_node_refuses_duplicate_id_or_key(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    with pytest.raises(ValueError, match="node 'node-1' already exists"):
        await store.add_node(make_node(1, public_key="another-key"))
    with pytest.raises(ValueError, match="public key already belongs to node 'node-1'"):
        await store.add_node(make_node(2, public_key="pubkey-1"))
    assert [n.node_id for n in await store.list_nodes()] == ["node-1"]


async def test_hello_updates_node_and_a_new_epoch_resets_last_seq(store: SQLiteStore) -> None:
    await store.add_node(make_node(1, last_seq=7, last_seen=T0 + 100))

    same = await store.update_node_hello(
        "node-1",
        hostname="renamed.lan",
        facts={"os": "Alpine"},
        integrations=[{"domain": "docker"}],
        fields={"x": {"unit": "B"}},
        capabilities=["docker.read"],
        agent_version="0.2.0",
        epoch="e1",
        seen_at=T0 + 50,  # older than what is stored: last_seen keeps the newer value
    )
    assert same.last_seq == 7
    assert same.last_seen == T0 + 100
    assert (same.hostname, same.facts, same.agent_version) == ("renamed.lan", {"os": "Alpine"}, "0.2.0")
    assert same.integrations == [{"domain": "docker"}]
    assert same.fields == {"x": {"unit": "B"}}
    assert same.capabilities == ["docker.read"]

    fresh = await store.update_node_hello(
        "node-1",
        hostname="renamed.lan",
        facts={},
        integrations=[],
        fields={},
        capabilities=[],
        agent_version="0.2.0",
        epoch="e2",
        seen_at=T0 + 200,
    )
    assert (fresh.epoch, fresh.last_seq, fresh.last_seen) == ("e2", 0, T0 + 200)
    assert await store.get_node("node-1") == fresh

    with pytest.raises(KeyError):
        await store.update_node_hello(
            "nope", hostname="", facts={}, integrations=[], fields={}, capabilities=[], agent_version="",
            epoch="", seen_at=0,
        )


async def test_touch_nodes_only_moves_last_seen_forward(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    await store.add_node(make_node(2, last_seen=T0 + 500))
    await store.touch_nodes({"node-1": T0 + 10, "node-2": T0 + 20, "unknown": T0})
    assert (await store.get_node("node-1")).last_seen == T0 + 10  # type: ignore[union-attr]
    assert (await store.get_node("node-2")).last_seen == T0 + 500  # type: ignore[union-attr]
    await store.touch_nodes({})


async def test_set_node_revoked(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    assert await store.set_node_revoked("node-1", True)
    assert (await store.get_node("node-1")).revoked  # type: ignore[union-attr]
    assert await store.set_node_revoked("node-1", False)
    assert not (await store.get_node("node-1")).revoked  # type: ignore[union-attr]
    assert not await store.set_node_revoked("nope", True)


# -- join tokens -------------------------------------------------------------------


def token(token_id: str = "t1", *, uses: int = 2, ttl: float = 3600, note: str = "rack") -> Any:
    from roost.core.store import JoinToken

    return JoinToken(token_id=token_id, created_at=T0, expires_at=T0 + ttl, uses_left=uses, note=note)


async def test_join_token_uses_are_spent_then_refused(store: SQLiteStore) -> None:
    await store.add_join_token("t1", "hash-1", token(uses=2))
    first = await store.use_join_token("t1", "hash-1", T0 + 1)
    assert first is not None and (first.token_id, first.uses_left, first.note) == ("t1", 1, "rack")
    second = await store.use_join_token("t1", "hash-1", T0 + 2)
    assert second is not None and second.uses_left == 0
    assert await store.use_join_token("t1", "hash-1", T0 + 3) is None
    assert [(t.token_id, t.uses_left) for t in await store.list_join_tokens()] == [("t1", 0)]


async def test_join_token_wrong_secret_is_refused_and_spends_nothing(store: SQLiteStore) -> None:
    await store.add_join_token("t1", "hash-1", token(uses=1))
    assert await store.use_join_token("t1", "hash-2", T0) is None
    assert await store.use_join_token("t1", "", T0) is None
    assert await store.use_join_token("unknown", "hash-1", T0) is None
    assert (await store.list_join_tokens())[0].uses_left == 1
    assert await store.use_join_token("t1", "hash-1", T0) is not None


async def test_join_token_expiry(store: SQLiteStore) -> None:
    await store.add_join_token("t1", "h", token(ttl=60))
    assert await store.use_join_token("t1", "h", T0 + 60) is None  # expires_at itself is too late
    assert await store.use_join_token("t1", "h", T0 + 59.9) is not None


async def test_join_token_revoked(store: SQLiteStore) -> None:
    await store.add_join_token("t1", "h", token())
    assert await store.revoke_join_token("t1")
    assert not await store.revoke_join_token("unknown")
    assert await store.use_join_token("t1", "h", T0) is None
    assert (await store.list_join_tokens())[0].revoked


async def test_join_token_ids_are_unique(store: SQLiteStore) -> None:
    await store.add_join_token("t1", "h", token())
    with pytest.raises(ValueError, match="already exists"):
        await store.add_join_token("t1", "other", token())


async def test_concurrent_use_from_two_connections_never_overspends(db_path: Path) -> None:
    uses = 7
    hub, cli = SQLiteStore(db_path), SQLiteStore(db_path)
    await hub.open()
    await cli.open()
    try:
        await hub.add_join_token("t1", "h", token(uses=uses))
        attempts = [store.use_join_token("t1", "h", T0) for _ in range(15) for store in (hub, cli)]
        results = await asyncio.gather(*attempts)
    finally:
        await hub.close()
        await cli.close()
    granted = [r for r in results if r is not None]
    assert len(granted) == uses
    assert sorted(r.uses_left for r in granted) == list(range(uses))  # each use saw its own decrement
    assert rows(db_path, "SELECT uses_left FROM join_tokens") == [(0,)]


# -- ingest -------------------------------------------------------------------------


async def test_ingest_empty_batch(store: SQLiteStore) -> None:
    assert await store.ingest([]) == []


async def test_resent_reports_are_skipped(store: SQLiteStore, db_path: Path) -> None:
    await store.add_node(make_node(1))
    r1, r2, r3 = (make_report("node-1", seq, T0 + 10 * seq) for seq in (1, 2, 3))

    assert await store.ingest([r1, r2]) == [True, True]
    # The agent lost the ack of r2 and resends it with r3; also r1 twice in one batch.
    assert await store.ingest([r2, r3, r3, r1]) == [False, True, False, False]

    node = await store.get_node("node-1")
    assert node is not None and node.last_seq == 3
    assert rows(db_path, "SELECT count(*) FROM metric_raw") == [(3,)]
    history = await store.history("node-1", [CPU], T0, T0 + 100, "raw")
    assert [p[1] for p in history[CPU]] == [1.0, 2.0, 3.0]


async def test_out_of_order_reports_in_one_batch_are_skipped(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    batch = [make_report("node-1", 5, T0 + 50), make_report("node-1", 4, T0 + 40), make_report("node-1", 6, T0 + 60)]
    assert await store.ingest(batch) == [True, False, True]


async def test_a_new_epoch_is_adopted(store: SQLiteStore) -> None:
    await store.add_node(make_node(1, epoch="old", last_seq=500))
    # The agent's spool was reset: seq starts again at 1 in a new epoch.
    assert await store.ingest([make_report("node-1", 1, T0, epoch="new"), make_report("node-1", 2, T0 + 10, epoch="new")]) == [True, True]
    node = await store.get_node("node-1")
    assert node is not None and (node.epoch, node.last_seq) == ("new", 2)
    assert await store.ingest([make_report("node-1", 2, T0 + 10, epoch="new")]) == [False]


async def test_hello_epoch_then_ingest(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    assert await store.ingest([make_report("node-1", 9, T0)]) == [True]
    await store.update_node_hello(
        "node-1", hostname="h", facts={}, integrations=[], fields={}, capabilities=[], agent_version="1",
        epoch="e2", seen_at=T0,
    )
    assert await store.ingest([make_report("node-1", 1, T0 + 10, epoch="e2")]) == [True]


async def test_reports_of_unknown_nodes_are_skipped_not_fatal(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    result = await store.ingest([make_report("ghost", 1, T0), make_report("node-1", 1, T0)])
    assert result == [False, True]
    assert await store.latest_metrics() == {"node-1": {CPU: 1.0}}


async def test_node_bookkeeping_from_reports(store: SQLiteStore) -> None:
    await store.add_node(make_node(1, last_seen=T0 + 1000))
    integrations_new = [{"domain": "linux_host", "state": "loaded"}, {"domain": "docker", "state": "loaded"}]
    await store.ingest(
        [
            make_report("node-1", 1, T0 + 2000, received_at=T0 + 2005, spool_dropped=4, interval=30.0, integrations=integrations_new),
            # Backlog collected earlier, arriving later: it must not roll integrations or interval back.
            make_report("node-1", 2, T0 + 100, received_at=T0 + 2001, spool_dropped=2, interval=10.0, integrations=[]),
        ]
    )
    node = await store.get_node("node-1")
    assert node is not None
    assert node.last_seen == T0 + 2005
    assert node.spool_dropped == 4
    assert node.interval == 30.0
    assert node.integrations == integrations_new
    assert node.last_seq == 2

    await store.ingest([make_report("node-1", 3, T0 + 50, received_at=T0 + 3000, integrations=[], interval=5.0)])
    node = await store.get_node("node-1")
    assert node is not None
    assert (node.integrations, node.interval, node.last_seen) == (integrations_new, 30.0, T0 + 3000)
    assert node.spool_dropped == 4  # a running total: a report saying 0 does not lower it

    await store.ingest([make_report("node-1", 4, T0 + 2010, integrations=[{"domain": "docker"}], interval=None, spool_dropped=9)])
    node = await store.get_node("node-1")
    assert node is not None
    assert (node.integrations, node.interval, node.spool_dropped) == ([{"domain": "docker"}], 30.0, 9)


async def test_late_backlog_lands_in_history_but_not_in_latest_state(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    fresh = make_report("node-1", 1, T0 + 600, {CPU: 60.0}, data={"linux_host": {"state": "fresh"}, "docker": {"n": 2}})
    assert await store.ingest([fresh]) == [True]
    # The backlog: newer seq, older collected_at, and one domain the fresh report did not have.
    late = make_report("node-1", 2, T0 + 30, {CPU: 3.0, MEM: 1.0}, data={"linux_host": {"state": "stale"}, "zfs": {"pools": 1}})
    assert await store.ingest([late]) == [True]

    state = await store.latest_state("node-1")
    assert state.collected_at == T0 + 600
    assert state.data == {"linux_host": {"state": "fresh"}, "docker": {"n": 2}, "zfs": {"pools": 1}}
    assert state.metrics == {CPU: 60.0}
    assert await store.latest_metrics() == {"node-1": {CPU: 60.0}}

    raw = await store.history("node-1", [CPU, MEM], T0, T0 + 3600, "raw")
    assert raw[CPU] == [(T0 + 30, 3.0, 3.0, 3.0), (T0 + 600, 60.0, 60.0, 60.0)]
    assert raw[MEM] == [(T0 + 30, 1.0, 1.0, 1.0)]
    minute = await store.history("node-1", [CPU], T0, T0 + 3600, "minute")
    assert minute[CPU] == [(T0, 3.0, 3.0, 3.0), (T0 + 600, 60.0, 60.0, 60.0)]


async def test_newest_state_wins_within_one_batch(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    batch = [
        make_report("node-1", 1, T0 + 20, {CPU: 2.0}, data={"d": {"v": "newest"}}),
        make_report("node-1", 2, T0 + 10, {CPU: 1.0}, data={"d": {"v": "older"}}),
    ]
    await store.ingest(batch)
    state = await store.latest_state("node-1")
    assert (state.collected_at, state.data, state.metrics) == (T0 + 20, {"d": {"v": "newest"}}, {CPU: 2.0})


async def test_latest_state_of_a_silent_node(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    state = await store.latest_state("node-1")
    assert (state.node_id, state.collected_at, state.data, state.metrics) == ("node-1", None, {}, {})


async def test_latest_metrics_and_series_per_node(store: SQLiteStore) -> None:
    for n in (1, 2):
        await store.add_node(make_node(n))
    await store.ingest(
        [
            make_report("node-1", 1, T0, {CPU: 1.0, MEM: 100}),
            make_report("node-2", 1, T0, {"docker.containers": 3}),
            make_report("node-1", 2, T0 + 10, {CPU: 2.0, "linux_host.temp[cpu0]": 50.5}),
        ]
    )
    assert await store.latest_metrics() == {
        "node-1": {CPU: 2.0, "linux_host.temp[cpu0]": 50.5},
        "node-2": {"docker.containers": 3.0},
    }
    assert await store.metric_series("node-1") == [CPU, MEM, "linux_host.temp[cpu0]"]
    assert await store.metric_series("node-2") == ["docker.containers"]
    assert await store.metric_series("nope") == []


async def test_values_that_are_not_finite_numbers_are_left_out(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    metrics = {CPU: 5, "up": True, "nan": math.nan, "inf": math.inf, "text": "12", "none": None}
    assert await store.ingest([make_report("node-1", 1, T0, metrics)]) == [True]
    assert await store.latest_metrics() == {"node-1": {CPU: 5.0, "up": 1.0}}
    assert await store.metric_series("node-1") == [CPU, "up"]
    minute = await store.history("node-1", [CPU, "nan"], T0, T0 + 60, "minute")
    assert minute == {CPU: [(T0, 5.0, 5.0, 5.0)], "nan": []}


async def test_a_failed_ingest_leaves_no_trace(rollup_store: SQLiteStore, db_path: Path) -> None:
    store = rollup_store
    await store.add_node(make_node(1))
    assert await store.ingest([make_report("node-1", 1, T0, {CPU: 1.0})]) == [True]
    broken = make_report("node-1", 2, T0 + 10, {CPU: 1000.0}, data={"linux_host": {"not json": {1, 2}}})
    with pytest.raises(TypeError):
        await store.ingest([broken])

    node = await store.get_node("node-1")
    assert node is not None and node.last_seq == 1
    assert rows(db_path, "SELECT count(*) FROM metric_raw") == [(1,)]
    assert await store.ingest([make_report("node-1", 2, T0 + 20, {CPU: 3.0})]) == [True]
    await store.flush_rollups()
    # The failed report's 1000.0 must not have reached the rollups.
    assert rollup_table(db_path, "metric_minute", "node-1", CPU) == [(T0, 4.0, 2, 1.0, 3.0)]
    assert (await store.history("node-1", [CPU], T0, T0, "minute"))[CPU] == [(T0, 2.0, 1.0, 3.0)]


async def test_a_steady_report_is_one_trip_to_sqlites_thread(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's usual report (series known, no merge due) is stored by one call in SQLite's thread, not one per statement."""
    store = SQLiteStore(db_path, rollup_flush_seconds=60)
    await store.open()
    try:
        await store.add_node(make_node(1))
        await store.ingest([make_report("node-1", 1, T0, {CPU: 1.0, MEM: 5.0})])  # creates the series
        db = store._db
        trips = 0
        execute = db._execute

        async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal trips
            trips += 1
            return await execute(fn, *args, **kwargs)

        monkeypatch.setattr(db, "_execute", counted)
        assert await store.ingest([make_report("node-1", 2, T0 + 10, {CPU: 2.0, MEM: 6.0})]) == [True]
        assert trips == 1
        assert rows(db_path, "SELECT last_seq FROM nodes WHERE node_id = 'node-1'") == [(2,)]
        assert rows(db_path, "SELECT count(*) FROM metric_raw") == [(2,)]
    finally:
        await store.close()


async def test_the_one_trip_path_stores_what_the_general_path_stores(tmp_path: Path) -> None:
    """Same reports into a store that takes the one-trip path and one that merges rollups in every batch (the general path)."""
    batches = [
        [make_report("node-1", 1, T0, {CPU: 1.0}), make_report("node-2", 1, T0 + 1, {CPU: 7.0, MEM: 3.0})],
        [make_report("node-1", 2, T0 + 10, {CPU: 2.0}, data={"linux_host": {"a": [1, "ü"]}, "docker": {"n": 2}})],
        # A resend, an out-of-order pair, an unknown node, a non-finite value and late backlog.
        [make_report("node-1", 2, T0 + 10, {CPU: 99.0}), make_report("node-2", 3, T0 + 21, {CPU: 8.0, MEM: math.nan}),
         make_report("node-2", 2, T0 + 20, {CPU: 9.0}), make_report("node-9", 1, T0, {CPU: 1.0})],
        [make_report("node-1", 4, T0 + 5, {CPU: 3.0}, interval=30.0, spool_dropped=2, integrations=[{"domain": "docker", "state": "failed"}])],
        [make_report("node-1", 5, T0 + 40, {CPU: 4.0}, epoch="e2")],
    ]
    answers: dict[str, list[list[bool]]] = {}
    paths = {"one-trip": tmp_path / "a.db", "general": tmp_path / "b.db"}
    for name, path in paths.items():
        store = SQLiteStore(path, rollup_flush_seconds=3600 if name == "one-trip" else 0)
        await store.open()
        try:
            for n in (1, 2):
                await store.add_node(make_node(n))
            answers[name] = [await store.ingest(batch) for batch in batches]
            await store.flush_rollups()
        finally:
            await store.close()
    assert answers["one-trip"] == answers["general"]
    assert answers["general"][2] == [False, True, False, False]
    for sql in (
        "SELECT node_id, ts, \"values\" FROM metric_raw ORDER BY id",
        "SELECT * FROM node_metrics_latest ORDER BY node_id",
        "SELECT * FROM node_state ORDER BY node_id, domain",
        "SELECT node_id, epoch, last_seq, last_seen, spool_dropped, integrations, interval, last_collected_at FROM nodes ORDER BY node_id",
        "SELECT s.node_id, s.series, m.bucket_ts, m.sum, m.count, m.min, m.max FROM metric_minute AS m JOIN metric_series AS s USING (series_id) ORDER BY 1, 2, 3",
    ):
        assert rows(paths["one-trip"], sql) == rows(paths["general"], sql), sql


class _Word(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        {"cpu": 1.5, "big": 1e16, "tiny": 2.5e-7, "neg": -0.0, "int": 2**63 - 1, "u64": 2**64 - 1, "s": "ü\u2028\x7f\n\x01\"\\"},
        {"nan": math.nan}, {"inf": [math.inf, -math.inf]}, {"none": None}, {"huge": 2**64}, {"small": -(2**63) - 1},
        {"surrogate": "\ud800"}, {"set": {1, 2}}, {1: "int key"}, {"tuple": (1, 2)}, {"word": _Word("x")}, {"true": True, "list": [[], {}]},
    ],
)
def test_report_encoding_writes_what_json_writes(value: Any) -> None:
    """The store's fast encoder for report state and metrics gives the same values as json, or refuses the same."""
    from roost.core.store.sqlite import _encode, _encode_report

    try:
        expected: Any = repr(json.loads(_encode(value)))
    except (TypeError, ValueError) as err:
        expected = type(err)
    try:
        got: Any = repr(json.loads(_encode_report(value)))
    except (TypeError, ValueError) as err:
        got = type(err)
    assert got == expected


# -- rollups and history -------------------------------------------------------------


async def test_rollups_across_two_batches_in_the_same_bucket(rollup_store: SQLiteStore, db_path: Path) -> None:
    store = rollup_store
    await store.add_node(make_node(1))
    await store.ingest([make_report("node-1", 1, T0 + 5, {CPU: 10.0}), make_report("node-1", 2, T0 + 15, {CPU: 2.0})])
    await store.ingest([make_report("node-1", 3, T0 + 25, {CPU: 6.0}), make_report("node-1", 4, T0 + 75, {CPU: 8.0})])

    # Visible at once, whether or not the rollup tables have been merged yet.
    minute = await store.history("node-1", [CPU], T0, T0 + 3600, "minute")
    assert minute[CPU] == [(T0, 6.0, 2.0, 10.0), (T0 + 60, 8.0, 8.0, 8.0)]
    hour = await store.history("node-1", [CPU], T0, T0 + 3600, "hour")
    assert hour[CPU] == [(T0, 6.5, 2.0, 10.0)]

    await store.flush_rollups()
    assert rollup_table(db_path, "metric_minute", "node-1", CPU) == [(T0, 18.0, 3, 2.0, 10.0), (T0 + 60, 8.0, 1, 8.0, 8.0)]
    assert rollup_table(db_path, "metric_hour", "node-1", CPU) == [(T0, 26.0, 4, 2.0, 10.0)]
    # A third batch after the merge adds to the same rows.
    await store.ingest([make_report("node-1", 5, T0 + 30, {CPU: 1.0})])
    await store.flush_rollups()
    assert rollup_table(db_path, "metric_minute", "node-1", CPU)[0] == (T0, 19.0, 4, 1.0, 10.0)
    assert rollup_table(db_path, "metric_hour", "node-1", CPU) == [(T0, 27.0, 5, 1.0, 10.0)]
    assert (await store.history("node-1", [CPU], T0, T0, "minute"))[CPU] == [(T0, 19.0 / 4, 1.0, 10.0)]


async def test_rollups_with_series_coming_and_going(rollup_store: SQLiteStore, db_path: Path) -> None:
    store = rollup_store
    await store.add_node(make_node(1))
    await store.add_node(make_node(2))
    await store.ingest(
        [
            make_report("node-1", 1, T0 + 1, {CPU: 1.0, MEM: 10.0}),
            make_report("node-2", 1, T0 + 2, {CPU: 100.0}),
            make_report("node-1", 2, T0 + 11, {CPU: 3.0}),  # MEM missing from this report
            make_report("node-1", 3, T0 + 21, {MEM: 30.0, "new": 7.0}),
        ]
    )
    await store.flush_rollups()
    assert rollup_table(db_path, "metric_minute", "node-1", CPU) == [(T0, 4.0, 2, 1.0, 3.0)]
    assert rollup_table(db_path, "metric_minute", "node-1", MEM) == [(T0, 40.0, 2, 10.0, 30.0)]
    assert rollup_table(db_path, "metric_minute", "node-1", "new") == [(T0, 7.0, 1, 7.0, 7.0)]
    assert rollup_table(db_path, "metric_minute", "node-2", CPU) == [(T0, 100.0, 1, 100.0, 100.0)]


async def test_rollups_survive_reopen(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.add_node(make_node(1))
    await store.ingest([make_report("node-1", seq, T0 + 10 * seq, {CPU: float(seq)}) for seq in range(1, 4)])
    await store.close()

    store = SQLiteStore(db_path)
    await store.open()
    try:
        assert (await store.history("node-1", [CPU], T0, T0 + 60, "minute"))[CPU] == [(T0, 2.0, 1.0, 3.0)]
        assert rollup_table(db_path, "metric_minute", "node-1", CPU) == [(T0, 6.0, 3, 1.0, 3.0)]
    finally:
        await store.close()


async def test_rollups_recover_after_a_crash(db_path: Path) -> None:
    """A hub killed before it merged its rollups loses nothing: they are rebuilt from raw rows."""
    store = SQLiteStore(db_path)
    await store.open()
    await store.add_node(make_node(1))
    await store.close()

    script = textwrap.dedent(
        f"""
        import asyncio, os
        from pathlib import Path
        from roost.core.store import Report
        from roost.core.store.sqlite import SQLiteStore

        async def main():
            store = SQLiteStore(Path({str(db_path)!r}), rollup_flush_seconds=3600)
            await store.open()
            for seq in (1, 2, 3):
                report = Report("node-1", seq, "e1", {T0} + 10 * seq, {T0} + 10 * seq, {{}},
                                {{{CPU!r}: float(seq)}}, [])
                assert await store.ingest([report]) == [True]
            os._exit(0)  # no close(): the rollups were never merged

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    assert await process.wait() == 0
    assert rollup_table(db_path, "metric_minute", "node-1", CPU) == []

    store = SQLiteStore(db_path)
    await store.open()
    try:
        assert (await store.history("node-1", [CPU], T0, T0 + 60, "minute"))[CPU] == [(T0, 2.0, 1.0, 3.0)]
        assert await store.ingest([make_report("node-1", 4, T0 + 40, {CPU: 4.0})]) == [True]
        await store.flush_rollups()
        assert rollup_table(db_path, "metric_minute", "node-1", CPU) == [(T0, 10.0, 4, 1.0, 4.0)]
        assert rollup_table(db_path, "metric_hour", "node-1", CPU) == [(T0, 10.0, 4, 1.0, 4.0)]
    finally:
        await store.close()


async def test_another_process_merging_first_counts_nothing_twice(db_path: Path) -> None:
    hub, cli = SQLiteStore(db_path, rollup_flush_seconds=3600), SQLiteStore(db_path)
    await hub.open()
    await cli.open()
    try:
        await hub.add_node(make_node(1))
        await hub.ingest([make_report("node-1", 1, T0 + 1, {CPU: 1.0}), make_report("node-1", 2, T0 + 2, {CPU: 2.0})])
        await cli.prune(T0 + 10, Retention())  # merges what the hub still holds in memory
        assert rollup_table(db_path, "metric_minute", "node-1", CPU) == [(T0, 3.0, 2, 1.0, 2.0)]
        await hub.ingest([make_report("node-1", 3, T0 + 3, {CPU: 3.0})])
        await hub.flush_rollups()
        assert rollup_table(db_path, "metric_minute", "node-1", CPU) == [(T0, 6.0, 3, 1.0, 3.0)]
        assert (await cli.history("node-1", [CPU], T0, T0, "minute"))[CPU] == [(T0, 2.0, 1.0, 3.0)]
    finally:
        await hub.close()
        await cli.close()


async def test_deferred_merge_happens_after_the_flush_interval(db_path: Path) -> None:
    store = SQLiteStore(db_path, rollup_flush_seconds=60)
    await store.open()
    try:
        await store.add_node(make_node(1))
        await store.ingest([make_report("node-1", 1, T0, {CPU: 1.0})])
        await store.ingest([make_report("node-1", 2, T0 + 30, {CPU: 2.0})])
        assert rollup_table(db_path, "metric_minute", "node-1", CPU) == []
        await store.ingest([make_report("node-1", 3, T0 + 61, {CPU: 3.0})])
        assert rollup_table(db_path, "metric_minute", "node-1", CPU) == [(T0, 3.0, 2, 1.0, 2.0), (T0 + 60, 3.0, 1, 3.0, 3.0)]
    finally:
        await store.close()


async def test_history_per_resolution(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    await store.add_node(make_node(2))
    reports = [
        make_report("node-1", i + 1, T0 + 20 * i, {CPU: float(i), **({MEM: 1000.0 + i} if i % 2 else {})})
        for i in range(200)  # 200 reports, 20 s apart: 66 minutes
    ]
    await store.ingest(reports)
    await store.ingest([make_report("node-2", 1, T0, {CPU: 999.0})])

    raw = await store.history("node-1", [CPU, MEM, "missing"], T0 + 40, T0 + 100, "raw")
    assert raw[CPU] == [(T0 + t, t / 20, t / 20, t / 20) for t in (40, 60, 80, 100)]  # start and end included
    # Rows without the series are skipped.
    assert raw[MEM] == [(T0 + 60, 1003.0, 1003.0, 1003.0), (T0 + 100, 1005.0, 1005.0, 1005.0)]
    assert raw["missing"] == []

    minute = await store.history("node-1", [CPU], T0 + 60, T0 + 180, "minute")
    assert minute[CPU] == [(T0 + 60, 4.0, 3.0, 5.0), (T0 + 120, 7.0, 6.0, 8.0), (T0 + 180, 10.0, 9.0, 11.0)]

    hour = await store.history("node-1", [CPU, MEM], T0, T0 + 7200, "hour")
    assert hour[CPU] == [(T0, 89.5, 0.0, 179.0), (T0 + 3600, 189.5, 180.0, 199.0)]
    assert hour[MEM][0] == (T0, 1090.0, 1001.0, 1179.0)

    assert await store.history("node-1", [], T0, T0 + 60, "raw") == {}
    assert await store.history("node-1", [CPU], T0 + 60, T0, "minute") == {CPU: []}
    assert (await store.history("node-2", [CPU], T0, T0 + 7200, "hour"))[CPU] == [(T0, 999.0, 999.0, 999.0)]
    with pytest.raises(ValueError, match="unknown resolution 'day'"):
        await store.history("node-1", [CPU], T0, T0 + 60, "day")


async def test_history_of_series_with_awkward_names(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    names = ['disk.used[/mnt/"quoted"]', "net.rx[eth0.100]", "a$b", "ünïcode[ø]"]
    await store.ingest([make_report("node-1", 1, T0, {name: float(i) for i, name in enumerate(names)})])
    raw = await store.history("node-1", names, T0, T0, "raw")
    assert raw == {name: [(T0, float(i), float(i), float(i))] for i, name in enumerate(names)}
    minute = await store.history("node-1", names, T0, T0, "minute")
    assert minute == {name: [(T0, float(i), float(i), float(i))] for i, name in enumerate(names)}


async def test_history_asks_for_many_series_at_once(store: SQLiteStore) -> None:
    await store.add_node(make_node(1))
    names = [f"s{i}" for i in range(1200)]  # more than one IN (...) chunk
    await store.ingest([make_report("node-1", 1, T0, {name: 1.0 for name in names})])
    for resolution in ("raw", "minute", "hour"):
        history = await store.history("node-1", names, T0, T0, resolution)
        assert all(points == [(T0, 1.0, 1.0, 1.0)] for points in history.values()), resolution
        assert len(history) == 1200


# -- prune ------------------------------------------------------------------------------


async def test_prune_bounds_history_by_retention(rollup_store: SQLiteStore, db_path: Path) -> None:
    store = rollup_store
    await store.add_node(make_node(1))
    # One report every 10 minutes over 10 hours; "gone" only in the first 100 minutes.
    await store.ingest(
        [make_report("node-1", i + 1, T0 + 600 * i, {CPU: float(i), **({"gone": 1.0} if i < 10 else {})}) for i in range(60)]
    )
    now = T0 + 36000
    retention = Retention(raw=3 * 3600, minute=6 * 3600, hour=8 * 3600)
    deleted = await store.prune(now, retention)

    # raw: reports 0-41; minute: reports 0-23 of CPU and 0-9 of gone; hour: 08:00 and 09:00 of both.
    assert deleted == {"raw": 42, "minute": 24 + 10, "hour": 2 + 2}
    raw = await store.history("node-1", [CPU], T0, now, "raw")
    assert [p[0] for p in raw[CPU]][0] == now - 3 * 3600
    minute = await store.history("node-1", [CPU], T0, now, "minute")
    assert minute[CPU][0][0] == now - 6 * 3600
    assert len(minute[CPU]) == 36
    hour = await store.history("node-1", [CPU], T0, now, "hour")
    assert [p[0] for p in hour[CPU]] == [T0 + 3600 * h for h in range(2, 10)]
    # The hour rollups of pruned raw rows were merged before the raw rows went.
    assert hour[CPU][0] == (T0 + 7200, 14.5, 12.0, 17.0)
    assert await store.prune(now, retention) == {"raw": 0, "minute": 0, "hour": 0}
    # A series whose whole history is gone leaves the catalog.
    assert await store.metric_series("node-1") == [CPU]
    # And comes back when it reports again.
    await store.ingest([make_report("node-1", 100, now, {"gone": 5.0})])
    assert (await store.history("node-1", ["gone"], now - 60, now, "minute"))["gone"] == [(now, 5.0, 5.0, 5.0)]
    await store.flush_rollups()
    assert rollup_table(db_path, "metric_hour", "node-1", "gone") == [(now, 5.0, 1, 5.0, 5.0)]
    assert await store.metric_series("node-1") == ["gone", CPU]


async def test_prune_removes_finished_join_tokens_after_a_day(store: SQLiteStore) -> None:
    from roost.core.store import JoinToken

    day = 86400.0
    await store.add_join_token("fresh", "h", JoinToken("fresh", T0, T0 + day * 7, 1))
    await store.add_join_token("expired-recently", "h", JoinToken("expired-recently", T0 - day, T0 - 3600, 1))
    await store.add_join_token("expired-long-ago", "h", JoinToken("expired-long-ago", T0 - 9 * day, T0 - 2 * day, 1))
    await store.add_join_token("used-up-old", "h", JoinToken("used-up-old", T0 - 2 * day, T0 + day, 0))
    await store.add_join_token("used-up-new", "h", JoinToken("used-up-new", T0 - 3600, T0 + day, 0))
    await store.add_join_token("revoked-old", "h", JoinToken("revoked-old", T0 - 2 * day, T0 + day, 3, revoked=True))
    await store.prune(T0, Retention())
    assert sorted(t.token_id for t in await store.list_join_tokens()) == ["expired-recently", "fresh", "used-up-new"]


async def test_prune_gives_space_back(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    try:
        await store.add_node(make_node(1))
        metrics = {f"linux_host.metric_{i}[label]": 1.0 / (i + 3) for i in range(40)}
        for batch in range(8):
            await store.ingest(
                [make_report("node-1", batch * 250 + i + 1, T0 + 10 * (batch * 250 + i), metrics) for i in range(250)]
            )
        await store.flush_rollups()
        rows(db_path, "PRAGMA wal_checkpoint(TRUNCATE)")
        size_full = db_path.stat().st_size
        await store.prune(T0 + 10 * 86400, Retention(raw=3600, minute=3600, hour=3600))
    finally:
        await store.close()
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        free, pages = db.execute("PRAGMA freelist_count").fetchone()[0], db.execute("PRAGMA page_count").fetchone()[0]
    assert free <= (pages - free) * 0.1 + 1
    assert db_path.stat().st_size < size_full / 2


async def test_a_final_state_and_its_output_are_one_update(store: SQLiteStore) -> None:
    """update_job(append_output=...) writes the state and the output together, capped, and not at all when the state check fails."""
    from roost.core.store.jobs import JOB_ACTIVE, MAX_OUTPUT_CHARS, Job

    now = 1_700_000_000.0
    node = make_node(1)
    await store.add_node(node)
    await store.add_job(Job(job_id="j1", node_id=node.node_id, action="a.b", params={}, state="running", created_by="test", created_at=now, timeout=5, next_attempt_at=now))
    await store.append_job_output("j1", "progress\n")
    done = await store.update_job("j1", expect=JOB_ACTIVE, append_output="last line\n", state="succeeded", finished_at=now + 1)
    assert done is not None and done.state == "succeeded" and done.output == "progress\nlast line\n"
    # A resent result finds the job final: nothing changes, the output is not added twice.
    assert await store.update_job("j1", expect=JOB_ACTIVE, append_output="last line\n", state="succeeded") is None
    assert (await store.get_job("j1")).output == "progress\nlast line\n"
    big = await store.update_job("j1", append_output="x" * (MAX_OUTPUT_CHARS + 10), error="")
    assert big is not None and len(big.output) == MAX_OUTPUT_CHARS and big.output == "x" * MAX_OUTPUT_CHARS


async def test_a_cancelled_transaction_stays_cancelled_when_its_rollback_finds_nothing(store: SQLiteStore, monkeypatch) -> None:
    """A COMMIT cancelled mid-flight still completes in aiosqlite's thread, so the ROLLBACK that follows fails.

    That failure must not replace the cancellation: a background loop that
    catches Exception would swallow it and never stop (a hub shutdown hung so).
    The race cannot be timed in a test, so the COMMIT is made to land just
    before the ROLLBACK, which then fails for real in SQLite.
    """
    db = store._conn()
    real_execute = db.execute

    async def commit_lands_first(sql: str, *args: Any) -> Any:
        if sql == "ROLLBACK":
            await real_execute("COMMIT")
        return await real_execute(sql, *args)

    with pytest.raises(asyncio.CancelledError):
        async with store._transaction() as tx:
            await tx.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            monkeypatch.setattr(tx, "execute", commit_lands_first)
            raise asyncio.CancelledError
    monkeypatch.undo()
    assert await store.get_meta("k") == "v" and not db.in_transaction
