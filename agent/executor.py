"""The agent's job executor: every request checked here (grant ∩ ceiling, schema, signature, rate), run once, its result kept until the hub has it."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import voluptuous as vol

from roost.core import protocol
from roost.core.actions import ActionContext, ActionError, ActionRefused, ActionSpec
from roost.core.integration import humanize_invalid

_LOGGER = logging.getLogger(__name__)

JOBS_FILE = "jobs.db"
MAX_OUTPUT = 256 * 1024
MAX_RESULT = 256 * 1024  # with output, well under the protocol's 1 MiB message limit
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    received_at REAL NOT NULL,
    finished_at REAL,
    acked INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, attempt)
)
"""
Send = Callable[[str], Awaitable[None]]


class Executor:
    """Runs the hub's job requests on this host, only as far as this host allows.

    Each (job id, attempt) runs at most once, across restarts: the request is
    written down before anything runs, and a request seen before is answered
    from what was written, never run again.
    """

    def __init__(self, rt: Any, data_dir: Path) -> None:
        self.rt = rt
        self.path = Path(data_dir) / JOBS_FILE
        self._db: aiosqlite.Connection | None = None
        self._send: Send | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._calls: dict[str, deque[float]] = {}
        self._closing = False

    async def open(self) -> None:
        self._db = await aiosqlite.connect(self.path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute(_SCHEMA)
        # A job that was running when the agent stopped was not finished and must not run again.
        await self._db.execute(
            "UPDATE jobs SET state = 'finished', result = ?, finished_at = ? WHERE state = 'running'",
            (json.dumps({"status": "failed", "error": "the agent stopped while this job was running; it was not run again"}), time.time()),
        )
        await self._db.commit()

    async def close(self) -> None:
        self._closing = True
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        assert self._db is not None, "executor is not open"
        return self._db

    # ---------------------------------------------------------------- channel

    async def connected(self, send: Send) -> None:
        """A channel to the hub is up: resend every result it has not acknowledged."""
        self._send = send
        async with self.db.execute("SELECT job_id, attempt, result FROM jobs WHERE state = 'finished' AND acked = 0 ORDER BY finished_at") as cur:
            rows = await cur.fetchall()
        for job_id, attempt, result in rows:
            await self._emit(protocol.TYPE_JOB_RESULT, job_id=job_id, attempt=attempt, **json.loads(result))

    def disconnected(self) -> None:
        self._send = None

    async def _emit(self, type_: str, **fields: Any) -> None:
        send = self._send
        if send is None:
            return  # results wait in jobs.db; progress is best effort
        try:
            await send(protocol.encode(type_, **fields))
        except Exception as err:  # the uplink reconnects; results are resent then
            _LOGGER.debug("could not send %s: %s", type_, err)

    async def handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == protocol.TYPE_JOB:
            await self._job(message)
        elif kind == protocol.TYPE_JOB_CANCEL:
            task = self._running.get(message["job_id"])
            if task is not None:
                task.cancel()
        elif kind == protocol.TYPE_JOB_ACK:
            await self.db.execute("UPDATE jobs SET acked = 1 WHERE job_id = ? AND attempt = ?", (message["job_id"], message["attempt"]))
            await self.db.commit()

    # -------------------------------------------------------------------- jobs

    async def _job(self, message: dict[str, Any]) -> None:
        job_id, attempt = message["job_id"], message["attempt"]
        async with self.db.execute("SELECT state, result FROM jobs WHERE job_id = ? AND attempt = ?", (job_id, attempt)) as cur:
            seen = await cur.fetchone()
        if seen is not None:
            state, result = seen
            if state == "finished":
                await self._emit(protocol.TYPE_JOB_RESULT, job_id=job_id, attempt=attempt, **json.loads(result))
            elif job_id in self._running:
                await self._emit(protocol.TYPE_JOB_STARTED, job_id=job_id, attempt=attempt)
            return
        await self.db.execute(
            "INSERT INTO jobs (job_id, attempt, action, state, received_at) VALUES (?, ?, ?, 'running', ?)",
            (job_id, attempt, message["action"], time.time()),
        )
        await self.db.commit()
        self._audit("job.requested", job_id, message["action"], "ok", {"attempt": attempt})
        try:
            spec, integ, params = self._check(message)
        except ActionRefused as err:
            _LOGGER.warning("refused job %s (%s): %s", job_id, message["action"], err)
            self._audit("job.refused", job_id, message["action"], "refused", {"why": str(err)})
            await self._finish(job_id, attempt, {"status": "refused", "error": str(err)})
            return
        task = asyncio.create_task(self._run(job_id, attempt, spec, integ, params, message))
        self._running[job_id] = task
        task.add_done_callback(lambda _t: self._running.pop(job_id, None))

    def _check(self, message: dict[str, Any]) -> tuple[ActionSpec, Any, dict[str, Any]]:
        """Everything the host owner's rules say, checked here whatever the hub believes."""
        found = self.rt.manager.actions().get(message["action"])
        if found is None:
            raise ActionRefused(f"this agent has no action {message['action']!r}")
        integ, spec = found
        if spec.capability not in self.rt.grants:
            raise ActionRefused(f"capability {spec.capability} is not granted to this node by the hub")
        if spec.capability not in self.rt.effective:
            raise ActionRefused(f"capability {spec.capability} is above this host's ceiling (agent config [agent.ceiling])")
        try:
            params = spec.schema(message["params"])
        except vol.Invalid as err:
            raise ActionRefused(f"invalid parameters: {humanize_invalid(err)}") from None
        if spec.destructive:
            from roost.core.signing import EnvelopeError, verify_envelope

            try:
                verify_envelope(
                    message.get("envelope"),
                    action=spec.name,
                    params=params,
                    node_id=self.rt.node_id,
                    target=params.get(spec.target) if spec.target else None,
                    operator_keys=self.rt.operator_keys(),
                    seen=self.rt.nonce_cache,
                    schema=spec.schema,
                )
            except EnvelopeError as err:
                raise ActionRefused(f"destructive action needs a valid operator signature: {err}") from None
        if spec.rate_limit_per_minute:
            calls = self._calls.setdefault(spec.name, deque())
            now = time.monotonic()
            while calls and calls[0] < now - 60:
                calls.popleft()
            if len(calls) >= spec.rate_limit_per_minute:
                raise ActionRefused(f"rate limit: {spec.name} runs at most {spec.rate_limit_per_minute} times a minute here")
            calls.append(now)
        return spec, integ, params

    async def _run(self, job_id: str, attempt: int, spec: ActionSpec, integ: Any, params: dict[str, Any], message: dict[str, Any]) -> None:
        await self._emit(protocol.TYPE_JOB_STARTED, job_id=job_id, attempt=attempt)
        output: list[str] = []

        async def progress(text: str, percent: float | None = None) -> None:
            await self._emit(protocol.TYPE_JOB_PROGRESS, job_id=job_id, attempt=attempt, message=str(text)[:2000], percent=percent)

        ctx = ActionContext(
            domain=integ.domain,
            job_id=job_id,
            node_id=self.rt.node_id,
            config=integ.context.config if integ.context else {},
            data=integ.context.data if integ.context else {},
            progress=progress,
            logger=logging.getLogger(f"roost.action.{spec.name}"),
            envelope=message.get("envelope") if spec.destructive else None,
        )
        timeout = min(float(message["timeout"]), spec.timeout)
        try:
            if inspect.iscoroutinefunction(spec.handler):
                result = await asyncio.wait_for(spec.handler(ctx, params), timeout)
            else:
                result = await asyncio.wait_for(asyncio.to_thread(spec.handler, ctx, params), timeout)
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, timeout)
            text = ""
            if isinstance(result, dict) and isinstance(result.get("output"), str):
                text = result["output"]
            encoded = json.dumps(result)
            if len(encoded) > MAX_RESULT:
                # Larger than a message may be: the hub would close the socket and this result would be resent forever.
                outcome = {"status": "succeeded", "result": {"truncated": True, "bytes": len(encoded)}, "output": _cap(text), "error": f"result of {len(encoded)} bytes was too large to send; output kept"}
            else:
                outcome = {"status": "succeeded", "result": result, "output": _cap(text)}
        except asyncio.TimeoutError:
            outcome = {"status": "timed_out", "error": f"{spec.name} did not finish within {timeout:g} s"}
        except asyncio.CancelledError:
            if self._closing:
                outcome = {"status": "failed", "error": "the agent stopped while this job was running; it was not run again"}
            else:
                outcome = {"status": "cancelled", "error": "cancelled on request"}
        except ActionRefused as err:
            outcome = {"status": "refused", "error": str(err)}
        except ActionError as err:
            outcome = {"status": "failed", "error": str(err)}
        except (TypeError, ValueError) as err:
            outcome = {"status": "failed", "error": f"{spec.name} returned a result that is not JSON: {err}"}
        except Exception as err:  # a handler bug: report it, keep the agent
            _LOGGER.exception("action %s failed", spec.name)
            outcome = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        del output
        self._audit("job.finished", job_id, spec.name, "ok" if outcome["status"] == "succeeded" else outcome["status"], {"attempt": attempt})
        await self._finish(job_id, attempt, outcome)

    async def _finish(self, job_id: str, attempt: int, outcome: dict[str, Any]) -> None:
        await self.db.execute(
            "UPDATE jobs SET state = 'finished', result = ?, finished_at = ? WHERE job_id = ? AND attempt = ?",
            (json.dumps(outcome), time.time(), job_id, attempt),
        )
        await self.db.commit()
        await self._emit(protocol.TYPE_JOB_RESULT, job_id=job_id, attempt=attempt, **outcome)

    def _audit(self, action: str, job_id: str, name: str, outcome: str, details: dict[str, Any]) -> None:
        record = getattr(self.rt, "audit_job", None)
        if record is not None:
            record(action, job_id=job_id, action_name=name, outcome=outcome, details=details)


def _cap(text: str) -> str:
    return text if len(text) <= MAX_OUTPUT else "[… output cut …]\n" + text[-MAX_OUTPUT:]
