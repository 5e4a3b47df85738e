"""The alert engine (``hub.alerts``): judges rules on every stored report and on a timer, and persists instances with their events.

The judging itself is alert_eval's pure functions; this module feeds them
(the latest metrics and state the hub already holds in memory, recent points
for windowed reducers, the rule kinds integrations declared), and writes each
instance change together with its ``alert_events`` row in one transaction,
so a reader of the event log (notifications, automations) never sees an
event without its instance or the other way round. Live events
(``alert.pending``, ``alert.firing``, ``alert.resolved``, ``alert.acknowledged``)
go on the hub bus only after the write.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from croniter import croniter

from roost.core.const import NODE_OFFLINE, STATE_LOADED
from roost.core.hub_integration import AlertFinding

from . import alert_eval as ev
from .alert_rules import (
    CORE_KINDS,
    KIND_INTEGRATION,
    KIND_METRIC,
    KIND_OFFLINE,
    MAX_RULES,
    MAX_SILENCES,
    MAX_WINDOWS,
    TIMED_KINDS,
    RuleError,
    default_rules,
    new_id,
    validate_rule,
    validate_silence,
    validate_window,
)

if TYPE_CHECKING:
    from .state import Hub

_LOGGER = logging.getLogger(__name__)

TICK_SECONDS = 1.0
# Points kept per series for windowed reducers (a 1 s interval over a 10 minute window fits).
MAX_POINTS = 720
DEFAULT_RETENTION = 90 * 86400.0
INTEGRATION_OK = (STATE_LOADED, "disabled", "not_available")
RAISED_KIND = "raised"
_NOTHING = object()  # no series of the pattern on the node


def _finding_conditions(rule: Mapping[str, Any], node_id: str, found: Any) -> list[ev.Condition]:
    """An integration handler's answer (None, a sentence, an AlertFinding or an iterable of them) as conditions."""
    if found is None:
        return []
    if isinstance(found, str):
        found = [AlertFinding(found)]
    elif isinstance(found, AlertFinding):
        found = [found]
    out = []
    for item in found:
        if isinstance(item, str):
            item = AlertFinding(item)
        if not isinstance(item, AlertFinding):
            raise TypeError(f"rule kind {rule['kind']} returned {type(item).__name__}, not an AlertFinding")
        severity = item.severity if item.severity in ev.SEVERITIES else rule["severity"]
        labels = {str(k)[:63]: str(v)[:200] for k, v in dict(item.labels).items()}
        value = float(item.value) if isinstance(item.value, (int, float)) else None
        out.append(ev.Condition(rule["id"], node_id, labels, severity, str(item.summary)[:500], value))
    return out


class AlertEngine:
    """Rules, live instances, silences and maintenance windows in memory; the store holds them across restarts."""

    def __init__(self, hub: Hub, *, clock: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self.clock = clock
        self.rules: dict[str, dict[str, Any]] = {}
        self.live: dict[str, dict[str, Any]] = {}
        self.silences: dict[str, dict[str, Any]] = {}
        self.windows: dict[str, dict[str, Any]] = {}
        self.rule_errors: dict[str, str] = {}
        self._labels: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
        self._raised: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, dict[str, int]] = {}
        # Recent values of windowed series, per (node, series, window), with their max and min kept as they come.
        self._points: dict[tuple[str, str, float], ev.RollingWindow] = {}
        # Per node: [the metrics mapping last seen, its series names, {pattern: ([(series, part)], [series])},
        # {(pattern, window): [(series, buffer)]}, {(pattern, window, cut-off): bounds until the next report}]. A new report
        # with the same series keeps the matches; other series match again.
        self._shapes: dict[str, list[Any]] = {}
        # Per metric rule: what judging it needs, read once from its settings (the rule dict itself first, to notice an edit).
        self._plans: dict[str, tuple[Any, ...]] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._opened = False
        # Time spent judging, for scripts/bench_alerts.py and the logs.
        self.evaluations = 0
        self.eval_seconds = 0.0

    # ------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Load from the store; make the defaults a first start needs (never again once a user deleted one)."""
        data = await self.hub.store.load_alerts()
        seeded: set[str] = data["seeded_defaults"]
        fresh = [rule for rule in default_rules() if rule["default_key"] not in seeded]
        if fresh:
            await self.hub.store.seed_alert_rules(fresh, seeded | {r["default_key"] for r in fresh}, self.clock())
            data["rules"].extend(fresh)
        self.rules = {r["id"]: r for r in data["rules"]}
        self.live = {i["fingerprint"]: i for i in data["instances"]}
        self.silences = {s["id"]: s for s in data["silences"]}
        self.windows = {w["id"]: w for w in data["windows"]}
        self._labels = {k: (dict(h), dict(a)) for k, (h, a) in data["labels"].items()}
        for inst in self.live.values():
            if inst.get("kind") == RAISED_KIND:
                self._raised[inst["rule_id"]] = self._raised_rule(inst.get("source", ""), inst["rule_name"], inst.get("cause"))
        self._recount(set(self._counts) | {i["node_id"] for i in self.live.values()})
        self._opened = True
        pending = sum(1 for i in self.live.values() if i["state"] == ev.PENDING)
        if self.live:
            _LOGGER.info("alerts: %d live instances (%d pending, their timers carry on)", len(self.live), pending)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._worker(), name="roost-alerts"),
            asyncio.create_task(self._ticker(), name="roost-alerts-timer"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # ----------------------------------------------------------- what it reads

    def kinds(self) -> dict[str, Any]:
        """Every rule kind known now: the core's (schema None) and those integrations declared (their settings schema)."""
        out: dict[str, Any] = {name: None for name in CORE_KINDS}
        for name, (_, decl) in self.hub.plugins.registry.alert_rule_kinds.items():
            out[name] = decl.schema
        return out

    def kind_list(self) -> list[dict[str, Any]]:
        out = [{"name": name, "description": text, "domain": "core"} for name, text in CORE_KINDS.items()]
        for name, (domain, decl) in sorted(self.hub.plugins.registry.alert_rule_kinds.items()):
            out.append({"name": name, "description": decl.description, "domain": domain})
        return out

    def node_labels(self, node_id: str) -> dict[str, str]:
        """A node's labels: its agent's config overlaid by what was set in the dashboard or API."""
        hub_set, agent = self._labels.get(node_id, ({}, {}))
        return {**agent, **hub_set}

    def label_sources(self, node_id: str) -> dict[str, dict[str, str]]:
        hub_set, agent = self._labels.get(node_id, ({}, {}))
        return {"labels": self.node_labels(node_id), "set": dict(hub_set), "agent": dict(agent)}

    def counts(self, node_id: str) -> dict[str, int]:
        """Firing alerts of a node (from memory, no I/O)."""
        return dict(self._counts.get(node_id) or {"firing": 0, "critical": 0, "warning": 0})

    def total_firing(self) -> int:
        return sum(c["firing"] for c in self._counts.values())

    async def firing(self, node_id: str | None = None) -> list[dict[str, Any]]:
        return [self.view(i) for i in self._sorted_live() if i["state"] == ev.FIRING and (node_id is None or i["node_id"] == node_id)]

    async def live_instances(self, node_id: str | None = None) -> list[dict[str, Any]]:
        return [self.view(i) for i in self._sorted_live() if node_id is None or i["node_id"] == node_id]

    def _sorted_live(self) -> list[dict[str, Any]]:
        return sorted(self.live.values(), key=lambda i: (i["state"] != ev.FIRING, -ev.SEVERITY_RANK.get(i["severity"], 0), -(i["fired_at"] or i["started_at"])))

    def view(self, inst: Mapping[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(dict(inst))
        out["alert_labels"] = self.alert_labels(inst)
        now = self.clock()
        out["snoozed"] = bool(inst.get("snoozed_until") and inst["snoozed_until"] > now)
        return out

    async def events_after(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        return await self.hub.store.alert_events_after(seq, max(1, min(int(limit), 5000)))

    async def history(self, **filters: Any) -> list[dict[str, Any]]:
        rows = await self.hub.store.alert_history(**filters)
        live = {i["id"]: i for i in self.live.values()}
        return [self.view(live.get(r["id"], r)) for r in rows]

    def alert_labels(self, inst: Mapping[str, Any]) -> dict[str, str]:
        """The labels silences, windows and receivers match on: node labels, the finding's, then the alert's own."""
        node = self.hub.node(inst["node_id"])
        return {
            **self.node_labels(inst["node_id"]),
            **inst.get("labels", {}),
            "alertname": inst["rule_name"],
            "rule_id": inst["rule_id"],
            "kind": inst.get("kind", ""),
            "node": inst["node_id"],
            "node_name": node.name if node is not None else inst.get("node_name", inst["node_id"]),
            "severity": inst["severity"],
        }

    def silenced(self, labels: Mapping[str, str], at: float) -> bool:
        return self.silence_for(labels, at) is not None

    def silence_for(self, labels: Mapping[str, str], at: float) -> dict[str, Any] | None:
        for silence in self.silences.values():
            if silence["starts_at"] <= at < silence["ends_at"] and ev.matchers_match(silence["matchers"], labels):
                return silence
        return None

    def timezone(self) -> Any:
        name = getattr(self.hub.config, "timezone", "") or ""
        if name:
            try:
                return ZoneInfo(name)
            except Exception:
                _LOGGER.warning("alerts: unknown time zone %r; maintenance windows use the system's", name)
        return datetime.now().astimezone().tzinfo

    def window_active(self, window: Mapping[str, Any], at: float) -> tuple[float, float] | None:
        """(start, end) of the window's occurrence covering ``at``, in the hub's time zone, or None."""
        if not window.get("enabled", True):
            return None
        when = datetime.fromtimestamp(at, self.timezone())
        start = croniter(window["cron"], when + timedelta(seconds=1)).get_prev(datetime).timestamp()
        end = start + float(window["duration"])
        return (start, end) if start <= at < end else None

    def in_maintenance(self, labels: Mapping[str, str], at: float) -> bool:
        return any(self.window_active(w, at) is not None and ev.matchers_match(w.get("matchers") or [], labels) for w in self.windows.values())

    def next_window(self, window: Mapping[str, Any], at: float) -> float:
        return croniter(window["cron"], datetime.fromtimestamp(at, self.timezone())).get_next(datetime).timestamp()

    # --------------------------------------------------------------- inputs

    def observe(self, node_id: str) -> None:
        """A report of this node was stored (one of hub.report_observers): judge it soon."""
        self._dirty.add(node_id)
        self._wake.set()

    async def _worker(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            try:
                await self.evaluate_nodes(dirty)
            except Exception:
                _LOGGER.exception("alerts: evaluating %d nodes failed", len(dirty))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.on_tick()
            except Exception:
                _LOGGER.exception("alerts: timer evaluation failed")

    # ------------------------------------------------------------- evaluate

    async def evaluate_nodes(self, node_ids: Iterable[str], *, timed_only: bool = False) -> None:
        """Judge every enabled rule that selects these nodes (only the clock-driven kinds when ``timed_only``)."""
        started = time.perf_counter()
        now = self.clock()
        if timed_only:
            rules = [r for r in self.rules.values() if r.get("enabled", True) and (r["kind"] in TIMED_KINDS or self._timed_kind(r["kind"]))]
        else:
            # A report cannot change what only the clock and the hub itself decide (ping checks): the timer judges those.
            rules = [r for r in self.rules.values() if r.get("enabled", True) and not self._clock_only(r["kind"])]
        conditions: list[ev.Condition] = []
        scopes: list[tuple[str, str]] = []
        held = self._held()
        node_ids = list(node_ids)
        # Metric rules rule by rule over the nodes (most values are nowhere near a threshold: one comparison each);
        # the other kinds node by node.
        others = [r for r in rules if r["kind"] != KIND_METRIC]
        for rule in rules:
            if rule["kind"] == KIND_METRIC:
                self._judge_metric(rule, node_ids, now, held, conditions, scopes)
        if others:
            for node_id in node_ids:
                found, judged = await self._judge_node(node_id, others, now, record=True, held=held)
                conditions.extend(found)
                scopes.extend(judged)
        self.evaluations += 1
        if conditions or scopes:
            async with self._lock:
                outcome = ev.evaluate(self.live, conditions, scopes, self._all_rules(), now, node_names=self._names(), new_id=lambda: new_id("a"))
                await self._commit(outcome, now)
        self.eval_seconds += time.perf_counter() - started

    async def on_tick(self) -> None:
        """The clock's part: node-offline rules for every node, then ``for`` and ``clear_for`` timers, silence and snooze ends."""
        now = self.clock()
        await self.evaluate_nodes(list(self.hub._nodes), timed_only=True)
        async with self._lock:
            outcome = ev.tick(self.live, self._all_rules(), now)
            await self._commit(outcome, now)
            await self._reannounce(now)

    def _judge_metric(
        self,
        rule: dict[str, Any],
        node_ids: list[str],
        now: float,
        held: Mapping[tuple[str, str], Mapping[str | None, Any]],
        conditions: list[ev.Condition],
        scopes: list[tuple[str, str]],
    ) -> None:
        """One metric rule over many nodes. A node whose values cannot reach the rule's least threshold and that holds
        no live instance of it costs one dictionary lookup and one comparison; the rest go through _series_points."""
        rid = rule["id"]
        settings = rule["settings"]
        pattern = settings["series"]
        limit = ev.trigger(settings)
        rising = settings.get("op", ">=") in (">=", ">")
        window = float(settings.get("window", 0) or 0)
        reducer = settings.get("reducer", "last")
        simple = not window or reducer == "last"
        selector = rule.get("selector")
        selective = bool(selector and (selector.get("nodes") or selector.get("name") or selector.get("labels")))
        exact = not pattern.endswith("]")
        holding = {nid for (r, nid) in held if r == rid} if held else set()
        nodes = self.hub._nodes
        all_metrics = self.hub._metrics
        metrics_at = self.hub._metrics_at
        shapes = self._shapes
        cutoff = now - window
        # A window's bounds hold for one cut-off: judged again later (a rule changed), points may have left it.
        wkey = (pattern, 0.0, 0.0) if simple else (pattern, window, cutoff)
        for node_id in node_ids:
            metrics = all_metrics.get(node_id)
            if not metrics:
                continue
            live_here = node_id in holding
            if limit is not None and not live_here:
                if simple and exact:
                    value = metrics.get(pattern)
                    if value is None or (value < limit if rising else value > limit):
                        continue
                else:
                    shape = shapes.get(node_id)
                    if shape is None or shape[0] is not metrics:
                        shape = self._shape(node_id, metrics)
                    # Bounds over the series a pattern covers, worked out once per report and shared by every rule of
                    # that pattern (and window): each value joins its window's buffer there.
                    bounds = shape[4].get(wkey)
                    if bounds is None:
                        bounds = self._bounds(node_id, shape, metrics, pattern, wkey[1], metrics_at.get(node_id, now), cutoff)
                    if bounds is _NOTHING:
                        continue
                    if simple:
                        if bounds[0] < limit if rising else bounds[1] > limit:
                            continue
                    # Windowed: an avg lies between its window's min and max; a node is judged further only when
                    # some window's bound reaches the threshold.
                    elif rising:
                        if (bounds[3] if reducer == "min" else bounds[0]) < limit:
                            continue
                    elif (bounds[2] if reducer == "max" else bounds[1]) > limit:
                        continue
            node = nodes.get(node_id)
            if node is None or node.revoked:
                continue
            if selective and not ev.selects(selector, node_id, node.name, self.node_labels(node_id)):
                continue
            current = held.get((rid, node_id)) if live_here else None
            try:
                series = self._series_points(rule, node_id, metrics, metrics_at.get(node_id, now), now, record=True, held=current or ())
                if series:
                    conditions.extend(ev.metric_conditions(rule, node_id, series, current, now))
            except Exception as err:
                if self.rule_errors.get(rid) is None:
                    _LOGGER.warning("alerts: rule %s failed on node %s: %s", rule["name"], node_id, err, exc_info=True)
                self.rule_errors[rid] = f"{type(err).__name__}: {err}"[:500]
                continue
            if live_here:
                scopes.append((rid, node_id))

    def _shape(self, node_id: str, metrics: Mapping[str, float]) -> list[Any]:
        """The node's series as matched so far, kept while a new report carries the same series names (compared in C)."""
        shape = self._shapes.get(node_id)
        if shape is not None and shape[1] == metrics.keys():
            shape[0] = metrics
            shape[4] = {}
            return shape
        shape = self._shapes[node_id] = [metrics, frozenset(metrics), {}, {}, {}]
        return shape

    @staticmethod
    def _match(shape: list[Any], pattern: str) -> tuple[list[tuple[str, str | None]], list[str]]:
        found = ev.match_series(pattern, shape[1])
        matched = shape[2][pattern] = (found, [name for name, _ in found])
        return matched

    def _buffers(self, node_id: str, shape: list[Any], pattern: str, window: float) -> list[tuple[str, ev.RollingWindow]]:
        """The window buffers of the series a pattern covers on this node (shared by every rule of the same series and window)."""
        names = (shape[2].get(pattern) or self._match(shape, pattern))[1] if pattern.endswith("]") else ([pattern] if pattern in shape[1] else [])
        points = self._points
        bufs = []
        for name in names:
            key = (node_id, name, window)
            buf = points.get(key)
            if buf is None:
                buf = points[key] = ev.RollingWindow(MAX_POINTS)
            bufs.append((name, buf))
        shape[3][(pattern, window)] = bufs
        return bufs

    def _bounds(
        self, node_id: str, shape: list[Any], metrics: Mapping[str, float], pattern: str, window: float, at: float, cutoff: float
    ) -> Any:
        """(max, min) of the values a pattern covers on this node now, or for a window (window > 0: each value joins its
        buffer first) (highest max, lowest min, lowest max, highest min) over its buffers; _NOTHING when none is there.
        Kept in shape[4] until the node's next report."""
        if not window:
            names = (shape[2].get(pattern) or self._match(shape, pattern))[1] if pattern.endswith("]") else ([pattern] if pattern in shape[1] else [])
            if names:
                values = list(map(metrics.__getitem__, names))
                bounds: Any = (max(values), min(values))
            else:
                bounds = _NOTHING
        else:
            bufs = shape[3].get((pattern, window))
            if bufs is None:
                bufs = self._buffers(node_id, shape, pattern, window)
            highs, lows = [], []
            for name, buf in bufs:
                buf.push(at, metrics[name], cutoff)
                if buf.stamps:
                    highs.append(buf.high())
                    lows.append(buf.low())
            bounds = (max(highs), min(lows), min(highs), max(lows)) if highs else _NOTHING
        shape[4][(pattern, window, cutoff if window else 0.0)] = bounds
        return bounds

    def _held(self) -> dict[tuple[str, str], dict[str | None, dict[str, Any]]]:
        """Live instances by (rule, node), then by their one label's value (a metric rule's [part]; None without labels)."""
        held: dict[tuple[str, str], dict[str | None, dict[str, Any]]] = {}
        for inst in self.live.values():
            labels = inst["labels"]
            part = next(iter(labels.values())) if len(labels) == 1 else None
            held.setdefault((inst["rule_id"], inst["node_id"]), {})[part] = inst
        return held

    async def _judge_node(
        self, node_id: str, rules: list[dict[str, Any]], now: float, *, record: bool, held: Mapping[tuple[str, str], Mapping[str | None, Any]] | None = None
    ) -> tuple[list[ev.Condition], list[tuple[str, str]]]:
        """What the rules find on one node, and the (rule, node) scopes judged that hold live instances
        (only those matter: an instance of a judged scope that no condition names is no longer wrong)."""
        node = self.hub.node(node_id)
        if node is None or node.revoked:
            return [], []
        labels: dict[str, str] | None = None
        metrics = self.hub._metrics.get(node_id, {})
        metrics_at = self.hub._metrics_at.get(node_id, now)
        registry = self.hub.plugins.registry.alert_rule_kinds if hasattr(self.hub, "plugins") else {}
        domains: set[Any] | None = None
        detail: dict[str, Any] | None = None
        conditions: list[ev.Condition] = []
        scopes: list[tuple[str, str]] = []
        for rule in rules:
            selector = rule.get("selector")
            if selector and (selector.get("nodes") or selector.get("name") or selector.get("labels")):
                if labels is None:
                    labels = self.node_labels(node_id)
                if not ev.selects(selector, node_id, node.name, labels):
                    continue
            kind = rule["kind"]
            try:
                if kind == KIND_METRIC:
                    current = None if held is None else held.get((rule["id"], node_id))
                    series = self._series_points(rule, node_id, metrics, metrics_at, now, record=record, held=current or ())
                    if series:
                        conditions.extend(ev.metric_conditions(rule, node_id, series, current, now))
                elif kind == KIND_OFFLINE:
                    if self.hub.node_status(node_id, now) == NODE_OFFLINE:
                        seen = self.hub._last_seen.get(node_id)
                        ago = f" for {now - seen:.0f} s" if seen else ""
                        conditions.append(ev.Condition(rule["id"], node_id, {}, rule["severity"], f"{node.name} has not reported{ago}"))
                elif kind == KIND_INTEGRATION:
                    for item in node.integrations:
                        if isinstance(item, dict) and item.get("state") not in INTEGRATION_OK and isinstance(item.get("domain"), str):
                            why = str(item.get("reason") or item.get("state"))[:300]
                            conditions.append(ev.Condition(rule["id"], node_id, {"integration": item["domain"][:63]}, rule["severity"], f"{item['domain']} is {item.get('state')}: {why}"))
                elif kind in registry:
                    domain, decl = registry[kind]
                    if domains is None:
                        domains = {i.get("domain") for i in node.integrations if isinstance(i, dict)}
                    if domain not in domains and not self._hub_only(domain):
                        continue
                    if detail is None:
                        detail = await self._node_mapping(node_id)
                    found = decl.handler(copy.deepcopy(rule.get("settings") or {}), detail)
                    if inspect.isawaitable(found):
                        # The same 10 s bound as wait_for, without a task per node and rule.
                        async with asyncio.timeout(10.0):
                            found = await found
                    conditions.extend(_finding_conditions(rule, node_id, found))
                else:
                    continue  # a kind whose integration is not loaded: its instances stay as they are
            except Exception as err:
                if self.rule_errors.get(rule["id"]) is None:
                    _LOGGER.warning("alerts: rule %s (%s) failed on node %s: %s", rule["name"], kind, node_id, err, exc_info=True)
                self.rule_errors[rule["id"]] = f"{type(err).__name__}: {err}"[:500]
                continue
            if self.rule_errors:
                self.rule_errors.pop(rule["id"], None)
            if held is None or (rule["id"], node_id) in held:
                scopes.append((rule["id"], node_id))
        return conditions, scopes

    def _timed_kind(self, kind: str) -> bool:
        """An integration's kind that the clock alone can change (AlertRuleKind.timed): judged on the timer too."""
        found = self.hub.plugins.registry.alert_rule_kinds.get(kind) if hasattr(self.hub, "plugins") else None
        return found is not None and bool(getattr(found[1], "timed", False))

    def _clock_only(self, kind: str) -> bool:
        """A timed kind of a hub-only integration: nothing in a node's report bears on it."""
        found = self.hub.plugins.registry.alert_rule_kinds.get(kind) if hasattr(self.hub, "plugins") else None
        return found is not None and bool(getattr(found[1], "timed", False)) and self._hub_only(found[0])

    def _hub_only(self, domain: str) -> bool:
        """A hub-only integration (ping checks) is in no node's report: its kinds judge every node a rule selects."""
        integ = self.hub.manager.integrations.get(domain) if getattr(self.hub, "manager", None) is not None else None
        return integ is not None and "agent" not in integ.manifest.roles

    async def _node_mapping(self, node_id: str) -> dict[str, Any]:
        """The node as rule kinds see it (NodeReader.get's shape): the report just stored, from memory when the hub has it."""
        latest = getattr(self.hub, "_latest_data", {}).get(node_id)
        if latest is None:
            detail = await self.hub.node_detail(node_id)
            return detail or {"node": {}, "state": {}, "collected_at": None, "metrics": {}}
        return {
            "node": self.hub.summary(node_id),
            "state": latest,
            "collected_at": self.hub._metrics_at.get(node_id),
            "metrics": self.hub._metrics.get(node_id, {}),
        }

    def _series_points(
        self, rule: Mapping[str, Any], node_id: str, metrics: Mapping[str, float], at: float, now: float, *, record: bool, held: Any = ()
    ) -> list[tuple[str, str | None, Any]]:
        """(series, label part, recent points) of what a metric rule covers on this node.

        Only series whose value could start an alert, or that hold a live
        instance (``held``: label parts), are returned: this is what keeps
        judging a thousand nodes cheap next to storing their reports.
        """
        plan = self._plans.get(rule["id"])
        if plan is None or plan[0] is not rule:
            settings = rule["settings"]
            plan = self._plans[rule["id"]] = (
                rule, settings["series"], settings["series"].endswith("]"), float(settings.get("window", 0) or 0),
                settings.get("reducer", "last"), ev.trigger(settings), settings.get("op", ">=") in (">=", ">"),
            )
        _, pattern, wild, window, reducer, limit, rising = plan
        if wild:
            shape = self._shapes.get(node_id)
            if shape is None or shape[0] is not metrics:
                shape = self._shape(node_id, metrics)
            pairs, names = shape[2].get(pattern) or self._match(shape, pattern)
        else:
            if pattern not in metrics:
                return []
            pairs, names = [(pattern, None)], [pattern]
        if not pairs:
            return []
        out: list[tuple[str, str | None, Any]] = []
        if not window or reducer == "last":
            get = metrics.get
            if limit is not None and not held:
                # Nothing live here: one pass in C over every value decides whether any could start an alert.
                if rising:
                    if max([get(n, -math.inf) for n in names]) < limit:
                        return out
                elif min([get(n, math.inf) for n in names]) > limit:
                    return out
            for name, part in pairs:
                value = get(name)
                if value is None:
                    continue
                if limit is not None and (value < limit if rising else value > limit) and part not in held:
                    continue
                out.append((name, part, value))
            return out
        points = self._points
        for name, part in pairs:
            value = metrics.get(name)
            if value is None:
                continue
            key = (node_id, name, window)
            buf = points.get(key)
            if buf is None:
                buf = points[key] = ev.RollingWindow(MAX_POINTS)
            if record:
                buf.add(at, value)
            buf.expire(now - window)
            reduced = buf.reduced(reducer)
            if reduced is None:
                continue
            if limit is not None and part not in held and ((reduced < limit) if rising else (reduced > limit)):
                continue
            out.append((name, part, reduced))
        return out

    def _names(self) -> dict[str, str]:
        return {nid: n.name for nid, n in self.hub._nodes.items()}

    def _all_rules(self) -> dict[str, dict[str, Any]]:
        return {**self.rules, **self._raised} if self._raised else self.rules

    # ----------------------------------------------------------------- commit

    def _inhibited(self, inst: Mapping[str, Any], now: float, offline: set[str] | None = None) -> bool:
        """An offline node does not also page for its disks and containers."""
        if inst.get("kind") == KIND_OFFLINE:
            return False
        node_id = inst["node_id"]
        if self.hub.node(node_id) is not None and self.hub.node_status(node_id, now) == NODE_OFFLINE:
            return True
        if offline is None:
            offline = self._offline_firing()
        return node_id in offline

    def _offline_firing(self) -> set[str]:
        return {i["node_id"] for i in self.live.values() if i.get("kind") == KIND_OFFLINE and i["state"] == ev.FIRING}

    def _event(self, inst: Mapping[str, Any], status: str, now: float) -> dict[str, Any]:
        url = (self.hub.config.url().rstrip("/") if hasattr(self.hub.config, "url") else "") + f"/alerts?instance={inst['id']}"
        return {
            "instance_id": inst["id"],
            "fingerprint": inst["fingerprint"],
            "status": status,
            "severity": inst["severity"],
            "rule_id": inst["rule_id"],
            "rule_name": inst["rule_name"],
            "node_id": inst["node_id"],
            "labels": self.alert_labels(inst),
            "annotations": {"summary": inst["summary"], "value": inst.get("value"), "url": url},
            "starts_at": inst["fired_at"] or inst["started_at"],
            "ends_at": inst["resolved_at"] if status == ev.RESOLVED else None,
            "silenced": bool(inst.get("silenced")) if status == ev.FIRING else False,
            "inhibited": bool(inst.get("inhibited")),
            "created_at": now,
        }

    async def _commit(self, outcome: ev.Outcome, now: float) -> None:
        """Persist the transitions with their events in one transaction; only then take the new state and tell subscribers."""
        upserts: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        dropped: list[str] = []
        published: list[tuple[str, dict[str, Any]]] = []
        offline: set[str] | None = None
        for tr in outcome.transitions:
            inst = tr.instance
            if tr.kind == ev.T_FIRING:
                labels = self.alert_labels(inst)
                inst["silenced"] = self.silenced(labels, now) or self.in_maintenance(labels, now)
                if offline is None:
                    offline = self._offline_firing() | {i["node_id"] for t in outcome.transitions if t.kind == ev.T_FIRING and (i := t.instance).get("kind") == KIND_OFFLINE}
                inst["inhibited"] = self._inhibited(inst, now, offline)
                events.append(self._event(inst, ev.FIRING, now))
                upserts.append(inst)
                published.append(("alert.firing", inst))
            elif tr.kind == ev.T_RESOLVED:
                # One resolve per firing event; none for a firing that was silenced when it fired.
                if not inst.get("silenced"):
                    events.append(self._event(inst, ev.RESOLVED, now))
                upserts.append(inst)
                published.append(("alert.resolved", inst))
            elif tr.kind == ev.T_PENDING:
                upserts.append(inst)
                published.append(("alert.pending", inst))
            elif tr.kind == ev.T_DROPPED:
                dropped.append(inst["id"])
            elif tr.kind == ev.T_UPDATED:
                old = self.live.get(inst["fingerprint"])
                if old is None or (old.get("active"), old.get("clear_since"), old["severity"]) != (inst.get("active"), inst.get("clear_since"), inst["severity"]):
                    upserts.append(inst)
        if upserts or events or dropped:
            await self.hub.store.apply_alert_changes(upserts, events, dropped)
        self.live = outcome.state
        touched = {tr.instance["node_id"] for tr in outcome.transitions if tr.kind != ev.T_UPDATED} | {
            tr.instance["node_id"] for tr in outcome.transitions if tr.kind == ev.T_UPDATED and tr.instance["state"] == ev.FIRING
        }
        self._recount(touched)
        if self.hub.events.has_subscribers:
            for kind, inst in published:
                self.hub.publish(kind, self.view(inst))

    async def _reannounce(self, now: float) -> None:
        """A firing alert whose silence or window ended while it still fires is announced now (so its resolve follows);
        an ended snooze is cleared."""
        upserts, events = [], []
        for inst in self.live.values():
            changed = False
            if inst["state"] == ev.FIRING and inst.get("silenced"):
                labels = self.alert_labels(inst)
                if not (self.silenced(labels, now) or self.in_maintenance(labels, now)):
                    inst["silenced"] = False
                    inst["inhibited"] = self._inhibited(inst, now)
                    events.append(self._event(inst, ev.FIRING, now))
                    changed = True
            if inst.get("snoozed_until") and inst["snoozed_until"] <= now:
                inst["snoozed_until"] = None
                changed = True
            if changed:
                upserts.append(inst)
        if upserts:
            await self.hub.store.apply_alert_changes(upserts, events)
            for inst in upserts:
                self.hub.publish("alert.firing", self.view(inst))

    def _recount(self, node_ids: Iterable[str]) -> None:
        wanted = set(node_ids)
        if not wanted:
            return
        fresh = {node_id: {"firing": 0, "critical": 0, "warning": 0} for node_id in wanted}
        for i in self.live.values():
            counts = fresh.get(i["node_id"])
            if counts is not None and i["state"] == ev.FIRING:
                counts["firing"] += 1
                if i["severity"] in counts:
                    counts[i["severity"]] += 1
        changed = []
        for node_id, counts in fresh.items():
            if self._counts.get(node_id) != counts:
                self._counts[node_id] = counts
                changed.append(node_id)
        if self._opened:
            for node_id in changed:
                self.hub._publish_node(node_id, force=True)

    # ---------------------------------------------------------- raised alerts

    @staticmethod
    def _raised_rule(source: str, name: str, cause: dict[str, Any] | None) -> dict[str, Any]:
        return {"id": f"raised:{source}:{name}", "name": name, "kind": RAISED_KIND, "severity": ev.WARNING, "for": 0, "clear_for": 0, "source": source, "cause": cause}

    async def raise_alert(
        self,
        *,
        source: str,
        node_id: str,
        name: str,
        summary: str,
        severity: str,
        labels: Mapping[str, str] = {},
        cause: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Fire an alert no rule judges (an automation's step): the same lifecycle and events as a rule's."""
        if severity not in ev.SEVERITIES:
            raise RuleError(f"severity must be warning or critical, got {severity!r}")
        rule = self._raised_rule(source, name, cause)
        self._raised[rule["id"]] = rule
        now = self.clock()
        cond = ev.Condition(rule["id"], node_id, {str(k): str(v) for k, v in labels.items()}, severity, summary[:500])
        async with self._lock:
            outcome = ev.evaluate(self.live, [cond], [], self._all_rules(), now, node_names=self._names(), new_id=lambda: new_id("a"))
            await self._commit(outcome, now)
        return self.view(self.live[cond.fingerprint])

    async def resolve_alert(self, source: str, node_id: str, name: str, labels: Mapping[str, str] = {}) -> bool:
        rule = self._raised.get(f"raised:{source}:{name}") or self._raised_rule(source, name, None)
        self._raised[rule["id"]] = rule
        fp = ev.fingerprint(rule["id"], node_id, {str(k): str(v) for k, v in labels.items()})
        if fp not in self.live:
            return False
        now = self.clock()
        async with self._lock:
            if fp not in self.live:
                return False
            # Judge this one instance only: the same alert raised with other labels on the node stays as it is.
            one = ev.evaluate({fp: self.live[fp]}, [], [(rule["id"], node_id)], self._all_rules(), now)
            state = {k: v for k, v in self.live.items() if k != fp}
            if fp in one.state:
                state[fp] = one.state[fp]
            await self._commit(ev.Outcome(state, one.transitions), now)
        return True

    # -------------------------------------------------------------- changes

    def find(self, instance_id: str) -> dict[str, Any] | None:
        return next((i for i in self.live.values() if i["id"] == instance_id), None)

    async def acknowledge(self, instance_id: str, *, actor: str, note: str) -> dict[str, Any] | None:
        async with self._lock:
            inst = self.find(instance_id)
            if inst is None:
                return None
            inst["acknowledged"] = {"by": actor, "note": note, "at": self.clock()}
            await self.hub.store.apply_alert_changes([inst], [])
        self.hub.publish("alert.acknowledged", self.view(inst))
        return self.view(inst)

    async def snooze(self, instance_id: str, *, actor: str, until: float | None) -> dict[str, Any] | None:
        async with self._lock:
            inst = self.find(instance_id)
            if inst is None:
                return None
            inst["snoozed_until"] = until
            inst["snoozed_by"] = actor if until else None
            await self.hub.store.apply_alert_changes([inst], [])
        self.hub.publish("alert.acknowledged", self.view(inst))
        return self.view(inst)

    async def save_rule(self, body: Any, *, actor: str, rule_id: str | None = None) -> dict[str, Any]:
        """Create (rule_id None) or replace a rule; raises RuleError naming the bad field."""
        rule = validate_rule(body, self.kinds())
        now = self.clock()
        if rule_id is None:
            if len(self.rules) >= MAX_RULES:
                raise RuleError(f"there are already {MAX_RULES} rules; delete some first")
            rule.update(id=new_id("r"), created_by=actor, created_at=now)
        else:
            old = self.rules.get(rule_id)
            if old is None:
                raise KeyError(rule_id)
            rule.update(id=rule_id, created_by=old.get("created_by", actor), created_at=old.get("created_at", now), default_key=old.get("default_key"))
        rule["updated_at"] = now
        rule["updated_by"] = actor
        await self.hub.store.save_alert_rule(rule, now)
        self.rules[rule["id"]] = rule
        self._plans.pop(rule["id"], None)
        if not rule["enabled"]:
            await self._end_rule(rule["id"], "the rule was disabled")
        else:
            self.observe_all()
        return copy.deepcopy(rule)

    async def delete_rule(self, rule_id: str) -> bool:
        if rule_id not in self.rules:
            return False
        await self.hub.store.delete_alert_rule(rule_id)
        await self._end_rule(rule_id, "the rule was deleted")
        self.rules.pop(rule_id, None)
        return True

    async def _end_rule(self, rule_id: str, why: str) -> None:
        """A rule disabled or deleted resolves what it had firing (and drops what was pending)."""
        async with self._lock:
            now = self.clock()
            ended = {**self._all_rules()[rule_id], "clear_for": 0}
            rules = {**self._all_rules(), rule_id: ended}
            scopes = {(i["rule_id"], i["node_id"]) for i in self.live.values() if i["rule_id"] == rule_id}
            outcome = ev.evaluate(self.live, [], scopes, rules, now)
            for tr in outcome.transitions:
                if tr.kind == ev.T_RESOLVED:
                    tr.instance["summary"] = f"{tr.instance['summary']} ({why})"
            await self._commit(outcome, now)

    def observe_all(self) -> None:
        for node_id in self.hub._nodes:
            self._dirty.add(node_id)
        self._wake.set()

    async def preview(self, body: Any) -> dict[str, Any]:
        """What a rule would match right now, without keeping anything."""
        rule = validate_rule(body, self.kinds())
        rule["id"] = "preview"
        now = self.clock()
        matches = []
        nodes = 0
        for node_id in list(self.hub._nodes):
            node = self.hub.node(node_id)
            if node is None or node.revoked or not ev.selects(rule.get("selector") or {}, node_id, node.name, self.node_labels(node_id)):
                continue
            nodes += 1
            conditions, _ = await self._judge_node(node_id, [rule], now, record=False)
            for cond in conditions:
                matches.append({"node_id": node_id, "node_name": node.name, "labels": dict(cond.labels), "severity": cond.severity, "summary": cond.summary, "value": cond.value})
        return {"nodes_selected": nodes, "matches": matches, "error": self.rule_errors.pop("preview", None)}

    async def add_silence(self, body: Any, *, actor: str) -> dict[str, Any]:
        now = self.clock()
        silence = validate_silence(body, now)
        live = [s for s in self.silences.values() if s["ends_at"] > now]
        if len(live) >= MAX_SILENCES:
            raise RuleError(f"there are already {MAX_SILENCES} silences in force; expire some first")
        silence.update(id=new_id("s"), created_by=actor, created_at=now)
        await self.hub.store.save_alert_silence(silence)
        self.silences[silence["id"]] = silence
        return copy.deepcopy(silence)

    async def expire_silence(self, silence_id: str, *, actor: str) -> dict[str, Any] | None:
        silence = self.silences.get(silence_id)
        if silence is None:
            return None
        now = self.clock()
        silence = {**silence, "ends_at": min(silence["ends_at"], now), "expired_by": actor}
        await self.hub.store.save_alert_silence(silence)
        self.silences[silence_id] = silence
        return copy.deepcopy(silence)

    async def save_window(self, body: Any, *, actor: str, window_id: str | None = None) -> dict[str, Any]:
        window = validate_window(body)
        now = self.clock()
        if window_id is None:
            if len(self.windows) >= MAX_WINDOWS:
                raise RuleError(f"there are already {MAX_WINDOWS} maintenance windows; delete some first")
            window.update(id=new_id("w"), created_by=actor, created_at=now)
        else:
            old = self.windows.get(window_id)
            if old is None:
                raise KeyError(window_id)
            window.update(id=window_id, created_by=old.get("created_by", actor), created_at=old.get("created_at", now))
        window["updated_at"] = now
        await self.hub.store.save_alert_window(window)
        self.windows[window["id"]] = window
        return copy.deepcopy(window)

    async def delete_window(self, window_id: str) -> bool:
        if window_id not in self.windows:
            return False
        await self.hub.store.delete_alert_window(window_id)
        del self.windows[window_id]
        return True

    async def set_labels(self, node_id: str, labels: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """The labels set in the dashboard or API (they win over the agent's); the whole set is replaced."""
        await self.hub.store.set_node_labels(node_id, now=self.clock(), labels=labels)
        _, agent = self._labels.get(node_id, ({}, {}))
        self._labels[node_id] = (dict(labels), agent)
        self.observe(node_id)
        return self.label_sources(node_id)

    async def set_agent_labels(self, node_id: str, labels: Mapping[str, str]) -> None:
        """What the agent's config says (from its hello); written only when it changed."""
        hub_set, agent = self._labels.get(node_id, ({}, {}))
        if dict(labels) == agent:
            return
        await self.hub.store.set_node_labels(node_id, now=self.clock(), agent_labels=labels)
        self._labels[node_id] = (hub_set, dict(labels))

    async def prune(self, now: float) -> int:
        retention = float(getattr(self.hub.config, "alerts_retention", DEFAULT_RETENTION) or DEFAULT_RETENTION)
        removed = await self.hub.store.prune_alerts(now - retention)
        for sid in [s for s, v in self.silences.items() if v["ends_at"] < now - retention]:
            del self.silences[sid]
        return removed


__all__ = ["AlertEngine"]
