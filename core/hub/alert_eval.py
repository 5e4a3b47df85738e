"""How alerts are judged, as pure functions of (state, new samples, rules, clock): no I/O, no hub, no wall clock of their own.

The engine (alerts.py) feeds them and persists what they return. An instance
is a plain dict (the API's shape); a function that changes one returns a new
dict and never edits the one it was given, so the engine can compare before
and after and the contract tests can replay a lifecycle step by step.

Lifecycle of one identity (rule, node, finding labels):

- condition true, no instance: ``pending`` (or ``firing`` at once when the
  rule's ``for`` is 0);
- pending and still true for ``for`` seconds: ``firing``;
- pending and false: the instance is dropped (nothing fired, nothing to resolve);
- firing and false for ``clear_for`` seconds: ``resolved``; true again before
  that: the clear timer starts over;
- resolved is final: the same identity firing later is a new instance.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Any

PENDING = "pending"
FIRING = "firing"
RESOLVED = "resolved"
WARNING = "warning"
CRITICAL = "critical"
SEVERITIES = (WARNING, CRITICAL)
SEVERITY_RANK = {WARNING: 1, CRITICAL: 2}
REDUCERS = ("last", "avg", "max", "min")
OPS = (">=", ">", "<=", "<")
MATCHER_OPS = ("=", "!=", "~", "!~")

# Transitions evaluate() reports; pending/firing/resolved also become live events, "updated" only refreshes what is shown.
T_PENDING, T_FIRING, T_RESOLVED, T_DROPPED, T_UPDATED = "pending", "firing", "resolved", "dropped", "updated"


@dataclass(frozen=True)
class Condition:
    """What one rule sees wrong on one node right now, for one identity."""

    rule_id: str
    node_id: str
    labels: Mapping[str, str]
    severity: str
    summary: str
    value: float | None = None

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.rule_id, self.node_id, tuple(sorted((str(k), str(v)) for k, v in self.labels.items())))


@dataclass(frozen=True)
class Transition:
    kind: str
    instance: dict[str, Any]


@dataclass
class Outcome:
    """What evaluate() decided: the new live state and what changed on the way."""

    state: dict[str, dict[str, Any]]
    transitions: list[Transition] = field(default_factory=list)


def fingerprint(rule_id: str, node_id: str, labels: Mapping[str, str]) -> str:
    """The stable identity of (rule, node, labels): the same alert hashes the same after a restart."""
    return _fingerprint(rule_id, node_id, tuple(sorted((str(k), str(v)) for k, v in labels.items())))


@lru_cache(maxsize=65536)
def _fingerprint(rule_id: str, node_id: str, labels: tuple[tuple[str, str], ...]) -> str:
    text = json.dumps([rule_id, node_id, labels], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# ------------------------------------------------------------- thresholds


def compare(op: str, value: float, threshold: float) -> bool:
    if op == ">=":
        return value >= threshold
    if op == ">":
        return value > threshold
    if op == "<=":
        return value <= threshold
    return value < threshold


def threshold_severity(settings: Mapping[str, Any], value: float, previous: str | None) -> str | None:
    """The severity a value earns, with hysteresis: a level once reached holds until the value passes its clear threshold.

    ``settings`` has ``op`` (">=" by default) and ``warning``/``critical``
    thresholds (either may be absent), each with an optional
    ``warning_clear``/``critical_clear`` (the threshold itself when absent).
    ``previous`` is the severity the instance has now (None when not active).
    """
    op = settings.get("op", ">=")
    # A ">=" rule lets go once the value is at or below the clear threshold (a "<=" rule: at or above).
    clear_op = {">=": "<=", ">": "<=", "<=": ">=", "<": ">="}[op]
    for level in (CRITICAL, WARNING):
        threshold = settings.get(level)
        if threshold is None:
            continue
        if compare(op, value, threshold):
            return level
        held = previous is not None and SEVERITY_RANK[previous] >= SEVERITY_RANK[level]
        if held and not compare(clear_op, value, settings.get(f"{level}_clear", threshold)):
            return level
    return None


def reduce(reducer: str, points: Sequence[tuple[float, float]], window: float, now: float) -> float | None:
    """last/avg/max/min of the points within ``window`` seconds before ``now`` (the newest point alone when window is 0)."""
    if not points:
        return None
    if window <= 0 or reducer == "last":
        return points[-1][1]
    values = [v for ts, v in points if ts >= now - window]
    if not values:
        return None
    if reducer == "avg":
        return sum(values) / len(values)
    if reducer == "max":
        return max(values)
    return min(values)


class RollingWindow:
    """The recent points of one series for one window length, kept as reports arrive, with its max and min remembered.

    ``add`` takes a point newer than the newest (an older or equal time stamp
    is ignored, as a report seen twice must not count twice), ``expire`` drops
    the points older than a cut-off, and ``reduced`` gives what ``reduce``
    would over the same points. The max and min are kept as points arrive (one
    comparison each) and forgotten only when the point holding one leaves the
    window, to be found again in one pass in C when next asked for; an avg is
    summed over the points in order (the same float ``reduce`` computes, so a
    value on a threshold lands on the same side). At most ``limit`` points are
    kept; the oldest goes first.
    """

    __slots__ = ("limit", "stamps", "values", "_high", "_low")

    def __init__(self, limit: int = 720) -> None:
        self.limit = limit
        self.stamps: deque[float] = deque()
        self.values: deque[float] = deque()
        self._high: float | None = None  # None: not known (found again when asked for)
        self._low: float | None = None

    def __len__(self) -> int:
        return len(self.stamps)

    def add(self, ts: float, value: float) -> bool:
        stamps = self.stamps
        if stamps and ts <= stamps[-1]:
            return False
        if len(stamps) >= self.limit:
            stamps.popleft()
            self._forget(self.values.popleft())
        stamps.append(ts)
        self.values.append(value)
        if self._high is not None and value > self._high:
            self._high = value
        if self._low is not None and value < self._low:
            self._low = value
        return True

    def push(self, ts: float, value: float, cutoff: float) -> None:
        """``add`` then ``expire`` in one call (the engine's step on every report)."""
        stamps = self.stamps
        if not stamps or ts > stamps[-1]:
            if len(stamps) >= self.limit:
                self.add(ts, value)
            else:  # add() without the call, on the path every report takes
                stamps.append(ts)
                self.values.append(value)
                high, low = self._high, self._low
                if high is not None and value > high:
                    self._high = value
                if low is not None and value < low:
                    self._low = value
        if stamps[0] < cutoff:
            self.expire(cutoff)

    def _forget(self, value: float) -> None:
        if value == self._high:
            self._high = None
        if value == self._low:
            self._low = None

    def expire(self, cutoff: float) -> None:
        """Drop the points stamped before ``cutoff`` (``reduce`` keeps ts >= now - window)."""
        stamps = self.stamps
        values = self.values
        while stamps and stamps[0] < cutoff:
            stamps.popleft()
            value = values.popleft()
            if value == self._high:
                self._high = None
            if value == self._low:
                self._low = None

    def reduced(self, reducer: str) -> float | None:
        values = self.values
        if not values:
            return None
        if reducer == "max":
            return self.high()
        if reducer == "min":
            return self.low()
        if reducer == "avg":
            return sum(values) / len(values)
        return values[-1]

    def high(self) -> float:
        """The largest point kept (an avg never exceeds it); only when not empty."""
        if self._high is None:
            self._high = max(self.values)
        return self._high

    def low(self) -> float:
        if self._low is None:
            self._low = min(self.values)
        return self._low

    def points(self) -> list[tuple[float, float]]:
        return list(zip(self.stamps, self.values))


_BRACKET = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<label>.*)\]$")


def series_matcher(pattern: str) -> tuple[str, str | None]:
    """Split ``linux_host.disk_used_percent[*]`` into its base and label pattern (None: the series has no label part)."""
    m = _BRACKET.match(pattern)
    if m is None:
        return pattern, None
    return m.group("base"), m.group("label")


def match_series(pattern: str, names: Iterable[str]) -> list[tuple[str, str | None]]:
    """The series among ``names`` the pattern covers, each with its label part: ``[*]`` is a per-label wildcard (a glob)."""
    base, label = series_matcher(pattern)
    if label is None:
        return [(base, None)] if base in names else []
    found = []
    prefix = base + "["
    for name in names:
        if name.startswith(prefix) and name.endswith("]"):
            part = name[len(prefix) : -1]
            if label == part or fnmatch.fnmatchcase(part, label):
                found.append((name, part))
    found.sort()
    return found


def trigger(settings: Mapping[str, Any]) -> float | None:
    """The least extreme threshold of a rule: a value that does not reach it cannot start an alert."""
    levels = [settings[k] for k in (WARNING, CRITICAL) if settings.get(k) is not None]
    if not levels:
        return None
    return min(levels) if settings.get("op", ">=") in (">=", ">") else max(levels)


def metric_conditions(
    rule: Mapping[str, Any],
    node_id: str,
    series: Mapping[str, Sequence[tuple[float, float]]] | Iterable[tuple[str, str | None, Sequence[tuple[float, float]]]],
    current: Mapping[str, Mapping[str, Any]] | None,
    now: float,
) -> list[Condition]:
    """Conditions of one metric-threshold rule on one node.

    ``series`` gives each series the rule covers on this node with its recent
    points (oldest first): a mapping name -> points, or (name, label part,
    points) triples (points may be the value already reduced); ``current`` holds this rule's live instances on this node
    by label part (None for a series without one), for hysteresis; None says
    there are none (the common case).
    """
    settings = rule["settings"]
    label_name = settings.get("label", "instance")
    reducer, window = settings.get("reducer", "last"), float(settings.get("window", 0))
    if isinstance(series, Mapping):
        series = [(name, series_matcher(name)[1], points) for name, points in series.items()]
    out = []
    for name, part, points in series:
        # A number is a value already reduced (the engine reduces its own buffers).
        value = float(points) if isinstance(points, (int, float)) else reduce(reducer, points, window, now)
        if value is None:
            continue
        held = current.get(part) if current else None
        level = threshold_severity(settings, value, held["severity"] if held is not None and held.get("active") else None)
        if level is None:
            continue
        labels = {label_name: part} if part is not None else {}
        what = f"{name} is {value:g}" + (f" ({settings.get('reducer')} over {float(settings.get('window')):g} s)" if settings.get("window") else "")
        out.append(Condition(rule["id"], node_id, labels, level, f"{what}, {settings.get('op', '>=')} {settings[level]:g}", round(value, 4)))
    return out


# ------------------------------------------------------------- matchers


def matcher_matches(matcher: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """One matcher (``name``, ``op`` of = != ~ !~, ``value``) against labels; ~ is a shell-style glob (never a regex)."""
    actual = str(labels.get(matcher["name"], ""))
    op, value = matcher.get("op", "="), str(matcher["value"])
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    hit = fnmatch.fnmatchcase(actual, value)
    return hit if op == "~" else not hit


def matchers_match(matchers: Sequence[Mapping[str, str]], labels: Mapping[str, str]) -> bool:
    return all(matcher_matches(m, labels) for m in matchers)


def selects(selector: Mapping[str, Any], node_id: str, node_name: str, node_labels: Mapping[str, str]) -> bool:
    """Whether a rule's selector takes this node: ``nodes`` (ids), ``name`` (a glob), ``labels`` (each must equal; "*": present)."""
    ids = selector.get("nodes")
    if ids and node_id not in ids:
        return False
    pattern = selector.get("name")
    if pattern and not fnmatch.fnmatchcase(node_name.lower(), str(pattern).lower()):
        return False
    for key, want in (selector.get("labels") or {}).items():
        have = node_labels.get(key)
        if have is None or (want != "*" and have != want):
            return False
    return True


# ------------------------------------------------------------- lifecycle


def new_instance(condition: Condition, rule: Mapping[str, Any], node_name: str, instance_id: str, now: float) -> dict[str, Any]:
    return {
        "id": instance_id,
        "fingerprint": condition.fingerprint,
        "rule_id": rule["id"],
        "rule_name": rule["name"],
        "kind": rule["kind"],
        "severity": condition.severity,
        "node_id": condition.node_id,
        "node_name": node_name,
        "labels": dict(condition.labels),
        "summary": condition.summary,
        "value": condition.value,
        "state": PENDING,
        "active": True,
        "started_at": now,
        "fired_at": None,
        "resolved_at": None,
        "clear_since": None,
        "acknowledged": None,
        "snoozed_until": None,
        "silenced": False,
        "inhibited": False,
        "cause": rule.get("cause"),
        "source": rule.get("source", "rule"),
    }


def advance(instance: dict[str, Any], condition: Condition | None, rule: Mapping[str, Any], now: float) -> tuple[dict[str, Any] | None, str | None]:
    """One step of one instance: the instance after (None when dropped) and the transition (None when nothing but figures changed).

    ``condition`` None means the rule no longer finds this identity wrong.
    """
    hold = float(rule.get("for", 0) or 0)
    clear_for = float(rule.get("clear_for", 0) or 0)
    inst = dict(instance)
    state = inst["state"]
    if condition is not None:
        changed = (inst["severity"], inst["summary"], inst["value"], inst.get("active"), inst.get("clear_since")) != (
            condition.severity, condition.summary, condition.value, True, None,
        )
        inst.update(severity=condition.severity, summary=condition.summary, value=condition.value, active=True, clear_since=None)
        if state == PENDING and now - inst["started_at"] >= hold:
            inst.update(state=FIRING, fired_at=now)
            return inst, T_FIRING
        return inst, (T_UPDATED if changed else None)
    if state == PENDING:
        return None, T_DROPPED
    if state != FIRING:
        return inst, None
    since = inst.get("clear_since")
    if since is None:
        since = now
        inst.update(clear_since=now, active=False)
    if now - since >= clear_for:
        inst.update(state=RESOLVED, resolved_at=now, active=False)
        return inst, T_RESOLVED
    return inst, (T_UPDATED if instance.get("clear_since") is None else None)


def timer_step(instance: dict[str, Any], rule: Mapping[str, Any], now: float) -> tuple[dict[str, Any] | None, str | None]:
    """Advance an instance on the clock alone, with the condition it last had (the engine's timer, and after a restart)."""
    if instance.get("active"):
        condition = Condition(instance["rule_id"], instance["node_id"], instance["labels"], instance["severity"], instance["summary"], instance["value"])
        return advance(instance, condition, rule, now)
    return advance(instance, None, rule, now)


def evaluate(
    state: Mapping[str, dict[str, Any]],
    conditions: Iterable[Condition],
    scopes: Iterable[tuple[str, str]],
    rules: Mapping[str, Mapping[str, Any]],
    now: float,
    *,
    node_names: Mapping[str, str] | None = None,
    new_id: Any = None,
) -> Outcome:
    """One evaluation pass.

    ``state`` is the live instances by fingerprint; ``conditions`` what the
    rules found for the (rule id, node id) pairs in ``scopes`` (an instance of
    an evaluated scope that no condition names is no longer wrong; instances
    of other scopes are left alone). Returns the new state and transitions.
    """
    out = dict(state)
    transitions: list[Transition] = []
    seen: set[str] = set()
    names = node_names or {}
    counter = iter(range(1 << 62))
    make_id = new_id or (lambda: f"a{int(now * 1000):x}{next(counter):x}")
    for cond in conditions:
        fp = cond.fingerprint
        if fp in seen:
            continue
        seen.add(fp)
        rule = rules[cond.rule_id]
        current = out.get(fp)
        if current is None:
            inst = new_instance(cond, rule, names.get(cond.node_id, cond.node_id), make_id(), now)
            after, kind = advance(inst, cond, rule, now)
            after = after or inst
            out[fp] = after
            transitions.append(Transition(kind if kind == T_FIRING else T_PENDING, after))
            continue
        after, kind = advance(current, cond, rule, now)
        if after is not None:
            out[fp] = after
        if kind is not None:
            transitions.append(Transition(kind, after or current))
    wanted = set(scopes)
    for fp, inst in list(out.items()):
        if fp in seen or (inst["rule_id"], inst["node_id"]) not in wanted:
            continue
        rule = rules.get(inst["rule_id"])
        if rule is None:
            continue
        after, kind = advance(inst, None, rule, now)
        if after is None or after["state"] == RESOLVED:
            del out[fp]
        else:
            out[fp] = after
        if kind is not None:
            transitions.append(Transition(kind, after or inst))
    return Outcome(out, transitions)


def tick(state: Mapping[str, dict[str, Any]], rules: Mapping[str, Mapping[str, Any]], now: float) -> Outcome:
    """Advance every live instance on the clock alone: pending ``for`` timers and firing ``clear_for`` timers that ran out."""
    out = dict(state)
    transitions: list[Transition] = []
    for fp, inst in list(out.items()):
        rule = rules.get(inst["rule_id"])
        if rule is None:
            continue
        after, kind = timer_step(inst, rule, now)
        if kind in (None, T_UPDATED):
            if after is not None:
                out[fp] = after
            continue
        if after is None or after["state"] == RESOLVED:
            del out[fp]
        else:
            out[fp] = after
        transitions.append(Transition(kind, after or inst))
    return Outcome(out, transitions)


__all__ = [
    "Condition",
    "Outcome",
    "RollingWindow",
    "Transition",
    "advance",
    "evaluate",
    "fingerprint",
    "match_series",
    "matchers_match",
    "metric_conditions",
    "reduce",
    "selects",
    "threshold_severity",
    "tick",
]
