"""Home Assistant over MQTT against a real mosquitto: discovery configs as Home Assistant documents them, state, a broker that comes back, and buttons through the job path."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from support import free_port, need
from support_mqtt import Mosquitto, mosquitto  # noqa: F401  (the fixture)

from support_auth import seed_user
from support_hub import FakeAgent

from roost.core.config import load_hub_config
from roost.core.hub.app import HUB_KEY, create_app
from roost.core.hub.mqtt import MQTT_KEY, SENSORS

aiomqtt = pytest.importorskip("aiomqtt")

# What Home Assistant's MQTT discovery accepts for the keys Roost sends (www.home-assistant.io/integrations/sensor.mqtt,
# binary_sensor.mqtt, button.mqtt; device classes from the sensor and binary_sensor pages).
COMMON_KEYS = {"name", "unique_id", "object_id", "availability", "availability_mode", "device", "icon"}
COMPONENT_KEYS = {
    "sensor": COMMON_KEYS | {"state_topic", "value_template", "unit_of_measurement", "device_class", "state_class", "json_attributes_topic", "json_attributes_template"},
    "binary_sensor": COMMON_KEYS | {"state_topic", "value_template", "device_class"},
    "button": COMMON_KEYS | {"command_topic", "payload_press"},
}
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "button": {"command_topic"}}
SENSOR_DEVICE_CLASSES = {"duration", "temperature", "data_size", "data_rate", "power", "energy"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version", "connections", "via_device"}


async def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.05)
    return value


class Listener:
    """A subscriber on the real broker that keeps the last payload of every topic."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: dict[str, bytes] = {}
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "Listener":
        ready = asyncio.Event()

        async def run() -> None:
            async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"test-{time.monotonic_ns()}") as client:
                await client.subscribe("homeassistant/#")
                await client.subscribe("roost/#")
                ready.set()
                async for message in client.messages:
                    self.seen[str(message.topic)] = bytes(message.payload or b"")

        self._task = asyncio.create_task(run())
        await asyncio.wait_for(ready.wait(), 10)
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass

    def json(self, topic: str):
        return json.loads(self.seen[topic]) if topic in self.seen else None


def check_discovery(topic: str, config: dict) -> str:
    component = topic.split("/")[1]
    assert component in COMPONENT_KEYS, topic
    assert set(config) <= COMPONENT_KEYS[component], (topic, set(config) - COMPONENT_KEYS[component])
    assert REQUIRED[component] <= set(config), topic
    assert config["unique_id"] and set(config["device"]) <= DEVICE_KEYS and config["device"]["identifiers"]
    if "device_class" in config and component == "sensor":
        assert config["device_class"] in SENSOR_DEVICE_CLASSES
    if "state_class" in config:
        assert config["state_class"] in STATE_CLASSES
    for entry in config.get("availability", ()):
        assert set(entry) <= {"topic", "payload_available", "payload_not_available", "value_template"}
    return component


@pytest.fixture
def make_hub(aiohttp_client, tmp_path):
    """A real hub app whose [mqtt] table points at the test's broker, with an admin's token on every request."""

    async def make(mqtt: dict):
        config = load_hub_config(
            None,
            overrides={
                "hub": {"data_dir": str(tmp_path / "hub"), "discovery": False},
                "agent": {"enabled": False},
                "mqtt": mqtt,
            },
        )
        token = await seed_user(config, "admin", "admin")
        return await aiohttp_client(create_app(config), headers={"Authorization": f"Bearer {token}"})

    return make


async def hub_with_node(make_hub, port: int, **mqtt):
    client = await make_hub({"url": f"mqtt://127.0.0.1:{port}", **mqtt})
    agent = FakeAgent(client)
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    await agent.send(agent.report(metrics={"linux_host.cpu_percent": 12.5, "linux_host.mem_used_percent": 40.0, "linux_host.uptime_s": 99}))
    await wait_until(lambda: agent.hub._metrics.get(agent.node_id), 10, "the report")
    bridge = client.app[MQTT_KEY]
    await asyncio.wait_for(bridge.connected.wait(), 20)
    return client, agent, bridge


async def test_nodes_appear_in_home_assistant_through_discovery(make_hub, mosquitto):
    async with Listener(mosquitto.port) as listener:
        client, agent, bridge = await hub_with_node(make_hub, mosquitto.port)
        nid = agent.node_id
        state_topic = f"roost/{nid}/state"
        state = await wait_until(lambda: (s := listener.json(state_topic)) and s.get("cpu_percent") == 12.5 and s, 20, "the node's state")
        assert state["online"] is True and state["status"] == "online" and state["mem_used_percent"] == 40.0 and state["uptime_s"] == 99
        assert listener.seen.get("roost/status") == b"online" and listener.seen.get(f"roost/{nid}/availability") == b"online"
        configs = {t: json.loads(p) for t, p in listener.seen.items() if t.startswith("homeassistant/") and t.endswith("/config")}
        mine = {t: c for t, c in configs.items() if f"/roost_{nid}/" in t}
        components = sorted(check_discovery(t, c) for t, c in mine.items())
        assert components == ["binary_sensor"] + ["sensor"] * (len(SENSORS) + 1)  # the headline figures and firing alerts
        cpu = mine[f"homeassistant/sensor/roost_{nid}/cpu_percent/config"]
        assert cpu["state_topic"] == state_topic and cpu["unit_of_measurement"] == "%" and cpu["state_class"] == "measurement"
        assert cpu["value_template"] == "{{ value_json.cpu_percent }}"
        assert [a["topic"] for a in cpu["availability"]] == ["roost/status", f"roost/{nid}/availability"]
        assert cpu["device"]["identifiers"] == [f"roost_{nid}"] and cpu["device"]["name"] == "box" and cpu["device"]["manufacturer"] == "Roost"
        assert cpu["device"]["model"] == "Testix"
        assert mine[f"homeassistant/sensor/roost_{nid}/uptime_s/config"]["device_class"] == "duration"
        online = mine[f"homeassistant/binary_sensor/roost_{nid}/online/config"]
        assert online["device_class"] == "connectivity" and [a["topic"] for a in online["availability"]] == ["roost/status"]

        # A new report is published at once; an offline node says so and stops showing stale figures.
        await agent.send(agent.report(metrics={"linux_host.cpu_percent": 77.0}))
        await wait_until(lambda: (listener.json(state_topic) or {}).get("cpu_percent") == 77.0, 20, "the new figure")
        hub = client.app[HUB_KEY]
        hub._last_seen[nid] = time.time() - 3600
        hub._check_status(nid)
        await wait_until(lambda: listener.seen.get(f"roost/{nid}/availability") == b"offline", 20, "the node to go offline")
        gone = listener.json(state_topic)
        assert gone["online"] is False and gone["cpu_percent"] is None


async def test_each_node_publishes_its_firing_alert_count(make_hub, mosquitto):
    async with Listener(mosquitto.port) as listener:
        client, agent, bridge = await hub_with_node(make_hub, mosquitto.port)
        nid = agent.node_id
        state_topic = f"roost/{nid}/state"
        await wait_until(lambda: (listener.json(state_topic) or {}).get("alerts_firing") == 0, 20, "a state with no alert firing")
        config = await wait_until(lambda: listener.json(f"homeassistant/sensor/roost_{nid}/alerts_firing/config"), 20, "the alerts sensor's config")
        check_discovery(f"homeassistant/sensor/roost_{nid}/alerts_firing/config", config)
        assert config["value_template"] == "{{ value_json.alerts_firing }}" and config["state_topic"] == state_topic
        assert [a["topic"] for a in config["availability"]] == ["roost/status"]  # an offline node still has its alerts
        hub = client.app[HUB_KEY]
        await hub.alerts.raise_alert(source="test", node_id=nid, name="disk gone", summary="sdb vanished", severity="critical")
        await hub.alerts.raise_alert(source="test", node_id=nid, name="warm", summary="42 °C", severity="warning")
        state = await wait_until(lambda: (s := listener.json(state_topic)) and s.get("alerts_firing") == 2 and s, 20, "two firing alerts")
        assert state["alerts"] == {"critical": 1, "warning": 1}
        await hub.alerts.resolve_alert("test", nid, "disk gone")
        state = await wait_until(lambda: (s := listener.json(state_topic)) and s.get("alerts_firing") == 1 and s, 20, "one alert resolved")
        assert state["alerts"] == {"critical": 0, "warning": 1}


async def test_a_broker_that_was_down_gets_everything_again(make_hub, mosquitto):
    client, agent, bridge = await hub_with_node(make_hub, mosquitto.port)
    nid = agent.node_id
    first = bridge.connects
    mosquitto.stop()
    await wait_until(lambda: not bridge.connected.is_set(), 30, "the bridge to notice the broker is gone")
    # A report while the broker is away (retained messages die with this broker: persistence is off).
    await agent.send(agent.report(metrics={"linux_host.cpu_percent": 55.0}))
    await wait_until(lambda: agent.hub._metrics[nid].get("linux_host.cpu_percent") == 55.0, 10, "the report")
    mosquitto.start()
    await wait_until(lambda: bridge.connected.is_set() and bridge.connects > first, 60, "the bridge to reconnect")
    async with Listener(mosquitto.port) as listener:
        # Retained: a subscriber that comes later still gets every config and the latest state.
        await wait_until(lambda: (listener.json(f"roost/{nid}/state") or {}).get("cpu_percent") == 55.0, 20, "the state again")
        await wait_until(lambda: f"homeassistant/sensor/roost_{nid}/cpu_percent/config" in listener.seen, 20, "the configs again")
        assert listener.seen["roost/status"] == b"online"


async def test_a_clean_stop_says_offline(make_hub, mosquitto):
    client, agent, bridge = await hub_with_node(make_hub, mosquitto.port)
    async with Listener(mosquitto.port) as listener:
        await wait_until(lambda: listener.seen.get("roost/status") == b"online", 20, "the hub's status")
        await client.close()
        await wait_until(lambda: listener.seen.get("roost/status") == b"offline", 20, "the hub to say it is offline")


async def test_buttons_run_only_what_the_admin_exposed_through_the_job_path(make_hub, mosquitto):
    client, agent, bridge = await hub_with_node(
        make_hub, mosquitto.port, buttons=[{"node": "box", "action": "linux_host.ping", "params": {"count": 1}, "name": "Ping it"}]
    )
    hub = client.app[HUB_KEY]
    nid = agent.node_id
    # The node offers the action (as its hello would) and the admin grants its capability.
    hub.jobs.attach(nid, hub.connections[nid].send_str, [{"name": "linux_host.ping", "capability": "host.metrics.read", "timeout": 10}])
    resp = await client.put(f"/api/v1/nodes/{nid}/grants", json={"grants": ["host.metrics.read"]})
    assert resp.status == 200, await resp.text()
    async with Listener(mosquitto.port) as listener:
        topic = f"homeassistant/button/roost_{nid}/ping_it/config"
        await wait_until(lambda: topic in listener.seen, 20, "the button's config")
        button = json.loads(listener.seen[topic])
        check_discovery(topic, button)
        assert button["command_topic"] == f"roost/{nid}/button/ping_it" and button["payload_press"] == "PRESS"
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="presser") as presser:
            await presser.publish(f"roost/{nid}/button/not_exposed", b"PRESS", qos=1)
            await presser.publish(f"roost/{nid}/button/ping_it", b"PRESS", qos=1)
        while True:
            message = await agent.ws.receive_json(timeout=20)
            if message["type"] == "job":
                break
        assert message["action"] == "linux_host.ping" and message["params"] == {"count": 1}
        jobs = (await (await client.get("/api/v1/jobs")).json())["jobs"]
        assert [(j["action"], j["created_by"]) for j in jobs] == [("linux_host.ping", "mqtt:ping_it")]
