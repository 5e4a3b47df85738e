#!/usr/bin/env python3
"""Benchmark: a real Roost agent's steady-state memory and CPU per collection cycle.

Starts a real hub (local agent off) and a real `roost agent` reporting to it
every second, lets the agent warm up, then measures the agent process's CPU
time over a window of cycles and its memory. The baseline is a "bare psutil
cycle" run in this process during the same window: the psutil calls the
linux_host collector makes, without Roost around them (no plugin kernel, no
shaping, no JSON, no spool, no WebSocket). A second baseline is the RSS of a
Python process that only imported psutil.

The agent runs with its built-in integrations, storage included (``--storage
off`` leaves it out, to compare). After the agent's window, the storage
collector's own cycle is timed in this process (SMART cached, as between its
30-minute runs: no smartctl call), and so is its mount watch while no mount
changes (target: under 0.1 % of a core).

Prints `name: value` lines; it measures, it never asserts. Targets (see
docs/benchmarks.md): agent RSS <= 30 MiB, agent_cycle_cpu_ratio <= 1.2 and
no more CPU per cycle than Prometheus node_exporter per scrape (when it is
installed: it runs next to the agent and is scraped once per interval).

    .venv/bin/python scripts/bench_agent.py            # ~90 s
    .venv/bin/python scripts/bench_agent.py --quick    # ~30 s (CI smoke)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from benchlib import HOST, MIB, free_port, machine_busy_seconds, out, roost, slope_per_hour, stop, tail


# ------------------------------------------------------------------ helpers


def node_exporter_binary() -> str | None:
    """Prometheus node_exporter (Debian's prometheus-node-exporter, or node_exporter on PATH), the native collector compared with."""
    return shutil.which("prometheus-node-exporter") or shutil.which("node_exporter") or next(
        (path for path in ("/usr/bin/prometheus-node-exporter",) if os.access(path, os.X_OK)), None
    )


def http_json(url: str, token: str | None = None, timeout: float = 2.0) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def api_token(hub_args: list[str], env: dict[str, str]) -> str | None:
    """A read-only API token through the documented commands (users add, api-token create); None if that fails."""
    import secrets

    password = secrets.token_urlsafe(24)
    added = subprocess.run(
        roost("users", "add", "bench", *hub_args), input=f"{password}\n{password}\n", capture_output=True, text=True, timeout=60, env=env, check=False
    )
    if added.returncode != 0:
        print(f"# no API token (users add: {added.stderr.strip()[:200]}); waiting by wall time instead", flush=True)
        return None
    made = subprocess.run(
        roost("api-token", "create", "--user", "bench", "--scope", "read", *hub_args), capture_output=True, text=True, timeout=60, env=env, check=False
    )
    token = made.stdout.strip().splitlines()[0] if made.returncode == 0 and made.stdout.strip() else None
    if token is None:
        print(f"# no API token (api-token create: {made.stderr.strip()[:200]}); waiting by wall time instead", flush=True)
    return token


def wait_for(what: str, check, deadline_s: float, procs: list[tuple[str, subprocess.Popen, Path]]) -> Any:
    """Poll check() until it returns something truthy; bounded by deadline_s; fail fast if a process died."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for name, proc, log in procs:
            if proc.poll() is not None:
                raise SystemExit(f"bench_agent: {name} exited with {proc.returncode} while waiting for {what}:\n{tail(log)}")
        try:
            value = check()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"bench_agent: timed out after {deadline_s:g} s waiting for {what}")


def memory(pid: int) -> tuple[float, float | None]:
    """(RSS, USS) in MiB; USS is None where the kernel will not say."""
    proc = psutil.Process(pid)
    try:
        full = proc.memory_full_info()
        return full.rss / MIB, full.uss / MIB
    except (psutil.AccessDenied, AttributeError):
        return proc.memory_info().rss / MIB, None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its reaped children (systemctl and the like)."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)


# ------------------------------------------------------- bare psutil cycle


class BarePsutilCycle:
    """The psutil and /proc work of integrations/linux_host/collector.py, and nothing else.

    Mirrors the collector's calls and caching per cycle: per-core CPU times,
    load average, virtual memory and swap, /proc/self/mountinfo plus statvfs
    per real mount (the mount list worked out again only when mountinfo
    changes), per-disk and per-NIC I/O counters, NIC stats and addresses every
    60 s, sensors until they turn out to be absent, CPU times and RSS of every
    process through Process objects kept from one cycle to the next, then name,
    user (once per process) and command line of the top ten by CPU and by
    memory. Not mirrored: facts (hourly), `systemctl list-units` (every 60 s,
    only where systemd runs) and cgroup limits (only in a container).
    """

    IF_REFRESH_S = 60.0
    TOP = 10
    PSEUDO = {"proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "overlay", "squashfs", "mqueue", "nsfs"}

    def __init__(self) -> None:
        self.procs: dict[int, tuple[psutil.Process, float | None]] = {}
        self.usernames: dict[int, str | None] = {}
        self.mountinfo = ""
        self.mounts: list[str] = []
        self.sensors = True
        self.if_at = -self.IF_REFRESH_S
        self.scan_at: float | None = None
        self.boot = psutil.boot_time()
        self.sink: list[Any] = []

    def run(self) -> None:
        keep = self.sink
        keep.clear()
        keep.append(psutil.cpu_times(percpu=True))
        keep.append(os.getloadavg())
        keep.append(psutil.virtual_memory())
        keep.append(psutil.swap_memory())
        text = Path("/proc/self/mountinfo").read_text(errors="replace")
        if text != self.mountinfo:
            self.mountinfo = text
            self.mounts = [p.mountpoint for p in psutil.disk_partitions(all=False) if p.fstype not in self.PSEUDO or p.mountpoint == "/"]
        for mount in self.mounts:
            try:
                keep.append(os.statvfs(mount))
            except OSError:
                pass
        keep.append(psutil.disk_io_counters(perdisk=True))
        keep.append(psutil.net_io_counters(pernic=True))
        now = time.monotonic()
        if now - self.if_at >= self.IF_REFRESH_S:
            keep.append(psutil.net_if_stats())
            keep.append(psutil.net_if_addrs())
            self.if_at = now
        if self.sensors:
            temps = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
            fans = psutil.sensors_fans() if hasattr(psutil, "sensors_fans") else {}
            self.sensors = bool(temps or fans)
            keep.append((temps, fans))
        keep.append(time.time() - self.boot)
        elapsed = now - self.scan_at if self.scan_at is not None else None
        self.scan_at = now
        rows = []
        seen: dict[int, tuple[psutil.Process, float | None]] = {}
        for pid in psutil.pids():
            proc, last = self.procs.get(pid, (None, None))
            try:
                if proc is None:
                    proc = psutil.Process(pid)
                times = proc.cpu_times()
                rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            busy = times.user + times.system
            cpu = (busy - last) / elapsed * 100 if last is not None and elapsed else -1.0
            seen[pid] = (proc, busy)
            rows.append((cpu, rss, proc))
        self.procs = seen
        self.describe(rows)

    def describe(self, rows: list[tuple[float, int, psutil.Process]]) -> None:
        top = sorted(rows, key=lambda r: (r[0], r[1]), reverse=True)[: self.TOP]
        top += sorted(rows, key=lambda r: r[1], reverse=True)[: self.TOP]
        for _, _, proc in top:
            try:
                with proc.oneshot():
                    self.sink.append(proc.name())
                    if proc.pid not in self.usernames:
                        self.usernames[proc.pid] = proc.username()
                    self.sink.append(proc.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass


class NaivePsutilCycle(BarePsutilCycle):
    """What a short psutil script would do instead: disk_partitions + disk_usage, and process_iter with cpu_percent."""

    def run(self) -> None:
        keep = self.sink
        keep.clear()
        keep.append(psutil.cpu_percent(percpu=True))
        keep.append(os.getloadavg())
        keep.append(psutil.virtual_memory())
        keep.append(psutil.swap_memory())
        for part in psutil.disk_partitions(all=False):
            try:
                keep.append(psutil.disk_usage(part.mountpoint))
            except OSError:
                pass
        keep.append(psutil.disk_io_counters(perdisk=True))
        keep.append(psutil.net_io_counters(pernic=True))
        keep.append(psutil.net_if_stats())
        keep.append(psutil.net_if_addrs())
        if hasattr(psutil, "sensors_temperatures"):
            keep.append(psutil.sensors_temperatures())
        rows = []
        for proc in psutil.process_iter():
            try:
                with proc.oneshot():
                    rows.append((proc.cpu_percent(None), proc.memory_info().rss, proc))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self.describe(rows)


# ----------------------------------------------------------------- storage


def _thread_cpu_seconds(tid: int) -> float:
    """utime + stime of one thread of this process, from /proc (clock ticks)."""
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def storage_figures(cycles: int, watch_seconds: float) -> None:
    """The storage collector's cycle with SMART cached, and the mount watch's cost while nothing changes."""
    import threading

    from roost.integrations.storage import CONFIG_SCHEMA
    from roost.integrations.storage.collector import Collector
    from roost.integrations.storage.targets import BlockIds, MountWatch

    data = Path(tempfile.mkdtemp(prefix="roost-bench-storage-"))
    collector = Collector(CONFIG_SCHEMA({}), data)
    collector.refresh_smart()  # what the 30-minute background run leaves for the cycles between
    collector._smart_due = time.time() + 3600
    manifest = {"targets": [{"id": "root", "type": "local-dir", "durable_id": "LABEL=not-here", "state": "attached"}]}
    collector.collect(manifest)  # the first cycle also runs zpool and lvs; later ones reuse them for 30 s
    c0 = time.thread_time()
    for _ in range(cycles):
        collector.collect(manifest)
    out("storage_cycle_cpu_ms", (time.thread_time() - c0) / cycles * 1000)
    out("storage_smart_devices", len(collector.smart_state().get("devices", [])))
    watch = MountWatch(lambda: manifest["targets"], lambda: None, BlockIds())
    watch.start()
    try:
        time.sleep(0.2)
        tid = next(t.native_id for t in threading.enumerate() if t.name == "roost-storage-mountwatch")
        before, wakeups, t0 = _thread_cpu_seconds(tid), watch.wakeups, time.monotonic()
        time.sleep(watch_seconds)
        used, elapsed = _thread_cpu_seconds(tid) - before, time.monotonic() - t0
        out("storage_mountwatch_cpu_percent", used / elapsed * 100)
        out("storage_mountwatch_wakeups", watch.wakeups - wakeups)
        out("storage_mountwatch_mount_events", watch.events)
    finally:
        watch.stop()
        import shutil

        shutil.rmtree(data, ignore_errors=True)


def storage_figures_isolated(quick: bool) -> None:
    """storage_figures in a private mount namespace where root and unshare allow (other processes' mounts then
    do not wake the watch, which is what "while nothing changes" means), else in a child as it is."""
    import shutil

    argv = [sys.executable, __file__, "--storage-figures", "--quick" if quick else "--interval=1"]
    isolated = os.geteuid() == 0 and shutil.which("unshare") is not None
    if isolated:
        argv = ["unshare", "-m", "--propagation", "private", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0 and isolated:
        done = subprocess.run(argv[4:], capture_output=True, text=True, timeout=300, check=False)
        isolated = False
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        print(f"# storage figures failed ({done.returncode}): {done.stderr.strip()[-500:]}", flush=True)
    out("storage_mountwatch_private_namespace", 1 if isolated else 0)


# ----------------------------------------------------------------- the bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (~30 s) for CI smoke")
    parser.add_argument("--interval", type=float, default=1.0, help="agent collection interval in seconds (default 1)")
    parser.add_argument("--warmup", type=int, default=None, help="cycles before measuring (default 10; 5 with --quick)")
    parser.add_argument("--cycles", type=int, default=None, help="cycles measured (default 60; 12 with --quick)")
    parser.add_argument("--soak", action="store_true", help="measure for 30 minutes (or --cycles) and print the trend of the agent's RSS")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs and logs")
    parser.add_argument("--storage", choices=("on", "off"), default="on", help="run the agent with the storage integration (default on)")
    parser.add_argument("--storage-figures", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.storage_figures:
        storage_figures(20 if args.quick else 60, 5.0 if args.quick else 20.0)
        return 0
    warmup = args.warmup if args.warmup is not None else (5 if args.quick else 10)
    interval = max(0.2, args.interval)
    cycles = args.cycles if args.cycles is not None else (int(1800 / interval) if args.soak else 12 if args.quick else 60)

    tmp = Path(tempfile.mkdtemp(prefix="roost-bench-agent-"))
    hub_dir, agent_dir = tmp / "hub", tmp / "agent"
    # Loopback only (plain HTTP there); no local agent, so the only node is the one measured.
    (tmp / "hub.toml").write_text(f'[hub]\nbind = "{HOST}"\n\n[agent]\nenabled = false\n\n[logging]\nlevel = "warning"\n')
    storage = "" if args.storage == "on" else "\n[integrations.storage]\nenabled = false\n"
    (tmp / "agent.toml").write_text(f'[agent]\ninterval = "{int(interval * 1000)}ms"\n\n[logging]\nlevel = "warning"\n{storage}')
    port = free_port()
    hub_url = f"http://{HOST}:{port}"
    hub = agent = bare = exporter = None
    hub_log, agent_log = tmp / "hub.log", tmp / "agent.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ROOST_DATA_DIR", None)
    try:
        print(f"# bench_agent on {platform.node()}: {psutil.cpu_count()} CPUs, Python {platform.python_version()}, psutil {psutil.__version__}, {len(psutil.pids())} processes", flush=True)
        with hub_log.open("wb") as log:
            hub = subprocess.Popen(
                roost("hub", "--data-dir", str(hub_dir), "--bind", HOST, "--port", str(port), "--config", str(tmp / "hub.toml")),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        procs = [("hub", hub, hub_log)]
        wait_for("the hub", lambda: http_json(hub_url + "/api/v1/health") is not None, 30, procs)
        hub_args = ["--data-dir", str(hub_dir), "--config", str(tmp / "hub.toml")]
        made = subprocess.run(
            roost("join-token", "create", *hub_args, "--uses", "1"),
            capture_output=True, text=True, timeout=30, env=env, check=False,
        )
        if made.returncode != 0 or not made.stdout.strip():
            raise SystemExit(f"bench_agent: join-token create failed ({made.returncode}): {made.stderr}")
        token = made.stdout.strip().splitlines()[0]
        reader = api_token(hub_args, env)

        exporter = exporter_url = None
        binary = node_exporter_binary()
        if binary is None:
            print("# node_exporter not installed (apt-get install prometheus-node-exporter): its comparison is skipped", flush=True)
        else:
            exporter_port = free_port()
            exporter_url = f"http://{HOST}:{exporter_port}/metrics"
            exporter_log = tmp / "node_exporter.log"
            with exporter_log.open("wb") as log:
                exporter = subprocess.Popen(
                    [binary, f"--web.listen-address={HOST}:{exporter_port}"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            procs.append(("node_exporter", exporter, exporter_log))

            def scrape() -> bool:
                with urllib.request.urlopen(exporter_url, timeout=5) as resp:  # noqa: S310 - loopback only
                    return bool(resp.read())

            wait_for("node_exporter", scrape, 30, procs)

        # The idle-Python baselines run while the agent starts; they take 3 s either way. The floors: Python
        # with the libraries any agent on this stack loads (asyncio with ssl, sqlite3, the WebSocket client,
        # psutil), without and with cryptography's Ed25519 (what signs the agent's hello and checks the hub's).
        bare = subprocess.Popen([sys.executable, "-c", "import psutil, time; time.sleep(3)"], stdin=subprocess.DEVNULL)
        floor_imports = "import time, asyncio, ssl, sqlite3, json, psutil, websockets.asyncio.client"
        floors = {
            name: subprocess.Popen([sys.executable, "-c", f"{imports}; print('ready', flush=True); time.sleep(3)"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            for name, imports in (
                ("floor_python_libraries_rss_mib", floor_imports),
                ("floor_python_libraries_cryptography_rss_mib", floor_imports + "; from cryptography.hazmat.primitives.asymmetric import ed25519"),
            )
        }
        with agent_log.open("wb") as log:
            agent = subprocess.Popen(
                roost("agent", "--data-dir", str(agent_dir), "--hub", hub_url, "--join", token, "--config", str(tmp / "agent.toml")),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        procs.append(("agent", agent, agent_log))
        time.sleep(1.5)
        bare_rss, _ = memory(bare.pid)
        for proc in floors.values():
            proc.stdout.readline()  # imported
        floor_rss = {name: memory(proc.pid)[0] for name, proc in floors.items()}
        bare.wait(10)
        for proc in floors.values():
            proc.wait(10)
            proc.stdout.close()

        state_file = agent_dir / "agent.json"
        node_id = wait_for("enrolment", lambda: json.loads(state_file.read_text()).get("node_id"), 30, procs)

        def hub_last_seen() -> float | None:
            return http_json(f"{hub_url}/api/v1/nodes/{node_id}", reader)["node"].get("last_seen")

        if reader:
            wait_for("the first report", hub_last_seen, 30, procs)
        else:
            time.sleep(3 * interval)
        time.sleep(warmup * interval)

        # Measure: the agent over `cycles` intervals; the bare cycle in this process, once per interval, meanwhile.
        baseline, naive = BarePsutilCycle(), NaivePsutilCycle()
        baseline.run()  # prime the Process cache and CPU counters, as the collector's start() does
        naive.run()
        agent_pid = agent.pid
        if exporter is not None:
            scrape()  # its first scrape sets up what later ones reuse, as a Prometheus server's would
        exporter_cpu0 = cpu_seconds(exporter.pid) if exporter is not None else 0.0
        scrapes = 0
        wall0 = time.time()
        agent_cpu0 = cpu_seconds(agent_pid)
        busy0, me0 = machine_busy_seconds(), psutil.Process().cpu_times()
        t0 = time.monotonic()
        bare_cpu = naive_cpu = 0.0
        bare_runs = 0
        rss_max = 0.0
        rss_samples: list[tuple[float, float]] = []
        # Run half an interval out of phase, so the two cycles rarely compete for the same core.
        next_at = t0 + interval / 2
        end_at = t0 + cycles * interval
        while next_at < end_at:
            time.sleep(max(0.0, next_at - time.monotonic()))
            c0 = time.thread_time()
            baseline.run()
            c1 = time.thread_time()
            naive.run()
            naive_cpu += time.thread_time() - c1
            bare_cpu += c1 - c0
            bare_runs += 1
            rss_now = memory(agent_pid)[0]
            rss_max = max(rss_max, rss_now)
            rss_samples.append((time.monotonic() - t0, rss_now))
            if exporter is not None:
                # A Prometheus server scraping node_exporter at the agent's interval: one full scrape per cycle.
                scrape()
                scrapes += 1
            next_at += interval
            if agent.poll() is not None:
                raise SystemExit(f"bench_agent: agent exited with {agent.returncode}:\n{tail(agent_log)}")
        time.sleep(max(0.0, end_at - time.monotonic()))
        elapsed = time.monotonic() - t0
        agent_cpu = cpu_seconds(agent_pid) - agent_cpu0
        exporter_cpu = cpu_seconds(exporter.pid) - exporter_cpu0 if exporter is not None else 0.0
        me1 = psutil.Process().cpu_times()
        others = machine_busy_seconds() - busy0 - agent_cpu - (me1.user + me1.system - me0.user - me0.system)
        wall1 = time.time()
        agent_rss, agent_uss = memory(agent_pid)
        agent_threads = psutil.Process(agent_pid).num_threads()

        # Cross-check the cycle count with what the hub stored in the window.
        seen = None
        try:
            hist = http_json(
                f"{hub_url}/api/v1/nodes/{node_id}/metrics?series=linux_host.uptime_s&start={wall0:.3f}&end={wall1:.3f}&resolution=raw",
                reader,
            )
            series = hist.get("series", hist) if isinstance(hist, dict) else {}
            points = series.get("linux_host.uptime_s") if isinstance(series, dict) else None
            seen = len(points) if isinstance(points, list) else None
        except Exception:
            seen = None

        n = elapsed / interval
        agent_ms = agent_cpu / n * 1000
        bare_ms = bare_cpu / bare_runs * 1000
        out("agent_interval_s", interval)
        out("agent_cycles_measured", round(n))
        if seen is not None:
            out("agent_cycles_stored_by_hub", seen)
        out("agent_cycle_cpu_ms", agent_ms)
        out("bare_psutil_cycle_cpu_ms", bare_ms)
        out("agent_cycle_cpu_ratio", agent_ms / bare_ms if bare_ms else float("nan"))
        out("naive_psutil_cycle_cpu_ms", naive_cpu / bare_runs * 1000)
        out("agent_cpu_percent_at_interval", agent_cpu / elapsed * 100)
        out("agent_rss_mib", agent_rss)
        out("agent_rss_mib_max", max(rss_max, agent_rss))
        if agent_uss is not None:
            out("agent_uss_mib", agent_uss)
        out("agent_threads", agent_threads)
        if len(rss_samples) >= 30:
            # After the first tenth (warm caches): a leak shows as a steady climb, the noise as nothing.
            out("agent_rss_slope_mib_per_hour", slope_per_hour([s for s in rss_samples if s[0] >= elapsed / 10]))
        out("bare_python_rss_mib", bare_rss)
        for name, value in floor_rss.items():
            out(name, value)
        if exporter is not None and scrapes:
            exporter_ms = exporter_cpu / scrapes * 1000
            exporter_rss, exporter_uss = memory(exporter.pid)
            out("node_exporter_scrapes", scrapes)
            out("node_exporter_scrape_cpu_ms", exporter_ms)
            out("node_exporter_rss_mib", exporter_rss)
            if exporter_uss is not None:
                out("node_exporter_uss_mib", exporter_uss)
            out("agent_cycle_cpu_ratio_to_node_exporter", agent_ms / exporter_ms if exporter_ms else float("nan"))
            out("agent_rss_ratio_to_node_exporter", agent_rss / exporter_rss if exporter_rss else float("nan"))
        # The hub and anything else running here (a browser test next door); CPU time per cycle hardly depends on it.
        out("other_processes_cpu_percent", max(0.0, others) / elapsed * 100)
        out("agent_storage_enabled", 1 if args.storage == "on" else 0)
        stop(agent, 10.0)
        storage_figures_isolated(args.quick)
        print(
            "# targets: agent_rss_mib <= 30; agent_cycle_cpu_ratio <= 1.2 (against bare_psutil_cycle_cpu_ms, same run); "
            "agent_cycle_cpu_ratio_to_node_exporter <= 1; storage_mountwatch_cpu_percent < 0.1",
            flush=True,
        )
        return 0
    finally:
        stop(agent, 10.0)
        stop(exporter, 10.0)
        stop(hub, 10.0)
        stop(bare, 10.0)
        if args.keep:
            print(f"# kept {tmp}", flush=True)
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
