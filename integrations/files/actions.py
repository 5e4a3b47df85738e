"""The files integration's actions: files.list and files.read, under configured roots only."""

from __future__ import annotations

import base64
import os
import stat
from typing import Any

import voluptuous as vol

from roost.core.actions import ActionContext, ActionError, ActionSpec
from roost.integrations.fields import whole_number

from .const import (
    ACTION_LIST,
    ACTION_READ,
    ACTION_TIMEOUT_SECONDS,
    CAP_READ_SCOPED,
    CONF_MAX_ENTRIES,
    CONF_MAX_READ_BYTES,
    CONF_ROOTS,
)
from .paths import KIND_DIR, KIND_FILE, RELATIVE_PATH, as_text, list_entries, open_under, parts_of, read_range


def _root(config: dict[str, Any]) -> vol.In:
    names = sorted(config[CONF_ROOTS])
    return vol.In(names, msg=f"must be one of the configured roots: {', '.join(names)}")


def action_specs(config: dict[str, Any]) -> list[ActionSpec]:
    cap = config[CONF_MAX_READ_BYTES]
    list_schema = vol.Schema(
        {
            vol.Required("root", description="a root named in the agent's config"): _root(config),
            vol.Optional("path", default="", description="directory under the root ('' for the root itself)"): RELATIVE_PATH,
        }
    )
    read_schema = vol.Schema(
        {
            vol.Required("root", description="a root named in the agent's config"): _root(config),
            vol.Required("path", description="file under the root"): vol.All(RELATIVE_PATH, vol.Length(min=1, msg="name a file under the root")),
            vol.Optional("offset", default=0, description="byte to start at"): whole_number(min=0),
            vol.Optional("length", default=cap, description="bytes to read"): whole_number(min=1, max=cap, msg=f"must be between 1 and {cap} bytes (max_read_bytes)"),
        }
    )
    return [
        ActionSpec(
            name=ACTION_LIST,
            capability=CAP_READ_SCOPED,
            handler=list_files,
            schema=list_schema,
            description="List a directory under a configured root.",
            idempotent=True,
            timeout=ACTION_TIMEOUT_SECONDS,
        ),
        ActionSpec(
            name=ACTION_READ,
            capability=CAP_READ_SCOPED,
            handler=read_file,
            schema=read_schema,
            description="Read (part of) a file under a configured root.",
            idempotent=True,
            timeout=ACTION_TIMEOUT_SECONDS,
        ),
    ]


def _root_path(config: dict[str, Any], name: str) -> str:
    roots = config[CONF_ROOTS]
    if name not in roots:  # the schema checked; a handler called another way must not trust that
        raise ActionError(f"no root named {name!r} in this agent's [integrations.files.roots]")
    return roots[name]


def list_files(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    root = _root_path(ctx.config, params["root"])
    parts = parts_of(params.get("path", ""))
    opened = open_under(root, parts, KIND_DIR)
    try:
        entries, truncated = list_entries(opened, ctx.config[CONF_MAX_ENTRIES])
    except OSError as err:
        raise ActionError(f"{opened.shown}: cannot list: {err.strerror or err}") from None
    finally:
        os.close(opened.fd)
    lines = [f"{e['mode']} {e['size']:>12} {e['name']}{'/' if e['type'] == 'dir' else ''}{' -> (symlink)' if e['type'] == 'symlink' else ''}" for e in entries]
    if truncated:
        lines.append(f"[… more entries; only the first {len(entries)} are shown (max_entries)]")
    return {"root": params["root"], "path": "/".join(parts), "entries": entries, "truncated": truncated, "output": "\n".join(lines)}


def read_file(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    root = _root_path(ctx.config, params["root"])
    parts = parts_of(params["path"])
    if not parts:
        raise ActionError("name a file under the root")
    cap = ctx.config[CONF_MAX_READ_BYTES]
    offset = int(params.get("offset", 0))
    length = min(int(params.get("length", cap)), cap)
    opened = open_under(root, parts, KIND_FILE)
    try:
        if not stat.S_ISREG(opened.st.st_mode):
            raise ActionError(f"{opened.shown} is not a regular file")
        size = opened.st.st_size
        try:
            data = read_range(opened.fd, offset, length)
        except OSError as err:
            raise ActionError(f"{opened.shown}: cannot read: {err.strerror or err}") from None
    finally:
        os.close(opened.fd)
    result: dict[str, Any] = {"root": params["root"], "path": "/".join(parts), "size": size, "offset": offset}
    text = as_text(data)
    if text is not None:
        content, used = text
        result.update(encoding="utf-8", length=used, eof=offset + used >= size, output=content)
    else:
        result.update(
            encoding="base64",
            length=len(data),
            eof=offset + len(data) >= size,
            content_base64=base64.b64encode(data).decode("ascii"),
            output=f"[binary content: {len(data)} bytes from offset {offset} in content_base64]",
        )
    return result
