"""storage.mount: mount a USB target the hub's manifest lists, by its UUID or label, at its listed mount point, and nothing else."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import voluptuous as vol

from roost.core.actions import ActionContext, ActionError, ActionRefused, ActionSpec

from .const import ACTION_MOUNT, CAP_MOUNT, MOUNT_TIMEOUT
from .targets import TARGET_ID_RE, _matches, parse_mountinfo

MOUNT_SCHEMA = vol.Schema({vol.Required("target", description="id of a usb target in this node's storage manifest"): vol.All(str, vol.Match(TARGET_ID_RE))})
# Mounted so that nothing on a plugged-in drive can run or act as a device node on this host.
MOUNT_OPTIONS = "nosuid,nodev,noexec"


def action_specs(config: dict[str, Any]) -> list[ActionSpec]:
    return [
        ActionSpec(
            name=ACTION_MOUNT,
            capability=CAP_MOUNT,
            handler=mount_target,
            schema=MOUNT_SCHEMA,
            description="Mount a USB target listed in this node's storage manifest at its listed mount point (nosuid, nodev, noexec).",
            idempotent=True,
            timeout=MOUNT_TIMEOUT + 5,
            rate_limit_per_minute=6,
        )
    ]


def find_device(durable_id: str, config: dict[str, Any], block_ids: Any) -> str | None:
    """The block device holding the filesystem with that UUID or label (asked of each device, so no udev is needed)."""
    try:
        names = sorted(os.listdir(config["sys_class_block"]))
    except OSError:
        return None
    for name in names:
        device = f"/dev/{name}"
        if os.path.exists(device) and _matches(block_ids.of(device), durable_id):
            return device
    return None


def mount_target(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    manifest = ctx.data["settings"]() if callable(ctx.data.get("settings")) else {}
    target = next((t for t in manifest.get("targets") or [] if t.get("id") == params["target"]), None)
    if target is None:
        raise ActionRefused(f"target {params['target']!r} is not in this node's storage manifest; add it on the hub first")
    if target.get("type") != "usb":
        raise ActionRefused(f"target {target['id']} is of type {target.get('type')}; only usb targets are mounted by storage.mount")
    if target.get("state") != "attached":
        raise ActionRefused(f"target {target['id']} is {target.get('state')} in the manifest; mark it attached to mount it")
    mountpoint = target.get("mountpoint")
    if not mountpoint:
        raise ActionRefused(f"target {target['id']} has no mount point in the manifest; set one to mount it")
    config = ctx.config
    mountpoint = os.path.normpath(mountpoint)
    if not any(mountpoint.startswith(root.rstrip("/") + "/") for root in config["mount_roots"]):
        raise ActionRefused(f"mount point {mountpoint} is outside this host's mount_roots ({', '.join(config['mount_roots'])}); the host owner sets integrations.storage.mount_roots")
    if os.path.realpath(mountpoint) != mountpoint:
        raise ActionRefused(f"mount point {mountpoint} goes through a symbolic link; give its real path in the manifest")
    mounts = parse_mountinfo(Path(config["mountinfo"]).read_text())
    if any(m.mountpoint == mountpoint for m in mounts):
        return {"output": f"{mountpoint} is already mounted", "mounted": False}
    collector = ctx.data["collector"]
    device = find_device(target["durable_id"], config, collector.block_ids)
    if device is None:
        raise ActionError(f"no block device here holds {target['durable_id']}: is the drive plugged in?")
    if not os.path.isdir(mountpoint):
        raise ActionError(f"mount point {mountpoint} does not exist; create it on this host")
    argv = [config["mount"], "-o", MOUNT_OPTIONS, device, mountpoint]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=MOUNT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ActionError(f"mount {device} {mountpoint} failed: {err}") from None
    if proc.returncode != 0:
        raise ActionError(f"mount {device} {mountpoint} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return {"output": f"mounted {device} ({target['durable_id']}) at {mountpoint}", "mounted": True, "device": device}
