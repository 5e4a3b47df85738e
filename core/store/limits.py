"""Store interface for rate-limit state that must outlive the process: bans and recent failures per client."""

from __future__ import annotations

import abc
from collections.abc import Sequence

# (key, wall-clock times of recent failures, wall-clock end of a ban or None)
LimitRow = tuple[str, list[float], float | None]


class LimitStore(abc.ABC):
    @abc.abstractmethod
    async def load_rate_limits(self, limiter: str, *, now: float) -> list[LimitRow]:
        """Every key of ``limiter`` with a ban that has not ended or failures; rows that ran out are deleted."""

    @abc.abstractmethod
    async def save_rate_limits(self, limiter: str, rows: Sequence[LimitRow], *, now: float) -> None:
        """Replace the given keys' state in one transaction; a key with no failures and no ban is deleted."""
