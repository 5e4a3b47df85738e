"""Constants of the docker integration: config keys, defaults, capabilities, action names and metric metadata."""

from __future__ import annotations

from typing import Final

from roost.core.reads import Reads

DOMAIN: Final = "docker"

CONF_URL: Final = "url"
CONF_API_TIMEOUT: Final = "api_timeout"
CONF_SECRET_PATTERN: Final = "secret_pattern"
CONF_SHOW_ENV: Final = "show_env"
CONF_STATS: Final = "stats"
CONF_STATS_WORKERS: Final = "stats_workers"
CONF_DISK_USAGE_INTERVAL: Final = "disk_usage_interval"
CONF_MAX_EVENTS: Final = "max_events"

DEFAULT_SOCKET: Final = "/var/run/docker.sock"
DEFAULT_URL: Final = f"unix://{DEFAULT_SOCKET}"
# Podman's Docker-compatible service, rootful and rootless, tried when Docker's socket is absent.
PODMAN_SOCKETS: Final = ("/run/podman/podman.sock", "{runtime}/podman/podman.sock")
DEFAULT_API_TIMEOUT: Final = 10.0
# Matched case-insensitively against env var and label names; a match masks the value on the agent.
DEFAULT_SECRET_PATTERN: Final = "PASS|SECRET|TOKEN|KEY|PRIVATE|CREDENTIAL"
DEFAULT_SHOW_ENV: Final = True
DEFAULT_STATS: Final = True
# Every stats call waits for dockerd's next 1 s sampling round (two rounds without one-shot), and one round
# serves every call waiting for it: the bound sets the number of rounds. 50 containers at 32 in flight take
# two rounds (~2 s); one after another they would take 50 to 100 s. Waiting calls cost dockerd nothing extra.
DEFAULT_STATS_WORKERS: Final = 32
MAX_STATS_WORKERS: Final = 64
# `docker system df` walks every layer and volume: slow on a big host, so it runs in the background this often.
DEFAULT_DISK_USAGE_INTERVAL: Final = 300.0
DEFAULT_MAX_EVENTS: Final = 50
MAX_EVENTS_LIMIT: Final = 1000

MASK: Final = "********"
# A CPU percentage over a shorter window is noise; the first cycle after setup waits out the rest once.
MIN_STATS_WINDOW_SECONDS: Final = 0.5
# The first API version whose stats have `one-shot` (no 1 s wait for a second sample).
ONE_SHOT_API_VERSION: Final = (1, 41)
HEALTH_OUTPUT_MAX_CHARS: Final = 300
# A report must stay under the wire limit (1 MiB) with every other integration's share in it: past this
# budget the bulkiest details are left out (and the state says so) rather than the report being refused.
STATE_BUDGET_BYTES: Final = 512 * 1024
# The protocol allows 5000 metrics per report: per-container series for this many containers at most.
MAX_SERIES_CONTAINERS: Final = 400
STATUS_ERROR_MAX_CHARS: Final = 300

# Events computed on the agent by comparing snapshots, for alerting.
EVENT_UNHEALTHY: Final = "unhealthy"
EVENT_RESTART_LOOP: Final = "restart_loop"
EVENT_EXITED: Final = "exited_unexpectedly"
EVENT_DISAPPEARED: Final = "disappeared"
EVENT_TYPES: Final = (EVENT_UNHEALTHY, EVENT_RESTART_LOOP, EVENT_EXITED, EVENT_DISAPPEARED)
# Restart-looping: this many restarts within the window.
RESTART_LOOP_COUNT: Final = 3
RESTART_LOOP_WINDOW_SECONDS: Final = 300.0

LABEL_COMPOSE_PROJECT: Final = "com.docker.compose.project"
LABEL_COMPOSE_SERVICE: Final = "com.docker.compose.service"
LABEL_PODMAN_COMPOSE_PROJECT: Final = "io.podman.compose.project"

CAP_READ: Final = "docker.read"
CAP_MANAGE: Final = "docker.manage"
CAP_LOGS: Final = "logs.read"
# Everything a report carries about containers, images, volumes and the engine needs docker.read.
READS: Final = Reads.every(CAP_READ)

ACTION_START: Final = "docker.container.start"
ACTION_STOP: Final = "docker.container.stop"
ACTION_RESTART: Final = "docker.container.restart"
ACTION_PAUSE: Final = "docker.container.pause"
ACTION_UNPAUSE: Final = "docker.container.unpause"
ACTION_REMOVE: Final = "docker.container.remove"
ACTION_COMPOSE_RESTART: Final = "docker.compose.restart"
ACTION_LOGS: Final = "docker.container.logs"
ACTION_IMAGE_PRUNE: Final = "docker.image.prune"
ACTION_SYSTEM_PRUNE: Final = "docker.system.prune"

DEFAULT_STOP_TIMEOUT: Final = 10
MAX_STOP_TIMEOUT: Final = 600
DEFAULT_LOG_TAIL: Final = 200
MAX_LOG_TAIL: Final = 10_000
DEFAULT_FOLLOW_SECONDS: Final = 60
MAX_FOLLOW_SECONDS: Final = 3600
# Lines of a followed log are sent as progress in batches at most this often.
LOG_FLUSH_SECONDS: Final = 0.25

UNIT_PERCENT: Final = "percent"
UNIT_BYTES: Final = "bytes"
UNIT_BYTES_PER_SECOND: Final = "bytes_per_second"
UNIT_COUNT: Final = "count"

# Metric metadata, keyed by metric name without its [container] label.
METRIC_FIELDS: Final[dict[str, dict[str, str]]] = {
    "containers_total": {"unit": UNIT_COUNT, "description": "Containers on this engine, in any state.", "label": "Containers"},
    "containers_running": {"unit": UNIT_COUNT, "description": "Running containers (paused ones not counted).", "label": "Running"},
    "containers_paused": {"unit": UNIT_COUNT, "description": "Paused containers.", "label": "Paused"},
    "containers_stopped": {"unit": UNIT_COUNT, "description": "Created, exited or dead containers.", "label": "Stopped"},
    "containers_restarting": {"unit": UNIT_COUNT, "description": "Containers the engine is restarting.", "label": "Restarting"},
    "containers_unhealthy": {"unit": UNIT_COUNT, "description": "Containers whose health check fails.", "label": "Unhealthy"},
    "images_count": {"unit": UNIT_COUNT, "description": "Images on this engine.", "label": "Images"},
    "images_size_bytes": {"unit": UNIT_BYTES, "description": "Size of all images (shared layers counted once per image).", "label": "Image size"},
    "images_dangling": {"unit": UNIT_COUNT, "description": "Untagged images no tag points to.", "label": "Dangling images"},
    "volumes_count": {"unit": UNIT_COUNT, "description": "Volumes on this engine.", "label": "Volumes"},
    "disk_images_bytes": {"unit": UNIT_BYTES, "description": "Disk used by image layers (docker system df).", "label": "Disk: images"},
    "disk_containers_bytes": {"unit": UNIT_BYTES, "description": "Disk used by containers' writable layers.", "label": "Disk: containers"},
    "disk_volumes_bytes": {"unit": UNIT_BYTES, "description": "Disk used by local volumes.", "label": "Disk: volumes"},
    "disk_build_cache_bytes": {"unit": UNIT_BYTES, "description": "Disk used by the build cache.", "label": "Disk: build cache"},
    "cpu_percent": {
        "label_name": "container",
        "unit": UNIT_PERCENT,
        "description": "CPU use of a container as `docker stats` shows it: 100 % is one full core.",
        "label": "CPU",
    },
    "mem_used_bytes": {"label_name": "container", "unit": UNIT_BYTES, "description": "Memory a container uses, without reclaimable page cache.", "label": "Memory"},
    "mem_percent": {"label_name": "container", "unit": UNIT_PERCENT, "description": "Memory a container uses, of its limit (or of the host's memory).", "label": "Memory"},
    "net_rx_bytes_per_s": {"label_name": "container", "unit": UNIT_BYTES_PER_SECOND, "description": "Bytes a container received per second.", "label": "Net in"},
    "net_tx_bytes_per_s": {"label_name": "container", "unit": UNIT_BYTES_PER_SECOND, "description": "Bytes a container sent per second.", "label": "Net out"},
    "block_read_bytes_per_s": {"label_name": "container", "unit": UNIT_BYTES_PER_SECOND, "description": "Bytes a container read from block devices per second.", "label": "Disk read"},
    "block_write_bytes_per_s": {"label_name": "container", "unit": UNIT_BYTES_PER_SECOND, "description": "Bytes a container wrote to block devices per second.", "label": "Disk write"},
    "restart_count": {"label_name": "container", "prometheus_name": "restarts", "unit": UNIT_COUNT, "description": "How often the engine restarted a container.", "label": "Restarts"},
}
# Per-container stats that become metrics ("cpu_percent[web]").
STAT_METRICS: Final = frozenset(
    {"cpu_percent", "mem_used_bytes", "mem_percent", "net_rx_bytes_per_s", "net_tx_bytes_per_s", "block_read_bytes_per_s", "block_write_bytes_per_s"}
)
# The per-container series the dashboard charts, in order.
CONTAINER_SERIES: Final = (
    "cpu_percent",
    "mem_used_bytes",
    "net_rx_bytes_per_s",
    "net_tx_bytes_per_s",
    "block_read_bytes_per_s",
    "block_write_bytes_per_s",
)
