"""The logs integration's actions: logs.journal (systemd units), logs.file and logs.list (files under configured log roots)."""

from __future__ import annotations

import fnmatch
import os
from typing import Any

import voluptuous as vol

from roost.core.actions import ActionContext, ActionError, ActionRefused, ActionSpec
from roost.integrations.fields import CheckedText, whole_number
from roost.integrations.files.paths import KIND_DIR, KIND_FILE, RELATIVE_PATH, list_entries, open_under, parts_of, read_range

from .const import (
    ACTION_FILE,
    ACTION_JOURNAL,
    ACTION_LIST,
    ACTION_TIMEOUT_SECONDS,
    CAP_LOGS_READ,
    CONF_DIRECTORY,
    CONF_JOURNAL,
    CONF_MAX_BYTES,
    CONF_MAX_ENTRIES,
    CONF_MAX_LINES,
    CONF_MAX_SCAN,
    CONF_ROOTS,
    CONF_UNITS,
    DEFAULT_LINES,
    JOURNALCTL_TIMEOUT_SECONDS,
    SCAN_BYTES_PER_LINE,
)
from .journal import UNIT_RE, journal_argv, journal_problem, match_text, read_journal, since_time, unit_name

_GZIP_MAGIC = b"\x1f\x8b"


def _lines(config: dict[str, Any]) -> vol.All:
    top = config[CONF_MAX_LINES]
    return whole_number(min=1, max=top, msg=f"must be between 1 and {top} (max_lines)")


def _root(config: dict[str, Any]) -> vol.In:
    names = sorted(config[CONF_ROOTS])
    return vol.In(names, msg=f"must be one of the configured log roots: {', '.join(names)}")


def action_specs(config: dict[str, Any]) -> list[ActionSpec]:
    specs = []
    default_lines = min(DEFAULT_LINES, config[CONF_MAX_LINES])
    if config[CONF_JOURNAL]:
        specs.append(
            ActionSpec(
                name=ACTION_JOURNAL,
                capability=CAP_LOGS_READ,
                handler=journal,
                schema=vol.Schema(
                    {
                        vol.Required("unit", description="systemd unit, e.g. nginx.service"): CheckedText(unit_name, UNIT_RE.pattern),
                        vol.Optional("lines", default=default_lines, description="newest entries to return"): _lines(config),
                        vol.Optional("since", description="1h, 30m, 2d ago, or 2024-05-01T10:00:00"): CheckedText(since_time),
                        vol.Optional("match", description="text each line must contain (any case)"): CheckedText(match_text),
                    }
                ),
                description="The newest journal entries of a systemd unit.",
                idempotent=True,
                timeout=ACTION_TIMEOUT_SECONDS,
            )
        )
    if config[CONF_ROOTS]:
        specs.append(
            ActionSpec(
                name=ACTION_FILE,
                capability=CAP_LOGS_READ,
                handler=log_file,
                schema=vol.Schema(
                    {
                        vol.Required("root", description="a log root named in the agent's config"): _root(config),
                        vol.Required("path", description="log file under the root"): vol.All(RELATIVE_PATH, vol.Length(min=1, msg="name a file under the root")),
                        vol.Optional("lines", default=default_lines, description="last lines to return"): _lines(config),
                        vol.Optional("match", description="text each line must contain (any case)"): CheckedText(match_text),
                    }
                ),
                description="The last lines of a log file under a configured log root.",
                idempotent=True,
                timeout=ACTION_TIMEOUT_SECONDS,
            )
        )
        specs.append(
            ActionSpec(
                name=ACTION_LIST,
                capability=CAP_LOGS_READ,
                handler=list_logs,
                schema=vol.Schema(
                    {
                        vol.Required("root", description="a log root named in the agent's config"): _root(config),
                        vol.Optional("path", default="", description="directory under the root"): RELATIVE_PATH,
                    }
                ),
                description="List the log files in a directory under a configured log root.",
                idempotent=True,
                timeout=ACTION_TIMEOUT_SECONDS,
            )
        )
    return specs


# ------------------------------------------------------------------ journal


def unit_allowed(config: dict[str, Any], unit: str) -> bool:
    return any(fnmatch.fnmatchcase(unit, pattern) for pattern in config[CONF_UNITS])


async def journal(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    config = ctx.config
    try:  # checked by the schema already; a handler called some other way must not trust that
        unit = unit_name(params["unit"])
        since = since_time(params["since"]) if params.get("since") is not None else None
        match = match_text(params["match"]) if params.get("match") is not None else None
    except vol.Invalid as err:
        raise ActionRefused(f"invalid parameters: {err.msg}") from None
    if not unit_allowed(config, unit):
        raise ActionRefused(f"the journal of {unit} is not readable here (integrations.logs.units allows {', '.join(config[CONF_UNITS])})")
    problem = journal_problem(config[CONF_DIRECTORY])
    if problem:
        raise ActionError(problem)
    lines = min(int(params.get("lines", DEFAULT_LINES)), config[CONF_MAX_LINES])
    scan = max(lines, config[CONF_MAX_SCAN]) if match else lines
    argv = journal_argv(unit, scan, since=since, directory=config[CONF_DIRECTORY])
    collected = await read_journal(argv, lines=lines, max_bytes=config[CONF_MAX_BYTES], match=match, timeout=JOURNALCTL_TIMEOUT_SECONDS)
    text = "\n".join(e.line() for e in collected.entries)
    if collected.truncated:
        text = f"[… older entries left out: over {config[CONF_MAX_BYTES]} bytes (max_bytes)]\n" + text
    return {
        "unit": unit,
        "entries": [e.as_dict() for e in collected.entries],
        "count": len(collected.entries),
        "scanned": collected.scanned,
        "truncated": collected.truncated,
        "output": text,
    }


# -------------------------------------------------------------------- files


def _root_path(config: dict[str, Any], name: str) -> str:
    roots = config[CONF_ROOTS]
    if name not in roots:
        raise ActionError(f"no log root named {name!r} in this agent's [integrations.logs.roots]")
    return roots[name]


def log_file(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    config = ctx.config
    root = _root_path(config, params["root"])
    parts = parts_of(params["path"])
    if not parts:
        raise ActionError("name a log file under the root")
    lines = min(int(params.get("lines", DEFAULT_LINES)), config[CONF_MAX_LINES])
    try:
        match = match_text(params["match"]) if params.get("match") is not None else None
    except vol.Invalid as err:
        raise ActionRefused(f"invalid parameters: match: {err.msg}") from None
    max_bytes = config[CONF_MAX_BYTES]
    window = max_bytes if not match else max(max_bytes, config[CONF_MAX_SCAN] * SCAN_BYTES_PER_LINE)
    opened = open_under(root, parts, KIND_FILE)
    try:
        size = opened.st.st_size
        if read_range(opened.fd, 0, 2) == _GZIP_MAGIC:
            raise ActionError(f"{opened.shown} is compressed; only plain-text logs can be read")
        start = max(0, size - window)
        try:
            data = read_range(opened.fd, start, size - start)
        except OSError as err:
            raise ActionError(f"{opened.shown}: cannot read: {err.strerror or err}") from None
    finally:
        os.close(opened.fd)
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    earlier = start > 0
    if earlier and raw_lines:
        raw_lines.pop(0)  # begins mid-line
    texts = [line.decode("utf-8", "replace") for line in raw_lines]
    if match:
        needle = match.casefold()
        texts = [t for t in texts if needle in t.casefold()]
    truncated = earlier or len(texts) > lines  # earlier: the file goes back further than was read
    texts = texts[-lines:]
    kept: list[str] = []
    used = 0
    for text in reversed(texts):
        size_of = len(text.encode("utf-8")) + 1
        if kept and used + size_of > max_bytes:
            truncated = True
            break
        kept.append(text)
        used += size_of
    kept.reverse()
    output = "\n".join(kept)
    if truncated:
        output = "[… earlier lines left out]\n" + output
    return {
        "root": params["root"],
        "path": "/".join(parts),
        "size": size,
        "lines": kept,
        "count": len(kept),
        "truncated": truncated,
        "output": output,
    }


def list_logs(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    root = _root_path(ctx.config, params["root"])
    parts = parts_of(params.get("path", ""))
    opened = open_under(root, parts, KIND_DIR)
    try:
        entries, truncated = list_entries(opened, ctx.config[CONF_MAX_ENTRIES])
    except OSError as err:
        raise ActionError(f"{opened.shown}: cannot list: {err.strerror or err}") from None
    finally:
        os.close(opened.fd)
    lines = [f"{e['size']:>12} {e['name']}{'/' if e['type'] == 'dir' else ''}" for e in entries]
    return {"root": params["root"], "path": "/".join(parts), "entries": entries, "truncated": truncated, "output": "\n".join(lines)}
