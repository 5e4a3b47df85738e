"""Hub and agent as real processes over TLS: the join token pins the hub CA, mTLS is enforced, and a hub with another CA is refused."""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from support import free_port, wait_for

from roost.core.tls import compact_fingerprint

pytestmark = pytest.mark.e2e

ROOST = [sys.executable, "-m", "roost.core.cli"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*ROOST, *args], input=stdin, capture_output=True, text=True, timeout=60)


class Hub:
    def __init__(self, tmp: Path, port: int) -> None:
        self.dir = tmp / "hub"
        self.port = port
        self.conf = tmp / "hub.toml"
        self.conf.write_text('[hub]\ntls = true\nrequire_client_cert = true\n[agent]\ninterval = "1s"\n')
        self.log = tmp / "hub.log"
        self.proc: subprocess.Popen | None = None
        self.url = f"https://127.0.0.1:{port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*ROOST, "hub", "--data-dir", str(self.dir), "--bind", "127.0.0.1", "--port", str(self.port), "--config", str(self.conf)],
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self.get("/api/v1/health")["status"] == "ok", 30, "the hub over https")

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "tls" / "ca.pem"))
        ctx.check_hostname = False
        return ctx

    def get(self, path: str, token: str | None = None) -> dict:
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"} if token else {})
        with urllib.request.urlopen(req, timeout=5, context=self.context()) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def test_join_token_pins_the_hub_and_mtls_is_enforced(tmp_path):
    port = free_port()
    hub = Hub(tmp_path, port)
    agents: list[subprocess.Popen] = []
    try:
        hub.start()
        assert run("users", "add", "admin", "--role", "admin", "--data-dir", str(hub.dir), stdin="correct horse battery\n").returncode == 0
        api = run("api-token", "create", "--user", "admin", "--scope", "read", "--data-dir", str(hub.dir))
        assert api.returncode == 0, api.stderr
        api_token = api.stdout.strip().splitlines()[0]
        created = run("join-token", "create", "--uses", "2", "--data-dir", str(hub.dir), "--hub-url", hub.url)
        token = created.stdout.strip()
        assert "." in token  # carries the CA fingerprint

        # An agent whose token names another CA refuses the hub before sending the secret.
        fake_fp = compact_fingerprint("ab" * 32)
        wrong = run("agent", "--data-dir", str(tmp_path / "wrong"), "--hub", hub.url, "--join", token.split(".")[0] + "." + fake_fp)
        assert wrong.returncode == 1 and "not the one in the join token" in wrong.stderr

        agent_dir = tmp_path / "agent"
        conf = tmp_path / "agent.toml"
        conf.write_text('[agent]\ninterval = "0.5s"\n')
        log = open(tmp_path / "agent.log", "ab")
        agents.append(subprocess.Popen([*ROOST, "agent", "--data-dir", str(agent_dir), "--hub", hub.url, "--join", token, "--config", str(conf)], stdout=log, stderr=subprocess.STDOUT))
        state = wait_for(lambda: json.loads((agent_dir / "agent.json").read_text()) if (agent_dir / "agent.json").exists() else None, 30, "enrolment")
        assert (agent_dir / "hub-ca.pem").exists() and (agent_dir / "client.pem").exists()
        assert oct((agent_dir / "client.key").stat().st_mode & 0o777) == "0o600"

        def reporting():
            nodes = {n["id"]: n for n in hub.get("/api/v1/nodes", api_token)["nodes"]}
            node = nodes.get(state["node_id"])
            return node if node and node["status"] == "online" and node["headline"] else None

        wait_for(reporting, 30, "reports over mTLS")

        # Without its client certificate the same node is refused by a hub that requires one.
        agents[0].send_signal(signal.SIGTERM)
        agents[0].wait(10)
        (agent_dir / "client.pem").rename(agent_dir / "client.pem.off")
        (agent_dir / "client.key").rename(agent_dir / "client.key.off")
        agents.append(subprocess.Popen([*ROOST, "agent", "--data-dir", str(agent_dir), "--config", str(conf)], stdout=log, stderr=subprocess.STDOUT))
        wait_for(lambda: "requires a client certificate" in (tmp_path / "agent.log").read_text(errors="replace"), 30, "the mTLS refusal")
        agents[-1].send_signal(signal.SIGTERM)
        agents[-1].wait(10)
        (agent_dir / "client.pem.off").rename(agent_dir / "client.pem")
        (agent_dir / "client.key.off").rename(agent_dir / "client.key")

        # A hub that comes back with another CA is refused: the agent fails closed.
        hub.stop()
        shutil.rmtree(hub.dir / "tls")
        hub.start()
        agents.append(subprocess.Popen([*ROOST, "agent", "--data-dir", str(agent_dir), "--config", str(conf)], stdout=log, stderr=subprocess.STDOUT))
        wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in (tmp_path / "agent.log").read_text(errors="replace") or "certificate verify failed" in (tmp_path / "agent.log").read_text(errors="replace"), 30, "the pinned-CA refusal")
    finally:
        for proc in agents:
            if proc.poll() is None:
                proc.kill()
        hub.stop()
