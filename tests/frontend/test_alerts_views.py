"""The Alerts page, the alert badges of the overview and node page, and the overview's problems count, rendered by the real hub app."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from support import until
from support_auth import seed_user
from support_hub import FakeAgent, hub_config

from roost.core.hub.app import HUB_KEY, create_app

DISK = "linux_host.disk_used_percent[/srv]"
EVIL = '<img src=x onerror="alert(1)">'


@pytest.fixture
async def hub(aiohttp_client, tmp_path):
    config = hub_config(tmp_path)
    tokens = {role: await seed_user(config, f"{role}-user", role) for role in ("viewer", "operator", "admin")}
    client = await aiohttp_client(create_app(config))
    agent = FakeAgent(client)
    await agent.enroll()
    await agent.connect()
    return SimpleNamespace(client=client, tokens=tokens, agent=agent, app=client.app[HUB_KEY])


async def get(hub, path, role="admin"):
    resp = await hub.client.get(path, headers={"Authorization": f"Bearer {hub.tokens[role]}", "Accept": "text/html"})
    return resp.status, await resp.text()


async def fire_disk(hub, name="Disk full") -> dict:
    resp = await hub.client.post("/api/v1/alerts/rules", headers={"Authorization": f"Bearer {hub.tokens['admin']}"},
                                 json={"name": name, "kind": "metric.threshold", "severity": "critical", "settings": {"series": "linux_host.disk_used_percent[*]", "label": "mountpoint", "critical": 90}})
    assert resp.status == 201, await resp.text()
    await hub.agent.send(hub.agent.report(metrics={DISK: 97.0}))
    await hub.agent.expect("ack")
    return (await until(lambda: _firing(hub), 10, "the alert to fire"))[0]


async def _firing(hub):
    return [i for i in hub.app.alerts.live.values() if i["state"] == "firing"]


async def test_overview_counts_firing_alerts_as_problems_and_badges_the_card(hub):
    status, html = await get(hub, "/", role="viewer")
    assert status == 200 and 'data-testid="problems-count"' in html and 'data-count="0"' in html
    await fire_disk(hub)
    status, html = await get(hub, "/", role="viewer")
    assert '<a class="count problems-count" href="/alerts" data-problems data-count="1"' in html and "1</span><span class=\"count-word\"> problem<" in html
    assert 'data-field="alerts.firing" data-format="alerts" data-value="1"' in html and ">1 alert</a>" in html


async def test_node_page_shows_its_alerts_and_labels_editor_for_admins_only(hub):
    await fire_disk(hub)
    status, html = await get(hub, f"/nodes/{hub.agent.node_id}", role="viewer")
    assert status == 200 and 'data-testid="node-alerts"' in html and "Disk full" in html and "mountpoint=/srv" in html
    assert 'data-testid="labels-form"' not in html
    status, html = await get(hub, f"/nodes/{hub.agent.node_id}", role="admin")
    assert 'data-testid="labels-form"' in html


async def test_alerts_page_by_role_and_hostile_names_are_escaped(hub):
    inst = await fire_disk(hub, name=EVIL)
    status, html = await get(hub, "/alerts", role="viewer")
    assert status == 200
    assert f'data-instance-id="{inst["id"]}" data-state="firing"' in html
    assert EVIL not in html and "&lt;img src=x" in html
    # Viewers see, without controls.
    assert "data-alert-ack" not in html and 'data-testid="silence-form"' not in html and 'data-testid="rule-editor"' not in html
    status, html = await get(hub, "/alerts", role="operator")
    assert "data-alert-ack" in html and 'data-testid="silence-form"' in html and 'data-testid="rule-editor"' not in html
    status, html = await get(hub, "/alerts", role="admin")
    assert 'data-testid="rule-editor"' in html and 'data-testid="window-form"' in html
    for section in ("Now", "History", "Rules", "Silences", "Maintenance windows"):
        assert f">{section}</a>" in html
    # History filters only keep what they know.
    status, html = await get(hub, f"/alerts?state=firing&node_id={hub.agent.node_id}")
    assert status == 200 and f'data-instance-id="{inst["id"]}"' in html
    status, html = await get(hub, "/alerts?state=resolved")
    assert "No alerts match." in html
    status, _ = await get(hub, "/alerts?state=%3Cscript%3E")
    assert status == 200
