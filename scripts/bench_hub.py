#!/usr/bin/env python3
"""Benchmark: a real Roost hub's memory with many agents connected, its ingest throughput and report-to-store latency.

Starts a real hub subprocess (local agent off), enrols N simulated agents over
POST /api/v1/enroll, each with its own Ed25519 key, and opens N real
WebSockets from this process, each doing the real handshake (challenge,
signed hello, welcome). Then:

1. hub RSS with 0 agents (measured first) and with N idle agents connected;
2. a steady phase: every agent sends 1 report per second; latency from
   sending a report to receiving its ack (the hub acks only after the report
   is committed to SQLite), p50 and p99;
3. a saturating phase: every agent keeps up to --window reports un-acked
   in flight until --reports reports are acked (or --max-seconds pass);
   persisted reports per second, hub CPU seconds per 1,000 reports and the
   latency again, under saturation.

Reports are ~4 KB of linux_host-like state and ~30 metrics, pre-encoded so
the client stays cheap. This process's own CPU is printed too: on a 2-core
machine the client can be the bottleneck, and client_cpu_percent near 100
says so.

Prints `name: value` lines; it measures, it never asserts. Targets (see
docs/benchmarks.md): >= 5,000 reports/s persisted on one core; 1,000 agents
in <= 150 MiB of hub RSS.

    .venv/bin/python scripts/bench_hub.py            # ~2 min, 1,000 agents
    .venv/bin/python scripts/bench_hub.py --quick    # ~30 s, 200 agents (CI smoke)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from benchlib import HOST, MIB, free_port, machine_busy_seconds, out, roost, slope_per_hour, stop, tail

from roost.core import protocol
from roost.core.const import ENROLL_PATH, WS_PATH
from roost.core.identity import Identity

ACK_PREFIX = '{"v":1,"type":"ack","seq":'
# Each agent enrols and logs in once: two attempts of the hub's per-address burst of 30.
AGENTS_PER_ADDRESS = 12


# ------------------------------------------------------------------ helpers


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def thread_cpu(proc: psutil.Process) -> tuple[float, float]:
    """(main thread, all other threads) CPU seconds: the event loop versus SQLite's worker thread."""
    main = other = 0.0
    for t in proc.threads():
        if t.id == proc.pid:
            main += t.user_time + t.system_time
        else:
            other += t.user_time + t.system_time
    return main, other


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def hub_rss_mib(proc: psutil.Process, samples: int = 3, gap: float = 0.5) -> float:
    """Median of a few RSS samples, so one allocation burst does not decide the figure."""
    values = []
    for i in range(samples):
        if i:
            time.sleep(gap)
        values.append(proc.memory_info().rss / MIB)
    return sorted(values)[len(values) // 2]


# ---------------------------------------------------- realistic report body


def report_tail(i: int, rng: random.Random) -> str:
    """Everything of a report after seq and collected_at: linux_host-like state and ~30 metrics (about 4 KB)."""
    cores = 4
    per_core = [round(rng.uniform(0, 100), 1) for _ in range(cores)]
    mounts = ["/", "/boot", "/home", "/srv/data"]
    disks = [
        {
            "mount": m,
            "device": f"/dev/sda{n + 1}",
            "fstype": "ext4",
            "total_bytes": 500_107_862_016,
            "used_bytes": rng.randrange(10**10, 4 * 10**11),
            "free_bytes": rng.randrange(10**10, 10**11),
            "percent": round(rng.uniform(5, 95), 1),
        }
        for n, m in enumerate(mounts)
    ]
    ifaces = [
        {
            "name": name,
            "mac": "02:42:ac:11:00:%02x" % (i % 256),
            "is_up": True,
            "speed_mbps": 1000,
            "mtu": 1500,
            "addresses": [{"family": "ipv4", "address": f"10.{i // 256 % 256}.{i % 256}.{n + 2}", "netmask": "255.255.255.0"}],
            "rx_bytes": rng.randrange(10**9, 10**12),
            "tx_bytes": rng.randrange(10**9, 10**12),
            "rx_bytes_per_s": round(rng.uniform(0, 10**6), 1),
            "tx_bytes_per_s": round(rng.uniform(0, 10**6), 1),
            "errors": 0,
            "drops": 0,
        }
        for n, name in enumerate(("eth0", "eth1"))
    ]
    procs = [
        {
            "pid": 1000 + n,
            "name": name,
            "username": "root" if n % 2 else "app",
            "cpu_percent": round(rng.uniform(0, 50), 1),
            "mem_bytes": rng.randrange(10**7, 10**9),
            "mem_percent": round(rng.uniform(0, 10), 2),
            "cmdline": f"/usr/bin/{name} --config /etc/{name}/{name}.conf",
        }
        for n, name in enumerate(("postgres", "nginx", "dockerd", "python3", "containerd"))
    ]
    state = {
        "cpu": {"count": cores, "per_core_percent": per_core, "percent": round(sum(per_core) / cores, 1), "load": [0.42, 0.37, 0.31]},
        "memory": {
            "total_bytes": 16_657_108_992,
            "used_bytes": rng.randrange(10**9, 10**10),
            "available_bytes": rng.randrange(10**9, 10**10),
            "percent": round(rng.uniform(10, 90), 1),
            "swap_total_bytes": 2_147_479_552,
            "swap_used_bytes": 0,
            "swap_percent": 0.0,
            "limit_source": "host",
        },
        "disks": disks,
        "disk_io": {"read_bytes_per_s": 1234.5, "write_bytes_per_s": 56789.0, "devices": [{"name": "sda", "read_bytes_per_s": 1234.5, "write_bytes_per_s": 56789.0}]},
        "network": ifaces,
        "uptime_s": 86400 + i,
        "processes": {"count": 180 + i % 50, "top_cpu": procs, "top_memory": procs[::-1]},
        "services": {"available": False, "reason": "systemd is not running on this host"},
    }
    metrics: dict[str, float] = {
        "cpu_percent": state["cpu"]["percent"],
        "load_1": 0.42,
        "load_5": 0.37,
        "load_15": 0.31,
        "mem_used_percent": state["memory"]["percent"],
        "mem_used_bytes": float(state["memory"]["used_bytes"]),
        "mem_total_bytes": 16_657_108_992.0,
        "swap_used_percent": 0.0,
        "disk_used_percent": disks[0]["percent"],
        "disk_read_bytes_per_s": 1234.5,
        "disk_write_bytes_per_s": 56789.0,
        "net_rx_bytes_per_s": 2000.0,
        "net_tx_bytes_per_s": 1000.0,
        "uptime_s": float(86400 + i),
        "process_count": float(180 + i % 50),
    }
    for d in disks:
        metrics[f"disk_used_percent[{d['mount']}]"] = d["percent"]
    for iface in ifaces:
        metrics[f"net_rx_bytes_per_s[{iface['name']}]"] = iface["rx_bytes_per_s"]
        metrics[f"net_tx_bytes_per_s[{iface['name']}]"] = iface["tx_bytes_per_s"]
    for n in range(cores):
        metrics[f"temperature_c[coretemp/Core {n}]"] = round(rng.uniform(30, 80), 1)
    metrics["temperature_c[coretemp/Package id 0]"] = 55.0
    metrics["fan_rpm[nct6775/fan1]"] = 1200.0
    metrics["fan_rpm[nct6775/fan2]"] = 900.0
    body = {
        "interval": 10.0,
        "spool_dropped": 0,
        "integrations": [{"domain": "linux_host", "state": "loaded", "reason": ""}],
        "data": {"linux_host": state},
        "metrics": {f"linux_host.{k}": v for k, v in metrics.items()},
    }
    return "," + json.dumps(body, separators=(",", ":"))[1:]


HELLO_FIELDS = {
    f"linux_host.{name}": {"unit": unit, "description": name.replace("_", " "), "label": name}
    for name, unit in (
        ("cpu_percent", "percent"), ("load_1", ""), ("load_5", ""), ("load_15", ""), ("mem_used_percent", "percent"),
        ("mem_used_bytes", "bytes"), ("mem_total_bytes", "bytes"), ("swap_used_percent", "percent"),
        ("disk_used_percent", "percent"), ("disk_read_bytes_per_s", "bytes_per_second"),
        ("disk_write_bytes_per_s", "bytes_per_second"), ("net_rx_bytes_per_s", "bytes_per_second"),
        ("net_tx_bytes_per_s", "bytes_per_second"), ("temperature_c", "celsius"), ("fan_rpm", "rpm"),
        ("uptime_s", "seconds"), ("process_count", "count"),
    )
}


# --------------------------------------------------------- simulated agent


class SimAgent:
    """One enrolled node with one WebSocket; a reader task turns acks into latencies."""

    def __init__(self, index: int, rng: random.Random) -> None:
        self.index = index
        self.identity = Identity.generate()
        self.node_id = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.head = ""
        self.tail = report_tail(index, rng)
        self.seq = 0
        self.acked = 0
        self.pending: collections.deque[tuple[int, float]] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.errors = 0

    def message(self, seq: int, collected_at: str) -> str:
        return f'{self.head}{seq},"collected_at":{collected_at}{self.tail}'

    async def send(self, collected_at: str) -> None:
        self.seq += 1
        self.pending.append((self.seq, time.perf_counter()))
        await self.ws.send_str(self.message(self.seq, collected_at))

    async def reader(self, bench: Bench) -> None:
        """Read until the socket closes; aiohttp answers the hub's pings while this runs."""
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = msg.data
                if data.startswith(ACK_PREFIX):
                    seq = int(data[len(ACK_PREFIX) : -1])
                    now = time.perf_counter()
                    pending = self.pending
                    sink = bench.latencies
                    while pending and pending[0][0] <= seq:
                        sink.append(now - pending.popleft()[1])
                        bench.acked += 1
                    bench.last_ack_at = now
                    self.acked = seq
                else:
                    try:
                        kind = json.loads(data).get("type")
                    except (ValueError, AttributeError):
                        kind = None
                    if kind == protocol.TYPE_ERROR or kind is None:
                        self.errors += 1
                        bench.hub_errors += 1
                        if bench.hub_errors <= 3:
                            print(f"# hub said to {self.node_id}: {data[:300]}", file=sys.stderr, flush=True)
                    else:  # grants and whatever else the hub tells a connected agent
                        bench.hub_other_messages[kind] = bench.hub_other_messages.get(kind, 0) + 1
                waiter = self.waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
        except Exception as err:  # noqa: BLE001 - a broken socket is counted, not fatal
            print(f"# agent {self.node_id} reader: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        finally:
            self.closed = True
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


# ----------------------------------------------------------------- the bench


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(1)
        self.tmp = Path(tempfile.mkdtemp(prefix="roost-bench-hub-"))
        self.hub_dir = self.tmp / "hub"
        self.config = self.tmp / "hub.toml"
        self.log = self.tmp / "hub.log"
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.hub: subprocess.Popen | None = None
        self.hub_ps: psutil.Process | None = None
        self.me = psutil.Process()
        self.session: aiohttp.ClientSession | None = None
        # One session per loopback source address: the hub rate-limits enrolments and agent logins per
        # address (a burst of 30), so the simulated agents come from 127.0.x.y, AGENTS_PER_ADDRESS each.
        self.sessions: dict[int, aiohttp.ClientSession] = {}
        self.agents: list[SimAgent] = []
        self.readers: list[asyncio.Task[None]] = []
        self.latencies: list[float] = []
        self.acked = 0
        self.last_ack_at = 0.0
        self.hub_errors = 0
        self.hub_other_messages: dict[str, int] = {}

    # -------------------------------------------------------------- hub

    def start_hub(self) -> None:
        # Loopback only (plain HTTP there); no local agent, so every node is a simulated one.
        self.config.write_text(f'[hub]\nbind = "{HOST}"\n\n[agent]\nenabled = false\n')
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("ROOST_DATA_DIR", None)
        cmd = roost("hub", "--data-dir", str(self.hub_dir), "--bind", HOST, "--port", str(self.port), "--config", str(self.config))
        if self.args.profile:
            cmd = [sys.executable, "-m", "cProfile", "-o", str(self.args.profile), *cmd[1:]]
        with self.log.open("wb") as log:
            self.hub = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.hub_ps = psutil.Process(self.hub.pid)

    def check_hub(self) -> None:
        if self.hub is not None and self.hub.poll() is not None:
            raise SystemExit(f"bench_hub: the hub exited with {self.hub.returncode}:\n{tail(self.log)}")

    async def wait_healthy(self, deadline_s: float = 30.0) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            self.check_hub()
            try:
                async with self.session.get(self.url + "/api/v1/health", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            await asyncio.sleep(0.2)
        raise SystemExit(f"bench_hub: the hub did not answer /health within {deadline_s:g} s:\n{tail(self.log)}")

    def join_tokens(self, n: int) -> list[str]:
        tokens = []
        while n > 0:
            uses = min(n, 1000)
            made = subprocess.run(
                roost("join-token", "create", "--data-dir", str(self.hub_dir), "--config", str(self.config), "--uses", str(uses)),
                capture_output=True, text=True, timeout=60, check=False,
            )
            if made.returncode != 0 or not made.stdout.strip():
                raise SystemExit(f"bench_hub: join-token create failed ({made.returncode}): {made.stderr}")
            tokens.extend([made.stdout.strip().splitlines()[0]] * uses)
            n -= uses
        return tokens

    # ----------------------------------------------------------- agents

    async def enrol(self, agent: SimAgent, token: str) -> None:
        stamp, nonce = int(time.time()), secrets.token_hex(16)
        body = {
            "token": token,
            "public_key": agent.identity.public_key,
            "hostname": f"sim{agent.index:05d}",
            "facts": {"os": "Simulix 1", "arch": "x86_64"},
            "timestamp": stamp,
            "nonce": nonce,
            "signature": agent.identity.sign(protocol.enroll_payload(token, agent.identity.public_key, "", stamp, nonce)),
        }
        async with self.session_for(agent).post(self.url + ENROLL_PATH, json=body) as resp:
            answer = await resp.json(content_type=None)
            if resp.status != 200:
                raise SystemExit(f"bench_hub: enrolment refused (HTTP {resp.status}): {answer}")
        agent.node_id = answer["node_id"]
        agent.head = '{"v":1,"type":"report","node_id":"%s","seq":' % agent.node_id

    def session_for(self, agent: SimAgent) -> aiohttp.ClientSession:
        group = agent.index // AGENTS_PER_ADDRESS
        session = self.sessions.get(group)
        if session is None:
            source = f"127.1.{group // 250}.{group % 250 + 2}"
            connector = aiohttp.TCPConnector(limit=0, local_addr=(source, 0))
            session = self.sessions[group] = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None, connect=30))
        return session

    async def connect(self, agent: SimAgent) -> None:
        ws = await self.session_for(agent).ws_connect(self.url + WS_PATH, autoping=True, heartbeat=None, max_msg_size=4 * MIB)
        challenge = json.loads((await ws.receive(timeout=30)).data)
        hello = {
            "node_id": agent.node_id,
            "signature": agent.identity.sign(protocol.auth_payload(challenge["hub_id"], agent.node_id, challenge["nonce"])),
            "agent_version": "bench",
            "epoch": "bench-1",
            "hostname": f"sim{agent.index:05d}",
            "facts": {"os": "Simulix 1", "kernel": "6.1.0", "arch": "x86_64", "cpu_cores_logical": 4},
            "integrations": [{"domain": "linux_host", "state": "loaded", "reason": ""}],
            "fields": HELLO_FIELDS,
            "capabilities": ["host.metrics.read", "network.info.read"],
        }
        await ws.send_str(protocol.encode(protocol.TYPE_HELLO, **hello))
        welcome = json.loads((await ws.receive(timeout=30)).data)
        if welcome.get("type") != "welcome":
            raise SystemExit(f"bench_hub: handshake failed for {agent.node_id}: {welcome}")
        agent.seq = agent.acked = welcome["last_seq"]
        agent.ws = ws
        self.readers.append(asyncio.create_task(agent.reader(self)))

    async def bounded(self, limit: int, coros: list[Any]) -> None:
        sem = asyncio.Semaphore(limit)

        async def run(coro: Any) -> None:
            async with sem:
                await coro

        await asyncio.gather(*(run(c) for c in coros))

    async def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(a.pending and not a.closed for a in self.agents):
            await asyncio.sleep(0.05)

    def live(self) -> list[SimAgent]:
        return [a for a in self.agents if not a.closed]

    # ----------------------------------------------------------- phases

    async def warm_up(self, reports: int = 2) -> None:
        """A couple of reports per agent, not measured: a node's first report also creates its series."""
        self.latencies, self.acked = [], 0
        for _ in range(reports):
            stamp = f"{time.time():.3f}"
            await asyncio.gather(*(a.send(stamp) for a in self.live()))
            await self.drain(20)

    async def steady(self, agents: list[SimAgent] | None = None, proc: psutil.Process | None = None, prefix: str = "") -> float:
        """Every agent sends one report a second, spread over the second; latency at a moderate rate.

        Returns the server's CPU seconds per 1,000 reports (NaN if none was acked).
        """
        seconds = self.args.steady_seconds
        agents = self.live() if agents is None else [a for a in agents if not a.closed]
        proc = proc or self.hub_ps
        loop = asyncio.get_running_loop()
        self.latencies, self.acked = [], 0
        start = loop.time() + 0.5
        hub0, me0, t0 = cpu_seconds(proc), cpu_seconds(self.me), time.monotonic()
        busy0 = machine_busy_seconds()
        print(f"# phase: {prefix}steady (server pid {proc.pid})", flush=True)

        async def one(agent: SimAgent, offset: float) -> None:
            for k in range(seconds):
                delay = start + offset + k - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if agent.closed:
                    return
                await agent.send(f"{time.time():.3f}")

        await asyncio.gather(*(one(a, self.rng.random()) for a in agents))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(a.pending and not a.closed for a in agents):
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - t0
        hub_cpu, me_cpu = cpu_seconds(proc) - hub0, cpu_seconds(self.me) - me0
        others = machine_busy_seconds() - busy0 - hub_cpu - me_cpu
        name = prefix or "hub_"
        out(f"{prefix}steady_offered_reports_per_s", float(len(agents)))
        out(f"{prefix}steady_reports_acked", self.acked)
        out(f"{prefix}report_to_store_ms_p50", percentile(self.latencies, 50) * 1000)
        out(f"{prefix}report_to_store_ms_p99", percentile(self.latencies, 99) * 1000)
        out(f"{prefix}report_to_store_ms_max", max(self.latencies, default=float("nan")) * 1000)
        per_1000 = hub_cpu / self.acked * 1000 if self.acked else float("nan")
        if self.acked:
            out(f"{name}cpu_s_per_1000_reports_steady", per_1000)
        out(f"{name}cpu_percent_steady", hub_cpu / elapsed * 100)
        out(f"{prefix}client_cpu_percent_steady", me_cpu / elapsed * 100)
        out(f"{prefix}other_processes_cpu_percent_steady", max(0.0, others) / elapsed * 100)
        return per_1000

    async def baseline(self) -> float:
        """The same steady phase against scripts/bare_hub.py (aiohttp + aiosqlite, nothing else), same agents and report."""
        port = free_port()
        log = self.tmp / "bare_hub.log"
        cmd = [sys.executable, str(Path(__file__).with_name("bare_hub.py")), str(port), str(self.tmp / "bare.db")]
        with log.open("wb") as sink:
            proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        agents = [SimAgent(i, self.rng) for i in range(self.args.agents)]
        readers: list[asyncio.Task[None]] = []
        try:
            url = f"http://{HOST}:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with self.session.get(url + "/health", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            break
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bench_hub: the bare baseline server did not start:\n{tail(log)}")
                await asyncio.sleep(0.2)

            async def connect(agent: SimAgent) -> None:
                agent.node_id = f"bare{agent.index:08d}"
                agent.head = '{"v":1,"type":"report","node_id":"%s","seq":' % agent.node_id
                agent.ws = await self.session_for(agent).ws_connect(url + "/ws", autoping=True, heartbeat=None, max_msg_size=4 * MIB)
                readers.append(asyncio.create_task(agent.reader(self)))

            await self.bounded(50, [connect(a) for a in agents])
            bare = psutil.Process(proc.pid)
            out("baseline_rss_mib_idle_agents", bare.memory_info().rss / MIB)
            for _ in range(2):  # warm-up, as for the hub
                stamp = f"{time.time():.3f}"
                await asyncio.gather(*(a.send(stamp) for a in agents if not a.closed))
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and any(a.pending and not a.closed for a in agents):
                    await asyncio.sleep(0.05)
            return await self.steady(agents, bare, prefix="baseline_")
        finally:
            for agent in agents:
                if agent.ws is not None:
                    await agent.ws.close()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await asyncio.to_thread(stop, proc, 15.0)

    async def saturate(self) -> None:
        """Every agent keeps up to --window reports in flight until --reports are acked or --max-seconds pass."""
        live = self.live()
        total, window = self.args.reports, self.args.window
        quotas = [total // len(live) + (1 if i < total % len(live) else 0) for i in range(len(live))]
        loop = asyncio.get_running_loop()
        self.latencies, self.acked = [], 0
        peak = [0.0]

        async def sample() -> None:
            while True:
                peak[0] = max(peak[0], self.hub_ps.memory_info().rss / MIB)
                await asyncio.sleep(0.5)

        async def one(agent: SimAgent, quota: int) -> None:
            target = agent.seq + quota
            while True:
                stamp = f"{time.time():.3f}"
                while agent.seq < target and agent.seq - agent.acked < window and not agent.closed:
                    await agent.send(stamp)
                if agent.acked >= target or agent.closed:
                    return
                agent.waiter = loop.create_future()
                await agent.waiter
                agent.waiter = None

        print(f"# phase: saturate (hub pid {self.hub.pid})", flush=True)
        sampler = asyncio.create_task(sample())
        hub0, me0, t0 = cpu_seconds(self.hub_ps), cpu_seconds(self.me), time.perf_counter()
        main0, other0 = thread_cpu(self.hub_ps)
        busy0 = machine_busy_seconds()
        tasks = [asyncio.create_task(one(a, q)) for a, q in zip(live, quotas) if q]
        done, pending = await asyncio.wait(tasks, timeout=self.args.max_seconds)
        t1 = time.perf_counter()
        hub_cpu, me_cpu = cpu_seconds(self.hub_ps) - hub0, cpu_seconds(self.me) - me0
        main1, other1 = thread_cpu(self.hub_ps)
        others = machine_busy_seconds() - busy0 - hub_cpu - me_cpu
        for task in pending:
            task.cancel()
        sampler.cancel()
        await asyncio.gather(*pending, sampler, return_exceptions=True)
        end = self.last_ack_at if not pending and self.last_ack_at > t0 else t1
        elapsed = end - t0
        acked = self.acked
        out("saturate_reports_acked", acked)
        out("saturate_timed_out", int(bool(pending)))
        out("saturate_elapsed_s", elapsed)
        out("reports_persisted_per_s", acked / elapsed if elapsed > 0 else float("nan"))
        out("report_to_store_ms_p50_saturated", percentile(self.latencies, 50) * 1000)
        out("report_to_store_ms_p99_saturated", percentile(self.latencies, 99) * 1000)
        if acked:
            out("hub_cpu_s_per_1000_reports", hub_cpu / acked * 1000)
            out("hub_reports_per_cpu_s", acked / hub_cpu if hub_cpu else float("nan"))
            out("client_cpu_s_per_1000_reports", me_cpu / acked * 1000)
        out("hub_cpu_percent_saturated", hub_cpu / (t1 - t0) * 100)
        out("hub_main_thread_cpu_percent_saturated", (main1 - main0) / (t1 - t0) * 100)
        out("hub_other_threads_cpu_percent_saturated", (other1 - other0) / (t1 - t0) * 100)
        out("client_cpu_percent_saturated", me_cpu / (t1 - t0) * 100)
        # Everything else on the machine (a browser test next door): when it is high, wall-clock figures are low.
        out("other_processes_cpu_percent_saturated", max(0.0, others) / (t1 - t0) * 100)
        out("hub_rss_mib_peak_saturated", peak[0])
        # Let the hub finish what was in flight when the deadline hit.
        await self.drain(10)

    async def soak(self) -> None:
        """1 report/s per agent for --soak-minutes; hub and client RSS every 10 s, and their trend."""
        seconds = int(self.args.soak_minutes * 60)
        loop = asyncio.get_running_loop()
        self.latencies, self.acked = [], 0
        hub_rss: list[tuple[float, float]] = []
        client_rss: list[tuple[float, float]] = []
        hub0, t0 = cpu_seconds(self.hub_ps), time.monotonic()
        print(f"# phase: soak for {seconds} s (server pid {self.hub.pid})", flush=True)

        async def sample() -> None:
            while True:
                at = time.monotonic() - t0
                hub_rss.append((at, self.hub_ps.memory_info().rss / MIB))
                client_rss.append((at, self.me.memory_info().rss / MIB))
                await asyncio.sleep(10)

        async def one(agent: SimAgent, offset: float) -> None:
            start = loop.time() + offset
            for k in range(seconds):
                delay = start + k - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if agent.closed:
                    return
                await agent.send(f"{time.time():.3f}")

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(one(a, self.rng.random()) for a in self.live()))
        await self.drain(15)
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        elapsed = time.monotonic() - t0
        # The first tenth is warm-up (caches and buffers filling); the trend is taken over the rest.
        settled = [s for s in hub_rss if s[0] >= elapsed / 10]
        settled_client = [s for s in client_rss if s[0] >= elapsed / 10]
        out("soak_seconds", elapsed)
        out("soak_reports_acked", self.acked)
        out("soak_report_to_store_ms_p99", percentile(self.latencies, 99) * 1000)
        out("hub_cpu_s_per_1000_reports_soak", (cpu_seconds(self.hub_ps) - hub0) / self.acked * 1000 if self.acked else float("nan"))
        out("hub_rss_mib_soak_first", hub_rss[0][1] if hub_rss else float("nan"))
        out("hub_rss_mib_soak_last", hub_rss[-1][1] if hub_rss else float("nan"))
        out("hub_rss_mib_soak_max", max((v for _, v in hub_rss), default=float("nan")))
        out("hub_rss_slope_mib_per_hour", slope_per_hour(settled))
        # The second half alone: a cache filling up early flattens out, a leak does not.
        out("hub_rss_slope_mib_per_hour_second_half", slope_per_hour([s for s in hub_rss if s[0] >= elapsed / 2]))
        step = max(1, len(hub_rss) // 10)
        print("# hub RSS (s: MiB): " + ", ".join(f"{at:.0f}: {mib:.1f}" for at, mib in hub_rss[::step]), flush=True)
        out("client_rss_slope_mib_per_hour", slope_per_hour(settled_client))

    # -------------------------------------------------------------- run

    async def run(self) -> None:
        args = self.args
        n = args.agents
        print(
            f"# bench_hub on {platform.node()}: {psutil.cpu_count()} CPUs, Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
            f"{n} agents, {args.reports} reports, window {args.window}",
            flush=True,
        )
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None, connect=30))
        try:
            baseline = await self.baseline() if args.steady_seconds and not args.no_baseline else float("nan")
            self.start_hub()
            await self.wait_healthy()
            await asyncio.sleep(2)
            out("agents", n)
            sample = SimAgent(0, random.Random(0))
            sample.head = '{"v":1,"type":"report","node_id":"n0123456789ab","seq":'
            out("report_bytes", len(sample.message(1, f"{time.time():.3f}")))
            idle = hub_rss_mib(self.hub_ps)
            out("hub_rss_mib_idle", idle)

            tokens = await asyncio.to_thread(self.join_tokens, n)
            self.agents = [SimAgent(i, self.rng) for i in range(n)]
            t0 = time.perf_counter()
            await self.bounded(16, [self.enrol(a, tok) for a, tok in zip(self.agents, tokens)])
            out("enrol_per_s", n / (time.perf_counter() - t0))
            self.check_hub()
            t0 = time.perf_counter()
            await self.bounded(50, [self.connect(a) for a in self.agents])
            out("connect_per_s", n / (time.perf_counter() - t0))
            await asyncio.sleep(3)
            self.check_hub()
            rss = hub_rss_mib(self.hub_ps)
            out(f"hub_rss_mib_{n}_agents", rss)
            out("hub_rss_kib_per_idle_agent", (rss - idle) * 1024 / n)
            cpu0, t0 = cpu_seconds(self.hub_ps), time.monotonic()
            await asyncio.sleep(5)
            # What the hub spends with every agent connected and silent (timers, pings): part of every per-report figure.
            out("hub_cpu_percent_idle_agents", (cpu_seconds(self.hub_ps) - cpu0) / (time.monotonic() - t0) * 100)

            await self.warm_up()
            self.check_hub()
            if args.steady_seconds:
                steady = await self.steady()
                out("hub_steady_cpu_ratio_to_baseline", steady / baseline)
                self.check_hub()
            if args.soak_minutes:
                await self.soak()
                self.check_hub()
            await self.saturate()
            self.check_hub()
            out("hub_rss_mib_after_load", hub_rss_mib(self.hub_ps))
            settled = time.monotonic()
            for after in (10, 30, 60) if not args.quick else (10, 20):
                await asyncio.sleep(max(0.0, settled + after - time.monotonic()))
                out(f"hub_rss_mib_after_load_{after}s", hub_rss_mib(self.hub_ps, samples=1))
            out("hub_threads", self.hub_ps.num_threads())
            db = sum(p.stat().st_size for p in self.hub_dir.glob("*.db*"))
            out("hub_db_mib", db / MIB)
            out("agents_disconnected", sum(a.closed for a in self.agents))
            out("hub_errors", self.hub_errors)
            for kind, count in sorted(self.hub_other_messages.items()):
                out(f"hub_{kind}_messages", count)
            t0 = time.perf_counter()
            await asyncio.to_thread(stop, self.hub, 30.0)
            out(f"hub_stop_s_{n}_agents", time.perf_counter() - t0)
            print("# targets: reports_persisted_per_s >= 5000 on one core (see hub_reports_per_cpu_s); hub_rss_mib_1000_agents <= 150", flush=True)
        finally:
            await asyncio.to_thread(stop, self.hub, 15.0)
            for task in self.readers:
                task.cancel()
            await asyncio.gather(*self.readers, return_exceptions=True)
            await self.session.close()
            for session in self.sessions.values():
                await session.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (~30 s) for CI smoke: 200 agents, 10,000 reports")
    parser.add_argument("--agents", type=int, default=None, help="simulated agents (default 1000; 200 with --quick)")
    parser.add_argument("--reports", type=int, default=None, help="reports in the saturating phase (default 50,000; 10,000 with --quick)")
    parser.add_argument("--window", type=int, default=32, help="un-acked reports each agent keeps in flight (default 32)")
    parser.add_argument("--steady-seconds", type=int, default=None, help="length of the 1 report/s/agent phase (default 15; 5 with --quick; 0 skips it)")
    parser.add_argument("--max-seconds", type=float, default=None, help="cap on the saturating phase (default 60; 15 with --quick)")
    parser.add_argument("--soak", action="store_true", help="add a soak phase: 200 agents (unless --agents) at 1 report/s each for --soak-minutes")
    parser.add_argument("--soak-minutes", type=float, default=None, help="length of the soak phase (default 30 with --soak)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare aiohttp + aiosqlite baseline's steady phase")
    parser.add_argument("--profile", type=Path, help="run the hub under cProfile and write its stats here")
    parser.add_argument("--keep", action="store_true", help="keep the hub's data dir and log")
    args = parser.parse_args()
    args.agents = max(1, args.agents if args.agents is not None else (200 if args.quick or args.soak else 1000))
    if args.soak_minutes is None:
        args.soak_minutes = 30.0 if args.soak else 0.0
    args.reports = max(1, args.reports if args.reports is not None else (10_000 if args.quick else 50_000))
    args.steady_seconds = max(0, args.steady_seconds if args.steady_seconds is not None else (5 if args.quick else 15))
    args.max_seconds = args.max_seconds if args.max_seconds is not None else (15.0 if args.quick else 60.0)
    args.window = max(1, args.window)
    limit = raise_fd_limit()
    if 2 * args.agents + 200 > limit:  # this process and the hub (which inherits the limit) hold one socket per agent each
        print(f"# open-files limit is {limit}; capping agents at {(limit - 200) // 2}", file=sys.stderr)
        args.agents = max(1, (limit - 200) // 2)
    bench = Bench(args)
    try:
        asyncio.run(bench.run())
    finally:
        if args.keep:
            print(f"# kept {bench.tmp}", flush=True)
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
