"""A private, real Docker engine for tests: dockerd on its own socket and data root, with a busybox image built without a registry.

Use the ``docker_engine`` fixture (session-scoped): import it into a conftest
or test module with ``from docker_engine import docker_engine, docker_containers``.
The engine starts once per test session however many modules import the
fixture, and stops (containers removed, dockerd terminated, its files
deleted) when the last of them is finalised. Where dockerd cannot start
(not installed, not root, no overlay2 nor vfs) the tests skip, and under
``CI=true`` they fail: `.ci/run` installs docker.io and busybox-static.

Containers run with ``network_mode="none"``: there is no bridge here.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import need

IMAGE = "local/busybox:latest"
TEST_LABEL = "org.roost.test"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
# Applets the image links to busybox; each is one symlink in /bin.
APPLETS = ("sh", "sleep", "echo", "cat", "true", "false", "dd", "head", "yes", "kill", "wc", "ps", "env", "ls", "date", "seq")


@dataclass
class DockerEngine:
    """One running dockerd: its socket URL, an SDK client and helpers to run test containers."""

    root: Path
    url: str
    process: subprocess.Popen
    client: Any
    storage_driver: str
    image: str = IMAGE
    _names: list[str] = field(default_factory=list)

    @property
    def socket(self) -> str:
        return self.url[len("unix://") :]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.root / "dockerd.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def name(self, prefix: str = "t") -> str:
        """A fresh container name (tests run in one engine, so names must not collide)."""
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def run(self, command: list[str] | str | None = None, **kwargs: Any) -> Any:
        """Start a detached busybox container without a network; labelled so the cleanup finds it."""
        kwargs.setdefault("name", self.name())
        kwargs.setdefault("network_mode", "none")
        kwargs.setdefault("detach", True)
        labels = dict(kwargs.pop("labels", None) or {})
        labels[TEST_LABEL] = "1"
        if command is None:
            command = ["sleep", "3600"]
        container = self.client.containers.run(self.image, command, labels=labels, **kwargs)
        return container

    def run_many(self, count: int, prefix: str = "many", **kwargs: Any) -> list[Any]:
        """Start `count` idle containers at once (dockerd takes ~0.5 s per container when asked one by one)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda i: self.run(name=self.name(f"{prefix}{i}"), **kwargs), range(count)))

    def remove_all(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        def remove(container: Any) -> None:
            try:
                container.remove(force=True, v=True)
            except Exception:
                pass

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(remove, self.client.containers.list(all=True, filters={"label": TEST_LABEL})))
        for volume in self.client.volumes.list(filters={"label": TEST_LABEL}):
            try:
                volume.remove(force=True)
            except Exception:
                pass

    def wait_for(self, predicate: Any, timeout: float = 15.0, what: str = "a condition") -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.1)
        pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def _static_busybox() -> str | None:
    """A busybox that runs without a libc in the image (Debian's busybox-static), or None."""
    for candidate in ("/bin/busybox", shutil.which("busybox")):
        if not candidate or not Path(candidate).is_file():
            continue
        with open(candidate, "rb") as binary:
            head = binary.read(64 * 1024)
        if head[:4] == b"\x7fELF" and b"ld-linux" not in head and b"ld-musl" not in head:
            return candidate
    return None


def _busybox_tar() -> bytes:
    busybox = _static_busybox() or "/bin/busybox"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for folder in ("bin", "tmp", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
    return buf.getvalue()


def _ping(socket_path: str) -> bool:
    import http.client
    import socket as socketlib

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
            self.sock.settimeout(2)
            self.sock.connect(socket_path)

    try:
        conn = UnixConnection("localhost", timeout=2)
        conn.request("GET", "/_ping")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def _start_dockerd(root: Path, driver: str) -> subprocess.Popen | None:
    sock = root / "docker.sock"
    cmd = [
        shutil.which("dockerd") or "dockerd",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        f"--storage-driver={driver}",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'dockerd.pid'}",
        "-H",
        f"unix://{sock}",
    ]
    log = open(root / "dockerd.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        if sock.exists() and _ping(str(sock)):
            return proc
        time.sleep(0.1)
    _terminate(proc)
    return None


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _unmount_under(root: Path) -> None:
    """dockerd unmounts on a clean stop; after a kill, mounts under its root would stop rmtree."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    points = []
    for line in mounts:
        parts = line.split()
        if len(parts) > 1:
            point = parts[1].encode().decode("unicode_escape")
            if point.startswith(str(root) + "/"):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def start_engine() -> DockerEngine:
    """Start dockerd (overlay2, else vfs) and import the busybox image; need() decides what a failure means."""
    need(shutil.which("dockerd") is not None, "dockerd (apt-get install docker.io)")
    need(_static_busybox() is not None, "a static busybox (apt-get install busybox-static)")
    need(os.geteuid() == 0, "root, to start a private dockerd")
    try:
        import docker
    except ImportError:
        need(False, "the docker Python SDK (pip install 'docker>=7')")
    # A short path: unix socket paths are limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="roost-dockerd-", dir="/tmp"))
    proc = None
    driver = ""
    for driver in ("overlay2", "vfs"):
        proc = _start_dockerd(root, driver)
        if proc is not None:
            break
    if proc is None:
        log = (root / "dockerd.log").read_text(errors="replace")[-3000:] if (root / "dockerd.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        need(False, f"a private dockerd (it did not start with overlay2 nor vfs):\n{log}")
    url = f"unix://{root / 'docker.sock'}"
    client = docker.DockerClient(base_url=url, timeout=60, max_pool_size=16)
    client.api.import_image_from_data(_busybox_tar(), repository="local/busybox", tag="latest")
    return DockerEngine(root=root, url=url, process=proc, client=client, storage_driver=driver)


def stop_engine(engine: DockerEngine) -> None:
    try:
        for container in engine.client.containers.list(all=True):
            try:
                container.remove(force=True, v=True)
            except Exception:
                pass
        engine.client.close()
    except Exception:
        pass
    _terminate(engine.process)
    _unmount_under(engine.root)
    shutil.rmtree(engine.root, ignore_errors=True)


# One engine per session, shared by every module that imports the fixture (each import is its own FixtureDef).
_lock = threading.Lock()
_shared: dict[str, Any] = {"engine": None, "users": 0}


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A real dockerd for the whole session, with local/busybox:latest imported."""
    with _lock:
        if _shared["engine"] is None:
            _shared["engine"] = start_engine()
        _shared["users"] += 1
        engine = _shared["engine"]
    try:
        yield engine
    finally:
        with _lock:
            _shared["users"] -= 1
            if _shared["users"] == 0:
                _shared["engine"] = None
                stop_engine(engine)


@pytest.fixture
def docker_containers(docker_engine: DockerEngine) -> Iterator[DockerEngine]:
    """The engine, with every test container removed after the test."""
    try:
        yield docker_engine
    finally:
        docker_engine.remove_all()

