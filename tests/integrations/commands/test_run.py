"""commands.run for real: one argv and no shell, a minimal environment, the output cap, the timeout and the process group, the user."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from support import need, until
from support_actions import make_ctx

from roost.core.actions import ActionError, ActionRefused
from roost.integrations.commands.actions import DATA_ACCOUNTS, DATA_COMMANDS, run_command
from roost.integrations.commands.allowlist import CONFIG_SCHEMA
from roost.integrations.commands.runner import resolve_account


def ctx_for(*entries, user=None):
    config = CONFIG_SCHEMA({"allow": list(entries), **({"user": user} if user else {})})
    commands = config["allow"]
    accounts = {name: resolve_account(c.user if c.user is not None else config.get("user"), c.group) for name, c in commands.items()}
    return make_ctx(config, {DATA_COMMANDS: commands, DATA_ACCOUNTS: accounts}, domain="commands")


def reporter(programs, pattern="(?s).*", **extra):
    return {"name": "report", "argv": [programs["reporter"], "fixed", "{text}"], "args": {"text": {"type": "string", "pattern": pattern}}, **extra}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("value", ["; touch PWNED", "a | touch PWNED", "$(touch PWNED)", "`touch PWNED`", "a > PWNED", "a && touch PWNED", "* ?", "'quoted' \"twice\"", "a b  c"])
async def test_shell_metacharacters_are_one_inert_argument(programs, tmp_path, value, monkeypatch):
    ctx = ctx_for(reporter(programs, cwd=str(tmp_path)))
    result = await run_command(ctx, {"command": "report", "args": {"text": value}})
    seen = json.loads(result["output"])
    assert seen["argv"] == ["fixed", value] and result["argv"][1:] == ["fixed", value]
    assert not (tmp_path / "PWNED").exists()


async def test_the_environment_is_minimal_stdin_is_empty_and_the_command_leads_its_own_group(programs, tmp_path, monkeypatch):
    monkeypatch.setenv("ROOST_AGENT_SECRET", "do-not-leak")
    ctx = ctx_for(reporter(programs, env={"TZ": "UTC"}, cwd=str(tmp_path)))
    seen = json.loads((await run_command(ctx, {"command": "report", "args": {"text": "x"}}))["output"])
    assert "ROOST_AGENT_SECRET" not in seen["env"] and seen["env"]["TZ"] == "UTC"
    assert set(seen["env"]) <= {"PATH", "LANG", "LC_ALL", "HOME", "USER", "LOGNAME", "TZ"}
    assert seen["stdin"] == "" and seen["cwd"] == str(tmp_path) and seen["pgid_is_pid"]


async def test_output_is_capped_and_counted(programs):
    ctx = ctx_for({"name": "flood", "argv": [programs["flood"], "{n}"], "args": {"n": {"type": "int", "min": 1}}, "max_output": 1000})
    result = await run_command(ctx, {"command": "flood", "args": {"n": 1_000_000}})
    assert result["truncated"] and result["output_bytes"] == 1_000_000
    assert result["output"].startswith("x" * 1000) and "output cut at 1000 bytes of 1000000" in result["output"]
    small = await run_command(ctx, {"command": "flood", "args": {"n": 10}})
    assert not small["truncated"] and small["output"] == "x" * 10


async def test_a_command_past_its_timeout_is_killed_with_everything_it_started(tmp_path):
    pids = tmp_path / "pids"
    # sh starts in a millisecond even on a busy machine: a background child, both pids written, then the parent sleeps.
    script = 'sleep 60 & echo $$ $! > "$0"; exec sleep 60'
    ctx = ctx_for({"name": "forker", "argv": ["/bin/sh", "-c", script, "{pids}"], "args": {"pids": {"type": "string", "pattern": "^/.*/pids$"}}, "timeout": 0.5})
    with pytest.raises(ActionError, match="did not finish within 0.5 s and was killed"):
        await run_command(ctx, {"command": "forker", "args": {"pids": str(pids)}})
    parent, child = map(int, pids.read_text().split())
    assert not alive(parent) and not alive(child)


async def test_a_cancelled_job_kills_its_command(programs, tmp_path):
    pids = tmp_path / "pids"
    ctx = ctx_for({"name": "forker", "argv": [programs["forker"], str(pids)], "timeout": 30})
    task = asyncio.create_task(run_command(ctx, {"command": "forker"}))

    async def started():
        return pids.exists() and pids.read_text().count(" ") == 1

    await until(started, 5, "the command to start")
    parent, child = map(int, pids.read_text().split())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: _dead(parent, child), 3, "the command's processes to die")


async def _dead(*pids):
    return not any(alive(p) for p in pids)


async def test_a_failing_exit_status_is_a_failure_with_its_output(programs):
    ctx = ctx_for(
        {"name": "false", "argv": [shutil.which("false") or "/bin/false"]},
        {"name": "sh-exit", "argv": ["/bin/sh", "-c", "echo broken >&2; exit 3"]},
        {"name": "lenient", "argv": ["/bin/sh", "-c", "exit 3"], "ok_exit_codes": [0, 3]},
    )
    with pytest.raises(ActionError, match="exited with status 1"):
        await run_command(ctx, {"command": "false"})
    with pytest.raises(ActionError, match="(?s)exited with status 3.*broken"):
        await run_command(ctx, {"command": "sh-exit"})
    assert (await run_command(ctx, {"command": "lenient"}))["exit_code"] == 3


async def test_a_missing_program_says_so(tmp_path):
    ctx = ctx_for({"name": "ghost", "argv": [str(tmp_path / "no-such-program")]})
    with pytest.raises(ActionError, match="does not exist on this host"):
        await run_command(ctx, {"command": "ghost"})


async def test_the_handler_checks_again_whatever_called_it(programs):
    ctx = ctx_for(reporter(programs, pattern="^[a-z]+$"))
    with pytest.raises(ActionRefused, match="not in this agent's allowlist"):
        await run_command(ctx, {"command": "sh", "args": {}})
    for text in ("-oProxyCommand=x", "../x", "a\nb", "UPPER"):
        with pytest.raises(ActionRefused, match="invalid parameters"):
            await run_command(ctx, {"command": "report", "args": {"text": text}})


@pytest.fixture
def system_user():
    need(os.geteuid() == 0 and shutil.which("useradd") is not None, "root and useradd (to run a command as another user)")
    name = "roost-t" + secrets.token_hex(3)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


async def test_commands_run_as_the_configured_user(system_user):
    id_cmd = shutil.which("id") or "/usr/bin/id"
    ctx = ctx_for({"name": "whoami", "argv": [id_cmd]}, {"name": "root-id", "argv": [id_cmd], "user": "root"}, user=system_user.pw_name)
    result = await run_command(ctx, {"command": "whoami"})
    assert f"uid={system_user.pw_uid}({system_user.pw_name})" in result["output"] and result["user"] == system_user.pw_name
    assert f"gid={system_user.pw_gid}" in result["output"] and "groups=0(" not in result["output"]
    # A command's own user wins over the integration's default.
    assert "uid=0(root)" in (await run_command(ctx, {"command": "root-id"}))["output"]


def test_an_unknown_user_is_a_clear_error():
    from roost.integrations.commands.runner import AccountError

    with pytest.raises(AccountError, match="does not exist on this host"):
        resolve_account("no-such-user-" + secrets.token_hex(3), None)
