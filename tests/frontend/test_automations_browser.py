"""The low-disk blueprint end to end: a real hub and agent, a test-made ext4 filesystem filling up, the agent's re-measurement,
the alert and the approval notice at a real webhook receiver, the hub killed (SIGKILL) twice on the way, the approval granted in
Chromium by a logged-in operator, the cleanup run once as an allowlisted command, the space freed and every step in the trace."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support import free_port, need, wait_for
from support_procs import HubProc, Proc

from roost.core.hub.automations import CRASH_JOB_QUEUED
from roost.core.hub.jobs import CRASH_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PASSWORD = "a long test passphrase"


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    received.append(json.loads(self.rfile.read(length)))
                except ValueError:
                    received.append({"raw": True})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> str:
        return json.dumps(self.bodies)

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def small_fs(tmp_path):
    """A 24 MiB ext4 on a loop device, mounted under tmp_path (we are root in CI)."""
    need(os.geteuid() == 0 and shutil.which("losetup") and shutil.which("mkfs.ext4"), "root with losetup and mkfs.ext4 (loop devices)")
    image, mount = tmp_path / "fs.img", tmp_path / "fill"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "24M", str(image)], check=True)
    done = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    need(done.returncode == 0, f"a free loop device ({done.stderr.strip()})")
    device = done.stdout.strip()
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", device], check=True)
        subprocess.run(["mount", device, str(mount)], check=True)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        subprocess.run(["losetup", "-d", device], check=False)


def _fill(mount: Path, megabytes: int) -> None:
    for i in range(megabytes):
        (mount / f"junk-{i:03d}").write_bytes(os.urandom(1024 * 1024))
    os.sync()


def test_the_low_disk_blueprint_end_to_end_with_two_hub_kills_and_a_browser_approval(tmp_path, small_fs, browser):
    receiver = Receiver()
    hub = HubProc(tmp_path, "\n[agent]\nenabled = false\n")
    admin = hub.user_token("owner", "admin", "admin")
    hub.user_token("ops", "operator", "operate")
    agent_config = tmp_path / "agent.toml"
    agent_config.write_text(
        f"""
[agent]
interval = "1s"
heartbeat = "2s"
discovery = false

[agent.ceiling]
mode = "execute"

[[integrations.commands.allow]]
name = "cleanup"
description = "delete the junk files of the test filesystem"
argv = ["/usr/bin/find", "{small_fs}", "-name", "junk-*", "-delete"]
""",
        encoding="utf-8",
    )
    agent = None
    try:
        # The first hub kills itself (SIGKILL) right after the run's first step queues its job.
        hub.start(env={CRASH_ENV: CRASH_JOB_QUEUED})
        join = hub.cli("join-token", "create", "--hub-url", hub.base).stdout.strip()
        agent = Proc(["agent", "--data-dir", str(tmp_path / "agent"), "--hub", hub.base, "--join", join, "--config", str(agent_config)], tmp_path / "agent.log")

        def online() -> str | None:
            nodes = [n for n in hub.api("GET", "/api/v1/nodes", admin)[1]["nodes"] if not n["local"]]
            return nodes[0]["id"] if nodes and nodes[0]["status"] == "online" else None

        node_id = wait_for(online, 60, "the agent to come online")
        status, body = hub.api("PUT", f"/api/v1/nodes/{node_id}/grants", admin, {"grants": ["host.metrics.read", "process.execute.limited"]})
        assert status == 200, body
        status, body = hub.api(
            "POST", "/api/v1/alerts/receivers", admin,
            {"name": "hook", "kind": "notify.webhook", "settings": {"url": receiver.url, "hmac_key": "k" * 24}, "allow_private": True, "is_default": True},
        )
        assert status == 201, body
        series = f"linux_host.disk_used_percent[{small_fs}]"
        wait_for(lambda: series in hub.api("GET", f"/api/v1/nodes/{node_id}", admin)[1].get("metrics", {}), 60, f"{series} to be reported")

        status, created = hub.api(
            "POST", "/api/v1/automations/blueprints/low_disk", admin,
            {"inputs": {"id": "lowdisk", "node": node_id, "mount": str(small_fs), "threshold": 70, "for": "2s", "cleanup_command": "cleanup", "approval_timeout": "30m"}},
        )
        assert status == 201, created
        _fill(small_fs, 20)  # ~90 % of the filesystem

        first = hub.proc
        first.p.wait(90)
        assert first.p.returncode == -signal.SIGKILL and f"{CRASH_ENV}={CRASH_JOB_QUEUED}" in first.text(), first.text()[-3000:]

        hub.start()
        runs = wait_for(lambda: [r for r in hub.api("GET", "/api/v1/automations/lowdisk/runs", admin)[1]["runs"] if r["state"] == "waiting"], 90, "the resumed run to wait for approval")
        [run] = runs
        assert run["trace"][0]["kind"] == "automation.confirm" and run["trace"][0]["state"] == "done", run["trace"]
        assert run["trace"][0]["result"]["value"] >= 70
        # Killed after queuing the measurement: the resumed step found its job and queued no second one.
        status, jobs = hub.api("GET", "/api/v1/jobs?action=linux_host.disk_usage", admin)
        assert [j["created_by"] for j in jobs["jobs"]] == ["automation:lowdisk"], jobs
        wait_for(lambda: "low_disk" in receiver.texts() and "/automations/approvals/" in receiver.texts(), 60, "the alert and the approval notice at the webhook")

        # Killed again while waiting for the approval: the run resumes, still waiting, the cleanup not run.
        hub.stop(signal.SIGKILL)
        hub.start()
        status, again = hub.api("GET", f"/api/v1/automation-runs/{run['id']}", admin)
        assert again["state"] == "waiting" and len(list(small_fs.glob("junk-*"))) == 20, again
        [approval] = [a for a in again["approvals"] if a["state"] == "pending"]

        # A viewer token cannot decide, an admin's API token cannot either: only a person logged in.
        status, refused = hub.api("POST", f"/api/v1/approvals/{approval['id']}", admin, {"decision": "approve"})
        assert status == 403 and "logged in" in refused["error"], refused

        context = browser.new_context()
        try:
            login = context.request.post(hub.base + "/api/v1/session", data={"username": "ops", "password": PASSWORD})
            assert login.status == 200, login.text()
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(hub.base + approval["url"])
            page.wait_for_selector("#au-approve:visible", timeout=30_000)
            assert "cleanup" in page.inner_text("#au-approval")
            page.click("#au-approve")
            page.wait_for_selector("#au-message:has-text('Approved.')", timeout=30_000)

            def finished():
                body = hub.api("GET", f"/api/v1/automation-runs/{run['id']}", admin)[1]
                return body if body["state"] not in ("running", "waiting") else None

            done = wait_for(finished, 120, "the run to finish after the approval")
            assert done["state"] == "succeeded", done
            page.goto(hub.base + f"/automations/runs/{run['id']}")
            page.wait_for_selector("#au-run-state:text-is('succeeded')", timeout=30_000)
            page.wait_for_selector("#au-trace tbody tr", timeout=30_000)
            shown = page.locator("#au-trace tbody tr").count()
            assert not errors, errors
        finally:
            context.close()

        assert list(small_fs.glob("junk-*")) == []  # the cleanup ran
        status, cleanups = hub.api("GET", "/api/v1/jobs?action=commands.run", admin)
        assert [(j["created_by"], j["state"]) for j in cleanups["jobs"]] == [("automation:lowdisk", "succeeded")], cleanups  # exactly once
        paths = [(t["path"], t["state"]) for t in done["trace"]]
        assert [p for p, _ in paths] == [f"steps[{i}]" for i in range(7)] + ["steps[7]", "steps[7].then[0]"], paths
        assert all(state in ("done",) for _, state in paths), paths
        assert shown == len(done["trace"])
        assert done["trace"][2]["result"]["by"] == "user:ops"
        assert done["variables"]["freed_bytes"] > 15 * 1024 * 1024 and done["variables"]["now_percent"] < 70, done["variables"]
        wait_for(lambda: "Cleanup done" in receiver.texts() and "MiB" in receiver.texts(), 60, "the report of the space freed at the webhook")
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
        receiver.close()


def test_writing_an_automation_in_the_form_and_the_yaml_toml_views(tmp_path, browser):
    hub = HubProc(tmp_path, "\n[agent]\nenabled = false\n")
    admin = hub.user_token("owner", "admin", "admin")
    hub.user_token("ops", "operator", "operate")
    hub.user_token("vic", "viewer", "read")
    hub.start()
    context = browser.new_context()
    try:
        assert context.request.post(hub.base + "/api/v1/session", data={"username": "ops", "password": PASSWORD}).status == 200
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(hub.base + "/automations/edit/new")
        page.wait_for_selector("#au-f-triggers .au-trigger", timeout=30_000)
        assert page.input_value("#au-f-name") == "My automation"
        page.fill("#au-f-name", "Nightly check")
        page.dispatch_event("#au-f-name", "change")
        page.select_option("#au-f-triggers .au-kind", "automation.cron")
        cron = '#au-f-triggers [data-path="triggers[0].cron"]'
        page.wait_for_selector(cron, timeout=20_000)
        page.fill(cron, "every night")
        page.dispatch_event(cron, "change")
        page.wait_for_selector("#au-errors li:has-text('triggers[0].cron: expected a cron expression')", timeout=20_000)
        assert "au-bad" in page.get_attribute(cron, "class") and "cron expression" in page.get_attribute(cron, "title")
        page.fill(cron, "0 1 * * *")
        page.dispatch_event(cron, "change")
        page.wait_for_selector("#au-message:text-is('Valid.')", timeout=20_000)
        assert "cron: 0 1 * * *" in page.input_value("#au-text") and "name: Nightly check" in page.input_value("#au-text")
        page.check('input[name="au-format"][value="toml"]')
        page.wait_for_selector("#au-text", timeout=5_000)
        wait_for(lambda: 'cron = "0 1 * * *"' in page.input_value("#au-text"), 20, "the TOML view")
        page.click("#au-save")
        page.wait_for_url("**/automations/edit/a*", timeout=20_000)
        automation_id = page.url.rsplit("/", 1)[1]
        status, saved = hub.api("GET", f"/api/v1/automations/{automation_id}", admin)
        assert status == 200 and saved["name"] == "Nightly check" and saved["triggers"] == ["automation.cron"] and saved["source"] == "api", saved
        page.wait_for_selector("#au-dry-run", timeout=20_000)
        page.click("#au-dry-run")
        page.wait_for_url("**/automations/runs/r*", timeout=20_000)
        page.wait_for_selector("#au-run-state:text-is('stopped')", timeout=30_000)  # its one step is stop: done
        assert "yes" in page.inner_text("#au-run") and page.locator("#au-trace tbody tr").count() == 1 and not errors, errors
    finally:
        context.close()
    viewer = browser.new_context()
    try:
        assert viewer.request.post(hub.base + "/api/v1/session", data={"username": "vic", "password": PASSWORD}).status == 200
        page = viewer.new_page()
        page.goto(hub.base + "/automations")
        page.wait_for_selector("#au-list a:has-text('Nightly check')", timeout=30_000)
        assert page.locator("#au-new").count() == 0
        page.goto(hub.base + f"/automations/edit/{automation_id}")
        assert page.locator("#au-save").count() == 0  # viewers read, they do not change
    finally:
        viewer.close()
        hub.stop()
