"""Fixtures for the docker tests: a private real dockerd (tests/docker_engine.py), the integration through the real plugin kernel, action contexts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from docker_engine import DockerEngine, docker_containers, docker_engine  # noqa: F401 - fixtures

from roost.core.actions import ActionContext
from roost.core.plugins import IntegrationManager

DOMAIN = "docker"


@pytest.fixture
async def start_docker(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[IntegrationManager]]]:
    """Load the docker integration through the real kernel with a config table, set it up, shut it down after."""
    managers: list[IntegrationManager] = []

    async def start(config: dict[str, Any] | None = None) -> IntegrationManager:
        manager = IntegrationManager(
            role="agent", config={DOMAIN: config or {}}, data_dir=tmp_path / "data", only=[DOMAIN], entry_points=False
        )
        manager.load()
        await manager.setup_all()
        managers.append(manager)
        return manager

    try:
        yield start
    finally:
        for manager in managers:
            await manager.shutdown_all()


@pytest.fixture
def action_ctx(docker_engine: DockerEngine) -> Callable[..., ActionContext]:
    """An ActionContext for the docker handlers, recording progress messages in ctx.extra["progress"]."""
    contexts: list[ActionContext] = []

    def make(*, envelope: dict[str, Any] | None = None, data: dict[str, Any] | None = None, **config: Any) -> ActionContext:
        progress: list[tuple[str, float | None]] = []

        async def report(message: str, percent: float | None = None) -> None:
            progress.append((message, percent))

        ctx = ActionContext(
            domain=DOMAIN,
            job_id="job-test",
            node_id="n-test",
            config={"url": docker_engine.url, **config},
            data=data if data is not None else {},
            progress=report,
            envelope=envelope,
            extra={"progress": progress},
        )
        contexts.append(ctx)
        return ctx

    yield make
    from roost.integrations.docker.actions import close_action_client

    for ctx in contexts:
        close_action_client(ctx.data)
