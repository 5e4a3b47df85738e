"""Roost's pytest plugin for integration authors: fixtures that load an integration for real and run it on a real hub.

Registered under the ``pytest11`` entry point, so installing Roost (with its
``testing`` extra for pytest-asyncio) makes these fixtures available in any
test suite:

* ``roost_integration`` — ``await roost_integration(source, config=None, role="agent")``
  loads and sets up one integration through the real kernel; returns a
  ``LoadedIntegration`` (``state``, ``reason``, ``fields``, ``capabilities``,
  ``actions``, ``await collect()``). Shut down after the test.
* ``roost_hub`` — ``await roost_hub(source, config=None, grants=None, ceiling=None, hub=None)``
  starts a real hub on real SQLite in ``tmp_path`` and an agent in the same
  process running the integration; returns a ``HubHarness`` (``await
  collect()``, ``history()``, ``run_action()``, ``grant()``, ``page()``,
  ``node_page()``, ``node()``). Stopped after the test.

``source`` is the integration's folder (``pathlib.Path``) or its domain
(``str``: a built-in, one in ``custom_dirs``, or an installed package's entry
point).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

try:
    import pytest_asyncio
except ImportError:  # the fixtures say what to install instead of failing to collect every test
    pytest_asyncio = None

MISSING_ASYNCIO = "roost.testing needs pytest-asyncio: pip install 'roost[testing]' (or pytest-asyncio)"


def _async_fixture(func: Callable[..., Any]) -> Any:
    if pytest_asyncio is None:

        @pytest.fixture(name=func.__name__)
        def unavailable() -> None:
            pytest.fail(MISSING_ASYNCIO)

        unavailable.__doc__ = func.__doc__
        return unavailable
    return pytest_asyncio.fixture(func)


@_async_fixture
async def roost_integration(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Load an integration through Roost's real kernel: ``integ = await roost_integration(source, config=..., role=...)``."""
    from .kernel import load_integration

    loaded: list[Any] = []

    async def load(source: Path | str, *, config: dict[str, Any] | None = None, role: str = "agent", custom_dirs: list[Path] | None = None) -> Any:
        integ = await load_integration(source, tmp_path / f"integration-{len(loaded)}", config=config, role=role, custom_dirs=custom_dirs)
        loaded.append(integ)
        return integ

    yield load
    for integ in reversed(loaded):
        await integ.close()


@_async_fixture
async def roost_hub(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Run a real hub with an in-process agent for an integration: ``hub = await roost_hub(source, grants=[...])``."""
    from .hub import start_hub

    started: list[Any] = []

    async def start(source: Path | str, **options: Any) -> Any:
        """Options: config, grants, ceiling, hub, custom_dirs, timeout (see roost.testing.hub.start_hub)."""
        harness = await start_hub(source, tmp_path / f"hub-{len(started)}", **options)
        started.append(harness)
        return harness

    yield start
    for harness in reversed(started):
        await harness.close()
