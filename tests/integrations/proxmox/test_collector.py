"""The proxmox collector through the real proxmoxer against fakepve: the snapshot, backups, and the cluster misbehaving."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from roost.integrations.proxmox import collector as col
from roost.integrations.proxmox.client import settings_from_config
from roost.integrations.proxmox.collector import Collector
from roost.integrations.proxmox.errors import ProxmoxApiError

TOKEN_ID = "roost@pve!monitor"  # the fixture's token (conftest)
DAY = 86400
FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def make_collector(config: dict[str, Any], **overrides: Any) -> Collector:
    cfg = {**config, **overrides}
    collector = Collector(cfg, settings_from_config(cfg))
    collector.start()
    return collector


def snapshot(config: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    collector = make_collector(config, **overrides)
    try:
        out = collector.collect()
    finally:
        collector.close()
    text = json.dumps(out, allow_nan=False)  # what the kernel will send must be plain JSON
    assert '"_' not in text
    return out


def by_vmid(state: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {g["vmid"]: g for g in state["guests"]}


def by_name(items: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    return {i[key]: i for i in items}


def problems_text(state: dict[str, Any]) -> str:
    return "\n".join(p["message"] for p in state["problems"])


# ------------------------------------------------------------------ snapshot


def test_snapshot_of_a_healthy_cluster(pve, config):
    out = snapshot(config)
    state, metrics = out["state"], out["metrics"]
    assert state["cluster"] == {
        "standalone": False, "name": "homelab", "quorate": True, "nodes_expected": 2,
        "nodes_total": 2, "nodes_online": 2, "version": pve.version,
    }
    assert state["problems"] == [] and state["partial"] is False
    assert state["api"]["token_id"] == TOKEN_ID and state["api"]["host"] == "127.0.0.1"

    nodes = by_name(state["nodes"])
    assert list(nodes) == ["pve1", "pve2"]  # the local node first
    pve1 = nodes["pve1"]
    assert pve1["status"] == "online" and pve1["local"] is True
    # From the recorded node status: versions, load as numbers, root fs, CPU model.
    assert pve1["pve_version"] == "8.3.0"
    assert pve1["kernel"] == "6.8.12-4-pve"
    assert pve1["load"] == [0.52, 0.61, 0.58]
    assert pve1["rootfs_total_bytes"] == 100861726720 and pve1["rootfs_percent"] == 16.9
    assert pve1["cpu_model"] == "AMD Ryzen 7 5700G with Radeon Graphics"
    # CPU and memory from /cluster/resources.
    assert pve1["cpu_percent"] == 2.0 and pve1["mem_percent"] == 25.0 and pve1["uptime_s"] == 3600

    guests = by_vmid(state)
    assert sorted(guests) == [100, 101, 102, 200, 9000]
    web = guests[100]
    assert web["type"] == "qemu" and web["node"] == "pve1" and web["status"] == "running" and web["name"] == "web"
    assert web["tags"] == ["prod", "web"]
    assert web["cpu_percent"] == 15.3 and web["cpu_count"] == 2
    assert web["mem_used_bytes"] == 1_610_612_736 and web["mem_total_bytes"] == 4 * 1024**3 and web["mem_percent"] == 37.5
    assert web["disk_total_bytes"] == 32 * 1024**3
    assert "disk_used_bytes" not in web  # PVE cannot see inside a VM's disk: left out, not faked as 0
    assert web["net_in_bytes"] == 5_000_000 and 3 * DAY - 60 <= web["uptime_s"] <= 3 * DAY + 60
    assert guests[102]["ha_state"] == "started"
    assert guests[200]["type"] == "lxc" and "disk_used_bytes" in guests[200]
    stopped = guests[101]
    assert stopped["status"] == "stopped" and "cpu_percent" not in stopped and "uptime_s" not in stopped
    assert guests[9000]["template"] is True

    storages = by_name(state["storages"], "id")
    assert set(storages) == {"nas", "pve1/local", "pve1/local-lvm", "pve2/local", "pve2/local-lvm"}
    nas = storages["nas"]
    assert nas["shared"] is True and nas["node"] is None and nas["type"] == "nfs" and nas["content"] == ["backup", "iso"]
    assert nas["active"] is True and nas["total_bytes"] == 4 * 1024**4 and nas["used_bytes"] == 3_820_000_000

    assert metrics["cluster_quorate"] == 1.0 and metrics["nodes_online"] == 2.0
    assert metrics["guests_total"] == 4.0 and metrics["guests_running"] == 3.0  # the template is not a guest here
    assert metrics["cpu_percent[pve1]"] == 2.0 and metrics["load_1[pve1]"] == 0.52
    assert metrics["rootfs_used_percent[pve1]"] == 16.9
    assert metrics["guest_cpu_percent[100]"] == 15.3 and metrics["guest_mem_used_bytes[100]"] == 1_610_612_736
    assert "guest_cpu_percent[101]" not in metrics and "guest_cpu_percent[9000]" not in metrics
    assert metrics["storage_used_percent[nas]"] == pytest.approx(0.1)
    assert "storage_used_percent[pve1/local-lvm]" in metrics


def test_backup_status_per_guest(pve, config):
    state = snapshot(config)["state"]
    guests = by_vmid(state)
    web, db, build, dns, template = (guests[i]["backup"] for i in (100, 101, 102, 200, 9000))
    # The newest backup volume on any storage counts, shared or local.
    assert web["source"] == "storage nas" and web["age_days"] == pytest.approx(2.0, abs=0.1)
    assert web["overdue"] is False and "warning" not in web
    assert dns["source"] == "storage pve1/local" and dns["overdue"] is True
    assert dns["warning"] == "no successful backup in 10 days"
    assert db["overdue"] is True and db["warning"] == "no successful backup found" and "last_ok_at" not in db
    assert db["in_job"] is False and web["in_job"] is True  # the recorded jobs cover 100 and 200
    assert template["excluded"] is True and template["overdue"] is False
    assert build["overdue"] is True
    backups = state["backups"]
    assert backups["overdue"] == 3 and backups["warn_days"] == 7.0
    jobs = by_name(backups["jobs"], "id")
    assert jobs["backup-6f2b1c9a-8e11"] == {
        "id": "backup-6f2b1c9a-8e11", "enabled": True, "schedule": "02:00", "storage": "local", "mode": "snapshot",
        "compress": "zstd", "vmids": [100, 200], "next_run_at": 1732150800,
    }
    assert jobs["backup-weekly-nas"]["enabled"] is False and jobs["backup-weekly-nas"]["all"] is True
    assert jobs["backup-weekly-nas"]["exclude"] == [9000]


def test_backup_warning_threshold_and_exclusions_follow_the_config(pve, config):
    state = snapshot(config, backup_warn_days=30, backup_exclude=[101, 102])["state"]
    guests = by_vmid(state)
    assert guests[200]["backup"]["overdue"] is False  # 10 days < 30
    assert guests[101]["backup"]["excluded"] is True and guests[101]["backup"]["overdue"] is False
    assert state["backups"]["overdue"] == 0


def test_vzdump_tasks_count_as_backups_and_a_failed_one_is_shown(pve, config):
    # A failed vzdump of 101 (the storage ran full) and a good one of 102 in the node's task history.
    async def failing():
        raise pve.TaskError("vzdump: backup of VM 101 failed - No space left on device")

    async def fine():
        return "INFO: Backup job finished successfully"

    pve.served.run(pve.task("pve1", "vzdump", 101, TOKEN_ID, failing))
    pve.served.run(pve.task("pve2", "vzdump", 102, TOKEN_ID, fine))
    state = snapshot(config)["state"]
    guests = by_vmid(state)
    db = guests[101]["backup"]
    assert db["last_task"]["state"] == "error"
    assert "No space left on device" in db["last_task"]["exit_status"]
    assert db["overdue"] is True
    build = guests[102]["backup"]
    assert build["source"] == "vzdump task" and build["overdue"] is False
    assert build["last_task"]["state"] == "ok"
    recent = state["backups"]["tasks"]
    assert {(t["id"], t["state"]) for t in recent} == {("101", "error"), ("102", "ok")}
    assert all("duration_s" in t for t in recent)
    # The node task lists show them too, newest first.
    assert [t["type"] for t in state["tasks"]] == ["vzdump", "vzdump"]


async def test_recent_tasks_have_status_and_duration(pve, config, run_action):
    await run_action("proxmox.guest.stop", {"vmid": 100})
    state = snapshot(config)["state"]
    task = state["tasks"][0]
    assert task["type"] == "qmstop" and task["id"] == "100" and task["node"] == "pve1" and task["state"] == "ok"
    assert task["exit_status"] == "OK" and task["duration_s"] >= 0 and task["user"] == TOKEN_ID
    assert by_vmid(state)[100]["status"] == "stopped"


def test_node_filter_keeps_only_the_named_nodes(pve, config):
    state = snapshot(config, nodes=["pve2"])["state"]
    assert [n["name"] for n in state["nodes"]] == ["pve2"]
    assert [g["vmid"] for g in state["guests"]] == [102]
    assert {s["id"] for s in state["storages"]} == {"nas", "pve2/local", "pve2/local-lvm"}
    assert state["node_filter"] == ["pve2"]


def test_network_and_disk_rates_come_from_counters_between_cycles(pve, config):
    collector = make_collector(config)
    try:
        first = collector.collect()
        assert "guest_net_in_bytes_per_s[100]" not in first["metrics"]  # no earlier reading yet
        web = pve.vm(100)
        collector._counters[100].at -= 10  # as if the last reading were 10 s ago
        last = collector._counters[100].at
        web.stats.update(netin=5_000_000 + 1_000_000, diskwrite=3_000_000 + 500_000)
        before = time.time()
        second = collector.collect()
        after = time.time()
    finally:
        collector.close()
    assert '"_' not in json.dumps(second["state"])  # no private working keys, with or without a backup refresh
    metrics = second["metrics"]

    def rate_over_the_reading(delta: int) -> tuple[float, float]:
        # The second reading was taken some time between `before` and `after` (longer on a busy host).
        return delta / (after - last) - 0.1, delta / (before - last) + 0.1

    low, high = rate_over_the_reading(1_000_000)
    assert low <= metrics["guest_net_in_bytes_per_s[100]"] <= high and high < 100_001
    low, high = rate_over_the_reading(500_000)
    assert low <= metrics["guest_disk_write_bytes_per_s[100]"] <= high
    assert metrics["guest_net_out_bytes_per_s[100]"] == 0.0
    assert by_vmid(second["state"])[100]["net_in_bytes_per_s"] == metrics["guest_net_in_bytes_per_s[100]"]


def test_a_token_that_may_not_read_the_cluster_status_still_reads_the_rest(pve, config):
    pve.fail("GET", "/cluster/status", 403, "Permission check failed (/, Sys.Audit)", times=1)
    state = snapshot(config)["state"]
    assert "quorate" not in state["cluster"] and len(state["guests"]) == 5
    assert "lacks Sys.Audit on /" in problems_text(state)


def test_a_standalone_node_has_no_quorum_to_lose():
    # What /cluster/status says on a node that is not in a cluster: only the node itself.
    cluster, members = col.parse_cluster_status([{"type": "node", "id": "node/pve", "name": "pve", "nodeid": 0, "online": 1, "local": 1, "ip": "192.0.2.5", "level": ""}])
    assert cluster == {"standalone": True}
    assert members == {"pve": {"online": True, "ip": "192.0.2.5", "local": True, "nodeid": 0}}


# ------------------------------------------------------------------- faults


def test_lost_quorum_is_state_not_a_crash(pve, config):
    pve.lose_quorum()
    out = snapshot(config)
    state = out["state"]
    assert state["cluster"]["quorate"] is False
    assert out["metrics"]["cluster_quorate"] == 0.0
    bad = [p for p in state["problems"] if p["scope"] == "cluster"]
    assert bad and bad[0]["severity"] == "bad" and "lost quorum" in bad[0]["message"]
    assert len(state["guests"]) == 5  # reads still work


def test_an_offline_node_is_shown_offline_with_its_guests_unknown(pve, config):
    pve.set_node_offline("pve2")
    out = snapshot(config)
    state = out["state"]
    nodes = by_name(state["nodes"])
    assert nodes["pve2"]["status"] == "offline" and "cpu_percent" not in nodes["pve2"]
    assert nodes["pve1"]["status"] == "online" and nodes["pve1"]["pve_version"] == "8.3.0"
    assert by_vmid(state)[102]["status"] == "unknown"
    assert out["metrics"]["nodes_online"] == 1.0 and "cpu_percent[pve2]" not in out["metrics"]
    assert "node pve2 is offline" in problems_text(state)
    assert all(s["node"] != "pve2" or s["active"] is False for s in state["storages"])
    # No request went to the offline node.
    assert not [p for _, p, _ in pve.requests if "/nodes/pve2/" in p]


def test_a_node_that_stops_answering_is_marked_unreachable(pve, config):
    pve.fail("GET", "/nodes/pve2/status", 595, "No route to host")
    state = snapshot(config)["state"]
    nodes = by_name(state["nodes"])
    assert nodes["pve2"]["status"] == "unreachable"
    assert by_vmid(state)[102]["status"] == "unknown"
    message = next(p["message"] for p in state["problems"] if p["scope"] == "node pve2")
    assert "node pve2 is unreachable" in message and "595" in message


def test_a_slow_api_ends_the_collection_on_time_with_a_partial_snapshot(pve, config):
    pve.time_scale = 1.0
    pve.slow_network(0.5, node="pve2")  # each request about pve2 takes 0.5 s; api_timeout 0.4 s
    started = time.monotonic()
    state = snapshot(config, api_timeout=0.4)["state"]
    elapsed = time.monotonic() - started
    assert elapsed < 0.4 * 2 + 1.0, elapsed
    nodes = by_name(state["nodes"])
    assert nodes["pve1"]["pve_version"] == "8.3.0"
    assert nodes["pve2"]["status"] == "unreachable"
    # Each request may wait api_timeout at most, or less when the cycle's deadline is nearer (a busy host gets there sooner).
    waited = re.search(r"did not answer within ([0-9.]+) s while trying to read the status of node pve2", problems_text(state))
    assert waited and 0 < float(waited.group(1)) <= 0.4, problems_text(state)


def test_a_uniformly_slow_api_yields_what_it_read_before_the_deadline(pve, config):
    pve.time_scale = 1.0
    pve.slow_network(0.12)
    collector = make_collector(config, api_timeout=0.5)  # deadline 1 s: cluster reads, then part of the nodes
    try:
        started = time.monotonic()
        state = collector.collect()["state"]
        elapsed = time.monotonic() - started
    finally:
        collector.close()
    assert elapsed < 1.0 + 0.5, elapsed
    assert state["partial"] is True
    assert any(p["kind"] == "deadline" and "answered too slowly" in p["message"] for p in state["problems"])
    assert len(state["guests"]) == 5  # the essentials came first


def test_an_api_that_does_not_answer_fails_the_collection_with_a_clear_message(pve, config):
    pve.time_scale = 1.0
    pve.slow_network(1.0)
    collector = Collector({**config, "api_timeout": 0.3}, settings_from_config({**config, "api_timeout": 0.3}))
    started = time.monotonic()
    with pytest.raises(ProxmoxApiError) as err:
        collector.collect()
    assert time.monotonic() - started < 1.0
    assert err.value.kind == "timeout"
    assert f"127.0.0.1:{pve.port} did not answer within 0.3 s" in str(err.value)


def test_a_flaky_network_is_reported_not_raised_once_the_essentials_arrived(pve, config):
    collector = make_collector(config)
    try:
        pve.fail("GET", "/nodes/pve1/tasks", 500, "got timeout", times=1)
        state = collector.collect()["state"]
    finally:
        collector.close()
    assert "cannot read the tasks of node pve1" in problems_text(state)
    assert by_name(state["nodes"])["pve1"]["status"] == "online"


def test_dropped_connections_say_the_api_cannot_be_reached(pve, config):
    collector = make_collector(config)
    try:
        pve.flaky_network(drop_rate=1.0)
        with pytest.raises(ProxmoxApiError) as err:
            collector.collect()
    finally:
        collector.close()
    assert err.value.kind == "unreachable"
    assert f"cannot reach 127.0.0.1:{pve.port} to read the cluster status" in str(err.value)


def test_an_expired_token_gives_a_message_that_says_what_to_do(pve, config):
    del pve.apitokens[TOKEN_ID]
    collector = Collector(config, settings_from_config(config))
    with pytest.raises(ProxmoxApiError) as err:
        collector.start()
    message = str(err.value)
    assert err.value.kind == "auth"
    assert "refused the API token roost@pve!monitor (401 authentication failure)" in message
    assert "expired" in message and "Datacenter → Permissions → API Tokens" in message


def test_a_missing_privilege_is_named_with_where_to_grant_it(pve, config):
    # The token may see nodes, tasks and backup jobs, but not guests or storage.
    pve.grant(TOKEN_ID, "/", "Sys.Audit")
    state = snapshot(config)["state"]
    assert state["guests"] == []  # PVE hides what the token may not audit
    text = problems_text(state)
    assert "lacks VM.Audit on /vms, so Roost cannot read guests" in text
    assert "lacks Datastore.Audit on /storage" in text
    assert "PVEAuditor" in text
    assert "Sys.Audit" not in text


def test_a_403_names_the_privilege_from_proxmox(pve, config):
    pve.grant(TOKEN_ID, "/vms", "VM.Audit")
    pve.grant(TOKEN_ID, "/storage", "Datastore.Audit")
    state = snapshot(config)["state"]
    node_problems = [p for p in state["problems"] if p["scope"] == "node pve1"]
    assert node_problems and node_problems[0]["kind"] == "permission"
    assert "lacks Sys.Audit on /nodes/pve1" in node_problems[0]["message"]
    assert "PVEAuditor" in node_problems[0]["message"]


def test_an_unverifiable_certificate_says_to_set_ca_file(pve, config):
    cfg = {k: v for k, v in config.items() if k != "ca_file"}
    with pytest.raises(ProxmoxApiError) as err:
        Collector(cfg, settings_from_config(cfg)).start()
    assert err.value.kind == "tls" and "set ca_file" in str(err.value)


def test_nothing_listening_is_unreachable(config):
    from support import free_port

    cfg = {**config, "port": free_port()}
    with pytest.raises(ProxmoxApiError) as err:
        Collector(cfg, settings_from_config(cfg)).start()
    assert err.value.kind == "unreachable"
    assert "Connection refused" in str(err.value) and "object at 0x" not in str(err.value)


def test_a_second_host_takes_over_when_the_first_is_down(pve, config):
    # Two addresses of one cluster; nothing listens on the first (127.0.0.2 is loopback too, the fake is not there).
    cfg = {**config, "host": ["127.0.0.2", "127.0.0.1"]}
    collector = Collector(cfg, settings_from_config(cfg))
    try:
        collector.start()
        state = collector.collect()["state"]
    finally:
        collector.close()
    assert state["api"]["host"] == "127.0.0.1" and len(state["guests"]) == 5


# ------------------------------------------------------------ recorded shapes


def test_node_status_parser_reads_the_recorded_response():
    parsed = col.parse_node_status(load("node_status.json")["data"])
    assert parsed == {
        "cpu_percent": 4.2,
        "iowait_percent": 0.1,
        "load": [0.52, 0.61, 0.58],
        "mem_total_bytes": 67107545088,
        "mem_used_bytes": 20888879104,
        "mem_percent": 31.1,
        "mem_available_bytes": 46218665984,
        "swap_total_bytes": 8589930496,
        "swap_used_bytes": 0,
        "swap_percent": 0.0,
        "rootfs_total_bytes": 100861726720,
        "rootfs_used_bytes": 17069228032,
        "rootfs_percent": 16.9,
        "rootfs_available_bytes": 78424252416,
        "uptime_s": 1814522,
        "pve_version": "8.3.0",
        "kernel": "6.8.12-4-pve",
        "cpu_model": "AMD Ryzen 7 5700G with Radeon Graphics",
        "cpu_count": 16,
        "cpu_sockets": 1,
        "boot_mode": "efi",
    }


def test_node_status_parser_leaves_out_what_an_api_could_not_read():
    # fakepve's placeholder answer: zero totals and text where numbers belong.
    parsed = col.parse_node_status({"cpu": 0, "loadavg": ["fake"], "memory": {"total": 0, "used": 0}, "pveversion": "fake", "rootfs": {}, "uptime": 5})
    assert parsed == {"cpu_percent": 0.0, "uptime_s": 5, "pve_version": "fake"}
    assert col.parse_node_status(None) == {}
    assert col.parse_node_status({"loadavg": [1, None, "x"], "memory": {"total": "n/a"}}) == {}


def test_task_states():
    assert col.task_state({"status": "running"}) == ("running", None)
    assert col.task_state({"status": "stopped", "exitstatus": "OK"}) == ("ok", "OK")
    assert col.task_state({"status": "stopped", "exitstatus": "WARNINGS: 2"}) == ("warning", "WARNINGS: 2")
    assert col.task_state({"status": "stopped", "exitstatus": "unexpected status"}) == ("error", "unexpected status")
    # The task list puts the exit status in `status` and has an endtime.
    assert col.task_state({"status": "OK", "endtime": 5}) == ("ok", "OK")
    assert col.task_state({"status": "job errors", "endtime": 5}) == ("error", "job errors")
    assert col.task_state({"starttime": 5}) == ("running", None)


def test_backup_volumes_from_names_when_vmid_is_missing():
    items = [
        {"volid": "nas:backup/vzdump-qemu-100-2024_11_18-02_00_02.vma.zst", "ctime": 100, "content": "backup"},
        {"volid": "pbs:backup/ct/200/2024-11-18T02:00:02Z", "ctime": 300, "content": "backup"},
        {"volid": "nas:backup/vzdump-qemu-100-2024_11_19-02_00_02.vma.zst", "ctime": 200, "content": "backup", "vmid": 100},
        {"volid": "nas:iso/debian.iso", "ctime": 400, "content": "iso"},
        {"volid": "nas:backup/odd-name.tar", "ctime": 500, "content": "backup"},
    ]
    assert col.parse_backup_volumes(items) == {100: 200.0, 200: 300.0}


def test_tags_split_like_proxmox():
    assert col.split_tags("prod;web") == ["prod", "web"]
    assert col.split_tags("a,b c") == ["a", "b", "c"]
    assert col.split_tags(None) == [] and col.split_tags("") == []
