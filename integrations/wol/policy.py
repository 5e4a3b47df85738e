"""Where a magic packet may go (hub and agent alike): the broadcast addresses of the sender's own networks or a configured list, and the Wake-on-LAN ports.

A wake is a UDP datagram whose address and port an operator may choose per
request. Left open, that lets anyone with the operator role make the hub or
a relay agent send UDP to any address and port it can reach (a local
service on 127.0.0.1, a cloud metadata address, a host across a router).
So the sender only sends where a wake belongs: the limited broadcast
255.255.255.255, the broadcast address of each IPv4 network it is on
(computed from its interfaces at the moment of sending, loopback and
point-to-point links left out), the addresses its owner configured, and
ports 7 and 9 or configured ones. The owner's config is trusted; the
request is not.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

LIMITED_BROADCAST = "255.255.255.255"
WOL_PORTS = (7, 9)


def own_broadcasts(interfaces: dict[str, list[Any]] | None = None) -> list[str]:
    """The limited broadcast and the broadcast address of every IPv4 network on this host's interfaces.

    ``interfaces`` is ``psutil.net_if_addrs()`` (read now when not given).
    Loopback and /31, /32 networks have no broadcast that wakes anything.
    """
    if interfaces is None:
        import psutil

        interfaces = psutil.net_if_addrs()
    found = [LIMITED_BROADCAST]
    for addresses in interfaces.values():
        for entry in addresses:
            if getattr(entry, "family", None) != socket.AF_INET or not entry.address or not entry.netmask:
                continue
            try:
                network = ipaddress.ip_network(f"{entry.address}/{entry.netmask}", strict=False)
            except ValueError:
                continue
            if network.is_loopback or network.prefixlen >= 31:
                continue
            broadcast = str(network.broadcast_address)
            if broadcast not in found:
                found.append(broadcast)
    return found


@dataclass(frozen=True)
class Destinations:
    """What one sender (the hub, or one agent) allows, and where its owner widens it (for the refusal's wording)."""

    broadcasts: tuple[str, ...] = ()  # configured addresses, besides the own networks' broadcasts
    ports: tuple[int, ...] = ()  # configured ports, besides 7 and 9
    sender: str = "this host"
    broadcasts_setting: str = ""
    ports_setting: str = ""

    @classmethod
    def of(cls, broadcasts: Iterable[str], ports: Iterable[int], **names: str) -> Destinations:
        return cls(tuple(dict.fromkeys(str(ipaddress.ip_address(b)) for b in broadcasts)), tuple(dict.fromkeys(int(p) for p in ports)), **names)

    def allowed_broadcasts(self, interfaces: dict[str, list[Any]] | None = None) -> list[str]:
        return list(dict.fromkeys([*own_broadcasts(interfaces), *self.broadcasts]))

    def allowed_ports(self) -> list[int]:
        return sorted({*WOL_PORTS, *self.ports})

    def refusal(self, host: str, port: int, interfaces: dict[str, list[Any]] | None = None) -> str:
        """Why a packet to host:port may not be sent, with every address and port that may be used ('' when it may)."""
        broadcasts, ports = self.allowed_broadcasts(interfaces), self.allowed_ports()
        problems = []
        if str(ipaddress.ip_address(host)) not in broadcasts:
            problems.append(f"{host} is not a broadcast address {self.sender} wakes machines at")
        if port not in ports:
            problems.append(f"port {port} is not a Wake-on-LAN port {self.sender} sends to")
        if not problems:
            return ""
        return (
            f"{' and '.join(problems)}; allowed: {', '.join(broadcasts)} "
            f"(the broadcast addresses of {self.sender}'s own networks, and {self.broadcasts_setting}) "
            f"on ports {', '.join(map(str, ports))} (7 and 9, and {self.ports_setting}); "
            f"to wake through a broadcast address or port not listed, add it to those settings"
        )

    def as_dict(self, interfaces: dict[str, list[Any]] | None = None) -> dict[str, Any]:
        return {"broadcasts": self.allowed_broadcasts(interfaces), "ports": self.allowed_ports()}


class WakeLimiter:
    """At most ``per_minute`` wakes per key (the node woken) in any 60 s; 0 means no limit."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, *, max_keys: int = 10_000) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._sent: dict[str, deque[float]] = {}

    def wait(self, key: str, now: float | None = None) -> float:
        """0.0 and the wake is counted, or the seconds until one more is allowed."""
        if not self.per_minute:
            return 0.0
        now = time.monotonic() if now is None else now
        times = self._sent.setdefault(key, deque())
        while times and times[0] <= now - self.WINDOW:
            times.popleft()
        if len(times) >= self.per_minute:
            return max(0.1, times[0] + self.WINDOW - now)
        times.append(now)
        if len(self._sent) > self.max_keys:
            for stale in [k for k, v in self._sent.items() if not v or v[-1] <= now - self.WINDOW]:
                del self._sent[stale]
        return 0.0
