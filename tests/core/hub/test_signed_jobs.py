"""Signed destructive operations end to end: a real hub, a real agent over a real WebSocket, a destructive test action.

The hub makes and forwards envelopes; only the agent decides. Every refusal
must reach the job's result with its reason and both audit logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from support import free_port, until
from support_auth import seed_user
from support_hub import hub_config
from support_jobs import HubAgentRig, IntegrationSource, truthy

from roost.agent.runtime import AgentRuntime, load_state, save_state
from roost.core import protocol, signing
from roost.core.capabilities import Ceiling
from roost.core.config import AgentSettings
from roost.core.hub import jobs as jobs_module
from roost.core.hub.app import HUB_KEY, create_app, create_join_token
from roost.core.store.jobs import Job

ACTION = "wrecker.guest.destroy"
PASSPHRASE = "correct horse battery staple"

WRECKER_SOURCE = '''
from pathlib import Path
import voluptuous as vol
from roost.core import hookimpl
from roost.core.actions import ActionSpec


def destroy(ctx, params):
    path = Path(ctx.config["counter_dir"]) / f"destroyed-{params['vmid']}"
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    return {"output": f"destroyed {params['vmid']}", "runs": n, "nonce": ctx.envelope["nonce"]}


@hookimpl
def roost_capabilities(ctx):
    return ["test.manage"]


@hookimpl
def roost_actions(ctx):
    schema = vol.Schema({vol.Required("vmid"): vol.All(int, vol.Range(min=100)), vol.Optional("purge", default=False): bool})
    return [ActionSpec(name="wrecker.guest.destroy", capability="test.manage", handler=destroy, schema=schema,
                       destructive=True, target="vmid", timeout=5, description="destroy a guest")]


CONFIG_SCHEMA = vol.Schema({vol.Required("counter_dir"): str})
'''
WRECKER = IntegrationSource("wrecker", "Wrecker", WRECKER_SOURCE)


class Rig(HubAgentRig):
    """A hub on a fixed port, an operator with an API token, one agent that trusts the operator key."""

    final_timeout = 10.0

    def __init__(self, tmp: Path) -> None:
        self.key = signing.generate_operator_key()
        self.public = signing.public_key_of(self.key)
        super().__init__(tmp, WRECKER, grants=["test.manage"], hostname="pve", operator_keys=[self.public])
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        token = await seed_user(self.config, "op", "operator")
        await self.start_hub()
        self.http = aiohttp.ClientSession(f"http://127.0.0.1:{self.port}", headers={"Authorization": f"Bearer {token}"})
        await self.start_agent()

    async def stop_agent(self) -> None:
        await super().stop_agent()
        await until(lambda: truthy(self.node_id not in self.hub.jobs.channels), what="the hub to notice")

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        await super().close()

    # ------------------------------------------------------------ helpers

    def envelope(self, params, *, node_id=None, target=None, ttl=600, now=None, key=None):
        unsigned = signing.make_envelope(ACTION, params, node_id or self.node_id, params["vmid"] if target is None else target, ttl, now=now)
        return signing.sign_envelope(unsigned, key or self.key)

    async def post(self, path: str, body: dict) -> tuple[int, dict]:
        async with self.http.post(path, json=body) as resp:
            return resp.status, await resp.json()

    async def run(self, body: dict) -> tuple[int, dict]:
        return await self.post(f"/api/v1/nodes/{self.node_id}/actions/{ACTION}", body)

    def runs(self, vmid: int) -> int:
        return super().runs(f"destroyed-{vmid}")

    async def hub_audit(self, action: str):
        return [e for e in await self.hub.store.list_audit(limit=500) if e.action == action]

    async def agent_audit(self, action: str):
        await asyncio.sleep(0.05)  # the executor records without waiting
        return [e for e in await self.rt.audit.recent(500) if e.action == action]


@pytest.fixture
async def rig(tmp_path):
    r = Rig(tmp_path)
    await r.start()
    yield r
    await r.close()


async def test_without_an_envelope_the_hub_answers_409_and_the_agent_refuses(rig):
    status, body = await rig.run({"params": {"vmid": 101}})
    assert status == 409 and "destructive" in body["error"] and "roost sign" in body["error"]
    [audited] = await rig.hub_audit("job.refused")
    assert audited.outcome == "refused" and audited.details["action"] == ACTION
    with pytest.raises(jobs_module.JobError, match="destructive"):
        await rig.hub.jobs.create(rig.node_id, ACTION, {"vmid": 101}, actor="user:test")

    # A hub that skips its checks gets nowhere: sent straight down the channel, the agent refuses.
    now = time.time()
    job = Job(job_id=jobs_module.new_job_id(), node_id=rig.node_id, action=ACTION, params={"vmid": 101}, state="dispatched", created_by="test", created_at=now, timeout=5, next_attempt_at=now + 3600)
    await rig.hub.store.add_job(job)
    await rig.hub.jobs.channels[rig.node_id](protocol.encode("job", job_id=job.job_id, attempt=1, action=ACTION, params={"vmid": 101}, timeout=5))
    done = await rig.final(job.job_id)
    assert done.state == "refused" and "carries no signed envelope" in done.error
    finished = [e for e in await rig.hub_audit("job.finished") if e.details["job"] == job.job_id]
    assert finished[0].outcome == "refused" and "no signed envelope" in finished[0].details["error"]
    [local] = await rig.agent_audit("job.refused")
    assert local.outcome == "refused" and local.target == f"job:{job.job_id}" and "no signed envelope" in local.details["why"]
    assert rig.runs(101) == 0


async def test_a_signed_operation_runs_once_and_never_again_even_after_a_restart(rig, tmp_path):
    # The dashboard asks the hub for the envelope and the command to copy.
    status, made = await rig.post(f"/api/v1/nodes/{rig.node_id}/actions/{ACTION}/envelope", {"params": {"vmid": 101}, "ttl": 300})
    assert status == 200, made
    unsigned = made["envelope"]
    assert unsigned["action"] == ACTION and unsigned["node_id"] == rig.node_id and unsigned["target"] == 101 and "signature" not in unsigned
    assert unsigned["expires_at"] - unsigned["issued_at"] == 300 and made["expires_at"] == unsigned["expires_at"]
    assert made["command"].endswith("| roost sign") and "target:   101" in made["summary"]
    assert made["submit"] == f"/api/v1/nodes/{rig.node_id}/actions/{ACTION}"

    # The operator runs that exact command on their own machine.
    key_path = tmp_path / "operator.pem"
    signing.save_operator_key(key_path, rig.key, PASSPHRASE, scrypt_n=2**10)
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    env = {**os.environ, "ROOST_OPERATOR_KEY": str(key_path), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = await asyncio.to_thread(
        subprocess.run, ["bash", "-c", made["command"] + f" --passphrase-file {tmp_path / 'pass'}"], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert "action:   wrecker.guest.destroy" in proc.stderr
    signed = json.loads(proc.stdout)

    # Pasted back: the params come from the envelope.
    status, job = await rig.run({"envelope": signed})
    assert status == 201, job
    assert job["signed"] and job["params"] == {"vmid": 101}
    done = await rig.final(job["id"])
    assert done.state == "succeeded" and done.result["nonce"] == signed["nonce"] and rig.runs(101) == 1

    # The same envelope again, as a new job: the hub forwards it, the agent refuses.
    status, again = await rig.run({"envelope": signed, "params": {"vmid": 101}})
    assert status == 201
    replayed = await rig.final(again["id"])
    assert replayed.state == "refused" and "already used on this host" in replayed.error

    # And after the agent restarts.
    await rig.stop_agent()
    await rig.start_agent()
    status, third = await rig.run({"envelope": signed})
    assert status == 201
    after_restart = await rig.final(third["id"])
    assert after_restart.state == "refused" and "already used on this host" in after_restart.error
    assert rig.runs(101) == 1
    refusals = [e for e in await rig.hub_audit("job.finished") if e.outcome == "refused"]
    assert {e.details["job"] for e in refusals} == {again["id"], third["id"]}


async def test_envelopes_that_do_not_fit_are_refused_by_the_agent_with_the_reason(rig):
    other_key = signing.generate_operator_key()
    now = time.time()
    tampered = rig.envelope({"vmid": 103})
    tampered["params"] = {"vmid": 103, "purge": True}
    cases = [
        ("expired", {"vmid": 101}, rig.envelope({"vmid": 101}, ttl=60, now=now - 3600), "expired at"),
        ("far future", {"vmid": 101}, rig.envelope({"vmid": 101}, now=now + 3600), "in the future"),
        ("other node", {"vmid": 101}, rig.envelope({"vmid": 101}, node_id="nsomewhereelse"), "signed for node nsomewhereelse, not this node"),
        ("other target", {"vmid": 102}, rig.envelope({"vmid": 101}), "signed for target 101, not 102"),
        ("other params", {"vmid": 101, "purge": True}, rig.envelope({"vmid": 101}), "parameters differ from the signed ones (purge)"),
        ("tampered", {"vmid": 103, "purge": True}, tampered, "changed after it was signed"),
        ("wrong key", {"vmid": 101}, rig.envelope({"vmid": 101}, key=other_key), "which this host does not trust"),
    ]
    jobs = []
    for name, params, envelope, why in cases:
        # Straight into the engine: the API's courtesy checks would catch some of these first.
        job = await rig.hub.jobs.create(rig.node_id, ACTION, params, actor="user:test", envelope=envelope)
        jobs.append((name, job.job_id, why))
    for name, job_id, why in jobs:
        done = await rig.final(job_id)
        assert done.state == "refused", (name, done.state, done.error)
        assert why in done.error and done.error.startswith("destructive action needs a valid operator signature: "), (name, done.error)
    hub_refusals = {e.details["job"]: e for e in await rig.hub_audit("job.finished") if e.outcome == "refused"}
    local_refusals = {e.target: e for e in await rig.agent_audit("job.refused")}
    for name, job_id, why in jobs:
        assert why in hub_refusals[job_id].details["error"], name
        assert why in local_refusals[f"job:{job_id}"].details["why"], name
    assert [rig.runs(v) for v in (101, 102, 103)] == [0, 0, 0]
    # A refused envelope used up nothing: the valid one for 101 still runs.
    job = await rig.hub.jobs.create(rig.node_id, ACTION, {"vmid": 101}, actor="user:test", envelope=rig.envelope({"vmid": 101}))
    assert (await rig.final(job.job_id)).state == "succeeded" and rig.runs(101) == 1


async def test_the_api_checks_what_it_can_and_only_operators_get_envelopes(rig):
    base = f"/api/v1/nodes/{rig.node_id}/actions/{ACTION}"
    status, body = await rig.post(base + "/envelope", {"params": {"purge": True}})
    assert status == 400 and "'vmid'" in body["error"]
    status, body = await rig.post(base + "/envelope", {"params": {"vmid": 101}, "ttl": 5})
    assert status == 400 and "ttl" in body["error"]
    status, body = await rig.post(f"/api/v1/nodes/{rig.node_id}/actions/wrecker.nothing/envelope", {"params": {"vmid": 101}})
    assert status == 409 and "does not offer" in body["error"]
    status, body = await rig.post(f"/api/v1/nodes/nnope/actions/{ACTION}/envelope", {"params": {"vmid": 101}})
    assert status == 404

    signed = rig.envelope({"vmid": 101})
    for sent, why in (
        ({"envelope": signed, "params": {"vmid": 102}}, "parameters differ"),
        ({"envelope": {k: v for k, v in signed.items() if k != "signature"}, "params": {"vmid": 101}}, "not signed yet"),
        ({"envelope": {**signed, "v": 7}}, "newer"),
        ({"envelope": rig.envelope({"vmid": 101}, node_id="nother")}, "not this action on this node"),
    ):
        status, body = await rig.run(sent)
        assert status == 409 and why in body["error"], (sent, body)
    assert len(await rig.hub_audit("job.refused")) == 4
    assert rig.runs(101) == 0

    viewer = await seed_user(rig.config, "viewer", "viewer")
    async with aiohttp.ClientSession(f"http://127.0.0.1:{rig.port}", headers={"Authorization": f"Bearer {viewer}"}) as http:
        async with http.post(base + "/envelope", json={"params": {"vmid": 101}}) as resp:
            assert resp.status == 403


async def test_agents_learn_the_operator_keys_when_they_pair_or_enrol(tmp_path):
    from roost.agent.pairing import pair
    from roost.core.cli import _enroll_with_token
    from roost.core.identity import Identity

    operator = signing.public_key_of(signing.generate_operator_key())
    port = free_port()
    server = TestServer(create_app(hub_config(tmp_path, operator_keys=[operator])), host="127.0.0.1", port=port)
    await server.start_server()
    hub = server.app[HUB_KEY]
    url = f"http://127.0.0.1:{port}"
    try:
        codes: list[str] = []
        task = asyncio.create_task(
            pair(url, Identity.generate(), hostname="pi", facts={}, capabilities=["test.manage"], ceiling=Ceiling(), ca_fingerprint=hub.ca_fingerprint, ssl_context=None, show_code=lambda code, rid, exp: codes.append(code))
        )
        pending = await until(lambda: hub.pairing.pending(), what="the pairing request")
        await hub.pairing.approve(pending[0]["id"], actor="user:test")
        paired = await asyncio.wait_for(task, 5)
        assert paired.operator_keys == [operator]

        agent_dir = tmp_path / "agent"
        rt = AgentRuntime(data_dir=agent_dir, settings=AgentSettings(), integrations_config={"linux_host": {"enabled": False}}, entry_points=False)
        token, _ = await create_join_token(hub.store, ttl=3600, uses=1)
        config = SimpleNamespace(data_dir=agent_dir, settings=AgentSettings(name="box"))
        state = await _enroll_with_token(rt, config, url, token)
        assert state["operator_keys"] == [operator]
        save_state(agent_dir, state)
        assert rt.operator_keys() == [operator] and load_state(agent_dir)["node_id"] == state["node_id"]
    finally:
        await server.close()
