"""Constants of the files integration."""

from __future__ import annotations

from typing import Final

from roost.core.reads import Reads

DOMAIN: Final = "files"
# Reports nothing on its own (only its actions answer, each under its own capability).
READS: Final = Reads()
CAP_READ_SCOPED: Final = "filesystem.read.scoped"

ACTION_LIST: Final = "files.list"
ACTION_READ: Final = "files.read"

CONF_ROOTS: Final = "roots"
CONF_MAX_READ_BYTES: Final = "max_read_bytes"
CONF_MAX_ENTRIES: Final = "max_entries"

DEFAULT_MAX_READ_BYTES: Final = 64 * 1024
# A job result travels in one message of at most 1 MiB, JSON-escaped (up to 3x
# for non-ASCII text, 4/3 for base64): 192 KiB read stays well inside it.
MAX_READ_BYTES: Final = 192 * 1024
DEFAULT_MAX_ENTRIES: Final = 1000
MAX_ENTRIES: Final = 10_000
ACTION_TIMEOUT_SECONDS: Final = 30.0
