"""storage.mount: only a USB target the manifest lists, by UUID or label, at its listed mount point inside mount_roots; for real on a loop device."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from roost.core.actions import ActionContext, ActionError, ActionRefused
from roost.integrations.storage import CONFIG_SCHEMA
from roost.integrations.storage.actions import mount_target
from roost.integrations.storage.collector import Collector
from roost.integrations.storage.targets import MANIFEST_SCHEMA, parse_mountinfo

from .loopdev import LoopDisk


def context(tmp_path: Path, manifest: dict, roots: list[str]) -> ActionContext:
    config = CONFIG_SCHEMA({"mount_roots": roots})

    async def progress(message, percent=None):
        return None

    data = {"collector": Collector(config, tmp_path / "data"), "settings": lambda: MANIFEST_SCHEMA(manifest)}
    return ActionContext(domain="storage", job_id="j1", node_id="n1", config=config, data=data, progress=progress)


def mounted_at(path: Path) -> str | None:
    for m in parse_mountinfo(Path("/proc/self/mountinfo").read_text()):
        if m.mountpoint == str(path):
            return m.source
    return None


def test_refusals_name_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "mnt")
    manifest = {"targets": [
        {"id": "nas", "type": "nfs", "durable_id": "nas:/x", "mountpoint": str(tmp_path / "mnt")},
        {"id": "away", "type": "usb", "durable_id": "LABEL=a", "state": "disconnected", "mountpoint": str(tmp_path / "mnt")},
        {"id": "nowhere", "type": "usb", "durable_id": "LABEL=a"},
        {"id": "etc", "type": "usb", "durable_id": "LABEL=a", "mountpoint": "/etc"},
        {"id": "link", "type": "usb", "durable_id": "LABEL=a", "mountpoint": str(tmp_path / "link")},
        {"id": "absent", "type": "usb", "durable_id": "LABEL=roost-no-such-label", "mountpoint": str(tmp_path / "mnt")},
    ]}
    ctx = context(tmp_path, manifest, [str(tmp_path)])
    for target, why in (("unlisted", "not in this node's storage manifest"), ("nas", "only usb targets"), ("away", "is disconnected"),
                        ("nowhere", "has no mount point"), ("etc", "outside this host's mount_roots"), ("link", "symbolic link")):
        with pytest.raises(ActionRefused, match=why):
            mount_target(ctx, {"target": target})
    with pytest.raises(ActionError, match="is the drive plugged in"):
        mount_target(ctx, {"target": "absent"})


def test_a_listed_usb_drive_is_mounted_by_label_nosuid_nodev_noexec(tmp_path: Path) -> None:
    disk = LoopDisk(tmp_path / "disk", label="roost-mount").make()
    where = tmp_path / "mnt" / "backup"
    where.mkdir(parents=True)
    try:
        ctx = context(tmp_path, {"targets": [{"id": "usb", "type": "usb", "durable_id": f"LABEL={disk.label}", "mountpoint": str(where)}]}, [str(tmp_path / "mnt")])
        result = mount_target(ctx, {"target": "usb"})
        assert result["mounted"] is True and result["device"] == disk.device
        assert mounted_at(where) == disk.device
        options = next(line for line in Path("/proc/self/mountinfo").read_text().splitlines() if f" {where} " in line)
        assert "nosuid" in options and "nodev" in options and "noexec" in options
        assert mount_target(ctx, {"target": "usb"})["mounted"] is False  # already there: nothing done twice
    finally:
        os.system(f"umount {where} 2>/dev/null")
        disk.detach()
