#!/usr/bin/env python3
"""Benchmark: how long a real Roost hub takes to serve the dashboard's overview with 500 nodes and one node's page.

Builds the real hub application (SQLite store in a temporary folder, the
built-in integrations' hub halves) in this process, adds N nodes and feeds each
one linux_host-like report through the hub's own ingest path (so summaries,
headline figures and history are what a live hub holds), then serves it on
127.0.0.1 and asks over HTTP, as a browser would:

- ``GET /`` (the overview: a table of N rows) and ``GET /?fragment=nodes``
  (what the page re-fetches when a node appears), server time p50 / p95 and
  the transfer size, plain and gzip-compressed;
- ``GET /nodes/{id}`` (one node page), server time p50 / p95;
- a static file (``/static/roost.css``) in the same run, as the floor.

Server time is measured from request to the last byte over loopback, with a
warm-up first. Prints `name: value` lines; it measures, it never asserts.
Targets (issue 17): overview under 50 ms with 500 nodes, node page under 100 ms.

    .venv/bin/python scripts/bench_dashboard.py                 # 500 nodes, 30 requests each
    .venv/bin/python scripts/bench_dashboard.py --nodes 100 --requests 10
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from benchlib import HOST, free_port, out

from roost.core.hub.app import HUB_KEY, create_app
from roost.core.hub.auth import ROLE_SCOPE, create_api_token, hash_password, new_user
from roost.core.config import load_hub_config
from roost.core.identity import Identity
from roost.core.store import Report


def report_for(node_id: str, i: int, at: float) -> Report:
    """One report shaped like linux_host's: the state the node page draws and the metrics the overview shows."""
    metrics = {
        "linux_host.cpu_percent": float(i % 97),
        "linux_host.mem_used_percent": 40.0 + i % 50,
        "linux_host.disk_used_percent": 30.0 + i % 60,
        "linux_host.load_1": (i % 8) / 4,
        "linux_host.uptime_s": 86400.0 + i,
        "linux_host.net_rx_bytes_per_s": 1000.0 * i,
        "linux_host.net_tx_bytes_per_s": 500.0 * i,
        "linux_host.temperature_c": 40.0 + i % 30,
    }
    state = {
        "linux_host": {
            "facts": {"hostname": f"node-{i:03d}.lan", "os": "Debian GNU/Linux", "kernel": "6.1.0", "arch": "x86_64", "cpu_cores_logical": 4},
            "cpu": {"percent": metrics["linux_host.cpu_percent"], "per_core_percent": [10.0, 20.0, 5.0, 15.0], "load": [0.4, 0.3, 0.2], "count": 4},
            "memory": {"total_bytes": 8 << 30, "used_bytes": 4 << 30, "available_bytes": 4 << 30, "percent": 50.0},
            "disks": [{"mount": "/", "device": "/dev/sda1", "fstype": "ext4", "total_bytes": 100 << 30, "used_bytes": 40 << 30, "free_bytes": 60 << 30, "percent": 40.0}],
            "network": [{"name": "eth0", "is_up": True, "rx_bytes_per_s": 1000.0, "tx_bytes_per_s": 500.0, "addresses": []}],
            "processes": {"count": 150, "top_cpu": [], "top_memory": []},
            "services": {"available": True, "units": [{"name": f"unit{k}.service", "active": "active", "sub": "running", "load": "loaded"} for k in range(40)]},
        }
    }
    integrations = [{"domain": "linux_host", "name": "Linux host", "state": "loaded", "reason": ""}]
    return Report(node_id=node_id, seq=1, epoch="bench", collected_at=at, received_at=at, data=state, metrics=metrics, integrations=integrations, interval=10.0)


async def build(tmp: Path, nodes: int) -> tuple[web.AppRunner, str, str, str]:
    config = load_hub_config(
        None,
        overrides={
            "hub": {"data_dir": str(tmp / "hub"), "discovery": False, "wol_broadcast": "127.0.0.1"},
            "agent": {"enabled": False},
        },
    )
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()  # runs the hub's startup: store open, integrations set up
    hub = app[HUB_KEY]
    user = new_user("bench", hash_password("bench password 1234"), "admin")
    await hub.store.add_user(user)
    token, _ = await create_api_token(hub.store, user, scope=ROLE_SCOPE[user.role], name="bench")
    now = time.time()
    first = ""
    waits = []
    for i in range(nodes):
        node = await hub.add_node(public_key=Identity.generate().public_key, hostname=f"node-{i:03d}.lan", name=f"node-{i:03d}", facts={})
        first = first or node.node_id
        waits.append(await hub.ingestor.submit(report_for(node.node_id, i, now - 1)))
    await asyncio.gather(*waits)
    port = free_port()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    return runner, f"http://{HOST}:{port}", first, token


async def timed(session: aiohttp.ClientSession, url: str, token: str, n: int) -> tuple[list[float], bytes]:
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
    times = []
    body = b""
    for k in range(n + 3):
        start = time.perf_counter()
        async with session.get(url, headers=headers) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise SystemExit(f"GET {url} answered {resp.status}: {body[:300]!r}")
        if k >= 3:  # the first requests warm caches (templates, static hashes)
            times.append((time.perf_counter() - start) * 1000)
    return times, body


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="roost-bench-dashboard-") as tmp:
        built = time.perf_counter()
        runner, base, node_id, token = await build(Path(tmp), args.nodes)
        out("nodes", args.nodes)
        out("setup_seconds", time.perf_counter() - built)
        try:
            async with aiohttp.ClientSession() as session:
                for name, path in (
                    ("overview", "/?view=table"),
                    ("overview_fragment", "/?view=table&fragment=nodes"),
                    ("node_page", f"/nodes/{node_id}"),
                    ("static_file", "/static/roost.css"),
                ):
                    times, body = await timed(session, base + path, token, args.requests)
                    out(f"{name}_ms_p50", statistics.median(times))
                    out(f"{name}_ms_p95", quantile(times, 0.95))
                    if name != "static_file":
                        out(f"{name}_kib", len(body) / 1024)
                        out(f"{name}_gzip_kib", len(gzip.compress(body, 6)) / 1024)
                    if name == "overview":
                        out("overview_nodes", body.count(b'"agent_version"'))
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
