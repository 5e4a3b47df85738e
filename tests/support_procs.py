"""Real `roost` processes for end-to-end tests: the CLI on a hub's store, a hub and an agent on loopback, and their logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from support import free_port, wait_for

ROOST = [sys.executable, "-m", "roost.core.cli"]
# Never announce on, or send Wake-on-LAN to, the machine's real interfaces.
SAFE_HUB_TABLE = '[hub]\ndiscovery = false\nwol_broadcast = "127.0.0.1"\n'


def roost(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real CLI to completion; a non-zero exit fails with its output."""
    done = subprocess.run([*ROOST, *args], input=stdin, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"roost {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


class Proc:
    """One long-running `roost` process with its output in a log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.fh = open(log, "ab")
        self.p = subprocess.Popen(
            [*ROOST, *args], stdout=self.fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        if not self.fh.closed:
            self.fh.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


class HubProc:
    """A real hub on 127.0.0.1 with its data dir; `api()` speaks to it with a bearer token."""

    def __init__(self, tmp: Path, config: str = "", *, name: str = "hub") -> None:
        self.tmp = tmp
        self.data_dir = tmp / f"{name}-data"
        self.config = tmp / f"{name}.toml"
        self.config.write_text(SAFE_HUB_TABLE + config, encoding="utf-8")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.proc: Proc | None = None
        self.starts = 0

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return roost(*args, "--data-dir", str(self.data_dir), stdin=stdin)

    def user_token(self, user: str, role: str, scope: str, *, expires: str | None = None) -> str:
        """A user made with `roost users add` (if new) and an API token for it from `roost api-token create`."""
        listed = self.cli("users", "list").stdout
        if user not in [line.split("\t")[1] for line in listed.splitlines() if "\t" in line]:
            self.cli("users", "add", user, "--role", role, stdin="a long test passphrase\na long test passphrase\n")
        extra = ["--expires", expires] if expires else []
        return self.cli("api-token", "create", "--user", user, "--scope", scope, *extra).stdout.strip()

    def start(self, env: dict[str, str] | None = None, timeout: float = 60) -> Proc:
        self.starts += 1
        self.proc = Proc(
            ["hub", "--config", str(self.config), "--data-dir", str(self.data_dir), "--port", str(self.port), "--bind", "127.0.0.1"],
            self.tmp / f"{self.name}-{self.starts}.log",
            env,
        )
        wait_for(lambda: self._health(), timeout, f"the hub on port {self.port} to answer")
        return self.proc

    def _health(self) -> bool:
        if self.proc is not None and self.proc.p.poll() is not None:
            raise AssertionError(f"the hub exited with {self.proc.p.returncode}:\n{self.proc.text()[-3000:]}")
        with urllib.request.urlopen(self.base + "/api/v1/health", timeout=5) as resp:
            return json.loads(resp.read()).get("status") == "ok"

    def api(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.stop(sig)
