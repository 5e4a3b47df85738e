"""The proxmox rule kinds on cluster states shaped as the collector reports them."""

from __future__ import annotations

import pytest
import voluptuous as vol

from roost.integrations.proxmox import alerts

NOW = 1_800_000_000.0
DAY = 86400


def node(state, at=NOW):
    return {"node": {"id": "n1"}, "state": {"proxmox": state}, "collected_at": at, "metrics": {}}


def kind(name):
    return next(k for k in alerts.rule_kinds() if k.name == name)


def test_quorum_lost_only_when_the_cluster_says_so():
    lost = alerts.quorum_lost({}, node({"cluster": {"name": "lab", "quorate": False, "nodes_online": 1, "nodes_total": 3}}))
    assert lost is not None and lost.labels == {"cluster": "lab"} and "1 of 3" in lost.summary
    assert alerts.quorum_lost({}, node({"cluster": {"name": "lab", "quorate": True}})) is None
    assert alerts.quorum_lost({}, node({"cluster": {"name": "single"}})) is None  # a single node has no quorum figure


def test_node_down_names_each_member():
    state = {"nodes": [{"name": "pve1", "status": "online"}, {"name": "pve2", "status": "offline"}, {"name": "pve3", "status": "unreachable"}]}
    found = alerts.node_down(kind("proxmox.node_down").schema({}), node(state))
    assert [f.labels["pve_node"] for f in found] == ["pve2", "pve3"]
    assert [f.labels["pve_node"] for f in alerts.node_down({"nodes": "pve3"}, node(state))] == ["pve3"]


def test_backup_age_per_guest():
    guests = [
        {"vmid": 100, "name": "web", "backup": {"last_ok_at": NOW - 2 * DAY, "in_job": True}},
        {"vmid": 101, "name": "db", "backup": {"last_ok_at": NOW - 9 * DAY, "in_job": True}},
        {"vmid": 102, "name": "scratch", "backup": {"excluded": True}},
        {"vmid": 103, "name": "new", "backup": {"in_job": False}},
    ]
    settings = kind("proxmox.backup_age").schema({"days": 7})
    found = alerts.backup_age(settings, node({"guests": guests}))
    assert [(f.labels["vmid"], f.value) for f in found] == [("101", 9.0), ("103", None)]
    assert "9.0 days old" in found[0].summary and "no successful backup" in found[1].summary
    only_covered = alerts.backup_age({**settings, "include_uncovered": False}, node({"guests": guests}))
    assert [f.labels["vmid"] for f in only_covered] == ["101"]
    with pytest.raises(vol.Invalid):
        kind("proxmox.backup_age").schema({"days": 0})
