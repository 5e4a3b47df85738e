"""systemctl for one service: the strict unit-name check, argv (never a shell) and `systemctl show` parsing."""

from __future__ import annotations

import re
import shutil
from typing import Any

import voluptuous as vol

from roost.core.actions import ActionError
from roost.integrations.commands.runner import Outcome, run_argv

from .const import MAX_OUTPUT_BYTES, SHOW_PROPERTIES, SYSTEMCTL_PATH

# A service unit as systemd names them: letters, digits, : _ . @ - and \x escapes,
# ending in .service; never a leading '-', never a glob, never a bare template.
SERVICE_RE = re.compile(r"^[A-Za-z0-9_:\\][A-Za-z0-9_:.@\\-]{0,240}\.service$")
UNIT_HINT = r"^[A-Za-z0-9_:\\][A-Za-z0-9_:.@\\-]*$"


def service_name(value: Any) -> str:
    """voluptuous validator: a service unit name; ".service" is added when it is left out."""
    if not isinstance(value, str):
        raise vol.Invalid("must be a service name such as nginx or nginx.service")
    unit = value if value.endswith(".service") else value + ".service"
    if not SERVICE_RE.match(unit) or unit.endswith("@.service"):
        raise vol.Invalid("must be a service name such as nginx or nginx.service (letters, digits, : _ . @ -)")
    return unit


def systemctl() -> str:
    exe = shutil.which("systemctl")
    if exe is None:
        raise ActionError("systemctl is not on the agent's PATH; add /usr/bin (or wherever systemd installed it) to the agent's PATH")
    return exe


def show_argv(exe: str, unit: str) -> list[str]:
    return [exe, "show", "--no-pager", "--property=" + ",".join(SHOW_PROPERTIES), "--", unit]


def verb_argv(exe: str, verb: str, unit: str) -> list[str]:
    return [exe, verb, "--no-ask-password", "--", unit]


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show` output (Key=Value lines) as a dict; lines without '=' are skipped."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and key.replace("_", "").isalnum():
            props[key] = value
    return props


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "", "[not set]") else None
    except ValueError:
        return None


def status_view(unit: str, props: dict[str, str]) -> dict[str, Any]:
    """The parts of `systemctl show` a person reads, with plain names; what systemd did not say is left out."""
    view: dict[str, Any] = {"unit": props.get("Id") or unit}
    for key, name in (
        ("Description", "description"),
        ("LoadState", "load"),
        ("ActiveState", "active"),
        ("SubState", "sub"),
        ("UnitFileState", "enabled"),
        ("ActiveEnterTimestamp", "since"),
        ("Result", "result"),
        ("FragmentPath", "path"),
    ):
        if props.get(key):
            view[name] = props[key]
    for key, name in (("MainPID", "main_pid"), ("ExecMainStatus", "exit_status"), ("NRestarts", "restarts")):
        number = _int(props.get(key))
        if number is not None:
            view[name] = number
    if view.get("main_pid") == 0:
        del view["main_pid"]
    return view


def describe(view: dict[str, Any]) -> str:
    line = f"{view['unit']}: {view.get('active', '?')} ({view.get('sub', '?')})"
    if view.get("load") and view["load"] != "loaded":
        line += f", {view['load']}"
    if view.get("since"):
        line += f" since {view['since']}"
    if view.get("main_pid"):
        line += f", main PID {view['main_pid']}"
    return line


async def call(argv: list[str], timeout: float) -> Outcome:
    env = {"PATH": SYSTEMCTL_PATH, "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    return await run_argv(argv, label="systemctl", timeout=timeout, max_output=MAX_OUTPUT_BYTES, env=env)
