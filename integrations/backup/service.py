"""The backup integration's hub half at work: policies in ctx.store, the scheduler that turns them into jobs, the fleet overview and verdicts."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import voluptuous as vol

from roost.core.hub_integration import HubContext, RouteError, as_dict, as_list
from roost.core.integration import humanize_invalid

from .const import ACTION_PRUNE_APPROVED, ACTION_RESTORE_TEST, ACTION_RUN, ACTION_VERIFY
from .policies import (
    KIND_PBS,
    KIND_REPOSITORY,
    KIND_VZDUMP,
    POLICY,
    VERDICT_LABELS,
    VERDICT_ORDER,
    VERDICT_TONES,
    applies_to,
    judge_pbs,
    judge_repository,
    judge_vzdump,
    new_policy_id,
    repositories,
)

_LOGGER = logging.getLogger(__name__)

POLICY_PREFIX = "policy:"
SCHED_PREFIX = "sched:"
DEFAULT_TICK_SECONDS = 30.0
MAX_POLICIES = 500


def actor_of(policy: dict[str, Any]) -> str:
    return f"backup:policy:{policy['id']}"


class BackupService:
    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx
        self.tick_seconds = float(ctx.config.get("tick_seconds", DEFAULT_TICK_SECONDS))
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # One tick at a time: two would both see a slot as due and queue its jobs twice.
        self._ticking = asyncio.Lock()

    # ------------------------------------------------------------- policies

    async def policies(self) -> list[dict[str, Any]]:
        items = await self.ctx.store.items(POLICY_PREFIX)
        return sorted(items.values(), key=lambda p: (p.get("name", "").casefold(), p.get("id", "")))

    async def policy(self, policy_id: str) -> dict[str, Any]:
        found = await self.ctx.store.get(POLICY_PREFIX + policy_id)
        if found is None:
            raise RouteError(f"no backup policy {policy_id!r}", 404)
        return found

    async def save_policy(self, body: Any, *, actor: str, policy_id: str | None = None) -> dict[str, Any]:
        try:
            clean = POLICY(body)
        except vol.Invalid as err:
            raise RouteError(f"invalid policy: {humanize_invalid(err)}") from None
        now = time.time()
        if policy_id is None:
            if len(await self.ctx.store.items(POLICY_PREFIX)) >= MAX_POLICIES:
                raise RouteError(f"at most {MAX_POLICIES} backup policies; delete one first", 409)
            policy = {**clean, "id": new_policy_id(), "created_at": now, "created_by": actor}
        else:
            old = await self.policy(policy_id)
            policy = {**clean, "id": policy_id, "created_at": old.get("created_at", now), "created_by": old.get("created_by", actor)}
        policy["updated_at"] = now
        await self.ctx.store.put(POLICY_PREFIX + policy["id"], policy)
        await self.ctx.audit("backup.policy.saved", actor=actor, target=f"backup-policy:{policy['id']}", details={"name": policy["name"], "kind": policy["kind"], "created": policy_id is None})
        self._wake.set()
        return policy

    async def delete_policy(self, policy_id: str, *, actor: str) -> None:
        if not await self.ctx.store.delete(POLICY_PREFIX + policy_id):
            raise RouteError(f"no backup policy {policy_id!r}", 404)
        for key in await self.ctx.store.items(f"{SCHED_PREFIX}{policy_id}:"):
            await self.ctx.store.delete(key)
        await self.ctx.audit("backup.policy.deleted", actor=actor, target=f"backup-policy:{policy_id}")

    # ------------------------------------------------------------- overview

    async def _nodes(self) -> list[dict[str, Any]]:
        """Every node running the backup or proxmox integration, with its latest state."""
        out = []
        for node in await self.ctx.nodes.list():
            detail = await self.ctx.nodes.get(node["id"])
            if detail is None:
                continue
            state = as_dict(detail.get("state"))
            domains = {i.get("domain") for i in as_list(as_dict(detail.get("node")).get("integrations")) if i.get("state") == "loaded"}
            if "backup" in state or "proxmox" in state or domains & {"backup", "proxmox"}:
                out.append({"summary": node, "backup": state.get("backup"), "proxmox": state.get("proxmox"), "collected_at": detail.get("collected_at")})
        return out

    async def overview(self, now: float | None = None) -> dict[str, Any]:
        """Every policy on every node it covers and every repository and PBS datastore, with verdicts, worst first."""
        now = time.time() if now is None else now
        policies = await self.policies()
        scheds = await self.ctx.store.items(SCHED_PREFIX)
        nodes = await self._nodes()
        rows: list[dict[str, Any]] = []
        covered: set[tuple[str, str]] = set()
        for policy in policies:
            for node in nodes:
                summary = node["summary"]
                if not applies_to(policy, summary):
                    continue
                sched = as_dict(scheds.get(f"{SCHED_PREFIX}{policy['id']}:{summary['id']}"))
                row = {"policy": policy, "node": _node_view(summary), "sched": sched}
                if policy["kind"] == KIND_REPOSITORY:
                    repo = repositories(node["backup"]).get(policy["repository"])
                    covered.add((summary["id"], policy["repository"]))
                    row.update(kind="repository", name=policy["repository"], repository=repo, **judge_repository(repo, policy, now))
                elif policy["kind"] == KIND_PBS:
                    store = _pbs_store(node["proxmox"], policy["datastore"])
                    if store is None:
                        row.update(kind="pbs", name=policy["datastore"], verdict="unknown", reasons=["the datastore is not in this node's proxmox report"], problems=[])
                    else:
                        covered.add((summary["id"], "pbs:" + policy["datastore"]))
                        row.update(kind="pbs", name=policy["datastore"], datastore=store, **judge_pbs(store, policy, now, as_dict(node["proxmox"]).get("restore_tests")))
                else:
                    guests = as_list(as_dict(node["proxmox"]).get("guests"))
                    if node["proxmox"] is None:
                        continue
                    row.update(kind="vzdump", name=f"{len(policy['guests'])} guests to {policy['storage']}", guests=[g for g in guests if g.get("vmid") in policy["guests"]], **judge_vzdump(guests, policy, now, as_dict(node["proxmox"]).get("restore_tests")))
                rows.append(row)
        # Repositories and PBS datastores no policy covers, judged by the defaults.
        for node in nodes:
            summary = node["summary"]
            for name, repo in repositories(node["backup"]).items():
                if (summary["id"], name) not in covered:
                    rows.append({"policy": None, "node": _node_view(summary), "kind": "repository", "name": name, "repository": repo, "sched": {}, **judge_repository(repo, None, now)})
            for store in as_list(as_dict(as_dict(node["proxmox"]).get("pbs")).get("datastores")):
                if (summary["id"], "pbs:" + str(store.get("store"))) not in covered:
                    rows.append({"policy": None, "node": _node_view(summary), "kind": "pbs", "name": store.get("store"), "datastore": store, "sched": {}, **judge_pbs(store, None, now)})
        for row in rows:
            row["tone"] = VERDICT_TONES.get(row["verdict"], "muted")
            row["verdict_label"] = VERDICT_LABELS.get(row["verdict"], row["verdict"])
        rows.sort(key=lambda r: (VERDICT_ORDER.get(r["verdict"], 9), r["node"]["name"].casefold(), str(r["name"])))
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        return {"rows": rows, "counts": counts, "policies": policies, "at": now}

    # ------------------------------------------------------------- scheduler

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="roost-backup-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("backup: the policy scheduler failed; trying again next tick")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.tick_seconds)
            except asyncio.TimeoutError:
                pass

    async def tick(self, now: float | None = None) -> list[dict[str, Any]]:
        """Queue every job a policy wants now; returns the jobs made (and refusals) for the caller's curiosity."""
        async with self._ticking:
            return await self._tick(time.time() if now is None else now)

    async def _tick(self, now: float) -> list[dict[str, Any]]:
        from roost.core.hub.jobs import next_run

        made: list[dict[str, Any]] = []
        nodes = await self._nodes()
        for policy in await self.policies():
            if not policy.get("enabled", True):
                continue
            for node in nodes:
                summary = node["summary"]
                if not applies_to(policy, summary) or summary.get("status") == "revoked":
                    continue
                key = f"{SCHED_PREFIX}{policy['id']}:{summary['id']}"
                sched = dict(as_dict(await self.ctx.store.get(key)))
                before = dict(sched)
                wants: list[tuple[str, dict[str, Any], str]] = []
                if policy.get("schedule"):
                    last_slot = float(sched.get("backup_slot") or policy.get("created_at") or now)
                    slot = None
                    upcoming = next_run(policy["schedule"], last_slot)
                    while upcoming <= now:
                        slot = upcoming
                        upcoming = next_run(policy["schedule"], upcoming)
                    sched["next_backup_at"] = upcoming
                    if slot is not None:
                        sched["backup_slot"] = slot
                        wants.extend(self._backup_jobs(policy, node))
                if policy["kind"] == KIND_REPOSITORY:
                    wants.extend(self._upkeep_jobs(policy, node, sched, now))
                elif node["proxmox"] is not None:
                    wants.extend(self._guest_restore_tests(policy, node, sched, now))
                for action, params, what in wants:
                    made.append(await self._create(summary["id"], action, params, policy, sched, what, now))
                if sched != before:
                    await self.ctx.store.put(key, sched)
        return made

    def _backup_jobs(self, policy: dict[str, Any], node: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
        if policy["kind"] == KIND_REPOSITORY:
            params: dict[str, Any] = {"repository": policy["repository"], "tags": [f"roost-policy-{policy['id']}"], "policy": policy["id"]}
            if policy.get("paths"):
                params["paths"] = policy["paths"]
            if policy.get("excludes"):
                params["excludes"] = policy["excludes"]
            return [(ACTION_RUN, params, "backup")]
        if policy["kind"] == KIND_VZDUMP and node["proxmox"] is not None:
            return [("proxmox.guest.backup", {"vmid": vmid, "storage": policy["storage"], "mode": "snapshot"}, f"vzdump {vmid}") for vmid in policy["guests"]]
        return []  # PBS runs its own backup, verify and prune jobs; Roost reads their results

    def _upkeep_jobs(self, policy: dict[str, Any], node: dict[str, Any], sched: dict[str, Any], now: float) -> list[tuple[str, dict[str, Any], str]]:
        repo = repositories(node["backup"]).get(policy["repository"])
        if repo is None:
            return []
        name = policy["repository"]
        wants = []
        if not repo.get("latest_at"):
            return wants  # nothing to check or restore until the first snapshot exists

        def due(interval_hours: Any, done_at: Any, requested_key: str) -> bool:
            if not interval_hours:
                return False
            last = max(float(as_dict(done_at).get("at") or 0), float(sched.get(requested_key) or 0))
            return now - last >= float(interval_hours) * 3600

        if due(policy.get("verify_data_interval_hours"), repo.get("last_read_data"), "verify_data_requested"):
            sched["verify_data_requested"] = sched["verify_requested"] = now
            wants.append((ACTION_VERIFY, {"repository": name, "read_data": True}, "verify (all data)"))
        elif due(policy.get("verify_interval_hours"), repo.get("verify"), "verify_requested"):
            sched["verify_requested"] = now
            wants.append((ACTION_VERIFY, {"repository": name}, "verify"))
        if due(policy.get("restore_test_interval_hours"), repo.get("restore_test"), "restore_test_requested"):
            sched["restore_test_requested"] = now
            wants.append((ACTION_RESTORE_TEST, {"repository": name}, "restore test"))
        success = as_dict(repo.get("last_success"))
        if policy.get("prune_after_backup") and policy.get("retention") and success.get("at") and float(success["at"]) > float(sched.get("pruned_after") or 0):
            sched["pruned_after"] = float(success["at"])
            wants.append((ACTION_PRUNE_APPROVED, {"repository": name, "retention": policy["retention"]}, "retention"))
        return wants

    def _guest_restore_tests(self, policy: dict[str, Any], node: dict[str, Any], sched: dict[str, Any], now: float) -> list[tuple[str, dict[str, Any], str]]:
        """vzdump and PBS policies: each guest's newest backup on the policy's storage, restored into a scratch guest the agent picks."""
        interval = policy.get("restore_test_interval_hours")
        if not interval or not policy.get("storage"):
            return []  # a PBS policy names the PVE storage of its datastore to be restore-tested
        tests = as_dict(as_dict(node["proxmox"]).get("restore_tests"))
        backed_up = {g.get("vmid") for g in as_list(as_dict(node["proxmox"]).get("guests")) if as_dict(g.get("backup")).get("last_ok_at")}
        requested = as_dict(sched.get("restore_test_requested_guests"))
        wants = []
        for vmid in policy.get("guests") or ():
            if policy["kind"] == KIND_VZDUMP and vmid not in backed_up:
                continue  # nothing to restore until the guest's first backup exists
            last = max(float(as_dict(tests.get(str(vmid))).get("at") or 0), float(requested.get(str(vmid)) or 0))
            if now - last >= float(interval) * 3600:
                requested = {**requested, str(vmid): now}
                wants.append(("proxmox.backup.restore_test", {"guest": vmid, "storage": policy["storage"], "policy": policy["id"]}, f"restore-test {vmid}"))
        if wants:
            sched["restore_test_requested_guests"] = requested
        return wants

    async def _create(self, node_id: str, action: str, params: dict[str, Any], policy: dict[str, Any], sched: dict[str, Any], what: str, now: float) -> dict[str, Any]:
        from roost.core.hub.jobs import JobError

        try:
            job = await self.ctx.jobs.create(node_id, action, params, actor=actor_of(policy))
        except JobError as err:
            sched["last_error"] = {"at": now, "what": what, "error": str(err)}
            self.ctx.logger.warning("backup policy %s: cannot queue %s on %s: %s", policy["name"], what, node_id, err)
            return {"node_id": node_id, "action": action, "refused": str(err)}
        sched.setdefault("jobs", {})[what.split(" ")[0]] = job["id"]
        sched.pop("last_error", None)
        self.ctx.events.publish("backup.job", {"policy": policy["id"], "node_id": node_id, "action": action, "job": job["id"]})
        return {"node_id": node_id, "action": action, "job": job["id"]}


def _node_view(summary: dict[str, Any]) -> dict[str, Any]:
    return {"id": summary.get("id"), "name": summary.get("name") or summary.get("id"), "status": summary.get("status")}


def _pbs_store(proxmox: Any, name: str) -> dict[str, Any] | None:
    for store in as_list(as_dict(as_dict(proxmox).get("pbs")).get("datastores")):
        if store.get("store") == name:
            return store
    return None
