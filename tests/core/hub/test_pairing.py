"""Pairing with approval, as an attacker would test it: codes, commitments, floods, key changes, grants, rotation."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp.test_utils import TestServer
from support import free_port, until

from roost.agent.pairing import PairingFailed, pair
from roost.core import protocol
from roost.core.capabilities import Ceiling
from roost.core.hub.app import HUB_KEY, create_app
from roost.core.identity import Identity, verify
from roost.core.pairing import check_commitment, new_nonce, pair_payload, short_code

from support_hub import FakeAgent, hub_config

OFFERED = ["host.metrics.read", "network.info.read", "docker.read", "docker.manage", "process.execute.limited"]


class Pairer:
    """An unpaired agent speaking the pairing half of the protocol by hand."""

    def __init__(self, client, identity: Identity | None = None, hostname: str = "newbox") -> None:
        self.client = client
        self.identity = identity or Identity.generate()
        self.hostname = hostname
        self.ws = None
        self.challenge: dict = {}
        self.agent_nonce = new_nonce()

    async def request(self, **over) -> dict:
        self.ws = await self.client.ws_connect("/api/v1/agent/ws")
        self.challenge = await self.ws.receive_json(timeout=5)
        message = {
            "v": 1,
            "type": "pair",
            "public_key": self.identity.public_key,
            "signature": self.identity.sign(pair_payload(self.challenge["hub_id"], self.identity.public_key, self.challenge["nonce"], self.agent_nonce)),
            "agent_nonce": self.agent_nonce,
            "agent_version": "test",
            "hostname": self.hostname,
            "facts": {"os": "Testix"},
            "capabilities": OFFERED,
            "ceiling": {"mode": "read-only", "allow": ["*"], "deny": []},
        }
        message.update(over)
        await self.ws.send_str(json.dumps(message))
        return await self.ws.receive_json(timeout=5)

    def code(self, pending: dict, ca_fingerprint: str) -> str:
        assert check_commitment(self.challenge["commitment"], pending["hub_nonce"])
        return short_code(
            agent_public_key=self.identity.public_key, ca_fingerprint=ca_fingerprint, hub_key=self.challenge["hub_key"], agent_nonce=self.agent_nonce, hub_nonce=pending["hub_nonce"]
        )


async def pending_list(client) -> list[dict]:
    resp = await client.get("/api/v1/pairing")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["pending"]


async def test_codes_match_and_approval_grants_only_what_was_chosen(client):
    hub = client.app[HUB_KEY]
    agent = Pairer(client)
    pending = await agent.request()
    assert pending["type"] == "pair_pending"
    agent_code = agent.code(pending, hub.ca_fingerprint)
    [shown] = await pending_list(client)
    assert shown["code"] == agent_code and shown["hostname"] == "newbox"
    assert shown["default_grants"] == ["docker.read", "host.metrics.read", "network.info.read"]  # the read-only part
    assert hub.ca_fingerprint and len(hub.ca_fingerprint) == 64
    # Nothing exists, nothing is granted, before approval.
    assert await hub.store.get_node_by_key(agent.identity.public_key) is None

    resp = await client.post(f"/api/v1/pairing/{shown['id']}/approve", json={"grants": ["host.metrics.read", "docker.read"]})
    assert resp.status == 200, await resp.text()
    node_id = (await resp.json())["node_id"]
    approved = await agent.ws.receive_json(timeout=5)
    proof = approved.pop("hub_signature")
    assert approved == {"v": 1, "type": "pair_approved", "node_id": node_id, "hub_id": hub.hub_id, "grants": ["docker.read", "host.metrics.read"], "hub_key": hub.identity.public_key}
    # The hub proves its identity key for this node and this connection: what the agent pins.
    assert verify(hub.identity.public_key, proof, protocol.hub_proof_payload("pair", hub.hub_id, node_id, agent.challenge["nonce"], agent.agent_nonce))

    paired = FakeAgent(client, identity=agent.identity, node_id=node_id)
    assert (await paired.connect())["type"] == "welcome"
    assert paired.grants == ["docker.read", "host.metrics.read"]
    view = await (await client.get(f"/api/v1/nodes/{node_id}/grants")).json()
    assert view["grants"] == ["docker.read", "host.metrics.read"]
    assert view["effective"] == ["docker.read", "host.metrics.read"]
    assert await pending_list(client) == []


async def test_a_pending_agent_cannot_report_or_act(client):
    hub = client.app[HUB_KEY]
    agent = Pairer(client)
    await agent.request()
    await agent.ws.send_str(json.dumps({"v": 1, "type": "report", "node_id": "nabc", "seq": 1, "collected_at": time.time()}))
    err = await agent.ws.receive_json(timeout=5)
    assert err["code"] == "auth_failed" and "not paired" in err["message"]
    assert hub.ingestor.persisted == 0
    assert [n for n in hub._nodes.values() if n.public_key == agent.identity.public_key] == []


async def test_a_man_in_the_middle_shows_a_different_code(client):
    """The agent behind a relay sees the relay's CA; the hub sees the relay's key: the codes differ."""
    hub = client.app[HUB_KEY]
    relay = Pairer(client, hostname="newbox")  # what the hub sees: the relay's own key
    pending = await relay.request()
    hub_code = (await pending_list(client))[0]["code"]
    assert hub_code == relay.code(pending, hub.ca_fingerprint)
    victim = Identity.generate()
    victim_code = short_code(agent_public_key=victim.public_key, ca_fingerprint="ab" * 32, hub_key=Identity.generate().public_key, agent_nonce=new_nonce(), hub_nonce=pending["hub_nonce"])
    assert victim_code != hub_code


async def test_a_relay_that_offers_its_own_hub_key_shows_a_different_code(client):
    """Plain HTTP has no CA to catch a relay: the hub identity key it would have the agent pin is in the code too."""
    hub = client.app[HUB_KEY]
    agent = Pairer(client)
    pending = await agent.request()
    assert agent.challenge["hub_key"] == hub.identity.public_key
    hub_code = (await pending_list(client))[0]["code"]
    seen_through_relay = short_code(
        agent_public_key=agent.identity.public_key, ca_fingerprint=hub.ca_fingerprint, hub_key=Identity.generate().public_key,
        agent_nonce=agent.agent_nonce, hub_nonce=pending["hub_nonce"],
    )
    assert hub_code == agent.code(pending, hub.ca_fingerprint) and seen_through_relay != hub_code


async def test_agent_refuses_a_hub_that_breaks_its_commitment(aiohttp_client):
    from aiohttp import web

    async def lying_hub(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(protocol.encode("challenge", nonce=new_nonce(), hub_id="hfake", commitment="0" * 64, hub_key=Identity.generate().public_key))
        await ws.receive()
        await ws.send_str(protocol.encode("pair_pending", request_id="p1", hub_nonce=new_nonce(), expires_at=time.time() + 60))
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/api/v1/agent/ws", lying_hub)
    client = await aiohttp_client(app)
    shown = []
    with pytest.raises(PairingFailed, match="commitment"):
        await pair(
            str(client.make_url("")).rstrip("/"),
            Identity.generate(),
            hostname="box",
            facts={},
            capabilities=[],
            ceiling=Ceiling(),
            ca_fingerprint="",
            ssl_context=None,
            show_code=lambda *a: shown.append(a),
        )
    assert shown == []  # no code was ever shown for the person to approve


async def test_reject_ends_the_request_and_grants_nothing(client):
    hub = client.app[HUB_KEY]
    agent = Pairer(client)
    await agent.request()
    [shown] = await pending_list(client)
    resp = await client.post(f"/api/v1/pairing/{shown['id']}/reject", json={})
    assert resp.status == 200
    answer = await agent.ws.receive_json(timeout=5)
    assert answer["type"] == "pair_rejected"
    assert await hub.store.get_node_by_key(agent.identity.public_key) is None
    again = await client.post(f"/api/v1/pairing/{shown['id']}/approve", json={})
    assert again.status == 409  # a decided request cannot be approved afterwards


async def test_a_known_hostname_with_a_new_key_lands_pending_flagged(client):
    hub = client.app[HUB_KEY]
    first = Pairer(client, hostname="nas")
    await first.request()
    [req] = await pending_list(client)
    node_id = (await (await client.post(f"/api/v1/pairing/{req['id']}/approve", json={})).json())["node_id"]
    impostor = Pairer(client, hostname="nas")
    pending = await impostor.request()
    assert pending["type"] == "pair_pending"
    [flagged] = await pending_list(client)
    assert flagged["key_changed_node"] == node_id
    node = await hub.store.get_node(node_id)
    assert node.public_key == first.identity.public_key  # the approved node is untouched


async def test_pairing_requests_are_bounded_one_per_key(make_hub):
    client = await make_hub(pairing_max_pending=2)
    same = Identity.generate()
    for _ in range(2):
        assert (await Pairer(client, identity=same).request())["type"] == "pair_pending"
    assert len(await pending_list(client)) == 1  # one per key: the newest replaces the older
    assert (await Pairer(client).request())["type"] == "pair_pending"
    flood = await Pairer(client).request()
    assert flood["type"] == "error" and flood["code"] == "rate_limited" and "already waiting" in flood["message"]
    assert len(await pending_list(client)) == 2


async def test_pairing_attempts_from_one_address_are_rate_limited(make_hub):
    client = await make_hub(pairing_attempts_per_minute=10)  # a burst of 5, then one every 6 s
    answers = [await Pairer(client).request() for _ in range(7)]
    assert all(a["type"] == "pair_pending" for a in answers[:5])
    assert answers[5]["code"] == "rate_limited" and "too many pairing requests" in answers[5]["message"]
    actions = [e.action for e in await client.app[HUB_KEY].store.list_audit(limit=50)]
    assert "pairing.refused" in actions


async def test_an_agent_flooding_messages_is_cut_off(client, fake_agent, monkeypatch):
    from roost.core.hub import gateway

    monkeypatch.setattr(gateway, "MESSAGE_BURST", 20)
    hub = client.app[HUB_KEY]
    from roost.core.hub.security import RateLimiter

    hub.agent_messages = RateLimiter(rate=1, burst=20)
    agent = fake_agent()
    await agent.enroll()
    await agent.connect()
    for _ in range(25):
        await agent.send({"v": 1, "type": "heartbeat"})
    err = await agent.expect("error")
    assert err["code"] == "rate_limited"
    assert await agent.expect_closed() == 1008


async def test_malformed_and_oversized_pairing_requests(client):
    bad_sig = Pairer(client)
    answer = await bad_sig.request(signature=Identity.generate().sign(b"something else"))
    assert answer["code"] == "auth_failed"
    missing = await Pairer(client).request(hostname="")
    assert missing["code"] == "bad_message" and "hostname" in missing["message"]
    too_many = await Pairer(client).request(capabilities=[f"x.y{i}" for i in range(600)])
    assert too_many["code"] == "bad_message"
    huge = await Pairer(client).request(facts={"blob": "x" * (1024 * 1024)})
    assert huge["code"] == "too_large"
    assert await pending_list(client) == []


async def test_a_request_expires(make_hub):
    client = await make_hub(pairing_ttl=60)
    hub = client.app[HUB_KEY]
    agent = Pairer(client)
    await agent.request()
    [req] = await pending_list(client)
    real = time.time
    try:
        time.time = lambda: real() + 61  # type: ignore[assignment]
        answer = await agent.ws.receive_json(timeout=5)
        assert answer["type"] == "error" and "expired" in answer["message"]
        resp = await client.post(f"/api/v1/pairing/{req['id']}/approve", json={})
        assert resp.status == 409
    finally:
        time.time = real  # type: ignore[assignment]
    assert await hub.store.get_node_by_key(agent.identity.public_key) is None


async def test_a_decision_written_by_the_cli_reaches_the_waiting_agent(client):
    hub = client.app[HUB_KEY]
    agent = Pairer(client)
    await agent.request()
    [req] = await pending_list(client)
    # The CLI decides through the store, not through this hub process.
    await hub.store.decide_pairing_request(req["id"], status="rejected", node_id=None, decided_by="user:cli", now=time.time())
    answer = await agent.ws.receive_json(timeout=3)
    assert answer["type"] == "pair_rejected"


async def test_an_approved_key_pairing_again_is_told_its_node(client):
    agent = Pairer(client)
    await agent.request()
    [req] = await pending_list(client)
    node_id = (await (await client.post(f"/api/v1/pairing/{req['id']}/approve", json={})).json())["node_id"]
    await agent.ws.receive_json(timeout=5)
    again = await Pairer(client, identity=agent.identity).request()
    assert again["type"] == "pair_approved" and again["node_id"] == node_id


async def test_a_revoked_key_cannot_pair_again(client):
    hub = client.app[HUB_KEY]
    agent = Pairer(client)
    await agent.request()
    [req] = await pending_list(client)
    node_id = (await (await client.post(f"/api/v1/pairing/{req['id']}/approve", json={})).json())["node_id"]
    assert (await client.post(f"/api/v1/nodes/{node_id}/revoke")).status == 200
    again = await Pairer(client, identity=agent.identity).request()
    assert again["code"] == "auth_failed"
    assert hub.node(node_id).revoked


async def test_grant_changes_reach_the_connected_agent(client, fake_agent):
    agent = fake_agent()
    await agent.enroll()
    await agent.connect()
    assert agent.grants == ["host.metrics.read"]  # the read-only part of what it offered, granted at its first hello
    resp = await client.put(f"/api/v1/nodes/{agent.node_id}/grants", json={"grants": ["docker.read", "host.metrics.read"]})
    assert resp.status == 200
    pushed = await agent.expect("grants")
    assert pushed["grants"] == ["docker.read", "host.metrics.read"]
    bad = await client.put(f"/api/v1/nodes/{agent.node_id}/grants", json={"grants": ["rm -rf /"]})
    assert bad.status == 400 and "capability" in (await bad.json())["error"]
    missing = await client.put("/api/v1/nodes/nnope/grants", json={"grants": []})
    assert missing.status == 404


async def test_key_rotation_moves_the_node_to_the_new_key(client, fake_agent):
    hub = client.app[HUB_KEY]
    agent = fake_agent()
    await agent.enroll()
    await agent.connect()
    new = Identity.generate()
    assert agent.node_id in hub.connections
    # A rotation signed by the wrong key is refused.
    await agent.send({"v": 1, "type": "rotate_key", "new_public_key": new.public_key, "signature": Identity.generate().sign(b"x")})
    assert (await agent.expect("error"))["code"] == "auth_failed"
    # The new key signs over this connection's challenge nonce.
    sig = new.sign(protocol.rotate_payload(hub.hub_id, agent.node_id, new.public_key, agent.challenge["nonce"]))
    await agent.send({"v": 1, "type": "rotate_key", "new_public_key": new.public_key, "signature": sig})
    assert (await agent.expect("key_rotated"))["public_key"] == new.public_key
    await agent.ws.close()
    assert (await agent.connect())["code"] == "auth_failed"  # the old key no longer works
    assert (await agent.connect(sign_as=new))["type"] == "welcome"


async def test_the_real_agent_pairs_through_the_real_hub(tmp_path):
    port = free_port()
    server = TestServer(create_app(hub_config(tmp_path)), host="127.0.0.1", port=port)
    await server.start_server()
    hub = server.app[HUB_KEY]
    identity = Identity.generate()
    codes: list[str] = []
    try:
        task = asyncio.create_task(
            pair(
                f"http://127.0.0.1:{port}",
                identity,
                hostname="pi",
                facts={"os": "Raspbian"},
                capabilities=OFFERED,
                ceiling=Ceiling(),
                ca_fingerprint=hub.ca_fingerprint,
                ssl_context=None,
                show_code=lambda code, rid, exp: codes.append(code),
            )
        )
        for _ in range(100):
            pending = await hub.pairing.pending()
            if pending and codes:
                break
            await asyncio.sleep(0.05)
        assert pending[0]["code"] == codes[0]
        node_id = await hub.pairing.approve(pending[0]["id"], actor="user:test")
        paired = await asyncio.wait_for(task, 5)
        assert paired.node_id == node_id and paired.grants == ["docker.read", "host.metrics.read", "network.info.read"]
    finally:
        await server.close()


async def test_the_cli_decides_and_revokes_and_the_running_hub_follows(client, tmp_path):
    import subprocess
    import sys

    def roost(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "roost.core.cli", *args, "--data-dir", str(tmp_path / "hub")], capture_output=True, text=True, timeout=30)

    agent = Pairer(client, hostname="nas\x1b[2Jevil")
    pending = await agent.request()
    code = agent.code(pending, client.app[HUB_KEY].ca_fingerprint)
    listed = await asyncio.to_thread(roost, "nodes", "pending")
    assert listed.returncode == 0 and f"code {code}" in listed.stdout
    assert "\x1b" not in listed.stdout  # a hostile hostname cannot drive the admin's terminal
    request_id = listed.stdout.split("\t")[0]
    approved = await asyncio.to_thread(roost, "nodes", "approve", request_id, "--grant", "host.metrics.read")
    assert approved.returncode == 0, approved.stderr
    answer = await agent.ws.receive_json(timeout=5)  # the waiting socket learns within a second
    assert answer["type"] == "pair_approved" and answer["grants"] == ["host.metrics.read"]
    paired = FakeAgent(client, identity=agent.identity, node_id=answer["node_id"])
    assert (await paired.connect())["type"] == "welcome"
    again = await asyncio.to_thread(roost, "nodes", "approve", request_id)
    assert again.returncode == 1 and "no pending" in again.stderr

    revoked = await asyncio.to_thread(roost, "nodes", "revoke", answer["node_id"])
    assert revoked.returncode == 0
    assert await paired.expect_closed(timeout=3) == 4003  # cut off within a second or two
    assert (await paired.connect())["code"] == "auth_failed"


# ------------------------------------------------- key changed, names, floods


async def test_the_key_changed_flag_ignores_case_and_a_trailing_dot(client):
    first = Pairer(client, hostname="nas")
    await first.request()
    [req] = await pending_list(client)
    node_id = (await (await client.post(f"/api/v1/pairing/{req['id']}/approve", json={})).json())["node_id"]
    for spelling in ("NAS", "nas.", "Nas."):
        impostor = Pairer(client, hostname=spelling)
        assert (await impostor.request())["type"] == "pair_pending"
        flagged = [r for r in await pending_list(client) if r["hostname"] == spelling]
        assert flagged and flagged[0]["key_changed_node"] == node_id, spelling
        await impostor.ws.close()


async def test_a_second_named_agent_on_a_host_is_not_a_key_change_but_an_impostor_is(client):
    hub = client.app[HUB_KEY]
    first = Pairer(client, hostname="box")
    await first.request()
    [req] = await pending_list(client)
    first_id = (await (await client.post(f"/api/v1/pairing/{req['id']}/approve", json={})).json())["node_id"]
    assert hub.node(first_id).name == "box"

    # A second agent on the same host, with a name of its own: a new node, no false alarm, shown by its name.
    second = Pairer(client, hostname="box")
    assert (await second.request(name="box-docker"))["type"] == "pair_pending"
    [shown] = await pending_list(client)
    assert shown["key_changed_node"] is None and shown["name"] == "box-docker" and shown["hostname"] == "box"
    second_id = (await (await client.post(f"/api/v1/pairing/{shown['id']}/approve", json={})).json())["node_id"]
    assert hub.node(second_id).name == "box-docker"  # --name is honoured as the node's name

    # Claiming either node's name (or the host's own, with no --name) with a new key is flagged.
    for name, claimed in (("", first_id), ("BOX-DOCKER", second_id), ("box.", first_id)):
        impostor = Pairer(client, hostname="Box.")
        assert (await impostor.request(name=name))["type"] == "pair_pending"
        [flagged] = await pending_list(client)
        assert flagged["key_changed_node"] == claimed, name
        await impostor.ws.close()
        await until(lambda: _none_pending(client), 5, "the closed request to be withdrawn")


async def _none_pending(client) -> bool:
    return not await pending_list(client)


async def test_a_request_whose_socket_closed_holds_no_slot(make_hub):
    client = await make_hub(pairing_max_pending=20)
    hub = client.app[HUB_KEY]
    # Twenty-five requests, every socket closed at once: before, they held all 20 slots for 15 minutes.
    flood = [Pairer(client) for _ in range(25)]
    answers = await asyncio.gather(*(p.request() for p in flood))
    assert sum(a["type"] == "pair_pending" for a in answers) == 20
    await asyncio.gather(*(p.ws.close() for p in flood))

    # A real agent pairs at once, while the hub is still taking the flood's sockets down.
    codes: list[str] = []
    task = asyncio.create_task(
        pair(
            str(client.make_url("")).rstrip("/"),
            Identity.generate(),
            hostname="real",
            facts={},
            capabilities=OFFERED,
            ceiling=Ceiling(),
            ca_fingerprint=hub.ca_fingerprint,
            ssl_context=None,
            show_code=lambda code, rid, exp: codes.append(rid),
        )
    )
    await until(lambda: _shown(codes, task), 10, "the real agent's pending request")
    assert not task.done(), task.exception() if task.done() else None
    await hub.pairing.approve(codes[0], actor="user:test")
    paired = await asyncio.wait_for(task, 10)
    assert paired.node_id and paired.hub_key == hub.identity.public_key
    requests = await hub.store.list_pairing_requests(now=time.time(), pending_only=False)
    assert sum(r.status == "withdrawn" for r in requests) == 20  # kept for the record, holding nothing
    assert not await pending_list(client)


async def _shown(codes: list[str], task: asyncio.Task) -> bool:
    return bool(codes) or task.done()


async def test_pending_requests_left_from_before_a_restart_hold_no_slot(make_hub, tmp_path):
    from roost.core.store import PairingRequest

    client = await make_hub(pairing_max_pending=2)
    hub = client.app[HUB_KEY]
    now = time.time()
    for i in range(2):  # no socket in this process waits for these
        await hub.store.add_pairing_request(
            PairingRequest(request_id=f"pold{i}", public_key=Identity.generate().public_key, hostname="old", code="000 000", created_at=now, expires_at=now + 900),
            max_pending=2,
            now=now,
        )
    agent = Pairer(client)
    assert (await agent.request())["type"] == "pair_pending"
    assert [r["id"] for r in await pending_list(client)] != ["pold0", "pold1"]


# ------------------------------------------------ what a node claims grants nothing

MADE_UP = ["secrets.read", "anything.read.all"]


async def test_pairing_defaults_leave_out_what_the_node_made_up(client):
    hub = client.app[HUB_KEY]
    pairer = Pairer(client)
    assert (await pairer.request(capabilities=[*MADE_UP, "host.metrics.read", "docker.read", "docker.manage"]))["type"] == "pair_pending"
    [shown] = await pending_list(client)
    assert shown["default_grants"] == ["docker.read", "host.metrics.read"]
    assert {o["name"]: o["known"] for o in shown["offered"]}["secrets.read"] is False
    resp = await client.post(f"/api/v1/pairing/{shown['id']}/approve", json={})
    node_id = (await resp.json())["node_id"]
    assert (await hub.store.get_grants(node_id)).grants == ["docker.read", "host.metrics.read"]


async def test_a_pairing_request_claiming_to_push_is_an_agent_node_once_approved(client):
    pairer = Pairer(client)
    await pairer.request(facts={"source": "push", "os": "Testix"})
    [shown] = await pending_list(client)
    resp = await client.post(f"/api/v1/pairing/{shown['id']}/approve", json={})
    node = client.app[HUB_KEY].node((await resp.json())["node_id"])
    assert "source" not in node.facts and node.facts["os"] == "Testix"
