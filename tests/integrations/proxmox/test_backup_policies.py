"""vzdump under a backup policy: a real hub and agent, the agent's proxmox integration against the Proxmox simulator.

The hub's backup scheduler queues proxmox.guest.backup for each of the policy's
guests when its cron slot passes; the job streams vzdump's task log as
progress; the verdict turns fresh once the next collection sees the archive.
"""

from __future__ import annotations

import time

from support import until
from support_actions import ActionRig

API = "/api/v1/integrations/backup"


async def test_a_vzdump_policy_backs_guests_up_on_schedule(tmp_path, pve, config):
    pve.time_scale = 0.01
    pve.vzdump_secs = 30
    config = {**config, "backup_refresh": 0}
    rig = ActionRig(tmp_path, {"proxmox": config}, grants=["proxmox.readonly", "proxmox.manage"])
    rig.config.integrations["backup"] = {"tick_seconds": 3600}
    await rig.start(api_role="admin")
    try:
        from roost.integrations.backup.hub import DATA_SERVICE

        service = rig.hub.manager.integrations["backup"].context.data[DATA_SERVICE]

        async def reported():
            detail = await rig.hub.node_detail(rig.node_id)
            return (detail or {}).get("state", {}).get("proxmox", {}).get("guests")

        await until(reported, 30, "the cluster in the node's report")
        status, body = await rig.api(
            "POST", f"{API}/policies",
            json={"name": "db nightly", "kind": "vzdump", "nodes": [rig.node_id], "guests": [101], "storage": "nas", "schedule": "0 3 * * *", "max_age_hours": 26},
        )
        assert status == 200, body
        status, overview = await rig.api("GET", f"{API}/overview")
        (row,) = [r for r in overview["rows"] if r["kind"] == "vzdump"]
        assert row["verdict"] == "stale" and "guest 101: no successful backup found" in row["reasons"]

        made = await service.tick(now=time.time() + 86400 + 60)
        assert [(m["action"]) for m in made] == ["proxmox.guest.backup"], made
        job = await rig.final(made[0]["job"], timeout=60)
        assert job.state == "succeeded", job.error
        assert job.created_by.startswith("backup:policy:")
        assert job.result["volid"].startswith("nas:backup/vzdump-qemu-101-")
        assert "INFO: Backup job finished successfully" in job.output  # vzdump's task log, streamed as progress

        async def fresh():
            status, overview = await rig.api("GET", f"{API}/overview")
            (row,) = [r for r in overview["rows"] if r["kind"] == "vzdump"]
            return row if row["verdict"] == "fresh" else None

        await until(fresh, 30, "the vzdump verdict to turn fresh")
    finally:
        await rig.close()
