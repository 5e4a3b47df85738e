"""systemd service units: whether systemd runs, and what `systemctl list-units` says about services."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .const import SYSTEMCTL_TIMEOUT_SECONDS

_LOGGER = logging.getLogger(__name__)

# --full keeps long descriptions whole instead of ellipsised to a terminal width.
LIST_UNITS_ARGS = ("list-units", "--type=service", "--all", "--plain", "--no-legend", "--no-pager", "--full")
NOT_RUNNING_REASON = "systemd is not running on this host"
# systemctl marks failed and not-found units with a circle: "●" in a UTF-8 locale, "*" otherwise.
_BULLETS = ("●", "*")


def systemd_running(run_root: Path) -> bool:
    """True when systemd is the init system (the check sd_booted(3) makes)."""
    return (run_root / "systemd" / "system").is_dir()


def parse_list_units(text: str) -> list[dict[str, str]]:
    """Parse `systemctl list-units --plain --no-legend` output into unit dicts.

    Each line is UNIT LOAD ACTIVE SUB DESCRIPTION, the description free text
    with spaces (or missing); lines that do not look like that are skipped.
    """
    units = []
    for line in text.splitlines():
        line = line.strip()
        for bullet in _BULLETS:
            if line.startswith(bullet):
                line = line[len(bullet) :].lstrip()
                break
        parts = line.split(None, 4)
        if len(parts) < 4 or "." not in parts[0]:
            continue
        name, load, active, sub = parts[:4]
        units.append(
            {
                "name": name,
                "load": load,
                "active": active,
                "sub": sub,
                "description": parts[4] if len(parts) == 5 else "",
            }
        )
    return units


def list_services(*, timeout: float = SYSTEMCTL_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Run systemctl and return the services state: {"available": True, "units": [...]} or the reason it failed."""
    exe = shutil.which("systemctl")
    if exe is None:
        return {"available": False, "reason": "systemd runs but systemctl is not on PATH; add /usr/bin to the agent's PATH"}
    try:
        result = subprocess.run(
            [exe, *LIST_UNITS_ARGS],
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"available": False, "reason": f"systemctl list-units did not answer within {timeout:g} s"}
    except OSError as err:
        return {"available": False, "reason": f"cannot run systemctl: {err.strerror or err}"}
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = message[0] if message else f"exit status {result.returncode}"
        return {"available": False, "reason": f"systemctl list-units failed: {detail}"}
    return {"available": True, "units": parse_list_units(result.stdout.decode("utf-8", "replace"))}
