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


async def _pbs_rig(tmp_path, config, pbs_server, pki, px, **pbs_extra):
    from roost.core import signing

    table = {**config, "pbs": {"host": "127.0.0.1", "port": pbs_server.port, "token_id": px.PBS_TOKEN_ID, "token_secret": px.PBS_SECRET, "ca_file": pki.ca, "datastores": ["store1"], **pbs_extra}}
    rig = ActionRig(tmp_path, {"proxmox": table}, grants=["proxmox.readonly", "proxmox.manage"])
    await rig.start()
    rig.key = signing.generate_operator_key()
    rig.rt.settings.operator_keys = [signing.public_key_of(rig.key)]
    return rig


async def test_pbs_prune_is_a_dry_run_first_and_signed_after(tmp_path, pve, config, pbs_server, pki, px):
    from roost.core import signing

    rig = await _pbs_rig(tmp_path, config, pbs_server, pki, px, allow_prune=True)
    try:
        params = {"datastore": "store1", "group": "vm/100", "retention": {"keep_last": 1}}
        preview = await rig.run("proxmox.pbs.prune.preview", params)
        assert preview.state == "succeeded", preview.error
        assert preview.result["dry_run"] and len(preview.result["keep"]) == 2 and preview.result["remove"] == []  # the protected one is kept
        assert pbs_server.prunes[-1]["dry-run"] in ("1", "true") and pbs_server.prunes[-1]["keep-last"] == "1"
        # Without a signature: refused by the agent, and PBS never hears of it.
        asked = len(pbs_server.prunes)
        raw = await rig.raw("proxmox.pbs.prune", params)
        assert raw.state == "refused" and "signature" in raw.error
        # Signed for another group: the agent refuses it.
        other = signing.sign_envelope(signing.make_envelope("proxmox.pbs.prune", {**params, "group": "ct/200"}, rig.node_id, "ct/200"), rig.key)
        job = await rig.hub.jobs.create(rig.node_id, "proxmox.pbs.prune", params, actor="user:test", envelope=other)
        final = await rig.final(job.job_id)
        assert final.state == "refused" and "signed for target" in final.error
        assert len(pbs_server.prunes) == asked
        envelope = signing.sign_envelope(signing.make_envelope("proxmox.pbs.prune", params, rig.node_id, "vm/100"), rig.key)
        job = await rig.hub.jobs.create(rig.node_id, "proxmox.pbs.prune", params, actor="user:test", envelope=envelope)
        final = await rig.final(job.job_id)
        assert final.state == "succeeded", final.error
        assert pbs_server.prunes[-1]["backup-id"] == "100" and pbs_server.prunes[-1]["dry-run"] in ("0", "false")
    finally:
        await rig.close()


async def test_pbs_prune_needs_the_host_owners_allow_prune(tmp_path, pve, config, pbs_server, pki, px):
    from roost.core import signing

    rig = await _pbs_rig(tmp_path, config, pbs_server, pki, px)
    try:
        params = {"datastore": "store1", "group": "vm/100", "retention": {"keep_last": 1}}
        envelope = signing.sign_envelope(signing.make_envelope("proxmox.pbs.prune", params, rig.node_id, "vm/100"), rig.key)
        job = await rig.hub.jobs.create(rig.node_id, "proxmox.pbs.prune", params, actor="user:test", envelope=envelope)
        final = await rig.final(job.job_id)
        assert final.state == "refused" and "allow_prune" in final.error
        assert pbs_server.prunes == []
    finally:
        await rig.close()


async def test_a_vzdump_policy_restore_tests_its_guests_and_a_damaged_archive_turns_red_and_alerts(tmp_path, pve, config):
    config = {**config, "backup_refresh": 0, "restore_test": {"vmid_range": [990000, 990009]}}
    rig = ActionRig(tmp_path, {"proxmox": config}, grants=["proxmox.readonly", "proxmox.manage"])
    rig.config.integrations["backup"] = {"tick_seconds": 3600}
    await rig.start(api_role="admin")
    try:
        from roost.integrations.backup.hub import DATA_SERVICE

        service = rig.hub.manager.integrations["backup"].context.data[DATA_SERVICE]
        status, body = await rig.api("POST", "/api/v1/alerts/rules", json={"name": "restore tests", "kind": "backup.restore_test_failed", "severity": "critical"})
        assert status in (200, 201), body
        status, body = await rig.api(
            "POST", f"{API}/policies",
            json={"name": "db tested", "kind": "vzdump", "nodes": [rig.node_id], "guests": [101], "storage": "nas", "restore_test_interval_hours": 24},
        )
        assert status == 200, body
        backup = await rig.run("proxmox.guest.backup", {"vmid": 101, "storage": "nas"}, timeout=60)
        assert backup.state == "succeeded", backup.error
        volid = backup.result["volid"]

        async def proxmox_state(check):
            detail = await rig.hub.node_detail(rig.node_id)
            state = (detail or {}).get("state", {}).get("proxmox", {})
            return state if check(state) else None

        def backed_up(state):
            return any(g.get("vmid") == 101 and (g.get("backup") or {}).get("last_ok_at") for g in state.get("guests") or [])

        await until(lambda: proxmox_state(backed_up), 30, "guest 101's backup in the report")
        status, overview = await rig.api("GET", f"{API}/overview")
        (row,) = [r for r in overview["rows"] if r["kind"] == "vzdump"]
        assert row["verdict"] == "unverified" and "guest 101: never restore-tested" in row["reasons"]

        made = await service.tick()
        assert [(m["action"]) for m in made] == ["proxmox.backup.restore_test"], made
        job = await rig.final(made[0]["job"], timeout=60)
        assert job.state == "succeeded", job.error
        assert job.created_by.startswith("backup:policy:") and job.result["archive"] == volid and job.result["scratch_vmid"] == 990000
        assert pve.guest(990000) is None
        await until(lambda: proxmox_state(lambda s: (s.get("restore_tests") or {}).get("101", {}).get("ok") is True), 30, "the restore test in the report")

        async def verdict(want):
            status, overview = await rig.api("GET", f"{API}/overview")
            (row,) = [r for r in overview["rows"] if r["kind"] == "vzdump"]
            return row if row["verdict"] == want else None

        await until(lambda: verdict("fresh"), 30, "the vzdump verdict to turn fresh")
        assert await service.tick() == []  # not due again before its interval

        # A day later the archive restores something else than it holds.
        pve.restore_faults[volid] = {"config": {"memory": "512"}}
        made = await service.tick(now=time.time() + 25 * 3600)
        assert [(m["action"]) for m in made] == ["proxmox.backup.restore_test"], made
        job = await rig.final(made[0]["job"], timeout=60)
        assert job.state == "failed" and "restore test of guest 101 failed" in job.error and "memory" in job.error
        assert pve.guest(990000) is None
        row = await until(lambda: verdict("restore_test_failed"), 30, "the vzdump verdict to turn restore-test failed")
        assert any("guest 101: the last restore test failed" in why for why in row["reasons"])

        async def firing():
            alerts = await rig.hub.alerts.firing(rig.node_id)
            return [a for a in alerts if a["rule_name"] == "restore tests" and a["labels"].get("repository") == "proxmox:101"]

        (alert,) = await until(firing, 30, "the restore-test alert to fire")
        assert "guest 101" in alert["summary"] and alert["severity"] == "critical"
    finally:
        await rig.close()


async def test_vzdump_prune_is_a_dry_run_first_and_signed_for_the_guest(tmp_path, pve, config):
    """vzdump retention through PVE's prunebackups: the dry run removes nothing; the prune needs the operator's envelope for that guest."""
    from roost.core import signing

    now = int(time.time())
    day = 86400
    archives = {f"backup/vzdump-qemu-101-{i}.vma.zst": {"content": "backup", "format": "vma.zst", "size": 1000, "ctime": now - i * day, "vmid": 101} for i in range(1, 6)}
    archives["backup/vzdump-qemu-101-9.vma.zst"] = {"content": "backup", "format": "vma.zst", "size": 1000, "ctime": now - 9 * day, "vmid": 101, "protected": 1}
    pve.storages["nas"]["volumes"].update(archives)
    others = {k for k, v in pve.storages["nas"]["volumes"].items() if v.get("vmid") != 101}
    rig = ActionRig(tmp_path, {"proxmox": config}, grants=["proxmox.readonly", "proxmox.manage"])
    await rig.start()
    rig.key = signing.generate_operator_key()
    rig.rt.settings.operator_keys = [signing.public_key_of(rig.key)]
    try:
        params = {"vmid": 101, "storage": "nas", "retention": {"keep_last": 2}}
        preview = await rig.run("proxmox.vzdump.prune.preview", params)
        assert preview.state == "succeeded", preview.error
        assert preview.result["dry_run"] and preview.result["rule"] == "keep-last=2"
        assert sorted(k["volid"] for k in preview.result["keep"]) == sorted(["nas:backup/vzdump-qemu-101-1.vma.zst", "nas:backup/vzdump-qemu-101-2.vma.zst", "nas:backup/vzdump-qemu-101-9.vma.zst"])
        assert len(preview.result["remove"]) == 3 and len(pve.storages["nas"]["volumes"]) == len(others) + 6  # a dry run removes nothing
        # Unsigned, or signed for another guest: refused by the agent, nothing removed.
        raw = await rig.raw("proxmox.vzdump.prune", params)
        assert raw.state == "refused" and "signed" in raw.error
        other = signing.sign_envelope(signing.make_envelope("proxmox.vzdump.prune", {**params, "vmid": 100}, rig.node_id, "100"), rig.key)
        job = await rig.hub.jobs.create(rig.node_id, "proxmox.vzdump.prune", params, actor="user:test", envelope=other)
        assert (await rig.final(job.job_id)).state == "refused"
        loose = signing.sign_envelope(signing.make_envelope("proxmox.vzdump.prune", {**params, "retention": {"keep_last": 1}}, rig.node_id, "101"), rig.key)
        job = await rig.hub.jobs.create(rig.node_id, "proxmox.vzdump.prune", params, actor="user:test", envelope=loose)
        assert (await rig.final(job.job_id)).state == "refused"  # signed for another rule
        assert len(pve.storages["nas"]["volumes"]) == len(others) + 6
        envelope = signing.sign_envelope(signing.make_envelope("proxmox.vzdump.prune", params, rig.node_id, "101"), rig.key)
        job = await rig.hub.jobs.create(rig.node_id, "proxmox.vzdump.prune", params, actor="user:test", envelope=envelope)
        final = await rig.final(job.job_id)
        assert final.state == "succeeded", final.error
        left = set(pve.storages["nas"]["volumes"])
        assert left == others | {"backup/vzdump-qemu-101-1.vma.zst", "backup/vzdump-qemu-101-2.vma.zst", "backup/vzdump-qemu-101-9.vma.zst"}
        assert pve.prune_requests[-1]["prune-backups"] == "keep-last=2" and pve.prune_requests[-1]["type"] == "qemu"
    finally:
        await rig.close()
