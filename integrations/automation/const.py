"""Constants of the automation integration."""

from typing import Final

from roost.core.reads import Reads

# A hub-only integration reports nothing.
READS: Final = Reads()

DOMAIN: Final = "automation"
DEFAULT_CONFIRM_ACTION: Final = "linux_host.disk_usage"
NODE_STATUSES: Final = ("online", "stale", "offline", "any")
JOB_STATES: Final = ("succeeded", "failed", "timed_out", "cancelled", "refused")
ALERT_STATUSES: Final = ("firing", "resolved")
SEVERITIES: Final = ("info", "warning", "critical")
