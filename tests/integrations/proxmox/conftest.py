"""Fixtures for the proxmox tests: a fake Proxmox VE (fakepve) and a fake Proxmox Backup Server on loopback HTTPS.

The real proxmoxer talks to both over TLS, verifying a throwaway CA. fakepve
(AGPL, a test-only dependency) simulates PVE's API: guests, tasks with UPIDs,
API tokens, permissions and faults. Where it answers with placeholders or
does nothing, ``RecordedPve`` answers instead, from fixtures/*.json (see
fixtures/README.md): node status, backup jobs, and vzdump, which here writes a
backup volume and logs vzdump's progress lines as a real backup does. PBS has
no simulator; ``pbs_server`` serves its fixtures and checks the token header.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN_ID = "roost@pve!monitor"
# Distinctive, so a leak into state, metrics, messages or logs is easy to find.
SECRET = "5ecr3t-7a1c-4e2b-b0d5-91f3c8e6a2d4"
PBS_TOKEN_ID = "roost@pbs!pve"
PBS_SECRET = "pb5-5ecr3t-0c4f-4d6a-8e1b-2a7f9d3c5b80"
DAY = 86400
START_TIMEOUT = 30


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# ------------------------------------------------------------------ serving


class Served:
    """An aiohttp-based server started on its own event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"served-{id(self)}", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = START_TIMEOUT) -> Any:
        """Run a coroutine on the server's loop (the fake's own state lives there) and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def halt(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(START_TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> SimpleNamespace:
    """A self-signed certificate for 127.0.0.1, used by both fakes; ``ca`` is what the client verifies."""
    from fakepve.certs import make_cert

    cert, key, _ = make_cert(str(tmp_path_factory.mktemp("proxmox-pki")), hosts=("127.0.0.1",))
    return SimpleNamespace(cert=cert, key=key, ca=cert)


# -------------------------------------------------------------- fake PVE


def _recorded_pve_class() -> type:
    from fakepve import FakePve, PveError, TaskError

    class RecordedPve(FakePve):
        """fakepve, with recorded answers where it has placeholders, and a vzdump and qemu restore that do their work."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.node_status = load("node_status.json")["data"]
            # Per node overrides of the recorded status (a different uptime, no rootfs, ...).
            self.node_status_overrides: dict[str, dict[str, Any]] = {}
            self.backup_jobs = load("cluster_backup.json")["data"]
            self.vzdump_log = [line["t"] for line in load("vzdump_task_log.json")["data"] if line["t"] != "TASK OK"]
            # PVE seconds a vzdump takes (scaled by time_scale like every fake task).
            self.vzdump_secs = 0.0
            # Log each next progress line only once the task log was read since the last one, so a reader
            # slowed down by a busy host still sees every step (tests of progress set it).
            self.vzdump_paced_by_reads = False
            self.vzdump_requests: list[dict[str, Any]] = []
            # Per backup volume: {"config": {...}} restored over the archive's, or {"fail": "message"} failing the task.
            self.restore_faults: dict[str, dict[str, Any]] = {}
            self.restore_requests: list[dict[str, Any]] = []
            self.prune_requests: list[dict[str, Any]] = []
            self.served: Served | None = None

        def _routes_recorded(self) -> list[tuple[str, str, Callable[..., Any]]]:
            return [
                ("GET", "/nodes/{node}/status", self._rec_node_status),
                ("GET", "/cluster/backup", self._rec_backup_jobs),
                ("GET", "/cluster/backup-info/not-backed-up", self._rec_not_backed_up),
                ("POST", "/nodes/{node}/vzdump", self._rec_vzdump),
                ("GET", "/nodes/{node}/vzdump/extractconfig", self._rec_extractconfig),
                ("GET", "/nodes/{node}/storage/{storage}/prunebackups", self._rec_prune_list),
                ("DELETE", "/nodes/{node}/storage/{storage}/prunebackups", self._rec_prune),
            ]

        def backup_volume(self, volid: str) -> dict[str, Any] | None:
            sid, _, volname = str(volid).partition(":")
            volume = self.storages.get(sid, {}).get("volumes", {}).get(volname)
            return volume if volume is not None and volume.get("content") == "backup" else None

        async def _rec_extractconfig(self, values: dict[str, Any], user: str) -> str:
            """GET /nodes/{node}/vzdump/extractconfig: the guest config stored in the archive, as PVE's config file text."""
            volid = str(values["volume"])
            sid = volid.partition(":")[0]
            self.require(user, f"/storage/{sid}", "Datastore.Audit")
            volume = self.backup_volume(volid)
            if volume is None:
                raise PveError(500, f"volume '{volid}' does not exist")
            if volume.get("config") is None:
                raise PveError(500, f"unable to extract configuration for backup format '{volume.get('format')}'")
            return "".join(f"{key}: {value}\n" for key, value in sorted(volume["config"].items()) if key != "lock")

        def restored_config(self, volid: str, vmid: int, storage: str | None, unique: bool) -> dict[str, Any]:
            """What qmrestore/pct restore writes: the archive's config, disks allocated anew for the new id, MACs fresh when unique."""
            volume = self.backup_volume(volid) or {}
            config = copy.deepcopy(volume.get("config") or {})
            config.pop("lock", None)
            index = 0
            for key in sorted(config):
                value = str(config[key])
                if re.fullmatch(r"(scsi|virtio|sata|ide)\d+|efidisk0|tpmstate0|rootfs|mp\d+", key) and "media=cdrom" not in value:
                    volume_part, _, options = value.partition(",")
                    source_store = volume_part.split(":", 1)[0]
                    config[key] = f"{storage or source_store}:vm-{vmid}-disk-{index}" + (f",{options}" if options else "")
                    index += 1
                elif unique and re.fullmatch(r"net\d+", key):
                    config[key] = re.sub(r"([=,]|^)([0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5})", lambda m: m.group(1) + "BC:24:11:%02X:%02X:%02X" % tuple(secrets.token_bytes(3)), value)
            # A damaged archive restores something else than it claims (tests set restore_faults[volid]).
            fault = self.restore_faults.get(volid, {})
            config.update(fault.get("config", {}))
            return config

        def _prune_marks(self, values: dict[str, Any]) -> list[dict[str, Any]]:
            """PVE's prune_mark_backup_group: each keep-* option keeps the newest backup of each of its periods,
            in the order last, hourly, daily, weekly, monthly, yearly; protected ones stay; the rest is removed."""
            sid = values["storage"]
            store = self.storages.get(sid)
            if store is None:
                raise PveError(500, f"storage '{sid}' does not exist")
            rule = dict(part.split("=", 1) for part in str(values.get("prune-backups") or "").split(",") if "=" in part)
            vmid = int(values["vmid"]) if values.get("vmid") else None
            kind = values.get("type")
            entries = []
            for volname, vol_ in (store.get("volumes") or {}).items():
                if vol_.get("content") != "backup" or (vmid is not None and vol_.get("vmid") != vmid):
                    continue
                vtype = "qemu" if "-qemu-" in volname else "lxc"
                if kind and vtype != kind:
                    continue
                entries.append({"volid": f"{sid}:{volname}", "ctime": int(vol_["ctime"]), "vmid": vol_.get("vmid"), "type": vtype,
                                "mark": "protected" if vol_.get("protected") else None})
            entries.sort(key=lambda e: -e["ctime"])
            periods = (("keep-last", lambda t: t), ("keep-hourly", "%Y-%m-%d %H"), ("keep-daily", "%Y-%m-%d"), ("keep-weekly", "%G-%V"),
                       ("keep-monthly", "%Y-%m"), ("keep-yearly", "%Y"))
            for option, period in periods:
                count = int(rule.get(option) or 0)
                if not count:
                    continue
                of = period if callable(period) else (lambda t, f=period: time.strftime(f, time.gmtime(t)))
                already = {of(e["ctime"]) for e in entries if e["mark"] == "keep"}
                new: set[Any] = set()
                for e in entries:
                    pid = of(e["ctime"])
                    if e["mark"] is not None or pid in already:
                        continue
                    if pid not in new:
                        if len(new) >= count:
                            break
                        new.add(pid)
                        e["mark"] = "keep"
                    else:
                        e["mark"] = "remove"
            for e in entries:
                e["mark"] = e["mark"] or "remove"
            self.prune_requests.append(dict(values))
            return entries

        async def _rec_prune_list(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
            return self._prune_marks(values)

        async def _rec_prune(self, values: dict[str, Any], user: str) -> str:
            marks = self._prune_marks(values)
            store = self.storages[values["storage"]]
            pve = self

            async def body() -> str:
                for e in marks:
                    if e["mark"] == "remove":
                        store["volumes"].pop(e["volid"].split(":", 1)[1], None)
                return "TASK OK"

            return await pve.task(values["node"], "prunebackups", values.get("vmid") or values["storage"], user, body, vm=None, lock=False)

        async def _rec_node_status(self, values: dict[str, Any], user: str) -> dict[str, Any]:
            status = copy.deepcopy(self.node_status)
            status.update(self.node_status_overrides.get(values["node"], {}))
            return status

        async def _rec_backup_jobs(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
            return copy.deepcopy(self.backup_jobs)

        def _covered(self) -> set[int]:
            ids = {g.vmid for g in self._guests()}
            covered: set[int] = set()
            for job in self.backup_jobs:
                if not job.get("enabled", 1):
                    continue
                if job.get("all"):
                    excluded = {int(v) for v in str(job.get("exclude", "")).split(",") if v.strip().isdigit()}
                    covered |= ids - excluded
                else:
                    covered |= {int(v) for v in str(job.get("vmid", "")).split(",") if v.strip().isdigit()}
            return covered

        async def _rec_not_backed_up(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
            covered = self._covered()
            return [
                {"vmid": g.vmid, "name": g.name, "type": "qemu" if g in self.vms else "lxc"}
                for g in sorted(self._guests(), key=lambda g: g.vmid)
                if g.vmid not in covered and not g.template
            ]

        async def _rec_vzdump(self, values: dict[str, Any], user: str) -> str:
            self.need_quorum()
            self.vzdump_requests.append(dict(values))
            vmid = int(str(values.get("vmid", "")).split(",")[0] or 0)
            guest = self.guest(vmid)
            if guest is None:
                raise PveError(500, f"unable to find VM '{vmid}'")
            sid = values.get("storage") or "local"
            store = self.storages.get(sid)
            if store is None:
                raise PveError(500, f"storage '{sid}' does not exist")
            if "backup" not in str(store.get("content", "")).split(","):
                raise PveError(500, f"could not get storage information for '{sid}': storage '{sid}' does not support backups")
            kind = "qemu" if guest in self.vms else "lxc"
            stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.gmtime())
            ext = "vma.zst" if kind == "qemu" else "tar.zst"
            volname = f"backup/vzdump-{kind}-{vmid}-{stamp}.{ext}"
            lines = [
                line.replace("VM 100", f"VM {vmid}").replace("vzdump 100", f"vzdump {vmid}")
                .replace("vzdump-qemu-100-2024_11_20-02_00_02.vma.zst", volname.split("/", 1)[1])
                .replace("--storage local", f"--storage {sid}").replace("(qemu)", f"({kind})")
                for line in self.vzdump_log
            ]
            pve = self

            async def body() -> str:
                # fakepve's task() logged the task before running its body: the newest running vzdump of this guest.
                log = next(t for t in reversed(pve.tasklog) if t["type"] == "vzdump" and t["id"] == str(vmid) and t["status"] == "running")["log"]
                guest.lock = "backup"
                if kind == "qemu":
                    guest.config["lock"] = "backup"
                try:
                    rest = lines[1:-1]

                    def log_reads() -> int:
                        return sum(1 for m, p, _ in pve.requests if m == "GET" and "/tasks/UPID:" in p and p.endswith("/log"))

                    for line in rest:
                        read = log_reads()
                        log.append(line)
                        await pve.pause(pve.vzdump_secs / len(rest))
                        deadline = time.monotonic() + 30
                        while pve.vzdump_paced_by_reads and log_reads() == read and time.monotonic() < deadline:
                            await asyncio.sleep(0.005)
                finally:
                    guest.lock = None
                    if kind == "qemu":
                        guest.config.pop("lock", None)
                store.setdefault("volumes", {})[volname] = {
                    "content": "backup", "format": ext, "size": 3_447_000_000, "ctime": int(time.time()),
                    "vmid": vmid, "config": copy.deepcopy(guest.config),
                }
                return lines[-1]

            return await self.task(guest.node, "vzdump", vmid, user, body, vm=None, lock=False, log=[lines[0]])

        async def _qm_create(self, v: dict[str, Any], user: str) -> str:
            """POST /nodes/{node}/qemu: fakepve refuses archive= (restore); this restores the config a vzdump saved."""
            if not v.get("archive"):
                return await super()._qm_create(v, user)
            self.need_quorum()
            node, vmid, archive = v["node"], int(v["vmid"]), str(v["archive"])
            sid, _, volname = archive.partition(":")
            volume = self.storages.get(sid, {}).get("volumes", {}).get(volname)
            if volume is None or volume.get("content") != "backup":
                raise PveError(500, f"unable to restore VM {vmid} - volume '{archive}' does not exist")
            existing = self.vm(vmid)
            if existing is not None and not v.get("force"):
                raise PveError(500, f"unable to restore VM {vmid} - VM {vmid} already exists on node '{existing.node}'")
            if existing is not None and existing.status == "running":
                raise PveError(500, f"unable to restore VM {vmid} - VM is running")
            self.restore_requests.append(dict(v))
            target = existing or self.add_vm(vmid, f"VM {vmid}", node=node)

            async def body() -> str:
                if "fail" in self.restore_faults.get(archive, {}):
                    if existing is None and target in self.vms:
                        self.vms.remove(target)
                    raise TaskError(f"unable to restore VM {vmid} - {self.restore_faults[archive]['fail']}")
                config = self.restored_config(archive, vmid, v.get("storage"), bool(v.get("unique")))
                target.config = config
                target.name = config.get("name") or f"VM {vmid}"
                target.snapshots = {}
                target.pending = {}
                if v.get("start"):
                    target.status = target.qmpstatus = "running"
                    target.started_at = time.time()
                return f"restore vma archive: zstd -q -d -c /mnt/pve/{sid}/dump/{volname.split('/', 1)[1]} | vma extract -v -r /var/tmp/vzdumptmp.fifo - /var/tmp/vzdumptmp"

            return await self.task(node, "qmrestore", vmid, user, body, vm=target)

        async def _lxc_create(self, user: str, v: dict[str, Any]) -> str:
            """pct restore of a backup vzdump wrote: the archive's config comes back (fakepve builds one from the parameters)."""
            archive = str(v.get("ostemplate") or "")
            volume = self.backup_volume(archive) if v.get("restore") else None
            if volume is None or volume.get("config") is None or self.ct(int(v["vmid"])) is not None:
                return await super()._lxc_create(user, v)
            self.need_quorum()
            node, vmid = v["node"], int(v["vmid"])
            self._check_vmid_unused(vmid)
            self.restore_requests.append(dict(v))
            ct = self.add_ct(vmid, f"CT{vmid}", node=node, status="stopped")

            async def body() -> str:
                if "fail" in self.restore_faults.get(archive, {}):
                    self._drop(ct)
                    raise TaskError(f"unable to restore CT {vmid} - {self.restore_faults[archive]['fail']}")
                ct.config = self.restored_config(archive, vmid, v.get("storage"), bool(v.get("unique")))
                return f"extracting archive '/mnt/pve/{archive.partition(':')[0]}/dump/{archive.split('/', 1)[1]}'"

            return await self.task(node, "vzrestore", vmid, user, body, vm=ct)

    RecordedPve.PveError = PveError  # type: ignore[attr-defined]
    RecordedPve.TaskError = TaskError  # type: ignore[attr-defined]
    return RecordedPve


def seed(pve: Any) -> None:
    """A small homelab cluster: two nodes, three VMs, a template, a container, a shared NAS storage with backups."""
    now = int(time.time())
    pve.cluster_name = "homelab"
    pve.apitokens[TOKEN_ID] = SECRET
    pve.add_node("pve1")
    pve.add_node("pve2")
    web = pve.add_vm(
        100, "web", node="pve1", status="running",
        config={"scsi0": "local-lvm:vm-100-disk-0,size=32G", "memory": 4096, "cores": 2, "tags": "prod;web",
                "net0": "virtio=BC:24:11:5E:7A:01,bridge=vmbr0"},
    )
    web.stats = {"cpu": 0.153, "mem": 1_610_612_736, "netin": 5_000_000, "netout": 1_000_000, "diskread": 2_000_000, "diskwrite": 3_000_000}
    web.started_at = time.time() - 3 * DAY
    pve.add_vm(101, "db", node="pve1", status="stopped", config={"scsi0": "local-lvm:vm-101-disk-0,size=64G", "memory": 8192})
    build = pve.add_vm(102, "build", node="pve2", status="running", config={"scsi0": "local-lvm:vm-102-disk-0,size=16G", "memory": 2048})
    build.ha_state = "started"
    pve.add_vm(9000, "debian-template", node="pve1", status="stopped", template=True,
               config={"scsi0": "local-lvm:base-9000-disk-0,size=8G"})
    dns = pve.add_ct(200, "dns", node="pve1", status="running")
    dns.stats = {"cpu": 0.01, "mem": 134_217_728, "disk": 1_073_741_824}
    pve.storages["nas"] = {
        "type": "nfs", "active": 1, "content": "backup,iso", "files": set(), "shared": 1, "server": "192.0.2.50",
        "export": "/srv/backups", "path": "/mnt/pve/nas", "total": 4 * 1024**4,
        "volumes": {
            "backup/vzdump-qemu-100-2024_11_18-02_00_02.vma.zst": {
                "content": "backup", "format": "vma.zst", "size": 3_400_000_000, "ctime": now - 2 * DAY, "vmid": 100},
            "backup/vzdump-lxc-200-2024_11_01-02_00_02.tar.zst": {
                "content": "backup", "format": "tar.zst", "size": 420_000_000, "ctime": now - 20 * DAY, "vmid": 200},
        },
    }
    pve.storages["local"]["volumes"] = {
        "backup/vzdump-lxc-200-2024_11_10-02_00_02.tar.zst": {
            "content": "backup", "format": "tar.zst", "size": 410_000_000, "ctime": now - 10 * DAY, "vmid": 200},
    }


@pytest.fixture
def pve(pki) -> Iterator[Any]:
    """A started RecordedPve with the seeded cluster; time_scale 0 (every task ends before its POST returns)."""
    cls = _recorded_pve_class()
    fake = cls(user="root@pam", password="secret", host="127.0.0.1", port=0)
    fake.time_scale = 0
    seed(fake)
    served = Served()
    fake.served = served
    try:
        served.run(fake.start(pki.cert, pki.key))
    except BaseException:
        served.halt()
        raise
    try:
        yield fake
    finally:
        try:
            served.run(fake.stop())
        finally:
            served.halt()


@pytest.fixture
def config(pve, pki) -> dict[str, Any]:
    """The integration's validated config pointing at the fake, as the agent would pass it."""
    from roost.integrations.proxmox import CONFIG_SCHEMA

    return CONFIG_SCHEMA(
        {
            "host": "127.0.0.1",
            "port": pve.port,
            "token_id": TOKEN_ID,
            "token_secret": SECRET,
            "ca_file": pki.ca,
            "api_timeout": 2.0,
        }
    )


# -------------------------------------------------------------- fake PBS


@pytest.fixture
def pbs_server(pki) -> Iterator[SimpleNamespace]:
    """A Proxmox Backup Server API on loopback HTTPS answering from the recorded PBS fixtures."""
    import ssl

    from aiohttp import web

    state = SimpleNamespace(requests=[], port=0, fail=None, prunes=[])
    expected = f"PBSAPIToken={PBS_TOKEN_ID}:{PBS_SECRET}"

    async def answer(request: web.Request) -> web.Response:
        state.requests.append(request.path)
        if request.headers.get("Authorization") != expected:
            return web.json_response({"data": None, "message": "authentication failed - invalid credentials\n"}, status=401, reason="authentication failed - invalid credentials")
        if state.fail and request.path.endswith(state.fail[0]):
            return web.json_response({"data": None}, status=state.fail[1], reason=state.fail[2])
        path = request.path.removeprefix("/api2/json")
        if path == "/version":
            return web.json_response(load("pbs_version.json"))
        if path == "/status/datastore-usage":
            return web.json_response(load("pbs_datastore_usage.json"))
        if path == "/admin/datastore/store1/groups":
            return web.json_response(load("pbs_groups_store1.json"))
        if path == "/admin/datastore/store1/snapshots":
            return web.json_response(load("pbs_snapshots_store1.json"))
        if path == "/admin/datastore/store1/gc":
            return web.json_response(load("pbs_gc_store1.json"))
        if path == "/admin/verify":
            return web.json_response(load("pbs_verify_jobs.json"))
        if path == "/admin/prune":
            return web.json_response(load("pbs_prune_jobs.json"))
        if path == "/admin/datastore/store1/prune" and request.method == "POST":
            # PBS's answer: every snapshot of the group with keep true or false (here keep-last only, newest first).
            form = dict(await request.post()) or dict(request.query)
            state.prunes.append(form)
            group = [s for s in load("pbs_snapshots_store1.json")["data"] if s["backup-type"] == form.get("backup-type") and s["backup-id"] == form.get("backup-id")]
            group.sort(key=lambda s: s["backup-time"], reverse=True)
            keep = int(form.get("keep-last", 0) or 0)
            return web.json_response({"data": [
                {"backup-type": s["backup-type"], "backup-id": s["backup-id"], "backup-time": s["backup-time"], "keep": i < keep or s.get("protected", False), "protected": s.get("protected", False)}
                for i, s in enumerate(group)
            ]})
        if path.startswith("/admin/datastore/") and path.endswith("/groups"):
            return web.json_response({"data": None}, status=400, reason="datastore is not available")
        return web.json_response({"data": None}, status=501, reason="Method not implemented")

    served = Served()

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki.cert, pki.key)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        state.port = runner.addresses[0][1]
        return runner

    runner = served.run(start())
    try:
        yield state
    finally:
        try:
            served.run(runner.cleanup())
        finally:
            served.halt()


# ------------------------------------------------------------- contexts


class Progress:
    """Records what a handler reports through ctx.progress."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float | None]] = []

    async def __call__(self, message: str, percent: float | None = None) -> None:
        self.events.append((message, percent))

    @property
    def messages(self) -> list[str]:
        return [m for m, _ in self.events]

    @property
    def percents(self) -> list[float]:
        return [p for _, p in self.events if p is not None]


@pytest.fixture
def make_action_ctx(config) -> Callable[..., Any]:
    """ActionContext factory: make_action_ctx(envelope=..., read_only=..., node_id=...) -> (ctx, progress)."""
    from roost.core.actions import ActionContext

    def make(*, envelope: dict[str, Any] | None = None, read_only: bool = False, node_id: str = "n-pve", cfg: dict[str, Any] | None = None) -> tuple[Any, Progress]:
        progress = Progress()
        table = dict(cfg if cfg is not None else config)
        table["read_only"] = read_only
        ctx = ActionContext(
            domain="proxmox", job_id="j-test", node_id=node_id, config=table, data={}, progress=progress,
            logger=logging.getLogger("roost.integration.proxmox"), envelope=envelope,
        )
        return ctx, progress

    return make


@pytest.fixture
def specs() -> dict[str, Any]:
    """The integration's ActionSpecs by name."""
    from roost.integrations.proxmox.actions import build_actions

    return {spec.name: spec for spec in build_actions()}


@pytest.fixture
def run_action(specs, make_action_ctx) -> Callable[..., Any]:
    """Validate params with the action's schema and run its handler: await run_action(name, params, **ctx_options)."""

    async def run(name: str, params: dict[str, Any], **options: Any) -> tuple[Any, Progress]:
        spec = specs[name]
        clean = spec.schema(params)
        ctx, progress = make_action_ctx(**options)
        result = await spec.handler(ctx, clean)
        return result, progress

    return run


@pytest.fixture
def px() -> SimpleNamespace:
    """The constants and helpers tests need (conftest modules are not importable under importlib mode)."""
    return SimpleNamespace(TOKEN_ID=TOKEN_ID, SECRET=SECRET, PBS_TOKEN_ID=PBS_TOKEN_ID, PBS_SECRET=PBS_SECRET, DAY=DAY, load=load)


def envelope_for(name: str, params: dict[str, Any], *, node_id: str = "n-pve", **extra: Any) -> dict[str, Any]:
    return {"action": name, "params": dict(params), "node_id": node_id, "target": params.get("vmid"),
            "nonce": "n0nce", "expires_at": time.time() + 300, **extra}


@pytest.fixture
def envelope() -> Callable[..., dict[str, Any]]:
    """A verified-envelope factory, shaped as the agent's verifier hands it to handlers."""
    return envelope_for
