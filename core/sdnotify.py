"""systemd's notify protocol in a few lines: READY=1, STATUS= and the watchdog ping, with no library."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys

_LOGGER = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send one datagram to $NOTIFY_SOCKET; False when not started by systemd (or the socket is gone).

    An abstract socket is named with a leading "@", which is a NUL byte on the wire.

    Never waits: this runs on the event loop, and the kernel queues only
    net.unix.max_dgram_qlen unread datagrams (10 by default) at the socket. A
    blocking send to a full queue (systemd busy, or a supervisor that does not
    read) would stop the loop (no reports, no WebSocket pongs, SIGTERM not
    handled) until someone reads. A message that does not fit is dropped
    instead; a missed watchdog ping is what a stuck reader gets anyway.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.send(message.encode(), socket.MSG_DONTWAIT)
        return True
    except BlockingIOError:
        _LOGGER.debug("sd_notify to %s: its queue is full (nobody reads it); %r dropped", address, message.split("\n", 1)[0])
        return False
    except OSError as err:
        _LOGGER.debug("sd_notify to %s failed: %s", address, err)
        return False


def _watched_pids() -> set[str]:
    """This process, and under a PyInstaller one-file build also its bootloader: the main PID systemd watches is the parent then."""
    pids = {str(os.getpid())}
    if getattr(sys, "frozen", False):
        pids.add(str(os.getppid()))
    return pids


def watchdog_interval() -> float | None:
    """Half of WatchdogSec= in seconds when systemd asks this process (not a child of it) for pings, else None."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (pid and pid not in _watched_pids()):
        return None
    return int(usec) / 2_000_000


async def watchdog(alive=None) -> None:
    """Ping the watchdog from the event loop until cancelled: a stuck loop (or `alive()` false) stops the pings and systemd restarts us.

    `alive` is an optional callable saying the process still does its work;
    while it returns False no ping is sent.
    """
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        if alive is None or alive():
            notify("WATCHDOG=1")
        await asyncio.sleep(interval)
