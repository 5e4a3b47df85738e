"""The single executable for tests: built once by scripts/build-binary into dist/, rebuilt only when its inputs change."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("core", "agent", "integrations", "frontend", "deploy")
SUFFIXES = {".py", ".json", ".html", ".css", ".js", ".svg", ".png", ".ico", ".service", ".sh", ".txt"}


def inputs_key(version: str = "") -> str:
    digest = hashlib.sha256(version.encode())
    files = [ROOT / "pyproject.toml", ROOT / "scripts" / "build-binary"]
    for top in SOURCES:
        files += sorted(p for p in (ROOT / top).rglob("*") if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def built_executable(*, tool: str = "pyinstaller", version: str = "", out: Path | None = None, timeout: float = 600) -> Path:
    """dist/roost-linux-<arch> (or .pyz) for this checkout, building it only when the sources changed since the last build."""
    out = out or ROOT / "dist"
    name = f"roost-linux-{arch()}" + (".pyz" if tool == "shiv" else "")
    target = out / name
    stamp = out / f"{name}.inputs"
    key = inputs_key(version)
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        return target
    cmd = [sys.executable, str(ROOT / "scripts" / "build-binary"), "--tool", tool, "--out", str(out)]
    if version:
        cmd += ["--version", version]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"scripts/build-binary failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    stamp.write_text(key + "\n")
    return target
