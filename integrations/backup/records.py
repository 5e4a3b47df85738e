"""What this agent remembers of its repositories across restarts: last results per operation, and the retention rules an operator approved."""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path
from typing import Any

from roost.core.audit import canonical_json

# Sizes of snapshots this agent made, kept per repository (the newest ones).
MAX_SIZES = 500


class JsonFile:
    """One small JSON object on disk, written atomically (temp file, fsync, rename) under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = {}
            self._data = data if isinstance(data, dict) else {}
        return self._data

    def read(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._load())

    def update(self, change: Any) -> dict[str, Any]:
        """Apply ``change(data)`` (mutating it) and persist; the new data is returned."""
        with self._lock:
            data = copy.deepcopy(self._load())
            change(data)
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
            self._data = data
            return copy.deepcopy(data)


class Records(JsonFile):
    """Per repository: ``backup`` (the last run), ``last_success``, ``verify``, ``restore_test``, ``prune``, counters."""

    def repo(self, name: str) -> dict[str, Any]:
        return self.read().get(name, {})

    def record(self, name: str, operation: str, result: dict[str, Any]) -> None:
        def change(data: dict[str, Any]) -> None:
            entry = data.setdefault(name, {})
            entry[operation] = result
            if operation == "backup" and result.get("ok"):
                entry["last_success"] = result
                if result.get("snapshot_id") and result.get("bytes") is not None:
                    sizes = entry.setdefault("sizes", {})
                    sizes[result["snapshot_id"]] = result["bytes"]
                    for old in list(sizes)[:-MAX_SIZES]:
                        sizes.pop(old, None)
            if operation == "verify" and result.get("ok"):
                entry["last_verified"] = result
            if operation == "verify" and result.get("read_data"):
                entry["last_read_data"] = result
            if operation == "restore_test" and result.get("ok"):
                entry["last_restore_test_ok"] = result

        self.update(change)

    def next_subset(self, name: str, parts: int) -> str:
        """The next n/N of restic's --read-data-subset for this repository: 1/N, 2/N, ... N/N, then 1/N again."""
        holder: dict[str, int] = {}

        def change(data: dict[str, Any]) -> None:
            entry = data.setdefault(name, {})
            n = int(entry.get("subset_next", 1))
            if not 1 <= n <= parts:
                n = 1
            holder["n"] = n
            entry["subset_next"] = n % parts + 1

        self.update(change)
        return f"{holder['n']}/{parts}"


def rule_key(rule: dict[str, Any]) -> str:
    """The exact text a retention rule is compared by: canonical JSON of its non-zero keep_* counts."""
    return canonical_json({k: int(v) for k, v in sorted(rule.items()) if v})


class Approvals(JsonFile):
    """Retention rules an operator signed for one repository of this node (agent-local: the hub can neither add nor change one)."""

    def approve(self, repository: str, rule: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
        entry = {
            "rule": rule_key(rule),
            "key": envelope.get("key"),
            "nonce": envelope.get("nonce"),
            "signed_at": envelope.get("issued_at"),
        }
        self.update(lambda data: data.__setitem__(repository, entry))
        return entry

    def revoke(self, repository: str) -> bool:
        found = {"hit": False}

        def change(data: dict[str, Any]) -> None:
            found["hit"] = data.pop(repository, None) is not None

        self.update(change)
        return found["hit"]

    def approved(self, repository: str) -> dict[str, Any] | None:
        return self.read().get(repository)
