"""A real hub and one real agent in-process, joined by a real WebSocket, to run built-in actions end to end.

The agent loads only the built-in integrations a test names (every other one
is disabled), with the config, grants and ceiling the test gives.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer
from support import free_port, until
from support_hub import hub_config

from roost.agent.runtime import AgentRuntime
from roost.agent.uplink import Backoff, WebSocketUplink
from roost.core import protocol
from roost.core.capabilities import Ceiling
from roost.core.config import AgentSettings
from roost.core.hub import jobs as jobs_module
from roost.core.hub.app import HUB_KEY, create_app
from roost.core.plugins import discover

FINAL_STATES = ("succeeded", "failed", "timed_out", "cancelled", "refused")


def only(integrations: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """An agent's integrations config with every built-in disabled except those given."""
    config: dict[str, dict[str, Any]] = {domain: {"enabled": False} for domain in discover(entry_points=False)}
    config.update(integrations)
    return config


class ActionRig:
    """A hub on a free port and one agent connected to it, granted ``grants`` under ``ceiling``."""

    def __init__(self, tmp: Path, integrations: dict[str, dict[str, Any]], *, grants: list[str], ceiling: Ceiling | None = None, **hub: Any) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.config = hub_config(tmp, **hub)
        self.integrations = only(integrations)
        self.grants = grants
        self.ceiling = ceiling or Ceiling(mode="execute")
        self.server: TestServer | None = None
        self.rt: AgentRuntime | None = None
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.token = ""

    @property
    def hub(self):
        return self.server.app[HUB_KEY]

    @property
    def node_id(self) -> str:
        return self.rt.node_id

    async def start(self, *, facts: dict[str, Any] | None = None, api_role: str | None = None) -> ActionRig:
        """Start the hub (with a user of ``api_role`` and an API token for ``api()``, if given), then the agent."""
        if api_role is not None:
            from support_auth import seed_user

            self.token = await seed_user(self.config, api_role, api_role)
        self.server = TestServer(create_app(self.config), host="127.0.0.1", port=self.port)
        await self.server.start_server()
        self.rt = AgentRuntime(
            data_dir=self.tmp / "agent",
            settings=AgentSettings(interval=0.5, heartbeat=1, ceiling=self.ceiling),
            integrations_config=self.integrations,
            entry_points=False,
        )
        node = await self.hub.add_node(public_key=self.rt.identity.public_key, hostname="box", name="box", facts=facts or {}, grants=self.grants)
        self.rt.node_id = node.node_id
        await self.rt.start()
        self.task = asyncio.create_task(self.rt.run(WebSocketUplink(f"http://127.0.0.1:{self.port}", backoff=Backoff(0.05, 0.2)), self.stop))
        await until(self._ready, what="the agent's actions on the hub")
        return self

    async def _ready(self):
        return self.node_id in self.hub.jobs.channels and self.node_id in self.hub.jobs.actions

    async def api(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """Call the hub's HTTP API with the seeded user's token; returns (status, JSON body)."""
        import aiohttp

        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"}) as session:
            async with session.request(method, f"http://127.0.0.1:{self.port}{path}", **kwargs) as resp:
                return resp.status, await resp.json()

    def status(self, domain: str) -> dict[str, Any]:
        return next(s for s in self.rt.manager.statuses() if s["domain"] == domain)

    def actions(self) -> dict[str, dict[str, Any]]:
        """What the hub was told this node offers, by action name."""
        return self.hub.jobs.actions.get(self.node_id, {})

    async def final(self, job_id: str, timeout: float = 15.0):
        async def done():
            job = await self.hub.store.get_job(job_id)
            return job if job is not None and job.state in FINAL_STATES else None

        return await until(done, timeout, f"job {job_id} to finish")

    async def run(self, action: str, params: dict[str, Any], timeout: float = 15.0):
        """Create a job through the hub's own checks and wait for its end."""
        job = await self.hub.jobs.create(self.node_id, action, params, actor="user:test")
        return await self.final(job.job_id, timeout)

    async def raw(self, action: str, params: dict[str, Any], timeout: float = 15.0):
        """Send a job straight to the agent, as a hub that skipped its own checks would: the agent must still refuse."""
        from roost.core.store.jobs import Job

        now = time.time()
        job = Job(
            job_id=jobs_module.new_job_id(),
            node_id=self.node_id,
            action=action,
            params=params,
            state="dispatched",
            created_by="test",
            created_at=now,
            timeout=10,
            next_attempt_at=now + 3600,
        )
        await self.hub.store.add_job(job)
        send = self.hub.jobs.channels[self.node_id]
        await send(protocol.encode("job", job_id=job.job_id, attempt=1, action=action, params=params, timeout=10))
        return await self.final(job.job_id, timeout)

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.stop.set()
            await asyncio.wait_for(self.task, 10)
        if self.rt is not None:
            await self.rt.stop()
        if self.server is not None:
            await self.server.close()


def make_ctx(config: dict[str, Any], data: dict[str, Any] | None = None, domain: str = "test"):
    """The ActionContext a handler gets from the agent's executor, for calling a handler directly."""
    from roost.core.actions import ActionContext

    async def progress(message: str, percent: float | None = None) -> None:
        return None

    return ActionContext(domain=domain, job_id="jtest", node_id="ntest", config=config, data=data if data is not None else {}, progress=progress)


async def set_up(domain: str, config: dict[str, Any], tmp: Path):
    """Load and set up one built-in integration the way the agent does; returns the manager and the integration."""
    from roost.core.const import ROLE_AGENT
    from roost.core.plugins import IntegrationManager

    manager = IntegrationManager(role=ROLE_AGENT, config=only({domain: config}), data_dir=tmp, entry_points=False, only=[domain])
    manager.load()
    await manager.setup_all()
    return manager, manager.integrations[domain]
