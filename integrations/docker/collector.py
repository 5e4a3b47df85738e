"""The docker collector: containers (inspected and masked), their stats gathered concurrently, engine, images, volumes and disk usage."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .const import (
    CONF_API_TIMEOUT,
    CONF_DISK_USAGE_INTERVAL,
    CONF_MAX_EVENTS,
    CONF_SECRET_PATTERN,
    CONF_SHOW_ENV,
    CONF_STATS,
    CONF_STATS_WORKERS,
    CONF_URL,
    DEFAULT_API_TIMEOUT,
    DEFAULT_DISK_USAGE_INTERVAL,
    DEFAULT_MAX_EVENTS,
    DEFAULT_SECRET_PATTERN,
    DEFAULT_SHOW_ENV,
    DEFAULT_STATS,
    DEFAULT_STATS_WORKERS,
    HEALTH_OUTPUT_MAX_CHARS,
    LABEL_COMPOSE_PROJECT,
    LABEL_COMPOSE_SERVICE,
    LABEL_PODMAN_COMPOSE_PROJECT,
    MAX_SERIES_CONTAINERS,
    MIN_STATS_WINDOW_SECONDS,
    ONE_SHOT_API_VERSION,
    STAT_METRICS,
    STATE_BUDGET_BYTES,
    STATUS_ERROR_MAX_CHARS,
)
from .engine import Endpoint, EngineUnreachable, api_tuple, connect, engine_kind, find_endpoint, unreachable
from .events import EventTracker
from .masking import Masker

_LOGGER = logging.getLogger(__name__)

VERSION_REFRESH_SECONDS = 3600.0
# Engine events that mean someone meant a container to stop or go.
DELIBERATE_ACTIONS = ("stop", "kill", "destroy")
DELIBERATE_MEMORY_SECONDS = 600.0
NS = 1_000_000_000

# ----------------------------------------------------------------- pure helpers


def parse_time(value: Any) -> float | None:
    """Docker's RFC 3339 time (nanoseconds, Z) as unix seconds; None for the zero time or garbage."""
    if not isinstance(value, str) or not value:
        return None
    try:
        ts = datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
    return round(ts, 3) if ts > 0 else None


def split_image(ref: str) -> tuple[str, str | None]:
    """("registry:5000/app", "1.2") from "registry:5000/app:1.2"; a digest reference has no tag."""
    if "@" in ref:
        return ref.split("@", 1)[0], None
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag and name:
        return name, tag
    return ref, "latest"


def _clip(text: Any, limit: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def normalize_ports(ports: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]} as rows; an exposed, unpublished port has no host side."""
    rows: list[dict[str, Any]] = []
    for key, bindings in (ports or {}).items():
        port, _, proto = str(key).partition("/")
        try:
            container_port: int | str = int(port)
        except ValueError:
            container_port = port
        proto = proto or "tcp"
        if not bindings:
            rows.append({"host_ip": None, "host_port": None, "container_port": container_port, "protocol": proto})
            continue
        for binding in bindings:
            host_port = (binding or {}).get("HostPort")
            try:
                host_port = int(host_port) if host_port not in (None, "") else None
            except ValueError:
                pass
            rows.append(
                {
                    "host_ip": (binding or {}).get("HostIp") or None,
                    "host_port": host_port,
                    "container_port": container_port,
                    "protocol": proto,
                }
            )
    rows.sort(key=lambda r: (str(r["container_port"]), r["protocol"], str(r["host_ip"]), str(r["host_port"])))
    return rows


def _port_map(network: Mapping[str, Any], config: Mapping[str, Any], host: Mapping[str, Any]) -> dict[str, Any]:
    """The live port map of a running container; for a stopped one (or one without a network), what it is configured with."""
    live = network.get("Ports")
    if live:
        return dict(live)
    configured: dict[str, Any] = {key: None for key in config.get("ExposedPorts") or {}}
    for key, bindings in (host.get("PortBindings") or {}).items():
        configured[key] = bindings or None
    return configured


def describe_container(attrs: Mapping[str, Any], listed: Mapping[str, Any] | None, masker: Masker, *, show_env: bool = True) -> dict[str, Any]:
    """One container's inspect output as Roost state: normalized, secrets masked."""
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    host = attrs.get("HostConfig") or {}
    network = attrs.get("NetworkSettings") or {}
    name = str(attrs.get("Name") or "").lstrip("/") or str(attrs.get("Id", ""))[:12]
    image_ref = str(config.get("Image") or (listed or {}).get("Image") or "")
    image_name, image_tag = split_image(image_ref)
    labels = masker.labels(config.get("Labels"))
    raw_labels = config.get("Labels") or {}
    out: dict[str, Any] = {
        "id": attrs.get("Id", ""),
        "short_id": str(attrs.get("Id", ""))[:12],
        "name": name,
        "image": image_ref,
        "image_name": image_name,
        "image_tag": image_tag,
        "image_id": attrs.get("Image", ""),
        "state": state.get("Status") or ("running" if state.get("Running") else "unknown"),
        "status": (listed or {}).get("Status") or state.get("Status") or "",
        "created": parse_time(attrs.get("Created")),
        "started_at": parse_time(state.get("StartedAt")),
        "finished_at": parse_time(state.get("FinishedAt")),
        "restart_count": int(attrs.get("RestartCount") or 0),
        "restart_policy": ((host.get("RestartPolicy") or {}).get("Name") or "no"),
        "exit_code": state.get("ExitCode"),
        "oom_killed": bool(state.get("OOMKilled")),
        "ports": normalize_ports(_port_map(network, config, host)),
        "networks": [
            {
                "name": net_name,
                "ip": (net or {}).get("IPAddress") or None,
                "ipv6": (net or {}).get("GlobalIPv6Address") or None,
                "gateway": (net or {}).get("Gateway") or None,
                "mac": (net or {}).get("MacAddress") or None,
            }
            for net_name, net in sorted((network.get("Networks") or {}).items())
        ],
        "network_mode": host.get("NetworkMode") or None,
        "mounts": [
            {
                "type": m.get("Type"),
                "name": m.get("Name") or None,
                "source": m.get("Source") or None,
                "destination": m.get("Destination"),
                "rw": bool(m.get("RW")),
            }
            for m in attrs.get("Mounts") or ()
        ],
        "command": masker.args(config.get("Cmd")),
        "entrypoint": masker.args(config.get("Entrypoint")),
        "working_dir": config.get("WorkingDir") or None,
        "user": config.get("User") or None,
        "labels": labels,
        "compose_project": raw_labels.get(LABEL_COMPOSE_PROJECT) or raw_labels.get(LABEL_PODMAN_COMPOSE_PROJECT) or None,
        "compose_service": raw_labels.get(LABEL_COMPOSE_SERVICE) or None,
    }
    policy_max = (host.get("RestartPolicy") or {}).get("MaximumRetryCount")
    if policy_max:
        out["restart_max"] = policy_max
    if state.get("Error"):
        out["error"] = _clip(state["Error"], STATUS_ERROR_MAX_CHARS)
    if show_env:
        out["env"] = masker.env(config.get("Env"))
    health = state.get("Health")
    if isinstance(health, Mapping) and health.get("Status") and health.get("Status") != "none":
        out["health"] = health["Status"]
        out["health_failing_streak"] = int(health.get("FailingStreak") or 0)
        log = health.get("Log") or []
        if log:
            last = log[-1]
            out["health_last"] = {
                "at": parse_time(last.get("End") or last.get("Start")),
                "exit_code": last.get("ExitCode"),
                "output": masker.text(_clip((last.get("Output") or "").strip(), HEALTH_OUTPUT_MAX_CHARS)),
            }
    check = config.get("Healthcheck")
    if isinstance(check, Mapping) and check.get("Test") and check["Test"] != ["NONE"]:
        out["healthcheck"] = {
            "test": masker.args(check.get("Test")),
            "interval_s": (check.get("Interval") or 0) / NS or None,
            "timeout_s": (check.get("Timeout") or 0) / NS or None,
            "retries": check.get("Retries"),
        }
    if host.get("Memory"):
        out["mem_limit_bytes"] = int(host["Memory"])
    if host.get("NanoCpus"):
        out["cpu_limit"] = round(host["NanoCpus"] / NS, 3)
    elif host.get("CpuQuota") and host.get("CpuPeriod"):
        out["cpu_limit"] = round(host["CpuQuota"] / host["CpuPeriod"], 3)
    return out


@dataclass(frozen=True)
class StatSample:
    """The counters of one stats answer, to compute rates and CPU % against the next."""

    at: float  # monotonic seconds
    cpu_ns: int | None
    system_ns: int | None
    online_cpus: int
    rx: int | None
    tx: int | None
    read: int | None
    write: int | None


def _counters(raw: Mapping[str, Any], at: float) -> StatSample:
    cpu = raw.get("cpu_stats") or {}
    usage = cpu.get("cpu_usage") or {}
    online = cpu.get("online_cpus") or len(usage.get("percpu_usage") or ()) or 1
    networks = raw.get("networks")
    rx = tx = None
    if isinstance(networks, Mapping) and networks:
        rx = sum(int(n.get("rx_bytes") or 0) for n in networks.values())
        tx = sum(int(n.get("tx_bytes") or 0) for n in networks.values())
    blkio = raw.get("blkio_stats")
    read = write = None
    if isinstance(blkio, Mapping) and "io_service_bytes_recursive" in blkio:
        read = write = 0
        for entry in blkio.get("io_service_bytes_recursive") or ():
            op = str(entry.get("op", "")).lower()
            if op == "read":
                read += int(entry.get("value") or 0)
            elif op == "write":
                write += int(entry.get("value") or 0)
    return StatSample(
        at=at,
        cpu_ns=usage.get("total_usage"),
        system_ns=cpu.get("system_cpu_usage"),
        online_cpus=int(online),
        rx=rx,
        tx=tx,
        read=read,
        write=write,
    )


def _cpu_percent(new: StatSample, old: StatSample) -> float | None:
    if new.cpu_ns is None or old.cpu_ns is None or new.cpu_ns < old.cpu_ns:
        return None
    used = new.cpu_ns - old.cpu_ns
    if new.system_ns and old.system_ns and new.system_ns > old.system_ns:
        # docker stats' formula: share of all cores' time, times the cores: 100 % is one full core.
        percent = used / (new.system_ns - old.system_ns) * new.online_cpus * 100
    elif new.at > old.at:
        # Engines without system_cpu_usage (some cgroup v2 and Podman builds): against wall time.
        percent = used / ((new.at - old.at) * NS) * 100
    else:
        return None
    return round(min(max(percent, 0.0), new.online_cpus * 100.0), 2)


def _rate(new: int | None, old: int | None, seconds: float) -> float | None:
    if new is None or old is None or seconds <= 0 or new < old:
        return None
    return round((new - old) / seconds, 1)


def shape_stats(raw: Mapping[str, Any], sample: StatSample, previous: StatSample | None) -> dict[str, Any]:
    """Numbers of one stats answer; CPU % and rates from the previous sample, or from the answer's own precpu."""
    stats: dict[str, Any] = {}
    if previous is None:
        pre = raw.get("precpu_stats") or {}
        if pre.get("system_cpu_usage"):
            prior = _counters({"cpu_stats": pre}, sample.at)
            percent = _cpu_percent(sample, prior)
            if percent is not None:
                stats["cpu_percent"] = percent
    else:
        percent = _cpu_percent(sample, previous)
        if percent is not None:
            stats["cpu_percent"] = percent
    memory = raw.get("memory_stats") or {}
    usage = memory.get("usage")
    if isinstance(usage, int):
        detail = memory.get("stats") or {}
        # What `docker stats` shows: page cache that can be dropped is not "used".
        cache = detail.get("total_inactive_file", detail.get("inactive_file", 0)) or 0
        used = usage - cache if 0 <= cache < usage else usage
        stats["mem_used_bytes"] = used
        limit = memory.get("limit")
        if isinstance(limit, int) and limit > 0:
            stats["mem_limit_bytes"] = limit
            stats["mem_percent"] = round(used / limit * 100, 2)
    for key, value in (("net_rx_bytes", sample.rx), ("net_tx_bytes", sample.tx), ("block_read_bytes", sample.read), ("block_write_bytes", sample.write)):
        if value is not None:
            stats[key] = value
    if previous is not None:
        seconds = sample.at - previous.at
        for key, new, old in (
            ("net_rx_bytes_per_s", sample.rx, previous.rx),
            ("net_tx_bytes_per_s", sample.tx, previous.tx),
            ("block_read_bytes_per_s", sample.read, previous.read),
            ("block_write_bytes_per_s", sample.write, previous.write),
        ):
            rate = _rate(new, old, seconds)
            if rate is not None:
                stats[key] = rate
    pids = (raw.get("pids_stats") or {}).get("current")
    if isinstance(pids, int):
        stats["pids"] = pids
    return stats


def is_dangling(image: Mapping[str, Any]) -> bool:
    tags = [t for t in image.get("RepoTags") or () if t and t != "<none>:<none>"]
    return not tags


# ------------------------------------------------------------------- collector


class Collector:
    """Holds the client, the stats pool, the last stats samples, the disk-usage cache and the event tracker."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.endpoint: Endpoint = find_endpoint(config.get(CONF_URL))
        self.api_timeout: float = float(config.get(CONF_API_TIMEOUT, DEFAULT_API_TIMEOUT))
        self.masker = Masker(config.get(CONF_SECRET_PATTERN, DEFAULT_SECRET_PATTERN))
        self.show_env: bool = config.get(CONF_SHOW_ENV, DEFAULT_SHOW_ENV)
        self.stats_enabled: bool = config.get(CONF_STATS, DEFAULT_STATS)
        self.workers: int = int(config.get(CONF_STATS_WORKERS, DEFAULT_STATS_WORKERS))
        self.disk_usage_interval: float = float(config.get(CONF_DISK_USAGE_INTERVAL, DEFAULT_DISK_USAGE_INTERVAL))
        self.tracker = EventTracker(int(config.get(CONF_MAX_EVENTS, DEFAULT_MAX_EVENTS)))
        self.client: Any = None
        self.kind = "docker"
        self.api_version = ""
        self.one_shot = False
        self.version: dict[str, Any] = {}
        self._version_at = 0.0
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._samples: dict[str, StatSample] = {}
        self._df: dict[str, Any] | None = None
        self._df_error = ""
        self._df_started = -1e18
        self._df_thread: threading.Thread | None = None
        self._events_since = time.time()
        self._deliberate: dict[str, float] = {}
        self._last_snapshot_at: float | None = None
        self.last_duration = 0.0

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Connect, learn the engine, prime the stats samples; raises EngineUnreachable."""
        self.client = connect(self.endpoint, timeout=self.api_timeout, pool_size=self.workers + 4)
        try:
            self._refresh_version(time.monotonic())
        except Exception as err:
            self.client.close()
            raise unreachable(err, self.endpoint) from err
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="roost-docker")
        self._events_since = time.time()
        if self.stats_enabled and self.one_shot:
            try:
                running = [c["Id"] for c in self.client.api.containers(filters={"status": "running"})]
                self._gather_stats(running)
            except Exception as err:  # priming is an optimisation; the first cycle copes without it
                _LOGGER.debug("docker: cannot prime stats: %s", err)
        self._maybe_refresh_disk_usage()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self.client is not None:
            self.client.close()
            self.client = None

    def _refresh_version(self, now: float) -> None:
        self.version = dict(self.client.version())
        self._version_at = now
        self.kind = engine_kind(self.version)
        self.api_version = str(self.version.get("ApiVersion") or self.client.api.api_version)
        self.one_shot = api_tuple(self.client.api.api_version) >= ONE_SHOT_API_VERSION

    # --------------------------------------------------------------- collect

    def collect(self) -> dict[str, Any]:
        """One snapshot: {"state": {...}, "metrics": {...}}; raises RuntimeError with a clear reason when the engine is gone."""
        started = time.monotonic()
        try:
            result = self._collect()
        except EngineUnreachable as err:
            raise RuntimeError(str(err)) from None
        except Exception as err:
            problem = unreachable(err, self.endpoint)
            if problem.why == "other":
                raise
            raise RuntimeError(str(problem)) from None
        self.last_duration = time.monotonic() - started
        return result

    def _collect(self) -> dict[str, Any]:
        assert self.client is not None and self._pool is not None, "start() first"
        mono = time.monotonic()
        if mono - self._version_at >= VERSION_REFRESH_SECONDS:
            self._refresh_version(mono)
        if self.stats_enabled and self.one_shot and self._samples:
            # A CPU percentage over a few milliseconds is noise: wait out a minimal window once.
            youngest = max(s.at for s in self._samples.values())
            if mono - youngest < MIN_STATS_WINDOW_SECONDS:
                time.sleep(MIN_STATS_WINDOW_SECONDS - (mono - youngest))
        now = time.time()
        listed = {c["Id"]: c for c in self.client.api.containers(all=True)}
        running = [cid for cid, c in listed.items() if c.get("State") == "running"]
        inspect_futures = {cid: self._pool.submit(self.client.api.inspect_container, cid) for cid in listed}
        stats = self._gather_stats(running) if self.stats_enabled else {}
        info = self.client.info()
        images = self.client.api.images()
        volumes = (self.client.api.volumes() or {}).get("Volumes") or []
        deliberate = self._deliberate_ids(now)

        containers: list[dict[str, Any]] = []
        for cid, future in inspect_futures.items():
            try:
                attrs = future.result()
            except Exception as err:
                if _is_not_found(err):
                    continue  # removed between the list and the inspect
                raise
            container = describe_container(attrs, listed.get(cid), self.masker, show_env=self.show_env)
            if cid in stats:
                container["stats"] = stats[cid]
            containers.append(container)
        containers.sort(key=lambda c: c["name"].casefold())

        self._maybe_refresh_disk_usage()
        events = self.tracker.update(containers, now, deliberate)
        for event in events:
            _LOGGER.info("docker: container %s %s (%s)", event["container"], event["type"].replace("_", " "), event["detail"])
        state = {
            "engine": self._engine(info),
            "containers": containers,
            "images": [self._image(i) for i in images],
            "volumes": self._volumes(volumes),
            "events": self.tracker.recent(),
            "collected_in_s": round(time.monotonic() - mono, 3),
        }
        disk = self._disk_usage()
        if disk is not None:
            state["disk_usage"] = disk
        self._last_snapshot_at = now
        metrics = self._metrics(state)
        return {"state": fit_budget(state), "metrics": metrics}

    # ----------------------------------------------------------------- stats

    def _gather_stats(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stats of every running container at once, at most `workers` in flight."""
        assert self._pool is not None
        futures = {cid: self._pool.submit(self._one_stats, cid) for cid in ids}
        out: dict[str, dict[str, Any]] = {}
        for cid, future in futures.items():
            try:
                shaped = future.result()
            except Exception as err:
                if _is_not_found(err) or _is_conflict(err):
                    continue  # stopped or removed meanwhile
                _LOGGER.debug("docker: stats of %s failed: %s", cid[:12], err)
                continue
            if shaped is not None:
                out[cid] = shaped
        for gone in set(self._samples) - set(ids):
            del self._samples[gone]
        return out

    def _one_stats(self, cid: str) -> dict[str, Any] | None:
        previous = self._samples.get(cid)
        if self.one_shot:
            raw = self.client.api.stats(cid, stream=False, one_shot=True)
        else:
            raw = self.client.api.stats(cid, stream=False)
        if not isinstance(raw, Mapping) or not raw.get("cpu_stats"):
            return None
        sample = _counters(raw, time.monotonic())
        self._samples[cid] = sample
        return shape_stats(raw, sample, previous)

    # ----------------------------------------------------------- engine & co

    def _engine(self, info: Mapping[str, Any]) -> dict[str, Any]:
        version = self.version
        engine = {
            "kind": self.kind,
            "version": version.get("Version") or info.get("ServerVersion"),
            "api_version": self.api_version,
            "os": info.get("OperatingSystem"),
            "os_type": info.get("OSType"),
            "arch": info.get("Architecture"),
            "kernel": info.get("KernelVersion"),
            "name": info.get("Name"),
            "storage_driver": info.get("Driver"),
            "logging_driver": info.get("LoggingDriver"),
            "cgroup_driver": info.get("CgroupDriver"),
            "cgroup_version": info.get("CgroupVersion"),
            "root_dir": info.get("DockerRootDir"),
            "cpus": info.get("NCPU"),
            "mem_total_bytes": info.get("MemTotal"),
            "containers": info.get("Containers"),
            "containers_running": info.get("ContainersRunning"),
            "containers_paused": info.get("ContainersPaused"),
            "containers_stopped": info.get("ContainersStopped"),
            "images": info.get("Images"),
            "endpoint": self.endpoint.url,
        }
        return {k: v for k, v in engine.items() if v not in (None, "")}

    @staticmethod
    def _image(image: Mapping[str, Any]) -> dict[str, Any]:
        tags = [t for t in image.get("RepoTags") or () if t and t != "<none>:<none>"]
        out = {
            "id": image.get("Id", ""),
            "tags": tags,
            "size_bytes": image.get("Size"),
            "created": image.get("Created"),
            "dangling": not tags,
        }
        if isinstance(image.get("Containers"), int) and image["Containers"] >= 0:
            out["containers"] = image["Containers"]
        return out

    def _volumes(self, volumes: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        usage = {}
        if self._df is not None:
            for v in self._df.get("Volumes") or ():
                data = v.get("UsageData") or {}
                usage[v.get("Name")] = data
        out = []
        for v in volumes:
            row = {
                "name": v.get("Name"),
                "driver": v.get("Driver"),
                "mountpoint": v.get("Mountpoint"),
                "created": parse_time(v.get("CreatedAt")),
                "scope": v.get("Scope"),
            }
            data = usage.get(v.get("Name"))
            if data:
                if isinstance(data.get("Size"), int) and data["Size"] >= 0:
                    row["size_bytes"] = data["Size"]
                if isinstance(data.get("RefCount"), int) and data["RefCount"] >= 0:
                    row["containers"] = data["RefCount"]
            out.append({k: val for k, val in row.items() if val is not None})
        out.sort(key=lambda r: str(r.get("name", "")))
        return out

    # ------------------------------------------------------------ disk usage

    def _maybe_refresh_disk_usage(self) -> None:
        """`docker system df` in a background thread every disk_usage_interval; a slow one never holds up a cycle."""
        if self.disk_usage_interval <= 0 or self.client is None:
            return
        if self._df_thread is not None and self._df_thread.is_alive():
            return
        if time.monotonic() - self._df_started < self.disk_usage_interval:
            return
        self._df_started = time.monotonic()
        client = self.client

        def run() -> None:
            try:
                df = client.df()
            except Exception as err:
                self._df_error = str(err)
                _LOGGER.debug("docker: disk usage failed: %s", err)
                return
            self._df = {"at": time.time(), **df}
            self._df_error = ""

        # A daemon thread, not the pool: a df that takes minutes must neither block stats nor the agent's exit.
        self._df_thread = threading.Thread(target=run, name="roost-docker-df", daemon=True)
        self._df_thread.start()

    def _disk_usage(self) -> dict[str, Any] | None:
        df = self._df
        if df is None:
            return None
        volumes = [((v.get("UsageData") or {}).get("Size"), (v.get("UsageData") or {}).get("RefCount")) for v in df.get("Volumes") or ()]
        images = df.get("Images") or ()
        return {
            "at": round(df["at"], 3),
            "images_bytes": int(df.get("LayersSize") or 0),
            "images_count": len(images),
            "images_unused_count": sum(1 for i in images if i.get("Containers") == 0),
            "containers_bytes": sum(int(c.get("SizeRw") or 0) for c in df.get("Containers") or ()),
            "volumes_bytes": sum(size for size, _ in volumes if isinstance(size, int) and size > 0),
            "volumes_unused_bytes": sum(size for size, refs in volumes if isinstance(size, int) and size > 0 and refs == 0),
            "build_cache_bytes": sum(int(b.get("Size") or 0) for b in df.get("BuildCache") or ()),
        }

    # ----------------------------------------------------- deliberate stops

    def _deliberate_ids(self, now: float) -> set[str]:
        """Containers someone stopped, killed or removed since the last snapshot, from the engine's event log."""
        since, self._events_since = self._events_since, now
        try:
            stream = self.client.api.events(
                since=since - 1, until=now, decode=True, filters={"type": "container", "event": list(DELIBERATE_ACTIONS)}
            )
            try:
                for event in stream:
                    cid = event.get("id") or (event.get("Actor") or {}).get("ID")
                    when = event.get("timeNano", 0) / NS or event.get("time") or now
                    if cid:
                        self._deliberate[cid] = max(self._deliberate.get(cid, 0.0), when)
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
        except Exception as err:  # without the event log every exit counts as unexpected; say so quietly
            _LOGGER.debug("docker: cannot read engine events: %s", err)
        for cid, when in list(self._deliberate.items()):
            if when < now - DELIBERATE_MEMORY_SECONDS:
                del self._deliberate[cid]
        last = self._last_snapshot_at if self._last_snapshot_at is not None else now
        return {cid for cid, when in self._deliberate.items() if when >= last - 1}

    # --------------------------------------------------------------- metrics

    @staticmethod
    def _metrics(state: Mapping[str, Any]) -> dict[str, float]:
        metrics = container_metrics(state["containers"])
        metrics.update(
            images_count=len(state["images"]),
            images_size_bytes=sum(i.get("size_bytes") or 0 for i in state["images"]),
            images_dangling=sum(1 for i in state["images"] if i["dangling"]),
            volumes_count=len(state["volumes"]),
        )
        disk = state.get("disk_usage")
        if disk:
            metrics["disk_images_bytes"] = disk["images_bytes"]
            metrics["disk_containers_bytes"] = disk["containers_bytes"]
            metrics["disk_volumes_bytes"] = disk["volumes_bytes"]
            metrics["disk_build_cache_bytes"] = disk["build_cache_bytes"]
        return metrics


def container_metrics(containers: list[Mapping[str, Any]]) -> dict[str, float]:
    """Counts by state and the per-container series ("cpu_percent[web]"), without the domain prefix."""
    metrics: dict[str, float] = {
        "containers_total": len(containers),
        "containers_running": sum(1 for c in containers if c["state"] == "running"),
        "containers_paused": sum(1 for c in containers if c["state"] == "paused"),
        "containers_restarting": sum(1 for c in containers if c["state"] == "restarting"),
        "containers_stopped": sum(1 for c in containers if c["state"] in ("created", "exited", "dead")),
        "containers_unhealthy": sum(1 for c in containers if c.get("health") == "unhealthy"),
    }
    # Running containers first, then by name, so a huge host keeps the series that matter.
    ranked = sorted(containers, key=lambda c: (c["state"] != "running", str(c["name"]).casefold()))
    for c in ranked[:MAX_SERIES_CONTAINERS]:
        name = c["name"]
        if isinstance(c.get("restart_count"), int):
            metrics[f"restart_count[{name}]"] = c["restart_count"]
        for key, value in (c.get("stats") or {}).items():
            if key in STAT_METRICS:
                metrics[f"{key}[{name}]"] = value
    return metrics


# What goes first when the state is over its budget: lists that can be long, then per-container details.
_TRIM_LISTS = ("images", "volumes")
_TRIM_CONTAINER_KEYS = ("labels", "env", "health_last", "healthcheck", "mounts", "command", "entrypoint", "networks")
_TRIM_LIST_KEEP = 100


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def fit_budget(state: dict[str, Any], budget: int = STATE_BUDGET_BYTES) -> dict[str, Any]:
    """Leave the bulkiest details out until the state fits the budget, and say what was left out."""
    size = _size(state)
    if size <= budget:
        return state
    left_out: list[str] = []
    for key in _TRIM_LISTS:
        if len(state.get(key) or ()) > _TRIM_LIST_KEEP:
            state[key] = sorted(state[key], key=lambda item: -(item.get("size_bytes") or 0))[:_TRIM_LIST_KEEP]
            left_out.append(f"{key} beyond the largest {_TRIM_LIST_KEEP}")
            if _size(state) <= budget:
                break
    for key in _TRIM_CONTAINER_KEYS:
        if _size(state) <= budget:
            break
        for container in state.get("containers") or ():
            container.pop(key, None)
        left_out.append(f"containers' {key}")
    state["trimmed"] = {"bytes": size, "budget": budget, "left_out": left_out}
    _LOGGER.warning("docker: the state is %d bytes, over its %d-byte budget; left out %s", size, budget, ", ".join(left_out))
    return state


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _is_not_found(err: BaseException) -> bool:
    return _status(err) == 404


def _is_conflict(err: BaseException) -> bool:
    return _status(err) == 409
