"""What a node claims about itself grants it nothing: made-up capabilities and hub-only facts, tried as an attacker would."""

from __future__ import annotations

import json

from support_hub import FakeAgent

from roost.core import protocol
from roost.core.hub.app import HUB_KEY

MADE_UP = ["secrets.read", "anything.read.all", "root.readonly", "host.metrics.read.everything"]
REAL = ["host.metrics.read", "docker.read", "docker.manage"]


async def hello_claiming(agent: FakeAgent, capabilities: list[str], facts: dict | None = None) -> dict:
    """Connect with a hello that claims these capabilities and facts."""
    agent.ws = await agent.client.ws_connect("/api/v1/agent/ws")
    challenge = await agent.ws.receive_json(timeout=5)
    hello = {
        "v": 1,
        "type": "hello",
        "node_id": agent.node_id,
        "signature": agent.identity.sign(protocol.auth_payload(challenge["hub_id"], agent.node_id, challenge["nonce"])),
        "agent_version": "test",
        "epoch": "e1",
        "hostname": "box",
        "facts": facts or {"os": "Testix"},
        "capabilities": capabilities,
    }
    await agent.ws.send_str(json.dumps(hello))
    assert (await agent.ws.receive_json(timeout=5))["type"] == "welcome"
    return await agent.expect("grants")


async def test_a_token_without_grants_never_grants_a_made_up_capability(client, fake_agent):
    agent = fake_agent()
    await agent.enroll()
    grants = await hello_claiming(agent, [*MADE_UP, *REAL])
    assert grants["grants"] == ["docker.read", "host.metrics.read"]  # known and read-only: nothing it made up
    stored = await client.app[HUB_KEY].store.get_grants(agent.node_id)
    assert stored.grants == ["docker.read", "host.metrics.read"]

    # Shown to the admin, marked as unknown, granted to nobody.
    view = await (await client.get(f"/api/v1/nodes/{agent.node_id}/grants")).json()
    offered = {o["name"]: o for o in view["offered"]}
    assert set(MADE_UP) <= set(offered)
    for name in MADE_UP:
        assert offered[name]["known"] is False and offered[name]["granted"] is False and "not defined by any Roost integration" in offered[name]["description"]
    assert offered["host.metrics.read"]["known"] is True
    assert not set(MADE_UP) & set(view["effective"])

    # Claiming them again on the next connect changes nothing.
    await agent.ws.close()
    again = FakeAgent(client, identity=agent.identity, node_id=agent.node_id, epoch="e2")
    assert (await hello_claiming(again, MADE_UP))["grants"] == ["docker.read", "host.metrics.read"]


async def test_an_admin_still_chooses_what_a_node_gets(client, fake_agent):
    agent = fake_agent()
    await agent.enroll()
    await hello_claiming(agent, MADE_UP)
    assert (await client.app[HUB_KEY].store.get_grants(agent.node_id)).grants == []
    # A custom integration's own capability is granted when an admin names it, and only then.
    resp = await client.put(f"/api/v1/nodes/{agent.node_id}/grants", json={"grants": ["ticker.read"]})
    assert resp.status == 200
    assert (await agent.expect("grants"))["grants"] == ["ticker.read"]


async def test_a_node_claiming_to_push_is_still_an_agent_node(client, fake_agent):
    """source=push would make the dashboard hide a node's actions and let a push token write into an agent's node."""
    hub = client.app[HUB_KEY]
    agent = fake_agent()
    await agent.enroll(facts={"source": "push", "os": "Testix"})
    assert "source" not in hub.node(agent.node_id).facts
    await hello_claiming(agent, ["docker.read"], facts={"source": "push", "os": "Testix"})
    node = hub.node(agent.node_id)
    assert "source" not in node.facts and node.facts["os"] == "Testix"
    detail = await (await client.get(f"/api/v1/nodes/{agent.node_id}")).json()
    assert "source" not in detail["node"]["facts"]

    # An admin cannot be led into minting a push token for it either.
    resp = await client.post("/api/v1/push-tokens", json={"node_id": agent.node_id})
    assert resp.status in (400, 409), await resp.text()
    assert "runs an agent" in (await resp.json())["error"]

    # A node the hub made for pushing keeps its mark.
    made = await client.post("/api/v1/push-tokens", json={"name": "nas-script"})
    assert made.status == 201, await made.text()
    assert hub.node((await made.json())["node_id"]).facts["source"] == "push"


async def test_grants_made_before_a_capability_split_keep_what_they_allowed(tmp_path):
    """An older hub's host.metrics.read covered the process list; after the upgrade it still does, once, audited."""
    from support_hub import hub_config

    from roost.core.hub.app import Hub
    from roost.core.store.sqlite import SQLiteStore

    config = hub_config(tmp_path)
    store = SQLiteStore(config.store_path)
    first = Hub(config, store)
    await first.open()
    old = await first.add_node(public_key=FakeAgent(None).identity.public_key, hostname="old", name="old", facts={}, grants=["host.metrics.read", "network.probe"])
    bare = await first.add_node(public_key=FakeAgent(None).identity.public_key, hostname="bare", name="bare", facts={}, grants=["docker.read"])
    await store.set_meta("grants_split_v1", "")  # as a hub from before the split left it
    await store.close()

    store = SQLiteStore(config.store_path)
    hub = Hub(config, store)
    await hub.open()
    try:
        assert (await store.get_grants(old.node_id)).grants == ["host.metrics.read", "host.processes.read", "network.probe", "network.probe.read"]
        assert (await store.get_grants(bare.node_id)).grants == ["docker.read"]
        # Once only: an admin who takes it away later is not overruled at the next start.
        await store.set_grants(old.node_id, ["host.metrics.read"], now=1.0)
        await store.close()
        store = SQLiteStore(config.store_path)
        hub = Hub(config, store)
        await hub.open()
        assert (await store.get_grants(old.node_id)).grants == ["host.metrics.read"]
    finally:
        await store.close()
