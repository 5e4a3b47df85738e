"""TOML configuration for the hub and the agent: one optional file per role, validated before anything starts."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voluptuous as vol

from .capabilities import CEILING_SCHEMA, Ceiling
from .const import (
    DEFAULT_COLLECT_INTERVAL,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HUB_BIND,
    DEFAULT_HUB_PORT,
    DEFAULT_OFFLINE_AFTER,
    DEFAULT_SPOOL_MAX_REPORTS,
    DEFAULT_STALE_AFTER,
)

ENV_DATA_DIR = "ROOST_DATA_DIR"
# Comma-separated interface addresses for zeroconf when the config names none;
# "off" turns discovery off. Containers and test runs set it.
ENV_DISCOVERY_INTERFACES = "ROOST_DISCOVERY_INTERFACES"
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
LOG_LEVELS = ["debug", "info", "warning", "error"]


class ConfigError(Exception):
    """A config file that cannot be used; the message names the key and what is allowed."""


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1h', '7d', '1.5h' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise vol.Invalid("expected a duration such as 30s, 5m, 1h or 7d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise vol.Invalid("expected a duration such as 30s, 5m, 1h or 7d")
    if seconds < 0:
        raise vol.Invalid("duration must not be negative")
    return seconds


def duration(min_s: float = 0.0, max_s: float = 10 * 365 * 86400) -> vol.All:
    def check(value: Any) -> float:
        seconds = parse_duration(value)
        if not min_s <= seconds <= max_s:
            raise vol.Invalid(f"must be between {_fmt(min_s)} and {_fmt(max_s)}")
        return seconds

    return vol.All(check)


def _fmt(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _ip_address(value: str) -> str:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise vol.Invalid("must be an IP address of this host's interface, e.g. 192.168.1.10") from None
    return value


def _wol_address(value: Any) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(value.strip() if isinstance(value, str) else value))
    except ValueError:
        raise vol.Invalid("must be an IP address, e.g. 255.255.255.255 or the LAN's broadcast address 192.168.1.255") from None


def _network(value: str) -> str:
    import ipaddress

    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise vol.Invalid("must be an IP address or network of a reverse proxy, e.g. 192.168.1.5 or 10.0.0.0/24") from None
    return value.strip()


def _operator_key(value: Any) -> str:
    from .signing import valid_operator_key

    try:
        return valid_operator_key(value)
    except ValueError as err:
        raise vol.Invalid(str(err)) from None


# Base64 Ed25519 public keys from `roost operator keygen`: who may sign destructive operations.
_OPERATOR_KEYS = vol.All([_operator_key], vol.Length(max=16, msg="at most 16 operator keys"))
_PORT = vol.All(int, vol.Range(min=1, max=65535, msg="must be a port number between 1 and 65535"))
_PATHS = [vol.All(str, vol.Length(min=1))]
_LOGGING = vol.Schema(
    {vol.Optional("level", default="info"): vol.All(str, vol.Lower, vol.In(LOG_LEVELS, msg=f"must be one of {', '.join(LOG_LEVELS)}"))}
)
_INTEGRATIONS = vol.Schema({vol.Match(r"^[a-z][a-z0-9_]{0,63}$", msg="integration names are lower_snake_case"): dict})

_AGENT_TABLE = {
    vol.Optional("interval", default=DEFAULT_COLLECT_INTERVAL): duration(0.2, 3600),
    vol.Optional("heartbeat", default=DEFAULT_HEARTBEAT_INTERVAL): duration(1, 600),
    vol.Optional("spool_max_reports", default=DEFAULT_SPOOL_MAX_REPORTS): vol.All(int, vol.Range(min=10, max=10_000_000)),
    vol.Optional("custom_integrations", default=list): _PATHS,
    vol.Optional("name", default=""): vol.All(str, vol.Length(max=100)),
    # The host owner's limit on what the hub may ever have run here.
    vol.Optional("ceiling", default=dict): CEILING_SCHEMA,
    # Announce this agent over zeroconf while it waits to be paired.
    vol.Optional("discovery", default=True): bool,
    vol.Optional("discovery_interfaces", default=list): [vol.All(str, _ip_address)],
    # Operator public keys this host accepts signatures from, besides those learned at pairing.
    vol.Optional("operator_keys", default=list): _OPERATOR_KEYS,
    # Labels alert rules select nodes by (env = "prod"); labels set on the hub win over these.
    vol.Optional("labels", default=dict): vol.All(
        dict,
        vol.Length(max=32, msg="at most 32 labels"),
        {vol.All(str, vol.Match(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}\Z", msg="must be a label name: a letter or _, then letters, digits, _ . -")): vol.All(str, vol.Length(max=200))},
    ),
}

_TOPIC_PART = vol.All(str, vol.Match(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$", msg="must be topic words of A-Z a-z 0-9 _ - joined by /, without wildcards"))
# Home Assistant over MQTT (docs/home-assistant.md); off while url is empty.
_MQTT = vol.Schema(
    {
        vol.Optional("url", default=""): vol.All(
            str, vol.Match(r"^(mqtts?://[^\s/:@]+(:\d{1,5})?/?)?$", msg="must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (credentials go in username and password_file)")
        ),
        vol.Optional("username", default=""): vol.All(str, vol.Length(max=200)),
        vol.Optional("password_file", default=""): str,
        vol.Optional("ca_file", default=""): str,
        vol.Optional("discovery_prefix", default="homeassistant"): _TOPIC_PART,
        vol.Optional("base_topic", default="roost"): _TOPIC_PART,
        vol.Optional("client_id", default=""): vol.All(str, vol.Length(max=64)),
        # Actions an admin puts on Home Assistant as buttons; a press runs them as a job, through the normal checks.
        vol.Optional("buttons", default=list): [
            vol.Schema(
                {
                    vol.Required("node"): vol.All(str, vol.Length(min=1, max=200)),
                    vol.Required("action"): vol.All(str, vol.Match(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", msg="must be an action name such as docker.container.restart")),
                    vol.Optional("params", default=dict): dict,
                    vol.Optional("name", default=""): vol.All(str, vol.Length(max=100)),
                }
            )
        ],
    }
)

HUB_SCHEMA = vol.Schema(
    {
        vol.Optional("hub", default=dict): vol.Schema(
            {
                vol.Optional("bind", default=DEFAULT_HUB_BIND): vol.All(str, vol.Length(min=1)),
                vol.Optional("port", default=DEFAULT_HUB_PORT): _PORT,
                vol.Optional("data_dir"): vol.All(str, vol.Length(min=1)),
                vol.Optional("public_url", default=""): vol.All(str, vol.Match(r"^(https?://\S+)?$", msg="must be an http:// or https:// URL")),
                vol.Optional("stale_after", default=DEFAULT_STALE_AFTER): duration(1, 86400),
                vol.Optional("offline_after", default=DEFAULT_OFFLINE_AFTER): duration(1, 7 * 86400),
                vol.Optional("custom_integrations", default=list): _PATHS,
                vol.Optional("discovery", default=True): bool,
                vol.Optional("discovery_interfaces", default=list): [vol.All(str, _ip_address)],
                vol.Optional("pairing_max_pending", default=20): vol.All(int, vol.Range(min=1, max=1000)),
                vol.Optional("pairing_ttl", default="15m"): duration(60, 86400),
                # Pairing requests one client address may make: a burst of this many, then one per 60/N s.
                vol.Optional("pairing_attempts_per_minute", default=12): vol.All(int, vol.Range(min=1, max=10_000)),
                # Where the hub sends Wake-on-LAN packets itself (POST /api/v1/nodes/<id>/wake without "via").
                vol.Optional("wol_broadcast", default="255.255.255.255"): _wol_address,
                vol.Optional("wol_port", default=9): _PORT,
                # Where a wake request may send besides wol_broadcast and the hub's own networks' broadcasts; ports besides wol_port, 7 and 9.
                vol.Optional("wol_allowed_broadcasts", default=list): vol.All([_wol_address], vol.Length(max=64)),
                vol.Optional("wol_allowed_ports", default=list): vol.All([_PORT], vol.Length(max=64)),
                # Wakes of one node (from the hub or relayed) in any minute; 0: no limit.
                vol.Optional("wol_wakes_per_minute", default=6): vol.All(int, vol.Range(min=0, max=10_000)),
                # How many automations may chain (one's run causing another's); deeper is refused and audited.
                vol.Optional("automation_max_depth", default=3): vol.All(int, vol.Range(min=0, max=10)),
                # "auto": HTTPS unless bound to loopback only.
                vol.Optional("tls", default="auto"): vol.Any(bool, vol.All(str, vol.In(["auto"], msg="must be true, false or \"auto\""))),
                vol.Optional("tls_cert"): vol.All(str, vol.Length(min=1)),
                vol.Optional("tls_key"): vol.All(str, vol.Length(min=1)),
                vol.Optional("tls_ca"): vol.All(str, vol.Length(min=1)),
                vol.Optional("require_client_cert", default=False): bool,
                # Refuse clients whose (real) address is not private; see README.
                vol.Optional("lan_only", default=True): bool,
                vol.Optional("trusted_proxies", default=list): [vol.All(str, _network)],
                vol.Optional("session_days", default=30): vol.All(vol.Coerce(float), vol.Range(min=1, max=365, msg="must be between 1 and 365 days")),
                # Accept reports from script-only nodes on POST /api/v1/push/<domain> (bearer token per node).
                vol.Optional("push", default=False): bool,
                # Bounded series: what one node may keep as history; what is over is refused, the rest stored.
                vol.Optional("max_series_per_node", default=3000): vol.All(int, vol.Range(min=10, max=1_000_000, msg="must be between 10 and 1000000")),
                vol.Optional("max_metric_name", default=128): vol.All(int, vol.Range(min=16, max=200, msg="must be between 16 and 200 characters")),
                # Let LAN addresses scrape /metrics without a token (for scrapers that cannot send headers).
                vol.Optional("metrics_public_lan", default=False): bool,
                # Operator public keys handed to agents when they pair or enrol (and trusted by the hub's own agent).
                vol.Optional("operator_keys", default=list): _OPERATOR_KEYS,
                # The time zone maintenance windows' cron expressions are read in ("" = the system's), e.g. "Europe/Berlin".
                vol.Optional("timezone", default=""): vol.All(str, vol.Length(max=64), vol.Match(r"^[A-Za-z0-9_+/-]*$", msg="must be an IANA time zone name such as Europe/Berlin")),
            }
        ),
        vol.Optional("store", default=dict): vol.Schema(
            {
                vol.Optional("path", default="roost.db"): vol.All(str, vol.Length(min=1)),
                # How long resolved alerts and their events stay in the history.
                vol.Optional("retention_alerts", default="90d"): duration(86400, 5 * 365 * 86400),
                vol.Optional("retention_raw", default="48h"): duration(86400, 30 * 86400),
                vol.Optional("retention_minute", default="14d"): duration(7 * 86400, 365 * 86400),
                vol.Optional("retention_hour", default="400d"): duration(365 * 86400, 20 * 365 * 86400),
            }
        ),
        # The hub's in-process agent for its own host.
        vol.Optional("agent", default=dict): vol.Schema(
            {vol.Optional("enabled", default=True): bool, **_AGENT_TABLE}
        ),
        vol.Optional("integrations", default=dict): _INTEGRATIONS,
        vol.Optional("mqtt", default=dict): _MQTT,
        vol.Optional("logging", default=dict): _LOGGING,
    }
)

AGENT_SCHEMA = vol.Schema(
    {
        vol.Optional("agent", default=dict): vol.Schema(
            {
                vol.Optional("hub", default=""): vol.All(str, vol.Match(r"^(https?://[^\s/]+(/\S*)?)?$", msg="must be the hub's URL, e.g. http://hub.lan:8765")),
                vol.Optional("data_dir"): vol.All(str, vol.Length(min=1)),
                **_AGENT_TABLE,
            }
        ),
        vol.Optional("integrations", default=dict): _INTEGRATIONS,
        vol.Optional("logging", default=dict): _LOGGING,
    }
)


def _describe_error(err: vol.Invalid, raw: dict[str, Any], source: str, flags: dict[str, str] | None = None) -> str:
    errors = err.errors if isinstance(err, vol.MultipleInvalid) else [err]
    lines = []
    for one in errors:
        key = ".".join(str(p) for p in one.path) or "(top level)"
        value: Any = raw
        for part in one.path:
            value = value.get(part) if isinstance(value, dict) else None
        got = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
        msg = one.msg
        if msg.startswith("extra keys not allowed"):
            msg = "unknown key; check the spelling against the configuration reference in README.md"
        # A value given on the command line is reported by its flag, not by the key it overrides.
        where = flags[key] if flags and key in flags else f"{source}: {key}"
        lines.append(f"{where}: {msg}{got}")
    return "\n".join(lines)


def _read_toml(path: Path | None) -> tuple[dict[str, Any], str]:
    if path is None:
        return {}, "defaults"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; create it or leave out --config to use defaults") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        return tomllib.loads(text), str(path)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def _validate(schema: vol.Schema, raw: dict[str, Any], source: str, flags: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        return schema(raw)
    except vol.Invalid as err:
        raise ConfigError(_describe_error(err, raw, source, flags)) from None


def _apply_overrides(
    raw: dict[str, Any], source: str, overrides: dict[str, Any] | None, flags: dict[str, str] | None
) -> dict[str, str]:
    """Merge command-line values into the file's; returns which keys came from which flag."""
    given: dict[str, str] = {}
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{source}: {section}: must be a table")
        for key, value in values.items():
            if value is None:
                continue
            raw[section][key] = value
            if flags and f"{section}.{key}" in flags:
                given[f"{section}.{key}"] = flags[f"{section}.{key}"]
    return given


def _discovery(enabled: bool, interfaces: list[str]) -> tuple[bool, list[str]]:
    env = os.environ.get(ENV_DISCOVERY_INTERFACES, "").strip()
    if interfaces or not env:
        return enabled, interfaces
    if env.lower() in ("off", "none", "0", "false"):
        return False, []
    import ipaddress

    chosen = [part.strip() for part in env.split(",") if part.strip()]
    for part in chosen:
        try:
            ipaddress.ip_address(part)
        except ValueError:
            raise ConfigError(f"{ENV_DISCOVERY_INTERFACES}: {part!r} is not an IP address (use addresses such as 127.0.0.1, or off)") from None
    return enabled, chosen


def _listen_interfaces(bind: str) -> list[str] | None:
    """The interface addresses a hub bound to ``bind`` listens on: [] for all of them, None for none (a name that does not resolve)."""
    import ipaddress
    import socket

    host = bind.strip().strip("[]")
    if host in ("", "0.0.0.0", "::"):
        return []
    if host == "localhost":
        return ["127.0.0.1"]
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        return [socket.gethostbyname(host)]
    except OSError:
        return None  # the hub cannot listen there either, and says so when it tries


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _opt_path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def default_data_dir(role: str) -> Path:
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / ("roost" if role == "hub" else "roost-agent")


@dataclass(frozen=True)
class Retention:
    """How long each resolution of metric history is kept, in seconds."""

    raw: float = 48 * 3600
    minute: float = 14 * 86400
    hour: float = 400 * 86400


@dataclass
class AgentSettings:
    interval: float = DEFAULT_COLLECT_INTERVAL
    heartbeat: float = DEFAULT_HEARTBEAT_INTERVAL
    spool_max_reports: int = DEFAULT_SPOOL_MAX_REPORTS
    custom_integrations: list[Path] = field(default_factory=list)
    name: str = ""
    ceiling: Ceiling = field(default_factory=Ceiling)
    discovery: bool = True
    discovery_interfaces: list[str] = field(default_factory=list)
    operator_keys: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class HubConfig:
    data_dir: Path
    bind: str = DEFAULT_HUB_BIND
    port: int = DEFAULT_HUB_PORT
    public_url: str = ""
    stale_after: float = DEFAULT_STALE_AFTER
    offline_after: float = DEFAULT_OFFLINE_AFTER
    custom_integrations: list[Path] = field(default_factory=list)
    discovery: bool = True
    discovery_interfaces: list[str] = field(default_factory=list)
    pairing_max_pending: int = 20
    pairing_ttl: float = 900.0
    pairing_attempts_per_minute: int = 12
    wol_broadcast: str = "255.255.255.255"
    wol_port: int = 9
    wol_allowed_broadcasts: list[str] = field(default_factory=list)
    wol_allowed_ports: list[int] = field(default_factory=list)
    wol_wakes_per_minute: int = 6
    automation_max_depth: int = 3
    tls: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    require_client_cert: bool = False
    lan_only: bool = True
    trusted_proxies: list[str] = field(default_factory=list)
    session_days: float = 30.0
    push: bool = False
    max_series_per_node: int = 3000
    max_metric_name: int = 128
    metrics_public_lan: bool = False
    operator_keys: list[str] = field(default_factory=list)
    timezone: str = ""
    alerts_retention: float = 90 * 86400.0
    store_path: Path = Path("roost.db")
    retention: Retention = field(default_factory=Retention)
    local_agent_enabled: bool = True
    local_agent: AgentSettings = field(default_factory=AgentSettings)
    integrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    mqtt: dict[str, Any] = field(default_factory=dict)
    log_level: str = "info"

    def url(self) -> str:
        """The URL agents should use to reach this hub."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.bind
        if host in ("0.0.0.0", "::", ""):
            import socket

            host = socket.getfqdn() or socket.gethostname()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


@dataclass
class AgentConfig:
    data_dir: Path
    hub: str = ""
    settings: AgentSettings = field(default_factory=AgentSettings)
    integrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_level: str = "info"


def _agent_settings(table: dict[str, Any]) -> AgentSettings:
    discovery, interfaces = _discovery(table["discovery"], table["discovery_interfaces"])
    return AgentSettings(
        interval=table["interval"],
        heartbeat=table["heartbeat"],
        spool_max_reports=table["spool_max_reports"],
        custom_integrations=[Path(p).expanduser() for p in table["custom_integrations"]],
        name=table["name"],
        ceiling=Ceiling.from_dict(table["ceiling"]),
        discovery=discovery,
        discovery_interfaces=interfaces,
        operator_keys=list(table["operator_keys"]),
        labels=dict(table["labels"]),
    )


def load_hub_config(
    path: Path | None = None, *, overrides: dict[str, Any] | None = None, flags: dict[str, str] | None = None
) -> HubConfig:
    """Read, merge command-line overrides ({'hub': {'port': 9000}}), validate.

    ``flags`` names the command-line flag behind an override ({'hub.port': '--port'})
    so that an error in a value given on the command line names that flag.
    """
    raw, source = _read_toml(path)
    given = _apply_overrides(raw, source, overrides, flags)
    data = _validate(HUB_SCHEMA, raw, source, given)
    hub = data["hub"]
    if hub["offline_after"] <= hub["stale_after"]:
        raise ConfigError(f"{source}: hub.offline_after: must be longer than hub.stale_after ({_fmt(hub['stale_after'])})")
    data_dir = Path(hub["data_dir"]).expanduser() if "data_dir" in hub else default_data_dir("hub")
    store = data["store"]
    store_path = Path(store["path"]).expanduser()
    discovery, interfaces = _discovery(hub["discovery"], hub["discovery_interfaces"])
    if discovery and not interfaces:
        # Announce only where agents can reach the hub: a hub bound to 127.0.0.1 is not on the LAN.
        listening = _listen_interfaces(hub["bind"])
        discovery, interfaces = (False, []) if listening is None else (True, listening)
    loopback = _is_loopback(hub["bind"])
    tls = (not loopback) if hub["tls"] == "auto" else hub["tls"]
    if not tls and not loopback and not hub.get("trusted_proxies"):
        raise ConfigError(
            f"{source}: hub.tls: plain HTTP is only allowed when the hub is bound to loopback or sits behind "
            "a reverse proxy listed in hub.trusted_proxies; set hub.tls = true (the default) or bind to 127.0.0.1"
        )
    if bool(hub.get("tls_cert")) != bool(hub.get("tls_key")):
        raise ConfigError(f"{source}: hub.tls_cert and hub.tls_key go together; set both or neither")
    if hub["require_client_cert"] and not tls:
        raise ConfigError(f"{source}: hub.require_client_cert needs hub.tls = true")
    local_agent = _agent_settings(data["agent"])
    local_agent.operator_keys += [k for k in hub["operator_keys"] if k not in local_agent.operator_keys]
    return HubConfig(
        data_dir=data_dir,
        bind=hub["bind"],
        port=hub["port"],
        public_url=hub["public_url"],
        stale_after=hub["stale_after"],
        offline_after=hub["offline_after"],
        custom_integrations=[Path(p).expanduser() for p in hub["custom_integrations"]],
        discovery=discovery,
        discovery_interfaces=interfaces,
        pairing_max_pending=hub["pairing_max_pending"],
        pairing_ttl=hub["pairing_ttl"],
        pairing_attempts_per_minute=hub["pairing_attempts_per_minute"],
        wol_broadcast=hub["wol_broadcast"],
        wol_port=hub["wol_port"],
        wol_allowed_broadcasts=list(hub["wol_allowed_broadcasts"]),
        wol_allowed_ports=list(hub["wol_allowed_ports"]),
        wol_wakes_per_minute=hub["wol_wakes_per_minute"],
        automation_max_depth=hub["automation_max_depth"],
        tls=tls,
        tls_cert=_opt_path(hub.get("tls_cert")),
        tls_key=_opt_path(hub.get("tls_key")),
        tls_ca=_opt_path(hub.get("tls_ca")),
        require_client_cert=hub["require_client_cert"],
        lan_only=hub["lan_only"],
        trusted_proxies=hub["trusted_proxies"],
        session_days=hub["session_days"],
        push=hub["push"],
        max_series_per_node=hub["max_series_per_node"],
        max_metric_name=hub["max_metric_name"],
        metrics_public_lan=hub["metrics_public_lan"],
        operator_keys=list(hub["operator_keys"]),
        timezone=hub["timezone"],
        alerts_retention=store["retention_alerts"],
        store_path=store_path if store_path.is_absolute() else data_dir / store_path,
        retention=Retention(raw=store["retention_raw"], minute=store["retention_minute"], hour=store["retention_hour"]),
        local_agent_enabled=data["agent"]["enabled"],
        local_agent=local_agent,
        integrations=data["integrations"],
        mqtt=data["mqtt"],
        log_level=data["logging"]["level"],
    )


def load_agent_config(
    path: Path | None = None, *, overrides: dict[str, Any] | None = None, flags: dict[str, str] | None = None
) -> AgentConfig:
    raw, source = _read_toml(path)
    given = _apply_overrides(raw, source, overrides, flags)
    data = _validate(AGENT_SCHEMA, raw, source, given)
    agent = data["agent"]
    data_dir = Path(agent["data_dir"]).expanduser() if "data_dir" in agent else default_data_dir("agent")
    return AgentConfig(
        data_dir=data_dir,
        hub=agent["hub"].rstrip("/"),
        settings=_agent_settings(agent),
        integrations=data["integrations"],
        log_level=data["logging"]["level"],
    )
