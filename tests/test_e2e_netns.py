"""A new user's first agent, end to end, on a LAN of its own: two network namespaces joined by a veth pair.

The hub runs in one namespace on its veth address (so with TLS), the agent
in the other with no hub and no token. The agent finds the hub over real
zeroconf, pins the CA it presents, asks to pair and prints a code. An admin
logs in to the dashboard in Chromium (running inside the hub's namespace
too), reads the code on the pairing page, checks it is the one the agent
printed and approves. Then the agent becomes a node that reports, in the
API and live on its dashboard page.

Nothing here touches the machine's real interfaces: every address exists
only inside the two namespaces, and each process's zeroconf is bound to its
namespace's veth address (config and ROOST_DISCOVERY_INTERFACES).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import netns
import pytest
from support import need

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOST = [sys.executable, "-m", "roost.core.cli"]
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
PORT = 8765  # the default: the namespace has nothing else listening
ADMIN = "admin"
CODE_RE = re.compile(r"^Pairing code: (\d{3} \d{3})$", re.M)
# Every wait is bounded; together they stay well inside the ~90 s budget.
HUB_START_TIMEOUT = 20.0
PAIR_CODE_TIMEOUT = 20.0
STEP_TIMEOUT = 15.0
BROWSER_TIMEOUT_MS = 15_000


class Proc:
    """A subprocess with its output in a file; stopped with TERM, then KILL."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log
        self._fh = open(log, "ab")
        self.p = subprocess.Popen(argv, stdout=self._fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._fh.close()
        return self.p.returncode


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, *procs: Proc) -> Any:
    """Poll until ``predicate`` returns something true; fail with the processes' logs when it does not, or when one dies."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        for proc in procs:
            if not proc.alive():
                pytest.fail(f"{proc.name} exited with {proc.p.returncode} while waiting for {what}\n{logs(*procs)}")
        try:
            last = predicate()
            if last:
                return last
        except (OSError, ValueError) as err:  # not listening yet, half-written file
            last = err
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})\n{logs(*procs)}")
        time.sleep(0.2)


def logs(*procs: Proc) -> str:
    return "\n".join(f"--- {p.name} ({p.log}) ---\n{p.text()[-4000:]}" for p in procs)


@contextmanager
def explained(page: Any, *procs: Proc) -> Iterator[None]:
    """Turn a Playwright failure into one that shows where the page was and what it said, with the processes' logs."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        yield
    except PlaywrightError as err:
        try:
            body = page.inner_text("body", timeout=2000)[:3000]
        except PlaywrightError:
            body = "(page unreadable)"
        pytest.fail(f"{err.message}\n--- page {page.url} ---\n{body}\n{logs(*procs)}")


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def digits_hex(text: str) -> str:
    return re.sub(r"[^0-9a-f]", "", text.lower())


class HubAPI:
    """The hub's REST API, called from a thread inside the hub's namespace, over TLS checked against the hub's own CA."""

    def __init__(self, executor: Any, base_url: str, token: str, ca_file: Path) -> None:
        self.executor = executor
        self.base_url = base_url
        self.token = token
        self.ca_file = ca_file

    def _get(self, path: str) -> Any:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(self.base_url + path, headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            return json.loads(resp.read())

    def get(self, path: str) -> Any:
        return self.executor.submit(self._get, path).result(timeout=10)

    def health(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_file))

        def call() -> Any:
            with urllib.request.urlopen(self.base_url + "/api/v1/health", timeout=5, context=context) as resp:
                return json.loads(resp.read())

        return self.executor.submit(call).result(timeout=10).get("status") == "ok"


@pytest.fixture
def lan() -> Iterator[netns.NetnsPair]:
    why = netns.unavailable()
    need(not why, why)
    with netns.netns_pair() as pair:
        yield pair
    for ns in (pair.hub_ns, pair.agent_ns):
        assert not netns.exists(ns), f"namespace {ns} outlived the test"


@pytest.fixture
def chromium_ready() -> Any:
    need(Path(CHROMIUM).exists(), f"Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "Python playwright")
    return sync_playwright


def test_agent_with_no_arguments_is_discovered_paired_in_the_dashboard_and_reports(lan: netns.NetnsPair, chromium_ready: Any, tmp_path: Path) -> None:
    hub_url = f"https://{lan.hub_addr}:{PORT}"
    hub_dir, agent_dir = tmp_path / "hub", tmp_path / "agent"
    agent_host = f"roost-agent-{lan.tag}"
    hub_conf = tmp_path / "hub.toml"
    hub_conf.write_text(
        "[hub]\n"
        f'bind = "{lan.hub_addr}"\n'
        f"port = {PORT}\n"
        f'data_dir = "{hub_dir}"\n'
        f'discovery_interfaces = ["{lan.hub_addr}"]\n'
        "[agent]\n"
        "enabled = true\n"
        'interval = "1s"\n'
        'heartbeat = "2s"\n'
        f'discovery_interfaces = ["{lan.hub_addr}"]\n',
        encoding="utf-8",
    )
    agent_conf = tmp_path / "agent.toml"
    agent_conf.write_text(
        f'[agent]\ninterval = "1s"\nheartbeat = "2s"\ndiscovery_interfaces = ["{lan.agent_addr}"]\n',
        encoding="utf-8",
    )
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
    base_env["PYTHONUNBUFFERED"] = "1"
    hub_env = {**base_env, "ROOST_DISCOVERY_INTERFACES": lan.hub_addr}
    # The agent's data dir comes from the environment, as a packaged install sets it: its command line names no hub and no token.
    agent_env = {**base_env, "ROOST_DISCOVERY_INTERFACES": lan.agent_addr, "ROOST_DATA_DIR": str(agent_dir)}

    # An admin for the dashboard and an API token for the test's own checks (pairing requests are for admins only), made on the hub host.
    password = secrets.token_urlsafe(18)

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """`roost ...` on the hub host (it only opens the hub's store: no network)."""
        return subprocess.run([*ROOST, *args, "--config", str(hub_conf)], input=stdin, capture_output=True, text=True, timeout=60, env=hub_env)

    added = cli("users", "add", ADMIN, "--role", "admin", stdin=password + "\n")
    assert added.returncode == 0, added.stderr
    made = cli("api-token", "create", "--user", ADMIN, "--scope", "admin", "--name", "e2e-netns")
    assert made.returncode == 0, made.stderr
    api_token = made.stdout.strip().splitlines()[0]

    with ExitStack() as stack:
        procs: list[Proc] = []

        @stack.callback
        def stop_all() -> None:
            for proc in reversed(procs):
                proc.stop()

        hub = Proc("hub", lan.hub_cmd(*ROOST, "hub", "--config", str(hub_conf), hostname=f"roost-hub-{lan.tag}"), tmp_path / "hub.log", hub_env)
        procs.append(hub)
        executor = lan.executor(lan.hub_ns)
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        api = HubAPI(executor, hub_url, api_token, hub_dir / "tls" / "ca.pem")
        wait_for(api.health, HUB_START_TIMEOUT, "the hub to answer on its veth address over TLS", hub)
        assert f"on {hub_url}" in hub.text()

        # --- the agent: no --hub, no --join ---------------------------------------
        agent = Proc("agent", lan.agent_cmd(*ROOST, "agent", "--config", str(agent_conf), hostname=agent_host), tmp_path / "agent.log", agent_env)
        procs.append(agent)
        agent_code = wait_for(lambda: (m := CODE_RE.search(agent.text())) and m.group(1), PAIR_CODE_TIMEOUT, "the agent's pairing code", hub, agent)
        out = agent.text()
        assert re.search(rf"^Found Roost hub \S+ at {re.escape(hub_url)}$", out, re.M), f"the agent did not find the hub over zeroconf:\n{out}"
        agent_ca = re.search(r"Hub CA fingerprint: ([0-9A-Fa-f: ]+?)\s{2,}", out)
        assert agent_ca, f"the agent should print the CA it pinned:\n{out}"

        # Before approval: a pending request, the agent announced and seen by the hub, and no node for it.
        def pending() -> list[dict[str, Any]]:
            return [r for r in api.get("/api/v1/pairing")["pending"] if r["hostname"] == agent_host]

        requests = pending()
        assert len(requests) == 1, requests
        assert requests[0]["peer"] == lan.agent_addr
        wait_for(
            lambda: [d for d in api.get("/api/v1/pairing")["discovered"] if d["hostname"] == agent_host and lan.agent_addr in d["addresses"]],
            STEP_TIMEOUT,
            "the hub to discover the unpaired agent over zeroconf",
            hub,
            agent,
        )
        nodes = api.get("/api/v1/nodes")["nodes"]
        assert [n for n in nodes if n["hostname"] == agent_host] == [], "a node exists before anyone approved"
        assert [n for n in nodes if n.get("local")], "the hub's own host should already be a node"
        assert not (agent_dir / "agent.json").exists(), "the agent thinks it is enrolled before approval"

        # --- the dashboard, in Chromium inside the hub's namespace -----------------
        chromium = lan.wrapper(lan.hub_ns, CHROMIUM, tmp_path / "chromium-in-netns")
        pw = stack.enter_context(chromium_ready())
        browser = pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        stack.callback(browser.close)
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(BROWSER_TIMEOUT_MS)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(f"page error: {err}"))

        with explained(page, hub, agent):
            page.goto(f"{hub_url}/pairing")
            assert "/login" in page.url, f"the pairing page should ask for a login first, got {page.url}"
            page.fill("#username", ADMIN)
            page.fill("#password", password)
            page.click("button[type=submit]")
            page.wait_for_url(f"{hub_url}/pairing**")

            # Exactly one request waits, and its card is this agent's.
            cards = page.locator(".pair-card")
            cards.first.wait_for()
            assert cards.count() == 1, f"one pending request expected, the page shows {cards.count()}"
            card = cards.first
            assert card.get_attribute("data-request-id") == requests[0]["id"]
            assert card.locator(".pair-host").inner_text().strip() == agent_host
            assert lan.agent_addr in card.inner_text(), "the card should say where the request came from"
            dashboard_code = card.locator("[data-testid=pair-code]").inner_text().strip()
            assert len(digits(dashboard_code)) == 6, f"the dashboard's code {dashboard_code!r} is not six digits"
            # The person's check: the code on the agent's console is the code on the dashboard.
            assert digits(dashboard_code) == digits(agent_code), f"agent shows {agent_code}, dashboard shows {dashboard_code}"
            # And the CA the agent pinned is this hub's.
            assert digits_hex(page.locator("[data-testid=ca-short]").inner_text()) == digits_hex(agent_ca.group(1))
            # The hub also lists the agent it discovered over zeroconf.
            assert agent_host in page.locator("#discovered").inner_text() and lan.agent_addr in page.locator("#discovered").inner_text()
            assert pending(), "looking at the page must not decide anything"

            # Approve, then confirm in the step that shows the code once more.
            card.locator("[data-testid=approve]").click()
            confirm = card.locator("[data-testid=confirm-approve]")
            confirm.wait_for(state="visible")
            assert pending(), "the first click must not approve on its own"
            assert dashboard_code in card.locator("[data-confirm=approve]").inner_text(), "the confirm step should repeat the code"
            confirm.click()
            # The page says so, links to the new node and drops the card.
            result_link = page.locator("#pair-results a[href^='/nodes/']")
            result_link.wait_for()
            assert agent_host in page.locator("#pair-results").inner_text()
            page.locator(".pair-card").first.wait_for(state="detached")
            linked_node = (result_link.get_attribute("href") or "").rsplit("/", 1)[-1]

        # --- approved: the agent becomes a node and reports ------------------------
        node_id = wait_for(
            lambda: (m := re.search(r"^Approved: this host is node (\S+)\.$", agent.text(), re.M)) and m.group(1),
            STEP_TIMEOUT,
            "the agent to hear it was approved",
            hub,
            agent,
        )
        assert node_id == linked_node, f"the agent is node {node_id}, the dashboard linked {linked_node}"
        state = json.loads((agent_dir / "agent.json").read_text())
        assert state["node_id"] == node_id and state["hub"] == hub_url

        def reported() -> dict[str, Any] | None:
            node = api.get(f"/api/v1/nodes/{node_id}")["node"]
            return node if node["status"] == "online" and "cpu_percent" in node.get("headline", {}) else None

        node = wait_for(reported, STEP_TIMEOUT, "the new node's first report", hub, agent)
        assert node["hostname"] == agent_host and not node.get("local")
        first_seen = node["last_seen"]
        wait_for(lambda: api.get(f"/api/v1/nodes/{node_id}")["node"]["last_seen"] > first_seen, STEP_TIMEOUT, "a later report", hub, agent)
        assert pending() == [], "the request is still pending after approval"
        detail = api.get(f"/api/v1/nodes/{node_id}")
        assert "linux_host" in detail["state"]
        assert re.search(rf"agent for node {node_id} reporting to {re.escape(hub_url)} every 1 s", agent.text()), agent.text()[-2000:]
        approved = cli("audit", "list", "--action", "pairing.approved")
        assert approved.returncode == 0, approved.stderr
        assert re.search(rf"pairing\.approved outcome=ok actor=user:{ADMIN} target=node:{node_id} ", approved.stdout), (
            f"the audit log should name the admin who approved:\n{approved.stdout}"
        )

        # The node's dashboard page shows it online, and its "last seen" moves on live.
        with explained(page, hub, agent):
            result_link.click()
            page.wait_for_url(f"{hub_url}/nodes/{node_id}")
            live = page.locator(f".node-live[data-node-id='{node_id}']")
            live.wait_for()
            assert live.get_attribute("data-status") == "online"
            assert agent_host in live.inner_text()
            shown = page.locator("[data-field=last_seen]").first.get_attribute("data-ts")
            assert shown is not None and float(shown) >= first_seen
            page.wait_for_function(
                "([id, ts]) => { const el = document.querySelector(`.node-live[data-node-id='${id}']`);"
                " return el && Number(el.getAttribute('data-last-seen')) > ts; }",
                arg=[node_id, float(shown)],
                timeout=BROWSER_TIMEOUT_MS,
            )
            page.goto(f"{hub_url}/")
            assert page.locator(f".node-card[data-node-id='{node_id}']").count() == 1, "the overview should list the new node"
        assert not errors, "\n".join(errors)

        # A clean stop: the agent ends on TERM with status 0.
        assert agent.stop() == 0, agent.text()[-2000:]
