"""Each built-in receiver against the real thing: an SMTP server (aiosmtpd, STARTTLS and TLS, with login), mosquitto,
and a Prometheus Alertmanager that hands Roost's alerts on to a webhook."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request
from email import message_from_bytes

import pytest
from support import free_port, need, until
from support_mqtt import mosquitto  # noqa: F401  (the fixture)
from support_notify import WebhookReceiver

from roost.core.hub.app import HUB_KEY
from roost.core.tls import ensure_hub_tls

SMTP_USER = "roost@example.net"
SMTP_PASSWORD = "mail-password-for-tests"


# ------------------------------------------------------------------ email


class Mailbox:
    """aiosmtpd handler keeping every message it accepted."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "data": envelope.content, "login": session.auth_data})
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def tls(tmp_path):
    return ensure_hub_tls(tmp_path / "smtp-tls", hostnames=["localhost"], addresses=["127.0.0.1"])


def _smtp(tls, *, implicit: bool):
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    port = free_port()
    context = tls.server_context()
    if implicit:
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, ssl_context=context, authenticator=_authenticator, auth_require_tls=False)
    else:
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True, authenticator=_authenticator)
    controller.start()
    return controller, mailbox, port


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_email_over_a_real_smtp_server_with_login(client, tls, security):
    pytest.importorskip("aiosmtpd")
    controller, mailbox, port = _smtp(tls, implicit=security == "tls")
    try:
        settings = {
            "host": "127.0.0.1", "port": port, "security": security, "username": SMTP_USER, "password": SMTP_PASSWORD,
            "from": "roost@example.net", "to": ["ops@example.net", "me@example.net"], "ca_file": str(tls.ca_path),
        }
        resp = await client.post("/api/v1/alerts/receivers", json={"name": "mail", "kind": "notify.email", "settings": settings, "allow_private": True})
        assert resp.status == 201, await resp.text()
        assert SMTP_PASSWORD not in await resp.text()
        hub = client.server.app[HUB_KEY]
        await hub.notifications.send(title="Disk replaced on nas", body="sdb is new", receivers=["mail"])
        await until(lambda: _has(mailbox), 30, "the mail delivered")
        [got] = mailbox.messages
        mail = message_from_bytes(got["data"])
        assert got["to"] == ["ops@example.net", "me@example.net"] and mail["Subject"] == "Disk replaced on nas"
        assert "sdb is new" in mail.get_payload() and mail["X-Roost-Notification-Id"]
        # A wrong password is a failed test send that says so; the password itself is never in the answer.
        resp = await client.patch("/api/v1/alerts/receivers/mail", json={"settings": {**settings, "password": "wrong"}})
        assert resp.status == 200
        outcome = await (await client.post("/api/v1/alerts/receivers/mail/test")).json()
        assert outcome["ok"] is False and "535" in outcome["error"] and "wrong" not in outcome["error"]
    finally:
        controller.stop()


async def _has(box) -> bool:
    return bool(box.messages)


async def test_email_to_a_private_server_is_refused_without_the_allowance(client, tls):
    pytest.importorskip("aiosmtpd")
    controller, mailbox, port = _smtp(tls, implicit=False)
    try:
        settings = {"host": "localhost", "port": port, "from": "roost@example.net", "to": ["ops@example.net"], "ca_file": str(tls.ca_path)}
        resp = await client.post("/api/v1/alerts/receivers", json={"name": "mail", "kind": "notify.email", "settings": settings})
        assert resp.status == 201
        outcome = await (await client.post("/api/v1/alerts/receivers/mail/test")).json()
        assert outcome["ok"] is False and "loopback address" in outcome["error"] and "allow private targets" in outcome["error"]
        assert mailbox.messages == []
    finally:
        controller.stop()


# ------------------------------------------------------------------ MQTT


async def test_mqtt_to_a_real_broker_and_to_the_hubs_own(make_hub, mosquitto):  # noqa: F811
    aiomqtt = pytest.importorskip("aiomqtt")
    client = await make_hub(mqtt={"url": f"mqtt://127.0.0.1:{mosquitto.port}"})
    got: list[tuple[str, dict]] = []
    ready = asyncio.Event()

    async def listen():
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
            await sub.subscribe("alerts/#", qos=1)
            ready.set()
            async for message in sub.messages:
                got.append((str(message.topic), json.loads(message.payload)))

    task = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(ready.wait(), 20)
        own = {"name": "broker", "kind": "notify.mqtt", "settings": {"url": f"mqtt://127.0.0.1:{mosquitto.port}", "topic": "alerts/roost"}, "allow_private": True}
        hubs = {"name": "hubs", "kind": "notify.mqtt", "settings": {"topic": "alerts/hub"}}
        refused = {"name": "lan", "kind": "notify.mqtt", "settings": {"url": f"mqtt://127.0.0.1:{mosquitto.port}", "topic": "alerts/lan"}}
        for body in (own, hubs, refused):
            resp = await client.post("/api/v1/alerts/receivers", json=body)
            assert resp.status == 201, await resp.text()
        hub = client.server.app[HUB_KEY]
        await hub.notifications.send(title="pi is back", body="", receivers=["broker", "hubs"])
        await until(lambda: _count(got, 2), 20, "both MQTT messages")
        assert sorted(t for t, _ in got) == ["alerts/hub", "alerts/roost"]
        assert all(p["title"] == "pi is back" and p["version"] == "4" for _, p in got)
        outcome = await (await client.post("/api/v1/alerts/receivers/lan/test")).json()
        assert outcome["ok"] is False and "loopback address" in outcome["error"]
        await asyncio.sleep(0)
        assert not any(t == "alerts/lan" for t, _ in got)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _count(items, n) -> bool:
    return len(items) >= n


# ------------------------------------------------------------------ Prometheus Alertmanager

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


@pytest.fixture
def alertmanager(tmp_path):
    need(shutil.which(ALERTMANAGER) is not None, "prometheus-alertmanager (apt-get install prometheus-alertmanager)")
    hook_port, port = free_port(), free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n  receiver: hook\n  group_by: ['alertname', 'node']\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        f"receivers:\n- name: hook\n  webhook_configs:\n  - url: http://127.0.0.1:{hook_port}/hook\n    send_resolved: true\n"
    )
    log = open(tmp_path / "alertmanager.log", "ab")
    proc = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()
        assert time.monotonic() < deadline, "Alertmanager did not get ready"
        time.sleep(0.1)
    yield {"url": f"http://127.0.0.1:{port}", "hook_port": hook_port}
    proc.terminate()
    proc.wait(20)


async def test_alertmanager_receives_roosts_alerts_and_delivers_them_to_a_webhook(client, alertmanager):
    hook = await WebhookReceiver(alertmanager["hook_port"]).start()
    try:
        body = {"name": "am", "kind": "notify.alertmanager", "settings": {"url": alertmanager["url"]}, "allow_private": True, "route": {"group_wait": "0s", "group_interval": "1s"}}
        resp = await client.post("/api/v1/alerts/receivers", json=body)
        assert resp.status == 201, await resp.text()
        hub = client.server.app[HUB_KEY]
        await hub.alerts.raise_alert(source="test", node_id="n-nas", name="NodeOffline", summary="nas stopped reporting", severity="critical")
        await until(lambda: _status(hook, "firing"), 60, "Alertmanager's firing webhook")
        firing = next(p for p in hook.payloads() if p["status"] == "firing")
        [alert] = firing["alerts"]
        assert alert["labels"]["alertname"] == "NodeOffline" and alert["labels"]["node"] == "n-nas" and alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["summary"] == "nas stopped reporting"
        assert await hub.alerts.resolve_alert("test", "n-nas", "NodeOffline")
        await until(lambda: _status(hook, "resolved"), 60, "Alertmanager's resolved webhook")
        resolved = next(p for p in hook.payloads() if p["status"] == "resolved")
        assert resolved["alerts"][0]["labels"]["alertname"] == "NodeOffline" and resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    finally:
        await hook.stop()


async def _status(hook, status) -> bool:
    return any(p.get("status") == status for p in hook.payloads())


# ------------------------------------------------------------------ Apprise (optional extra)


async def test_apprise_url_delivers_through_real_apprise_and_its_url_is_a_secret(client):
    pytest.importorskip("apprise")
    from support import free_port as port_for

    hook = await WebhookReceiver(port_for()).start()
    try:
        url = f"json://127.0.0.1:{hook.port}/hook?token=not-for-your-eyes"
        resp = await client.post("/api/v1/alerts/receivers", json={"name": "ntfy-ish", "kind": "apprise.url", "settings": {"url": url}})
        assert resp.status == 201, await resp.text()
        assert "not-for-your-eyes" not in await (await client.get("/api/v1/alerts/receivers")).text()
        outcome = await (await client.post("/api/v1/alerts/receivers/ntfy-ish/test")).json()
        assert outcome["ok"] is False and "loopback address" in outcome["error"] and hook.received == []
        assert (await client.patch("/api/v1/alerts/receivers/ntfy-ish", json={"allow_private": True})).status == 200
        hub = client.server.app[HUB_KEY]
        await hub.notifications.send(title="Backup failed", body="borg exit 2", severity="critical", receivers=["ntfy-ish"])
        await until(lambda: _count(hook.received, 1), 30, "Apprise's JSON post")
        [payload] = hook.payloads()
        assert payload["title"] == "Backup failed" and payload["message"].startswith("borg exit 2") and payload["type"] == "failure"
        bad = await client.post("/api/v1/alerts/receivers", json={"name": "bad", "kind": "apprise.url", "settings": {"url": "nonsense://x"}})
        assert bad.status == 400 and "Apprise does not understand this URL" in (await bad.json())["error"]
    finally:
        await hook.stop()
