"""Jobs end to end in one process: a real hub app, a real agent runtime over a real WebSocket, actions of a test integration.

Exactly once and nothing lost: agent disconnected mid-job, hub restarted mid-job,
agent restarted with a job running, leases that expire, retries, cancel,
concurrency, schedules, and enforcement on the agent whatever the hub says.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from support import until
from support_jobs import HubAgentRig, IntegrationSource, agent_ready, job_finished, truthy

from roost.agent.runtime import AgentRuntime
from roost.agent.uplink import Backoff, WebSocketUplink
from roost.core import protocol
from roost.core.capabilities import Ceiling
from roost.core.config import AgentSettings
from roost.core.hub import jobs as jobs_module
from roost.core.hub.app import HUB_KEY

JOBBER_SOURCE = '''
import asyncio, time
from pathlib import Path
import voluptuous as vol
from roost.core import hookimpl
from roost.core.actions import ActionSpec, ActionError


def _count(ctx, name):
    path = Path(ctx.config["counter_dir"]) / name
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    return n


async def echo(ctx, params):
    return {"output": "echo " + params["text"], "text": params["text"]}


async def slow(ctx, params):
    for i in range(params["steps"]):
        await ctx.progress(f"step {i + 1}", 100.0 * (i + 1) / params["steps"])
        await asyncio.sleep(params["pause"])
    n = _count(ctx, params["name"])
    return {"output": f"done {n}", "runs": n}


def count(ctx, params):
    time.sleep(params.get("pause", 0))
    return {"runs": _count(ctx, params["name"])}


def flaky(ctx, params):
    n = _count(ctx, params["name"])
    if n < params["succeed_on"]:
        raise ActionError(f"failure {n}")
    return {"runs": n}


@hookimpl
def roost_capabilities(ctx):
    return ["test.read", "test.manage"]


@hookimpl
def roost_actions(ctx):
    text = vol.Schema({vol.Required("text"): vol.All(str, vol.Length(max=50))})
    named = vol.Schema({vol.Required("name"): vol.Match(r"^[a-z]+$"), vol.Optional("pause", default=0): vol.Coerce(float)})
    return [
        ActionSpec(name="jobber.echo", capability="test.read", handler=echo, schema=text, idempotent=True, timeout=5),
        ActionSpec(name="jobber.slow", capability="test.manage", handler=slow, timeout=30, schema=vol.Schema({
            vol.Required("name"): vol.Match(r"^[a-z]+$"), vol.Optional("steps", default=3): int, vol.Optional("pause", default=0.1): vol.Coerce(float)})),
        ActionSpec(name="jobber.count", capability="test.manage", handler=count, schema=named, timeout=30),
        ActionSpec(name="jobber.flaky", capability="test.manage", handler=flaky, idempotent=True, timeout=5, schema=vol.Schema({
            vol.Required("name"): vol.Match(r"^[a-z]+$"), vol.Required("succeed_on"): int})),
        ActionSpec(name="jobber.limited", capability="test.read", handler=echo, schema=text, rate_limit_per_minute=2),
        ActionSpec(name="jobber.hang", capability="test.manage", handler=slow, timeout=0.5, schema=vol.Schema({
            vol.Required("name"): vol.Match(r"^[a-z]+$"), vol.Optional("steps", default=100): int, vol.Optional("pause", default=0.2): vol.Coerce(float)})),
    ]


CONFIG_SCHEMA = vol.Schema({vol.Required("counter_dir"): str})
'''
JOBBER = IntegrationSource("jobber", "Jobber", JOBBER_SOURCE)


class Rig(HubAgentRig):
    """A hub on a fixed port (so it can be restarted) and one agent connected to it, with the jobber integration."""

    def __init__(self, tmp: Path, ceiling: Ceiling | None = None) -> None:
        super().__init__(tmp, JOBBER, grants=["test.read", "test.manage"], ceiling=ceiling)


@pytest.fixture
async def rig(tmp_path):
    r = Rig(tmp_path)
    await r.start_hub()
    await r.start_agent()
    yield r
    await r.close()


async def test_an_action_runs_and_its_result_and_progress_are_kept(rig):
    job = await rig.hub.jobs.create(rig.rt.node_id, "jobber.slow", {"name": "a", "steps": 3, "pause": 0.05}, actor="user:test")
    done = await rig.final(job.job_id)
    assert done.state == "succeeded" and done.result == {"output": "done 1", "runs": 1}
    assert "step 3" in done.output and done.percent == 100.0 and done.output.endswith("done 1")
    assert done.started_at and done.finished_at and done.created_by == "user:test"
    entries = [e.action for e in await rig.hub.store.list_audit(limit=100)]
    assert "job.created" in entries and "job.finished" in entries


async def test_the_agent_enforces_grant_ceiling_and_schema_whatever_the_hub_says(tmp_path):
    rig = Rig(tmp_path, ceiling=Ceiling(mode="read-only"))
    await rig.start_hub()
    await rig.start_agent()
    try:
        hub, node_id = rig.hub, rig.rt.node_id
        # The hub refuses up front: test.manage is above this host's read-only ceiling.
        with pytest.raises(jobs_module.JobError, match="does not have"):
            await hub.jobs.create(node_id, "jobber.count", {"name": "x"}, actor="user:test")
        # A hub that skips its own checks still gets nowhere: the agent refuses.
        send = hub.jobs.channels[node_id]
        for action, params, why in (
            ("jobber.count", {"name": "x"}, "above this host's ceiling"),
            ("jobber.echo", {"text": 5}, "invalid parameters"),
            ("jobber.echo", {"text": "hi", "extra": "; rm -rf /"}, "invalid parameters"),
            ("jobber.nope", {}, "no action"),
        ):
            job = await _raw_job(hub, node_id, action, params)
            await send(protocol.encode("job", job_id=job.job_id, attempt=1, action=action, params=params, timeout=5))
            done = await rig.final(job.job_id)
            assert done.state == "refused" and why in done.error, (action, done.error)
        await hub.set_grants(node_id, ["test.read"], actor="user:test")
        await until(lambda: truthy(rig.rt.grants == ["test.read"]))
        job = await _raw_job(hub, node_id, "jobber.count", {"name": "y"})
        await send(protocol.encode("job", job_id=job.job_id, attempt=1, action="jobber.count", params={"name": "y"}, timeout=5))
        assert "not granted" in (await rig.final(job.job_id)).error
        assert rig.runs("x") == 0 and rig.runs("y") == 0
    finally:
        await rig.close()


async def _raw_job(hub, node_id, action, params):
    from roost.core.store.jobs import Job

    now = time.time()
    job = Job(job_id=jobs_module.new_job_id(), node_id=node_id, action=action, params=params, state="dispatched", created_by="test", created_at=now, timeout=5, next_attempt_at=now + 3600)
    await hub.store.add_job(job)
    return job


async def test_the_same_job_delivered_twice_runs_once(rig):
    hub, node_id = rig.hub, rig.rt.node_id
    job = await _raw_job(hub, node_id, "jobber.count", {"name": "twice"})
    message = protocol.encode("job", job_id=job.job_id, attempt=1, action="jobber.count", params={"name": "twice", "pause": 0.3}, timeout=5)
    send = hub.jobs.channels[node_id]
    await send(message)
    await send(message)
    await rig.final(job.job_id)
    await send(message)  # after it finished: the agent answers from what it recorded
    await asyncio.sleep(0.3)
    assert rig.runs("twice") == 1


async def test_idempotent_failures_are_retried_with_backoff(rig, monkeypatch):
    monkeypatch.setattr(jobs_module, "RETRY_BASE_SECONDS", 0.1)
    job = await rig.hub.jobs.create(rig.rt.node_id, "jobber.flaky", {"name": "flaky", "succeed_on": 3}, actor="user:test")
    done = await rig.final(job.job_id)
    assert done.state == "succeeded" and done.attempt == 3 and rig.runs("flaky") == 3
    again = await rig.hub.jobs.create(rig.rt.node_id, "jobber.flaky", {"name": "never", "succeed_on": 99}, actor="user:test")
    failed = await rig.final(again.job_id)
    assert failed.state == "failed" and failed.attempt == 3 and rig.runs("never") == 3


async def test_timeouts_and_cancel(rig):
    hung = await rig.hub.jobs.create(rig.rt.node_id, "jobber.hang", {"name": "hang"}, actor="user:test")
    done = await rig.final(hung.job_id)
    assert done.state == "timed_out" and "0.5 s" in done.error
    slow = await rig.hub.jobs.create(rig.rt.node_id, "jobber.slow", {"name": "cancelme", "steps": 50, "pause": 0.1}, actor="user:test")
    await until(lambda: _state(rig.hub, slow.job_id, "running"))
    await rig.hub.jobs.cancel(slow.job_id, actor="user:test")
    assert (await rig.final(slow.job_id)).state == "cancelled"
    assert rig.runs("cancelme") == 0


async def _state(hub, job_id, state):
    job = await hub.store.get_job(job_id)
    return job is not None and job.state == state


async def test_a_queued_job_waits_for_its_node_and_can_be_cancelled(rig):
    hub, node_id = rig.hub, rig.rt.node_id
    await rig.stop_agent()
    await until(lambda: truthy(node_id not in hub.jobs.channels))
    job = await hub.jobs.create(node_id, "jobber.count", {"name": "never"}, actor="user:test")
    await asyncio.sleep(0.6)
    assert (await rig.job(job.job_id)).state == "queued"  # nothing to send it to: it waits
    cancelled = await hub.jobs.cancel(job.job_id, actor="user:test")
    assert cancelled.state == "cancelled"
    await rig.start_agent(node_id)
    await asyncio.sleep(0.6)
    assert rig.runs("never") == 0


async def test_per_node_concurrency_is_bounded(rig):
    jobs = [await rig.hub.jobs.create(rig.rt.node_id, "jobber.slow", {"name": f"c{chr(97 + i)}", "steps": 4, "pause": 0.1}, actor="user:test") for i in range(4)]
    peak = 0
    while True:
        states = [(await rig.job(j.job_id)).state for j in jobs]
        peak = max(peak, sum(s in ("dispatched", "running") for s in states))
        if all(s == "succeeded" for s in states):
            break
        await asyncio.sleep(0.02)
    assert peak == jobs_module.DEFAULT_NODE_CONCURRENCY


async def test_agent_disconnected_mid_job_delivers_the_result_once_back(rig):
    hub = rig.hub
    job = await hub.jobs.create(rig.rt.node_id, "jobber.slow", {"name": "away", "steps": 10, "pause": 0.1}, actor="user:test")
    await until(lambda: _state(hub, job.job_id, "running"))
    await rig.server.close()  # the hub goes away while the job runs
    await until(lambda: truthy(rig.runs("away") == 1), what="the job to finish on the agent")
    await rig.start_hub()  # same data dir and port: the agent reconnects and resends the result
    done = await rig.final(job.job_id)
    assert done.state == "succeeded" and done.result["runs"] == 1 and rig.runs("away") == 1


async def test_lease_expiry_requeues_and_the_job_still_runs_once(rig, monkeypatch):
    monkeypatch.setattr(jobs_module, "LEASE_SECONDS", 0.3)
    hub, node_id = rig.hub, rig.rt.node_id
    real = hub.jobs.channels[node_id]
    dropped = []

    async def lossy(text):  # the first delivery is lost on the way
        if not dropped:
            dropped.append(text)
            return
        await real(text)

    hub.jobs.channels[node_id] = lossy
    job = await hub.jobs.create(node_id, "jobber.count", {"name": "lease"}, actor="user:test")
    done = await rig.final(job.job_id)
    assert dropped and done.state == "succeeded" and rig.runs("lease") == 1


async def test_agent_restarted_with_a_job_running_never_runs_it_again(rig):
    hub, node_id = rig.hub, rig.rt.node_id
    job = await hub.jobs.create(node_id, "jobber.slow", {"name": "restart", "steps": 30, "pause": 0.1}, actor="user:test")
    await until(lambda: _state(hub, job.job_id, "running"))
    await rig.stop_agent()  # the agent stops mid-job
    await rig.start_agent(node_id)
    done = await rig.final(job.job_id)
    assert done.state == "failed" and "not run again" in done.error
    await asyncio.sleep(0.5)
    assert rig.runs("restart") == 0


async def test_hub_restarted_with_jobs_in_every_state_loses_none(rig):
    hub, node_id = rig.hub, rig.rt.node_id
    finished = await hub.jobs.create(node_id, "jobber.echo", {"text": "kept"}, actor="user:test")
    await rig.final(finished.job_id)
    running = await hub.jobs.create(node_id, "jobber.slow", {"name": "during", "steps": 8, "pause": 0.1}, actor="user:test")
    await until(lambda: _state(hub, running.job_id, "running"))
    await rig.server.close()
    await rig.start_hub()
    hub = rig.hub
    assert (await hub.store.get_job(finished.job_id)).state == "succeeded"
    await until(lambda: agent_ready(hub, node_id))
    queued = await hub.jobs.create(node_id, "jobber.count", {"name": "after"}, actor="user:test")
    assert (await rig.final(running.job_id)).state == "succeeded"
    assert (await rig.final(queued.job_id)).state == "succeeded"
    assert rig.runs("during") == 1 and rig.runs("after") == 1


async def test_rate_limit_per_action_on_the_agent(rig):
    states = []
    for _ in range(3):
        job = await rig.hub.jobs.create(rig.rt.node_id, "jobber.limited", {"text": "x"}, actor="user:test")
        states.append(await rig.final(job.job_id))
    assert [s.state for s in states] == ["succeeded", "succeeded", "refused"]
    assert "at most 2 times a minute" in states[2].error


async def test_schedules_create_jobs_when_due(rig):
    from roost.core.hub.jobs import next_run

    schedule = await rig.hub.jobs.add_schedule(rig.rt.node_id, "jobber.echo", {"text": "cron"}, "*/5 * * * *", actor="user:test")
    assert schedule.next_run == next_run("*/5 * * * *", schedule.created_at) and schedule.next_run > time.time()
    await rig.hub.store.update_schedule(schedule.schedule_id, next_run=time.time() - 1)
    updated = await until(lambda: _scheduled(rig.hub, schedule.schedule_id))
    done = await rig.final(updated.last_job_id)
    assert done.state == "succeeded" and done.schedule_id == schedule.schedule_id and done.created_by == f"schedule:{schedule.schedule_id}"
    assert updated.next_run > time.time()


async def _scheduled(hub, schedule_id):
    schedule = await hub.store.get_schedule(schedule_id)
    return schedule if schedule.last_job_id else None


async def test_the_api_lists_actions_runs_them_and_checks_roles(make_hub, tmp_path):
    client = await make_hub()
    hub = client.app[HUB_KEY]
    agent_dir = tmp_path / "agent"
    JOBBER.write(agent_dir)
    # Through the in-test client's server: an agent runtime over its real socket.
    rt = AgentRuntime(
        data_dir=agent_dir,
        settings=AgentSettings(interval=0.5, heartbeat=1, ceiling=Ceiling(mode="execute")),
        integrations_config={"linux_host": {"enabled": False}, "jobber": {"counter_dir": str(tmp_path)}},
        entry_points=False,
    )
    node = await hub.add_node(public_key=rt.identity.public_key, hostname="box", name="box", facts={}, grants=["test.read"])
    rt.node_id = node.node_id
    await rt.start()
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(WebSocketUplink(str(client.make_url("")).rstrip("/"), backoff=Backoff(0.05, 0.2)), stop))
    try:
        await until(lambda: agent_ready(hub, node.node_id))
        listed = await (await client.get(f"/api/v1/nodes/{node.node_id}/actions")).json()
        by_name = {a["name"]: a for a in listed["actions"]}
        assert by_name["jobber.echo"]["allowed"] and not by_name["jobber.count"]["allowed"]
        assert "test.manage" in by_name["jobber.count"]["reason"]
        assert by_name["jobber.echo"]["params"][0]["name"] == "text"  # a form can be built from it
        resp = await client.post(f"/api/v1/nodes/{node.node_id}/actions/jobber.echo", json={"params": {"text": "hello"}})
        assert resp.status == 201, await resp.text()
        job_id = (await resp.json())["id"]
        done = await until(lambda: job_finished(hub, job_id))
        detail = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
        assert done.state == "succeeded" and detail["result"]["text"] == "hello" and "echo hello" in detail["output"]
        listing = await (await client.get("/api/v1/jobs", params={"node": node.node_id, "state": "succeeded"})).json()
        assert [j["id"] for j in listing["jobs"]] == [job_id]
        refused = await client.post(f"/api/v1/nodes/{node.node_id}/actions/jobber.count", json={"params": {"name": "x"}})
        assert refused.status == 409 and "test.manage" in (await refused.json())["error"]
        bad = await client.get("/api/v1/jobs", params={"state": "exploded"})
        assert bad.status == 400
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await rt.stop()


async def test_viewers_cannot_run_or_cancel_jobs(make_hub):
    viewer = await make_hub(as_role="viewer")
    resp = await viewer.post("/api/v1/nodes/nabc/actions/jobber.echo", json={"params": {"text": "x"}})
    assert resp.status == 403 and (await resp.json())["error"]
    assert (await viewer.post("/api/v1/jobs/jabc/cancel")).status == 403
    assert (await viewer.post("/api/v1/schedules", json={"node_id": "n", "action": "a.b", "cron": "* * * * *"})).status == 403
    assert (await viewer.get("/api/v1/jobs")).status == 200
