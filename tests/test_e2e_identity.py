"""Real hub and agent processes: the agent refuses a server that cannot prove it is its hub, and waits for a hub that is not up yet."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from support import free_port, wait_for
from test_e2e import ROOST, Proc, procs  # noqa: F401  (procs is a fixture)

from roost.core import protocol
from roost.core.identity import Identity

pytestmark = pytest.mark.e2e

SECRET = "the contents of a file only this host should see"
HUB_TOML = '[hub]\ndiscovery = false\nwol_broadcast = "127.0.0.1"\n[agent]\ninterval = "1s"\n'


class RogueHub:
    """A WebSocket server on another loopback port that speaks the hub's side of the protocol as an impostor would.

    It opens with a challenge naming ``hub_id``, answers any hello with a
    welcome signed by its own key, grants everything and sends a files.read
    job; it records every message the agent sends.
    """

    def __init__(self, hub_id: str) -> None:
        self.hub_id = hub_id
        self.identity = Identity.generate()
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        self.hellos = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        nonce = secrets.token_hex(16)
        await ws.send_str(protocol.encode(protocol.TYPE_CHALLENGE, nonce=nonce, hub_id=self.hub_id, commitment="0" * 64))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            self.received.append(data)
            if data.get("type") != "hello":
                continue
            self.hellos += 1
            node_id = data["node_id"]
            proof = protocol.hub_proof_payload("connect", self.hub_id, node_id, nonce, data.get("agent_nonce", ""))
            await ws.send_str(
                protocol.encode(
                    protocol.TYPE_WELCOME, node_id=node_id, epoch=data["epoch"], last_seq=0,
                    hub_key=self.identity.public_key, hub_signature=self.identity.sign(proof),
                )
            )
            await ws.send_str(protocol.encode(protocol.TYPE_GRANTS, grants=["filesystem.read.scoped", "host.metrics.read"]))
            await ws.send_str(
                protocol.encode(protocol.TYPE_JOB, job_id="jrogue", attempt=1, action="files.read", params={"root": "share", "path": "secret.txt"}, timeout=10)
            )
        return ws

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/api/v1/agent/ws", self._socket)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> RogueHub:
        self._thread.start()
        assert self._ready.wait(10), "the rogue server did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def state_of(agent_dir: Path) -> dict[str, Any] | None:
    path = agent_dir / "agent.json"
    return json.loads(path.read_text()) if path.exists() else None


def start_hub(tmp_path: Path, procs: list, port: int) -> Proc:
    conf = tmp_path / "hub.toml"
    conf.write_text(HUB_TOML)
    hub = Proc([*ROOST, "hub", "--data-dir", str(tmp_path / "hub"), "--port", str(port), "--bind", "127.0.0.1", "--config", str(conf)], tmp_path / "hub.log")
    procs.append(hub)
    wait_for(lambda: "Roost hub" in hub.text() and _health(port), 30, "the hub to answer")
    return hub


def _health(port: int) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5) as resp:
        return resp.status == 200


def join_token(tmp_path: Path, base: str) -> str:
    made = subprocess.run([*ROOST, "join-token", "create", "--data-dir", str(tmp_path / "hub"), "--hub-url", base], capture_output=True, text=True, timeout=60, check=True)
    return made.stdout.strip()


@pytest.mark.parametrize("impostor", ["another hub id", "the real hub id, another key"])
def test_the_agent_refuses_a_rogue_hub_and_keeps_its_hub_url(tmp_path, procs, impostor):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    hub = start_hub(tmp_path, procs, port)
    share = tmp_path / "share"
    share.mkdir()
    (share / "secret.txt").write_text(SECRET)
    agent_dir = tmp_path / "agent"
    conf = tmp_path / "agent.toml"
    conf.write_text(f'[agent]\ninterval = "0.5s"\n[integrations.files.roots]\nshare = "{share}"\n')

    first = Proc([*ROOST, "agent", "--data-dir", str(agent_dir), "--hub", base, "--join", join_token(tmp_path, base), "--config", str(conf)], tmp_path / "agent.log")
    procs.append(first)
    state = wait_for(lambda: state_of(agent_dir), 60, "enrolment")
    wait_for(lambda: "connected to the hub" in first.text(), 30, "the first connect")
    first.stop()

    with RogueHub(state["hub_id"] if "real" in impostor else "hrogue0000000000") as rogue:
        rogue_url = f"http://127.0.0.1:{rogue.port}"
        log = tmp_path / "rogue-agent.log"
        agent = Proc([*ROOST, "agent", "--data-dir", str(agent_dir), "--hub", rogue_url, "--config", str(conf)], log)
        procs.append(agent)
        ran = lambda: any(m.get("type") == "job_result" for m in rogue.received)  # noqa: E731  (what the old agent did)
        wait_for(lambda: "refusing it" in agent.text() or ran(), 30, "the agent to refuse the rogue")
        if "real" in impostor and not ran():
            wait_for(lambda: rogue.hellos >= 2, 30, "the agent to try again and refuse again")
        agent.stop()
        text = agent.text()
        assert agent.p.returncode == 0, text[-2000:]
        # No grant taken, no job run, nothing read, and the rogue's URL is not remembered.
        assert SECRET not in json.dumps(rogue.received)
        assert {m["type"] for m in rogue.received} <= {"hello"}, rogue.received
        assert "hub grants" not in text and "files.read" not in text
        if "real" in impostor:
            assert "proves hub key" in text and "pinned hub key" in text
        else:
            assert "says it is hub 'hrogue0000000000'" in text and f"enrolled with hub {state['hub_id']!r}" in text
            assert rogue.hellos == 0  # not even a hello for a hub that names itself wrongly
        hub_key = Identity.load(tmp_path / "hub" / "hub_key.pem").public_key
        assert state_of(agent_dir)["hub"] == base and state_of(agent_dir)["hub_key"] == hub_key  # pinned at enrolment

    # The same hub under another URL proves itself, and only then is that URL remembered.
    other_url = f"http://localhost:{port}"
    moved = Proc([*ROOST, "agent", "--data-dir", str(agent_dir), "--hub", other_url, "--config", str(conf)], tmp_path / "moved.log")
    procs.append(moved)
    wait_for(lambda: state_of(agent_dir)["hub"] == other_url, 30, "the proven URL to be remembered")
    assert state_of(agent_dir)["hub_key"] == hub_key
    moved.stop()
    hub.stop()


def test_an_agent_started_before_its_hub_waits_for_it_and_enrols(tmp_path, procs):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    token = join_token(tmp_path, base)  # made on the hub host before the hub ever ran
    agent_dir = tmp_path / "agent"
    conf = tmp_path / "agent.toml"
    conf.write_text('[agent]\ninterval = "0.5s"\n')
    agent = Proc([*ROOST, "agent", "--data-dir", str(agent_dir), "--hub", base, "--join", token, "--config", str(conf)], tmp_path / "agent.log")
    procs.append(agent)
    wait_for(lambda: "Retrying with backoff" in agent.text(), 30, "the agent to say it keeps trying")
    assert f"cannot reach the hub at {base} (connection refused)" in agent.text()
    assert agent.p.poll() is None  # still there, waiting

    hub = start_hub(tmp_path, procs, port)
    state = wait_for(lambda: state_of(agent_dir), 60, "enrolment once the hub is up")
    assert state["hub"] == base and state["hub_key"]
    wait_for(lambda: "connected to the hub" in agent.text(), 30, "the agent's first connect")
    text = agent.text()
    assert "urlopen error" not in text and "Traceback" not in text
    assert text.count("Retrying with backoff") == 1  # said once, not on every try
    agent.stop()

    # https:// against this plain-HTTP hub: one clear line, no traceback, and no retrying forever.
    wrong = subprocess.run(
        [*ROOST, "agent", "--data-dir", str(tmp_path / "wrong"), "--hub", f"https://127.0.0.1:{port}", "--join", join_token(tmp_path, base), "--config", str(conf)],
        capture_output=True, text=True, timeout=60,
    )
    mine = [line for line in wrong.stderr.splitlines() if line.startswith("roost agent:")]
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr, wrong.stderr
    assert len(mine) == 1 and "use http://" in mine[0] and f"https://127.0.0.1:{port}" in mine[0], wrong.stderr
    hub.stop()
    assert agent.p.returncode == 0, agent.text()[-2000:]


def api(port: int, token: str, method: str, path: str, body: dict | None = None) -> Any:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def test_two_agents_on_one_host_pair_by_name_and_an_unnamed_third_is_flagged(tmp_path, procs):
    hub_dir = tmp_path / "hub"
    subprocess.run([*ROOST, "users", "add", "admin", "--role", "admin", "--data-dir", str(hub_dir)],
                   input="a long test passphrase\n", capture_output=True, text=True, timeout=60, check=True)
    token = subprocess.run([*ROOST, "api-token", "create", "--user", "admin", "--scope", "admin", "--data-dir", str(hub_dir)],
                           capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    hub = start_hub(tmp_path, procs, port)
    hub_key = Identity.load(hub_dir / "hub_key.pem").public_key
    conf = tmp_path / "agent.toml"
    conf.write_text('[agent]\ninterval = "0.5s"\ndiscovery = false\n')

    def agent(name: str, *extra: str) -> Proc:
        proc = Proc([*ROOST, "agent", "--data-dir", str(tmp_path / name), "--hub", base, "--config", str(conf), *extra], tmp_path / f"{name}.log")
        procs.append(proc)
        return proc

    def pending() -> list[dict]:
        return api(port, token, "GET", "/api/v1/pairing")["pending"]

    first = agent("first")
    [request] = wait_for(lambda: pending() or None, 60, "the first agent's pairing request")
    wait_for(lambda: "Pairing code: " + request["code"] in first.text(), 30, "the first agent's code")
    first_id = api(port, token, "POST", f"/api/v1/pairing/{request['id']}/approve", {})["node_id"]
    state = wait_for(lambda: state_of(tmp_path / "first"), 30, "the first agent's approval")
    assert state["node_id"] == first_id and state["hub_key"] == hub_key  # pinned at pairing

    second = agent("second", "--name", "box-docker")
    [request] = wait_for(lambda: pending() or None, 60, "the second agent's pairing request")
    assert request["name"] == "box-docker" and request["hostname"] == api(port, token, "GET", f"/api/v1/nodes/{first_id}")["node"]["hostname"]
    assert request["key_changed_node"] is None  # same host, its own name: no false alarm
    wait_for(lambda: "shows for box-docker" in second.text(), 30, "the second agent's code, under its name")
    second_id = api(port, token, "POST", f"/api/v1/pairing/{request['id']}/approve", {})["node_id"]
    wait_for(lambda: state_of(tmp_path / "second"), 30, "the second agent's approval")
    assert second_id != first_id and api(port, token, "GET", f"/api/v1/nodes/{second_id}")["node"]["name"] == "box-docker"

    third = agent("third")  # no --name: it claims the host itself, with a new key
    [request] = wait_for(lambda: pending() or None, 60, "the third agent's pairing request")
    assert request["key_changed_node"] == first_id
    third.stop()  # its socket closes: the request gives its slot back
    wait_for(lambda: not pending(), 30, "the abandoned request to be withdrawn")
    for proc in (first, second):
        proc.stop()
    hub.stop()
