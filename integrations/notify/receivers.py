"""The receiver kinds: each a settings schema and a handler that delivers one message or raises why it could not."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol

from roost.core.hub import outbound
from roost.core.hub_integration import NotificationReceiver

from .const import (
    DEFAULT_FIRING_TTL,
    DEFAULT_MQTT_TOPIC,
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    KIND_ALERTMANAGER,
    KIND_EMAIL,
    KIND_MQTT,
    KIND_WEBHOOK,
    SMTP_TIMEOUT,
    USER_AGENT,
)


class DeliveryError(RuntimeError):
    """The receiver answered, and the answer was a refusal; the text says what it said."""


def _url(*schemes: str) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or len(value) > 2000:
            raise vol.Invalid(f"must be a {' or '.join(schemes)} URL")
        parts = urlsplit(value.strip())
        if parts.scheme not in schemes or not parts.hostname:
            raise vol.Invalid(f"must be a {' or '.join(s + '://HOST' for s in schemes)} URL, not {value!r}")
        if parts.username or parts.password:
            raise vol.Invalid("put credentials in the receiver's username and password, not in the URL (the URL is shown back)")
        return value.strip()

    return check


def _addresses(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or len(value) > 50 or not all(isinstance(v, str) and "@" in v and "\n" not in v for v in value):
        raise vol.Invalid("must be one or more email addresses")
    return value


def _ssl_context(verify: bool, ca_file: str = "") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _what(settings: dict[str, Any]) -> str:
    return f"receiver URL {settings.get('url') or settings.get('host')}"


# ------------------------------------------------------------------ webhook


WEBHOOK_SCHEMA = vol.Schema(
    {
        vol.Required("url"): _url("http", "https"),
        vol.Optional("hmac_key", default=""): vol.All(str, vol.Length(max=512)),
        vol.Optional("verify_tls", default=True): bool,
        vol.Optional("ca_file", default=""): str,
    }
)


def webhook_payload(message: dict[str, Any]) -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4), with Roost's own fields beside it."""
    alerts = list(message.get("alerts") or [])
    common_annotations: dict[str, str] = {}
    if alerts:
        first = alerts[0].get("annotations") or {}
        common_annotations = {k: v for k, v in first.items() if all((a.get("annotations") or {}).get(k) == v for a in alerts[1:])}
    return {
        "version": "4",
        "groupKey": message.get("group_key") or message.get("id") or "",
        "truncatedAlerts": 0,
        "status": message.get("status") or "info",
        "receiver": message.get("receiver") or "",
        "groupLabels": dict(message.get("group_labels") or {}),
        "commonLabels": dict(message.get("common_labels") or {}),
        "commonAnnotations": common_annotations,
        "externalURL": message.get("url") or "",
        "alerts": alerts,
        "id": message.get("id") or "",
        "title": message.get("title") or "",
        "body": message.get("body") or "",
        "severity": message.get("severity") or "info",
        "node_id": message.get("node_id"),
        "cause": message.get("cause"),
    }


def sign(key: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: ``sha256=<hex HMAC-SHA256 of "<timestamp>." + body>``."""
    return "sha256=" + hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


async def send_webhook(settings: dict[str, Any], message: dict[str, Any]) -> None:
    body = json.dumps(webhook_payload(message), separators=(",", ":"), sort_keys=True).encode()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, HEADER_TIMESTAMP: stamp, HEADER_ID: str(message.get("id") or "")}
    if settings.get("hmac_key"):
        headers[HEADER_SIGNATURE] = sign(settings["hmac_key"], stamp, body)
    context = _ssl_context(settings.get("verify_tls", True), settings.get("ca_file", ""))
    async with outbound.session(allow_private=settings.get("allow_private", False), what=_what(settings), ssl_context=context) as http:
        async with http.post(settings["url"], data=body, headers=headers, allow_redirects=False) as response:
            if response.status >= 300:
                text = (await response.text(errors="replace"))[:200]
                raise DeliveryError(f"the webhook answered {response.status} {response.reason}: {text}")


# ------------------------------------------------------------------ email


EMAIL_SCHEMA = vol.Schema(
    {
        vol.Required("host"): vol.All(str, vol.Length(min=1, max=253)),
        vol.Optional("port", default=587): vol.All(int, vol.Range(min=1, max=65535)),
        # starttls: plain connection upgraded with STARTTLS (port 587); tls: TLS from the start (port 465); none: no encryption.
        vol.Optional("security", default="starttls"): vol.In(("starttls", "tls", "none"), msg="must be starttls, tls or none"),
        vol.Optional("username", default=""): str,
        vol.Optional("password", default=""): str,
        vol.Required("from"): vol.All(_addresses, vol.Length(max=1, msg="one sender address")),
        vol.Required("to"): _addresses,
        vol.Optional("verify_tls", default=True): bool,
        vol.Optional("ca_file", default=""): str,
    }
)


class _CheckedSMTP(smtplib.SMTP):
    """smtplib.SMTP whose socket connects only to addresses the outbound check allows (after DNS)."""

    allow_private = False

    def _get_socket(self, host: str, port: int, timeout: float) -> Any:  # type: ignore[override]
        return outbound.connect(host, port, allow_private=self.allow_private, timeout=timeout, what=f"mail server {host}")


class _CheckedSMTPSSL(smtplib.SMTP_SSL, _CheckedSMTP):
    """SMTP_SSL wraps the socket _CheckedSMTP connected (its _get_socket calls the next class's)."""


def email_text(message: dict[str, Any]) -> str:
    lines = [message.get("body") or ""]
    if message.get("url"):
        lines += ["", str(message["url"])]
    for alert in message.get("alerts") or []:
        labels = ", ".join(f"{k}={v}" for k, v in sorted((alert.get("labels") or {}).items()))
        lines += ["", f"{alert.get('status')}: {labels}", f"  since {alert.get('startsAt')}"]
    return "\n".join(lines).strip() + "\n"


def _send_email(settings: dict[str, Any], message: dict[str, Any]) -> None:
    mail = EmailMessage()
    mail["Subject"] = (message.get("title") or "Roost notification").replace("\n", " ")[:250]
    mail["From"] = settings["from"][0]
    mail["To"] = ", ".join(settings["to"])
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(idstring=str(message.get("id") or "roost").replace("@", "-"), domain="roost.local")
    mail["X-Roost-Notification-Id"] = str(message.get("id") or "")
    mail.set_content(email_text(message))
    context = _ssl_context(settings.get("verify_tls", True), settings.get("ca_file", ""))
    cls = _CheckedSMTPSSL if settings["security"] == "tls" else _CheckedSMTP
    kwargs: dict[str, Any] = {"timeout": SMTP_TIMEOUT}
    if cls is _CheckedSMTPSSL:
        kwargs["context"] = context
    client = cls(**kwargs)
    client.allow_private = bool(settings.get("allow_private", False))
    # The name TLS checks the certificate against; smtplib sets it only when __init__ connects.
    client._host = settings["host"]
    try:
        client.connect(settings["host"], settings["port"])
        client.ehlo()
        if settings["security"] == "starttls":
            client.starttls(context=context)
            client.ehlo()
        if settings.get("username"):
            client.login(settings["username"], settings.get("password") or "")
        refused = client.send_message(mail)
        if refused:
            raise DeliveryError(f"the mail server refused {', '.join(sorted(refused))}")
    finally:
        try:
            client.quit()
        except Exception:
            client.close()


async def send_email(settings: dict[str, Any], message: dict[str, Any]) -> None:
    await asyncio.to_thread(_send_email, settings, message)


# ------------------------------------------------------------------ MQTT


def _mqtt_url(value: Any) -> str:
    if value in (None, ""):
        return ""
    return _url("mqtt", "mqtts")(value)


MQTT_SCHEMA = vol.Schema(
    {
        # Empty: the hub's own [mqtt] broker.
        vol.Optional("url", default=""): _mqtt_url,
        vol.Optional("topic", default=DEFAULT_MQTT_TOPIC): vol.All(str, vol.Length(min=1, max=200), vol.Match(r"^[^#+\x00]+$", msg="must be a topic without wildcards")),
        vol.Optional("username", default=""): str,
        vol.Optional("password", default=""): str,
        vol.Optional("qos", default=1): vol.In((0, 1, 2), msg="must be 0, 1 or 2"),
        vol.Optional("retain", default=False): bool,
        vol.Optional("ca_file", default=""): str,
    }
)


async def send_mqtt(settings: dict[str, Any], message: dict[str, Any]) -> None:
    try:
        import aiomqtt
    except ImportError as err:
        raise DeliveryError("MQTT receivers need the mqtt extra: pip install 'roost[mqtt]'") from err
    url = urlsplit(settings["url"])
    tls = url.scheme == "mqtts"
    port = url.port or (8883 if tls else 1883)
    host = url.hostname or ""
    if not settings.get("hub_broker"):
        # Connect to the very address that was checked, so a second lookup cannot point elsewhere; TLS still checks the name.
        address = await asyncio.to_thread(outbound.resolve_checked, host, port, allow_private=settings.get("allow_private", False), what=_what(settings))
        if not tls:
            host = address
    payload = json.dumps(webhook_payload(message), separators=(",", ":"), sort_keys=True)
    context = _ssl_context(True, settings.get("ca_file", "")) if tls else None
    async with aiomqtt.Client(
        hostname=host,
        port=port,
        username=settings.get("username") or None,
        password=settings.get("password") or None,
        tls_context=context,
        # MQTT 3.1 brokers may refuse client ids over 23 characters.
        identifier="roost-" + hashlib.sha1(str(message.get("id") or time.time()).encode()).hexdigest()[:16],
        timeout=SMTP_TIMEOUT,
    ) as client:
        await client.publish(settings["topic"], payload, qos=settings.get("qos", 1), retain=settings.get("retain", False))


# ------------------------------------------------------------------ Prometheus Alertmanager


ALERTMANAGER_SCHEMA = vol.Schema(
    {
        vol.Required("url"): _url("http", "https"),
        vol.Optional("username", default=""): str,
        vol.Optional("password", default=""): str,
        vol.Optional("firing_ttl", default=DEFAULT_FIRING_TTL): vol.All(vol.Coerce(float), vol.Range(min=60, max=30 * 86400)),
        vol.Optional("verify_tls", default=True): bool,
        vol.Optional("ca_file", default=""): str,
    }
)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1000):03d}Z"


def alertmanager_alerts(message: dict[str, Any], firing_ttl: float, now: float) -> list[dict[str, Any]]:
    """What ``POST /api/v2/alerts`` takes: a firing alert lasts firing_ttl unless told again, a resolved one ends when it did."""
    out = []
    for alert in message.get("alerts") or []:
        entry = {
            "labels": dict(alert.get("labels") or {}),
            "annotations": dict(alert.get("annotations") or {}),
            "startsAt": alert.get("startsAt"),
            "endsAt": alert.get("endsAt") if alert.get("status") == "resolved" else _iso(now + firing_ttl),
        }
        if alert.get("generatorURL"):
            entry["generatorURL"] = alert["generatorURL"]
        out.append(entry)
    if not out:
        # A one-off message: an alert of its own that ends by itself.
        labels = {"alertname": "RoostNotification", "severity": message.get("severity") or "info"}
        if message.get("node_id"):
            labels["node"] = str(message["node_id"])
        out.append(
            {
                "labels": labels,
                "annotations": {"summary": message.get("title") or "", "description": message.get("body") or ""},
                "startsAt": _iso(now),
                "endsAt": _iso(now + min(firing_ttl, 3600.0)),
            }
        )
    return out


async def send_alertmanager(settings: dict[str, Any], message: dict[str, Any]) -> None:
    import aiohttp

    body = alertmanager_alerts(message, settings.get("firing_ttl", DEFAULT_FIRING_TTL), time.time())
    auth = aiohttp.BasicAuth(settings["username"], settings.get("password") or "") if settings.get("username") else None
    context = _ssl_context(settings.get("verify_tls", True), settings.get("ca_file", ""))
    url = settings["url"].rstrip("/") + "/api/v2/alerts"
    async with outbound.session(allow_private=settings.get("allow_private", False), what=_what(settings), ssl_context=context) as http:
        async with http.post(url, json=body, auth=auth, headers={"User-Agent": USER_AGENT}, allow_redirects=False) as response:
            if response.status >= 300:
                text = (await response.text(errors="replace"))[:200]
                raise DeliveryError(f"Alertmanager answered {response.status} {response.reason}: {text}")


RECEIVERS = (
    NotificationReceiver(
        KIND_WEBHOOK,
        "POST each notification as JSON in Alertmanager's webhook shape, signed with HMAC-SHA256 when a key is set",
        WEBHOOK_SCHEMA,
        send_webhook,
        secrets=("hmac_key",),
    ),
    NotificationReceiver(KIND_EMAIL, "Send each notification as an email over SMTP (STARTTLS or TLS, with login)", EMAIL_SCHEMA, send_email, secrets=("password",)),
    NotificationReceiver(
        KIND_MQTT,
        "Publish each notification as JSON to an MQTT topic (the hub's own [mqtt] broker unless a URL is given)",
        MQTT_SCHEMA,
        send_mqtt,
        secrets=("password",),
    ),
    NotificationReceiver(
        KIND_ALERTMANAGER,
        "Hand alerts to a Prometheus Alertmanager (POST /api/v2/alerts), which then routes them its own way",
        ALERTMANAGER_SCHEMA,
        send_alertmanager,
        secrets=("password",),
    ),
)
