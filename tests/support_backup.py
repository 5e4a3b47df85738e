"""Real restic and borg repositories for tests, in temp dirs (caches and borg's base dir kept there too), a tree to back up, and corruption."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

from support import need

PASSWORD = "correct horse battery staple"


def make_tree(root: Path) -> Path:
    tree = root / "data"
    (tree / "docs").mkdir(parents=True)
    (tree / "photos" / "2026").mkdir(parents=True)
    (tree / "docs" / "notes.txt").write_text("the spare key is under the third flowerpot\n")
    (tree / "docs" / "todo.md").write_text("- test the restore\n" * 50)
    for n in range(6):
        (tree / "photos" / "2026" / f"img{n}.raw").write_bytes(os.urandom(96 * 1024 + n))
    (tree / "cache.tmp").write_text("not worth keeping")
    return tree


def make_repo(tmp_path: Path, kind: str) -> SimpleNamespace:
    need(shutil.which(kind) is not None, f"{kind} (Debian {'borgbackup' if kind == 'borg' else kind})")
    secret = tmp_path / f"{kind}.pass"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    location = tmp_path / f"{kind}-repo"
    env = {"RESTIC_CACHE_DIR": str(tmp_path / "restic-cache")} if kind == "restic" else {"BORG_BASE_DIR": str(tmp_path / "borg-base")}
    run_env = {**os.environ, **env}
    if kind == "restic":
        run_env.update(RESTIC_REPOSITORY=str(location), RESTIC_PASSWORD_FILE=str(secret))
        subprocess.run(["restic", "init", "-q"], env=run_env, check=True, capture_output=True)
    else:
        run_env.update(BORG_REPO=str(location), BORG_PASSPHRASE=PASSWORD)
        subprocess.run(["borg", "init", "-e", "repokey"], env=run_env, check=True, capture_output=True)
    tree = make_tree(tmp_path)
    table = {"name": f"{kind}-local", "kind": kind, "repository": str(location), "password_file": str(secret), "paths": [str(tree)], "excludes": ["*.tmp"], "env": env}
    return SimpleNamespace(kind=kind, location=location, secret=secret, tree=tree, table=table, env=run_env, name=table["name"])



def corrupt(repo: SimpleNamespace) -> Path:
    """Flip bytes in the middle of the largest pack (restic) or segment (borg) file."""
    data = repo.location / "data"
    files = [p for p in data.rglob("*") if p.is_file() and p.stat().st_size > 4096]
    victim = max(files, key=lambda p: p.stat().st_size)
    victim.chmod(0o600)
    raw = bytearray(victim.read_bytes())
    middle = len(raw) // 2
    for i in range(middle, middle + 2048):
        raw[i] ^= 0xFF
    victim.write_bytes(bytes(raw))
    return victim
