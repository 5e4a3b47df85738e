"""The real hub app on a real SQLite file, as an admin (``make_hub(as_role=..., **hub settings)`` for another)."""

from __future__ import annotations

from typing import Any

import pytest
from support_auth import seed_user
from support_hub import hub_config

from roost.core.hub.app import create_app


@pytest.fixture
def make_hub(aiohttp_client, tmp_path):
    async def make(*, as_role: str = "admin", mqtt: dict[str, Any] | None = None, **hub: Any):
        config = hub_config(tmp_path, **hub)
        if mqtt is not None:
            config.mqtt = mqtt
        token = await seed_user(config, as_role, as_role)
        return await aiohttp_client(create_app(config), headers={"Authorization": f"Bearer {token}"})

    return make


@pytest.fixture
async def client(make_hub):
    return await make_hub()
