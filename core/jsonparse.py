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

With orjson installed (a dependency; Roost works without it) text is parsed
by orjson first, about five times faster than ``json``, but only where the
answer is the same: orjson refuses what ``json`` accepts beyond the JSON
standard (``NaN``, ``Infinity``, numbers too big for a double, lone
surrogates) and reads integers past 64 bits as floats, so a refusal, and any
text with a run of 19 or more digits, is parsed by ``json`` instead, which
also words the errors. tests/core/test_json_depth.py holds the two to the
same values on a corpus of awkward inputs.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the standard library does the same, slower
    _orjson = None  # type: ignore[assignment]

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


# An integer orjson might read as a float (it keeps 64 bits) has 19 digits or more (so do long
# fractions, which are only slower). Every digit made a 9, then one substring search: a tenth of a regex's time.
_DIGITS_AS_NINES = bytes.maketrans(b"0123456789", b"9999999999")
_LONG_RUN = b"9" * 19


def _fast_loads(text: str | bytes) -> tuple[bool, Any]:
    """(True, value) where orjson gives exactly what ``json.loads`` would, else (False, None)."""
    if _orjson is None:
        return False, None
    try:
        raw = text.encode() if isinstance(text, str) else bytes(text)
    except UnicodeEncodeError:  # lone surrogates: json's to read or refuse
        return False, None
    if _LONG_RUN in raw.translate(_DIGITS_AS_NINES):
        return False, None
    try:
        return True, _orjson.loads(raw)
    except _orjson.JSONDecodeError:
        return False, None


def loads(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH, **options: Any) -> Any:
    """``json.loads`` (with its ``options``) that refuses nesting deeper than ``max_depth`` with JSONTooDeep.

    The C parser is fast but recursive: past a few hundred levels it raises
    RecursionError, which becomes JSONTooDeep here; anything it does parse is
    then walked (without recursion) unless it has too few brackets to be deep.
    """
    done, value = _fast_loads(text) if not options else (False, None)
    if not done:
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
