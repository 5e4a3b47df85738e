"""The storage hub half in the real hub app: manifests pushed to the agent, acknowledgements, rule kinds firing, the pages."""

from __future__ import annotations

import copy

import pytest
from support import until
from support_auth import seed_user
from support_hub import FakeAgent, hub_config

from roost.core.hub.app import HUB_KEY, create_app
from roost.integrations.storage import smart

from .conftest import fixture_json, fixture_text

API = "/api/v1/integrations/storage"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def smart_device(name: str, baseline: dict | None = None) -> dict:
    doc = fixture_json(name)
    dev = smart.parse_device(doc, doc["smartctl"]["exit_status"])
    base = dict(dev["counters"]) if baseline is None else baseline
    dev["verdict"], dev["reasons"] = smart.judge(dev, base)
    dev["baseline"] = base
    return dev


def storage_report(agent: FakeAgent, **storage) -> dict:
    return agent.report(
        integrations=[{"domain": "linux_host", "state": "loaded", "reason": ""}, {"domain": "storage", "state": "loaded", "reason": ""}],
        data={"storage": {"smart": {"available": True, "devices": []}, "targets": [], **storage}},
    )


@pytest.fixture
async def setup(aiohttp_client, tmp_path):
    config = hub_config(tmp_path)
    tokens = {role: await seed_user(config, f"{role}-user", role) for role in ("viewer", "operator", "admin")}
    client = await aiohttp_client(create_app(config))
    agent = FakeAgent(client)
    await agent.enroll()
    await client.app[HUB_KEY].set_grants(agent.node_id, ["host.metrics.read", "storage.read"], actor="test")
    assert (await agent.connect())["type"] == "welcome"
    return client, agent, tokens


async def send(agent: FakeAgent, message: dict) -> None:
    await agent.send(message)
    await agent.expect("ack")


MANIFEST = {"targets": [{"id": "usb-backup", "type": "usb", "durable_id": "LABEL=backup", "role": "backup", "mountpoint": "/mnt/backup", "min_free_bytes": 1000}]}


async def test_an_admin_sets_the_manifest_and_the_agent_gets_it_now_and_on_reconnect(setup):
    client, agent, tokens = setup
    url = f"{API}/manifests/{agent.node_id}"
    assert await (await client.get(url, headers=auth(tokens["viewer"]))).json() == {"targets": []}
    resp = await client.put(url, headers=auth(tokens["admin"]), json=MANIFEST)
    assert resp.status == 200, await resp.text()
    pushed = await agent.expect("settings")
    assert pushed["domain"] == "storage" and pushed["settings"]["targets"][0]["id"] == "usb-backup"
    assert pushed["settings"]["targets"][0]["state"] == "attached"  # the schema's defaults, as the agent will see them
    got = await (await client.get(url, headers=auth(tokens["viewer"]))).json()
    assert got["targets"][0]["durable_id"] == "LABEL=backup"
    # A new connection gets it with its grants.
    await agent.ws.close()
    assert (await agent.connect())["type"] == "welcome"
    again = await agent.expect("settings")
    assert again["settings"] == pushed["settings"]


async def test_manifest_refusals_say_why_and_change_nothing(setup):
    client, agent, tokens = setup
    url = f"{API}/manifests/{agent.node_id}"
    assert (await client.put(url, headers=auth(tokens["admin"]), json=MANIFEST)).status == 200
    await agent.expect("settings")
    # Operators and viewers may not: a manifest decides where storage.mount may mount a drive.
    for role in ("operator", "viewer"):
        resp = await client.put(url, headers=auth(tokens[role]), json={"targets": []})
        assert resp.status == 403, role
    bad = {"targets": [{"id": "x", "type": "usb", "durable_id": "LABEL=a", "mountpoint": "not/absolute"}]}
    resp = await client.put(url, headers=auth(tokens["admin"]), json=bad)
    assert resp.status == 400
    assert "absolute mount point" in (await resp.json())["error"] and "nothing was changed" in (await resp.json())["error"]
    resp = await client.put(f"{API}/manifests/nosuchnode", headers=auth(tokens["admin"]), json=MANIFEST)
    assert resp.status == 404
    assert (await (await client.get(url, headers=auth(tokens["viewer"]))).json())["targets"][0]["id"] == "usb-backup"
    resp = await client.put(url, headers={}, json=MANIFEST)
    assert resp.status == 401


async def test_a_grown_counter_fires_until_acknowledged_and_again_when_it_changes(setup):
    client, agent, tokens = setup
    hub = client.app[HUB_KEY]
    rule = {"name": "Disk counters", "kind": "storage.attribute_increased", "severity": "warning", "for": 0, "clear_for": 0, "settings": {}}
    resp = await client.post("/api/v1/alerts/rules", headers=auth(tokens["admin"]), json=rule)
    assert resp.status == 201, await resp.text()
    rule_id = (await resp.json())["id"]
    grown = smart_device("smart_ata_grown.json", baseline={"reallocated_sectors": 0, "pending_sectors": 0, "reported_uncorrectable": 0, "uncorrectable_sectors": 0, "crc_errors": 0})
    await send(agent, storage_report(agent, smart={"available": True, "devices": [grown]}))

    async def firing():
        return sorted(i["labels"].get("attribute", "") for i in await hub.alerts.firing(agent.node_id) if i["rule_id"] == rule_id)

    await until(lambda: _eq(firing, ["pending_sectors", "reallocated_sectors"]), 10, "both counters to fire")
    body = {"node_id": agent.node_id, "device": grown["key"], "attribute": "reallocated_sectors"}
    assert (await client.post(f"{API}/acknowledgements", headers=auth(tokens["viewer"]), json=body)).status == 403
    resp = await client.post(f"{API}/acknowledgements", headers=auth(tokens["operator"]), json=body)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["value"] == 8
    missing = await client.post(f"{API}/acknowledgements", headers=auth(tokens["operator"]), json={**body, "attribute": "crc_errors"})
    assert missing.status == 404 and "nothing to acknowledge" in (await missing.json())["error"]
    await send(agent, storage_report(agent, smart={"available": True, "devices": [grown]}))
    await until(lambda: _eq(firing, ["pending_sectors"]), 10, "the acknowledged counter to clear")
    view = await (await client.get(f"{API}/nodes/{agent.node_id}", headers=auth(tokens["viewer"]))).json()
    (dev,) = view["storage"]["devices"]
    assert {r["attribute"]: r["acknowledged"] for r in dev["reasons"]} == {"reallocated_sectors": True, "pending_sectors": False}
    # One more reallocated sector: the acknowledgement covered 8, not 9.
    worse = copy.deepcopy(grown)
    for reason in worse["reasons"]:
        if reason["attribute"] == "reallocated_sectors":
            reason["value"] = 9
    await send(agent, storage_report(agent, smart={"available": True, "devices": [worse]}))
    await until(lambda: _eq(firing, ["pending_sectors", "reallocated_sectors"]), 10, "the changed counter to fire again")
    # The acknowledgement outlives a restart of the hub half (kept in the store).
    assert (await hub.store.get_integration_data("storage", f"acks/{agent.node_id}")) is not None
    resp = await client.delete(f"{API}/acknowledgements", headers=auth(tokens["operator"]), params=body)
    assert resp.status == 200
    resp = await client.delete(f"{API}/acknowledgements", headers=auth(tokens["operator"]), params=body)
    assert resp.status == 404


async def _eq(get, expected):
    return await get() == expected


async def test_pool_array_and_target_kinds_fire_through_the_engine(setup):
    from roost.integrations.storage import mdraid, zfs

    client, agent, tokens = setup
    hub = client.app[HUB_KEY]
    ids = {}
    for kind in ("storage.pool_degraded", "storage.scrub_errors", "storage.array_degraded", "storage.target_missing", "storage.target_low_free", "storage.device_health"):
        resp = await client.post("/api/v1/alerts/rules", headers=auth(tokens["admin"]), json={"name": kind, "kind": kind, "severity": "warning", "for": 0, "clear_for": 0, "settings": {}})
        assert resp.status == 201, await resp.text()
        ids[(await resp.json())["id"]] = kind
    pools = zfs.parse_status_text(fixture_text("zpool_status_degraded.txt")) + zfs.parse_status_text(fixture_text("zpool_status_scrub_errors.txt"))
    arrays = mdraid.parse_mdstat(fixture_text("mdstat_degraded.txt"))
    targets = [{"id": "usb", "state": "attached", "status": "missing", "durable_id": "LABEL=b", "type": "usb"},
               {"id": "nas", "state": "attached", "status": "present", "durable_id": "nas:/x", "type": "nfs", "free_bytes": 5, "min_free_bytes": 10}]
    failing = smart_device("smart_ata_failing.json")
    await send(agent, storage_report(agent, zfs={"pools": pools}, mdraid=arrays, targets=targets, smart={"available": True, "devices": [failing]}))

    async def fired():
        return sorted((ids[i["rule_id"]], tuple(sorted(i["labels"].items()))) for i in await hub.alerts.firing(agent.node_id) if i["rule_id"] in ids)

    expected = [
        ("storage.array_degraded", (("array", "md1"),)),
        ("storage.device_health", (("device", failing["key"]),)),
        ("storage.pool_degraded", (("pool", "backup"),)),
        ("storage.scrub_errors", (("pool", "media"),)),
        ("storage.target_low_free", (("target", "nas"),)),
        ("storage.target_missing", (("target", "usb"),)),
    ]
    await until(lambda: _eq(fired, expected), 10, "every storage kind to fire")
    severities = {ids[i["rule_id"]]: i["severity"] for i in await hub.alerts.firing(agent.node_id) if i["rule_id"] in ids}
    assert severities["storage.device_health"] == "critical" and severities["storage.scrub_errors"] == "critical"
    # All well again: every one of them clears.
    await send(agent, storage_report(agent))
    await until(lambda: _eq(fired, []), 10, "every storage alert to resolve")


async def test_the_pages_show_every_disk_worst_first_with_reasons(setup):
    client, agent, tokens = setup
    healthy, failing = smart_device("smart_ata_healthy.json"), smart_device("smart_ata_failing.json")
    await send(agent, storage_report(agent, smart={"available": True, "devices": [healthy, failing]},
                                    targets=[{"id": "usb", "state": "attached", "status": "missing", "durable_id": "LABEL=b", "type": "usb", "reason": "no mounted filesystem with that UUID or label"}]))
    resp = await client.get("/storage", headers=auth(tokens["viewer"]))
    text = await resp.text()
    assert resp.status == 200, text
    assert text.index(failing["key"]) < text.index(healthy["key"])
    assert "prefailure attribute 5 Reallocated_Sector_Ct is at 3" in text and "no mounted filesystem with that UUID or label" in text
    resp = await client.get(f"/storage/{agent.node_id}/{failing['key']}", headers=auth(tokens["viewer"]))
    page = await resp.text()
    assert resp.status == 200 and "the drive&#39;s own SMART status check says it is failing" in page
    assert "storage.smart_reallocated_sectors[" + failing["key"] + "]" in page  # the history chart asks for this series
    assert "Acknowledge" not in page  # a viewer cannot
    page = await (await client.get(f"/storage/{agent.node_id}/{failing['key']}", headers=auth(tokens["operator"]))).text()
    assert "Acknowledge" in page
    assert (await client.get(f"/storage/{agent.node_id}/nope", headers=auth(tokens["viewer"]))).status == 404
    node_page = await (await client.get(f"/nodes/{agent.node_id}", headers=auth(tokens["viewer"]))).text()
    assert 'class="st-panel"' in node_page and 'data-target="usb"' in node_page
    api = await (await client.get(API, headers=auth(tokens["viewer"]))).json()
    assert [r["verdict"] for r in api["rows"]][:2] == ["failing", "failing"]
    detail = await (await client.get(f"{API}/devices/{agent.node_id}/{failing['key']}", headers=auth(tokens["viewer"]))).json()
    assert detail["device"]["verdict"] == "failing" and detail["series"][0]["series"][0]["name"].startswith("storage.smart_temperature_celsius[")


async def test_the_hubs_own_host_gets_its_manifest_in_process(aiohttp_client, tmp_path):
    """The in-process agent takes settings through the same check, and its next report carries the target."""
    from roost.core.config import load_hub_config

    config = load_hub_config(None, overrides={
        "hub": {"data_dir": str(tmp_path / "hub"), "discovery": False, "wol_broadcast": "127.0.0.1"},
        "agent": {"enabled": True, "discovery": False, "interval": 30},
        "integrations": {"storage": {"smart": False, "lvm": False, "zfs": False}, "docker": {"enabled": False}, "proxmox": {"enabled": False}},
    })
    token = await seed_user(config, "admin", "admin")
    client = await aiohttp_client(create_app(config), headers=auth(token))
    hub = client.app[HUB_KEY]

    async def local_storage():
        detail = await hub.node_detail(hub.local_node_id) if hub.local_node_id else None
        return ((detail or {}).get("state") or {}).get("storage")

    await until(local_storage, 30, "the in-process agent's first storage report")
    manifest = {"targets": [{"id": "gone", "type": "usb", "durable_id": "LABEL=roost-never-here"}]}
    resp = await client.put(f"{API}/manifests/{hub.local_node_id}", json=manifest)
    assert resp.status == 200, await resp.text()

    async def reported():
        state = await local_storage()
        return [t["status"] for t in (state or {}).get("targets", [])] == ["missing"]

    # The interval is 30 s: the new settings start a cycle at once.
    await until(reported, 10, "the in-process agent to report the new target")
