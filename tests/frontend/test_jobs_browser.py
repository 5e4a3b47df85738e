"""Actions, jobs and schedules in real Chromium against a real `roost hub` process whose own agent runs a test integration's actions."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from frontend_support import login_states, tab_factory
from support import free_port

from roost.core.config import load_hub_config
from roost.core.const import ENROLL_PATH
from roost.core.identity import Identity
from support_auth import TEST_PASSWORD, seed_user
from support_hub import FakeAgent, enrol_body

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SCREENSHOTS = "/tmp"
HUB_START_TIMEOUT = 30.0
READY_TIMEOUT = 60.0
USERS = {"admin": "alice", "operator": "olga", "viewer": "victor"}
EVIL = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
OPERATOR_PASSPHRASE = "a long and silly test passphrase"

# A test integration for the hub's own agent: a quick read action, a slow one that reports
# progress, one the node is never granted, and a destructive one that needs a signature.
DEMO = '''
import asyncio
import voluptuous as vol
from roost.core import hookimpl
from roost.core.actions import ActionSpec


async def echo(ctx, params):
    await ctx.progress("echoing", 50.0)
    return {"output": " ".join([params["text"]] * params["times"]), "length": len(params["text"])}


async def steps(ctx, params):
    for i in range(params["steps"]):
        await ctx.progress(f"step {i + 1} of {params['steps']}", 100.0 * (i + 1) / params["steps"])
        await asyncio.sleep(params["pause"])
    return {"output": "all steps done", "steps": params["steps"]}


async def wipe(ctx, params):
    return {"output": "wiped " + params["disk"] + " (pretend)"}


@hookimpl
def roost_capabilities(ctx):
    return ["test.manage", "test.other"]


@hookimpl
def roost_actions(ctx):
    return [
        ActionSpec(name="demo.echo", capability="host.metrics.read", handler=echo, idempotent=True, timeout=10,
                   description="Say something back.",
                   schema=vol.Schema({vol.Required("text"): vol.All(str, vol.Length(max=80)),
                                      vol.Optional("times", default=1): vol.All(int, vol.Range(min=1, max=5))})),
        ActionSpec(name="demo.steps", capability="test.manage", handler=steps, timeout=120,
                   description="Count slowly, reporting each step.",
                   schema=vol.Schema({vol.Optional("steps", default=5): vol.All(int, vol.Range(min=1, max=200)),
                                      vol.Optional("pause", default=0.5): vol.Coerce(float)})),
        ActionSpec(name="demo.other", capability="test.other", handler=echo,
                   schema=vol.Schema({vol.Required("text"): str, vol.Optional("times", default=1): int})),
        ActionSpec(name="demo.wipe", capability="test.manage", handler=wipe, destructive=True, target="disk",
                   description="Pretend to erase a disk.", schema=vol.Schema({vol.Required("disk"): vol.Match(r"^[a-z]+$")})),
    ]
'''


def _roost_command() -> list[str]:
    script = Path(sys.executable).with_name("roost")
    return [str(script)] if script.exists() else [sys.executable, "-m", "roost.core.cli"]


def in_thread(fn: Any) -> Any:
    """Run fn on a thread of its own: Playwright's sync API keeps an event loop running on this one."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as err:  # re-raised below
            out["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


@dataclass
class JobsHub:
    """A `roost hub` subprocess whose local node offers the demo actions; an admin, an operator and a viewer."""

    base_url: str
    log: Path
    proc: subprocess.Popen
    node_id: str = ""
    operator_key: Path | None = None
    passphrase_file: Path | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    wol: socket.socket | None = None

    def api(self, method: str, path: str, body: Any = None, role: str = "admin") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.tokens[role]}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def job(self, job_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v1/jobs/{job_id}")

    def wait_for(self, predicate: Any, what: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the hub exited with {self.proc.returncode} while waiting for {what}:\n{self.log_tail()}")
            try:
                last = predicate()
                if last:
                    return last
            except (OSError, KeyError) as err:
                last = err
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what} (last: {last!r}):\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _write_demo(data_dir: Path) -> None:
    folder = data_dir / "local_agent" / "custom_integrations" / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"domain": "demo", "name": "Demo", "version": "1.0", "roles": ["agent"]}))
    (folder / "__init__.py").write_text(DEMO)


def _operator_key(tmp: Path) -> tuple[str, Path, Path] | None:
    """An operator key made the way `roost operator keygen` makes it, if this build can sign."""
    try:
        from roost.core.signing import generate_operator_key, save_operator_key
    except ImportError:
        return None
    path = tmp / "operator-key.pem"
    public = save_operator_key(path, generate_operator_key(), OPERATOR_PASSPHRASE, scrypt_n=2**10)
    passphrase = tmp / "passphrase"
    passphrase.write_text(OPERATOR_PASSPHRASE + "\n")
    passphrase.chmod(0o600)
    return public, path, passphrase


@pytest.fixture(scope="module")
def jobs_hub(tmp_path_factory) -> Iterator[JobsHub]:
    tmp = tmp_path_factory.mktemp("jobs-hub")
    data_dir = tmp / "data"
    _write_demo(data_dir)
    key = _operator_key(tmp)
    wol = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wol.bind(("127.0.0.1", 0))
    wol.settimeout(10)
    config_file = tmp / "roost.toml"
    # A node is stale after 3 s of silence (the Wake button's cue); magic packets go to a loopback socket, never the LAN.
    hub_table = f'[hub]\nstale_after = "3s"\noffline_after = "6s"\nwol_broadcast = "127.0.0.1"\nwol_port = {wol.getsockname()[1]}\n'
    if key is not None:
        hub_table += f'operator_keys = ["{key[0]}"]\n'
    config_text = hub_table + '\n[agent]\ninterval = "1s"\n\n[agent.ceiling]\nmode = "execute"\n'
    config_file.write_text(config_text, encoding="utf-8")
    config = load_hub_config(config_file, overrides={"hub": {"data_dir": str(data_dir)}})
    tokens = {role: in_thread(lambda name=name, role=role: asyncio.run(seed_user(config, name, role))) for role, name in USERS.items()}
    port = free_port()
    log = tmp / "hub.log"
    cmd = [*_roost_command(), "hub", "--config", str(config_file), "--data-dir", str(data_dir), "--port", str(port), "--bind", "127.0.0.1"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    hub = JobsHub(base_url=f"http://127.0.0.1:{port}", log=log, proc=proc, tokens=tokens, wol=wol)
    if key is not None:
        hub.operator_key, hub.passphrase_file = key[1], key[2]
    try:
        hub.wait_for(lambda: hub.api("GET", "/api/v1/health").get("status") == "ok", "GET /api/v1/health", HUB_START_TIMEOUT)

        def local_node() -> str | None:
            for node in hub.api("GET", "/api/v1/nodes")["nodes"]:
                if node.get("local") and node.get("status") == "online":
                    return node["id"]
            return None

        hub.node_id = hub.wait_for(local_node, "the local node's first report", READY_TIMEOUT)
        actions = hub.wait_for(
            lambda: {a["name"]: a for a in hub.api("GET", f"/api/v1/nodes/{hub.node_id}/actions")["actions"] if a["name"].startswith("demo.")},
            "the demo actions on the local node",
            READY_TIMEOUT,
        )
        assert actions["demo.echo"]["allowed"] and not actions["demo.steps"]["allowed"], actions
        grants = hub.api("GET", f"/api/v1/nodes/{hub.node_id}/grants")["grants"]
        hub.api("PUT", f"/api/v1/nodes/{hub.node_id}/grants", {"grants": sorted({*grants, "test.manage"})})
        hub.wait_for(
            lambda: any(a["name"] == "demo.steps" and a["allowed"] for a in hub.api("GET", f"/api/v1/nodes/{hub.node_id}/actions")["actions"]),
            "test.manage to be granted",
        )
        yield hub
    finally:
        wol.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# ----------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def sessions(browser, jobs_hub) -> dict[str, Any]:
    return login_states(browser, jobs_hub.base_url, USERS, TEST_PASSWORD)


@pytest.fixture
def open_tab(browser, jobs_hub, sessions) -> Iterator[Any]:
    with tab_factory(browser, jobs_hub.base_url, sessions, "operator") as make:
        yield make


def action_card(page: Any, name: str) -> Any:
    return page.locator(f'.action-card[data-action="{name}"]')


def open_card(page: Any, name: str) -> Any:
    card = action_card(page, name)
    card.locator(":scope > summary").click()
    return card


def job_id_from(page: Any) -> str:
    page.wait_for_url(re.compile(r".*/jobs/j[0-9a-f]+$"))
    return page.url.rsplit("/", 1)[1]


def state_badge(page: Any) -> Any:
    return page.locator("#job-detail .job-status-head .job-state")


# ------------------------------------------------------------------- the tests


def test_run_an_action_from_the_node_page_and_watch_it_finish(open_tab, jobs_hub):
    tab = open_tab()
    tab.goto(f"/nodes/{jobs_hub.node_id}")
    card = open_card(tab.page, "demo.echo")
    text = card.locator('[data-param="text"]')
    assert text.get_attribute("maxlength") == "80" and text.get_attribute("required") is not None
    times = card.locator('[data-param="times"]')
    assert (times.get_attribute("type"), times.get_attribute("min"), times.get_attribute("max"), times.input_value()) == ("number", "1", "5", "1")

    # The browser's own checks run first: an empty required field goes nowhere.
    card.locator('[data-testid="run"]').click()
    assert text.evaluate("el => el.validity.valueMissing") is True
    assert tab.page.url.endswith(f"/nodes/{jobs_hub.node_id}")

    text.fill(EVIL)
    times.fill("2")
    tab.page.locator("#actions").screenshot(path=f"{SCREENSHOTS}/roost-actions.png")
    card.locator('[data-testid="run"]').click()
    job_id = job_id_from(tab.page)
    state_badge(tab.page).filter(has_text="Succeeded").wait_for()
    output = tab.page.locator('[data-testid="job-output"]')
    output.filter(has_text="echoing").wait_for()
    assert output.inner_text().rstrip().endswith(EVIL + " " + EVIL)
    assert json.loads(tab.page.locator('[data-testid="job-params"]').inner_text()) == {"text": EVIL, "times": 2}
    # The result reads as words, with its JSON folded beneath.
    assert tab.page.locator('[data-testid="job-result-readable"]').inner_text().split() == ["length", str(len(EVIL))]
    assert json.loads(tab.page.locator('[data-testid="job-result"]').text_content()) == {"length": len(EVIL)}
    steps = tab.page.locator(".timeline li[data-done]")
    assert steps.evaluate_all("els => els.map(e => e.dataset.step)") == ["created", "dispatched", "started", "finished"]
    assert tab.page.locator("main img").count() == 0
    stored = jobs_hub.job(job_id)
    assert stored["created_by"] == "user:olga" and stored["params"] == {"text": EVIL, "times": 2}
    tab.assert_clean()


def test_a_long_job_streams_progress_live_and_finishes_without_a_reload(open_tab, jobs_hub):
    tab = open_tab()
    tab.goto(f"/nodes/{jobs_hub.node_id}")
    card = open_card(tab.page, "demo.steps")
    card.locator('[data-param="steps"]').fill("6")
    card.locator('[data-param="pause"]').fill("0.7")
    card.locator('[data-testid="run"]').click()
    job_id = job_id_from(tab.page)
    tab.page.evaluate("window.__sameDocument = true")

    output = tab.page.locator('[data-testid="job-output"]')
    state_badge(tab.page).filter(has_text="Running").wait_for()
    output.filter(has_text="step 2 of 6").wait_for()
    # Mid-run: progress shows, the job is not over, the page was never reloaded.
    seen = tab.page.locator("#job-detail progress").evaluate("el => el.value")
    assert 0 < seen < 100
    assert "all steps done" not in output.inner_text()
    assert tab.page.locator('[data-testid="cancel-job"]').is_visible()
    tab.page.screenshot(path=f"{SCREENSHOTS}/roost-job-running.png", full_page=True)

    state_badge(tab.page).filter(has_text="Succeeded").wait_for(timeout=30_000)
    output.filter(has_text="all steps done").wait_for()
    assert tab.page.evaluate("window.__sameDocument") is True
    lines = output.inner_text()
    assert [f"step {i} of 6" in lines for i in range(1, 7)] == [True] * 6
    assert lines.count("step 3 of 6") == 1  # live chunks and the final reload do not repeat each other
    assert tab.page.locator("#job-detail .job-percent").inner_text() == "100%"
    assert tab.page.locator('[data-testid="cancel-job"]').count() == 0
    assert jobs_hub.job(job_id)["state"] == "succeeded"
    tab.page.screenshot(path=f"{SCREENSHOTS}/roost-job-done.png", full_page=True)
    tab.assert_clean()


def test_an_action_the_node_lacks_is_greyed_out_with_its_reason(open_tab, jobs_hub):
    tab = open_tab()
    tab.goto(f"/nodes/{jobs_hub.node_id}")
    other = action_card(tab.page, "demo.other")
    assert other.get_attribute("data-allowed") == "false"
    reason = other.locator('[data-testid="action-reason"]')
    assert reason.is_visible()  # without opening the card
    assert reason.inner_text() == "Needs test.other, which this node is not granted. An admin can grant it under Grants."
    other.locator(":scope > summary").click()
    assert other.locator('[data-param="text"]').is_disabled()
    assert other.locator('[data-testid="run"]').count() == 0
    assert action_card(tab.page, "demo.echo").get_attribute("data-allowed") == "true"
    other.screenshot(path=f"{SCREENSHOTS}/roost-action-greyed.png")
    tab.assert_clean()


def test_cancel_a_slow_job(open_tab, jobs_hub):
    job = jobs_hub.api("POST", f"/api/v1/nodes/{jobs_hub.node_id}/actions/demo.steps", {"params": {"steps": 100, "pause": 0.5}}, role="operator")
    tab = open_tab()
    tab.goto(f"/jobs/{job['id']}")
    tab.page.locator('[data-testid="job-output"]').filter(has_text="step 1 of 100").wait_for()
    tab.page.locator('[data-testid="cancel-job"]').click()
    state_badge(tab.page).filter(has_text="Cancelled").wait_for()
    assert tab.page.locator('[data-testid="cancel-job"]').count() == 0
    stored = jobs_hub.job(job["id"])
    assert stored["state"] == "cancelled" and "all steps done" not in stored["output"]
    tab.assert_clean()


def test_a_viewer_sees_actions_and_jobs_but_cannot_run_or_cancel(open_tab, jobs_hub):
    job = jobs_hub.api("POST", f"/api/v1/nodes/{jobs_hub.node_id}/actions/demo.steps", {"params": {"steps": 20, "pause": 0.5}}, role="operator")
    try:
        tab = open_tab("viewer")
        tab.goto(f"/nodes/{jobs_hub.node_id}")
        assert action_card(tab.page, "demo.echo").count() == 1
        assert tab.page.locator('#actions [data-testid="run"], #actions [data-testid="prepare-envelope"]').count() == 0
        open_card(tab.page, "demo.echo")
        assert action_card(tab.page, "demo.echo").locator('[data-param="text"]').is_disabled()
        tab.goto(f"/jobs/{job['id']}")
        state_badge(tab.page).filter(has_text="Running").wait_for()
        assert tab.page.locator('[data-testid="cancel-job"]').count() == 0
        tab.goto("/schedules")
        assert tab.page.locator("#schedule-form").count() == 0
        tab.assert_clean()
    finally:
        jobs_hub.api("POST", f"/api/v1/jobs/{job['id']}/cancel", {}, role="operator")


def test_schedules_are_created_with_their_next_run_paused_and_deleted(open_tab, jobs_hub):
    tab = open_tab()
    tab.goto("/schedules")
    form = tab.page.locator("#schedule-form")
    form.locator('[data-testid="schedule-node"]').select_option(jobs_hub.node_id)
    actions = form.locator('[data-testid="schedule-action"] option')
    offered = actions.evaluate_all("els => els.map(e => [e.value, e.disabled, e.textContent])")
    disabled = {value: text for value, is_disabled, text in offered if is_disabled}
    assert "demo.wipe" in disabled and "signature" in disabled["demo.wipe"]
    assert "demo.other" in disabled and "needs test.other" in disabled["demo.other"]
    form.locator('[data-testid="schedule-action"]').select_option("demo.echo")
    form.locator('#params-fields [data-param="text"]').fill("nightly hello")

    # The hub's own validation message comes back for a bad cron expression.
    form.locator('[data-testid="schedule-cron"]').fill("61 * * * *")
    form.locator('[data-testid="create-schedule"]').click()
    error = form.locator('[data-testid="schedule-error"]')
    error.filter(has_text="is not a cron expression").wait_for()
    assert "Not created: invalid request: cron: '61 * * * *'" in error.inner_text()
    tab.errors.remove("console: Failed to load resource: the server responded with a status of 400 (Bad Request)")

    form.locator("button[data-cron]", has_text="Every day at 03:00").click()
    assert form.locator('[data-testid="schedule-cron"]').input_value() == "0 3 * * *"
    form.locator("#schedule-note").fill("say hello <b>nightly</b>")
    form.locator('[data-testid="create-schedule"]').click()
    tab.page.locator("#schedule-results .notice", has_text="Next run").wait_for()
    row = tab.page.locator("#schedules tr[data-schedule-id]", has_text="say hello <b>nightly</b>")
    row.wait_for()
    next_run = row.locator('[data-testid="next-run"]')
    assert re.search(r"\d{4}-\d\d-\d\d 0?\d:\d\d \(in (\d+ h( \d+ min)?|\d+ min|\d+ s)\)", next_run.inner_text()), next_run.inner_text()
    assert row.locator("code.schedule-cron").inner_text() == "0 3 * * *"
    stored = {s["id"]: s for s in jobs_hub.api("GET", "/api/v1/schedules")["schedules"]}
    schedule = stored[row.get_attribute("data-schedule-id")]
    assert schedule["params"] == {"text": "nightly hello", "times": 1} or schedule["params"] == {"text": "nightly hello"}
    assert schedule["next_run"] > time.time()
    tab.page.locator("#schedules").screenshot(path=f"{SCREENSHOTS}/roost-schedules.png")
    form.screenshot(path=f"{SCREENSHOTS}/roost-schedule-form.png")

    row.locator("input[data-schedule-toggle]").uncheck()
    row.locator(".switch-text", has_text="paused").wait_for()
    assert row.get_attribute("data-enabled") == "false"
    assert jobs_hub.api("GET", "/api/v1/schedules")["schedules"][0]["enabled"] is False
    row.locator('[data-job-action="delete-schedule"]').click()
    row.locator('[data-testid="confirm-delete-schedule"]').click()
    row.wait_for(state="detached")
    assert all(s["id"] != schedule["id"] for s in jobs_hub.api("GET", "/api/v1/schedules")["schedules"])
    tab.assert_clean()


def test_a_schedule_link_from_an_action_card_prefills_the_form(open_tab, jobs_hub):
    tab = open_tab()
    tab.goto(f"/nodes/{jobs_hub.node_id}")
    open_card(tab.page, "demo.steps").locator("a", has_text="Schedule").click()
    tab.page.wait_for_url("**/schedules?**")
    form = tab.page.locator("#schedule-form")
    assert form.locator('[data-testid="schedule-node"]').input_value() == jobs_hub.node_id
    assert form.locator('[data-testid="schedule-action"]').input_value() == "demo.steps"
    assert form.locator('#params-fields [data-param="steps"]').input_value() == "5"
    tab.assert_clean()


def test_the_jobs_list_filters_and_follows_new_jobs(open_tab, jobs_hub):
    tab = open_tab()
    tab.goto("/jobs")
    tab.page.evaluate("window.__sameDocument = true")
    job = jobs_hub.api("POST", f"/api/v1/nodes/{jobs_hub.node_id}/actions/demo.steps", {"params": {"steps": 3, "pause": 0.4}}, role="operator")
    row = tab.page.locator(f'#jobs tr[data-job-id="{job["id"]}"]')
    row.wait_for()  # no reload: the job event brought it in
    row.locator(".job-state", has_text="Succeeded").wait_for(timeout=30_000)
    assert tab.page.evaluate("window.__sameDocument") is True

    tab.page.locator('[data-testid="filter-action"]').fill("demo.s")
    tab.page.locator('[data-testid="filter-state"]').select_option("succeeded")
    tab.page.locator('[data-testid="apply-filters"]').click()
    tab.page.wait_for_url("**/jobs?**")
    actions = tab.page.locator("#jobs tr[data-job-id]").evaluate_all("els => els.map(e => [e.dataset.actionName, e.dataset.state])")
    assert actions and all(a == ["demo.steps", "succeeded"] for a in actions), actions
    listed = jobs_hub.api("GET", "/api/v1/jobs?action=demo.s&state=succeeded")["jobs"]
    assert [r for r in tab.page.locator("#jobs tr[data-job-id]").evaluate_all("els => els.map(e => e.dataset.jobId)")] == [j["id"] for j in listed]
    tab.page.locator('[data-testid="filter-node"]').select_option("")
    tab.page.locator('[data-testid="filter-action"]').fill("demo.echo")
    tab.page.locator('[data-testid="filter-state"]').select_option("")
    tab.page.locator('[data-testid="apply-filters"]').click()
    tab.page.wait_for_url("**action=demo.echo**")
    assert set(tab.page.locator("#jobs tr[data-job-id]").evaluate_all("els => els.map(e => e.dataset.actionName)")) == {"demo.echo"}
    tab.page.screenshot(path=f"{SCREENSHOTS}/roost-jobs.png", full_page=True)
    tab.assert_clean()


def test_a_destructive_action_runs_with_a_pasted_operator_signature(open_tab, jobs_hub):
    if jobs_hub.operator_key is None:
        pytest.skip("this build has no roost.core.signing")
    tab = open_tab(permissions=["clipboard-read", "clipboard-write"])
    tab.goto(f"/nodes/{jobs_hub.node_id}")
    card = open_card(tab.page, "demo.wipe")
    assert card.locator('[data-testid="run"]').count() == 0
    card.locator('[data-param="disk"]').fill("sdz")
    card.locator('[data-testid="prepare-envelope"]').click()
    command = card.locator('[data-testid="sign-command"]')
    command.filter(has_text="roost sign").wait_for()
    assert "demo.wipe" in card.locator('[data-testid="envelope-summary"]').inner_text()
    assert card.locator('[data-param="disk"]').is_disabled()  # the signature binds these parameters
    card.locator('[data-job-action="copy-command"]').click()
    card.locator(".copy-status", has_text="Copied").wait_for()
    copied = tab.page.evaluate("navigator.clipboard.readText()")
    assert copied == command.inner_text()

    # Without a signature the hub says so, and nothing runs.
    card.locator('[data-testid="signed-envelope"]').fill('{"not": "signed"}')
    card.locator('[data-testid="run-signed"]').click()
    card.locator(".action-error", has_text="Not started").wait_for()
    tab.errors.remove("console: Failed to load resource: the server responded with a status of 409 (Conflict)")

    # Sign it the way the operator would, on their own machine, and paste everything it printed.
    signed = subprocess.run(
        ["bash", "-c", f"{copied} --key {jobs_hub.operator_key} --passphrase-file {jobs_hub.passphrase_file}"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
    )
    assert signed.returncode == 0, signed.stderr
    card.locator('[data-testid="signed-envelope"]').fill(signed.stdout)
    assert card.locator(".action-error").is_hidden()  # editing clears the last refusal
    card.screenshot(path=f"{SCREENSHOTS}/roost-sign-envelope.png")
    card.locator('[data-testid="run-signed"]').click()
    job_id = job_id_from(tab.page)
    state_badge(tab.page).filter(has_text="Succeeded").wait_for()
    tab.page.locator('[data-testid="job-output"]').filter(has_text="wiped sdz (pretend)").wait_for()
    assert tab.page.locator(".tag", has_text="signed by an operator").is_visible()
    assert jobs_hub.job(job_id)["signed"] is True
    tab.assert_clean()


SLEEPY_MAC = "00:11:22:33:44:55"


def report_and_fall_silent(hub: JobsHub) -> str:
    """A node that enrols, reports its MAC address once and goes quiet, as a machine does when it is switched off."""
    import aiohttp

    token = hub.api("POST", "/api/v1/join-tokens", {"expires": "10m", "uses": 1, "note": "sleepy"})["token"]

    async def main() -> str:
        async with aiohttp.ClientSession(base_url=hub.base_url) as session:
            agent = FakeAgent(client=session, identity=Identity.generate())
            resp = await session.post(ENROLL_PATH, json=enrol_body(token, agent.identity, hostname="sleepy"))
            assert resp.status == 200, await resp.text()
            agent.node_id = (await resp.json())["node_id"]
            assert (await agent.connect())["type"] == "welcome"
            facts = {"macs": {"eth0": SLEEPY_MAC, "docker0": "02:42:ac:11:00:01"}}
            await agent.send(agent.report(interval=1, data={"linux_host": {"facts": facts, "cpu": {"percent": 1.0}}}))
            await agent.expect("ack")
            await agent.ws.close()
            return agent.node_id

    return in_thread(lambda: asyncio.run(main()))


def test_a_node_that_goes_quiet_gets_a_wake_button_that_sends_the_magic_packet(open_tab, jobs_hub):
    node_id = report_and_fall_silent(jobs_hub)
    tab = open_tab()
    tab.goto(f"/nodes/{node_id}")
    wake = tab.page.locator("#wake")
    # The node page was rendered while the node was still fresh; it goes stale while we watch.
    wake.wait_for(state="visible", timeout=20_000)
    assert tab.page.locator("#actions").get_attribute("data-status") in ("stale", "offline")
    # The burned-in address, not the container bridge's locally administered one.
    assert wake.locator('[data-testid="wake-macs"]').inner_text() == SLEEPY_MAC
    wake.locator('[data-testid="wake"]').click()
    packet, _addr = jobs_hub.wol.recvfrom(1024)
    assert packet == b"\xff" * 6 + bytes.fromhex(SLEEPY_MAC.replace(":", "")) * 16
    wake.locator(".wake-result", has_text="Magic packet sent").wait_for()
    assert SLEEPY_MAC in wake.locator(".wake-result").inner_text()
    wake.screenshot(path=f"{SCREENSHOTS}/roost-wake.png")
    audit = jobs_hub.api("GET", "/api/v1/audit?action=node.wake")
    assert any(e.get("target") == f"node:{node_id}" for e in audit.get("entries", [])), audit
    tab.assert_clean()


@pytest.mark.parametrize("path", ["/jobs", "/schedules", "/node"])
def test_pages_fit_a_phone(open_tab, jobs_hub, path):
    tab = open_tab(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    tab.goto(f"/nodes/{jobs_hub.node_id}" if path == "/node" else path)
    if path == "/node":
        open_card(tab.page, "demo.echo")
    width = tab.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{path} scrolls sideways on a phone: {width}"
    shot = tab.page.locator("#actions") if path == "/node" else tab.page
    shot.screenshot(path=f"{SCREENSHOTS}/roost-phone-{path.strip('/')}.png", **({} if path == "/node" else {"full_page": True}))
    tab.assert_clean()


def test_python_patterns_compile_the_same_in_the_browser(open_tab):
    """Every pattern the form puts in a `pattern` attribute compiles under the browser's v flag and matches as Python does."""
    from roost.frontend.jobs_views import html_pattern

    cases = {
        r"^[a-z][a-z0-9-]*$": ["web-1", "1web", "web_1", "a-"],
        r"^[-\w.]+$": ["a.b-c_d", "a b", "-x"],
        r"^[\w\-]+\.service$": ["ssh.service", "ssh.socket", "a-b.service"],
        r"^a\-b$": ["a-b", "ab"],
        r"^\d{1,3}(\.\d{1,3}){3}$": ["10.0.0.1", "10.0.0", "1000.1.1.1"],
        r"^[a-z(]+$": ["ab(", "ab)"],
        r"^(?:on|off)$": ["on", "off", "onoff"],
        r"^[^/]+$": ["abc", "a/b"],
    }
    tab = open_tab()
    tab.page.set_content("<p>patterns</p>")
    for python, samples in cases.items():
        pattern = html_pattern(python)
        assert pattern is not None, python
        browser = tab.page.evaluate(
            "([p, samples]) => samples.map(s => new RegExp('^(?:' + p + ')$', 'v').test(s))", [pattern, samples]
        )
        assert browser == [bool(re.fullmatch(python, s)) for s in samples], (python, pattern, samples, browser)

