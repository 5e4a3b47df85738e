"""The command allowlist: its config schema, and turning a request's arguments into one argv, or a refusal.

Rules, each tested:

* ``argv[0]`` is an absolute path written in the config; it is never a
  placeholder and never looked up on PATH.
* A placeholder such as ``"{device}"`` is a whole argv element. One inside a
  longer string (``"--device={device}"``) is a config error, so a value can
  never change how its neighbours are split or read.
* Every placeholder is declared under ``args`` with a type; a string needs a
  ``pattern`` (matched against the whole value) or ``choices``.
* A value may not start with ``-`` unless its argument says ``allow_dash``
  (no option injection such as ``-oProxyCommand=...`` or ``--help``), may
  not contain NUL, a newline or a carriage return, and may not have a ``..``
  path segment, whatever the pattern would allow.
* An argument the command does not declare is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from roost.core.config import duration

from .const import (
    ARG_ALLOW_DASH,
    ARG_CHOICES,
    ARG_DEFAULT,
    ARG_DESCRIPTION,
    ARG_MAX,
    ARG_MAX_LENGTH,
    ARG_MIN,
    ARG_PATTERN,
    ARG_TYPE,
    CONF_ALLOW,
    CONF_ARGS,
    CONF_ARGV,
    CONF_CWD,
    CONF_DESCRIPTION,
    CONF_ENV,
    CONF_GROUP,
    CONF_MAX_OUTPUT,
    CONF_NAME,
    CONF_OK_EXIT_CODES,
    CONF_RATE_LIMIT,
    CONF_TIMEOUT,
    CONF_USER,
    DEFAULT_CWD,
    DEFAULT_MAX_LENGTH,
    DEFAULT_MAX_OUTPUT,
    DEFAULT_RATE_LIMIT,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_MAX_OUTPUT,
    MAX_TIMEOUT_SECONDS,
    TYPE_INT,
    TYPE_STRING,
)

COMMAND_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
ARG_NAME_RE = r"^[a-z_][a-z0-9_]{0,63}$"
PLACEHOLDER_RE = re.compile(r"^\{([a-z_][a-z0-9_]{0,63})\}$")
_EMBEDDED_RE = re.compile(r"\{[a-z_][a-z0-9_]{0,63}\}")
_FORBIDDEN_CHARS = {"\x00": "NUL", "\n": "a newline", "\r": "a carriage return"}
_INT_TEXT_RE = re.compile(r"^-?[0-9]{1,18}$")


def _whole_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise vol.Invalid("expected a whole number")
    return value


def _regex(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise vol.Invalid("expected a regular expression, e.g. \"^/dev/sd[a-z]$\"")
    try:
        re.compile(value)
    except re.error as err:
        raise vol.Invalid(f"not a valid regular expression: {err}") from None
    return value


def _account(value: Any) -> str | int:
    if isinstance(value, bool):
        raise vol.Invalid("expected a user or group name, or a numeric id")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and re.match(r"^[a-z_][a-z0-9_.-]{0,31}\$?$", value, re.IGNORECASE):
        return value
    raise vol.Invalid("expected a user or group name, or a numeric id")


ARG_SCHEMA = vol.Schema(
    {
        vol.Required(ARG_TYPE): vol.In([TYPE_STRING, TYPE_INT], msg="type must be \"string\" or \"int\""),
        vol.Optional(ARG_PATTERN): _regex,
        vol.Optional(ARG_CHOICES): vol.All([vol.Any(str, _whole_number)], vol.Length(min=1)),
        vol.Optional(ARG_MIN): _whole_number,
        vol.Optional(ARG_MAX): _whole_number,
        vol.Optional(ARG_MAX_LENGTH, default=DEFAULT_MAX_LENGTH): vol.All(_whole_number, vol.Range(min=1, max=4096)),
        vol.Optional(ARG_ALLOW_DASH, default=False): bool,
        vol.Optional(ARG_DEFAULT): vol.Any(str, _whole_number),
        vol.Optional(ARG_DESCRIPTION, default=""): vol.All(str, vol.Length(max=200)),
    },
    extra=vol.PREVENT_EXTRA,
)

COMMAND_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_NAME): vol.All(str, vol.Match(COMMAND_NAME_RE, msg="command names are lower-case letters, digits, _ . - (e.g. smart)")),
        vol.Required(CONF_ARGV): vol.All([str], vol.Length(min=1, max=64, msg="argv must have 1 to 64 elements")),
        vol.Optional(CONF_ARGS, default=dict): {vol.Match(ARG_NAME_RE, msg="argument names are lower_snake_case"): ARG_SCHEMA},
        vol.Optional(CONF_DESCRIPTION, default=""): vol.All(str, vol.Length(max=200)),
        vol.Optional(CONF_USER): _account,
        vol.Optional(CONF_GROUP): _account,
        vol.Optional(CONF_TIMEOUT, default=DEFAULT_TIMEOUT_SECONDS): duration(0.1, MAX_TIMEOUT_SECONDS),
        vol.Optional(CONF_MAX_OUTPUT, default=DEFAULT_MAX_OUTPUT): vol.All(
            _whole_number, vol.Range(min=1, max=MAX_MAX_OUTPUT, msg=f"must be between 1 and {MAX_MAX_OUTPUT} bytes")
        ),
        vol.Optional(CONF_CWD, default=DEFAULT_CWD): vol.All(str, vol.Match(r"^/", msg="cwd must be an absolute path")),
        vol.Optional(CONF_ENV, default=dict): {vol.Match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", msg="environment variable names are letters, digits and _"): str},
        vol.Optional(CONF_OK_EXIT_CODES, default=lambda: [0]): vol.All([vol.All(_whole_number, vol.Range(min=0, max=255))], vol.Length(min=1)),
    },
    extra=vol.PREVENT_EXTRA,
)


@dataclass(frozen=True)
class Argument:
    name: str
    type: str
    pattern: re.Pattern[str] | None
    choices: tuple[Any, ...] | None
    min: int | None
    max: int | None
    max_length: int
    allow_dash: bool
    default: Any
    description: str


@dataclass(frozen=True)
class Command:
    """One allowed command, checked when the config was read."""

    name: str
    argv: tuple[str, ...]
    args: dict[str, Argument]
    description: str
    user: str | int | None
    group: str | int | None
    timeout: float
    max_output: int
    cwd: str
    env: dict[str, str]
    ok_exit_codes: tuple[int, ...]


def _argument(name: str, raw: dict[str, Any], where: str) -> Argument:
    arg = Argument(
        name=name,
        type=raw[ARG_TYPE],
        pattern=re.compile(raw[ARG_PATTERN]) if ARG_PATTERN in raw else None,
        choices=tuple(raw[ARG_CHOICES]) if ARG_CHOICES in raw else None,
        min=raw.get(ARG_MIN),
        max=raw.get(ARG_MAX),
        max_length=raw[ARG_MAX_LENGTH],
        allow_dash=raw[ARG_ALLOW_DASH],
        default=raw.get(ARG_DEFAULT),
        description=raw[ARG_DESCRIPTION],
    )
    if arg.type == TYPE_STRING and arg.pattern is None and arg.choices is None:
        raise vol.Invalid(f"{where}: a string argument needs a pattern (e.g. \"^[a-z0-9-]+$\") or choices", path=[ARG_PATTERN])
    if arg.type == TYPE_STRING and (arg.min is not None or arg.max is not None):
        raise vol.Invalid(f"{where}: min and max are for int arguments; use a pattern for strings")
    if arg.default is not None:
        try:
            check_value(arg, arg.default)
        except ValueError as err:
            raise vol.Invalid(f"{where}: default {arg.default!r} {err}") from None
    return arg


def _command(raw: dict[str, Any]) -> Command:
    name = raw[CONF_NAME]
    argv = tuple(raw[CONF_ARGV])
    where = f"command {name}"
    if not argv[0].startswith("/") or PLACEHOLDER_RE.match(argv[0]):
        raise vol.Invalid(f"{where}: argv[0] must be the program's absolute path, e.g. \"/usr/sbin/smartctl\" (it is never looked up on PATH)")
    used: list[str] = []
    for index, element in enumerate(argv):
        for char, what in _FORBIDDEN_CHARS.items():
            if char in element:
                raise vol.Invalid(f"{where}: argv[{index}] contains {what}")
        whole = PLACEHOLDER_RE.match(element)
        if whole:
            used.append(whole.group(1))
        elif _EMBEDDED_RE.search(element):
            raise vol.Invalid(
                f"{where}: argv[{index}] {element!r} has a placeholder inside a longer string; a placeholder must be a whole "
                "argv element, e.g. [\"--device\", \"{device}\"] instead of [\"--device={device}\"]"
            )
    declared = raw[CONF_ARGS]
    for placeholder in used:
        if placeholder not in declared:
            raise vol.Invalid(f"{where}: argv uses {{{placeholder}}} but [args] does not declare {placeholder!r}")
    for arg_name in declared:
        if arg_name not in used:
            raise vol.Invalid(f"{where}: argument {arg_name!r} is declared but argv never uses {{{arg_name}}}")
    if len(set(used)) != len(used):
        raise vol.Invalid(f"{where}: each placeholder may appear once in argv")
    return Command(
        name=name,
        argv=argv,
        args={n: _argument(n, a, f"{where}, argument {n}") for n, a in declared.items()},
        description=raw[CONF_DESCRIPTION],
        user=raw.get(CONF_USER),
        group=raw.get(CONF_GROUP),
        timeout=raw[CONF_TIMEOUT],
        max_output=raw[CONF_MAX_OUTPUT],
        cwd=raw[CONF_CWD],
        env=dict(raw[CONF_ENV]),
        ok_exit_codes=tuple(raw[CONF_OK_EXIT_CODES]),
    )


def _commands(value: Any) -> dict[str, Command]:
    if not isinstance(value, list):
        raise vol.Invalid("expected [[integrations.commands.allow]] entries")
    out: dict[str, Command] = {}
    for index, raw in enumerate(value):
        try:
            command = _command(COMMAND_SCHEMA(raw))
        except vol.Invalid as err:
            raise vol.Invalid(err.msg, path=[index, *err.path]) from None
        if command.name in out:
            raise vol.Invalid(f"command {command.name!r} is listed twice", path=[index, CONF_NAME])
        out[command.name] = command
    return out


CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_ALLOW, default=list): _commands,
        # Defaults for every command that names no user or group of its own.
        vol.Optional(CONF_USER): _account,
        vol.Optional(CONF_GROUP): _account,
        vol.Optional(CONF_RATE_LIMIT, default=DEFAULT_RATE_LIMIT): vol.All(_whole_number, vol.Range(min=0, max=10_000)),
    },
    extra=vol.PREVENT_EXTRA,
)


# ----------------------------------------------------------------- requests


def check_value(arg: Argument, value: Any) -> str:
    """One argument's value as its argv element, or ValueError saying why not."""
    if arg.type == TYPE_INT:
        if isinstance(value, str) and _INT_TEXT_RE.match(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        if arg.min is not None and value < arg.min:
            raise ValueError(f"must be at least {arg.min}")
        if arg.max is not None and value > arg.max:
            raise ValueError(f"must be at most {arg.max}")
        if arg.choices is not None and value not in arg.choices:
            raise ValueError(f"must be one of {', '.join(map(str, arg.choices))}")
        text = str(value)
    else:
        if not isinstance(value, str):
            raise ValueError("must be text")
        text = value
        if not text:
            raise ValueError("must not be empty")
        if len(text) > arg.max_length:
            raise ValueError(f"is longer than {arg.max_length} characters")
        for char, what in _FORBIDDEN_CHARS.items():
            if char in text:
                raise ValueError(f"contains {what}")
        if ".." in text.split("/"):
            raise ValueError("has a '..' path segment")
        if text.startswith("-") and not arg.allow_dash:
            raise ValueError("may not start with '-' (it would be read as an option)")
        if arg.choices is not None and text not in arg.choices:
            raise ValueError(f"must be one of {', '.join(map(str, arg.choices))}")
        if arg.pattern is not None and not arg.pattern.fullmatch(text):
            raise ValueError(f"does not match {arg.pattern.pattern}")
    if text.startswith("-") and not arg.allow_dash:
        raise ValueError("may not start with '-' (it would be read as an option)")
    return text


def check_args(command: Command, raw: Any) -> dict[str, str]:
    """Every declared argument's argv element; ValueError naming the first that is wrong."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError("args must be an object of argument name -> value")
    unknown = sorted(str(k) for k in raw if k not in command.args)
    if unknown:
        takes = ", ".join(sorted(command.args)) or "no arguments"
        raise ValueError(f"{command.name} has no argument {', '.join(map(repr, unknown))} (it takes {takes})")
    out = {}
    for name, arg in command.args.items():
        if name in raw:
            value = raw[name]
        elif arg.default is not None:
            value = arg.default
        else:
            raise ValueError(f"argument {name} is required")
        try:
            out[name] = check_value(arg, value)
        except ValueError as err:
            raise ValueError(f"argument {name}: {value!r} {err}") from None
    return out


def build_argv(command: Command, values: dict[str, str]) -> list[str]:
    """The argv to run: literals as written, each placeholder replaced by its checked value, whole."""
    argv = []
    for element in command.argv:
        whole = PLACEHOLDER_RE.match(element)
        argv.append(values[whole.group(1)] if whole else element)
    return argv
