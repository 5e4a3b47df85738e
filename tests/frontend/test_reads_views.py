"""The node page says what its agent withholds and which capability to grant, and when a node is over its series limits."""

from __future__ import annotations

import copy

import pytest
from aiohttp import web
from roost import frontend
from roost.core.hub.app import HUB_KEY

EVIL = '<script>alert("x")</script>'
WITHHELD = {
    "linux_host": {
        "cpu": "host.metrics.read",
        "disks": "host.metrics.read",
        "metrics": "host.metrics.read",
        "network": "network.info.read",
        "facts.macs": "network.info.read",
        EVIL: "host.metrics.read",
    },
    "docker": {"*": "docker.read", "metrics": "docker.read"},
}
LIMITS = {"message": "40 new metric series refused: this node has 3000 series and the hub allows 3000 per node ([hub] max_series_per_node)"}


@pytest.fixture
async def client(aiohttp_client, samples):
    state = {"linux_host": {k: v for k, v in samples.LINUX_HOST_STATE.items() if k not in ("cpu", "disks", "network")}}
    detail = samples.node_detail(state=state)
    detail["node"]["withheld"] = copy.deepcopy(WITHHELD)
    detail["node"]["limits"] = LIMITS
    for status in detail["node"]["integrations"]:
        if status["domain"] in WITHHELD:
            status["withheld"] = copy.deepcopy(WITHHELD[status["domain"]])
    hub = samples.FakeHub(details={samples.SUMMARY["id"]: detail})
    app = web.Application()
    app[HUB_KEY] = hub
    frontend.setup(app)
    client = await aiohttp_client(app)
    client.node_id = samples.SUMMARY["id"]
    return client


async def test_the_node_page_names_what_is_not_granted_and_what_to_grant(client):
    resp = await client.get(f"/nodes/{client.node_id}")
    html = await resp.text()
    assert resp.status == 200
    assert "Not granted" in html
    assert "cpu, disks, metrics" in html and "grant <code>host.metrics.read</code>" in html
    assert "facts.macs, network — not granted — grant <code>network.info.read</code>" in html
    assert "its state, metrics — not granted — grant <code>docker.read</code>" in html
    # The sections that would show the data say why they are empty.
    assert "No disk data reported." not in html and "No network data reported." not in html
    assert html.count("to see it.") >= 2
    assert EVIL not in html and "&lt;script&gt;" in html
    assert "Over the hub" in html and "max_series_per_node" in html


async def test_the_integrations_page_names_the_capability_to_grant(client):
    resp = await client.get("/integrations")
    html = await resp.text()
    assert resp.status == 200
    assert "Not granted — grant <code>docker.read</code>" in html
    assert "<code>host.metrics.read</code>, <code>network.info.read</code>" in html


async def test_a_made_up_capability_is_shown_as_unknown_and_not_ticked(aiohttp_client, tmp_path):
    import time

    from support_auth import seed_user
    from support_hub import hub_config

    from roost.core.hub.app import create_app
    from roost.core.identity import Identity
    from roost.core.store import PairingRequest

    config = hub_config(tmp_path)
    token = await seed_user(config, "alice", "admin")
    client = await aiohttp_client(create_app(config))
    now = time.time()
    request = PairingRequest(
        request_id="p0123456789ab", public_key=Identity.generate().public_key, hostname="box", code="ABCD-EFGH",
        created_at=now, expires_at=now + 600, facts={}, offered=["host.metrics.read", "secrets.read"],
        ceiling={"mode": "read-only", "allow": ["*"], "deny": []}, peer="127.0.0.1",
    )
    await client.app[HUB_KEY].store.add_pairing_request(request, max_pending=20, now=now)
    resp = await client.get("/pairing", headers={"Authorization": f"Bearer {token}"})
    html = await resp.text()
    assert resp.status == 200, html[:500]
    secret_row = html[html.index('data-capability="secrets.read"'):]
    secret_row = secret_row[: secret_row.index("</li>")]
    assert "unknown to Roost" in secret_row and "checked" not in secret_row
    metrics_row = html[html.index('data-capability="host.metrics.read"'):]
    metrics_row = metrics_row[: metrics_row.index("</li>")]
    assert "unknown to Roost" not in metrics_row and " checked" in metrics_row
