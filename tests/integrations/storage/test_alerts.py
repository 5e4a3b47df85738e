"""The storage alert rule kinds' handlers, each on node states built from the recorded outputs."""

from __future__ import annotations

from roost.integrations.storage import alerts, mdraid, smart, zfs
from roost.integrations.storage.alerts import rule_kinds

from .conftest import fixture_json, fixture_text

NOW = 1733300000.0


def device(name: str, baseline: dict | None = None) -> dict:
    doc = fixture_json(name)
    dev = smart.parse_device(doc, doc["smartctl"]["exit_status"])
    base = baseline if baseline is not None else dev["counters"]
    dev["verdict"], dev["reasons"] = smart.judge(dev, base)
    return dev


def node(**storage) -> dict:
    return {"node": {"id": "n1", "name": "nas"}, "state": {"storage": storage}, "collected_at": NOW, "metrics": {}}


def kinds(acks=None):
    return {k.name: k for k in rule_kinds(lambda node_id: (acks or {}).get(node_id, {}))}


def test_every_kind_is_declared_with_its_schema() -> None:
    names = set(kinds())
    assert names == {"storage.device_health", "storage.attribute_increased", "storage.pool_degraded", "storage.scrub_errors", "storage.scrub_overdue", "storage.array_degraded", "storage.target_missing", "storage.target_low_free"}
    for kind in kinds().values():
        kind.check("storage")


def test_device_health_names_each_disk_and_its_severity() -> None:
    k = kinds()["storage.device_health"]
    healthy, failing = device("smart_ata_healthy.json"), device("smart_ata_failing.json")
    grown = device("smart_ata_grown.json", baseline={"reallocated_sectors": 0, "pending_sectors": 0})
    grown["key"] = "wwn-0x5000c500a1b2c3ff"
    found = k.handler(k.schema({}), node(smart={"devices": [healthy, failing, grown]}))
    by_device = {f.labels["device"]: f for f in found}
    assert set(by_device) == {failing["key"], grown["key"]}
    assert by_device[failing["key"]].severity == "critical" and "is failing" in by_device[failing["key"]].summary
    assert by_device[grown["key"]].severity == "warning" and "rose from 0 to 8" in by_device[grown["key"]].summary
    only_failing = k.handler(k.schema({"min_verdict": "failing"}), node(smart={"devices": [failing, grown]}))
    assert [f.labels["device"] for f in only_failing] == [failing["key"]]
    assert k.handler(k.schema({}), node()) == []


def test_an_acknowledged_counter_stays_quiet_until_it_changes() -> None:
    grown = device("smart_ata_grown.json", baseline={"reallocated_sectors": 0, "pending_sectors": 0})
    key = grown["key"]
    acks = {"n1": {key: {"reallocated_sectors": 8, "pending_sectors": 2}}}
    for name in ("storage.device_health", "storage.attribute_increased"):
        k = kinds(acks)[name]
        assert k.handler(k.schema({}), node(smart={"devices": [grown]})) == []
    # One more reallocated sector: the acknowledgement no longer covers it.
    for reason in grown["reasons"]:
        if reason["attribute"] == "reallocated_sectors":
            reason["value"] = 9
    k = kinds(acks)["storage.attribute_increased"]
    (finding,) = k.handler(k.schema({}), node(smart={"devices": [grown]}))
    assert finding.labels == {"device": key, "attribute": "reallocated_sectors"} and finding.value == 9
    k = kinds()["storage.attribute_increased"]
    assert {f.labels["attribute"] for f in k.handler(k.schema({"attributes": ["pending_sectors"]}), node(smart={"devices": [grown]}))} == {"pending_sectors"}


def test_pool_degraded_faulted_and_btrfs_missing() -> None:
    k = kinds()["storage.pool_degraded"]
    pools = zfs.parse_status_text(fixture_text("zpool_status_degraded.txt")) + zfs.parse_status_text(fixture_text("zpool_status_faulted.txt")) + zfs.parse_status_text(fixture_text("zpool_status_healthy.txt"))
    btrfs_fs = [{"uuid": "u1", "label": "bulk", "devices": [{"devid": 1, "missing": False}, {"devid": 2, "missing": True}]}]
    found = {f.labels["pool"]: f for f in k.handler({}, node(zfs={"pools": pools}, btrfs=btrfs_fs))}
    assert set(found) == {"backup", "scratch", "bulk"}
    assert found["backup"].severity == "warning" and "sdc UNAVAIL" in found["backup"].summary
    assert found["scratch"].severity == "critical"
    assert found["bulk"].severity == "critical" and "missing device(s) 2" in found["bulk"].summary


def test_scrub_errors_and_overdue() -> None:
    errors = zfs.parse_status_text(fixture_text("zpool_status_scrub_errors.txt"))
    healthy = zfs.parse_status_text(fixture_text("zpool_status_healthy.txt"))
    k = kinds()["storage.scrub_errors"]
    (f,) = k.handler({}, node(zfs={"pools": errors + healthy}))
    assert f.labels == {"pool": "media"} and "found 3 errors" in f.summary
    k = kinds()["storage.scrub_overdue"]
    recent = [dict(healthy[0], scan={"function": "scrub", "state": "finished", "errors": 0, "ended_at": NOW - 3 * 86400})]
    old = [dict(healthy[0], name="cold", scan={"function": "scrub", "state": "finished", "errors": 0, "ended_at": NOW - 60 * 86400})]
    never = [dict(healthy[0], name="new", scan=None)]
    found = {f.labels["pool"]: f for f in k.handler(k.schema({}), node(zfs={"pools": recent + old + never}))}
    assert set(found) == {"cold", "new"} and "60 days ago" in found["cold"].summary and found["cold"].value == 60.0
    assert k.handler(k.schema({"max_age_days": 90}), node(zfs={"pools": old})) == []


def test_array_degraded() -> None:
    k = kinds()["storage.array_degraded"]
    arrays = mdraid.parse_mdstat(fixture_text("mdstat_degraded.txt")) + mdraid.parse_mdstat(fixture_text("mdstat_clean.txt"))
    (f,) = k.handler({}, node(mdraid=arrays))
    assert f.labels == {"array": "md1"} and f.severity == "critical" and f.value == 1.0


def test_target_missing_and_low_free() -> None:
    targets = [
        {"id": "usb", "state": "attached", "status": "missing", "durable_id": "LABEL=b", "reason": "no mounted filesystem with that UUID or label"},
        {"id": "ok", "state": "attached", "status": "present", "durable_id": "LABEL=c", "free_bytes": 10, "min_free_bytes": 100},
        {"id": "away", "state": "disconnected", "status": "away", "durable_id": "LABEL=d"},
        {"id": "there", "state": "attached", "status": "mounted_elsewhere", "durable_id": "LABEL=e"},
    ]
    k = kinds()["storage.target_missing"]
    assert {f.labels["target"] for f in k.handler(k.schema({}), node(targets=targets))} == {"usb", "there"}
    assert {f.labels["target"] for f in k.handler(k.schema({"include_elsewhere": False}), node(targets=targets))} == {"usb"}
    k = kinds()["storage.target_low_free"]
    (f,) = k.handler(k.schema({}), node(targets=targets))
    assert f.labels == {"target": "ok"} and f.value == 10.0
    assert k.handler(k.schema({"min_free_bytes": 5}), node(targets=targets)) == []


def test_handlers_survive_hostile_state() -> None:
    for kind in kinds().values():
        settings = kind.schema({})
        for storage in ({"smart": "x", "zfs": [1], "mdraid": {"a": 1}, "targets": "nope"}, {"smart": {"devices": [1, None, {"reasons": "x"}]}, "zfs": {"pools": [{"scan": 5, "vdevs": "x"}]}}):
            kind.handler(settings, node(**storage))
            kind.handler(settings, {"node": None, "state": None})
    assert alerts.DAY == 86400.0
