"""The hub as the source of its agents: /install.sh and /download/ without login, only signed releases, and the install line in the join-token answer."""

from __future__ import annotations

import hashlib
import subprocess
import time

from roost.core.hub.app import HUB_KEY
from roost.core.release import add_release, make_manifest, releases_dir, sign_manifest
from roost.core.signing import generate_operator_key, public_key_of

NAME = "roost-linux-x86_64"


def signed_release(tmp_path, key, payload: bytes = b"#!/bin/sh\necho roost 0.2.0\n", version: str = "0.2.0"):
    path = tmp_path / "upload" / NAME
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(payload)
    now = int(time.time())
    raw = make_manifest(name=NAME, version=version, sha256=hashlib.sha256(payload).hexdigest(), size=len(payload), issued=now, expires=now + 3600)
    path.with_name(NAME + ".manifest").write_bytes(raw)
    path.with_name(NAME + ".sig").write_text(sign_manifest(raw, key) + "\n")
    return path


async def test_install_script_and_signed_release_are_served_without_login(make_hub, tmp_path):
    key = generate_operator_key()
    anon = await make_hub(as_role=None, operator_keys=[public_key_of(key)])
    hub = anon.server.app[HUB_KEY]
    add_release(releases_dir(hub.config.data_dir), signed_release(tmp_path, key), [public_key_of(key)])

    resp = await anon.get("/install.sh")
    assert resp.status == 200 and resp.content_type == "text/x-shellscript"
    script = await resp.text()
    assert f"RELEASES={NAME}" in script and public_key_of(key) in script and "@" + "HUB_URL" not in script
    assert subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True, timeout=30).returncode == 0

    resp = await anon.get(f"/download/{NAME}")
    assert resp.status == 200 and resp.headers["X-Roost-Version"] == "0.2.0"
    body = await resp.read()
    assert resp.headers["X-Roost-SHA256"] == hashlib.sha256(body).hexdigest()
    manifest = await (await anon.get(f"/download/{NAME}.manifest")).read()
    assert b"version: 0.2.0\n" in manifest
    assert (await anon.get(f"/download/{NAME}.sig")).status == 200


async def test_downloads_refuse_unknown_names_and_missing_releases(anon_client):
    for path in ("/download/roost-linux-x86_64", "/download/..%2Froost.db", "/download/roost.db", "/download/roost-linux-x86_64.sha256"):
        resp = await anon_client.get(path)
        assert resp.status == 404, path
    resp = await anon_client.get("/download/roost-linux-aarch64")
    assert "roost release add" in await resp.text()
    # No release: the script still answers, and refuses by itself with the reason.
    script = await (await anon_client.get("/install.sh")).text()
    assert "RELEASES=''" in script and "holds no signed" in script


def test_a_release_not_signed_by_the_hubs_operator_key_is_not_added(tmp_path):
    key, other = generate_operator_key(), generate_operator_key()
    path = signed_release(tmp_path, other)
    import pytest

    from roost.core.release import ReleaseError

    with pytest.raises(ReleaseError, match="not signed by an operator key"):
        add_release(tmp_path / "releases", path, [public_key_of(key)])
    path.write_bytes(b"#!/bin/sh\necho roost 0.2.1\n")
    with pytest.raises(ReleaseError, match="tampered|truncated"):
        add_release(tmp_path / "releases", path, [public_key_of(other)])
    assert not (tmp_path / "releases").exists()


async def test_join_token_answer_carries_the_install_line_and_a_compose_service(make_hub, tmp_path):
    key = generate_operator_key()
    client = await make_hub(operator_keys=[public_key_of(key)])
    hub = client.server.app[HUB_KEY]
    resp = await client.post("/api/v1/join-tokens", json={})
    answer = await resp.json()
    assert answer["releases"] == [] and answer["token"] in answer["compose"] and "network_mode: host" in answer["compose"]
    add_release(releases_dir(hub.config.data_dir), signed_release(tmp_path, key), [public_key_of(key)])
    answer = await (await client.post("/api/v1/join-tokens", json={})).json()
    assert answer["releases"] == [NAME]
    from roost.deploy import spki_pin

    pin = spki_pin(hub.tls.cert_path.read_bytes())
    assert answer["install_command"] == f"curl -fsSLk --pinnedpubkey '{pin}' {hub.config.url()}/install.sh | sudo sh -s -- --join {answer['token']}"
