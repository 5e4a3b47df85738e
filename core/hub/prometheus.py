"""Prometheus exposition at ``GET /metrics``: every node's series from the hub's in-memory latest state, node liveness, jobs and the hub itself.

A scrape never touches the database: it reads the caches the hub keeps in
step with the store (nodes, their latest metrics, last-seen times) and the
job counts kept here from the job engine's own state changes. Roost's series
``linux_host.disk_used_percent[/]`` become ``roost_linux_host_disk_used_percent
{node="n…", name="nas", mountpoint="/"}``: the bracketed part is labelled
with the ``label_name`` its integration declares in its field metadata (else
``key``) and an integration may give it a ``prometheus_name``. Only where the meaning is node_exporter's own (memory and
filesystem bytes) does a series take node_exporter's name. Every Roost series
is a gauge; nothing is dressed up as a counter.

Access: a user or API token that may read (any role; read scope is enough),
or, with ``[hub] metrics_public_lan = true``, any LAN address without one.
``GET /api/v1/prometheus/targets`` is an HTTP service-discovery document
with one target per node (``/metrics/nodes/{id}``) for one job per node.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.utils import floatToGoString

from roost.core.const import NODE_ONLINE, __version__

from .state import HUB_KEY, Hub
from .auth import IDENTITY_KEY, add_public_path, requires
from .security import is_private_address, peer_of

METRICS_PATH = "/metrics"
NODE_METRICS_PATH = "/metrics/nodes/{node_id}"
TARGETS_PATH = "/api/v1/prometheus/targets"
PREFIX = "roost_"
DEFAULT_LABEL = "key"
# Roost series whose meaning is exactly node_exporter's: they take its name (and its mountpoint label).
NODE_EXPORTER_NAMES = {
    "linux_host.mem_total_bytes": "node_memory_MemTotal_bytes",
    "linux_host.disk_total_bytes": "node_filesystem_size_bytes",
    "linux_host.disk_free_bytes": "node_filesystem_avail_bytes",
}
# Families this module writes itself; a node's series can never take one of these names.
RESERVED_DOMAINS = frozenset({"node", "nodes", "integration", "integrations", "jobs", "job", "hub", "alerts", "scrape"})
JOB_FINAL = ("succeeded", "failed", "timed_out", "cancelled")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}$")
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")
_RESERVED_LABELS = frozenset({"node", "name", "job", "instance"})
# How many finished job ids are remembered so a repeated final event is not counted twice.
_SEEN_FINAL = 10_000


def family_name(series: str, declared: str | None = None) -> str | None:
    """``linux_host.uptime_s`` -> ``roost_linux_host_uptime_seconds``; None for a series that cannot be exported.

    ``declared`` is the ``prometheus_name`` an integration gives the series in
    its field metadata; it can only rename within ``roost_<domain>_``.
    """
    if series in NODE_EXPORTER_NAMES:
        return NODE_EXPORTER_NAMES[series]
    domain, dot, base = series.partition(".")
    if not dot or not domain or not base or domain in RESERVED_DOMAINS:
        return None
    if declared and _LABEL_RE.match(declared):
        base = declared
    name = _UNSAFE.sub("_", f"{domain}_{base}")
    if name.endswith("_per_s"):
        name = name[: -len("_per_s")] + "_per_second"
    elif name.endswith("_s"):
        name = name[: -len("_s")] + "_seconds"
    for suffix in ("_total", "_count"):
        # Those suffixes belong to counters and histograms; a gauge must not look like one.
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return PREFIX + name


def split_series(series: str) -> tuple[str, str | None]:
    """``disk_used_percent[/srv]`` -> (``disk_used_percent``, ``/srv``)."""
    if series.endswith("]") and "[" in series:
        base, _, rest = series.partition("[")
        return base, rest[:-1]
    return series, None


class JobCounts:
    """Jobs by state (the ones not yet final) and finished jobs by action and outcome, from the job engine's state changes."""

    def __init__(self) -> None:
        self.active: dict[str, tuple[str, str]] = {}
        self.finished: Counter[tuple[str, str]] = Counter()
        self._seen: dict[str, None] = {}

    def observe(self, job_id: str, action: str, state: str) -> None:
        if state in JOB_FINAL:
            self.active.pop(job_id, None)
            if job_id in self._seen:
                return
            self._seen[job_id] = None
            if len(self._seen) > _SEEN_FINAL:
                self._seen.pop(next(iter(self._seen)))
            self.finished[(action, state)] += 1
        else:
            self.active[job_id] = (state, action)


JOB_COUNTS_KEY = web.AppKey("roost_job_counts", JobCounts)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)


@dataclass
class _NodeCache:
    """One node's rendered lines, valid while its record, status and latest metrics are the same objects."""

    node: Any
    status: str
    metrics: Any
    ident: str
    static: dict[str, bytes]
    series: dict[str, bytes]


class Exposition:
    """Renders the text format from the hub's caches; a node's lines are rendered again only after it reported.

    prometheus_client's own exposition formats every sample on every scrape
    (about 0.6 s of CPU for 1,000 nodes of 64 series here); a node's series
    change only when it reports, so their text is kept per node and a scrape
    mostly joins strings. The hub's process metrics still come from
    prometheus_client's collectors.
    """

    STATIC = (
        ("roost_node_info", "Facts about a node, always 1."),
        ("roost_integration_state", "1 for the state each integration of a node is in."),
    )

    def __init__(self, hub: Hub, jobs: JobCounts) -> None:
        self.hub = hub
        self.jobs = jobs
        self._cache: dict[str, _NodeCache] = {}
        self._help: dict[str, str] = {}
        self._process = CollectorRegistry(auto_describe=False)
        ProcessCollector(namespace="roost_hub", registry=self._process)
        PlatformCollector(registry=self._process)
        GCCollector(registry=self._process)

    def _node(self, node_id: str, now: float) -> _NodeCache:
        hub = self.hub
        node = hub._nodes[node_id]
        status = "revoked" if node.revoked else hub.node_status(node_id, now)
        metrics = hub._metrics.get(node_id)
        cached = self._cache.get(node_id)
        if cached is not None and cached.node is node and cached.status == status and cached.metrics is metrics:
            return cached
        ident = _labels((("node", node_id), ("name", node.name)))
        facts = node.facts or {}
        info = _labels(
            (
                ("hostname", node.hostname or ""),
                ("status", status),
                ("agent_version", node.agent_version or ""),
                ("os", str(facts.get("os", ""))),
                ("kernel", str(facts.get("kernel", ""))),
                ("arch", str(facts.get("arch", ""))),
            )
        )
        static = {"roost_node_info": f"roost_node_info{{{ident},{info}}} 1.0\n".encode()}
        states = "".join(
            f"roost_integration_state{{{ident},{_labels((('domain', str(i.get('domain', ''))), ('state', str(i.get('state', '')))))}}} 1.0\n"
            for i in node.integrations or ()
        )
        if states:
            static["roost_integration_state"] = states.encode()
        series: dict[str, list[str]] = {}
        fields = node.fields or {}
        for roost_name, value in (metrics or {}).items():
            base, key = split_series(roost_name)
            meta = fields.get(base) or {}
            family = family_name(base, meta.get("prometheus_name"))
            if family is None:
                continue
            if family not in self._help:
                self._help[family] = _help(meta.get("description") or f"Roost series {base}.")
            if key is None:
                line = f"{family}{{{ident}}} {floatToGoString(value)}\n"
            else:
                label = "mountpoint" if base in NODE_EXPORTER_NAMES else (meta.get("label_name") or DEFAULT_LABEL)
                if not _LABEL_RE.match(label) or label in _RESERVED_LABELS or label.startswith("__"):
                    label = DEFAULT_LABEL
                line = f'{family}{{{ident},{label}="{_escape(key)}"}} {floatToGoString(value)}\n'
            series.setdefault(family, []).append(line)
        cached = _NodeCache(node, status, metrics, ident, static, {f: "".join(lines).encode() for f, lines in series.items()})
        self._cache[node_id] = cached
        return cached

    def render(self, only: str | None = None) -> bytes:
        """The whole exposition at once (tests, and the per-node endpoint)."""
        return b"".join(self.chunks(only))

    def chunks(self, only: str | None = None) -> Iterator[bytes]:
        """The exposition one family at a time, so a scrape never holds a second copy of all of it."""
        hub = self.hub
        now = time.time()
        if only is not None:
            node_ids = [only] if only in hub._nodes else []
        else:
            node_ids = list(hub._nodes)
            for gone in [n for n in self._cache if n not in hub._nodes]:
                del self._cache[gone]
        up = ["# HELP roost_node_up 1 while the node reports on time (online), else 0.\n# TYPE roost_node_up gauge\n"]
        seen = [
            "# HELP roost_node_last_seen_timestamp_seconds When the hub last heard from the node.\n"
            "# TYPE roost_node_last_seen_timestamp_seconds gauge\n"
        ]
        static: dict[str, list[bytes]] = {name: [] for name, _ in self.STATIC}
        families: dict[str, list[bytes]] = {}
        engine = getattr(hub, "alerts", None)
        alerts = ["# HELP roost_alerts_firing Alerts firing on the node, by severity.\n# TYPE roost_alerts_firing gauge\n"]
        for node_id in node_ids:
            entry = self._node(node_id, now)
            up.append(f"roost_node_up{{{entry.ident}}} {'1.0' if entry.status == NODE_ONLINE else '0.0'}\n")
            if engine is not None:
                counts = engine.counts(node_id)
                for severity in ("critical", "warning"):
                    alerts.append(f'roost_alerts_firing{{{entry.ident},severity="{severity}"}} {floatToGoString(counts.get(severity, 0))}\n')
            last = hub._last_seen.get(node_id)
            if last:
                seen.append(f"roost_node_last_seen_timestamp_seconds{{{entry.ident}}} {floatToGoString(last)}\n")
            for name, text in entry.static.items():
                static[name].append(text)
            for family, text in entry.series.items():
                chunks = families.get(family)
                if chunks is None:
                    families[family] = [text]
                else:
                    chunks.append(text)
        yield "".join(up + seen + (alerts if engine is not None else [])).encode()
        for name, help_text in self.STATIC:
            yield f"# HELP {name} {help_text}\n# TYPE {name} gauge\n".encode() + b"".join(static[name])
        if only is None:
            yield "".join(self._jobs_and_hub()).encode()
        for family, chunks in families.items():
            yield f"# HELP {family} {self._help.get(family, '')}\n# TYPE {family} gauge\n".encode() + b"".join(chunks)
        if only is None:
            yield generate_latest(self._process)

    def _jobs_and_hub(self) -> list[str]:
        parts = ["# HELP roost_jobs Jobs not yet finished, by state and action.\n# TYPE roost_jobs gauge\n"]
        for (state, action), count in sorted(Counter(self.jobs.active.values()).items()):
            parts.append(f"roost_jobs{{{_labels((('state', state), ('action', action)))}}} {floatToGoString(count)}\n")
        parts.append(
            "# HELP roost_jobs_finished_total Jobs that reached a final state since the hub started, by action and state.\n"
            "# TYPE roost_jobs_finished_total counter\n"
        )
        for (action, state), count in sorted(self.jobs.finished.items()):
            parts.append(f"roost_jobs_finished_total{{{_labels((('action', action), ('state', state)))}}} {floatToGoString(count)}\n")
        parts.append(
            "# HELP roost_hub_info The hub, always 1.\n# TYPE roost_hub_info gauge\n"
            f"roost_hub_info{{{_labels((('version', __version__), ('hub_id', self.hub.hub_id)))}}} 1.0\n"
            "# HELP roost_hub_start_time_seconds When this hub process started.\n# TYPE roost_hub_start_time_seconds gauge\n"
            f"roost_hub_start_time_seconds {floatToGoString(self.hub.started_at)}\n"
        )
        return parts


def _allowed(request: web.Request) -> bool:
    if request.get(IDENTITY_KEY) is not None:
        return True  # any role may read; a read-scoped token is enough
    return bool(request.app[HUB_KEY].config.metrics_public_lan) and is_private_address(peer_of(request))


def _refused() -> web.Response:
    return web.Response(
        status=401,
        text="send a read-scoped API token as 'Authorization: Bearer rst_...' (roost api-token create --scope read), "
        "or set metrics_public_lan = true in the hub's [hub] table for LAN scrapers\n",
        headers={"WWW-Authenticate": 'Bearer realm="roost-metrics"'},
    )


async def metrics(request: web.Request) -> web.Response:
    if not _allowed(request):
        return _refused()
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
    await response.prepare(request)
    for chunk in request.app[EXPOSITION_KEY].chunks():
        await response.write(chunk)
    await response.write_eof()
    return response


async def node_metrics(request: web.Request) -> web.Response:
    if not _allowed(request):
        return _refused()
    hub = request.app[HUB_KEY]
    node_id = request.match_info["node_id"]
    if hub.node(node_id) is None:
        return web.Response(status=404, text=f"no node {node_id!r}\n")
    return web.Response(body=request.app[EXPOSITION_KEY].render(only=node_id), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


@requires()
async def targets(request: web.Request) -> web.Response:
    """Prometheus HTTP service discovery: one target per node, each scraping /metrics/nodes/{id}."""
    hub = request.app[HUB_KEY]
    host = request.host
    scheme = request.scheme
    out: list[dict[str, Any]] = []
    for node_id, node in sorted(hub._nodes.items()):
        if node.revoked:
            continue
        out.append(
            {
                "targets": [host],
                "labels": {
                    "__scheme__": scheme,
                    "__metrics_path__": NODE_METRICS_PATH.format(node_id=node_id),
                    "node": node_id,
                    "name": node.name,
                },
            }
        )
    return web.json_response(out)


EXPOSITION_KEY = web.AppKey("roost_prometheus_exposition", Exposition)


async def _seed_ctx(app: web.Application):
    """Count the jobs that were already waiting or running when the hub started (one query, at start)."""
    counts = app[JOB_COUNTS_KEY]
    for job in await app[HUB_KEY].store.active_jobs():
        counts.observe(job.job_id, job.action, job.state)
    yield


def setup(app: web.Application) -> None:
    hub = app[HUB_KEY]
    counts = JobCounts()
    app[JOB_COUNTS_KEY] = counts
    app[EXPOSITION_KEY] = Exposition(hub, counts)
    hub.job_observers.append(counts.observe)
    app.cleanup_ctx.append(_seed_ctx)
    # Public to the login layer: the handlers check the token or the LAN rule themselves, and answer 401, not a login page.
    add_public_path(app, METRICS_PATH)
    add_public_path(app, "/metrics/nodes/", prefix=True)
    app.router.add_get(METRICS_PATH, metrics)
    app.router.add_get(NODE_METRICS_PATH, node_metrics)
    app.router.add_get(TARGETS_PATH, targets)
