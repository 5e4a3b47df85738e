"""Proxmox guest actions: lifecycle, snapshots, backups and the destructive ones, each run as a polled Proxmox task.

Every handler talks to the API with its own client in worker threads, polls the
task it started until it ends (streaming the task log as progress) and then
checks the guest reached the state asked for: a POST reply only says a task
was queued. Every write refuses in read-only mode; the destructive ones also
refuse unless the job carries an operator-signed envelope whose parameters are
the ones being run (the agent's verifier checks the signature first; this is
defence in depth).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from roost.core.actions import ActionContext, ActionError, ActionRefused, ActionSpec

from .client import NODE_RE, ConfigError, ProxmoxClient, decode_upid, settings_from_config
from .const import (
    CAP_MANAGE,
    CONF_READ_ONLY,
    POLL_FIRST_SECONDS,
    POLL_MAX_ERRORS,
    POLL_MAX_SECONDS,
    SETTLE_SECONDS,
)
from .errors import KIND_PERMISSION, ProxmoxApiError

_LOGGER = logging.getLogger(__name__)

# Names as Proxmox takes them.
SNAPNAME_RE = r"^[A-Za-z][A-Za-z0-9_-]{1,39}$"
STORAGE_ID_RE = r"^[A-Za-z][A-Za-z0-9._-]*[A-Za-z0-9]$"
NODE_NAME_RE = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$"
# A backup volume: <storage>:backup/<file> (vzdump archive) or <storage>:backup/<vm|ct>/<id>/<time> (PBS).
ARCHIVE_RE = r"^[A-Za-z][A-Za-z0-9._-]*[A-Za-z0-9]:backup/[A-Za-z0-9._:/+-]+$"
_PERCENT_RE = re.compile(r"\b(\d{1,3})% \(")
OUTPUT_LINES = 40
MAX_OUTPUT_CHARS = 8000

VMID = vol.All(vol.Coerce(int), vol.Range(min=100, max=999_999_999))
NODE = vol.All(str, vol.Match(NODE_NAME_RE, msg="not a Proxmox node name"))
SNAPNAME = vol.All(str, vol.Match(SNAPNAME_RE, msg="2-40 letters, digits, - or _, starting with a letter"))


_GUEST = {vol.Required("vmid", description="Guest id (VMID)"): VMID, vol.Optional("node", description="Proxmox node (found from the cluster when left out)"): NODE}

SCHEMA_GUEST = vol.Schema(_GUEST)
SCHEMA_SHUTDOWN = vol.Schema(
    {
        **_GUEST,
        vol.Optional("timeout", default=120): vol.All(vol.Coerce(int), vol.Range(min=5, max=3600)),
        vol.Optional("force_stop", default=False): bool,
    }
)
SCHEMA_REBOOT = vol.Schema({**_GUEST, vol.Optional("timeout", default=120): vol.All(vol.Coerce(int), vol.Range(min=5, max=3600))})
SCHEMA_SNAPSHOT = vol.Schema(
    {
        **_GUEST,
        vol.Required("snapname"): SNAPNAME,
        vol.Optional("description", default=""): vol.All(str, vol.Length(max=1000)),
        vol.Optional("vmstate", default=False): bool,
    }
)
SCHEMA_BACKUP = vol.Schema(
    {
        **_GUEST,
        vol.Required("storage", description="Storage to back up to"): vol.All(str, vol.Match(STORAGE_ID_RE, msg="not a storage id")),
        vol.Optional("mode", default="snapshot"): vol.In(["snapshot", "suspend", "stop"]),
        vol.Optional("compress", default="zstd"): vol.In(["zstd", "lzo", "gzip", "0"]),
        vol.Optional("notes", default=""): vol.All(str, vol.Length(max=1000)),
    }
)
SCHEMA_ROLLBACK = vol.Schema({**_GUEST, vol.Required("snapname"): SNAPNAME, vol.Optional("start", default=False): bool})
SCHEMA_SNAPSHOT_DELETE = vol.Schema({**_GUEST, vol.Required("snapname"): SNAPNAME})
SCHEMA_RESTORE = vol.Schema(
    {
        **_GUEST,
        vol.Required("archive", description="Backup volume, e.g. nas:backup/vzdump-qemu-100-2024_05_01-02_00_00.vma.zst"): vol.All(
            str, vol.Match(ARCHIVE_RE, msg="not a backup volume id (storage:backup/...)")
        ),
        vol.Optional("storage", description="Storage for the restored disks (the original when left out)"): vol.All(
            str, vol.Match(STORAGE_ID_RE, msg="not a storage id")
        ),
        vol.Optional("start", default=False): bool,
    }
)
SCHEMA_DESTROY = vol.Schema(
    {
        **_GUEST,
        vol.Optional("purge", default=True): bool,
        vol.Optional("destroy_unreferenced_disks", default=True): bool,
    }
)


# ------------------------------------------------------------------- guards


def refuse_if_read_only(ctx: ActionContext, name: str) -> None:
    """Read-only mode (integrations.proxmox.read_only = true) refuses every write on this agent."""
    if ctx.config.get(CONF_READ_ONLY):
        raise ActionRefused(
            f"{name}: the proxmox integration on this agent is read-only (integrations.proxmox.read_only = true); "
            "the host owner must turn that off before Roost may change anything in Proxmox"
        )


def check_envelope(ctx: ActionContext, spec: ActionSpec, params: Mapping[str, Any]) -> None:
    """Refuse a destructive action unless the verified envelope binds exactly these parameters, this node and this guest.

    Expected envelope keys (the agent's verifier checks the signature first):
    ``action``, ``params`` and, when present, ``node_id`` (or ``node``), ``target`` and ``expires_at``.
    """
    env = ctx.envelope
    if not isinstance(env, Mapping):
        raise ActionRefused(
            f"{spec.name} is destructive: it runs only with an operator-signed envelope, and this job has none"
        )
    action = env.get("action")
    if action is not None and action != spec.name:
        raise ActionRefused(f"{spec.name}: the signed envelope is for {action}, not for this action")
    signed = env.get("params")
    if not isinstance(signed, Mapping):
        raise ActionRefused(f"{spec.name}: the signed envelope carries no parameters to compare")
    try:
        signed_params = spec.schema(dict(signed))
    except vol.Invalid:
        raise ActionRefused(f"{spec.name}: the signed parameters do not validate") from None
    if signed_params != dict(params):
        differing = sorted(k for k in set(signed_params) | set(params) if signed_params.get(k) != params.get(k))
        raise ActionRefused(
            f"{spec.name}: the parameters differ from the signed ones ({', '.join(differing)}); sign the operation again"
        )
    target = spec.target
    if target and "target" in env and str(env["target"]) != str(params.get(target)):
        raise ActionRefused(f"{spec.name}: the envelope is signed for {target} {env['target']}, not {params.get(target)}")
    signed_node = env.get("node_id", env.get("node"))
    if signed_node is not None and ctx.node_id and str(signed_node) != str(ctx.node_id):
        raise ActionRefused(f"{spec.name}: the envelope is signed for node {signed_node}, not this one ({ctx.node_id})")
    expires = env.get("expires_at")
    if isinstance(expires, (int, float)) and not isinstance(expires, bool) and expires < time.time():
        raise ActionRefused(f"{spec.name}: the signed envelope has expired")


# ------------------------------------------------------------------- runner


@dataclass
class Guest:
    vmid: int
    node: str
    type: str
    status: str
    name: str | None
    template: bool
    lock: str | None
    ha_state: str | None

    @property
    def path(self) -> str:
        return f"nodes/{self.node}/{self.type}/{self.vmid}"

    @property
    def label(self) -> str:
        kind = "VM" if self.type == "qemu" else "container"
        return f"{kind} {self.vmid}" + (f" ({self.name})" if self.name else "")


@dataclass
class TaskResult:
    upid: str
    node: str
    exit_status: str
    log: list[str]


class Runner:
    """One action's run: its own client, calls in worker threads, tasks polled to their end with progress."""

    def __init__(self, ctx: ActionContext, name: str) -> None:
        self.ctx = ctx
        self.name = name
        try:
            settings = settings_from_config(ctx.config)
        except ConfigError as err:
            raise ActionError(f"{name}: {err}") from None
        if settings is None:
            raise ActionError(f"{name}: the proxmox integration has no API token configured on this agent")
        self.client = ProxmoxClient(settings)

    def close(self) -> None:
        self.client.close()

    async def call(self, method: str, path: str, *, what: str, node: str | None = None, **params: Any) -> Any:
        try:
            return await asyncio.to_thread(getattr(self.client, method), path, what=what, node=node, **params)
        except ProxmoxApiError as err:
            raise ActionError(str(err)) from None

    async def progress(self, message: str, percent: float | None = None) -> None:
        try:
            await self.ctx.progress(message, percent)
        except Exception:  # a lost progress line must not fail the action
            _LOGGER.debug("progress report failed", exc_info=True)

    async def find_guest(self, vmid: int, node: str | None = None, *, required: bool = True) -> Guest | None:
        """The guest as the cluster lists it now (the POST goes to the node that has it)."""
        items = await self.call("get", "cluster/resources", what=f"look up guest {vmid}", type="vm")
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or item.get("vmid") is None or int(item["vmid"]) != vmid:
                continue
            if item.get("type") not in ("qemu", "lxc"):
                continue
            guest = Guest(
                vmid=vmid,
                node=str(item.get("node")),
                type=str(item["type"]),
                status=str(item.get("status") or "unknown"),
                name=item.get("name") if isinstance(item.get("name"), str) else None,
                template=bool(item.get("template")),
                lock=item.get("lock") or None,
                ha_state=item.get("hastate") or None,
            )
            if node and guest.node != node:
                raise ActionError(f"{self.name}: guest {vmid} is on node {guest.node}, not on {node}")
            if not NODE_RE.match(guest.node):
                raise ActionError(f"{self.name}: Proxmox named an odd node {guest.node!r} for guest {vmid}")
            return guest
        if required:
            raise ActionError(
                f"{self.name}: there is no guest {vmid} in the cluster (or the API token lacks VM.Audit on /vms/{vmid})"
            )
        return None

    async def guest_status(self, guest: Guest) -> dict[str, Any]:
        data = await self.call("get", f"{guest.path}/status/current", what=f"read the status of {guest.label}", node=guest.node)
        return data if isinstance(data, dict) else {}

    async def run_task(self, reply: Any, *, what: str, node: str, start: float = 0.0, end: float = 100.0) -> TaskResult:
        """Poll the task the POST started until it ends, reporting its log as progress; ActionError when it fails."""
        upid = reply if isinstance(reply, str) else None
        info = decode_upid(upid or "")
        if upid is None or info is None:
            raise ActionError(f"{self.name}: Proxmox did not start a task to {what} (it answered {str(reply)[:200]!r})")
        node = info["node"] if NODE_RE.match(info["node"]) else node
        await self.progress(f"{what}: task started on node {node}", start)
        log: list[str] = []
        errors = 0
        delay = POLL_FIRST_SECONDS
        while True:
            try:
                status = await asyncio.to_thread(
                    self.client.get, f"nodes/{node}/tasks/{upid}/status", what=f"follow the task to {what}", node=node
                )
                errors = 0
            except ProxmoxApiError as err:
                if err.kind == KIND_PERMISSION:
                    raise ActionError(str(err)) from None
                errors += 1
                if errors >= POLL_MAX_ERRORS:
                    raise ActionError(
                        f"{self.name}: lost track of the task to {what} ({err}); it may still be running on node {node} — "
                        f"see its log in Proxmox ({upid})"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(POLL_MAX_SECONDS, delay * 2)
                continue
            new_lines = await self._read_log(node, upid, len(log))
            log.extend(new_lines)
            done = isinstance(status, dict) and status.get("status") == "stopped"
            if new_lines and not done:
                line = next((line for line in reversed(new_lines) if line.strip()), "")
                percent = None
                match = _PERCENT_RE.search(line)
                if match:
                    percent = start + (end - start) * min(100, int(match.group(1))) / 100
                await self.progress(f"{what}: {line.strip()[:300]}" if line else f"{what}: running", percent)
            if done:
                exit_status = str(status.get("exitstatus") or "")
                if exit_status == "OK" or exit_status.startswith("WARNINGS"):
                    return TaskResult(upid=upid, node=node, exit_status=exit_status, log=log)
                tail = "\n".join(line for line in log[-5:] if line.strip())
                raise ActionError(
                    f"{self.name}: the Proxmox task to {what} failed: {exit_status or 'no exit status'}"
                    + (f"\n{tail}" if tail and exit_status not in tail else "")
                )
            await asyncio.sleep(delay)
            delay = min(POLL_MAX_SECONDS, delay * 1.5)

    async def _read_log(self, node: str, upid: str, start: int) -> list[str]:
        try:
            lines = await asyncio.to_thread(
                self.client.get, f"nodes/{node}/tasks/{upid}/log", what="read the task log", node=node, start=start, limit=500
            )
        except ProxmoxApiError:
            return []
        out = []
        for item in lines if isinstance(lines, list) else []:
            if isinstance(item, dict) and isinstance(item.get("t"), str):
                out.append(item["t"])
        return out

    async def wait_state(self, guest: Guest, want: set[str], *, what: str, timeout: float = SETTLE_SECONDS) -> str:
        """Poll the guest until its status is one of ``want`` (the HA manager acts after its own task ends)."""
        deadline = time.monotonic() + timeout
        delay = POLL_FIRST_SECONDS
        told = False
        while True:
            status = str((await self.guest_status(guest)).get("status") or "unknown")
            if status in want:
                return status
            if time.monotonic() >= deadline:
                raise ActionError(
                    f"{self.name}: the task to {what} ended, but {guest.label} is {status}, not {' or '.join(sorted(want))}, "
                    f"after {timeout:g} s"
                )
            if not told:
                told = True
                await self.progress(f"waiting for {guest.label} to be {' or '.join(sorted(want))} (now {status})", None)
            await asyncio.sleep(delay)
            delay = min(POLL_MAX_SECONDS, delay * 1.5)


def _output(task: TaskResult) -> str:
    text = "\n".join(task.log[-OUTPUT_LINES:])
    return text[-MAX_OUTPUT_CHARS:]


def _result(guest: Guest, task: TaskResult | None, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"vmid": guest.vmid, "node": guest.node, "type": guest.type, "changed": task is not None}
    if task is not None:
        result.update(upid=task.upid, exit_status=task.exit_status, output=_output(task))
    result.update(extra)
    return result


# ----------------------------------------------------------------- handlers

Handler = Callable[[Runner, dict[str, Any]], Awaitable[dict[str, Any]]]


def _wrap(name: str, body: Handler, *, destructive: bool, spec_ref: list[ActionSpec]) -> Callable[[ActionContext, dict[str, Any]], Awaitable[dict[str, Any]]]:
    async def handler(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        refuse_if_read_only(ctx, name)
        if destructive:
            check_envelope(ctx, spec_ref[0], params)
        runner = Runner(ctx, name)
        try:
            return await body(runner, params)
        finally:
            await asyncio.to_thread(runner.close)

    handler.__name__ = name.replace(".", "_")
    return handler


async def _start(run: Runner, params: dict[str, Any]) -> dict[str, Any]:
    guest = await run.find_guest(params["vmid"], params.get("node"))
    assert guest is not None
    if guest.template:
        raise ActionError(f"{run.name}: {guest.label} is a template; templates cannot start")
    if guest.status == "running":
        await run.progress(f"{guest.label} is already running", 100)
        return _result(guest, None, status="running")
    what = f"start {guest.label}"
    reply = await run.call("post", f"{guest.path}/status/start", what=what, node=guest.node)
    task = await run.run_task(reply, what=what, node=guest.node, end=90)
    status = await run.wait_state(guest, {"running"}, what=what)
    await run.progress(f"{guest.label} is running", 100)
    return _result(guest, task, status=status)


async def _shutdown(run: Runner, params: dict[str, Any]) -> dict[str, Any]:
    guest = await run.find_guest(params["vmid"], params.get("node"))
    assert guest is not None
    if guest.status == "stopped":
        await run.progress(f"{guest.label} is already stopped", 100)
        return _result(guest, None, status="stopped")
    what = f"shut down {guest.label}"
    reply = await run.call(
        "post",
        f"{guest.path}/status/shutdown",
        what=what,
        node=guest.node,
        timeout=params["timeout"],
        forceStop=1 if params["force_stop"] else None,
    )
    task = await run.run_task(reply, what=what, node=guest.node, end=90)
    status = await run.wait_state(guest, {"stopped"}, what=what)
    await run.progress(f"{guest.label} is stopped", 100)
    return _result(guest, task, status=status)


async def _stop(run: Runner, params: dict[str, Any]) -> dict[str, Any]:
    guest = await run.find_guest(params["vmid"], params.get("node"))
    assert guest is not None
    if guest.status == "stopped":
        await run.progress(f"{guest.label} is already stopped", 100)
        return _result(guest, None, status="stopped")
    what = f"stop {guest.label}"
    reply = await run.call("post", f"{guest.path}/status/stop", what=what, node=guest.node)
    task = await run.run_task(reply, what=what, node=guest.node, end=90)
    status = await run.wait_state(guest, {"stopped"}, what=what)
    await run.progress(f"{guest.label} is stopped", 100)
    return _result(guest, task, status=status)


async def _reboot(run: Runner, params: dict[str, Any]) -> dict[str, Any]:
    guest = await run.find_guest(params["vmid"], params.get("node"))
    assert guest is not None
    if guest.status != "running":
        raise ActionError(f"{run.name}: {guest.label} is {guest.status}; only a running guest can reboot (start it instead)")
    what = f"reboot {guest.label}"
    reply = await run.call("post", f"{guest.path}/status/reboot", what=what, node=guest.node, timeout=params["timeout"])
    task = await run.run_task(reply, what=what, node=guest.node, end=90)
    status = await run.wait_state(guest, {"running"}, what=what)
    await run.progress(f"{guest.label} is running again", 100)
    return _result(guest, task, status=status)


async def _snapshot_names(run: Runner, guest: Guest) -> set[str]:
    items = await run.call("get", f"{guest.path}/snapshot", what=f"list the snapshots of {guest.label}", node=guest.node)
    return {str(i["name"]) for i in (items if isinstance(items, list) else []) if isinstance(i, dict) and i.get("name") != "current"}


async def _snapshot(run: Runner, params: dict[str, Any]) -> dict[str, Any]:
    guest = await run.find_guest(params["vmid"], params.get("node"))
    assert guest is not None
    name = params["snapname"]
    if name in await _snapshot_names(run, guest):
        raise ActionError(f"{run.name}: {guest.label} already has a snapshot named {name}")
    what = f"snapshot {guest.label} as {name}"
    data: dict[str, Any] = {"snapname": name, "description": params["description"] or None}
    if guest.type == "qemu" and params["vmstate"]:
        data["vmstate"] = 1
    reply = await run.call("post", f"{guest.path}/snapshot", what=what, node=guest.node, **data)
    task = await run.run_task(reply, what=what, node=guest.node, end=95)
    if name not in await _snapshot_names(run, guest):
        raise ActionError(f"{run.name}: the task to {what} ended, but the snapshot {name} is not in the list")
    await run.progress(f"snapshot {name} of {guest.label} taken", 100)
    return _result(guest, task, snapname=name)


async def _backup(run: Runner, params: dict[str, Any]) -> dict[str, Any]:
    guest = await run.find_guest(params["vmid"], params.get("node"))
    assert guest is not None
    if guest.template and params["mode"] != "snapshot":
        raise ActionError(f"{run.name}: back up a template in snapshot mode")
    storage = params["storage"]
    what = f"back up {guest.label} to {storage}"
    started = time.time()
    reply = await run.call(
        "post",
        f"nodes/{guest.node}/vzdump",
        what=what,
        node=guest.node,
        vmid=str(guest.vmid),
        storage=storage,
        mode=params["mode"],
        compress=params["compress"],
        # "Back up now" never prunes: the storage's retention would delete older backups as a side effect.
        remove=0,
        **({"notes-template": params["notes"]} if params["notes"] else {}),
    )
    task = await run.run_task(reply, what=what, node=guest.node, end=95)
    volid = await _newest_backup(run, guest, storage, since=started - 120)
    await run.progress(f"backup of {guest.label} finished" + (f": {volid}" if volid else ""), 100)
    return _result(guest, task, storage=storage, **({"volid": volid} if volid else {}))


async def _newest_backup(run: Runner, guest: Guest, storage: str, *, since: float) -> str | None:
    """The backup volume the task just wrote, when the token may list the storage (it needs Datastore.AllocateSpace)."""
    try:
        items = await asyncio.to_thread(
            run.client.get,
            f"nodes/{guest.node}/storage/{storage}/content",
            what=f"list the backups on {storage}",
            node=guest.node,
            content="backup",
            vmid=guest.vmid,
        )
    except ProxmoxApiError:
        return None
    newest: tuple[float, str] | None = None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("volid"), str):
            continue
        ctime = float(item.get("ctime") or 0)
        if ctime >= since and (newest is None or ctime > newest[0]):
            newest = (ctime, item["volid"])
    return newest[1] if newest else None


async def _rollback(run: Runner, params: dict[str, Any]) -> dict[str, Any]:
    guest = await run.find_guest(params["vmid"], params.get("node"))
    assert guest is not None
    name = params["snapname"]
    if name not in await _snapshot_names(run, guest):
        raise ActionError(f"{run.name}: {guest.label} has no snapshot named {name}")
    what = f"roll {guest.label} back to snapshot {name}"
    reply = await run.call(
        "post", f"{guest.path}/snapshot/{name}/rollback", what=what, node=guest.node, start=1 if params["start"] else None
    )
    task = await run.run_task(reply, what=what, node=guest.node, end=90)
    config = await run.call("get", f"{guest.path}/config", what=f"read the config of {guest.label}", node=guest.node)
    if isinstance(config, dict) and config.get("parent") not in (None, name):
        raise ActionError(f"{run.name}: the task to {what} ended, but the guest's current state follows {config.get('parent')}, not {name}")
    status = await run.wait_state(guest, {"running"} if params["start"] else {"running", "stopped"}, what=what)
    await run.progress(f"{guest.label} rolled back to {name}", 100)
    return _result(guest, task, snapname=name, status=status)


async def _snapshot_delete(run: Runner, params: dict[str, Any]) -> dict[str, Any]:
    guest = await run.find_guest(params["vmid"], params.get("node"))
    assert guest is not None
    name = params["snapname"]
    if name not in await _snapshot_names(run, guest):
        raise ActionError(f"{run.name}: {guest.label} has no snapshot named {name}")
    what = f"delete snapshot {name} of {guest.label}"
    reply = await run.call("delete", f"{guest.path}/snapshot/{name}", what=what, node=guest.node)
    task = await run.run_task(reply, what=what, node=guest.node, end=95)
    if name in await _snapshot_names(run, guest):
        raise ActionError(f"{run.name}: the task to {what} ended, but the snapshot is still listed")
    await run.progress(f"snapshot {name} of {guest.label} deleted", 100)
    return _result(guest, task, snapname=name)


def archive_type(archive: str) -> str | None:
    """qemu or lxc from a backup volume's name, or None."""
    if "vzdump-qemu-" in archive or ":backup/vm/" in archive:
        return "qemu"
    if "vzdump-lxc-" in archive or "vzdump-openvz-" in archive or ":backup/ct/" in archive:
        return "lxc"
    return None


async def _restore(run: Runner, params: dict[str, Any]) -> dict[str, Any]:
    vmid, archive = params["vmid"], params["archive"]
    guest = await run.find_guest(vmid, params.get("node"), required=False)
    kind = archive_type(archive)
    if guest is not None:
        if kind and kind != guest.type:
            held = "VM" if kind == "qemu" else "container"
            actual = "a VM" if guest.type == "qemu" else "a container"
            raise ActionError(f"{run.name}: {archive} holds a {held} backup, but guest {vmid} is {actual}")
        kind = guest.type
        if guest.status != "stopped":
            raise ActionError(f"{run.name}: {guest.label} is {guest.status}; shut it down before restoring over it")
        node = guest.node
    else:
        node = params.get("node")
        if not node:
            raise ActionError(f"{run.name}: guest {vmid} does not exist; name the node to restore it to")
        if kind is None:
            raise ActionError(f"{run.name}: cannot tell from {archive} whether it holds a VM or a container")
    assert kind is not None
    target = guest or Guest(vmid=vmid, node=node, type=kind, status="stopped", name=None, template=False, lock=None, ha_state=None)
    what = f"restore {archive} over {target.label}" if guest else f"restore {archive} as guest {vmid}"
    data: dict[str, Any] = {"vmid": vmid, "storage": params.get("storage"), "force": 1 if guest else None, "start": 1 if params["start"] else None}
    if kind == "qemu":
        data["archive"] = archive
    else:
        data.update(ostemplate=archive, restore=1)
    reply = await run.call("post", f"nodes/{node}/{kind}", what=what, node=node, **data)
    task = await run.run_task(reply, what=what, node=node, end=90)
    restored = await run.find_guest(vmid, required=False)
    if restored is None:
        raise ActionError(f"{run.name}: the task to {what} ended, but guest {vmid} is not in the cluster")
    status = await run.wait_state(restored, {"running"} if params["start"] else {"running", "stopped"}, what=what)
    await run.progress(f"guest {vmid} restored from {archive}", 100)
    return _result(restored, task, archive=archive, status=status)


async def _destroy(run: Runner, params: dict[str, Any]) -> dict[str, Any]:
    guest = await run.find_guest(params["vmid"], params.get("node"))
    assert guest is not None
    if guest.status != "stopped":
        raise ActionError(f"{run.name}: {guest.label} is {guest.status}; stop it before destroying it")
    what = f"destroy {guest.label}"
    reply = await run.call(
        "delete",
        guest.path,
        what=what,
        node=guest.node,
        purge=1 if params["purge"] else None,
        **({"destroy-unreferenced-disks": 1} if params["destroy_unreferenced_disks"] else {}),
    )
    task = await run.run_task(reply, what=what, node=guest.node, end=95)
    if await run.find_guest(guest.vmid, required=False) is not None:
        raise ActionError(f"{run.name}: the task to {what} ended, but guest {guest.vmid} is still in the cluster")
    await run.progress(f"{guest.label} destroyed", 100)
    return _result(guest, task, status="destroyed")


# ---------------------------------------------------------------- the specs

# (name, handler, schema, description, destructive, idempotent, timeout)
_ACTIONS: tuple[tuple[str, Handler, vol.Schema, str, bool, bool, float], ...] = (
    ("proxmox.guest.start", _start, SCHEMA_GUEST, "Start a VM or container and wait until it runs.", False, True, 600),
    ("proxmox.guest.shutdown", _shutdown, SCHEMA_SHUTDOWN, "Shut a guest down cleanly (ACPI or the container's init), optionally forcing it off after the timeout.", False, True, 3900),
    ("proxmox.guest.stop", _stop, SCHEMA_GUEST, "Stop a guest at once, like pulling its power.", False, True, 600),
    ("proxmox.guest.reboot", _reboot, SCHEMA_REBOOT, "Reboot a running guest cleanly.", False, False, 3900),
    ("proxmox.guest.snapshot", _snapshot, SCHEMA_SNAPSHOT, "Take a snapshot of a guest.", False, False, 3600),
    ("proxmox.guest.backup", _backup, SCHEMA_BACKUP, "Back a guest up now with vzdump to a chosen storage.", False, False, 6 * 3600),
    ("proxmox.guest.rollback", _rollback, SCHEMA_ROLLBACK, "Roll a guest back to a snapshot; what changed since is lost.", True, False, 3600),
    ("proxmox.guest.snapshot_delete", _snapshot_delete, SCHEMA_SNAPSHOT_DELETE, "Delete a snapshot of a guest.", True, False, 3600),
    ("proxmox.guest.restore", _restore, SCHEMA_RESTORE, "Restore a backup over a guest (or as a new one); the guest's present disks are replaced.", True, False, 6 * 3600),
    ("proxmox.guest.destroy", _destroy, SCHEMA_DESTROY, "Destroy a stopped guest and its disks.", True, False, 1800),
)


def build_actions() -> list[ActionSpec]:
    """Every proxmox action as an ActionSpec (capability proxmox.manage; destructive ones bind vmid)."""
    specs: list[ActionSpec] = []
    for name, body, schema, description, destructive, idempotent, timeout in _ACTIONS:
        ref: list[ActionSpec] = []
        spec = ActionSpec(
            name=name,
            capability=CAP_MANAGE,
            handler=_wrap(name, body, destructive=destructive, spec_ref=ref),
            schema=schema,
            description=description,
            destructive=destructive,
            idempotent=idempotent,
            timeout=timeout,
            target="vmid" if destructive else None,
            # The dashboard offers the guests this node's cluster reports.
            pickers={"vmid": "proxmox.guests[].vmid"},
        )
        ref.append(spec)
        specs.append(spec)
    return specs


__all__ = ["build_actions", "check_envelope", "refuse_if_read_only"]
