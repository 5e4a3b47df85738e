"""The agent runtime sends only the parts of a report whose read capability is granted and within its ceiling."""

from __future__ import annotations

import json

from roost.agent.runtime import AgentRuntime
from roost.core.capabilities import Ceiling
from roost.core.config import AgentSettings

ALL_READS = ["host.metrics.read", "host.processes.read", "network.info.read", "services.read"]
HOST_PARTS = {"cpu", "memory", "disks", "disk_io", "uptime_s", "network", "facts"}


def runtime(tmp_path, ceiling: Ceiling | None = None) -> AgentRuntime:
    settings = AgentSettings(interval=1.0, discovery=False, **({"ceiling": ceiling} if ceiling else {}))
    return AgentRuntime(data_dir=tmp_path / "agent", settings=settings, integrations_config={}, node_id="n-reads", entry_points=False)


async def last_message(rt: AgentRuntime) -> dict:
    await rt.collect_once()
    rows = await rt.spool.after(0, 100)
    return json.loads(rt.report_message(rows[-1]))


def status(message: dict, domain: str) -> dict:
    return next(s for s in message["integrations"] if s["domain"] == domain)


async def test_a_ceiling_that_denies_host_metrics_and_network_keeps_them_on_the_host(tmp_path):
    rt = runtime(tmp_path, Ceiling(deny=("host.metrics.read", "network.info.read")))
    await rt.start()
    try:
        rt.set_grants(ALL_READS)
        sent = await last_message(rt)
        text = json.dumps(sent["data"])
    finally:
        await rt.stop()
    host = sent["data"]["linux_host"]
    assert not HOST_PARTS & set(host) and "processes" in host
    assert sent["metrics"] == {}
    assert status(sent, "linux_host")["withheld"]["cpu"] == "host.metrics.read"
    assert status(sent, "linux_host")["withheld"]["network"] == "network.info.read"
    assert "mem_used_bytes" not in text and "boot_time" not in text and "macs" not in text
    assert "cpu_model" not in json.dumps(rt.hello())  # nor in what the hello says about the host


async def test_reads_not_granted_are_not_sent_and_a_new_grant_counts_from_the_next_cycle(tmp_path):
    rt = runtime(tmp_path)
    await rt.start()
    try:
        rt.set_grants(["host.processes.read", "services.read"])
        first = await last_message(rt)
        assert not HOST_PARTS & set(first["data"]["linux_host"]) and first["metrics"] == {}
        assert set(status(first, "linux_host")["withheld"].values()) == {"host.metrics.read", "network.info.read"}

        rt.set_grants(ALL_READS)
        second = await last_message(rt)
        assert HOST_PARTS <= set(second["data"]["linux_host"]) and "linux_host.cpu_percent" in second["metrics"]
        assert "withheld" not in status(second, "linux_host")

        rt.set_grants([])
        third = await last_message(rt)
        assert "linux_host" not in third["data"] and third["metrics"] == {}  # nothing permitted: not collected at all
        assert set(status(third, "linux_host")["withheld"]) >= {"cpu", "network", "processes", "metrics"}
    finally:
        await rt.stop()


async def test_the_last_grant_survives_a_restart_so_spooled_reports_follow_it(tmp_path):
    rt = runtime(tmp_path)
    await rt.start()
    rt.set_grants(["host.metrics.read"])
    await rt.stop()
    again = runtime(tmp_path)
    await again.start()
    try:
        assert again.grants == ["host.metrics.read"]
        sent = await last_message(again)
        assert "cpu" in sent["data"]["linux_host"] and "network" not in sent["data"]["linux_host"]
    finally:
        await again.stop()


COUNTER = '''
from roost.core import hookimpl
from roost.core.reads import Reads

READS = Reads.every("counter.read")

@hookimpl
def roost_collect(ctx):
    ctx.data["n"] = ctx.data.get("n", 0) + 1
    # A new series every cycle: a node that would grow its history without end.
    return {"state": {"n": ctx.data["n"]}, "metrics": {f"fresh[{ctx.data['n']}]": 1.0}}
'''


async def test_the_agent_is_told_once_when_the_hub_refuses_series_and_keeps_reporting(tmp_path, caplog):
    import asyncio
    import logging

    from aiohttp.test_utils import TestServer
    from support import free_port, until
    from support_hub import hub_config

    from roost.agent.uplink import Backoff, WebSocketUplink
    from roost.core.hub.app import HUB_KEY, create_app

    caplog.set_level(logging.DEBUG, logger="roost.agent.uplink")
    port = free_port()
    server = TestServer(create_app(hub_config(tmp_path, max_series_per_node=10)), host="127.0.0.1", port=port)
    await server.start_server()
    hub = server.app[HUB_KEY]
    folder = tmp_path / "agent" / "custom_integrations" / "counter"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"domain": "counter", "name": "Counter", "version": "1.0", "roles": ["agent"]}))
    (folder / "__init__.py").write_text(COUNTER)
    rt = AgentRuntime(data_dir=tmp_path / "agent", settings=AgentSettings(interval=0.1, heartbeat=1, discovery=False),
                      integrations_config={"linux_host": {"enabled": False}}, entry_points=False)
    node = await hub.add_node(public_key=rt.identity.public_key, hostname="c", name="c", facts={}, grants=["counter.read"])
    rt.node_id = node.node_id
    await rt.start()
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(WebSocketUplink(f"http://127.0.0.1:{port}", backoff=Backoff(0.05, 0.2)), stop))

    async def refused_a_few():
        state = await hub.store.latest_state(node.node_id)
        return (state.data.get("counter") or {}).get("n", 0) >= 20

    try:
        await until(refused_a_few, 20, "twenty reports stored")
        assert len(await hub.store.metric_series(node.node_id)) == 10  # the state kept coming, the series stopped at the cap
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await rt.stop()
        await server.close()
    told = [r for r in caplog.records if "stored this report without some metrics" in r.getMessage()]
    assert len(told) >= 9 and [r.levelno for r in told].count(logging.WARNING) == 1, [r.getMessage() for r in told][:3]
    assert "max_series_per_node" in told[0].getMessage()


LONG = '''
from roost.core import hookimpl
from roost.core.reads import Reads

READS = Reads.every("long.read")

@hookimpl
def roost_collect(ctx):
    return {"state": {"ok": True}, "metrics": {"x" * 197: 1.0, "fine": 2.0}}
'''


async def test_a_name_too_long_with_its_domain_costs_that_metric_not_the_report(tmp_path):
    from roost.core import protocol

    folder = tmp_path / "agent" / "custom_integrations" / "long"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"domain": "long", "name": "Long", "version": "1.0", "roles": ["agent"]}))
    (folder / "__init__.py").write_text(LONG)
    rt = AgentRuntime(data_dir=tmp_path / "agent", settings=AgentSettings(interval=1.0, discovery=False),
                      integrations_config={"linux_host": {"enabled": False}}, node_id="n-long", entry_points=False)
    await rt.start()
    try:
        rt.set_grants(["long.read"])
        await rt.collect_once()
        [row] = await rt.spool.after(0, 10)
        message = protocol.parse(rt.report_message(row), protocol.AGENT_MESSAGES)  # what the hub would accept
    finally:
        await rt.stop()
    assert message["metrics"] == {"long.fine": 2.0} and message["data"]["long"] == {"ok": True}
