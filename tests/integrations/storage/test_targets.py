"""Expected targets: the manifest schema, mountinfo, and a real loop device that is found, watched and missed within seconds."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import voluptuous as vol

from roost.integrations.storage.targets import MANIFEST_SCHEMA, BlockIds, Mount, MountWatch, evaluate, parse_mountinfo

from .loopdev import LoopDisk

MOUNTINFO = """\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
25 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
97 22 7:0 / /mnt/usb\\040backup rw,relatime shared:50 - ext4 /dev/loop0 rw
98 22 0:55 / /srv/nfs rw,relatime shared:51 - nfs4 nas.lan:/export/media rw,vers=4.2
"""


def test_manifest_schema_refuses_bad_targets_with_reasons() -> None:
    good = MANIFEST_SCHEMA({"targets": [{"id": "usb-backup", "type": "usb", "durable_id": "LABEL=backup", "role": "backup", "mountpoint": "/mnt/backup/", "min_free_bytes": 10}]})
    assert good["targets"][0]["mountpoint"] == "/mnt/backup" and good["targets"][0]["state"] == "attached"
    for bad, why in (
        ({"targets": [{"id": "A B", "type": "usb", "durable_id": "x"}]}, "id must be lower case"),
        ({"targets": [{"id": "a", "type": "floppy", "durable_id": "x"}]}, "type must be one of"),
        ({"targets": [{"id": "a", "type": "usb", "durable_id": "x", "mountpoint": "relative"}]}, "absolute mount point"),
        ({"targets": [{"id": "a", "type": "usb", "durable_id": "x"}, {"id": "a", "type": "usb", "durable_id": "y"}]}, "used twice"),
        ({"targets": [{"id": "a", "type": "usb", "durable_id": "x", "state": "gone"}]}, "state must be one of"),
    ):
        with pytest.raises(vol.Invalid, match=why):
            MANIFEST_SCHEMA(bad)


def test_mountinfo_is_parsed_with_escapes() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert mounts[2] == Mount(97, "7:0", "/", "/mnt/usb backup", "ext4", "/dev/loop0")
    assert mounts[3].fstype == "nfs4" and mounts[3].source == "nas.lan:/export/media"


class FixedIds(BlockIds):
    def __init__(self, ids: dict[str, dict[str, str]]) -> None:
        super().__init__()
        self.ids = ids

    def of(self, device: str) -> dict[str, str]:
        return self.ids.get(device, {})


def test_evaluate_disk_network_and_states(tmp_path: Path) -> None:
    (tmp_path / "7:0").mkdir()
    mounts = parse_mountinfo(MOUNTINFO)
    ids = FixedIds({"/dev/loop0": {"UUID": "0f5e2c7a-1111-4222-8333-944455556666", "LABEL": "backup"}})
    targets = MANIFEST_SCHEMA({"targets": [
        {"id": "by-label", "type": "usb", "durable_id": "LABEL=backup", "mountpoint": "/mnt/usb backup", "min_free_bytes": 100},
        {"id": "by-uuid", "type": "usb", "durable_id": "0F5E2C7A-1111-4222-8333-944455556666"},
        {"id": "wrong-place", "type": "local-dir", "durable_id": "backup", "mountpoint": "/srv/backup"},
        {"id": "gone", "type": "usb", "durable_id": "LABEL=other"},
        {"id": "offsite", "type": "usb", "durable_id": "LABEL=offsite", "state": "disconnected"},
        {"id": "old", "type": "usb", "durable_id": "LABEL=old", "state": "decommissioned"},
        {"id": "media", "type": "nfs", "durable_id": "nas.lan:/export/media"},
        {"id": "pbs", "type": "pbs", "durable_id": "backup@pbs@pbs.lan:store1"},
    ]})["targets"]
    probed = []
    out = {s["id"]: s for s in evaluate(targets, mounts, ids, sys_dev_block=tmp_path, probe=lambda h, p: probed.append((h, p)) or (None if h == "pbs.lan" else 1.5),
                                        free=lambda p: (50, 1000), network_free=lambda p: (70, 2000))}
    assert out["by-label"]["status"] == "present" and out["by-label"]["free_bytes"] == 50 and out["by-label"]["min_free_bytes"] == 100
    assert out["by-uuid"]["status"] == "present"
    assert out["wrong-place"]["status"] == "mounted_elsewhere" and "not at /srv/backup" in out["wrong-place"]["reason"]
    assert out["gone"]["status"] == "missing"
    assert out["offsite"]["status"] == "away"
    assert out["old"]["status"] == "decommissioned"
    assert out["media"]["status"] == "present" and out["media"]["reachable"] is True and out["media"]["free_bytes"] == 70
    assert out["pbs"]["status"] == "unreachable" and "pbs.lan:8007" in out["pbs"]["reason"]
    assert sorted(probed) == [("nas.lan", 2049), ("pbs.lan", 8007)]
    # A yanked USB disk: still in mountinfo, its block device gone from sysfs.
    (tmp_path / "7:0").rmdir()
    assert {s["id"]: s["status"] for s in evaluate(targets[:1], mounts, ids, sys_dev_block=tmp_path)} == {"by-label": "missing"}


def test_a_real_loop_device_is_found_and_its_detach_is_noticed_within_5_seconds(tmp_path: Path) -> None:
    disk = LoopDisk(tmp_path, label="roost-watch").make()
    try:
        disk.mount()
        ids = BlockIds()
        targets = MANIFEST_SCHEMA({"targets": [{"id": "usb", "type": "usb", "durable_id": f"LABEL={disk.label}", "mountpoint": str(disk.mountpoint)},
                                              {"id": "by-uuid", "type": "usb", "durable_id": disk.uuid}]})["targets"]
        mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
        found = {s["id"]: s for s in evaluate(targets, mounts, ids)}
        assert found["usb"]["status"] == "present" and found["usb"]["device"] == disk.device
        assert found["by-uuid"]["status"] == "present" and found["usb"]["free_bytes"] > 0
        changed = threading.Event()
        watch = MountWatch(lambda: targets, changed.set, ids)
        watch.start()
        try:
            assert watch.last == {"usb": "present", "by-uuid": "present"}, (watch.last, disk.device)
            started = time.monotonic()
            disk.detach()
            assert changed.wait(5), f"the mount watch did not notice the detach within 5 s (events {watch.events}, last {watch.last})"
            assert time.monotonic() - started < 5
            assert watch.last == {"usb": "missing", "by-uuid": "missing"}, watch.last
            changed.clear()
            disk.mount()
            assert changed.wait(5), f"the mount watch did not notice the re-attach within 5 s (events {watch.events}, last {watch.last}, device {disk.device})"
            assert watch.last["usb"] == "present", watch.last
        finally:
            watch.stop()
    finally:
        disk.detach()


def test_the_watch_ignores_mounts_that_are_not_targets(tmp_path: Path) -> None:
    disk = LoopDisk(tmp_path, label="roost-other").make()
    try:
        changed = threading.Event()
        watch = MountWatch(lambda: [{"id": "x", "type": "usb", "durable_id": "LABEL=not-here", "state": "attached"}], changed.set, BlockIds())
        watch.start()
        try:
            events = watch.events
            disk.mount()
            deadline = time.monotonic() + 5
            while watch.events == events and time.monotonic() < deadline:
                time.sleep(0.01)
            assert watch.events > events  # it saw the mount...
            assert not changed.is_set()  # ...and, no listed target having moved, asked for no report
        finally:
            watch.stop()
    finally:
        disk.detach()


def test_a_reformatted_device_under_the_same_name_is_probed_anew(tmp_path: Path) -> None:
    """Another drive (here: a new filesystem on a new loop attachment) under a name seen before is not taken for the old one."""
    import subprocess

    disk = LoopDisk(tmp_path, label="roost-first").make()
    try:
        ids = BlockIds()
        device = disk.device
        assert ids.of(device)["LABEL"] == "roost-first"
        disk.detach()
        other = LoopDisk(tmp_path / "other", label="roost-second")
        other.root.mkdir()
        other.make()
        try:
            if other.device != device:
                subprocess.run(["losetup", "-d", other.device], check=False)
                pytest.skip("the loop driver gave the new image another device name")
            assert ids.of(device)["LABEL"] == "roost-second"
        finally:
            other.detach()
    finally:
        disk.detach()


def test_a_hung_network_mount_is_unreachable_and_never_blocks_the_cycle(tmp_path: Path) -> None:
    import threading as th

    from roost.integrations.storage import targets as t

    release = th.Event()
    calls = []

    def hanging(path):
        calls.append(path)
        release.wait(30)
        return (1, 2)

    original = t._free_bytes
    t._free_bytes = hanging
    try:
        mounts = parse_mountinfo(MOUNTINFO)
        target = MANIFEST_SCHEMA({"targets": [{"id": "media", "type": "nfs", "durable_id": "nas.lan:/export/media"}]})["targets"]
        started = time.monotonic()
        (first,) = evaluate(target, mounts, BlockIds(), probe=lambda h, p: 1.0)
        assert time.monotonic() - started < 5
        assert first["status"] == "unreachable" and "did not return within 2 s" in first["reason"]
        (second,) = evaluate(target, mounts, BlockIds(), probe=lambda h, p: 1.0)
        assert second["status"] == "unreachable" and calls == ["/srv/nfs"]  # no second statvfs piled on the stuck one
    finally:
        release.set()
        t._free_bytes = original


def test_hostile_manifests_are_refused_whole() -> None:
    many = {"targets": [{"id": f"t{i}", "type": "usb", "durable_id": f"LABEL=x{i}"} for i in range(201)]}
    for bad, why in (
        ({"targets": [{"id": "a", "type": "usb", "durable_id": "LABEL=x\nUUID=y"}]}, "expected the filesystem UUID or label"),
        ({"targets": [{"id": "a", "type": "usb", "durable_id": "x" * 301}]}, "expected the filesystem UUID or label"),
        ({"targets": [{"id": "a", "type": "usb", "durable_id": "x", "mountpoint": "/mnt/\0x"}]}, "absolute mount point"),
        ({"targets": [{"id": "a", "type": "usb", "durable_id": "x", "min_free_bytes": -1}]}, "whole number of bytes"),
        ({"targets": [{"id": "a", "type": "usb", "durable_id": "x", "min_free_bytes": True}]}, "whole number of bytes"),
        ({"targets": [{"id": "a", "type": "usb", "durable_id": "x", "extra": 1}]}, "extra keys not allowed"),
        ({"targets": "all"}, "expected a list"),
        ({"targets": [], "mount_everything": True}, "extra keys not allowed"),
        (many, "at most 200 targets"),
    ):
        with pytest.raises(vol.Invalid, match=why):
            MANIFEST_SCHEMA(bad)
    # A mount point is normalised, so /mnt/backup/../../etc is not a way around mount_roots.
    assert MANIFEST_SCHEMA({"targets": [{"id": "a", "type": "usb", "durable_id": "x", "mountpoint": "/mnt/backup/../../etc"}]})["targets"][0]["mountpoint"] == "/etc"
