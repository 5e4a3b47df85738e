"""JSON from outside the process: one parser with a nesting limit for every HTTP body and wire message Roost accepts.

``json.loads`` recurses once per nested array or object, so ``[[[[…`` a few
thousand levels deep (a few kilobytes) raises RecursionError instead of
ValueError, and a structure just under the interpreter's limit parses but
breaks whatever walks or stores it later. ``loads`` refuses more than
``MAX_JSON_DEPTH`` levels with ``JSONTooDeep`` (a ValueError, so every
caller's "not valid JSON" branch catches it) and a message that says what
to change.

The hub's HTTP handlers, the agent gateway's WebSocket, the agent's side of
the WebSocket and the agent's enrolment call all parse through here.
"""

from __future__ import annotations

import json
from typing import Any

# Deeper than any message or body Roost sends (a report's integration state
# is a handful of levels), far below Python's recursion limit of ~1000.
MAX_JSON_DEPTH = 64


class JSONTooDeep(ValueError):
    """JSON nested deeper than the limit; the message says how deep is allowed."""


def too_deep(max_depth: int) -> JSONTooDeep:
    return JSONTooDeep(f"JSON is nested more than {max_depth} levels deep (arrays and objects) — send a flatter structure")


def deeper_than(value: Any, max_depth: int) -> bool:
    """True if arrays and objects in a parsed value nest deeper than ``max_depth``; iterative, so any depth is safe."""
    stack = [(value, 1)] if type(value) in (dict, list) else []
    while stack:
        item, level = stack.pop()
        if level > max_depth:
            return True
        for child in item.values() if type(item) is dict else item:
            if type(child) in (dict, list):
                stack.append((child, level + 1))
    return False


def loads(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH, **options: Any) -> Any:
    """``json.loads`` (with its ``options``) that refuses nesting deeper than ``max_depth`` with JSONTooDeep.

    The C parser is fast but recursive: past a few hundred levels it raises
    RecursionError, which becomes JSONTooDeep here; anything it does parse is
    then walked (without recursion) unless it has too few brackets to be deep.
    """
    try:
        value = json.loads(text, **options)
    except RecursionError:
        raise too_deep(max_depth) from None
    if isinstance(text, (bytes, bytearray)):
        opening = text.count(b"[") + text.count(b"{")
    else:
        opening = text.count("[") + text.count("{")
    if opening > max_depth and deeper_than(value, max_depth):
        raise too_deep(max_depth)
    return value
