"""Parameter validators for built-in actions that check strictly and still describe themselves as dashboard form fields.

The dashboard builds an action's form with voluptuous-serialize, which knows
types, ranges, lengths, choices and ``vol.Match`` patterns but not plain
functions. These validators subclass the ones it knows, so a form shows a
text or number field, and run their own full check when called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import voluptuous as vol


class CheckedText(vol.Match):
    """A text parameter checked by ``check(value) -> value`` (which raises vol.Invalid); forms show a text field with ``hint`` as its pattern."""

    def __init__(self, check: Callable[[Any], Any], hint: str = r"^.+$") -> None:
        super().__init__(hint)
        self.check = check

    def __call__(self, value: Any) -> Any:
        return self.check(value)

    def __repr__(self) -> str:
        return f"CheckedText({getattr(self.check, '__name__', self.check)!r})"


class WholeNumber(vol.Range):
    """An integer between ``min`` and ``max``; true and false are refused (Python counts them as 1 and 0)."""

    def __call__(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise vol.Invalid(self.msg or "expected a whole number")
        return super().__call__(value)


def whole_number(min: int | None = None, max: int | None = None, msg: str | None = None) -> vol.All:  # noqa: A002 - voluptuous's names
    """A form's integer field with its bounds; the check refuses booleans and non-integers."""
    return vol.All(int, WholeNumber(min=min, max=max, msg=msg))
