"""logs.journal: recorded `journalctl -o json` output parsed, the argv it runs, the unit rules, not available without a journal, a real round trip."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
import voluptuous as vol
from support_actions import make_ctx, set_up

from roost.core.actions import ActionError, ActionRefused
from roost.integrations.logs import CONFIG_SCHEMA
from roost.integrations.logs.actions import action_specs, journal
from roost.integrations.logs.journal import parse_output, since_time, unit_name

FIXTURES = Path(__file__).parent / "fixtures"


def test_recorded_journal_output_is_parsed():
    entries = parse_output((FIXTURES / "journal_nginx.json").read_text())
    assert [e.identifier for e in entries] == ["systemd", "nginx", "nginx", "nginx", "nginx", "nginx"]
    assert [e.priority for e in entries] == [6, 3, 4, 5, 6, 6]
    assert all(e.unit == "nginx.service" and e.host and isinstance(e.pid, int) for e in entries)
    assert entries[0].message.startswith("Started nginx.service") and entries[2].message == "first line\nsecond line"
    # Binary messages come as arrays of byte values; invalid UTF-8 is replaced, not fatal.
    assert entries[3].message.startswith("binary \ufffd\ufffd payload \x1b[31m red")
    # Without --all, journalctl writes a field over 4096 bytes as null.
    assert "over 4096 bytes" in entries[4].message
    times = [e.time for e in entries]
    assert times == sorted(times) and 1.5e9 < times[0] < 4e9
    assert entries[1].line().endswith("nginx[" + str(entries[1].pid) + "]: " + entries[1].message)
    with_all = parse_output((FIXTURES / "journal_nginx_all_reverse.json").read_text())
    assert with_all[1].message == "A" * 5000 and with_all[0].message.startswith("worker process")
    assert parse_output((FIXTURES / "journal_empty.json").read_text()) == []
    assert parse_output("-- No entries --\n\nnot json\n[1, 2]\n") == []


@pytest.mark.parametrize("unit", ["nginx.service; reboot", "-u", "--all", "nginx*", "nginx?.service", "a b", "$(id)", "`id`", "a\nb", "a/b", "", "../x", "x" * 300])
def test_unit_names_are_strict(unit):
    with pytest.raises(vol.Invalid):
        unit_name(unit)


def test_unit_names_get_their_suffix():
    assert unit_name("nginx") == "nginx.service" and unit_name("php7.4-fpm") == "php7.4-fpm.service"
    assert unit_name("getty@tty1.service") == "getty@tty1.service" and unit_name("docker.socket") == "docker.socket"
    assert unit_name(r"systemd-fsck@dev-disk-by\x2duuid-1234.service").endswith(".service")


def test_since_takes_spans_times_and_numbers():
    now = time.time()
    assert abs(since_time("1h") - (now - 3600)) < 5
    assert since_time("2024-05-01T10:00:00") == datetime(2024, 5, 1, 10).timestamp()
    assert since_time(1700000000) == 1700000000.0
    for bad in ("yesterday; reboot", "--all", "", True, "3000-01-01T00:00:00"):
        with pytest.raises(vol.Invalid):
            since_time(bad)


def journal_config(**extra):
    return CONFIG_SCHEMA({"directory": "/", **extra})  # any existing directory makes the journal "present" for the stand-in


async def test_the_argv_is_fixed_and_results_are_newest_lines_in_order(fake_journalctl):
    ctx = make_ctx(journal_config())
    result = await journal(ctx, {"unit": "nginx.service", "lines": 3})
    argv = fake_journalctl.calls()[-1]
    assert argv[:8] == ["-o", "json", "--no-pager", "-n", "3", "-u", "nginx.service", "-r"]
    assert "--all" in argv and argv[-2:] == ["--directory", "/"]
    assert [e["message"] for e in result["entries"]][-1] == "worker process 4242 exited with code 0"
    assert result["count"] == 3 and result["entries"][0]["time"] <= result["entries"][-1]["time"]
    assert result["output"].splitlines()[-1].endswith("worker process 4242 exited with code 0")


async def test_match_scans_further_and_since_is_an_epoch_option(fake_journalctl):
    ctx = make_ctx(journal_config(max_scan_lines=500))
    result = await journal(ctx, {"unit": "nginx", "lines": 5, "match": "CONNECT() FAILED", "since": since_time("2h")})
    argv = fake_journalctl.calls()[-1]
    assert argv[argv.index("-n") + 1] == "500" and argv[argv.index("-u") + 1] == "nginx.service"
    since = [a for a in argv if a.startswith("--since=")]
    assert len(since) == 1 and since[0].startswith("--since=@") and since[0][len("--since=@") :].isdigit()
    assert result["count"] == 1 and "connect() failed" in result["entries"][0]["message"]


async def test_output_is_capped_in_bytes(fake_journalctl):
    fake_journalctl.answer("journal_nginx_all_reverse.json")
    ctx = make_ctx(journal_config(max_bytes=1024))
    result = await journal(ctx, {"unit": "nginx.service", "lines": 10})
    # The newest entry fits; the 5000-byte one before it does not, so it and everything older are left out.
    assert result["truncated"] and result["count"] == 1 and "older entries left out" in result["output"]


async def test_units_outside_the_allowed_globs_are_refused(fake_journalctl):
    ctx = make_ctx(journal_config(units=["nginx*.service", "docker.service"]))
    with pytest.raises(ActionRefused, match="not readable here"):
        await journal(ctx, {"unit": "ssh.service", "lines": 5})
    with pytest.raises(ActionRefused, match="invalid parameters"):
        await journal(ctx, {"unit": "--all", "lines": 5})
    assert fake_journalctl.calls() == []
    assert (await journal(ctx, {"unit": "nginx", "lines": 1}))["count"] == 1


async def test_a_journalctl_error_is_reported(fake_journalctl):
    fake_journalctl.answer("journal_nginx.json", exit_code=1)
    with pytest.raises(ActionError, match="journalctl failed: Failed to add match"):
        await journal(make_ctx(journal_config()), {"unit": "nginx.service", "lines": 5})


async def test_not_available_without_journalctl_or_a_journal(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ActionError, match="journalctl is not installed"):
        await journal(make_ctx(CONFIG_SCHEMA({})), {"unit": "nginx.service", "lines": 5})
    monkeypatch.undo()
    monkeypatch.setattr("roost.integrations.logs.journal.JOURNAL_DIRS", (str(tmp_path / "no-journal"),))
    with pytest.raises(ActionError, match="no systemd journal"):
        await journal(make_ctx(CONFIG_SCHEMA({})), {"unit": "nginx.service", "lines": 5})
    with pytest.raises(ActionError, match="does not exist"):
        await journal(make_ctx(CONFIG_SCHEMA({"directory": str(tmp_path / "nowhere")})), {"unit": "nginx.service", "lines": 5})
    # Nothing to read at all: the integration says so and offers nothing.
    _, integ = await set_up("logs", {}, tmp_path)
    assert integ.state == "not_available" and "no systemd journal" in integ.reason and "log roots" in integ.reason
    # With log roots it runs; logs.journal is still declared and answers with the reason.
    manager, integ = await set_up("logs", {"roots": {"var": str(tmp_path)}}, tmp_path)
    assert integ.state == "loaded" and sorted(manager.actions()) == ["logs.file", "logs.journal", "logs.list"]
    await manager.shutdown_all()


def test_the_schema_refuses_what_the_handler_would():
    specs = {s.name: s.schema for s in action_specs(CONFIG_SCHEMA({"max_lines": 50}))}
    with pytest.raises(vol.Invalid, match="between 1 and 50"):
        specs["logs.journal"]({"unit": "nginx", "lines": 51})
    with pytest.raises(vol.Invalid):
        specs["logs.journal"]({"unit": "nginx", "match": "a\nb"})
    assert specs["logs.journal"]({"unit": "nginx"}) == {"unit": "nginx.service", "lines": 50}


async def test_a_real_journal_round_trip(private_journal, tmp_path):
    directory = private_journal(
        [
            {"MESSAGE": "Started demo.service.", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "systemd", "OBJECT_SYSTEMD_UNIT": "demo.service"},
            {"MESSAGE": "demo: listening on :8080", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "demo", "OBJECT_SYSTEMD_UNIT": "demo.service"},
            {"MESSAGE": "demo: request failed", "PRIORITY": "3", "SYSLOG_IDENTIFIER": "demo", "OBJECT_SYSTEMD_UNIT": "demo.service"},
            {"MESSAGE": b"demo: \xff binary", "PRIORITY": "4", "SYSLOG_IDENTIFIER": "demo", "OBJECT_SYSTEMD_UNIT": "demo.service"},
            {"MESSAGE": "other unit", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "other", "OBJECT_SYSTEMD_UNIT": "other.service"},
        ]
    )
    ctx = make_ctx(CONFIG_SCHEMA({"directory": str(directory)}))
    result = await journal(ctx, {"unit": "demo", "lines": 10})
    assert [e["message"] for e in result["entries"]] == ["Started demo.service.", "demo: listening on :8080", "demo: request failed", "demo: \ufffd binary"]
    assert [e["priority"] for e in result["entries"]] == [6, 6, 3, 4]
    failed = await journal(ctx, {"unit": "demo.service", "lines": 10, "match": "failed"})
    assert [e["message"] for e in failed["entries"]] == ["demo: request failed"]
    newest = await journal(ctx, {"unit": "demo.service", "lines": 2})
    assert [e["identifier"] for e in newest["entries"]] == ["demo", "demo"] and newest["entries"][-1]["priority"] == 4
    assert (await journal(ctx, {"unit": "demo.service", "lines": 10, "since": time.time() + 60}))["count"] == 0
