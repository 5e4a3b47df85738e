"""Read capabilities: which capability each part of an integration's report needs, and the filter that keeps only what is effective.

An integration declares, next to its collector, a ``READS`` object that maps
every part of what ``roost_collect`` returns to the capability a node must
hold (granted by the hub and allowed by the host's ceiling) before that part
leaves the agent::

    READS = Reads(
        state={"cpu": "host.metrics.read", "network": "network.info.read", "facts.macs": "network.info.read"},
        metrics={"*": "host.metrics.read"},
    )

State parts are top-level state keys (``cpu``) or one key inside a top-level
mapping (``facts.macs``, which overrides ``facts`` for that key); ``*`` stands
for every key not named. Metric parts are metric names without their
``[label]`` and without the domain prefix; ``*`` stands for every other
metric. A part that is not declared (and not covered by ``*``) never leaves
the agent. An integration with no ``READS`` at all is treated as
``Reads.every("<domain>.read")``: nothing of it is sent until an admin grants
that capability by name.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .capabilities import is_capability

ANY = "*"
# How withheld parts are named in reports, the API and the dashboard.
PART_METRICS = "metrics"
PART_METRIC_PREFIX = "metrics:"
PART_STATE_REST = "*"


@dataclass(frozen=True)
class Reads:
    """The capability each part of one integration's report needs."""

    state: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def every(cls, capability: str) -> Reads:
        """Every part of the report needs the one capability."""
        return cls(state={ANY: capability}, metrics={ANY: capability})

    def problems(self) -> list[str]:
        """What is wrong with the declaration, for the integration's setup error ('' parts are fine)."""
        out = []
        for kind, table in (("state", self.state), ("metrics", self.metrics)):
            if not isinstance(table, Mapping):
                out.append(f"READS.{kind} must be a mapping of part to capability")
                continue
            for part, capability in table.items():
                if not isinstance(part, str) or not part or (kind == "state" and part.count(".") > 1):
                    out.append(f"READS.{kind}: {part!r} is not a part name (a state key, key.subkey, a metric name or *)")
                elif not is_capability(capability):
                    out.append(f"READS.{kind}[{part!r}]: {capability!r} is not a capability name such as host.metrics.read")
        return out

    def capabilities(self) -> set[str]:
        return {*self.state.values(), *self.metrics.values()}

    @property
    def empty(self) -> bool:
        return not self.state and not self.metrics

    def withheld(self, permitted: Collection[str]) -> dict[str, str]:
        """Every declared part whose capability is not effective: part name -> the capability to grant."""
        out: dict[str, str] = {}
        for part, capability in self.state.items():
            if capability not in permitted:
                out[PART_STATE_REST if part == ANY else part] = capability
        for name, capability in self.metrics.items():
            if capability not in permitted:
                out[PART_METRICS if name == ANY else PART_METRIC_PREFIX + name] = capability
        return out

    def anything_permitted(self, permitted: Collection[str]) -> bool:
        return any(c in permitted for c in self.capabilities())

    def _state_capability(self, key: str, sub: str | None = None) -> str | None:
        if sub is not None and f"{key}.{sub}" in self.state:
            return self.state[f"{key}.{sub}"]
        return self.state.get(key, self.state.get(ANY))

    def filter_state(self, state: Any, permitted: Collection[str]) -> tuple[Any, list[str]]:
        """The state with every part that is not permitted left out, and the undeclared parts that were dropped."""
        if not isinstance(state, Mapping):
            # Only a mapping has parts; anything else is one part, the whole state.
            return (state if self.state.get(ANY) in permitted else None), ([] if ANY in self.state else ["(state)"])
        kept: dict[str, Any] = {}
        undeclared: list[str] = []
        nested = {part.split(".", 1)[0] for part in self.state if "." in part}
        for key, value in state.items():
            if key in nested and isinstance(value, Mapping):
                inner = {}
                for sub, sub_value in value.items():
                    capability = self._state_capability(key, sub)
                    if capability is None:
                        undeclared.append(f"{key}.{sub}")
                    elif capability in permitted:
                        inner[sub] = sub_value
                if inner:
                    kept[key] = inner
                continue
            capability = self._state_capability(key)
            if capability is None:
                undeclared.append(key)
            elif capability in permitted:
                kept[key] = value
        return kept, undeclared

    def metric_capability(self, name: str) -> str | None:
        base = name.split("[", 1)[0]
        return self.metrics.get(base, self.metrics.get(ANY))

    def filter_metrics(self, metrics: Mapping[str, float], permitted: Collection[str]) -> tuple[dict[str, float], list[str]]:
        kept: dict[str, float] = {}
        undeclared: list[str] = []
        for name, value in metrics.items():
            capability = self.metric_capability(name)
            if capability is None:
                undeclared.append(name)
            elif capability in permitted:
                kept[name] = value
        return kept, undeclared


def default_reads(domain: str) -> Reads:
    """What an integration that declares no READS needs: a capability named for it, which only an admin grants."""
    return Reads.every(f"{domain}.read")
