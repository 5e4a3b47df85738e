"""Names and defaults of the tcp_probe integration."""

from typing import Final

from roost.core.reads import Reads

DOMAIN: Final = "tcp_probe"

CONF_TARGETS: Final = "targets"
CONF_NAME: Final = "name"
CONF_HOST: Final = "host"
CONF_PORT: Final = "port"
CONF_TIMEOUT: Final = "timeout"

DEFAULT_TIMEOUT: Final = 2.0
# The whole collection must end within the integration's collect timeout
# (8 s by default), and targets are probed concurrently, so one target's
# timeout must stay below it.
MAX_TIMEOUT: Final = 7.0

CAPABILITY_PROBE: Final = "network.probe.read"
# The probe results (state and metrics) leave the agent only with network.probe.read.
READS: Final = Reads.every(CAPABILITY_PROBE)

METRIC_UP: Final = "up"
METRIC_LATENCY: Final = "latency_ms"
METRIC_TARGETS_UP: Final = "targets_up"
