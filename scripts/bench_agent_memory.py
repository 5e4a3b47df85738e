#!/usr/bin/env python3
"""Where the agent's resident memory goes: RSS after each group of imports an agent makes, in the order it makes them.

One fresh interpreter per run (this one): it imports the libraries an agent
loads one group at a time and prints the resident set after each
(``/proc/self/status``), then the Roost modules, then the share of the
Python heap each package holds (``tracemalloc``, started after the
interpreter's own start-up), then ``/proc/self/smaps_rollup``: anonymous
(heap) against file-backed (shared libraries) pages. The steps a real agent
adds at run time (SQLite connections, threads, the collector's caches, the
WebSocket) are what ``scripts/bench_agent.py`` measures on top.

Prints `name: value` lines and a table; it measures, it never asserts.

    .venv/bin/python scripts/bench_agent_memory.py
    .venv/bin/python scripts/bench_agent_memory.py --no-tracemalloc   # RSS without tracemalloc's own cost
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys

# The agent's imports, grouped as docs/benchmarks.md discusses them, in the order `roost agent` makes them.
STEPS = [
    ("psutil", ["psutil"]),
    ("asyncio (with ssl)", ["asyncio", "ssl"]),
    ("sqlite3, json", ["sqlite3", "json"]),
    ("websockets client", ["websockets.asyncio.client"]),
    ("voluptuous, pluggy", ["voluptuous", "pluggy"]),
    ("cryptography Ed25519", ["cryptography.hazmat.primitives.asymmetric.ed25519"]),
    ("cryptography x509", ["cryptography.x509"]),
    ("packaging, importlib.metadata", ["packaging.requirements", "importlib.metadata"]),
    ("roost config and plugin kernel", ["roost.core.config", "roost.core.plugins"]),
    ("roost agent runtime, trust, uplink", ["roost.agent.runtime", "roost.agent.trust", "roost.agent.uplink", "roost.agent.update"]),
    ("built-in integrations' modules", ["roost.integrations.linux_host.collector", "roost.integrations.docker.actions", "roost.integrations.wol.actions"]),
]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the per-package heap table (tracemalloc costs memory itself)")
    args = parser.parse_args()
    if not args.no_tracemalloc:
        import tracemalloc

        tracemalloc.start(1)
    start = previous = rss_mib()
    print(f"python_rss_mib: {start:.2f}")
    print(f"{'step':40s} {'+MiB':>6s} {'RSS':>7s}")
    for label, modules in STEPS:
        for name in modules:
            importlib.import_module(name)
        gc.collect()
        now = rss_mib()
        print(f"{label:40s} {now - previous:6.2f} {now:7.2f}")
        previous = now
    print(f"modules_loaded: {len(sys.modules)}")
    print(f"rss_mib_after_imports: {previous:.2f}")
    if not args.no_tracemalloc:
        import tracemalloc

        import os

        root = os.path.dirname(importlib.import_module("roost.core").__path__[0]) + os.sep
        sizes: dict[str, int] = {}
        for stat in tracemalloc.take_snapshot().statistics("filename"):
            path = stat.traceback[0].filename
            key = path
            for marker in ("site-packages/", "/lib/python3."):
                if marker in path:
                    rest = path.split(marker, 1)[1]
                    key = rest.split("/")[1 if marker == "/lib/python3." else 0]
                    break
            else:
                if path.startswith(root):
                    key = "roost." + ".".join(path[len(root) :].split(os.sep)[:2]).removesuffix(".py")
            if path.startswith("<frozen importlib"):
                key = "(code objects of imported modules)"
            sizes[key] = sizes.get(key, 0) + stat.size
        total = sum(sizes.values())
        print(f"python_heap_traced_mib: {total / 2**20:.2f}")
        for key, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:15]:
            print(f"  {size / 2**20:6.2f}  {key}")
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("Rss", "Anonymous", "Shared_Clean", "Private_Clean", "Private_Dirty"):
                print(f"smaps_{name.lower()}_mib: {int(value.split()[0]) / 1024:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
