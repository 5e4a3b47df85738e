"""The repositories of this host and what is done to them: backups, the snapshot inventory, verification, restore tests and retention."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

from roost.core.actions import ActionError, ActionRefused

from .const import (
    APPROVALS_FILE,
    CONF_CHECK_SUBSETS,
    CONF_INVENTORY_REFRESH,
    CONF_RESTORE_MAX_BYTES,
    CONF_RESTORE_ROOTS,
    CONF_RESTORE_SAMPLE,
    KIND_RESTIC,
    MAX_SNAPSHOTS_IN_STATE,
    RECORDS_FILE,
    SCRATCH_LEDGER,
)
from .records import Approvals, Records, rule_key
from .scratch import ScratchArea
from .tools import Progress, Repository, Tool, ToolError, sha256_file, tool_for

_LOGGER = logging.getLogger(__name__)
# A listing in a collection gives up after this; the cached inventory is reported meanwhile.
LIST_TIMEOUT = 20.0
# A restore test compares each file on its own (restic: one dump each), so "whole" also means not too many files.
WHOLE_MAX_FILES = 1000


class Backups:
    def __init__(self, repos: list[Repository], base: Path, scratch_root: Path, config: dict[str, Any]) -> None:
        self.repos = {r.name: r for r in repos}
        self.base = Path(base)
        self.config = config
        self.records = Records(self.base / RECORDS_FILE)
        self.approvals = Approvals(self.base / APPROVALS_FILE)
        self.scratch = ScratchArea(scratch_root, self.base / SCRATCH_LEDGER)
        self.locks = {name: asyncio.Lock() for name in self.repos}
        self.inventory: dict[str, dict[str, Any]] = {}
        self._listed_at: dict[str, float] = {}
        self._dirty: set[str] = set(self.repos)

    def tool(self, name: str) -> Tool:
        repo = self.repos.get(name)
        if repo is None:
            raise ActionRefused(f"this host has no backup repository {name!r} (it has {', '.join(sorted(self.repos)) or 'none'})")
        return tool_for(repo, self.locks[name])

    # ------------------------------------------------------------- inventory

    async def refresh(self, name: str) -> dict[str, Any]:
        """List the repository's snapshots now (the caller holds its lock)."""
        tool = self.tool(name)
        entry: dict[str, Any] = {"listed_at": time.time()}
        try:
            snaps = await tool.snapshots()
            entry["snapshots"] = snaps
            entry["latest_size_bytes"] = await tool.latest_size() if snaps else None
        except ToolError as err:
            entry["error"] = str(err)
            entry["snapshots"] = self.inventory.get(name, {}).get("snapshots", [])
        self.inventory[name] = entry
        self._listed_at[name] = time.monotonic()
        self._dirty.discard(name)
        return entry

    async def collect(self) -> dict[str, Any]:
        every = float(self.config.get(CONF_INVENTORY_REFRESH, 0))
        for name, lock in self.locks.items():
            stale = name in self._dirty or (every and time.monotonic() - self._listed_at.get(name, -1e18) >= every)
            if stale and not lock.locked():
                async with lock:
                    try:
                        await asyncio.wait_for(self.refresh(name), LIST_TIMEOUT)
                    except asyncio.TimeoutError:
                        self.inventory.setdefault(name, {})["error"] = f"listing {name} took longer than {LIST_TIMEOUT:g} s"
        records = self.records.read()
        approvals = self.approvals.read()
        now = time.time()
        repos, metrics = [], {}
        for name, repo in self.repos.items():
            rec = records.get(name, {})
            inv = self.inventory.get(name, {})
            snaps = inv.get("snapshots", [])
            sizes = rec.get("sizes", {})
            verified = rec.get("last_verified", {})
            verify = rec.get("verify", {})
            shown = []
            for snap in snaps[:MAX_SNAPSHOTS_IN_STATE]:
                item = dict(snap)
                size = sizes.get(snap["id"]) or sizes.get(snap.get("short_id", ""))
                if size is None and snap is snaps[0]:
                    size = inv.get("latest_size_bytes")
                if size is not None:
                    item["size_bytes"] = size
                if verify and not verify.get("ok") and (snap.get("time") or 0) <= verify.get("at", 0):
                    item["verification"] = "failed"
                elif verified and (snap.get("time") or 0) <= verified.get("at", 0):
                    item["verification"] = "ok"
                else:
                    item["verification"] = "none"
                shown.append(item)
            latest = snaps[0] if snaps else None
            public = {
                **repo.public(),
                "snapshot_count": len(snaps),
                "snapshots": shown,
                "latest_at": latest.get("time") if latest else None,
                "latest_size_bytes": inv.get("latest_size_bytes"),
                "listed_at": inv.get("listed_at"),
                "busy": self.locks[name].locked(),
            }
            if inv.get("error"):
                public["error"] = inv["error"]
            for key in ("backup", "last_success", "verify", "last_verified", "last_read_data", "restore_test", "last_restore_test_ok", "prune"):
                if key in rec:
                    public[key] = rec[key]
            if name in approvals:
                public["approved_retention"] = {"rule": approvals[name]["rule"], "signed_at": approvals[name].get("signed_at")}
            repos.append(public)
            if latest and latest.get("time"):
                metrics[f"last_backup_age_seconds[{name}]"] = round(now - latest["time"], 1)
            metrics[f"snapshots[{name}]"] = len(snaps)
            if inv.get("latest_size_bytes") is not None:
                metrics[f"repository_size_bytes[{name}]"] = inv["latest_size_bytes"]
            if "backup" in rec:
                metrics[f"last_run_ok[{name}]"] = 1 if rec["backup"].get("ok") else 0
        return {"state": {"repositories": repos, "scratch_leftovers": len(self.scratch.leftovers())}, "metrics": metrics}

    # ------------------------------------------------------------- operations

    def _check_paths(self, repo: Repository, paths: list[str]) -> list[str]:
        paths = paths or list(repo.paths)
        if not paths:
            raise ActionRefused(f"repository {repo.name} has no configured paths and the request named none")
        for path in paths:
            if not path.startswith("/") or "/../" in path + "/":
                raise ActionRefused(f"backup path {path!r} must be absolute without '..'")
            if repo.paths and not any(path == root or path.startswith(root.rstrip("/") + "/") for root in repo.paths):
                raise ActionRefused(f"backup path {path} is outside what this host allows for {repo.name} ({', '.join(repo.paths)})")
        return paths

    async def backup(self, name: str, params: dict[str, Any], progress: Progress, job_id: str) -> dict[str, Any]:
        tool = self.tool(name)
        repo = tool.repo
        paths = self._check_paths(repo, params.get("paths") or [])
        excludes = list(repo.excludes) + list(params.get("excludes") or [])
        tags = list(params.get("tags") or [])
        started = time.time()
        async with tool.lock:
            await progress(f"backing up {', '.join(paths)} to {name}", 0.0)
            try:
                summary = await tool.backup(paths, excludes, tags, progress)
            except ToolError as err:
                self.records.record(name, "backup", {"ok": False, "at": started, "finished_at": time.time(), "error": str(err), "job_id": job_id, "policy": params.get("policy")})
                self._dirty.add(name)
                raise
            result = {"ok": True, "at": started, "finished_at": time.time(), "job_id": job_id, "policy": params.get("policy"), "paths": paths, **summary}
            # The listing first, so no report shows this run without its snapshot.
            await self.refresh(name)
            self.records.record(name, "backup", result)
        return {**result, "output": f"snapshot {summary['snapshot_id']}: {summary['files']} files, {summary['bytes']} bytes, {summary['bytes_added']} new"}

    async def list_snapshots(self, name: str) -> dict[str, Any]:
        tool = self.tool(name)
        async with tool.lock:
            entry = await self.refresh(name)
        if entry.get("error"):
            raise ActionError(entry["error"])
        return {"repository": name, "snapshots": entry["snapshots"], "latest_size_bytes": entry.get("latest_size_bytes")}

    async def verify(self, name: str, params: dict[str, Any], progress: Progress, job_id: str) -> dict[str, Any]:
        tool = self.tool(name)
        read_data = bool(params.get("read_data"))
        subset = None
        if tool.repo.kind == KIND_RESTIC and not read_data:
            subset = self.records.next_subset(name, int(self.config.get(CONF_CHECK_SUBSETS, 10)))
        started = time.time()
        async with tool.lock:
            await progress(f"checking {name}" + (f" (reading data subset {subset})" if subset else " (reading all data)" if read_data else ""), None)
            try:
                outcome = await tool.verify(subset=subset, verify_data=read_data)
            except ToolError as err:
                outcome = {"ok": False, "error": str(err), "output": err.output}
        result = {"at": started, "finished_at": time.time(), "job_id": job_id, "read_data": read_data, **outcome}
        if not outcome["ok"]:
            result.setdefault("error", f"{tool.repo.kind} check found problems in {name}")
        self.records.record(name, "verify", result)
        self._dirty.add(name)
        if not outcome["ok"]:
            raise ActionError(f"{result['error']}: {outcome.get('output', '')}")
        return {**result, "output": outcome.get("output", "")}

    async def restore_test(self, name: str, params: dict[str, Any], progress: Progress, job_id: str) -> dict[str, Any]:
        tool = self.tool(name)
        started = time.time()
        result: dict[str, Any] = {"at": started, "job_id": job_id, "ok": False, "files_checked": 0, "bytes_checked": 0, "mismatches": []}
        async with tool.lock:
            scratch: Path | None = None
            try:
                snaps = await tool.snapshots()
                snapshot = params.get("snapshot") or (snaps[0]["id"] if snaps else None)
                if snapshot is None:
                    raise ActionError(f"{name} has no snapshot to restore")
                if not any(snapshot in (s["id"], s.get("short_id"), s.get("name")) for s in snaps):
                    raise ActionError(f"{name} has no snapshot {snapshot}")
                snap = next(s for s in snaps if snapshot in (s["id"], s.get("short_id"), s.get("name")))
                ref = snap.get("name") or snap["id"]
                result["snapshot"] = snap["id"]
                entries = await tool.files(ref)
                if not entries:
                    raise ActionError(f"snapshot {snap['short_id']} of {name} holds no files to restore")
                total = sum(e["size"] for e in entries)
                limit = int(self.config.get(CONF_RESTORE_MAX_BYTES, 0))
                count = int(params.get("sample_files") or self.config.get(CONF_RESTORE_SAMPLE, 20))
                if total <= limit and len(entries) <= WHOLE_MAX_FILES:
                    sample, result["whole"] = entries, True
                else:
                    sample, result["whole"] = random.SystemRandom().sample(entries, min(count, len(entries))), False
                scratch = self.scratch.create()
                await progress(f"restoring {len(sample)} of {len(entries)} files of {snap['short_id']} into scratch", 10.0)
                try:
                    # A whole snapshot is restored as one (no file list on the command line).
                    await tool.extract(ref, [] if result["whole"] else [e["path"] for e in sample], scratch)
                except ToolError as err:
                    result["error"] = f"restore failed: {err}"
                for index, entry in enumerate(sample):
                    restored = tool.extracted_path(scratch, entry)
                    expected = None
                    try:
                        expected = await tool.expected_sha256(ref, entry)
                    except ToolError as err:
                        result["mismatches"].append({"path": entry["path"], "problem": f"cannot read it from the repository: {err.output or err}"})
                        continue
                    if not restored.is_file():
                        result["mismatches"].append({"path": entry["path"], "problem": "missing after restore"})
                        continue
                    actual = await asyncio.to_thread(sha256_file, restored)
                    size = restored.stat().st_size
                    if actual != expected or size != entry["size"]:
                        result["mismatches"].append({"path": entry["path"], "problem": "content differs", "expected_sha256": expected, "actual_sha256": actual, "expected_size": entry["size"], "actual_size": size})
                    else:
                        result["files_checked"] += 1
                        result["bytes_checked"] += size
                    if index % 10 == 9:
                        await progress(f"compared {index + 1} of {len(sample)} files", 10 + 90 * (index + 1) / len(sample))
                result["files_sampled"] = len(sample)
                result["files_in_snapshot"] = len(entries)
                result["ok"] = not result["mismatches"] and "error" not in result
                if not result["ok"] and "error" not in result:
                    result["error"] = f"{len(result['mismatches'])} of {len(sample)} files did not restore intact"
            except ToolError as err:
                result["error"] = str(err)
            except ActionError as err:
                result["error"] = str(err)
            finally:
                if scratch is not None:
                    self.scratch.remove(scratch)
                result["finished_at"] = time.time()
                result["duration_seconds"] = round(result["finished_at"] - started, 3)
                result["mismatches"] = result["mismatches"][:50]
                self.records.record(name, "restore_test", result)
        if not result["ok"]:
            raise ActionError(f"restore test of {name} failed: {result['error']}")
        return {**result, "output": f"restore test of {name}: {result['files_checked']} files, {result['bytes_checked']} bytes intact"}

    async def prune(self, name: str, rule: dict[str, Any], *, dry_run: bool, job_id: str, how: str) -> dict[str, Any]:
        tool = self.tool(name)
        async with tool.lock:
            snaps = {s["id"]: s for s in await tool.snapshots()}
            outcome = await tool.forget(rule, dry_run=dry_run)
            if not dry_run:
                await self.refresh(name)
        def view(ids: list[str]) -> list[dict[str, Any]]:
            return [{"id": i, "short_id": i[:8], "time": snaps.get(i, {}).get("time"), "name": snaps.get(i, {}).get("name")} for i in ids]
        result = {"repository": name, "dry_run": dry_run, "rule": rule_key(rule), "keep": view(outcome["keep"]), "remove": view(outcome["remove"]), "at": time.time(), "job_id": job_id, "authorised_by": how}
        if not dry_run:
            self.records.record(name, "prune", {k: v for k, v in result.items() if k not in ("keep", "remove")} | {"kept": len(outcome["keep"]), "removed": len(outcome["remove"])})
        verb = "would remove" if dry_run else "removed"
        return {**result, "output": f"{name}: keeps {len(outcome['keep'])}, {verb} {len(outcome['remove'])} snapshots"}

    async def restore(self, name: str, params: dict[str, Any], *, overwrite: bool, progress: Progress) -> dict[str, Any]:
        tool = self.tool(name)
        target = Path(params["target"])
        roots = [Path(r) for r in self.config.get(CONF_RESTORE_ROOTS) or []]
        if not roots:
            raise ActionRefused(
                "restores are off on this host: list the directories a restore may write into as integrations.backup.restore_roots in the agent's config"
            )
        resolved = Path(os.path.realpath(target))
        if not any(resolved == Path(os.path.realpath(r)) or Path(os.path.realpath(r)) in resolved.parents for r in roots):
            raise ActionRefused(f"{target} is outside the directories this host lets a restore write into ({', '.join(map(str, roots))})")
        if not overwrite and target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ActionRefused(f"{target} exists and is not empty: restoring there would overwrite it, which needs the signed backup.restore.overwrite")
        target.mkdir(parents=True, exist_ok=True)
        async with tool.lock:
            snaps = await tool.snapshots()
            snap = next((s for s in snaps if params["snapshot"] in (s["id"], s.get("short_id"), s.get("name"))), None)
            if snap is None:
                raise ActionError(f"{name} has no snapshot {params['snapshot']}")
            ref = snap.get("name") or snap["id"]
            include = list(params.get("include") or [])
            files = len(include) if include else len(await tool.files(ref))
            await progress(f"restoring {'the whole snapshot' if not include else f'{len(include)} paths'} of {snap['short_id']} to {target}", None)
            await tool.extract(ref, include, target)
        return {"repository": name, "snapshot": snap["id"], "target": str(target), "files": files, "output": f"restored {files} files to {target}"}

    def check_approved(self, name: str, rule: dict[str, Any]) -> dict[str, Any]:
        """The operator's standing approval for exactly this rule on this repository, or ActionRefused."""
        self.tool(name)
        approval = self.approvals.approved(name)
        if approval is None:
            raise ActionRefused(
                f"no signed retention rule for {name} on this host: sign one with backup.retention.approve "
                "(or sign this one run with backup.prune)"
            )
        if approval["rule"] != rule_key(rule):
            raise ActionRefused(f"the retention rule {rule_key(rule)} differs from the one the operator signed for {name} ({approval['rule']}); sign the new rule")
        return approval
