"""Named actions: what an integration lets the hub ask for, with a capability, a parameter schema and a handler."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Mapping

import voluptuous as vol
import voluptuous_serialize

from .capabilities import is_capability

ACTION_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
DEFAULT_ACTION_TIMEOUT = 60.0
MAX_OUTPUT_BYTES = 256 * 1024


class ActionError(Exception):
    """An action that ran and failed in a way its user should read (not a bug): the message says what to do."""


class ActionRefused(Exception):
    """An action that was not allowed to run: capability, ceiling, parameters, signature, rate limit."""


@dataclass
class ActionContext:
    """What a handler gets besides its parameters."""

    domain: str
    job_id: str
    node_id: str
    config: dict[str, Any]
    data: dict[str, Any]
    progress: Callable[[str, float | None], Awaitable[None]]
    logger: Any = None
    # The verified signed envelope of a destructive action (its parameters are the ones being run).
    envelope: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[ActionContext, dict[str, Any]], Any]


@dataclass(frozen=True)
class ActionSpec:
    """One action an integration offers.

    ``handler(ctx, params)`` may be async or plain (plain ones run in a
    thread); it returns a JSON-serialisable result (``{"output": "..."}`` is
    shown as text), raises ActionError with a message for the user, and calls
    ``await ctx.progress("message", percent)`` for long work. ``target`` names
    the parameter that identifies what a destructive action destroys (a guest
    id, a container): the operator's signature binds it.
    """

    name: str
    capability: str
    handler: Handler
    schema: vol.Schema = field(default_factory=lambda: vol.Schema({}))
    description: str = ""
    destructive: bool = False
    idempotent: bool = False
    timeout: float = DEFAULT_ACTION_TIMEOUT
    rate_limit_per_minute: int | None = None
    target: str | None = None
    # What a person calls it ("Restart container"); the dashboard words the id itself when empty.
    title: str = ""
    # Parameter -> where its possible values are in this node's state, "<domain>.<list>[].<field>"
    # ("docker.containers[].name"): the dashboard offers them to pick from.
    pickers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not ACTION_NAME_RE.match(self.name):
            raise ValueError(f"action name {self.name!r} must be dotted lower_snake_case, e.g. docker.container.restart")
        if not is_capability(self.capability):
            raise ValueError(f"action {self.name}: capability {self.capability!r} is not a dotted capability name")
        if self.destructive and not self.target:
            raise ValueError(f"destructive action {self.name} must name its target parameter (what the signature binds)")
        if not 0 < self.timeout <= 24 * 3600:
            raise ValueError(f"action {self.name}: timeout must be between 0 and 24 h")

    def describe(self) -> dict[str, Any]:
        """The JSON shape the agent sends to the hub, from which the dashboard builds a form."""
        return {
            "name": self.name,
            "capability": self.capability,
            "description": self.description,
            "destructive": self.destructive,
            "idempotent": self.idempotent,
            "timeout": self.timeout,
            "target": self.target,
            "params": schema_fields(self.schema),
            "title": self.title,
            "pickers": dict(self.pickers),
        }


def schema_fields(schema: vol.Schema) -> list[dict[str, Any]]:
    """Describe a voluptuous schema as form fields (voluptuous-serialize, as Home Assistant does)."""
    import voluptuous_serialize

    try:
        return voluptuous_serialize.convert(schema, custom_serializer=_custom)
    except ValueError:
        return [{"name": "params", "type": "json", "description": "free-form JSON parameters"}]


def _custom(value: Any) -> Any:
    if isinstance(value, vol.Match):
        return {"type": "string", "pattern": value.pattern.pattern}
    return voluptuous_serialize.UNSUPPORTED
