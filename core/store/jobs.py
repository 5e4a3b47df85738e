"""Store interface for jobs (one action run on one node) and cron schedules."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

JOB_QUEUED = "queued"
JOB_DISPATCHED = "dispatched"
JOB_RUNNING = "running"
JOB_SUCCEEDED = "succeeded"
JOB_FAILED = "failed"
JOB_TIMED_OUT = "timed_out"
JOB_CANCELLED = "cancelled"
JOB_REFUSED = "refused"
JOB_ACTIVE = (JOB_QUEUED, JOB_DISPATCHED, JOB_RUNNING)
JOB_FINAL = (JOB_SUCCEEDED, JOB_FAILED, JOB_TIMED_OUT, JOB_CANCELLED, JOB_REFUSED)
MAX_OUTPUT_CHARS = 256 * 1024


@dataclass(frozen=True)
class Job:
    job_id: str
    node_id: str
    action: str
    params: dict[str, Any]
    state: str
    created_by: str
    created_at: float
    timeout: float
    next_attempt_at: float
    schedule_id: str | None = None
    idempotent: bool = False
    attempt: int = 1
    max_attempts: int = 1
    envelope: dict[str, Any] | None = None
    lease_expires: float | None = None
    dispatched_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: str = ""
    output: str = ""
    progress: str = ""
    percent: float | None = None


@dataclass(frozen=True)
class Schedule:
    schedule_id: str
    node_id: str
    action: str
    params: dict[str, Any]
    cron: str
    created_by: str
    created_at: float
    enabled: bool = True
    next_run: float | None = None
    last_job_id: str | None = None
    note: str = ""


@dataclass
class JobFilter:
    node_id: str | None = None
    state: str | None = None
    action_prefix: str | None = None
    schedule_id: str | None = None
    limit: int = 100
    before: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class JobStore(abc.ABC):
    @abc.abstractmethod
    async def add_job(self, job: Job) -> None: ...

    @abc.abstractmethod
    async def get_job(self, job_id: str) -> Job | None: ...

    @abc.abstractmethod
    async def list_jobs(self, filt: JobFilter) -> list[Job]:
        """Newest first."""

    @abc.abstractmethod
    async def due_jobs(self, now: float, limit: int) -> list[Job]:
        """Queued jobs whose next attempt is due, oldest first."""

    @abc.abstractmethod
    async def active_jobs(self) -> list[Job]:
        """Every queued, dispatched or running job (the hub reloads them after a restart)."""

    @abc.abstractmethod
    async def update_job(self, job_id: str, *, expect: tuple[str, ...] | None = None, append_output: str = "", **changes: Any) -> Job | None:
        """Change fields atomically; with ``expect``, only if the job is in one of those states (else None).

        ``append_output`` is added to the output (capped like ``append_job_output``)
        in the same transaction, so a final state never shows without its final output.
        """

    @abc.abstractmethod
    async def append_job_output(self, job_id: str, text: str, *, progress: str | None = None, percent: float | None = None) -> None:
        """Add output (capped at MAX_OUTPUT_CHARS, keeping the newest) and the latest progress line."""

    @abc.abstractmethod
    async def add_schedule(self, schedule: Schedule) -> None: ...

    @abc.abstractmethod
    async def list_schedules(self, node_id: str | None = None) -> list[Schedule]: ...

    @abc.abstractmethod
    async def get_schedule(self, schedule_id: str) -> Schedule | None: ...

    @abc.abstractmethod
    async def update_schedule(self, schedule_id: str, **changes: Any) -> Schedule | None: ...

    @abc.abstractmethod
    async def delete_schedule(self, schedule_id: str) -> bool: ...
