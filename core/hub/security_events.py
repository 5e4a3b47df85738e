"""Repeated security events counted instead of written one by one, and the rate-limit state that survives a restart.

- ``SecurityEvents.record(action, key=ADDR, ...)`` audits (and so logs) the
  first event of its kind from a key at once; repeats within
  ``REPEAT_WINDOW_SECONDS`` are only counted, and when the window ends one
  entry says how many there were ("N more ... from ADDR in the last
  minute"). A key still repeating keeps being summarised once a window.
  ``note(kind, key=..., ...)`` does the same for the process log alone
  (malformed HTTP requests, LAN-only refusals, unauthenticated agent
  errors). At most ``MAX_KEYS`` keys are tracked; past that, events are
  counted under one "other addresses" tally per kind, so a flood from many
  addresses is bounded too.
- ``PersistentLimits`` keeps the bans and recent failures of named
  ``RateLimiter``s in the store (written within a second, at once for a
  ban, and at shutdown) and loads them at start-up.
- ``ServerLog`` is the logger aiohttp's HTTP server writes through: a
  malformed request becomes one counted line instead of a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .security import RateLimiter
from .state import HUB_KEY

_LOGGER = logging.getLogger(__name__)

REPEAT_WINDOW_SECONDS = 60.0
MAX_KEYS = 1000
FLUSH_EVERY_SECONDS = 1.0
OTHER_KEY = "other addresses"

Audit = Callable[..., Awaitable[None]]


@dataclass
class _Tally:
    started: float  # clock time the window opened
    repeats: int = 0  # events since the last written entry
    keys: set[str] = field(default_factory=set)  # for the overflow tally: which keys it stands for
    actor: str = ""
    target: str = ""
    outcome: str = "refused"
    peer: str = ""
    phrase: str = ""
    level: int = logging.WARNING
    audited: bool = True


class SecurityEvents:
    """The one aggregator for repeated security events on the hub; lives on the Hub as ``security_events``."""

    def __init__(
        self,
        audit: Audit,
        *,
        window: float = REPEAT_WINDOW_SECONDS,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = _LOGGER,
    ) -> None:
        self._audit = audit
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._log = logger
        self._tallies: OrderedDict[tuple[str, str], _Tally] = OrderedDict()
        self._overflow_slots = 0  # tallies keyed OTHER_KEY: one per kind at most

    def __len__(self) -> int:
        return len(self._tallies)

    def _open(self, slot: tuple[str, str], tally: _Tally) -> _Tally:
        self._tallies[slot] = tally
        if slot[1] == OTHER_KEY:
            self._overflow_slots += 1
        return tally

    def _close(self, slot: tuple[str, str]) -> None:
        if self._tallies.pop(slot, None) is not None and slot[1] == OTHER_KEY:
            self._overflow_slots -= 1

    def _slot(self, kind: str, key: str) -> tuple[tuple[str, str], _Tally | None, bool]:
        """(slot, its tally or None if this event opens one, overflow?)."""
        slot = (kind, key)
        tally = self._tallies.get(slot)
        if tally is not None:
            return slot, tally, False
        if len(self._tallies) - self._overflow_slots < self.max_keys:
            return slot, None, False
        slot = (kind, OTHER_KEY)
        return slot, self._tallies.get(slot), True

    async def record(
        self,
        action: str,
        *,
        key: str,
        actor: str,
        target: str = "",
        outcome: str = "refused",
        peer: str = "",
        details: dict[str, Any] | None = None,
        phrase: str = "attempts like this",
    ) -> bool:
        """Audit ``action`` now if it is the first from ``key`` in this window, else count it; True if written now.

        ``phrase`` names the repeats in the summary ("failed agent logins").
        Raises AuditWriteError like ``Hub.audit`` when an entry is written and cannot be.
        """
        slot, tally, overflow = self._slot(action, key)
        if tally is not None:
            tally.repeats += 1
            if overflow and len(tally.keys) < MAX_KEYS * 10:  # counted exactly up to there, bounded beyond
                tally.keys.add(key)
            return False
        tally = self._open(
            slot, _Tally(started=self._clock(), keys={key} if overflow else set(), actor=actor, target=target, outcome=outcome, peer=peer, phrase=phrase)
        )
        if overflow:
            tally.repeats = 1
            return False
        await self._audit(action, actor=actor, target=target, outcome=outcome, peer=peer, details=details)
        return True

    def note(self, kind: str, *, key: str, message: str, args: tuple[Any, ...] = (), level: int = logging.WARNING, phrase: str = "like this") -> bool:
        """Log ``message % args`` if it is the first ``kind`` from ``key`` in this window, else count it; True if logged now."""
        slot, tally, overflow = self._slot(kind, key)
        if tally is not None:
            tally.repeats += 1
            if overflow and len(tally.keys) < MAX_KEYS * 10:  # counted exactly up to there, bounded beyond
                tally.keys.add(key)
            return False
        tally = self._open(slot, _Tally(started=self._clock(), keys={key} if overflow else set(), phrase=phrase, level=level, audited=False))
        if overflow:
            tally.repeats = 1
            return False
        self._log.log(level, message, *args)
        return True

    async def flush(self, *, everything: bool = False) -> int:
        """Write the summaries of windows that ended (all of them with ``everything``); returns how many were written."""
        now = self._clock()
        written = 0
        for slot, tally in list(self._tallies.items()):
            if not everything and now - tally.started < self.window:
                continue
            kind, key = slot
            if tally.repeats == 0:
                self._close(slot)  # quiet for a whole window: the next event is news again
                continue
            repeats, tally.repeats, tally.started = tally.repeats, 0, now
            where = f"{len(tally.keys)} other addresses" if key == OTHER_KEY else key
            seconds = max(1, round(self.window))
            summary = f"{repeats} more {tally.phrase} from {where} in the last {'minute' if seconds == 60 else f'{seconds} s'}"
            if not tally.audited:
                self._log.log(tally.level, "%s: %s", kind, summary)
            else:
                try:
                    await self._audit(
                        kind,
                        actor=tally.actor if key != OTHER_KEY else "anonymous",
                        target=tally.target,
                        outcome=tally.outcome,
                        peer=tally.peer if key != OTHER_KEY else "",
                        details={"repeats": repeats, "window_seconds": seconds, "summary": summary},
                    )
                except Exception:
                    _LOGGER.error("audit log: cannot record %s: %s", kind, summary)
            if everything:
                self._close(slot)
            written += 1
        return written


class PersistentLimits:
    """Named RateLimiters whose bans and failures live in the store, so a restart forgives nothing."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.limiters: dict[str, RateLimiter] = {}

    def add(self, name: str, limiter: RateLimiter) -> RateLimiter:
        self.limiters[name] = limiter
        return limiter

    async def load(self) -> None:
        now = time.time()
        for name, limiter in self.limiters.items():
            limiter.restore(await self.store.load_rate_limits(name, now=now), now=now)

    async def save(self) -> None:
        """Write what changed since the last save (a no-op when nothing did)."""
        now = time.time()
        for name, limiter in self.limiters.items():
            changes = limiter.take_changes(now=now)
            if changes:
                await self.store.save_rate_limits(name, changes, now=now)


class ServerLog:
    """The ``logger`` aiohttp's request handler writes to: malformed requests become one counted line each.

    aiohttp logs a request it cannot parse with its whole traceback, at error
    level; a flood of them is megabytes. Here each becomes one line naming
    the peer and what was wrong, and repeats are counted by SecurityEvents.
    Everything else goes to aiohttp's own server logger unchanged.
    """

    def __init__(self, events: SecurityEvents, logger: logging.Logger | None = None) -> None:
        self.events = events
        self.logger = logger or logging.getLogger("aiohttp.server")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.logger, name)

    def _malformed(self, args: tuple[Any, ...], exc: Any, level: int = logging.WARNING) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        if not isinstance(exc, HttpProcessingError):
            return False
        peer = str(args[1]) if len(args) > 1 else "?"
        why = " ".join(str(getattr(exc, "message", "") or exc).split()) or type(exc).__name__
        self.events.note(
            "http.malformed",
            key=peer,
            message="malformed HTTP request from %s: %s (%s)",
            args=(peer, why, type(exc).__name__),
            level=level,
            phrase="malformed HTTP requests",
        )
        return True

    def exception(self, *args: Any, exc_info: Any = True, **kw: Any) -> None:
        if not self._malformed(args, exc_info):
            self.logger.exception(*args, exc_info=exc_info, **kw)

    def debug(self, *args: Any, exc_info: Any = None, **kw: Any) -> None:
        if not self.logger.isEnabledFor(logging.DEBUG):
            return
        # aiohttp's own choice of debug (non-HTTP bytes on a first request: TLS to a plain port, scanners) stands.
        if not self._malformed(args, exc_info, logging.DEBUG):
            self.logger.debug(*args, exc_info=exc_info, **kw)


async def security_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load persisted bans once the store is open; write summaries and limiter changes every second and at shutdown."""
    hub = app[HUB_KEY]
    await hub.limits.load()
    stop = asyncio.Event()

    async def every_second() -> None:
        # Stopped by the event, never cancelled: a cancel inside a store write would leave its transaction open.
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), FLUSH_EVERY_SECONDS)
            except asyncio.TimeoutError:
                pass
            try:
                await hub.security_events.flush()
                await hub.limits.save()
            except Exception:
                _LOGGER.exception("cannot write security event summaries or rate-limit state")

    task = asyncio.create_task(every_second(), name="roost-security-events")
    yield
    stop.set()
    await task
    await hub.security_events.flush(everything=True)
    await hub.limits.save()
