"""Benchmark: the cost of one /metrics scrape of a hub that knows N nodes, beside the hub's idle cost, in one process and one run.

    python scripts/bench_prometheus.py [--nodes 1000] [--scrapes 20]

Each node has the series a Linux host with a few filesystems, interfaces and
ten containers reports (about 60). The scrape runs through the real
collector and prometheus_client's text exposition; RSS is read from
/proc/self/smaps_rollup before the nodes exist, with them, and after the
scrapes. Prints `name: value` lines; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import MIB, out  # noqa: E402

from roost.core.config import load_hub_config  # noqa: E402
from roost.core.hub.app import Hub  # noqa: E402
from roost.core.hub.prometheus import Exposition, JobCounts  # noqa: E402
from roost.core.store import NodeRecord  # noqa: E402
from roost.core.store.sqlite import SQLiteStore  # noqa: E402
from roost.integrations.docker.const import METRIC_FIELDS as DOCKER_FIELDS  # noqa: E402
from roost.integrations.linux_host.const import METRIC_FIELDS as HOST_FIELDS  # noqa: E402


def rss() -> float:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            return int(line.split()[1]) * 1024 / MIB
    return 0.0


def node_metrics(i: int) -> dict[str, float]:
    metrics = {
        "linux_host.cpu_percent": 10.0 + i % 50,
        "linux_host.load_1": 0.5,
        "linux_host.load_5": 0.4,
        "linux_host.load_15": 0.3,
        "linux_host.mem_used_percent": 40.0,
        "linux_host.mem_used_bytes": 4e9,
        "linux_host.mem_total_bytes": 8e9,
        "linux_host.swap_used_percent": 1.0,
        "linux_host.disk_used_percent": 50.0,
        "linux_host.disk_read_bytes_per_s": 1000.0,
        "linux_host.disk_write_bytes_per_s": 2000.0,
        "linux_host.net_rx_bytes_per_s": 3000.0,
        "linux_host.net_tx_bytes_per_s": 4000.0,
        "linux_host.uptime_s": 86400,
        "linux_host.process_count": 200,
        "docker.containers_total": 10,
        "docker.containers_running": 9,
    }
    for mount in ("/", "/boot", "/srv"):
        metrics[f"linux_host.disk_used_percent[{mount}]"] = 50.0
        metrics[f"linux_host.disk_total_bytes[{mount}]"] = 1e11
        metrics[f"linux_host.disk_free_bytes[{mount}]"] = 5e10
    for dev in ("eth0", "eth1"):
        metrics[f"linux_host.net_rx_bytes_per_s[{dev}]"] = 100.0
        metrics[f"linux_host.net_tx_bytes_per_s[{dev}]"] = 100.0
    for c in range(10):
        metrics[f"docker.cpu_percent[app{c}]"] = 1.0
        metrics[f"docker.mem_used_bytes[app{c}]"] = 1e8
        metrics[f"docker.restart_count[app{c}]"] = 0
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = load_hub_config(None, overrides={"hub": {"data_dir": tmp, "discovery": False}, "agent": {"enabled": False}})
        hub = Hub(config, SQLiteStore(config.store_path))
        counts = JobCounts()
        exposition = Exposition(hub, counts)
        gc.collect()
        idle_rss = rss()
        started = time.process_time()
        exposition.render()
        idle_cpu_ms = (time.process_time() - started) * 1000
        fields = {f"linux_host.{k}": dict(v) for k, v in HOST_FIELDS.items()}
        fields.update({f"docker.{k}": dict(v) for k, v in DOCKER_FIELDS.items()})
        now = time.time()
        for i in range(args.nodes):
            node_id = f"n{i:012x}"
            hub._nodes[node_id] = NodeRecord(
                node_id=node_id,
                name=f"host-{i}",
                hostname=f"host-{i}.lan",
                public_key="",
                created_at=now,
                facts={"os": "Debian 12", "kernel": "6.1", "arch": "x86_64"},
                integrations=[{"domain": "linux_host", "state": "loaded"}, {"domain": "docker", "state": "loaded"}],
                fields=fields,
                agent_version="0.1.0",
            )
            hub._metrics[node_id] = node_metrics(i)
            hub._last_seen[node_id] = now
        for i in range(5):
            counts.observe(f"j{i}", "docker.container.restart", "succeeded")
        gc.collect()
        loaded_rss = rss()
        exposition.render()  # the first scrape renders and keeps every node's text
        gc.collect()
        cached_rss = rss()
        cpu: list[float] = []
        wall: list[float] = []
        size = 0
        for _ in range(args.scrapes):
            t0, c0 = time.perf_counter(), time.process_time()
            size = 0
            for chunk in exposition.chunks():
                size += len(chunk)
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        peak_rss = rss()
        samples = sum(len(m) for m in hub._metrics.values()) + 4 * args.nodes
    out("nodes", args.nodes)
    out("samples_per_scrape", samples)
    out("scrape_bytes", size)
    out("idle_scrape_cpu_ms", idle_cpu_ms)
    out("scrape_wall_ms_median", statistics.median(wall))
    out("scrape_wall_ms_max", max(wall))
    out("scrape_cpu_ms_median", statistics.median(cpu))
    out("rss_idle_mib", idle_rss)
    out("rss_with_nodes_mib", loaded_rss)
    out("rss_with_rendered_text_mib", cached_rss)
    out("rss_after_scrapes_mib", peak_rss)
    out("rendered_text_rss_mib", cached_rss - loaded_rss)
    out("scrape_extra_rss_mib", peak_rss - cached_rss)


if __name__ == "__main__":
    main()
