"""A thin blocking client over proxmoxer: token auth, per-request timeouts under a deadline, host failover, clear errors."""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .const import (
    CONF_API_TIMEOUT,
    CONF_CA_FILE,
    CONF_HOST,
    CONF_PORT,
    CONF_TOKEN_ID,
    CONF_TOKEN_SECRET,
    CONF_TOKEN_SECRET_FILE,
    CONF_VERIFY_SSL,
    DEFAULT_API_TIMEOUT,
    DEFAULT_LOCAL_HOST,
    DEFAULT_PORT,
    PVE_LOCAL_CA,
)
from .errors import CONNECTION_KINDS, KIND_DEADLINE, KIND_TIMEOUT, ProxmoxApiError, translate

_LOGGER = logging.getLogger(__name__)

TOKEN_ID_RE = re.compile(r"^(?P<user>[^\s@!:]+@[^\s@!:]+)!(?P<name>[A-Za-z][A-Za-z0-9._-]*)$")
# Node names and storage ids as Proxmox allows them; anything else never goes into a URL path.
NODE_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$")
STORAGE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*[A-Za-z0-9]$")
UPID_RE = re.compile(r"^UPID:(?P<node>[^:]+):[0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+:(?P<type>[^:]*):(?P<id>[^:]*):(?P<user>[^:]*):.*$")
# Below this much time left a request is not worth starting.
MIN_REQUEST_SECONDS = 0.05
# proxmoxer logs whole request bodies and responses at INFO/DEBUG (its loggers sit at WARNING unless someone
# turns them up); a response that echoes a header back would carry the secret into the log.
THIRD_PARTY_LOGGERS = ("proxmoxer.core", "proxmoxer.backends.https", "urllib3.connectionpool")


class _SecretRedactor(logging.Filter):
    """Replaces every registered token secret with *** in the records of the HTTP libraries' loggers.

    Logging filters hang on process-wide loggers, so this one is process-wide too; it only ever removes text.
    """

    def __init__(self) -> None:
        super().__init__("roost-proxmox-redactor")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            clean = message
            for secret in self.secrets:
                clean = clean.replace(secret, "***")
            if clean != message:
                record.msg, record.args = clean, None
        return True


_REDACTOR = _SecretRedactor()


def _guard_logs(secret: str) -> None:
    if secret and len(secret) >= 4:
        _REDACTOR.secrets.add(secret)
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


class ConfigError(ValueError):
    """The integration's config cannot make a working client (a missing secret file, a bad token id)."""


@dataclass(frozen=True)
class ApiSettings:
    """Where and how to reach one Proxmox API (PVE or PBS). ``secret`` never leaves this process."""

    hosts: tuple[str, ...]
    port: int
    token_id: str
    secret: str = field(repr=False)
    verify: bool | str = True
    timeout: float = DEFAULT_API_TIMEOUT
    service: str = "PVE"

    @property
    def user(self) -> str:
        return self.token_id.partition("!")[0]

    @property
    def token_name(self) -> str:
        return self.token_id.partition("!")[2]

    @property
    def label(self) -> str:
        """The product name for messages."""
        return "Proxmox Backup Server" if self.service == "PBS" else "Proxmox"

    def public(self) -> dict[str, Any]:
        """What may be shown anywhere: everything but the secret."""
        return {"hosts": list(self.hosts), "port": self.port, "token_id": self.token_id, "verify_ssl": self.verify is not False}


def read_secret(config: Mapping[str, Any], where: str) -> str | None:
    """The token secret from ``token_secret`` or ``token_secret_file``; None when neither is set."""
    secret = config.get(CONF_TOKEN_SECRET)
    path = config.get(CONF_TOKEN_SECRET_FILE)
    if secret:
        return str(secret).strip()
    if not path:
        return None
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8").strip()
        mode = file.stat().st_mode
    except OSError as err:
        raise ConfigError(f"{where}.{CONF_TOKEN_SECRET_FILE}: cannot read {file}: {err.strerror or err}") from None
    if not text:
        raise ConfigError(f"{where}.{CONF_TOKEN_SECRET_FILE}: {file} is empty")
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        _LOGGER.warning("%s.%s: %s is readable by other users; chmod 600 it", where, CONF_TOKEN_SECRET_FILE, file)
    return text


def settings_from_config(
    config: Mapping[str, Any],
    *,
    where: str = "integrations.proxmox",
    service: str = "PVE",
    default_port: int = DEFAULT_PORT,
    local_default: bool = True,
) -> ApiSettings | None:
    """ApiSettings from a validated config table; None when no token is configured (not set up)."""
    token_id = config.get(CONF_TOKEN_ID)
    secret = read_secret(config, where)
    if not token_id and not secret:
        return None
    if not token_id:
        raise ConfigError(f"{where}.{CONF_TOKEN_ID} is missing: set it to USER@REALM!TOKENID, e.g. roost@pve!monitor")
    if not TOKEN_ID_RE.match(str(token_id)):
        raise ConfigError(f"{where}.{CONF_TOKEN_ID} must look like USER@REALM!TOKENID, e.g. roost@pve!monitor")
    if not secret:
        raise ConfigError(f"{where}: set {CONF_TOKEN_SECRET} or {CONF_TOKEN_SECRET_FILE} for the token {token_id}")
    hosts = config.get(CONF_HOST) or ()
    if isinstance(hosts, str):
        hosts = (hosts,)
    local = False
    if not hosts:
        if not local_default:
            raise ConfigError(f"{where}.{CONF_HOST} is missing")
        # An agent on a Proxmox node talks to its own API.
        hosts = (DEFAULT_LOCAL_HOST,)
        local = True
    verify: bool | str = bool(config.get(CONF_VERIFY_SSL, True))
    ca_file = config.get(CONF_CA_FILE)
    if verify and ca_file:
        verify = str(Path(ca_file).expanduser())
    elif verify and local and service == "PVE" and os.path.isfile(PVE_LOCAL_CA):
        verify = PVE_LOCAL_CA
    return ApiSettings(
        hosts=tuple(str(h) for h in hosts),
        port=int(config.get(CONF_PORT) or default_port),
        token_id=str(token_id),
        secret=secret,
        verify=verify,
        timeout=float(config.get(CONF_API_TIMEOUT, DEFAULT_API_TIMEOUT)),
        service=service,
    )


def decode_upid(upid: str) -> dict[str, str] | None:
    """The node, type and id of a task from its UPID, or None when it is not one."""
    match = UPID_RE.match(upid or "")
    return match.groupdict() if match else None


class ProxmoxClient:
    """Blocking calls to one Proxmox API, for a worker thread; one client per thread of work.

    Every call takes ``what`` (the words for an error message). A deadline set
    with ``deadline_in`` shortens each request's timeout to the time left and
    refuses to start one when none is left, so a slow API ends a collection
    on time instead of stalling it.
    """

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        _guard_logs(settings.secret)
        self._index = 0
        self._api: Any = None
        self._api_host: str | None = None
        self._deadline: float | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ProxmoxClient({self.settings.service} {self.host}:{self.settings.port} as {self.settings.token_id})"

    @property
    def host(self) -> str:
        return self.settings.hosts[self._index]

    # ------------------------------------------------------------- deadline

    def deadline_in(self, seconds: float | None) -> None:
        """Calls after ``seconds`` from now raise a deadline error; None removes the deadline."""
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def time_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    # ---------------------------------------------------------------- calls

    def get(self, path: str, *, what: str, node: str | None = None, **params: Any) -> Any:
        return self._call("GET", path, what=what, node=node, params=params)

    def post(self, path: str, *, what: str, node: str | None = None, **data: Any) -> Any:
        return self._call("POST", path, what=what, node=node, params=data)

    def delete(self, path: str, *, what: str, node: str | None = None, **params: Any) -> Any:
        return self._call("DELETE", path, what=what, node=node, params=params)

    def close(self) -> None:
        with self._lock:
            self._close_api()

    def _close_api(self) -> None:
        if self._api is not None:
            try:
                self._api._store["session"].close()
            except Exception:  # closing a pool that is already gone is not worth a traceback
                pass
        self._api = None
        self._api_host = None

    def _connection(self, timeout: float) -> Any:
        from proxmoxer import ProxmoxAPI

        if self._api is None or self._api_host != self.host:
            self._close_api()
            s = self.settings
            self._api = ProxmoxAPI(
                self.host,
                port=s.port,
                service=s.service,
                user=s.user,
                token_name=s.token_name,
                token_value=s.secret,
                verify_ssl=s.verify,
                timeout=timeout,
            )
            self._api_host = self.host
        # proxmoxer reads the timeout from its auth object at every request.
        auth = getattr(getattr(self._api, "_backend", None), "auth", None)
        if auth is not None:
            auth.timeout = timeout
        return self._api

    def _timeout(self, what: str) -> float:
        left = self.time_left()
        if left is None:
            return self.settings.timeout
        if left < MIN_REQUEST_SECONDS:
            raise ProxmoxApiError(
                f"{self.settings.label}: no time left to {what} this cycle — the API answers slowly", kind=KIND_DEADLINE
            )
        return min(self.settings.timeout, left)

    def _call(self, method: str, path: str, *, what: str, node: str | None, params: dict[str, Any]) -> Any:
        params = {k: v for k, v in params.items() if v is not None}
        tried = 0
        with self._lock:
            while True:
                timeout = self._timeout(what)
                try:
                    api = self._connection(timeout)
                    resource = api(path)
                    if method == "GET":
                        return resource.get(**params)
                    if method == "POST":
                        return resource.post(**params)
                    return resource.delete(**params)
                except Exception as err:
                    error = translate(
                        err,
                        what=what,
                        token_id=self.settings.token_id,
                        host=self.host,
                        port=self.settings.port,
                        secret=self.settings.secret,
                        timeout=timeout,
                        node=node,
                        service=self.settings.label,
                    )
                tried += 1
                # Another host of the cluster may answer; a write that timed out may have run, so it is not repeated.
                retry = error.kind in CONNECTION_KINDS and tried < len(self.settings.hosts)
                if method != "GET" and error.kind == KIND_TIMEOUT:
                    retry = False
                if not retry:
                    raise error
                _LOGGER.info("%s; trying %s next", error, self.settings.hosts[(self._index + 1) % len(self.settings.hosts)])
                self._index = (self._index + 1) % len(self.settings.hosts)
