"""A listed drive unplugged, end to end with real processes: a real hub, a real agent, a real loop device.

The agent collects every 60 s, so a report within 5 s of the detach can only
come from the mount watch asking for one; the hub's alert engine then fires
the target-missing rule, and a re-attach clears it.
"""

from __future__ import annotations

import time

import pytest
from support import wait_for
from support_procs import HubProc, Proc

from .loopdev import LoopDisk

pytestmark = pytest.mark.e2e

AGENT_CONFIG = """
[agent]
interval = "60s"
heartbeat = "2s"
discovery = false

[integrations.storage]
lvm = false
"""


def test_an_unplugged_listed_drive_is_reported_within_5_seconds_and_alerts_then_clears(tmp_path):
    disk = LoopDisk(tmp_path / "disk", label="roost-e2e").make()
    hub = HubProc(tmp_path, '\n[agent]\nenabled = false\n')
    agent = None
    try:
        disk.mount()
        admin = hub.user_token("owner", "admin", "admin")
        hub.start()
        join = hub.cli("join-token", "create", "--hub-url", hub.base).stdout.strip()
        (tmp_path / "agent.toml").write_text(AGENT_CONFIG, encoding="utf-8")
        agent = Proc(["agent", "--data-dir", str(tmp_path / "agent"), "--hub", hub.base, "--join", join, "--config", str(tmp_path / "agent.toml")], tmp_path / "agent.log")

        def online() -> str | None:
            nodes = [n for n in hub.api("GET", "/api/v1/nodes", admin)[1]["nodes"] if not n["local"]]
            return nodes[0]["id"] if nodes and nodes[0]["status"] == "online" else None

        node_id = wait_for(online, 60, "the agent to come online")
        status, body = hub.api("PUT", f"/api/v1/nodes/{node_id}/grants", admin, {"grants": ["host.metrics.read", "storage.read"]})
        assert status == 200, body
        rule = {"name": "Backup drive gone", "kind": "storage.target_missing", "severity": "critical", "for": 0, "clear_for": 0, "settings": {}}
        status, body = hub.api("POST", "/api/v1/alerts/rules", admin, rule)
        assert status == 201, body
        rule_id = body["id"]
        manifest = {"targets": [{"id": "usb-backup", "type": "usb", "durable_id": f"LABEL={disk.label}", "role": "backup", "mountpoint": str(disk.mountpoint)}]}
        status, body = hub.api("PUT", f"/api/v1/integrations/storage/manifests/{node_id}", admin, manifest)
        assert status == 200, body

        def target() -> dict | None:
            state = hub.api("GET", f"/api/v1/nodes/{node_id}", admin)[1].get("state") or {}
            found = [t for t in (state.get("storage") or {}).get("targets", []) if t.get("id") == "usb-backup"]
            return found[0] if found else None

        # The manifest starts a cycle at once on the agent (like a grant change), so this does not wait 60 s.
        assert wait_for(lambda: (t := target()) and t["status"] == "present" and t, 30, "the target reported present")["device"] == disk.device

        def alert(state: str) -> dict | None:
            instances = hub.api("GET", f"/api/v1/alerts?node_id={node_id}", admin)[1]["instances"]
            found = [i for i in instances if i["rule_id"] == rule_id and i["state"] == state]
            return found[0] if found else None

        assert alert("firing") is None
        detached = time.monotonic()
        disk.detach()
        wait_for(lambda: (t := target()) and t["status"] == "missing", 5, "the agent to report the target missing within 5 s")
        reported = time.monotonic() - detached
        firing = wait_for(lambda: alert("firing"), 5, "the target-missing alert to fire")
        fired = time.monotonic() - detached
        assert firing["labels"]["target"] == "usb-backup" and firing["severity"] == "critical"
        assert "usb-backup" in firing["summary"]
        print(f"detach → reported missing in {reported:.2f} s, alert firing in {fired:.2f} s")

        disk.mount()
        wait_for(lambda: (t := target()) and t["status"] == "present", 5, "the agent to report the target back within 5 s")
        wait_for(lambda: alert("firing") is None, 5, "the alert to clear")
        status, events = hub.api("GET", "/api/v1/alerts/events?after=0", admin)
        mine = [e["status"] for e in events["events"] if e["rule_id"] == rule_id]
        assert mine == ["firing", "resolved"], mine
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
        disk.detach()
