"""Constants of the commands integration."""

from __future__ import annotations

from typing import Final

from roost.core.reads import Reads

DOMAIN: Final = "commands"
# Reports nothing on its own (only its actions answer, each under its own capability).
READS: Final = Reads()
CAP_EXECUTE_LIMITED: Final = "process.execute.limited"
ACTION_RUN: Final = "commands.run"

CONF_ALLOW: Final = "allow"
CONF_USER: Final = "user"
CONF_GROUP: Final = "group"
CONF_RATE_LIMIT: Final = "rate_limit_per_minute"
CONF_NAME: Final = "name"
CONF_ARGV: Final = "argv"
CONF_ARGS: Final = "args"
CONF_DESCRIPTION: Final = "description"
CONF_TIMEOUT: Final = "timeout"
CONF_MAX_OUTPUT: Final = "max_output"
CONF_CWD: Final = "cwd"
CONF_ENV: Final = "env"
CONF_OK_EXIT_CODES: Final = "ok_exit_codes"

ARG_TYPE: Final = "type"
ARG_PATTERN: Final = "pattern"
ARG_CHOICES: Final = "choices"
ARG_MIN: Final = "min"
ARG_MAX: Final = "max"
ARG_MAX_LENGTH: Final = "max_length"
ARG_ALLOW_DASH: Final = "allow_dash"
ARG_DEFAULT: Final = "default"
ARG_DESCRIPTION: Final = "description"
TYPE_STRING: Final = "string"
TYPE_INT: Final = "int"

DEFAULT_TIMEOUT_SECONDS: Final = 30.0
MAX_TIMEOUT_SECONDS: Final = 3600.0
DEFAULT_MAX_OUTPUT: Final = 64 * 1024
# One job result is one message of at most 1 MiB; output decoded with
# replacement characters can grow 6x once JSON-escaped.
MAX_MAX_OUTPUT: Final = 128 * 1024
DEFAULT_MAX_LENGTH: Final = 256
DEFAULT_RATE_LIMIT: Final = 30
DEFAULT_CWD: Final = "/"
# What a command may find on PATH; argv[0] itself is always an absolute path.
SAFE_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# After SIGTERM to the command's process group, how long before SIGKILL.
KILL_GRACE_SECONDS: Final = 2.0
# Seconds the action may run beyond the longest command timeout (the kill, the result).
ACTION_GRACE_SECONDS: Final = 10.0
ERROR_OUTPUT_CHARS: Final = 1500
