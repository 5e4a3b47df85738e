"""SMART through smartctl's JSON output: scan, read each device, decode the exit status and judge each device's health.

What is judged and why (docs/integrations/storage.md has the sources):

* the drive's own verdict (``smart_status.passed``, exit bit 3) and ATA
  prefailure attributes at or below their threshold (bit 4) mean failing;
* an attribute that was at or below its threshold in the past (bit 5), error
  and self-test log entries (bits 6, 7), NVMe wear of 90 % or more and a
  temperature over the limit mean warning;
* NVMe critical warnings and available spare below its threshold mean failing;
* the counters that predict failure (ATA reallocated, pending and
  uncorrectable sectors, CRC errors, NVMe media errors, SCSI grown defects)
  are judged by their increase over the first value this host saw, never by
  their size: a drive that has had 8 reallocated sectors for three years is
  not a new problem. Each such reason names its ``attribute`` and ``value``
  so the hub can hold it acknowledged until the value changes.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from typing import Any

PASSED = "passed"
WARNING = "warning"
FAILING = "failing"
UNKNOWN = "unknown"
VERDICT_ORDER = {FAILING: 0, WARNING: 1, UNKNOWN: 2, PASSED: 3}

# smartctl(8), "EXIT STATUS": each bit of the exit status says one thing.
EXIT_BITS = (
    (0, "command_line", "the command line did not parse"),
    (1, "open_failed", "the device could not be opened, did not identify itself, or is in a low-power mode"),
    (2, "command_failed", "a SMART or other command to the disk failed, or a SMART data structure had a checksum error"),
    (3, "disk_failing", "the drive's own SMART status check says DISK FAILING"),
    (4, "prefail_threshold", "prefailure attributes are at or below their threshold now"),
    (5, "past_threshold", "some attributes were at or below their threshold in the past"),
    (6, "error_log", "the device error log has records of errors"),
    (7, "selftest_errors", "the self-test log has records of failed self-tests"),
)

# ATA attributes whose increase predicts failure (Backblaze's drive-stats studies, Scrutiny's defaults).
ATA_COUNTERS = {
    5: ("reallocated_sectors", "reallocated sectors"),
    187: ("reported_uncorrectable", "reported uncorrectable errors"),
    197: ("pending_sectors", "sectors pending reallocation"),
    198: ("uncorrectable_sectors", "offline uncorrectable sectors"),
    199: ("crc_errors", "interface CRC errors (often a cable or connector)"),
}
TEMPERATURE_LIMIT_C = {"ATA": 60, "SCSI": 60, "NVMe": 75}
NVME_WEAR_WARNING_PERCENT = 90
# NVMe SMART / health log, byte 0 (NVMe base specification, "Critical Warning").
NVME_CRITICAL_BITS = (
    (0, "available spare is below its threshold"),
    (1, "temperature is outside its limits"),
    (2, "reliability is degraded by media or internal errors"),
    (3, "media is in read-only mode"),
    (4, "the volatile memory backup device has failed"),
    (5, "the persistent memory region has become read-only or unreliable"),
)
NVME_DATA_UNIT_BYTES = 512_000  # a data unit is 1000 512-byte blocks


class SmartctlMissing(Exception):
    """smartctl is not installed."""


def decode_exit_status(status: int) -> list[dict[str, Any]]:
    """Every bit set in smartctl's exit status, named: [{"bit", "name", "meaning"}]."""
    return [{"bit": bit, "name": name, "meaning": meaning} for bit, name, meaning in EXIT_BITS if status & (1 << bit)]


def run_smartctl(argv: list[str], timeout: float) -> tuple[int, dict[str, Any]]:
    """Run smartctl with JSON output; (exit status, parsed document). A document that is not JSON is {}."""
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SmartctlMissing(f"{argv[0]} is not installed (Debian: apt install smartmontools)") from None
    try:
        doc = json.loads(proc.stdout or b"{}")
    except ValueError:
        doc = {}
    return proc.returncode, doc if isinstance(doc, dict) else {}


def messages(doc: Mapping[str, Any]) -> list[str]:
    out = []
    for item in (doc.get("smartctl") or {}).get("messages") or []:
        if isinstance(item, dict) and isinstance(item.get("string"), str):
            out.append(item["string"])
    return out


def scan(smartctl: str = "smartctl", timeout: float = 30.0) -> list[dict[str, str]]:
    """The devices smartctl finds: [{"name": "/dev/sda", "type": "sat", "protocol": "ATA"}]."""
    _, doc = run_smartctl([smartctl, "--scan", "-j"], timeout)
    found = []
    for dev in doc.get("devices") or []:
        if isinstance(dev, dict) and isinstance(dev.get("name"), str):
            found.append({"name": dev["name"], "type": str(dev.get("type") or ""), "protocol": str(dev.get("protocol") or "")})
    return found


def read_device(device: Mapping[str, str], *, smartctl: str = "smartctl", standby: bool, timeout: float = 60.0) -> tuple[int, dict[str, Any]]:
    """``smartctl -j -a`` for one scanned device; with standby, a sleeping disk is left asleep (exit bit 1, a STANDBY message)."""
    argv = [smartctl, "-j", "-a"]
    if standby:
        argv += ["-n", "standby"]
    if device.get("type"):
        argv += ["-d", device["type"]]
    argv.append(device["name"])
    return run_smartctl(argv, timeout)


def in_low_power(status: int, doc: Mapping[str, Any]) -> bool:
    """smartctl -n standby skipped the device because it sleeps."""
    return bool(status & 2) and any(re.search(r"\b(STANDBY|SLEEP|IDLE)\b", m) for m in messages(doc))


def wwn_key(wwn: Any) -> str | None:
    """smartctl's {"naa", "oui", "id"} as the name udev gives it: wwn-0x5000c500a1b2c3d4."""
    if not isinstance(wwn, dict):
        return None
    try:
        naa, oui, ident = int(wwn["naa"]), int(wwn["oui"]), int(wwn["id"])
    except (KeyError, TypeError, ValueError):
        return None
    return f"wwn-0x{(naa << 60) | (oui << 36) | ident:016x}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("_")


def device_key(doc: Mapping[str, Any]) -> str | None:
    """What names a drive across reboots: its WWN, else model and serial; never /dev/sdX."""
    key = wwn_key(doc.get("wwn"))
    if key:
        return key
    serial = doc.get("serial_number")
    if isinstance(serial, str) and serial.strip():
        model = doc.get("model_name") or doc.get("scsi_model_name") or doc.get("product") or ""
        return f"serial-{_slug(str(model)) + '_' if model else ''}{_slug(serial)}"
    return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _raw(attr: Mapping[str, Any]) -> int | None:
    raw = attr.get("raw") or {}
    value = raw.get("value") if isinstance(raw, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def parse_device(doc: Mapping[str, Any], status: int) -> dict[str, Any]:
    """One device's facts and counters from its smartctl document, before judging."""
    dev = doc.get("device") or {}
    protocol = str(dev.get("protocol") or "")
    out: dict[str, Any] = {
        "key": device_key(doc),
        "name": str(dev.get("name") or ""),
        "type": str(dev.get("type") or ""),
        "protocol": protocol,
        "model": str(doc.get("model_name") or doc.get("scsi_model_name") or doc.get("product") or ""),
        "serial": str(doc.get("serial_number") or ""),
        "firmware": str(doc.get("firmware_version") or doc.get("revision") or ""),
        "exit_status": status,
        "exit_bits": decode_exit_status(status),
        "messages": messages(doc)[:10],
    }
    capacity = (doc.get("user_capacity") or {}).get("bytes") if isinstance(doc.get("user_capacity"), dict) else None
    if _num(capacity) is not None:
        out["capacity_bytes"] = int(capacity)
    rotation = doc.get("rotation_rate")
    if isinstance(rotation, int) and not isinstance(rotation, bool):
        out["rotation_rpm"] = rotation
    smart_status = doc.get("smart_status")
    if isinstance(smart_status, dict) and isinstance(smart_status.get("passed"), bool):
        out["smart_passed"] = smart_status["passed"]
    temp = (doc.get("temperature") or {}).get("current") if isinstance(doc.get("temperature"), dict) else None
    if _num(temp) is not None:
        out["temperature_c"] = float(temp)
    hours = (doc.get("power_on_time") or {}).get("hours") if isinstance(doc.get("power_on_time"), dict) else None
    if _num(hours) is not None:
        out["power_on_hours"] = int(hours)
    counters: dict[str, int] = {}
    attributes = []
    table = ((doc.get("ata_smart_attributes") or {}).get("table")) if isinstance(doc.get("ata_smart_attributes"), dict) else None
    for attr in table or []:
        if not isinstance(attr, dict) or not isinstance(attr.get("id"), int):
            continue
        flags = attr.get("flags") if isinstance(attr.get("flags"), dict) else {}
        item = {
            "id": attr["id"],
            "name": str(attr.get("name") or f"attribute_{attr['id']}"),
            "value": attr.get("value"),
            "worst": attr.get("worst"),
            "thresh": attr.get("thresh"),
            "prefailure": bool(flags.get("prefailure")),
            "when_failed": str(attr.get("when_failed") or ""),
            "raw": _raw(attr),
        }
        attributes.append(item)
        if attr["id"] in ATA_COUNTERS and item["raw"] is not None:
            # Some drives pack more into a counter's raw value (Seagate's 187); the low 32 bits hold the count.
            counters[ATA_COUNTERS[attr["id"]][0]] = item["raw"] & 0xFFFFFFFF
        if attr["id"] == 241 and item["raw"] is not None:  # Total_LBAs_Written, in 512-byte sectors on most drives
            out["data_written_bytes"] = item["raw"] * int(doc.get("logical_block_size") or 512)
    if attributes:
        out["attributes"] = attributes
    nvme = doc.get("nvme_smart_health_information_log")
    if isinstance(nvme, dict):
        out["nvme"] = {k: nvme[k] for k in ("critical_warning", "available_spare", "available_spare_threshold", "percentage_used", "media_errors", "num_err_log_entries", "unsafe_shutdowns") if _num(nvme.get(k)) is not None}
        if _num(nvme.get("media_errors")) is not None:
            counters["media_errors"] = int(nvme["media_errors"])
        if _num(nvme.get("data_units_written")) is not None:
            out["data_written_bytes"] = int(nvme["data_units_written"]) * NVME_DATA_UNIT_BYTES
        if "temperature_c" not in out and _num(nvme.get("temperature")) is not None:
            out["temperature_c"] = float(nvme["temperature"])
        if "power_on_hours" not in out and _num(nvme.get("power_on_hours")) is not None:
            out["power_on_hours"] = int(nvme["power_on_hours"])
    grown = doc.get("scsi_grown_defect_list")
    if _num(grown) is not None:
        counters["grown_defects"] = int(grown)
    scsi_log = doc.get("scsi_error_counter_log")
    if isinstance(scsi_log, dict):
        total = 0
        for direction in ("read", "write", "verify"):
            part = scsi_log.get(direction)
            if isinstance(part, dict) and _num(part.get("total_uncorrected_errors")) is not None:
                total += int(part["total_uncorrected_errors"])
        counters["uncorrected_errors"] = total
    out["counters"] = counters
    return out


COUNTER_LABELS = {
    **{name: label for name, label in ATA_COUNTERS.values()},
    "media_errors": "NVMe media and data integrity errors",
    "grown_defects": "grown defects (SCSI)",
    "uncorrected_errors": "uncorrected read/write/verify errors (SCSI)",
}


def judge(device: Mapping[str, Any], baseline: Mapping[str, int]) -> tuple[str, list[dict[str, Any]]]:
    """The verdict and its reasons; each reason is {"severity", "text"} plus "attribute" and "value" when it is a counter."""
    reasons: list[dict[str, Any]] = []

    def add(severity: str, text: str, **extra: Any) -> None:
        reasons.append({"severity": severity, "text": text, **extra})

    status = int(device.get("exit_status") or 0)
    if device.get("smart_passed") is False or status & 8:
        add(FAILING, "the drive's own SMART status check says it is failing", attribute="smart_status")
    for attr in device.get("attributes") or []:
        value, thresh = attr.get("value"), attr.get("thresh")
        if isinstance(value, int) and isinstance(thresh, int) and thresh > 0 and value <= thresh:
            what = "prefailure" if attr.get("prefailure") else "usage"
            add(FAILING if attr.get("prefailure") else WARNING, f"{what} attribute {attr['id']} {attr['name']} is at {value}, at or below its threshold {thresh}", attribute=f"ata_{attr['id']}", value=value)
        elif attr.get("when_failed") == "In_the_past":
            add(WARNING, f"attribute {attr['id']} {attr['name']} was at or below its threshold in the past", attribute=f"ata_{attr['id']}_past", value=attr.get("worst"))
    if status & 16 and not any(r["severity"] == FAILING for r in reasons):
        add(FAILING, "smartctl reports prefailure attributes at or below their threshold", attribute="exit_bit_4")
    if status & 32 and not any("in the past" in r["text"] for r in reasons):
        add(WARNING, "smartctl reports attributes that were at or below their threshold in the past", attribute="exit_bit_5")
    if status & 64:
        add(WARNING, "the device error log has records of errors", attribute="error_log")
    if status & 128:
        add(WARNING, "the self-test log has records of failed self-tests", attribute="selftest_log")
    nvme = device.get("nvme") or {}
    critical = int(nvme.get("critical_warning") or 0)
    for bit, meaning in NVME_CRITICAL_BITS:
        if critical & (1 << bit):
            add(FAILING, f"NVMe critical warning: {meaning}", attribute=f"nvme_critical_{bit}", value=critical)
    spare, spare_thresh = nvme.get("available_spare"), nvme.get("available_spare_threshold")
    if isinstance(spare, (int, float)) and isinstance(spare_thresh, (int, float)) and spare < spare_thresh and not critical & 1:
        add(FAILING, f"NVMe available spare {spare} % is below its threshold {spare_thresh} %", attribute="nvme_available_spare", value=spare)
    used = nvme.get("percentage_used")
    if isinstance(used, (int, float)) and used >= NVME_WEAR_WARNING_PERCENT:
        add(WARNING, f"NVMe wear: {used} % of its rated endurance used", attribute="nvme_percentage_used", value=used)
    for name, value in sorted((device.get("counters") or {}).items()):
        first = baseline.get(name, value)
        if value > first:
            add(WARNING, f"{COUNTER_LABELS.get(name, name)} rose from {first} to {value}", attribute=name, value=value, baseline=first)
    temp = device.get("temperature_c")
    limit = TEMPERATURE_LIMIT_C.get(str(device.get("protocol")), 60)
    if isinstance(temp, (int, float)) and temp > limit:
        add(WARNING, f"temperature {temp:g} °C is above {limit} °C", attribute="temperature")
    if any(r["severity"] == FAILING for r in reasons):
        return FAILING, reasons
    if reasons:
        return WARNING, reasons
    if status & 0b110 and "smart_passed" not in device and not device.get("attributes") and not nvme:
        return UNKNOWN, [{"severity": UNKNOWN, "text": "; ".join(device.get("messages") or []) or "smartctl could not read this device"}]
    return PASSED, reasons


def effective_verdict(reasons: list[Mapping[str, Any]]) -> str:
    """The verdict from the reasons left once acknowledged ones are set aside."""
    live = [r for r in reasons if not r.get("acknowledged")]
    if any(r.get("severity") == FAILING for r in live):
        return FAILING
    if any(r.get("severity") == WARNING for r in live):
        return WARNING
    if any(r.get("severity") == UNKNOWN for r in live):
        return UNKNOWN
    return PASSED
