"""Every proxmox action handler against fakepve: guest state really changes, tasks are polled to their end with progress,
failures come back as ActionError, destructive ones need a matching envelope, read-only mode refuses every write."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from roost.core.actions import ActionError, ActionRefused
from roost.integrations.proxmox import actions as px_actions

DESTRUCTIVE = {
    "proxmox.guest.rollback": {"vmid": 100, "snapname": "before"},
    "proxmox.guest.snapshot_delete": {"vmid": 100, "snapname": "before"},
    "proxmox.guest.restore": {"vmid": 101, "archive": "nas:backup/vzdump-qemu-100-2024_11_18-02_00_02.vma.zst"},
    "proxmox.guest.destroy": {"vmid": 101},
}
ALL_ACTIONS = {
    "proxmox.guest.start": {"vmid": 101},
    "proxmox.guest.shutdown": {"vmid": 100},
    "proxmox.guest.stop": {"vmid": 100},
    "proxmox.guest.reboot": {"vmid": 100},
    "proxmox.guest.snapshot": {"vmid": 100, "snapname": "before"},
    "proxmox.guest.backup": {"vmid": 100, "storage": "nas"},
    **DESTRUCTIVE,
}


@pytest.fixture
def fast_polls(monkeypatch):
    monkeypatch.setattr(px_actions, "POLL_FIRST_SECONDS", 0.02)
    monkeypatch.setattr(px_actions, "POLL_MAX_SECONDS", 0.05)


def task_polls(pve) -> list[str]:
    return [p for m, p, _ in pve.requests if m == "GET" and "/tasks/UPID:" in p and p.endswith("/status")]


async def take_snapshot(run_action, vmid: int = 100, name: str = "before") -> None:
    await run_action("proxmox.guest.snapshot", {"vmid": vmid, "snapname": name})


# ------------------------------------------------------------------- specs


def test_specs_describe_themselves_as_the_hub_expects(specs):
    assert set(specs) == set(ALL_ACTIONS)
    for name, spec in specs.items():
        assert spec.capability == "proxmox.manage"
        described = spec.describe()
        json.dumps(described)
        assert described["params"][0]["name"] == "vmid" and described["params"][0]["type"] == "integer"
        assert spec.destructive == (name in DESTRUCTIVE)
        assert spec.target == ("vmid" if name in DESTRUCTIVE else None)
    assert specs["proxmox.guest.start"].idempotent and not specs["proxmox.guest.reboot"].idempotent


def test_parameters_are_checked(specs):
    import voluptuous as vol

    for bad in ({"vmid": 99}, {"vmid": "abc"}, {"vmid": 100, "node": "../etc"}, {}):
        with pytest.raises(vol.Invalid):
            specs["proxmox.guest.start"].schema(bad)
    with pytest.raises(vol.Invalid):
        specs["proxmox.guest.snapshot"].schema({"vmid": 100, "snapname": "1bad name"})
    with pytest.raises(vol.Invalid):
        specs["proxmox.guest.restore"].schema({"vmid": 100, "archive": "/etc/passwd"})
    with pytest.raises(vol.Invalid):
        specs["proxmox.guest.backup"].schema({"vmid": 100, "storage": "nas", "mode": "yolo"})


# --------------------------------------------------------------- lifecycle


async def test_start_runs_the_task_and_waits_for_the_guest(pve, run_action):
    result, progress = await run_action("proxmox.guest.start", {"vmid": 101})
    assert pve.vm(101).status == "running"
    assert result["changed"] is True and result["status"] == "running" and result["exit_status"] == "OK"
    assert result["upid"].startswith("UPID:pve1:") and ":qmstart:101:" in result["upid"]
    assert task_polls(pve), "the task's status was never read"
    assert progress.messages[0] == "start VM 101 (db): task started on node pve1"
    assert progress.events[-1] == ("VM 101 (db) is running", 100)


async def test_a_slow_task_is_polled_until_it_ends_with_progress(pve, run_action, fast_polls):
    pve.time_scale = 0.01
    pve.vm(101).start_secs = 40  # 0.4 s of real time
    started = time.monotonic()
    await run_action("proxmox.guest.start", {"vmid": 101})
    assert time.monotonic() - started >= 0.35
    assert len(task_polls(pve)) >= 3
    assert pve.vm(101).status == "running"


async def test_start_of_a_running_guest_changes_nothing(pve, run_action):
    result, progress = await run_action("proxmox.guest.start", {"vmid": 100})
    assert result == {"vmid": 100, "node": "pve1", "type": "qemu", "changed": False, "status": "running"}
    assert not [p for m, p, _ in pve.requests if m == "POST"]
    assert progress.events == [("VM 100 (web) is already running", 100)]


async def test_a_template_cannot_start(pve, run_action):
    with pytest.raises(ActionError, match="VM 9000 \\(debian-template\\) is a template"):
        await run_action("proxmox.guest.start", {"vmid": 9000})


async def test_shutdown_and_stop_of_vms_and_containers(pve, run_action):
    result, _ = await run_action("proxmox.guest.shutdown", {"vmid": 100, "timeout": 30})
    assert pve.vm(100).status == "stopped" and result["status"] == "stopped"
    shutdown = [b for m, p, b in pve.requests if m == "POST" and p.endswith("/qemu/100/status/shutdown")]
    assert shutdown == [b"timeout=30"]
    result, _ = await run_action("proxmox.guest.stop", {"vmid": 200})
    assert pve.ct(200).status == "stopped" and result["type"] == "lxc"
    result, _ = await run_action("proxmox.guest.stop", {"vmid": 200})
    assert result["changed"] is False


async def test_a_guest_that_ignores_shutdown_fails_unless_forced(pve, run_action):
    pve.vm(100).acpi = False
    with pytest.raises(ActionError) as err:
        await run_action("proxmox.guest.shutdown", {"vmid": 100, "timeout": 10})
    assert "the Proxmox task to shut down VM 100 (web) failed: VM quit/powerdown failed - got timeout" in str(err.value)
    assert pve.vm(100).status == "running"
    result, _ = await run_action("proxmox.guest.shutdown", {"vmid": 100, "timeout": 10, "force_stop": True})
    assert pve.vm(100).status == "stopped" and "terminating now with SIGTERM" in result["output"]


async def test_reboot(pve, run_action):
    before = pve.vm(100).started_at
    result, _ = await run_action("proxmox.guest.reboot", {"vmid": 100})
    assert result["status"] == "running" and pve.vm(100).started_at > before
    with pytest.raises(ActionError, match="only a running guest can reboot"):
        await run_action("proxmox.guest.reboot", {"vmid": 101})


async def test_an_ha_managed_guest_is_waited_for_after_its_ha_task(pve, specs, make_action_ctx, fast_polls):
    pve.time_scale = 0.01
    pve.ha_delay = 20
    ctx, progress = make_action_ctx()
    scaled_pause = pve.pause

    async def ha_manager_acts_once_the_action_waits(secs):
        # The HA manager stops the guest only after its own task ended and the action saw the guest still
        # running: on a busy host, a fixed delay could pass before the action even looks.
        if secs == pve.ha_delay:
            deadline = time.monotonic() + 30
            while not any(m.startswith("waiting for VM 102") for m in progress.messages) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return
        await scaled_pause(secs)

    pve.pause = ha_manager_acts_once_the_action_waits
    spec = specs["proxmox.guest.stop"]
    result = await spec.handler(ctx, spec.schema({"vmid": 102}))
    assert ":hastop:102:" in result["upid"]
    assert pve.vm(102).status == "stopped" and result["status"] == "stopped"
    assert any(m.startswith("waiting for VM 102 (build) to be stopped") for m in progress.messages)


# ------------------------------------------------------------------ failures


async def test_a_failing_task_is_reported_as_a_failure(pve, run_action):
    pve.vm(101).start_error = "QEMU exited with code 1"
    with pytest.raises(ActionError) as err:
        await run_action("proxmox.guest.start", {"vmid": 101})
    assert "the Proxmox task to start VM 101 (db) failed: QEMU exited with code 1" in str(err.value)
    assert pve.vm(101).status == "stopped"


async def test_an_injected_task_error_is_reported(pve, run_action):
    pve.fail("POST", "/nodes/pve1/qemu/101/status/start", error="start_failed")
    with pytest.raises(ActionError, match="failed: start failed: unexpected error"):
        await run_action("proxmox.guest.start", {"vmid": 101})


async def test_lost_quorum_refuses_changes_with_a_clear_message(pve, run_action):
    pve.lose_quorum()
    with pytest.raises(ActionError) as err:
        await run_action("proxmox.guest.stop", {"vmid": 100})
    assert "the cluster has lost quorum" in str(err.value)
    assert pve.vm(100).status == "running"


async def test_a_missing_privilege_is_named(pve, run_action, px):
    pve.grant(px.TOKEN_ID, "/vms", "VM.Audit")
    with pytest.raises(ActionError) as err:
        await run_action("proxmox.guest.start", {"vmid": 101})
    message = str(err.value)
    assert "lacks VM.PowerMgmt on /vms/101" in message and "PVEVMUser" in message


async def test_an_unknown_guest_or_wrong_node(pve, run_action):
    with pytest.raises(ActionError, match="there is no guest 555 in the cluster"):
        await run_action("proxmox.guest.start", {"vmid": 555})
    with pytest.raises(ActionError, match="guest 100 is on node pve1, not on pve2"):
        await run_action("proxmox.guest.stop", {"vmid": 100, "node": "pve2"})


async def test_losing_the_node_while_a_task_runs_ends_in_a_clear_error(pve, run_action, fast_polls):
    pve.time_scale = 0.01
    pve.vm(101).start_secs = 10_000

    async def cut_off():
        await asyncio.sleep(0.2)
        pve.set_node_offline("pve1")

    cutter = asyncio.create_task(cut_off())
    with pytest.raises(ActionError) as err:
        await run_action("proxmox.guest.start", {"vmid": 101})
    await cutter
    assert "lost track of the task to start VM 101 (db)" in str(err.value)
    assert "may still be running on node pve1" in str(err.value)


# --------------------------------------------------------- snapshots, backups


async def test_snapshot_is_taken_and_checked(pve, run_action):
    result, _ = await run_action("proxmox.guest.snapshot", {"vmid": 100, "snapname": "before", "description": "pre-upgrade"})
    assert "before" in pve.vm(100).snapshots and result["snapname"] == "before"
    assert pve.vm(100).snapshots["before"]["description"] == "pre-upgrade"
    with pytest.raises(ActionError, match="already has a snapshot named before"):
        await take_snapshot(run_action)
    await run_action("proxmox.guest.snapshot", {"vmid": 200, "snapname": "ct-snap"})
    assert "ct-snap" in pve.ct(200).snapshots


async def test_backup_streams_vzdump_progress_and_finds_the_new_volume(pve, run_action, config, fast_polls):
    from roost.integrations.proxmox.client import settings_from_config
    from roost.integrations.proxmox.collector import Collector

    pve.time_scale = 0.01
    pve.vzdump_secs = 60  # 0.6 s of real time across the log's progress lines
    pve.vzdump_paced_by_reads = True
    result, progress = await run_action("proxmox.guest.backup", {"vmid": 101, "storage": "nas"})
    sent = pve.vzdump_requests[0]
    assert sent["storage"] == "nas" and sent["mode"] == "snapshot" and sent["vmid"] == "101"
    assert sent["remove"] in (0, "0", False)  # a backup now never prunes older ones
    assert result["volid"].startswith("nas:backup/vzdump-qemu-101-") and result["exit_status"] == "OK"
    assert "INFO: Backup job finished successfully" in result["output"]
    percents = progress.percents
    assert percents == sorted(percents) and percents[-1] == 100
    assert any(0 < p < 95 for p in percents), progress.events
    assert any("% (" in m for m in progress.messages), progress.messages
    # The next collection sees the fresh backup.
    collector = Collector(config, settings_from_config(config))
    collector.start()
    state = collector.collect()["state"]
    collector.close()
    db = next(g for g in state["guests"] if g["vmid"] == 101)["backup"]
    assert db["overdue"] is False and db["source"] == "storage nas" and db["age_days"] == 0.0


async def test_backup_to_a_storage_without_backups_fails_clearly(pve, run_action):
    with pytest.raises(ActionError, match="storage 'local-lvm' does not support backups"):
        await run_action("proxmox.guest.backup", {"vmid": 100, "storage": "local-lvm"})


# --------------------------------------------------------------- destructive


async def test_rollback_with_a_matching_envelope(pve, run_action, envelope):
    await take_snapshot(run_action)
    pve.vm(100).config["memory"] = 16384
    params = {"vmid": 100, "snapname": "before", "start": True}
    result, _ = await run_action("proxmox.guest.rollback", params, envelope=envelope("proxmox.guest.rollback", params))
    vm = pve.vm(100)
    assert vm.config["memory"] == 4096 and vm.config["parent"] == "before"
    assert vm.status == "running" and result["status"] == "running"


async def test_snapshot_delete_with_a_matching_envelope(pve, run_action, envelope):
    await take_snapshot(run_action)
    params = {"vmid": 100, "snapname": "before"}
    await run_action("proxmox.guest.snapshot_delete", params, envelope=envelope("proxmox.guest.snapshot_delete", params))
    assert "before" not in pve.vm(100).snapshots
    with pytest.raises(ActionError, match="has no snapshot named before"):
        await run_action("proxmox.guest.snapshot_delete", params, envelope=envelope("proxmox.guest.snapshot_delete", params))


async def test_restore_a_vm_backup_over_the_guest(pve, run_action, envelope):
    result, _ = await run_action("proxmox.guest.backup", {"vmid": 101, "storage": "nas"})
    archive = result["volid"]
    pve.vm(101).config["memory"] = 1024  # changed after the backup
    params = {"vmid": 101, "archive": archive}
    result, _ = await run_action("proxmox.guest.restore", params, envelope=envelope("proxmox.guest.restore", params))
    assert pve.vm(101).config["memory"] == 8192
    assert ":qmrestore:101:" in result["upid"] and result["status"] == "stopped"
    posted = [b for m, p, b in pve.requests if m == "POST" and p.endswith("/nodes/pve1/qemu")][-1].decode()
    assert "force=1" in posted and "archive=nas%3Abackup%2Fvzdump-qemu-101-" in posted


async def test_restore_a_container_backup_and_refuse_over_a_running_guest(pve, run_action, envelope):
    result, _ = await run_action("proxmox.guest.backup", {"vmid": 200, "storage": "nas"})
    params = {"vmid": 200, "archive": result["volid"], "storage": "local-lvm"}
    with pytest.raises(ActionError, match="is running; shut it down before restoring over it"):
        await run_action("proxmox.guest.restore", params, envelope=envelope("proxmox.guest.restore", params))
    await run_action("proxmox.guest.stop", {"vmid": 200})
    result, _ = await run_action("proxmox.guest.restore", params, envelope=envelope("proxmox.guest.restore", params))
    assert ":vzrestore:200:" in result["upid"] and pve.ct(200) is not None and pve.ct(200).lock is None
    wrong = {"vmid": 100, "archive": params["archive"]}
    await run_action("proxmox.guest.stop", {"vmid": 100})
    with pytest.raises(ActionError, match="holds a container backup, but guest 100 is a VM"):
        await run_action("proxmox.guest.restore", wrong, envelope=envelope("proxmox.guest.restore", wrong))


async def test_destroy_a_stopped_guest(pve, run_action, envelope):
    params = {"vmid": 101}
    result, _ = await run_action("proxmox.guest.destroy", params, envelope=envelope("proxmox.guest.destroy", params))
    assert pve.vm(101) is None and result["status"] == "destroyed"
    deleted = [p for m, p, _ in pve.requests if m == "DELETE"]
    assert deleted == ["/api2/json/nodes/pve1/qemu/101"]
    running = {"vmid": 100}
    with pytest.raises(ActionError, match="is running; stop it before destroying it"):
        await run_action("proxmox.guest.destroy", running, envelope=envelope("proxmox.guest.destroy", running))
    assert pve.vm(100) is not None


@pytest.mark.parametrize("name", sorted(DESTRUCTIVE))
async def test_destructive_actions_refuse_without_a_valid_envelope(pve, run_action, envelope, name):
    params = DESTRUCTIVE[name]
    before = len(pve.requests)
    cases = {
        "missing": None,
        "expired": envelope(name, params, expires_at=time.time() - 1),
        "wrong guest": envelope(name, {**params, "vmid": 102}),
        "wrong target": envelope(name, params, target=102),
        "other parameters": envelope(name, {**params, "node": "pve2"}),
        "other action": envelope("proxmox.guest.start", params),
        "other node": envelope(name, params, node_id="n-elsewhere"),
        "no parameters": {k: v for k, v in envelope(name, params).items() if k != "params"},
    }
    for case, env in cases.items():
        with pytest.raises(ActionRefused) as err:
            await run_action(name, params, envelope=env)
        assert name in str(err.value), case
    assert len(pve.requests) == before, "a refused action must not reach Proxmox"
    assert pve.vm(100).snapshots == {} and pve.vm(101) is not None


@pytest.mark.parametrize("name", sorted(ALL_ACTIONS))
async def test_read_only_mode_refuses_every_write(pve, run_action, envelope, name):
    params = ALL_ACTIONS[name]
    before = len(pve.requests)
    with pytest.raises(ActionRefused, match="read-only"):
        await run_action(name, params, read_only=True, envelope=envelope(name, params))
    assert len(pve.requests) == before
    assert pve.vm(100).status == "running" and pve.vm(101).status == "stopped"
