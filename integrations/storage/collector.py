"""The storage collector: SMART on its own slow schedule in the background, pools, arrays and targets on every cycle."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import btrfs, lvm, mdraid, smart, zfs
from .privileges import IN_CONTAINER, MISSING_RAWIO, has_rawio, in_container, permission_problem
from .targets import BlockIds, evaluate, parse_mountinfo

_LOGGER = logging.getLogger(__name__)
BASELINE_FILE = "smart_baselines.json"


class Collector:
    """One host's storage; blocking, so the core runs it in a worker thread."""

    def __init__(self, config: Mapping[str, Any], data_dir: Path, logger: logging.Logger = _LOGGER) -> None:
        self.config = dict(config)
        self.logger = logger
        self.data_dir = Path(data_dir)
        self.block_ids = BlockIds(self.config["blkid"])
        self._lock = threading.Lock()
        self._smart: dict[str, Any] = {"available": False, "reason": "first SMART check not finished yet", "devices": []}
        self._smart_cache: dict[str, dict[str, Any]] = {}  # device key -> last full reading
        self._smart_due = 0.0
        self._smart_thread: threading.Thread | None = None
        self._baselines = self._load_baselines()
        self.smart_runs = 0
        self._commands: dict[str, tuple[float, Any]] = {}  # zpool / lvs results and when they were taken

    # ------------------------------------------------------------ SMART

    def _load_baselines(self) -> dict[str, dict[str, int]]:
        try:
            raw = json.loads((self.data_dir / BASELINE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return {k: {n: int(v) for n, v in c.items() if isinstance(v, int)} for k, c in raw.items() if isinstance(c, dict)} if isinstance(raw, dict) else {}

    def _save_baselines(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.data_dir / (BASELINE_FILE + ".tmp")
            tmp.write_text(json.dumps(self._baselines))
            tmp.replace(self.data_dir / BASELINE_FILE)
        except OSError as err:
            self.logger.warning("storage: cannot keep SMART baselines in %s (%s); counters are judged from this start", self.data_dir, err.strerror)

    def refresh_smart(self) -> dict[str, Any]:
        """Scan and read every device (blocking; seconds per disk); the result is what the next cycles report."""
        started = time.time()
        smartctl, timeout = self.config["smartctl"], float(self.config["smart_timeout"])
        result: dict[str, Any] = {"available": True, "checked_at": started, "devices": []}
        try:
            devices = smart.scan(smartctl, timeout)
        except smart.SmartctlMissing as err:
            result.update(available=False, reason=str(err))
            return self._keep(result)
        except Exception as err:  # a hung or broken smartctl: said, not raised
            result.update(available=False, reason=f"smartctl --scan failed: {type(err).__name__}: {err}")
            return self._keep(result)
        if not devices:
            if not has_rawio():
                result.update(available=False, reason=IN_CONTAINER if in_container() else MISSING_RAWIO)
            else:
                result["reason"] = "smartctl found no SMART devices on this host" + (f" ({IN_CONTAINER})" if in_container() else "")
            return self._keep(result)
        denied = 0
        for dev in devices:
            known = self._known_key(dev["name"])
            try:
                status, doc = smart.read_device(dev, smartctl=smartctl, standby=known is not None, timeout=timeout)
            except Exception as err:
                result["devices"].append({"name": dev["name"], "protocol": dev["protocol"], "verdict": smart.UNKNOWN, "reasons": [{"severity": smart.UNKNOWN, "text": f"smartctl failed: {err}"}]})
                continue
            if known is not None and smart.in_low_power(status, doc):
                cached = dict(self._smart_cache[known])
                cached["standby"] = True
                result["devices"].append(cached)
                continue
            parsed = smart.parse_device(doc, status)
            if permission_problem(parsed["messages"]):
                denied += 1
            if not parsed.get("key"):
                parsed.update(verdict=smart.UNKNOWN, reasons=[{"severity": smart.UNKNOWN, "text": "; ".join(parsed["messages"]) or "smartctl gave no serial number or WWN"}])
                parsed["name"] = parsed["name"] or dev["name"]
                result["devices"].append(parsed)
                continue
            base = self._baselines.setdefault(parsed["key"], {})
            for name, value in parsed["counters"].items():
                if name not in base or value < base[name]:  # a counter that went down was reset: judge from there
                    base[name] = value
            parsed["verdict"], parsed["reasons"] = smart.judge(parsed, base)
            parsed["baseline"] = dict(base)
            parsed["checked_at"] = time.time()
            parsed["standby"] = False
            with self._lock:
                self._smart_cache[parsed["key"]] = parsed
            result["devices"].append(parsed)
        if denied and denied == len(devices):
            result.update(available=False, reason=MISSING_RAWIO)
        self._save_baselines()
        result["devices"].sort(key=lambda d: (smart.VERDICT_ORDER.get(d.get("verdict", ""), 9), d.get("key") or d.get("name", "")))
        return self._keep(result)

    def _known_key(self, name: str) -> str | None:
        with self._lock:
            return next((k for k, d in self._smart_cache.items() if d.get("name") == name), None)

    def _keep(self, result: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._smart = result
            self.smart_runs += 1
        return result

    def smart_due(self, now: float) -> None:
        """Start a background SMART run when its interval has passed and none is running."""
        with self._lock:
            if now < self._smart_due or (self._smart_thread is not None and self._smart_thread.is_alive()):
                return
            self._smart_due = now + float(self.config["smart_interval"])
            self._smart_thread = threading.Thread(target=self._smart_run, name="roost-storage-smart", daemon=True)
            self._smart_thread.start()

    def _smart_run(self) -> None:
        try:
            self.refresh_smart()
        except Exception:
            self.logger.exception("storage: SMART check failed")

    def smart_state(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._smart))

    # ------------------------------------------------------------ each cycle

    def _cached(self, name: str, now: float, run: Any) -> Any:
        """zpool and lvs at most once per command_interval; the cycles between reuse the result."""
        taken = self._commands.get(name)
        if taken is not None and now - taken[0] < float(self.config["command_interval"]):
            return taken[1]
        result = run()
        self._commands[name] = (now, result)
        return result

    def targets(self, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
        targets = list(manifest.get("targets") or [])
        if not targets:
            return []
        try:
            mounts = parse_mountinfo(Path(self.config["mountinfo"]).read_text())
        except OSError:
            mounts = []
        return evaluate(targets, mounts, self.block_ids, sys_dev_block=Path(self.config["sys_dev_block"]))

    def collect(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        now = time.time()
        if self.config["smart"]:
            self.smart_due(now)
        state: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        if self.config["smart"]:
            state["smart"] = self.smart_state()
            for dev in state["smart"].get("devices", []):
                key = dev.get("key")
                if not key:
                    continue
                for field, metric in (("temperature_c", "smart_temperature_celsius"), ("power_on_hours", "smart_power_on_hours"), ("data_written_bytes", "smart_data_written_bytes")):
                    if isinstance(dev.get(field), (int, float)):
                        metrics[f"{metric}[{key}]"] = float(dev[field])
                for name, value in (dev.get("counters") or {}).items():
                    metrics[f"smart_{name}[{key}]"] = float(value)
                nvme = dev.get("nvme") or {}
                if isinstance(nvme.get("percentage_used"), (int, float)):
                    metrics[f"smart_percentage_used[{key}]"] = float(nvme["percentage_used"])
                if isinstance(nvme.get("available_spare"), (int, float)):
                    metrics[f"smart_available_spare_percent[{key}]"] = float(nvme["available_spare"])
        timeout = float(self.config["command_timeout"])
        if self.config["zfs"]:
            pools = self._cached("zfs", now, lambda: zfs.collect(self.config["zpool"], Path(self.config["zfs_kstat"]), timeout))
            if pools is not None:
                state["zfs"] = pools
                for pool in pools.get("pools", []):
                    name = pool["name"]
                    for field in ("capacity_percent", "fragmentation_percent", "allocated_bytes", "size_bytes"):
                        if isinstance(pool.get(field), float):
                            metrics[f"zpool_{field}[{name}]"] = pool[field]
                    metrics[f"zpool_errors[{name}]"] = float(zfs.vdev_errors(pool.get("vdevs")))
                for field, value in (pools.get("arc") or {}).items():
                    metrics[f"zfs_{field}"] = value
        if self.config["mdraid"]:
            arrays = mdraid.collect(Path(self.config["mdstat"]), Path(self.config["sys_block"]))
            if arrays:
                state["mdraid"] = arrays
                for array in arrays:
                    metrics[f"md_degraded_disks[{array['name']}]"] = float(array.get("degraded_disks", 0))
                    if "mismatch_count" in array:
                        metrics[f"md_mismatch_count[{array['name']}]"] = float(array["mismatch_count"])
                    if "sync_percent" in array:
                        metrics[f"md_sync_percent[{array['name']}]"] = float(array["sync_percent"])
        if self.config["btrfs"]:
            filesystems = btrfs.collect(Path(self.config["sys_fs_btrfs"]))
            if filesystems:
                state["btrfs"] = filesystems
                for fs in filesystems:
                    errors = sum(sum((d.get("errors") or {}).values()) for d in fs["devices"])
                    metrics[f"btrfs_device_errors[{fs['label'] or fs['uuid']}]"] = float(errors)
        if self.config["lvm"]:
            thin = self._cached("lvm", now, lambda: lvm.collect(self.config["lvs"], timeout))
            if thin is not None and (thin.get("thin_pools") or thin.get("error")):
                state["lvm"] = thin
                for pool in thin.get("thin_pools", []):
                    for field in ("data_percent", "metadata_percent"):
                        if field in pool:
                            metrics[f"thin_{field}[{pool['name']}]"] = pool[field]
        targets = self.targets(manifest)
        state["targets"] = targets
        for target in targets:
            if "free_bytes" in target:
                metrics[f"target_free_bytes[{target['id']}]"] = float(target["free_bytes"])
        return {"state": state, "metrics": metrics}
