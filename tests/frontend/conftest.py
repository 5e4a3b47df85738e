"""Fixtures for the dashboard's tests: hub-shaped sample data and a fake hub for rendering, a real hub process and Chromium for the browser tests."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support import free_port, need

NOW = time.time()

SUMMARY: dict[str, Any] = {
    "id": "n0a1b2c3d4e5",
    "name": "atlas",
    "hostname": "atlas.lan",
    "status": "online",
    "last_seen": NOW - 3,
    "local": True,
    "agent_version": "0.1.0",
    "facts": {"os": "Debian GNU/Linux", "kernel": "6.1.0-18-amd64", "arch": "x86_64", "cpu_cores_logical": 8},
    "headline": {
        "cpu_percent": 12.5,
        "mem_used_percent": 63.2,
        "disk_used_percent": 91.0,
        "load_1": 0.42,
        "uptime_s": 93784,
    },
    "integrations_summary": {"loaded": 1, "problems": 1},
    "spool_dropped": 0,
}

LINUX_HOST_STATE: dict[str, Any] = {
    "facts": {
        "hostname": "atlas.lan",
        "os": "Debian GNU/Linux",
        "os_version": "12",
        "kernel": "6.1.0-18-amd64",
        "arch": "x86_64",
        "cpu_model": "AMD Ryzen 7 5700G with Radeon Graphics",
        "cpu_cores_logical": 8,
        "cpu_cores_physical": 4,
        "boot_time": NOW - 93784,
        "virtualization": "none",
        "container": None,
        "mem_total_bytes": 33_554_432_000,
        "macs": {"eth0": "52:54:00:12:34:56"},
    },
    "cpu": {"percent": 12.5, "per_core_percent": [10.0, 20.0, 5.0, 15.0], "load": [0.42, 0.35, 0.3], "count": 8},
    "memory": {
        "total_bytes": 33_554_432_000,
        "used_bytes": 21_206_401_024,
        "available_bytes": 12_348_030_976,
        "percent": 63.2,
        "swap_total_bytes": 0,
        "swap_used_bytes": 0,
        "swap_percent": 0,
    },
    "disks": [
        {"mount": "/", "device": "/dev/nvme0n1p2", "fstype": "ext4", "total_bytes": 500_000_000_000,
         "used_bytes": 455_000_000_000, "free_bytes": 45_000_000_000, "percent": 91.0},
        {"mount": "/srv", "device": "/dev/sda1", "fstype": "xfs", "total_bytes": 4_000_000_000_000,
         "used_bytes": 1_000_000_000_000, "free_bytes": 3_000_000_000_000, "percent": 25.0},
    ],
    "disk_io": {"read_bytes_per_s": 1_048_576, "write_bytes_per_s": 524_288, "devices": []},
    "network": [
        {"name": "eth0", "mac": "52:54:00:12:34:56", "is_up": True, "speed_mbps": 1000, "mtu": 1500,
         "addresses": [{"family": "ipv4", "address": "192.168.1.10", "netmask": "255.255.255.0"}],
         "rx_bytes": 10_000_000_000, "tx_bytes": 2_000_000_000, "rx_bytes_per_s": 125_000, "tx_bytes_per_s": 2_500,
         "errors": 0, "drops": 3},
    ],
    "uptime_s": 93784,
    "processes": {
        "count": 214,
        "top_cpu": [{"pid": 811, "name": "postgres", "username": "postgres", "cpu_percent": 7.5,
                     "mem_bytes": 104_857_600, "mem_percent": 0.3, "cmdline": "postgres: checkpointer"}],
        "top_memory": [{"pid": 1201, "name": "java", "username": "minecraft", "cpu_percent": 2.0,
                        "mem_bytes": 4_294_967_296, "mem_percent": 12.8, "cmdline": ["java", "-Xmx4G", "-jar", "server.jar"]}],
    },
    "services": {
        "available": True,
        "reason": "",
        "units": [
            {"name": "ssh.service", "load": "loaded", "active": "active", "sub": "running", "description": "OpenBSD Secure Shell server"},
            {"name": "backup.service", "load": "loaded", "active": "failed", "sub": "failed", "description": "Nightly backup"},
        ],
    },
}

INTEGRATIONS: list[dict[str, Any]] = [
    {"domain": "linux_host", "name": "Linux host", "version": "0.1.0", "source": "builtin", "state": "loaded",
     "reason": "", "since": NOW - 600},
    {"domain": "docker", "name": "Docker", "version": "0.1.0", "source": "builtin", "state": "setup_error",
     "reason": "docker: cannot reach /var/run/docker.sock (permission denied) — add the roost user to the docker group",
     "since": NOW - 600},
]


def node_detail(summary: dict[str, Any] | None = None, state: dict[str, Any] | None = None) -> dict[str, Any]:
    node = copy.deepcopy(summary or SUMMARY)
    node.update(
        facts=copy.deepcopy(LINUX_HOST_STATE["facts"]),
        integrations=copy.deepcopy(INTEGRATIONS),
        capabilities=["host.metrics.read"],
        interval=2.5,
        created_at=NOW - 86_400,
        fields={"linux_host.cpu_percent": {"unit": "percent", "description": "CPU use", "label": "CPU"}},
    )
    return {
        "node": node,
        "state": copy.deepcopy(state if state is not None else {"linux_host": LINUX_HOST_STATE}),
        "collected_at": NOW - 3,
        "metrics": {"linux_host.cpu_percent": 12.5},
    }


class FakeHub:
    """Answers the three calls the dashboard makes, from plain data a test can change."""

    def __init__(self, nodes: list[dict[str, Any]] | None = None, details: dict[str, dict[str, Any]] | None = None,
                 hub_integrations: list[dict[str, Any]] | None = None) -> None:
        self.nodes = nodes if nodes is not None else [copy.deepcopy(SUMMARY)]
        self.details = details if details is not None else {n["id"]: node_detail(n) for n in self.nodes}
        self.hub_integrations = hub_integrations if hub_integrations is not None else []

    async def nodes_summary(self) -> dict[str, Any]:
        return {"nodes": copy.deepcopy(self.nodes)}

    async def node_detail(self, node_id: str) -> dict[str, Any] | None:
        detail = self.details.get(node_id)
        return copy.deepcopy(detail) if detail is not None else None

    async def integrations_overview(self) -> dict[str, Any]:
        return {
            "hub": copy.deepcopy(self.hub_integrations),
            "nodes": {
                node_id: {"name": d["node"].get("name"), "integrations": copy.deepcopy(d["node"].get("integrations", []))}
                for node_id, d in self.details.items()
            },
        }


async def with_hub_halves(hub: Any, data_dir: Path, *domains: str, custom_dirs: tuple[Path, ...] = ()) -> Any:
    """Load the named integrations' hub halves through the real kernel onto a (fake) hub, as the hub process does."""
    from roost.core.const import ROLE_HUB
    from roost.core.hub.integrations import HubIntegrations
    from roost.core.plugins import IntegrationManager

    plugins = HubIntegrations(hub)
    hub.headline = {}
    hub.plugins = plugins
    hub.manager = IntegrationManager(
        role=ROLE_HUB, config={}, data_dir=data_dir, custom_dirs=custom_dirs, entry_points=False, only=domains,
        context_factory=plugins.context,
    )
    hub.manager.load()
    plugins.declare()
    await hub.manager.setup_all()
    plugins.collect()
    return hub


@pytest.fixture
def samples() -> SimpleNamespace:
    """The sample data and the fake hub, for tests (helpers are not importable under importlib mode)."""
    return SimpleNamespace(
        SUMMARY=SUMMARY, LINUX_HOST_STATE=LINUX_HOST_STATE, INTEGRATIONS=INTEGRATIONS, node_detail=node_detail, FakeHub=FakeHub,
        with_hub_halves=with_hub_halves,
    )


# --------------------------------------------------------------------------
# A real hub process and a real Chromium, for the browser tests.

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
HUB_START_TIMEOUT = 30.0
FIRST_REPORT_TIMEOUT = 30.0


OWNER = "owner"
OWNER_PASSWORD = "correct horse battery staple"


@dataclass
class LiveHub:
    """A `roost hub` subprocess on loopback, with its own host as the local node.

    With an owner (``live_hub``), ``get`` sends the owner's API token and
    ``session_cookie`` is a logged-in session that new browser tabs share.
    """

    base_url: str
    node_id: str
    log: Path
    token: str = ""
    session_cookie: str = ""

    def get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        with urllib.request.urlopen(urllib.request.Request(self.base_url + path, headers=headers), timeout=5) as resp:
            return json.loads(resp.read())

    def login(self, username: str = OWNER, password: str = OWNER_PASSWORD) -> str:
        """Log in through the API; return the session cookie's value."""
        body = json.dumps({"username": username, "password": password}).encode()
        request = urllib.request.Request(self.base_url + "/api/v1/session", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            for header in resp.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                if name == "roost_session":
                    return rest.split(";", 1)[0]
        raise AssertionError("logging in set no roost_session cookie")

    def storage_state(self) -> dict[str, Any]:
        """Playwright storage state holding the logged-in session."""
        cookie = {"name": "roost_session", "value": self.session_cookie, "domain": "127.0.0.1", "path": "/",
                  "httpOnly": True, "secure": False, "sameSite": "Strict", "expires": -1}
        return {"cookies": [cookie] if self.session_cookie else [], "origins": []}


def _roost_command() -> list[str]:
    script = Path(sys.executable).with_name("roost")
    return [str(script)] if script.exists() else [sys.executable, "-m", "roost.core.cli"]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the hub exited with {proc.returncode} while waiting for {what}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            last = predicate()
            if last:
                return last
        except OSError as err:  # not listening yet
            last = err
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r}):\n{log.read_text(errors='replace')[-4000:]}")


def _cli(*args: str, stdin: str = "") -> str:
    done = subprocess.run([*_roost_command(), *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"roost {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


@contextmanager
def _running_hub(tmp: Path, *, owner: bool) -> Iterator[tuple[LiveHub, subprocess.Popen]]:
    """A `roost hub` collecting every second; with ``owner``, the owner account and an API token made by the CLI first."""
    config = tmp / "roost.toml"
    config.write_text('[agent]\ninterval = "1s"\n', encoding="utf-8")
    data = str(tmp / "data")
    token = ""
    if owner:
        _cli("users", "add", OWNER, "--role", "admin", "--data-dir", data, "--config", str(config), stdin=OWNER_PASSWORD + "\n")
        token = _cli("api-token", "create", "--user", OWNER, "--scope", "admin", "--data-dir", data, "--config", str(config)).strip()
    port = free_port()
    log = tmp / "hub.log"
    cmd = [*_roost_command(), "hub", "--config", str(config), "--data-dir", data,
           "--port", str(port), "--bind", "127.0.0.1"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    hub = LiveHub(base_url=f"http://127.0.0.1:{port}", node_id="", log=log, token=token)
    try:
        _wait_for(lambda: hub.get("/api/v1/health").get("status") == "ok", HUB_START_TIMEOUT, "GET /api/v1/health", proc, log)
        yield hub, proc
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def fresh_hub(tmp_path_factory) -> Iterator[LiveHub]:
    """A hub on its first start: no users yet, so every page leads to onboarding."""
    with _running_hub(tmp_path_factory.mktemp("fresh-hub"), owner=False) as (hub, _proc):
        yield hub


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory) -> Iterator[LiveHub]:
    """Start `roost hub` collecting every second, with an owner logged in once for every tab; stop it (TERM, then KILL) afterwards."""
    with _running_hub(tmp_path_factory.mktemp("hub"), owner=True) as (hub, proc):
        log = hub.log
        hub.session_cookie = hub.login()

        def local_node_reported() -> str | None:
            for node in hub.get("/api/v1/nodes")["nodes"]:
                if node.get("local") and node.get("status") == "online" and "cpu_percent" in node.get("headline", {}):
                    return node["id"]
            return None

        hub.node_id = _wait_for(local_node_reported, FIRST_REPORT_TIMEOUT, "the local node's first report", proc, log)
        yield hub


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from the system package (never a downloaded one)."""
    need(Path(CHROMIUM).exists(), f"Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "Python playwright")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Tab:
    """One browser page on the live hub, recording console errors and uncaught exceptions."""

    page: Any
    base_url: str
    errors: list[str] = field(default_factory=list)

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def assert_no_errors(self) -> None:
        assert not self.errors, "browser reported errors:\n" + "\n".join(self.errors)


def open_tab(browser: Any, hub: LiveHub, *, logged_in: bool = True, **context_options: Any) -> Tab:
    """A new browser context on ``hub``; logged in as the owner unless ``logged_in=False``."""
    if logged_in and hub.session_cookie:
        context_options.setdefault("storage_state", hub.storage_state())
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context_options})
    context.set_default_timeout(20_000)
    page = context.new_page()
    tab = Tab(page=page, base_url=hub.base_url)
    page.on("console", lambda msg: msg.type == "error" and tab.errors.append(f"console: {msg.text}"))
    page.on("pageerror", lambda err: tab.errors.append(f"page error: {err}"))
    return tab


@pytest.fixture
def new_tab(browser, live_hub) -> Iterator[Any]:
    """Open pages in fresh browser contexts (context options as keywords, logged_in=False for none); all closed afterwards."""
    tabs: list[Tab] = []

    def make(**context_options: Any) -> Tab:
        tabs.append(open_tab(browser, live_hub, **context_options))
        return tabs[-1]

    try:
        yield make
    finally:
        for tab in tabs:
            tab.page.context.close()


@pytest.fixture
def tab(new_tab) -> Tab:
    return new_tab()
