"""The docker integration's actions: container lifecycle, compose project restart, removal (destructive) and logs.

Every handler validates its parameters again (the agent already did; a
handler called some other way must not trust them), runs the blocking SDK in
a thread, and returns ``{"output": text, "state": the container as the
collector shows it}`` so the dashboard can show the new state at once.
Lifecycle actions are idempotent where the engine's answer allows: starting
a running container or stopping a stopped one succeeds without change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import voluptuous as vol

from roost.core.actions import MAX_OUTPUT_BYTES, ActionContext, ActionError, ActionRefused, ActionSpec

from .collector import describe_container
from .const import (
    ACTION_COMPOSE_RESTART,
    ACTION_IMAGE_PRUNE,
    ACTION_SYSTEM_PRUNE,
    ACTION_LOGS,
    ACTION_PAUSE,
    ACTION_REMOVE,
    ACTION_RESTART,
    ACTION_START,
    ACTION_STOP,
    ACTION_UNPAUSE,
    CAP_LOGS,
    CAP_MANAGE,
    CONF_API_TIMEOUT,
    CONF_SECRET_PATTERN,
    CONF_SHOW_ENV,
    CONF_URL,
    DEFAULT_API_TIMEOUT,
    DEFAULT_FOLLOW_SECONDS,
    DEFAULT_LOG_TAIL,
    DEFAULT_SECRET_PATTERN,
    DEFAULT_SHOW_ENV,
    DEFAULT_STOP_TIMEOUT,
    LABEL_COMPOSE_PROJECT,
    LOG_FLUSH_SECONDS,
    MAX_FOLLOW_SECONDS,
    MAX_LOG_TAIL,
    MAX_STOP_TIMEOUT,
)
from .engine import EngineUnreachable, connect, find_endpoint, unreachable
from .masking import Masker

_LOGGER = logging.getLogger(__name__)

# The agent sends at most 2000 characters per progress message.
PROGRESS_CHUNK_CHARS = 1900

# Where the integration keeps its collector (set by roost_setup) and a client of the actions' own.
DATA_COLLECTOR = "collector"
DATA_ACTION_CLIENT = "action_client"

# A container name or id as Docker allows them ([a-zA-Z0-9][a-zA-Z0-9_.-]+); nothing that could be a path or a flag.
CONTAINER_RE = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$"
# Compose project names: letters, digits, dashes and underscores (compose lower-cases them).
PROJECT_RE = r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}$"

CONTAINER = vol.All(str, vol.Match(CONTAINER_RE, msg="must be a container name or id (letters, digits, _ . -)"))
PROJECT = vol.All(str, vol.Match(PROJECT_RE, msg="must be a compose project name (letters, digits, _ -)"))
STOP_TIMEOUT = vol.All(int, vol.Range(min=0, max=MAX_STOP_TIMEOUT, msg=f"must be between 0 and {MAX_STOP_TIMEOUT} seconds"))

CONTAINER_SCHEMA = vol.Schema({vol.Required("container", description="container name or id"): CONTAINER})
STOP_SCHEMA = vol.Schema(
    {
        vol.Required("container", description="container name or id"): CONTAINER,
        vol.Optional("timeout", default=DEFAULT_STOP_TIMEOUT, description="seconds to wait before killing"): STOP_TIMEOUT,
    }
)
REMOVE_SCHEMA = vol.Schema(
    {
        vol.Required("container", description="container name or id"): CONTAINER,
        vol.Optional("force", default=False, description="kill it first if it runs"): bool,
        vol.Optional("volumes", default=False, description="also remove its anonymous volumes"): bool,
    }
)
COMPOSE_SCHEMA = vol.Schema(
    {
        vol.Required("project", description="compose project name"): PROJECT,
        vol.Optional("timeout", default=DEFAULT_STOP_TIMEOUT, description="seconds to wait before killing each container"): STOP_TIMEOUT,
    }
)
LOGS_SCHEMA = vol.Schema(
    {
        vol.Required("container", description="container name or id"): CONTAINER,
        vol.Optional("tail", default=DEFAULT_LOG_TAIL, description="lines from the end"): vol.All(
            int, vol.Range(min=1, max=MAX_LOG_TAIL, msg=f"must be between 1 and {MAX_LOG_TAIL} lines")
        ),
        vol.Optional("timestamps", default=False): bool,
        vol.Optional("since", description="unix time of the oldest line"): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("follow", default=False, description="keep sending new lines as progress"): bool,
        vol.Optional("follow_seconds", default=DEFAULT_FOLLOW_SECONDS, description="how long to follow"): vol.All(
            int, vol.Range(min=1, max=MAX_FOLLOW_SECONDS, msg=f"must be between 1 and {MAX_FOLLOW_SECONDS} seconds")
        ),
    }
)


# --------------------------------------------------------------------- helpers


def _validate(schema: vol.Schema, params: Any) -> dict[str, Any]:
    try:
        return schema(dict(params or {}))
    except (vol.Invalid, TypeError, ValueError) as err:
        raise ActionRefused(f"invalid parameters: {err}") from None


def _client(ctx: ActionContext) -> Any:
    """The collector's client when the integration is set up, else one of the actions' own from the config."""
    collector = ctx.data.get(DATA_COLLECTOR)
    if collector is not None and getattr(collector, "client", None) is not None:
        return collector.client
    client = ctx.data.get(DATA_ACTION_CLIENT)
    if client is None:
        endpoint = find_endpoint(ctx.config.get(CONF_URL))
        try:
            client = connect(endpoint, timeout=float(ctx.config.get(CONF_API_TIMEOUT, DEFAULT_API_TIMEOUT)), pool_size=4)
        except EngineUnreachable as err:
            raise ActionError(str(err)) from None
        ctx.data[DATA_ACTION_CLIENT] = client
    return client


def _masker(ctx: ActionContext) -> Masker:
    collector = ctx.data.get(DATA_COLLECTOR)
    if collector is not None and getattr(collector, "masker", None) is not None:
        return collector.masker
    return Masker(ctx.config.get(CONF_SECRET_PATTERN, DEFAULT_SECRET_PATTERN))


def _status(err: BaseException) -> int | None:
    return getattr(getattr(err, "response", None), "status_code", None)


def _explanation(err: BaseException) -> str:
    text = getattr(err, "explanation", None) or str(err)
    return str(text).strip()


def _get(client: Any, name: str) -> Any:
    import docker.errors

    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        raise ActionError(f"docker: no container named {name!r} on this host") from None


def _describe(ctx: ActionContext, container: Any) -> dict[str, Any]:
    container.reload()
    return describe_container(container.attrs, None, _masker(ctx), show_env=ctx.config.get(CONF_SHOW_ENV, DEFAULT_SHOW_ENV))


def _in_thread(ctx: ActionContext, work: Callable[[], dict[str, Any]]) -> Any:
    """Run blocking SDK work in a thread, turning engine errors into messages for the user."""

    def guarded() -> dict[str, Any]:
        import docker.errors

        try:
            return work()
        except (ActionError, ActionRefused):
            raise
        except docker.errors.APIError as err:
            raise ActionError(f"docker: {_explanation(err)}") from None
        except docker.errors.DockerException as err:
            raise ActionError(str(unreachable(err, find_endpoint(ctx.config.get(CONF_URL))))) from None
        except OSError as err:
            raise ActionError(str(unreachable(err, find_endpoint(ctx.config.get(CONF_URL))))) from None

    return asyncio.to_thread(guarded)


# ------------------------------------------------------------------ lifecycle

# verb -> (SDK call, states in which the call changes nothing, the 409 messages that mean "already so")
def _lifecycle(verb: str, call: Callable[[Any, dict[str, Any]], None], already: frozenset[str], conflict_ok: tuple[str, ...] = ()) -> Callable:
    async def handler(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        p = _validate(STOP_SCHEMA if verb in ("stop", "restart") else CONTAINER_SCHEMA, params)

        def work() -> dict[str, Any]:
            import docker.errors

            client = _client(ctx)
            container = _get(client, p["container"])
            before = container.status
            changed = True
            if before in already:
                changed = False
            else:
                try:
                    call(container, p)
                except docker.errors.APIError as err:
                    text = _explanation(err)
                    if _status(err) == 409 and any(s in text.lower() for s in conflict_ok):
                        changed = False
                    else:
                        raise ActionError(f"docker: cannot {verb} {container.name}: {text}") from None
            state = _describe(ctx, container)
            after = state["state"]
            if changed:
                output = f"{container.name}: {verb} done ({before} → {after})"
            else:
                output = f"{container.name}: already {after}; nothing to do"
            _LOGGER.info("docker: %s", output)
            return {"output": output, "changed": changed, "state": state}

        return await _in_thread(ctx, work)

    handler.__name__ = f"container_{verb}"
    return handler


container_start = _lifecycle("start", lambda c, p: c.start(), frozenset({"running"}))
container_stop = _lifecycle("stop", lambda c, p: c.stop(timeout=p["timeout"]), frozenset({"exited", "created", "dead"}))
# A restart is never "already done": each one is a new restart, so it is not idempotent.
container_restart = _lifecycle("restart", lambda c, p: c.restart(timeout=p["timeout"]), frozenset())
container_pause = _lifecycle("pause", lambda c, p: c.pause(), frozenset({"paused"}), ("already paused",))
container_unpause = _lifecycle("unpause", lambda c, p: c.unpause(), frozenset({"running", "exited", "created", "dead"}), ("is not paused",))


IMAGE_PRUNE_SCHEMA = vol.Schema({}, extra=vol.PREVENT_EXTRA)


async def image_prune(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Remove dangling images (untagged layers no container uses): what `docker image prune` does, never a tagged or used image."""
    _validate(IMAGE_PRUNE_SCHEMA, params)

    def work() -> dict[str, Any]:
        found = _client(ctx).images.prune(filters={"dangling": True}) or {}
        deleted = [d.get("Deleted") or d.get("Untagged") for d in found.get("ImagesDeleted") or [] if isinstance(d, dict)]
        reclaimed = int(found.get("SpaceReclaimed") or 0)
        output = f"docker: removed {len(deleted)} dangling image layer(s), {reclaimed} bytes reclaimed"
        _LOGGER.info("%s", output)
        return {"output": output, "deleted": [d for d in deleted if d], "space_reclaimed_bytes": reclaimed}

    return await _in_thread(ctx, work)


SYSTEM_PRUNE_SCHEMA = vol.Schema(
    {
        # Only what carries this label (key or key=value), as `docker system prune --filter label=...`.
        vol.Optional("label"): vol.All(str, vol.Match(r"^[A-Za-z0-9_.\-/]{1,128}(=[^\s,]{0,256})?\Z", msg="label is KEY or KEY=VALUE")),
    },
    extra=vol.PREVENT_EXTRA,
)


async def system_prune(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """What `docker system prune` removes: stopped containers, unused networks, dangling images and (without a
    label filter) the build cache; never a volume. Destructive (a stopped container's writable layer is gone),
    so it runs only with an operator's signed envelope for this action."""
    p = _validate(SYSTEM_PRUNE_SCHEMA, params)
    envelope = ctx.envelope
    if not envelope:
        raise ActionRefused("docker system prune removes stopped containers: it needs an operator's signed operation; none came with this job")
    if envelope.get("action") not in (None, ACTION_SYSTEM_PRUNE) or (envelope.get("params") or {}).get("label") != p.get("label"):
        raise ActionRefused("the signed operation is not this prune (another action or another label filter)")
    filters = {"label": [p["label"]]} if p.get("label") else {}

    def work() -> dict[str, Any]:
        client = _client(ctx)
        containers = client.containers.prune(filters=filters) or {}
        networks = client.networks.prune(filters=filters) or {}
        images = client.images.prune(filters={"dangling": True, **filters}) or {}
        cache = {} if filters else (client.api.prune_builds() or {})
        removed = {
            "containers": list(containers.get("ContainersDeleted") or []),
            "networks": list(networks.get("NetworksDeleted") or []),
            "images": [d.get("Deleted") or d.get("Untagged") for d in images.get("ImagesDeleted") or [] if isinstance(d, dict)],
        }
        reclaimed = sum(int(part.get("SpaceReclaimed") or 0) for part in (containers, images, cache))
        output = (
            f"docker: removed {len(removed['containers'])} stopped container(s), {len(removed['networks'])} network(s), "
            f"{len(removed['images'])} dangling image layer(s); {reclaimed} bytes reclaimed"
        )
        _LOGGER.info("%s", output)
        return {"output": output, "deleted": removed, "space_reclaimed_bytes": reclaimed}

    return await _in_thread(ctx, work)


async def container_remove(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Remove a container: destructive, so it runs only with the operator's signed envelope for this container."""
    p = _validate(REMOVE_SCHEMA, params)
    envelope = ctx.envelope
    if not envelope:
        raise ActionRefused("removing a container needs an operator's signed operation; none came with this job")
    # The agent verified the signature; this only makes sure it was for this very container.
    for bound in ((envelope.get("params") or {}).get("container"), envelope.get("target")):
        if bound is not None and bound != p["container"]:
            raise ActionRefused(f"the signed operation is for container {bound!r}, not {p['container']!r}")

    def work() -> dict[str, Any]:
        import docker.errors

        client = _client(ctx)
        container = _get(client, p["container"])
        name = container.name
        try:
            container.remove(force=p["force"], v=p["volumes"])
        except docker.errors.APIError as err:
            text = _explanation(err)
            if _status(err) == 409 and "running" in text.lower():
                raise ActionError(f"docker: {name} is running; stop it first or remove with force") from None
            raise ActionError(f"docker: cannot remove {name}: {text}") from None
        output = f"{name}: removed" + (" with its anonymous volumes" if p["volumes"] else "")
        _LOGGER.info("docker: %s", output)
        return {"output": output, "changed": True, "removed": True, "state": None}

    return await _in_thread(ctx, work)


async def compose_restart(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Restart every container of a compose project, one after another (as `docker compose restart` does)."""
    p = _validate(COMPOSE_SCHEMA, params)
    project = p["project"]

    def members() -> list[Any]:
        client = _client(ctx)
        found = client.containers.list(all=True, filters={"label": f"{LABEL_COMPOSE_PROJECT}={project}"})
        return sorted(found, key=lambda c: c.name)

    containers = await _in_thread(ctx, members)
    if not containers:
        raise ActionError(f"docker: no containers of compose project {project!r} on this host")
    states: list[dict[str, Any]] = []
    lines: list[str] = []
    for index, container in enumerate(containers, start=1):

        def restart(c: Any = container) -> dict[str, Any]:
            c.restart(timeout=p["timeout"])
            return _describe(ctx, c)

        state = await _in_thread(ctx, restart)
        states.append(state)
        lines.append(f"{state['name']}: restarted ({state['state']})")
        await ctx.progress(lines[-1], round(index / len(containers) * 100, 1))
    output = "\n".join(lines)
    _LOGGER.info("docker: compose project %s restarted (%d containers)", project, len(containers))
    return {"output": output, "changed": True, "containers": states, "state": states}


# ----------------------------------------------------------------------- logs


def _tail_bytes(data: bytes, limit: int = MAX_OUTPUT_BYTES) -> tuple[str, bool]:
    """The last `limit` bytes as text, starting at a line boundary; and whether anything was cut."""
    if len(data) <= limit:
        return data.decode("utf-8", "replace"), False
    cut = data[-limit:]
    newline = cut.find(b"\n")
    if 0 <= newline < len(cut) - 1:
        cut = cut[newline + 1 :]
    return cut.decode("utf-8", "replace"), True


async def container_logs(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """The tail of a container's log; with follow, new lines go out as progress until follow_seconds pass or the job is cancelled."""
    p = _validate(LOGS_SCHEMA, params)
    kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "tail": p["tail"], "timestamps": p["timestamps"]}
    if "since" in p:
        kwargs["since"] = p["since"]

    if not p["follow"]:

        def tail() -> dict[str, Any]:
            container = _get(_client(ctx), p["container"])
            data = container.logs(**kwargs)
            text, truncated = _tail_bytes(data)
            return {"output": text, "lines": text.count("\n"), "truncated": truncated, "container": container.name}

        return await _in_thread(ctx, tail)

    def open_stream() -> tuple[str, Any]:
        container = _get(_client(ctx), p["container"])
        return container.name, container.logs(stream=True, follow=True, **kwargs)

    name, stream = await _in_thread(ctx, open_stream)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def pump() -> None:
        try:
            for chunk in stream:
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
        except Exception as err:  # closing the stream ends the read with an error; that is the normal way out
            _LOGGER.debug("docker: log stream of %s ended: %s", name, err)
        finally:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except RuntimeError:  # the loop is gone: nobody is waiting any more
                pass

    reader = loop.run_in_executor(None, pump)
    collected = bytearray()
    pending = bytearray()
    deadline = loop.time() + p["follow_seconds"]
    ended = False

    def take(chunk: bytes) -> None:
        pending.extend(chunk)
        collected.extend(chunk)
        if len(collected) > 2 * MAX_OUTPUT_BYTES:
            del collected[: len(collected) - MAX_OUTPUT_BYTES]

    try:
        while not ended:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(queue.get(), min(remaining, LOG_FLUSH_SECONDS))
            except asyncio.TimeoutError:
                chunk = b""
            if chunk is None:
                ended = True
            elif chunk:
                take(chunk)
                # Send what has already arrived in one message rather than one per line.
                while not queue.empty() and len(pending) < 64 * 1024:
                    more = queue.get_nowait()
                    if more is None:
                        ended = True
                        break
                    take(more)
            if pending:
                text = bytes(pending).decode("utf-8", "replace")
                pending.clear()
                for message in progress_messages(text):
                    await ctx.progress(message, None)
    finally:
        # Closing the socket ends the blocked read in the pump thread.
        try:
            stream.close()
        except Exception:
            pass
        try:
            await asyncio.wait_for(asyncio.shield(reader), 5)
        except (asyncio.TimeoutError, Exception):
            pass
    text, _ = _tail_bytes(bytes(collected))
    lines = text.count("\n")
    why = "the container stopped" if ended else f"{p['follow_seconds']} s passed"
    return {
        # The lines went out as progress already; the result says how it ended instead of repeating them.
        "output": f"[followed the log of {name} until {why}: {lines} lines]\n",
        "lines": lines,
        "log": text,
        "container": name,
        "followed": True,
        "ended": ended,
    }


def progress_messages(text: str, limit: int = PROGRESS_CHUNK_CHARS) -> list[str]:
    """Log text as progress messages: whole lines, each message under the agent's progress size, without its last newline.

    The hub stores each progress message as one line of the job's output, so the
    newline that ends a message is its own.
    """
    messages: list[str] = []
    current = ""
    for line in text.splitlines():
        while len(line) > limit:
            if current:
                messages.append(current)
                current = ""
            messages.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if current and len(candidate) > limit:
            messages.append(current)
            current = line
        else:
            current = candidate
    if current:
        messages.append(current)
    return messages


# ---------------------------------------------------------------------- specs


# The dashboard offers the containers this host reports for a "container" parameter.
CONTAINER_PICKER = {"container": "docker.containers[].name"}


def action_specs() -> list[ActionSpec]:
    """Every action the docker integration offers; the agent runs one only if its capability is granted and within the ceiling."""
    return [
        ActionSpec(
            name=ACTION_START,
            capability=CAP_MANAGE,
            handler=container_start,
            schema=CONTAINER_SCHEMA,
            pickers=CONTAINER_PICKER,
            description="Start a stopped container.",
            idempotent=True,
            timeout=120,
        ),
        ActionSpec(
            name=ACTION_STOP,
            capability=CAP_MANAGE,
            handler=container_stop,
            schema=STOP_SCHEMA,
            pickers=CONTAINER_PICKER,
            description="Stop a running container (SIGTERM, then SIGKILL after the timeout).",
            idempotent=True,
            timeout=MAX_STOP_TIMEOUT + 60,
        ),
        ActionSpec(
            name=ACTION_RESTART,
            capability=CAP_MANAGE,
            handler=container_restart,
            schema=STOP_SCHEMA,
            pickers=CONTAINER_PICKER,
            description="Restart a container.",
            timeout=MAX_STOP_TIMEOUT + 60,
        ),
        ActionSpec(
            name=ACTION_PAUSE,
            capability=CAP_MANAGE,
            handler=container_pause,
            schema=CONTAINER_SCHEMA,
            pickers=CONTAINER_PICKER,
            description="Freeze every process of a running container.",
            idempotent=True,
            timeout=60,
        ),
        ActionSpec(
            name=ACTION_UNPAUSE,
            capability=CAP_MANAGE,
            handler=container_unpause,
            schema=CONTAINER_SCHEMA,
            pickers=CONTAINER_PICKER,
            description="Let a paused container run again.",
            idempotent=True,
            timeout=60,
        ),
        ActionSpec(
            name=ACTION_COMPOSE_RESTART,
            capability=CAP_MANAGE,
            handler=compose_restart,
            schema=COMPOSE_SCHEMA,
            pickers={"project": "docker.containers[].compose_project"},
            description="Restart every container of a compose project, one after another.",
            timeout=3600,
        ),
        ActionSpec(
            name=ACTION_REMOVE,
            capability=CAP_MANAGE,
            handler=container_remove,
            schema=REMOVE_SCHEMA,
            pickers=CONTAINER_PICKER,
            description="Remove a container (its writable layer is lost; named volumes stay).",
            destructive=True,
            target="container",
            timeout=180,
        ),
        ActionSpec(
            name=ACTION_IMAGE_PRUNE,
            capability=CAP_MANAGE,
            handler=image_prune,
            schema=IMAGE_PRUNE_SCHEMA,
            description="Remove dangling images (untagged layers no container uses), like docker image prune; reports the space reclaimed.",
            idempotent=True,
            timeout=600,
        ),
        ActionSpec(
            name=ACTION_SYSTEM_PRUNE,
            capability=CAP_MANAGE,
            handler=system_prune,
            schema=SYSTEM_PRUNE_SCHEMA,
            description="Remove stopped containers, unused networks, dangling images and the build cache, like docker system prune (volumes stay); needs an operator's signature.",
            destructive=True,
            target="label",
            timeout=900,
        ),
        ActionSpec(
            name=ACTION_LOGS,
            capability=CAP_LOGS,
            handler=container_logs,
            schema=LOGS_SCHEMA,
            pickers=CONTAINER_PICKER,
            description="Read the end of a container's log, and optionally follow it.",
            idempotent=True,
            timeout=MAX_FOLLOW_SECONDS + 60,
        ),
    ]


def close_action_client(data: dict[str, Any]) -> None:
    client = data.pop(DATA_ACTION_CLIENT, None)
    if client is not None:
        try:
            client.close()
        except Exception:
            pass


__all__ = ["DATA_COLLECTOR", "action_specs", "close_action_client"]
