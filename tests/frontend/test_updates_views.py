"""The Updates page and API: each node's version against the hub's newest signed release, who may start updates, and what is skipped and why."""

from __future__ import annotations

import hashlib
import time
from types import SimpleNamespace

import pytest
from support_auth import seed_user
from support_hub import FakeAgent, hub_config

from roost.core.hub.app import HUB_KEY, create_app
from roost.core.release import add_release, make_manifest, releases_dir, sign_manifest
from roost.core.signing import generate_operator_key, public_key_of

NAME = "roost-linux-x86_64"


@pytest.fixture
async def hub(aiohttp_client, tmp_path):
    key = generate_operator_key()
    config = hub_config(tmp_path, operator_keys=[public_key_of(key)])
    tokens = {"admin": await seed_user(config, "alice", "admin"), "viewer": await seed_user(config, "victor", "viewer")}
    client = await aiohttp_client(create_app(config))
    upload = tmp_path / "upload" / NAME
    upload.parent.mkdir()
    upload.write_bytes(b"#!/bin/sh\necho roost 0.2.0\n")
    now = int(time.time())
    raw = make_manifest(name=NAME, version="0.2.0", sha256=hashlib.sha256(upload.read_bytes()).hexdigest(), size=upload.stat().st_size, issued=now, expires=now + 3600)
    upload.with_name(NAME + ".manifest").write_bytes(raw)
    upload.with_name(NAME + ".sig").write_text(sign_manifest(raw, key))
    add_release(releases_dir(config.data_dir), upload, [public_key_of(key)])
    agent = FakeAgent(client)
    await agent.enroll()
    # What the agent said in its hello: an older version on x86_64 (it offers no self-update action).
    await client.app[HUB_KEY].store.update_node_hello(agent.node_id, hostname="old<box>", facts={"arch": "x86_64"}, integrations=[], fields={},
                                                     capabilities=[], agent_version="0.1.0", epoch="e1", seen_at=time.time())
    return SimpleNamespace(client=client, tokens=tokens, node_id=agent.node_id)


async def get(hub, path, role="admin"):
    resp = await hub.client.get(path, headers={"Authorization": f"Bearer {hub.tokens[role]}"})
    return resp.status, await resp.text()


async def test_updates_page_lists_versions_and_says_why_a_node_cannot_update(hub):
    status, html = await get(hub, "/updates")
    assert status == 200
    assert f'data-node-id="{hub.node_id}" data-outdated="yes"' in html
    assert "0.1.0" in html and "0.2.0" in html and "agent.update not granted" in html
    # "Update all" stays clickable (it answers why each node is skipped); no per-node button where none can update.
    assert 'data-testid="update-all"' in html and "Update all outdated (1)" in html and 'data-testid="update-node"' not in html
    status, html = await get(hub, "/updates", role="viewer")
    assert status == 200 and 'data-testid="update-all"' not in html


async def test_updates_api_lists_and_skips_with_reasons_and_refuses_viewers(hub):
    status, body = await get(hub, "/api/v1/updates")
    import json

    nodes = {n["node_id"]: n for n in json.loads(body)["nodes"]}
    assert nodes[hub.node_id]["outdated"] is True and nodes[hub.node_id]["latest"] == "0.2.0" and nodes[hub.node_id]["updatable"] is False
    resp = await hub.client.post("/api/v1/updates", json={}, headers={"Authorization": f"Bearer {hub.tokens['viewer']}"})
    assert resp.status == 403
    resp = await hub.client.post("/api/v1/updates", json={}, headers={"Authorization": f"Bearer {hub.tokens['admin']}"})
    answer = await resp.json()
    assert resp.status == 200 and answer["started"] == [] and answer["skipped"][0]["node_id"] == hub.node_id
    assert "self_update.update" in answer["skipped"][0]["reason"]
    resp = await hub.client.post("/api/v1/updates", json={"nodes": "all"}, headers={"Authorization": f"Bearer {hub.tokens['admin']}"})
    assert resp.status == 400


async def test_a_rolled_back_update_shows_its_version_reason_and_back_off_on_both_pages(hub, aiohttp_client):
    agent = FakeAgent(hub.client)
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    at = time.time() - 60
    failed = {"version": "0.2.0", "reason": "roost 0.2.0 did not become healthy <script>alert(1)</script>", "at": at, "retry_after": at + 86400}
    await agent.send(agent.report(
        integrations=[{"domain": "self_update", "state": "loaded", "reason": ""}],
        data={"self_update": {"facts": {"update_failed": failed}}},
    ))
    assert (await agent.expect("ack"))["seq"] == agent.seq
    status, body = await get(hub, "/api/v1/updates", role="viewer")
    import json

    row = {n["node_id"]: n for n in json.loads(body)["nodes"]}[agent.node_id]
    assert row["update_failed"] == failed
    for path in ("/updates", f"/nodes/{agent.node_id}"):
        status, html = await get(hub, path, role="viewer")
        assert status == 200, path
        assert 'data-testid="update-rollback" data-version="0.2.0"' in html and "Update to 0.2.0 rolled back" in html, path
        assert "did not become healthy &lt;script&gt;" in html and "<script>alert(1)" not in html, path
        assert "will not try 0.2.0 again before" in html, path
    # A node that never rolled back shows nothing of the kind.
    status, html = await get(hub, f"/nodes/{hub.node_id}")
    assert 'data-testid="update-rollback"' not in html
