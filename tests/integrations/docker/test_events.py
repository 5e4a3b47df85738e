"""Events computed on the agent by comparing snapshots: unhealthy, restart loop, unexpected exit, disappeared."""

from __future__ import annotations

from typing import Any

from roost.integrations.docker.events import EventTracker


def c(cid: str, name: str | None = None, state: str = "running", **extra: Any) -> dict[str, Any]:
    return {"id": cid, "name": name or cid, "state": state, "restart_count": 0, **extra}


def types(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["container"]) for e in events]


def test_the_first_snapshot_only_sets_the_baseline():
    tracker = EventTracker()
    assert tracker.update([c("a", health="unhealthy"), c("b", state="exited", exit_code=1)], now=0) == []
    assert tracker.recent() == []


def test_a_container_that_turns_unhealthy_is_reported_once():
    tracker = EventTracker()
    tracker.update([c("a", health="healthy")], now=0)
    events = tracker.update([c("a", health="unhealthy")], now=10)
    assert types(events) == [("unhealthy", "a")]
    assert set(events[0]) == {"type", "container", "id", "at", "detail"} and events[0]["at"] == 10
    assert tracker.update([c("a", health="unhealthy")], now=20) == []
    tracker.update([c("a", health="healthy")], now=30)
    assert types(tracker.update([c("a", health="unhealthy")], now=40)) == [("unhealthy", "a")]
    # A new container that shows up unhealthy counts too.
    assert types(tracker.update([c("a", health="unhealthy"), c("n", health="unhealthy")], now=50)) == [("unhealthy", "n")]


def test_an_exit_with_an_error_code_or_an_oom_kill_is_unexpected_unless_someone_stopped_it():
    tracker = EventTracker()
    tracker.update([c("a"), c("b"), c("d"), c("e")], now=0)
    events = tracker.update(
        [
            c("a", state="exited", exit_code=3),
            c("b", state="exited", exit_code=137, oom_killed=True),
            c("d", state="exited", exit_code=0),  # finished its work
            c("e", state="exited", exit_code=143),  # stopped by someone
        ],
        now=10,
        deliberate={"e"},
    )
    assert types(events) == [("exited_unexpectedly", "a"), ("exited_unexpectedly", "b")]
    assert events[0]["detail"] == "exit code 3"
    assert events[1]["detail"] == "killed: out of memory"


def test_restart_loops_are_reported_once_per_window():
    tracker = EventTracker(loop_count=3, loop_window=300)
    tracker.update([c("a", restart_count=5)], now=0)
    assert tracker.update([c("a", restart_count=6)], now=10) == []
    assert tracker.update([c("a", restart_count=7)], now=20) == []
    events = tracker.update([c("a", restart_count=8, state="restarting")], now=30)
    assert types(events) == [("restart_loop", "a")] and events[0]["detail"] == "restarted 3 times in 5 min"
    assert tracker.update([c("a", restart_count=12)], now=40) == []  # still the same episode
    # Restarts spread thinner than the window never add up to a loop.
    slow = EventTracker(loop_count=3, loop_window=60)
    for i in range(10):
        assert slow.update([c("s", restart_count=i)], now=i * 100) == []


def test_a_removed_container_disappears_but_a_recreated_one_does_not():
    tracker = EventTracker()
    tracker.update([c("a1", "web"), c("b", "db"), c("x", "cache")], now=0)
    events = tracker.update([c("a2", "web")], now=10, deliberate={"b"})
    assert types(events) == [("disappeared", "db"), ("disappeared", "cache")]
    assert [e["detail"] for e in events] == ["removed", "gone without a removal event"]


def test_the_event_list_is_bounded():
    tracker = EventTracker(max_events=3)
    tracker.update([c("a", health="healthy")], now=0)
    for i in range(1, 6):
        tracker.update([c("a", health="unhealthy" if i % 2 else "healthy")], now=i)
    assert len(tracker.recent()) == 3
    assert [e["at"] for e in tracker.recent()] == [1, 3, 5]
