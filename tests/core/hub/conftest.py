"""A real hub app on a real SQLite file, with helpers to enrol and connect agents the way the wire protocol says.

``client`` acts as an admin: it sends an admin's API token on every request
(agents' endpoints ignore it; they authenticate on their own). ``make_hub``
takes ``as_role`` ("admin", "operator", "viewer") or ``as_role=None`` for a
client that is not logged in at all; ``client.roost_token`` is its token.
"""

from __future__ import annotations

from typing import Any

import pytest
from support_auth import seed_user
from support_hub import FakeAgent, hub_config

from roost.core.hub.app import create_app


@pytest.fixture
def make_hub(aiohttp_client, tmp_path):
    async def make(*, as_role: str | None = "admin", **hub: Any):
        config = hub_config(tmp_path, **hub)
        token = await seed_user(config, as_role, as_role) if as_role else ""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = await aiohttp_client(create_app(config), headers=headers)
        client.roost_token = token
        return client

    return make


@pytest.fixture
async def client(make_hub):
    return await make_hub()


@pytest.fixture
async def anon_client(make_hub):
    """The same kind of hub, with no one logged in."""
    return await make_hub(as_role=None)


@pytest.fixture
def fake_agent(client):
    def make() -> FakeAgent:
        return FakeAgent(client)

    return make


@pytest.fixture
def agent_for():
    return FakeAgent
