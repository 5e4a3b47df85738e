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
        assert set(status(third, "linux_host")["withheld"]) >= {"cpu", "network", "processes", "services", "metrics"}
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
