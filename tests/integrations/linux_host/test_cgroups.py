"""Container limits from cgroup v1 and v2 fixture trees, read directly and through the real kernel."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from roost.core.const import STATE_LOADED
from roost.integrations.linux_host.cgroups import (
    detect_container,
    parse_mountinfo,
    parse_proc_cgroup,
    read_cpu_quota,
    read_memory_limit,
    resolve_layout,
)

DOMAIN = "linux_host"
MIB = 1024 * 1024


async def collect(manager):
    out = await manager.collect_all()
    integ = manager.integrations[DOMAIN]
    assert integ.state == STATE_LOADED, integ.reason
    metrics = {k.removeprefix(f"{DOMAIN}."): v for k, v in out["metrics"].items()}
    return out["data"][DOMAIN], metrics


# ---------------------------------------------------------------- parsing


def test_parse_proc_cgroup_hybrid():
    groups = parse_proc_cgroup("5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/x\n0::/init.scope\n")
    assert groups["cpu"] == groups["cpuacct"] == groups["memory"] == "/docker/abc"
    assert groups["name=systemd"] == "/x"
    assert groups[""] == "/init.scope"


def test_parse_mountinfo_fields_and_escapes():
    text = (
        "36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n"
        "garbage line\n"
        "40 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    first, second = parse_mountinfo(text)
    assert first.major_minor == "98:0"
    assert first.root == "/mnt1"
    assert first.mount_point == "/mnt/my disk"
    assert first.fstype == "ext3" and first.source == "/dev/root"
    assert first.super_options == ("rw", "errors=continue")
    assert second.fstype == "cgroup2"


# --------------------------------------------------------------------- v2


def test_v2_limited_in_a_cgroup_namespace(fake_host):
    group = fake_host.cgroup_v2(
        memory_max=str(512 * MIB), memory_current=300 * MIB, inactive_file=100 * MIB,
        cpu_max="150000 100000", usage_usec=2_500_000,
    )
    layout = resolve_layout(fake_host.proc, fake_host.sys)
    assert layout.version == 2
    assert layout.memory.dirs == (group,)
    memory = read_memory_limit(layout.memory)
    assert memory.limit_bytes == 512 * MIB
    assert memory.used_bytes == 200 * MIB
    quota = read_cpu_quota(layout.cpu, layout.cpuacct)
    assert quota.cores == 1.5
    assert quota.usage_seconds() == 2.5


def test_v2_unlimited(fake_host):
    fake_host.cgroup_v2(memory_max="max", cpu_max="max 100000")
    layout = resolve_layout(fake_host.proc, fake_host.sys)
    assert read_memory_limit(layout.memory) is None
    assert read_cpu_quota(layout.cpu, layout.cpuacct) is None


def test_v2_takes_the_tightest_limit_of_the_parents(fake_host):
    leaf = fake_host.cgroup_v2(
        path="/machine.slice/lxc-web.scope", memory_max=str(2048 * MIB), memory_current=10 * MIB,
        cpu_max="400000 100000",
    )
    parent = leaf.parent
    fake_host.write_v2(
        parent, memory_max=str(1024 * MIB), memory_current=700 * MIB, inactive_file=200 * MIB,
        cpu_max="100000 100000", usage_usec=9_000_000,
    )
    layout = resolve_layout(fake_host.proc, fake_host.sys)
    assert layout.memory.dirs == (leaf, parent, fake_host.sys / "fs" / "cgroup")
    memory = read_memory_limit(layout.memory)
    assert memory.limit_bytes == 1024 * MIB
    assert memory.used_bytes == 500 * MIB  # the parent's usage, where the limit bites
    quota = read_cpu_quota(layout.cpu, layout.cpuacct)
    assert quota.cores == 1.0
    assert quota.usage_seconds() == 9.0


def test_v2_path_outside_the_namespace_falls_back_to_the_mount(fake_host):
    group = fake_host.cgroup_v2(memory_max=str(64 * MIB), memory_current=MIB)
    fake_host.write("proc/self/cgroup", "0::/../../user.slice\n")
    layout = resolve_layout(fake_host.proc, fake_host.sys)
    assert layout.memory.dirs == (group,)
    assert read_memory_limit(layout.memory).limit_bytes == 64 * MIB


def test_v2_swap_limit(fake_host):
    group = fake_host.cgroup_v2(memory_max=str(512 * MIB), memory_current=100 * MIB)
    (group / "memory.swap.max").write_text(f"{256 * MIB}\n")
    (group / "memory.swap.current").write_text(f"{16 * MIB}\n")
    memory = read_memory_limit(resolve_layout(fake_host.proc, fake_host.sys).memory)
    assert memory.swap_limit_bytes == 256 * MIB
    assert memory.swap_used_bytes == 16 * MIB


def test_v2_root_group_without_controller_files(fake_host):
    group = fake_host.cgroup_v2()
    for name in ("memory.max", "cpu.max"):
        (group / name).unlink()
    layout = resolve_layout(fake_host.proc, fake_host.sys)
    assert layout.memory is None and layout.cpu is None
    assert read_memory_limit(layout.memory) is None
    assert read_cpu_quota(layout.cpu, layout.cpuacct) is None


def test_no_cgroup_files_at_all(tmp_path):
    layout = resolve_layout(tmp_path / "proc", tmp_path / "sys")
    assert layout.version is None
    assert read_memory_limit(layout.memory) is None


# --------------------------------------------------------------------- v1


def test_v1_limited_without_cgroup_namespace(fake_host):
    # Docker on cgroup v1 mounts the container's own group as the hierarchy root.
    memory_dir, cpu_dir = fake_host.cgroup_v1(
        path="/docker/4f1c", mount_root="/docker/4f1c", limit_in_bytes=256 * MIB, usage_in_bytes=200 * MIB,
        total_inactive_file=50 * MIB, cfs_quota_us=50000, cpuacct_usage_ns=3_000_000_000,
    )
    layout = resolve_layout(fake_host.proc, fake_host.sys)
    assert layout.version == 1
    assert layout.memory.dirs == (memory_dir,)
    memory = read_memory_limit(layout.memory)
    assert memory.limit_bytes == 256 * MIB
    assert memory.used_bytes == 150 * MIB
    quota = read_cpu_quota(layout.cpu, layout.cpuacct)
    assert quota.cores == 0.5
    assert quota.usage_seconds() == 3.0


def test_v1_limited_seen_from_the_host_hierarchy(fake_host):
    memory_dir, cpu_dir = fake_host.cgroup_v1(
        path="/lxc/web", mount_root="/", limit_in_bytes=128 * MIB, usage_in_bytes=64 * MIB, cfs_quota_us=200000,
    )
    layout = resolve_layout(fake_host.proc, fake_host.sys)
    top = fake_host.sys / "fs" / "cgroup" / "memory"
    assert layout.memory.dirs == (memory_dir, top / "lxc", top)
    assert read_memory_limit(layout.memory).limit_bytes == 128 * MIB
    assert read_cpu_quota(layout.cpu, layout.cpuacct).cores == 2.0


def test_v1_unlimited(fake_host):
    fake_host.cgroup_v1()
    layout = resolve_layout(fake_host.proc, fake_host.sys)
    assert layout.version == 1
    assert read_memory_limit(layout.memory) is None
    assert read_cpu_quota(layout.cpu, layout.cpuacct) is None


def test_v1_swap_from_memsw(fake_host):
    memory_dir, _ = fake_host.cgroup_v1(limit_in_bytes=256 * MIB, usage_in_bytes=100 * MIB)
    (memory_dir / "memory.memsw.limit_in_bytes").write_text(f"{512 * MIB}\n")
    (memory_dir / "memory.memsw.usage_in_bytes").write_text(f"{130 * MIB}\n")
    memory = read_memory_limit(resolve_layout(fake_host.proc, fake_host.sys).memory)
    assert memory.swap_limit_bytes == 256 * MIB
    assert memory.swap_used_bytes == 30 * MIB


def test_hybrid_prefers_the_v1_controllers(fake_host):
    # systemd's hybrid mode: v1 controllers plus an empty unified tree for process tracking.
    memory_dir, _ = fake_host.cgroup_v1(limit_in_bytes=100 * MIB, usage_in_bytes=MIB)
    fake_host.mount("40 30 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw")
    (fake_host.sys / "fs" / "cgroup" / "unified").mkdir()
    layout = resolve_layout(fake_host.proc, fake_host.sys)
    assert layout.version == 1
    assert read_memory_limit(layout.memory).limit_bytes == 100 * MIB


# -------------------------------------------------------------- container


def test_detect_lxc_from_init_environment(fake_host):
    fake_host.lxc()
    assert detect_container(fake_host.proc, fake_host.root) == "lxc"


def test_detect_docker_from_dockerenv(fake_host):
    fake_host.docker()
    assert detect_container(fake_host.proc, fake_host.root) == "docker"


def test_detect_podman_from_containerenv(fake_host):
    fake_host.write("run/.containerenv", "engine=\"podman-4.9\"\n")
    assert detect_container(fake_host.proc, fake_host.root) == "podman"


@pytest.mark.parametrize(
    ("membership", "runtime"),
    [
        ("12:memory:/docker/0123456789abcdef0123456789abcdef\n", "docker"),
        ("0::/system.slice/docker-0123456789abcdef0123.scope\n", "docker"),
        ("0::/machine.slice/libpod-0123456789ab.scope/container\n", "podman"),
        ("0::/lxc.payload.web/init.scope\n", "lxc"),
        ("0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-0a1b.scope\n", "kubernetes"),
        ("0::/user.slice/user-1000.slice/session-2.scope\n", None),
        ("0::/\n", None),
    ],
)
def test_detect_container_from_cgroup_path(fake_host, membership, runtime):
    fake_host.write("proc/self/cgroup", membership)
    assert detect_container(fake_host.proc, fake_host.root) == runtime


# ------------------------------------------------- through the real kernel


async def test_container_v2_limits_replace_host_values(start_linux_host, fake_host):
    fake_host.lxc()
    group = fake_host.cgroup_v2(
        memory_max=str(512 * MIB), memory_current=300 * MIB, inactive_file=100 * MIB,
        cpu_max="50000 100000", usage_usec=10_000_000,
    )
    manager = await start_linux_host(fake_host.config)
    await asyncio.sleep(0.4)
    fake_host.set_usage_usec(group, 10_100_000)  # 0.1 s of CPU in >= 0.4 s on a 0.5-core quota: <= 50 %
    state, metrics = await collect(manager)
    assert state["facts"]["container"] == "lxc"
    memory = state["memory"]
    assert memory["limit_source"] == "cgroup"
    assert memory["total_bytes"] == 512 * MIB
    assert memory["used_bytes"] == 200 * MIB
    assert memory["available_bytes"] == 312 * MIB
    assert memory["percent"] == pytest.approx(39.1, abs=0.1)
    assert metrics["mem_total_bytes"] == 512 * MIB
    assert metrics["mem_used_percent"] == memory["percent"]
    cpu = state["cpu"]
    assert cpu["limit_cores"] == 0.5
    assert 15 < cpu["percent"] <= 50
    assert metrics["cpu_percent"] == cpu["percent"]

    fake_host.set_usage_usec(group, 10_100_000)  # idle since
    state, metrics = await collect(manager)
    assert state["cpu"]["percent"] == 0.0


async def test_container_v1_limits_replace_host_values(start_linux_host, fake_host):
    fake_host.docker()
    _, cpu_dir = fake_host.cgroup_v1(
        path="/docker/4f1c", mount_root="/docker/4f1c", limit_in_bytes=256 * MIB, usage_in_bytes=200 * MIB,
        total_inactive_file=50 * MIB, cfs_quota_us=50000, cpuacct_usage_ns=1_000_000_000,
    )
    manager = await start_linux_host(fake_host.config)
    await asyncio.sleep(0.4)
    (cpu_dir / "cpuacct.usage").write_text("1100000000\n")
    state, metrics = await collect(manager)
    assert state["facts"]["container"] == "docker"
    assert state["memory"]["limit_source"] == "cgroup"
    assert state["memory"]["total_bytes"] == 256 * MIB
    assert state["memory"]["used_bytes"] == 150 * MIB
    assert state["cpu"]["limit_cores"] == 0.5
    assert 15 < state["cpu"]["percent"] <= 50


@pytest.mark.parametrize("version", [1, 2])
async def test_container_without_limits_reports_the_host(start_linux_host, fake_host, version):
    fake_host.docker()
    if version == 1:
        fake_host.cgroup_v1()
    else:
        fake_host.cgroup_v2()
    manager = await start_linux_host(fake_host.config)
    state, _ = await collect(manager)
    assert state["facts"]["container"] == "docker"
    assert state["memory"]["limit_source"] == "host"
    assert state["memory"]["total_bytes"] == psutil.virtual_memory().total
    assert "limit_cores" not in state["cpu"]


async def test_limits_outside_a_container_do_not_shrink_the_host(start_linux_host, fake_host):
    # An agent run as a systemd service with MemoryMax= still reports the host it watches.
    fake_host.cgroup_v2(path="/system.slice/roost-agent.service", memory_max=str(256 * MIB), cpu_max="50000 100000")
    manager = await start_linux_host(fake_host.config)
    state, _ = await collect(manager)
    assert "container" not in state["facts"]
    assert state["memory"]["limit_source"] == "host"
    assert state["memory"]["total_bytes"] == psutil.virtual_memory().total
    assert "limit_cores" not in state["cpu"]


async def test_limit_above_physical_memory_is_no_limit(start_linux_host, fake_host):
    fake_host.lxc()
    fake_host.cgroup_v2(memory_max=str(psutil.virtual_memory().total * 4), cpu_max=f"{(psutil.cpu_count() + 1) * 100000} 100000")
    manager = await start_linux_host(fake_host.config)
    state, _ = await collect(manager)
    assert state["memory"]["limit_source"] == "host"
    assert "limit_cores" not in state["cpu"]
