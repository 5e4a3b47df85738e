"""linux_host through the real plugin kernel on this real host: state shape, plausible values, rates, config."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from roost.core.const import STATE_LOADED, STATE_NOT_AVAILABLE, STATE_SETUP_ERROR
from roost.integrations.linux_host.cgroups import parse_mountinfo
from roost.integrations.linux_host.collector import real_mounts
from roost.integrations.linux_host.const import METRIC_FIELDS, PSEUDO_FILESYSTEMS

DOMAIN = "linux_host"
UNITS = {"percent", "bytes", "bytes_per_second", "seconds", "celsius", "rpm", "count", ""}
HEADLINE = ("cpu_percent", "mem_used_percent", "disk_used_percent", "load_1")


async def collect(manager):
    out = await manager.collect_all()
    integ = manager.integrations[DOMAIN]
    assert integ.state == STATE_LOADED, integ.reason
    metrics = {k.removeprefix(f"{DOMAIN}."): v for k, v in out["metrics"].items()}
    return out["data"][DOMAIN], metrics


# --------------------------------------------------------------- loading


async def test_loads_with_fields_and_capabilities(start_linux_host):
    manager = await start_linux_host()
    integ = manager.integrations[DOMAIN]
    assert integ.state == STATE_LOADED, integ.reason
    assert integ.source == "builtin"
    assert {"host.metrics.read", "network.info.read"} <= set(manager.capabilities())
    fields = manager.fields()
    assert set(fields) == {f"{DOMAIN}.{name}" for name in METRIC_FIELDS}
    for name, meta in fields.items():
        assert meta["unit"] in UNITS, name
        assert meta["description"].endswith("."), name
        assert meta["label"], name


async def test_every_metric_is_described(start_linux_host):
    manager = await start_linux_host({"ignore_interfaces": []})
    await collect(manager)
    _, metrics = await collect(manager)
    for name in metrics:
        assert name.split("[", 1)[0] in METRIC_FIELDS, name
    for name in HEADLINE:
        assert name in metrics, name


async def test_not_linux_is_not_available(start_linux_host, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    manager = await start_linux_host()
    integ = manager.integrations[DOMAIN]
    assert integ.state == STATE_NOT_AVAILABLE
    assert "darwin" in integ.reason


# ----------------------------------------------------------------- state


async def test_state_shape(start_linux_host):
    manager = await start_linux_host()
    state, metrics = await collect(manager)
    json.dumps(state)
    assert set(state) >= {"facts", "cpu", "memory", "disks", "disk_io", "network", "uptime_s", "processes", "services"}
    assert set(state) <= {"facts", "cpu", "memory", "disks", "disk_io", "network", "sensors", "uptime_s", "processes", "services"}

    facts = state["facts"]
    assert facts["hostname"] == socket.gethostname()
    assert facts["kernel"] == os.uname().release
    assert facts["arch"] == os.uname().machine
    assert facts["cpu_cores_logical"] == psutil.cpu_count()
    assert facts["mem_total_bytes"] == psutil.virtual_memory().total
    assert facts["boot_time"] == int(psutil.boot_time())
    assert isinstance(facts["macs"], dict)
    for iface, mac in facts["macs"].items():
        assert len(mac.split(":")) == 6 and mac != "00:00:00:00:00:00", (iface, mac)
    if Path("/etc/os-release").exists():
        assert facts["os"] and facts["os_id"]
    assert isinstance(facts.get("virtualization", "none"), str)

    memory = state["memory"]
    assert set(memory) == {
        "total_bytes", "used_bytes", "available_bytes", "percent",
        "swap_total_bytes", "swap_used_bytes", "swap_percent", "limit_source",
    }
    assert memory["limit_source"] in ("host", "cgroup")

    for entry in state["network"]:
        assert {"name", "addresses", "rx_bytes", "tx_bytes", "errors", "drops"} <= set(entry)
        for addr in entry["addresses"]:
            assert addr["family"] in ("ipv4", "ipv6") and addr["address"]

    assert "sensors" not in state or state["sensors"]  # absent, never empty
    services = state["services"]
    assert isinstance(services["available"], bool)
    assert services["available"] or services["reason"]


async def test_values_are_plausible(start_linux_host):
    manager = await start_linux_host()
    pids_before = len(psutil.pids())
    state, metrics = await collect(manager)
    pids_after = len(psutil.pids())
    cpu = state["cpu"]
    assert 0 <= cpu["percent"] <= 100
    assert cpu["count"] == psutil.cpu_count()
    assert len(cpu["per_core_percent"]) == psutil.cpu_count()
    assert all(0 <= p <= 100 for p in cpu["per_core_percent"])
    assert cpu["load"] == pytest.approx([round(x, 2) for x in os.getloadavg()], abs=1.0)
    assert metrics["cpu_percent"] == cpu["percent"]
    assert metrics["load_1"] == cpu["load"][0]

    memory = state["memory"]
    if memory["limit_source"] == "host":
        assert memory["total_bytes"] == psutil.virtual_memory().total
        assert "limit_cores" not in cpu or state["facts"].get("container")
    else:
        assert memory["total_bytes"] <= psutil.virtual_memory().total
    assert 0 < memory["used_bytes"] <= memory["total_bytes"]
    assert memory["used_bytes"] + memory["available_bytes"] == memory["total_bytes"]
    assert 0 <= memory["percent"] <= 100
    assert metrics["mem_total_bytes"] == memory["total_bytes"]
    assert metrics["mem_used_percent"] == memory["percent"]

    assert abs(state["uptime_s"] - (time.time() - psutil.boot_time())) < 5
    processes = state["processes"]
    assert min(pids_before, pids_after) - 30 <= processes["count"] <= max(pids_before, pids_after) + 30
    assert metrics["process_count"] == processes["count"]


async def test_disks_are_real_mounts(start_linux_host):
    manager = await start_linux_host()
    state, metrics = await collect(manager)
    disks = state["disks"]
    mounts = [d["mount"] for d in disks]
    assert "/" in mounts
    assert len(mounts) == len(set(mounts))
    for disk in disks:
        assert disk["mount"] == "/" or disk["fstype"] not in PSEUDO_FILESYSTEMS, disk
        assert not disk["mount"].startswith(("/proc", "/sys", "/dev/", "/run/user")), disk
        if "error" in disk:
            continue
        assert disk["used_bytes"] + disk["free_bytes"] <= disk["total_bytes"]
        assert 0 <= disk["percent"] <= 100
        assert metrics[f"disk_used_percent[{disk['mount']}]"] == disk["percent"]
    root = next(d for d in disks if d["mount"] == "/")
    usage = psutil.disk_usage("/")
    assert root["total_bytes"] == usage.total
    assert metrics["disk_used_percent"] == root["percent"]


async def test_rates_appear_on_second_cycle(start_linux_host):
    manager = await start_linux_host()
    first, first_metrics = await collect(manager)
    assert "read_bytes_per_s" not in first["disk_io"]
    assert all("read_bytes_per_s" not in d for d in first["disk_io"]["devices"])
    assert all("rx_bytes_per_s" not in n for n in first["network"])
    assert not any(k.startswith(("net_", "disk_read", "disk_write")) for k in first_metrics)

    await asyncio.sleep(0.2)
    second, metrics = await collect(manager)
    for device in second["disk_io"]["devices"]:
        assert device["read_bytes_per_s"] >= 0 and device["write_bytes_per_s"] >= 0
    if second["disk_io"]["devices"]:
        assert metrics["disk_read_bytes_per_s"] >= 0
        assert metrics["disk_write_bytes_per_s"] >= 0
    for entry in second["network"]:
        assert entry["rx_bytes_per_s"] >= 0 and entry["tx_bytes_per_s"] >= 0
    assert metrics["net_rx_bytes_per_s"] >= 0
    assert metrics["net_tx_bytes_per_s"] >= 0
    assert metrics["net_rx_bytes_per_s"] == pytest.approx(
        sum(v for k, v in metrics.items() if k.startswith("net_rx_bytes_per_s[")), abs=1
    )


async def test_file_write_shows_in_disk_rate(start_linux_host, tmp_path):
    manager = await start_linux_host()
    state, _ = await collect(manager)
    if not state["disk_io"]["devices"]:
        pytest.skip("no physical disk with I/O counters here")
    chunk = os.urandom(1024 * 1024)
    with open(tmp_path / "blob", "wb") as f:
        for _ in range(16):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    _, metrics = await collect(manager)
    assert metrics["disk_write_bytes_per_s"] > 0


async def test_loopback_traffic_shows_in_state_not_in_totals(start_linux_host):
    manager = await start_linux_host({"ignore_interfaces": []})
    state, _ = await collect(manager)
    lo = next((n for n in state["network"] if n["name"] == "lo"), None)
    if lo is None:
        pytest.skip("no loopback interface named lo")
    payload = b"x" * 60000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        for _ in range(20):
            tx.sendto(payload, rx.getsockname())
    await asyncio.sleep(0.1)
    state, metrics = await collect(manager)
    lo = next(n for n in state["network"] if n["name"] == "lo")
    assert lo["tx_bytes_per_s"] > 100_000
    assert "net_tx_bytes_per_s[lo]" not in metrics
    assert metrics["net_tx_bytes_per_s"] == pytest.approx(
        sum(v for k, v in metrics.items() if k.startswith("net_tx_bytes_per_s[")), abs=1
    )


async def test_broadcast_traffic_shows_in_interface_rate(start_linux_host):
    target = None
    stats = psutil.net_if_stats()
    for name, addrs in psutil.net_if_addrs().items():
        if name == "lo" or not stats.get(name) or not stats[name].isup:
            continue
        for addr in addrs:
            if addr.family == socket.AF_INET and addr.broadcast:
                target = (name, addr.address, addr.broadcast)
    if target is None:
        pytest.skip("no up interface with an IPv4 broadcast address")
    name, address, broadcast = target
    manager = await start_linux_host()
    await collect(manager)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        tx.bind((address, 0))
        for _ in range(50):
            tx.sendto(b"roost-test" * 100, (broadcast, 9))
    await asyncio.sleep(0.1)
    _, metrics = await collect(manager)
    assert metrics[f"net_tx_bytes_per_s[{name}]"] > 0
    assert metrics["net_tx_bytes_per_s"] >= metrics[f"net_tx_bytes_per_s[{name}]"]


async def test_ignore_interfaces_and_mounts(start_linux_host):
    manager = await start_linux_host({"ignore_interfaces": ["*"], "ignore_mounts": ["/"]})
    state, metrics = await collect(manager)
    assert state["network"] == []
    assert all(d["mount"] != "/" for d in state["disks"])
    assert "disk_used_percent[/]" not in metrics
    assert not any(k.startswith("net_") and "[" in k for k in metrics)


# ------------------------------------------------------------- processes


async def test_top_processes_bounded_and_sorted(start_linux_host):
    manager = await start_linux_host({"top_processes": 3})
    await asyncio.sleep(0.2)
    state, _ = await collect(manager)
    top_cpu, top_memory = state["processes"]["top_cpu"], state["processes"]["top_memory"]
    assert 0 < len(top_cpu) <= 3
    assert len(top_memory) == 3
    cpus = [p["cpu_percent"] for p in top_cpu]
    assert cpus == sorted(cpus, reverse=True)
    mems = [p["mem_bytes"] for p in top_memory]
    assert mems == sorted(mems, reverse=True)
    # Nothing bigger than the third entry was left out.
    biggest = sorted((p.memory_info().rss for p in psutil.process_iter()), reverse=True)
    assert mems[0] >= biggest[0] * 0.9
    for proc in top_cpu + top_memory:
        assert {"pid", "name", "username", "mem_bytes", "mem_percent"} <= set(proc)


# This host is shared with other work, so these find our own processes by pid
# instead of expecting them at the top.
async def test_busy_and_big_processes_are_measured(start_linux_host):
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    hog = subprocess.Popen(
        [
            sys.executable, "-c",
            "import time; x = b'r' * (400 * 1024 * 1024); print('up', flush=True); time.sleep(60)",
            "a" * 500,
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert hog.stdout.readline() == b"up\n"
        watch = psutil.Process(busy.pid)
        cpu_a, wall_a = sum(watch.cpu_times()[:2]), time.monotonic()
        manager = await start_linux_host({"top_processes": 50})
        await asyncio.sleep(0.6)
        state, _ = await collect(manager)
        cpu_b, wall_b = sum(watch.cpu_times()[:2]), time.monotonic()
        top_cpu = {p["pid"]: p for p in state["processes"]["top_cpu"]}
        top_memory = {p["pid"]: p for p in state["processes"]["top_memory"]}
        # The busy loop's own CPU time over (nearly) the same window; the host may be busy with other work.
        expected = (cpu_b - cpu_a) / (wall_b - wall_a) * 100
        assert expected > 0
        assert 0.5 * expected - 2 <= top_cpu[busy.pid]["cpu_percent"] <= 2 * expected + 2
        assert "while True" in top_cpu[busy.pid]["cmdline"]
        big = top_memory[hog.pid]
        assert big["mem_bytes"] >= 400 * 1024 * 1024
        mem_total = state["memory"]["total_bytes"]
        assert big["mem_percent"] == pytest.approx(big["mem_bytes"] / mem_total * 100, abs=0.01)
        assert len(big["cmdline"]) == 200
        assert big["cmdline"].startswith(sys.executable)
        assert big["username"] == psutil.Process().username()
    finally:
        busy.kill()
        hog.kill()
        busy.wait()
        hog.wait()


async def test_top_processes_zero_reports_count_only(start_linux_host):
    manager = await start_linux_host({"top_processes": 0})
    state, metrics = await collect(manager)
    assert set(state["processes"]) == {"count"}
    assert metrics["process_count"] > 0


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"top_processes": 500}, "top_processes"),
        ({"top_processes": -1}, "top_processes"),
        ({"top_processes": True}, "top_processes"),
        ({"ignore_mounts": "/boot"}, "ignore_mounts"),
        ({"ignore_interfaces": [1]}, "ignore_interfaces"),
        ({"services": "yes"}, "services"),
        ({"proc_root": "/nonexistent/proc"}, "proc_root"),
        ({"top_procs": 5}, "top_procs"),
    ],
)
async def test_bad_config_is_a_setup_error_naming_the_key(start_linux_host, config, key):
    manager = await start_linux_host(config)
    integ = manager.integrations[DOMAIN]
    assert integ.state == STATE_SETUP_ERROR
    assert f"[integrations.{DOMAIN}]" in integ.reason
    assert key in integ.reason


async def test_core_keys_are_accepted(start_linux_host):
    manager = await start_linux_host({"enabled": True, "timeout": 5, "top_processes": 50})
    assert manager.integrations[DOMAIN].state == STATE_LOADED


# ----------------------------------------------------- facts are cached


async def test_facts_are_read_once_not_every_cycle(start_linux_host, fake_host, fixtures):
    fake_host.write("etc/os-release", (fixtures / "os-release").read_text())
    manager = await start_linux_host(fake_host.config)
    state, _ = await collect(manager)
    assert state["facts"]["os"] == "Ubuntu 24.04.1 LTS"
    assert state["facts"]["os_id"] == "ubuntu"
    assert state["facts"]["os_version"] == "24.04"
    fake_host.write("etc/os-release", 'PRETTY_NAME="Changed"\nID=changed\n')
    state, _ = await collect(manager)
    assert state["facts"]["os"] == "Ubuntu 24.04.1 LTS"


# ------------------------------------------------------------ mount filter


def test_real_mounts_on_a_host(fixtures):
    mounts = parse_mountinfo((fixtures / "mountinfo_host.txt").read_text())
    kept = real_mounts(mounts, is_dir=lambda path: True)
    assert [(m.mount_point, m.source) for m in kept] == [
        ("/", "/dev/nvme0n1p2"),  # /home is the same btrfs and folds into it
        ("/boot/efi", "/dev/sda1"),  # the later mount on /boot/efi hides the first
        ("/mnt/backup", "backup@nas:/backups"),
        ("/tank", "tank"),
        ("/tank/media", "tank/media"),
    ]


def test_real_mounts_in_a_container(fixtures):
    mounts = parse_mountinfo((fixtures / "mountinfo_container.txt").read_text())
    files = {"/etc/resolv.conf", "/etc/hostname", "/etc/hosts"}
    kept = real_mounts(mounts, is_dir=lambda path: path not in files)
    assert [(m.mount_point, m.fstype) for m in kept] == [
        ("/", "overlay"),  # overlay is skipped elsewhere, but it is a container's root
        ("/data", "xfs"),
        ("/media", "ext4"),  # /photos is a bind of a folder on the same disk
        ("/mnt/nas", "nfs4"),
        ("/mnt/with space", "ext4"),
    ]


def test_real_mounts_ignore_globs(fixtures):
    mounts = parse_mountinfo((fixtures / "mountinfo_host.txt").read_text())
    kept = real_mounts(mounts, ignore=["/tank*", "/boot/*"], is_dir=lambda path: True)
    assert [m.mount_point for m in kept] == ["/", "/mnt/backup"]


# ---------------------------------------------------------------- sensors

Temp = namedtuple("Temp", "label current high critical")
Fan = namedtuple("Fan", "label current")


async def test_sensors_in_state_and_metrics(start_linux_host, monkeypatch):
    # This host has no hwmon and psutil reads a fixed /sys path, so psutil's
    # answer is the one thing stubbed here; the shaping under test is real.
    monkeypatch.setattr(
        psutil,
        "sensors_temperatures",
        lambda: {
            "coretemp": [Temp("Package id 0", 45.04, 80.0, 100.0), Temp("", float("nan"), None, None), Temp("", 40.0, None, None)],
            "nvme": [Temp("Composite", 38.85, 84.85, None), Temp("Composite", 41.0, None, None)],
        },
    )
    monkeypatch.setattr(psutil, "sensors_fans", lambda: {"thinkpad": [Fan("", 2100)]})
    manager = await start_linux_host()
    state, metrics = await collect(manager)
    json.dumps(state, allow_nan=False)
    temps = state["sensors"]["temperatures"]
    assert temps[0] == {"chip": "coretemp", "label": "Package id 0", "current_c": 45.0, "high_c": 80.0, "critical_c": 100.0}
    assert {"chip": "coretemp", "label": "temp3", "current_c": 40.0} in temps  # the NaN reading is left out
    assert len(temps) == 4
    assert state["sensors"]["fans"] == [{"chip": "thinkpad", "label": "fan1", "rpm": 2100}]
    assert metrics["temperature_c[coretemp/Package id 0]"] == 45.0
    assert metrics["temperature_c[nvme/Composite]"] == 38.9
    assert metrics["temperature_c[nvme/Composite#2]"] == 41.0  # two drives, one driver name
    assert metrics["fan_rpm[thinkpad/fan1]"] == 2100


async def test_no_sensors_leaves_the_key_out(start_linux_host, monkeypatch):
    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: {})
    monkeypatch.setattr(psutil, "sensors_fans", lambda: {})
    manager = await start_linux_host()
    state, metrics = await collect(manager)
    assert "sensors" not in state
    assert not any(k.startswith(("temperature_c", "fan_rpm")) for k in metrics)


def test_the_proc_stat_reader_gives_what_psutil_gives(tmp_path: Path) -> None:
    """The process scan reads /proc/PID/stat itself: same CPU time and RSS as psutil, also for a name with spaces and parentheses."""
    from roost.integrations.linux_host.collector import _read_stat

    odd = tmp_path / "a b) (c"
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "import sys; sum(range(5_000_000)); x = [0] * 3_000_000; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        proc = psutil.Process(child.pid)
        deadline = time.monotonic() + 30
        last = 0
        while time.monotonic() < deadline:  # until the list is allocated and the child blocks on its stdin
            now = proc.memory_info().rss
            if now > 20 * 1024 * 1024 and now == last:
                break
            last = now
            time.sleep(0.2)
        assert proc.name() == "a b) (c"
        # The child is idle now, blocked on its stdin: its figures hold still.
        busy, rss, start = _read_stat(child.pid)
        times, mem = proc.cpu_times(), proc.memory_info()
        assert busy == pytest.approx(times.user + times.system, abs=0.011)
        assert abs(rss - mem.rss) <= 256 * 1024  # the kernel's per-CPU page counters, summed a moment apart
        assert _read_stat(child.pid)[2] == start
        mine = psutil.Process().cpu_times()
        assert _read_stat(os.getpid())[0] == pytest.approx(mine.user + mine.system, abs=0.05)
    finally:
        child.stdin.close()
        child.wait(10)
    with pytest.raises(OSError):
        _read_stat(child.pid)  # exited and reaped
async def test_disk_usage_measures_a_reported_filesystem_now_and_refuses_others(start_linux_host, tmp_path):
    from roost.core.actions import ActionContext, ActionError

    manager = await start_linux_host()
    integ, spec = manager.actions()["linux_host.disk_usage"]
    assert spec.capability == "host.metrics.read" and not spec.destructive and spec.idempotent

    async def progress(message, percent=None):
        return None

    ctx = ActionContext(domain=DOMAIN, job_id="j1", node_id="n1", config=integ.context.config, data=integ.context.data, progress=progress)
    state, metrics = await collect(manager)
    result = await spec.handler(ctx, spec.schema({"mount": "/"}))
    usage = psutil.disk_usage("/")
    assert result["mount"] == "/" and result["total_bytes"] == usage.total
    assert abs(result["used_percent"] - metrics["disk_used_percent[/]"]) < 5  # the same figure the reports give, measured again
    with pytest.raises(ActionError, match="not one of the filesystems"):
        await spec.handler(ctx, spec.schema({"mount": str(tmp_path)}))  # a plain folder is no reported mount: nothing else is probed
