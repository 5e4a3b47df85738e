"""ZFS (JSON and text), md arrays (mdstat and sysfs), btrfs sysfs trees and LVM thin pools, from recorded outputs."""

from __future__ import annotations

from pathlib import Path

from roost.integrations.storage import btrfs, lvm, mdraid, zfs

from .conftest import FIXTURES, fixture_text


def test_zpool_json_pools_vdevs_and_scans() -> None:
    pools = {p["name"]: p for p in zfs.parse_status_json(fixture_text("zpool_status.json"))}
    tank, backup = pools["tank"], pools["backup"]
    assert tank["state"] == "ONLINE" and tank["scan"] == {"function": "scrub", "state": "finished", "errors": 0, "started_at": 1733011200.0, "ended_at": 1733014800.0}
    assert [c["name"] for c in tank["vdevs"]["children"][0]["children"]] == ["ata-ST4000VN008_ZA1B2C3D", "ata-ST4000VN008_ZA1B2C3E"]
    assert zfs.vdev_errors(tank["vdevs"]) == 0 and zfs.bad_vdevs(tank["vdevs"]) == []
    assert backup["state"] == "DEGRADED" and backup["scan"]["function"] == "resilver" and backup["scan"]["progress_percent"] == 30.0
    assert zfs.vdev_errors(backup["vdevs"]) == 115
    assert "sdc FAULTED (115 errors)" in zfs.bad_vdevs(backup["vdevs"])
    assert "Replace the faulted device" in backup["action"]


def test_zpool_text_healthy() -> None:
    (pool,) = zfs.parse_status_text(fixture_text("zpool_status_healthy.txt"))
    assert pool["name"] == "tank" and pool["state"] == "ONLINE" and pool["data_errors"] == 0
    assert pool["scan"]["function"] == "scrub" and pool["scan"]["state"] == "finished" and pool["scan"]["errors"] == 0 and pool["scan"]["ended_at"]
    mirror = pool["vdevs"]["children"][0]
    assert mirror["type"] == "mirror" and len(mirror["children"]) == 2
    assert pool["vdevs"]["children"][1]["class"] == "cache"


def test_zpool_text_degraded_resilvering() -> None:
    (pool,) = zfs.parse_status_text(fixture_text("zpool_status_degraded.txt"))
    assert pool["state"] == "DEGRADED"
    assert pool["scan"]["function"] == "resilver" and pool["scan"]["state"] == "scanning" and pool["scan"]["progress_percent"] == 30.0
    assert "label is missing" in pool["status"]
    bad = zfs.bad_vdevs(pool["vdevs"])
    assert "sdc UNAVAIL" in bad and "replacing-1 DEGRADED" in bad
    assert pool["spares"][0]["name"] == "sdf"


def test_zpool_text_faulted() -> None:
    (pool,) = zfs.parse_status_text(fixture_text("zpool_status_faulted.txt"))
    assert pool["state"] == "FAULTED" and pool["scan"] is None
    assert pool["vdevs"]["children"][0]["state"] == "UNAVAIL"


def test_zpool_text_scrub_with_errors() -> None:
    (pool,) = zfs.parse_status_text(fixture_text("zpool_status_scrub_errors.txt"))
    assert pool["scan"]["errors"] == 3 and pool["data_errors"] == 3
    assert zfs.vdev_errors(pool["vdevs"]) == 1206


def test_zpool_list_and_kstat(tmp_path: Path) -> None:
    listing = zfs.parse_list(fixture_text("zpool_list.txt"))
    assert listing["tank"]["capacity_percent"] == 49 and listing["backup"]["fragmentation_percent"] == 31
    (tmp_path / "arcstats").write_text(fixture_text("arcstats.txt"))
    (tmp_path / "tank").mkdir()
    (tmp_path / "tank" / "state").write_text("ONLINE\n")
    assert zfs.read_arcstats(tmp_path) == {"arc_size_bytes": 4294967296.0, "arc_max_bytes": 8589934592.0, "arc_hit_percent": 90.0}
    assert zfs.kstat_pool_states(tmp_path) == {"tank": "ONLINE"}
    # No zpool command, but the kstats are there: pools still show.
    out = zfs.collect("/nonexistent/zpool", tmp_path, 5)
    assert out["source"] == "kstat" and out["pools"][0]["name"] == "tank"
    assert zfs.collect("/nonexistent/zpool", tmp_path / "none", 5) is None


def test_mdstat_clean() -> None:
    (md0,) = mdraid.parse_mdstat(fixture_text("mdstat_clean.txt"))
    assert md0["level"] == "raid1" and md0["member_status"] == "UU" and md0["degraded_disks"] == 0
    assert [m["device"] for m in md0["members"]] == ["sdb1", "sda1"]
    assert mdraid.problems(md0) == []


def test_mdstat_degraded() -> None:
    (md1,) = mdraid.parse_mdstat(fixture_text("mdstat_degraded.txt"))
    assert md1["degraded_disks"] == 1 and md1["member_status"] == "_UU"
    assert [m["device"] for m in md1["members"] if m["failed"]] == ["sde1"]
    ((severity, text),) = mdraid.problems(md1)
    assert severity == "critical" and "1 of 3 disks missing (failed: sde1)" in text


def test_mdstat_resync_and_pending() -> None:
    md2, md3 = mdraid.parse_mdstat(fixture_text("mdstat_resync.txt"))
    assert md2["sync_action"] == "resync" and md2["sync_percent"] == 27.3 and md2["sync_finish_minutes"] == 58.9
    assert md3["mode"] == "auto-read-only" and md3["sync_pending"] is True


def test_mdstat_recovering_and_sysfs(tmp_path: Path) -> None:
    (md4,) = mdraid.parse_mdstat(fixture_text("mdstat_recovering.txt"))
    assert md4["level"] == "raid6" and md4["degraded_disks"] == 1 and md4["sync_action"] == "recovery" and md4["sync_percent"] == 8.5
    md = tmp_path / "md4" / "md"
    md.mkdir(parents=True)
    for name, value in {"array_state": "clean", "degraded": "1", "sync_action": "recover", "sync_completed": "332425472 / 3906764800", "mismatch_cnt": "0", "level": "raid6", "raid_disks": "5"}.items():
        (md / name).write_text(value + "\n")
    mdstat = tmp_path / "mdstat"
    mdstat.write_text(fixture_text("mdstat_recovering.txt"))
    (array,) = mdraid.collect(mdstat, tmp_path)
    assert array["array_state"] == "clean" and array["mismatch_count"] == 0 and array["sync_percent"] == 8.5
    assert mdraid.problems(array) == [("critical", "md4 is degraded: 1 of 5 disks missing; recovery at 8.5 %")]
    assert mdraid.collect(tmp_path / "no-mdstat", tmp_path) is None


def _btrfs_tree(root: Path, uuid: str, label: str, devices: dict[int, dict]) -> None:
    fs = root / uuid
    (fs / "devices").mkdir(parents=True)
    (fs / "label").write_text(label + "\n")
    for devid, info in devices.items():
        d = fs / "devinfo" / str(devid)
        d.mkdir(parents=True)
        (d / "missing").write_text(("1" if info.get("missing") else "0") + "\n")
        errors = info.get("errors", {})
        (d / "error_stats").write_text("".join(f"{k} {errors.get(k, 0)}\n" for k in ("write_errs", "read_errs", "flush_errs", "corruption_errs", "generation_errs")))
    for kind, (total, used) in {"data": (1073741824, 536870912), "metadata": (268435456, 1048576), "system": (8388608, 16384)}.items():
        a = fs / "allocation" / kind
        a.mkdir(parents=True)
        (a / "total_bytes").write_text(f"{total}\n")
        (a / "bytes_used").write_text(f"{used}\n")


def test_btrfs_sysfs(tmp_path: Path) -> None:
    _btrfs_tree(tmp_path, "0d1e2f30-1111-2222-3333-444455556666", "pool", {1: {}, 2: {"errors": {"corruption_errs": 3}}})
    _btrfs_tree(tmp_path, "aaaaaaaa-1111-2222-3333-444455556666", "", {1: {}, 2: {"missing": True}})
    (tmp_path / "features").mkdir()
    healthy, broken = btrfs.collect(tmp_path)
    assert healthy["label"] == "pool" and healthy["allocation"]["data"]["bytes_used"] == 536870912
    assert btrfs.problems(healthy) == [("warning", "btrfs pool device 2 has 3 errors (corruption_errs 3)")]
    assert btrfs.problems(broken) == [("critical", "btrfs aaaaaaaa-1111-2222-3333-444455556666 is missing device(s) 2")]
    assert btrfs.collect(tmp_path / "nothing") is None


def test_lvm_thin_pools() -> None:
    pools = lvm.parse_lvs(fixture_text("lvs_thin.json"))
    assert [p["name"] for p in pools] == ["pve/data", "fast/pool"]
    assert pools[0]["data_percent"] == 93.41 and pools[0]["size_bytes"] == 1887436800000
    assert lvm.problems(pools[0]) == [("warning", "thin pool pve/data data is 93.41 % full")]
    assert lvm.problems(pools[1]) == [("warning", "thin pool fast/pool metadata is 85.5 % full")]


def test_real_lvs_runs(tmp_path: Path) -> None:
    """The real lvs (Debian lvm2) on this host: a report or a clear error, never an exception."""
    import shutil

    from support import need

    need(shutil.which("lvs") is not None, "lvs (Debian lvm2)")
    out = lvm.collect("lvs", 20)
    assert out is not None and isinstance(out["thin_pools"], list)
