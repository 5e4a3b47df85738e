"""Reads follow grants, with real processes: what a ceiling denies or a grant withholds never reaches the hub.

A real hub and two real agents (`roost hub`, `roost agent`); between the
agents and the hub, a relay on loopback records every frame the agents send,
so the test sees the raw reports as they left each agent, then reads what the
hub stored (its SQLite file and its API).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
from aiohttp import ClientSession, WSMsgType, web
from support import free_port, wait_for
from test_e2e import ROOST, Proc, procs  # noqa: F401  (procs is a fixture)

pytestmark = pytest.mark.e2e

HOST_PARTS = ("facts", "cpu", "memory", "disks", "disk_io", "uptime_s", "sensors", "network")
INTERVAL = 0.5


class Relay:
    """Forwards HTTP and the agent WebSocket to the hub on loopback, keeping every text frame an agent sends."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.frames: list[dict] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)

    def sent(self) -> list[dict]:
        with self._lock:
            return list(self.frames)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        url = self.upstream + request.path_qs
        if request.headers.get("Upgrade", "").lower() == "websocket":
            down = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024)
            await down.prepare(request)
            async with ClientSession() as session, session.ws_connect(url, max_msg_size=4 * 1024 * 1024) as up:

                async def to_agent() -> None:
                    async for msg in up:
                        if msg.type == WSMsgType.TEXT:
                            await down.send_str(msg.data)
                    await down.close()

                task = asyncio.create_task(to_agent())
                async for msg in down:
                    if msg.type == WSMsgType.TEXT:
                        with self._lock:
                            self.frames.append(json.loads(msg.data))
                        await up.send_str(msg.data)
                task.cancel()
            return down
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with ClientSession() as session:
            async with session.request(request.method, url, headers=headers, data=await request.read()) as resp:
                body = await resp.read()
                return web.Response(status=resp.status, body=body, content_type=resp.content_type)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> Relay:
        self._thread.start()
        assert self._ready.wait(10), "the relay did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_the_hub_never_receives_what_the_ceiling_denies_or_the_grant_withholds(tmp_path, procs):  # noqa: F811
    port = free_port()
    hub_dir = tmp_path / "hub"
    base = f"http://127.0.0.1:{port}"
    hub_conf = tmp_path / "hub.toml"
    hub_conf.write_text('[hub]\ndiscovery = false\nwol_broadcast = "127.0.0.1"\n[agent]\ninterval = "1s"\n')
    subprocess.run([*ROOST, "users", "add", "root", "--role", "admin", "--data-dir", str(hub_dir)],
                   input="a long test passphrase\n", capture_output=True, text=True, timeout=30, check=True)
    api_token = subprocess.run([*ROOST, "api-token", "create", "--user", "root", "--scope", "admin", "--data-dir", str(hub_dir)],
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    auth = {"Authorization": f"Bearer {api_token}"}

    def call(method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, method=method, headers={**auth, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    procs.append(Proc([*ROOST, "hub", "--data-dir", str(hub_dir), "--port", str(port), "--bind", "127.0.0.1", "--config", str(hub_conf)], tmp_path / "hub.log"))
    wait_for(lambda: call("GET", "/api/v1/health")["status"] == "ok", 30, "the hub to answer")

    with Relay(base) as relay:
        relayed = f"http://127.0.0.1:{relay.port}"

        def start_agent(name: str, token: str, ceiling: str = "") -> str:
            agent_dir = tmp_path / name
            conf = tmp_path / f"{name}.toml"
            conf.write_text(f'[agent]\ninterval = "{INTERVAL}s"\nheartbeat = "2s"\ndiscovery = false\n{ceiling}')
            procs.append(Proc([*ROOST, "agent", "--data-dir", str(agent_dir), "--hub", relayed, "--join", token, "--config", str(conf), "--name", name], tmp_path / f"{name}.log"))
            state = wait_for(lambda: json.loads((agent_dir / "agent.json").read_text()) if (agent_dir / "agent.json").exists() else None, 30, f"{name} to enrol")
            return state["node_id"]

        # One agent whose owner denies host metrics and network info in its ceiling; the hub grants every read.
        denied_token = call("POST", "/api/v1/join-tokens", {"grants": ["host.metrics.read", "host.processes.read", "network.info.read", "services.read"]})["token"]
        denied = start_agent("denied", denied_token, '[agent.ceiling]\ndeny = ["host.metrics.read", "network.info.read"]\n')
        # One agent with the default ceiling, whose grant withholds them.
        withheld_token = call("POST", "/api/v1/join-tokens", {"grants": ["host.processes.read", "services.read"]})["token"]
        withheld = start_agent("withheld", withheld_token)

        def reports_of(node_id: str) -> list[dict]:
            return [f for f in relay.sent() if f.get("type") == "report" and f.get("node_id") == node_id]

        for node_id in (denied, withheld):
            detail = wait_for(
                lambda: (d := call("GET", f"/api/v1/nodes/{node_id}")) and "processes" in (d["state"].get("linux_host") or {}) and len(reports_of(node_id)) >= 3 and d,
                30,
                f"reports from {node_id}",
            )
            # What arrived over the wire: no host metric, no interface, no fact beyond the basics.
            for report in reports_of(node_id):
                host = report["data"].get("linux_host") or {}
                assert not set(HOST_PARTS) & set(host), sorted(host)
                assert report["metrics"] == {}, sorted(report["metrics"])[:5]
                [status] = [s for s in report["integrations"] if s["domain"] == "linux_host"]
                assert status["withheld"]["cpu"] == "host.metrics.read" and status["withheld"]["network"] == "network.info.read"
            hellos = [f for f in relay.sent() if f.get("type") == "hello" and f.get("node_id") == node_id]
            assert hellos and all(not {"cpu_model", "macs", "boot_time", "mem_total_bytes"} & set(h["facts"]) for h in hellos)

            # What the hub kept: in its store and in what its API serves.
            db = sqlite3.connect(f"file:{hub_dir / 'roost.db'}?mode=ro", uri=True)
            try:
                series = db.execute("SELECT COUNT(*) FROM metric_series WHERE node_id = ?", (node_id,)).fetchone()[0]
                stored = json.loads(db.execute("SELECT data FROM node_state WHERE node_id = ? AND domain = 'linux_host'", (node_id,)).fetchone()[0])
            finally:
                db.close()
            assert series == 0 and not set(HOST_PARTS) & set(stored)
            assert call("GET", f"/api/v1/nodes/{node_id}/series")["series"] == []
            assert detail["metrics"] == {} and "os" not in detail["node"]["facts"]
            # And it says what is missing, and what to grant.
            assert detail["node"]["withheld"]["linux_host"]["cpu"] == "host.metrics.read"
            overview = call("GET", "/api/v1/integrations")["nodes"][node_id]["integrations"]
            [status] = [s for s in overview if s["domain"] == "linux_host"]
            assert status["withheld"]["network"] == "network.info.read"

        # A grant change takes effect from the next cycle: the withheld node starts sending host metrics.
        call("PUT", f"/api/v1/nodes/{withheld}/grants", {"grants": ["host.metrics.read", "host.processes.read", "services.read"]})
        detail = wait_for(lambda: (d := call("GET", f"/api/v1/nodes/{withheld}")) and "linux_host.cpu_percent" in d["metrics"] and d, 20, "host metrics after the grant")
        assert "cpu" in detail["state"]["linux_host"] and "network" not in detail["state"]["linux_host"]
        assert set(detail["node"]["withheld"]["linux_host"].values()) == {"network.info.read"}
        # The denied node's ceiling still wins, whatever it is granted.
        assert call("GET", f"/api/v1/nodes/{denied}/series")["series"] == []

    # The hub's own host is a live node with metrics, under its default read grants.
    [local] = [n for n in call("GET", "/api/v1/nodes")["nodes"] if n["local"]]
    assert local["status"] == "online"
    wait_for(lambda: "cpu_percent" in call("GET", f"/api/v1/nodes/{local['id']}")["node"]["headline"], 20, "the local node's metrics")
    text = Path(tmp_path / "hub.log").read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]


def test_a_freshly_paired_agent_is_a_live_node_with_metrics_by_default(tmp_path, procs):  # noqa: F811
    port = free_port()
    hub_dir, agent_dir = tmp_path / "hub", tmp_path / "agent"
    base = f"http://127.0.0.1:{port}"
    hub_conf = tmp_path / "hub.toml"
    hub_conf.write_text('[hub]\ndiscovery = false\nwol_broadcast = "127.0.0.1"\n[agent]\nenabled = false\n')
    subprocess.run([*ROOST, "users", "add", "root", "--role", "admin", "--data-dir", str(hub_dir)],
                   input="a long test passphrase\n", capture_output=True, text=True, timeout=30, check=True)
    api_token = subprocess.run([*ROOST, "api-token", "create", "--user", "root", "--scope", "admin", "--data-dir", str(hub_dir)],
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()

    def call(method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, method=method, headers={"Authorization": f"Bearer {api_token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    procs.append(Proc([*ROOST, "hub", "--data-dir", str(hub_dir), "--port", str(port), "--bind", "127.0.0.1", "--config", str(hub_conf)], tmp_path / "hub.log"))
    wait_for(lambda: call("GET", "/api/v1/health")["status"] == "ok", 30, "the hub to answer")
    conf = tmp_path / "agent.toml"
    conf.write_text(f'[agent]\ninterval = "{INTERVAL}s"\nheartbeat = "2s"\ndiscovery = false\n')
    procs.append(Proc([*ROOST, "agent", "--data-dir", str(agent_dir), "--hub", base, "--config", str(conf)], tmp_path / "agent.log"))
    [request] = wait_for(lambda: call("GET", "/api/v1/pairing")["pending"], 30, "the pairing request")
    node_id = call("POST", f"/api/v1/pairing/{request['id']}/approve", {})["node_id"]  # the default grants
    detail = wait_for(lambda: (d := call("GET", f"/api/v1/nodes/{node_id}")) and "cpu_percent" in d["node"]["headline"] and d, 30, "metrics from the paired agent")
    assert detail["node"]["status"] == "online" and "network" in detail["state"]["linux_host"]
    assert {"host.metrics.read", "network.info.read", "host.processes.read"} <= set(call("GET", f"/api/v1/nodes/{node_id}/grants")["grants"])
    assert detail["node"]["withheld"] == {}
