"""Helpers shared by the benchmark scripts: loopback ports, starting and stopping roost processes, CPU accounting, output lines.

The scripts run as ``python scripts/bench_x.py``, so this folder is on sys.path
and they import this module as ``benchlib``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

# Benchmarks talk only to loopback: the zeroconf announcements of every hub and
# agent started here too (set before anything is started; children inherit it).
os.environ.setdefault("ROOST_DISCOVERY_INTERFACES", "127.0.0.1")

MIB = 1024 * 1024
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def out(name: str, value: Any) -> None:
    """One `name: value` result line, floats to two decimals (none from 1000 up)."""
    if isinstance(value, float):
        value = f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    print(f"{name}: {value}", flush=True)


def roost(*args: str) -> list[str]:
    """The command line of `roost ARGS` with this Python."""
    return [sys.executable, "-m", "roost.core.cli", *args]


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen | None, timeout: float) -> None:
    """Terminate proc if it still runs; kill it after timeout seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (everything but idle and iowait), system-wide."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per hour: the trend, not the noise."""
    if len(samples) < 3:
        return float("nan")
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return sum((t - mt) * (v - mv) for t, v in samples) / var * 3600 if var else float("nan")
