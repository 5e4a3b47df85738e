"""Notifications end to end with real processes: a hub killed with SIGKILL while notifications are queued loses none
and sends none twice, and a real agent whose node goes silent gives exactly one firing and one resolved notification."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from support import wait_for
from support_notify import ThreadedWebhook
from support_procs import HubProc, Proc

pytestmark = pytest.mark.e2e


@pytest.fixture
def webhook():
    from support import free_port

    hook = ThreadedWebhook(free_port())
    yield hook
    hook.close()


def _pending(hub: HubProc, token: str) -> list[dict]:
    status, body = hub.api("GET", "/api/v1/alerts/outbox?state=pending", token)
    assert status == 200, body
    return body["outbox"]


def test_a_hub_killed_with_notifications_queued_loses_none_and_sends_none_twice(tmp_path: Path, webhook) -> None:
    # The hub's own node reports every second; a rule that always fires gives one alert per filesystem, grouped per node.
    hub = HubProc(tmp_path, '[agent]\ninterval = "1s"\n')
    token = hub.user_token("owner", "admin", "admin")
    hub.start()
    try:
        receiver = {
            "name": "hook", "kind": "notify.webhook", "settings": {"url": webhook.url}, "allow_private": True, "is_default": True,
            "route": {"rules": ["Always"], "group_wait": "1s", "group_by": ["alertname", "node"]},
        }
        assert hub.api("POST", "/api/v1/alerts/receivers", token, receiver)[0] == 201
        webhook.set_status(503)
        rule = {"name": "Always", "kind": "metric.threshold", "severity": "warning", "for": 0, "clear_for": 0,
                "settings": {"series": "linux_host.disk_used_percent[*]", "label": "mountpoint", "warning": 0, "warning_clear": -1}}
        status, body = hub.api("POST", "/api/v1/alerts/rules", token, rule)
        assert status == 201, body
        for n in range(10):
            status, body = hub.api("POST", "/api/v1/alerts/notifications", token, {"title": f"message {n}", "body": "queued while the receiver is down"})
            assert status == 202 and len(body["queued"]) == 1, body
        # Messages queued, the alert group flushed into the outbox, the head already tried and refused.
        wait_for(lambda: len(_pending(hub, token)) >= 11 and any(r["attempts"] for r in _pending(hub, token)), 60, "a queued, refused outbox")
    finally:
        hub.stop(signal.SIGKILL)
    before = {r["id"]: r["title"] for r in _rows(hub)}
    webhook.set_status(200)
    hub.start()
    try:
        def drained():
            rows = _pending(hub, token)
            return not rows and len(webhook.payloads()) >= len(before)

        wait_for(drained, 120, "every queued notification delivered after the restart")
        time.sleep(0)  # nothing more is due: any duplicate would have been sent in the same pass
        got = webhook.payloads()
        ids = [p["_id"] for p in got]
        assert len(ids) == len(set(ids)), f"sent twice: {sorted(ids)}"
        titles = [p["title"] for p in got]
        assert [t for t in titles if t.startswith("message ")] == [f"message {n}" for n in range(10)], "in order, each once"
        groups = [p for p in got if p["status"] == "firing"]
        assert groups and len({p["groupKey"] for p in groups}) == len(groups), "one firing notification per alert group"
        assert all(a["labels"]["alertname"] == "Always" for p in groups for a in p["alerts"])
        # Every row the killed hub had queued reached the receiver.
        assert set(before.values()) <= set(titles)
        status, dead = hub.api("GET", "/api/v1/alerts/outbox?state=dead", token)
        assert dead["outbox"] == []
    finally:
        hub.stop()


def _rows(hub: HubProc) -> list[dict]:
    import sqlite3

    db = sqlite3.connect(hub.data_dir / "roost.db")
    try:
        return [{"id": i, "title": json.loads(m)["title"]} for i, m in db.execute("SELECT id, message FROM notify_outbox ORDER BY id")]
    finally:
        db.close()


def test_a_real_agent_going_silent_gives_one_firing_and_one_resolved_notification(tmp_path: Path, webhook) -> None:
    hub = HubProc(tmp_path, 'stale_after = "2s"\noffline_after = "4s"\n[agent]\nenabled = false\n')
    token = hub.user_token("owner", "admin", "admin")
    hub.start()
    agent = None
    try:
        receiver = {"name": "hook", "kind": "notify.webhook", "settings": {"url": webhook.url}, "allow_private": True,
                    "route": {"rules": ["Node offline"], "group_wait": "0s", "group_interval": "1s"}}
        assert hub.api("POST", "/api/v1/alerts/receivers", token, receiver)[0] == 201
        join = hub.cli("join-token", "create", "--hub-url", hub.base).stdout.strip()
        agent_dir = tmp_path / "agent"
        conf = tmp_path / "agent.toml"
        conf.write_text('[agent]\ninterval = "1s"\nheartbeat = "1s"\n', encoding="utf-8")
        agent = Proc(["agent", "--data-dir", str(agent_dir), "--hub", hub.base, "--join", join, "--config", str(conf)], tmp_path / "agent.log")
        state = wait_for(lambda: json.loads((agent_dir / "agent.json").read_text()) if (agent_dir / "agent.json").exists() else None, 60, "enrolment")
        node_id = state["node_id"]
        wait_for(lambda: _node_status(hub, token, node_id) == "online", 60, "the agent's first report")
        agent.p.send_signal(signal.SIGSTOP)  # silent: no reports, no heartbeats, the socket still open
        wait_for(lambda: _statuses(webhook) == ["firing"], 90, "the node-offline notification")
        agent.p.send_signal(signal.SIGCONT)
        wait_for(lambda: _statuses(webhook) == ["firing", "resolved"], 90, "the resolved notification")
        # A one-off message through the same receiver after the resolve: the receiver's queue is delivered in order,
        # so once it arrives, anything the alert timer or the notifier queued before it has arrived too.
        status, _ = hub.api("POST", "/api/v1/alerts/notifications", token, {"title": "marker", "body": "end of test", "receivers": ["hook"]})
        assert status in (200, 201, 202), status
        wait_for(lambda: len(_statuses(webhook)) >= 3, 60, "the marker message")
        assert _statuses(webhook)[:2] == ["firing", "resolved"] and len(_statuses(webhook)) == 3, _statuses(webhook)
        firing, resolved = webhook.payloads()[:2]
        assert firing["alerts"][0]["labels"]["node"] == node_id and resolved["alerts"][0]["labels"]["node"] == node_id
        assert firing["alerts"][0]["fingerprint"] == resolved["alerts"][0]["fingerprint"]
    finally:
        if agent is not None:
            agent.p.send_signal(signal.SIGCONT)
            agent.stop()
        hub.stop()


def _node_status(hub: HubProc, token: str, node_id: str) -> str:
    status, body = hub.api("GET", f"/api/v1/nodes/{node_id}", token)
    return body["node"]["status"] if status == 200 else ""


def _statuses(webhook: ThreadedWebhook) -> list[str]:
    return [p["status"] for p in webhook.payloads()]
