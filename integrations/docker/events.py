"""Container events for alerting, found on the agent by comparing one snapshot with the next.

Four kinds: a container became unhealthy, is restart-looping, exited
unexpectedly (a non-zero exit code or an OOM kill that nobody asked for), or
disappeared (gone, and no container of that name replaced it). The engine's
own event stream only says which stops and removals were deliberate (a
``stop``, ``kill`` or ``destroy`` event); the snapshots decide the rest, so an
agent that missed a moment still reports what changed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .const import (
    DEFAULT_MAX_EVENTS,
    EVENT_DISAPPEARED,
    EVENT_EXITED,
    EVENT_RESTART_LOOP,
    EVENT_UNHEALTHY,
    RESTART_LOOP_COUNT,
    RESTART_LOOP_WINDOW_SECONDS,
)

RUNNING_STATES = frozenset({"running", "restarting", "paused"})
STOPPED_STATES = frozenset({"exited", "dead"})


@dataclass(frozen=True)
class _Seen:
    name: str
    state: str
    health: str | None
    restart_count: int


class EventTracker:
    """Keeps the previous snapshot and a bounded list of the latest events."""

    def __init__(
        self,
        max_events: int = DEFAULT_MAX_EVENTS,
        *,
        loop_count: int = RESTART_LOOP_COUNT,
        loop_window: float = RESTART_LOOP_WINDOW_SECONDS,
    ) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self.loop_count = loop_count
        self.loop_window = loop_window
        self._previous: dict[str, _Seen] | None = None
        # Per container: (time, restart count) whenever the count changed; the window's start is read from it.
        self._restarts: dict[str, deque[tuple[float, int]]] = {}
        self._loop_reported_at: dict[str, float] = {}

    def update(self, containers: Iterable[Mapping[str, Any]], now: float, deliberate: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Compare this snapshot with the last; return the new events (also kept in ``events``).

        ``deliberate`` holds ids of containers someone stopped, killed or
        removed since the last snapshot (from the engine's event stream).
        The first snapshot only sets the baseline.
        """
        deliberate = set(deliberate)
        by_id = {str(c.get("id") or ""): c for c in containers}
        current: dict[str, _Seen] = {}
        for c in by_id.values():
            cid = str(c.get("id") or "")
            if not cid:
                continue
            current[cid] = _Seen(
                name=str(c.get("name") or cid[:12]),
                state=str(c.get("state") or ""),
                health=c.get("health"),
                restart_count=int(c.get("restart_count") or 0),
            )
        new: list[dict[str, Any]] = []
        previous = self._previous
        for cid, seen in current.items():
            self._track_restarts(cid, seen.restart_count, now)
            if previous is None:
                continue
            before = previous.get(cid)
            if seen.health == "unhealthy" and (before is None or before.health != "unhealthy"):
                new.append(self._event(EVENT_UNHEALTHY, seen.name, cid, now, "health check failing"))
            loops = self._restarts_in_window(cid, seen.restart_count, now)
            if loops >= self.loop_count and now - self._loop_reported_at.get(cid, -1e18) >= self.loop_window:
                self._loop_reported_at[cid] = now
                minutes = self.loop_window / 60
                new.append(self._event(EVENT_RESTART_LOOP, seen.name, cid, now, f"restarted {loops} times in {minutes:g} min"))
            if before is not None and before.state in RUNNING_STATES and seen.state in STOPPED_STATES and cid not in deliberate:
                c = by_id[cid]
                code = c.get("exit_code")
                oom = bool(c.get("oom_killed"))
                if oom or (isinstance(code, int) and code != 0):
                    detail = "killed: out of memory" if oom else f"exit code {code}"
                    new.append(self._event(EVENT_EXITED, seen.name, cid, now, detail))
        if previous is not None:
            names_now = {seen.name for seen in current.values()}
            for cid, before in previous.items():
                if cid in current or before.name in names_now:
                    continue  # still there, or recreated under the same name (compose up)
                detail = "removed" if cid in deliberate else "gone without a removal event"
                new.append(self._event(EVENT_DISAPPEARED, before.name, cid, now, detail))
        for cid in set(self._restarts) - set(current):
            self._restarts.pop(cid, None)
            self._loop_reported_at.pop(cid, None)
        self._previous = current
        self.events.extend(new)
        return new

    def recent(self) -> list[dict[str, Any]]:
        """The latest events, oldest first."""
        return list(self.events)

    def _event(self, kind: str, name: str, cid: str, now: float, detail: str) -> dict[str, Any]:
        return {"type": kind, "container": name, "id": cid, "at": round(now, 3), "detail": detail}

    def _track_restarts(self, cid: str, count: int, now: float) -> None:
        history = self._restarts.setdefault(cid, deque())
        if not history or history[-1][1] != count:
            history.append((now, count))
        # Keep one entry from before the window: it holds the count at the window's start.
        while len(history) > 1 and history[1][0] <= now - self.loop_window:
            history.popleft()

    def _restarts_in_window(self, cid: str, count: int, now: float) -> int:
        history = self._restarts.get(cid)
        if not history:
            return 0
        return max(0, count - history[0][1])

