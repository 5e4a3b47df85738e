"""The hub's and the agent's systemd units: valid for systemd-analyze verify, hardened to the exposure docs/install.md states, and sd_notify really spoken."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from support import need

from roost.core import sdnotify
from roost.deploy import AGENT_UNIT, DEPLOY_DIR, HUB_UNIT, read

# docs/install.md states these; a unit that loosens its hardening fails here.
MAX_EXPOSURE = {AGENT_UNIT: 1.7, HUB_UNIT: 1.7}
REQUIRED = (
    "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes", "UMask=0077",
    "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "Restart=always", "WatchdogSec=", "Type=notify",
)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "install.md"


def analyzable(unit: str, tmp_path: Path) -> Path:
    """The unit with its programs pointed at ones that exist here (verify checks that ExecStart= exists)."""
    text = read(unit).replace("/opt/roost/current/roost", "/bin/true").replace("/usr/local/lib/roost/supervise", "/bin/true")
    path = tmp_path / unit
    path.write_text(text)
    return path


@pytest.fixture
def analyze():
    need(shutil.which("systemd-analyze") is not None, "systemd-analyze (apt-get install systemd)")
    return shutil.which("systemd-analyze")


@pytest.mark.parametrize("unit", [AGENT_UNIT, HUB_UNIT])
def test_unit_passes_systemd_analyze_verify(unit, analyze, tmp_path):
    done = subprocess.run([analyze, "verify", str(analyzable(unit, tmp_path))], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and unit not in done.stderr, done.stderr


@pytest.mark.parametrize("unit", [AGENT_UNIT, HUB_UNIT])
def test_unit_exposure_is_at_most_what_the_docs_state(unit, analyze, tmp_path):
    text = read(unit)
    for line in REQUIRED:
        assert line in text + "\n", f"{unit} lacks {line.strip()}"
    assert re.search(r"^CapabilityBoundingSet=$", text, re.M), "no capabilities unless an integration documents one"
    limit = MAX_EXPOSURE[unit]
    done = subprocess.run([analyze, "security", "--offline=true", f"--threshold={int(limit * 10)}", str(analyzable(unit, tmp_path))],
                          capture_output=True, text=True, timeout=60)
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout).group(1))
    assert done.returncode == 0 and score <= limit, done.stdout[-2000:]
    assert f"{unit}: {limit}" in DOCS.read_text(), "docs/install.md states each unit's exposure score"


def test_loosening_the_agent_unit_fails_the_exposure_check(analyze, tmp_path):
    path = analyzable(AGENT_UNIT, tmp_path)
    path.write_text(path.read_text().replace("ProtectSystem=strict", "ProtectSystem=no").replace("CapabilityBoundingSet=\n", "").replace("PrivateDevices=yes", ""))
    done = subprocess.run([analyze, "security", "--offline=true", f"--threshold={int(MAX_EXPOSURE[AGENT_UNIT] * 10)}", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


def test_supervisor_and_installer_are_posix_shell(tmp_path):
    sh = shutil.which("dash") or shutil.which("sh")
    for name in ("install.sh", "supervise.sh"):
        done = subprocess.run([sh, "-n", str(DEPLOY_DIR / name)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{name}: {done.stderr}"


async def test_watchdog_pings_reach_the_notify_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s: a ping every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.notify("READY=1")
    task = asyncio.create_task(sdnotify.watchdog())
    loop = asyncio.get_running_loop()
    try:
        got = [await asyncio.wait_for(loop.sock_recv(server, 100), 5) for _ in range(3)]
    finally:
        task.cancel()
        server.close()
    assert got[0] == b"READY=1" and got[1:] == [b"WATCHDOG=1", b"WATCHDOG=1"]


def test_a_notify_socket_nobody_reads_drops_messages_instead_of_stopping_the_caller(tmp_path, monkeypatch):
    """The kernel queues only net.unix.max_dgram_qlen unread datagrams; past that a blocking send waits for a reader forever.

    The agent and hub call notify() on their event loop, so a wait there stops
    reports, pongs and SIGTERM handling. Here nobody reads: READY=1 stays first
    in the queue, the surplus is dropped at once. (The socket is closed after 20 s so
    a send that does wait ends, and the test fails on the time instead of hanging.)
    """
    path = tmp_path / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    qlen = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    unblock = threading.Timer(20, server.close)
    unblock.start()
    try:
        started = time.monotonic()
        sent = [sdnotify.notify("READY=1")] + [sdnotify.notify("WATCHDOG=1") for _ in range(qlen + 20)]
        took = time.monotonic() - started
        assert took < 10, f"notify() waited {took:.1f} s for a reader"
        server.setblocking(False)
        first = server.recv(100)
    finally:
        unblock.cancel()
        server.close()
    assert sent[0] and False in sent, sent
    assert first == b"READY=1"


def test_a_one_file_build_pings_for_its_bootloader_but_not_for_another_process(monkeypatch):
    import sys

    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getppid()))
    assert sdnotify.watchdog_interval() is None  # a plain Python process: the parent is someone else
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert sdnotify.watchdog_interval() == 0.1


def test_no_notify_socket_means_no_pings(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.watchdog_interval() is None
