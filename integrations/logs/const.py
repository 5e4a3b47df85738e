"""Constants of the logs integration."""

from __future__ import annotations

from typing import Final

from roost.core.reads import Reads

DOMAIN: Final = "logs"
# Reports nothing on its own (only its actions answer, each under its own capability).
READS: Final = Reads()
CAP_LOGS_READ: Final = "logs.read"

ACTION_JOURNAL: Final = "logs.journal"
ACTION_FILE: Final = "logs.file"
ACTION_LIST: Final = "logs.list"

CONF_JOURNAL: Final = "journal"
CONF_UNITS: Final = "units"
CONF_DIRECTORY: Final = "directory"
CONF_ROOTS: Final = "roots"
CONF_MAX_LINES: Final = "max_lines"
CONF_MAX_BYTES: Final = "max_bytes"
CONF_MAX_SCAN: Final = "max_scan_lines"
CONF_MAX_ENTRIES: Final = "max_entries"

DEFAULT_UNITS: Final = ("*",)
DEFAULT_LINES: Final = 100
DEFAULT_MAX_LINES: Final = 1000
MAX_MAX_LINES: Final = 10_000
# A job result is one message of at most 1 MiB; entries and the text output
# both carry the messages, JSON-escaped (up to 3x), so 128 KiB is the ceiling.
DEFAULT_MAX_BYTES: Final = 64 * 1024
MAX_MAX_BYTES: Final = 128 * 1024
# With a match, how many of the newest journal entries (or bytes of a file, x 200) are searched.
DEFAULT_MAX_SCAN: Final = 10_000
MAX_MAX_SCAN: Final = 200_000
SCAN_BYTES_PER_LINE: Final = 200
DEFAULT_MAX_ENTRIES: Final = 1000
MAX_MATCH_CHARS: Final = 200

# Where a systemd journal lives when there is one (sd_booted is not required: a
# container can have the host's journal mounted).
JOURNAL_DIRS: Final = ("/run/log/journal", "/var/log/journal")
JOURNALCTL_TIMEOUT_SECONDS: Final = 20.0
ACTION_TIMEOUT_SECONDS: Final = 30.0
JOURNAL_LINE_LIMIT: Final = 4 * 1024 * 1024
STDERR_CAP: Final = 8 * 1024
# Fields worth sending; journalctl adds __CURSOR and the timestamps anyway.
JOURNAL_FIELDS: Final = (
    "MESSAGE",
    "PRIORITY",
    "SYSLOG_IDENTIFIER",
    "_COMM",
    "_PID",
    "_SYSTEMD_UNIT",
    "OBJECT_SYSTEMD_UNIT",
    "UNIT",
    "_HOSTNAME",
)
