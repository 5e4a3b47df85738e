"""The hub-host commands (join-token, users, api-token, nodes, audit) find the running hub, print its real URL, and never make a second store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import free_port, wait_for

pytestmark = pytest.mark.e2e

ROOST = [sys.executable, "-m", "roost.core.cli"]
HUB_CONFIG = '[hub]\ndiscovery = false\nwol_broadcast = "127.0.0.1"\n[agent]\nenabled = false\n'


class Host:
    """One user's shell on the hub host: its own home and runtime dir, the real `roost` command, real hub processes."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.runtime = tmp_path / "run"
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if k not in ("ROOST_DATA_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME")}
        self.env.update(HOME=str(self.home), XDG_RUNTIME_DIR=str(self.runtime), PYTHONUNBUFFERED="1")
        self.config = tmp_path / "hub.toml"
        self.config.write_text(HUB_CONFIG, encoding="utf-8")
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def default_store(self) -> Path:
        return self.home / ".local" / "share" / "roost"

    def records(self) -> list[Path]:
        return sorted((self.runtime / "roost").glob("hub-*.json"))

    def roost(self, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ROOST, *argv], input=stdin, capture_output=True, text=True, timeout=60, env=self.env, cwd=self.tmp)

    def start(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.tmp / log, "ab") as fh:
            proc = subprocess.Popen([*ROOST, *argv], stdout=fh, stderr=subprocess.STDOUT, env=self.env, cwd=self.tmp)
        self.procs.append(proc)
        return proc

    def start_hub(self, name: str) -> tuple[subprocess.Popen[bytes], Path, int]:
        data, port = self.tmp / name, free_port()
        before = set(self.records())
        proc = self.start(["hub", "--config", str(self.config), "--data-dir", str(data), "--bind", "127.0.0.1", "--port", str(port)], f"{name}.log")
        # The hub records itself once it listens: that is the event the commands depend on.
        wait_for(lambda: proc.poll() is not None or set(self.records()) - before, 60, f"hub {name} to record itself")
        assert proc.poll() is None, (self.tmp / f"{name}.log").read_text()[-2000:]
        return proc, data, port

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
        proc.wait(30)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def host(tmp_path):
    shell = Host(tmp_path)
    yield shell
    shell.close()


def test_commands_work_on_the_running_hub_and_print_its_real_url(host):
    hub, data, port = host.start_hub("hub")
    url = f"http://127.0.0.1:{port}"
    [record] = host.records()
    assert json.loads(record.read_text()) | {"started": None} == {
        "pid": hub.pid, "started": None, "data_dir": str(data.resolve()), "url": url, "config": str(host.config.resolve())
    }
    assert record.stat().st_mode & 0o077 == 0

    made = host.roost("join-token", "create", "--note", "garage pi")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert f"roost agent --hub {url} --join {token}" in made.stderr.splitlines()
    assert not host.default_store.exists(), "no second store may appear in the default place"
    # The token is in the running hub's store, under its own data dir ...
    listed = host.roost("join-token", "list", "--data-dir", str(data))
    assert listed.returncode == 0 and "garage pi" in listed.stdout
    # ... and the printed command enrols a real agent with that hub.
    agent_dir = host.tmp / "agent"
    host.start(["agent", "--hub", url, "--join", token, "--data-dir", str(agent_dir)], "agent.log")
    state = wait_for(lambda: json.loads((agent_dir / "agent.json").read_text()) if (agent_dir / "agent.json").exists() else None, 60, "the agent to enrol")
    nodes = host.roost("nodes", "list")
    assert nodes.returncode == 0 and state["node_id"] in nodes.stdout

    # The other hub-host commands find the same store.
    added = host.roost("users", "add", "owner", stdin="a long test passphrase\n")
    assert added.returncode == 0, added.stderr
    assert "owner\tadmin" in host.roost("users", "list", "--data-dir", str(data)).stdout
    api = host.roost("api-token", "create", "--user", "owner", "--scope", "read")
    assert api.returncode == 0 and api.stdout.startswith("rst_"), api.stderr
    audit = host.roost("audit", "verify")
    assert audit.returncode == 0 and str(data / "roost.db") in audit.stdout, audit.stdout + audit.stderr
    assert not host.default_store.exists()

    # Naming the data dir still works, and the URL is still the one the hub listens on.
    named = host.roost("join-token", "create", "--data-dir", str(data))
    assert named.returncode == 0 and f"roost agent --hub {url} --join {named.stdout.strip()}" in named.stderr.splitlines()


def test_with_no_hub_running_the_commands_refuse_and_create_nothing(host):
    for argv in (
        ["join-token", "create"],
        ["join-token", "list"],
        ["users", "list"],
        ["api-token", "list"],
        ["nodes", "pending"],
        ["audit", "verify"],
    ):
        proc = host.roost(*argv)
        assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
        assert proc.stdout == ""
        assert "no hub is running on this host" in proc.stderr and "--data-dir DIR" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not host.default_store.exists()
    assert not (host.home / ".local").exists() or not any((host.home / ".local").rglob("*.db"))


def test_a_stopped_or_dead_hub_is_not_found_and_two_running_hubs_must_be_named(host):
    first, first_data, first_port = host.start_hub("first")
    second, second_data, second_port = host.start_hub("second")
    both = host.roost("join-token", "create")
    assert both.returncode == 2 and both.stdout == ""
    assert f"--data-dir {first_data.resolve()}" in both.stderr and f"--data-dir {second_data.resolve()}" in both.stderr, both.stderr
    assert f"http://127.0.0.1:{first_port}" in both.stderr and f"http://127.0.0.1:{second_port}" in both.stderr

    # A clean stop removes the hub's record: the one left is the hub meant.
    host.stop(second)
    assert len(host.records()) == 1
    made = host.roost("join-token", "create")
    assert made.returncode == 0, made.stderr
    assert f"roost agent --hub http://127.0.0.1:{first_port} --join {made.stdout.strip()}" in made.stderr.splitlines()

    # A hub that dies leaves its record behind; it is recognised as stale and removed.
    host.stop(first, signal.SIGKILL)
    assert len(host.records()) == 1
    gone = host.roost("join-token", "create")
    assert gone.returncode == 2 and "no hub is running on this host" in gone.stderr and "--data-dir DIR" in gone.stderr
    assert host.records() == []
    assert not host.default_store.exists()
