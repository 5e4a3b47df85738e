"""A ping check's lifecycle as a pure function of its settings, its pings and the clock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import voluptuous as vol

from roost.integrations.ping import checks as c

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()


def make(**settings):
    return c.new_check({"name": "backup", "node_id": "n1", **settings}, actor="user:alice", now=T0)


def ping(check, kind, at, code=None, body=b"", method="GET"):
    p = c.Ping(kind, at, method, code, body)
    c.admit(check, p)
    return c.apply(check, p)


def test_keys_are_random_uuids_and_ids_are_not_the_key():
    first, second = make(), make()
    assert c.UUID_RE.match(first["key"]) and first["key"] != second["key"]
    assert first["key"][14] == "4"  # version 4: 122 random bits
    assert c.CHECK_ID_RE.match(first["id"]) and first["id"] not in first["key"]


def test_a_simple_check_is_late_within_grace_and_down_past_it():
    check = make(period=3600, grace=600)
    assert c.standing(check, T0 + 60).status == c.STATUS_NEW
    check = ping(check, c.PING_SUCCESS, T0 + 100)
    assert c.standing(check, T0 + 3600).status == c.STATUS_UP
    assert c.standing(check, T0 + 3700 + 300).status == c.STATUS_LATE
    down = c.standing(check, T0 + 3700 + 601)
    assert (down.status, down.problem) == (c.STATUS_DOWN, c.PROBLEM_LATE)
    assert "backup" in down.summary and "late" in down.summary
    assert c.standing(ping(check, c.PING_SUCCESS, T0 + 5000), T0 + 5001).status == c.STATUS_UP


def test_a_check_that_was_never_pinged_goes_down_from_its_creation():
    check = make(period=3600, grace=600)
    assert c.standing(check, T0 + 4201).problem == c.PROBLEM_LATE
    assert "never pinged" in c.standing(check, T0 + 4201).summary


def test_a_failure_keeps_the_check_failed_until_a_success():
    check = ping(make(), c.PING_FAIL, T0 + 10, code=2)
    failed = c.standing(check, T0 + 20)
    assert (failed.status, failed.problem) == (c.STATUS_FAILED, c.PROBLEM_FAILED) and "exit status 2" in failed.summary
    check = ping(check, c.PING_LOG, T0 + 30)
    assert c.standing(check, T0 + 40).status == c.STATUS_FAILED  # /log changes nothing
    assert c.standing(ping(check, c.PING_SUCCESS, T0 + 50, code=0), T0 + 60).status == c.STATUS_UP


def test_exit_statuses_and_ops_from_the_url():
    assert c.parse_op(None) == (c.PING_SUCCESS, None)
    assert c.parse_op("0") == (c.PING_SUCCESS, 0)
    assert c.parse_op("1") == (c.PING_FAIL, 1)
    assert c.parse_op("255") == (c.PING_FAIL, 255)
    for bad in ("256", "-1", "0x1", "1234", "stop", "START"):
        with pytest.raises(c.Refused) as err:
            c.parse_op(bad)
        assert err.value.status == 404


def test_a_start_must_end_within_grace():
    check = ping(make(period=86400, grace=600), c.PING_START, T0 + 100)
    assert c.standing(check, T0 + 500).status == c.STATUS_STARTED
    stuck = c.standing(check, T0 + 701)
    assert (stuck.status, stuck.problem) == (c.STATUS_DOWN, c.PROBLEM_LATE) and "did not finish" in stuck.summary
    done = ping(check, c.PING_SUCCESS, T0 + 400)
    assert c.standing(done, T0 + 701).status == c.STATUS_UP
    assert c.log_entry(c.Ping(c.PING_SUCCESS, T0 + 400), check)["duration"] == 300


def test_cron_checks_are_due_at_the_schedule_in_their_zone():
    # 02:30 every day in Berlin (UTC+1 in March before DST): due 01:30 UTC the next day.
    check = make(kind="cron", schedule="30 2 * * *", tz="Europe/Berlin", grace=1800)
    check = ping(check, c.PING_SUCCESS, T0)
    due = datetime(2026, 3, 2, 1, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    assert c.due_at(check) == due
    assert c.standing(check, due + 1799).status == c.STATUS_LATE
    assert c.standing(check, due + 1801).problem == c.PROBLEM_LATE
    # The hub's zone applies when the check names none.
    plain = ping(make(kind="cron", schedule="30 2 * * *", grace=1800), c.PING_SUCCESS, T0)
    assert c.due_at(plain, hub_zone="UTC") == datetime(2026, 3, 2, 2, 30, tzinfo=ZoneInfo("UTC")).timestamp()


def test_what_a_check_accepts():
    strict = make(allow_start=False, methods=["POST"], max_body=10)
    with pytest.raises(c.Refused, match="does not accept /start"):
        c.admit(strict, c.Ping(c.PING_START, T0, "POST"))
    with pytest.raises(c.Refused, match="only POST") as err:
        c.admit(strict, c.Ping(c.PING_SUCCESS, T0, "GET"))
    assert err.value.status == 405
    with pytest.raises(c.Refused, match="at most 10 bytes") as err:
        c.admit(strict, c.Ping(c.PING_SUCCESS, T0, "POST", body=b"x" * 11))
    assert err.value.status == 413
    with pytest.raises(c.Refused, match="no body"):
        c.admit(make(max_body=0), c.Ping(c.PING_SUCCESS, T0, "POST", body=b"x"))
    c.admit(strict, c.Ping(c.PING_SUCCESS, T0, "POST", body=b"x" * 10))


def test_the_log_keeps_the_tail_of_bodies_and_a_bounded_number_of_pings():
    body = b"head " + b"x" * c.LOG_BODY + b" the error at the end"
    entry = c.log_entry(c.Ping(c.PING_FAIL, T0, "POST", 1, body), make())
    assert entry["body"].endswith("the error at the end") and len(entry["body"]) == c.LOG_BODY
    assert entry["body_truncated"] and entry["body_bytes"] == len(body)
    log = []
    for i in range(c.LOG_ENTRIES + 7):
        log = c.bounded_log(log, {"at": i})
    assert len(log) == c.LOG_ENTRIES and log[-1]["at"] == c.LOG_ENTRIES + 6 and log[0]["at"] == 7


def test_settings_are_checked():
    with pytest.raises(vol.Invalid):
        c.CREATE_SCHEMA({"name": "x", "node_id": "n1", "kind": "cron", "schedule": "61 * * * *"})
    with pytest.raises(vol.Invalid):
        c.CREATE_SCHEMA({"name": "x", "node_id": "n1", "period": 5})
    with pytest.raises(vol.Invalid):
        c.CREATE_SCHEMA({"name": "x", "node_id": "n1", "tz": "Mars/Olympus"})
    with pytest.raises(vol.Invalid, match="schedule"):
        make(kind="cron")


def test_a_new_check_needs_a_name_and_a_node():
    for missing in ("name", "node_id"):
        body = {"name": "x", "node_id": "n1"}
        del body[missing]
        with pytest.raises(vol.Invalid, match=missing):
            c.CREATE_SCHEMA(body)


async def test_the_hub_time_zone_applies_to_cron_checks(make_ping_hub):
    from roost.core.hub.app import HUB_KEY
    from roost.integrations.ping import SERVICE

    client = await make_ping_hub(timezone="Asia/Tokyo")
    [integ] = [i for i in client.app[HUB_KEY].manager.integrations.values() if i.domain == "ping"]
    svc = integ.context.data[SERVICE]
    assert svc.hub_zone == "Asia/Tokyo"
    check = ping(make(kind="cron", schedule="30 2 * * *", grace=1800), c.PING_SUCCESS, T0)
    # 02:30 in Tokyo is 17:30 UTC the day before: the first one after 12:00 UTC on 1 March is 17:30 UTC that day.
    assert svc.standing(check, T0).due_at == datetime(2026, 3, 1, 17, 30, tzinfo=ZoneInfo("UTC")).timestamp()
