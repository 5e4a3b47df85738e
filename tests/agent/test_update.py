"""Self-update: a real update from version A to B of a built artefact, a B that crashes at start rolled back by the supervisor, and every refusal.

To keep CI time sane the update machinery runs with shiv zipapps built by
scripts/build-binary (about 10 s each; the same code as the PyInstaller
executable, which tests/test_install.py runs end to end). systemd cannot run
here, so a small loop does what Restart=always does: run the supervisor step,
then the agent, again whenever it exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import free_port, need, wait_for
from support_auth import seed_user
from support_binary import ROOT, arch, built_executable

from roost.agent import update as upd
from roost.core.config import load_hub_config
from roost.core.release import Release, ReleaseError, check_file, make_manifest, parse_manifest, sign_manifest, verify_manifest
from roost.core.signing import generate_operator_key, public_key_of, save_operator_key

SUPERVISE = ROOT / "deploy" / "supervise.sh"
PASSPHRASE = "release passphrase for tests"
ROOST_PY = [sys.executable, "-m", "roost.core.cli"]
NAME = f"roost-linux-{arch()}"


def release_of(version: str, payload: bytes, *, key=None, expires_in: int = 3600, issued: int | None = None) -> tuple[Release, str]:
    import hashlib

    now = int(time.time()) if issued is None else issued
    raw = make_manifest(name=NAME, version=version, sha256=hashlib.sha256(payload).hexdigest(), size=len(payload), issued=now, expires=now + expires_in)
    key = key or generate_operator_key()
    return parse_manifest(raw), sign_manifest(raw, key)


def make_layout(tmp_path: Path, versions: dict[str, bytes], current: str) -> upd.Layout:
    root = tmp_path / "opt-roost"
    for version, payload in versions.items():
        (root / version).mkdir(parents=True)
        (root / version / "roost").write_bytes(payload)
        os.chmod(root / version / "roost", 0o755)
    os.symlink(current, root / "current")
    data = tmp_path / "state"
    (data / "update").mkdir(parents=True)
    (data / "update" / "good").write_text(current + "\n")
    return upd.Layout(root=root, data_dir=data)


def supervise(layout: upd.Layout) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(SUPERVISE), "--root", str(layout.root), "--state", str(layout.data_dir)], capture_output=True, text=True, timeout=30)


# ---------------------------------------------------------------------------- the checks, on real files


def test_signature_expiry_downgrade_replay_and_tampering_are_refused(tmp_path):
    key = generate_operator_key()
    trusted = [public_key_of(key)]
    release, sig = release_of("0.2.0", b"new roost", key=key)
    assert verify_manifest(release.raw, sig, trusted).version == "0.2.0"
    with pytest.raises(ReleaseError, match="not signed by an operator key this host trusts"):
        verify_manifest(release.raw, sig, [public_key_of(generate_operator_key())])
    with pytest.raises(ReleaseError, match="not signed"):
        verify_manifest(release.raw.replace(b"0.2.0", b"0.3.0"), sig, trusted)
    old, old_sig = release_of("0.2.0", b"new roost", key=key, issued=int(time.time()) - 7200)
    with pytest.raises(ReleaseError, match="expired"):
        verify_manifest(old.raw, old_sig, trusted)
    with pytest.raises(upd.UpdateRefused, match="downgrade is refused; still running 0.3.0"):
        upd.check_offer(release, running="0.3.0", data_dir=tmp_path)
    with pytest.raises(upd.UpdateRefused, match="replay"):
        upd.check_offer(release, running="0.2.0", data_dir=tmp_path)
    upd.check_offer(release, running="0.1.9", data_dir=tmp_path)
    path = tmp_path / "download"
    path.write_bytes(b"new roosT")
    with pytest.raises(ReleaseError, match="tampered"):
        check_file(path, release)
    path.write_bytes(b"new")
    with pytest.raises(ReleaseError, match="truncated"):
        check_file(path, release)


def test_a_full_disk_while_staging_leaves_nothing_and_the_current_version_running(tmp_path):
    need(os.geteuid() == 0, "root (to mount a small tmpfs)")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], check=True, timeout=30)
    try:
        layout = make_layout(small, {"0.1.0": b"#!/bin/sh\n"}, "0.1.0")
        payload = os.urandom(1024 * 1024)
        release, _ = release_of("0.2.0", payload)
        download = tmp_path / "download"
        download.write_bytes(payload)
        with pytest.raises(upd.UpdateRefused, match="no space left .* to stage roost 0.2.0 .*still running"):
            upd.stage(layout, release, download)
        assert sorted(p.name for p in layout.root.iterdir()) == ["0.1.0", "current"]
        assert layout.current_version() == "0.1.0"
    finally:
        subprocess.run(["umount", str(small)], check=False, timeout=30)


def test_supervisor_rolls_back_an_update_that_never_commits_and_the_agent_backs_off(tmp_path):
    layout = make_layout(tmp_path, {"0.1.0": b"#!/bin/sh\n", "0.2.0": b"#!/bin/sh\nexit 3\n"}, "0.1.0")
    release, _ = release_of("0.2.0", b"#!/bin/sh\nexit 3\n")
    upd.switch(layout, release, health_window=60)
    assert layout.current_version() == "0.2.0"
    first = supervise(layout)  # the new version's first start: let it try
    assert first.returncode == 0 and layout.current_version() == "0.2.0", first.stderr
    second = supervise(layout)  # it exited without committing: back to the previous one
    assert second.returncode == 0 and layout.current_version() == "0.1.0"
    assert "switched back to 0.1.0" in second.stderr
    failure = upd.unreported_failure(layout.data_dir)
    assert failure["version"] == "0.2.0" and "rolled back to 0.1.0" in failure["reason"]
    assert not (layout.data_dir / "update" / "pending").exists()
    with pytest.raises(upd.UpdateRefused, match="rolled back here .* not trying it again for 2[34]"):
        upd.check_offer(release, running="0.1.0", data_dir=layout.data_dir)
    # After 24 hours it may be tried again.
    upd.check_offer(release, running="0.1.0", data_dir=layout.data_dir, now=time.time() + 24 * 3600 + 1)


def test_supervisor_rolls_back_past_the_deadline_and_repairs_a_broken_current_link(tmp_path):
    layout = make_layout(tmp_path, {"0.1.0": b"#!/bin/sh\n", "0.2.0": b"#!/bin/sh\n"}, "0.1.0")
    release, _ = release_of("0.2.0", b"#!/bin/sh\n")
    upd.switch(layout, release, health_window=60, now=time.time() - 3600)  # its deadline passed (a hung start the watchdog killed)
    assert supervise(layout).returncode == 0 and layout.current_version() == "0.1.0"
    assert "deadline passed" in upd.unreported_failure(layout.data_dir)["reason"]
    os.unlink(layout.root / "current")
    os.symlink("9.9.9", layout.root / "current")
    assert supervise(layout).returncode == 0 and layout.current_version() == "0.1.0"


def test_a_committed_update_is_left_alone_by_the_supervisor(tmp_path):
    layout = make_layout(tmp_path, {"0.1.0": b"#!/bin/sh\n", "0.2.0": b"#!/bin/sh\n"}, "0.1.0")
    release, _ = release_of("0.2.0", b"#!/bin/sh\n")
    upd.switch(layout, release, health_window=60)
    assert supervise(layout).returncode == 0
    upd.commit(layout.data_dir, "0.2.0")
    for _ in range(3):
        assert supervise(layout).returncode == 0 and layout.current_version() == "0.2.0"
    assert (layout.data_dir / "update" / "good").read_text().strip() == "0.2.0"


# ---------------------------------------------------------------------------- a real update of a running agent


@pytest.fixture(scope="module")
def zipapps(tmp_path_factory) -> dict[str, Path]:
    need(shutil.which("python3") is not None, "python3 on PATH (a zipapp's interpreter)")
    out = tmp_path_factory.mktemp("zipapps")
    built = {}
    for version in ("0.1.0", "0.1.1"):
        built[version] = built_executable(tool="shiv", version=version, out=out / version)
    return built


class Runner:
    """What systemd does for roost-agent.service (Restart=always, ExecStartPre=+supervise), as a shell loop."""

    def __init__(self, base: Path, layout: upd.Layout, hub_url: str, allow: tuple[str, ...] = ("host.*", "agent.update")) -> None:
        self.stopfile = base / "stop-runner"
        self.log = base / "runner.log"
        conf = base / "agent.toml"
        # The host owner allows updates from the hub (agent.update is not read-only).
        conf.write_text('[agent]\ninterval = "1s"\nheartbeat = "2s"\ndiscovery = false\n[agent.ceiling]\nmode = "execute"\nallow = ' + json.dumps(list(allow)) + "\n")
        script = (
            f'while [ ! -f "{self.stopfile}" ]; do\n'
            f'  sh "{SUPERVISE}" --root "{layout.root}" --state "{layout.data_dir}"\n'
            f'  "{layout.root}/current/roost" agent --config "{conf}" --data-dir "{layout.data_dir}" --hub "{hub_url}" &\n'
            f'  echo $! > "{base}/agent.pid"; wait $!; echo "agent exited $?"\n'
            '  sleep 0.5\n'
            'done\n'
        )
        self.proc = subprocess.Popen(["sh", "-c", script], stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        self.pidfile = base / "agent.pid"

    def restart_agent(self) -> None:
        os.kill(int(self.pidfile.read_text()), signal.SIGTERM)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.stopfile.touch()
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


def test_update_from_a_to_b_commits_and_a_b_that_crashes_at_start_rolls_back(zipapps, tmp_path):
    key = generate_operator_key()
    save_operator_key(tmp_path / "operator.pem", key, PASSPHRASE, scrypt_n=2**14)
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    port = free_port()
    hub_url = f"http://127.0.0.1:{port}"
    hub_dir = tmp_path / "hub"
    hub_conf = tmp_path / "hub.toml"
    hub_conf.write_text(f'[hub]\nbind = "127.0.0.1"\nport = {port}\ndiscovery = false\nwol_broadcast = "127.0.0.1"\noperator_keys = ["{public_key_of(key)}"]\n[agent]\ninterval = "1s"\n')
    api = asyncio.run(seed_user(load_hub_config(hub_conf, overrides={"hub": {"data_dir": str(hub_dir)}})))

    def roost(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ROOST_PY, *args], capture_output=True, text=True, timeout=120)

    def publish(path: Path, version: str) -> None:
        release = tmp_path / "releases" / version / NAME
        release.parent.mkdir(parents=True)
        shutil.copy2(path, release)
        signed = roost("release", "sign", str(release), "--key", str(tmp_path / "operator.pem"), "--passphrase-file", str(tmp_path / "pass"), "--release-version", version)
        assert signed.returncode == 0, signed.stderr
        added = roost("release", "add", str(release), "--data-dir", str(hub_dir), "--config", str(hub_conf))
        assert added.returncode == 0, added.stderr

    def call(method: str, path: str, body=None) -> dict:
        import urllib.request

        req = urllib.request.Request(f"{hub_url}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {api}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def node(node_id: str) -> dict:
        return call("GET", f"/api/v1/nodes/{node_id}")["node"]

    hub = subprocess.Popen([*ROOST_PY, "hub", "--data-dir", str(hub_dir), "--config", str(hub_conf)], stdout=open(tmp_path / "hub.log", "ab"), stderr=subprocess.STDOUT)
    runner = None
    try:
        wait_for(lambda: node_or_health(hub_url), 60, "the hub")
        token = call("POST", "/api/v1/join-tokens", {"grants": ["host.metrics.read", "agent.update"]})["token"]
        # Version A installed the way install.sh lays it out, enrolled with the hub (and its operator key pinned).
        layout = make_layout(tmp_path, {"0.1.0": zipapps["0.1.0"].read_bytes()}, "0.1.0")
        a = layout.root / "current" / "roost"
        enrolled = subprocess.run([str(a), "agent", "--enrol-only", "--hub", hub_url, "--join", token, "--data-dir", str(layout.data_dir)],
                                  capture_output=True, text=True, timeout=120)
        assert enrolled.returncode == 0, enrolled.stderr[-2000:]
        node_id = json.loads((layout.data_dir / "agent.json").read_text())["node_id"]
        runner = Runner(tmp_path, layout, hub_url)
        wait_for(lambda: node(node_id)["status"] == "online" and node(node_id)["agent_version"] == "0.1.0", 90, f"agent A online ({runner.text()[-1500:]})")

        # Nothing newer on the hub yet: refused, A keeps running.
        publish(zipapps["0.1.0"], "0.1.0")
        same = subprocess.run([str(a), "update", "--data-dir", str(layout.data_dir), "--no-restart"], capture_output=True, text=True, timeout=120)
        assert same.returncode == 1 and "already running" in same.stderr, same.stderr

        # B: downloaded, checked, staged beside A, switched; the restart brings B up, which commits itself.
        publish(zipapps["0.1.1"], "0.1.1")
        done = subprocess.run([str(a), "update", "--data-dir", str(layout.data_dir), "--no-restart"], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        assert layout.current_version() == "0.1.1" and (layout.root / "0.1.0" / "roost").exists()
        runner.restart_agent()
        wait_for(lambda: (layout.data_dir / "update" / "good").read_text().strip() == "0.1.1", 120, f"B to commit ({runner.text()[-2000:]})")
        wait_for(lambda: node(node_id)["agent_version"] == "0.1.1" and node(node_id)["status"] == "online", 60, "B reporting")

        # C crashes at start. The update comes from the hub this time ("update all outdated"): a job on B,
        # which switches and restarts; the supervisor (not C) switches back to B, which reports why and backs off.
        crash = tmp_path / "crash"
        crash.write_text("#!/bin/sh\necho 'roost 0.1.2: cannot start' >&2\nexit 3\n")
        crash.chmod(0o755)
        publish(crash, "0.1.2")
        b = layout.root / "current" / "roost"
        wait_for(lambda: [n for n in call("GET", "/api/v1/updates")["nodes"] if n["node_id"] == node_id and n["outdated"] and n["updatable"]], 60, "B listed as outdated")
        asked = call("POST", "/api/v1/updates", {})
        assert [j["node_id"] for j in asked["started"]] == [node_id], asked
        job_id = asked["started"][0]["id"]
        job = wait_for(lambda: (j := call("GET", f"/api/v1/jobs/{job_id}"))["state"] in ("succeeded", "failed") and j, 120, "the update job")
        assert job["state"] == "succeeded" and "switched from roost 0.1.1 to 0.1.2" in json.dumps(job), job
        wait_for(lambda: (layout.data_dir / "update" / "failed.reported").exists(), 120, f"the rollback to be reported ({runner.text()[-2000:]})")
        assert layout.current_version() == "0.1.1"
        assert "roost 0.1.2: cannot start" in runner.text() and "switched back to 0.1.1" in runner.text()
        wait_for(lambda: node(node_id)["status"] == "online" and node(node_id)["agent_version"] == "0.1.1", 60, "B back online")
        again = subprocess.run([str(b), "update", "--data-dir", str(layout.data_dir), "--no-restart"], capture_output=True, text=True, timeout=120)
        assert again.returncode == 1 and "rolled back here" in again.stderr and "still running 0.1.1" in again.stderr, again.stderr
        # The hub has the request and the job in its own audit log. (Why the update was rolled back reaches the
        # hub's pages where the ceiling allows agent.update.read: the health-window test below checks that.)
        hub_audit = roost("audit", "list", "--data-dir", str(hub_dir), "--config", str(hub_conf), "--limit", "500").stdout
        assert "update.requested" in hub_audit and "self_update.update" in hub_audit, hub_audit[-3000:]
        log = subprocess.run([str(b), "audit", "list", "--agent", "--data-dir", str(layout.data_dir), "--action", "agent.update"],
                             capture_output=True, text=True, timeout=120).stdout
        for action in ("agent.update.staged", "agent.update.committed", "agent.update.rolled_back", "agent.update.refused"):
            assert action in log, log
    finally:
        if runner is not None:
            runner.stop()
        hub.terminate()
        hub.wait(20)


def node_or_health(hub_url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"{hub_url}/api/v1/health", timeout=5) as resp:
        return resp.status == 200


class UpdateHub:
    """A real hub process that holds signed releases, stopped and started again at will (same data, same port)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.key = generate_operator_key()
        save_operator_key(tmp_path / "operator.pem", self.key, PASSPHRASE, scrypt_n=2**14)
        (tmp_path / "pass").write_text(PASSPHRASE + "\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tmp_path / "hub"
        self.conf = tmp_path / "hub.toml"
        self.conf.write_text(f'[hub]\nbind = "127.0.0.1"\nport = {self.port}\ndiscovery = false\nwol_broadcast = "127.0.0.1"\noperator_keys = ["{public_key_of(self.key)}"]\n[agent]\ninterval = "1s"\n')
        self.token = asyncio.run(seed_user(load_hub_config(self.conf, overrides={"hub": {"data_dir": str(self.dir)}})))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([*ROOST_PY, "hub", "--data-dir", str(self.dir), "--config", str(self.conf)], stdout=open(self.tmp / "hub.log", "ab"), stderr=subprocess.STDOUT)
        wait_for(lambda: node_or_health(self.url), 60, "the hub")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def publish(self, path: Path, version: str) -> None:
        release = self.tmp / "releases" / version / NAME
        release.parent.mkdir(parents=True)
        shutil.copy2(path, release)
        for args in (
            ("release", "sign", str(release), "--key", str(self.tmp / "operator.pem"), "--passphrase-file", str(self.tmp / "pass"), "--release-version", version),
            ("release", "add", str(release), "--data-dir", str(self.dir), "--config", str(self.conf)),
        ):
            done = subprocess.run([*ROOST_PY, *args], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr

    def get(self, path: str, *, html: bool = False):
        import urllib.request

        accept = "text/html" if html else "application/json"
        req = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"Bearer {self.token}", "Accept": accept})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read().decode()
        return body if html else json.loads(body)

    def post(self, path: str, body: dict) -> dict:
        import urllib.request

        req = urllib.request.Request(f"{self.url}{path}", method="POST", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


def test_an_update_that_fails_its_health_window_is_rolled_back_and_the_hub_page_says_why(zipapps, tmp_path):
    import html as html_lib

    hub = UpdateHub(tmp_path)
    hub.start()
    runner = None
    try:
        # agent.update lets the hub start updates; agent.update.read lets the node tell it why one was rolled back.
        token = hub.post("/api/v1/join-tokens", {"grants": ["host.metrics.read", "agent.update", "agent.update.read"]})["token"]
        layout = make_layout(tmp_path, {"0.1.0": zipapps["0.1.0"].read_bytes()}, "0.1.0")
        a = layout.root / "current" / "roost"
        enrolled = subprocess.run([str(a), "agent", "--enrol-only", "--hub", hub.url, "--join", token, "--data-dir", str(layout.data_dir)],
                                  capture_output=True, text=True, timeout=120)
        assert enrolled.returncode == 0, enrolled.stderr[-2000:]
        node_id = json.loads((layout.data_dir / "agent.json").read_text())["node_id"]
        # The host owner allows updates and lets the agent say how its updates went (a ceiling naming only agent.update
        # keeps the reason on the host: the Updates page then says so, see test_updates_views).
        runner = Runner(tmp_path, layout, hub.url, allow=("host.*", "agent.update", "agent.update.read"))
        wait_for(lambda: (n := hub.get(f"/api/v1/nodes/{node_id}")["node"])["status"] == "online" and n["agent_version"] == "0.1.0", 90,
                 f"agent A online ({runner.text()[-1500:]})")

        # B is a good build, staged and switched to; its health window is cut to 6 s (the file says how long) and the
        # hub goes away before B starts, so B never connects within it: B stops itself and the supervisor rolls back.
        hub.publish(zipapps["0.1.1"], "0.1.1")
        done = subprocess.run([str(a), "update", "--data-dir", str(layout.data_dir), "--no-restart"], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0 and layout.current_version() == "0.1.1", done.stderr
        pending = layout.data_dir / "update" / "pending"
        lines = [line for line in pending.read_text().splitlines() if not line.startswith(("window=", "deadline="))]
        pending.write_text("\n".join([*lines, "window=6", f"deadline={int(time.time()) + 600}"]) + "\n")
        hub.stop()
        runner.restart_agent()
        wait_for(lambda: (layout.data_dir / "update" / "failed").exists(), 120, f"the supervisor to roll back ({runner.text()[-2000:]})")
        assert layout.current_version() == "0.1.0"
        log = runner.text()
        assert "roost 0.1.1 stayed unhealthy (not connected to the hub) for its 6 s health window" in log, log[-3000:]
        assert "switched back to 0.1.0" in log

        # The hub comes back; A reconnects and tells it why, and the Updates page and the node's page show it.
        hub.start()
        wait_for(lambda: (layout.data_dir / "update" / "failed.reported").exists(), 120, f"A to report the rollback ({runner.text()[-2000:]})")
        row = wait_for(lambda: [n for n in hub.get("/api/v1/updates")["nodes"] if n["node_id"] == node_id and n["update_failed"]], 120,
                       "the rollback's reason to reach the hub")[0]
        failed = row["update_failed"]
        assert failed["version"] == "0.1.1" and "did not become healthy (connected and collecting) within its health window" in failed["reason"]
        assert "rolled back to 0.1.0" in failed["reason"] and failed["retry_after"] > failed["at"] > time.time() - 600
        for path in ("/updates", f"/nodes/{node_id}"):
            page = html_lib.unescape(hub.get(path, html=True))
            assert 'data-testid="update-rollback" data-version="0.1.1"' in page, path
            assert "Update to 0.1.1 rolled back" in page and failed["reason"] in page and "will not try 0.1.1 again before" in page, path
    finally:
        if runner is not None:
            runner.stop()
        hub.stop()
