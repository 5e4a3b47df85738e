"""SMART: exit status bits, device keys, ATA / NVMe / SCSI parsing and the verdicts with their reasons."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from roost.integrations.storage import smart
from support import need

from .conftest import fixture_json


def parsed(name: str) -> dict:
    doc = fixture_json(name)
    return smart.parse_device(doc, doc["smartctl"]["exit_status"])


def test_every_exit_bit_is_named() -> None:
    bits = smart.decode_exit_status(0xFF)
    assert [b["bit"] for b in bits] == list(range(8))
    assert [b["name"] for b in bits] == ["command_line", "open_failed", "command_failed", "disk_failing", "prefail_threshold", "past_threshold", "error_log", "selftest_errors"]
    assert smart.decode_exit_status(0) == []
    assert [b["name"] for b in smart.decode_exit_status(8 | 64)] == ["disk_failing", "error_log"]


def test_device_keys_are_wwn_or_serial_never_the_dev_name() -> None:
    assert parsed("smart_ata_healthy.json")["key"] == "wwn-0x5000c500a1b2c3d4"
    nvme = parsed("smart_nvme_healthy.json")
    assert nvme["key"] == "serial-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A"
    assert "/dev" not in nvme["key"]
    assert smart.device_key({"device": {"name": "/dev/sda"}}) is None


def test_healthy_ata_passes_with_facts() -> None:
    dev = parsed("smart_ata_healthy.json")
    assert dev["protocol"] == "ATA" and dev["model"] == "ST4000VN008-2DR166"
    assert dev["temperature_c"] == 34 and dev["power_on_hours"] == 25912
    assert dev["data_written_bytes"] == 58470213541 * 512
    assert dev["counters"] == {"reallocated_sectors": 0, "reported_uncorrectable": 0, "pending_sectors": 0, "uncorrectable_sectors": 0, "crc_errors": 0}
    assert smart.judge(dev, dev["counters"]) == (smart.PASSED, [])


def test_counters_are_judged_by_increase_not_size() -> None:
    first = parsed("smart_ata_healthy.json")
    later = parsed("smart_ata_grown.json")
    verdict, reasons = smart.judge(later, first["counters"])
    assert verdict == smart.WARNING
    by_attr = {r["attribute"]: r for r in reasons}
    assert by_attr["reallocated_sectors"]["value"] == 8 and by_attr["reallocated_sectors"]["baseline"] == 0
    assert "rose from 0 to 8" in by_attr["reallocated_sectors"]["text"]
    assert by_attr["pending_sectors"]["value"] == 2
    # The same counts with that reading as the baseline: nothing new, so nothing wrong.
    assert smart.judge(later, later["counters"]) == (smart.PASSED, [])


def test_failing_ata_names_its_reasons() -> None:
    dev = parsed("smart_ata_failing.json")
    verdict, reasons = smart.judge(dev, dev["counters"])
    assert verdict == smart.FAILING
    texts = " | ".join(r["text"] for r in reasons)
    assert "SMART status check says it is failing" in texts
    assert "prefailure attribute 5 Reallocated_Sector_Ct is at 3, at or below its threshold 10" in texts
    assert "error log" in texts
    assert [b["name"] for b in dev["exit_bits"]] == ["disk_failing", "prefail_threshold", "error_log"]


def test_attribute_below_threshold_in_the_past_warns() -> None:
    dev = parsed("smart_ata_past.json")
    verdict, reasons = smart.judge(dev, dev["counters"])
    assert verdict == smart.WARNING
    assert any("in the past" in r["text"] for r in reasons)


def test_nvme_healthy_and_critical() -> None:
    ok = parsed("smart_nvme_healthy.json")
    assert ok["data_written_bytes"] == 42011876 * 512_000 and ok["temperature_c"] == 41
    assert smart.judge(ok, ok["counters"])[0] == smart.PASSED
    bad = parsed("smart_nvme_critical.json")
    verdict, reasons = smart.judge(bad, {"media_errors": 0})
    assert verdict == smart.FAILING
    texts = " | ".join(r["text"] for r in reasons)
    assert "available spare is below its threshold" in texts
    assert "reliability is degraded" in texts
    assert "97 % of its rated endurance used" in texts
    assert "media and data integrity errors rose from 0 to 12" in texts


def test_scsi_counters_and_verdict() -> None:
    dev = parsed("smart_scsi.json")
    assert dev["key"] == "wwn-0x5000c500ac1cb23d"
    assert dev["counters"] == {"grown_defects": 4, "uncorrected_errors": 0}
    assert smart.judge(dev, {"grown_defects": 4, "uncorrected_errors": 0})[0] == smart.PASSED
    verdict, reasons = smart.judge(dev, {"grown_defects": 1, "uncorrected_errors": 0})
    assert verdict == smart.WARNING and reasons[0]["attribute"] == "grown_defects"


def test_standby_is_recognised() -> None:
    doc = fixture_json("smart_standby.json")
    assert smart.in_low_power(2, doc)
    assert not smart.in_low_power(2, fixture_json("smart_denied.json"))


def test_acknowledged_reasons_leave_the_verdict() -> None:
    reasons = [{"severity": "warning", "attribute": "reallocated_sectors", "acknowledged": True}]
    assert smart.effective_verdict(reasons) == smart.PASSED
    assert smart.effective_verdict(reasons + [{"severity": "failing"}]) == smart.FAILING


def test_real_smartctl_scan_finds_nothing_here() -> None:
    """The real smartctl on a host without SMART devices: an empty scan, no exception."""
    need(shutil.which("smartctl") is not None, "smartctl (Debian smartmontools)")
    devices = smart.scan("smartctl")
    # This machine's virtio disk has no SMART: whatever smartctl lists, each entry is well formed.
    assert all(d["name"].startswith("/dev/") for d in devices)
    proc = subprocess.run(["smartctl", "--scan", "-j"], capture_output=True, text=True, check=False)
    assert len(devices) == len(__import__("json").loads(proc.stdout).get("devices") or [])


def test_missing_smartctl_says_how_to_install() -> None:
    with pytest.raises(smart.SmartctlMissing, match="apt install smartmontools"):
        smart.scan("/nonexistent/smartctl")
