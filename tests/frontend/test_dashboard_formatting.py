"""Human units shown on the dashboard."""

from __future__ import annotations

import pytest

from roost.frontend import formatting as f


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        ("", "—"),
        ("abc", "—"),
        (float("nan"), "—"),
        (True, "—"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1_048_575, "1.0 MiB"),
        (1023.96 * 1024, "1.0 MiB"),
        (8 * 1024**3, "8.0 GiB"),
        (500_000_000_000, "466 GiB"),
        (4_000_000_000_000, "3.6 TiB"),
        (-2048, "-2.0 KiB"),
        (-0.2, "0 B"),
        ("2048", "2.0 KiB"),
    ],
)
def test_bytes(value, text):
    assert f.fmt_bytes(value) == text


def test_rate_adds_per_second():
    assert f.fmt_rate(2_500_000) == "2.4 MiB/s"
    assert f.fmt_rate(None) == "—"


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (0, "0.0%"), (4.25, "4.3%"), (9.96, "10.0%"), (12.5, "13%"), (63.2, "63%"), (100, "100%"), (-0.04, "0.0%")],
)
def test_percent(value, text):
    assert f.fmt_percent(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (-1, "—"), (0, "0 s"), (59.9, "59 s"), (60, "1 min"), (3599, "59 min"), (3600, "1 h"),
     (3660, "1 h 1 min"), (86400, "1 d"), (93784, "1 d 2 h")],
)
def test_duration(value, text):
    assert f.fmt_duration(value) == text


def test_ago_and_counts():
    assert f.fmt_ago(None) == "never"
    assert f.fmt_ago(100, now=101) == "just now"
    assert f.fmt_ago(100, now=190) == "1 min ago"
    assert f.fmt_count(1234567) == "1,234,567"
    assert f.fmt_number(0.4249) == "0.42"
    assert f.fmt_number(-0.001) == "0.00"


def test_labels_carry_meaning_in_text():
    assert f.status_label("online") == "Online"
    assert f.status_label("stale") == "Stale"
    assert f.status_label(None) == "Unknown"
    assert f.state_label("setup_error") == "Setup error"
    assert f.state_tone("setup_error") == "bad"
    assert f.state_label("something_new") == "Something new"
    assert f.state_tone("something_new") == "muted"


@pytest.mark.parametrize(("value", "text"), [(None, "—"), (0, "—"), (100, "100 Mb/s"), (1000, "1 Gb/s"), (2500, "2.5 Gb/s")])
def test_link_speed(value, text):
    assert f.fmt_link_speed(value) == text


def test_datetime_is_utc_text():
    assert f.fmt_datetime(0) == "1970-01-01 00:00 UTC"
    assert f.iso_datetime(0) == "1970-01-01T00:00:00+00:00"
    assert f.iso_datetime(None) == ""
