"""Contract tests of the alert lifecycle: the pure evaluation functions of roost.core.hub.alert_eval, replayed step by step on a made-up clock."""

from __future__ import annotations

import pytest

from roost.core.hub import alert_eval as ev

RULE = {"id": "r1", "name": "Disk full", "kind": "metric.threshold", "severity": "warning", "for": 60, "clear_for": 30,
        "settings": {"series": "linux_host.disk_used_percent[*]", "label": "mountpoint", "op": ">=", "reducer": "last", "window": 0,
                     "warning": 90, "warning_clear": 85, "critical": 95, "critical_clear": 93}}
RULES = {"r1": RULE}


def cond(severity: str = "warning", labels=None, value: float = 91.0) -> ev.Condition:
    return ev.Condition("r1", "n1", labels or {"mountpoint": "/"}, severity, f"at {value}", value)


def step(state, conditions, now):
    return ev.evaluate(state, conditions, [("r1", "n1")], RULES, now)


def kinds(outcome):
    return [t.kind for t in outcome.transitions]


def test_pending_then_firing_after_for_then_resolved_after_clear_for():
    out = step({}, [cond()], 0)
    assert kinds(out) == ["pending"]
    (inst,) = out.state.values()
    assert inst["state"] == "pending" and inst["started_at"] == 0
    out = step(out.state, [cond()], 59)
    assert kinds(out) == [] and next(iter(out.state.values()))["state"] == "pending"
    out = step(out.state, [cond()], 60)
    assert kinds(out) == ["firing"] and next(iter(out.state.values()))["fired_at"] == 60
    out = step(out.state, [], 70)
    assert kinds(out) == ["updated"] and next(iter(out.state.values()))["state"] == "firing"
    out = step(out.state, [], 99)
    assert kinds(out) == []
    out = step(out.state, [], 100)
    assert kinds(out) == ["resolved"] and out.state == {}
    assert out.transitions[0].instance["resolved_at"] == 100


def test_a_pending_alert_whose_condition_goes_away_is_dropped_without_firing():
    out = step({}, [cond()], 0)
    out = step(out.state, [], 30)
    assert kinds(out) == ["dropped"] and out.state == {}


def test_condition_back_before_clear_for_restarts_the_clear_timer():
    out = step({}, [cond()], 0)
    out = step(out.state, [cond()], 60)
    out = step(out.state, [], 70)
    out = step(out.state, [cond()], 90)
    assert next(iter(out.state.values()))["clear_since"] is None
    out = step(out.state, [], 110)
    out = step(out.state, [], 139)
    assert kinds(out) == []
    out = step(out.state, [], 140)
    assert kinds(out) == ["resolved"]


def test_for_zero_fires_at_once_and_identity_is_per_label_set():
    rules = {"r1": {**RULE, "for": 0}}
    out = ev.evaluate({}, [cond(labels={"mountpoint": "/"}), cond(labels={"mountpoint": "/srv"})], [("r1", "n1")], rules, 5)
    assert kinds(out) == ["firing", "firing"] and len(out.state) == 2
    fps = {i["fingerprint"] for i in out.state.values()}
    assert fps == {ev.fingerprint("r1", "n1", {"mountpoint": "/"}), ev.fingerprint("r1", "n1", {"mountpoint": "/srv"})}
    # The same condition again is the same instance, not a new one.
    again = ev.evaluate(out.state, [cond(labels={"mountpoint": "/"}), cond(labels={"mountpoint": "/srv"})], [("r1", "n1")], rules, 6)
    assert kinds(again) == [] and {i["id"] for i in again.state.values()} == {i["id"] for i in out.state.values()}


def test_resolved_is_final_and_a_new_firing_is_a_new_instance():
    rules = {"r1": {**RULE, "for": 0, "clear_for": 0}}
    first = ev.evaluate({}, [cond()], [("r1", "n1")], rules, 0, new_id=lambda: "first")
    gone = ev.evaluate(first.state, [], [("r1", "n1")], rules, 1)
    assert kinds(gone) == ["resolved"]
    second = ev.evaluate(gone.state, [cond()], [("r1", "n1")], rules, 2, new_id=lambda: "second")
    assert kinds(second) == ["firing"] and next(iter(second.state.values()))["id"] == "second"


def test_scopes_not_evaluated_are_left_alone():
    out = step({}, [cond()], 0)
    other = ev.evaluate(out.state, [], [("r1", "n2")], RULES, 10)
    assert kinds(other) == [] and other.state == out.state


def test_the_input_state_is_never_changed():
    out = step({}, [cond()], 0)
    frozen = {k: dict(v) for k, v in out.state.items()}
    step(out.state, [cond()], 60)
    step(out.state, [], 60)
    assert out.state == frozen


def test_tick_fires_a_pending_alert_on_the_clock_alone_and_resolves_after_clear_for():
    out = step({}, [cond()], 0)
    assert kinds(ev.tick(out.state, RULES, 59)) == []
    fired = ev.tick(out.state, RULES, 60)
    assert kinds(fired) == ["firing"]
    cleared = step(fired.state, [], 61)
    assert kinds(ev.tick(cleared.state, RULES, 90)) == []
    assert kinds(ev.tick(cleared.state, RULES, 91)) == ["resolved"]


@pytest.mark.parametrize(
    ("value", "previous", "expected"),
    [
        (89.9, None, None),
        (90, None, "warning"),
        (88, "warning", "warning"),  # above warning_clear: held
        (85, "warning", None),  # below: let go
        (84.9, "warning", None),
        (95, None, "critical"),
        (94, "critical", "critical"),  # above critical_clear 93
        (92, "critical", "warning"),  # below critical_clear, above warning: steps down
        (86, "critical", "warning"),
        (84, "critical", None),
        (94, "warning", "warning"),  # warning never jumps to critical without crossing 95
    ],
)
def test_hysteresis(value, previous, expected):
    assert ev.threshold_severity(RULE["settings"], value, previous) == expected


def test_hysteresis_for_falling_thresholds():
    settings = {"op": "<=", "warning": 20, "warning_clear": 25}
    assert ev.threshold_severity(settings, 21, None) is None
    assert ev.threshold_severity(settings, 20, None) == "warning"
    assert ev.threshold_severity(settings, 24, "warning") == "warning"
    assert ev.threshold_severity(settings, 25, "warning") is None


def test_metric_conditions_use_the_instance_severity_for_hysteresis():
    series = {"linux_host.disk_used_percent[/]": [(0, 88.0)]}
    assert ev.metric_conditions(RULE, "n1", series, {}, 0) == []
    out = step({}, [cond(value=91)], 0)
    (inst,) = out.state.values()
    found = ev.metric_conditions(RULE, "n1", series, {"/": inst}, 1)
    assert [(c.severity, c.labels) for c in found] == [("warning", {"mountpoint": "/"})]


@pytest.mark.parametrize(
    ("reducer", "expected"), [("last", 10.0), ("avg", 6.0), ("max", 10.0), ("min", 2.0)]
)
def test_reducers_over_a_window(reducer, expected):
    points = [(0, 100.0), (50, 2.0), (60, 6.0), (70, 10.0)]
    assert ev.reduce(reducer, points, 30, 75) == expected


def test_per_label_wildcards_and_exact_series():
    names = ["linux_host.disk_used_percent[/]", "linux_host.disk_used_percent[/srv/data]", "linux_host.disk_used_percent", "linux_host.cpu_percent"]
    assert [p for _, p in ev.match_series("linux_host.disk_used_percent[*]", names)] == ["/", "/srv/data"]
    assert ev.match_series("linux_host.disk_used_percent[/srv/*]", names) == [("linux_host.disk_used_percent[/srv/data]", "/srv/data")]
    assert ev.match_series("linux_host.disk_used_percent", names) == [("linux_host.disk_used_percent", None)]
    assert ev.match_series("linux_host.nothing[*]", names) == []


def test_selectors_by_id_name_pattern_and_label():
    assert ev.selects({}, "n1", "nas", {})
    assert ev.selects({"nodes": ["n1"]}, "n1", "nas", {}) and not ev.selects({"nodes": ["n2"]}, "n1", "nas", {})
    assert ev.selects({"name": "pve-*"}, "n1", "PVE-1", {}) and not ev.selects({"name": "pve-*"}, "n1", "nas", {})
    assert ev.selects({"labels": {"env": "prod"}}, "n1", "nas", {"env": "prod"})
    assert not ev.selects({"labels": {"env": "prod"}}, "n1", "nas", {"env": "dev"})
    assert ev.selects({"labels": {"env": "*"}}, "n1", "nas", {"env": "dev"}) and not ev.selects({"labels": {"env": "*"}}, "n1", "nas", {})


def test_matchers_are_globs_never_regular_expressions():
    labels = {"alertname": "Disk full", "mountpoint": "/srv", "node_name": "nas"}
    assert ev.matchers_match([{"name": "node_name", "op": "=", "value": "nas"}], labels)
    assert ev.matchers_match([{"name": "mountpoint", "op": "~", "value": "/s*"}], labels)
    assert not ev.matchers_match([{"name": "mountpoint", "op": "!~", "value": "/s*"}], labels)
    # A regex in a matcher means nothing special: "(.*)" matches only those characters.
    assert not ev.matchers_match([{"name": "node_name", "op": "~", "value": "(.*)"}], labels)
    assert ev.matchers_match([{"name": "missing", "op": "!=", "value": "x"}], labels)
