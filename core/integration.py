"""What an integration is at run time: its manifest, context, state and the errors it may raise."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import voluptuous as vol

from .const import (
    DEFAULT_COLLECT_TIMEOUT,
    INTEGRATION_STATES,
    ROLE_AGENT,
    ROLE_HUB,
    STATE_COLLECT_ERROR,
    STATE_LOADED,
)

DOMAIN_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

SOURCE_BUILTIN = "builtin"
SOURCE_CUSTOM = "custom"
SOURCE_ENTRY_POINT = "entry_point"

# Found and imported, not set up yet; never shown once loading has finished.
STATE_DISCOVERED = "discovered"


class IntegrationError(Exception):
    """Base of the errors an integration raises on purpose."""


class NotAvailable(IntegrationError):
    """This host lacks what the integration needs; not an error, not retried."""


class NotReady(IntegrationError):
    """A transient setup failure; the core retries with backoff."""


class ManifestError(ValueError):
    """A manifest.json that cannot be read or does not validate."""


MANIFEST_SCHEMA = vol.Schema(
    {
        vol.Required("domain"): vol.All(str, vol.Match(DOMAIN_RE, msg="domain must be lower_snake_case, 1-64 chars")),
        vol.Required("name"): vol.All(str, vol.Length(min=1, max=100)),
        vol.Required("version"): vol.All(str, vol.Match(r"^\d+(\.\d+){0,3}([.-]?\w+)?$", msg="version must look like 1.2.3")),
        vol.Required("roles"): vol.All(
            [vol.In([ROLE_AGENT, ROLE_HUB], msg="roles may only contain 'agent' and 'hub'")],
            vol.Length(min=1, msg="roles must name at least one of 'agent', 'hub'"),
        ),
        vol.Optional("requirements", default=list): [vol.All(str, vol.Length(min=1, max=200))],
        vol.Optional("dependencies", default=list): [vol.All(str, vol.Match(DOMAIN_RE))],
        vol.Optional("documentation", default=""): str,
        vol.Optional("description", default=""): str,
        vol.Optional("codeowners", default=list): [str],
    },
    extra=vol.PREVENT_EXTRA,
)


@dataclass(frozen=True)
class Manifest:
    """A validated manifest.json, read without importing the integration's code."""

    domain: str
    name: str
    version: str
    roles: tuple[str, ...]
    requirements: tuple[str, ...]
    dependencies: tuple[str, ...]
    documentation: str
    description: str

    @classmethod
    def from_dict(cls, raw: Any, *, expected_domain: str | None = None) -> Manifest:
        try:
            data = MANIFEST_SCHEMA(raw)
        except vol.Invalid as err:
            raise ManifestError(humanize_invalid(err, raw)) from None
        if expected_domain is not None and data["domain"] != expected_domain:
            raise ManifestError(
                f"domain {data['domain']!r} does not match its folder {expected_domain!r}; "
                "rename one so they agree"
            )
        return cls(
            domain=data["domain"],
            name=data["name"],
            version=data["version"],
            roles=tuple(data["roles"]),
            requirements=tuple(data["requirements"]),
            dependencies=tuple(data["dependencies"]),
            documentation=data["documentation"],
            description=data["description"],
        )

    @classmethod
    def from_text(cls, text: str, *, expected_domain: str | None = None) -> Manifest:
        try:
            raw = json.loads(text)
        except ValueError as err:
            raise ManifestError(f"manifest.json is not valid JSON: {err}") from None
        return cls.from_dict(raw, expected_domain=expected_domain)

    @classmethod
    def from_path(cls, path: Path, *, expected_domain: str | None = None) -> Manifest:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ManifestError(f"cannot read {path}: {err.strerror}") from None
        return cls.from_text(text, expected_domain=expected_domain)


def humanize_invalid(err: vol.Invalid, data: Any = None) -> str:
    """Turn a voluptuous error into 'key.path: what is wrong' lines."""
    errors = err.errors if isinstance(err, vol.MultipleInvalid) else [err]
    lines = []
    for one in errors:
        path = ".".join(str(p) for p in one.path) or "(top level)"
        lines.append(f"{path}: {one.msg}")
    return "; ".join(lines)


@dataclass
class IntegrationContext:
    """The one object passed to an integration's hooks."""

    domain: str
    role: str
    config: dict[str, Any]
    data_dir: Path
    logger: logging.Logger
    # The integration's own place for state kept between calls.
    data: dict[str, Any] = field(default_factory=dict)
    # What the hub set for this integration on this node (a storage manifest), after the integration's
    # SETTINGS_SCHEMA accepted it; kept across restarts by the agent. {} until the hub sends any.
    settings: dict[str, Any] = field(default_factory=dict)
    # Ask for a collection cycle now instead of at the next interval (something the hub must hear about
    # at once, such as a listed drive that vanished). Safe to call from any thread; calls close together
    # make one cycle.
    report_now: Callable[[], None] = field(default=lambda: None)


@dataclass
class Integration:
    """One discovered integration and where it stands."""

    manifest: Manifest
    source: str
    path: str
    module: ModuleType | None = None
    context: IntegrationContext | None = None
    state: str = STATE_DISCOVERED
    reason: str = ""
    since: float = field(default_factory=time.time)
    timeout: float = DEFAULT_COLLECT_TIMEOUT
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)
    actions: dict[str, Any] = field(default_factory=dict)  # name -> roost.core.actions.ActionSpec
    reads: Any = None  # roost.core.reads.Reads: the capability each part of its report needs
    retry_at: float | None = None
    retries: int = 0
    # The hub half's declarations after its setup: kind -> list (headline_figures, notification_receivers, ...).
    hub_declarations: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.manifest.domain

    def set_state(self, state: str, reason: str = "") -> None:
        assert state in INTEGRATION_STATES or state == STATE_DISCOVERED, state
        if state != self.state or reason != self.reason:
            self.since = time.time()
        self.state = state
        self.reason = reason

    @property
    def active(self) -> bool:
        """Set up and being collected (a failed collection does not end that)."""
        return self.state in (STATE_LOADED, STATE_COLLECT_ERROR)

    def as_status(self) -> dict[str, Any]:
        """The JSON shape sent to the hub and served by the API."""
        status: dict[str, Any] = {
            "domain": self.domain,
            "name": self.manifest.name,
            "version": self.manifest.version,
            "source": self.source,
            "state": self.state,
            "reason": self.reason,
            "since": round(self.since, 3),
        }
        if self.retry_at is not None:
            status["retry_at"] = round(self.retry_at, 3)
            status["retries"] = self.retries
        return status
