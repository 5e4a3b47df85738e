"""Constants of the services integration."""

from __future__ import annotations

from typing import Final

from roost.core.reads import Reads

DOMAIN: Final = "services"
# Reports nothing on its own (only its actions answer, each under its own capability).
READS: Final = Reads()
CAP_SERVICES_READ: Final = "services.read"
CAP_SERVICES_MANAGE: Final = "services.manage"

ACTION_STATUS: Final = "services.status"
ACTION_START: Final = "services.start"
ACTION_STOP: Final = "services.stop"
ACTION_RESTART: Final = "services.restart"
VERBS: Final = {ACTION_START: "start", ACTION_STOP: "stop", ACTION_RESTART: "restart"}

CONF_ALLOW: Final = "allow"
CONF_DENY: Final = "deny"
CONF_SYSTEMCTL_TIMEOUT: Final = "systemctl_timeout"
CONF_RUN_ROOT: Final = "run_root"
CONF_RATE_LIMIT: Final = "rate_limit_per_minute"

DEFAULT_ALLOW: Final = ("*",)
DEFAULT_SYSTEMCTL_TIMEOUT: Final = 90.0
MAX_SYSTEMCTL_TIMEOUT: Final = 900.0
DEFAULT_RUN_ROOT: Final = "/run"
DEFAULT_RATE_LIMIT: Final = 30
STATUS_TIMEOUT_SECONDS: Final = 15.0
ACTION_GRACE_SECONDS: Final = 10.0
MAX_OUTPUT_BYTES: Final = 16 * 1024
SYSTEMCTL_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# What `systemctl show` is asked for, in this order.
SHOW_PROPERTIES: Final = (
    "Id",
    "Description",
    "LoadState",
    "ActiveState",
    "SubState",
    "UnitFileState",
    "MainPID",
    "ActiveEnterTimestamp",
    "ExecMainStatus",
    "Result",
    "NRestarts",
    "FragmentPath",
)
