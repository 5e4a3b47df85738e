"""Alerts end to end: a real hub and a real agent process; the node goes silent, a real file system fills, the hub is killed mid-timer."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support import need, wait_for
from support_procs import HubProc, Proc

pytestmark = pytest.mark.e2e

FAST_HUB = 'stale_after = "1s"\noffline_after = "3s"\n\n[agent]\nenabled = false\n'


def start_agent(hub: HubProc, tmp_path: Path, *, interval: str = "0.5s", extra: str = "") -> tuple[Proc, str]:
    join = hub.cli("join-token", "create", "--hub-url", hub.base).stdout.strip()
    agent_dir = tmp_path / "agent"
    conf = tmp_path / "agent.toml"
    conf.write_text(f'[agent]\ninterval = "{interval}"\nheartbeat = "1s"\ndiscovery = false\n{extra}', encoding="utf-8")
    agent = Proc(["agent", "--data-dir", str(agent_dir), "--hub", hub.base, "--join", join, "--config", str(conf)], tmp_path / "agent.log")
    import json

    state = wait_for(lambda: json.loads((agent_dir / "agent.json").read_text()) if (agent_dir / "agent.json").exists() else None, 60, "enrolment")
    return agent, state["node_id"]


def node(hub: HubProc, token: str, node_id: str) -> dict:
    status, body = hub.api("GET", f"/api/v1/nodes/{node_id}", token)
    assert status == 200, body
    return body


def events(hub: HubProc, token: str, rule_id: str) -> list[dict]:
    status, body = hub.api("GET", "/api/v1/alerts/events?after=0&limit=5000", token)
    assert status == 200, body
    return [e for e in body["events"] if e["rule_id"] == rule_id]


def live(hub: HubProc, token: str, rule_id: str) -> list[dict]:
    status, body = hub.api("GET", "/api/v1/alerts", token)
    assert status == 200, body
    return [i for i in body["instances"] if i["rule_id"] == rule_id]


@pytest.fixture
def running():
    procs: list = []
    yield procs
    for proc in procs:
        if isinstance(proc, Proc) and proc.p.poll() is None:
            try:
                proc.p.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
        proc.stop(signal.SIGKILL)


def test_a_silent_agent_raises_node_offline_once_and_resolves_it_once_when_back(tmp_path, running):
    hub = HubProc(tmp_path, FAST_HUB)
    hub.start()
    running.append(hub)
    admin = hub.user_token("owner", "admin", "admin")
    agent, node_id = start_agent(hub, tmp_path, extra='labels = { env = "lab", rack = "r2" }\n')
    running.append(agent)
    wait_for(lambda: node(hub, admin, node_id)["node"]["status"] == "online", 60, "the agent's first report")
    # The agent's config labels reach the hub.
    status, labels = hub.api("GET", f"/api/v1/nodes/{node_id}/labels", admin)
    assert status == 200 and labels["agent"] == {"env": "lab", "rack": "r2"}

    agent.p.send_signal(signal.SIGSTOP)  # silent: the process and its socket stay, nothing is sent
    try:
        firing = wait_for(lambda: [i for i in live(hub, admin, "default-node-offline") if i["node_id"] == node_id and i["state"] == "firing"], 60, "node offline to fire")
        assert firing[0]["severity"] == "critical" and "has not reported" in firing[0]["summary"]
        summary = node(hub, admin, node_id)["node"]
        assert summary["status"] == "offline" and summary["alerts"]["firing"] == 1 and summary["alerts"]["critical"] == 1
    finally:
        agent.p.send_signal(signal.SIGCONT)
    wait_for(lambda: not [i for i in live(hub, admin, "default-node-offline") if i["node_id"] == node_id], 90, "node offline to resolve")
    mine = [e for e in events(hub, admin, "default-node-offline") if e["node_id"] == node_id]
    assert [e["status"] for e in mine] == ["firing", "resolved"], mine
    assert mine[0]["instance_id"] == mine[1]["instance_id"] and mine[0]["labels"]["env"] == "lab"
    assert node(hub, admin, node_id)["node"]["alerts"]["firing"] == 0


@pytest.fixture
def small_fs(tmp_path):
    """A 32 MiB ext4 file system, loop-mounted (needs root, losetup and mkfs.ext4)."""
    need(os.geteuid() == 0 and shutil.which("losetup") is not None and shutil.which("mkfs.ext4") is not None, "root with losetup and mkfs.ext4")
    image, mountpoint = tmp_path / "fs.img", tmp_path / "full"
    mountpoint.mkdir()
    subprocess.run(["truncate", "-s", "32M", str(image)], check=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    need(loop.returncode == 0, f"a free loop device ({loop.stderr.strip()})")
    device = loop.stdout.strip()
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", device], check=True)
        subprocess.run(["mount", device, str(mountpoint)], check=True)
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)
        subprocess.run(["losetup", "-d", device], check=False)


def fill_to(mountpoint: Path, percent: float) -> None:
    """Grow or shrink one file so the file system is about ``percent`` used."""
    blob = mountpoint / "blob"
    blob.touch()
    st = os.statvfs(mountpoint)
    used_without = (st.f_blocks - st.f_bfree) * st.f_frsize - blob.stat().st_blocks * 512
    capacity = (st.f_blocks - st.f_bfree + st.f_bavail) * st.f_frsize
    size = max(0, int(capacity * percent / 100 - used_without))
    with open(blob, "r+b") as fh:
        fh.truncate(0)
        os.posix_fallocate(fh.fileno(), 0, max(size, 1))
        os.fsync(fh.fileno())


def test_a_filling_file_system_fires_after_for_and_clears_with_hysteresis(tmp_path, running, small_fs):
    hub = HubProc(tmp_path, FAST_HUB)
    hub.start()
    running.append(hub)
    admin = hub.user_token("owner", "admin", "admin")
    agent, node_id = start_agent(hub, tmp_path)
    running.append(agent)
    series = f"linux_host.disk_used_percent[{small_fs}]"
    wait_for(lambda: series in node(hub, admin, node_id)["metrics"], 60, f"the agent to report {series}")
    rule = {"name": "Test filesystem", "kind": "metric.threshold", "severity": "warning", "for": 4, "clear_for": 2,
            "settings": {"series": "linux_host.disk_used_percent[*]", "label": "mountpoint", "warning": 90, "warning_clear": 80}}
    status, created = hub.api("POST", "/api/v1/alerts/rules", admin, rule)
    assert status == 201, created
    rule_id = created["id"]

    fill_to(small_fs, 96)
    pending = wait_for(lambda: [i for i in live(hub, admin, rule_id) if i["labels"] == {"mountpoint": str(small_fs)}], 60, "the alert to be pending")
    assert pending[0]["state"] in ("pending", "firing")  # a loaded machine may look only after `for`
    firing = wait_for(lambda: [i for i in live(hub, admin, rule_id) if i["state"] == "firing"], 60, "the alert to fire after `for`")[0]
    assert firing["fired_at"] - firing["started_at"] >= 4

    # Between the clear threshold and the warning threshold: still firing (no flapping at 85 %).
    fill_to(small_fs, 85)
    wait_for(lambda: 80 < node(hub, admin, node_id)["metrics"][series] < 90, 60, "the agent to report about 85 %")
    seen_at = time.time()
    wait_for(lambda: node(hub, admin, node_id)["node"]["last_seen"] > seen_at + 3, 60, "a few more reports")
    assert [i["state"] for i in live(hub, admin, rule_id)] == ["firing"]

    fill_to(small_fs, 30)
    wait_for(lambda: not live(hub, admin, rule_id), 60, "the alert to clear after clear_for")
    mine = events(hub, admin, rule_id)
    assert [e["status"] for e in mine] == ["firing", "resolved"], mine
    assert mine[1]["ends_at"] - mine[0]["starts_at"] >= 2


def test_the_hub_killed_while_an_alert_is_pending_keeps_its_timer_and_fires_once(tmp_path, running):
    hub = HubProc(tmp_path, 'stale_after = "30s"\noffline_after = "600s"\n\n[agent]\nenabled = false\n')
    hub.start()
    running.append(hub)
    admin = hub.user_token("owner", "admin", "admin")
    agent, node_id = start_agent(hub, tmp_path)
    running.append(agent)
    wait_for(lambda: "linux_host.uptime_s" in node(hub, admin, node_id)["metrics"], 60, "the agent's first report")
    hold = 25
    rule = {"name": "Up at all", "kind": "metric.threshold", "for": hold, "settings": {"series": "linux_host.uptime_s", "warning": 0}}
    status, created = hub.api("POST", "/api/v1/alerts/rules", admin, rule)
    assert status == 201, created
    rule_id = created["id"]
    pending = wait_for(lambda: live(hub, admin, rule_id), 30, "the alert to be pending")[0]
    assert pending["state"] == "pending"
    # Well into the timer, so a timer started afresh at restart would fire visibly later.
    wait_for(lambda: time.time() - pending["started_at"] >= 8, 30, "8 s of the timer to pass")
    assert live(hub, admin, rule_id)[0]["state"] == "pending"

    hub.stop(signal.SIGKILL)
    killed_at = time.time()
    hub.start()
    restarted_at = time.time()
    assert restarted_at - pending["started_at"] < hold - 2, "the restart took too long for this test to tell a kept timer from a new one"
    after = live(hub, admin, rule_id)
    assert [(i["id"], i["state"], i["started_at"]) for i in after] == [(pending["id"], "pending", pending["started_at"])]

    fired = wait_for(lambda: [i for i in live(hub, admin, rule_id) if i["state"] == "firing"], 60, "the alert to fire after restart")[0]
    # The timer ran from the first start, not from the restart.
    assert fired["id"] == pending["id"] and fired["started_at"] == pending["started_at"]
    assert hold <= fired["fired_at"] - pending["started_at"] < hold + 10
    assert fired["fired_at"] < restarted_at + hold - 5
    # The agent comes back on its own backoff; its reports must not fire the alert a second time.
    seen_at = node(hub, admin, node_id)["node"]["last_seen"] or 0
    wait_for(lambda: (node(hub, admin, node_id)["node"]["last_seen"] or 0) > max(seen_at, killed_at) + 1, 120, "the agent to report to the new hub")
    mine = events(hub, admin, rule_id)
    assert [e["status"] for e in mine] == ["firing"], mine
