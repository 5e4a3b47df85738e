"""The windowed reducers' fast paths against the plain recomputation: the same values, and in the engine the same lifecycle."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from roost.core.config import load_hub_config
from roost.core.hub import alert_eval as ev
from roost.core.hub.app import build_hub
from roost.core.store import Report
from roost.core.store.sqlite import SQLiteStore


def test_rolling_window_gives_what_reduce_gives_over_random_sample_sequences():
    rng = random.Random(1234)
    for case in range(300):
        window = rng.choice([5.0, 30.0, 60.0, 300.0])
        limit = rng.choice([3, 8, 720])
        buf = ev.RollingWindow(limit)
        kept: list[tuple[float, float]] = []
        now = 0.0
        for _ in range(rng.randint(1, 120)):
            # Mostly forward in time, sometimes a repeat or an older stamp (ignored), sometimes a long gap that empties the window.
            now += rng.choice([0.0, -1.0, 1.0, 2.0, 5.0, 10.0, 400.0])
            value = float(rng.choice([rng.randint(-3, 3), rng.uniform(-1e6, 1e6), rng.random()]))
            accepted = not kept or now > kept[-1][0]
            if case % 2:  # the engine's one-call step
                buf.push(now, value, now - window)
            else:
                assert buf.add(now, value) == accepted, case
                buf.expire(now - window)
            if accepted:  # what a deque(maxlen=limit) of the points still in the window holds
                kept = (kept + [(now, value)])[-limit:]
            kept = [(ts, v) for ts, v in kept if ts >= now - window]
            for reducer in ev.REDUCERS:
                assert buf.reduced(reducer) == ev.reduce(reducer, kept, window, now), (case, reducer, kept)
            inside = [v for ts, v in kept if ts >= now - window]
            assert len(buf) == len(inside)
            if inside:
                assert (buf.high(), buf.low()) == (max(inside), min(inside))


RULES = [
    {"name": "avg up", "settings": {"series": "linux_host.disk_used_percent[*]", "label": "mountpoint", "reducer": "avg", "window": 60,
                                    "warning": 90, "warning_clear": 88, "critical": 95, "critical_clear": 93}},
    {"name": "max up", "for": 15, "settings": {"series": "linux_host.cpu_percent", "reducer": "max", "window": 30, "warning": 92}},
    {"name": "min up", "settings": {"series": "linux_host.cpu_percent", "reducer": "min", "window": 45, "warning": 90, "warning_clear": 89}},
    {"name": "min down", "settings": {"series": "linux_host.disk_used_percent[*]", "label": "mountpoint", "op": "<=", "reducer": "min",
                                      "window": 40, "warning": 86, "warning_clear": 87, "critical": 84}},
    {"name": "avg down", "for": 10, "settings": {"series": "linux_host.cpu_percent", "op": "<", "reducer": "avg", "window": 20, "warning": 87}},
]


@pytest.fixture
async def hub(tmp_path: Path):
    config = load_hub_config(None, overrides={"hub": {"data_dir": str(tmp_path), "discovery": False, "wol_broadcast": "127.0.0.1"}, "agent": {"enabled": False}})
    hub = build_hub(config, SQLiteStore(tmp_path / "roost.db"))
    hub.manager.load()
    await hub.open()
    try:
        yield hub
    finally:
        await hub.store.close()


async def test_the_engine_fast_path_keeps_the_lifecycle_a_full_recomputation_gives(hub):
    """Random reports into the real hub: the engine's live instances of windowed rules equal a replay of alert_eval.evaluate
    over conditions computed with reduce() from every sample kept since the start."""
    rng = random.Random(99)
    nodes = [(await hub.add_node(public_key=f"key{n}", hostname=f"n{n}", name=f"n{n}", facts={})).node_id for n in range(6)]
    rules = {}
    for body in RULES:
        rule = await hub.alerts.save_rule({"kind": "metric.threshold", "severity": "warning", "clear_for": 0, **body}, actor="test")
        rules[rule["id"]] = hub.alerts.rules[rule["id"]]
    clock = {"now": 1_000_000.0}
    hub.alerts.clock = lambda: clock["now"]
    history: dict[tuple[str, str], list[tuple[float, float]]] = {}
    reference: dict = {}
    transitions = 0
    for seq in range(1, 160):
        at = clock["now"] + rng.choice([1.0, 3.0, 5.0, 10.0, 15.0, 90.0])
        reports = []
        for n, node_id in enumerate(nodes):
            # Values wander around the thresholds (ties included), and a mountpoint comes and goes.
            metrics = {"linux_host.cpu_percent": float(rng.choice([rng.randint(84, 96), rng.uniform(84, 96)]))}
            for mount in ("/", "/srv") if (seq // 20 + n) % 3 else ("/",):
                metrics[f"linux_host.disk_used_percent[{mount}]"] = float(rng.choice([rng.randint(82, 97), rng.uniform(82, 97)]))
            for name, value in metrics.items():
                history.setdefault((node_id, name), []).append((at, value))
            reports.append(Report(node_id=node_id, seq=seq, epoch="e1", collected_at=at, received_at=at, data={}, metrics=metrics, integrations=[], interval=5))
        results = await hub.store.ingest(reports)
        hub._persisted(reports, results)
        hub.alerts._dirty.clear()
        clock["now"] = at
        await hub.alerts.evaluate_nodes(nodes)

        conditions, scopes = [], []
        for rid, rule in rules.items():
            for node_id in nodes:
                current = {next(iter(i["labels"].values()), None) if i["labels"] else None: i
                           for i in reference.values() if i["rule_id"] == rid and i["node_id"] == node_id}
                series = {name: points for (nid, name), points in history.items() if nid == node_id and name in hub._metrics[node_id]}
                covered = {name: series[name] for name, _ in ev.match_series(rule["settings"]["series"], series)}
                conditions.extend(ev.metric_conditions(rule, node_id, covered, current or None, at))
                scopes.append((rid, node_id))
        outcome = ev.evaluate(reference, conditions, scopes, rules, at)
        reference = outcome.state
        transitions += sum(1 for t in outcome.transitions if t.kind != ev.T_UPDATED)

        def shape(state):
            return sorted((i["rule_id"], i["node_id"], sorted(i["labels"].items()), i["state"], i["severity"], i["value"], i["active"], i["started_at"])
                          for i in state.values() if i["rule_id"] in rules)

        assert shape(hub.alerts.live) == shape(reference), f"report {seq}"
    assert transitions > 50  # the sequence really went through the lifecycle, many times


async def test_a_series_that_replaces_another_is_judged_in_the_same_report(hub):
    """A mount swapped for another (the same number of series) is matched again at once, not a minute later."""
    (node_id,) = [(await hub.add_node(public_key="k", hostname="n", name="n", facts={})).node_id]
    rule = await hub.alerts.save_rule({"name": "disk", "kind": "metric.threshold", "severity": "warning", "for": 0, "clear_for": 0,
                                       "settings": {"series": "linux_host.disk_used_percent[*]", "label": "mountpoint", "warning": 90}}, actor="test")
    clock = {"now": 1_000_000.0}
    hub.alerts.clock = lambda: clock["now"]
    for seq, mount in ((1, "/a"), (2, "/b")):
        at = clock["now"] = 1_000_000.0 + seq * 5
        metrics = {"linux_host.cpu_percent": 1.0, f"linux_host.disk_used_percent[{mount}]": 50.0 if mount == "/a" else 97.0}
        reports = [Report(node_id=node_id, seq=seq, epoch="e1", collected_at=at, received_at=at, data={}, metrics=metrics, integrations=[], interval=5)]
        hub._persisted(reports, await hub.store.ingest(reports))
        await hub.alerts.evaluate_nodes([node_id])
    firing = [i for i in hub.alerts.live.values() if i["rule_id"] == rule["id"]]
    assert [(i["state"], i["labels"]) for i in firing] == [("firing", {"mountpoint": "/b"})]
