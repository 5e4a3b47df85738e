"""Zeroconf: the hub and unpaired agents announce themselves; what is announced is a hint, never trusted for authorization."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from .const import PROTOCOL_VERSION

_LOGGER = logging.getLogger(__name__)

HUB_SERVICE = "_roost._tcp.local."
AGENT_SERVICE = "_roost-agent._tcp.local."
MAX_TXT_VALUE = 200


@dataclass(frozen=True)
class Found:
    """One announcement: where a service says it is and what it says about itself."""

    name: str
    addresses: tuple[str, ...]
    port: int
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        host = self.addresses[0] if self.addresses else ""
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"


def _ip_version(interfaces: list[str] | None) -> IPVersion:
    if not interfaces:
        return IPVersion.V4Only
    versions = {ipaddress.ip_address(i).version for i in interfaces}
    return IPVersion.V4Only if versions == {4} else IPVersion.All


def _zeroconf(interfaces: list[str] | None) -> AsyncZeroconf:
    """Zeroconf bound to the given interface addresses (all interfaces when empty)."""
    if interfaces:
        return AsyncZeroconf(interfaces=list(interfaces), ip_version=_ip_version(interfaces))
    return AsyncZeroconf(ip_version=IPVersion.V4Only)


def _local_addresses(interfaces: list[str] | None) -> list[str]:
    if interfaces:
        return list(interfaces)
    import psutil

    found = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                found.append(addr.address)
    return found or ["127.0.0.1"]


def _clean(properties: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v)[:MAX_TXT_VALUE] for k, v in properties.items()}


def _safe_label(text: str) -> str:
    label = "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:50]
    return label or "roost"


class Announcer:
    """Announces one service until stopped."""

    def __init__(self, service: str, instance: str, port: int, properties: dict[str, Any], *, interfaces: list[str] | None = None) -> None:
        self.interfaces = interfaces
        addresses = _local_addresses(interfaces)
        name = f"{_safe_label(instance)}.{service}"
        self.info = AsyncServiceInfo(
            service,
            name,
            addresses=[socket.inet_aton(a) for a in addresses if ipaddress.ip_address(a).version == 4],
            port=port,
            properties={"v": str(PROTOCOL_VERSION), **_clean(properties)},
            server=f"{_safe_label(socket.gethostname())}.local.",
        )
        self._zc: AsyncZeroconf | None = None

    async def start(self) -> None:
        self._zc = _zeroconf(self.interfaces)
        await self._zc.async_register_service(self.info, allow_name_change=True)
        _LOGGER.info("announcing %s on %s", self.info.name, ", ".join(self.info.parsed_addresses()))

    async def stop(self) -> None:
        if self._zc is not None:
            try:
                await self._zc.async_unregister_service(self.info)
            finally:
                await self._zc.async_close()
                self._zc = None


class Browser:
    """Keeps the current set of announcements of one service type."""

    def __init__(self, service: str, *, interfaces: list[str] | None = None) -> None:
        self.service = service
        self.interfaces = interfaces
        self.found: dict[str, Found] = {}
        self.changed = asyncio.Event()
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._zc = _zeroconf(self.interfaces)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, [self.service], handlers=[self._on_change])

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            if self.found.pop(name, None) is not None:
                self.changed.set()
            return
        task = asyncio.ensure_future(self._resolve(zeroconf, service_type, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zeroconf, 3000):
            return
        props = {}
        for key, value in (info.properties or {}).items():
            try:
                props[key.decode()] = (value or b"").decode()[:MAX_TXT_VALUE]
            except UnicodeDecodeError:
                continue
        self.found[name] = Found(name=name, addresses=tuple(info.parsed_addresses()), port=info.port or 0, properties=props)
        self.changed.set()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            await self._zc.async_close()
        self._browser = self._zc = None


async def browse(service: str, *, interfaces: list[str] | None = None, timeout: float = 3.0) -> list[Found]:
    """Everything announcing `service` within `timeout` seconds."""
    browser = Browser(service, interfaces=interfaces)
    await browser.start()
    try:
        await asyncio.sleep(timeout)
    finally:
        found = sorted(browser.found.values(), key=lambda f: f.name)
        await browser.stop()
    return found
