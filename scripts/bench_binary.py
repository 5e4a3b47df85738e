#!/usr/bin/env python3
"""Roost as one file against the pip install, in the same run: size, start time and agent RSS of each form.

    .venv/bin/python scripts/bench_binary.py                       # builds both forms into a temp dir first
    .venv/bin/python scripts/bench_binary.py --pyinstaller dist/roost-linux-x86_64 --shiv dist/roost-linux-x86_64.pyz

Each agent form enrols with its own join token at one hub (the pip install, on
loopback, plain HTTP) and collects every second; its resident memory is the
sum over its process tree (a PyInstaller one-file program is a small
bootloader plus the Python process it starts), sampled after the warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
from benchlib import HOST, MIB, free_port, out, roost, stop, tail

ROOT = Path(__file__).resolve().parent.parent


def build(tool: str, where: Path) -> Path:
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build-binary"), "--tool", tool, "--out", str(where)],
                          capture_output=True, text=True, check=True)
    out(f"{tool}_build_seconds", time.monotonic() - started)
    return Path(done.stdout.strip().splitlines()[-1])


def start_seconds(command: list[str], runs: int) -> tuple[float, float]:
    """(first run, median of the rest) wall time of `COMMAND --version`."""
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([*command, "--version"], capture_output=True, check=True)
        times.append(time.monotonic() - t0)
    return times[0], statistics.median(times[1:])


def tree_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyinstaller", type=Path, help="a built one-file executable (default: build one)")
    parser.add_argument("--shiv", type=Path, help="a built zipapp (default: build one)")
    parser.add_argument("--runs", type=int, default=6, help="--version runs per form (default 6)")
    parser.add_argument("--warmup", type=float, default=20, help="seconds each agent runs before its RSS is read (default 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="roost-bench-binary-") as tmp:
        base = Path(tmp)
        pyi = args.pyinstaller or build("pyinstaller", base / "dist")
        pyz = args.shiv or build("shiv", base / "dist")
        forms = {"pip": roost(), "pyinstaller": [str(pyi)], "shiv": [sys.executable, str(pyz)]}
        out("pyinstaller_size_mib", pyi.stat().st_size / MIB)
        out("shiv_size_mib", pyz.stat().st_size / MIB)
        for name, command in forms.items():
            first, median = start_seconds(command, args.runs)
            out(f"{name}_version_first_seconds", first)
            out(f"{name}_version_median_seconds", median)

        port = free_port()
        hub_dir = base / "hub"
        conf = base / "hub.toml"
        conf.write_text(f'[hub]\nbind = "{HOST}"\nport = {port}\ndiscovery = false\nwol_broadcast = "127.0.0.1"\n')
        hub_log = base / "hub.log"
        hub = subprocess.Popen(roost("hub", "--data-dir", str(hub_dir), "--config", str(conf)), stdout=open(hub_log, "ab"), stderr=subprocess.STDOUT)
        agents: dict[str, subprocess.Popen] = {}
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://{HOST}:{port}/api/v1/health", timeout=2).read()
                    break
                except OSError:
                    if time.monotonic() > deadline or hub.poll() is not None:
                        raise SystemExit(f"the hub did not start:\n{tail(hub_log)}")
                    time.sleep(0.2)
            agent_conf = base / "agent.toml"
            agent_conf.write_text('[agent]\ninterval = "1s"\ndiscovery = false\n')
            for name, command in forms.items():
                token = subprocess.run(roost("join-token", "create", "--data-dir", str(hub_dir), "--config", str(conf), "--hub-url", f"http://{HOST}:{port}"),
                                       capture_output=True, text=True, check=True).stdout.strip()
                agents[name] = subprocess.Popen([*command, "agent", "--hub", f"http://{HOST}:{port}", "--join", token, "--data-dir", str(base / name),
                                                 "--config", str(agent_conf)], stdout=open(base / f"{name}.log", "ab"), stderr=subprocess.STDOUT)
            time.sleep(args.warmup)
            for name, proc in agents.items():
                if proc.poll() is not None or not (base / name / "agent.json").exists():
                    raise SystemExit(f"agent {name} is not running or not enrolled:\n{tail(base / f'{name}.log')}")
                out(f"{name}_agent_rss_mib", tree_rss(proc.pid) / MIB)
            out("agents_enrolled", json.dumps(sorted(agents)))
        finally:
            for proc in agents.values():
                stop(proc, 10)
            stop(hub, 10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
