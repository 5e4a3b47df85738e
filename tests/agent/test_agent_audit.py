"""The agent's own audit chain: what the runtime records, that it is append-only and verifiable, and `roost audit verify --agent`."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from support import free_port

from roost.agent.audit import AUDIT_FILE, AgentAudit
from roost.agent.runtime import AgentRuntime
from roost.agent.uplink import Backoff, WebSocketUplink
from roost.core import cli
from roost.core.audit import KIND_DELETED, KIND_EDITED, KIND_TRUNCATED
from roost.core.config import AgentSettings, load_hub_config

T0 = 1_763_107_200.0
FORGED = "hub\n#9 2026-01-01T00:00:00.000000Z agent.enrolled outcome=ok actor=agent"


def runtime(data_dir: Path) -> AgentRuntime:
    return AgentRuntime(
        data_dir=data_dir,
        settings=AgentSettings(interval=0.1, heartbeat=1),
        integrations_config={"linux_host": {"enabled": False}},
        entry_points=False,
    )


async def actions(path: Path) -> list[str]:
    log = AgentAudit(path)
    await log.open(create=False)
    try:
        return [e.action async for e in log.entries()]
    finally:
        await log.close()


async def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


# ------------------------------------------------------------------ the file


async def test_entries_chain_and_verify(tmp_path: Path) -> None:
    log = AgentAudit(tmp_path / AUDIT_FILE)
    first = await log.record("agent.started", now=T0)
    second = await log.record("agent.rejected", outcome="refused", peer="https://hub:8765", details={"reason": FORGED}, now=T0 + 1)
    assert (first.seq, second.seq, second.prev_hash) == (1, 2, first.hash)
    assert (await log.head()).hash == second.hash
    assert [e async for e in log.entries()] == [first, second]
    assert (await log.verify()).ok
    assert [e.seq for e in await log.recent(1)] == [2]
    await log.close()
    # Reopened, it continues the same chain.
    log = AgentAudit(tmp_path / AUDIT_FILE)
    third = await log.record("agent.stopped")
    assert (third.seq, third.prev_hash) == (3, second.hash)
    assert (await log.verify()).ok
    await log.close()


async def test_concurrent_records_chain_one_after_another(tmp_path: Path) -> None:
    log = AgentAudit(tmp_path / AUDIT_FILE)
    got = await asyncio.gather(*(log.record("agent.connected", peer=f"hub{i}") for i in range(25)))
    assert sorted(e.seq for e in got) == list(range(1, 26))
    assert (await log.verify()).ok
    await log.close()


async def test_the_file_is_append_only_through_sql(tmp_path: Path) -> None:
    log = AgentAudit(tmp_path / AUDIT_FILE)
    await log.record("agent.started")
    await log.close()
    with sqlite3.connect(tmp_path / AUDIT_FILE) as db:
        for sql in ("UPDATE audit_log SET actor = 'root'", "DELETE FROM audit_log"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute(sql)


@pytest.mark.parametrize(
    "sql,kind,seq",
    [
        ("UPDATE audit_log SET outcome = 'ok' WHERE seq = 2", KIND_EDITED, 2),
        ("DELETE FROM audit_log WHERE seq = 2", KIND_DELETED, 2),
        ("DELETE FROM audit_log WHERE seq = 4", KIND_TRUNCATED, 4),
    ],
)
async def test_tampering_is_found(tmp_path: Path, sql: str, kind: str, seq: int) -> None:
    log = AgentAudit(tmp_path / AUDIT_FILE)
    for i in range(4):
        await log.record("agent.rejected", outcome="refused", details={"i": i})
    await log.close()
    with sqlite3.connect(tmp_path / AUDIT_FILE) as db:
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("DROP TRIGGER audit_log_no_delete")
        db.execute(sql)
    log = AgentAudit(tmp_path / AUDIT_FILE)
    await log.open(create=False)
    try:
        result = await log.verify()
    finally:
        await log.close()
    assert (result.problem.kind, result.problem.seq) == (kind, seq)


# --------------------------------------------------------------- the runtime


async def test_the_runtime_records_start_and_stop(tmp_path: Path) -> None:
    rt = runtime(tmp_path / "agent")
    await rt.start()
    await rt.stop()
    assert await actions(tmp_path / "agent" / AUDIT_FILE) == ["agent.started", "agent.stopped"]


async def test_connected_and_rejected_are_recorded_once_per_streak(tmp_path: Path) -> None:
    from roost.core.hub.app import HUB_KEY, create_app

    port = free_port()
    config = load_hub_config(None, overrides={"hub": {"data_dir": str(tmp_path / "hub"), "discovery": False}, "agent": {"enabled": False}})
    server = TestServer(create_app(config), host="127.0.0.1", port=port)
    await server.start_server()
    hub = server.app[HUB_KEY]
    rt = runtime(tmp_path / "agent")
    node = await hub.add_node(public_key=rt.identity.public_key, hostname="t", name="t", facts={})
    rt.node_id = node.node_id
    await rt.start()
    uplink = WebSocketUplink(f"http://127.0.0.1:{port}", backoff=Backoff(0.02, 0.05))
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(uplink, stop))
    try:
        await asyncio.wait_for(uplink.connected.wait(), 15)
        await hub.revoke_node(node.node_id, actor="user:admin")

        async def retried_a_lot() -> bool:
            return uplink.backoff.attempt >= 6

        await wait_until(retried_a_lot)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await rt.stop()
        await server.close()
    log = AgentAudit(tmp_path / "agent" / AUDIT_FILE)
    await log.open(create=False)
    try:
        got = [e async for e in log.entries()]
        assert (await log.verify()).ok
    finally:
        await log.close()
    names = [e.action for e in got]
    assert names[0] == "agent.started" and names[-1] == "agent.stopped"
    assert names.count("agent.connected") == 1
    assert names.count("agent.rejected") == 1  # not one per retry
    rejected = next(e for e in got if e.action == "agent.rejected")
    assert (rejected.outcome, rejected.peer, rejected.target) == ("refused", f"http://127.0.0.1:{port}", f"node:{node.node_id}")


async def test_a_log_that_cannot_be_written_stops_actions_but_not_reporting(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rt = runtime(tmp_path / "agent")
    await rt.start()
    try:
        with sqlite3.connect(tmp_path / "agent" / AUDIT_FILE) as db:
            db.execute("CREATE TRIGGER full BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        caplog.set_level(logging.ERROR)
        await rt.on_connected("http://hub:8765")  # lifecycle: logged loudly, the agent carries on
        assert "cannot record agent.connected" in caplog.text
        with pytest.raises(sqlite3.DatabaseError):
            await rt.audit_event("job.started", actor="node:n1", target="docker.restart")  # an action fails closed
        assert await rt.collect_once() >= 1
    finally:
        await rt.stop()


# ---------------------------------------------------------------- the command


def agent_dir_with_log(tmp_path: Path) -> Path:
    data = tmp_path / "agentdata"

    async def make() -> None:
        log = AgentAudit(data / AUDIT_FILE)
        await log.record("agent.started")
        await log.record("agent.rejected", outcome="refused", peer=FORGED, details={"reason": "\x1b[2Jrevoked"})
        await log.record("agent.connected", peer="https://hub:8765")
        await log.close()

    asyncio.run(make())
    return data


def test_roost_audit_verify_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = agent_dir_with_log(tmp_path)
    assert cli.main(["audit", "verify", "--agent", "--data-dir", str(data)]) == 0
    assert "intact: 3 entries" in capsys.readouterr().out
    assert cli.main(["audit", "head", "--agent", "--data-dir", str(data)]) == 0
    head = capsys.readouterr().out.strip()
    assert head.startswith("3:")
    assert cli.main(["audit", "list", "--agent", "--data-dir", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and not any(line.startswith("#9") for line in lines)
    assert all("\x1b" not in line for line in lines)
    with sqlite3.connect(data / AUDIT_FILE) as db:
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("UPDATE audit_log SET outcome = 'ok' WHERE seq = 2")
    assert cli.main(["audit", "verify", "--agent", "--data-dir", str(data)]) == 1
    out = capsys.readouterr().out
    assert "entry 2: edited" in out
    assert not any(line.startswith("#9") for line in out.splitlines())
    assert "\\n#9 2026" in out and "\\u001b[2J" in out


def test_roost_audit_verify_agent_without_a_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["audit", "verify", "--agent", "--data-dir", str(tmp_path)]) == 1
    assert "no agent audit log" in capsys.readouterr().err
    assert not (tmp_path / AUDIT_FILE).exists()
