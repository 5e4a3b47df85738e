"""The proxmox collector: one snapshot of a cluster (quorum, nodes, guests, storage, tasks, backups) per cycle."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import pbs
from .client import NODE_RE, STORAGE_RE, ApiSettings, ProxmoxClient
from .const import (
    AUDITOR_ROLE,
    BACKUP_TASKS_PER_NODE,
    CAP_MANAGE,
    CAP_READ,
    CONF_BACKUP_EXCLUDE,
    CONF_BACKUP_REFRESH,
    CONF_BACKUP_WARN_DAYS,
    CONF_DATASTORES,
    CONF_NODES,
    CONF_PBS,
    CONF_READ_ONLY,
    CONF_TASKS,
    DEADLINE_FACTOR,
    DEFAULT_BACKUP_REFRESH,
    DEFAULT_BACKUP_WARN_DAYS,
    DEFAULT_TASKS,
    GUEST_TYPES,
    READ_PRIVILEGES,
)
from .errors import (
    KIND_DEADLINE,
    KIND_NODE_OFFLINE,
    KIND_PERMISSION,
    KIND_TIMEOUT,
    KIND_UNREACHABLE,
    ProxmoxApiError,
)

_LOGGER = logging.getLogger(__name__)

DAY = 86400.0
# How much newer an OK vzdump task must be than the newest backup seen on storage to count instead of it.
TASK_OVER_ARTIFACT_SECONDS = 3600.0
_VOLID_VMID_RE = re.compile(r"vzdump-(?:qemu|lxc|openvz)-(\d+)-|backup/(?:vm|ct)/(\d+)/")
_PVE_VERSION_RE = re.compile(r"pve-manager/([^/\s]+)")
# Kinds after which a node's other reads this cycle would fail the same way.
_NODE_GONE = frozenset({KIND_NODE_OFFLINE, KIND_TIMEOUT, KIND_UNREACHABLE})

SEVERITY_BAD = "bad"
SEVERITY_WARN = "warn"
SEVERITY_INFO = "info"


# ----------------------------------------------------------------- pure helpers


def _num(value: Any) -> float | None:
    """A finite number from a number or numeric text (PVE sends load averages as strings)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return None if number is None else int(number)


def _percent(used: float | None, total: float | None) -> float | None:
    if used is None or not total or total <= 0:
        return None
    return round(min(100.0, max(0.0, used / total * 100)), 1)


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    """Set a key only when there is a value: what the platform does not give is left out, never faked."""
    if value is not None:
        target[key] = value


def split_tags(value: Any) -> list[str]:
    """PVE keeps tags as one string separated by ';' (or ',' and spaces in older versions)."""
    if isinstance(value, list):
        return [str(t) for t in value if str(t)]
    if not isinstance(value, str):
        return []
    return [t for t in re.split(r"[;,\s]+", value) if t]


def pve_version(text: Any) -> str | None:
    """'pve-manager/8.2.4/faa83925' -> '8.2.4'; other text as it is."""
    if not isinstance(text, str) or not text:
        return None
    match = _PVE_VERSION_RE.search(text)
    return match.group(1) if match else text


def parse_cluster_status(items: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """GET /cluster/status -> (cluster, {node name: membership}); a standalone node has no cluster entry."""
    cluster: dict[str, Any] = {"standalone": True}
    members: dict[str, dict[str, Any]] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "cluster":
            cluster["standalone"] = False
            _put(cluster, "name", item.get("name") if isinstance(item.get("name"), str) else None)
            quorate = _int(item.get("quorate"))
            cluster["quorate"] = None if quorate is None else bool(quorate)
            _put(cluster, "nodes_expected", _int(item.get("nodes")))
        elif item.get("type") == "node" and isinstance(item.get("name"), str):
            member: dict[str, Any] = {"online": bool(_int(item.get("online")))}
            _put(member, "ip", item.get("ip") if isinstance(item.get("ip"), str) else None)
            member["local"] = bool(_int(item.get("local")))
            _put(member, "nodeid", _int(item.get("nodeid")))
            members[item["name"]] = member
    return cluster, members


def parse_resources(items: Any) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """GET /cluster/resources -> (nodes by name, guests, storages per node)."""
    nodes: dict[str, dict[str, Any]] = {}
    guests: list[dict[str, Any]] = []
    storages: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "node" and isinstance(item.get("node"), str):
            nodes[item["node"]] = item
        elif kind in GUEST_TYPES and _int(item.get("vmid")) is not None:
            guests.append(parse_guest(item))
        elif kind == "storage" and isinstance(item.get("storage"), str):
            storages.append(item)
    guests.sort(key=lambda g: g["vmid"])
    return nodes, guests, storages


def parse_guest(item: Mapping[str, Any]) -> dict[str, Any]:
    """One VM or container from /cluster/resources."""
    kind = item.get("type")
    guest: dict[str, Any] = {
        "vmid": _int(item.get("vmid")),
        "type": kind,
        "name": item.get("name") if isinstance(item.get("name"), str) else None,
        "node": item.get("node") if isinstance(item.get("node"), str) else None,
        "status": item.get("status") if isinstance(item.get("status"), str) else "unknown",
        "template": bool(_int(item.get("template"))),
        "tags": split_tags(item.get("tags")),
    }
    running = guest["status"] == "running"
    cpu, maxcpu = _num(item.get("cpu")), _num(item.get("maxcpu"))
    if running and cpu is not None:
        guest["cpu_percent"] = round(min(100.0, max(0.0, cpu * 100)), 1)
    _put(guest, "cpu_count", _int(maxcpu))
    mem, maxmem = _num(item.get("mem")), _num(item.get("maxmem"))
    if running and mem is not None:
        guest["mem_used_bytes"] = int(mem)
        _put(guest, "mem_percent", _percent(mem, maxmem))
    _put(guest, "mem_total_bytes", _int(maxmem))
    disk, maxdisk = _num(item.get("disk")), _num(item.get("maxdisk"))
    # PVE cannot see inside a VM's disks, so it reports 0 used; only containers have a real figure.
    if kind == "lxc" and disk is not None and running:
        guest["disk_used_bytes"] = int(disk)
        _put(guest, "disk_percent", _percent(disk, maxdisk))
    if maxdisk:
        guest["disk_total_bytes"] = int(maxdisk)
    for src, dst in (("netin", "net_in_bytes"), ("netout", "net_out_bytes"), ("diskread", "disk_read_bytes"), ("diskwrite", "disk_write_bytes")):
        if running:
            _put(guest, dst, _int(item.get(src)))
    uptime = _int(item.get("uptime"))
    if running and uptime is not None:
        guest["uptime_s"] = uptime
    for src, dst in (("hastate", "ha_state"), ("lock", "lock"), ("pool", "pool")):
        value = item.get(src)
        if isinstance(value, str) and value:
            guest[dst] = value
    return guest


def parse_node_status(data: Any) -> dict[str, Any]:
    """GET /nodes/{node}/status -> load, memory, root fs, swap, versions, CPU model."""
    out: dict[str, Any] = {}
    if not isinstance(data, dict):
        return out
    cpu = _num(data.get("cpu"))
    if cpu is not None:
        out["cpu_percent"] = round(min(100.0, max(0.0, cpu * 100)), 1)
    wait = _num(data.get("wait"))
    if wait is not None:
        out["iowait_percent"] = round(wait * 100, 1)
    load = data.get("loadavg")
    if isinstance(load, list):
        values = [_num(v) for v in load[:3]]
        if len(values) == 3 and all(v is not None for v in values):
            out["load"] = [round(v, 2) for v in values]  # type: ignore[arg-type]
    for key, prefix in (("memory", "mem"), ("swap", "swap"), ("rootfs", "rootfs")):
        block = data.get(key)
        if not isinstance(block, dict):
            continue
        total, used = _num(block.get("total")), _num(block.get("used"))
        if not total:
            # A block of zeros says nothing (an API that could not read it); leave it out.
            if key == "swap" and total == 0 and block:
                out["swap_total_bytes"] = 0
            continue
        out[f"{prefix}_total_bytes"] = int(total)
        if used is not None:
            out[f"{prefix}_used_bytes"] = int(used)
            out[f"{prefix}_percent"] = _percent(used, total)
        avail = _num(block.get("available", block.get("avail")))
        if avail is not None and key != "swap":
            out[f"{prefix}_available_bytes"] = int(avail)
    uptime = _int(data.get("uptime"))
    if uptime is not None:
        out["uptime_s"] = uptime
    _put(out, "pve_version", pve_version(data.get("pveversion")))
    kernel = data.get("current-kernel")
    if isinstance(kernel, dict) and isinstance(kernel.get("release"), str):
        out["kernel"] = kernel["release"]
    elif isinstance(data.get("kversion"), str):
        out["kernel"] = data["kversion"]
    info = data.get("cpuinfo")
    if isinstance(info, dict):
        if isinstance(info.get("model"), str) and info["model"]:
            out["cpu_model"] = info["model"]
        cpus = _int(info.get("cpus"))
        if cpus:
            out["cpu_count"] = cpus
        sockets = _int(info.get("sockets"))
        if sockets:
            out["cpu_sockets"] = sockets
    boot = data.get("boot-info")
    if isinstance(boot, dict) and isinstance(boot.get("mode"), str):
        out["boot_mode"] = boot["mode"]
    return out


def parse_storage_status(items: Any) -> dict[str, dict[str, Any]]:
    """GET /nodes/{node}/storage -> {storage: usage and flags}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("storage"), str):
            out[item["storage"]] = item
    return out


def task_state(item: Mapping[str, Any]) -> tuple[str, str | None]:
    """(running | ok | warning | error, exit status) of a task from a task list or its status."""
    exit_status = item.get("exitstatus", item.get("status") if item.get("status") not in ("running", "stopped") else None)
    if item.get("status") == "running" or (exit_status is None and item.get("endtime") is None):
        return "running", None
    if exit_status is None:
        return "ok", None
    text = str(exit_status)
    if text == "OK":
        return "ok", text
    if text.startswith("WARNINGS"):
        return "warning", text
    return "error", text


def parse_task(item: Mapping[str, Any]) -> dict[str, Any] | None:
    if not isinstance(item, Mapping) or not isinstance(item.get("upid"), str):
        return None
    state, exit_status = task_state(item)
    task: dict[str, Any] = {
        "upid": item["upid"],
        "node": item.get("node") if isinstance(item.get("node"), str) else None,
        "type": item.get("type") if isinstance(item.get("type"), str) else None,
        "id": str(item.get("id") or ""),
        "user": item.get("user") if isinstance(item.get("user"), str) else None,
        "state": state,
    }
    _put(task, "exit_status", exit_status)
    start, end = _int(item.get("starttime")), _int(item.get("endtime"))
    _put(task, "started_at", start)
    _put(task, "ended_at", end)
    if start is not None and end is not None and end >= start:
        task["duration_s"] = end - start
    return task


def parse_tasks(items: Any) -> list[dict[str, Any]]:
    tasks = [t for t in (parse_task(i) for i in (items if isinstance(items, list) else [])) if t]
    tasks.sort(key=lambda t: t.get("started_at") or 0, reverse=True)
    return tasks


def volume_vmid(item: Mapping[str, Any]) -> int | None:
    """The guest a backup volume belongs to: its vmid field, or the one in its name."""
    vmid = _int(item.get("vmid"))
    if vmid is not None:
        return vmid
    match = _VOLID_VMID_RE.search(str(item.get("volid") or ""))
    if match:
        return int(match.group(1) or match.group(2))
    return None


def parse_backup_volumes(items: Any) -> dict[int, float]:
    """GET /nodes/{node}/storage/{storage}/content?content=backup -> newest backup time per guest."""
    newest: dict[int, float] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("content", "backup") != "backup":
            continue
        vmid, ctime = volume_vmid(item), _num(item.get("ctime"))
        if vmid is None or ctime is None or ctime <= 0:
            continue
        newest[vmid] = max(ctime, newest.get(vmid, 0.0))
    return newest


def parse_backup_jobs(items: Any) -> list[dict[str, Any]]:
    """GET /cluster/backup -> the scheduled backup jobs."""
    jobs = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        job: dict[str, Any] = {"id": item["id"], "enabled": bool(_int(item.get("enabled", 1)) if item.get("enabled") is not None else True)}
        for key in ("schedule", "storage", "mode", "comment", "pool", "compress", "node"):
            if isinstance(item.get(key), str) and item[key]:
                job[key] = item[key]
        if _int(item.get("all")):
            job["all"] = True
        vmids = [int(v) for v in re.split(r"[,\s]+", str(item.get("vmid") or "")) if v.isdigit()]
        if vmids:
            job["vmids"] = vmids
        exclude = [int(v) for v in re.split(r"[,\s]+", str(item.get("exclude") or "")) if v.isdigit()]
        if exclude:
            job["exclude"] = exclude
        _put(job, "next_run_at", _int(item.get("next-run")))
        jobs.append(job)
    return sorted(jobs, key=lambda j: j["id"])


def parse_not_backed_up(items: Any) -> set[int]:
    """GET /cluster/backup-info/not-backed-up -> ids of guests no backup job covers."""
    return {v for v in (_int(i.get("vmid")) for i in (items if isinstance(items, list) else []) if isinstance(i, dict)) if v is not None}


def missing_privileges(permissions: Any, token_id: str) -> list[dict[str, str]]:
    """Problems for each read privilege the token holds nowhere it is needed (GET /access/permissions)."""
    if not isinstance(permissions, dict):
        return []
    problems = []
    for privilege, acl_path, what in READ_PRIVILEGES:
        held = any(
            isinstance(privs, dict)
            and privs.get(privilege)
            # Held on /, on the path, or on something below it (then part of the data is visible).
            and (path == "/" or path == acl_path or path.startswith(acl_path + "/"))
            for path, privs in permissions.items()
        )
        if not held:
            problems.append(
                {
                    "scope": "permissions",
                    "severity": SEVERITY_BAD,
                    "kind": KIND_PERMISSION,
                    "privilege": privilege,
                    "message": f"the API token {token_id} lacks {privilege} on {acl_path}, so Roost cannot read {what} — "
                    f"grant the {AUDITOR_ROLE} role on / to {token_id} under Datacenter → Permissions (a token with "
                    "privilege separation needs the permission on the token itself)",
                }
            )
    return problems


def merge_backups(
    guests: list[dict[str, Any]],
    *,
    volumes: Mapping[int, tuple[float, str]],
    tasks: Iterable[dict[str, Any]],
    pbs_times: Mapping[int, tuple[float, str]],
    not_covered: set[int] | None,
    warn_days: float,
    exclude: Iterable[int],
    now: float,
    known: bool,
) -> int:
    """Give each guest its backup status (last success and where it is, last task, overdue); return how many are overdue."""
    last_task: dict[int, dict[str, Any]] = {}
    last_ok_task: dict[int, float] = {}
    for task in tasks:
        if task.get("type") != "vzdump" or not task.get("id", "").isdigit():
            continue
        vmid = int(task["id"])
        when = task.get("ended_at") or task.get("started_at") or 0
        if task["state"] in ("ok", "warning"):
            last_ok_task[vmid] = max(when, last_ok_task.get(vmid, 0))
        if task["state"] != "running" and (vmid not in last_task or when > (last_task[vmid].get("ended_at") or last_task[vmid].get("started_at") or 0)):
            last_task[vmid] = task
    excluded = set(exclude)
    overdue = 0
    for guest in guests:
        vmid = guest["vmid"]
        backup: dict[str, Any] = {}
        artifacts: list[tuple[float, str]] = []
        if vmid in volumes:
            artifacts.append((volumes[vmid][0], f"storage {volumes[vmid][1]}"))
        if vmid in pbs_times:
            artifacts.append((pbs_times[vmid][0], f"PBS datastore {pbs_times[vmid][1]}"))
        best: tuple[float, str] | None = max(artifacts) if artifacts else None
        # A backup that can be seen on its storage says more than the task that wrote it (which ends a little
        # later); the task alone counts when the storage is out of sight (no Datastore.AllocateSpace, removed).
        if vmid in last_ok_task and (best is None or last_ok_task[vmid] - best[0] > TASK_OVER_ARTIFACT_SECONDS):
            best = (last_ok_task[vmid], "vzdump task")
        if best is not None:
            when, source = best
            backup["last_ok_at"] = int(when)
            backup["source"] = source
            backup["age_days"] = round(max(0.0, now - when) / DAY, 1)
        task = last_task.get(vmid)
        if task is not None:
            backup["last_task"] = {k: task[k] for k in ("upid", "state", "exit_status", "started_at", "ended_at", "duration_s", "node") if k in task}
        if not_covered is not None:
            backup["in_job"] = vmid not in not_covered
        if guest.get("template") or vmid in excluded:
            backup["excluded"] = True
            backup["overdue"] = False
        elif known:
            late = "last_ok_at" not in backup or now - backup["last_ok_at"] > warn_days * DAY
            backup["overdue"] = late
            if late:
                overdue += 1
                if "last_ok_at" in backup:
                    backup["warning"] = f"no successful backup in {int((now - backup['last_ok_at']) // DAY)} days"
                else:
                    backup["warning"] = "no successful backup found"
        guest["backup"] = backup
    return overdue


@dataclass
class _Counters:
    at: float
    uptime: int | None
    values: dict[str, int]


# ------------------------------------------------------------------- collector


class Collector:
    """Holds what one cycle needs from the last: the clients, counters for rates, the slowly refreshed backup data."""

    def __init__(self, config: Mapping[str, Any], settings: ApiSettings, pbs_settings: ApiSettings | None = None) -> None:
        self.config = config
        self.settings = settings
        self.client = ProxmoxClient(settings)
        self.pbs_client = ProxmoxClient(pbs_settings) if pbs_settings else None
        self.pbs_datastores: tuple[str, ...] = tuple((config.get(CONF_PBS) or {}).get(CONF_DATASTORES) or ())
        self.node_filter: frozenset[str] = frozenset(config.get(CONF_NODES) or ())
        self.read_only = bool(config.get(CONF_READ_ONLY, False))
        self.warn_days = float(config.get(CONF_BACKUP_WARN_DAYS, DEFAULT_BACKUP_WARN_DAYS))
        self.backup_refresh = float(config.get(CONF_BACKUP_REFRESH, DEFAULT_BACKUP_REFRESH))
        self.backup_exclude = tuple(config.get(CONF_BACKUP_EXCLUDE) or ())
        self.task_limit = int(config.get(CONF_TASKS, DEFAULT_TASKS))
        self.deadline = settings.timeout * DEADLINE_FACTOR
        self.version: str | None = None
        self._counters: dict[int, _Counters] = {}
        # Backup data, permissions and PBS: read every backup_refresh seconds, not every cycle.
        self._slow_at: float | None = None
        self._slow: dict[str, Any] = {}
        self._slow_problems: list[dict[str, Any]] = []

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Check that the API answers and the token works: raises ProxmoxApiError otherwise."""
        self.client.deadline_in(None)
        version = self.client.get("version", what="read the Proxmox version")
        if isinstance(version, dict):
            self.version = str(version.get("version")) if version.get("version") is not None else None

    def close(self) -> None:
        self.client.close()
        if self.pbs_client is not None:
            self.pbs_client.close()

    def capabilities(self) -> list[str]:
        return [CAP_READ] if self.read_only else [CAP_READ, CAP_MANAGE]

    def _wanted(self, node: str | None) -> bool:
        return not self.node_filter or node in self.node_filter

    # --------------------------------------------------------------- collect

    def collect(self) -> dict[str, Any]:
        """One snapshot: {"state": {...}, "metrics": {...}}. Raises ProxmoxApiError only when nothing can be read."""
        now = time.time()
        client = self.client
        client.deadline_in(self.deadline)
        problems: list[dict[str, Any]] = []
        partial = False

        def problem(scope: str, err: ProxmoxApiError | str, severity: str = SEVERITY_WARN) -> None:
            kind = err.kind if isinstance(err, ProxmoxApiError) else ""
            problems.append({"scope": scope, "severity": severity, "kind": kind, "message": str(err)})

        try:
            status_items = client.get("cluster/status", what="read the cluster status")
        except ProxmoxApiError as err:
            if err.kind != KIND_PERMISSION:
                raise
            status_items = []
            problem("cluster", err)
        resources = client.get("cluster/resources", what="read the cluster's nodes, guests and storage")
        cluster, members = parse_cluster_status(status_items)
        res_nodes, guests, res_storages = parse_resources(resources)

        # ---- nodes
        names = sorted(set(members) | set(res_nodes), key=lambda n: (not members.get(n, {}).get("local"), n))
        nodes: list[dict[str, Any]] = []
        for name in names:
            if not self._wanted(name):
                continue
            res = res_nodes.get(name, {})
            member = members.get(name, {})
            online = member.get("online") if member else res.get("status") == "online"
            node: dict[str, Any] = {"name": name, "status": "online" if online else "offline"}
            _put(node, "ip", member.get("ip"))
            if member.get("local"):
                node["local"] = True
            if online:
                cpu = _num(res.get("cpu"))
                if cpu is not None:
                    node["cpu_percent"] = round(min(100.0, max(0.0, cpu * 100)), 1)
                _put(node, "cpu_count", _int(res.get("maxcpu")) or None)
                mem, maxmem = _num(res.get("mem")), _num(res.get("maxmem"))
                if maxmem:
                    node["mem_total_bytes"] = int(maxmem)
                    if mem is not None:
                        node["mem_used_bytes"] = int(mem)
                        node["mem_percent"] = _percent(mem, maxmem)
                _put(node, "uptime_s", _int(res.get("uptime")))
            nodes.append(node)
        if cluster.get("quorate") is False:
            problem("cluster", "the cluster has lost quorum: /etc/pve is read-only and Proxmox refuses guest actions and config changes until enough nodes are back", SEVERITY_BAD)
        for node in nodes:
            if node["status"] != "online":
                problem(f"node {node['name']}", f"node {node['name']} is offline; its guests show as unknown", SEVERITY_WARN)

        # ---- per node details
        node_storage: dict[str, dict[str, dict[str, Any]]] = {}
        tasks: list[dict[str, Any]] = []
        for node in nodes:
            name = node["name"]
            if node["status"] != "online" or not NODE_RE.match(name):
                continue
            if partial:
                break
            for what, reader in (
                ("status", lambda n=name: client.get(f"nodes/{n}/status", what=f"read the status of node {n}", node=n)),
                ("storage", lambda n=name: client.get(f"nodes/{n}/storage", what=f"read the storage of node {n}", node=n)),
                ("tasks", lambda n=name: client.get(f"nodes/{n}/tasks", what=f"read the tasks of node {n}", node=n, limit=self.task_limit, source="all")),
            ):
                try:
                    data = reader()
                except ProxmoxApiError as err:
                    if err.kind == KIND_DEADLINE:
                        partial = True
                        break
                    if err.kind in _NODE_GONE:
                        node["status"] = "unreachable"
                        problem(f"node {name}", err, SEVERITY_BAD)
                        break
                    problem(f"node {name}", err)
                    continue
                if what == "status":
                    details = parse_node_status(data)
                    # /cluster/resources is the fresher figure for CPU and memory; the status adds the rest.
                    for key, value in details.items():
                        node.setdefault(key, value)
                elif what == "storage":
                    node_storage[name] = parse_storage_status(data)
                else:
                    tasks.extend(parse_tasks(data))

        # ---- storages
        storages = self._storages(res_storages, node_storage, {n["name"]: n["status"] for n in nodes})

        # ---- guests
        guests = [g for g in guests if self._wanted(g.get("node"))]
        node_status = {n["name"]: n["status"] for n in nodes}
        for guest in guests:
            if node_status.get(guest.get("node")) in ("offline", "unreachable") and guest["status"] == "running":
                guest["status"] = "unknown"

        # ---- backups, permissions, PBS (slow refresh)
        if not partial and (self._slow_at is None or now - self._slow_at >= self.backup_refresh):
            partial = not self._refresh_slow(nodes, storages, now) or partial
        for storage in storages:
            storage.pop("_reader", None)
        slow = self._slow
        overdue = merge_backups(
            guests,
            volumes=slow.get("volumes", {}),
            tasks=slow.get("backup_tasks", []),
            pbs_times=slow.get("pbs_times", {}),
            not_covered=slow.get("not_covered"),
            warn_days=self.warn_days,
            exclude=self.backup_exclude,
            now=now,
            known=self._slow_at is not None,
        )
        problems.extend(self._slow_problems)
        if partial:
            problems.append(
                {
                    "scope": "api",
                    "severity": SEVERITY_WARN,
                    "kind": KIND_DEADLINE,
                    "message": f"the Proxmox API answered too slowly; this snapshot is incomplete (reading stops after {self.deadline:g} s — api_timeout × 2)",
                }
            )

        tasks.sort(key=lambda t: t.get("started_at") or 0, reverse=True)
        metrics = self._metrics(cluster, nodes, guests, storages, overdue, now)
        version = self.version
        cluster.update(
            nodes_total=len(nodes),
            nodes_online=sum(1 for n in nodes if n["status"] == "online"),
        )
        _put(cluster, "version", version)
        state: dict[str, Any] = {
            "api": {**self.settings.public(), "host": self.client.host, "read_only": self.read_only},
            "cluster": cluster,
            "nodes": nodes,
            "guests": guests,
            "storages": storages,
            "tasks": tasks[: self.task_limit],
            "backups": {
                "warn_days": self.warn_days,
                "overdue": overdue,
                "jobs": slow.get("jobs", []),
                "tasks": slow.get("backup_tasks", [])[: self.task_limit],
                "refreshed_at": int(self._slow_at) if self._slow_at else None,
            },
            "problems": problems,
            "partial": partial,
        }
        if self.node_filter:
            state["node_filter"] = sorted(self.node_filter)
        if self.pbs_client is not None:
            state["pbs"] = {
                "host": self.pbs_client.host,
                "port": self.pbs_client.settings.port,
                "datastores": slow.get("pbs_public", []),
            }
            if slow.get("pbs_error"):
                state["pbs"]["error"] = slow["pbs_error"]
        return {"state": state, "metrics": metrics}

    def _storages(
        self,
        res_storages: list[dict[str, Any]],
        node_storage: Mapping[str, Mapping[str, dict[str, Any]]],
        node_status: Mapping[str, str],
    ) -> list[dict[str, Any]]:
        storages: dict[str, dict[str, Any]] = {}
        for item in res_storages:
            node, name = item.get("node"), item["storage"]
            if node not in node_status:
                continue
            shared = bool(_int(item.get("shared")))
            key = name if shared else f"{node}/{name}"
            status = node_storage.get(node, {}).get(name, {})
            if shared and key in storages and (storages[key].get("total_bytes") or not status):
                continue
            entry: dict[str, Any] = {
                "id": key,
                "storage": name,
                "node": None if shared else node,
                "shared": shared,
                "type": item.get("plugintype") if isinstance(item.get("plugintype"), str) else status.get("type"),
                "content": sorted(c for c in str(item.get("content") or status.get("content") or "").split(",") if c),
            }
            if status:
                entry["active"] = bool(_int(status.get("active")))
                entry["enabled"] = bool(_int(status.get("enabled", 1)))
                total, used, avail = _num(status.get("total")), _num(status.get("used")), _num(status.get("avail"))
            else:
                entry["active"] = item.get("status") == "available"
                total, used, avail = _num(item.get("maxdisk")), _num(item.get("disk")), None
            if node_status.get(node) != "online":
                entry["active"] = False
            if total:
                entry["total_bytes"] = int(total)
                if used is not None:
                    entry["used_bytes"] = int(used)
                    entry["percent"] = _percent(used, total)
                if avail is not None:
                    entry["avail_bytes"] = int(avail)
            entry["_reader"] = node
            storages[key] = entry
        return sorted(storages.values(), key=lambda s: (s["node"] or "", s["storage"]))

    def _refresh_slow(self, nodes: list[dict[str, Any]], storages: list[dict[str, Any]], now: float) -> bool:
        """Read backup jobs, backup history, permissions and PBS; False when the deadline cut it short."""
        client = self.client
        problems: list[dict[str, Any]] = []
        slow: dict[str, Any] = {}

        def problem(scope: str, err: ProxmoxApiError, severity: str = SEVERITY_WARN) -> None:
            problems.append({"scope": scope, "severity": severity, "kind": err.kind, "message": str(err)})

        try:
            try:
                version = client.get("version", what="read the Proxmox version")
            except ProxmoxApiError as err:
                if err.kind == KIND_DEADLINE:
                    raise
            else:
                if isinstance(version, dict) and version.get("version") is not None:
                    self.version = str(version["version"])
            try:
                permissions = client.get("access/permissions", what="read the token's permissions")
            except ProxmoxApiError as err:
                if err.kind == KIND_DEADLINE:
                    raise
                problem("permissions", err, SEVERITY_INFO)
            else:
                problems.extend(missing_privileges(permissions, self.settings.token_id))
            try:
                slow["jobs"] = parse_backup_jobs(client.get("cluster/backup", what="read the backup jobs"))
            except ProxmoxApiError as err:
                if err.kind == KIND_DEADLINE:
                    raise
                problem("backups", err)
            try:
                slow["not_covered"] = parse_not_backed_up(
                    client.get("cluster/backup-info/not-backed-up", what="read which guests no backup job covers")
                )
            except ProxmoxApiError as err:
                if err.kind == KIND_DEADLINE:
                    raise
                problem("backups", err, SEVERITY_INFO)

            backup_tasks: list[dict[str, Any]] = []
            for node in nodes:
                name = node["name"]
                if node["status"] != "online" or not NODE_RE.match(name):
                    continue
                try:
                    items = client.get(
                        f"nodes/{name}/tasks",
                        what=f"read the backup tasks of node {name}",
                        node=name,
                        typefilter="vzdump",
                        limit=BACKUP_TASKS_PER_NODE,
                        source="all",
                    )
                except ProxmoxApiError as err:
                    if err.kind == KIND_DEADLINE:
                        raise
                    problem(f"node {name}", err)
                    continue
                backup_tasks.extend(t for t in parse_tasks(items) if t.get("type") == "vzdump")
            backup_tasks.sort(key=lambda t: t.get("started_at") or 0, reverse=True)
            slow["backup_tasks"] = backup_tasks

            volumes: dict[int, tuple[float, str]] = {}
            for storage in storages:
                reader = storage.get("_reader")
                if "backup" not in storage["content"] or not storage.get("active") or not reader:
                    continue
                if not NODE_RE.match(reader) or not STORAGE_RE.match(storage["storage"]):
                    continue
                try:
                    items = client.get(
                        f"nodes/{reader}/storage/{storage['storage']}/content",
                        what=f"list the backups on storage {storage['storage']}",
                        node=reader,
                        content="backup",
                    )
                except ProxmoxApiError as err:
                    if err.kind == KIND_DEADLINE:
                        raise
                    problem(f"storage {storage['id']}", err)
                    continue
                for vmid, when in parse_backup_volumes(items).items():
                    if vmid not in volumes or when > volumes[vmid][0]:
                        volumes[vmid] = (when, storage["id"])
            slow["volumes"] = volumes
        except ProxmoxApiError:
            # Out of time: keep what the last full refresh knew and try again next cycle.
            return False

        if self.pbs_client is not None:
            self.pbs_client.deadline_in(client.time_left())
            try:
                stores, pbs_problems = pbs.read_pbs(self.pbs_client, self.pbs_datastores)
            except ProxmoxApiError as err:
                if err.kind == KIND_DEADLINE:
                    return False
                slow["pbs_error"] = str(err)
                slow["pbs_public"] = self._slow.get("pbs_public", [])
                slow["pbs_times"] = self._slow.get("pbs_times", {})
                problem("PBS", err)
            else:
                problems.extend(pbs_problems)
                slow["pbs_public"] = pbs.public_datastores(stores)
                slow["pbs_times"] = pbs.guest_backups(stores)
        self._slow = slow
        self._slow_problems = problems
        self._slow_at = now
        return True

    def _metrics(
        self,
        cluster: Mapping[str, Any],
        nodes: list[dict[str, Any]],
        guests: list[dict[str, Any]],
        storages: list[dict[str, Any]],
        overdue: int,
        now: float,
    ) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if cluster.get("quorate") is not None:
            metrics["cluster_quorate"] = 1.0 if cluster["quorate"] else 0.0
        metrics["nodes_online"] = float(sum(1 for n in nodes if n["status"] == "online"))
        real = [g for g in guests if not g.get("template")]
        metrics["guests_total"] = float(len(real))
        metrics["guests_running"] = float(sum(1 for g in real if g["status"] == "running"))
        if self._slow_at is not None:
            metrics["backups_overdue"] = float(overdue)
        for node in nodes:
            label = node["name"]
            for key, metric in (
                ("cpu_percent", "cpu_percent"),
                ("mem_percent", "mem_used_percent"),
                ("mem_used_bytes", "mem_used_bytes"),
                ("rootfs_percent", "rootfs_used_percent"),
            ):
                if node.get(key) is not None:
                    metrics[f"{metric}[{label}]"] = float(node[key])
            if node.get("load"):
                metrics[f"load_1[{label}]"] = float(node["load"][0])
        seen: set[int] = set()
        for guest in guests:
            vmid = guest["vmid"]
            seen.add(vmid)
            if guest.get("template"):
                continue
            for key, metric in (
                ("cpu_percent", "guest_cpu_percent"),
                ("mem_used_bytes", "guest_mem_used_bytes"),
                ("mem_percent", "guest_mem_used_percent"),
            ):
                if guest.get(key) is not None:
                    metrics[f"{metric}[{vmid}]"] = float(guest[key])
            rates = self._rates(guest, now)
            for key, value in rates.items():
                guest[key] = value
                metrics[f"guest_{key}[{vmid}]"] = value
        for vmid in [v for v in self._counters if v not in seen]:
            del self._counters[vmid]
        for storage in storages:
            if storage.get("percent") is not None:
                metrics[f"storage_used_percent[{storage['id']}]"] = float(storage["percent"])
        return metrics

    def _rates(self, guest: dict[str, Any], now: float) -> dict[str, float]:
        """Bytes per second from the guest's counters since the last cycle; none after a restart or a reset."""
        keys = ("net_in_bytes", "net_out_bytes", "disk_read_bytes", "disk_write_bytes")
        values = {k: guest[k] for k in keys if isinstance(guest.get(k), int)}
        vmid = guest["vmid"]
        previous = self._counters.get(vmid)
        uptime = guest.get("uptime_s")
        self._counters[vmid] = _Counters(now, uptime, values)
        if previous is None or guest["status"] != "running":
            return {}
        seconds = now - previous.at
        if seconds <= 0 or (uptime is not None and previous.uptime is not None and uptime < previous.uptime):
            return {}
        rates: dict[str, float] = {}
        for key, value in values.items():
            old = previous.values.get(key)
            if old is None or value < old:
                continue
            rates[f"{key}_per_s"] = round((value - old) / seconds, 1)
        return rates
