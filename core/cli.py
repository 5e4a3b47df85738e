"""The `roost` command: one entry point for the hub, the agent and the admin tasks; each role imports only what it needs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from .config import ConfigError, load_agent_config, load_hub_config, parse_duration
from .const import __version__

_LOGGER = logging.getLogger("roost")

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def _setup_logging(level: str) -> None:
    from .logs import setup_logging

    setup_logging(level)


_HUB_FLAGS = {"hub.data_dir": "--data-dir", "hub.bind": "--bind", "hub.port": "--port"}
_AGENT_FLAGS = {"agent.data_dir": "--data-dir", "agent.hub": "--hub", "agent.name": "--name"}


def _hub_config(args: argparse.Namespace):
    return load_hub_config(
        args.config,
        overrides={"hub": {"data_dir": args.data_dir, "bind": getattr(args, "bind", None), "port": getattr(args, "port", None)}},
        flags=_HUB_FLAGS,
    )


class NoHubHere(Exception):
    """A hub-host command cannot tell which hub store it is meant for; the message says which flag to add."""


def _data_dir_chosen(args: argparse.Namespace) -> bool:
    """Did the user name the hub's data dir (flag, environment or config file), rather than leave it to the default?"""
    import os
    import tomllib

    from .config import ENV_DATA_DIR

    if args.data_dir or os.environ.get(ENV_DATA_DIR):
        return True
    if args.config is None:
        return False
    try:
        hub = tomllib.loads(Path(args.config).read_text(encoding="utf-8")).get("hub")
    except (OSError, tomllib.TOMLDecodeError):
        return False  # already reported by load_hub_config
    return isinstance(hub, dict) and "data_dir" in hub


def _hub_host_config(args: argparse.Namespace):
    """The config of the hub this host runs, for the commands that work on its store.

    Without a chosen data dir, the hub that is running here is the one meant
    (it records its data dir and URL when it starts listening); with none
    running, only an existing store in the default place is used. A new store
    is never made unless a data dir was chosen. While the hub runs,
    ``config.url()`` is the URL it computed itself (the one its dashboard shows).
    """
    import dataclasses

    from .running_hub import records_dir, running_hubs

    config = _hub_config(args)
    hubs = running_hubs()
    if _data_dir_chosen(args):
        mine = [h for h in hubs if h.data_dir == config.data_dir.resolve()]
        return dataclasses.replace(config, public_url=mine[0].url) if mine else config
    if len(hubs) == 1:
        hub = hubs[0]
        config = load_hub_config(args.config or hub.config, overrides={"hub": {"data_dir": str(hub.data_dir)}})
        return dataclasses.replace(config, public_url=hub.url)
    if len(hubs) > 1:
        listed = "; ".join(f"--data-dir {h.data_dir} (pid {h.pid}, {h.url})" for h in hubs)
        raise NoHubHere(f"{len(hubs)} hubs are running on this host; say which one with {listed}")
    if config.store_path.exists():
        return config
    raise NoHubHere(
        f"no hub is running on this host (none recorded in {records_dir()}) and there is no hub store at {config.data_dir}; "
        "start `roost hub` first, or pass the hub's data dir: --data-dir DIR"
    )


def _running_here(config: Any) -> bool:
    from .running_hub import running_hubs

    return any(h.data_dir == config.data_dir.resolve() for h in running_hubs())


def _check_integration_tables(integrations: dict[str, Any], roles: list[tuple[str, Path, list[Path]]], source: Path | None) -> None:
    """Stop before anything starts when an [integrations.*] table is wrong, as for every other bad config value.

    The tables are checked by loading the integrations exactly as the process
    will (without setting them up): ``roles`` is (role, data dir, custom
    integration folders) for each part of the process that loads them.
    """
    from .plugins import IntegrationManager, config_problems

    managers = [IntegrationManager(role=role, config=integrations, data_dir=data_dir, custom_dirs=dirs) for role, data_dir, dirs in roles]
    # The real load logs each problem again, with the rest of the start-up; here only the verdict counts.
    logging.disable(logging.CRITICAL)
    try:
        for manager in managers:
            manager.load()
    finally:
        logging.disable(logging.NOTSET)
    problems = config_problems(managers)
    if problems:
        where = str(source) if source else "defaults"
        raise ConfigError("\n".join(f"{where}: {problem}" for problem in problems))


def _listen_error(config: Any, err: OSError) -> str:
    """Why the hub cannot listen, and what to change."""
    import errno
    import socket

    where = f"{config.bind}:{config.port}"
    if err.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the port is in use — pick another --port or stop what uses it"
    if err.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {config.bind} is not an address of this host — pass --bind with one of its addresses, 0.0.0.0 for all of them or 127.0.0.1 for this host only"
    if isinstance(err, socket.gaierror):
        return f"cannot listen on {where}: {config.bind!r} does not resolve to an address of this host — pass --bind with one of its addresses"
    return f"cannot listen on {where}: {err.strerror or err}"


def cmd_hub(args: argparse.Namespace) -> int:
    config = _hub_config(args)
    from .const import ROLE_AGENT, ROLE_HUB

    roles = [(ROLE_HUB, config.data_dir, [config.data_dir / "custom_integrations", *config.custom_integrations])]
    if config.local_agent_enabled:
        from .hub.local_agent import LOCAL_DIR

        local = config.data_dir / LOCAL_DIR
        roles.append((ROLE_AGENT, local, [local / "custom_integrations", *config.local_agent.custom_integrations]))
    _check_integration_tables(config.integrations, roles, args.config)
    _setup_logging(config.log_level)
    from aiohttp import web

    from .hub.app import create_app, hub_tls
    from .tls import TLSConfigError, short_fingerprint

    try:
        tls = hub_tls(config)
    except TLSConfigError as err:
        print(f"roost hub: {err}", file=sys.stderr)
        return EXIT_CONFIG
    ssl_context = tls.server_context(optional_client_cert=config.require_client_cert) if config.tls else None
    app = create_app(config, tls=tls)
    scheme = "https" if config.tls else "http"
    host = config.bind if ":" not in config.bind else f"[{config.bind}]"
    print(f"Roost hub {__version__} on {scheme}://{host}:{config.port} (data in {config.data_dir})", flush=True)
    if config.tls:
        print(f"CA fingerprint {short_fingerprint(tls.ca_fingerprint)}; trust {tls.ca_path} in your browser to avoid warnings", flush=True)
    # Thousands of parsed reports can be in flight: full collections of a heap
    # that size stall the event loop. Freeze what start-up made and collect less often.
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    from . import running_hub

    recorded: list[Path] = []

    def listening(_banner: str) -> None:
        # run_app calls this once the socket listens: only then may the commands on this host find the hub.
        recorded.append(running_hub.record(config.data_dir, config.url(), args.config))

    _raise_open_files_limit()
    try:
        web.run_app(
            app, host=config.bind, port=config.port, ssl_context=ssl_context, access_log=None, shutdown_timeout=5, print=listening, backlog=HUB_LISTEN_BACKLOG
        )
    except OSError as err:
        import errno
        import socket

        print(f"roost hub: {_listen_error(config, err)}", file=sys.stderr)
        # An address this host does not have is a config mistake; a busy port is not.
        return EXIT_CONFIG if err.errno == errno.EADDRNOTAVAIL or isinstance(err, socket.gaierror) else EXIT_FAILURE
    finally:
        for path in recorded:
            running_hub.remove(path)
    return 0


# Connections the kernel may queue before the hub accepts them: every agent reconnects at once after a hub
# restart (with jitter). The kernel caps it at net.core.somaxconn (4096 on current kernels).
HUB_LISTEN_BACKLOG = 4096


def _raise_open_files_limit() -> None:
    """Lift the soft open-files limit to the hard one: the hub holds a socket per connected agent (docs/benchmarks.md)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536), hard))
        except (ValueError, OSError) as err:
            logging.getLogger("roost").warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, err)
            return
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < 2048:
        logging.getLogger("roost").warning(
            "open-files limit is %d: about %d agents can connect; raise it (LimitNOFILE= in the systemd unit, ulimit -n)", soft, soft - 100
        )


def cmd_agent(args: argparse.Namespace) -> int:
    config = load_agent_config(args.config, overrides={"agent": {"data_dir": args.data_dir, "hub": args.hub, "name": args.name}}, flags=_AGENT_FLAGS)
    from .const import ROLE_AGENT

    _check_integration_tables(
        config.integrations, [(ROLE_AGENT, config.data_dir, [config.data_dir / "custom_integrations", *config.settings.custom_integrations])], args.config
    )
    _setup_logging(config.log_level)
    from .memory import limit_arenas

    # Before any thread starts: one malloc arena for the agent's few threads instead of one each (see docs/benchmarks.md).
    limit_arenas(1)
    return asyncio.run(_run_agent(config, args.join, rotate_key=args.rotate_key, enrol_only=args.enrol_only))


async def _run_agent(config: Any, join: str | None, *, rotate_key: bool = False, enrol_only: bool = False) -> int:
    # Only agent modules: the agent process never loads the hub or the dashboard.
    from roost.agent.runtime import AgentRuntime, load_state, save_state
    from roost.agent.trust import PairingFailed, TrustError, pinned_context
    from roost.agent.uplink import EnrollError, WebSocketUplink
    from roost.core.audit import ACTION_AGENT_ENROLLED, ACTION_AGENT_ENROLMENT_REFUSED

    state = load_state(config.data_dir)
    hub_url = config.hub or state.get("hub", "")
    rt = AgentRuntime(data_dir=config.data_dir, settings=config.settings, integrations_config=config.integrations)
    await rt.start()
    # What start-up made (modules, the plugin kernel, integrations) lives as long as the process:
    # out of the collector's way, so each collection walks only what cycles make.
    import gc

    gc.collect()
    gc.freeze()
    try:
        if not state.get("node_id"):
            try:
                if join:
                    if not hub_url:
                        print("roost agent: --join needs --hub https://HUB:8765 (the command printed by `roost join-token create` has both)", file=sys.stderr)
                        return EXIT_CONFIG
                    state = await _until_reachable(lambda: _enroll_with_token(rt, config, hub_url, join))
                else:
                    state = await _until_reachable(lambda: _pair(rt, config, hub_url))
            except (EnrollError, TrustError, PairingFailed, OSError) as err:
                await rt.note_event(
                    ACTION_AGENT_ENROLMENT_REFUSED,
                    outcome="failed",
                    peer=hub_url,
                    details={"via": "join token" if join else "pairing", "reason": str(err)},
                )
                print(f"roost agent: {err}", file=sys.stderr)
                return EXIT_FAILURE
            save_state(config.data_dir, state)
            await rt.note_event(
                ACTION_AGENT_ENROLLED,
                target=f"node:{state['node_id']}",
                peer=state["hub"],
                details={"via": "join token" if join else "pairing", "hub_id": state.get("hub_id", "")},
            )
            hub_url = state["hub"]
            _LOGGER.info("this host is node %s of hub %s", state["node_id"], hub_url)
            if enrol_only:
                print(f"Enrolled: this host is node {state['node_id']} of {hub_url}.", flush=True)
                return 0
        elif join:
            _LOGGER.info("already enrolled as node %s; ignoring --join", state["node_id"])
        if enrol_only and state.get("node_id"):
            print(f"Already enrolled: this host is node {state['node_id']}.", flush=True)
            return 0
        if state.get("hub") != hub_url:
            # Remembered only once the hub there proves it is this agent's hub (WebSocketUplink -> hub_proven).
            _LOGGER.info("trying hub URL %s (agent.json keeps %s until the hub there proves its identity)", hub_url, state.get("hub"))
        try:
            ssl_context = pinned_context(hub_url, config.data_dir)
        except TrustError as err:
            print(f"roost agent: {err}", file=sys.stderr)
            return EXIT_CONFIG
        rt.node_id = state["node_id"]
        if rotate_key:
            rt.prepare_key_rotation()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        _LOGGER.info("agent for node %s reporting to %s every %g s", rt.node_id, hub_url, config.settings.interval)
        from roost.agent import update as self_update
        from roost.core import sdnotify

        # The hub hears of a rollback through the self_update integration's facts.
        await self_update.report_rollback(rt)
        pending = self_update.pending_for(config.data_dir)
        health = asyncio.create_task(self_update.watch_health(rt, pending, stop)) if pending else None
        sdnotify.notify(f"READY=1\nSTATUS=node {rt.node_id} reporting to {hub_url}")
        pinger = asyncio.create_task(sdnotify.watchdog(), name="roost-watchdog")
        try:
            uplink = WebSocketUplink(hub_url, ssl_context=ssl_context, hub_id=state.get("hub_id", ""), hub_key=state.get("hub_key", ""))
            await rt.run(uplink, stop)
        finally:
            pinger.cancel()
        if health is not None and not await health:
            return EXIT_FAILURE
    finally:
        await rt.stop()
    return 0


async def _until_reachable(attempt: Any) -> Any:
    """Run a first enrolment or pairing, trying again with jittered backoff while nothing answers at the hub URL."""
    from roost.agent.trust import HubUnreachable
    from roost.agent.uplink import Backoff

    backoff = Backoff(base=1.0, cap=30.0)
    while True:
        try:
            return await attempt()
        except HubUnreachable as err:
            delay = backoff.next()
            if backoff.attempt == 1:
                print(f"roost agent: {err}; is the hub running and is that the right port? Retrying with backoff until it answers (Ctrl-C to stop)", file=sys.stderr, flush=True)
            else:
                _LOGGER.debug("%s; trying again in %.0f s", err, delay)
            await asyncio.sleep(delay)


async def _enroll_with_token(rt: Any, config: Any, hub_url: str, token: str) -> dict[str, Any]:
    """Pin the hub CA and identity key named in the token before the token's secret goes anywhere, then enrol."""
    from roost.agent.trust import HubIdentityError, learn_hub_ca, new_client_request, pinned_context, prove_hub_identity, save_ca, save_client_cert
    from roost.agent.uplink import EnrollError, enroll
    from roost.core.jointoken import join_token_fingerprint, join_token_hub_key

    expected = join_token_fingerprint(token)
    if expected is None and not hub_url.startswith("http://"):
        raise EnrollError("this join token carries no hub fingerprint; create a new one with `roost join-token create`")
    ca_pem, fp = await learn_hub_ca(hub_url, expected=expected)
    save_ca(config.data_dir, ca_pem)
    context = pinned_context(hub_url, config.data_dir)
    hub_id, hub_key = await prove_hub_identity(hub_url, context, expected_key=join_token_hub_key(token))
    answer = await enroll(
        hub_url,
        token,
        rt.identity,
        hostname=rt.facts["hostname"],
        name=config.settings.name,
        facts=rt.facts,
        ssl_context=context,
        csr=new_client_request(config.data_dir, rt.identity),
    )
    if answer.get("hub_id") != hub_id or answer.get("hub_key") != hub_key:
        raise HubIdentityError(f"the hub at {hub_url} enrolled this agent as another hub than the one that proved its identity — refusing")
    save_client_cert(config.data_dir, answer.get("client_cert"))
    state = {"node_id": answer["node_id"], "hub_id": hub_id, "hub_key": hub_key, "hub": hub_url, "ca_fingerprint": fp}
    return _with_operator_keys(state, answer.get("operator_keys"))


def _with_operator_keys(state: dict[str, Any], keys: Any) -> dict[str, Any]:
    """Keep the operator keys the hub named at enrolment; later changes on the hub never reach this host's trust."""
    from .identity import fingerprint
    from .signing import accepted_operator_keys

    accepted = accepted_operator_keys(keys)
    if accepted:
        state["operator_keys"] = accepted
        print(f"Destructive operations here need a signature from operator key {', '.join(fingerprint(k) for k in accepted)}.", flush=True)
    return state


async def _pair(rt: Any, config: Any, hub_url: str) -> dict[str, Any]:
    """No token: find the hub, ask to pair, show the code, wait for a person to approve in the dashboard."""
    from roost.agent.pairing import PairingFailed, find_hub, pair
    from roost.agent.trust import learn_hub_ca, new_client_request, pinned_context, save_ca, save_client_cert
    from roost.core.discovery import AGENT_SERVICE, Announcer
    from roost.core.identity import fingerprint
    from roost.core.tls import short_fingerprint, verify_fingerprint

    settings = config.settings
    interfaces = settings.discovery_interfaces or None
    announced = None
    if not hub_url:
        if not settings.discovery:
            raise PairingFailed("no hub configured and discovery is off — pass --hub https://HUB:8765")
        found = await find_hub(interfaces=interfaces)
        hub_url, announced = found.url, found.properties.get("ca")
        print(f"Found Roost hub {found.properties.get('id', '')} at {hub_url}", flush=True)
    ca_pem, fp = await learn_hub_ca(hub_url)
    if announced and not verify_fingerprint(announced, fp):
        raise PairingFailed(f"the hub at {hub_url} announced CA {announced} but presents {fp} — refusing")
    save_ca(config.data_dir, ca_pem)
    announcer = None
    if settings.discovery:
        announcer = Announcer(AGENT_SERVICE, rt.facts["hostname"], 9, {"key": fingerprint(rt.identity.public_key), "hostname": rt.facts["hostname"]}, interfaces=interfaces)
        await announcer.start()

    def show(code: str, request_id: str, expires_at: float) -> None:
        import time as _time

        left = max(0, int(expires_at - _time.time()) // 60)
        print(
            f"\nPairing code: {code}\n"
            f"  Compare it with the code the Roost dashboard shows for {settings.name or rt.facts['hostname']} and approve it there.\n"
            f"  Hub CA fingerprint: {short_fingerprint(fp)}   (request {request_id}, expires in {left} min)\n",
            flush=True,
        )
        _LOGGER.info("pairing code %s (request %s)", code, request_id)

    try:
        while True:
            try:
                paired = await pair(
                    hub_url,
                    rt.identity,
                    hostname=rt.facts["hostname"],
                    name=settings.name,
                    facts=rt.facts,
                    capabilities=rt.manager.capabilities(),
                    ceiling=settings.ceiling,
                    ca_fingerprint=fp,
                    ssl_context=pinned_context(hub_url, config.data_dir),
                    show_code=show,
                    csr=new_client_request(config.data_dir, rt.identity),
                )
                break
            except PairingFailed as err:
                if "expired" not in str(err):
                    raise
                print("Pairing request expired; asking again with a new code.", flush=True)
            except OSError as err:  # the hub went away between learning its CA and asking to pair
                from roost.agent.trust import unreachable

                raise unreachable(hub_url, err) from None
    finally:
        if announcer is not None:
            await announcer.stop()
    save_client_cert(config.data_dir, paired.client_cert)
    print(f"Approved: this host is node {paired.node_id}.", flush=True)
    state = {"node_id": paired.node_id, "hub_id": paired.hub_id, "hub_key": paired.hub_key, "hub": hub_url, "ca_fingerprint": fp}
    return _with_operator_keys(state, paired.operator_keys)


def _on_hub_store(args: argparse.Namespace, work: Any) -> int:
    """Run ``work(store, config, args)`` against the hub's store from the hub host's shell.

    A running hub shares the file (WAL) and picks the changes up by itself.
    """
    try:
        config = _hub_host_config(args)
    except NoHubHere as err:
        print(f"roost {args.command}: {err}", file=sys.stderr)
        return EXIT_CONFIG
    _setup_logging("warning")

    async def run() -> int:
        from .store.sqlite import SQLiteStore

        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = SQLiteStore(config.store_path)
        await store.open()
        try:
            return await work(store, config, args)
        finally:
            await store.close()

    return asyncio.run(run())


def cmd_join_token(args: argparse.Namespace) -> int:
    return _on_hub_store(args, _join_token)


async def _join_token(store: Any, config: Any, args: argparse.Namespace) -> int:
    from .hub.app import create_join_token, hub_tls

    if args.action == "create":
        try:
            ttl = parse_duration(args.expires)
        except Exception:
            print(f"roost join-token: --expires {args.expires!r} is not a duration such as 30m, 1h or 7d", file=sys.stderr)
            return EXIT_CONFIG
        if not 60 <= ttl <= 365 * 86400:
            print("roost join-token: --expires must be between 1m and 365d", file=sys.stderr)
            return EXIT_CONFIG
        from .hub.app import load_hub_identity

        tls = await asyncio.to_thread(hub_tls, config)
        token, record = await create_join_token(
            store,
            ttl=ttl,
            uses=args.uses,
            note=args.note or "",
            ca_fingerprint=tls.ca_fingerprint,
            hub_key=load_hub_identity(config.data_dir).public_key,
            actor=cli_actor(),
        )
        hub_url = args.hub_url or config.url()
        if not args.hub_url and not _running_here(config):
            print(f"# no hub is running with data dir {config.data_dir}; {hub_url} is where its config says it will listen (--hub-url to change)", file=sys.stderr)
        print(token)
        print(f"# valid for {args.expires}, {args.uses} use(s). On the new host run:", file=sys.stderr)
        print(f"roost agent --hub {hub_url} --join {token}", file=sys.stderr)
        from .hub.downloads import install_info

        info = install_info(config, tls, token, hub_url=hub_url)
        if info["releases"]:
            print(f"# or, to install {', '.join(info['releases'])} from this hub as a systemd service (as root or with sudo):", file=sys.stderr)
            print(info["install_command"], file=sys.stderr)
        else:
            print("# (no signed release on this hub yet for the one-line install: see `roost release add`, docs/install.md)", file=sys.stderr)
        print("# or in Docker Compose:\n" + info["compose"], file=sys.stderr, end="")
    elif args.action == "list":
        import time

        for tok in await store.list_join_tokens():
            left = "revoked" if tok.revoked else ("expired" if tok.expires_at < time.time() else f"{tok.uses_left} use(s) left")
            print(f"{tok.token_id}\t{left}\t{tok.note}")
    elif args.action == "revoke":
        if not await store.revoke_join_token(args.token_id):
            print(f"roost join-token: no token with id {args.token_id!r}", file=sys.stderr)
            return EXIT_FAILURE
        from .audit import ACTION_JOIN_TOKEN_REVOKED

        try:
            await store.append_audit(ACTION_JOIN_TOKEN_REVOKED, actor=cli_actor(), target=f"token:{args.token_id}")
        except Exception as err:
            print(f"roost join-token: revoked {args.token_id}, but the audit log cannot record it: {err}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"revoked {args.token_id}")
    return 0


def cli_actor() -> str:
    """Who acts from the command line: the local account, as the audit log names it."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no name for this uid (containers)
        import os

        return f"cli:uid{os.getuid()}"


def _read_password(prompt: str) -> str:
    """From the terminal (asked twice), or one line of stdin when it is not a terminal (scripts, tests)."""
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass(f"{prompt}: ")
        if getpass.getpass(f"{prompt} again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_users(args: argparse.Namespace) -> int:
    return _on_hub_store(args, _users)


async def _users(store: Any, config: Any, args: argparse.Namespace) -> int:
    """Dashboard users from the hub host: add, list, passwd (reset a forgotten password), delete."""
    import time

    from .hub.auth import AuthError, check_password_policy, check_role, check_username, hash_password, new_user
    from .store import LastAdminError, UserExistsError

    if args.action == "list":
        for user in await store.list_users():
            state = "disabled" if user.disabled else "active"
            print(f"{user.user_id}\t{user.name}\t{user.role}\t{state}")
        return 0
    user = await store.get_user_by_name(args.name) if args.action != "add" else None
    if args.action != "add" and user is None:
        print(f"roost users: no user named {args.name!r} (see `roost users list`)", file=sys.stderr)
        return EXIT_FAILURE
    if args.action == "delete":
        try:
            await store.delete_user(user.user_id)
        except LastAdminError as err:
            print(f"roost users: {err}", file=sys.stderr)
            return EXIT_FAILURE
        await store.append_audit("user.deleted", actor=cli_actor(), target=f"user:{user.name}")
        print(f"deleted {user.name}")
        return 0
    try:
        if args.action == "add":
            check_username(args.name)
            role = args.role or ("admin" if await store.count_users() == 0 else "viewer")
            check_role(role)
        password = check_password_policy(_read_password(f"Password for {args.name}"))
    except (AuthError, ValueError) as err:
        print(f"roost users: {err}", file=sys.stderr)
        return EXIT_CONFIG
    password_hash = await asyncio.to_thread(hash_password, password)
    if args.action == "passwd":
        await store.update_user(user.user_id, password_hash=password_hash, now=time.time())
        await store.append_audit("user.changed", actor=cli_actor(), target=f"user:{user.name}", details={"password": "changed"})
        print(f"new password set for {user.name}; their sessions have ended")
        return 0
    try:
        await store.add_user(new_user(args.name, password_hash, role))
    except UserExistsError as err:
        print(f"roost users: {err}", file=sys.stderr)
        return EXIT_FAILURE
    await store.append_audit("user.created", actor=cli_actor(), target=f"user:{args.name}", details={"role": role})
    print(f"added {args.name} ({role})")
    return 0


def cmd_api_token(args: argparse.Namespace) -> int:
    return _on_hub_store(args, _api_token)


async def _api_token(store: Any, config: Any, args: argparse.Namespace) -> int:
    """User API tokens from the hub host; `create` prints the token, the only time it is shown."""
    import time

    from .hub.auth import AuthError, create_api_token

    if args.action == "create":
        user = await store.get_user_by_name(args.user)
        if user is None:
            print(f"roost api-token: no user named {args.user!r} (add one with `roost users add`)", file=sys.stderr)
            return EXIT_FAILURE
        ttl = None
        if args.expires not in (None, "never"):
            try:
                ttl = parse_duration(args.expires)
            except Exception:
                ttl = 0
            if not 60 <= ttl <= 5 * 365 * 86400:
                print("roost api-token: --expires must be a duration between 1m and 5y (such as 30d), or never", file=sys.stderr)
                return EXIT_CONFIG
        try:
            token, record = await create_api_token(store, user, scope=args.scope, name=args.name or "", ttl=ttl)
        except AuthError as err:
            print(f"roost api-token: {err}", file=sys.stderr)
            return EXIT_CONFIG
        await store.append_audit(
            "api_token.created", actor=cli_actor(), target=f"token:{record.token_id}", details={"user": user.name, "scope": args.scope}
        )
        print(token)
        print(f"# {args.scope} token {record.token_id} for {user.name}; it is shown only now. Send it as: Authorization: Bearer <token>", file=sys.stderr)
    elif args.action == "list":
        users = {u.user_id: u.name for u in await store.list_users()}
        now = time.time()
        for tok in await store.list_api_tokens():
            state = "revoked" if tok.revoked else ("expired" if tok.expires_at and tok.expires_at < now else "active")
            print(f"{tok.token_id}\t{users.get(tok.user_id, '?')}\t{tok.scope}\t{state}\t{tok.name}")
    elif args.action == "revoke":
        if not await store.revoke_api_token(args.token_id):
            print(f"roost api-token: no token with id {args.token_id!r}", file=sys.stderr)
            return EXIT_FAILURE
        await store.append_audit("api_token.revoked", actor=cli_actor(), target=f"token:{args.token_id}")
        print(f"revoked {args.token_id}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    _setup_logging("warning")
    return asyncio.run(_audit(args))


async def _audit(args: argparse.Namespace) -> int:
    """verify / head / list on the hub's audit log, or with --agent on this agent's own."""
    from .audit import EMPTY_HEAD, AuditHead, escape, format_entry

    anchors = []
    for text in getattr(args, "head", None) or ():
        try:
            anchors.append(AuditHead.parse(text))
        except ValueError as err:
            print(f"roost audit: {err}", file=sys.stderr)
            return EXIT_CONFIG
    if args.agent:
        from roost.agent.audit import AUDIT_FILE, AgentAudit

        agent_config = load_agent_config(args.config, overrides={"agent": {"data_dir": args.data_dir}})
        log: Any = AgentAudit(agent_config.data_dir / AUDIT_FILE)
        where = log.path
        if not where.exists():
            print(f"roost audit: no agent audit log at {where} — has the agent run with this --data-dir?", file=sys.stderr)
            return EXIT_FAILURE
        await log.open(create=False)
        close = log.close
        verify, read_head = log.verify, log.head

        async def recent(limit: int, action: str) -> list[Any]:
            prefix = action.rstrip(".")
            rows = await log.recent(limit if not prefix else 100_000)
            rows = [e for e in rows if not prefix or e.action == prefix or str(e.action).startswith(prefix + ".")]
            return rows[:limit]
    else:
        from .store import AuditFilter
        from .store.sqlite import SQLiteStore

        try:
            config = _hub_host_config(args)
        except NoHubHere as err:
            print(f"roost audit: {err}", file=sys.stderr)
            return EXIT_CONFIG
        where = config.store_path
        if not where.exists():
            print(f"roost audit: no hub database at {where} — pass the hub's --data-dir (or --agent for an agent)", file=sys.stderr)
            return EXIT_FAILURE
        store = SQLiteStore(where)
        await store.open()
        close = store.close

        async def verify(anchors: Any = ()) -> Any:
            return await store.verify_audit(anchors=anchors)

        read_head = store.audit_head

        async def recent(limit: int, action: str) -> list[Any]:
            return await store.list_audit(AuditFilter(action=action), limit=limit)

    try:
        if args.action == "verify":
            result = await verify(anchors=anchors)
            if result.ok:
                head = result.head or EMPTY_HEAD
                checked = f"; matches the {len(anchors)} head(s) given" if anchors else ""
                print(f"audit log intact: {result.count} entries, head {head.count}:{head.hash}{checked} ({where})")
                return 0
            problem = result.problem
            print(f"audit log BROKEN at {escape(str(problem))}")
            if problem is not None and problem.entry is not None:
                print(f"  {format_entry(problem.entry)}")
            print(f"({where})")
            return EXIT_FAILURE
        if args.action == "head":
            head = await read_head() or EMPTY_HEAD
            print(f"{head.count}:{head.hash}")
            print(
                "# note this down or keep it elsewhere; later, `roost audit verify --head "
                f"{head.count}:{head.hash[:16]}` proves the log still holds everything up to here",
                file=sys.stderr,
            )
            return 0
        for entry in reversed(await recent(args.limit, args.filter_action or "")):
            print(format_entry(entry))
        return 0
    finally:
        await close()


def cmd_nodes(args: argparse.Namespace) -> int:
    return _on_hub_store(args, _nodes)


async def _nodes(store: Any, config: Any, args: argparse.Namespace) -> int:
    """Nodes and pairing from the hub host's shell; the running hub picks changes up within a second."""
    import time

    from .hub.pairing import PairingError, approve_request, new_node_id_for_cli, reject_request
    from .identity import fingerprint

    if args.action == "list":
        grants = await store.all_grants()
        for node in await store.list_nodes():
            state = "revoked" if node.revoked else ("local" if node.local else "paired")
            seen = time.strftime("%Y-%m-%d %H:%M", time.localtime(node.last_seen)) if node.last_seen else "never"
            granted = ",".join(grants[node.node_id].grants) if node.node_id in grants else ""
            print(f"{node.node_id}\t{_printable(node.name)}\t{state}\tlast seen {seen}\t{granted}")
    elif args.action == "pending":
        for req in await store.list_pairing_requests(now=time.time()):
            flag = f"\tKEY CHANGED for {req.key_changed_node}" if req.key_changed_node else ""
            print(f"{req.request_id}\t{_printable(req.hostname)}\tcode {req.code}\tkey {fingerprint(req.public_key)}\tfrom {req.peer}{flag}")
    elif args.action == "approve":
        grants = None if args.grant is None else sorted({g for part in args.grant for g in part.split(",") if g})
        try:
            node = await approve_request(store, args.id, actor=cli_actor(), grants=grants, name=args.name, new_node_id=new_node_id_for_cli)
        except PairingError as err:
            print(f"roost nodes: {err}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"approved: node {node.node_id} ({_printable(node.hostname)})")
    elif args.action == "reject":
        try:
            await reject_request(store, args.id, actor=cli_actor(), reason=args.reason)
        except PairingError as err:
            print(f"roost nodes: {err}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"rejected {args.id}")
    elif args.action == "revoke":
        node = await store.get_node(args.id)
        if node is None or node.local:
            print(f"roost nodes: no revocable node with id {args.id!r}", file=sys.stderr)
            return EXIT_FAILURE
        await store.set_node_revoked(args.id, True)
        await store.append_audit("node.revoked", actor=cli_actor(), target=f"node:{args.id}")
        print(f"revoked {args.id}; a running hub closes its connection within a second")
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    """The operator key: made and kept on the operator's own machine, never on the hub."""
    from .identity import fingerprint
    from .signing import OperatorKeyError, default_operator_key_path, generate_operator_key, read_operator_public_key, save_operator_key

    chosen = args.file if args.action == "pubkey" else args.out
    path = Path(chosen).expanduser() if chosen else default_operator_key_path()
    try:
        if args.action == "pubkey":
            print(read_operator_public_key(path))
            return 0
        if path.exists():
            raise OperatorKeyError(f"{path} already exists; choose another --out, or move the old key away first")
        passphrase = _operator_passphrase(args.passphrase_file, confirm=True)
        public = save_operator_key(path, generate_operator_key(), passphrase)
    except OperatorKeyError as err:
        print(f"roost operator: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(public)
    print(
        f"# operator key {fingerprint(public)} written to {path}, encrypted with your passphrase; keep both off the hub.\n"
        "# Agents trust the public key above when it is in their config ([agent] operator_keys = [\"...\"])\n"
        "# or in the hub's ([hub] operator_keys = [\"...\"]) when they pair or enrol.",
        file=sys.stderr,
    )
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    """Sign one envelope from the dashboard (or the API) with the operator key: summary to stderr, signed JSON to stdout."""
    from .identity import fingerprint
    from .signing import (
        EnvelopeError,
        OperatorKeyError,
        check_before_signing,
        default_operator_key_path,
        describe_envelope,
        encode_envelope,
        envelope_from_text,
        load_operator_key,
        public_key_of,
        sign_envelope,
    )

    try:
        text = sys.stdin.read() if args.file in (None, "-") else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        print(f"roost sign: cannot read {args.file}: {getattr(err, 'strerror', None) or err}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        envelope = check_before_signing(envelope_from_text(text.strip()))
    except EnvelopeError as err:
        print(f"roost sign: will not sign this: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(describe_envelope(envelope), file=sys.stderr, flush=True)
    try:
        key = load_operator_key(Path(args.key).expanduser() if args.key else default_operator_key_path(), _operator_passphrase(args.passphrase_file, confirm=False))
        signed = sign_envelope(envelope, key)
    except (OperatorKeyError, EnvelopeError) as err:
        print(f"roost sign: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(encode_envelope(signed), flush=True)
    print(
        f"# signed with operator key {fingerprint(public_key_of(key))}. Paste the line above into the dashboard, "
        "or send it as \"envelope\" to POST /api/v1/nodes/<node>/actions/<action>.",
        file=sys.stderr,
    )
    return 0


def _operator_passphrase(passphrase_file: str | None, *, confirm: bool) -> str:
    """From --passphrase-file, else asked on the terminal (twice for a new key); never read from stdin, which may carry the envelope."""
    import getpass

    from .signing import OperatorKeyError, read_passphrase_file

    if passphrase_file:
        return read_passphrase_file(Path(passphrase_file))
    try:
        with open("/dev/tty"):
            pass
    except OSError:
        raise OperatorKeyError("no terminal to ask for the passphrase on; pass --passphrase-file FILE") from None
    if not confirm:
        return getpass.getpass("Operator key passphrase (Ctrl-C to refuse): ")
    first = getpass.getpass("Passphrase for the new operator key: ")
    if getpass.getpass("The same passphrase again: ") != first:
        raise OperatorKeyError("the two passphrases differ; nothing was written")
    return first


def _printable(text: str) -> str:
    """Names come from agents: never let one print control characters into a terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roost", description="Roost: a local-first hub and node agent for homelabs.")
    parser.add_argument("--version", action="version", version=f"roost {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{hub,agent,join-token,nodes,users,api-token,audit,operator,sign,mcp,new-integration,release,update}")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="TOML config file (optional; defaults work without one)")
        p.add_argument("--data-dir", help="where state lives (default: $ROOST_DATA_DIR or ~/.local/share/roost[-agent])")

    hub = sub.add_parser("hub", help="run the hub: dashboard, API and agent gateway, with this host as a node")
    common(hub)
    hub.add_argument("--bind", help="address to listen on (default 0.0.0.0: the LAN, with HTTPS and LAN-only mode; 127.0.0.1 for this host only)")
    hub.add_argument("--port", type=int, help="port to listen on (default 8765)")
    hub.set_defaults(func=cmd_hub)

    agent = sub.add_parser("agent", help="run an agent that reports this host to a hub")
    common(agent)
    agent.add_argument("--hub", help="the hub's URL, e.g. http://hub.lan:8765")
    agent.add_argument("--join", metavar="TOKEN", help="join token for the first start (from `roost join-token create` on the hub)")
    agent.add_argument("--name", help="display name for this node (default: its hostname)")
    agent.add_argument("--rotate-key", action="store_true", help="replace this node's identity key with a new one at the next connection")
    agent.add_argument("--enrol-only", action="store_true", help="enrol with --join and exit (the install script does this before starting the service)")
    agent.set_defaults(func=cmd_agent)

    tokens = sub.add_parser("join-token", help="create, list or revoke join tokens (run on the hub host)")
    tsub = tokens.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create", help="create a join token and print the agent command")
    common(create)
    create.add_argument("--expires", default="1h", help="how long the token is valid (default 1h)")
    create.add_argument("--uses", type=int, default=1, help="how many agents may join with it (default 1)")
    create.add_argument("--note", help="a note to remember what it was for")
    create.add_argument("--hub-url", help="the URL agents use to reach the hub (default: the running hub's own, else from the hub config)")
    lst = tsub.add_parser("list", help="list join tokens")
    common(lst)
    revoke = tsub.add_parser("revoke", help="revoke a join token by id")
    common(revoke)
    revoke.add_argument("token_id")
    tokens.set_defaults(func=cmd_join_token)

    nodes = sub.add_parser("nodes", help="list nodes, decide pairing requests, revoke nodes (run on the hub host)")
    nsub = nodes.add_subparsers(dest="action", required=True)
    common(nsub.add_parser("list", help="list nodes with their grants"))
    common(nsub.add_parser("pending", help="list pairing requests waiting for a decision, with their codes"))
    napprove = nsub.add_parser("approve", help="approve a pairing request after comparing its code with the agent's")
    common(napprove)
    napprove.add_argument("id", help="the request id from `roost nodes pending`")
    napprove.add_argument("--grant", action="append", help="capabilities to grant (repeat or comma-separate; default: the read-only ones offered)")
    napprove.add_argument("--name", help="display name for the node")
    nreject = nsub.add_parser("reject", help="reject a pairing request")
    common(nreject)
    nreject.add_argument("id")
    nreject.add_argument("--reason", default="rejected from the command line")
    nrevoke = nsub.add_parser("revoke", help="revoke a node: its connection is cut and it cannot come back")
    common(nrevoke)
    nrevoke.add_argument("id")
    nodes.set_defaults(func=cmd_nodes)

    users = sub.add_parser("users", help="add, list, reset or delete dashboard users (run on the hub host)")
    usub = users.add_subparsers(dest="action", required=True)
    uadd = usub.add_parser("add", help="add a user; the password is asked for, or read from stdin when it is not a terminal")
    common(uadd)
    uadd.add_argument("name")
    uadd.add_argument("--role", choices=["admin", "operator", "viewer"], help="default: admin for the first user, else viewer")
    common(usub.add_parser("list", help="list users"))
    upass = usub.add_parser("passwd", help="set a new password for a user (ends their sessions)")
    common(upass)
    upass.add_argument("name")
    udel = usub.add_parser("delete", help="delete a user with their sessions and API tokens")
    common(udel)
    udel.add_argument("name")
    users.set_defaults(func=cmd_users)

    api_tokens = sub.add_parser("api-token", help="create, list or revoke user API tokens (run on the hub host)")
    apisub = api_tokens.add_subparsers(dest="action", required=True)
    acreate = apisub.add_parser("create", help="create an API token for a user and print it (shown only once)")
    common(acreate)
    acreate.add_argument("--user", required=True, help="the user the token acts for")
    acreate.add_argument("--scope", choices=["read", "operate", "admin"], default="read", help="what it may do, never more than the user's role (default read)")
    acreate.add_argument("--expires", help="how long it is valid, such as 30d (default: never)")
    acreate.add_argument("--name", help="a name to recognise it by")
    common(apisub.add_parser("list", help="list API tokens"))
    arevoke = apisub.add_parser("revoke", help="revoke an API token by id; it stops working at once")
    common(arevoke)
    arevoke.add_argument("token_id")
    api_tokens.set_defaults(func=cmd_api_token)

    audit = sub.add_parser("audit", help="verify the audit log, print its head, list its newest entries")
    asub = audit.add_subparsers(dest="action", required=True)

    def audit_common(p: argparse.ArgumentParser) -> None:
        common(p)
        p.add_argument("--agent", action="store_true", help="this agent's own log (<agent data dir>/audit.db) instead of the hub's")

    verify = asub.add_parser("verify", help="check the hash chain; exit 0 when intact, 1 with the first problem")
    audit_common(verify)
    verify.add_argument(
        "--head",
        action="append",
        metavar="COUNT:HASH",
        help="a head noted earlier (from `roost audit head`); the log must still hold it (repeatable)",
    )
    head = asub.add_parser("head", help="print the head (entry count and last hash) to note down or forward")
    audit_common(head)
    lst = asub.add_parser("list", help="print the newest entries, one escaped line each, oldest first")
    audit_common(lst)
    lst.add_argument("--limit", type=int, default=50, help="how many entries (default 50)")
    lst.add_argument("--action", dest="filter_action", metavar="PREFIX", help="only actions under this dotted prefix, e.g. pairing")
    audit.set_defaults(func=cmd_audit)

    operator = sub.add_parser("operator", help="make the operator key that signs destructive operations (run on your own machine, not the hub)")
    osub = operator.add_subparsers(dest="action", required=True)
    keygen = osub.add_parser("keygen", help="make a passphrase-protected Ed25519 operator key and print its public key")
    keygen.add_argument("--out", help="where to write it (default: $ROOST_OPERATOR_KEY or ~/.config/roost/operator-key.pem)")
    keygen.add_argument("--passphrase-file", help="read the passphrase from the first line of this file instead of asking")
    pubkey = osub.add_parser("pubkey", help="print the public key of an operator key file (no passphrase needed)")
    pubkey.add_argument("file", nargs="?", help="the key file (default: $ROOST_OPERATOR_KEY or ~/.config/roost/operator-key.pem)")
    operator.set_defaults(func=cmd_operator)

    sign = sub.add_parser("sign", help="sign an operation envelope from the dashboard with the operator key")
    sign.add_argument("file", nargs="?", help="the unsigned envelope JSON (default, or -: standard input)")
    sign.add_argument("--key", help="the operator key file (default: $ROOST_OPERATOR_KEY or ~/.config/roost/operator-key.pem)")
    sign.add_argument("--passphrase-file", help="read the passphrase from the first line of this file instead of asking")
    sign.set_defaults(func=cmd_sign)
    mcp = sub.add_parser("mcp", help="serve MCP over stdio for an AI assistant, through the hub's API with one API token")
    mcp.add_argument("--hub", required=True, help="the hub's URL, e.g. https://hub.lan:8765")
    mcp.add_argument("--token-file", help="a file holding the API token (default: $ROOST_API_TOKEN); read scope gives read-only tools")
    mcp.add_argument("--ca", help="the hub's CA certificate (its /api/v1/ca.pem) when it is not in the system store")
    mcp.add_argument("--read-only", action="store_true", help="offer only the read tools, whatever the token may do")
    mcp.add_argument("--tools", help="a comma-separated subset of the tools to offer")
    mcp.set_defaults(func=cmd_mcp)

    from . import scaffold

    new = sub.add_parser("new-integration", help="scaffold a new integration (a folder or a publishable package) with a passing test")
    scaffold.add_arguments(new)
    new.set_defaults(func=scaffold.run)

    from .release_cli import add_release_parser

    add_release_parser(sub, common)
    return parser


def cmd_mcp(args: argparse.Namespace) -> int:
    """Serve MCP over stdio for an AI assistant, backed by the hub's REST API and one API token."""
    import asyncio
    import os

    from roost.core.assistant import ALL_TOOLS, read_token, serve_stdio

    try:
        token = read_token(args.token_file, os.environ.get("ROOST_API_TOKEN"))
    except (OSError, ValueError) as err:
        print(f"roost mcp: {err}", file=sys.stderr)
        return EXIT_CONFIG
    tools = [t.strip() for t in args.tools.split(",") if t.strip()] if args.tools else None
    unknown = sorted(set(tools or ()) - set(ALL_TOOLS))
    if unknown:
        print(f"roost mcp: --tools: unknown {', '.join(unknown)}; the tools are {', '.join(ALL_TOOLS)}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        import mcp  # noqa: F401
    except ImportError:
        print("roost mcp: the MCP SDK is not installed; pip install 'roost[mcp]'", file=sys.stderr)
        return EXIT_CONFIG
    asyncio.run(serve_stdio(args.hub, token, ca_file=args.ca, read_only=args.read_only, tools=tools))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "join-token" and args.action == "create" and not 1 <= args.uses <= 1000:
        print("roost join-token: --uses must be between 1 and 1000", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"roost {args.command}: configuration error:\n{err}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
