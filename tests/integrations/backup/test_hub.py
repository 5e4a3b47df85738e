"""Backups end to end: a real hub and a real agent over a real WebSocket, a real restic (or borg) repository on the agent.

Policies schedule backups, checks and restore tests as jobs; verdicts go green,
then red (with an alert) once the repository is corrupted; retention runs only
with the operator's signature or the rule the operator signed once; a hub
restart in the middle of a backup loses no result.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from support import until
from support_actions import ActionRig
from support_backup import corrupt

from roost.core import signing
from roost.core.capabilities import Ceiling

GRANTS = ["backup.read", "backup.run", "backup.restore"]
API = "/api/v1/integrations/backup"


class BackupRig(ActionRig):
    def __init__(self, tmp, repo, *, grants=GRANTS, ceiling=None, **repo_extra):
        super().__init__(tmp, {"backup": {"repositories": [{**repo.table, **repo_extra}], "inventory_refresh": 0}}, grants=grants, ceiling=ceiling)
        self.repo = repo
        self.key = signing.generate_operator_key()
        self.public = signing.public_key_of(self.key)
        # The scheduler ticks once at start; the tests tick it when they mean to.
        self.config.integrations["backup"] = {"tick_seconds": 3600}

    async def start(self, **kw):
        await super().start(api_role="admin", **kw)
        self.rt.settings.operator_keys = [self.public]
        await self.reported(lambda r: True, "the first report of the repository")
        return self

    @property
    def service(self):
        from roost.integrations.backup.hub import DATA_SERVICE

        return self.hub.manager.integrations["backup"].context.data[DATA_SERVICE]

    async def api_text(self, path):
        """A dashboard page as the logged-in admin sees it."""
        import aiohttp
        from support_auth import TEST_PASSWORD

        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            base = f"http://127.0.0.1:{self.port}"
            async with session.post(base + "/api/v1/session", json={"username": "admin", "password": TEST_PASSWORD}) as resp:
                assert resp.status == 200, await resp.text()
            async with session.get(base + path) as resp:
                return resp.status, await resp.text()

    async def raw_signed(self, action, params, envelope):
        """A destructive job sent straight to the agent with the given envelope, as a hub that skipped its own checks would."""
        from roost.core import protocol
        from roost.core.hub import jobs as jobs_module
        from roost.core.store.jobs import Job

        now = time.time()
        job = Job(job_id=jobs_module.new_job_id(), node_id=self.node_id, action=action, params=params, state="dispatched",
                  created_by="test", created_at=now, timeout=10, next_attempt_at=now + 3600)
        await self.hub.store.add_job(job)
        await self.hub.jobs.channels[self.node_id](protocol.encode("job", job_id=job.job_id, attempt=1, action=action, params=params, timeout=10, envelope=envelope))
        return await self.final(job.job_id)

    async def repo_state(self):
        detail = await self.hub.node_detail(self.node_id)
        repos = ((detail or {}).get("state") or {}).get("backup", {}).get("repositories", [])
        return next((r for r in repos if r["name"] == self.repo.name), None)

    async def reported(self, predicate, what, timeout=30.0):
        async def check():
            repo = await self.repo_state()
            return repo if repo is not None and predicate(repo) else None

        return await until(check, timeout, what)

    async def row(self):
        status, body = await self.api("GET", f"{API}/overview")
        assert status == 200, body
        return next(r for r in body["rows"] if r["name"] == self.repo.name)

    def envelope(self, action, params, ttl=600):
        return signing.sign_envelope(signing.make_envelope(action, params, self.node_id, params.get("repository") if "target" not in params else params["target"], ttl), self.key)

    async def sched_job(self, policy_id, what):
        """The job the scheduler queued for ``what`` (backup, verify, restore, retention) of a policy on this node."""
        async def queued():
            sched = await self.service.ctx.store.get(f"sched:{policy_id}:{self.node_id}")
            return (sched or {}).get("jobs", {}).get(what)

        return await until(queued, 30, f"the scheduler to queue {what}")

    def repo_path(self, tail=""):
        return f"{API}/nodes/{self.node_id}/repositories/{self.repo.name}{tail}"


@pytest.fixture
async def rig(tmp_path, restic_repo):
    rig = BackupRig(tmp_path, restic_repo)
    await rig.start()
    yield rig
    await rig.close()


async def test_a_policy_backs_up_checks_and_restore_tests_on_schedule_and_goes_green(rig):
    status, body = await rig.api(
        "POST",
        f"{API}/policies",
        json={
            "name": "nightly docs",
            "nodes": [rig.node_id],
            "repository": rig.repo.name,
            "schedule": "30 2 * * *",
            "retention": {"keep_last": 2},
            "verify_interval_hours": 24,
            "restore_test_interval_hours": 168,
            "max_age_hours": 26,
        },
    )
    assert status == 200, body
    policy = body["policy"]
    before = await rig.row()
    assert before["verdict"] == "stale" and before["policy"]["id"] == policy["id"]

    # A day later by the scheduler's clock: the 02:30 slot has passed.
    made = await rig.service.tick(now=time.time() + 86400 + 60)
    actions = sorted(m["action"] for m in made)
    assert actions == ["backup.run"], made  # no snapshot yet, so no restore test; the check is due
    job = await rig.final(made[0]["job"], timeout=60)
    assert job.state == "succeeded", job.error
    assert job.created_by == f"backup:policy:{policy['id']}"
    await rig.reported(lambda r: r.get("last_success") and r.get("latest_at"), "the backup in the node's report")

    made = await rig.service.tick(now=time.time() + 86400 + 120)
    assert sorted(m["action"] for m in made) == ["backup.restore_test", "backup.verify"]
    for item in made:
        final = await rig.final(item["job"], timeout=60)
        assert final.state == "succeeded", final.error
    repo = await rig.reported(lambda r: r.get("verify", {}).get("ok") and r.get("restore_test", {}).get("ok"), "check and restore test results")
    assert repo["verify"]["read_data_subset"] == "1/10"
    row = await rig.row()
    assert row["verdict"] == "fresh", row["reasons"]
    assert row["last_restore_test"]["files_checked"] == 8
    # Nothing is due again right away: a second tick queues nothing.
    assert await rig.service.tick() == []

    status, page = await rig.api_text("/backups")
    assert status == 200 and "fresh" in page and rig.repo.name in page and "nightly docs" in page


async def test_a_corrupted_repository_turns_red_and_alerts(rig):
    for kind in ("backup.verify_failed", "backup.restore_test_failed"):
        status, body = await rig.api("POST", "/api/v1/alerts/rules", json={"name": kind, "kind": kind, "severity": "critical"})
        assert status in (200, 201), body
    job = await rig.run("backup.run", {"repository": rig.repo.name}, timeout=60)
    assert job.state == "succeeded", job.error
    corrupt(rig.repo)
    status, body = await rig.api("POST", rig.repo_path("/verify"), json={"read_data": True})
    assert status == 200, body
    final = await rig.final(body["job"]["id"], timeout=60)
    assert final.state == "failed" and "check" in final.error
    status, body = await rig.api("POST", rig.repo_path("/restore-test"), json={})
    final = await rig.final(body["job"]["id"], timeout=60)
    assert final.state == "failed" and "restore test" in final.error
    await rig.reported(lambda r: r.get("verify", {}).get("ok") is False and r.get("restore_test", {}).get("ok") is False, "the failures in the report")
    row = await rig.row()
    assert row["verdict"] == "failed"
    assert any("check found problems" in why for why in row["reasons"]) and any("restore test failed" in why for why in row["reasons"])

    async def firing():
        alerts = await rig.hub.alerts.firing(rig.node_id)
        names = {a["rule_name"] for a in alerts if a["labels"].get("repository") == rig.repo.name}
        return names if names >= {"backup.verify_failed", "backup.restore_test_failed"} else None

    await until(firing, 30, "the verify and restore-test alerts to fire")


async def test_prune_needs_the_operators_signature(rig):
    for _ in range(3):
        job = await rig.run("backup.run", {"repository": rig.repo.name}, timeout=60)
        assert job.state == "succeeded", job.error
    rule = {"keep_last": 1}
    status, body = await rig.api("POST", rig.repo_path("/prune/preview"), json={"retention": rule})
    assert status == 200, body
    preview = await rig.final(body["job"]["id"], timeout=60)
    assert preview.state == "succeeded" and len(preview.result["keep"]) == 1 and len(preview.result["remove"]) == 2

    # No envelope: the hub refuses at once (409); sent straight to the agent, the agent refuses too.
    status, body = await rig.api("POST", rig.repo_path("/prune"), json={"retention": rule})
    assert status == 409 and "sign" in body["error"]
    params = {"repository": rig.repo.name, "retention": {"keep_last": 1}}
    raw = await rig.raw("backup.prune", params)
    assert raw.state == "refused" and "signature" in raw.error
    # Signed by a key the agent does not trust.
    stranger = signing.sign_envelope(signing.make_envelope("backup.prune", params, rig.node_id, rig.repo.name), signing.generate_operator_key())
    status, body = await rig.api("POST", rig.repo_path("/prune"), json={"retention": rule, "envelope": stranger})
    final = await rig.final(body["job"]["id"])
    assert final.state == "refused" and "does not trust" in final.error
    # Signed for another rule than the one run: the parameters differ.
    other = rig.envelope("backup.prune", {"repository": rig.repo.name, "retention": {"keep_last": 2}})
    raw = await rig.raw_signed("backup.prune", params, other)
    assert raw.state == "refused" and "differ" in raw.error
    assert len((await rig.repo_state())["snapshots"]) == 3

    good = rig.envelope("backup.prune", params)
    status, body = await rig.api("POST", rig.repo_path("/prune"), json={"retention": rule, "envelope": good})
    assert status == 200, body
    final = await rig.final(body["job"]["id"], timeout=60)
    assert final.state == "succeeded", final.error
    assert len(final.result["remove"]) == 2
    await rig.reported(lambda r: r["snapshot_count"] == 1, "one snapshot left")
    # The same envelope never runs twice.
    status, body = await rig.api("POST", rig.repo_path("/prune"), json={"retention": rule, "envelope": good})
    final = await rig.final(body["job"]["id"])
    assert final.state == "refused" and "already used" in final.error


async def test_scheduled_retention_keeps_to_the_rule_the_operator_signed_once(rig):
    for _ in range(3):
        assert (await rig.run("backup.run", {"repository": rig.repo.name}, timeout=60)).state == "succeeded"
    rule = {"keep_last": 2}
    # Before any approval the agent refuses the scheduled prune.
    status, body = await rig.api("POST", rig.repo_path("/prune"), json={"retention": rule, "approved": True})
    final = await rig.final(body["job"]["id"])
    assert final.state == "refused" and "no signed retention rule" in final.error

    approval = rig.envelope("backup.retention.approve", {"repository": rig.repo.name, "retention": rule})
    status, body = await rig.api("POST", rig.repo_path("/retention/approve"), json={"retention": rule, "envelope": approval})
    final = await rig.final(body["job"]["id"])
    assert final.state == "succeeded", final.error
    await rig.reported(lambda r: r.get("approved_retention"), "the approved rule in the report")

    # A policy with another rule: the agent refuses it, whatever the hub says.
    status, body = await rig.api("POST", rig.repo_path("/prune"), json={"retention": {"keep_last": 1}, "approved": True})
    final = await rig.final(body["job"]["id"])
    assert final.state == "refused" and "differs from the one the operator signed" in final.error
    assert (await rig.repo_state())["snapshot_count"] == 3

    # The policy whose rule was signed prunes after each backup, with no further signature.
    status, body = await rig.api(
        "POST", f"{API}/policies", json={"name": "keep two", "nodes": [rig.node_id], "repository": rig.repo.name, "retention": rule, "prune_after_backup": True}
    )
    assert status == 200, body
    # Saving a policy wakes the scheduler; whichever tick gets there first queues the prune, once.
    await rig.service.tick()
    job_id = await rig.sched_job(body["policy"]["id"], "retention")
    final = await rig.final(job_id, timeout=60)
    assert final.action == "backup.prune.approved"
    assert final.state == "succeeded", final.error
    assert len(final.result["remove"]) == 1, final.result
    await rig.reported(lambda r: r["snapshot_count"] == 2, "two snapshots left")

    # Revoking the approval stops scheduled pruning on the agent.
    status, body = await rig.api("POST", rig.repo_path("/retention/revoke"), json={})
    assert (await rig.final(body["job"]["id"])).state == "succeeded"
    status, body = await rig.api("POST", rig.repo_path("/prune"), json={"retention": rule, "approved": True})
    assert (await rig.final(body["job"]["id"])).state == "refused"


async def test_backup_capabilities_are_grants_intersected_with_the_ceiling(tmp_path, restic_repo):
    rig = BackupRig(tmp_path, restic_repo, ceiling=Ceiling(mode="read-only"))
    await rig.start()
    try:
        raw = await rig.raw("backup.run", {"repository": restic_repo.name})
        assert raw.state == "refused" and "ceiling" in raw.error
        listed = await rig.raw("backup.snapshots", {"repository": restic_repo.name})
        assert listed.state == "succeeded"
    finally:
        await rig.close()
    rig = BackupRig(tmp_path / "second", restic_repo, grants=["backup.read"])
    (tmp_path / "second").mkdir()
    await rig.start()
    try:
        raw = await rig.raw("backup.run", {"repository": restic_repo.name})
        assert raw.state == "refused" and "not granted" in raw.error
        status, body = await rig.api("POST", rig.repo_path("/run"), json={})
        assert status == 409 and "backup.run" in body["error"]
    finally:
        await rig.close()


async def test_a_hub_restart_during_a_backup_loses_no_result(tmp_path, restic_repo):
    # Enough data, at a limited upload rate, that the backup is still running when the hub goes away.
    big = restic_repo.tree / "big"
    big.mkdir()
    for n in range(4):
        (big / f"blob{n}.bin").write_bytes(__import__("os").urandom(1024 * 1024))
    rig = BackupRig(tmp_path, restic_repo, upload_limit_kib=512)
    await rig.start()
    try:
        status, body = await rig.api("POST", rig.repo_path("/run"), json={})
        assert status == 200, body
        job_id = body["job"]["id"]

        async def running():
            job = await rig.hub.store.get_job(job_id)
            return job if job.state == "running" and job.progress else None

        await until(running, 30, "the backup to report progress")
        await rig.server.close()
        from aiohttp.test_utils import TestServer

        from roost.core.hub.app import create_app

        rig.server = TestServer(create_app(rig.config), host="127.0.0.1", port=rig.port)
        await rig.server.start_server()
        final = await rig.final(job_id, timeout=90)
        assert final.state == "succeeded", final.error
        assert final.result["snapshot_id"] and final.result["files"] == 12
        repo = await rig.reported(lambda r: r.get("last_success", {}).get("job_id") == job_id, "the result in the report after the restart")
        assert repo["snapshot_count"] == 1
    finally:
        await rig.close()


async def test_stale_and_failed_backups_alert_and_resolve(rig):
    for kind, settings in (("backup.stale", {"max_age_hours": 1}), ("backup.failed", {})):
        status, body = await rig.api("POST", "/api/v1/alerts/rules", json={"name": kind, "kind": kind, "settings": settings})
        assert status in (200, 201), body

    async def firing(name):
        alerts = await rig.hub.alerts.firing(rig.node_id)
        return [a for a in alerts if a["rule_name"] == name and a["labels"].get("repository") == rig.repo.name]

    async def resolved(name):
        return not await firing(name)

    # No snapshot at all: stale.
    (alert,) = await until(lambda: firing("backup.stale"), 30, "the stale alert")
    assert "has no snapshot yet" in alert["summary"]
    # A run that fails (the repository's password changed under it): failed, and still stale.
    good = rig.repo.secret.read_text()
    rig.repo.secret.write_text("not-the-password\n")
    job = await rig.run("backup.run", {"repository": rig.repo.name}, timeout=60)
    assert job.state == "failed"
    (alert,) = await until(lambda: firing("backup.failed"), 30, "the failed alert")
    assert alert["severity"] == "critical" and "wrong password" in alert["summary"]
    # Fixed: the next backup resolves both.
    rig.repo.secret.write_text(good)
    job = await rig.run("backup.run", {"repository": rig.repo.name}, timeout=60)
    assert job.state == "succeeded", job.error
    await until(lambda: resolved("backup.failed"), 30, "the failed alert to resolve")
    await until(lambda: resolved("backup.stale"), 30, "the stale alert to resolve")


async def test_an_approval_is_bound_to_its_node_and_repository(rig):
    rule = {"keep_last": 2}
    params = {"repository": rig.repo.name, "retention": {"keep_last": 2}}
    elsewhere = signing.sign_envelope(signing.make_envelope("backup.retention.approve", params, "n0000000000ff", rig.repo.name), rig.key)
    raw = await rig.raw_signed("backup.retention.approve", params, elsewhere)
    assert raw.state == "refused" and "signed for node" in raw.error
    # A prune envelope does not approve a rule, and an approval does not prune.
    prune = rig.envelope("backup.prune", params)
    raw = await rig.raw_signed("backup.retention.approve", params, prune)
    assert raw.state == "refused" and "signed for action" in raw.error
    # The hub will not forward an envelope for another repository under this one's URL.
    other = rig.envelope("backup.retention.approve", {"repository": "someone-else", "retention": rule})
    status, body = await rig.api("POST", rig.repo_path("/retention/approve"), json={"retention": rule, "envelope": other})
    assert status == 409 and "someone-else" in body["error"]
    assert (await rig.repo_state()).get("approved_retention") is None
