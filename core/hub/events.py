"""The hub's in-process event bus: live updates for the dashboard, never a place where events pile up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

_LOGGER = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 256


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]


class EventBus:
    """Fan-out to subscribers; a subscriber that falls behind loses events, not the hub its memory."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Event]] = set()

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscribers)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        event = Event(kind, data)
        for queue in self._subscribers:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                _LOGGER.debug("dropping %s event for a slow subscriber", kind)

    def close(self) -> None:
        """Tell every subscriber the hub is going away (they receive None)."""
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
