"""The process log's formatter: every record one line with control and bidi characters escaped; tracebacks keep their lines."""

from __future__ import annotations

import io
import logging

import pytest

from roost.core.logs import HANDLER_NAME, SafeFormatter, setup_logging

PAYLOAD = "a\r\nFORGED\x1b]0;title\x07\x1b[31m\x00\u202e\u2066\x85\u2028\\n"


@pytest.fixture
def log_to():
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    stream = io.StringIO()
    setup_logging("info", stream=stream)
    yield stream
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
    root.handlers[:], root.level = before[0], before[1]


def test_arguments_and_messages_are_escaped_onto_one_line(log_to) -> None:
    log = logging.getLogger("roost.test")
    log.warning("pairing request from %s", PAYLOAD)
    log.warning(f"built in the message: {PAYLOAD}")
    lines = log_to.getvalue().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.endswith("a\\r\\nFORGED\\x1b]0;title\\x07\\x1b[31m\\x00\\u202e\\u2066\\x85\\u2028\\\\n")
        assert not any(c in line for c in "\r\x1b\x07\x00\u202e\u2066\x85\u2028")


def test_a_traceback_keeps_its_lines_and_escapes_each_exceptions_text(log_to) -> None:
    log = logging.getLogger("roost.test")
    try:
        try:
            raise KeyError(PAYLOAD)
        except KeyError as err:
            raise ValueError("outer " + PAYLOAD) from err
    except ValueError:
        log.exception("failed for %s", "x\ny")
    text = log_to.getvalue()
    assert text.count("Traceback (most recent call last):") == 2 and "The above exception was the direct cause" in text
    assert "failed for x\\ny\n" in text
    assert "ValueError: outer a\\r\\nFORGED\\x1b]0;title" in text and "KeyError: 'a\\\\r\\\\nFORGED" in text
    assert not any(c in text for c in "\r\x1b\x07\x00\u202e\u2066\x85\u2028")
    # Every line is either the record's own or part of the traceback layout.
    for line in text.splitlines():
        assert line.startswith(("20", "Traceback", "  ", "ValueError", "KeyError", "The above", "")), line


def test_the_cli_logs_through_the_safe_formatter(log_to) -> None:
    from roost.core import cli

    cli._setup_logging("info")
    ours = [h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME]
    assert len(ours) == 1 and isinstance(ours[0].formatter, SafeFormatter)
