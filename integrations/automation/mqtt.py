"""The mqtt trigger's feed: subscribe to the configured topics and publish each message as an automation.mqtt event."""

from __future__ import annotations

import asyncio
import random
from typing import Any
from urllib.parse import urlsplit

from roost.core.hub_integration import HubContext

MAX_PAYLOAD = 64 * 1024


def start(ctx: HubContext) -> None:
    ctx.data["mqtt_task"] = asyncio.create_task(_follow(ctx), name="roost-automation-mqtt")


async def _follow(ctx: HubContext) -> None:
    try:
        import aiomqtt
    except ImportError:
        ctx.logger.error("automation: mqtt triggers need the mqtt extra (pip install 'roost[mqtt]')")
        return
    url = urlsplit(ctx.config["mqtt_url"])
    delay, warned = 1.0, False
    while True:
        try:
            async with aiomqtt.Client(hostname=url.hostname or "127.0.0.1", port=url.port or 1883, username=url.username, password=url.password) as client:
                for topic in ctx.config["mqtt_topics"]:
                    await client.subscribe(topic, qos=1)
                ctx.logger.info("automation: following MQTT topics %s", ", ".join(ctx.config["mqtt_topics"]))
                delay, warned = 1.0, False
                async for message in client.messages:
                    payload: Any = bytes(message.payload or b"")[:MAX_PAYLOAD].decode("utf-8", "replace")
                    ctx.events.publish("automation.mqtt", {"topic": str(message.topic), "payload": payload})
        except asyncio.CancelledError:
            raise
        except Exception as err:
            (ctx.logger.debug if warned else ctx.logger.error)("automation: MQTT broker %s: %s; retrying", url.netloc, err)
            warned = True
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(60.0, delay * 2)
