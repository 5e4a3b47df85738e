"""The trust rules around pairing, grants and nodes, attacked: CSRF, lesser roles, and one node's credentials used against another."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from support_auth import TEST_PASSWORD, seed_user
from support_hub import FakeAgent, hub_config

from roost.core.hub.app import HUB_KEY
from roost.core.store.jobs import Job


@pytest.fixture
async def hub(make_hub, tmp_path):
    config = hub_config(tmp_path)
    await seed_user(config, "alice", "admin", token=False)
    await seed_user(config, "vic", "viewer", token=False)
    return await make_hub(as_role=None)


async def login(client, name: str) -> tuple[aiohttp.ClientSession, str]:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    resp = await session.post(str(client.make_url("/api/v1/session")), json={"username": name, "password": TEST_PASSWORD})
    assert resp.status == 200, await resp.text()
    return session, (await resp.json())["csrf_token"]


async def pending_request(client) -> str:
    hub = client.app[HUB_KEY]
    from roost.core.identity import Identity
    from roost.core.pairing import new_nonce, pair_payload

    identity = Identity.generate()
    ws = await client.ws_connect("/api/v1/agent/ws")
    challenge = await ws.receive_json()
    nonce = new_nonce()
    await ws.send_json(
        {
            "v": 1,
            "type": "pair",
            "public_key": identity.public_key,
            "signature": identity.sign(pair_payload(challenge["hub_id"], identity.public_key, challenge["nonce"], nonce)),
            "agent_nonce": nonce,
            "agent_version": "t",
            "hostname": "target",
            "capabilities": ["host.metrics.read", "docker.manage"],
        }
    )
    assert (await ws.receive_json())["type"] == "pair_pending"
    [request] = await hub.store.list_pairing_requests(now=time.time())
    return request.request_id


async def test_state_changes_need_the_csrf_token(hub):
    request_id = await pending_request(hub)
    session, csrf = await login(hub, "alice")
    url = str(hub.make_url(f"/api/v1/pairing/{request_id}/approve"))
    try:
        assert (await session.post(url, json={})).status == 403  # no token: a cross-site form cannot approve
        assert (await session.post(url, json={}, headers={"X-CSRF-Token": "x" * 43})).status == 403
        evil = await session.post(url, json={}, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
        assert evil.status == 403
        ok = await session.post(url, json={}, headers={"X-CSRF-Token": csrf})
        assert ok.status == 200, await ok.text()
        node_id = (await ok.json())["node_id"]
        revoke = str(hub.make_url(f"/api/v1/nodes/{node_id}/revoke"))
        assert (await session.post(revoke)).status == 403
        assert not hub.app[HUB_KEY].node(node_id).revoked
        assert (await session.post(revoke, headers={"X-CSRF-Token": csrf})).status == 200
    finally:
        await session.close()


async def test_a_viewer_cannot_pair_grant_revoke_or_mint_tokens(hub):
    request_id = await pending_request(hub)
    hub_obj = hub.app[HUB_KEY]
    node = await hub_obj.add_node(public_key=FakeAgent(hub).identity.public_key, hostname="n", name="n", facts={}, grants=["host.metrics.read"])
    session, csrf = await login(hub, "vic")
    headers = {"X-CSRF-Token": csrf}
    try:
        for method, path, body in (
            ("POST", f"/api/v1/pairing/{request_id}/approve", {}),
            ("POST", f"/api/v1/pairing/{request_id}/reject", {}),
            ("PUT", f"/api/v1/nodes/{node.node_id}/grants", {"grants": ["docker.manage"]}),
            ("POST", f"/api/v1/nodes/{node.node_id}/revoke", None),
            ("POST", "/api/v1/join-tokens", {}),
            ("GET", "/api/v1/join-tokens", None),
        ):
            resp = await session.request(method, str(hub.make_url(path)), json=body, headers=headers)
            assert resp.status == 403, (method, path, resp.status)
        assert (await hub_obj.store.get_grants(node.node_id)).grants == ["host.metrics.read"]
        assert not hub_obj.node(node.node_id).revoked
        assert len(await hub_obj.store.list_pairing_requests(now=time.time())) == 1
        assert (await session.get(str(hub.make_url(f"/api/v1/nodes/{node.node_id}/grants")))).status == 200  # reading is allowed
    finally:
        await session.close()


async def test_nothing_is_served_to_someone_not_logged_in(hub):
    request_id = await pending_request(hub)
    for method, path in (
        ("GET", "/api/v1/pairing"),
        ("POST", f"/api/v1/pairing/{request_id}/approve"),
        ("GET", "/api/v1/nodes"),
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/join-tokens"),
    ):
        resp = await hub.request(method, path, json={})
        assert resp.status == 401, (method, path)


async def test_one_nodes_socket_cannot_touch_another_nodes_jobs(hub, monkeypatch):
    hub_obj = hub.app[HUB_KEY]
    mallory, victim = FakeAgent(hub), FakeAgent(hub)
    await mallory.enroll()
    await victim.enroll()
    now = time.time()
    job = Job(job_id="jvictim", node_id=victim.node_id, action="x.y", params={}, state="dispatched", created_by="t", created_at=now, timeout=30, next_attempt_at=now)
    await hub_obj.store.add_job(job)
    await mallory.connect()
    await mallory.send({"v": 1, "type": "job_result", "job_id": "jvictim", "attempt": 1, "status": "succeeded", "result": {"pwned": True}})
    await mallory.send({"v": 1, "type": "job_started", "job_id": "jvictim", "attempt": 1})
    await mallory.send({"v": 1, "type": "heartbeat"})
    await asyncio.sleep(0.3)
    unchanged = await hub_obj.store.get_job("jvictim")
    assert unchanged.state == "dispatched" and unchanged.result is None


async def test_a_pending_agent_gets_no_jobs(hub):
    await pending_request(hub)
    hub_obj = hub.app[HUB_KEY]
    assert hub_obj.jobs.channels == {}  # nothing to dispatch to: a pending key has no node and no channel
