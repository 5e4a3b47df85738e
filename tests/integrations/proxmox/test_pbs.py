"""Proxmox Backup Server datastores through the real proxmoxer (service PBS) against recorded PBS answers."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from roost.integrations import proxmox
from roost.integrations.proxmox import pbs
from roost.integrations.proxmox.client import settings_from_config
from roost.integrations.proxmox.collector import Collector


def pbs_config(config: dict[str, Any], pbs_server, pki, px, **extra: Any) -> dict[str, Any]:
    table = {k: v for k, v in config.items() if v is not None}
    table["pbs"] = {"host": "127.0.0.1", "port": pbs_server.port, "token_id": px.PBS_TOKEN_ID, "token_secret": px.PBS_SECRET, "ca_file": pki.ca, **extra}
    return proxmox.CONFIG_SCHEMA(table)


def collect(cfg: dict[str, Any]) -> dict[str, Any]:
    pbs_settings = settings_from_config(cfg["pbs"], where="integrations.proxmox.pbs", service="PBS", default_port=8007, local_default=False)
    collector = Collector(cfg, settings_from_config(cfg), pbs_settings)
    collector.start()
    try:
        return collector.collect()
    finally:
        collector.close()


def test_datastores_and_backup_groups_are_read(pve, config, pbs_server, pki, px):
    pve.storages["nas"]["volumes"] = {}
    pve.storages["local"]["volumes"] = {}
    out = collect(pbs_config(config, pbs_server, pki, px))
    state = out["state"]
    stores = {s["store"]: s for s in state["pbs"]["datastores"]}
    store1 = stores["store1"]
    assert store1["total_bytes"] == 3936501481472 and store1["used_bytes"] == 2155921203200
    assert store1["percent"] == 54.8 and store1["estimated_full_at"] == 1767225600
    assert store1["groups"] == 3 and store1["last_backup_at"] == 1732068002
    assert {(g["type"], g["id"]) for g in store1["backup_groups"]} == {("vm", "100"), ("ct", "200"), ("host", "atlas")}
    assert "history" not in json.dumps(state["pbs"])  # the usage history arrays stay behind
    assert "No such file or directory" in stores["offsite"]["error"]
    # A broken datastore's groups cannot be listed: a problem, not a failure.
    assert any(p["scope"] == "PBS datastore offsite" for p in state["problems"])
    guests = {g["vmid"]: g["backup"] for g in state["guests"]}
    assert guests[100]["source"] == "PBS datastore store1" and guests[100]["last_ok_at"] == 1732068002
    assert guests[200]["source"] == "PBS datastore store1"
    assert guests[100]["overdue"] is True and guests[100]["warning"].startswith("no successful backup in ")
    assert pbs_server.requests[0] == "/api2/json/status/datastore-usage"


def test_a_datastore_filter_limits_what_is_read(pve, config, pbs_server, pki, px):
    state = collect(pbs_config(config, pbs_server, pki, px, datastores=["store1"]))["state"]
    assert [s["store"] for s in state["pbs"]["datastores"]] == ["store1"]
    assert "/api2/json/admin/datastore/offsite/groups" not in pbs_server.requests


def test_a_refused_pbs_token_is_a_problem_and_the_rest_still_reads(pve, config, pbs_server, pki, px):
    cfg = pbs_config(config, pbs_server, pki, px)
    cfg["pbs"]["token_secret"] = "wrong"
    state = collect(cfg)["state"]
    assert "Proxmox Backup Server" in state["pbs"]["error"] and "refused the API token roost@pbs!pve" in state["pbs"]["error"]
    assert state["pbs"]["datastores"] == []
    assert len(state["guests"]) == 5 and any(p["scope"] == "PBS" for p in state["problems"])


def test_parsers_on_the_recorded_answers(px):
    usage = pbs.parse_datastore_usage(px.load("pbs_datastore_usage.json")["data"])
    assert usage[0] == {"store": "offsite", "total_bytes": 0, "used_bytes": 0, "avail_bytes": 0, "error": usage[0]["error"]}
    assert usage[1]["gc_removed_bytes"] == 1073741824
    groups = pbs.parse_groups(px.load("pbs_groups_store1.json")["data"])
    assert groups[0] == {"type": "ct", "id": "200", "last_backup_at": 1731981602, "count": 9, "owner": "roost@pbs!pve", "comment": "dns"}
    assert pbs.parse_groups([{"backup-type": "vm"}, "junk", {"backup-type": "vm", "backup-id": 5}]) == [{"type": "vm", "id": "5"}]
    assert pbs.parse_datastore_usage(None) == []


def test_snapshots_verification_gc_and_jobs_are_read(pve, config, pbs_server, pki, px):
    state = collect(pbs_config(config, pbs_server, pki, px, datastores=["store1"]))["state"]
    (store,) = state["pbs"]["datastores"]
    snaps = store["snapshots"]
    assert [s["time"] for s in snaps] == sorted((s["time"] for s in snaps), reverse=True)
    newest = snaps[0]
    assert (newest["type"], newest["id"], newest["size_bytes"]) == ("vm", "100", 34359739008)
    assert newest["verification"]["state"] == "ok" and newest["protected"] is False
    assert store["verify_failed"] == 1 and store["unverified"] == 1 and store["protected"] == 1
    assert store["gc"]["removed_bytes"] == 1073741824 and store["gc"]["last_run_state"] == "ok" and store["gc"]["next_run_at"] == 1732158000
    (verify_job,) = store["verify_jobs"]
    assert verify_job["id"] == "v-store1-weekly" and verify_job["last_run_state"].startswith("verification failed")
    (prune_job,) = store["prune_jobs"]
    assert prune_job["retention"] == {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6}
    for path in ("snapshots", "gc"):
        assert f"/api2/json/admin/datastore/store1/{path}" in pbs_server.requests


def test_a_failed_pbs_verification_turns_the_backup_verdict_red_and_alerts(pve, config, pbs_server, pki, px):
    """The backup integration judges PBS datastores from the proxmox state: a failed verification is a failed verdict."""
    import time

    from roost.integrations.backup.alerting import rule_kinds
    from roost.integrations.backup.policies import FAILED, judge_pbs

    state = collect(pbs_config(config, pbs_server, pki, px, datastores=["store1"]))["state"]
    (store,) = state["pbs"]["datastores"]
    judged = judge_pbs(store, {"guests": [100, 200], "max_age_hours": 24 * 3650}, time.time())
    assert judged["verdict"] == FAILED
    assert any("failed verification (vm/100)" in why for why in judged["reasons"])
    assert any("verify job v-store1-weekly" in why for why in judged["reasons"])
    kinds = {k.name: k for k in rule_kinds(SimpleNamespace(store=None))}
    node = {"node": {"id": "n1"}, "state": {"proxmox": state}, "metrics": {}}
    (finding,) = kinds["backup.verify_failed"].handler({"repository": "*", "include_pbs": True}, node)
    assert finding.labels == {"repository": "pbs:store1"} and finding.severity == "critical" and finding.value == 1
