"""The automation engine: triggers start runs, conditions gate them, steps run one by one, persisted so a restart resumes them.

A run acts only through jobs (``hub.jobs.create`` as ``automation:<id>``, so the
node's grants, its agent's ceiling and, for destructive actions, an operator's
signed envelope all apply), waits for a logged-in person where it asks to, and
never signs anything. Every step's outcome is written before the next starts;
a step that queued a job records the job's id (chosen from the run and the
step, so even a crash between queuing and recording cannot queue it twice).
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import hmac
import inspect
import logging
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roost.core.hub_integration import StepFailed, StepRefused, StepStop, TriggerState
from roost.core.store.automations import (
    APPROVAL_APPROVED,
    APPROVAL_CANCELLED,
    APPROVAL_DENIED,
    APPROVAL_EXPIRED,
    APPROVAL_PENDING,
    RUN_ACTIVE,
    RUN_CANCELLED,
    RUN_DENIED,
    RUN_EXPIRED,
    RUN_FAILED,
    RUN_REFUSED,
    RUN_RUNNING,
    RUN_SKIPPED,
    RUN_STOPPED,
    RUN_SUCCEEDED,
    RUN_WAITING,
    ApprovalRecord,
    AutomationRecord,
    RunRecord,
)
from roost.core.store.jobs import JOB_FINAL, JOB_REFUSED, JOB_SUCCEEDED

from .automation_model import (
    AutomationInvalid,
    Kinds,
    TemplateFailed,
    kind_name,
    labels_match,
    parse_text,
    render,
    time_window,
    validate,
)
from .events import Event
from .jobs import JobError, job_view

if TYPE_CHECKING:
    from .state import Hub

_LOGGER = logging.getLogger(__name__)

RUN_QUEUED = "queued"
TICK_SECONDS = 1.0
REPORT_QUEUE = 10_000
DEFAULT_MAX_DEPTH = 3
JOB_STEP_TIMEOUT = 3600.0
KEEP_TRACE_CHARS = 4000
CONFIG_FOLDER = "automations"
ACTOR_PREFIX = "automation:"
# Tests set ROOST_TEST_CRASH_AT to this to kill the hub right after a step queued its job, before the step is recorded done.
CRASH_JOB_QUEUED = "automation_job_queued"


def new_run_id() -> str:
    return "r" + secrets.token_hex(8)


def step_job_id(run_id: str, path: str) -> str:
    """The id of the job a step queues: the same on every attempt of the step, so it is queued at most once."""
    return "j" + hashlib.sha256(f"{run_id}/{path}".encode()).hexdigest()[:16]


def _short(value: Any) -> Any:
    """A value cut down for the trace: long strings end with an ellipsis."""
    if isinstance(value, str) and len(value) > KEEP_TRACE_CHARS:
        return value[:KEEP_TRACE_CHARS] + f"… ({len(value)} chars)"
    if isinstance(value, Mapping):
        return {k: _short(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_short(v) for v in value[:200]]
    return value


class _End(Exception):
    """Ends a run's walk: with a final state and a message."""

    def __init__(self, state: str, message: str) -> None:
        super().__init__(message)
        self.state = state
        self.message = message


@dataclass
class Loaded:
    record: AutomationRecord
    definition: dict[str, Any]
    memos: list[dict[str, Any]] = field(default_factory=list)


class StepContext:
    """The StepCall an action handler gets (see roost.core.hub_integration.StepCall)."""

    def __init__(self, engine: AutomationEngine, run: _Run, path: str, hub_ctx: Any) -> None:
        self._engine = engine
        self._run = run
        self._path = path
        self.hub = hub_ctx
        self.automation_id = run.automation_id
        self.run_id = run.run_id
        self.cause = run.cause()
        self.variables = run.variables()
        self.dry_run = run.dry_run

    def node_status(self, node_id: str) -> str:
        return self._engine.hub.node_status(node_id) if self._engine.hub.node(node_id) else "unknown"

    async def run_job(self, node_id: str, action: str, params: dict[str, Any], *, timeout: float = JOB_STEP_TIMEOUT) -> dict[str, Any]:
        return await self._engine._run_job(self._run, self._path, node_id, action, params, timeout=timeout)

    def described(self, node_id: str, action: str) -> dict[str, Any]:
        """How the node describes the action (capability, destructive, ...), {} when it does not offer it."""
        return dict(self._engine.hub.jobs.actions.get(node_id, {}).get(action) or {})

    async def notify(self, **message: Any) -> list[str]:
        """Queue a message in the notification outbox (``hub.notifications.send``), with this run as its cause."""
        notifier = getattr(self._engine.hub, "notifications", None)
        if notifier is None:
            raise StepFailed("notifications are not available on this hub")
        return list(await notifier.send(**message, cause=self.cause))

    async def raise_alert(self, **alert: Any) -> dict[str, Any]:
        """Raise an alert (``hub.alerts.raise_alert``) as this automation, with this run as its cause."""
        alerts = getattr(self._engine.hub, "alerts", None)
        if alerts is None:
            raise StepFailed("alerts are not available on this hub")
        return dict(await alerts.raise_alert(source=f"{ACTOR_PREFIX}{self.automation_id}", cause=self.cause, **alert))

    async def resolve_alert(self, node_id: str, name: str, labels: Mapping[str, str]) -> None:
        alerts = getattr(self._engine.hub, "alerts", None)
        if alerts is None:
            raise StepFailed("alerts are not available on this hub")
        await alerts.resolve_alert(f"{ACTOR_PREFIX}{self.automation_id}", node_id, name, dict(labels))


class _Run:
    """One run while it executes: the record's context, kept in step with the store."""

    def __init__(self, record: RunRecord, definition: dict[str, Any]) -> None:
        self.run_id = record.run_id
        self.automation_id = record.automation_id
        self.record = record
        self.definition = definition
        self.context = dict(record.context)
        self.context.setdefault("variables", dict(definition.get("variables") or {}))
        for key in ("done", "results", "waits", "jobs", "branches"):
            self.context.setdefault(key, {})
        self.trace = list(record.trace)
        self.depth = record.depth
        self.dry_run = record.dry_run
        self.state = record.state

    def cause(self) -> dict[str, Any]:
        return {"automation": self.automation_id, "run": self.run_id, "depth": self.depth}

    def variables(self) -> dict[str, Any]:
        return {
            **self.context["variables"],
            "trigger": self.record.trigger,
            "steps": dict(self.context["results"]),
            "run": {"id": self.run_id, "depth": self.depth},
            "automation": {"id": self.automation_id, "name": self.definition.get("name", "")},
        }


class AutomationEngine:
    """Loads automations, feeds them the hub's events, starts, persists and resumes their runs."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.automations: dict[str, Loaded] = {}
        self.file_errors: dict[str, list[dict[str, str]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._active: dict[str, list[str]] = {}
        self._queued: dict[str, deque[str]] = {}
        self._waiters: dict[str, tuple[dict[str, Any], dict[str, Any], asyncio.Future[dict[str, Any]]]] = {}
        self._job_causes: dict[str, dict[str, Any]] = {}
        self._job_done: dict[str, asyncio.Event] = {}
        self._approval_decided: dict[str, asyncio.Event] = {}
        self._background: list[asyncio.Task[None]] = []
        self._warned: set[str] = set()
        self.started = False
        # Set by the app factory (a RateLimiter kept with the hub's other limits): calls and wrong secrets per address.
        self.webhook_limits: Any = None

    @property
    def max_depth(self) -> int:
        return int(getattr(self.hub.config, "automation_max_depth", DEFAULT_MAX_DEPTH))

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for record in await self.hub.store.list_automations():
            if record.source.startswith("file:"):
                continue  # read again from the files below
            self._load(record)
        await self.load_files()
        self._reports: asyncio.Queue[Event] = asyncio.Queue(REPORT_QUEUE)
        self.hub.report_observers.append(self._observe_report)
        self._background = [
            asyncio.create_task(self._listen(), name="roost-automations-events"),
            asyncio.create_task(self._tick(), name="roost-automations-tick"),
            asyncio.create_task(self._follow_reports(), name="roost-automations-reports"),
        ]
        self.started = True
        await self._resume()

    async def stop(self) -> None:
        self.started = False
        if self._observe_report in self.hub.report_observers:
            self.hub.report_observers.remove(self._observe_report)
        tasks = [*self._background, *self._tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._background, self._tasks = [], {}

    def kinds(self) -> Kinds:
        registry = self.hub.plugins.registry
        return Kinds(
            triggers={name: decl.schema for name, (_, decl) in registry.automation_triggers.items()},
            actions={name: decl.schema for name, (_, decl) in registry.automation_actions.items()},
        )

    def validate(self, raw: Any) -> dict[str, Any]:
        return validate(raw, self.kinds())

    def _load(self, record: AutomationRecord) -> Loaded | None:
        try:
            definition = self.validate(record.definition)
        except AutomationInvalid as err:
            _LOGGER.error("automation %s is invalid and stays off: %s", record.automation_id, err)
            self.file_errors[record.automation_id] = err.as_list()
            self.automations.pop(record.automation_id, None)
            return None
        loaded = Loaded(record, definition, [{} for _ in definition["triggers"]])
        self.automations[record.automation_id] = loaded
        return loaded

    async def load_files(self) -> None:
        """Automations from ``<data dir>/automations/*.yaml|*.yml|*.toml``: one automation (or a list) per file, read-only elsewhere."""
        folder = Path(self.hub.config.data_dir) / CONFIG_FOLDER
        for aid, loaded in list(self.automations.items()):
            if loaded.record.source.startswith("file:"):
                del self.automations[aid]
        self.file_errors = {k: v for k, v in self.file_errors.items() if not k.startswith("file:")}
        if not folder.is_dir():
            return
        now = time.time()
        for path in sorted(folder.iterdir()):
            fmt = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}.get(path.suffix)
            if fmt is None or not path.is_file():
                continue
            try:
                raw = parse_text(path.read_text(encoding="utf-8"), fmt)
                items = raw if isinstance(raw, list) else (raw.get("automations") if isinstance(raw, Mapping) and "automations" in raw else [raw])
                for index, item in enumerate(items or []):
                    where = f"{path.name}" + (f"[{index}]" if len(items) > 1 else "")
                    try:
                        definition = self.validate(item)
                    except AutomationInvalid as err:
                        self.file_errors[f"file:{where}"] = err.as_list()
                        _LOGGER.error("automation file %s is invalid, left out: %s", where, err)
                        continue
                    aid = definition.get("id") or path.stem.replace(".", "-").lower()
                    existing = await self.hub.store.get_automation(aid)
                    if existing is not None and not existing.source.startswith("file:"):
                        self.file_errors[f"file:{where}"] = [{"path": "id", "message": f"automation {aid!r} already exists (made through the API); give the file's automation another id"}]
                        continue
                    record = AutomationRecord(
                        automation_id=aid,
                        definition=item,
                        enabled=definition["enabled"],
                        source=f"file:{path.name}",
                        webhook_secret=existing.webhook_secret if existing else secrets.token_urlsafe(24),
                        created_by="file",
                        created_at=existing.created_at if existing else now,
                        updated_at=now,
                    )
                    await self.hub.store.put_automation(record)
                    self._load(record)
            except AutomationInvalid as err:
                self.file_errors[f"file:{path.name}"] = err.as_list()
                _LOGGER.error("automation file %s cannot be read: %s", path.name, err)
            except OSError as err:
                self.file_errors[f"file:{path.name}"] = [{"path": "(file)", "message": str(err)}]

    # --------------------------------------------------------------- authoring

    async def save(self, raw: Any, *, actor: str, automation_id: str | None = None) -> AutomationRecord:
        """Create (no id) or replace an automation from the API; raises AutomationInvalid or KeyError/PermissionError."""
        definition = self.validate(raw)
        aid = automation_id or definition.get("id") or "a" + secrets.token_hex(5)
        existing = await self.hub.store.get_automation(aid)
        if existing is not None and existing.source.startswith("file:"):
            raise PermissionError(f"automation {aid} comes from {existing.source[5:]} in the hub's config dir; edit that file instead")
        if automation_id is None and existing is not None:
            raise FileExistsError(f"automation {aid!r} already exists; pick another id or PUT /api/v1/automations/{aid}")
        if automation_id is not None and existing is None:
            raise KeyError(aid)
        now = time.time()
        stored = dict(raw)
        stored["id"] = aid
        record = AutomationRecord(
            automation_id=aid,
            definition=stored,
            enabled=definition["enabled"],
            source="api",
            webhook_secret=existing.webhook_secret if existing else secrets.token_urlsafe(24),
            created_by=existing.created_by if existing else actor,
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )
        await self.hub.store.put_automation(record)
        self._load(record)
        self.file_errors.pop(aid, None)
        await self.hub.audit("automation.saved", actor=actor, target=f"automation:{aid}", details={"name": definition["name"], "new": existing is None})
        return record

    async def set_enabled(self, automation_id: str, enabled: bool, *, actor: str) -> AutomationRecord:
        record = await self.hub.store.get_automation(automation_id)
        if record is None:
            raise KeyError(automation_id)
        definition = {**record.definition, "enabled": enabled}
        record = AutomationRecord(**{**record.__dict__, "definition": definition, "enabled": enabled, "updated_at": time.time()})
        await self.hub.store.put_automation(record)
        self._load(record)
        await self.hub.audit("automation.enabled" if enabled else "automation.disabled", actor=actor, target=f"automation:{automation_id}")
        return record

    async def delete(self, automation_id: str, *, actor: str) -> bool:
        record = await self.hub.store.get_automation(automation_id)
        if record is None:
            return False
        if record.source.startswith("file:"):
            raise PermissionError(f"automation {automation_id} comes from {record.source[5:]} in the hub's config dir; delete it there")
        for run_id in list(self._active.get(automation_id, [])):
            await self.cancel_run(run_id, actor=actor, why="its automation was deleted")
        await self.hub.store.delete_automation(automation_id)
        self.automations.pop(automation_id, None)
        await self.hub.audit("automation.deleted", actor=actor, target=f"automation:{automation_id}")
        return True

    def webhook_target(self, secret: str) -> Loaded | None:
        for loaded in self.automations.values():
            if hmac.compare_digest(loaded.record.webhook_secret.encode(), secret.encode()):
                return loaded
        return None

    # ------------------------------------------------------------- events in

    async def _listen(self) -> None:
        async with self.hub.events.subscribe() as queue:
            while True:
                event = await queue.get()
                if event is None:
                    return
                await self.on_event(event)

    def _observe_report(self, node_id: str) -> None:
        """After each stored report: the node's metrics as they are now, in order, for the metric triggers."""
        event = Event("automation.report", {"id": node_id, "metrics": dict(self.hub._metrics.get(node_id, {}))})
        try:
            self._reports.put_nowait(event)
        except asyncio.QueueFull:
            _LOGGER.debug("automation report queue full; a report of node %s is not judged", node_id)

    async def _follow_reports(self) -> None:
        while True:
            await self.on_event(await self._reports.get())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            await self.on_event(Event("automation.tick", {"now": time.time()}))

    def _trigger_state(self, memo: dict[str, Any], automation_id: str) -> TriggerState:
        hub = self.hub
        return TriggerState(
            memo=memo,
            now=time.time(),
            automation_id=automation_id,
            metrics=lambda node_id: dict(hub._metrics.get(node_id, {})),
            status=lambda node_id: hub.node_status(node_id) if hub.node(node_id) else "unknown",
        )

    async def _matches(self, trigger: dict[str, Any], event: Event, memo: dict[str, Any], automation_id: str) -> dict[str, Any] | None:
        declared = self.hub.plugins.registry.automation_triggers.get(trigger.get("kind", ""))
        if declared is None:
            return None
        domain, decl = declared
        settings = {k: v for k, v in trigger.items() if k not in ("kind", "id")}
        try:
            found = decl.handler(settings, event, self._trigger_state(memo, automation_id))
            if inspect.isawaitable(found):
                found = await found
        except Exception as err:
            key = f"{domain}:{trigger['kind']}:{type(err).__name__}"
            if key not in self._warned:
                self._warned.add(key)
                _LOGGER.exception("automation trigger %s (integration %s) failed on a %s event: %s", trigger["kind"], domain, event.kind, err)
            return None
        if not found:
            return None
        data = dict(found) if isinstance(found, Mapping) else dict(event.data) if isinstance(event.data, Mapping) else {}
        return {**data, "kind": trigger["kind"], "id": trigger.get("id", ""), "event": event.kind}

    def _cause_of(self, event: Event) -> dict[str, Any] | None:
        data = event.data if isinstance(event.data, Mapping) else {}
        cause = data.get("cause")
        if isinstance(cause, Mapping) and isinstance(cause.get("automation"), str):
            return dict(cause)
        if event.kind in ("job", "job_progress") and isinstance(data.get("id"), str):
            known = self._job_causes.get(data["id"])
            if known:
                return known
            created_by = data.get("created_by") or ""
            if isinstance(created_by, str) and created_by.startswith(ACTOR_PREFIX):
                return {"automation": created_by[len(ACTOR_PREFIX):], "run": "", "depth": 0}
        return None

    async def on_event(self, event: Event) -> None:
        if event.kind == "job" and isinstance(event.data, Mapping) and event.data.get("state") in JOB_FINAL:
            done = self._job_done.get(event.data.get("id", ""))
            if done is not None:
                done.set()
        for run_id, (trigger, memo, future) in list(self._waiters.items()):
            if future.done():
                continue
            data = await self._matches(trigger, event, memo, self._waiter_automation(run_id))
            if data is not None and not future.done():
                future.set_result(data)
        if not self.started:
            return
        cause = self._cause_of(event)
        for aid, loaded in list(self.automations.items()):
            if not loaded.record.enabled:
                continue
            for index, trigger in enumerate(loaded.definition["triggers"]):
                data = await self._matches(trigger, event, loaded.memos[index], aid)
                if data is not None:
                    try:
                        await self.trigger(aid, data, cause=cause)
                    except Exception:
                        _LOGGER.exception("automation %s: could not start a run", aid)
                    break  # one run per event, whichever trigger matched first

    def _waiter_automation(self, run_id: str) -> str:
        for aid, runs in self._active.items():
            if run_id in runs:
                return aid
        return ""

    # ---------------------------------------------------------------- starting

    async def trigger(
        self, automation_id: str, trigger: dict[str, Any], *, cause: dict[str, Any] | None = None, actor: str = "", dry_run: bool = False
    ) -> RunRecord:
        """Start a run (or record why none started: a loop, conditions, throttle, run mode). Returns the run's record."""
        loaded = self.automations.get(automation_id)
        if loaded is None:
            raise KeyError(automation_id)
        definition = loaded.definition
        depth = int(cause.get("depth", 0)) + 1 if cause else 0
        node_id = str(trigger.get("node_id") or "")
        if cause and cause.get("automation") == automation_id:
            return await self._refuse_loop(automation_id, trigger, cause, depth, f"automation {automation_id} cannot trigger itself (the event came from its run {cause.get('run') or '?'})")
        limit = definition.get("max_depth", self.max_depth)
        if cause and depth > limit:
            return await self._refuse_loop(
                automation_id, trigger, cause, depth, f"chain too deep: this would be run {depth} of a chain started by automations, and at most {limit} are allowed (max_depth)"
            )
        record = RunRecord(
            run_id=new_run_id(),
            automation_id=automation_id,
            state=RUN_RUNNING,
            trigger=_short(dict(trigger)),
            context={"variables": dict(definition.get("variables") or {}), "definition": definition, "started_by": actor or "trigger", "cause": cause},
            trace=[],
            depth=depth,
            started_at=time.time(),
            updated_at=time.time(),
            node_id=node_id,
            dry_run=dry_run,
        )
        run = _Run(record, definition)
        failed = self._conditions_fail(definition.get("conditions") or [], run, "conditions")
        if failed:
            return await self._skipped(record, f"conditions not met: {failed}")
        throttle = definition.get("throttle")
        if throttle and not dry_run:
            key = node_id if throttle["per"] == "node" else ""
            record = RunRecord(**{**record.__dict__, "throttle_key": key})
            count = await self.hub.store.count_runs_since(automation_id, key, time.time() - throttle["period"])
            if count >= throttle["max"]:
                where = f" on node {node_id}" if key else ""
                return await self._skipped(record, f"throttled: {count} run(s){where} within the last {throttle['period']:g} s (at most {throttle['max']})")
        if dry_run:
            await self.hub.store.add_run(record)
            await self._execute(record.run_id)
            return await self.hub.store.get_run(record.run_id) or record
        active = [r for r in self._active.get(automation_id, []) if r in self._tasks]
        mode, most = definition["mode"], definition["max"]
        if active and mode == "single":
            return await self._skipped(record, "already running (mode single): this trigger is dropped")
        if active and mode == "parallel" and len(active) >= most:
            return await self._skipped(record, f"{len(active)} runs already (mode parallel, max {most})")
        if active and mode == "restart":
            for run_id in active:
                await self.cancel_run(run_id, actor="system", why="restarted by a new trigger (mode restart)")
        if active and mode == "queued":
            queue = self._queued.setdefault(automation_id, deque())
            if len(queue) >= most:
                return await self._skipped(record, f"{len(queue)} runs already queued (mode queued, max {most})")
            record = RunRecord(**{**record.__dict__, "state": RUN_QUEUED})
            await self.hub.store.add_run(record)
            queue.append(record.run_id)
            self._publish_run(record)
            return record
        await self.hub.store.add_run(record)
        self._spawn(record)
        return record

    async def _refuse_loop(self, automation_id: str, trigger: dict[str, Any], cause: dict[str, Any], depth: int, why: str) -> RunRecord:
        _LOGGER.warning("automation %s: refused a run: %s", automation_id, why)
        await self.hub.audit("automation.loop_refused", actor=f"{ACTOR_PREFIX}{automation_id}", target=f"automation:{automation_id}", outcome="refused", details={"why": why, "cause": cause})
        record = RunRecord(
            run_id=new_run_id(), automation_id=automation_id, state=RUN_SKIPPED, trigger=_short(dict(trigger)), context={"cause": cause},
            trace=[], depth=depth, started_at=time.time(), updated_at=time.time(), node_id=str(trigger.get("node_id") or ""), finished_at=time.time(), error=why,
        )
        await self.hub.store.add_run(record)
        self._publish_run(record)
        return record

    async def _skipped(self, record: RunRecord, why: str) -> RunRecord:
        _LOGGER.info("automation %s: no run: %s", record.automation_id, why)
        record = RunRecord(**{**record.__dict__, "state": RUN_SKIPPED, "error": why, "finished_at": time.time(), "context": {"cause": record.context.get("cause")}})
        await self.hub.store.add_run(record)
        self._publish_run(record)
        return record

    def _spawn(self, record: RunRecord) -> None:
        self._active.setdefault(record.automation_id, []).append(record.run_id)
        self._tasks[record.run_id] = asyncio.create_task(self._execute(record.run_id), name=f"roost-run-{record.run_id}")

    async def _resume(self) -> None:
        runs = await self.hub.store.list_runs(states=(*RUN_ACTIVE, RUN_QUEUED), limit=1000)
        for record in sorted(runs, key=lambda r: r.started_at):
            if record.dry_run:
                await self.hub.store.update_run(record.run_id, state=RUN_CANCELLED, error="a dry run does not outlive the hub", finished_at=time.time())
                continue
            for path, job_id in (record.context.get("jobs") or {}).items():
                self._job_causes[job_id] = {"automation": record.automation_id, "run": record.run_id, "depth": record.depth}
            if record.state == RUN_QUEUED:
                self._queued.setdefault(record.automation_id, deque()).append(record.run_id)
            else:
                _LOGGER.info("automation %s: resuming run %s after a restart", record.automation_id, record.run_id)
                self._spawn(record)
        for aid, queue in self._queued.items():
            if queue and not self._active.get(aid):
                await self._next_queued(aid)

    async def _next_queued(self, automation_id: str) -> None:
        queue = self._queued.get(automation_id)
        while queue:
            run_id = queue.popleft()
            record = await self.hub.store.update_run(run_id, expect=(RUN_QUEUED,), state=RUN_RUNNING, updated_at=time.time())
            if record is not None:
                self._spawn(record)
                return

    async def cancel_run(self, run_id: str, *, actor: str, why: str = "") -> RunRecord | None:
        record = await self.hub.store.get_run(run_id)
        if record is None or record.state not in (*RUN_ACTIVE, RUN_QUEUED):
            return record
        task = self._tasks.pop(run_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for queue in self._queued.values():
            if run_id in queue:
                queue.remove(run_id)
        for approval in await self.hub.store.list_approvals(state=APPROVAL_PENDING, run_id=run_id):
            await self.hub.store.decide_approval(approval.approval_id, state=APPROVAL_CANCELLED, by=actor, at=time.time(), note=why)
        message = f"cancelled by {actor}" + (f": {why}" if why else "")
        done = await self.hub.store.update_run(run_id, expect=(*RUN_ACTIVE, RUN_QUEUED), state=RUN_CANCELLED, error=message, finished_at=time.time(), updated_at=time.time())
        self._forget(record.automation_id, run_id)
        if done is not None:
            self._publish_run(done)
        return done

    def _forget(self, automation_id: str, run_id: str) -> None:
        runs = self._active.get(automation_id, [])
        if run_id in runs:
            runs.remove(run_id)
        self._tasks.pop(run_id, None)
        self._waiters.pop(run_id, None)

    # ---------------------------------------------------------------- running

    async def _execute(self, run_id: str) -> None:
        record = await self.hub.store.get_run(run_id)
        if record is None:
            return
        definition = record.context.get("definition") or (self.automations.get(record.automation_id).definition if record.automation_id in self.automations else None)
        if definition is None:
            await self.hub.store.update_run(run_id, state=RUN_FAILED, error="the automation is gone", finished_at=time.time())
            return
        run = _Run(record, definition)
        state, message = RUN_SUCCEEDED, ""
        try:
            await self._walk(run, definition["steps"], "steps")
        except _End as end:
            state, message = end.state, end.message
        except asyncio.CancelledError:
            # A hub stopping: the run stays as it is and resumes at the next start. A cancel_run already wrote its end.
            await self._save(run)
            raise
        except Exception as err:
            _LOGGER.exception("automation %s run %s failed unexpectedly", run.automation_id, run_id)
            state, message = RUN_FAILED, f"{type(err).__name__}: {err}"
        run.state = state
        done = await self.hub.store.update_run(
            run_id, expect=RUN_ACTIVE, state=state, error=message, context=run.context, trace=run.trace, finished_at=time.time(), updated_at=time.time()
        )
        if done is not None:
            self._publish_run(done)
            level = logging.INFO if state in (RUN_SUCCEEDED, RUN_STOPPED) else logging.WARNING
            _LOGGER.log(level, "automation %s run %s %s%s", run.automation_id, run_id, state, f": {message}" if message else "")
        self._forget(run.automation_id, run_id)
        if not run.dry_run:
            await self._next_queued(run.automation_id)

    async def _save(self, run: _Run, state: str | None = None) -> None:
        changes: dict[str, Any] = {"context": run.context, "trace": run.trace, "updated_at": time.time()}
        if state:
            changes["state"] = run.state = state
        record = await self.hub.store.update_run(run.run_id, expect=RUN_ACTIVE, **changes)
        if record is not None and state:
            self._publish_run(record)

    def _publish_run(self, record: RunRecord) -> None:
        self.hub.publish("automation.run", {"id": record.run_id, "automation_id": record.automation_id, "state": record.state, "error": record.error})

    async def _walk(self, run: _Run, steps: list[dict[str, Any]], base: str) -> None:
        for index, step in enumerate(steps):
            path = f"{base}[{index}]"
            if run.context["done"].get(path):
                continue
            await self._step(run, step, path)

    @staticmethod
    def _r(run: _Run, value: Any) -> Any:
        return render(value, run.variables(), run.dry_run)

    def _trace(self, run: _Run, path: str, step: dict[str, Any], kind: str, **entry: Any) -> dict[str, Any]:
        item = {"path": path, "kind": kind, "name": step.get("name") or step.get("id") or "", "started_at": time.time(), **entry}
        run.trace.append(item)
        return item

    def _finish(self, run: _Run, item: dict[str, Any], path: str, state: str, **entry: Any) -> None:
        item.update(entry, state=state, duration_s=round(time.time() - item["started_at"], 3))
        if state != "waiting":
            run.context["done"][path] = True

    async def _step(self, run: _Run, step: dict[str, Any], path: str) -> None:
        if "action" in step:
            return await self._action_step(run, step, path)
        if "delay" in step:
            return await self._delay(run, step, path)
        if "wait_for_approval" in step:
            return await self._approval(run, step, path)
        if "wait_for_trigger" in step:
            return await self._wait_trigger(run, step, path)
        if "variables" in step:
            item = self._trace(run, path, step, "variables")
            try:
                values = self._r(run, step["variables"])
            except TemplateFailed as err:
                self._finish(run, item, path, "failed", message=str(err))
                await self._save(run)
                raise _End(RUN_FAILED, f"{path}: {err}") from None
            run.context["variables"].update(values)
            self._finish(run, item, path, "done", result=_short(values))
            await self._save(run)
            return None
        if "stop" in step:
            item = self._trace(run, path, step, "stop")
            self._finish(run, item, path, "done", message=step["stop"])
            await self._save(run)
            raise _End(RUN_STOPPED, step["stop"] or "stopped")
        if "if" in step or "choose" in step:
            return await self._branch(run, step, path)
        raise _End(RUN_FAILED, f"{path}: unknown step")

    async def _branch(self, run: _Run, step: dict[str, Any], path: str) -> None:
        chosen = run.context["branches"].get(path)
        if chosen is None:
            item = self._trace(run, path, step, "if" if "if" in step else "choose")
            if "if" in step:
                failed = self._conditions_fail(step["if"], run, f"{path}.if")
                chosen = "then" if not failed else "else"
                message = "conditions met" if not failed else f"not met: {failed}"
            else:
                chosen, message = "default", "no option matched"
                for i, option in enumerate(step["choose"]):
                    failed = self._conditions_fail(option["conditions"], run, f"{path}.choose[{i}].conditions")
                    if not failed:
                        chosen, message = f"choose[{i}].steps", f"option {i} matched"
                        break
            run.context["branches"][path] = chosen
            item.update(result={"branch": chosen}, message=message, state="done", duration_s=0.0)
            await self._save(run)
        if chosen in ("then", "else", "default"):
            steps = step.get(chosen) or []
        else:
            steps = step["choose"][int(chosen.split("[")[1].split("]")[0])]["steps"]
        await self._walk(run, steps, f"{path}.{chosen}")
        run.context["done"][path] = True

    async def _delay(self, run: _Run, step: dict[str, Any], path: str) -> None:
        wait = run.context["waits"].get(path)
        if wait is None:
            seconds = step["delay"]
            if isinstance(seconds, str):
                from roost.core.config import parse_duration

                seconds = parse_duration(self._r(run, seconds))
            item = self._trace(run, path, step, "delay", input={"seconds": seconds})
            if run.dry_run:
                self._finish(run, item, path, "done", message=f"would wait {seconds:g} s")
                return
            wait = run.context["waits"][path] = {"until": time.time() + seconds, "trace": len(run.trace) - 1}
            item["state"] = "waiting"
            await self._save(run, RUN_WAITING)
        remaining = wait["until"] - time.time()
        if remaining > 0:
            await asyncio.sleep(remaining)
        item = run.trace[wait["trace"]] if wait.get("trace") is not None and wait["trace"] < len(run.trace) else self._trace(run, path, step, "delay")
        late = time.time() - wait["until"]
        self._finish(run, item, path, "done", message="waited" + (f" (the hub was down: {late:.1f} s late)" if late > 1 else ""))
        await self._save(run, RUN_RUNNING)

    async def _approval(self, run: _Run, step: dict[str, Any], path: str) -> None:
        settings = step["wait_for_approval"]
        wait = run.context["waits"].get(path)
        if wait is None and not run.dry_run:
            # Asked for before a crash that came before the run recorded it: the same approval, not a second one.
            for earlier in await self.hub.store.list_approvals(run_id=run.run_id):
                if earlier.step == path:
                    item = self._trace(run, path, step, "wait_for_approval", input={"summary": earlier.summary}, state="waiting")
                    wait = run.context["waits"][path] = {"approval": earlier.approval_id, "until": earlier.expires_at, "trace": len(run.trace) - 1}
                    await self._save(run, RUN_WAITING)
                    break
        if wait is None:
            try:
                summary = str(self._r(run, settings["summary"]))
                details = self._r(run, settings.get("details") or {})
                timeout = settings["timeout"]
                if isinstance(timeout, str):
                    from roost.core.config import parse_duration

                    timeout = parse_duration(self._r(run, timeout))
            except TemplateFailed as err:
                raise _End(RUN_FAILED, f"{path}: {err}") from None
            item = self._trace(run, path, step, "wait_for_approval", input={"summary": summary, "timeout_s": timeout, "details": _short(details)})
            if run.dry_run:
                self._finish(run, item, path, "done", message=f"would wait up to {timeout:g} s for an operator's approval: {summary}")
                return
            now = time.time()
            approval = ApprovalRecord(
                approval_id="ap" + secrets.token_hex(8),
                run_id=run.run_id,
                automation_id=run.automation_id,
                step=path,
                summary=summary,
                state=APPROVAL_PENDING,
                created_at=now,
                expires_at=now + timeout,
                node_id=run.record.node_id,
                details=_short(details) if isinstance(details, dict) else {"details": details},
            )
            await self.hub.store.add_approval(approval)
            wait = run.context["waits"][path] = {"approval": approval.approval_id, "until": approval.expires_at, "trace": len(run.trace) - 1}
            run.context["variables"]["approval_url"] = f"/automations/approvals/{approval.approval_id}"
            item["state"] = "waiting"
            item["result"] = {"approval": approval.approval_id}
            await self._save(run, RUN_WAITING)
            await self.hub.audit(
                "automation.approval_requested", actor=f"{ACTOR_PREFIX}{run.automation_id}", target=f"automation:{run.automation_id}",
                details={"run": run.run_id, "approval": approval.approval_id, "summary": summary, "expires_at": approval.expires_at},
            )
            self.hub.publish("automation.approval", {"id": approval.approval_id, "run_id": run.run_id, "automation_id": run.automation_id, "state": APPROVAL_PENDING, "summary": summary})
            if settings.get("notify"):
                item["message"] = await self._notify_approval(run, approval, settings["notify"])
                await self._save(run)
        approval_id = wait["approval"]
        item = run.trace[wait["trace"]] if wait.get("trace") is not None and wait["trace"] < len(run.trace) else self._trace(run, path, step, "wait_for_approval")
        event = self._approval_decided.setdefault(approval_id, asyncio.Event())
        while True:
            approval = await self.hub.store.get_approval(approval_id)
            if approval is None:
                raise _End(RUN_FAILED, f"{path}: approval {approval_id} is gone")
            if approval.state == APPROVAL_PENDING and time.time() >= approval.expires_at:
                expired = await self.hub.store.decide_approval(approval_id, state=APPROVAL_EXPIRED, by="system", at=time.time(), note="no decision before it expired")
                if expired is not None:
                    await self.hub.audit("automation.approval_expired", actor="system", target=f"automation:{run.automation_id}", outcome="refused", details={"run": run.run_id, "approval": approval_id})
                continue
            if approval.state != APPROVAL_PENDING:
                break
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), max(0.05, min(5.0, approval.expires_at - time.time())))
            except asyncio.TimeoutError:
                pass
        self._approval_decided.pop(approval_id, None)
        decided = {"state": approval.state, "by": approval.decided_by, "at": approval.decided_at, "note": approval.note, "signed": approval.envelope is not None}
        if approval.state == APPROVAL_APPROVED:
            run.context["envelope"] = approval.envelope
            run.context["variables"]["approval"] = decided
            self._finish(run, item, path, "done", result=decided, message=f"approved by {approval.decided_by}")
            await self._save(run, RUN_RUNNING)
            return
        if approval.state == APPROVAL_EXPIRED:
            late = " (it expired while the hub was down)" if approval.decided_at and approval.decided_at - approval.expires_at > 5 else ""
            self._finish(run, item, path, "expired", result=decided, message=f"no decision before the approval expired{late}")
            await self._save(run)
            raise _End(RUN_EXPIRED, f"the approval expired without a decision{late}; nothing after it ran")
        self._finish(run, item, path, approval.state, result=decided, message=f"{approval.state} by {approval.decided_by or 'system'}")
        await self._save(run)
        raise _End(RUN_DENIED if approval.state == APPROVAL_DENIED else RUN_CANCELLED, f"approval {approval.state} by {approval.decided_by or 'system'}" + (f": {approval.note}" if approval.note else ""))

    async def _notify_approval(self, run: _Run, approval: ApprovalRecord, settings: Mapping[str, Any]) -> str:
        notifier = getattr(self.hub, "notifications", None)
        if notifier is None:
            return "no notification sent: notifications are not available on this hub"
        base = (getattr(self.hub.config, "public_url", "") or "").rstrip("/")
        url = f"{base}/automations/approvals/{approval.approval_id}"
        try:
            title = str(self._r(run, settings.get("title") or "Approval needed"))
            body = str(self._r(run, settings.get("body") or "")) or approval.summary
            ids = await notifier.send(
                title=title, body=f"{body}\n\nDecide: {url} (expires {time.strftime('%Y-%m-%d %H:%M', time.localtime(approval.expires_at))})",
                severity="warning", node_id=run.record.node_id or None, url=url, receivers=settings.get("receivers") or None, cause=run.cause(),
            )
        except Exception as err:
            return f"the notification could not be queued: {err}"
        return f"notification queued ({', '.join(ids)}), linking to {url}"

    async def decide(self, approval_id: str, *, approve: bool, actor: str, note: str = "", envelope: dict[str, Any] | None = None) -> ApprovalRecord:
        """A logged-in operator's decision (the API checks who may decide); raises LookupError or ValueError with why not."""
        approval = await self.hub.store.get_approval(approval_id)
        if approval is None:
            raise LookupError(f"no approval {approval_id!r}")
        if approval.state != APPROVAL_PENDING:
            raise ValueError(f"approval {approval_id} is already {approval.state}" + (f" (by {approval.decided_by})" if approval.decided_by else ""))
        if time.time() >= approval.expires_at:
            await self.hub.store.decide_approval(approval_id, state=APPROVAL_EXPIRED, by="system", at=time.time(), note="no decision before it expired")
            self._wake_approval(approval_id)
            raise ValueError(f"approval {approval_id} expired at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(approval.expires_at))}; the run has ended")
        decided = await self.hub.store.decide_approval(
            approval_id, state=APPROVAL_APPROVED if approve else APPROVAL_DENIED, by=actor, at=time.time(), note=note, envelope=envelope if approve else None
        )
        if decided is None:
            raise ValueError(f"approval {approval_id} was decided meanwhile")
        await self.hub.audit(
            "automation.approved" if approve else "automation.denied", actor=actor, target=f"automation:{approval.automation_id}",
            details={"run": approval.run_id, "approval": approval_id, "note": note, "signed": envelope is not None},
        )
        self.hub.publish("automation.approval", {"id": approval_id, "run_id": approval.run_id, "automation_id": approval.automation_id, "state": decided.state})
        self._wake_approval(approval_id)
        return decided

    def _wake_approval(self, approval_id: str) -> None:
        event = self._approval_decided.get(approval_id)
        if event is not None:
            event.set()

    async def _wait_trigger(self, run: _Run, step: dict[str, Any], path: str) -> None:
        settings = step["wait_for_trigger"]
        wait = run.context["waits"].get(path)
        if wait is None:
            item = self._trace(run, path, step, "wait_for_trigger", input={"trigger": settings["trigger"], "timeout_s": settings["timeout"]})
            if run.dry_run:
                self._finish(run, item, path, "done", message=f"would wait up to {settings['timeout']:g} s for {settings['trigger'].get('kind')}")
                return
            wait = run.context["waits"][path] = {"until": time.time() + settings["timeout"], "trace": len(run.trace) - 1}
            item["state"] = "waiting"
            await self._save(run, RUN_WAITING)
        item = run.trace[wait["trace"]] if wait.get("trace") is not None and wait["trace"] < len(run.trace) else self._trace(run, path, step, "wait_for_trigger")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[run.run_id] = (settings["trigger"], {}, future)
        try:
            data = await asyncio.wait_for(future, max(0.0, wait["until"] - time.time()))
        except asyncio.TimeoutError:
            data = None
        finally:
            self._waiters.pop(run.run_id, None)
        if data is None:
            run.context["variables"]["wait"] = None
            if settings["continue_on_timeout"]:
                self._finish(run, item, path, "done", message="timed out; going on (continue_on_timeout)")
                await self._save(run, RUN_RUNNING)
                return
            self._finish(run, item, path, "timed_out", message="the trigger did not come in time")
            await self._save(run)
            raise _End(RUN_STOPPED, f"{path}: timed out waiting for {settings['trigger'].get('kind')}")
        run.context["variables"]["wait"] = {"trigger": _short(data)}
        self._finish(run, item, path, "done", result=_short(data))
        await self._save(run, RUN_RUNNING)

    async def _action_step(self, run: _Run, step: dict[str, Any], path: str) -> None:
        declared = self.hub.plugins.registry.automation_actions.get(step["action"])
        item = None
        for entry in reversed(run.trace):
            if entry.get("path") == path and entry.get("state") == "running":
                item = entry  # the same step, started before a restart: go on in its trace entry
                break
        if declared is None:
            item = item or self._trace(run, path, step, step["action"])
            self._finish(run, item, path, "failed", message=f"no integration provides {step['action']} now")
            await self._save(run)
            raise _End(RUN_FAILED, f"{path}: action {step['action']} is not available (is its integration loaded?)")
        domain, decl = declared
        try:
            settings = self._r(run, step["with"])
            settings = decl.schema(settings)
        except TemplateFailed as err:
            item = item or self._trace(run, path, step, step["action"])
            self._finish(run, item, path, "failed", message=str(err))
            await self._save(run)
            raise _End(RUN_FAILED, f"{path}: {err}") from None
        except Exception as err:
            item = item or self._trace(run, path, step, step["action"])
            self._finish(run, item, path, "failed", message=f"settings invalid after filling templates: {err}")
            await self._save(run)
            raise _End(RUN_FAILED, f"{path}: settings invalid after filling templates: {err}") from None
        if item is None:
            item = self._trace(run, path, step, step["action"], input=_short(settings), state="running")
            await self._save(run)
        integ = self.hub.manager.integrations.get(domain)
        context = StepContext(self, run, path, integ.context if integ is not None else None)
        try:
            result = await decl.handler(settings, context)
        except StepStop as stop:
            self._finish(run, item, path, "done", message=str(stop), result=_short(getattr(stop, "result", None)))
            self._save_result(run, step, path, getattr(stop, "result", None))
            await self._save(run)
            raise _End(RUN_STOPPED, str(stop)) from None
        except StepFailed as err:
            refused = isinstance(err, StepRefused)
            self._finish(run, item, path, "refused" if refused else "failed", message=str(err), result=_short(getattr(err, "result", None)))
            await self._save(run)
            if step.get("continue_on_error"):
                return
            raise _End(RUN_REFUSED if refused else RUN_FAILED, f"{path} ({step['action']}): {err}") from None
        except asyncio.CancelledError:
            raise
        except Exception as err:
            _LOGGER.exception("automation action %s (integration %s) failed", step["action"], domain)
            self._finish(run, item, path, "failed", message=f"{type(err).__name__}: {err}")
            await self._save(run)
            if step.get("continue_on_error"):
                return
            raise _End(RUN_FAILED, f"{path} ({step['action']}): {type(err).__name__}: {err}") from None
        self._finish(run, item, path, "done" if not run.dry_run else "dry_run", result=_short(result))
        self._save_result(run, step, path, result)
        await self._save(run)

    @staticmethod
    def _save_result(run: _Run, step: dict[str, Any], path: str, result: Any) -> None:
        run.context["results"][step.get("id") or path] = _short(result)
        if step.get("save_as"):
            run.context["variables"][step["save_as"]] = _short(result)

    # ------------------------------------------------------------------- jobs

    async def _run_job(self, run: _Run, path: str, node_id: str, action: str, params: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        from .jobs import crash_point

        hub = self.hub
        actor = f"{ACTOR_PREFIX}{run.automation_id}"
        if not run.dry_run and node_id not in hub.jobs.actions and hub.node(node_id) is not None and not run.context["jobs"].get(path):
            # The node has not said what it offers since the hub started (a resumed run after a restart): wait for it to connect.
            waited_until = time.time() + min(timeout, JOB_STEP_TIMEOUT)
            while node_id not in hub.jobs.actions and time.time() < waited_until:
                await asyncio.sleep(0.5)
        described = hub.jobs.actions.get(node_id, {}).get(action) or {}
        envelope = run.context.get("envelope") if described.get("destructive") else None
        if described.get("destructive") and not envelope:
            raise StepRefused(
                f"{action} is destructive: it needs an envelope signed with the operator key, which an automation can never make; "
                "put a wait_for_approval step before it and give the signed envelope (`roost sign`) with the approval"
            )
        if run.dry_run:
            node = hub.node(node_id)
            if node is None:
                raise StepFailed(f"no node {node_id!r}")
            allowed = await hub.jobs.effective_for(node_id)
            if not described:
                raise StepRefused(f"node {node.name} does not offer {action} now (is it online and is the integration loaded?)")
            if described.get("capability") not in allowed:
                raise StepRefused(f"would be refused: {action} needs {described.get('capability')}, which node {node.name} does not have (grants ∩ ceiling)")
            return {"would_run": {"node_id": node_id, "action": action, "params": params, "as": actor}}
        job_id = run.context["jobs"].get(path) or step_job_id(run.run_id, path)
        cause = run.cause()
        self._job_causes[job_id] = cause
        done = self._job_done.setdefault(job_id, asyncio.Event())
        job = await hub.store.get_job(job_id)
        if job is None:
            try:
                job = await hub.jobs.create(node_id, action, params, actor=actor, envelope=envelope, job_id=job_id)
            except JobError as err:
                raise StepRefused(str(err)) from None
            run.context["jobs"][path] = job_id
            crash_point(CRASH_JOB_QUEUED)
            await self._save(run)
        elif path not in run.context["jobs"]:
            run.context["jobs"][path] = job_id
            await self._save(run)
        deadline = job.created_at + timeout
        try:
            while job.state not in JOB_FINAL:
                if time.time() > deadline:
                    try:
                        await hub.jobs.cancel(job_id, actor=actor)
                    except JobError:
                        pass
                    raise StepFailed(f"job {job_id} ({action} on {node_id}) had not finished after {timeout:g} s (it was {job.state})")
                done.clear()
                try:
                    await asyncio.wait_for(done.wait(), min(2.0, max(0.05, deadline - time.time())))
                except asyncio.TimeoutError:
                    pass
                job = await hub.store.get_job(job_id) or job
        finally:
            self._job_done.pop(job_id, None)
        view = job_view(job, with_output=True)
        view["output"] = _short(view.get("output") or "")
        if job.state == JOB_SUCCEEDED:
            return view
        if job.state == JOB_REFUSED:
            error = StepRefused(f"the agent on node {node_id} refused {action}: {job.error}")
        else:
            error = StepFailed(f"job {job_id} ({action} on {node_id}) {job.state}: {job.error}")
        error.result = view  # type: ignore[attr-defined]
        raise error

    # -------------------------------------------------------------- conditions

    def _conditions_fail(self, conditions: list[dict[str, Any]], run: _Run, path: str) -> str:
        """'' when every condition holds, else which one did not and why."""
        variables = run.variables()
        for index, cond in enumerate(conditions):
            why = self._condition_fails(cond, variables, f"{path}[{index}]")
            if why:
                return why
        return ""

    def _condition_fails(self, cond: dict[str, Any], variables: dict[str, Any], path: str) -> str:
        (key, value), = cond.items()
        hub = self.hub
        trigger = variables.get("trigger") or {}
        try:
            if key == "and":
                for i, c in enumerate(value):
                    why = self._condition_fails(c, variables, f"{path}.and[{i}]")
                    if why:
                        return why
                return ""
            if key == "or":
                reasons = [self._condition_fails(c, variables, f"{path}.or[{i}]") for i, c in enumerate(value)]
                return "" if any(not r for r in reasons) else f"{path}: none of: " + "; ".join(reasons)
            if key == "not":
                if all(not self._condition_fails(c, variables, f"{path}.not[{i}]") for i, c in enumerate(value)):
                    return f"{path}: the negated condition holds"
                return ""
            if key == "node_online":
                node_id = str(trigger.get("node_id") or "") if value is True else str(render(value, variables))
                status = hub.node_status(node_id) if hub.node(node_id) else "unknown"
                return "" if status == "online" else f"{path}: node {node_id or '(none)'} is {status}"
            if key == "labels":
                labels = trigger.get("labels") or {}
                return "" if labels_match(value, labels) else f"{path}: labels {dict(labels)} do not match {value}"
            if key == "metric":
                node_id = str(render(value["node"], variables))
                series = str(render(value["series"], variables))
                current = hub._metrics.get(node_id, {}).get(series)
                if current is None:
                    return f"{path}: node {node_id} has no value for {series}"
                if "above" in value and not current > float(render(value["above"], variables)):
                    return f"{path}: {series} is {current:g}, not above {render(value['above'], variables)}"
                if "below" in value and not current < float(render(value["below"], variables)):
                    return f"{path}: {series} is {current:g}, not below {render(value['below'], variables)}"
                return ""
            if key == "time":
                return "" if time_window(value, time.time()) else f"{path}: outside the time window {value}"
            if key == "template":
                return "" if render(value, variables) not in (False, None, "", 0, "false", "False") else f"{path}: {value} is false"
            if key in ("not_in_maintenance", "not_silenced"):
                alerts = getattr(hub, "alerts", None)
                if alerts is None:
                    return ""
                labels = {"node": str(trigger.get("node_id") or ""), **{k: str(v) for k, v in (trigger.get("labels") or {}).items()}}
                if key == "not_in_maintenance" and alerts.in_maintenance(labels, time.time()):
                    return f"{path}: node {labels['node']} is in a maintenance window"
                if key == "not_silenced" and alerts.silenced(labels, time.time()):
                    return f"{path}: a silence covers {labels}"
                return ""
        except TemplateFailed as err:
            return f"{path}: {err}"
        except (TypeError, ValueError) as err:
            return f"{path}: {err}"
        return f"{path}: unknown condition {key}"

    # ------------------------------------------------------------------ views

    def view(self, loaded: Loaded | AutomationRecord, *, with_secret: bool = False) -> dict[str, Any]:
        record = loaded.record if isinstance(loaded, Loaded) else loaded
        definition = loaded.definition if isinstance(loaded, Loaded) else None
        out = {
            "id": record.automation_id,
            "name": (definition or record.definition).get("name", record.automation_id),
            "description": (definition or record.definition).get("description", ""),
            "enabled": record.enabled,
            "source": record.source,
            "definition": record.definition,
            "valid": definition is not None,
            "errors": self.file_errors.get(record.automation_id, []),
            "mode": (definition or {}).get("mode", ""),
            "triggers": [t.get("kind") for t in (definition or {}).get("triggers", [])],
            "created_by": record.created_by,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "running": len(self._active.get(record.automation_id, [])),
        }
        if with_secret and definition is not None and any(t.get("kind") == "automation.webhook" for t in definition["triggers"]):
            out["webhook_url"] = f"/api/v1/automations/webhook/{record.webhook_secret}"
        return out


def run_view(record: RunRecord) -> dict[str, Any]:
    return {
        "id": record.run_id,
        "automation_id": record.automation_id,
        "state": record.state,
        "trigger": record.trigger,
        "variables": (record.context or {}).get("variables", {}),
        "cause": (record.context or {}).get("cause"),
        "started_by": (record.context or {}).get("started_by", ""),
        "trace": record.trace,
        "depth": record.depth,
        "node_id": record.node_id,
        "started_at": record.started_at,
        "updated_at": record.updated_at,
        "finished_at": record.finished_at,
        "error": record.error,
        "dry_run": record.dry_run,
        "jobs": (record.context or {}).get("jobs", {}),
    }


def approval_view(record: ApprovalRecord, now: float | None = None) -> dict[str, Any]:
    now = now or time.time()
    state = record.state
    if state == APPROVAL_PENDING and now >= record.expires_at:
        state = APPROVAL_EXPIRED
    return {
        "id": record.approval_id,
        "run_id": record.run_id,
        "automation_id": record.automation_id,
        "step": record.step,
        "summary": record.summary,
        "details": record.details,
        "state": state,
        "node_id": record.node_id,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "decided_by": record.decided_by,
        "decided_at": record.decided_at,
        "note": record.note,
        "signed": record.envelope is not None,
        "url": f"/automations/approvals/{record.approval_id}",
    }


def match_glob(pattern: str | None, value: Any) -> bool:
    return pattern in (None, "", "*") or (isinstance(value, str) and fnmatch.fnmatchcase(value, pattern))


__all__ = ["AutomationEngine", "approval_view", "kind_name", "match_glob", "run_view", "step_job_id"]
