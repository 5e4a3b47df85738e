"""Store interface for automations: their definitions, their runs (step, variables, waits, trace) and pending approvals."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

RUN_RUNNING = "running"
RUN_WAITING = "waiting"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
RUN_STOPPED = "stopped"
RUN_CANCELLED = "cancelled"
RUN_EXPIRED = "expired"
RUN_DENIED = "denied"
RUN_REFUSED = "refused"
RUN_SKIPPED = "skipped"
RUN_ACTIVE = (RUN_RUNNING, RUN_WAITING)

APPROVAL_PENDING = "pending"
APPROVAL_APPROVED = "approved"
APPROVAL_DENIED = "denied"
APPROVAL_EXPIRED = "expired"
APPROVAL_CANCELLED = "cancelled"


@dataclass(frozen=True)
class AutomationRecord:
    automation_id: str
    definition: dict[str, Any]
    enabled: bool
    source: str  # "api" or "file:<path>"
    webhook_secret: str
    created_by: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    automation_id: str
    state: str
    trigger: dict[str, Any]
    # What the interpreter needs to go on after a restart: variables, the steps done, waits, jobs, chosen branches.
    context: dict[str, Any]
    trace: list[dict[str, Any]]
    depth: int
    started_at: float
    updated_at: float
    node_id: str = ""
    throttle_key: str = ""
    finished_at: float | None = None
    error: str = ""
    dry_run: bool = False


@dataclass(frozen=True)
class ApprovalRecord:
    approval_id: str
    run_id: str
    automation_id: str
    step: str
    summary: str
    state: str
    created_at: float
    expires_at: float
    node_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    decided_by: str = ""
    decided_at: float | None = None
    note: str = ""
    # The operator's signed envelope given with the approval (for a destructive action); never made by the hub.
    envelope: dict[str, Any] | None = None


class AutomationStore(abc.ABC):
    @abc.abstractmethod
    async def put_automation(self, record: AutomationRecord) -> None:
        """Insert or replace the automation with this id."""

    @abc.abstractmethod
    async def get_automation(self, automation_id: str) -> AutomationRecord | None: ...

    @abc.abstractmethod
    async def list_automations(self) -> list[AutomationRecord]:
        """Oldest first."""

    @abc.abstractmethod
    async def delete_automation(self, automation_id: str) -> bool: ...

    @abc.abstractmethod
    async def add_run(self, run: RunRecord) -> None: ...

    @abc.abstractmethod
    async def update_run(self, run_id: str, *, expect: tuple[str, ...] | None = None, **changes: Any) -> RunRecord | None:
        """Change fields atomically; with ``expect``, only if the run is in one of those states (else None)."""

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> RunRecord | None: ...

    @abc.abstractmethod
    async def list_runs(self, automation_id: str | None = None, *, states: tuple[str, ...] = (), limit: int = 50) -> list[RunRecord]:
        """Newest first."""

    @abc.abstractmethod
    async def count_runs_since(self, automation_id: str, throttle_key: str, since: float) -> int:
        """Runs of the automation with this throttle key started at or after ``since`` (skipped ones not counted)."""

    @abc.abstractmethod
    async def add_approval(self, approval: ApprovalRecord) -> None: ...

    @abc.abstractmethod
    async def get_approval(self, approval_id: str) -> ApprovalRecord | None: ...

    @abc.abstractmethod
    async def list_approvals(self, *, state: str | None = None, run_id: str | None = None, limit: int = 100) -> list[ApprovalRecord]:
        """Newest first."""

    @abc.abstractmethod
    async def decide_approval(
        self, approval_id: str, *, state: str, by: str, at: float, note: str = "", envelope: dict[str, Any] | None = None
    ) -> ApprovalRecord | None:
        """Move a pending approval to ``state`` once; None when it was not pending (decided, expired) or is unknown."""
