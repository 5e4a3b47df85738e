"""Scratch space for restore tests: made by this agent, known to it alone, and the only thing its cleanup removes.

The provenance is agent-internal: each scratch directory is created here with
``mkdtemp`` (mode 0700), holds a mark file with a random token, and is written
to a ledger in the agent's data dir with that token. Nothing the hub sends
names a scratch path (the restore-test action has no path parameter), and
``remove`` refuses any directory that is not in the ledger with a matching
mark, so neither the hub nor a changed config can turn a real directory into
"scratch" and have it deleted.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

from .const import SCRATCH_MARK


class ScratchRefused(Exception):
    """Cleanup was asked to remove something this agent did not create as scratch."""


class ScratchArea:
    def __init__(self, root: Path, ledger: Path) -> None:
        self.root = Path(root)
        self.ledger = Path(ledger)
        self._lock = threading.Lock()

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.ledger.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, entries: dict[str, str]) -> None:
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.ledger.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump(entries, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.ledger)

    def create(self) -> Path:
        """A fresh, empty scratch directory, recorded before anything is restored into it."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = secrets.token_hex(16)
        with self._lock:
            path = Path(tempfile.mkdtemp(prefix=f"restore-test-{int(time.time())}-", dir=self.root)).resolve()
            (path / SCRATCH_MARK).write_text(token)
            entries = self._read()
            entries[str(path)] = token
            self._write(entries)
        return path

    def is_scratch(self, path: Path | str) -> bool:
        resolved = Path(path).resolve()
        token = self._read().get(str(resolved))
        if not token or Path(path).is_symlink():
            return False
        try:
            return secrets.compare_digest((resolved / SCRATCH_MARK).read_text(), token)
        except OSError:
            return False

    def remove(self, path: Path | str) -> None:
        """Delete one scratch directory this agent made; ScratchRefused for anything else."""
        if not self.is_scratch(path):
            raise ScratchRefused(f"{path} is not a scratch directory this agent created; refusing to remove it")
        resolved = Path(path).resolve()
        shutil.rmtree(resolved)
        with self._lock:
            entries = self._read()
            entries.pop(str(resolved), None)
            self._write(entries)

    def leftovers(self) -> list[str]:
        """Scratch directories of restore tests that were cut short (an agent stopped mid-test)."""
        return [p for p in self._read() if Path(p).exists()]

    def sweep(self) -> int:
        """Remove every leftover scratch directory of this agent; entries whose directory is gone are forgotten."""
        removed = 0
        for path in list(self._read()):
            if Path(path).exists():
                try:
                    self.remove(path)
                    removed += 1
                except ScratchRefused:
                    continue
            else:
                with self._lock:
                    entries = self._read()
                    entries.pop(path, None)
                    self._write(entries)
        return removed
