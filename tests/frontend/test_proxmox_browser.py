"""The Proxmox pages in real Chromium, on a real `roost hub` whose own agent reads a fake Proxmox (fakepve) every second."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import pytest
from frontend_support import page_factory
from support import free_port

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SCREENSHOTS = "/tmp"
TOKEN_ID = "roost@pve!monitor"
SECRET = "b0a7c3e1-browser-test-secret"
OWNER, OWNER_PASSWORD = "owner", "correct horse battery staple"
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
START_TIMEOUT = 30.0


def _roost(*args: str, stdin: str = "") -> str:
    script = Path(sys.executable).with_name("roost")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "roost.core.cli"]
    done = subprocess.run([*command, *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"roost {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def pve_cluster(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """fakepve on loopback HTTPS with a few guests, on its own event loop in a thread."""
    from fakepve import FakePve
    from fakepve.certs import make_cert

    cert, key, _ = make_cert(str(tmp_path_factory.mktemp("pve-pki")), hosts=("127.0.0.1",))
    pve = FakePve(host="127.0.0.1", port=0)
    pve.time_scale = 0
    pve.cluster_name = "homelab"
    pve.apitokens[TOKEN_ID] = SECRET
    web = pve.add_vm(100, "web", status="running", config={"scsi0": "local-lvm:vm-100-disk-0,size=32G", "memory": 4096, "tags": "prod;web"})
    web.stats = {"cpu": 0.25, "mem": 2 * 1024**3, "netin": 1_000_000, "netout": 200_000}
    pve.add_vm(101, "db", status="stopped")
    pve.add_ct(200, "dns", status="running")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fakepve-browser", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(pve.start(cert, key), loop).result(START_TIMEOUT)
    try:
        yield SimpleNamespace(pve=pve, cafile=cert)
    finally:
        asyncio.run_coroutine_threadsafe(pve.stop(), loop).result(START_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT)


@pytest.fixture(scope="module")
def pve_hub(tmp_path_factory, pve_cluster) -> Iterator[SimpleNamespace]:
    """`roost hub` whose local agent runs the proxmox integration against the fake, with an owner logged in."""
    tmp = tmp_path_factory.mktemp("pve-hub")
    config = tmp / "roost.toml"
    config.write_text(
        '[agent]\ninterval = "1s"\n\n'
        "[integrations.proxmox]\n"
        f'host = "127.0.0.1"\nport = {pve_cluster.pve.port}\n'
        f'token_id = "{TOKEN_ID}"\ntoken_secret = "{SECRET}"\n'
        f'ca_file = "{pve_cluster.cafile}"\nbackup_refresh = 5\n',
        encoding="utf-8",
    )
    data = str(tmp / "data")
    _roost("users", "add", OWNER, "--role", "admin", "--data-dir", data, "--config", str(config), stdin=OWNER_PASSWORD + "\n")
    token = _roost("api-token", "create", "--user", OWNER, "--scope", "admin", "--data-dir", data, "--config", str(config)).strip()
    port = free_port()
    log = tmp / "hub.log"
    script = Path(sys.executable).with_name("roost")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "roost.core.cli"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*command, "hub", "--config", str(config), "--data-dir", data, "--port", str(port), "--bind", "127.0.0.1"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> Any:
        request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.loads(resp.read())

    def wait_for(predicate: Any, what: str) -> Any:
        deadline = time.monotonic() + START_TIMEOUT
        last: Any = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the hub exited with {proc.returncode} while waiting for {what}:\n{log.read_text(errors='replace')[-4000:]}")
            try:
                last = predicate()
                if last:
                    return last
            except OSError as err:
                last = err
            time.sleep(0.3)
        pytest.fail(f"timed out waiting for {what} (last: {last!r}):\n{log.read_text(errors='replace')[-4000:]}")

    try:
        wait_for(lambda: get("/api/v1/health").get("status") == "ok", "the hub to answer")

        def proxmox_reported() -> str | None:
            for node in get("/api/v1/nodes")["nodes"]:
                if node.get("local"):
                    state = get(f"/api/v1/nodes/{node['id']}").get("state") or {}
                    if (state.get("proxmox") or {}).get("guests"):
                        return node["id"]
            return None

        node_id = wait_for(proxmox_reported, "the local node's first Proxmox report")
        body = json.dumps({"username": OWNER, "password": OWNER_PASSWORD}).encode()
        login = urllib.request.Request(base + "/api/v1/session", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(login, timeout=10) as resp:
            cookie = next(h.partition("=")[2].split(";", 1)[0] for h in resp.headers.get_all("Set-Cookie") or [] if h.startswith("roost_session="))
        yield SimpleNamespace(base_url=base, node_id=node_id, cookie=cookie, get=get, log=log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def open_page(browser, pve_hub) -> Iterator[Any]:
    """open_page(**context options) -> (page, errors), logged in as the owner; contexts closed afterwards."""
    with page_factory(browser, pve_hub.base_url, pve_hub.cookie) as make:
        yield make


def wait_for_chart(page: Any, key: str = "cpu", timeout: float = 30_000) -> int:
    page.wait_for_function(
        "key => { const f = document.querySelector(`figure[data-chart='${key}']`);"
        " return f && Number(f.dataset.points) >= 1 && !f.hasAttribute('data-loading'); }",
        arg=key,
        timeout=timeout,
    )
    return int(page.get_attribute(f'figure[data-chart="{key}"]', "data-points"))


def test_proxmox_page_shows_the_cluster_and_stays_current(open_page, pve_hub):
    page, errors = open_page()
    page.goto(pve_hub.base_url + "/")
    page.get_by_role("link", name="Proxmox", exact=True).click()
    page.wait_for_url("**/proxmox")
    section = page.locator(f'.pve-cluster[data-roost-node="{pve_hub.node_id}"]')
    section.wait_for()
    assert section.locator("h2").inner_text() == "Cluster homelab"
    assert section.locator('[data-quorum="yes"]').inner_text() == "Quorate"
    assert section.locator('tr[data-vmid="100"] [data-guest-status="running"]').inner_text() == "Running"
    assert section.locator('tr[data-vmid="101"] [data-backup="overdue"]').inner_text() == "no successful backup found"
    assert page.locator('nav a[aria-current="page"]').inner_text() == "Proxmox"
    with page.expect_response(lambda r: "fragment=clusters" in r.url, timeout=20_000) as response:
        pass
    assert response.value.status == 200
    section.wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/roost-proxmox.png", full_page=True)
    assert SECRET not in page.content()
    assert not errors, errors


def test_guest_page_draws_history_and_switches_ranges(open_page, pve_hub):
    page, errors = open_page()
    page.goto(pve_hub.base_url + "/proxmox")
    page.locator(f'.pve-cluster tr[data-vmid="100"] a[href="/proxmox/{pve_hub.node_id}/guests/100"]').click()
    page.wait_for_url(f"**/proxmox/{pve_hub.node_id}/guests/100")
    assert page.locator("h1").inner_text() == "VM 100 · web"
    assert wait_for_chart(page, "cpu") >= 1
    assert wait_for_chart(page, "memory") >= 1
    assert page.locator('figure[data-chart="cpu"] canvas').count() == 1
    with page.expect_request(lambda r: "/metrics?" in r.url and "range=24h" in r.url) as request:
        page.locator('button.range[data-range="24h"]').click()
    assert request.value.response().status == 200
    page.locator('figure[data-chart="cpu"][data-range="24h"]').wait_for()
    assert "range=24h" in page.url
    page.screenshot(path=f"{SCREENSHOTS}/roost-proxmox-guest.png", full_page=True)
    assert not errors, errors


def test_pages_work_under_a_strict_content_security_policy(open_page, pve_hub):
    page, errors = open_page()
    paths = {"/proxmox", f"/proxmox/{pve_hub.node_id}/guests/100"}

    def add_csp(route: Any) -> None:
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": STRICT_CSP})

    page.route(lambda url: urlparse(url).path in paths and "fragment=" not in url, add_csp)
    page.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    for path in sorted(paths):
        page.goto(pve_hub.base_url + path)
        if "/guests/" in path:
            wait_for_chart(page, "cpu")
        page.locator('#live-status[data-live="live"]').wait_for()
        assert page.evaluate("window.__csp") == [], path
    assert not errors, errors


def test_phone_width_has_no_horizontal_scroll(open_page, pve_hub):
    page, errors = open_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    for path in ("/proxmox", f"/proxmox/{pve_hub.node_id}/guests/100"):
        page.goto(pve_hub.base_url + path)
        page.locator("main h1").wait_for()
        widths = page.evaluate("() => ({doc: document.documentElement.scrollWidth, view: document.documentElement.clientWidth})")
        assert widths["doc"] <= widths["view"], (path, widths)
    page.screenshot(path=f"{SCREENSHOTS}/roost-phone-proxmox-guest.png", full_page=True)
    assert not errors, errors
