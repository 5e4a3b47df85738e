"""The Storage pages in real Chromium, on a real `roost hub` whose own agent reads two disks (smartctl answered from
recorded documents, as no SMART disk exists here): worst first with reasons, a disk's history chart, acknowledge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fakesmart import fake_smart
from frontend_support import page_factory
from support import free_port, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

OWNER, PASSWORD = "owner", "correct horse battery staple"
FAILING_KEY = "wwn-0x50014ee0499602d2"
HEALTHY_KEY = "wwn-0x5000c500a1b2c3d4"


def _cli(*args: str, stdin: str = "") -> str:
    done = subprocess.run([sys.executable, "-m", "roost.core.cli", *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _get(url: str, token: str) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}), timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def storage_hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("storage-hub")
    state = fake_smart(tmp, {"/dev/sda": ("sat", "ATA", "smart_ata_healthy.json"), "/dev/sdc": ("sat", "ATA", "smart_ata_failing.json")})
    config = tmp / "roost.toml"
    config.write_text(
        '[hub]\ndiscovery = false\nwol_broadcast = "127.0.0.1"\n\n[agent]\ninterval = "1s"\ndiscovery = false\n\n'
        f'[integrations.storage]\nsmartctl = "{state / "smartctl"}"\nlvm = false\n',
        encoding="utf-8",
    )
    data = str(tmp / "data")
    _cli("users", "add", OWNER, "--role", "admin", "--data-dir", data, "--config", str(config), stdin=PASSWORD + "\n")
    token = _cli("api-token", "create", "--user", OWNER, "--scope", "admin", "--data-dir", data, "--config", str(config)).strip()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp / "hub.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "roost.core.cli", "hub", "--config", str(config), "--data-dir", data, "--port", str(port), "--bind", "127.0.0.1"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1", "FAKE_SMART": str(state)})
    try:
        deadline = time.monotonic() + 60
        node_id = None
        while time.monotonic() < deadline and node_id is None:
            assert proc.poll() is None, (tmp / "hub.log").read_text()[-3000:]
            try:
                for row in _get(base + "/api/v1/integrations/storage", token)["rows"]:
                    if row.get("key") == FAILING_KEY:
                        node_id = row["node_id"]
            except OSError:
                pass
            time.sleep(0.2)
        assert node_id, "the local agent's SMART report"
        body = json.dumps({"username": OWNER, "password": PASSWORD}).encode()
        with urllib.request.urlopen(urllib.request.Request(base + "/api/v1/session", data=body, headers={"Content-Type": "application/json"}), timeout=10) as resp:
            cookie = next(h.split("=", 1)[1].split(";", 1)[0] for h in resp.headers.get_all("Set-Cookie") if h.startswith("roost_session="))
        yield {"base": base, "token": token, "node_id": node_id, "cookie": cookie}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_the_storage_page_shows_the_failing_disk_first_and_its_detail_acknowledges(browser, storage_hub):
    with page_factory(browser, storage_hub["base"], storage_hub["cookie"]) as make:
        page, errors = make()
        page.goto(storage_hub["base"] + "/storage")
        rows = page.locator("#st-fleet tbody tr.st-row")
        assert rows.first.get_attribute("data-verdict") == "failing"
        assert FAILING_KEY in rows.first.inner_text() and "at or below its threshold 10" in rows.first.inner_text()
        page.screenshot(path="/tmp/roost-storage-page.png", full_page=True)
        rows.first.get_by_role("link", name="ST4000VN008-2DR166").click()
        page.wait_for_url(f"**/storage/{storage_hub['node_id']}/{FAILING_KEY}")
        # The history charts draw from the metrics the agent reports each second.
        page.locator('.st-charts figure[data-points]').first.wait_for()
        assert int(page.locator('.st-charts figure[data-points]').first.get_attribute("data-points")) > 0
        reason = page.locator('li[data-attribute="ata_5"]')
        assert reason.get_attribute("data-acknowledged") == "false"
        reason.get_by_role("button", name="Acknowledge").click()
        page.wait_for_selector('li[data-attribute="ata_5"][data-acknowledged="true"]')
        page.screenshot(path="/tmp/roost-storage-device.png", full_page=True)
        assert not errors, errors
    acks = _get(f"{storage_hub['base']}/api/v1/integrations/storage/nodes/{storage_hub['node_id']}", storage_hub["token"])
    device = next(d for d in acks["storage"]["devices"] if d["key"] == FAILING_KEY)
    assert {r["attribute"]: r["acknowledged"] for r in device["reasons"]}["ata_5"] is True


def test_an_admin_edits_the_manifest_on_the_page_and_the_agent_reports_the_target(browser, storage_hub):
    base, node_id = storage_hub["base"], storage_hub["node_id"]
    with page_factory(browser, base, storage_hub["cookie"]) as make:
        page, errors = make()
        page.goto(f"{base}/storage/manifest/{node_id}")
        text = page.locator("#st-manifest-text")
        # A mistake is refused with the API's reason, and nothing changes.
        text.fill('{"targets": [{"id": "usb", "type": "usb", "durable_id": "LABEL=x", "mountpoint": "nope"}]}')
        page.get_by_role("button", name="Save and send to the agent").click()
        page.wait_for_selector('#st-manifest-status[data-outcome="error"]')
        assert "absolute mount point" in page.locator("#st-manifest-status").inner_text()
        text.fill('{"targets": [{"id": "usb-backup", "type": "usb", "durable_id": "LABEL=roost-not-plugged-in", "role": "backup"}]}')
        page.get_by_role("button", name="Save and send to the agent").click()
        page.wait_for_selector('#st-manifest-status[data-outcome="saved"]')
        assert '"state": "attached"' in text.input_value()  # the schema's defaults, as the agent got them

        # The agent (collecting every second) reports the new target; the page lists it as missing.
        def listed_missing() -> bool:
            page.goto(f"{base}/storage/manifest/{node_id}")
            return page.locator('tr[data-target="usb-backup"][data-status="missing"]').count() == 1

        wait_for(listed_missing, 20, "the new target listed as missing")
        page.screenshot(path="/tmp/roost-storage-manifest.png", full_page=True)
        # The one refused save is the browser's only complaint.
        assert [e for e in errors if "status of 400" not in e] == [], errors
