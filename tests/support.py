"""Helpers shared by Roost's tests (importable as `support`: pytest puts tests/ on the path)."""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, what: str) -> None:
    """Skip locally when a component is missing; in CI a missing component is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing; .ci/run must install and start it")
    pytest.skip(f"{what} is not available here")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    """Poll predicate() until it returns something truthy (connection errors count as not yet); bounded."""
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError as err:
            last = err
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


async def until(predicate, timeout: float = 10.0, what: str = "condition"):
    """The async form: await predicate() until it returns something truthy; bounded."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
