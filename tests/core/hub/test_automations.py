"""Automations on a real hub with a real agent over a real WebSocket: jobs as automation:<id>, approvals, resume, loops, modes, refusals."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from support import until
from support_auth import seed_user
from support_jobs import HubAgentRig, IntegrationSource, truthy

from roost.core import signing
from roost.core.capabilities import Ceiling

SOURCE = '''
from pathlib import Path
import voluptuous as vol
from roost.core import hookimpl
from roost.core.actions import ActionSpec


def _count(ctx, name):
    path = Path(ctx.config["counter_dir"]) / name
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    return n


def clean(ctx, params):
    return {"runs": _count(ctx, "clean")}


def measure(ctx, params):
    path = Path(ctx.config["counter_dir"]) / "level"
    return {"used_percent": float(path.read_text()) if path.exists() else 50.0}


def wipe(ctx, params):
    return {"runs": _count(ctx, "wipe-" + str(params["disk"]))}


@hookimpl
def roost_capabilities(ctx):
    return ["autotest.run", "autotest.read", "autotest.manage"]


@hookimpl
def roost_actions(ctx):
    return [
        ActionSpec(name="autotest.clean", capability="autotest.run", handler=clean, timeout=5),
        ActionSpec(name="autotest.measure", capability="autotest.read", handler=measure, timeout=5),
        ActionSpec(name="autotest.wipe", capability="autotest.manage", handler=wipe, destructive=True, target="disk",
                   schema=vol.Schema({vol.Required("disk"): str}), timeout=5),
    ]


CONFIG_SCHEMA = vol.Schema({vol.Required("counter_dir"): str})
'''
AUTOTEST = IntegrationSource("autotest", "Automation test", SOURCE)
GRANTS = ["autotest.run", "autotest.read", "autotest.manage"]


class Rig(HubAgentRig):
    final_timeout = 20.0

    def __init__(self, tmp: Path, ceiling: Ceiling | None = None) -> None:
        self.key = signing.generate_operator_key()
        super().__init__(tmp, AUTOTEST, grants=GRANTS, hostname="box", ceiling=ceiling, operator_keys=[signing.public_key_of(self.key)])
        self.http: aiohttp.ClientSession | None = None
        self.token = ""

    async def start(self) -> None:
        self.token = await seed_user(self.config, "op", "operator")
        await self.start_hub()
        self.http = aiohttp.ClientSession(f"http://127.0.0.1:{self.port}", headers={"Authorization": f"Bearer {self.token}"})
        await self.start_agent()

    async def restart_hub(self) -> None:
        await self.stop_agent()
        await self.server.close()
        await self.start_hub()
        await self.start_agent()

    async def api(self, method: str, path: str, body=None):
        async with self.http.request(method, path, json=body) as resp:
            return resp.status, await resp.json()

    async def create(self, definition: dict) -> dict:
        status, body = await self.api("POST", "/api/v1/automations", {"definition": definition})
        assert status == 201, body
        return body

    async def run(self, automation_id: str, trigger=None, dry_run=False) -> dict:
        status, body = await self.api("POST", f"/api/v1/automations/{automation_id}/run", {"trigger": trigger or {}, "dry_run": dry_run})
        assert status in (200, 201), body
        return body

    async def run_state(self, run_id: str, *states: str) -> dict:
        async def reached():
            status, body = await self.api("GET", f"/api/v1/automation-runs/{run_id}")
            return body if body.get("state") in states else None

        return await until(reached, 30, f"run {run_id} to be {'/'.join(states)}")

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        await super().close()


@pytest.fixture
async def rig(tmp_path):
    r = Rig(tmp_path)
    await r.start()
    yield r
    await r.close()


def cleanup(node_id: str, **extra) -> dict:
    return {
        "id": "cleanup",
        "name": "Clean up after approval",
        "triggers": [{"kind": "manual"}],
        "steps": [
            {"id": "measure", "action": "confirm", "with": {"node": node_id, "action": "autotest.measure", "value": "used_percent", "above": 80}},
            {"id": "approval", "wait_for_approval": {"summary": "Clean {{ automation.id }}? level {{ steps.measure.value }}", "timeout": "10m"}},
            {"id": "clean", "action": "job", "with": {"node": node_id, "action": "autotest.clean"}},
        ],
        **extra,
    }


async def test_an_invalid_automation_is_refused_with_the_path_of_the_bad_field(rig):
    bad = cleanup(rig.node_id)
    bad["steps"][2]["with"]["nod"] = bad["steps"][2]["with"].pop("node")
    bad["mode"] = "sometimes"
    status, body = await rig.api("POST", "/api/v1/automations", {"definition": bad})
    assert status == 400, body
    paths = {e["path"]: e["message"] for e in body["errors"]}
    assert "mode" in paths and "single, restart, queued, parallel" in paths["mode"]
    bad["mode"] = "single"
    status, body = await rig.api("POST", "/api/v1/automations", {"definition": bad})
    paths = {e["path"]: e["message"] for e in body["errors"]}
    assert status == 400 and "steps[2].with.node" in paths and "steps[2].with.nod" in paths, paths
    assert "allowed here: node, action, params, timeout" in paths["steps[2].with.nod"]
    status, body = await rig.api("POST", "/api/v1/automations", {"text": "name: x\ntriggers:\n  - kind: sundial\nsteps:\n  - stop: no\n", "format": "yaml"})
    assert status == 400 and body["errors"][0]["path"] == "triggers[0].kind" and "automation.cron" in body["errors"][0]["message"], body
    assert await rig.hub.store.list_automations() == []  # nothing saved


async def test_an_automation_cannot_carry_a_signed_envelope(rig):
    definition = cleanup(rig.node_id)
    definition["steps"][2]["with"]["envelope"] = {"signature": "forged"}
    status, body = await rig.api("POST", "/api/v1/automations", {"definition": definition})
    assert status == 400 and body["errors"][0]["path"] == "steps[2].with.envelope", body
    assert "never" in body["error"] or "cannot carry" in body["error"]


async def test_the_cleanup_runs_once_as_the_automation_only_after_approval(rig):
    (rig.counters / "level").write_text("93.5")
    await rig.create(cleanup(rig.node_id))
    run = await rig.run("cleanup")
    waiting = await rig.run_state(run["id"], "waiting")
    [approval] = waiting["approvals"]
    assert approval["state"] == "pending" and "level 93.5" in approval["summary"]
    assert rig.runs("clean") == 0  # nothing ran without approval

    # An API token, even an admin's, never decides an approval: only a person logged in.
    status, body = await rig.api("POST", f"/api/v1/approvals/{approval['id']}", {"decision": "approve"})
    assert status == 403 and "logged in to the dashboard" in body["error"], body
    assert rig.runs("clean") == 0

    await rig.hub.automations.decide(approval["id"], approve=True, actor="user:op")
    done = await rig.run_state(run["id"], "succeeded")
    assert rig.runs("clean") == 1
    [job_id] = done["jobs"].values() if len(done["jobs"]) == 1 else [done["jobs"]["steps[2]"]]
    job = await rig.job(done["jobs"]["steps[2]"])
    assert job.created_by == "automation:cleanup" and job.state == "succeeded"
    kinds = [(t["path"], t["kind"], t["state"]) for t in done["trace"]]
    assert kinds == [("steps[0]", "automation.confirm", "done"), ("steps[1]", "wait_for_approval", "done"), ("steps[2]", "automation.job", "done")], kinds
    audited = [e.action for e in await rig.hub.store.list_audit(limit=200)]
    assert "automation.approval_requested" in audited and "automation.approved" in audited


async def test_a_fresh_measurement_below_the_line_stops_the_run(rig):
    (rig.counters / "level").write_text("40")
    await rig.create(cleanup(rig.node_id))
    run = await rig.run("cleanup")
    done = await rig.run_state(run["id"], "stopped")
    assert "not confirmed" in done["error"] and "40" in done["error"]
    assert await rig.hub.store.list_approvals() == [] and rig.runs("clean") == 0


async def test_a_denied_or_expired_approval_never_runs_the_cleanup(rig):
    (rig.counters / "level").write_text("95")
    definition = cleanup(rig.node_id)
    definition["steps"][1]["wait_for_approval"]["timeout"] = "10s"
    await rig.create(definition)
    first = await rig.run("cleanup")
    waiting = await rig.run_state(first["id"], "waiting")
    await rig.hub.automations.decide(waiting["approvals"][0]["id"], approve=False, actor="user:op", note="not now")
    denied = await rig.run_state(first["id"], "denied")
    assert "not now" in denied["error"]
    second = await rig.run("cleanup")
    expired = await rig.run_state(second["id"], "expired")
    assert "expired" in expired["error"]
    with pytest.raises(ValueError, match="already expired|expired"):
        await rig.hub.automations.decide(expired["approvals"][0]["id"], approve=True, actor="user:op")
    assert rig.runs("clean") == 0


async def test_a_hub_restart_while_waiting_resumes_the_run_and_the_job_runs_exactly_once(rig):
    (rig.counters / "level").write_text("91")
    await rig.create(cleanup(rig.node_id))
    run = await rig.run("cleanup")
    waiting = await rig.run_state(run["id"], "waiting")
    await rig.restart_hub()
    again = await rig.run_state(run["id"], "waiting")
    assert [t["path"] for t in again["trace"]] == ["steps[0]", "steps[1]"]  # the measurement did not run twice
    await rig.hub.automations.decide(waiting["approvals"][0]["id"], approve=True, actor="user:op")
    await rig.run_state(run["id"], "succeeded")
    assert rig.runs("clean") == 1


async def test_a_destructive_step_needs_the_operators_envelope_given_with_the_approval(rig):
    definition = {
        "id": "wiper",
        "name": "Wipe scratch disk",
        "triggers": [{"kind": "manual"}],
        "steps": [{"wait_for_approval": {"summary": "wipe?"}}, {"action": "job", "with": {"node": rig.node_id, "action": "autotest.wipe", "params": {"disk": "scratch"}}}],
    }
    await rig.create(definition)
    first = await rig.run("wiper")
    waiting = await rig.run_state(first["id"], "waiting")
    await rig.hub.automations.decide(waiting["approvals"][0]["id"], approve=True, actor="user:op")
    refused = await rig.run_state(first["id"], "refused")
    assert "destructive" in refused["error"] and "can never make" in refused["error"]
    assert rig.runs("wipe-scratch") == 0

    second = await rig.run("wiper")
    waiting = await rig.run_state(second["id"], "waiting")
    unsigned = signing.make_envelope("autotest.wipe", {"disk": "scratch"}, rig.node_id, "scratch", 600)
    await rig.hub.automations.decide(waiting["approvals"][0]["id"], approve=True, actor="user:op", envelope=signing.sign_envelope(unsigned, rig.key))
    await rig.run_state(second["id"], "succeeded")
    assert rig.runs("wipe-scratch") == 1

    # An envelope signed with any other key (what a hub or an automation could make) is refused by the agent.
    third = await rig.run("wiper")
    waiting = await rig.run_state(third["id"], "waiting")
    forged = signing.sign_envelope(signing.make_envelope("autotest.wipe", {"disk": "scratch"}, rig.node_id, "scratch", 600), signing.generate_operator_key())
    await rig.hub.automations.decide(waiting["approvals"][0]["id"], approve=True, actor="user:op", envelope=forged)
    refused = await rig.run_state(third["id"], "refused")
    assert "the agent on node" in refused["error"], refused
    assert rig.runs("wipe-scratch") == 1


async def test_an_action_the_ceiling_denies_is_refused_and_the_run_says_so(tmp_path):
    r = Rig(tmp_path, ceiling=Ceiling(mode="execute", deny=["autotest.run"]))
    await r.start()
    try:
        await r.create({"id": "c", "name": "c", "triggers": [{"kind": "manual"}], "steps": [{"action": "job", "with": {"node": r.node_id, "action": "autotest.clean"}}]})
        run = await r.run("c")
        done = await r.run_state(run["id"], "refused")
        assert "autotest.run" in done["error"] and done["trace"][0]["state"] == "refused", done
        assert r.runs("clean") == 0

        # A hub that believes the ceiling allows it (here: its record of the ceiling tampered with) gets no further:
        # the agent checks its own ceiling, refuses, and the run says the agent refused.
        grants = await r.hub.store.get_grants(r.node_id)
        await r.hub.store.set_ceiling(r.node_id, {"mode": "execute"}, grants.offered, now=time.time())
        again = await r.run("c")
        refused = await r.run_state(again["id"], "refused")
        assert "the agent on node" in refused["error"] and "refused autotest.clean" in refused["error"], refused
        job = await r.job(refused["jobs"]["steps[0]"])
        assert job.state == "refused" and job.created_by == "automation:c"
        assert r.runs("clean") == 0
    finally:
        await r.close()


async def test_dry_run_says_what_would_happen_and_does_nothing(rig):
    (rig.counters / "level").write_text("99")
    await rig.create(cleanup(rig.node_id))
    run = await rig.run("cleanup", dry_run=True)
    assert run["dry_run"] and run["state"] == "succeeded", run
    assert [t["state"] for t in run["trace"]] == ["dry_run", "done", "dry_run"]
    assert "would wait" in run["trace"][1]["message"]
    assert run["trace"][2]["result"]["would_run"]["action"] == "autotest.clean"
    assert rig.runs("clean") == 0 and await rig.hub.store.list_approvals() == []
    jobs = await rig.hub.store.list_jobs(__import__("roost.core.store.jobs", fromlist=["JobFilter"]).JobFilter())
    assert jobs == []


async def test_an_automation_cannot_trigger_itself_and_the_refusal_is_audited(rig):
    await rig.create(
        {
            "id": "echo",
            "name": "Runs a job when a job finishes",
            "triggers": [{"kind": "job_finished", "action": "autotest.clean"}],
            "steps": [{"action": "job", "with": {"node": rig.node_id, "action": "autotest.clean"}}],
        }
    )
    status, job = await rig.api("POST", f"/api/v1/nodes/{rig.node_id}/actions/autotest.clean", {"params": {}})
    assert status == 201, job

    async def refused():
        entries = [e for e in await rig.hub.store.list_audit(limit=200) if e.action == "automation.loop_refused"]
        return entries or None

    [entry] = await until(refused, 30, "the loop to be refused")
    assert "cannot trigger itself" in entry.details["why"]
    await until(lambda: truthy(rig.runs("clean") == 2), 30, "the operator's job and the automation's one")
    await asyncio.sleep(0)  # nothing else is pending: the refused loop started no third job
    runs = await rig.hub.store.list_runs("echo")
    assert sorted(r.state for r in runs) == ["skipped", "succeeded"], runs


async def test_single_mode_drops_a_second_trigger_and_a_throttle_holds_per_node(rig):
    (rig.counters / "level").write_text("95")
    definition = cleanup(rig.node_id, throttle={"period": "1h", "max": 1, "per": "node"})
    await rig.create(definition)
    first = await rig.run("cleanup", trigger={"node_id": rig.node_id})
    await rig.run_state(first["id"], "waiting")
    second = await rig.run("cleanup", trigger={"node_id": "elsewhere"})
    assert second["state"] == "skipped" and "mode single" in second["error"], second
    await rig.hub.automations.cancel_run(first["id"], actor="user:op")
    third = await rig.run("cleanup", trigger={"node_id": rig.node_id})
    assert third["state"] == "skipped" and "throttled" in third["error"], third
