"""The agent gateway: enrolment, challenge-response, ordered acks, and every kind of bad input."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from roost.core.const import ENROLL_PATH, MAX_MESSAGE_BYTES
from roost.core.hub.app import HUB_KEY, create_join_token
from roost.core import protocol
from roost.core.identity import Identity, verify
from support_hub import enrol_body


async def test_enroll_then_report_is_persisted_and_acked(client, fake_agent):
    agent = fake_agent()
    body = await agent.enroll()
    assert body["hub_id"] == client.app[HUB_KEY].hub_id
    welcome = await agent.connect()
    assert welcome["type"] == "welcome" and welcome["node_id"] == agent.node_id and welcome["last_seq"] == 0
    await agent.send(agent.report())
    ack = await agent.expect("ack")
    assert ack["seq"] == 1
    detail = await (await client.get(f"/api/v1/nodes/{agent.node_id}")).json()
    assert detail["node"]["status"] == "online"
    assert detail["metrics"]["linux_host.cpu_percent"] == 12.5
    assert detail["state"]["linux_host"]["cpu"]["percent"] == 12.5
    assert detail["node"]["facts"]["os"] == "Testix"
    assert detail["node"]["capabilities"] == ["host.metrics.read"]


async def test_acks_come_in_order_and_resent_reports_are_not_stored_twice(client, fake_agent):
    agent = fake_agent()
    await agent.enroll()
    await agent.connect()
    base = time.time() - 100
    for i in range(1, 21):
        await agent.send(agent.report(seq=i, collected_at=base + i))
    acks = [(await agent.expect("ack"))["seq"] for _ in range(20)]
    assert acks == list(range(1, 21))
    # The agent lost the last acks and resends 15..20 after reconnecting.
    await agent.ws.close()
    welcome = await agent.connect()
    assert welcome["last_seq"] == 20
    for i in range(15, 21):
        await agent.send(agent.report(seq=i, collected_at=base + i))
        assert (await agent.expect("ack"))["seq"] == i
    hist = await (await client.get(f"/api/v1/nodes/{agent.node_id}/metrics", params={"series": "linux_host.cpu_percent", "start": base, "end": base + 100, "resolution": "raw"})).json()
    assert len(hist["series"]["linux_host.cpu_percent"]) == 20


async def test_new_spool_epoch_starts_sequence_again(client, fake_agent):
    agent = fake_agent()
    await agent.enroll()
    await agent.connect()
    await agent.send(agent.report(seq=5))
    await agent.expect("ack")
    await agent.ws.close()
    agent.epoch = "e2"  # the agent's spool file was recreated
    welcome = await agent.connect()
    assert welcome["last_seq"] == 0
    await agent.send(agent.report(seq=1, metrics={"linux_host.cpu_percent": 77.0}))
    await agent.expect("ack")
    detail = await (await client.get(f"/api/v1/nodes/{agent.node_id}")).json()
    assert detail["metrics"]["linux_host.cpu_percent"] == 77.0


async def test_enroll_refuses_reused_expired_revoked_and_malformed_tokens(client):
    hub = client.app[HUB_KEY]
    me = Identity.generate()
    token, _ = await create_join_token(hub.store, ttl=3600, uses=1)
    assert (await client.post(ENROLL_PATH, json=enrol_body(token, me))).status == 200
    second = await client.post(ENROLL_PATH, json=enrol_body(token, Identity.generate()))
    assert second.status == 403 and "used up" in (await second.json())["error"]

    expired, record = await create_join_token(hub.store, ttl=3600, uses=5)
    # Fast-forward: the token's expiry is checked against the hub's clock.
    await hub.store.use_join_token(record.token_id, "x", time.time())  # a wrong secret spends nothing
    hub_now = time.time
    try:
        time.time = lambda: hub_now() + 7200  # type: ignore[assignment]
        late = await client.post(ENROLL_PATH, json=enrol_body(expired, Identity.generate()))
    finally:
        time.time = hub_now  # type: ignore[assignment]
    assert late.status == 403

    revoked, record = await create_join_token(hub.store, ttl=3600, uses=5)
    await hub.store.revoke_join_token(record.token_id)
    assert (await client.post(ENROLL_PATH, json=enrol_body(revoked, Identity.generate()))).status == 403

    wrong_secret = revoked.rsplit("_", 1)[0] + "_nope"
    assert (await client.post(ENROLL_PATH, json=enrol_body(wrong_secret, me))).status == 403
    bad = await client.post(ENROLL_PATH, json=enrol_body("garbage", Identity.generate()))
    assert bad.status == 403 and "malformed" in (await bad.json())["error"]


async def test_enroll_validates_its_input(client):
    resp = await client.post(ENROLL_PATH, data=b"not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "JSON" in (await resp.json())["error"]
    resp = await client.post(ENROLL_PATH, json={"token": "rjt_a_b", "public_key": "AAAA"})
    assert resp.status == 400 and "public_key" in (await resp.json())["error"]
    resp = await client.post(ENROLL_PATH, json={"public_key": Identity.generate().public_key})
    assert resp.status == 400 and "token" in (await resp.json())["error"]
    resp = await client.post(ENROLL_PATH, data=b"x" * (70 * 1024), headers={"Content-Type": "application/json"})
    assert resp.status == 413


async def test_handshake_refuses_bad_signature_unknown_node_and_wrong_version(client, fake_agent):
    agent = fake_agent()
    await agent.enroll()
    answer = await agent.connect(sign_as=Identity.generate())
    assert answer["type"] == "error" and answer["code"] == "auth_failed"
    assert await agent.expect_closed() == 1008

    answer = await agent.connect(node_id="n000000000000")
    assert answer["code"] == "auth_failed"

    answer = await agent.connect(version=2)
    assert answer["code"] == "unsupported_version" and "upgrade" in answer["message"]


async def test_a_signature_for_another_hub_does_not_work_here(client, fake_agent):
    agent = fake_agent()
    await agent.enroll()
    agent.ws = await client.ws_connect("/api/v1/agent/ws")
    challenge = await agent.ws.receive_json()
    from roost.core import protocol

    sig = agent.identity.sign(protocol.auth_payload("h-other-hub", agent.node_id, challenge["nonce"]))
    await agent.send({"v": 1, "type": "hello", "node_id": agent.node_id, "signature": sig, "agent_version": "t", "epoch": "e"})
    assert (await agent.expect("error"))["code"] == "auth_failed"


async def test_bad_messages_get_clear_errors_and_the_connection_survives(client, fake_agent):
    agent = fake_agent()
    await agent.enroll()
    await agent.connect()
    await agent.send("{not json")
    err = await agent.expect("error")
    assert err["code"] == "bad_json"
    await agent.send({"v": 1, "type": "reboot"})
    err = await agent.expect("error")
    assert err["code"] == "unknown_type" and "report" in err["message"]
    await agent.send(agent.report(metrics={"linux_host.cpu_percent": "high"}))
    err = await agent.expect("error")
    assert err["code"] == "bad_message" and "metrics" in err["message"]
    await agent.send(json.dumps([1, 2]))
    assert (await agent.expect("error"))["code"] == "bad_message"
    await agent.ws.send_bytes(b"\x00\x01")
    assert (await agent.expect("error"))["code"] == "bad_message"
    # Still served:
    await agent.send(agent.report())
    assert (await agent.expect("ack"))["seq"] == agent.seq


async def test_too_many_bad_messages_close_the_connection(client, fake_agent):
    agent = fake_agent()
    await agent.enroll()
    await agent.connect()
    for _ in range(10):
        await agent.send("nope")
    assert await agent.expect_closed() == 1008


async def test_report_for_another_node_is_refused_and_closed(client, fake_agent):
    mallory, victim = fake_agent(), fake_agent()
    await mallory.enroll()
    await victim.enroll()
    await mallory.connect()
    report = mallory.report()
    report["node_id"] = victim.node_id
    await mallory.send(report)
    err = await mallory.expect("error")
    assert err["code"] == "wrong_node"
    assert await mallory.expect_closed() == 1008
    detail = await (await client.get(f"/api/v1/nodes/{victim.node_id}")).json()
    assert detail["metrics"] == {}


async def test_wrong_protocol_version_after_handshake_closes(client, fake_agent):
    agent = fake_agent()
    await agent.enroll()
    await agent.connect()
    await agent.send(agent.report(v=9))
    assert (await agent.expect("error"))["code"] == "unsupported_version"
    assert await agent.expect_closed() == 1008


async def test_oversized_messages_are_refused_and_others_keep_being_served(client, fake_agent):
    big, good = fake_agent(), fake_agent()
    await big.enroll()
    await good.enroll()
    await big.connect()
    await good.connect()
    padding = "x" * (MAX_MESSAGE_BYTES + 10)
    await big.send(big.report(data={"linux_host": {"pad": padding}}))
    err = await big.expect("error")
    assert err["code"] == "too_large" and str(MAX_MESSAGE_BYTES) in err["message"]
    assert await big.expect_closed() == 1009

    huge = fake_agent()
    await huge.enroll()
    await huge.connect()
    await huge.send("x" * (MAX_MESSAGE_BYTES * 2 + 10))
    assert await huge.expect_closed() == 1009

    await good.send(good.report())
    assert (await good.expect("ack"))["seq"] == 1


async def test_a_newer_connection_replaces_the_older(client, fake_agent):
    agent = fake_agent()
    await agent.enroll()
    await agent.connect()
    old = agent.ws
    await agent.connect()
    msg = await old.receive(timeout=5)
    assert msg.type.name == "CLOSE" and msg.data == 4000, msg
    await agent.send(agent.report())
    assert (await agent.expect("ack"))["seq"] == 1


async def test_revoking_a_node_closes_its_socket_and_refuses_reconnects(client, fake_agent):
    agent = fake_agent()
    await agent.enroll()
    await agent.connect()
    hub = client.app[HUB_KEY]
    assert await hub.revoke_node(agent.node_id)
    assert await agent.expect_closed(timeout=1) == 4003
    answer = await agent.connect()
    assert answer["code"] == "auth_failed"


async def test_hello_must_come_in_time(client, fake_agent, monkeypatch):
    from roost.core.hub import gateway

    monkeypatch.setattr(gateway, "HANDSHAKE_TIMEOUT", 0.2)
    agent = fake_agent()
    agent.ws = await client.ws_connect("/api/v1/agent/ws")
    await agent.expect("challenge")
    err = await agent.expect("error")
    assert err["code"] == "auth_failed" and "hello" in err["message"]


async def test_liveness_goes_stale_then_offline_and_heartbeats_count(make_hub, agent_for):
    client = await make_hub(stale_after="1s", offline_after="2s")
    agent = agent_for(client)
    await agent.enroll()

    async def status() -> str:
        return (await (await client.get(f"/api/v1/nodes/{agent.node_id}")).json())["node"]["status"]

    assert await status() == "new"
    await agent.connect()
    await agent.send(agent.report(interval=0.2))
    await agent.expect("ack")
    assert await status() == "online"
    await asyncio.sleep(1.2)
    assert await status() == "stale"
    await agent.send({"v": 1, "type": "heartbeat"})
    await asyncio.sleep(0.1)
    assert await status() == "online"
    await asyncio.sleep(2.2)
    assert await status() == "offline"
    nodes = (await (await client.get("/api/v1/nodes")).json())["nodes"]
    assert [n["status"] for n in nodes if n["id"] == agent.node_id] == ["offline"]


async def test_a_node_that_reports_rarely_is_judged_by_its_own_interval(client, fake_agent):
    hub = client.app[HUB_KEY]
    agent = fake_agent()
    await agent.enroll()
    await agent.connect()
    await agent.send(agent.report(interval=60))  # e.g. a cron push once a minute
    await agent.expect("ack")
    seen = hub._last_seen[agent.node_id]
    assert hub.node_status(agent.node_id, seen + 90) == "online"  # default stale_after is 30 s, but 3 intervals is 180 s
    assert hub.node_status(agent.node_id, seen + 200) == "stale"
    assert hub.node_status(agent.node_id, seen + 400) == "offline"


# ------------------------------------------------------ proof of possession


async def test_enrolment_with_another_nodes_key_and_ones_own_csr_is_refused(client, caplog):
    from cryptography import x509

    from roost.core.tls import client_key_and_csr, identity_csr

    hub = client.app[HUB_KEY]
    victim = Identity.generate()
    token, _ = await create_join_token(hub.store, ttl=3600, uses=1)
    enrolled = await client.post(ENROLL_PATH, json=enrol_body(token, victim, hostname="victim"))
    victim_id = (await enrolled.json())["node_id"]

    attacker = Identity.generate()
    second, record = await create_join_token(hub.store, ttl=3600, uses=3)
    # The attacker's own CSR (its own ECDSA key, as agents made before) and the victim's public key.
    _, own_csr = client_key_and_csr("roost-agent")
    for body in (
        enrol_body(second, attacker, public_key=victim.public_key, csr=own_csr.decode()),  # signed, but not by the victim's key
        enrol_body(second, attacker, public_key=victim.public_key, csr=identity_csr(attacker.private_key, "x").decode()),
        {k: v for k, v in enrol_body(second, attacker, public_key=victim.public_key, csr=own_csr.decode()).items() if k != "signature"},
    ):
        resp = await client.post(ENROLL_PATH, json=body)
        answer = await resp.json()
        assert resp.status in (400, 403), answer
        assert "node_id" not in answer and "client_cert" not in answer
        assert "signed by the key it enrols" in answer["error"]
    # The victim's key holder signing for a CSR of another key is refused too: a certificate is only for the enrolled key.
    resp = await client.post(ENROLL_PATH, json=enrol_body(second, victim, csr=own_csr.decode()))
    assert resp.status == 403 and "certificate request must be for the key being enrolled" in (await resp.json())["error"]
    # None of it spent a use of the token, and every refusal is in the audit log.
    assert [t.uses_left for t in await hub.store.list_join_tokens() if t.token_id == record.token_id] == [3]
    refused = [e for e in await hub.store.list_audit(limit=50) if e.action == "node.enrolment_refused"]
    assert {e.details["why"] for e in refused} == {
        "enrolment is not signed by the key it enrols",
        "not signed by the key it enrols",
        "the certificate request must be for the key being enrolled (made with the node key)",
    }
    assert all(e.actor == f"token:{record.token_id}" for e in refused)

    # The real owner of a key gets its node id and a certificate for exactly that key.
    mine = Identity.generate()
    resp = await client.post(ENROLL_PATH, json=enrol_body(second, mine, csr=identity_csr(mine.private_key, "roost-agent").decode()))
    answer = await resp.json()
    assert resp.status == 200 and answer["node_id"] != victim_id and answer["hub_key"] == hub.identity.public_key
    cert = x509.load_pem_x509_certificate(answer["client_cert"].encode())
    from cryptography.hazmat.primitives import serialization

    assert cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == mine.private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


async def test_an_enrolment_signed_long_ago_or_for_another_token_is_refused(client):
    hub = client.app[HUB_KEY]
    me = Identity.generate()
    token, _ = await create_join_token(hub.store, ttl=3600, uses=2)
    old = enrol_body(token, me)
    old["timestamp"] -= 3600
    old["signature"] = me.sign(protocol.enroll_payload(token, me.public_key, "", old["timestamp"], old["nonce"]))
    resp = await client.post(ENROLL_PATH, json=old)
    assert resp.status == 403 and "away from the hub's clock" in (await resp.json())["error"]
    other, _ = await create_join_token(hub.store, ttl=3600, uses=1)
    moved = {**enrol_body(other, me), "token": token}  # a signature made for another token
    resp = await client.post(ENROLL_PATH, json=moved)
    assert resp.status == 403 and "not signed" in (await resp.json())["error"]


async def test_a_join_token_enrolment_claiming_a_known_host_is_flagged(client, caplog):
    hub = client.app[HUB_KEY]
    token, _ = await create_join_token(hub.store, ttl=3600, uses=5)
    first = await (await client.post(ENROLL_PATH, json=enrol_body(token, Identity.generate(), hostname="nas"))).json()
    caplog.set_level(logging.WARNING)
    again = await (await client.post(ENROLL_PATH, json=enrol_body(token, Identity.generate(), hostname="NAS."))).json()
    assert again["node_id"] != first["node_id"]
    [entry] = [e for e in await hub.store.list_audit(limit=50) if e.action == "node.enrolled" and e.target == f"node:{again['node_id']}"]
    assert entry.details["key_changed_node"] == first["node_id"]
    assert "KEY CHANGED" in caplog.text
    # A second agent on that host with a name of its own is a new node, not a key change.
    named = await (await client.post(ENROLL_PATH, json=enrol_body(token, Identity.generate(), hostname="nas", name="nas-backup"))).json()
    [entry] = [e for e in await hub.store.list_audit(limit=50) if e.action == "node.enrolled" and e.target == f"node:{named['node_id']}"]
    assert "key_changed_node" not in entry.details and named["name"] == "nas-backup"


async def test_the_hub_proves_its_identity_on_every_connect(client, fake_agent):
    hub = client.app[HUB_KEY]
    agent = fake_agent()
    await agent.enroll()
    assert oct((hub.config.data_dir / "hub_key.pem").stat().st_mode & 0o777) == "0o600"
    for _ in range(2):
        agent.ws = await client.ws_connect("/api/v1/agent/ws")
        challenge = await agent.ws.receive_json(timeout=5)
        agent_nonce = "a" * 32
        await agent.send(
            {
                "v": 1, "type": "hello", "node_id": agent.node_id, "agent_version": "test", "epoch": "e1", "agent_nonce": agent_nonce,
                "signature": agent.identity.sign(protocol.auth_payload(challenge["hub_id"], agent.node_id, challenge["nonce"])),
            }
        )
        welcome = await agent.expect("welcome")
        proof = protocol.hub_proof_payload("connect", hub.hub_id, agent.node_id, challenge["nonce"], agent_nonce)
        assert welcome["hub_key"] == hub.identity.public_key and verify(hub.identity.public_key, welcome["hub_signature"], proof)
        await agent.ws.close()
    resp = await client.get("/api/v1/hub-identity", params={"nonce": "b" * 32})
    answer = await resp.json()
    assert verify(answer["hub_key"], answer["signature"], protocol.hub_proof_payload("identity", hub.hub_id, "", "", "b" * 32))
