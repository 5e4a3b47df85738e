"""A real hub app on a real SQLite file, with helpers to enrol and connect agents the way the wire protocol says."""

from __future__ import annotations

from typing import Any

import pytest
from support_hub import FakeAgent, hub_config

from roost.core.hub.app import create_app


@pytest.fixture
def make_hub(aiohttp_client, tmp_path):
    async def make(**hub: Any):
        client = await aiohttp_client(create_app(hub_config(tmp_path, **hub)))
        return client

    return make


@pytest.fixture
async def client(make_hub):
    return await make_hub()


@pytest.fixture
def fake_agent(client):
    def make() -> FakeAgent:
        return FakeAgent(client)

    return make


@pytest.fixture
def agent_for():
    return FakeAgent
