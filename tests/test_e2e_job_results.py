"""A job's result survives a hub killed between storing it and acknowledging it: state and output were one write, and the agent's resend adds nothing twice."""

from __future__ import annotations

import signal
import sqlite3

import pytest
from support import wait_for
from support_procs import HubProc, Proc

from roost.core.hub.jobs import CRASH_ENV, CRASH_RESULT_STORED

pytestmark = pytest.mark.e2e

MARKER = "roost-job-output-7f3a"
AGENT_CONFIG = f"""
[agent]
interval = "1s"
heartbeat = "2s"
discovery = false

[agent.ceiling]
mode = "execute"

[[integrations.commands.allow]]
name = "hello"
argv = ["/bin/echo", "{MARKER}"]
"""


def _acked(agent_dir, job_id: str) -> bool:
    db = sqlite3.connect(agent_dir / "jobs.db")
    try:
        row = db.execute("SELECT acked FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    finally:
        db.close()
    return bool(row and row[0])


def test_a_hub_killed_before_acknowledging_a_result_keeps_state_and_output_once(tmp_path):
    hub = HubProc(tmp_path, '\n[agent]\nenabled = false\n')
    admin = hub.user_token("owner", "admin", "admin")
    agent_dir = tmp_path / "agent"
    agent_config = tmp_path / "agent.toml"
    agent_config.write_text(AGENT_CONFIG, encoding="utf-8")
    agent = None
    try:
        # The first hub dies (SIGKILL) right after it stores a job's final result, before the ack.
        hub.start(env={CRASH_ENV: CRASH_RESULT_STORED})
        join = hub.cli("join-token", "create", "--hub-url", hub.base).stdout.strip()
        agent = Proc(["agent", "--data-dir", str(agent_dir), "--hub", hub.base, "--join", join, "--config", str(agent_config)], tmp_path / "agent.log")

        def online() -> str | None:
            nodes = [n for n in hub.api("GET", "/api/v1/nodes", admin)[1]["nodes"] if not n["local"]]
            return nodes[0]["id"] if nodes and nodes[0]["status"] == "online" else None

        node_id = wait_for(online, 60, "the agent to come online")
        status, body = hub.api("PUT", f"/api/v1/nodes/{node_id}/grants", admin, {"grants": ["process.execute.limited"]})
        assert status == 200, body

        def run() -> str | None:
            status, body = hub.api("POST", f"/api/v1/nodes/{node_id}/actions/commands.run", admin, {"params": {"command": "hello"}})
            return body["id"] if status in (200, 201, 202) else None

        job_id = wait_for(run, 30, "commands.run to be offered and granted")
        first = hub.proc
        first.p.wait(60)
        assert first.p.returncode == -signal.SIGKILL, first.text()[-3000:]
        assert f"{CRASH_ENV}={CRASH_RESULT_STORED}" in first.text()
        assert not _acked(agent_dir, job_id)  # the agent still holds the result, so it will resend it

        hub.start()  # same store, same port, no crash point
        wait_for(lambda: _acked(agent_dir, job_id), 60, "the agent to resend the result and the hub to acknowledge it")
        status, job = hub.api("GET", f"/api/v1/jobs/{job_id}", admin)
        assert status == 200 and job["state"] == "succeeded", job
        assert job["output"] == MARKER + "\n", job["output"]  # exactly once: not lost, not appended again by the resend
    finally:
        if agent is not None:
            agent.stop()
        hub.stop(signal.SIGKILL)
