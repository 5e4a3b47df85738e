"""Finding and connecting to the container engine (Docker or Podman's Docker-compatible API), and explaining why not."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .const import DEFAULT_SOCKET, DEFAULT_URL, PODMAN_SOCKETS

KIND_DOCKER = "docker"
KIND_PODMAN = "podman"

# Why the engine cannot be reached, as the setup hook needs to tell it apart.
MISSING = "missing"  # no socket file: no engine on this host (not available, not retried)
DENIED = "denied"  # the socket exists but this user may not use it (not available until the admin acts)
REFUSED = "refused"  # the socket or port exists but nobody answers (the engine may still be starting)
OTHER = "other"


class EngineUnreachable(Exception):
    """The engine cannot be reached; ``why`` is MISSING, DENIED, REFUSED or OTHER and the message says what to do."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


@dataclass(frozen=True)
class Endpoint:
    """Where the engine is, and whether the user chose it (config, DOCKER_HOST) or Roost found it."""

    url: str
    source: str  # "config", "DOCKER_HOST", "default", "podman"
    from_env: bool = False  # build the client from DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH

    @property
    def where(self) -> str:
        """The socket path for unix URLs (what a user greps for), else the URL."""
        for prefix in ("unix://", "http+unix://"):
            if self.url.startswith(prefix):
                return self.url[len(prefix) :]
        return self.url


def find_endpoint(url: str | None, env: Mapping[str, str] | None = None, exists: Any = os.path.exists) -> Endpoint:
    """The configured URL, else DOCKER_HOST, else Docker's socket, else a Podman socket that exists."""
    env = os.environ if env is None else env
    if url:
        return Endpoint(url, "config")
    if env.get("DOCKER_HOST"):
        return Endpoint(env["DOCKER_HOST"], "DOCKER_HOST", from_env=True)
    if exists(DEFAULT_SOCKET):
        return Endpoint(DEFAULT_URL, "default")
    runtime = env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    for template in PODMAN_SOCKETS:
        path = template.format(runtime=runtime)
        if exists(path):
            return Endpoint(f"unix://{path}", "podman")
    return Endpoint(DEFAULT_URL, "default")


def connect(endpoint: Endpoint, *, timeout: float, pool_size: int) -> Any:
    """A docker SDK client talking to the endpoint; raises EngineUnreachable with a user-facing message."""
    if endpoint.url.startswith("unix://"):
        socket_path = endpoint.url[len("unix://") :]
        try:
            os.stat(socket_path)
        except FileNotFoundError:
            # No engine here: say so without loading the SDK (requests, urllib3) into the agent.
            raise unreachable(FileNotFoundError(errno.ENOENT, "no such socket", socket_path), endpoint) from None
        except OSError:
            pass  # permission problems: the SDK's own error says which
    import docker

    try:
        if endpoint.from_env:
            return docker.DockerClient.from_env(timeout=timeout, max_pool_size=pool_size)
        return docker.DockerClient(base_url=endpoint.url, timeout=timeout, max_pool_size=pool_size)
    except Exception as err:  # the SDK wraps socket errors in several layers
        raise unreachable(err, endpoint) from err


def _os_error(err: BaseException) -> OSError | None:
    """The socket-level error buried in the SDK's (requests', urllib3's) exception chain."""
    seen: set[int] = set()
    todo: list[Any] = [err]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        todo.extend((current.__cause__, current.__context__, getattr(current, "reason", None)))
        todo.extend(a for a in current.args if isinstance(a, BaseException))
    return None


def classify(err: BaseException) -> str:
    found = _os_error(err)
    if found is None:
        return OTHER
    if found.errno in (errno.ENOENT, errno.ENOTDIR):
        return MISSING
    if found.errno in (errno.EACCES, errno.EPERM):
        return DENIED
    if found.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ETIMEDOUT):
        return REFUSED
    return OTHER


def unreachable(err: BaseException, endpoint: Endpoint) -> EngineUnreachable:
    """Turn an SDK error into what went wrong and what to do about it."""
    why = classify(err)
    where = endpoint.where
    if why == MISSING:
        if endpoint.source == "default":
            message = (
                f"docker: no engine socket at {where} (nor a Podman socket) — install Docker, start Podman's "
                "docker-compatible service (podman system service), or set integrations.docker.url"
            )
        else:
            message = f"docker: no engine socket at {where} (from {endpoint.source}) — check integrations.docker.url"
    elif why == DENIED:
        message = (
            f"docker: cannot reach {where} (permission denied) — add the roost user to the docker group "
            "or set integrations.docker.url"
        )
    elif why == REFUSED:
        message = f"docker: {where} refuses connections — is the engine (dockerd or podman) running?"
    else:
        detail = _os_error(err) or err
        message = f"docker: cannot talk to the engine at {where}: {_short(detail)}"
    return EngineUnreachable(message, why)


def _short(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def engine_kind(version: Mapping[str, Any]) -> str:
    """Podman answers /version with a "Podman Engine" component."""
    for component in version.get("Components") or ():
        if "podman" in str(component.get("Name", "")).lower():
            return KIND_PODMAN
    return KIND_DOCKER


def api_tuple(version: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(version).split("."))
    except ValueError:
        return (0,)
