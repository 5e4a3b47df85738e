"""The hub half of linux_host: the figures every node card and list shows (CPU, memory, disk, load, network, temperature, uptime)."""

from __future__ import annotations

from roost.core import hookimpl
from roost.core.hub_integration import HeadlineFigure, HubContext

FIGURES = (
    HeadlineFigure("cpu_percent", "linux_host.cpu_percent", "CPU", "percent", order=10),
    HeadlineFigure("mem_used_percent", "linux_host.mem_used_percent", "Memory", "percent", order=20),
    HeadlineFigure("disk_used_percent", "linux_host.disk_used_percent", "Disk", "percent", order=30),
    HeadlineFigure("load_1", "linux_host.load_1", "Load", "", order=40),
    HeadlineFigure("net_rx_bytes_per_s", "linux_host.net_rx_bytes_per_s", "Net in", "bytes_per_second", order=42),
    HeadlineFigure("net_tx_bytes_per_s", "linux_host.net_tx_bytes_per_s", "Net out", "bytes_per_second", order=44),
    # The hottest sensor; left out of a summary where the host has none (VMs, containers).
    HeadlineFigure("temperature_c", "linux_host.temperature_c", "Temp", "celsius", order=46),
    HeadlineFigure("uptime_s", "linux_host.uptime_s", "Uptime", "seconds", order=50),
)


@hookimpl
def roost_hub_headline_figures(ctx: HubContext) -> list[HeadlineFigure]:
    return list(FIGURES)
