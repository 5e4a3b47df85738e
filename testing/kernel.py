"""Load one integration through Roost's real kernel (IntegrationManager) and look at what it reports."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.core.const import ROLE_AGENT
from roost.core.integration import Integration, Manifest, ManifestError
from roost.core.plugins import IntegrationManager, builtin_dir

Source = Path | str


def source_domain(source: Source) -> str:
    """The domain a source names: a folder's manifest domain, or the string itself (a built-in or entry point)."""
    if isinstance(source, os.PathLike):
        folder = Path(source)
        try:
            return Manifest.from_path(folder / "manifest.json").domain
        except ManifestError as err:
            raise ValueError(f"{folder} is not an integration folder: {err}") from None
    if not isinstance(source, str) or not source:
        raise TypeError(f"an integration source is a folder (pathlib.Path) or a domain (str), got {source!r}")
    return source


def custom_dir_for(source: Source, workdir: Path) -> list[Path]:
    """A private custom integrations folder holding only this integration (a symlink), or none for a domain.

    The folder's parent may hold other integrations (a repository's
    custom_integrations/); linking only this one keeps them out of the test.
    """
    if not isinstance(source, os.PathLike):
        return []
    folder = Path(source).resolve()
    custom = workdir / "custom_integrations"
    custom.mkdir(parents=True, exist_ok=True)
    link = custom / folder.name
    if not link.exists():
        link.symlink_to(folder, target_is_directory=True)
    return [custom]


def others_disabled(domain: str, config: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The integrations config table for a test: this integration's table, and every built-in but it turned off."""
    tables: dict[str, dict[str, Any]] = {}
    for folder in sorted(builtin_dir().iterdir()):
        if folder.name != domain and (folder / "manifest.json").is_file():
            tables[folder.name] = {"enabled": False}
    tables[domain] = dict(config or {})
    return tables


@dataclass(frozen=True)
class Collection:
    """What one collection of the integration produced: its state and its metrics (names prefixed with the domain)."""

    state: Any
    metrics: dict[str, float] = field(default_factory=dict)


class LoadedIntegration:
    """One integration loaded and set up by a real IntegrationManager, as an agent (or the hub) loads it."""

    def __init__(self, manager: IntegrationManager, domain: str) -> None:
        self.manager = manager
        self.domain = domain

    @property
    def integration(self) -> Integration:
        try:
            return self.manager.integrations[self.domain]
        except KeyError:
            raise LookupError(
                f"integration {self.domain!r} was not loaded in the {self.manager.role} role: "
                "is it installed, and does its manifest's roles list name that role?"
            ) from None

    @property
    def state(self) -> str:
        """loaded, not_available, setup_retry, setup_error, collect_error or disabled."""
        return self.integration.state

    @property
    def reason(self) -> str:
        return self.integration.reason

    @property
    def status(self) -> dict[str, Any]:
        """The status the agent sends to the hub and the dashboard shows."""
        return self.integration.as_status()

    @property
    def fields(self) -> dict[str, dict[str, str]]:
        """Field metadata by full metric name (``domain.name``)."""
        prefix = f"{self.domain}."
        return {name: meta for name, meta in self.manager.fields().items() if name.startswith(prefix)}

    @property
    def capabilities(self) -> list[str]:
        return sorted(self.integration.capabilities) if self.integration.active else []

    @property
    def actions(self) -> dict[str, Any]:
        """The integration's ActionSpecs by name (only once it set up)."""
        return dict(self.integration.actions) if self.integration.active else {}

    @property
    def module(self) -> Any:
        return self.integration.module

    async def collect(self) -> Collection:
        """Run one real collection cycle; the integration's state afterwards says whether it went well."""
        out = await self.manager.collect_all()
        prefix = f"{self.domain}."
        metrics = {name: value for name, value in out["metrics"].items() if name.startswith(prefix)}
        return Collection(state=out["data"].get(self.domain), metrics=metrics)

    async def close(self) -> None:
        await self.manager.shutdown_all()


async def load_integration(
    source: Source,
    workdir: Path,
    *,
    config: Mapping[str, Any] | None = None,
    role: str = ROLE_AGENT,
    custom_dirs: list[Path] | None = None,
) -> LoadedIntegration:
    """Load and set up one integration the way Roost does, and return it; call ``close()`` when done.

    ``source`` is the integration's folder (a ``pathlib.Path``: loaded as a
    custom integration), or a domain (a ``str``: a built-in, one in
    ``custom_dirs``, or one an installed package registers under the entry
    point group ``roost``). ``config`` is its ``[integrations.<domain>]``
    table. Loading never raises because of the integration: look at
    ``state`` and ``reason``.
    """
    domain = source_domain(source)
    workdir.mkdir(parents=True, exist_ok=True)
    manager = IntegrationManager(
        role=role,
        config={domain: dict(config or {})},
        data_dir=workdir,
        custom_dirs=[*custom_dir_for(source, workdir), *(custom_dirs or [])],
        entry_points=not isinstance(source, os.PathLike),
        only=[domain],
    )
    manager.load()
    await manager.setup_all()
    return LoadedIntegration(manager, domain)
