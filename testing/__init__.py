"""Test helpers for integration authors: load an integration through the real kernel, or run it on a real hub.

Installing Roost registers the pytest plugin ``roost.testing.plugin`` (entry
point group ``pytest11``), which turns these helpers into fixtures
(``roost_integration``, ``roost_hub``); docs/integrations.md lists them. The
helpers can also be used without pytest::

    integ = await load_integration(Path("custom_integrations/mydomain"), tmp_dir)
    snapshot = await integ.collect()
"""

from __future__ import annotations

from .kernel import Collection, LoadedIntegration, load_integration, source_domain

__all__ = ["Collection", "LoadedIntegration", "load_integration", "source_domain", "HubHarness", "JobRefused", "start_hub"]


def __getattr__(name: str):
    # The hub half pulls in aiohttp and the hub; importing it only when asked keeps the plugin light.
    if name in ("HubHarness", "JobRefused", "start_hub"):
        from . import hub

        return getattr(hub, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
