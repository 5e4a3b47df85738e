"""Benchmark the alert engine against ingest in the same run; prints `name: value` lines (and never asserts).

A real hub (its SQLite store in a temp dir, the real AlertEngine, rule kinds
of the bundled integrations) holds --nodes nodes. Each round, every node
sends one report (--metrics metrics, docker state on a tenth of them); the
round's reports are ingested the way the hub's pipeline does it (one
SQLiteStore.ingest batch, then the hub's bookkeeping), and then every
enabled rule (the defaults plus enough made-up ones to reach --rules) is
judged for every node that reported, as the engine does after each stored
report. Both are timed with time.perf_counter and, as CPU time of the process, with
time.process_time; building the reports is not.
The goal is judging at no more than 10 % of ingesting.

    .venv/bin/python scripts/bench_alerts.py [--nodes 1000] [--rules 20] [--rounds 10] [--metrics 60]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from benchlib import out

from roost.core.config import load_hub_config
from roost.core.hub.app import build_hub
from roost.core.store import Report
from roost.core.store.sqlite import SQLiteStore

MOUNTS = ("/", "/srv", "/var/lib/docker", "/mnt/backup")


def metrics_for(node: int, round_no: int, count: int, rng: random.Random) -> dict[str, float]:
    """A node's figures: its own level (one node in 40 runs hot or full) plus a little noise from report to report."""
    own = random.Random(node)
    hot = node % 40 == 0

    def level(low: float, high: float) -> float:
        top = high if hot else low + (high - low) * 0.8
        return own.uniform(low, top) + rng.uniform(-0.5, 0.5)

    metrics = {
        "linux_host.cpu_percent": level(0, 100),
        "linux_host.mem_used_percent": level(20, 99),
        "linux_host.load_1": level(0, 4),
        "linux_host.uptime_s": 1000.0 + round_no,
        "linux_host.swap_used_percent": level(0, 50),
    }
    for mount in MOUNTS:
        metrics[f"linux_host.disk_used_percent[{mount}]"] = level(40, 99)
        metrics[f"linux_host.disk_free_bytes[{mount}]"] = level(1e9, 1e12)
    i = 0
    while len(metrics) < count:
        metrics[f"linux_host.net_rx_bytes_per_s[eth{i}]"] = level(0, 1e8)
        metrics[f"linux_host.net_tx_bytes_per_s[eth{i}]"] = level(0, 1e8)
        i += 1
    return metrics


def docker_state(rng: random.Random) -> dict:
    return {
        "containers": [
            {"name": f"app{i}", "state": "running", "health": "unhealthy" if i == 3 else "healthy", "restart_count": 0}
            for i in range(15)
        ],
        "events": [],
    }


def extra_rules(count: int) -> list[dict]:
    """Rules of the kinds people write: wildcards with windows, exact series, selectors, integration errors."""
    templates = [
        {"kind": "metric.threshold", "settings": {"series": "linux_host.disk_used_percent[*]", "label": "mountpoint", "reducer": "avg", "window": 300, "warning": 92, "warning_clear": 88}},
        {"kind": "metric.threshold", "for": 120, "settings": {"series": "linux_host.cpu_percent", "reducer": "max", "window": 120, "warning": 97, "critical": 99.5}},
        {"kind": "metric.threshold", "settings": {"series": "linux_host.net_rx_bytes_per_s[*]", "label": "interface", "warning": 9.9e7}},
        {"kind": "metric.threshold", "selector": {"name": "node-1*"}, "settings": {"series": "linux_host.load_1", "warning": 3.9}},
        {"kind": "metric.threshold", "selector": {"labels": {"env": "prod"}}, "settings": {"series": "linux_host.swap_used_percent", "reducer": "min", "window": 60, "warning": 49}},
        {"kind": "integration.error"},
        {"kind": "metric.threshold", "settings": {"series": "linux_host.disk_free_bytes[/srv]", "op": "<=", "warning": 2e9, "warning_clear": 3e9}},
    ]
    rules = []
    for i in range(count):
        body = dict(templates[i % len(templates)])
        rules.append({"name": f"bench rule {i}", "severity": "warning", **body})
    return rules


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="roost-bench-alerts-") as tmp:
        config = load_hub_config(None, overrides={"hub": {"data_dir": tmp, "discovery": False}, "agent": {"enabled": False}})
        hub = build_hub(config, SQLiteStore(Path(tmp) / "roost.db"))
        hub.manager.load()
        await hub.open()
        # Whatever goes wrong mid-run, the integrations and the store's writer thread are shut down (else the process waits on them).
        try:
            await hub.manager.setup_all()
            hub.plugins.collect()
            ids = []
            for n in range(args.nodes):
                node = await hub.add_node(public_key=f"key{n}", hostname=f"node-{n}", name=f"node-{n}", facts={})
                ids.append(node.node_id)
                if n % 2 == 0:
                    await hub.alerts.set_agent_labels(node.node_id, {"env": "prod"})
            have = sum(1 for r in hub.alerts.rules.values() if r.get("enabled", True))
            for body in extra_rules(max(0, args.rules - have)):
                await hub.alerts.save_rule(body, actor="bench")
            rules = sum(1 for r in hub.alerts.rules.values() if r.get("enabled", True))
            hub.alerts._dirty.clear()

            ingest_times, eval_times, ingest_cpu, eval_cpu = [], [], [], []
            seq = {node_id: 0 for node_id in ids}
            t0 = time.time() - args.rounds * args.interval
            clock = {"now": t0}
            hub.alerts.clock = lambda: clock["now"]  # the engine judges windows on the reports' own time line
            for round_no in range(args.rounds + 1):
                at = clock["now"] = t0 + round_no * args.interval
                reports = []
                for n, node_id in enumerate(ids):
                    seq[node_id] += 1
                    docker = n % 10 == 0
                    integrations = [{"domain": "linux_host", "state": "loaded", "reason": ""}]
                    data = {"linux_host": {"cpu": {"percent": 1.0}}}
                    if docker:
                        integrations.append({"domain": "docker", "state": "loaded", "reason": ""})
                        data["docker"] = docker_state(rng)
                    reports.append(Report(node_id=node_id, seq=seq[node_id], epoch="e1", collected_at=at, received_at=at, data=data,
                                          metrics=metrics_for(n, round_no, args.metrics, rng), integrations=integrations, interval=args.interval))
                started, cpu = time.perf_counter(), time.process_time()
                results = await hub.store.ingest(reports)
                hub._persisted(reports, results)
                ingested, ingested_cpu = time.perf_counter() - started, time.process_time() - cpu
                hub.alerts._dirty.clear()  # judged below, timed on its own
                started, cpu = time.perf_counter(), time.process_time()
                await hub.alerts.evaluate_nodes(ids)
                judged, judged_cpu = time.perf_counter() - started, time.process_time() - cpu
                if round_no:  # the first round warms caches (series catalog, matched wildcards)
                    ingest_times.append(ingested)
                    eval_times.append(judged)
                    ingest_cpu.append(ingested_cpu)
                    eval_cpu.append(judged_cpu)
            live = hub.alerts.live
        finally:
            await hub.manager.shutdown_all()
            await hub.store.close()

    ingest = statistics.median(ingest_times)
    judge = statistics.median(eval_times)
    out("nodes", args.nodes)
    out("rules_enabled", rules)
    out("metrics_per_report", args.metrics)
    out("rounds", args.rounds)
    out("ingest_ms_per_round_median", ingest * 1000)
    out("alerts_ms_per_round_median", judge * 1000)
    out("alerts_us_per_node_rule", judge / (args.nodes * rules) * 1e6)
    out("alerts_share_of_ingest_percent", judge / ingest * 100)
    # The same in CPU time of this process (every thread: the store writes from its own), which other work on a shared
    # machine disturbs far less than the wall clock.
    out("ingest_cpu_ms_per_round_median", statistics.median(ingest_cpu) * 1000)
    out("alerts_cpu_ms_per_round_median", statistics.median(eval_cpu) * 1000)
    out("alerts_cpu_share_of_ingest_percent", statistics.median(eval_cpu) / statistics.median(ingest_cpu) * 100)
    out("goal_percent", 10.0)
    out("live_instances_at_end", len(live))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rules", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--metrics", type=int, default=60)
    parser.add_argument("--interval", type=float, default=10.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
