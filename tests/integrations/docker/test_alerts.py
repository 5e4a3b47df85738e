"""The docker rule kinds on node states shaped as the collector reports them: each container its own finding, and nothing when all is well."""

from __future__ import annotations

import pytest

from roost.integrations.docker import alerts
from roost.integrations.docker.collector import describe_container
from roost.integrations.docker.events import EventTracker
from roost.integrations.docker.masking import Masker

NOW = 1_800_000_000.0


def node(containers, events=(), at=NOW):
    return {"node": {"id": "n1"}, "state": {"docker": {"containers": list(containers), "events": list(events)}}, "collected_at": at, "metrics": {}}


def container(name, state="running", health=None, restarts=0):
    attrs = {"Id": name * 8, "Name": "/" + name, "RestartCount": restarts, "Config": {"Image": "busybox"},
             "State": {"Status": state, "Running": state == "running", **({"Health": {"Status": health, "FailingStreak": 4}} if health else {})}}
    return describe_container(attrs, None, Masker())


def settings(kind):
    schema = next(k.schema for k in alerts.rule_kinds() if k.name == kind)
    return schema({})


def test_unhealthy_names_each_running_unhealthy_container():
    found = alerts.unhealthy(settings("docker.container_unhealthy"), node([container("web", health="unhealthy"), container("db", health="healthy"), container("old", "exited", health="unhealthy")]))
    assert [(f.labels, "4 failed checks" in f.summary) for f in found] == [({"container": "web"}, True)]
    assert alerts.unhealthy({"containers": "db*"}, node([container("web", health="unhealthy")])) == []


def test_restart_loop_from_the_trackers_events_and_docker_restarting_state():
    tracker = EventTracker(loop_count=3, loop_window=300)
    for i, count in enumerate((0, 1, 2, 3)):
        events = tracker.update([container("flappy", restarts=count)], NOW - 100 + i * 10)
    loop_events = [e for e in tracker.recent() if e["type"] == "restart_loop"]
    assert loop_events, tracker.recent()
    found = alerts.restart_loop(settings("docker.restart_loop"), node([container("flappy", restarts=3), container("stuck", "restarting")], tracker.recent()))
    assert sorted(f.labels["container"] for f in found) == ["flappy", "stuck"]
    # Out of the window: only what docker shows now.
    later = alerts.restart_loop(settings("docker.restart_loop"), node([container("flappy", restarts=3)], tracker.recent(), at=NOW + 3600))
    assert later == []


def test_unexpected_exit_until_it_runs_again():
    event = {"type": "exited_unexpectedly", "container": "job", "at": NOW - 30, "detail": "exit code 1"}
    found = alerts.unexpected_exit(settings("docker.unexpected_exit"), node([container("job", "exited")], [event]))
    assert [f.labels for f in found] == [{"container": "job"}] and "exit code 1" in found[0].summary
    assert alerts.unexpected_exit(settings("docker.unexpected_exit"), node([container("job")], [event])) == []


@pytest.mark.parametrize("state", [None, {}, {"docker": "nonsense"}, {"docker": {"containers": "x", "events": [1, None]}}])
def test_malformed_state_is_no_finding_and_no_error(state):
    bad = {"node": {}, "state": state, "collected_at": None, "metrics": {}}
    for kind in alerts.rule_kinds():
        assert list(kind.handler(kind.schema({}), bad)) == []
