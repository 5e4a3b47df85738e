"""Notification receivers over the API and the outbox, against a real webhook receiver on loopback and the real hub app."""

from __future__ import annotations

import json
import sqlite3

import pytest
from support import free_port, until
from support_notify import WebhookReceiver, verify_signature

from roost.core.hub.app import HUB_KEY
from roost.core.hub.secretbox import SECRET_KEY_FILE

HMAC_KEY = "s3cret-hmac-key-for-tests"


@pytest.fixture
async def webhook():
    receiver = await WebhookReceiver(free_port()).start()
    yield receiver
    await receiver.stop()


async def add_webhook(client, url: str, *, name: str = "hook", allow_private: bool = True, **extra) -> dict:
    body = {"name": name, "kind": "notify.webhook", "settings": {"url": url, "hmac_key": HMAC_KEY}, "allow_private": allow_private, **extra}
    resp = await client.post("/api/v1/alerts/receivers", json=body)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def outbox(client, state: str = "") -> list[dict]:
    resp = await client.get("/api/v1/alerts/outbox" + (f"?state={state}" if state else ""))
    assert resp.status == 200
    return (await resp.json())["outbox"]


async def test_send_reaches_a_real_webhook_signed_and_shaped_like_alertmanager(client, webhook):
    await add_webhook(client, webhook.url, is_default=True)
    hub = client.server.app[HUB_KEY]
    ids = await hub.notifications.send(title="Backup finished", body="restic: 3 snapshots kept", severity="info", node_id="n1")
    assert len(ids) == 1
    await until(lambda: _delivered(client, ids[0]), 20, "the message delivered")
    [request] = webhook.received
    assert verify_signature(HMAC_KEY, request), "the HMAC header must verify with the receiver's key"
    assert not verify_signature("another key", request)
    payload = request["json"]
    assert payload["version"] == "4" and payload["status"] == "info" and payload["receiver"] == "hook"
    assert payload["title"] == "Backup finished" and payload["body"] == "restic: 3 snapshots kept"
    assert payload["alerts"] == [] and "groupLabels" in payload and "commonLabels" in payload
    assert request["headers"]["X-Roost-Notification-Id"].endswith(f"-{ids[0]}")


async def _delivered(client, outbox_id: str) -> bool:
    return any(r["id"] == outbox_id and r["state"] == "delivered" for r in await outbox(client))


async def test_send_to_named_receivers_and_unknown_names_are_refused(client, webhook):
    await add_webhook(client, webhook.url, name="ops")
    hub = client.server.app[HUB_KEY]
    assert await hub.notifications.send(title="no default receiver yet", body="") == []
    with pytest.raises(ValueError, match="no receiver named 'nobody'"):
        await hub.notifications.send(title="x", body="", receivers=["nobody"])
    with pytest.raises(ValueError, match="severity"):
        await hub.notifications.send(title="x", body="", severity="apocalyptic", receivers=["ops"])
    [outbox_id] = await hub.notifications.send(title="to ops", body="", receivers=["ops"])
    await until(lambda: _delivered(client, outbox_id), 20, "the message delivered")
    assert [p["title"] for p in webhook.payloads()] == ["to ops"]


async def test_secrets_are_stored_encrypted_and_never_shown_back(client, webhook):
    created = await add_webhook(client, webhook.url)
    assert "hmac_key" not in created["settings"] and created["secrets_set"] == ["hmac_key"]
    listed = await (await client.get("/api/v1/alerts/receivers")).text()
    one = await (await client.get("/api/v1/alerts/receivers/hook")).text()
    assert HMAC_KEY not in listed and HMAC_KEY not in one
    hub = client.server.app[HUB_KEY]
    raw = sqlite3.connect(hub.config.store_path).execute("SELECT settings FROM notify_receivers").fetchone()[0]
    assert HMAC_KEY not in raw and json.loads(raw)["hmac_key"].startswith("fernet:")
    assert (hub.config.data_dir / SECRET_KEY_FILE).stat().st_mode & 0o077 == 0
    # A change that leaves the secret out keeps it; the signature still verifies with the old key.
    resp = await client.patch("/api/v1/alerts/receivers/hook", json={"settings": {"url": webhook.url}, "is_default": True})
    assert resp.status == 200, await resp.text()
    [outbox_id] = await hub.notifications.send(title="after a change", body="")
    await until(lambda: _delivered(client, outbox_id), 20, "the message delivered")
    assert verify_signature(HMAC_KEY, webhook.received[-1])
    # Page and audit log never carry it either.
    page = await (await client.get("/notifications")).text()
    assert HMAC_KEY not in page and "hook" in page
    audit = await (await client.get("/api/v1/audit")).text()
    assert HMAC_KEY not in audit and "notifications.receiver_created" in audit


async def test_a_loopback_receiver_is_refused_unless_private_targets_are_allowed(client, webhook):
    await add_webhook(client, webhook.url, name="lan", allow_private=False)
    resp = await client.post("/api/v1/alerts/receivers/lan/test")
    outcome = await resp.json()
    assert resp.status == 200 and outcome["ok"] is False
    assert "127.0.0.1 is a loopback address" in outcome["error"] and "allow private targets" in outcome["error"]
    assert webhook.received == [], "the refused connection must never reach the server"
    # Through the outbox too: queued, refused at connect time, retried later, never delivered.
    hub = client.server.app[HUB_KEY]
    [outbox_id] = await hub.notifications.send(title="refused", body="", receivers=["lan"])
    await until(lambda: _attempted(client, outbox_id), 20, "a refused attempt")
    assert webhook.received == []
    # The admin allows it explicitly: the same URL now works.
    resp = await client.patch("/api/v1/alerts/receivers/lan", json={"allow_private": True})
    assert resp.status == 200
    outcome = await (await client.post("/api/v1/alerts/receivers/lan/test")).json()
    assert outcome == {"ok": True, "error": "", "seconds": outcome["seconds"]}
    assert webhook.payloads()[-1]["title"] == "Roost test notification"


async def _attempted(client, outbox_id: str) -> bool:
    return any(r["id"] == outbox_id and r["attempts"] >= 1 and "loopback" in r["last_error"] for r in await outbox(client))


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "192.168.1.10", "172.16.0.1", "169.254.169.254", "100.64.0.1", "::1", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1", "0.0.0.0"],
)
def test_private_and_metadata_addresses_are_refused(address):
    from roost.core.hub.outbound import OutboundRefused, address_problem, check_address

    assert address_problem(address) is not None
    with pytest.raises(OutboundRefused):
        check_address(address, allow_private=False)
    check_address(address, allow_private=True)


def test_public_addresses_pass():
    from roost.core.hub.outbound import address_problem

    assert address_problem("93.184.216.34") is None and address_problem("2606:4700::1111") is None


async def test_a_name_that_resolves_to_loopback_is_refused_after_dns(client, webhook):
    # "localhost" is a name, not an address: the check must run on what it resolves to, when connecting.
    await add_webhook(client, f"http://localhost:{webhook.port}/hook", name="byname", allow_private=False)
    outcome = await (await client.post("/api/v1/alerts/receivers/byname/test")).json()
    assert outcome["ok"] is False and "loopback address" in outcome["error"]
    assert webhook.received == []


async def test_bad_receivers_get_clear_errors(client):
    cases = [
        ({"name": "Bad Name", "kind": "notify.webhook", "settings": {"url": "http://x"}}, "name"),
        ({"name": "a", "kind": "notify.nothing", "settings": {}}, "unknown receiver kind 'notify.nothing'"),
        ({"name": "a", "kind": "notify.webhook", "settings": {"url": "ftp://x"}}, "must be a http://HOST or https://HOST URL"),
        ({"name": "a", "kind": "notify.webhook", "settings": {"url": "http://u:p@x/"}}, "credentials"),
        ({"name": "a", "kind": "notify.webhook", "settings": {"url": "http://x/", "allow_private": True}}, "settings.allow_private is set by the hub"),
        ({"name": "a", "kind": "notify.webhook", "settings": {"url": "http://x/"}, "route": {"severities": ["dire"]}}, "invalid route"),
        ({"name": "a", "kind": "notify.email", "settings": {"host": "mail"}}, "invalid settings for notify.email"),
    ]
    for body, expected in cases:
        resp = await client.post("/api/v1/alerts/receivers", json=body)
        assert resp.status == 400, (body, await resp.text())
        assert expected in (await resp.json())["error"], body
    assert (await (await client.get("/api/v1/alerts/receivers")).json())["receivers"] == []


async def test_viewers_see_receivers_but_only_admins_change_or_test_them(make_hub, webhook):
    admin = await make_hub()
    await add_webhook(admin, webhook.url)
    for role in ("viewer", "operator"):
        other = await make_hub(as_role=role)
        assert (await other.get("/api/v1/alerts/receivers")).status == 200
        assert (await other.get("/api/v1/alerts/outbox")).status == 200
        assert (await other.post("/api/v1/alerts/receivers/hook/test")).status == 403
        assert (await other.patch("/api/v1/alerts/receivers/hook", json={"enabled": False})).status == 403
        assert (await other.delete("/api/v1/alerts/receivers/hook")).status == 403
        resp = await other.post("/api/v1/alerts/receivers", json={"name": "mine", "kind": "notify.webhook", "settings": {"url": webhook.url}})
        assert resp.status == 403
    assert webhook.received == []
