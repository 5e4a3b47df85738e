"""Benchmark SQLiteStore.ingest against plain raw inserts; prints `name: value` lines.

Simulates a fleet of agents that each report every --interval seconds (~4 KB
JSON per report with --metrics metrics) and feeds the store batches of --batch
reports in time order, as the hub's ingest pipeline does. Only the store calls
are timed; building the reports is not.

    .venv/bin/python scripts/bench_store.py [--reports 60000] [--nodes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiosqlite

from roost.core.store import NodeRecord, Report
from roost.core.store.migrations import migrate, prepare_new_database
from roost.core.store.sqlite import SQLiteStore

T0 = 1_760_000_000.0


def _metric_names(count: int) -> list[str]:
    base = [
        "linux_host.cpu_percent",
        "linux_host.load_1",
        "linux_host.load_5",
        "linux_host.load_15",
        "linux_host.mem_used_bytes",
        "linux_host.mem_available_bytes",
        "linux_host.swap_used_bytes",
        "linux_host.uptime_seconds",
        "linux_host.processes",
    ]
    per_label = [
        "linux_host.disk_used_percent[{}]",
        "linux_host.disk_read_bytes_per_s[{}]",
        "linux_host.net_rx_bytes_per_s[{}]",
        "linux_host.net_tx_bytes_per_s[{}]",
        "linux_host.temperature_celsius[{}]",
        "docker.container_cpu_percent[{}]",
        "docker.container_mem_bytes[{}]",
    ]
    names = list(base)
    label = 0
    while len(names) < count:
        for pattern in per_label:
            names.append(pattern.format(f"dev{label}"))
        label += 1
    return names[:count]


def _state(node: int) -> dict:
    """A node's state dict of roughly 3.5 KB of JSON."""
    return {
        "linux_host": {
            "hostname": f"host-{node:04d}",
            "os": "Debian GNU/Linux 12 (bookworm)",
            "kernel": "6.1.0-18-amd64",
            "disks": [
                {"mount": m, "fs": "ext4", "total_bytes": 512_000_000_000, "used_bytes": 123_456_789_000 + node}
                for m in ("/", "/home", "/var", "/srv/data")
            ],
            "interfaces": [
                {"name": n, "mac": "52:54:00:12:34:%02x" % (node % 256), "addresses": ["192.168.1.%d/24" % (node % 250)]}
                for n in ("eth0", "eth1", "wg0")
            ],
            "services": [
                {"name": f"service-{i}.service", "active": "active", "sub": "running", "since": T0 - 86400 * i}
                for i in range(12)
            ],
        },
        "docker": {
            "containers": [
                {
                    "id": "%064x" % (node * 100 + i),
                    "name": f"app-{i}",
                    "image": f"ghcr.io/example/app-{i}:1.{i}",
                    "state": "running",
                    "status": "Up 3 days (healthy)",
                }
                for i in range(5)
            ]
        },
    }


class Fleet:
    """Agents reporting every `interval` seconds, spread evenly over the interval."""

    def __init__(self, nodes: int, metrics: int, interval: float) -> None:
        self.node_ids = [f"node-{i:05d}-{random.Random(i).getrandbits(64):016x}" for i in range(nodes)]
        self.names = _metric_names(metrics)
        self.states = [_state(i) for i in range(nodes)]
        self.integrations = [{"domain": "linux_host", "state": "loaded"}, {"domain": "docker", "state": "loaded"}]
        self.interval = interval
        self.rng = random.Random(42)
        self.tick = 0

    def records(self) -> list[NodeRecord]:
        return [
            NodeRecord(node_id=n, name=n, hostname=n, public_key=f"key-{n}", created_at=T0, epoch="e1")
            for n in self.node_ids
        ]

    def batches(self, size: int) -> Iterator[list[Report]]:
        nodes = len(self.node_ids)
        rnd = self.rng.random
        while True:
            batch = []
            for _ in range(size):
                node, round_ = self.tick % nodes, self.tick // nodes
                self.tick += 1
                ts = T0 + round_ * self.interval + node * self.interval / nodes
                # Like a real agent's, some of the state changes with every report.
                state = self.states[node]
                linux_host = dict(state["linux_host"], uptime_seconds=ts - T0, processes=200 + round_ % 50)
                batch.append(
                    Report(
                        node_id=self.node_ids[node],
                        seq=round_ + 1,
                        epoch="e1",
                        collected_at=ts,
                        received_at=ts + 0.05,
                        data={"linux_host": linux_host, "docker": state["docker"]},
                        metrics={name: rnd() * 100.0 for name in self.names},
                        integrations=self.integrations,
                        interval=self.interval,
                    )
                )
            yield batch


async def _bench_store(
    path: Path, args: argparse.Namespace, flush_seconds: float
) -> tuple[float, float, list[float]]:
    """(reports per wall second, reports per CPU second, wall seconds of each call)."""
    fleet = Fleet(args.nodes, args.metrics, args.interval)
    store = SQLiteStore(path, rollup_flush_seconds=flush_seconds)
    await store.open()
    try:
        for node in fleet.records():
            await store.add_node(node)
        batches = fleet.batches(args.batch)
        # Warm-up: one round of the fleet creates every series.
        for _ in range(max(1, args.nodes // args.batch)):
            await store.ingest(next(batches))
        times = []
        cpu = 0.0
        for _ in range(args.reports // args.batch):
            batch = next(batches)
            start, start_cpu = time.perf_counter(), time.process_time()
            await store.ingest(batch)
            times.append(time.perf_counter() - start)
            cpu += time.process_time() - start_cpu
        start, start_cpu = time.perf_counter(), time.process_time()
        await store.close()  # the final merge of pending rollups counts too
        times.append(time.perf_counter() - start)
        cpu += time.process_time() - start_cpu
    finally:
        await store.close()
    reports = (args.reports // args.batch) * args.batch
    return reports / sum(times), reports / cpu, times


async def _bench_raw_baseline(path: Path, args: argparse.Namespace) -> tuple[float, float]:
    """The same raw rows as ingest writes, and nothing else: the floor ingest cannot beat."""
    fleet = Fleet(args.nodes, args.metrics, args.interval)
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await prepare_new_database(db)
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        await migrate(db)
        await db.executemany(
            "INSERT INTO nodes (node_id, name, hostname, public_key, created_at) VALUES (?, ?, ?, ?, ?)",
            [(n.node_id, n.name, n.hostname, n.public_key, n.created_at) for n in fleet.records()],
        )
        batches = fleet.batches(args.batch)
        elapsed = cpu = 0.0
        for _ in range(args.reports // args.batch):
            batch = next(batches)
            start, start_cpu = time.perf_counter(), time.process_time()
            await db.execute("BEGIN IMMEDIATE")
            await db.executemany(
                'INSERT INTO metric_raw (node_id, ts, "values") VALUES (?, ?, ?)',
                [(r.node_id, r.collected_at, encode(r.metrics)) for r in batch],
            )
            await db.execute("COMMIT")
            elapsed += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
    finally:
        await db.close()
    reports = (args.reports // args.batch) * args.batch
    return reports / elapsed, reports / cpu


def _report_bytes(args: argparse.Namespace) -> float:
    fleet = Fleet(min(args.nodes, 50), args.metrics, args.interval)
    batch = next(fleet.batches(50))
    sizes = [
        len(json.dumps({"type": "report", "seq": r.seq, "epoch": r.epoch, "collected_at": r.collected_at,
                        "data": r.data, "metrics": r.metrics, "integrations": r.integrations}))
        for r in batch
    ]
    return statistics.mean(sizes)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=60_000, help="timed reports per case")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--metrics", type=int, default=30, help="metrics per report")
    parser.add_argument("--batch", type=int, default=500, help="reports per ingest call")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between a node's reports")
    parser.add_argument("--dir", type=Path, help="where the database files go (default: a temporary dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp_path = Path(tmp)
        print(f"nodes: {args.nodes}")
        print(f"metrics_per_report: {args.metrics}")
        print(f"batch_size: {args.batch}")
        print(f"report_json_bytes: {_report_bytes(args):.0f}")
        print(f"timed_reports_per_case: {args.reports // args.batch * args.batch}")
        baseline, baseline_cpu = await _bench_raw_baseline(tmp_path / "baseline.db", args)
        print(f"baseline_raw_insert_reports_per_s: {baseline:.0f}")
        print(f"baseline_raw_insert_reports_per_cpu_s: {baseline_cpu:.0f}")
        for label, flush_seconds in (("ingest", 60.0), ("ingest_merge_every_batch", 0.0)):
            rate, rate_cpu, times = await _bench_store(tmp_path / f"{label}.db", args, flush_seconds)
            batch_ms = sorted(t * 1000 for t in times[:-1])
            print(f"{label}_reports_per_s: {rate:.0f}")
            print(f"{label}_reports_per_cpu_s: {rate_cpu:.0f}")
            print(f"{label}_vs_baseline_ratio: {rate / baseline:.2f}")
            print(f"{label}_vs_baseline_cpu_ratio: {rate_cpu / baseline_cpu:.2f}")
            print(f"{label}_batch_ms_p50: {batch_ms[len(batch_ms) // 2]:.1f}")
            print(f"{label}_batch_ms_max: {batch_ms[-1]:.1f}")
            print(f"{label}_close_ms: {times[-1] * 1000:.1f}")
            print(f"{label}_db_bytes: {(tmp_path / f'{label}.db').stat().st_size}")


if __name__ == "__main__":
    asyncio.run(main())
