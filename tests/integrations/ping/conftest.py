"""A real hub app on a real SQLite file with the ping integration, users of each role and one node."""

from __future__ import annotations

import pytest
from support_auth import seed_user
from support_hub import hub_config

from roost.core.hub.app import HUB_KEY, create_app
from roost.core.identity import Identity

ROLES = ("viewer", "operator", "admin")


@pytest.fixture
def make_ping_hub(aiohttp_client, tmp_path):
    async def make(**hub):
        config = hub_config(tmp_path, **hub)
        tokens = {role: await seed_user(config, role, role) for role in ROLES}
        client = await aiohttp_client(create_app(config))
        node = await client.app[HUB_KEY].add_node(public_key=Identity.generate().public_key, hostname="nas", name="nas", facts={}, grants=[])
        client.roost_tokens = tokens
        client.roost_node = node.node_id
        return client

    return make


@pytest.fixture
async def ping_hub(make_ping_hub):
    return await make_ping_hub()
