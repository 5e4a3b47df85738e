"""The docker actions against a real dockerd: each one changes the real container, and says so."""

from __future__ import annotations

import asyncio
import time

import pytest

from roost.core.actions import ActionError, ActionRefused, ActionSpec
from roost.integrations.docker.actions import (
    action_specs,
    compose_restart,
    container_logs,
    container_pause,
    container_remove,
    container_restart,
    container_start,
    container_stop,
    container_unpause,
    image_prune,
    system_prune,
)
from roost.integrations.docker.const import MASK

SECRET = "sup3r-s3cret"


def status(engine, name: str) -> str:
    return engine.client.containers.get(name).status


def test_every_action_is_a_valid_spec_with_a_form():
    specs = {s.name: s for s in action_specs()}
    assert set(specs) == {
        "docker.container.start",
        "docker.container.stop",
        "docker.container.restart",
        "docker.container.pause",
        "docker.container.unpause",
        "docker.container.remove",
        "docker.compose.restart",
        "docker.container.logs",
        "docker.image.prune",
        "docker.system.prune",
    }
    for spec in specs.values():
        assert isinstance(spec, ActionSpec)
        described = spec.describe()
        if spec.name == "docker.image.prune":
            assert described["params"] == [] and spec.idempotent and not spec.destructive  # dangling layers only: no one's data
            continue
        if spec.name == "docker.system.prune":
            assert spec.destructive and spec.target == "label" and spec.capability == "docker.manage"  # stopped containers go too
            continue
        assert described["params"] and described["params"][0]["name"] in ("container", "project")
        assert spec.capability == ("logs.read" if spec.name.endswith(".logs") else "docker.manage")
    remove = specs["docker.container.remove"]
    assert remove.destructive and remove.target == "container" and not remove.idempotent
    assert specs["docker.container.start"].idempotent and specs["docker.container.stop"].idempotent
    assert not specs["docker.container.restart"].idempotent and not specs["docker.compose.restart"].idempotent


async def test_the_integration_declares_its_actions_and_capabilities(start_docker, docker_engine):
    manager = await start_docker({"url": docker_engine.url})
    assert set(manager.capabilities()) == {"docker.read", "docker.manage", "logs.read"}
    actions = manager.actions()
    assert "docker.container.restart" in actions and actions["docker.container.restart"][0].domain == "docker"


async def test_stop_and_start_change_the_real_container_and_are_idempotent(docker_containers, action_ctx):
    engine = docker_containers
    box = engine.run(name=engine.name("life"), environment={"APP_SECRET": SECRET})
    ctx = action_ctx()

    stopped = await container_stop(ctx, {"container": box.name, "timeout": 0})
    assert status(engine, box.name) == "exited"
    assert stopped["changed"] is True and stopped["state"]["state"] == "exited"
    assert stopped["output"] == f"{box.name}: stop done (running → exited)"
    # The new state is the collector's shape, secrets masked.
    assert {"key": "APP_SECRET", "value": MASK, "masked": True} in stopped["state"]["env"]
    assert SECRET not in repr(stopped)

    again = await container_stop(ctx, {"container": box.name})
    assert again["changed"] is False and again["output"] == f"{box.name}: already exited; nothing to do"

    started = await container_start(ctx, {"container": box.name})
    assert status(engine, box.name) == "running" and started["changed"] is True
    assert (await container_start(ctx, {"container": box.id}))["changed"] is False


async def test_restart_gives_a_new_start_time(docker_containers, action_ctx):
    engine = docker_containers
    box = engine.run(name=engine.name("rst"))
    before = engine.client.api.inspect_container(box.id)["State"]["StartedAt"]
    result = await container_restart(action_ctx(), {"container": box.name, "timeout": 0})
    after = engine.client.api.inspect_container(box.id)["State"]["StartedAt"]
    assert after > before and status(engine, box.name) == "running"
    assert result["state"]["started_at"] > time.time() - 30 and result["changed"] is True


async def test_pause_and_unpause(docker_containers, action_ctx):
    engine = docker_containers
    box = engine.run(name=engine.name("frz"))
    ctx = action_ctx()
    assert (await container_pause(ctx, {"container": box.name}))["state"]["state"] == "paused"
    assert status(engine, box.name) == "paused"
    assert (await container_pause(ctx, {"container": box.name}))["changed"] is False
    with pytest.raises(ActionError, match="paused"):
        await container_start(ctx, {"container": box.name})
    assert (await container_unpause(ctx, {"container": box.name}))["changed"] is True
    assert status(engine, box.name) == "running"
    assert (await container_unpause(ctx, {"container": box.name}))["changed"] is False
    await container_stop(ctx, {"container": box.name, "timeout": 0})
    with pytest.raises(ActionError, match=f"cannot pause {box.name}: .*not running"):
        await container_pause(ctx, {"container": box.name})


async def test_remove_needs_the_signed_operation_for_that_container(docker_containers, action_ctx):
    engine = docker_containers
    box = engine.run(name=engine.name("rm"))
    other = engine.run(name=engine.name("keep"))
    params = {"container": box.name}
    with pytest.raises(ActionRefused, match="signed operation"):
        await container_remove(action_ctx(), params)
    with pytest.raises(ActionRefused, match=f"for container '{other.name}'"):
        await container_remove(action_ctx(envelope={"action": "docker.container.remove", "params": {"container": other.name}}), params)
    with pytest.raises(ActionRefused, match=f"for container '{other.name}'"):
        await container_remove(action_ctx(envelope={"params": params, "target": other.name}), params)
    envelope = {"action": "docker.container.remove", "params": params, "target": box.name}
    with pytest.raises(ActionError, match="is running; stop it first or remove with force"):
        await container_remove(action_ctx(envelope=envelope), params)
    assert status(engine, box.name) == "running"
    forced = {"container": box.name, "force": True}
    result = await container_remove(action_ctx(envelope={"action": "docker.container.remove", "params": forced}), forced)
    assert result == {"output": f"{box.name}: removed", "changed": True, "removed": True, "state": None}
    assert box.name not in [c.name for c in engine.client.containers.list(all=True)]
    assert status(engine, other.name) == "running"
    with pytest.raises(ActionError, match=f"no container named '{box.name}'"):
        await container_remove(action_ctx(envelope={"params": forced}), forced)


async def test_compose_restart_restarts_every_container_of_the_project(docker_containers, action_ctx):
    engine = docker_containers
    labels = {"com.docker.compose.project": "blog"}
    web = engine.run(name=engine.name("blog-web"), labels={**labels, "com.docker.compose.service": "web"})
    db = engine.run(name=engine.name("blog-db"), labels={**labels, "com.docker.compose.service": "db"})
    db.stop(timeout=0)
    outsider = engine.run(name=engine.name("other"), labels={"com.docker.compose.project": "other"})
    started = {c.name: engine.client.api.inspect_container(c.id)["State"]["StartedAt"] for c in (web, db, outsider)}
    ctx = action_ctx()
    result = await compose_restart(ctx, {"project": "blog", "timeout": 0})
    assert sorted(s["name"] for s in result["containers"]) == sorted([web.name, db.name])
    for box in (web, db):
        assert status(engine, box.name) == "running"
        assert engine.client.api.inspect_container(box.id)["State"]["StartedAt"] > started[box.name]
    assert engine.client.api.inspect_container(outsider.id)["State"]["StartedAt"] == started[outsider.name]
    assert [p for _, p in ctx.extra["progress"]] == [50.0, 100.0]
    with pytest.raises(ActionError, match="no containers of compose project 'nothing'"):
        await compose_restart(ctx, {"project": "nothing"})


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"container": "../etc"},
        {"container": "-rf"},
        {"container": "a b"},
        {"container": 5},
        {"container": "ok", "timeout": -1},
        {"container": "ok", "extra": 1},
    ],
)
async def test_bad_parameters_are_refused_before_the_engine_is_asked(params, action_ctx):
    with pytest.raises(ActionRefused, match="invalid parameters"):
        await container_stop(action_ctx(url="unix:///nonexistent.sock"), params)


async def test_an_unknown_container_is_a_clear_error(docker_engine, action_ctx):
    with pytest.raises(ActionError, match="docker: no container named 'ghost' on this host"):
        await container_start(action_ctx(), {"container": "ghost"})


async def test_no_engine_is_a_clear_error(action_ctx, tmp_path):
    with pytest.raises(ActionError, match="docker: no engine socket at"):
        await container_start(action_ctx(url=f"unix://{tmp_path}/none.sock"), {"container": "web"})


async def test_logs_tail(docker_containers, action_ctx):
    engine = docker_containers
    box = engine.run(["sh", "-c", "for i in $(seq 1 50); do echo line $i; done; sleep 0.5; echo oops >&2; exec sleep 3600"], name=engine.name("log"))
    engine.wait_for(lambda: b"oops" in box.logs(), what="the log lines")
    result = await container_logs(action_ctx(), {"container": box.name, "tail": 5})
    assert result["output"].splitlines() == ["line 47", "line 48", "line 49", "line 50", "oops"]
    assert result["lines"] == 5 and result["truncated"] is False and result["container"] == box.name
    stamped = await container_logs(action_ctx(), {"container": box.name, "tail": 1, "timestamps": True})
    assert stamped["output"].split(" ", 1)[1] == "oops\n" and stamped["output"][:2] == "20"


async def test_logs_follow_streams_new_lines_as_progress(docker_containers, action_ctx):
    engine = docker_containers
    box = engine.run(["sh", "-c", "echo first; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"], name=engine.name("follow"))
    engine.wait_for(lambda: b"tick 1" in box.logs(), what="the first tick")
    ctx = action_ctx()
    started = time.monotonic()
    result = await container_logs(ctx, {"container": box.name, "tail": 1, "follow": True, "follow_seconds": 2})
    took = time.monotonic() - started
    assert 1.9 <= took < 5
    streamed = "".join(message + "\n" for message, _ in ctx.extra["progress"])
    assert all(len(message) < 2000 and not message.endswith("\n") for message, _ in ctx.extra["progress"])
    ticks = [line for line in streamed.splitlines() if line.startswith("tick")]
    assert len(ticks) >= 5, streamed
    numbers = [int(t.split()[1]) for t in ticks]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # in order, none lost
    assert len(ctx.extra["progress"]) >= 3  # sent as they came, not all at the end
    assert result["followed"] is True and result["ended"] is False and result["log"] == streamed
    assert result["output"] == f"[followed the log of {box.name} until 2 s passed: {result['lines']} lines]\n"


async def test_a_cancelled_follow_closes_the_stream(docker_containers, action_ctx):
    import threading

    engine = docker_containers
    box = engine.run(["sh", "-c", "while true; do echo x; sleep 0.1; done"], name=engine.name("cancel"))
    ctx = action_ctx()
    before = threading.active_count()
    task = asyncio.create_task(container_logs(ctx, {"container": box.name, "follow": True, "follow_seconds": 600}))
    await asyncio.sleep(1.0)
    assert ctx.extra["progress"], "nothing streamed"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The reader ended: no thread is left inside the log pump, blocked on the socket.
    # (Pooled executor threads may stay, and may grow in number under load: count the pump, not threads.)
    def pumping() -> bool:
        import sys

        for frame in sys._current_frames().values():
            while frame is not None:
                if frame.f_code.co_name == "pump" and frame.f_code.co_filename.endswith("docker/actions.py"):
                    return True
                frame = frame.f_back
        return False

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pumping():
        await asyncio.sleep(0.1)
    assert not pumping()
    assert threading.active_count() >= 1 and before >= 1


async def test_logs_follow_ends_when_the_container_stops(docker_containers, action_ctx):
    engine = docker_containers
    box = engine.run(["sh", "-c", "echo bye; sleep 1"], name=engine.name("ends"))
    result = await container_logs(action_ctx(), {"container": box.name, "follow": True, "follow_seconds": 30})
    assert result["ended"] is True and "bye" in result["log"] and "until the container stopped" in result["output"]


def test_progress_messages_keep_whole_lines_under_the_agent_limit():
    from roost.integrations.docker.actions import progress_messages

    assert progress_messages("a\nb\nc\n", limit=3) == ["a\nb", "c"]
    assert progress_messages("x" * 7 + "\ny\n", limit=3) == ["xxx", "xxx", "x\ny"]
    assert progress_messages("") == []


async def test_image_prune_removes_dangling_images_and_keeps_tagged_ones(docker_containers, action_ctx):
    engine = docker_containers
    box = engine.run(["sh", "-c", "echo one > /layer; sleep 600"], name=engine.name("prn"))
    repo = "local/prune-test"
    old = box.commit(repository=repo, tag="v")
    box.exec_run(["sh", "-c", "echo two >> /layer"])
    new = box.commit(repository=repo, tag="v")  # the tag moves: the first image is dangling now
    try:
        assert old.id != new.id and not engine.client.images.get(old.id).tags
        result = await image_prune(action_ctx(), {})
        assert old.id in result["deleted"] and result["space_reclaimed_bytes"] >= 0, result
        assert engine.client.images.get(new.id).tags == [f"{repo}:v"]  # tagged: kept
        assert engine.client.images.get(engine.image).tags  # the base image is in use and tagged: kept
        import docker.errors

        with pytest.raises(docker.errors.ImageNotFound):
            engine.client.images.get(old.id)
        with pytest.raises(ActionRefused):
            await image_prune(action_ctx(), {"all": True})  # only dangling ones, ever
    finally:
        box.remove(force=True)
        engine.client.images.remove(new.id, force=True)


async def test_system_prune_needs_a_signature_and_removes_only_what_it_was_signed_for(docker_containers, action_ctx):
    import uuid

    import docker.errors

    engine = docker_containers
    mark = f"roost-prune-{uuid.uuid4().hex[:8]}"
    stopped = engine.run(["true"], name=engine.name("sp"), labels={mark: "1"}, detach=True)
    other = engine.run(["true"], name=engine.name("keep"), detach=True)  # stopped too, but not labelled
    running = engine.run(["sleep", "600"], name=engine.name("run"), labels={mark: "1"}, detach=True)
    net = engine.client.networks.create(engine.name("net"), labels={mark: "1"})
    try:
        for box in (stopped, other):
            box.wait(timeout=30)
        params = {"label": mark}
        with pytest.raises(ActionRefused, match="signed operation"):
            await system_prune(action_ctx(), params)
        with pytest.raises(ActionRefused, match="not this prune"):
            await system_prune(action_ctx(envelope={"action": "docker.system.prune", "params": {"label": "other"}}), params)
        with pytest.raises(ActionRefused, match="not this prune"):
            await system_prune(action_ctx(envelope={"action": "docker.image.prune", "params": params}), params)
        with pytest.raises(ActionRefused, match="invalid parameters"):
            await system_prune(action_ctx(envelope={"action": "docker.system.prune", "params": {}}), {"label": "a b"})
        result = await system_prune(action_ctx(envelope={"action": "docker.system.prune", "params": params}), params)
        assert stopped.id in result["deleted"]["containers"] and net.name in result["deleted"]["networks"], result
        with pytest.raises(docker.errors.NotFound):
            engine.client.containers.get(stopped.id)
        assert engine.client.containers.get(running.id).status == "running"  # in use: kept
        assert engine.client.containers.get(other.id)  # not what the prune was signed for: kept
    finally:
        for box in (stopped, other, running):
            try:
                box.remove(force=True)
            except docker.errors.NotFound:
                pass
        try:
            net.remove()
        except docker.errors.NotFound:
            pass
