"""Routing, grouping, repeats and resolve-once of alert notifications: the real alert engine writes alert_events, the real
notifier routes them into the real outbox, a real webhook on loopback receives them. One injected clock drives both
engines; the tests call ``Notifier.step`` (what its background task runs) after each move of the clock."""

from __future__ import annotations

import json

import pytest
from support import free_port
from support_auth import seed_user
from support_hub import FakeAgent, hub_config
from support_notify import WebhookReceiver, alert_event

from roost.core.hub.app import HUB_KEY, create_app


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def webhook():
    receiver = await WebhookReceiver(free_port()).start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def rig(aiohttp_client, tmp_path, webhook):
    config = hub_config(tmp_path)
    token = await seed_user(config, "admin", "admin")
    client = await aiohttp_client(create_app(config), headers={"Authorization": f"Bearer {token}"})
    hub = client.app[HUB_KEY]
    clock = Clock()
    hub.alerts.clock = clock
    await hub.notifications.stop()  # the tests drive it step by step on the injected clock
    hub.notifications.clock = clock
    return client, hub, clock


async def add_receiver(client, name: str, url: str, route: dict | None = None, **extra) -> None:
    body = {"name": name, "kind": "notify.webhook", "settings": {"url": url}, "allow_private": True, "route": route or {}, **extra}
    resp = await client.post("/api/v1/alerts/receivers", json=body)
    assert resp.status == 201, await resp.text()


async def at(hub, clock, when: float) -> None:
    clock.now = when
    for _ in range(20):  # deliver everything due now (each receiver's rows one after another)
        await hub.notifications.step()
        if not await hub.store.outbox_heads(clock.now):
            return
    raise AssertionError("the outbox did not drain")


def statuses(payload: dict) -> list[tuple[str, str]]:
    return [(a["labels"].get("mountpoint", a["labels"]["alertname"]), a["status"]) for a in payload["alerts"]]


async def test_grouping_group_interval_repeat_and_one_resolve_per_fired_alert(rig, webhook):
    client, hub, clock = rig
    t0 = clock.now
    route = {"group_by": ["node"], "group_wait": "30s", "group_interval": "5m", "repeat_interval": "1h", "max_repeats": 1}
    await add_receiver(client, "hook", webhook.url, route)
    await hub.alerts.raise_alert(source="test", node_id="n1", name="DiskFull", summary="/ is 96% full", severity="critical", labels={"mountpoint": "/"})
    await at(hub, clock, t0 + 10)
    await hub.alerts.raise_alert(source="test", node_id="n1", name="DiskSlow", summary="/srv is slow", severity="warning", labels={"mountpoint": "/srv"})
    await at(hub, clock, t0 + 29)
    assert webhook.received == [], "nothing goes out before group_wait"
    await at(hub, clock, t0 + 31)
    [first] = webhook.payloads()
    assert first["status"] == "firing" and statuses(first) == [("/", "firing"), ("/srv", "firing")]
    assert first["groupLabels"] == {"node": "n1"} and first["severity"] == "critical"
    assert first["title"].startswith("[FIRING:2] DiskFull, DiskSlow")

    clock.now = t0 + 100
    assert await hub.alerts.resolve_alert("test", "n1", "DiskFull", {"mountpoint": "/"})
    await at(hub, clock, t0 + 100)
    assert len(webhook.received) == 1, "a change waits for group_interval after the last notification"
    await at(hub, clock, t0 + 31 + 300)
    second = webhook.payloads()[1]
    assert statuses(second) == [("/", "resolved"), ("/srv", "firing")] or statuses(second) == [("/srv", "firing"), ("/", "resolved")]
    assert second["status"] == "firing"
    assert not await hub.alerts.resolve_alert("test", "n1", "DiskFull", {"mountpoint": "/"}), "resolved once, never twice"

    # Nothing changes: the firing alert is told again after repeat_interval, max_repeats times only.
    await at(hub, clock, t0 + 331 + 3600)
    third = webhook.payloads()[2]
    assert statuses(third) == [("/srv", "firing")]
    await at(hub, clock, t0 + 331 + 7300)
    assert len(webhook.received) == 3, "max_repeats 1: no second repeat"

    clock.now = t0 + 8000
    assert await hub.alerts.resolve_alert("test", "n1", "DiskSlow", {"mountpoint": "/srv"})
    await at(hub, clock, t0 + 8000)
    fourth = webhook.payloads()[3]
    assert fourth["status"] == "resolved" and statuses(fourth) == [("/srv", "resolved")]
    await at(hub, clock, t0 + 30_000)
    assert len(webhook.received) == 4
    resolved = [a["labels"]["mountpoint"] for p in webhook.payloads() for a in p["alerts"] if a["status"] == "resolved"]
    assert sorted(resolved) == ["/", "/srv"], "exactly one resolve notification per fired alert"
    assert await hub.store.notify_groups() == [], "a group with nothing left is gone"


async def test_a_silenced_alert_is_never_notified_firing_or_resolved(rig, webhook):
    client, hub, clock = rig
    t0 = clock.now
    await add_receiver(client, "hook", webhook.url, {"group_wait": "0s"})
    resp = await client.post(
        "/api/v1/alerts/silences",
        json={"matchers": [{"name": "alertname", "value": "Quiet"}], "ends_at": t0 + 600, "reason": "moving the NAS"},
    )
    assert resp.status == 201, await resp.text()
    await hub.alerts.raise_alert(source="test", node_id="n1", name="Quiet", summary="silenced", severity="critical")
    await at(hub, clock, t0 + 5)
    events = await hub.alerts.events_after(0)
    assert [(e["status"], e["silenced"]) for e in events] == [("firing", 1)]
    clock.now = t0 + 700  # the silence is over, the alert resolves: still nothing, it never fired for anyone
    await hub.alerts.resolve_alert("test", "n1", "Quiet")
    await at(hub, clock, t0 + 700)
    assert webhook.received == []


async def test_the_notifier_itself_refuses_a_resolve_for_an_alert_it_never_told(rig, webhook):
    # Even if an event log had one (an older engine, a bug): no resolve without a told, unsilenced firing.
    client, hub, clock = rig
    await add_receiver(client, "hook", webhook.url, {"group_wait": "0s"})
    changed: dict = {}
    hub.notifications._file(alert_event(1, "firing", instance="silent", silenced=True), clock.now, changed)
    hub.notifications._file(alert_event(2, "resolved", instance="silent", ends_at=clock.now), clock.now, changed)
    hub.notifications._file(alert_event(3, "resolved", instance="never-fired", ends_at=clock.now), clock.now, changed)
    assert changed == {}
    # Told once, resolved once: a second resolve of the same firing finds nothing left to tell.
    hub.notifications._file(alert_event(4, "firing", instance="told"), clock.now, changed)
    hub.notifications._file(alert_event(5, "resolved", instance="told", ends_at=clock.now), clock.now, changed)
    [(state, _)] = changed.values()
    snapshot = json.dumps(state, sort_keys=True)
    hub.notifications._file(alert_event(6, "resolved", instance="told", ends_at=clock.now + 5), clock.now, changed)
    assert json.dumps(next(iter(changed.values()))[0], sort_keys=True) == snapshot


async def test_routes_by_severity_rule_and_node_labels(rig, webhook, tmp_path):
    client, hub, clock = rig
    t0 = clock.now
    other = await WebhookReceiver(free_port()).start()
    lab = await WebhookReceiver(free_port()).start()
    try:
        agent = FakeAgent(client)
        await agent.enroll()
        attic = agent.node_id
        await hub.alerts.set_labels(attic, {"site": "attic"})
        await add_receiver(client, "critical-only", webhook.url, {"severities": ["critical"], "group_wait": "0s"})
        await add_receiver(client, "disk-rule", other.url, {"rules": ["DiskFull"], "group_wait": "0s"})
        await add_receiver(client, "attic", lab.url, {"node_labels": {"site": "attic"}, "group_wait": "0s"})
        await add_receiver(client, "messages", lab.url, {"alerts": False})
        await hub.alerts.raise_alert(source="test", node_id="n-elsewhere", name="DiskFull", summary="w", severity="warning", labels={"mountpoint": "/"})
        await hub.alerts.raise_alert(source="test", node_id=attic, name="MemoryHigh", summary="c", severity="critical")
        await at(hub, clock, t0 + 1)
        assert [p["groupLabels"]["alertname"] for p in webhook.payloads()] == ["MemoryHigh"]
        assert [p["groupLabels"]["alertname"] for p in other.payloads()] == ["DiskFull"]
        assert [(p["receiver"], p["groupLabels"]["alertname"]) for p in lab.payloads()] == [("attic", "MemoryHigh")]
    finally:
        await other.stop()
        await lab.stop()


async def test_a_receiver_down_for_an_hour_gets_everything_after_in_order_and_grouped(rig, webhook):
    client, hub, clock = rig
    t0 = clock.now
    await add_receiver(client, "hook", webhook.url, {"group_wait": "30s", "group_interval": "2m"}, is_default=True)
    webhook.status = 503
    await hub.alerts.raise_alert(source="test", node_id="n1", name="NodeOffline", summary="nas is offline", severity="critical")
    await hub.notifications.send(title="backup failed", body="restic exit 1")
    expected_titles = []
    for minute in range(0, 61):
        now = t0 + minute * 60
        clock.now = now
        if minute == 10:
            await hub.alerts.raise_alert(source="test", node_id="n2", name="NodeOffline", summary="pi is offline", severity="critical")
        if minute == 20:
            await hub.alerts.resolve_alert("test", "n1", "NodeOffline")
        if minute == 30:
            await hub.notifications.send(title="disk replaced", body="sdb")
        await hub.notifications.step()
    assert webhook.received == [] and webhook.refused >= 8, "backoff keeps trying all hour"
    queued = await hub.store.outbox_list(states=["pending"])
    assert not await hub.store.outbox_list(states=["dead"]), "an hour down is not dead"
    expected_titles = [r["message"]["title"] for r in sorted(queued, key=lambda r: r["id"])]
    assert len(expected_titles) == 5
    # Back: everything once, in the order it was queued.
    webhook.status = 200
    await at(hub, clock, t0 + 3600 + RETRY_WAIT)
    assert [p["title"] for p in webhook.payloads()] == expected_titles
    kinds = [(p["status"], p["groupLabels"].get("node", "")) for p in webhook.payloads()]
    # The one-off message was queued at once, each alert group after its group_wait or group_interval.
    assert kinds == [("info", ""), ("firing", "n1"), ("firing", "n2"), ("resolved", "n1"), ("info", "")]
    ids = [r["headers"]["X-Roost-Notification-Id"] for r in webhook.received]
    assert len(set(ids)) == len(ids)
    await at(hub, clock, t0 + 2 * 3600)
    assert len(webhook.received) == 5, "nothing is sent twice"


# Backoff is capped at 5 minutes (±10 %): back within that of the receiver coming back.
RETRY_WAIT = 330


async def test_a_notification_failing_for_a_day_is_dead_lettered_and_an_admin_can_retry_it(rig, webhook):
    client, hub, clock = rig
    t0 = clock.now
    await add_receiver(client, "hook", webhook.url, is_default=True)
    webhook.status = 500
    [first] = await hub.notifications.send(title="one", body="")
    [second] = await hub.notifications.send(title="two", body="")
    # The first dies 24 h after it was queued (give or take one capped, jittered backoff); the second, queued
    # behind it as long, dies after its own three tries. An hour more is ample for both.
    for step in range(0, 25 * 60, 5):
        clock.now = t0 + step * 60
        await hub.notifications.step()
    dead = await (await client.get("/api/v1/alerts/outbox?state=dead")).json()
    assert {d["id"] for d in dead["outbox"]} == {first, second}
    assert all("500" in d["last_error"] for d in dead["outbox"])
    page = await (await client.get("/notifications")).text()
    assert "2 dead" in page and "one" in page and 'data-retry="' in page
    webhook.status = 200
    resp = await client.post(f"/api/v1/alerts/outbox/{first}/retry")
    assert resp.status == 200
    await at(hub, clock, clock.now + 1)
    assert [p["title"] for p in webhook.payloads()] == ["one"]
    assert (await client.post("/api/v1/alerts/outbox/999999/retry")).status == 404


async def test_a_disabled_receiver_keeps_its_queue_until_it_is_enabled_again(rig, webhook):
    client, hub, clock = rig
    await add_receiver(client, "hook", webhook.url)
    assert (await client.patch("/api/v1/alerts/receivers/hook", json={"enabled": False})).status == 200
    await hub.notifications.send(title="while disabled", body="", receivers=["hook"])
    assert await hub.notifications.step() is None, "nothing is due for a disabled receiver (the worker sleeps, it does not spin)"
    assert webhook.received == []
    assert (await client.patch("/api/v1/alerts/receivers/hook", json={"enabled": True})).status == 200
    await at(hub, clock, clock.now)
    assert [p["title"] for p in webhook.payloads()] == ["while disabled"]
