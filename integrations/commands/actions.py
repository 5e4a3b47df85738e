"""The commands integration's one action, commands.run: an allowed command by name, with checked arguments."""

from __future__ import annotations

import logging
from typing import Any

import voluptuous as vol

from roost.core.actions import ActionContext, ActionError, ActionRefused, ActionSpec

from .allowlist import Command, build_argv, check_args
from .const import ACTION_GRACE_SECONDS, ACTION_RUN, CAP_EXECUTE_LIMITED
from .runner import RunAs, describe_exit, run, tail

_LOGGER = logging.getLogger(__name__)

DATA_COMMANDS = "commands"
DATA_ACCOUNTS = "accounts"


def params_schema(commands: dict[str, Command]) -> vol.Schema:
    """{command, args}: the command must be in the allowlist and its arguments pass its rules, or the agent refuses."""
    names = sorted(commands)
    shape = vol.Schema(
        {
            vol.Required("command", description="a command named in the agent's allowlist"): vol.In(
                names, msg=f"is not in this agent's allowlist ({', '.join(names)})"
            ),
            vol.Optional("args", default=dict, description="argument name -> value"): vol.Any(dict, None),
        }
    )

    def arguments(params: dict[str, Any]) -> dict[str, Any]:
        try:
            values = check_args(commands[params["command"]], params.get("args"))
        except ValueError as err:
            raise vol.Invalid(str(err), path=["args"]) from None
        return {"command": params["command"], "args": values}

    return vol.Schema(vol.All(shape, arguments))


def action_specs(commands: dict[str, Command], rate_limit: int) -> list[ActionSpec]:
    longest = max((c.timeout for c in commands.values()), default=30.0)
    return [
        ActionSpec(
            name=ACTION_RUN,
            capability=CAP_EXECUTE_LIMITED,
            handler=run_command,
            schema=params_schema(commands),
            description="Run a command from this agent's allowlist: " + "; ".join(
                f"{c.name}{' (' + c.description + ')' if c.description else ''}" for c in commands.values()
            ),
            timeout=longest + ACTION_GRACE_SECONDS,
            rate_limit_per_minute=rate_limit or None,
        )
    ]


async def run_command(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    commands: dict[str, Command] = ctx.data[DATA_COMMANDS]
    accounts: dict[str, RunAs] = ctx.data[DATA_ACCOUNTS]
    command = commands.get(params.get("command"))  # type: ignore[arg-type]
    if command is None:
        raise ActionRefused(f"{params.get('command')!r} is not in this agent's allowlist")
    try:  # checked by the schema already; a handler called some other way must not trust that
        values = check_args(command, params.get("args"))
    except ValueError as err:
        raise ActionRefused(f"invalid parameters: {err}") from None
    argv = build_argv(command, values)
    run_as = accounts[command.name]
    _LOGGER.info("job %s: running %s as %s: %r", ctx.job_id, command.name, run_as.name, argv)
    outcome = await run(command, argv, run_as)
    text = outcome.output.decode("utf-8", "replace")
    if outcome.timed_out:
        raise ActionError(
            f"command {command.name} did not finish within {command.timeout:g} s and was killed"
            + (f"; output so far:\n{tail(text)}" if text else "")
        )
    result = {
        "command": command.name,
        "argv": argv,
        "user": run_as.name,
        "exit_code": outcome.exit_code,
        "duration_s": outcome.duration_s,
        "output_bytes": outcome.total_bytes,
        "truncated": outcome.truncated,
        "output": text + (f"\n[… output cut at {command.max_output} bytes of {outcome.total_bytes} (max_output)]" if outcome.truncated else ""),
    }
    if outcome.exit_code not in command.ok_exit_codes:
        raise ActionError(f"command {command.name} {describe_exit(outcome.exit_code)}" + (f"; output:\n{tail(text)}" if text else ""))
    return result
