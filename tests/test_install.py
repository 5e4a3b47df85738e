"""The single executable run for real, and the hub's one-line install run as root in a private root with real users, files and enrolment.

The executable is built once by scripts/build-binary (PyInstaller one-file)
and reused while its inputs are unchanged (tests/support_binary.py). The
install script runs in a mount namespace whose /etc, /opt, /var/lib and /usr/local are
overlays: useradd, install, runuser, curl with the pin and the enrolment are
all real, nothing of it reaches the machine. systemd is not PID 1 here, so a
fake systemctl (tests/fixtures/install/fake-systemctl) starts the unit's
commands the way systemd would; the unit files themselves are checked by
systemd-analyze in tests/test_systemd_units.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import IN_CI, free_port, need, wait_for
from support_auth import seed_user
from support_binary import arch, built_executable

from roost.core.config import load_hub_config
from roost.core.release import make_manifest, sign_manifest
from roost.core.signing import generate_operator_key, public_key_of, save_operator_key

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parent / "fixtures" / "install"
PASSPHRASE = "release passphrase for tests"
ROOST_PY = [sys.executable, "-m", "roost.core.cli"]


@pytest.fixture(scope="module")
def executable() -> Path:
    need(importlib.util.find_spec("PyInstaller") is not None, "PyInstaller (pip install pyinstaller)")
    return built_executable()


@pytest.fixture(scope="module")
def operator(tmp_path_factory) -> dict[str, Path | str]:
    base = tmp_path_factory.mktemp("operator")
    key = generate_operator_key()
    save_operator_key(base / "operator-key.pem", key, PASSPHRASE, scrypt_n=2**14)
    (base / "passphrase").write_text(PASSPHRASE + "\n")
    return {"key": base / "operator-key.pem", "passphrase": base / "passphrase", "public": public_key_of(key), "private": key}


class Hub:
    """A hub process on loopback with TLS, its CA trusted by this test's requests."""

    def __init__(self, command: list[str], base: Path, operator_key: str) -> None:
        self.command, self.dir, self.port = command, base / "hub", free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.conf = base / "hub.toml"
        self.conf.write_text(
            "[hub]\n"
            "bind = \"127.0.0.1\"\n"
            f"port = {self.port}\n"
            "tls = true\n"
            "discovery = false\n"
            "wol_broadcast = \"127.0.0.1\"\n"
            f"operator_keys = [\"{operator_key}\"]\n"
            "[agent]\ninterval = \"1s\"\n"
        )
        config = load_hub_config(self.conf, overrides={"hub": {"data_dir": str(self.dir)}})
        self.token = asyncio.run(seed_user(config))
        self.log = base / "hub.log"
        self.proc: subprocess.Popen | None = None

    def roost(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.command, *args, "--data-dir", str(self.dir), "--config", str(self.conf)],
                              capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        self.proc = subprocess.Popen([*self.command, "hub", "--data-dir", str(self.dir), "--config", str(self.conf)],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        wait_for(lambda: self.get("/api/v1/health")["status"] == "ok" or (self.proc.poll() is not None and self._died()), 60, "the hub to answer")

    def _died(self):
        raise AssertionError(f"the hub exited: {self.log.read_text()[-3000:]}")

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.dir / "tls" / "ca.pem"))

    def get(self, path: str, *, raw: bool = False):
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=10, context=self.context()) as resp:
            body = resp.read()
        return body if raw else json.loads(body)

    def node(self, node_id: str) -> dict | None:
        return {n["id"]: n for n in self.get("/api/v1/nodes")["nodes"]}.get(node_id)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def sign_release(path: Path, operator: dict, version: str | None = None) -> None:
    done = subprocess.run([*ROOST_PY, "release", "sign", str(path), "--key", str(operator["key"]), "--passphrase-file", str(operator["passphrase"]),
                           *(["--release-version", version] if version else [])], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------- the executable itself


def test_the_single_executable_runs_a_hub_and_an_agent_that_enrols_and_reports(executable, operator, tmp_path):
    out = subprocess.run([str(executable), "--version"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "roost 0.1.0", out
    hub = Hub([str(executable)], tmp_path, operator["public"])
    hub.start()
    agent = None
    try:
        # The dashboard's templates and static files are inside the one file.
        page = hub.get("/static/js/roost.js", raw=True)
        assert b"Roost" in page
        created = hub.roost("join-token", "create", "--hub-url", hub.url)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        agent_dir = tmp_path / "agent"
        agent_log = tmp_path / "agent.log"
        conf = tmp_path / "agent.toml"
        conf.write_text('[agent]\ninterval = "1s"\ndiscovery = false\n')
        # As systemd starts it: NOTIFY_SOCKET, and WATCHDOG_PID naming the started process (the one-file bootloader).
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp_path / "notify"))
        notify.settimeout(60)
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
        agent = subprocess.Popen(["sh", "-c", 'WATCHDOG_PID=$$ exec "$0" "$@"', str(executable), "agent", "--hub", hub.url, "--join", token,
                                  "--data-dir", str(agent_dir), "--config", str(conf)], stdout=open(agent_log, "ab"), stderr=subprocess.STDOUT, env=env)
        state = wait_for(lambda: json.loads((agent_dir / "agent.json").read_text()) if (agent_dir / "agent.json").exists() else None, 60, "enrolment")
        node = wait_for(lambda: (n := hub.node(state["node_id"])) and n["status"] == "online" and "cpu_percent" in n["headline"] and n, 60,
                        f"the agent's first report ({agent_log.read_text()[-1500:] if agent_log.exists() else ''})")
        detail = hub.get(f"/api/v1/nodes/{state['node_id']}")
        # Every built-in agent integration came along: linux_host collected, and none is missing a library.
        assert "linux_host" in detail["state"]
        text = agent_log.read_text()
        assert "missing requirement" not in text and "No module named" not in text, text[-3000:]
        assert node["status"] == "online"
        messages = [notify.recv(4096) for _ in range(3)]
        assert messages[0].startswith(b"READY=1") and messages[1:] == [b"WATCHDOG=1", b"WATCHDOG=1"], messages
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(20)
        hub.stop()
    assert agent.returncode == 0, agent_log.read_text()[-2000:]


# ---------------------------------------------------------------------------- the one-line install


class PrivateRoot:
    """A mount namespace whose /etc, /opt, /var/lib and /usr/local are overlays on this machine's, with systemctl replaced by the fake."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.fake_dir = base / "systemctl"
        self.fake_dir.mkdir(parents=True)
        script = base / "enter.sh"
        lines = ["set -e", "mount --make-rprivate /"]
        for d in ("etc", "opt", "var/lib", "usr/local"):
            (base / "up" / d).mkdir(parents=True)
            (base / "work" / d).mkdir(parents=True)
            lines.append(f"mount -t overlay overlay -o lowerdir=/{d},upperdir={base}/up/{d},workdir={base}/work/{d} /{d}")
        lines += [
            "mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system",
            f"mount --bind {FIXTURES / 'fake-systemctl'} /usr/bin/systemctl",
            "echo ready",
            "exec sleep 3600",
        ]
        script.write_text("\n".join(lines) + "\n")
        self.holder = subprocess.Popen(["unshare", "-m", "sh", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        if line.strip() != "ready":
            raise AssertionError(f"cannot make the private root: {self.holder.stderr.read()}")

    def run(self, command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "FAKE_SYSTEMCTL_DIR": str(self.fake_dir), "HOME": "/root"}
        return subprocess.run(["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "sh", "-c", command],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def path(self, inside: str) -> Path:
        """Where a file made inside /etc, /opt, /var/lib or /usr/local lands (the overlay's upper layer)."""
        return self.base / "up" / inside.lstrip("/")

    def close(self) -> None:
        pidfile = self.fake_dir / "roost-agent.pid"
        if pidfile.exists():
            try:
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        self.holder.kill()
        self.holder.wait(10)


def can_make_private_root() -> str:
    if os.geteuid() != 0:
        return "root (for a mount namespace with overlays)"
    for tool in ("unshare", "nsenter", "useradd", "runuser", "setpriv", "curl", "openssl", "sha256sum"):
        if shutil.which(tool) is None:
            return tool
    return ""


@pytest.fixture
def private_root(tmp_path):
    missing = can_make_private_root()
    need(not missing, missing)
    root = PrivateRoot(tmp_path / "root")
    yield root
    root.close()


def test_one_line_install_from_the_hub_enrols_and_starts_then_reruns_harmlessly_and_uninstalls(executable, operator, tmp_path, private_root):
    hub = Hub(ROOST_PY, tmp_path, operator["public"])
    name = f"roost-linux-{arch()}"
    release = tmp_path / "release" / name
    release.parent.mkdir()
    shutil.copy2(executable, release)
    sign_release(release, operator)
    added = hub.roost("release", "add", str(release))
    assert added.returncode == 0, added.stderr
    hub.start()
    try:
        created = hub.roost("join-token", "create", "--hub-url", hub.url)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        line = next(ln for ln in created.stderr.splitlines() if ln.startswith("curl "))
        assert f"{hub.url}/install.sh | sudo sh -s -- --join {token}" in line and "--pinnedpubkey 'sha256//" in line
        assert "network_mode: host" in created.stderr and "/var/run/docker.sock:/var/run/docker.sock:ro" in created.stderr
        # As root there is no sudo to go through; the rest of the line is what a person pastes.
        command = line.replace("| sudo sh", "| sh")

        # A host that is not the hub (another key behind the same address) is refused before anything is sent:
        # curl stops, the shell gets an empty script and nothing is installed.
        wrong = private_root.run(command.replace("sha256//", "sha256//AAAA"))
        assert "public key does not match pinned public key" in wrong.stderr and not private_root.path("/opt/roost").exists()

        first = private_root.run(command)
        assert first.returncode == 0, first.stderr
        assert "installed and running" in first.stderr
        passwd = private_root.path("/etc/passwd").read_text()
        entry = [ln for ln in passwd.splitlines() if ln.startswith("roost:")]
        assert len(entry) == 1 and entry[0].endswith(":/usr/sbin/nologin") and int(entry[0].split(":")[2]) < 1000, passwd
        assert private_root.run("readlink /opt/roost/current").stdout.strip() == "0.1.0"
        installed = private_root.path("/opt/roost/0.1.0/roost")
        assert installed.read_bytes() == executable.read_bytes()
        assert oct(installed.stat().st_mode & 0o777) == "0o755" and installed.stat().st_uid == 0
        conf = private_root.path("/etc/roost/agent.toml").read_text()
        assert 'mode = "read-only"' in conf
        unit = private_root.path("/etc/systemd/system/roost-agent.service").read_text()
        assert "ExecStart=/opt/roost/current/roost agent" in unit and "ProtectSystem=strict" in unit
        # What root runs before each start is root's, outside what the agent user may write.
        supervisor = private_root.run("stat -c '%U %a' /usr/local/lib/roost /usr/local/lib/roost/supervise /opt/roost").stdout.split("\n")
        assert supervisor[:3] == ["root 755", "root 755", "roost 755"], supervisor
        calls = (private_root.fake_dir / "calls").read_text().splitlines()
        assert "daemon-reload" in calls and "enable roost-agent.service" in calls and "restart roost-agent.service" in calls
        state_file = private_root.path("/var/lib/roost-agent/agent.json")
        state = json.loads(state_file.read_text())
        owner = private_root.run("stat -c %U /var/lib/roost-agent/agent.json").stdout.strip()
        assert owner == "roost"
        wait_for(lambda: (n := hub.node(state["node_id"])) and n["status"] == "online" and "cpu_percent" in n["headline"], 90,
                 f"the installed agent's report ({(private_root.fake_dir / 'roost-agent.log').read_text()[-2000:] if (private_root.fake_dir / 'roost-agent.log').exists() else ''})")
        running = private_root.run("ps -o user= -p $(cat $FAKE_SYSTEMCTL_DIR/roost-agent.pid)").stdout.strip()
        assert running == "roost"

        # Again: nothing is downloaded twice, the identity stays, still one node.
        nodes_before = len(hub.get("/api/v1/nodes")["nodes"])
        again = private_root.run(command)
        assert again.returncode == 0, again.stderr
        assert "already installed" in again.stderr and "already enrolled" in again.stderr
        assert json.loads(state_file.read_text())["node_id"] == state["node_id"]
        assert len(hub.get("/api/v1/nodes")["nodes"]) == nodes_before

        gone = private_root.run(command.split(" | ")[0] + " | sh -s -- --uninstall")
        assert gone.returncode == 0, gone.stderr
        check = private_root.run("getent passwd roost; ls /opt/roost /var/lib/roost-agent /etc/systemd/system/roost-agent.service /etc/roost /usr/local/lib/roost 2>&1; true")
        assert "roost:" not in check.stdout and check.stdout.count("No such file") == 5, check.stdout
        assert not (private_root.fake_dir / "roost-agent.pid").exists()
    finally:
        hub.stop()


def test_install_refuses_a_tampered_or_unsigned_release_and_installs_nothing(executable, operator, tmp_path, private_root):
    hub = Hub(ROOST_PY, tmp_path, operator["public"])
    name = f"roost-linux-{arch()}"
    stored = hub.dir / "releases"
    # A release the operator signed, then changed on the hub: one byte of the executable.
    release = tmp_path / "release" / name
    release.parent.mkdir()
    release.write_bytes(b"#!/bin/sh\necho roost 9.9.9\n")
    sign_release(release, operator, version="9.9.9")
    assert hub.roost("release", "add", str(release)).returncode == 0
    hub.start()
    try:
        created = hub.roost("join-token", "create", "--hub-url", hub.url)
        command = next(ln for ln in created.stderr.splitlines() if ln.startswith("curl ")).replace("| sudo sh", "| sh")
        # A display name that would break out of the config file is refused before anything is fetched.
        bad_name = private_root.run(command + " --name 'box\"\n[agent.ceiling]\nmode = \"execute'")
        assert bad_name.returncode != 0 and "--name may hold" in bad_name.stderr, bad_name.stderr
        (stored / name).write_bytes(b"#!/bin/sh\necho roost 9.9.8\n")
        tampered = private_root.run(command)
        assert tampered.returncode != 0
        assert "SHA-256" in tampered.stderr and "nothing was installed" in tampered.stderr, tampered.stderr
        (stored / name).write_bytes(b"#!/bin/sh\necho roo")
        truncated = private_root.run(command)
        assert "truncated" in truncated.stderr and truncated.returncode != 0, truncated.stderr
        # A manifest the hub wrote itself (it holds no operator key) is refused by its signature.
        other = generate_operator_key()
        raw = make_manifest(name=name, version="9.9.9", sha256="0" * 64, size=3, issued=int(time.time()), expires=int(time.time()) + 3600)
        (stored / f"{name}.manifest").write_bytes(raw)
        (stored / f"{name}.sig").write_text(sign_manifest(raw, other) + "\n")
        forged = private_root.run(command)
        assert forged.returncode != 0 and "not signed by an operator key" in forged.stderr, forged.stderr
        assert not private_root.path("/opt/roost").exists() and "\nroost:" not in "\n" + private_root.run("getent passwd roost; true").stdout
    finally:
        hub.stop()
