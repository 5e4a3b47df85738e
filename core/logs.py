"""The process log of both roles: one formatter that every record goes through, so nothing from outside reaches it raw.

A hostname, a node name, an X-Forwarded-For hop or a request path can carry
CR, LF, ESC (ANSI and OSC sequences), NUL, C1 controls and bidi overrides
(U+202E). Written raw they forge log lines, retitle or recolour the
terminal that tails the log, or reorder what a reader sees. Rather than
trusting every call site, ``SafeFormatter`` escapes the whole formatted
line (``\\n``, ``\\x1b``, ``\\u202e``; a backslash becomes ``\\\\``) with
``roost.core.audit.escape``. A traceback keeps its lines, but the parts an
exception's message contributes are escaped the same way.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator
from typing import Any

from .audit import escape

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
HANDLER_NAME = "roost"


def escape_line(text: str) -> str:
    """``text`` as one line: control, format and separator characters and backslashes escaped (quotes kept)."""
    return escape(text, quotes=False)


def _exception_lines(exc: BaseException) -> Iterator[str]:
    """Like ``traceback.format_exception``, with every exception's own text (message, notes) escaped onto its line."""
    seen: set[int] = set()
    chain: list[tuple[str | None, traceback.TracebackException]] = []
    current: traceback.TracebackException | None = traceback.TracebackException.from_exception(exc)
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # Each exception with the sentence that leads from its cause (or context) to it, as traceback prints them.
        if current.__cause__ is not None:
            message, following = traceback._cause_message, current.__cause__  # type: ignore[attr-defined]
        elif current.__context__ is not None and not current.__suppress_context__:
            message, following = traceback._context_message, current.__context__  # type: ignore[attr-defined]
        else:
            message, following = None, None
        chain.append((message, current))
        current = following
    for message, item in reversed(chain):
        if message is not None:
            yield message
        if getattr(item, "exceptions", None):  # an ExceptionGroup: its own nested layout, every line escaped
            for chunk in item.format(chain=False):
                for line in chunk.splitlines():
                    yield escape_line(line) + "\n"
            continue
        if item.stack:
            yield "Traceback (most recent call last):\n"
            yield from item.stack.format()
        for line in item.format_exception_only():
            yield escape_line(line.rstrip("\n")) + "\n"


class SafeFormatter(logging.Formatter):
    """A Formatter whose every record is one escaped line (plus an escaped traceback, when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = escape_line(self.formatMessage(record))
        if record.exc_info and record.exc_info[1] is not None:
            # Not cached on the record: another handler's formatter may not escape.
            text += "\n" + "".join(_exception_lines(record.exc_info[1])).rstrip("\n")
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


def setup_logging(level: str | int = "info", *, stream: Any = None) -> None:
    """Send records at ``level`` and above to ``stream`` (stderr) through SafeFormatter (once, however often called)."""
    if isinstance(level, str):
        level = getattr(logging, level.upper())
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(SafeFormatter(LOG_FORMAT))
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's access log is noise for a homelab hub; errors still show.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
