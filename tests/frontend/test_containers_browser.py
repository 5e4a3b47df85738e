"""The containers page in real Chromium, on a real `roost hub` whose own agent reads a private real dockerd every second,
plus a second host that pushes the same engine's state with scripts/roost-docker-push.sh."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import pytest
from frontend_support import page_factory
from docker_engine import docker_engine  # noqa: F401 - fixture
from support import free_port

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SCREENSHOTS = "/tmp"
SECRET = "br0wser-s3cret-value"
OWNER, OWNER_PASSWORD = "owner", "correct horse battery staple"
START_TIMEOUT = 40.0
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "roost-docker-push.sh"
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _roost(*args: str, stdin: str = "") -> str:
    script = Path(sys.executable).with_name("roost")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "roost.core.cli"]
    done = subprocess.run([*command, *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"roost {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def containers(docker_engine) -> Iterator[SimpleNamespace]:
    """A compose project (a chatty web and a stopped db), a cache with a memory limit and a sick one."""
    engine = docker_engine
    prefix = f"b{os.getpid() % 10000}"
    shop = {"com.docker.compose.project": "shop"}
    web = engine.run(
        ["sh", "-c", "i=0; while true; i=$((i+1)); do echo hello $i; sleep 0.3; done"],
        name=f"{prefix}-shop-web",
        labels={**shop, "com.docker.compose.service": "web"},
        environment={"DB_PASSWORD": SECRET, "MODE": "prod"},
        mem_limit="64m",
        healthcheck={"test": ["CMD", "true"], "interval": 1_000_000_000, "timeout": 1_000_000_000, "retries": 1},
    )
    db = engine.run(name=f"{prefix}-shop-db", labels={**shop, "com.docker.compose.service": "db"})
    db.stop(timeout=0)
    cache = engine.run(["sh", "-c", "yes > /dev/null"], name=f"{prefix}-cache", mem_limit="32m", nano_cpus=200_000_000)
    sick = engine.run(
        name=f"{prefix}-sick", healthcheck={"test": ["CMD", "false"], "interval": 500_000_000, "timeout": 1_000_000_000, "retries": 1}
    )
    try:
        yield SimpleNamespace(engine=engine, web=web, db=db, cache=cache, sick=sick, prefix=prefix)
    finally:
        for c in (web, db, cache, sick):
            try:
                c.remove(force=True)
            except Exception:
                pass


@pytest.fixture(scope="module")
def docker_hub(tmp_path_factory, containers) -> Iterator[SimpleNamespace]:
    """`roost hub` (push on) whose local agent runs the docker integration against the private engine, may act on it, and an owner."""
    engine = containers.engine
    tmp = tmp_path_factory.mktemp("docker-hub")
    config = tmp / "roost.toml"
    config.write_text(
        '[hub]\npush = true\n\n'
        '[agent]\ninterval = "1s"\nceiling = { mode = "execute" }\n\n'
        f'[integrations.docker]\nurl = "{engine.url}"\ndisk_usage_interval = 0\n',
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

    def call(path: str, method: str = "GET", body: Any = None) -> Any:
        data_bytes = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with urllib.request.urlopen(urllib.request.Request(base + path, data=data_bytes, headers=headers, method=method), timeout=10) as resp:
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
        wait_for(lambda: call("/api/v1/health").get("status") == "ok", "the hub to answer")

        def docker_reported() -> str | None:
            for node in call("/api/v1/nodes")["nodes"]:
                if node.get("local"):
                    state = (call(f"/api/v1/nodes/{node['id']}").get("state") or {}).get("docker") or {}
                    names = {c["name"] for c in state.get("containers", [])}
                    if containers.web.name in names and any("stats" in c for c in state["containers"]):
                        return node["id"]
            return None

        node_id = wait_for(docker_reported, "the local node's first docker report")
        grants = sorted({*call(f"/api/v1/nodes/{node_id}/grants").get("grants", []), "docker.read", "docker.manage", "logs.read"})
        call(f"/api/v1/nodes/{node_id}/grants", "PUT", {"grants": grants})
        wait_for(
            lambda: all(a["allowed"] for a in call(f"/api/v1/nodes/{node_id}/actions")["actions"] if a["name"].startswith("docker.container.")),
            "the docker actions to be allowed",
        )
        push_node = ""
        if shutil.which("jq") and shutil.which("docker"):
            created = call("/api/v1/push-tokens", "POST", {"name": "nas"})
            push_node = created["node_id"]
            done = subprocess.run(
                ["bash", str(SCRIPT)],
                env={"PATH": os.environ["PATH"], "HOME": "/tmp", "DOCKER_HOST": engine.url, "ROOST_HUB": base, "ROOST_PUSH_TOKEN": created["token"]},
                capture_output=True, text=True, timeout=60,
            )
            assert done.returncode == 0, done.stderr
        body = json.dumps({"username": OWNER, "password": OWNER_PASSWORD}).encode()
        login = urllib.request.Request(base + "/api/v1/session", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(login, timeout=10) as resp:
            cookie = next(h.partition("=")[2].split(";", 1)[0] for h in resp.headers.get_all("Set-Cookie") or [] if h.startswith("roost_session="))
        yield SimpleNamespace(base_url=base, node_id=node_id, push_node=push_node, cookie=cookie, call=call, log=log, c=containers)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def open_page(browser, docker_hub) -> Iterator[Any]:
    """open_page(**context options) -> (page, errors), logged in as the owner; contexts closed afterwards."""
    with page_factory(browser, docker_hub.base_url, docker_hub.cookie) as make:
        yield make


def visible_rows(page: Any) -> list[dict[str, str]]:
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('#ct-table tr.ct-row')).filter(r => !r.hidden && !r.closest('tbody').hidden)"
        ".map(r => ({name: r.dataset.name, host: r.dataset.host, state: r.dataset.state, cpu: r.dataset.cpu, project: r.dataset.project}))"
    )


def row(page: Any, name: str, node_id: str) -> Any:
    return page.locator(f'#ct-table tr.ct-row[data-name="{name}"][data-node-id="{node_id}"]')


def test_the_table_shows_every_host_s_containers(open_page, docker_hub):
    page, errors = open_page()
    c = docker_hub.c
    page.goto(docker_hub.base_url + "/")
    page.get_by_role("link", name="Containers", exact=True).click()
    page.wait_for_url("**/containers")
    web = row(page, c.web.name, docker_hub.node_id)
    web.wait_for()
    assert web.locator('[data-state="running"]').inner_text() == "running"
    assert web.get_attribute("data-project") == "shop"
    page.wait_for_function("name => { const r = document.querySelector(`tr.ct-row[data-name='${name}'] [data-health]`); return r && r.dataset.health === 'unhealthy'; }", arg=c.sick.name, timeout=20_000)
    assert row(page, c.db.name, docker_hub.node_id).get_attribute("data-state") == "exited"
    cache = row(page, c.cache.name, docker_hub.node_id)
    assert float(cache.get_attribute("data-cpu")) > 5
    assert "/ 32.0 MiB" in cache.inner_text()
    if docker_hub.push_node:
        assert row(page, c.web.name, docker_hub.push_node).get_attribute("data-host") == "nas"
    assert page.locator('nav a[aria-current="page"]').inner_text() == "Containers"
    assert SECRET not in page.content()
    page.screenshot(path=f"{SCREENSHOTS}/roost-containers.png", full_page=True)
    assert not errors, errors


def test_filter_sort_and_group(open_page, docker_hub):
    page, errors = open_page()
    c = docker_hub.c
    page.goto(docker_hub.base_url + "/containers")
    row(page, c.web.name, docker_hub.node_id).wait_for()
    page.fill("#ct-filter", f"{c.prefix}-shop")
    names = {r["name"] for r in visible_rows(page)}
    assert names == {c.web.name, c.db.name}
    assert page.locator("#ct-count").inner_text().startswith("Showing ")
    page.select_option("#ct-state", "exited")
    assert {r["name"] for r in visible_rows(page)} == {c.db.name}
    page.fill("#ct-filter", "no-such-container-anywhere")
    assert visible_rows(page) == [] and page.locator("#ct-none").is_visible()
    page.fill("#ct-filter", c.prefix)
    page.select_option("#ct-state", "unhealthy")
    assert {r["name"] for r in visible_rows(page)} == {c.sick.name}
    page.select_option("#ct-state", "")

    # Sort by CPU, highest first on the second click; missing values last.
    page.click('button.ct-sort[data-sort="cpu"]')
    page.click('button.ct-sort[data-sort="cpu"]')
    assert page.get_attribute('th[data-sort="cpu"]', "aria-sort") == "descending"
    cpus = [float(r["cpu"]) for r in visible_rows(page) if r["cpu"]]
    assert cpus == sorted(cpus, reverse=True) and visible_rows(page)[0]["name"] == c.cache.name
    assert "sort=-cpu" in page.url and f"q={c.prefix}" in page.url

    # Grouping re-renders the table by compose project; filter and sort survive it.
    page.check("#ct-group")
    page.locator('tbody[data-group="shop"] .ct-group-row').first.wait_for()
    assert "group=project" in page.url
    assert page.get_attribute('th[data-sort="cpu"]', "aria-sort") == "descending"
    shop_rows = page.locator('tbody[data-group="shop"] tr.ct-row')
    assert {shop_rows.nth(i).get_attribute("data-project") for i in range(shop_rows.count())} == {"shop"}
    page.reload()
    page.locator('tbody[data-group="shop"]').first.wait_for()
    assert page.input_value("#ct-filter") == c.prefix and page.is_checked("#ct-group")
    assert not errors, errors


def test_a_container_opens_in_a_closeable_tab_with_charts_and_masked_env(open_page, docker_hub):
    page, errors = open_page()
    c = docker_hub.c
    page.goto(docker_hub.base_url + "/containers")
    link = row(page, c.web.name, docker_hub.node_id).locator("a.ct-open")
    link.click()
    tab = page.locator(f'[role=tab][data-tab="{docker_hub.node_id}/{c.web.name}"]')
    tab.wait_for()
    assert tab.get_attribute("aria-selected") == "true"
    assert page.url.endswith("/containers") or "/containers?" in page.url  # a tab, not a navigation
    panel = page.locator(f'[role=tabpanel][data-panel="{docker_hub.node_id}/{c.web.name}"]')
    panel.locator(".ct-detail").wait_for()
    assert not page.locator("#ct-panel-list").is_visible()
    text = panel.inner_text()
    for part in ("Overview", "State and health", "Ports", "Networks", "Mounts", "Environment", "Labels", "Command", "Logs", "Restart policy"):
        assert part in text, part
    env = panel.locator("table.ct-kv-table").first
    assert "DB_PASSWORD" in env.inner_text() and "********" in env.inner_text() and "masked" in env.inner_text()
    assert SECRET not in page.content()
    page.wait_for_function(
        "sel => { const f = document.querySelector(sel); return f && Number(f.dataset.points) >= 1; }",
        arg=f'[data-panel="{docker_hub.node_id}/{c.web.name}"] figure[data-chart="cpu"]',
        timeout=30_000,
    )
    assert panel.locator('figure[data-chart="memory"]').count() == 1
    page.screenshot(path=f"{SCREENSHOTS}/roost-container-tab.png", full_page=True)

    # A second container, then back to the list and closing both.
    page.click("#ct-tab-list")
    row(page, c.cache.name, docker_hub.node_id).locator("a.ct-open").click()
    page.locator(f'[role=tab][data-tab="{docker_hub.node_id}/{c.cache.name}"][aria-selected="true"]').wait_for()
    assert page.locator("[role=tab]").count() == 3
    page.click(f'button.ct-tab-close[data-close="{docker_hub.node_id}/{c.cache.name}"]')
    assert page.locator("[role=tab]").count() == 2
    assert page.get_attribute("#ct-tab-list", "aria-selected") == "true" and page.locator("#ct-panel-list").is_visible()
    tab.click()
    tab.press("Delete")
    assert page.locator("[role=tab]").count() == 1 and panel.count() == 0
    assert not errors, errors


def test_logs_tail_and_follow_through_jobs(open_page, docker_hub):
    page, errors = open_page()
    c = docker_hub.c
    page.goto(f"{docker_hub.base_url}/containers/{docker_hub.node_id}/{c.web.name}")
    logs = page.locator(".ct-logs")
    show = logs.locator(".ct-log-load")
    page.wait_for_function("() => { const b = document.querySelector('.ct-log-load'); return b && !b.disabled; }", timeout=20_000)
    page.select_option(".ct-log-tail", "100")
    show.click()
    page.wait_for_function("() => /hello \\d+/.test(document.querySelector('.ct-log').textContent)", timeout=30_000)
    first = logs.locator(".ct-log").inner_text().strip().splitlines()
    assert 1 <= len(first) <= 100 and all(line.startswith("hello ") for line in first)
    assert "lines" in logs.locator(".ct-log-status").inner_text()

    logs.locator(".ct-log-follow").click()
    assert logs.locator(".ct-log-follow").get_attribute("aria-pressed") == "true"
    last = int(first[-1].split()[1])
    page.wait_for_function(
        "n => { const lines = document.querySelector('.ct-log').textContent.trim().split('\\n');"
        " const m = /hello (\\d+)/.exec(lines[lines.length - 1]); return m && Number(m[1]) >= n + 5; }",
        arg=last,
        timeout=30_000,
    )
    assert "Following" in logs.locator(".ct-log-status").inner_text()
    logs.locator(".ct-log-follow").click()
    assert logs.locator(".ct-log-follow").get_attribute("aria-pressed") == "false"
    assert "Stopped following" in logs.locator(".ct-log-status").inner_text()
    assert not errors, errors


def test_pause_and_unpause_from_the_dashboard_change_the_real_container(open_page, docker_hub):
    page, errors = open_page()
    c = docker_hub.c
    page.goto(f"{docker_hub.base_url}/containers/{docker_hub.node_id}/{c.cache.name}")
    pause = page.locator('.ct-action[data-action="docker.container.pause"]')
    page.wait_for_function("() => { const b = document.querySelector('.ct-action[data-action=\"docker.container.pause\"]'); return b && !b.disabled; }", timeout=20_000)
    pause.click()
    page.wait_for_function("() => /pause done/.test(document.querySelector('.ct-action-status').textContent)", timeout=30_000)
    assert c.engine.client.containers.get(c.cache.name).status == "paused"
    page.wait_for_function("() => { const b = document.querySelector('.ct-action[data-action=\"docker.container.unpause\"]'); return b && !b.disabled; }", timeout=20_000)
    page.locator('.ct-action[data-action="docker.container.unpause"]').click()
    page.wait_for_function("() => /unpause done/.test(document.querySelector('.ct-action-status').textContent)", timeout=30_000)
    assert c.engine.client.containers.get(c.cache.name).status == "running"
    assert not errors, errors


def test_pages_run_under_a_strict_csp_and_fit_a_phone(open_page, docker_hub):
    page, errors = open_page()
    c = docker_hub.c
    paths = {"/containers", f"/containers/{docker_hub.node_id}/{c.web.name}"}

    def add_csp(route: Any) -> None:
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": STRICT_CSP})

    page.route(lambda url: urlparse(url).path in paths and "fragment=" not in url, add_csp)
    page.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    for path in sorted(paths):
        page.goto(docker_hub.base_url + path)
        page.locator('#live-status[data-live="live"]').wait_for()
        if path != "/containers":
            page.wait_for_function("() => { const f = document.querySelector('figure[data-chart=\"cpu\"]'); return f && Number(f.dataset.points) >= 1; }", timeout=30_000)
        assert page.evaluate("window.__csp") == [], path
    assert not errors, errors

    phone, phone_errors = open_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    for path in sorted(paths):
        phone.goto(docker_hub.base_url + path)
        phone.locator("main h1").wait_for()
        widths = phone.evaluate("() => ({doc: document.documentElement.scrollWidth, view: document.documentElement.clientWidth})")
        assert widths["doc"] <= widths["view"], (path, widths)
    phone.screenshot(path=f"{SCREENSHOTS}/roost-phone-containers.png", full_page=True)
    assert not phone_errors, phone_errors


def test_a_container_tab_has_its_own_url_that_a_reload_or_another_browser_reopens(open_page, docker_hub):
    page, errors = open_page()
    c = docker_hub.c
    key = f"{docker_hub.node_id}/{c.web.name}"
    page.goto(docker_hub.base_url + "/containers")
    row(page, c.web.name, docker_hub.node_id).locator("a.ct-open").click()
    page.locator(f'[role=tab][data-tab="{key}"][aria-selected="true"]').wait_for()
    page.wait_for_function("key => new URL(location.href).searchParams.get('tab') === key", arg=key)
    shared = page.url
    page.reload()
    page.locator(f'[role=tab][data-tab="{key}"][aria-selected="true"]').wait_for()
    page.locator(f'[role=tabpanel][data-panel="{key}"] .ct-detail').wait_for()
    assert not page.locator("#ct-panel-list").is_visible()
    other, other_errors = open_page()
    other.goto(shared)
    other.locator(f'[role=tabpanel][data-panel="{key}"] .ct-detail').wait_for()
    # Back to the list: the address says so, and a reload shows the list with the tab still open.
    page.click("#ct-tab-list")
    page.wait_for_function("() => !new URL(location.href).searchParams.get('tab')")
    page.reload()
    assert page.get_attribute("#ct-tab-list", "aria-selected") == "true"
    page.locator(f'[role=tab][data-tab="{key}"]').wait_for()
    assert not errors and not other_errors, (errors, other_errors)


def test_bulk_start_asks_first_and_skips_what_cannot_start(open_page, docker_hub):
    page, errors = open_page()
    c = docker_hub.c
    engine = c.engine.client
    assert engine.containers.get(c.db.name).status == "exited"
    page.goto(docker_hub.base_url + "/containers")
    row(page, c.db.name, docker_hub.node_id).locator(".ct-pick-row").check()
    row(page, c.web.name, docker_hub.node_id).locator(".ct-pick-row").check()
    assert page.locator("#ct-bulk-count").inner_text() == "2 containers selected"
    page.click('#ct-bulk [data-bulk-action="docker.container.start"]')
    text = page.locator("#ct-confirm-text").inner_text()
    assert text.startswith(f"Start {c.db.name} on ") and "1 selected is not in a state to start" in text, text
    page.click("#ct-confirm-no")
    assert not page.locator("#ct-confirm").is_visible()
    assert engine.containers.get(c.db.name).status == "exited"  # nothing runs without a yes
    try:
        page.click('#ct-bulk [data-bulk-action="docker.container.start"]')
        page.click("#ct-confirm-yes")
        done = page.locator(f'#ct-results li[data-key="{docker_hub.node_id}/{c.db.name}"] .ct-result-state[data-state]')
        done.wait_for(timeout=30_000)
        assert done.get_attribute("data-state") == "succeeded", done.inner_text()
        assert engine.containers.get(c.db.name).status == "running"
        assert page.locator("#ct-bulk").is_hidden()  # the selection is spent
        # One row's own button asks too, naming the container.
        page.wait_for_function(
            "name => document.querySelector(`#ct-table tr.ct-row[data-name='${name}'] [data-row-action='docker.container.stop']`)",
            arg=c.db.name, timeout=30_000,
        )
        row(page, c.db.name, docker_hub.node_id).locator('[data-row-action="docker.container.stop"]').click()
        assert page.locator("#ct-confirm-text").inner_text().startswith(f"Stop {c.db.name} on ")
        page.click("#ct-confirm-yes")
        page.locator(f'#ct-results li[data-action="docker.container.stop"] .ct-result-state[data-state="succeeded"]').wait_for(timeout=30_000)
        assert engine.containers.get(c.db.name).status == "exited"
    finally:
        engine.containers.get(c.db.name).stop(timeout=0)
    assert not errors, errors
