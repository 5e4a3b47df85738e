#!/usr/bin/env python3
"""Benchmark: the docker integration's collection time and the agent's memory with 50 running containers.

Starts a private dockerd (as the tests do: its own socket and data root, a
busybox image built without a registry) unless --url names an engine, runs
50 idle containers, then:

- runs a real agent runtime (plugin kernel, docker integration only, spool)
  in a child process for a number of cycles and reports the time of the
  first and of the steady-state collections, and the child's RSS;
- measures the baseline in the same run: `docker stats` the naive way, one
  container after another without one-shot (each call waits for two of
  dockerd's 1 s samples), on a sample of containers, scaled to all of them;
- measures two memory baselines: the RSS of a Python process that only
  imported the docker SDK and listed the containers (agent_rss_ratio is
  against it), and of the same agent runtime with no integration at all.

Prints `name: value` lines; it measures, it never asserts. Needs root (for
dockerd) unless --url is given.

    .venv/bin/python scripts/bench_docker.py                  # ~1 min
    .venv/bin/python scripts/bench_docker.py --containers 10 --cycles 3   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]

AGENT_CHILD = r"""
import asyncio, json, sys, time
from pathlib import Path
import psutil
from roost.agent.runtime import AgentRuntime
from roost.core.config import AgentSettings

async def main(url, cycles, interval, data_dir, workers):
    rt = AgentRuntime(
        data_dir=Path(data_dir), settings=AgentSettings(interval=interval, discovery=False),
        integrations_config={"docker": {"url": url, "disk_usage_interval": 0, **({"stats_workers": workers} if workers else {})}, "linux_host": {"enabled": False}},
        node_id="bench", entry_points=False,
    )
    started = time.monotonic()
    await rt.start()
    setup_s = time.monotonic() - started
    integ = rt.manager.integrations["docker"]
    if integ.state != "loaded":
        print(json.dumps({"error": f"docker integration is {integ.state}: {integ.reason}"}))
        return
    collector = integ.context.data["collector"]
    durations, report = [], None
    for _ in range(cycles):
        t = time.monotonic()
        await rt.collect_once()
        durations.append(time.monotonic() - t)
        await asyncio.sleep(max(0.0, interval - durations[-1]))
    rows = await rt.spool.after(0, 1_000_000)
    message = rt.report_message(rows[-1])
    body = json.loads(message)
    state = body["data"]["docker"]
    out = {
        "setup_s": setup_s,
        "durations": durations,
        "collector_s": collector.last_duration,
        "containers": len(state["containers"]),
        "with_stats": sum(1 for c in state["containers"] if "cpu_percent" in c.get("stats", {})),
        "metrics": len(body["metrics"]),
        "message_bytes": len(message),
        "rss": psutil.Process().memory_info().rss,
        "state": integ.state,
    }
    await rt.stop()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5])))
"""

EMPTY_AGENT_CHILD = r"""
import asyncio, json, sys
from pathlib import Path
import psutil
from roost.agent.runtime import AgentRuntime
from roost.core.config import AgentSettings

async def main(data_dir):
    rt = AgentRuntime(
        data_dir=Path(data_dir), settings=AgentSettings(interval=1.0, discovery=False),
        integrations_config={"docker": {"enabled": False}, "linux_host": {"enabled": False}}, node_id="bench", entry_points=False,
    )
    await rt.start()
    await rt.collect_once()
    print(json.dumps({"rss": psutil.Process().memory_info().rss}))
    await rt.stop()

asyncio.run(main(sys.argv[1]))
"""

BARE_CHILD = r"""
import json, sys
import docker, psutil
client = docker.DockerClient(base_url=sys.argv[1])
listed = client.api.containers(all=True)
print(json.dumps({"rss": psutil.Process().memory_info().rss, "containers": len(listed)}))
"""


def out(name: str, value: Any) -> None:
    if isinstance(value, float):
        value = f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    print(f"{name}: {value}", flush=True)


def child(code: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=900, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"bench_docker: child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_engine() -> Any:
    # The tests' private-dockerd helper, so the bench and the tests start the engine the same way.
    sys.path.insert(0, str(REPO / "tests"))
    import docker_engine

    try:
        return docker_engine, docker_engine.start_engine()
    except BaseException as err:  # pytest's skip/fail outcomes are BaseExceptions
        raise SystemExit(f"bench_docker: cannot start a private dockerd: {err}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing engine (default: start a private dockerd)")
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=6, help="agent collection cycles (the first is reported apart)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between cycles")
    parser.add_argument("--stats-workers", type=int, default=0, help="integrations.docker.stats_workers (default: the integration's)")
    parser.add_argument("--baseline-sample", type=int, default=10, help="containers stats'd one by one for the baseline (0: all)")
    args = parser.parse_args()

    import docker

    helper = engine = None
    if args.url:
        url = args.url
        client = docker.DockerClient(base_url=url, max_pool_size=16)
        image = "local/busybox:latest"
        label = "org.roost.bench"
    else:
        helper, engine = start_engine()
        url, client, image, label = engine.url, engine.client, engine.image, helper.TEST_LABEL
    from concurrent.futures import ThreadPoolExecutor

    made: list[Any] = []
    try:
        t = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            made = list(
                pool.map(
                    lambda i: client.containers.run(
                        image, ["sh", "-c", "while true; do echo tick; sleep 5; done"], name=f"bench-{os.getpid()}-{i}",
                        detach=True, network_mode="none", mem_limit="32m", labels={label: "1"},
                    ),
                    range(args.containers),
                )
            )
        running = len(client.api.containers(filters={"status": "running"}))
        out("containers_running", running)
        out("containers_start_s", time.monotonic() - t)

        # Baseline: the naive loop, one stats call after another (no one-shot, no concurrency).
        sample = made if args.baseline_sample <= 0 else made[: args.baseline_sample]
        t = time.monotonic()
        for container in sample:
            client.api.stats(container.id, stream=False)
        sequential = time.monotonic() - t
        per_container = sequential / max(1, len(sample))
        out("baseline_sequential_stats_containers_measured", len(sample))
        out("baseline_sequential_stats_s_per_container", per_container)
        out("baseline_sequential_stats_all_s", per_container * running)

        with tempfile.TemporaryDirectory(prefix="roost-bench-docker-") as data_dir:
            agent = child(AGENT_CHILD, url, str(args.cycles), str(args.interval), data_dir, str(args.stats_workers))
        if "error" in agent:
            raise SystemExit(f"bench_docker: {agent['error']}")
        durations = agent["durations"]
        steady = durations[1:] or durations
        out("agent_setup_s", agent["setup_s"])
        out("collect_first_s", durations[0])
        out("collect_steady_median_s", statistics.median(steady))
        out("collect_steady_max_s", max(steady))
        out("containers_reported", agent["containers"])
        out("containers_with_stats", agent["with_stats"])
        out("metrics_per_report", agent["metrics"])
        out("report_message_kib", agent["message_bytes"] / 1024)
        out("collect_vs_sequential_stats_ratio", statistics.median(steady) / (per_container * running))
        bare = child(BARE_CHILD, url)
        with tempfile.TemporaryDirectory(prefix="roost-bench-docker-") as data_dir:
            empty = child(EMPTY_AGENT_CHILD, data_dir)
        out("agent_rss_mib", agent["rss"] / MIB)
        out("agent_without_integrations_rss_mib", empty["rss"] / MIB)
        out("bare_docker_sdk_rss_mib", bare["rss"] / MIB)
        out("agent_rss_ratio", agent["rss"] / bare["rss"])
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda c: c.remove(force=True), made))
        if engine is not None:
            helper.stop_engine(engine)


if __name__ == "__main__":
    main()
