"""Home Assistant over MQTT: each node appears as a device with its headline sensors, found through MQTT discovery, no YAML.

The hub connects to the broker named in ``[mqtt] url`` and publishes, retained:

* ``<base>/status``: ``online`` while the hub is connected, ``offline`` as its
  last will, so Home Assistant greys everything out when the hub is gone;
* per node ``<base>/<node>/availability`` (``online`` or ``offline``, from
  the node's liveness) and ``<base>/<node>/state`` (JSON: status, online, the
  node's headline figures and ``alerts_firing`` with ``alerts`` by severity,
  published again whenever the count changes);
* Home Assistant discovery configs under ``<prefix>/sensor/roost_<node>/…``,
  ``<prefix>/binary_sensor/roost_<node>/online`` and, for the actions an admin
  listed in ``[[mqtt.buttons]]``, ``<prefix>/button/roost_<node>/…``.

A broker that goes away loses nothing: the bridge reconnects with jittered
backoff and publishes every node's config and latest state again. A button
press runs its action as a job through the same checks as the dashboard
(grant ∩ ceiling on the agent, audited as ``mqtt:<button>``); destructive
actions stay behind their operator signature and cannot be pressed. Needs the
``mqtt`` extra (aiomqtt).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from roost.core.const import NODE_ONLINE

from .state import HUB_KEY, Hub

_LOGGER = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
PAYLOAD_PRESS = "PRESS"
# Headline figure -> how Home Assistant should show it.
SENSORS: dict[str, dict[str, Any]] = {
    "cpu_percent": {"name": "CPU", "unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:cpu-64-bit"},
    "mem_used_percent": {"name": "Memory", "unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:memory"},
    "disk_used_percent": {"name": "Disk", "unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:harddisk"},
    "load_1": {"name": "Load (1 min)", "state_class": "measurement", "icon": "mdi:gauge"},
    "uptime_s": {"name": "Uptime", "unit_of_measurement": "s", "device_class": "duration", "state_class": "measurement"},
}
_SLUG = re.compile(r"[^a-z0-9_]+")


def slug(text: str) -> str:
    return _SLUG.sub("_", text.lower()).strip("_")[:60] or "button"


@dataclass
class Settings:
    host: str
    port: int
    tls: bool
    username: str
    password: str | None
    ca_file: str
    prefix: str
    base: str
    client_id: str
    buttons: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_config(cls, table: dict[str, Any], hub_id: str) -> Settings | None:
        if not table.get("url"):
            return None
        url = urlsplit(table["url"])
        tls = url.scheme == "mqtts"
        password = None
        if table.get("password_file"):
            password = Path(table["password_file"]).expanduser().read_text().strip()
        return cls(
            host=url.hostname or "127.0.0.1",
            port=url.port or (8883 if tls else 1883),
            tls=tls,
            username=table.get("username") or "",
            password=password,
            ca_file=table.get("ca_file") or "",
            prefix=table.get("discovery_prefix") or "homeassistant",
            base=table.get("base_topic") or "roost",
            client_id=table.get("client_id") or f"roost-{hub_id}",
            buttons=list(table.get("buttons") or ()),
        )


class HomeAssistantBridge:
    """Keeps the broker in step with the hub's nodes; lives on the app under MQTT_KEY while ``[mqtt] url`` is set."""

    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.settings = settings
        self.connected = asyncio.Event()
        self.connects = 0
        # The device description each node's configs were last published with: a change (a name, the OS) publishes them again.
        self._announced: dict[str, str] = {}

    # ---------------------------------------------------------------- topics

    def status_topic(self) -> str:
        return f"{self.settings.base}/status"

    def node_topic(self, node_id: str, leaf: str) -> str:
        return f"{self.settings.base}/{node_id}/{leaf}"

    def _device(self, summary: dict[str, Any]) -> dict[str, Any]:
        facts = summary.get("facts") or {}
        device = {
            "identifiers": [f"roost_{summary['id']}"],
            "name": summary.get("name") or summary["id"],
            "manufacturer": "Roost",
            "model": " ".join(str(facts[k]) for k in ("os", "arch") if facts.get(k)) or "Roost node",
        }
        if summary.get("agent_version"):
            device["sw_version"] = summary["agent_version"]
        return device

    def discovery(self, summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(topic, config) for every entity of one node, as Home Assistant's MQTT discovery documents them."""
        node_id = summary["id"]
        prefix = self.settings.prefix
        state = self.node_topic(node_id, "state")
        availability = [{"topic": self.status_topic()}, {"topic": self.node_topic(node_id, "availability")}]
        device = self._device(summary)
        out: list[tuple[str, dict[str, Any]]] = []
        for key, shape in SENSORS.items():
            out.append(
                (
                    f"{prefix}/sensor/roost_{node_id}/{key}/config",
                    {
                        **shape,
                        "unique_id": f"roost_{node_id}_{key}",
                        "object_id": f"roost_{slug(str(summary.get('name') or node_id))}_{key}",
                        "state_topic": state,
                        "value_template": f"{{{{ value_json.{key} }}}}",
                        "availability": availability,
                        "availability_mode": "all",
                        "device": device,
                    },
                )
            )
        out.append(
            (
                f"{prefix}/sensor/roost_{node_id}/alerts_firing/config",
                {
                    "name": "Firing alerts",
                    "unique_id": f"roost_{node_id}_alerts_firing",
                    "object_id": f"roost_{slug(str(summary.get('name') or node_id))}_alerts_firing",
                    "state_topic": state,
                    "value_template": "{{ value_json.alerts_firing }}",
                    "state_class": "measurement",
                    "icon": "mdi:alert",
                    "json_attributes_topic": state,
                    "json_attributes_template": "{{ value_json.alerts | tojson }}",
                    # The hub judges an offline node too (node offline is itself an alert): only the hub's availability.
                    "availability": [{"topic": self.status_topic()}],
                    "device": device,
                },
            )
        )
        out.append(
            (
                f"{prefix}/binary_sensor/roost_{node_id}/online/config",
                {
                    "name": "Online",
                    "unique_id": f"roost_{node_id}_online",
                    "device_class": "connectivity",
                    "state_topic": state,
                    "value_template": "{{ 'ON' if value_json.online else 'OFF' }}",
                    # Only the hub's own availability: an offline node must show as off, not unavailable.
                    "availability": [{"topic": self.status_topic()}],
                    "device": device,
                },
            )
        )
        for button in self._buttons_for(summary):
            out.append(
                (
                    f"{prefix}/button/roost_{node_id}/{button['slug']}/config",
                    {
                        "name": button["label"],
                        "unique_id": f"roost_{node_id}_{button['slug']}",
                        "command_topic": self.node_topic(node_id, f"button/{button['slug']}"),
                        "payload_press": PAYLOAD_PRESS,
                        "availability": availability,
                        "availability_mode": "all",
                        "device": device,
                    },
                )
            )
        return out

    def state(self, summary: dict[str, Any]) -> dict[str, Any]:
        online = summary.get("status") == NODE_ONLINE
        state: dict[str, Any] = {"status": summary.get("status"), "online": online, "last_seen": summary.get("last_seen")}
        for key in SENSORS:
            value = (summary.get("headline") or {}).get(key)
            # An offline node's last figures would look live; Home Assistant shows them as unknown instead.
            state[key] = value if online else None
        alerts = summary.get("alerts") if isinstance(summary.get("alerts"), dict) else {}
        state["alerts_firing"] = int(alerts.get("firing") or 0)
        state["alerts"] = {"critical": int(alerts.get("critical") or 0), "warning": int(alerts.get("warning") or 0)}
        return state

    def _buttons_for(self, summary: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for button in self.settings.buttons:
            if button["node"] not in (summary["id"], summary.get("name")):
                continue
            label = button.get("name") or button["action"]
            out.append({**button, "label": label, "slug": slug(button.get("name") or button["action"])})
        return out

    # ------------------------------------------------------------------ run

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.settings.tls:
            return None
        context = ssl.create_default_context(cafile=self.settings.ca_file or None)
        return context

    async def run(self) -> None:
        import aiomqtt

        delay = BACKOFF_FIRST
        failing = False
        settings = self.settings
        while True:
            try:
                async with aiomqtt.Client(
                    settings.host,
                    settings.port,
                    username=settings.username or None,
                    password=settings.password,
                    identifier=settings.client_id,
                    tls_context=self._tls_context(),
                    will=aiomqtt.Will(self.status_topic(), b"offline", qos=1, retain=True),
                    timeout=10,
                ) as client:
                    await self._connected(client)
                    if failing:
                        _LOGGER.info("mqtt: connected to %s:%d again", settings.host, settings.port)
                    failing = False
                    delay = BACKOFF_FIRST
                    try:
                        await self._serve(client)
                    except asyncio.CancelledError:
                        # A clean stop: say so, rather than leave it to the last will after the keepalive.
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(client.publish(self.status_topic(), b"offline", qos=1, retain=True), 2)
                        raise
            except asyncio.CancelledError:
                raise
            except Exception as err:  # aiomqtt.MqttError, OSError, a refused login
                self.connected.clear()
                self._announced.clear()
                log = _LOGGER.debug if failing else _LOGGER.error
                log("mqtt: cannot talk to the broker at %s:%d (%s); trying again in %.0f s", settings.host, settings.port, err, delay)
                failing = True
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, BACKOFF_MAX)

    async def _connected(self, client: Any) -> None:
        self.connects += 1
        await client.publish(self.status_topic(), b"online", qos=1, retain=True)
        summaries = (await self.hub.nodes_summary())["nodes"]
        for summary in summaries:
            await self._publish_node(client, summary)
        await client.subscribe(f"{self.settings.base}/+/button/+", qos=1)
        self.connected.set()

    async def _publish_node(self, client: Any, summary: dict[str, Any]) -> None:
        node_id = summary["id"]
        if summary.get("status") == "revoked":
            return
        configs = self.discovery(summary)
        signature = json.dumps(configs, sort_keys=True)
        if self._announced.get(node_id) != signature:
            for topic, config in configs:
                await client.publish(topic, json.dumps(config), qos=1, retain=True)
            self._announced[node_id] = signature
        online = summary.get("status") == NODE_ONLINE
        await client.publish(self.node_topic(node_id, "availability"), b"online" if online else b"offline", qos=1, retain=True)
        await client.publish(self.node_topic(node_id, "state"), json.dumps(self.state(summary)), qos=1, retain=True)

    async def _serve(self, client: Any) -> None:
        async with self.hub.events.subscribe() as queue:
            events = asyncio.create_task(self._follow(client, queue))
            try:
                async for message in client.messages:
                    await self._pressed(str(message.topic), bytes(message.payload or b""))
            finally:
                events.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await events
        raise ConnectionError("the broker closed the connection")

    async def _follow(self, client: Any, queue: asyncio.Queue) -> None:
        while True:
            event = await queue.get()
            if event is None:
                return
            if event.kind == "node":
                await self._publish_node(client, event.data)

    async def _pressed(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        base = self.settings.base.split("/")
        if parts[: len(base)] != base or len(parts) != len(base) + 3 or payload.decode(errors="replace") != PAYLOAD_PRESS:
            return
        node_id, _, button_slug = parts[len(base):]
        node = self.hub.node(node_id)
        if node is None:
            return
        summary = {"id": node_id, "name": node.name}
        button = next((b for b in self._buttons_for(summary) if b["slug"] == button_slug), None)
        if button is None:
            _LOGGER.warning("mqtt: a press of %s, which no [[mqtt.buttons]] entry offers; ignored", topic)
            return
        from .jobs import JobError

        try:
            job = await self.hub.jobs.create(node_id, button["action"], dict(button["params"]), actor=f"mqtt:{button_slug}")
        except JobError as err:
            _LOGGER.warning("mqtt: button %s on %s: %s", button["label"], node.name, err)
            return
        _LOGGER.info("mqtt: button %s on %s started job %s", button["label"], node.name, job.job_id)


MQTT_KEY = web.AppKey("roost_mqtt", HomeAssistantBridge)


async def _mqtt_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB_KEY]
    try:
        settings = Settings.from_config(hub.config.mqtt, hub.hub_id)
    except OSError as err:
        _LOGGER.error("mqtt: cannot read mqtt.password_file (%s); Home Assistant gets nothing until it is fixed", err)
        settings = None
    if settings is None:
        yield
        return
    try:
        import aiomqtt  # noqa: F401
    except ImportError:
        _LOGGER.error("mqtt: [mqtt] url is set but aiomqtt is not installed; install roost[mqtt]")
        yield
        return
    bridge = HomeAssistantBridge(hub, settings)
    app[MQTT_KEY] = bridge
    task = asyncio.create_task(bridge.run(), name="roost-mqtt")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def setup(app: web.Application) -> None:
    """Run the Home Assistant bridge for the app's lifetime when ``[mqtt] url`` is set."""
    app.cleanup_ctx.append(_mqtt_ctx)

