"""Restore tests of vzdump and PBS backups: restore into a throwaway guest this agent creates, compare, destroy it.

The scratch guest's provenance is agent-internal. The agent picks the guest id
itself, from the range the host owner configured (restore_test.vmid_range),
writes it to a ledger in its data dir before asking Proxmox to restore, and
records the restore task's UPID once Proxmox has taken the id (a restore
without ``force`` never overwrites an existing guest). Only guests in that
ledger are ever destroyed: nothing the hub sends names a scratch guest (the
restore-test action has no scratch-id parameter), and proxmox.scratch.remove
refuses any id the ledger does not hold, so the hub cannot turn a real guest
into "scratch" and have it deleted.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import voluptuous as vol

from roost.core.actions import ActionContext, ActionError, ActionRefused, ActionSpec

from .actions import ARCHIVE_RE, NODE, STORAGE_ID_RE, VMID, Runner, archive_type, refuse_if_read_only
from .const import CAP_MANAGE

_LOGGER = logging.getLogger(__name__)

CONF_RESTORE_TEST = "restore_test"
DATA_SCRATCH = "scratch_guests"
DATA_RESULTS = "restore_tests"
ACTION_RESTORE_TEST = "proxmox.backup.restore_test"
ACTION_SCRATCH_REMOVE = "proxmox.scratch.remove"

# Keys Proxmox rewrites on every restore (or that are not the guest's): left out of the comparison.
VOLATILE_KEYS = frozenset({"digest", "lock", "vmgenid", "meta", "description"})
DISK_KEY_RE = re.compile(r"^((scsi|virtio|sata|ide)\d+|efidisk0|tpmstate0|rootfs|mp\d+)$")
NET_KEY_RE = re.compile(r"^net\d+$")
MAC_RE = re.compile(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
MAX_MISMATCHES = 50


class JsonLedger:
    """A small JSON object on disk (0600, written atomically), shared by the action and the collector."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def read(self) -> dict[str, Any]:
        with self._lock:
            return self._read()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def update(self, key: str, value: dict[str, Any] | None) -> None:
        with self._lock:
            data = self._read()
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)


def scratch_ledger(data_dir: str | Path) -> JsonLedger:
    return JsonLedger(Path(data_dir) / "proxmox" / "scratch_guests.json")


def results_file(data_dir: str | Path) -> JsonLedger:
    return JsonLedger(Path(data_dir) / "proxmox" / "restore_tests.json")


def _range(value: Any) -> list[int]:
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise vol.Invalid("expected [first, last] guest ids, e.g. [990000, 990099]")
    first, last = value
    if not 100 <= first <= last <= 999_999_999:
        raise vol.Invalid("guest ids between 100 and 999999999, first <= last")
    return [first, last]


RESTORE_TEST_SCHEMA = vol.Schema(
    {
        # The guest ids this agent may use for scratch guests: keep it clear of real guests.
        vol.Required("vmid_range"): _range,
        # Storage for the scratch guest's disks (the archive's own storages when left out).
        vol.Optional("storage"): vol.All(str, vol.Match(STORAGE_ID_RE, msg="not a storage id")),
        # Proxmox node the scratch guest is restored on (the source guest's node, else the first online one).
        vol.Optional("node"): NODE,
    },
    extra=vol.PREVENT_EXTRA,
)

SCHEMA_RESTORE_TEST = vol.Schema(
    {
        vol.Required("guest", description="The guest whose backup is tested (its vmid)"): VMID,
        vol.Optional("storage", description="Storage holding the backups (vzdump or PBS)"): vol.All(str, vol.Match(STORAGE_ID_RE, msg="not a storage id")),
        vol.Optional("archive", description="One backup volume; the newest of the guest when left out"): vol.All(
            str, vol.Match(ARCHIVE_RE, msg="not a backup volume id (storage:backup/...)")
        ),
        vol.Optional("node"): NODE,
        vol.Optional("policy"): vol.All(str, vol.Length(max=100)),
    },
    extra=vol.PREVENT_EXTRA,
)
SCHEMA_SCRATCH_REMOVE = vol.Schema({vol.Required("vmid"): VMID}, extra=vol.PREVENT_EXTRA)


# --------------------------------------------------------------- comparing


def parse_config(text: str) -> dict[str, str]:
    """A guest config file's current section (as extractconfig returns it): key: value lines, snapshots and comments left out."""
    out: dict[str, str] = {}
    for line in str(text or "").splitlines():
        if line.startswith("["):
            break
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def size_bytes(options: str) -> int | None:
    match = re.search(r"(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)", options)
    if not match:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _disk_options(value: str) -> str:
    """A disk's options without its volume name (restored disks are new volumes for the new id)."""
    _volume, _, options = value.partition(",")
    return ",".join(sorted(o for o in options.split(",") if o))


def compare(expected: dict[str, str], restored: dict[str, Any]) -> dict[str, Any]:
    """The restored guest's config against the archive's: every key, disk options and sizes, NICs without their MACs."""
    actual = {k: str(v) for k, v in restored.items() if k not in VOLATILE_KEYS}
    wanted = {k: v for k, v in expected.items() if k not in VOLATILE_KEYS}
    mismatches: list[dict[str, Any]] = []
    disks: list[dict[str, Any]] = []
    for key in sorted(set(wanted) | set(actual)):
        want, got = wanted.get(key), actual.get(key)
        if want is None or got is None:
            mismatches.append({"key": key, "problem": "missing after restore" if got is None else "not in the archive", "expected": want, "actual": got})
            continue
        if DISK_KEY_RE.match(key) and "media=cdrom" not in want:
            want_size, got_size = size_bytes(want), size_bytes(got)
            disks.append({"key": key, "size_bytes": got_size})
            if want_size != got_size:
                mismatches.append({"key": key, "problem": "disk size differs", "expected_size": want_size, "actual_size": got_size})
            elif _disk_options(re.sub(r"(^|,)size=[^,]*", "", want)) != _disk_options(re.sub(r"(^|,)size=[^,]*", "", got)):
                mismatches.append({"key": key, "problem": "disk options differ", "expected": want, "actual": got})
            continue
        if NET_KEY_RE.match(key):
            want, got = MAC_RE.sub("MAC", want), MAC_RE.sub("MAC", got)
        if want != got:
            mismatches.append({"key": key, "problem": "differs", "expected": wanted[key], "actual": actual[key]})
    return {"keys_checked": len(wanted), "disks": disks, "bytes_checked": sum(d["size_bytes"] or 0 for d in disks), "mismatches": mismatches}


# ------------------------------------------------------------- the guests


def _settings(ctx: ActionContext) -> dict[str, Any]:
    table = ctx.config.get(CONF_RESTORE_TEST)
    if not table:
        raise ActionRefused(
            "restore tests are off on this host: give the agent a range of guest ids it may use for throwaway "
            "restores, integrations.proxmox.restore_test.vmid_range = [990000, 990099] (clear of real guests)"
        )
    return table


def _ledger(ctx: ActionContext) -> JsonLedger:
    ledger = ctx.data.get(DATA_SCRATCH)
    if ledger is None:
        raise ActionError("the proxmox integration has no scratch ledger on this agent (it did not set up)")
    return ledger


async def _wait_absent(run: Runner, vmid: int, what: str) -> None:
    if await run.find_guest(vmid, required=False) is not None:
        raise ActionError(f"{run.name}: the task to {what} ended, but guest {vmid} is still in the cluster")


async def destroy_scratch(run: Runner, ledger: JsonLedger, vmid: int) -> dict[str, Any]:
    """Destroy one scratch guest this agent created; ActionRefused for any guest id its ledger does not hold."""
    entry = ledger.read().get(str(vmid))
    if not entry or not entry.get("upid"):
        raise ActionRefused(
            f"guest {vmid} is not a scratch guest this agent created for a restore test; refusing to destroy it "
            "(the agent removes only the scratch guests in its own ledger)"
        )
    guest = await run.find_guest(vmid, required=False)
    if guest is None:
        ledger.update(str(vmid), None)
        return {"vmid": vmid, "destroyed": False, "output": f"scratch guest {vmid} is already gone"}
    if guest.node != entry.get("node") or guest.type != entry.get("type"):
        raise ActionRefused(
            f"guest {vmid} is {guest.type} on {guest.node}, not the {entry.get('type')} this agent restored on {entry.get('node')}; refusing to destroy it"
        )
    if guest.status != "stopped":
        what = f"stop scratch guest {vmid}"
        reply = await run.call("post", f"{guest.path}/status/stop", what=what, node=guest.node)
        await run.run_task(reply, what=what, node=guest.node, start=90, end=93)
    what = f"destroy scratch guest {vmid}"
    reply = await run.call("delete", guest.path, what=what, node=guest.node, purge=1, **{"destroy-unreferenced-disks": 1})
    await run.run_task(reply, what=what, node=guest.node, start=93, end=99)
    await _wait_absent(run, vmid, what)
    ledger.update(str(vmid), None)
    return {"vmid": vmid, "destroyed": True, "output": f"scratch guest {vmid} destroyed"}


async def sweep(run: Runner, ledger: JsonLedger) -> list[int]:
    """Destroy the scratch guests of restore tests that were cut short; entries whose restore never took an id are forgotten."""
    removed = []
    for key, entry in ledger.read().items():
        if not entry.get("upid"):
            ledger.update(key, None)  # the restore was never accepted: the id is not ours
            continue
        try:
            result = await destroy_scratch(run, ledger, int(key))
        except (ActionError, ActionRefused) as err:
            _LOGGER.warning("proxmox: could not remove leftover scratch guest %s: %s", key, err)
            continue
        if result.get("destroyed"):
            removed.append(int(key))
    return removed


async def _pick_vmid(run: Runner, ledger: JsonLedger, first: int, last: int) -> int:
    items = await run.call("get", "cluster/resources", what="list the guest ids in use", type="vm")
    taken = {int(i["vmid"]) for i in items if isinstance(i, dict) and str(i.get("vmid", "")).isdigit()} if isinstance(items, list) else set()
    taken |= {int(k) for k in ledger.read() if k.isdigit()}
    for vmid in range(first, last + 1):
        if vmid in taken:
            continue
        try:
            # Proxmox's own check that the id is free right now (nextid with vmid answers 400 for a taken one).
            await run.call("get", "cluster/nextid", what=f"check guest id {vmid} is free", vmid=vmid)
        except ActionError:
            continue
        return vmid
    raise ActionError(f"{run.name}: no free guest id left in the scratch range {first}-{last}; widen integrations.proxmox.restore_test.vmid_range")


async def _node_for(run: Runner, params: dict[str, Any], settings: dict[str, Any]) -> str:
    if params.get("node") or settings.get("node"):
        return str(params.get("node") or settings.get("node"))
    source = await run.find_guest(params["guest"], required=False)
    if source is not None:
        return source.node
    nodes = await run.call("get", "nodes", what="list the cluster's nodes")
    online = sorted(str(n["node"]) for n in nodes if isinstance(n, dict) and n.get("status") == "online") if isinstance(nodes, list) else []
    if not online:
        raise ActionError(f"{run.name}: no Proxmox node is online to restore on")
    return online[0]


async def _newest_archive(run: Runner, node: str, storage: str, guest: int) -> str:
    items = await run.call(
        "get", f"nodes/{node}/storage/{storage}/content", what=f"list the backups of guest {guest} on {storage}", node=node, content="backup", vmid=guest
    )
    found = [i for i in items if isinstance(i, dict) and isinstance(i.get("volid"), str) and int(i.get("vmid") or 0) == guest] if isinstance(items, list) else []
    if not found:
        raise ActionError(f"{run.name}: guest {guest} has no backup on {storage}")
    return max(found, key=lambda i: float(i.get("ctime") or 0))["volid"]


async def restore_test(run: Runner, ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    settings = _settings(ctx)
    ledger = _ledger(ctx)
    results: JsonLedger | None = ctx.data.get(DATA_RESULTS)
    guest = params["guest"]
    started = time.time()
    result: dict[str, Any] = {"at": started, "job_id": ctx.job_id, "ok": False, "guest": guest, "mismatches": [], "keys_checked": 0, "disks": [], "bytes_checked": 0}
    scratch: int | None = None
    try:
        leftovers = await sweep(run, ledger)
        if leftovers:
            await run.progress(f"removed leftover scratch guests {', '.join(map(str, leftovers))}", 2)
        node = await _node_for(run, params, settings)
        archive = params.get("archive")
        if not archive:
            if not params.get("storage"):
                raise ActionError(f"{run.name}: name the archive, or the storage whose newest backup of guest {guest} to test")
            archive = await _newest_archive(run, node, params["storage"], guest)
        kind = archive_type(archive)
        if kind is None:
            raise ActionError(f"{run.name}: cannot tell from {archive} whether it holds a VM or a container")
        result.update(archive=archive, node=node, type=kind)
        text = await run.call("get", f"nodes/{node}/vzdump/extractconfig", what=f"read the config stored in {archive}", node=node, volume=archive)
        expected = parse_config(text if isinstance(text, str) else "")
        if not expected:
            raise ActionError(f"{run.name}: {archive} holds no guest config to compare with")
        first, last = settings["vmid_range"]
        scratch = await _pick_vmid(run, ledger, first, last)
        # Recorded before the restore: an agent stopped mid-test finds it at its next start.
        ledger.update(str(scratch), {"node": node, "type": kind, "archive": archive, "created_at": time.time(), "job_id": ctx.job_id})
        result["scratch_vmid"] = scratch
        what = f"restore {archive} into scratch guest {scratch}"
        data: dict[str, Any] = {"vmid": scratch, "unique": 1, "storage": settings.get("storage")}
        if kind == "qemu":
            data["archive"] = archive
        else:
            data.update(ostemplate=archive, restore=1)
        await run.progress(f"restoring {archive} into scratch guest {scratch} on {node} (not started)", 5)
        try:
            reply = await run.call("post", f"nodes/{node}/{kind}", what=what, node=node, **data)
        except ActionError:
            ledger.update(str(scratch), None)  # Proxmox did not take the id: whatever has it now is not ours
            scratch = None
            raise
        if not isinstance(reply, str):
            ledger.update(str(scratch), None)
            scratch = None
            raise ActionError(f"{run.name}: Proxmox did not start a task to {what} (it answered {str(reply)[:200]!r})")
        ledger.update(str(scratch), {**ledger.read()[str(scratch)], "upid": reply})
        task = await run.run_task(reply, what=what, node=node, start=5, end=80)
        result["upid"] = task.upid
        restored = await run.call("get", f"nodes/{node}/{kind}/{scratch}/config", what=f"read the config of scratch guest {scratch}", node=node)
        result.update(compare(expected, restored if isinstance(restored, dict) else {}))
        result["mismatches"] = result["mismatches"][:MAX_MISMATCHES]
        result["ok"] = not result["mismatches"]
        if not result["ok"]:
            keys = ", ".join(m["key"] for m in result["mismatches"][:5])
            result["error"] = f"{len(result['mismatches'])} config key(s) of the restored guest differ from the archive's ({keys})"
        await run.progress(f"compared {result['keys_checked']} config keys and {len(result['disks'])} disks", 90)
    except (ActionError, ActionRefused) as err:
        result["error"] = str(err)
    finally:
        if scratch is not None:
            try:
                await destroy_scratch(run, ledger, scratch)
                result["scratch_removed"] = True
            except (ActionError, ActionRefused) as err:
                result["scratch_removed"] = False
                result.setdefault("error", f"the scratch guest {scratch} could not be removed: {err}")
                result["ok"] = False
        result["finished_at"] = time.time()
        result["duration_seconds"] = round(result["finished_at"] - started, 3)
        if params.get("policy"):
            result["policy"] = params["policy"]
        if results is not None:
            previous = results.read().get(str(guest)) or {}
            # The last good test's time survives a failed one (the verdict's "last good restore test ... ago").
            result["last_ok_at"] = result["finished_at"] if result["ok"] else previous.get("last_ok_at")
            results.update(str(guest), copy.deepcopy(result))
    if not result["ok"]:
        raise ActionError(f"restore test of guest {guest} failed: {result['error']}")
    return {**result, "output": f"restore test of guest {guest} ({result['archive']}): {result['keys_checked']} config keys and {len(result['disks'])} disks ({result['bytes_checked']} bytes) as in the archive"}


def _wrap(name: str, body: Any) -> Any:
    async def handler(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        refuse_if_read_only(ctx, name)
        run = Runner(ctx, name)
        try:
            return await body(run, ctx, params)
        finally:
            await asyncio.to_thread(run.close)

    handler.__name__ = name.replace(".", "_")
    return handler


async def _scratch_remove(run: Runner, ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return await destroy_scratch(run, _ledger(ctx), params["vmid"])


def restore_test_actions() -> list[ActionSpec]:
    return [
        ActionSpec(
            ACTION_RESTORE_TEST,
            CAP_MANAGE,
            _wrap(ACTION_RESTORE_TEST, restore_test),
            SCHEMA_RESTORE_TEST,
            "restore a guest's newest (or a given) backup into a throwaway guest this agent creates, compare its config and disk sizes with the archive's, destroy it",
            timeout=6 * 3600,
            # The dashboard offers the guests this node's cluster reports (the tested guest; never the scratch one).
            pickers={"guest": "proxmox.guests[].vmid"},
        ),
        ActionSpec(
            ACTION_SCRATCH_REMOVE,
            CAP_MANAGE,
            _wrap(ACTION_SCRATCH_REMOVE, _scratch_remove),
            SCHEMA_SCRATCH_REMOVE,
            "destroy a scratch guest a cut-short restore test left; refused for any guest this agent did not create",
            timeout=1800,
        ),
    ]


def sweep_in_background(config: dict[str, Any], ledger: JsonLedger, logger: Any) -> threading.Thread | None:
    """At the agent's start: remove leftover scratch guests without holding up setup."""
    if not ledger.read():
        return None

    def work() -> None:
        async def progress(message: str, percent: float | None = None) -> None:
            return None

        ctx = ActionContext(domain="proxmox", job_id="startup-sweep", node_id="", config=config, data={DATA_SCRATCH: ledger}, progress=progress, logger=logger)
        run = Runner(ctx, "proxmox scratch sweep")
        try:
            removed = asyncio.run(sweep(run, ledger))
            if removed:
                logger.info("proxmox: removed scratch guests %s left by an interrupted restore test", ", ".join(map(str, removed)))
        except Exception:
            logger.warning("proxmox: the sweep of leftover scratch guests failed; the next restore test tries again", exc_info=True)
        finally:
            run.close()

    thread = threading.Thread(target=work, name="roost-proxmox-scratch-sweep", daemon=True)
    thread.start()
    return thread
