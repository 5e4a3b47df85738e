"""Secret masking, done on the agent: env values, labels and command arguments whose names look secret never leave the host."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .const import DEFAULT_SECRET_PATTERN, MASK

# user:password@ in a URL (postgres://app:hunter2@db/app): the password goes whatever the variable is called.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)(?P<secret>[^\s@/]+)(?P<tail>@)")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The secret-name pattern, case-insensitive; raises re.error when it is not a regular expression."""
    return re.compile(pattern, re.IGNORECASE)


class Masker:
    """Masks the values of names that match the secret pattern, and passwords inside URLs."""

    def __init__(self, pattern: str = DEFAULT_SECRET_PATTERN) -> None:
        self.pattern = compile_pattern(pattern)
        # NAME=value inside one argument (`sh -c "export API_TOKEN=abc; ..."`), NAME made of env-var characters.
        self._assignment = re.compile(
            r"(?P<name>[A-Za-z0-9_.-]*(?:" + pattern + r")[A-Za-z0-9_.-]*)=(?P<value>[^\s'\";&|]+)", re.IGNORECASE
        )
        # --flag value or --flag=value inside one argument (`sh -c "app --token abc"`).
        self._flag = re.compile(
            r"(?P<flag>(?<![\w-])--?[A-Za-z0-9_.-]*(?:" + pattern + r")[A-Za-z0-9_.-]*)(?P<sep>\s+|=)(?P<value>[^\s'\";&|-][^\s'\";&|]*)",
            re.IGNORECASE,
        )

    def is_secret(self, name: str) -> bool:
        return bool(self.pattern.search(name))

    def text(self, value: str) -> str:
        """Mask URL passwords and NAME=value assignments with a secret-looking NAME inside free text."""
        value = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["tail"], value)
        value = self._flag.sub(lambda m: f"{m['flag']}{m['sep']}{MASK}", value)
        return self._assignment.sub(lambda m: f"{m['name']}={MASK}", value)

    def env(self, entries: Iterable[str] | None) -> list[dict[str, Any]]:
        """Docker's ["NAME=value", ...] as [{"key", "value", "masked"}], secret values replaced."""
        out: list[dict[str, Any]] = []
        for entry in entries or ():
            if not isinstance(entry, str):
                continue
            key, sep, value = entry.partition("=")
            if not sep:
                out.append({"key": key, "value": None, "masked": False})
            elif self.is_secret(key):
                out.append({"key": key, "value": MASK, "masked": True})
            else:
                masked = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["tail"], value)
                out.append({"key": key, "value": masked, "masked": masked != value})
        return out

    def labels(self, labels: Mapping[str, Any] | None) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in (labels or {}).items():
            text = "" if value is None else str(value)
            out[str(key)] = MASK if self.is_secret(str(key)) and text else self.text(text)
        return out

    def args(self, args: Iterable[Any] | None) -> list[str]:
        """Mask `--password VALUE`, `--api-key=VALUE`, `TOKEN=value` and URL passwords in an argv."""
        out: list[str] = []
        hide_next = False
        for arg in args or ():
            text = str(arg)
            if hide_next:
                out.append(MASK)
                hide_next = False
                continue
            if text.startswith("-") and "=" not in text and self.is_secret(text.lstrip("-")):
                hide_next = True
                out.append(text)
                continue
            if text.startswith("-") and "=" in text:
                flag, _, value = text.partition("=")
                if self.is_secret(flag.lstrip("-")) and value:
                    out.append(f"{flag}={MASK}")
                    continue
            out.append(self.text(text))
        return out
