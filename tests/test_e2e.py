"""The hub and an agent as two real processes on loopback: enrol, report, lose the hub, spool, catch up with no gap."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support import free_port, wait_for

pytestmark = pytest.mark.e2e

ROOST = [sys.executable, "-m", "roost.core.cli"]
INTERVAL = 0.5


# Set by the test once the CLI has made an API token: the hub answers nothing but health before login.
AUTH: dict[str, str] = {}


def get(url: str) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers=AUTH), timeout=5) as resp:
        return json.loads(resp.read())


class Proc:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.fh = open(log, "ab")
        self.p = subprocess.Popen(args, stdout=self.fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                # Returns as soon as the process has exited; the bound only ends a process that never will
                # (a clean stop on a loaded host took more than 10 s).
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.fh.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def procs():
    running: list[Proc] = []
    yield running
    for proc in running:
        proc.stop(signal.SIGKILL)


def test_agent_spools_through_a_hub_outage_and_delivers_everything_in_order(tmp_path, procs):
    port = free_port()
    hub_dir, agent_dir = tmp_path / "hub", tmp_path / "agent"
    hub_conf = tmp_path / "hub.toml"
    hub_conf.write_text('[agent]\ninterval = "1s"\n')
    agent_conf = tmp_path / "agent.toml"
    agent_conf.write_text(f'[agent]\ninterval = "{INTERVAL}s"\nheartbeat = "2s"\n')
    base = f"http://127.0.0.1:{port}"

    # A user and an API token for the checks below, made with the CLI before the hub starts.
    subprocess.run([*ROOST, "users", "add", "tester", "--role", "viewer", "--data-dir", str(hub_dir)],
                   input="a long test passphrase\n", capture_output=True, text=True, timeout=30, check=True)
    api_token = subprocess.run([*ROOST, "api-token", "create", "--user", "tester", "--scope", "read", "--data-dir", str(hub_dir)],
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    AUTH["Authorization"] = f"Bearer {api_token}"

    def start_hub() -> Proc:
        hub = Proc([*ROOST, "hub", "--data-dir", str(hub_dir), "--port", str(port), "--bind", "127.0.0.1", "--config", str(hub_conf)], tmp_path / "hub.log")
        procs.append(hub)
        wait_for(lambda: get(f"{base}/api/v1/health")["status"] == "ok", 30, "the hub to answer")
        return hub

    hub = start_hub()
    token = subprocess.run(
        [*ROOST, "join-token", "create", "--data-dir", str(hub_dir), "--hub-url", base],
        capture_output=True, text=True, timeout=30, check=True,
    )
    join = token.stdout.strip()
    assert join.startswith("rjt_") and f"roost agent --hub {base} --join {join}" in token.stderr

    agent = Proc([*ROOST, "agent", "--data-dir", str(agent_dir), "--hub", base, "--join", join, "--config", str(agent_conf)], tmp_path / "agent.log")
    procs.append(agent)
    state = wait_for(lambda: json.loads((agent_dir / "agent.json").read_text()) if (agent_dir / "agent.json").exists() else None, 30, "enrolment")
    node_id = state["node_id"]

    def node() -> dict | None:
        nodes = {n["id"]: n for n in get(f"{base}/api/v1/nodes")["nodes"]}
        return nodes.get(node_id)

    wait_for(lambda: (n := node()) and n["status"] == "online" and "cpu_percent" in n["headline"], 30, "the agent's first report")
    local = [n for n in get(f"{base}/api/v1/nodes")["nodes"] if n["local"]]
    assert len(local) == 1 and local[0]["status"] == "online"  # the hub's own host is a live node too
    detail = get(f"{base}/api/v1/nodes/{node_id}")
    assert "linux_host" in detail["state"] and detail["node"]["facts"]["hostname"]

    # The hub dies hard; the agent keeps collecting into its spool.
    hub.stop(signal.SIGKILL)
    outage_start = time.time()
    time.sleep(4)
    hub = start_hub()
    outage_end = time.time()
    # The agent comes back on its own backoff (jittered, up to 60 s between tries), not when the hub does.
    wait_for(lambda: "again; sending" in agent.text(), 90, "the agent to reconnect after the outage")

    # Every report collected during the outage arrives; the series has no hole.
    def caught_up():
        hist = get(f"{base}/api/v1/nodes/{node_id}/metrics?series=linux_host.uptime_s&start={outage_start - 5}&end={time.time()}&resolution=raw")
        points = hist["series"]["linux_host.uptime_s"]
        return points if points and points[-1][0] > outage_end + 1 else None

    points = wait_for(caught_up, 30, "the spooled backlog")
    stamps = [p[0] for p in points]
    assert stamps == sorted(stamps)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert max(gaps) < INTERVAL * 2.5, f"history has a gap of {max(gaps):.2f} s"
    during = [t for t in stamps if outage_start + 0.5 < t < outage_end - 0.5]
    assert len(during) >= (outage_end - outage_start - 1) / INTERVAL * 0.8, f"only {len(during)} reports from the outage"
    assert "spooled reports" in agent.text() or "again" in agent.text()
    assert get(f"{base}/api/v1/nodes/{node_id}")["node"]["status"] == "online"
    agent.stop()
    hub.stop()
    assert agent.p.returncode == 0, agent.text()[-2000:]
