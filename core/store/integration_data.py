"""Store interface for what an integration's hub half keeps between runs: JSON values by key, one namespace per domain."""

from __future__ import annotations

import abc


class IntegrationDataStore(abc.ABC):
    @abc.abstractmethod
    async def get_integration_data(self, domain: str, key: str) -> str | None:
        """The JSON text kept under (domain, key), or None."""

    @abc.abstractmethod
    async def put_integration_data(self, domain: str, key: str, value: str, *, now: float) -> None:
        """Keep JSON text under (domain, key), replacing what was there, in one transaction."""

    @abc.abstractmethod
    async def delete_integration_data(self, domain: str, key: str) -> bool:
        """Forget (domain, key); True if it was there."""

    @abc.abstractmethod
    async def list_integration_data(self, domain: str, prefix: str = "") -> list[tuple[str, str]]:
        """Every (key, JSON text) of domain whose key starts with prefix (taken literally), by key."""
