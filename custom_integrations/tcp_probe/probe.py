"""Open a TCP connection to each target, concurrently, and report whether and how fast it answered."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .const import CONF_HOST, CONF_NAME, CONF_PORT, CONF_TIMEOUT

# How long to wait for a polite close after a successful connect; the answer is already known.
CLOSE_TIMEOUT = 0.5


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe: ``latency_ms`` when up, ``error`` when down."""

    name: str
    host: str
    port: int
    up: bool
    latency_ms: float | None = None
    error: str | None = None

    def as_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"name": self.name, "host": self.host, "port": self.port, "up": self.up}
        if self.latency_ms is not None:
            state["latency_ms"] = self.latency_ms
        if self.error is not None:
            state["error"] = self.error
        return state


async def probe(name: str, host: str, port: int, timeout: float) -> ProbeResult:
    """Connect to host:port once; the latency includes name resolution, as a client would see it."""
    started = time.perf_counter()
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return ProbeResult(name, host, port, up=False, error=f"no answer within {timeout:g} s")
    except socket.gaierror as err:
        return ProbeResult(name, host, port, up=False, error=f"cannot resolve {host}: {err.strerror or err}")
    except ConnectionRefusedError:
        return ProbeResult(name, host, port, up=False, error="connection refused (nothing listens on that port)")
    except OSError as err:
        return ProbeResult(name, host, port, up=False, error=err.strerror or str(err) or type(err).__name__)
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
    except (OSError, TimeoutError):
        pass  # the target answered; how it hangs up does not matter
    return ProbeResult(name, host, port, up=True, latency_ms=latency_ms)


async def probe_all(targets: Iterable[Mapping[str, Any]]) -> list[ProbeResult]:
    """Probe every target at once, so a slow one costs its own timeout, not everyone's."""
    return list(
        await asyncio.gather(
            *(probe(t[CONF_NAME], t[CONF_HOST], t[CONF_PORT], t[CONF_TIMEOUT]) for t in targets)
        )
    )
