"""A real ext4 filesystem on a loop device, mounted under a temp dir (we are root; no udevd runs here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

from support import need


class LoopDisk:
    """truncate + losetup + mkfs.ext4 -L LABEL -U UUID; mount() / unmount() / detach()."""

    def __init__(self, root: Path, label: str = "roost-test") -> None:
        self.root = root
        self.image = root / "disk.img"
        self.mountpoint = root / "mnt"
        self.label = label
        self.uuid = str(uuid.uuid4())
        self.device = ""

    def make(self) -> LoopDisk:
        tools = all(shutil.which(t) for t in ("losetup", "mkfs.ext4", "mount", "umount", "blkid"))
        need(tools and os.geteuid() == 0, "root with losetup, mkfs.ext4, mount and blkid (loop devices)")
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as fh:
            fh.truncate(64 * 1024 * 1024)
        proc = subprocess.run(["losetup", "-f", "--show", str(self.image)], capture_output=True, text=True, check=False)
        need(proc.returncode == 0, f"a loop device (losetup: {proc.stderr.strip()})")
        self.device = proc.stdout.strip()
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", self.label, "-U", self.uuid, self.device], check=True, capture_output=True)
        return self

    def mount(self) -> None:
        if not self.device:
            proc = subprocess.run(["losetup", "-f", "--show", str(self.image)], capture_output=True, text=True, check=True)
            self.device = proc.stdout.strip()
        subprocess.run(["mount", self.device, str(self.mountpoint)], check=True, capture_output=True)

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.mountpoint)], check=False, capture_output=True)

    def detach(self) -> None:
        self.unmount()
        if self.device:
            subprocess.run(["losetup", "-d", self.device], check=False, capture_output=True)
            self.device = ""
