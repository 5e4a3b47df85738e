"""Config mistakes through the real `roost` command: each stops the process before it does anything, says the key or flag, what is allowed and what was given, exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import free_port

ROOST = [sys.executable, "-m", "roost.core.cli"]
# Any bad value must be reported at once; a process that starts instead is stopped by this bound.
TIMEOUT = 60
# The hub here never announces or broadcasts on this machine's interfaces.
HUB_SAFE = '[hub]\ndiscovery = false\nwol_broadcast = "127.0.0.1"\n'


def run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ROOST_DATA_DIR"}
    env.update(HOME=str(tmp_path / "home"), XDG_RUNTIME_DIR=str(tmp_path / "run"), PYTHONUNBUFFERED="1")
    return subprocess.run([*ROOST, *argv], capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "roost.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def hub(tmp_path: Path, text: str, *more: str) -> subprocess.CompletedProcess[str]:
    return run(tmp_path, "hub", "--config", config(tmp_path, HUB_SAFE + text), "--data-dir", str(tmp_path / "data"), "--bind", "127.0.0.1", "--port", str(free_port()), *more)


def agent(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    # A hub URL nobody listens on: an agent that got past its config would retry it, not exit 2.
    return run(tmp_path, "agent", "--config", config(tmp_path, text), "--data-dir", str(tmp_path / "data"), "--hub", f"http://127.0.0.1:{free_port()}")


def stopped_before_starting(proc: subprocess.CompletedProcess[str], tmp_path: Path) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists(), "nothing may be made before the config is known to be good"
    return proc.stderr


@pytest.mark.parametrize("role", ["hub", "agent"])
def test_a_bad_integration_value_stops_the_process(tmp_path, role):
    text = '[integrations.linux_host]\ntop_processes = "lots"\n'
    err = stopped_before_starting(hub(tmp_path, text) if role == "hub" else agent(tmp_path, text), tmp_path)
    assert "roost.toml: integrations.linux_host.top_processes: expected a whole number (got 'lots')" in err


@pytest.mark.parametrize("role", ["hub", "agent"])
def test_a_misspelled_integration_table_stops_the_process_with_a_suggestion(tmp_path, role):
    text = "[integrations.dokcer]\nurl = \"unix:///run/docker.sock\"\n"
    err = stopped_before_starting(hub(tmp_path, text) if role == "hub" else agent(tmp_path, text), tmp_path)
    assert "roost.toml: integrations.dokcer: no such integration; did you mean docker?" in err
    assert "installed: " in err and "linux_host" in err


def test_a_misspelled_key_in_an_integration_table_names_the_key_it_meant(tmp_path):
    err = stopped_before_starting(agent(tmp_path, "[integrations.linux_host]\ntop_procesess = 5\n"), tmp_path)
    line = next(line for line in err.splitlines() if "integrations.linux_host.top_procesess" in line)
    assert "unknown key; did you mean top_processes?" in line and "allowed: " in line and "enabled" in line


def test_the_shared_enabled_and_timeout_keys_are_checked_as_strictly(tmp_path):
    err = stopped_before_starting(hub(tmp_path, '[integrations.linux_host]\nenabled = "yes"\n'), tmp_path)
    assert "integrations.linux_host.enabled: expected true or false (got 'yes')" in err
    err = stopped_before_starting(agent(tmp_path, "[integrations.docker]\ntimeout = 0\n"), tmp_path)
    assert "integrations.docker.timeout: expected seconds between 0 and 600 (got 0)" in err


def test_every_problem_is_reported_at_once(tmp_path):
    err = stopped_before_starting(agent(tmp_path, '[integrations.dokcer]\n[integrations.linux_host]\ntop_processes = -1\n'), tmp_path)
    assert "did you mean docker?" in err and "integrations.linux_host.top_processes: must be between 0 and" in err


def test_a_bad_flag_is_reported_by_its_name(tmp_path):
    proc = run(tmp_path, "hub", "--data-dir", str(tmp_path / "data"), "--port", "99999")
    err = stopped_before_starting(proc, tmp_path)
    assert "--port: must be a port number between 1 and 65535 (got 99999)" in err
    assert "hub.port" not in err and "defaults" not in err
    err = stopped_before_starting(run(tmp_path, "agent", "--data-dir", str(tmp_path / "data"), "--hub", "hub.lan"), tmp_path)
    assert "--hub: must be the hub's URL, e.g. http://hub.lan:8765 (got 'hub.lan')" in err


def test_a_bind_address_this_host_does_not_have_is_named_as_such(tmp_path):
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never an address of a real host.
    proc = run(tmp_path, "hub", "--config", config(tmp_path, HUB_SAFE), "--data-dir", str(tmp_path / "data"), "--bind", "192.0.2.7", "--port", str(free_port()))
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "192.0.2.7 is not an address of this host" in last and "--bind" in last
    assert "--port" not in last


def test_a_port_in_use_still_says_to_pick_another_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run(tmp_path, "hub", "--config", config(tmp_path, HUB_SAFE), "--data-dir", str(tmp_path / "data"), "--bind", "127.0.0.1", "--port", str(port))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == f"roost hub: cannot listen on 127.0.0.1:{port}: the port is in use — pick another --port or stop what uses it"
