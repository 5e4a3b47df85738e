"""The storage collector: SMART on its own schedule (standby respected, baselines kept), the 10 s cycle calling no smartctl, and the real "nothing here" path."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from support import need

from roost.integrations.storage import CONFIG_SCHEMA
from roost.integrations.storage.collector import Collector

from fakesmart import calls, fake_smart, write_devices

def config(**extra) -> dict:
    return CONFIG_SCHEMA({"zfs": False, "lvm": False, "mdraid": False, "btrfs": False, **extra})


def test_smart_runs_on_its_own_schedule_and_the_cycle_calls_no_smartctl(tmp_path: Path, monkeypatch) -> None:
    state = fake_smart(tmp_path, {"/dev/sda": ("sat", "ATA", "smart_ata_healthy.json"), "/dev/nvme0": ("nvme", "NVMe", "smart_nvme_healthy.json")})
    monkeypatch.setenv("FAKE_SMART", str(state))
    col = Collector(config(smartctl=str(state / "smartctl"), smart_interval=3600), tmp_path / "data")
    col.refresh_smart()
    assert len(calls(state)) == 3
    first = calls(state)[1]
    assert "-n standby" not in first  # nothing cached yet: read it even if it sleeps, once
    col._smart_due = time.time() + 3600
    before = len(calls(state))
    out = col.collect({})
    assert len(calls(state)) == before, "the collection cycle must not run smartctl"
    devices = {d["key"]: d for d in out["state"]["smart"]["devices"]}
    assert set(devices) == {"wwn-0x5000c500a1b2c3d4", "serial-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A"}
    assert all(d["verdict"] == "passed" for d in devices.values())
    assert out["metrics"]["smart_temperature_celsius[wwn-0x5000c500a1b2c3d4]"] == 34.0
    assert out["metrics"]["smart_reallocated_sectors[wwn-0x5000c500a1b2c3d4]"] == 0.0
    assert out["metrics"]["smart_percentage_used[serial-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A]"] == 3.0


def test_a_sleeping_disk_is_not_woken_and_keeps_its_last_reading(tmp_path: Path, monkeypatch) -> None:
    state = fake_smart(tmp_path, {"/dev/sda": ("sat", "ATA", "smart_ata_healthy.json")})
    monkeypatch.setenv("FAKE_SMART", str(state))
    col = Collector(config(smartctl=str(state / "smartctl")), tmp_path / "data")
    col.refresh_smart()
    (state / "asleep").write_text("/dev/sda\n")
    result = col.refresh_smart()
    assert calls(state)[-1].startswith("-j -a -n standby -d sat /dev/sda")
    (dev,) = result["devices"]
    assert dev["standby"] is True and dev["verdict"] == "passed" and dev["temperature_c"] == 34


def test_counter_baselines_survive_a_restart_and_an_increase_warns(tmp_path: Path, monkeypatch) -> None:
    state = fake_smart(tmp_path, {"/dev/sda": ("sat", "ATA", "smart_ata_healthy.json")})
    monkeypatch.setenv("FAKE_SMART", str(state))
    cfg = config(smartctl=str(state / "smartctl"))
    Collector(cfg, tmp_path / "data").refresh_smart()
    write_devices(state, {"/dev/sda": ("sat", "ATA", "smart_ata_grown.json")})
    # A new collector (the agent restarted) judges from the baseline kept on disk.
    (dev,) = Collector(cfg, tmp_path / "data").refresh_smart()["devices"]
    assert dev["verdict"] == "warning"
    assert {r["attribute"] for r in dev["reasons"]} == {"reallocated_sectors", "pending_sectors"}
    assert dev["baseline"]["reallocated_sectors"] == 0


def test_failing_devices_sort_first(tmp_path: Path, monkeypatch) -> None:
    state = fake_smart(tmp_path, {"/dev/sda": ("sat", "ATA", "smart_ata_healthy.json"), "/dev/sdc": ("sat", "ATA", "smart_ata_failing.json"), "/dev/sdb": ("scsi", "SCSI", "smart_scsi.json")})
    monkeypatch.setenv("FAKE_SMART", str(state))
    result = Collector(config(smartctl=str(state / "smartctl")), tmp_path / "data").refresh_smart()
    assert [d["verdict"] for d in result["devices"]] == ["failing", "passed", "passed"]
    assert [b["bit"] for b in result["devices"][0]["exit_bits"]] == [3, 4, 6]


def test_real_smartctl_says_nothing_is_here(tmp_path: Path) -> None:
    """The real smartctl on this host (no SMART disks): SMART reported as empty or unavailable, with a reason, never an error."""
    need(shutil.which("smartctl") is not None, "smartctl (Debian smartmontools)")
    col = Collector(config(), tmp_path / "data")
    result = col.refresh_smart()
    if result["devices"]:
        return  # a host with real disks: the parsers' tests cover what they say
    assert result["reason"]
    if os.geteuid() == 0:
        assert result["available"] is True and "found no SMART devices" in result["reason"]


def test_missing_smartctl_is_a_state_not_an_error(tmp_path: Path) -> None:
    result = Collector(config(smartctl="/nonexistent/smartctl"), tmp_path / "data").refresh_smart()
    assert result["available"] is False and "apt install smartmontools" in result["reason"]


def test_smart_without_privileges_says_which_capability(tmp_path: Path, monkeypatch) -> None:
    state = fake_smart(tmp_path, {"/dev/sda": ("sat", "ATA", "smart_denied.json")})
    monkeypatch.setenv("FAKE_SMART", str(state))
    result = Collector(config(smartctl=str(state / "smartctl")), tmp_path / "data").refresh_smart()
    assert result["available"] is False
    assert result["reason"].startswith("smartctl needs CAP_SYS_RAWIO") and "AmbientCapabilities=CAP_SYS_RAWIO" in result["reason"]
