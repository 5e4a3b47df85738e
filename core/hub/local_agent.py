"""The hub's in-process agent for its own host: the same runtime as `roost agent`, delivering through the ingest pipeline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from roost.agent.runtime import AgentRuntime
from roost.core import protocol
from roost.core.capabilities import default_grants
from roost.core.store import Report

from .state import HUB_KEY, Hub

_LOGGER = logging.getLogger(__name__)

LOCAL_DIR = "local_agent"
BATCH = 200


class LocalUplink:
    """Hands spooled reports straight to the ingest pipeline, through the same validation as the socket."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def run(self, rt: AgentRuntime) -> None:
        await rt.first_cycle.wait()
        hello = rt.hello()
        node = await self.hub.hello(rt.node_id, {**hello, "facts": rt.facts})
        acked = node.last_seq if node.epoch == rt.spool.epoch else 0
        if acked:
            await rt.spool.delete_upto(acked)
        await self._connect_jobs(rt)
        while True:
            rows = await rt.spool.after(acked, BATCH)
            if not rows:
                rt.spooled.clear()
                rows = await rt.spool.after(acked, BATCH)
            if not rows:
                await rt.spooled.wait()
                continue
            for row in rows:
                message = protocol.parse(rt.report_message(row), protocol.AGENT_MESSAGES)
                report = Report(
                    node_id=rt.node_id,
                    seq=row.seq,
                    epoch=rt.spool.epoch,
                    collected_at=message["collected_at"],
                    received_at=time.time(),
                    data=message["data"],
                    metrics=message["metrics"],
                    integrations=message["integrations"],
                    interval=message.get("interval"),
                    spool_dropped=message["spool_dropped"],
                )
                report, _ = await self.hub.admit(report)
                await (await self.hub.ingestor.submit(report))
                acked = row.seq
            await rt.spool.delete_upto(acked)


    async def _connect_jobs(self, rt: AgentRuntime) -> None:
        """Jobs for the hub's own host go through the same messages and checks as a remote agent's, in-process."""
        node_id = rt.node_id
        hub_messages = {
            protocol.TYPE_JOB: protocol.JOB_SCHEMA,
            protocol.TYPE_JOB_CANCEL: protocol.JOB_CANCEL_SCHEMA,
            protocol.TYPE_JOB_ACK: protocol.JOB_ACK_SCHEMA,
        }

        async def to_agent(text: str) -> None:
            await rt.executor.handle(protocol.parse(text, hub_messages))

        async def to_hub(text: str) -> None:
            await self.hub.jobs.handle(node_id, protocol.parse(text, protocol.AGENT_MESSAGES))

        rt.set_grants((await self.hub.store.get_grants(node_id)).grants)
        self.hub.local_grants = rt.set_grants
        for domain, settings in sorted((await self.hub.agent_settings(node_id)).items()):
            rt.set_integration_settings(domain, settings)
        self.hub.local_settings = rt.set_integration_settings
        self.hub.jobs.attach(node_id, to_agent, rt.hello()["actions"])
        await rt.executor.connected(to_hub)


async def local_agent_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB_KEY]
    settings = hub.config.local_agent
    rt = AgentRuntime(
        data_dir=hub.config.data_dir / LOCAL_DIR,
        settings=settings,
        integrations_config=hub.config.integrations,
    )
    node = await hub.store.get_node_by_key(rt.identity.public_key)
    if node is None:
        import socket

        hostname = socket.gethostname()
        node = await hub.add_node(public_key=rt.identity.public_key, hostname=hostname, name=settings.name or hostname, facts=rt.facts, local=True)
        _LOGGER.info("registered this host as local node %s", node.node_id)
    hub.local_node_id = rt.node_id = node.node_id
    await rt.start()
    if not (await hub.store.get_grants(node.node_id)).updated_at:
        # The hub's own host starts with the read-only part of what it offers.
        await hub.store.set_grants(node.node_id, default_grants(rt.manager.capabilities()), now=time.time())
    # Known before the first cycle, so the first report already carries what the grant allows.
    rt.set_grants((await hub.store.get_grants(node.node_id)).grants)
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(LocalUplink(hub), stop), name="roost-local-agent")
    yield
    stop.set()
    try:
        await asyncio.wait_for(task, 10)
    except (asyncio.TimeoutError, Exception):
        _LOGGER.exception("local agent did not stop cleanly")
    await rt.stop()
