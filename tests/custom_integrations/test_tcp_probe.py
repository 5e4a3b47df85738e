"""The tcp_probe example integration, loaded from custom_integrations/ the way a user's own is."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support import until
from support_auth import seed_user

from roost.core.config import load_hub_config
from roost.core.const import ROLE_AGENT, ROLE_HUB, STATE_LOADED, STATE_SETUP_ERROR
from roost.core.hub.app import HUB_KEY, create_app
from roost.core.integration import SOURCE_CUSTOM
from roost.core.plugins import IntegrationManager

REPO = Path(__file__).resolve().parents[2]
CUSTOM_DIR = REPO / "custom_integrations"


def make_manager(tmp_path: Path, config: dict, role: str = ROLE_AGENT) -> IntegrationManager:
    return IntegrationManager(
        role=role,
        config={"tcp_probe": config},
        data_dir=tmp_path,
        custom_dirs=[CUSTOM_DIR],
        entry_points=False,
        only=["tcp_probe"],
    )


async def loaded(tmp_path: Path, config: dict, role: str = ROLE_AGENT) -> IntegrationManager:
    manager = make_manager(tmp_path, config, role)
    manager.load()
    await manager.setup_all()
    return manager


@pytest.fixture
async def listening_port() -> AsyncIterator[int]:
    """A real TCP server on 127.0.0.1 that accepts and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def closed_port() -> int:
    """A port that was just free on 127.0.0.1 and has nothing listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening port whose accept queue is full, so a new connect gets no answer (Linux drops the SYN)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        client = socket.socket()
        client.setblocking(False)
        try:
            client.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(client)
    time.sleep(0.05)
    try:
        yield port
    finally:
        for client in fillers:
            client.close()
        listener.close()


async def test_the_hub_loads_the_hub_half_and_agents_the_collector(tmp_path: Path, listening_port: int) -> None:
    on_hub = await loaded(tmp_path, {"targets": [{"name": "web", "host": "127.0.0.1", "port": listening_port}]}, ROLE_HUB)
    # The hub loads only the hub half (hub.py): the collector runs on agents (the hub's host has its in-process agent).
    [hub_status] = on_hub.statuses()
    assert hub_status["state"] == STATE_LOADED, hub_status["reason"]
    integ = on_hub.integrations["tcp_probe"]
    assert integ.module.__name__.endswith("tcp_probe.hub")
    assert not on_hub.has_hook(integ, "roost_collect") and on_hub.capabilities() == [] and on_hub.fields() == {}
    assert (await on_hub.collect_all())["data"] == {}
    await on_hub.shutdown_all()
    manager = await loaded(tmp_path, {"targets": [{"name": "web", "host": "127.0.0.1", "port": listening_port}]}, ROLE_AGENT)
    [status] = manager.statuses()
    assert status["domain"] == "tcp_probe"
    assert status["source"] == SOURCE_CUSTOM
    assert status["state"] == STATE_LOADED, status["reason"]
    assert manager.capabilities() == ["network.probe.read"]
    fields = manager.fields()
    assert set(fields) == {"tcp_probe.up", "tcp_probe.latency_ms", "tcp_probe.targets_up"}
    assert fields["tcp_probe.latency_ms"]["unit"] == "milliseconds"
    assert all(meta["description"] for meta in fields.values())
    await manager.shutdown_all()


async def test_up_and_down_targets(tmp_path: Path, listening_port: int, closed_port: int) -> None:
    manager = await loaded(
        tmp_path,
        {
            "targets": [
                {"name": "nas-smb", "host": "127.0.0.1", "port": listening_port},
                {"name": "router ssh", "host": "127.0.0.1", "port": closed_port, "timeout": 1},
            ]
        },
    )
    out = await manager.collect_all()

    up, down = out["data"]["tcp_probe"]["targets"]
    assert up["name"] == "nas-smb" and up["host"] == "127.0.0.1" and up["port"] == listening_port
    assert up["up"] is True
    assert 0 <= up["latency_ms"] < 1000
    assert "error" not in up
    assert down["name"] == "router ssh" and down["up"] is False
    assert "refused" in down["error"]
    assert "latency_ms" not in down

    metrics = out["metrics"]
    assert metrics["tcp_probe.up[nas-smb]"] == 1
    assert metrics["tcp_probe.latency_ms[nas-smb]"] == up["latency_ms"]
    assert metrics["tcp_probe.up[router ssh]"] == 0
    assert "tcp_probe.latency_ms[router ssh]" not in metrics  # no value is faked for a down target
    assert metrics["tcp_probe.targets_up"] == 1
    assert manager.integrations["tcp_probe"].state == STATE_LOADED


async def test_targets_are_probed_concurrently_with_their_own_timeout(
    tmp_path: Path, listening_port: int, silent_port: int
) -> None:
    manager = await loaded(
        tmp_path,
        {
            "targets": [
                {"name": f"silent-{i}", "host": "127.0.0.1", "port": silent_port, "timeout": 0.3} for i in range(3)
            ]
            + [{"name": "web", "host": "127.0.0.1", "port": listening_port}]
        },
    )
    started = time.perf_counter()
    out = await manager.collect_all()
    elapsed = time.perf_counter() - started

    assert elapsed < 0.85, "three 0.3 s timeouts in sequence would take 0.9 s"
    targets = {t["name"]: t for t in out["data"]["tcp_probe"]["targets"]}
    for i in range(3):
        assert targets[f"silent-{i}"]["up"] is False
        assert targets[f"silent-{i}"]["error"] == "no answer within 0.3 s"
        assert out["metrics"][f"tcp_probe.up[silent-{i}]"] == 0
    assert targets["web"]["up"] is True
    assert out["metrics"]["tcp_probe.up[web]"] == 1


async def test_default_timeout_is_two_seconds(tmp_path: Path, listening_port: int) -> None:
    manager = await loaded(tmp_path, {"targets": [{"name": "web", "host": "127.0.0.1", "port": listening_port}]})
    assert manager.integrations["tcp_probe"].context.config["targets"][0]["timeout"] == 2.0


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, "targets: add at least one target"),
        ({"targets": []}, "targets: add at least one target"),
        ({"targets": [{"name": "x", "host": "h", "port": 70000}]}, "targets.0.port: port must be between 1 and 65535"),
        ({"targets": [{"name": "x", "host": "h", "port": 0}]}, "targets.0.port: port must be between 1 and 65535"),
        ({"targets": [{"name": "x", "host": "h"}]}, "targets.0.port: required key not provided"),
        ({"targets": [{"name": "x", "host": "", "port": 22}]}, "targets.0.host"),
        ({"targets": [{"name": "a[b]", "host": "h", "port": 22}]}, "targets.0.name"),
        ({"targets": [{"name": "x", "host": "h", "port": 22, "timeout": 60}]}, "targets.0.timeout"),
        (
            {"targets": [{"name": "x", "host": "h", "port": 22}, {"name": "x", "host": "i", "port": 23}]},
            "target name 'x' is used twice",
        ),
    ],
)
async def test_bad_config_is_a_setup_error_naming_the_key(tmp_path: Path, config: dict, expected: str) -> None:
    manager = await loaded(tmp_path, config)
    integ = manager.integrations["tcp_probe"]
    assert integ.state == STATE_SETUP_ERROR
    assert integ.reason.startswith("bad config in [integrations.tcp_probe]: ")
    assert expected in integ.reason
    assert await manager.collect_all() == {"data": {}, "metrics": {}}


async def test_a_real_hub_shows_its_own_hosts_probes_from_both_halves(
    tmp_path: Path, listening_port: int, closed_port: int, aiohttp_client
) -> None:
    """The hub's in-process agent runs the collector; the hub half draws the panel, page, figure and route."""
    config = load_hub_config(
        None,
        overrides={
            "hub": {"data_dir": str(tmp_path / "hub"), "discovery": False, "wol_broadcast": "127.0.0.1", "custom_integrations": [str(CUSTOM_DIR)]},
            "agent": {"enabled": True, "discovery": False, "interval": 0.5, "custom_integrations": [str(CUSTOM_DIR)]},
            "integrations": {
                "tcp_probe": {"targets": [{"name": "web", "host": "127.0.0.1", "port": listening_port}, {"name": "gone", "host": "127.0.0.1", "port": closed_port}]}
            },
        },
    )
    token = await seed_user(config, "viewer", "viewer")
    client = await aiohttp_client(create_app(config), headers={"Authorization": f"Bearer {token}"})
    hub = client.app[HUB_KEY]
    assert {s["domain"]: s["state"] for s in hub.manager.statuses()}["tcp_probe"] == STATE_LOADED

    async def probed() -> bool:
        detail = await hub.node_detail(hub.local_node_id) if hub.local_node_id else None
        return bool(detail and (detail.get("state") or {}).get("tcp_probe"))

    await until(probed, 30, "the in-process agent's first tcp_probe report")
    node_page = await client.get(f"/nodes/{hub.local_node_id}")
    html = await node_page.text()
    assert node_page.status == 200, html
    assert 'data-integration="tcp_probe"' in html
    assert 'data-target="web" data-up="true"' in html and 'data-target="gone" data-up="false"' in html
    assert "/static/integrations/tcp_probe/tcp_probe.css?v=" in html

    page = await client.get("/tcp-probe")
    html = await page.text()
    assert page.status == 200, html
    assert '<a href="/tcp-probe" aria-current="page">TCP probes</a>' in html and "1 target down" in html

    down = await client.get("/api/v1/integrations/tcp_probe/down")
    assert down.status == 200
    [gone] = (await down.json())["down"]
    assert gone["name"] == "gone" and gone["node_id"] == hub.local_node_id and "refused" in gone["error"]

    nodes = (await (await client.get("/api/v1/nodes")).json())["nodes"]
    [local] = [n for n in nodes if n["local"]]
    assert local["headline"]["probes_up"] == 1
