"""Two throwaway network namespaces joined by a veth pair, for tests that need a real LAN between two Roost hosts.

Everything lives inside namespaces this module creates: the veth pair is
created directly inside them (it never appears among the machine's own
interfaces), the addresses are a random 10.231.X.0/24 that exists only
there, and each namespace gets its loopback up and a multicast route on its
veth end so zeroconf's 224.0.0.251 goes over the pair. ``netns_pair()``
always deletes both namespaces again, killing whatever still runs in them,
even when the test fails.

Needs root and iproute2; ``unavailable()`` says why a test cannot run here.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

IP = "ip"
PREFIX = "roost"
SUBNET_FIRST_OCTETS = "10.231"
COMMAND_TIMEOUT = 15.0
CLONE_NEWNET = 0x40000000


class NetnsError(RuntimeError):
    """An `ip` command failed; the message carries its output."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([IP, *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def unavailable() -> str:
    """Why two namespaces cannot be made here ('' when they can): not root, no iproute2, or the kernel refuses."""
    if os.geteuid() != 0:
        return "root (to create network namespaces)"
    if shutil.which(IP) is None:
        return "iproute2's `ip` (apt-get install iproute2)"
    if shutil.which("unshare") is None:
        return "util-linux's `unshare` (apt-get install util-linux)"
    probe = f"{PREFIX}-probe-{secrets.token_hex(4)}"
    try:
        made = _ip("netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"network namespaces (`ip netns add` says: {made.stderr.strip()})"
        veth = _ip("link", "add", f"rp{probe[-8:]}", "netns", probe, "type", "veth", "peer", "name", f"rq{probe[-8:]}", "netns", probe, check=False)
        if veth.returncode != 0:
            return f"veth pairs (`ip link add ... type veth` says: {veth.stderr.strip()})"
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"iproute2 working here ({err})"
    finally:
        _ip("netns", "del", probe, check=False)
    return ""


@dataclass(frozen=True)
class NetnsPair:
    """Two namespaces, `hub` and `agent`, one veth end and one address in each."""

    tag: str
    hub_ns: str
    agent_ns: str
    hub_if: str
    agent_if: str
    hub_addr: str
    agent_addr: str

    def cmd(self, ns: str, *argv: str, hostname: str | None = None) -> list[str]:
        """``argv`` run inside namespace ``ns`` (as `ip netns exec NS ...`), with its own host name when given.

        The host name lives in a private UTS namespace (`unshare --uts`), so
        the process looks like another machine without renaming this one.
        The command execs all the way down: the pid Popen returns is the
        program itself, and signals reach it.
        """
        if hostname is not None:
            argv = ("unshare", "--uts", "--", "sh", "-c", 'printf %s "$0" > /proc/sys/kernel/hostname && exec "$@"', hostname, *argv)
        return [IP, "netns", "exec", ns, *argv]

    def hub_cmd(self, *argv: str, hostname: str | None = None) -> list[str]:
        return self.cmd(self.hub_ns, *argv, hostname=hostname)

    def agent_cmd(self, *argv: str, hostname: str | None = None) -> list[str]:
        return self.cmd(self.agent_ns, *argv, hostname=hostname)

    def executor(self, ns: str) -> ThreadPoolExecutor:
        """One worker thread that has joined ``ns``: sockets it opens live there (for a test's own HTTP checks)."""
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"netns-{ns}", initializer=_enter, initargs=(ns,))

    def pids(self, ns: str) -> list[int]:
        proc = _ip("netns", "pids", ns, check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()] if proc.returncode == 0 else []

    def wrapper(self, ns: str, executable: str, path: Path) -> Path:
        """A tiny script that runs ``executable`` inside ``ns`` with its arguments (for tools that take a binary path, like Playwright)."""
        path.write_text(f'#!/bin/sh\nexec {IP} netns exec {ns} {executable} "$@"\n', encoding="utf-8")
        path.chmod(0o755)
        return path


def _enter(ns: str) -> None:
    """Move the calling thread (only it) into network namespace ``ns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _make(tag: str) -> NetnsPair:
    third = secrets.randbelow(254) + 1
    pair = NetnsPair(
        tag=tag,
        hub_ns=f"{PREFIX}-hub-{tag}",
        agent_ns=f"{PREFIX}-agent-{tag}",
        # Interface names are at most 15 characters.
        hub_if=f"rh-{tag}",
        agent_if=f"ra-{tag}",
        hub_addr=f"{SUBNET_FIRST_OCTETS}.{third}.1",
        agent_addr=f"{SUBNET_FIRST_OCTETS}.{third}.2",
    )
    _ip("netns", "add", pair.hub_ns)
    _ip("netns", "add", pair.agent_ns)
    # Both ends are born inside their namespaces: nothing is ever added to the machine's own interfaces.
    _ip("link", "add", pair.hub_if, "netns", pair.hub_ns, "type", "veth", "peer", "name", pair.agent_if, "netns", pair.agent_ns)
    for ns, dev, addr in ((pair.hub_ns, pair.hub_if, pair.hub_addr), (pair.agent_ns, pair.agent_if, pair.agent_addr)):
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
    return pair


def _wait_link_up(pair: NetnsPair, timeout: float = 5.0) -> None:
    """A veth reports LOWER_UP once both ends are up; multicast sent before that is lost."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [_ip("-n", ns, "-br", "link", "show", dev).stdout for ns, dev in ((pair.hub_ns, pair.hub_if), (pair.agent_ns, pair.agent_if))]
        if all("LOWER_UP" in s for s in states):
            return
        time.sleep(0.05)
    raise NetnsError(f"veth {pair.hub_if}/{pair.agent_if} did not come up within {timeout:g} s")


def delete(pair: NetnsPair) -> list[str]:
    """Kill what still runs in the pair's namespaces (by pid) and delete them; returns problems instead of raising."""
    problems = []
    for ns in (pair.hub_ns, pair.agent_ns):
        leftovers = pair.pids(ns)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if leftovers:
            problems.append(f"killed processes left in {ns}: {leftovers}")
        gone = _ip("netns", "del", ns, check=False)
        if gone.returncode != 0 and "No such file" not in gone.stderr:
            problems.append(f"cannot delete {ns}: {gone.stderr.strip()}")
    return problems


def exists(name: str) -> bool:
    return name in _ip("netns", "list", check=False).stdout.split()


@contextmanager
def netns_pair() -> Iterator[NetnsPair]:
    """Make a hub namespace and an agent namespace with a unique tag, joined by a veth pair; delete both afterwards, always."""
    tag = secrets.token_hex(4)
    pair = NetnsPair(tag, f"{PREFIX}-hub-{tag}", f"{PREFIX}-agent-{tag}", "", "", "", "")
    try:
        pair = _make(tag)
        _wait_link_up(pair)
        yield pair
    finally:
        for problem in delete(pair):
            print(f"netns teardown: {problem}", file=sys.stderr)
