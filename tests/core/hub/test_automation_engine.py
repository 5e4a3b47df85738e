"""The automation engine on a real hub app and SQLite file, fed by an agent speaking the real protocol: triggers, conditions,
control steps, run modes, resume after a restart, chains, the config-dir files and the YAML/TOML views."""

from __future__ import annotations

import time

import aiohttp
import pytest
from support import until
from support_auth import seed_user
from support_hub import FakeAgent, hub_config

from roost.core.hub.app import HUB_KEY, create_app
from roost.core.hub.events import Event
from roost.core.hub_integration import TriggerState
from roost.integrations.automation.triggers import CRON, NODE_STATUS, cron, node_status

DISK = "linux_host.disk_used_percent[/srv]"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Hub:
    """One hub app (restartable on the same files), an operator and a viewer token, one connected agent."""

    def __init__(self, aiohttp_client, tmp_path, **hub) -> None:
        self.make = aiohttp_client
        self.config = hub_config(tmp_path, **hub)
        self.client = None
        self.agent: FakeAgent | None = None

    async def start(self) -> Hub:
        self.operator = await seed_user(self.config, "op", "operator")
        self.viewer = await seed_user(self.config, "viewer", "viewer")
        await self.open()
        self.agent = FakeAgent(self.client)
        await self.agent.enroll()
        assert (await self.agent.connect())["type"] == "welcome"
        return self

    async def open(self) -> None:
        self.client = await self.make(create_app(self.config), headers=auth(self.operator))

    async def restart(self) -> None:
        await self.client.close()
        await self.open()

    @property
    def hub(self):
        return self.client.server.app[HUB_KEY]

    async def report(self, value: float) -> None:
        await self.agent.send(self.agent.report(metrics={DISK: value}))
        await self.agent.expect("ack")

    async def create(self, definition: dict) -> dict:
        resp = await self.client.post("/api/v1/automations", json={"definition": definition})
        assert resp.status == 201, await resp.text()
        return await resp.json()

    async def runs(self, automation_id: str, state: str | None = None) -> list[dict]:
        body = await (await self.client.get(f"/api/v1/automations/{automation_id}/runs")).json()
        return [r for r in body["runs"] if state is None or r["state"] == state]

    async def run(self, automation_id: str, **body) -> dict:
        resp = await self.client.post(f"/api/v1/automations/{automation_id}/run", json=body)
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()

    async def run_state(self, run_id: str, *states: str) -> dict:
        async def reached():
            body = await (await self.client.get(f"/api/v1/automation-runs/{run_id}")).json()
            return body if body.get("state") in states else None

        return await until(reached, 20, f"run {run_id} to be {'/'.join(states)}")


@pytest.fixture
async def rig(aiohttp_client, tmp_path):
    return await Hub(aiohttp_client, tmp_path).start()


def approval_steps(summary: str = "ok?") -> list[dict]:
    return [{"wait_for_approval": {"summary": summary, "timeout": "10m"}}, {"variables": {"done": True}}]


async def test_a_metric_past_the_line_for_the_duration_starts_one_run_per_crossing(rig):
    await rig.create(
        {"id": "full", "name": "full", "mode": "parallel", "triggers": [{"kind": "metric", "series": "linux_host.disk_used_percent[*]", "above": 90, "for": "1s"}],
         "steps": [{"variables": {"where": "{{ trigger.instance }}", "value": "{{ trigger.value }}"}}]}
    )
    await rig.report(95)
    assert await rig.runs("full") == []  # not yet: it must stay above for 1 s
    [run] = await until(lambda: rig.runs("full", "succeeded"), 20, "the run after 1 s above the line")
    assert run["trigger"]["node_id"] == rig.agent.node_id and run["trigger"]["labels"] == {"instance": "/srv", "mountpoint": "/srv"}
    assert run["variables"]["where"] == "/srv" and run["variables"]["value"] == 95
    await rig.report(96)  # still above: no second run
    await rig.report(40)  # back below
    await rig.report(97)  # a new crossing
    await until(lambda: _count(rig, "full", 2), 20, "the second crossing's run")
    assert len(await rig.runs("full")) == 2


async def _count(rig, automation_id, n):
    return len(await rig.runs(automation_id, "succeeded")) == n


async def test_conditions_gate_a_run_and_say_which_one_failed(rig):
    await rig.create(
        {"id": "gated", "name": "gated", "triggers": [{"kind": "manual"}],
         "conditions": [{"or": [{"labels": {"env": "prod"}}, {"not": {"node_online": True}}]},
                        {"metric": {"series": DISK, "above": 50}}],
         "steps": [{"stop": "gated through"}]}
    )
    await rig.report(60)
    skipped = await rig.run("gated", trigger={"node_id": rig.agent.node_id, "labels": {"env": "dev"}})
    assert skipped["state"] == "skipped" and "conditions[0]" in skipped["error"] and "none of" in skipped["error"], skipped
    passed = await rig.run("gated", trigger={"node_id": rig.agent.node_id, "labels": {"env": "prod"}})
    assert (await rig.run_state(passed["id"], "stopped"))["error"] == "gated through"
    await rig.report(20)
    low = await rig.run("gated", trigger={"node_id": rig.agent.node_id, "labels": {"env": "prod"}})
    assert low["state"] == "skipped" and "conditions[1]" in low["error"] and "not above 50" in low["error"], low


async def test_choose_if_variables_and_stop(rig):
    await rig.create(
        {"id": "flow", "name": "flow", "triggers": [{"kind": "manual"}], "variables": {"limit": 3},
         "steps": [
             {"variables": {"n": "{{ trigger.n }}"}},
             {"choose": [{"conditions": [{"template": "{{ n > limit }}"}], "steps": [{"variables": {"size": "big"}}]}], "default": [{"variables": {"size": "small"}}]},
             {"if": [{"template": "{{ size == 'big' }}"}], "then": [{"stop": "too big: {{ n }}"}], "else": [{"variables": {"ok": True}}]},
         ]}
    )
    small = await rig.run_state((await rig.run("flow", trigger={"n": 2}))["id"], "succeeded")
    assert small["variables"]["size"] == "small" and small["variables"]["ok"] is True
    big = await rig.run_state((await rig.run("flow", trigger={"n": 9}))["id"], "stopped")
    assert big["variables"]["size"] == "big" and big["error"] == "too big: {{ n }}"
    assert [t["path"] for t in big["trace"]] == ["steps[0]", "steps[1]", "steps[1].choose[0].steps[0]", "steps[2]", "steps[2].then[0]"]


async def test_queued_restart_and_parallel_modes(rig):
    await rig.create({"id": "q", "name": "q", "mode": "queued", "max": 1, "triggers": [{"kind": "manual"}], "steps": approval_steps()})
    first = await rig.run("q")
    await rig.run_state(first["id"], "waiting")
    second = await rig.run("q")
    assert second["state"] == "queued"
    third = await rig.run("q")
    assert third["state"] == "skipped" and "queue" in third["error"]
    [approval] = await rig.hub.store.list_approvals(run_id=first["id"])
    await rig.hub.automations.decide(approval.approval_id, approve=True, actor="user:op")
    await rig.run_state(first["id"], "succeeded")
    await rig.run_state(second["id"], "waiting")  # the queued one starts when the first ends

    await rig.create({"id": "r", "name": "r", "mode": "restart", "triggers": [{"kind": "manual"}], "steps": approval_steps()})
    one = await rig.run("r")
    await rig.run_state(one["id"], "waiting")
    two = await rig.run("r")
    assert (await rig.run_state(one["id"], "cancelled"))["error"].endswith("restarted by a new trigger (mode restart)")
    await rig.run_state(two["id"], "waiting")
    assert [a.state for a in await rig.hub.store.list_approvals(run_id=one["id"])] == ["cancelled"]

    await rig.create({"id": "p", "name": "p", "mode": "parallel", "max": 2, "triggers": [{"kind": "manual"}], "steps": approval_steps()})
    a, b = await rig.run("p"), await rig.run("p")
    await rig.run_state(a["id"], "waiting")
    await rig.run_state(b["id"], "waiting")
    c = await rig.run("p")
    assert c["state"] == "skipped" and "max 2" in c["error"]


async def test_a_delay_that_ended_while_the_hub_was_down_goes_on_at_once_after_the_restart(rig):
    await rig.create({"id": "d", "name": "d", "triggers": [{"kind": "manual"}], "steps": [{"delay": "1s"}, {"variables": {"after": True}}]})
    run = await rig.run("d")
    waiting = await rig.run_state(run["id"], "waiting")
    await rig.client.close()
    until_at = waiting["trace"][0]["started_at"] + 1
    await until(lambda: _past(until_at + 1.5), 10, "the delay to end while the hub is down")
    await rig.open()
    done = await rig.run_state(run["id"], "succeeded")
    assert done["variables"]["after"] is True and "late" in done["trace"][0]["message"], done["trace"]


async def _past(moment: float) -> bool:
    return time.time() > moment


async def test_wait_for_trigger_goes_on_with_the_event_or_stops_at_the_timeout(rig):
    await rig.create(
        {"id": "w", "name": "w", "triggers": [{"kind": "manual"}],
         "steps": [{"wait_for_trigger": {"trigger": {"kind": "metric", "series": DISK, "below": 50}, "timeout": "20s"}}, {"variables": {"seen": "{{ wait.trigger.value }}"}}]}
    )
    run = await rig.run("w")
    await rig.run_state(run["id"], "waiting")
    await rig.report(30)
    done = await rig.run_state(run["id"], "succeeded")
    assert done["variables"]["seen"] == 30
    await rig.create(
        {"id": "w2", "name": "w2", "triggers": [{"kind": "manual"}],
         "steps": [{"wait_for_trigger": {"trigger": {"kind": "metric", "series": DISK, "above": 99}, "timeout": "1s"}}, {"variables": {"never": True}}]}
    )
    stopped = await rig.run_state((await rig.run("w2"))["id"], "stopped")
    assert "timed out" in stopped["error"] and "never" not in stopped["variables"]


async def test_a_webhook_url_starts_a_run_without_a_login_and_only_the_right_secret_does(rig):
    created = await rig.create({"id": "hook", "name": "hook", "triggers": [{"kind": "webhook"}], "steps": [{"variables": {"who": "{{ trigger.body.who }}"}}]})
    url = created["webhook_url"]
    assert url.startswith("/api/v1/automations/webhook/") and len(url.rsplit("/", 1)[1]) >= 32
    viewer_view = await (await rig.client.get("/api/v1/automations/hook", headers=auth(rig.viewer))).json()
    assert "webhook_url" not in viewer_view  # the secret is for operators
    async with aiohttp.ClientSession() as anon:  # no Authorization header, no cookie
        wrong = await anon.post(str(rig.client.make_url(url[:-4] + "xxxx")), json={"who": "mallory"})
        assert wrong.status == 404
        resp = await anon.post(str(rig.client.make_url(url)), json={"who": "cron-box"})
        assert resp.status == 202, await resp.text()
        run_id = (await resp.json())["run"]
    done = await rig.run_state(run_id, "succeeded")
    assert done["variables"]["who"] == "cron-box"


async def test_a_chain_longer_than_max_depth_is_refused_and_audited(rig):
    await rig.create({"id": "first", "name": "first", "triggers": [{"kind": "manual"}], "steps": [{"action": "raise_alert", "with": {"node": rig.agent.node_id, "name": "chain", "summary": "step one"}}]})
    await rig.create({"id": "second", "name": "second", "max_depth": 0, "triggers": [{"kind": "alert", "rule": "*chain*"}], "steps": [{"stop": "should not run"}]})
    run = await rig.run("first")
    await rig.run_state(run["id"], "succeeded")
    [refused] = await until(lambda: rig.runs("second", "skipped"), 20, "the chained run to be refused")
    assert "chain too deep" in refused["error"] and refused["cause"]["automation"] == "first", refused
    audited = [e for e in await rig.hub.store.list_audit(limit=200) if e.action == "automation.loop_refused"]
    assert audited and audited[0].details["cause"]["run"] == run["id"]


async def test_automations_from_the_config_dir_in_yaml_and_toml_and_a_bad_file_says_where(aiohttp_client, tmp_path):
    setup = Hub(aiohttp_client, tmp_path)
    folder = setup.config.data_dir / "automations"
    folder.mkdir(parents=True)
    (folder / "nightly.yaml").write_text("name: Nightly\ntriggers:\n  - kind: cron\n    cron: '0 1 * * *'\nsteps:\n  - stop: done\n")
    (folder / "wake.toml").write_text('name = "Wake"\n[[triggers]]\nkind = "manual"\n[[steps]]\ndelay = "1s"\n')
    (folder / "broken.yaml").write_text("name: Broken\ntriggers:\n  - kind: cron\n    cron: 'every night'\nsteps:\n  - stop: x\n")
    rig = await setup.start()
    body = await (await rig.client.get("/api/v1/automations")).json()
    assert {a["id"]: a["source"] for a in body["automations"]} == {"nightly": "file:nightly.yaml", "wake": "file:wake.toml"}
    [bad] = body["file_errors"]
    assert bad["source"] == "broken.yaml" and bad["errors"][0]["path"] == "triggers[0].cron" and "cron expression" in bad["errors"][0]["message"]
    resp = await rig.client.put("/api/v1/automations/nightly", json={"definition": {"name": "x", "triggers": [{"kind": "manual"}], "steps": [{"stop": "x"}]}})
    assert resp.status == 409 and "nightly.yaml" in (await resp.json())["error"]


async def test_the_raw_view_round_trips_between_yaml_and_toml(rig):
    text = "name: Round trip\ntriggers:\n  - kind: manual\nsteps:\n  - delay: 5m\n  - action: notify\n    with:\n      title: hi\n"
    body = await (await rig.client.post("/api/v1/automations/validate", json={"text": text, "format": "yaml"})).json()
    assert body["ok"], body
    toml_text = body["texts"]["toml"]
    again = await (await rig.client.post("/api/v1/automations/validate", json={"text": toml_text, "format": "toml"})).json()
    assert again["ok"] and again["definition"] == body["definition"]
    assert again["definition"]["steps"][0]["delay"] == 300
    broken = await (await rig.client.post("/api/v1/automations/validate", json={"text": "name: [unclosed", "format": "yaml"})).json()
    assert not broken["ok"] and broken["errors"][0]["path"].startswith("line ")
    viewer = await rig.client.post("/api/v1/automations/validate", json={"text": text}, headers=auth(rig.viewer))
    assert viewer.status == 403


def test_cron_fires_once_per_scheduled_time():
    memo: dict = {}

    def state(now):
        return TriggerState(memo=memo, now=now, automation_id="a", metrics=lambda n: {}, status=lambda n: "online")

    start = 1_700_000_000.0
    settings = CRON({"cron": "*/5 * * * *"})
    assert cron(settings, Event("automation.tick", {}), state(start)) is None  # learns its next time
    scheduled = memo["next"]
    assert cron(settings, Event("automation.tick", {}), state(scheduled - 1)) is None
    fired = cron(settings, Event("automation.tick", {}), state(scheduled + 0.5))
    assert fired == {"scheduled_at": scheduled, "cron": "*/5 * * * *"}
    assert cron(settings, Event("automation.tick", {}), state(scheduled + 1.5)) is None
    assert memo["next"] - scheduled == 300


def test_node_status_fires_on_a_change_not_on_the_first_sight():
    memo: dict = {}
    state = TriggerState(memo=memo, now=0, automation_id="a", metrics=lambda n: {}, status=lambda n: "online")
    settings = NODE_STATUS({"to": "offline"})
    assert node_status(settings, Event("node", {"id": "n1", "status": "online"}), state) is None
    assert node_status(settings, Event("node", {"id": "n1", "status": "stale"}), state) is None
    fired = node_status(settings, Event("node", {"id": "n1", "status": "offline", "name": "nas"}), state)
    assert fired["node_id"] == "n1" and fired["from"] == "stale" and fired["to"] == "offline"


async def test_an_mqtt_message_on_a_followed_topic_starts_a_run(aiohttp_client, tmp_path):
    import shutil

    from support import need
    from support_mqtt import Mosquitto

    from roost.core.config import load_hub_config

    aiomqtt = pytest.importorskip("aiomqtt")
    need(shutil.which("mosquitto") is not None, "mosquitto (apt-get install mosquitto)")
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        config = load_hub_config(
            None,
            overrides={
                "hub": {"data_dir": str(tmp_path / "hub"), "discovery": False},
                "agent": {"enabled": False},
                "integrations": {"automation": {"mqtt_url": f"mqtt://127.0.0.1:{broker.port}", "mqtt_topics": ["home/#"]}},
            },
        )
        token = await seed_user(config, "op", "operator")
        client = await aiohttp_client(create_app(config), headers=auth(token))
        resp = await client.post("/api/v1/automations", json={"definition": {
            "id": "door", "name": "door", "mode": "parallel",
            "triggers": [{"kind": "mqtt", "topic": "home/+/door", "payload": "open"}],
            "steps": [{"variables": {"where": "{{ trigger.topic }}"}}]}})
        assert resp.status == 201, await resp.text()

        async def runs():
            body = await (await client.get("/api/v1/automations/door/runs")).json()
            return [r for r in body["runs"] if r["state"] == "succeeded"]

        async def publish(topic: str, payload: str) -> None:
            async with aiomqtt.Client(hostname="127.0.0.1", port=broker.port) as pub:
                await pub.publish(topic, payload.encode(), qos=1)

        # The hub subscribes once it is connected; keep publishing (bounded) until the first message is seen.
        async def seen():
            await publish("home/hall/window", "open")  # another topic: never a run
            await publish("home/hall/door", "closed")  # another payload: never a run
            await publish("home/hall/door", "open")
            return await runs()

        found = await until(seen, 30, "a run for the door message")
        assert {r["variables"]["where"] for r in found} == {"home/hall/door"}
    finally:
        broker.stop()


async def test_the_low_disk_blueprint_takes_a_docker_prune_or_an_allowlisted_command(rig):
    resp = await rig.client.post("/api/v1/automations/blueprints/low_disk", json={"inputs": {"id": "prune", "cleanup": "docker_image_prune", "threshold": 85}})
    assert resp.status == 201, await resp.text()
    definition = (await (await rig.client.get("/api/v1/automations/prune")).json())["definition"]
    cleanup = next(s for s in definition["steps"] if s.get("id") == "cleanup")
    assert cleanup["with"]["action"] == "docker.image.prune"
    assert definition["triggers"][0]["series"] == "linux_host.disk_used_percent[*]" and definition["throttle"]["per"] == "node"
    resp = await rig.client.post("/api/v1/automations/blueprints/low_disk", json={"inputs": {"id": "system", "cleanup": "docker_system_prune", "threshold": 85}})
    assert resp.status == 201, await resp.text()
    definition = (await (await rig.client.get("/api/v1/automations/system")).json())["definition"]
    assert next(s for s in definition["steps"] if s.get("id") == "cleanup")["with"]["action"] == "docker.system.prune"
    resp = await rig.client.post("/api/v1/automations/blueprints/low_disk", json={"inputs": {"threshold": 85}})
    body = await resp.json()
    assert resp.status == 400 and body["errors"][0]["path"] == "cleanup_command", body
    resp = await rig.client.post("/api/v1/automations/blueprints/low_disk", json={"inputs": {"cleanup_command": "x", "threshold": 150}})
    assert resp.status == 400 and (await resp.json())["errors"][0]["path"] == "threshold"


async def test_maintenance_windows_and_silences_hold_a_run_back(rig):
    admin = await seed_user(rig.config, "root", "admin")
    node_id = rig.agent.node_id
    await rig.create({"id": "m", "name": "m", "mode": "parallel", "triggers": [{"kind": "manual"}], "conditions": [{"not_in_maintenance": True}, {"not_silenced": True}], "steps": [{"stop": "went"}]})
    trigger = {"node_id": node_id, "labels": {"mountpoint": "/srv"}}
    assert (await rig.run_state((await rig.run("m", trigger=trigger))["id"], "stopped"))["error"] == "went"
    resp = await rig.client.post("/api/v1/alerts/silences", json={"matchers": [{"name": "mountpoint", "value": "/srv"}], "ends_at": time.time() + 600, "reason": "resizing"})
    assert resp.status == 201, await resp.text()
    silenced = await rig.run("m", trigger=trigger)
    assert silenced["state"] == "skipped" and "silence" in silenced["error"], silenced
    other = await rig.run("m", trigger={"node_id": node_id, "labels": {"mountpoint": "/home"}})
    assert (await rig.run_state(other["id"], "stopped"))["error"] == "went"  # the silence covers /srv only
    resp = await rig.client.post("/api/v1/alerts/maintenance", headers=auth(admin), json={"name": "always", "cron": "* * * * *", "duration": 3600, "matchers": [{"name": "node", "value": node_id}]})
    assert resp.status == 201, await resp.text()
    held = await rig.run("m", trigger={"node_id": node_id, "labels": {"mountpoint": "/home"}})
    assert held["state"] == "skipped" and "maintenance window" in held["error"], held


async def test_an_approval_that_expired_while_the_hub_was_down_ends_the_run_as_expired(rig):
    await rig.create({"id": "late", "name": "late", "triggers": [{"kind": "manual"}], "steps": [{"wait_for_approval": {"summary": "ok?", "timeout": "10s"}}, {"variables": {"ran": True}}]})
    run = await rig.run("late")
    waiting = await rig.run_state(run["id"], "waiting")
    [approval] = waiting["approvals"]
    await rig.client.close()
    await until(lambda: _past(approval["expires_at"] + 6), 30, "the approval to expire while the hub is down")
    await rig.open()
    done = await rig.run_state(run["id"], "expired")
    assert "while the hub was down" in done["error"] and "ran" not in done["variables"], done
    resp = await rig.client.post(f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"})
    assert resp.status == 403  # an API token never decides, expired or not


async def test_an_integrations_event_starts_a_run_and_a_disabled_automation_hears_nothing(rig):
    created = await rig.create(
        {"id": "ev", "name": "ev", "mode": "parallel",
         "triggers": [{"kind": "event", "event": "docker.container.*", "match": {"state": "unhealthy"}}, {"kind": "webhook"}],
         "steps": [{"variables": {"who": "{{ trigger.container | default('hook') }}"}}]}
    )
    rig.hub.publish("docker.container.health", {"container": "web", "state": "healthy"})
    rig.hub.publish("docker.container.health", {"container": "db", "state": "unhealthy"})
    [run] = await until(lambda: rig.runs("ev", "succeeded"), 20, "the unhealthy event's run")
    assert run["variables"]["who"] == "db" and run["trigger"]["event"] == "docker.container.health"
    resp = await rig.client.post("/api/v1/automations/ev/disable")
    assert resp.status == 200 and (await resp.json())["enabled"] is False
    rig.hub.publish("docker.container.health", {"container": "cache", "state": "unhealthy"})
    async with aiohttp.ClientSession() as anon:
        hook = await anon.post(str(rig.client.make_url(created["webhook_url"])), json={})
        assert hook.status == 404  # a disabled automation's URL answers like an unknown one
    assert (await rig.client.post("/api/v1/automations/ev/enable")).status == 200
    rig.hub.publish("docker.container.health", {"container": "queue", "state": "unhealthy"})
    await until(lambda: _count(rig, "ev", 2), 20, "the run after enabling again")
    assert sorted(r["variables"]["who"] for r in await rig.runs("ev")) == ["db", "queue"]  # nothing while disabled


async def test_guessing_webhook_urls_gets_the_address_banned(rig):
    created = await rig.create({"id": "guarded", "name": "guarded", "triggers": [{"kind": "webhook"}], "steps": [{"stop": "ran"}]})
    async with aiohttp.ClientSession() as anon:
        for i in range(20):
            resp = await anon.post(str(rig.client.make_url(f"/api/v1/automations/webhook/guess-{i:02d}")), json={})
            assert resp.status == 404
        banned = await anon.post(str(rig.client.make_url(created["webhook_url"])), json={})
        assert banned.status == 429 and "try again" in (await banned.json())["error"]  # even the right URL, from that address
    assert await rig.runs("guarded") == []
    audited = [e for e in await rig.hub.store.list_audit(limit=100) if e.action == "automation.webhook_banned"]
    assert audited and audited[0].outcome == "refused"
