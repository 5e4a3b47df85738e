"""logs.file and logs.list: tails of files under configured log roots, with the same containment rules as the files integration."""

from __future__ import annotations

import gzip
import os

import pytest
import voluptuous as vol
from support_actions import make_ctx

from roost.core.actions import ActionError
from roost.integrations.files.paths import PathRefused
from roost.integrations.logs import CONFIG_SCHEMA
from roost.integrations.logs.actions import action_specs, list_logs, log_file


@pytest.fixture
def logs(tmp_path):
    root = tmp_path / "log"
    (root / "nginx").mkdir(parents=True)
    (root / "syslog").write_text("".join(f"line {i} {'ERROR disk full' if i % 10 == 0 else 'ok'}\n" for i in range(1, 1001)))
    (root / "nginx" / "access.log").write_text("GET / 200\nGET /admin 403\n")
    with gzip.open(root / "syslog.2.gz", "wt") as f:
        f.write("old\n")
    outside = tmp_path / "secret.log"
    outside.write_text("password=hunter2\n")
    os.symlink(outside, root / "leak.log")
    return root


def ctx_for(root, **extra):
    return make_ctx(CONFIG_SCHEMA({"journal": False, "roots": {"var": str(root)}, **extra}))


def test_the_last_lines(logs):
    result = log_file(ctx_for(logs), {"root": "var", "path": "syslog", "lines": 3})
    assert result["lines"] == ["line 998 ok", "line 999 ok", "line 1000 ERROR disk full"] and result["truncated"]
    assert result["output"].endswith("line 1000 ERROR disk full")
    assert log_file(ctx_for(logs), {"root": "var", "path": "nginx/access.log", "lines": 10})["lines"] == ["GET / 200", "GET /admin 403"]


def test_match_keeps_matching_lines_only(logs):
    result = log_file(ctx_for(logs), {"root": "var", "path": "syslog", "lines": 2, "match": "error DISK"})
    assert result["lines"] == ["line 990 ERROR disk full", "line 1000 ERROR disk full"]


def test_output_is_capped_in_bytes(logs):
    result = log_file(ctx_for(logs, max_bytes=1024), {"root": "var", "path": "syslog", "lines": 1000})
    assert sum(len(line) + 1 for line in result["lines"]) <= 1024 and result["truncated"]
    assert result["lines"][-1] == "line 1000 ERROR disk full" and "earlier lines left out" in result["output"]


def test_containment_is_the_files_integrations(logs):
    ctx = ctx_for(logs)
    with pytest.raises(PathRefused, match="symlink"):
        log_file(ctx, {"root": "var", "path": "leak.log", "lines": 5})
    for path in ("../secret.log", "/etc/passwd", "nginx/../../secret.log", "a\x00b"):
        with pytest.raises(PathRefused):
            log_file(ctx, {"root": "var", "path": path, "lines": 5})
    specs = {s.name: s.schema for s in action_specs(CONFIG_SCHEMA({"journal": False, "roots": {"var": str(logs)}}))}
    with pytest.raises(vol.Invalid, match="'..'"):
        specs["logs.file"]({"root": "var", "path": "../secret.log"})
    with pytest.raises(vol.Invalid, match="configured log roots"):
        specs["logs.list"]({"root": "etc"})


def test_compressed_logs_say_so(logs):
    with pytest.raises(ActionError, match="compressed"):
        log_file(ctx_for(logs), {"root": "var", "path": "syslog.2.gz", "lines": 5})


def test_list(logs):
    entries = {e["name"]: e["type"] for e in list_logs(ctx_for(logs), {"root": "var", "path": ""})["entries"]}
    assert entries == {"leak.log": "symlink", "nginx": "dir", "syslog": "file", "syslog.2.gz": "file"}
    assert [e["name"] for e in list_logs(ctx_for(logs), {"root": "var", "path": "nginx"})["entries"]] == ["access.log"]


def test_without_the_journal_only_file_actions_are_declared(logs):
    assert sorted(s.name for s in action_specs(CONFIG_SCHEMA({"journal": False, "roots": {"var": str(logs)}}))) == ["logs.file", "logs.list"]
    assert [s.name for s in action_specs(CONFIG_SCHEMA({}))] == ["logs.journal"]
