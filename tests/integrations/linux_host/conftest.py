"""Fixtures for the linux_host tests: the real plugin kernel, fake host trees for cgroups, a fake systemctl."""

from __future__ import annotations

import os
import stat
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from roost.core.plugins import IntegrationManager

FIXTURES = Path(__file__).parent / "fixtures"
DOMAIN = "linux_host"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
async def start_linux_host(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[IntegrationManager]]]:
    """Load linux_host through the real kernel with a config table, run its setup, shut it down after."""
    managers: list[IntegrationManager] = []

    async def start(config: dict[str, Any] | None = None) -> IntegrationManager:
        manager = IntegrationManager(
            role="agent",
            config={DOMAIN: config or {}},
            data_dir=tmp_path / "data",
            only=[DOMAIN],
            entry_points=False,
        )
        manager.load()
        await manager.setup_all()
        managers.append(manager)
        return manager

    yield start
    for manager in managers:
        await manager.shutdown_all()


class FakeHost:
    """A directory tree that plays a host's /proc, /sys, /run and /etc for cgroup and container detection."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = root / "proc"
        self.sys = root / "sys"
        (self.proc / "self").mkdir(parents=True)
        (self.proc / "1").mkdir(parents=True)
        self.sys.mkdir(parents=True)
        # Every tree has a real root mount so the disk collector has something to stat.
        self._mountinfo = ["21 1 254:0 / / rw,relatime - ext4 /dev/vda rw"]
        self.write("proc/self/cgroup", "0::/\n")
        self._flush_mountinfo()

    @property
    def config(self) -> dict[str, str]:
        return {"proc_root": str(self.proc), "sys_root": str(self.sys)}

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def _flush_mountinfo(self) -> None:
        self.write("proc/self/mountinfo", "\n".join(self._mountinfo) + "\n")

    def mount(self, line: str) -> None:
        self._mountinfo.append(line)
        self._flush_mountinfo()

    # ---- container markers

    def lxc(self) -> None:
        (self.proc / "1" / "environ").write_bytes(b"PATH=/usr/bin\0container=lxc\0TERM=linux\0")

    def docker(self) -> None:
        self.write(".dockerenv", "")

    # ---- cgroup v2: one unified tree, this process at `path` inside it

    def cgroup_v2(
        self,
        *,
        path: str = "/",
        memory_max: str = "max",
        memory_current: int = 0,
        inactive_file: int = 0,
        cpu_max: str = "max 100000",
        usage_usec: int = 0,
    ) -> Path:
        self.write("proc/self/cgroup", f"0::{path}\n")
        self.mount("30 21 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate")
        group = self.sys / "fs" / "cgroup" / path.strip("/")
        group.mkdir(parents=True, exist_ok=True)
        self.write_v2(group, memory_max=memory_max, memory_current=memory_current, inactive_file=inactive_file,
                      cpu_max=cpu_max, usage_usec=usage_usec)
        return group

    def write_v2(self, group: Path, *, memory_max: str, memory_current: int, inactive_file: int, cpu_max: str,
                 usage_usec: int) -> None:
        group.mkdir(parents=True, exist_ok=True)
        (group / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (group / "memory.max").write_text(f"{memory_max}\n")
        (group / "memory.current").write_text(f"{memory_current}\n")
        (group / "memory.stat").write_text(
            f"anon 1000\nfile 2000\nactive_file {inactive_file // 2}\ninactive_file {inactive_file}\nslab 10\n"
        )
        (group / "cpu.max").write_text(f"{cpu_max}\n")
        self.set_usage_usec(group, usage_usec)

    @staticmethod
    def set_usage_usec(group: Path, usage_usec: int) -> None:
        (group / "cpu.stat").write_text(
            f"usage_usec {usage_usec}\nuser_usec {usage_usec // 2}\nsystem_usec {usage_usec // 2}\n"
            "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
        )

    # ---- cgroup v1: separate memory and cpu,cpuacct hierarchies

    def cgroup_v1(
        self,
        *,
        path: str = "/",
        mount_root: str = "/",
        limit_in_bytes: int = 9223372036854771712,
        usage_in_bytes: int = 0,
        total_inactive_file: int = 0,
        cfs_quota_us: int = -1,
        cfs_period_us: int = 100000,
        cpuacct_usage_ns: int = 0,
    ) -> tuple[Path, Path]:
        """Write v1 hierarchies; without a cgroup namespace the mount root is the container's path."""
        self.write(
            "proc/self/cgroup",
            textwrap.dedent(
                f"""\
                12:pids:{path}
                5:cpu,cpuacct:{path}
                4:memory:{path}
                1:name=systemd:{path}
                0::/
                """
            ),
        )
        self.mount("30 21 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755")
        self.mount(f"31 30 0:27 {mount_root} /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory")
        self.mount(
            f"32 30 0:28 {mount_root} /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu,cpuacct"
        )
        relative = "" if path == mount_root else os.path.relpath(path, mount_root)
        memory = self.sys / "fs" / "cgroup" / "memory" / relative
        cpu = self.sys / "fs" / "cgroup" / "cpu,cpuacct" / relative
        memory.mkdir(parents=True, exist_ok=True)
        cpu.mkdir(parents=True, exist_ok=True)
        (memory / "memory.limit_in_bytes").write_text(f"{limit_in_bytes}\n")
        (memory / "memory.usage_in_bytes").write_text(f"{usage_in_bytes}\n")
        (memory / "memory.stat").write_text(
            f"cache 5000\nrss 1000\ninactive_file {total_inactive_file}\n"
            f"hierarchical_memory_limit {limit_in_bytes}\ntotal_cache 5000\ntotal_rss 1000\n"
            f"total_inactive_file {total_inactive_file}\n"
        )
        (cpu / "cpu.cfs_quota_us").write_text(f"{cfs_quota_us}\n")
        (cpu / "cpu.cfs_period_us").write_text(f"{cfs_period_us}\n")
        (cpu / "cpuacct.usage").write_text(f"{cpuacct_usage_ns}\n")
        return memory, cpu


@pytest.fixture
def fake_host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path / "host")


@pytest.fixture
def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Put a `systemctl` on PATH that logs its argv and prints a recorded output (or fails, or hangs).

    Returns a function taking the output text and options; the log file path is returned.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"

    def install(output: str = "", *, exit_status: int = 0, stderr: str = "", sleep: float = 0.0) -> Path:
        (tmp_path / "systemctl.out").write_text(output)
        (tmp_path / "systemctl.err").write_text(stderr)
        script = bin_dir / "systemctl"
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$@" >> "{log}"\n'
            + (f"sleep {sleep}\n" if sleep else "")
            + f'cat "{tmp_path / "systemctl.out"}"\n'
            f'cat "{tmp_path / "systemctl.err"}" >&2\n'
            f"exit {exit_status}\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        return log

    return install
