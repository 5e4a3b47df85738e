"""A real hub and one real agent in one process, over a real WebSocket, running the actions of a test integration."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from aiohttp.test_utils import TestServer
from support import free_port, until
from support_hub import hub_config

from roost.agent.runtime import AgentRuntime
from roost.agent.uplink import Backoff, WebSocketUplink
from roost.core.capabilities import Ceiling
from roost.core.config import AgentSettings
from roost.core.hub.app import HUB_KEY, create_app

FINAL_STATES = ("succeeded", "failed", "timed_out", "cancelled", "refused")


@dataclass(frozen=True)
class IntegrationSource:
    """A custom integration for the agent: its domain, its name and the source of its `__init__.py`.

    Its config is `{"counter_dir": ...}`, a folder where actions count their runs.
    """

    domain: str
    name: str
    source: str

    def write(self, data_dir: Path) -> None:
        folder = data_dir / "custom_integrations" / self.domain
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {"domain": self.domain, "name": self.name, "version": "1.0", "roles": ["agent"]}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        (folder / "__init__.py").write_text(self.source)


async def truthy(value):
    """For `until`, which wants an awaitable: the value itself."""
    return value


async def agent_ready(hub, node_id: str):
    return node_id in hub.jobs.channels and hub.jobs.actions.get(node_id)


async def job_finished(hub, job_id: str):
    job = await hub.store.get_job(job_id)
    return job if job is not None and job.state in FINAL_STATES else None


class HubAgentRig:
    """A hub on a fixed port (so it can be restarted) and one agent connected to it.

    The agent keeps its node across restarts: the first `start_agent` adds the node
    with `grants`, later ones reuse it.
    """

    final_timeout = 15.0

    def __init__(
        self,
        tmp: Path,
        integration: IntegrationSource,
        *,
        grants: list[str],
        hostname: str = "box",
        ceiling: Ceiling | None = None,
        operator_keys: list[str] | None = None,
    ) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.config = hub_config(tmp)
        self.counters = tmp / "counters"
        self.counters.mkdir()
        self.agent_dir = tmp / "agent"
        self.integration = integration
        integration.write(self.agent_dir)
        self.grants = grants
        self.hostname = hostname
        self.ceiling = ceiling or Ceiling(mode="execute")
        self.operator_keys = operator_keys or []
        self.server: TestServer | None = None
        self.rt: AgentRuntime | None = None
        self.node_id = ""
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    @property
    def hub(self):
        return self.server.app[HUB_KEY]

    async def start_hub(self) -> None:
        self.server = TestServer(create_app(self.config), host="127.0.0.1", port=self.port)
        await self.server.start_server()

    async def start_agent(self, node_id: str | None = None) -> None:
        self.rt = AgentRuntime(
            data_dir=self.agent_dir,
            settings=AgentSettings(interval=0.5, heartbeat=1, ceiling=self.ceiling, operator_keys=list(self.operator_keys)),
            integrations_config={"linux_host": {"enabled": False}, self.integration.domain: {"counter_dir": str(self.counters)}},
            entry_points=False,
        )
        self.node_id = node_id or self.node_id
        if not self.node_id:
            node = await self.hub.add_node(public_key=self.rt.identity.public_key, hostname=self.hostname, name=self.hostname, facts={}, grants=self.grants)
            self.node_id = node.node_id
        self.rt.node_id = self.node_id
        await self.rt.start()
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.rt.run(WebSocketUplink(f"http://127.0.0.1:{self.port}", backoff=Backoff(0.05, 0.2)), self.stop))
        await until(lambda: agent_ready(self.hub, self.node_id), what="the agent's actions on the hub")

    async def stop_agent(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)
        await self.rt.stop()

    async def job(self, job_id: str):
        return await self.hub.store.get_job(job_id)

    async def final(self, job_id: str, timeout: float | None = None):
        return await until(lambda: job_finished(self.hub, job_id), timeout or self.final_timeout, f"job {job_id} to finish")

    def runs(self, name: str) -> int:
        """How many times the actions counted `name` in the counter folder."""
        path = self.counters / name
        return int(path.read_text()) if path.exists() else 0

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            await HubAgentRig.stop_agent(self)
        if self.server is not None:
            await self.server.close()
