"""Jobs on the hub: queued -> dispatched (leased) -> running -> a final state, persisted at every step; retries, cancel, schedules."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from roost.core import protocol
from roost.core.capabilities import Ceiling, effective
from roost.core.store.jobs import (
    JOB_ACTIVE,
    JOB_CANCELLED,
    JOB_DISPATCHED,
    JOB_FAILED,
    JOB_QUEUED,
    JOB_REFUSED,
    JOB_RUNNING,
    JOB_TIMED_OUT,
    Job,
    Schedule,
)

if TYPE_CHECKING:
    from .state import Hub

_LOGGER = logging.getLogger(__name__)

LEASE_SECONDS = 20.0
RESULT_GRACE_SECONDS = 30.0
DISPATCH_EVERY_SECONDS = 0.5
DEFAULT_NODE_CONCURRENCY = 2
RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0
IDEMPOTENT_ATTEMPTS = 3
Send = Callable[[str], Awaitable[None]]


# Tests set ROOST_TEST_CRASH_AT to a crash point's name to make a real hub die
# there (SIGKILL, as a power cut would) and prove what survives a restart.
CRASH_ENV = "ROOST_TEST_CRASH_AT"
CRASH_RESULT_STORED = "job_result_stored"  # a job's final result is written, not yet acknowledged


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        _LOGGER.warning("%s=%s: the hub kills itself here", CRASH_ENV, name)
        os.kill(os.getpid(), signal.SIGKILL)


class JobError(Exception):
    """A job request the hub refuses; the message says why."""


def new_job_id() -> str:
    return "j" + secrets.token_hex(8)


class JobEngine:
    """Owns every job's life on the hub; agents own whether a job may run."""

    def __init__(self, hub: Hub, *, concurrency: int = DEFAULT_NODE_CONCURRENCY) -> None:
        self.hub = hub
        self.concurrency = concurrency
        self.channels: dict[str, Send] = {}
        self.actions: dict[str, dict[str, dict[str, Any]]] = {}  # node -> action name -> description
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._domains: set[str] | None = None  # every integration the hub can find, agent-only ones too

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="roost-jobs")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def attach(self, node_id: str, send: Send, actions: list[dict[str, Any]]) -> None:
        """A node's channel came up (socket, or the hub's own in-process agent)."""
        self.channels[node_id] = send
        self.actions[node_id] = {a["name"]: a for a in actions if isinstance(a, dict) and isinstance(a.get("name"), str)}
        self._wake.set()

    def detach(self, node_id: str, send: Send | None = None) -> None:
        if send is None or self.channels.get(node_id) == send:  # bound methods compare equal, never identical
            self.channels.pop(node_id, None)

    # -------------------------------------------------------------- creating

    async def effective_for(self, node_id: str) -> list[str]:
        grants = await self.hub.store.get_grants(node_id)
        try:
            ceiling = Ceiling.from_dict(grants.ceiling or None)
        except Exception:
            ceiling = Ceiling()
        return effective(grants.grants, ceiling)

    async def create(
        self,
        node_id: str,
        action: str,
        params: dict[str, Any],
        *,
        actor: str,
        envelope: dict[str, Any] | None = None,
        schedule_id: str | None = None,
        job_id: str | None = None,
    ) -> Job:
        """Queue an action on a node after the hub's checks (the agent checks again).

        ``job_id`` lets a caller that must not run a job twice (an automation's
        step, resumed after a restart) name the job itself: a second create
        with the same id fails in the store instead of queuing a copy.
        """
        node = await self.hub.find_node(node_id)
        if node is None or node.revoked:
            raise JobError(f"no active node {node_id!r}")
        described = self.actions.get(node_id, {}).get(action)
        if described is None:
            raise JobError(f"node {node.name} does not offer action {action!r} (is it online and is the integration loaded?)")
        capability = described.get("capability", "")
        allowed = await self.effective_for(node_id)
        if capability not in allowed:
            await self.hub.audit("job.refused", actor=actor, target=f"node:{node_id}", outcome="refused", details={"action": action, "why": f"{capability} not in effective set"})
            raise JobError(f"{action} needs capability {capability}, which node {node.name} does not have (grant it, and allow it in the agent's ceiling)")
        if described.get("destructive") and not envelope:
            raise JobError(f"{action} is destructive: it needs an envelope signed with the operator key (roost sign)")
        now = time.time()
        # A signed envelope is single-use, so a destructive job is never retried.
        idempotent = bool(described.get("idempotent")) and not described.get("destructive")
        job = Job(
            job_id=job_id or new_job_id(),
            node_id=node_id,
            action=action,
            params=params,
            state=JOB_QUEUED,
            created_by=actor,
            created_at=now,
            timeout=float(described.get("timeout") or 60.0),
            next_attempt_at=now,
            schedule_id=schedule_id,
            idempotent=idempotent,
            max_attempts=IDEMPOTENT_ATTEMPTS if idempotent else 1,
            envelope=envelope,
        )
        await self.hub.store.add_job(job)
        await self.hub.audit("job.created", actor=actor, target=f"node:{node_id}", details={"job": job.job_id, "action": action, "params": params, "signed": bool(envelope)})
        self._publish(job)
        self._wake.set()
        return job

    async def cancel(self, job_id: str, *, actor: str) -> Job:
        job = await self.hub.store.get_job(job_id)
        if job is None:
            raise JobError(f"no job {job_id!r}")
        if job.state == JOB_QUEUED:
            done = await self.hub.store.update_job(job_id, expect=(JOB_QUEUED,), state=JOB_CANCELLED, finished_at=time.time(), error=f"cancelled by {actor}")
            if done is not None:
                await self.hub.audit("job.cancelled", actor=actor, target=f"node:{job.node_id}", details={"job": job_id})
                self._publish(done)
                return done
            job = await self.hub.store.get_job(job_id)  # it moved on meanwhile
        if job is None or job.state not in JOB_ACTIVE:
            raise JobError(f"job {job_id} has already finished ({job.state if job else 'gone'})")
        send = self.channels.get(job.node_id)
        if send is None:
            raise JobError("the node is not connected; the job is cancelled when its timeout passes")
        await send(protocol.encode(protocol.TYPE_JOB_CANCEL, job_id=job_id))
        await self.hub.audit("job.cancel_requested", actor=actor, target=f"node:{job.node_id}", details={"job": job_id})
        return job

    # ------------------------------------------------------------- messages

    async def handle(self, node_id: str, message: dict[str, Any]) -> None:
        """job_started / job_progress / job_result from a node's agent."""
        job = await self.hub.store.get_job(message["job_id"])
        if job is None or job.node_id != node_id:
            _LOGGER.warning("node %s sent %s for unknown job %s", node_id, message["type"], message["job_id"])
            return
        kind = message["type"]
        if message["attempt"] != job.attempt:
            if kind == protocol.TYPE_JOB_RESULT:
                await self._ack(node_id, message)  # an old attempt's result: nothing to record twice
            return
        if kind == protocol.TYPE_JOB_STARTED:
            started = await self.hub.store.update_job(job.job_id, expect=(JOB_QUEUED, JOB_DISPATCHED), state=JOB_RUNNING, started_at=time.time(), lease_expires=None)
            if started is not None:
                self._publish(started)
        elif kind == protocol.TYPE_JOB_PROGRESS:
            text = message["output"] or (message["message"] + "\n" if message["message"] else "")
            await self.hub.store.append_job_output(job.job_id, text, progress=message["message"] or None, percent=message.get("percent"))
            self.hub.publish("job_progress", {"id": job.job_id, "node_id": node_id, "message": message["message"], "percent": message.get("percent"), "output": text})
        elif kind == protocol.TYPE_JOB_RESULT:
            await self._result(job, message)
            await self._ack(node_id, message)

    async def _ack(self, node_id: str, message: dict[str, Any]) -> None:
        send = self.channels.get(node_id)
        if send is not None:
            await send(protocol.encode(protocol.TYPE_JOB_ACK, job_id=message["job_id"], attempt=message["attempt"]))

    async def _result(self, job: Job, message: dict[str, Any]) -> None:
        status = message["status"]
        now = time.time()
        if status in (JOB_FAILED, JOB_TIMED_OUT) and job.idempotent and job.attempt < job.max_attempts:
            delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (job.attempt - 1))
            retried = await self.hub.store.update_job(
                job.job_id,
                expect=JOB_ACTIVE,
                state=JOB_QUEUED,
                attempt=job.attempt + 1,
                next_attempt_at=now + delay,
                error=f"attempt {job.attempt} {status}: {message['error']} — retrying in {delay:.0f} s",
                lease_expires=None,
            )
            if retried is not None:
                self._publish(retried)
            return
        # State and last output in one transaction: no reader sees a finished job
        # without its output, and a hub that dies here keeps both or neither (the
        # agent resends an unacknowledged result).
        done = await self.hub.store.update_job(
            job.job_id,
            expect=JOB_ACTIVE,
            append_output=message.get("output") or "",
            state=status,
            finished_at=now,
            result=message.get("result"),
            error=message["error"],
            lease_expires=None,
        )
        if done is None:
            return
        crash_point(CRASH_RESULT_STORED)
        await self.hub.audit(
            "job.finished",
            actor=f"node:{job.node_id}",
            target=f"node:{job.node_id}",
            outcome="ok" if status == "succeeded" else ("refused" if status == JOB_REFUSED else "failed"),
            details={"job": job.job_id, "action": job.action, "status": status, "error": message["error"][:500]},
        )
        self._publish(done)
        self._wake.set()

    def _publish(self, job: Job) -> None:
        for observe in self.hub.job_observers:
            observe(job.job_id, job.action, job.state)
        self.hub.publish("job", job_view(job, with_output=False))

    # ------------------------------------------------------------- the loop

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                _LOGGER.exception("job dispatch failed; trying again")
            try:
                await asyncio.wait_for(self._wake.wait(), DISPATCH_EVERY_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def tick(self) -> None:
        now = time.time()
        busy: dict[str, int] = {}
        for job in await self.hub.store.active_jobs():
            if job.state == JOB_DISPATCHED and job.lease_expires is not None and job.lease_expires < now:
                # Never started: back in the queue. The agent remembers the
                # (job, attempt) it has seen, so a late delivery cannot run it twice.
                back = await self.hub.store.update_job(job.job_id, expect=(JOB_DISPATCHED,), state=JOB_QUEUED, lease_expires=None)
                if back is not None:
                    self._publish(back)
                continue
            if job.state == JOB_RUNNING and job.started_at is not None and now > job.started_at + job.timeout + RESULT_GRACE_SECONDS:
                await self._result(job, {"status": JOB_TIMED_OUT, "error": f"no result within {job.timeout:g} s (+{RESULT_GRACE_SECONDS:g} s grace)", "attempt": job.attempt})
                continue
            if job.state in (JOB_DISPATCHED, JOB_RUNNING):
                busy[job.node_id] = busy.get(job.node_id, 0) + 1
        for job in await self.hub.store.due_jobs(now, 500):
            send = self.channels.get(job.node_id)
            if send is None or busy.get(job.node_id, 0) >= self.concurrency:
                continue
            leased = await self.hub.store.update_job(
                job.job_id, expect=(JOB_QUEUED,), state=JOB_DISPATCHED, dispatched_at=now, lease_expires=now + LEASE_SECONDS
            )
            if leased is None:
                continue
            busy[job.node_id] = busy.get(job.node_id, 0) + 1
            try:
                await send(
                    protocol.encode(
                        protocol.TYPE_JOB,
                        job_id=job.job_id,
                        attempt=job.attempt,
                        action=job.action,
                        params=job.params,
                        timeout=job.timeout,
                        envelope=job.envelope,
                    )
                )
            except Exception as err:  # the lease brings it back
                _LOGGER.debug("could not send job %s: %s", job.job_id, err)
            self._publish(leased)
        await self._schedules(now)

    # ------------------------------------------------------------ schedules

    async def _schedules(self, now: float) -> None:
        for schedule in await self.hub.store.list_schedules():
            if not schedule.enabled or schedule.next_run is None or schedule.next_run > now:
                continue
            upcoming = next_run(schedule.cron, now)
            try:
                job = await self.create(schedule.node_id, schedule.action, schedule.params, actor=f"schedule:{schedule.schedule_id}", schedule_id=schedule.schedule_id)
                await self.hub.store.update_schedule(schedule.schedule_id, next_run=upcoming, last_job_id=job.job_id)
            except JobError as err:
                _LOGGER.warning("schedule %s could not run %s: %s", schedule.schedule_id, schedule.action, err)
                await self.hub.store.update_schedule(schedule.schedule_id, next_run=upcoming)

    def unknown_action(self, node_id: str, action: str) -> str:
        """Why ``action`` names no action of any integration this node could run ('' when it may be one)."""
        from roost.core.actions import ACTION_NAME_RE

        if not ACTION_NAME_RE.match(action):
            return f"action {action[:80]!r} is not an action name: actions are dotted lower_snake_case, such as services.restart"
        offered = self.actions.get(node_id)
        if offered is not None:
            if action in offered:
                return ""
            names = ", ".join(sorted(offered)[:20]) or "none"
            return f"node {node_id} offers no action {action!r}; its actions: {names}"
        # The node has not said what it offers since the hub started: at least an integration Roost knows must own it.
        domain = action.split(".", 1)[0]
        if domain not in self._known_domains():
            return f"no integration {domain!r} has action {action!r}; connect the node once so the hub learns its actions"
        return ""

    def _known_domains(self) -> set[str]:
        if self._domains is None:
            from roost.core.plugins import discover

            manager = self.hub.manager
            self._domains = set(discover(manager.custom_dirs, entry_points=manager.entry_points))
        return self._domains

    async def add_schedule(self, node_id: str, action: str, params: dict[str, Any], cron: str, *, actor: str, note: str = "") -> Schedule:
        if await self.hub.find_node(node_id) is None:
            raise JobError(f"no node {node_id!r}")
        if self.actions.get(node_id, {}).get(action, {}).get("destructive"):
            raise JobError(f"{action} is destructive: each run needs a fresh operator signature, so it cannot be scheduled")
        now = time.time()
        schedule = Schedule(
            schedule_id="s" + secrets.token_hex(6),
            node_id=node_id,
            action=action,
            params=params,
            cron=cron,
            created_by=actor,
            created_at=now,
            next_run=next_run(cron, now),
            note=note,
        )
        await self.hub.store.add_schedule(schedule)
        await self.hub.audit("schedule.created", actor=actor, target=f"node:{node_id}", details={"schedule": schedule.schedule_id, "action": action, "cron": cron})
        return schedule


def valid_cron(expression: str) -> bool:
    from croniter import croniter

    return bool(expression) and len(expression) <= 100 and croniter.is_valid(expression)


def next_run(expression: str, after: float) -> float:
    """The next time the cron expression fires after ``after``, read in the hub's local time zone."""
    from datetime import datetime

    from croniter import croniter

    start = datetime.fromtimestamp(after).astimezone()
    return croniter(expression, start).get_next(datetime).timestamp()


def job_view(job: Job, *, with_output: bool = True) -> dict[str, Any]:
    view = {
        "id": job.job_id,
        "node_id": job.node_id,
        "action": job.action,
        "params": job.params,
        "state": job.state,
        "created_by": job.created_by,
        "created_at": job.created_at,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "idempotent": job.idempotent,
        "timeout": job.timeout,
        "schedule_id": job.schedule_id,
        "dispatched_at": job.dispatched_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "result": job.result,
        "error": job.error,
        "progress": job.progress,
        "percent": job.percent,
        "signed": job.envelope is not None,
    }
    if with_output:
        view["output"] = job.output
    return view


__all__ = ["JobEngine", "JobError", "job_view", "next_run", "valid_cron", "replace"]
