"""Host facts: os-release, cpuinfo and virtualization detection on fixture files."""

from __future__ import annotations

import pytest

from roost.integrations.linux_host.facts import (
    collect_facts,
    detect_virtualization,
    parse_cpuinfo,
    parse_os_release,
)

X86_CPUINFO = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model\t\t: 1
model name\t: AMD Ryzen 7 5800X 8-Core Processor
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep hypervisor lahf_lm

processor\t: 1
model name\t: AMD Ryzen 7 5800X 8-Core Processor
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep hypervisor lahf_lm
"""

PI_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08

Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


def test_parse_os_release(fixtures):
    release = parse_os_release((fixtures / "os-release").read_text())
    assert release["PRETTY_NAME"] == "Ubuntu 24.04.1 LTS"
    assert release["ID"] == "ubuntu"
    assert release["VERSION_CODENAME"] == "noble"
    assert parse_os_release("# comment\nNAME='Alpine Linux'\nbroken\n") == {"NAME": "Alpine Linux"}


def test_parse_cpuinfo_x86():
    assert parse_cpuinfo(X86_CPUINFO) == ("AMD Ryzen 7 5800X 8-Core Processor", True)


def test_parse_cpuinfo_raspberry_pi():
    # ARM cpuinfo has no flags line, so it cannot say whether a hypervisor is there.
    assert parse_cpuinfo(PI_CPUINFO) == ("Raspberry Pi 4 Model B Rev 1.4", None)


@pytest.mark.parametrize(
    ("product", "vendor", "expected"),
    [
        ("KVM", "Red Hat", "kvm"),
        ("Standard PC (Q35 + ICH9, 2009)", "QEMU", "qemu"),
        ("VMware Virtual Platform", "VMware, Inc.", "vmware"),
        ("VirtualBox", "innotek GmbH", "oracle"),
        ("Virtual Machine", "Microsoft Corporation", "microsoft"),
    ],
)
def test_virtualization_from_dmi(tmp_path, product, vendor, expected):
    dmi = tmp_path / "class" / "dmi" / "id"
    dmi.mkdir(parents=True)
    (dmi / "product_name").write_text(product + "\n")
    (dmi / "sys_vendor").write_text(vendor + "\n")
    assert detect_virtualization(tmp_path, True, use_systemd=False) == expected


def test_virtualization_from_cpu_flags(tmp_path):
    assert detect_virtualization(tmp_path, True, use_systemd=False) == "vm-other"
    assert detect_virtualization(tmp_path, False, use_systemd=False) == "none"
    assert detect_virtualization(tmp_path, None, use_systemd=False) is None


def test_physical_dmi_is_not_a_vm(tmp_path):
    dmi = tmp_path / "class" / "dmi" / "id"
    dmi.mkdir(parents=True)
    (dmi / "product_name").write_text("ThinkCentre M720q\n")
    (dmi / "sys_vendor").write_text("LENOVO\n")
    assert detect_virtualization(tmp_path, False, use_systemd=False) == "none"


def test_collect_facts_from_a_fixture_tree(fake_host, fixtures):
    fake_host.write("etc/os-release", (fixtures / "os-release").read_text())
    fake_host.write("proc/cpuinfo", PI_CPUINFO)
    fake_host.lxc()
    facts = collect_facts(fake_host.proc, fake_host.sys, fake_host.root, use_systemd_detect=False)
    assert facts["os"] == "Ubuntu 24.04.1 LTS"
    assert facts["os_id"] == "ubuntu"
    assert facts["os_version"] == "24.04"
    assert facts["cpu_model"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert facts["container"] == "lxc"
    assert "virtualization" not in facts  # nothing in the tree says, so nothing is claimed


def test_collect_facts_leaves_out_what_is_missing(fake_host):
    facts = collect_facts(fake_host.proc, fake_host.sys, fake_host.root, use_systemd_detect=False)
    for key in ("os", "os_id", "os_version", "cpu_model", "virtualization", "container"):
        assert key not in facts, key
    assert facts["kernel"] and facts["arch"] and facts["hostname"]
