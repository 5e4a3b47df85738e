"""Restore tests of vzdump backups against fakepve through the real proxmoxer: restore into a scratch guest, compare, destroy.

The simulator restores what vzdump saved (extractconfig, qmrestore, pct restore with new disks and, with
unique, new MACs), and tests damage an archive with ``restore_faults``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import voluptuous as vol

from roost.core.actions import ActionContext, ActionError, ActionRefused
from roost.integrations.proxmox import CONFIG_SCHEMA
from roost.integrations.proxmox.restore_test import (
    ACTION_RESTORE_TEST,
    ACTION_SCRATCH_REMOVE,
    DATA_RESULTS,
    DATA_SCRATCH,
    compare,
    parse_config,
    restore_test_actions,
    results_file,
    scratch_ledger,
)

RANGE = [990000, 990009]


@pytest.fixture
def rt(config, tmp_path) -> Any:
    """Runs the restore-test actions with a scratch range configured and the agent's ledger in tmp_path."""
    specs = {s.name: s for s in restore_test_actions()}
    ledger, results = scratch_ledger(tmp_path), results_file(tmp_path)
    table = CONFIG_SCHEMA({**{k: v for k, v in config.items() if k != "restore_test"}, "restore_test": {"vmid_range": RANGE}})

    class Runner:
        def __init__(self) -> None:
            self.ledger, self.results, self.progress = ledger, results, []
            self.cfg = table

        async def __call__(self, name: str, params: dict[str, Any], cfg: dict[str, Any] | None = None) -> Any:
            spec = specs[name]
            clean = spec.schema(params)

            async def progress(message: str, percent: float | None = None) -> None:
                self.progress.append(message)

            ctx = ActionContext(domain="proxmox", job_id="j-rt", node_id="n-pve", config=cfg or self.cfg,
                                data={DATA_SCRATCH: ledger, DATA_RESULTS: results}, progress=progress,
                                logger=logging.getLogger("roost.integration.proxmox"))
            return await spec.handler(ctx, clean)

    return Runner()


async def _backup(run_action, vmid: int) -> str:
    result, _ = await run_action("proxmox.guest.backup", {"vmid": vmid, "storage": "nas"})
    return result["volid"]


async def test_a_restore_test_restores_into_a_scratch_guest_compares_and_destroys_it(pve, run_action, rt):
    volid = await _backup(run_action, 100)
    result = await rt(ACTION_RESTORE_TEST, {"guest": 100, "storage": "nas"})
    assert result["ok"] is True and result["archive"] == volid
    assert result["scratch_vmid"] == RANGE[0] and result["scratch_removed"] is True
    assert result["disks"] == [{"key": "scsi0", "size_bytes": 32 * 1024**3}] and result["bytes_checked"] == 32 * 1024**3
    assert result["keys_checked"] >= 4 and result["mismatches"] == []
    # Restored as a new guest with fresh MACs, never started, never over an existing guest.
    request = pve.restore_requests[-1]
    assert int(request["vmid"]) == RANGE[0] and request["archive"] == volid and str(request.get("unique")) == "1"
    assert "start" not in request and "force" not in request
    assert any(m == "GET" and p.endswith("/vzdump/extractconfig") for m, p, _ in pve.requests)
    # Gone again, from Proxmox and from the ledger; the result is recorded for the report.
    assert pve.guest(RANGE[0]) is None and rt.ledger.read() == {}
    assert rt.results.read()["100"]["ok"] is True
    assert pve.vm(100) is not None and pve.vm(100).status == "running"


async def test_a_container_backup_is_restore_tested_too(pve, run_action, rt):
    volid = await _backup(run_action, 200)
    result = await rt(ACTION_RESTORE_TEST, {"guest": 200, "archive": volid})
    assert result["ok"] is True and result["type"] == "lxc" and pve.ct(RANGE[0]) is None
    assert str(pve.restore_requests[-1].get("restore")) == "1" and rt.ledger.read() == {}


async def test_an_archive_that_restores_a_different_config_fails_and_is_recorded(pve, run_action, rt):
    volid = await _backup(run_action, 100)
    pve.restore_faults[volid] = {"config": {"memory": "1024", "scsi0": f"local-lvm:vm-{RANGE[0]}-disk-0,size=8G"}}
    with pytest.raises(ActionError, match="restore test of guest 100 failed: 2 config key"):
        await rt(ACTION_RESTORE_TEST, {"guest": 100, "storage": "nas"})
    recorded = rt.results.read()["100"]
    assert recorded["ok"] is False and {m["key"] for m in recorded["mismatches"]} == {"memory", "scsi0"}
    size = next(m for m in recorded["mismatches"] if m["key"] == "scsi0")
    assert size["problem"] == "disk size differs" and size["expected_size"] == 32 * 1024**3 and size["actual_size"] == 8 * 1024**3
    # The scratch guest is removed whatever the comparison found.
    assert recorded["scratch_removed"] is True and pve.guest(RANGE[0]) is None and rt.ledger.read() == {}


async def test_a_failing_restore_task_fails_the_test_and_leaves_nothing(pve, run_action, rt):
    volid = await _backup(run_action, 100)
    pve.restore_faults[volid] = {"fail": "zstd: error 70 : Write error : cannot write block"}
    with pytest.raises(ActionError, match="zstd: error 70"):
        await rt(ACTION_RESTORE_TEST, {"guest": 100, "storage": "nas"})
    recorded = rt.results.read()["100"]
    assert recorded["ok"] is False and "Write error" in recorded["error"]
    assert pve.guest(RANGE[0]) is None and rt.ledger.read() == {}


async def test_an_archive_without_a_config_is_a_failed_test_not_a_pass(pve, rt):
    # The seeded volume is listed on the storage but vzdump never stored a config in it.
    with pytest.raises(ActionError, match="unable to extract configuration"):
        await rt(ACTION_RESTORE_TEST, {"guest": 100, "archive": "nas:backup/vzdump-qemu-100-2024_11_18-02_00_02.vma.zst"})
    assert rt.results.read()["100"]["ok"] is False and pve.restore_requests == []


async def test_scratch_remove_refuses_a_guest_the_agent_did_not_create(pve, rt):
    # A guest someone tagged "scratch" in Proxmox (or the hub names) is still not the agent's.
    pve.vm(101).config["tags"] = "roost-scratch"
    with pytest.raises(ActionRefused, match="guest 101 is not a scratch guest this agent created for a restore test; refusing to destroy it"):
        await rt(ACTION_SCRATCH_REMOVE, {"vmid": 101})
    assert pve.vm(101) is not None
    assert not any(m == "DELETE" for m, _p, _ in pve.requests)


async def test_the_hub_cannot_name_or_mark_the_scratch_guest(pve, run_action, rt, config):
    spec = {s.name: s for s in restore_test_actions()}[ACTION_RESTORE_TEST]
    for extra in ({"vmid": 101}, {"scratch_vmid": 101}, {"scratch": True}):
        with pytest.raises(vol.Invalid, match="extra keys not allowed"):
            spec.schema({"guest": 100, "storage": "nas", **extra})
    # A range the host owner set over real guests: they are skipped, never restored over.
    volid = await _backup(run_action, 100)
    over_real = CONFIG_SCHEMA({**{k: v for k, v in config.items() if k != "restore_test"}, "restore_test": {"vmid_range": [100, 102]}})
    with pytest.raises(ActionError, match="no free guest id left in the scratch range 100-102"):
        await rt(ACTION_RESTORE_TEST, {"guest": 100, "archive": volid}, cfg=over_real)
    assert pve.restore_requests == [] and {100, 101, 102} <= {g.vmid for g in pve.vms}
    # Without a range, restore tests are off.
    with pytest.raises(ActionRefused, match="restore tests are off on this host"):
        await rt(ACTION_RESTORE_TEST, {"guest": 100, "archive": volid}, cfg=config)


async def test_a_scratch_guest_left_by_an_interrupted_test_is_removed_next_time(pve, run_action, rt):
    volid = await _backup(run_action, 100)
    # An earlier test restored 990000 and the agent stopped before destroying it.
    pve.add_vm(RANGE[0], "scratch", node="pve1", status="stopped", config={"scsi0": f"local-lvm:vm-{RANGE[0]}-disk-0,size=32G"})
    rt.ledger.update(str(RANGE[0]), {"node": "pve1", "type": "qemu", "archive": volid, "upid": "UPID:pve1:0:0:0:qmrestore:990000:roost@pve!monitor:"})
    # An entry whose restore Proxmox never accepted names no guest of ours: forgotten, not destroyed.
    rt.ledger.update("101", {"node": "pve1", "type": "qemu", "archive": volid})
    result = await rt(ACTION_RESTORE_TEST, {"guest": 100, "archive": volid})
    assert result["ok"] is True
    assert any("removed leftover scratch guests 990000" in m for m in rt.progress)
    assert pve.vm(101) is not None and rt.ledger.read() == {}


def test_compare_ignores_new_volume_names_and_macs_but_not_sizes_or_options():
    archive = parse_config("boot: order=scsi0\nmemory: 4096\nnet0: virtio=BC:24:11:5E:7A:01,bridge=vmbr0\n"
                           "scsi0: local-lvm:vm-100-disk-0,size=32G\n#a comment\n[snap1]\nmemory: 1\n")
    assert archive == {"boot": "order=scsi0", "memory": "4096", "net0": "virtio=BC:24:11:5E:7A:01,bridge=vmbr0", "scsi0": "local-lvm:vm-100-disk-0,size=32G"}
    same = {"boot": "order=scsi0", "memory": 4096, "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0", "scsi0": "fast:vm-990000-disk-0,size=32G", "digest": "x"}
    assert compare(archive, same)["mismatches"] == []
    other = {**same, "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr1", "scsi0": "fast:vm-990000-disk-0,size=32G,cache=unsafe"}
    assert {m["key"] for m in compare(archive, other)["mismatches"]} == {"net0", "scsi0"}
    missing = {k: v for k, v in same.items() if k != "boot"}
    assert compare(archive, missing)["mismatches"][0] == {"key": "boot", "problem": "missing after restore", "expected": "order=scsi0", "actual": None}


async def test_the_agent_removes_its_leftover_scratch_guests_when_it_starts(pve, config, tmp_path):
    from support import until
    from support_actions import set_up

    pve.add_vm(RANGE[0], "scratch", node="pve1", status="stopped", config={"scsi0": f"local-lvm:vm-{RANGE[0]}-disk-0,size=32G"})
    ledger = scratch_ledger(tmp_path)
    ledger.update(str(RANGE[0]), {"node": "pve1", "type": "qemu", "archive": "nas:backup/x.vma.zst", "upid": "UPID:pve1:0:0:0:qmrestore:990000:roost@pve!monitor:"})
    manager, _integration = await set_up("proxmox", dict(config), tmp_path)
    try:
        async def gone():
            return pve.guest(RANGE[0]) is None and ledger.read() == {}

        await until(gone, 30, "the leftover scratch guest to be destroyed")
        assert pve.vm(100) is not None and pve.vm(101) is not None
    finally:
        await manager.shutdown_all()


async def test_the_hub_asking_to_destroy_a_real_guest_as_scratch_is_refused(tmp_path, pve, config):
    from support_actions import ActionRig

    rig = ActionRig(tmp_path, {"proxmox": {**config, "restore_test": {"vmid_range": RANGE}}}, grants=["proxmox.readonly", "proxmox.manage"])
    await rig.start()
    try:
        job = await rig.run("proxmox.scratch.remove", {"vmid": 101}, timeout=30)
        assert job.state == "refused"
        assert job.error == ("guest 101 is not a scratch guest this agent created for a restore test; refusing to destroy it "
                             "(the agent removes only the scratch guests in its own ledger)")
        job = await rig.run("proxmox.backup.restore_test", {"guest": 100, "storage": "nas", "scratch_vmid": 101}, timeout=30)
        assert job.state == "refused" and "extra keys not allowed" in job.error
        assert pve.vm(101) is not None and not any(m == "DELETE" for m, _p, _ in pve.requests)
    finally:
        await rig.close()
