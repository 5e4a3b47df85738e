"""Human units for the dashboard: the jinja2 filters, mirrored one for one by static/js/roost.js."""

from __future__ import annotations

import datetime as dt
import math
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from jinja2 import Undefined

DASH = "—"

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")

NODE_STATUS_LABELS = {
    "online": "Online",
    "stale": "Stale",
    "offline": "Offline",
    "new": "New",
    "revoked": "Revoked",
}

# Integration state -> (label, tone). Tone picks the colour; the label carries
# the meaning so nothing depends on colour alone.
INTEGRATION_STATES = {
    "loaded": ("Loaded", "ok"),
    "setup_error": ("Setup error", "bad"),
    "collect_error": ("Collect error", "bad"),
    "setup_retry": ("Retrying setup", "warn"),
    "not_available": ("Not available", "muted"),
    "disabled": ("Disabled", "muted"),
}


def _number(value: Any) -> float | None:
    """The value as a finite float, or None for anything missing or not numeric."""
    if value is None or isinstance(value, (bool, Undefined)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fixed(number: float, decimals: int) -> str:
    # Round the exact binary value half away from zero, as JavaScript's
    # Number.prototype.toFixed does, so the page reads the same before and
    # after a live update (f-strings round half to even: 12.5 -> "12").
    text = str(Decimal(number).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))
    # "-0" and "-0.0" read as noise on a dashboard.
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def fmt_bytes(value: Any) -> str:
    """1536 -> '1.5 KiB'; binary units, one decimal below 100, none above."""
    number = _number(value)
    if number is None:
        return DASH
    sign = "-" if number <= -0.5 else ""  # what rounds to "0 B" carries no sign
    number = abs(number)
    unit = 0
    while number >= 1024 and unit < len(_BYTE_UNITS) - 1:
        number /= 1024
        unit += 1
    if unit == 0:
        return f"{sign}{_fixed(number, 0)} B"
    # 1023.96 KiB would print as "1024.0 KiB"; show it as the next unit up.
    if float(_fixed(number, 0 if number >= 100 else 1)) >= 1024 and unit < len(_BYTE_UNITS) - 1:
        number /= 1024
        unit += 1
    return f"{sign}{_fixed(number, 0 if number >= 100 else 1)} {_BYTE_UNITS[unit]}"


def fmt_rate(value: Any) -> str:
    """Bytes per second: 2_500_000 -> '2.4 MiB/s'."""
    text = fmt_bytes(value)
    return text if text == DASH else f"{text}/s"


def fmt_percent(value: Any) -> str:
    """42.4 -> '42%', 4.25 -> '4.2%' (one decimal below 10)."""
    number = _number(value)
    if number is None:
        return DASH
    return f"{_fixed(number, 1 if abs(number) < 10 else 0)}%"


def fmt_number(value: Any, decimals: int = 2) -> str:
    """A plain number with a fixed count of decimals (load averages)."""
    number = _number(value)
    if number is None:
        return DASH
    return _fixed(number, decimals)


def fmt_count(value: Any) -> str:
    """A whole count with thousands separators: 12345 -> '12,345'."""
    number = _number(value)
    if number is None:
        return DASH
    return f"{int(_fixed(number, 0)):,}"


def fmt_link_speed(value: Any) -> str:
    """A network link speed given in Mb/s: 1000 -> '1 Gb/s', 100 -> '100 Mb/s'."""
    number = _number(value)
    if number is None or number <= 0:
        return DASH
    if number >= 1000:
        return f"{float(_fixed(number / 1000, 1)):g} Gb/s"
    return f"{_fixed(number, 0)} Mb/s"


def fmt_duration(value: Any) -> str:
    """Seconds as the two largest units: 93784 -> '1 d 2 h'."""
    number = _number(value)
    if number is None or number < 0:
        return DASH
    seconds = int(number)
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def fmt_ago(value: Any, now: float | None = None) -> str:
    """A unix timestamp relative to now: '12 s ago', 'never' for None."""
    ts = _number(value)
    if ts is None:
        return "never"
    age = (time.time() if now is None else now) - ts
    if age < 2:
        return "just now"
    return f"{fmt_duration(age)} ago"


def fmt_datetime(value: Any) -> str:
    """A unix timestamp as UTC ISO text; the browser rewrites it in local time."""
    ts = _number(value)
    if ts is None:
        return DASH
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def iso_datetime(value: Any) -> str:
    """A unix timestamp for a <time datetime=...> attribute."""
    ts = _number(value)
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).isoformat(timespec="seconds")


def dash(value: Any) -> Any:
    """The value, or '—' when it is missing or empty."""
    # jinja2's Undefined (a missing key) would otherwise render as "".
    if value is None or isinstance(value, Undefined) or value in ("", [], {}):
        return DASH
    return value


def status_label(status: Any) -> str:
    return NODE_STATUS_LABELS.get(str(status), str(status).replace("_", " ").capitalize() if status else "Unknown")


def state_label(state: Any) -> str:
    return INTEGRATION_STATES.get(str(state), (str(state).replace("_", " ").capitalize() or "Unknown", "muted"))[0]


def state_tone(state: Any) -> str:
    return INTEGRATION_STATES.get(str(state), ("", "muted"))[1]


def fmt_celsius(value: Any) -> str:
    """A temperature: "47.5 °C"."""
    n = _number(value)
    if n is None:
        return DASH
    return fmt_number(n, 1) + " °C"


# How a figure of each metric unit is shown (a name in FILTERS and in roost.js's formats).
UNIT_FORMATS = {
    "percent": "percent",
    "bytes": "bytes",
    "bytes_per_second": "rate",
    "seconds": "duration",
    "count": "integer",
    "celsius": "celsius",
}


def unit_format(unit: Any) -> str:
    return UNIT_FORMATS.get(str(unit), "number")


def format_as(value: Any, name: str) -> str:
    """Apply the filter called ``name`` (a figure's unit_format) to ``value``."""
    return FILTERS.get(name, fmt_number)(value)


FILTERS = {
    "bytes": fmt_bytes,
    "rate": fmt_rate,
    "percent": fmt_percent,
    "number": fmt_number,
    "integer": fmt_count,
    "duration": fmt_duration,
    "link_speed": fmt_link_speed,
    "celsius": fmt_celsius,
    "ago": fmt_ago,
    "datetime": fmt_datetime,
    "iso": iso_datetime,
    "dash": dash,
    "status_label": status_label,
    "state_label": state_label,
    "state_tone": state_tone,
    "unit_format": unit_format,
}
FILTERS["format_as"] = format_as
