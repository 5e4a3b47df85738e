"""Bounded series: how many metric series one node may have and how long a metric name may be, enforced before a report is stored."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

from roost.core.store import Report, Store

DEFAULT_MAX_SERIES_PER_NODE = 3000
DEFAULT_MAX_METRIC_NAME = 128
# How many refused names a refusal quotes, so the message stays readable.
EXAMPLES = 3


@dataclass(frozen=True)
class Refusal:
    """What of one report was not stored, and why, in words for the agent's log and the node's page."""

    at: float
    new_series: int  # series the node wanted to add over its limit
    long_names: int  # names longer than the limit
    series: int  # series the node has now
    max_series: int
    max_name: int
    examples: tuple[str, ...]

    @property
    def message(self) -> str:
        parts = []
        if self.new_series:
            parts.append(
                f"{self.new_series} new metric series refused: this node has {self.series} series and the hub allows "
                f"{self.max_series} per node ([hub] max_series_per_node); report fewer distinct names (labels such as "
                "[container] multiply them) or ask the hub's admin to raise the limit"
            )
        if self.long_names:
            parts.append(
                f"{self.long_names} metric name(s) longer than {self.max_name} characters refused "
                "([hub] max_metric_name); shorten them"
            )
        examples = ", ".join(repr(name[:60] + ("…" if len(name) > 60 else "")) for name in self.examples)
        return "; ".join(parts) + f" (e.g. {examples}); the rest of the report was stored"

    def as_dict(self) -> dict[str, object]:
        return {
            "at": self.at,
            "new_series_refused": self.new_series,
            "long_names_refused": self.long_names,
            "series": self.series,
            "max_series_per_node": self.max_series,
            "max_metric_name": self.max_name,
            "examples": list(self.examples),
            "message": self.message,
        }


class SeriesGuard:
    """Keeps each node's series under the hub's limits; what is over is left out of the report, the rest goes on.

    A node's known series are read from the store once, then kept in step
    with what this guard lets through, so the check costs a set lookup per
    metric.
    """

    def __init__(self, store: Store, *, max_series: int = DEFAULT_MAX_SERIES_PER_NODE, max_name: int = DEFAULT_MAX_METRIC_NAME) -> None:
        self.store = store
        self.max_series = max_series
        self.max_name = max_name
        self._series: dict[str, set[str]] = {}
        self._lock = asyncio.Lock()
        # The latest refusal per node, shown on its page until a report goes through whole.
        self.refusals: dict[str, Refusal] = {}

    async def _known(self, node_id: str) -> set[str]:
        known = self._series.get(node_id)
        if known is None:
            async with self._lock:
                known = self._series.get(node_id)
                if known is None:
                    known = self._series[node_id] = set(await self.store.metric_series(node_id))
        return known

    def forget(self) -> None:
        """Pruning may have removed series; read them from the store again."""
        self._series.clear()

    async def admit(self, report: Report) -> tuple[Report, Refusal | None]:
        """The report with the metrics it may keep, and what was refused (None when nothing was)."""
        if not report.metrics:
            self.refusals.pop(report.node_id, None)
            return report, None
        known = await self._known(report.node_id)
        kept: dict[str, float] = {}
        long_names = new_over = 0
        examples: list[str] = []
        for name, value in report.metrics.items():
            if len(name) > self.max_name:
                long_names += 1
            elif name in known:
                kept[name] = value
                continue
            elif len(known) < self.max_series:
                known.add(name)
                kept[name] = value
                continue
            else:
                new_over += 1
            if len(examples) < EXAMPLES:
                examples.append(name)
        if not long_names and not new_over:
            self.refusals.pop(report.node_id, None)
            return report, None
        refusal = Refusal(
            at=time.time(),
            new_series=new_over,
            long_names=long_names,
            series=len(known),
            max_series=self.max_series,
            max_name=self.max_name,
            examples=tuple(examples),
        )
        self.refusals[report.node_id] = refusal
        return replace(report, metrics=kept), refusal
