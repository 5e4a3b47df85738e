"""Paths under a configured root: a strict relative-path check, and opening one component at a time without following a symlink.

Shared by every integration that reads files for the hub (``files``, ``logs``).
The rules, each tested:

* A requested path is relative to a root the host owner named in the agent's
  config. It may not be absolute, contain ``..``, NUL, a newline or a carriage
  return, or be longer than ``MAX_PATH_CHARS``.
* It is opened from the root's directory descriptor one component at a time
  with ``O_NOFOLLOW``, so no symlink is ever followed (not even one that
  points back inside the root), and a directory swapped for a symlink between
  the check and the open is refused rather than followed.
* Each component is looked at (``lstat``) before it is opened, so a device
  node or FIFO is refused without being opened (opening some devices has side
  effects; opening a FIFO blocks); the opened descriptor must be the very
  inode that was looked at.
* After the open, ``/proc/self/fd`` must show the file still under the root
  (a directory moved out of the root while it was being walked is caught).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from roost.core.actions import ActionError, ActionRefused
from roost.integrations.fields import CheckedText

MAX_PATH_CHARS = 4096
ROOT_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_FORBIDDEN_CHARS = {"\x00": "NUL", "\n": "a newline", "\r": "a carriage return"}
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)

KIND_FILE = "file"
KIND_DIR = "dir"


class PathRefused(ActionRefused):
    """A path that tries to leave its root or reach something that is not a plain file or directory."""


def split_relative(path: Any) -> tuple[str, ...]:
    """Check a requested path and return its components ('' and '.' dropped); raise ValueError saying what is wrong."""
    if not isinstance(path, str):
        raise ValueError("must be a path relative to the root, as text")
    if len(path) > MAX_PATH_CHARS:
        raise ValueError(f"is longer than {MAX_PATH_CHARS} characters")
    for char, name in _FORBIDDEN_CHARS.items():
        if char in path:
            raise ValueError(f"contains {name}")
    if path.startswith("/"):
        raise ValueError("must be relative to the root, not an absolute path")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ValueError("may not contain '..'")
    return parts


def parts_of(path: Any) -> tuple[str, ...]:
    """split_relative for handlers: a bad path is a refusal (the schema refuses it first; a handler must not trust that)."""
    try:
        return split_relative(path)
    except ValueError as err:
        raise PathRefused(f"path {path!r} {err}") from None


def relative_path(value: Any) -> str:
    """voluptuous validator: a path under a root, normalised to 'a/b/c' ('' for the root itself)."""
    try:
        return "/".join(split_relative(value))
    except ValueError as err:
        raise vol.Invalid(str(err)) from None


# The form shows a text field; the check is relative_path's.
RELATIVE_PATH = CheckedText(relative_path, r"^(?!/).*$")


def roots_schema(what: str) -> vol.Schema:
    """Config: a table of root name -> absolute directory, resolved once (the owner's own symlinks in it are fine)."""

    def directory(value: Any) -> str:
        if not isinstance(value, str) or not value.startswith("/"):
            raise vol.Invalid(f"{what} roots must be absolute directory paths, e.g. \"/srv/share\"")
        real = os.path.realpath(value)
        if not os.path.isdir(real):
            raise vol.Invalid(f"{value} is not a directory on this host")
        return real

    return vol.Schema({vol.Match(ROOT_NAME_RE, msg="root names are lower-case letters, digits, _ . - (e.g. media)"): directory})


@dataclass(frozen=True)
class Opened:
    """A descriptor opened under a root, with what it is; close it with os.close."""

    fd: int
    kind: str
    st: os.stat_result
    shown: str  # the path as the user named it, for messages


def _refuse_kind(st: os.stat_result, shown: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise PathRefused(f"{shown} is a symlink; symlinks are not followed under a root")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise PathRefused(f"{shown} is not a regular file or directory (devices, FIFOs and sockets are never opened)")


def _os_error(err: OSError, shown: str) -> Exception:
    if err.errno == errno.ENOENT:
        return ActionError(f"{shown}: no such file or directory under the root")
    if err.errno in (errno.EACCES, errno.EPERM):
        return ActionError(f"{shown}: permission denied for the agent's user")
    if err.errno == errno.ELOOP:
        return PathRefused(f"{shown} is a symlink; symlinks are not followed under a root")
    if err.errno == errno.ENOTDIR:
        return ActionError(f"{shown}: a component of the path is not a directory")
    return ActionError(f"{shown}: {err.strerror or err}")


def _still_under(fd: int, root: str, shown: str) -> None:
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return  # no /proc: the O_NOFOLLOW walk alone has to do
    if where != root and not where.startswith(root.rstrip("/") + "/"):
        raise PathRefused(f"{shown} is no longer under its root (moved while it was being opened)")


def open_under(root: str, parts: tuple[str, ...], want: str) -> Opened:
    """Open root/parts without following any symlink; ``want`` is KIND_FILE or KIND_DIR.

    Raises PathRefused for an escape attempt or a special file, ActionError
    for a path that does not exist or cannot be read.
    """
    shown = "/".join(parts) or "."
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise ActionError(f"the root {root} cannot be opened: {err.strerror or err}") from None
    try:
        st = os.fstat(fd)
        for index, part in enumerate(parts):
            here = "/".join(parts[: index + 1])
            try:
                seen = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except OSError as err:
                raise _os_error(err, here) from None
            _refuse_kind(seen, here)
            last = index == len(parts) - 1
            if not last and not stat.S_ISDIR(seen.st_mode):
                raise ActionError(f"{here} is not a directory")
            flags = _OPEN_FLAGS | (os.O_DIRECTORY if stat.S_ISDIR(seen.st_mode) else 0)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as err:
                try:
                    now = os.stat(part, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    raise _os_error(err, here) from None
                if (now.st_dev, now.st_ino, stat.S_IFMT(now.st_mode)) != (seen.st_dev, seen.st_ino, stat.S_IFMT(seen.st_mode)):
                    raise PathRefused(f"{here} changed while it was being opened") from None
                raise _os_error(err, here) from None
            os.close(fd)
            fd = child
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino):
                raise PathRefused(f"{here} changed while it was being opened")
        _still_under(fd, root, shown)
        kind = KIND_DIR if stat.S_ISDIR(st.st_mode) else KIND_FILE
        if kind != want:
            raise ActionError(f"{shown} is a {'directory' if kind == KIND_DIR else 'file'}, not a {'directory' if want == KIND_DIR else 'file'}")
        return Opened(fd=fd, kind=kind, st=st, shown=shown)
    except BaseException:
        os.close(fd)
        raise


def entry_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def list_entries(opened: Opened, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The directory's entries (never following symlinks), sorted by name, at most ``limit``; and whether some were left out."""
    entries: list[dict[str, Any]] = []
    total = 0
    with os.scandir(opened.fd) as it:
        for entry in it:
            total += 1
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            entries.append(
                {
                    "name": entry.name,
                    "type": entry_kind(st.st_mode),
                    "size": st.st_size,
                    "mtime": int(st.st_mtime),
                    "mode": f"{stat.S_IMODE(st.st_mode):04o}",
                }
            )
    entries.sort(key=lambda e: e["name"])
    return entries[:limit], total > limit


def read_range(fd: int, offset: int, length: int) -> bytes:
    chunks = []
    while length > 0:
        chunk = os.pread(fd, min(length, 1 << 16), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def tail_lines(fd: int, size: int, max_lines: int, max_bytes: int) -> tuple[list[bytes], bool]:
    """The last ``max_lines`` lines of a file, reading at most ``max_bytes`` from its end; and whether more came before."""
    start = max(0, size - max_bytes)
    data = read_range(fd, start, size - start)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    cut = start > 0
    if cut and lines:
        lines.pop(0)  # begins mid-line
    if len(lines) > max_lines:
        lines = lines[-max_lines:]
        cut = True
    return lines, cut


def as_text(data: bytes) -> tuple[str, int] | None:
    """(UTF-8 text, bytes it used), or None for binary content (NUL bytes, invalid UTF-8).

    A multi-byte character cut by the end of a range is left for the next read.
    """
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8"), len(data)
    except UnicodeDecodeError as err:
        if err.reason == "unexpected end of data" and err.start >= len(data) - 3:
            try:
                return data[: err.start].decode("utf-8"), err.start
            except UnicodeDecodeError:
                return None
        return None
