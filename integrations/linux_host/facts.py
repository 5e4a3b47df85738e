"""Static facts about the host (OS, kernel, CPU model, virtualization), read at setup and refreshed hourly."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import psutil

from .cgroups import detect_container
from .const import DETECT_VIRT_TIMEOUT_SECONDS

_LOGGER = logging.getLogger(__name__)

# DMI product or vendor strings -> the name systemd-detect-virt uses for that hypervisor.
_DMI_HYPERVISORS = (
    ("kvm", "kvm"),
    ("qemu", "qemu"),
    ("standard pc", "qemu"),
    ("vmware", "vmware"),
    ("virtualbox", "oracle"),
    ("innotek", "oracle"),
    ("bochs", "bochs"),
    ("parallels", "parallels"),
    ("hvm domu", "xen"),  # Xen PV guests have no DMI; /sys/hypervisor/type names them
    ("google compute engine", "google"),
    ("amazon ec2", "amazon"),
    ("microsoft corporation", "microsoft"),
)


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5): KEY=value lines, values optionally quoted."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[key.strip()] = value
    return out


def read_os_release(root: Path) -> dict[str, str]:
    for path in (root / "etc" / "os-release", root / "usr" / "lib" / "os-release"):
        try:
            return parse_os_release(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    return {}


def parse_cpuinfo(text: str) -> tuple[str | None, bool | None]:
    """Return (CPU model, has the hypervisor flag) from /proc/cpuinfo; None where cpuinfo does not say."""
    model = None
    flags: bool | None = None
    # x86 names it "model name"; Raspberry Pi and other ARM boards "Model" or "Hardware".
    preferences = ("model name", "model", "hardware", "cpu model", "processor")
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        value = value.strip()
        if key == "flags" and flags is None:
            flags = "hypervisor" in value.split()
        elif key in preferences and key not in found and value and not value.isdigit():
            found[key] = value
    for key in preferences:
        if key in found:
            model = found[key]
            break
    return model, flags


def detect_virtualization(sys_root: Path, cpuinfo_hypervisor: bool | None, *, use_systemd: bool = True) -> str | None:
    """Name the hypervisor ("kvm", "vmware", ...), "none" on bare metal, or None when we cannot tell.

    Containers are reported separately (facts.container); this is the machine underneath.
    """
    if use_systemd:
        exe = shutil.which("systemd-detect-virt")
        if exe is not None:
            try:
                result = subprocess.run(
                    [exe, "--vm"],
                    capture_output=True,
                    text=True,
                    timeout=DETECT_VIRT_TIMEOUT_SECONDS,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
                answer = result.stdout.strip()
                if answer:  # exit status 1 with "none" means bare metal
                    return answer
            except (OSError, subprocess.SubprocessError) as err:
                _LOGGER.debug("systemd-detect-virt failed: %s", err)
    dmi = sys_root / "class" / "dmi" / "id"
    for name in ("product_name", "sys_vendor"):
        try:
            value = (dmi / name).read_text().strip().lower()
        except OSError:
            continue
        for needle, hypervisor in _DMI_HYPERVISORS:
            if needle in value:
                return hypervisor
    try:
        xen = (sys_root / "hypervisor" / "type").read_text().strip()
        if xen:
            return xen
    except OSError:
        pass
    if cpuinfo_hypervisor is True:
        return "vm-other"  # systemd-detect-virt's name for a hypervisor it cannot identify
    if cpuinfo_hypervisor is False:
        return "none"
    return None


def collect_facts(proc_root: Path, sys_root: Path, root: Path, *, use_systemd_detect: bool = True) -> dict[str, Any]:
    """Read the host's static facts; keys the platform cannot give are left out."""
    facts: dict[str, Any] = {"hostname": socket.gethostname()}
    release = read_os_release(root)
    for key, field in (("os", "PRETTY_NAME"), ("os_id", "ID"), ("os_version", "VERSION_ID")):
        if release.get(field):
            facts[key] = release[field]
    if "os" not in facts and release.get("NAME"):
        facts["os"] = release["NAME"]
    uname = os.uname()
    facts["kernel"] = uname.release
    facts["arch"] = uname.machine
    try:
        cpuinfo = (proc_root / "cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = ""
    model, hypervisor_flag = parse_cpuinfo(cpuinfo)
    if model:
        facts["cpu_model"] = model
    logical = psutil.cpu_count(logical=True)
    physical = psutil.cpu_count(logical=False)
    if logical:
        facts["cpu_cores_logical"] = logical
    if physical:
        facts["cpu_cores_physical"] = physical
    facts["boot_time"] = int(psutil.boot_time())
    virt = detect_virtualization(sys_root, hypervisor_flag, use_systemd=use_systemd_detect)
    if virt:
        facts["virtualization"] = virt
    container = detect_container(proc_root, root)
    if container:
        facts["container"] = container
    facts["mem_total_bytes"] = psutil.virtual_memory().total
    macs = {}
    for name, addrs in psutil.net_if_addrs().items():
        for addr in addrs:
            if addr.family == psutil.AF_LINK and addr.address and addr.address != "00:00:00:00:00:00":
                macs[name] = addr.address
    facts["macs"] = macs
    return facts
