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
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiohttp's access log is noise for a homelab hub; errors still show.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _hub_config(args: argparse.Namespace):
    return load_hub_config(
        args.config,
        overrides={"hub": {"data_dir": args.data_dir, "bind": getattr(args, "bind", None), "port": getattr(args, "port", None)}},
    )


def cmd_hub(args: argparse.Namespace) -> int:
    config = _hub_config(args)
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
    try:
        web.run_app(app, host=config.bind, port=config.port, ssl_context=ssl_context, access_log=None, shutdown_timeout=5, print=None)
    except OSError as err:
        print(f"roost hub: cannot listen on {config.bind}:{config.port}: {err.strerror} — pick another --port or stop what uses it", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    config = load_agent_config(args.config, overrides={"agent": {"data_dir": args.data_dir, "hub": args.hub, "name": args.name}})
    _setup_logging(config.log_level)
    return asyncio.run(_run_agent(config, args.join))


async def _run_agent(config: Any, join: str | None) -> int:
    # Only agent modules: the agent process never loads the hub or the dashboard.
    from roost.agent.pairing import PairingFailed
    from roost.agent.runtime import AgentRuntime, load_state, save_state
    from roost.agent.trust import TrustError, pinned_context
    from roost.agent.uplink import EnrollError, WebSocketUplink

    state = load_state(config.data_dir)
    hub_url = config.hub or state.get("hub", "")
    rt = AgentRuntime(data_dir=config.data_dir, settings=config.settings, integrations_config=config.integrations)
    await rt.start()
    try:
        if not state.get("node_id"):
            try:
                if join:
                    if not hub_url:
                        print("roost agent: --join needs --hub https://HUB:8765 (the command printed by `roost join-token create` has both)", file=sys.stderr)
                        return EXIT_CONFIG
                    state = await _enroll_with_token(rt, config, hub_url, join)
                else:
                    state = await _pair(rt, config, hub_url)
            except (EnrollError, TrustError, PairingFailed, OSError) as err:
                print(f"roost agent: {err}", file=sys.stderr)
                return EXIT_FAILURE
            save_state(config.data_dir, state)
            hub_url = state["hub"]
            _LOGGER.info("this host is node %s of hub %s", state["node_id"], hub_url)
        elif join:
            _LOGGER.info("already enrolled as node %s; ignoring --join", state["node_id"])
        if state.get("hub") != hub_url:
            state["hub"] = hub_url
            save_state(config.data_dir, state)
        try:
            ssl_context = pinned_context(hub_url, config.data_dir)
        except TrustError as err:
            print(f"roost agent: {err}", file=sys.stderr)
            return EXIT_CONFIG
        rt.node_id = state["node_id"]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        _LOGGER.info("agent for node %s reporting to %s every %g s", rt.node_id, hub_url, config.settings.interval)
        await rt.run(WebSocketUplink(hub_url, ssl_context=ssl_context), stop)
    finally:
        await rt.stop()
    return 0


async def _enroll_with_token(rt: Any, config: Any, hub_url: str, token: str) -> dict[str, Any]:
    """Pin the hub CA named in the token before the token's secret goes anywhere, then enrol."""
    from roost.agent.trust import learn_hub_ca, pinned_context, save_ca
    from roost.agent.uplink import EnrollError, enroll
    from roost.core.jointoken import join_token_fingerprint

    expected = join_token_fingerprint(token)
    if expected is None and not hub_url.startswith("http://"):
        raise EnrollError("this join token carries no hub fingerprint; create a new one with `roost join-token create`")
    ca_pem, fp = await learn_hub_ca(hub_url, expected=expected)
    save_ca(config.data_dir, ca_pem)
    answer = await enroll(
        hub_url,
        token,
        rt.identity,
        hostname=rt.facts["hostname"],
        name=config.settings.name,
        facts=rt.facts,
        ssl_context=pinned_context(hub_url, config.data_dir),
    )
    return {"node_id": answer["node_id"], "hub_id": answer.get("hub_id", ""), "hub": hub_url, "ca_fingerprint": fp}


async def _pair(rt: Any, config: Any, hub_url: str) -> dict[str, Any]:
    """No token: find the hub, ask to pair, show the code, wait for a person to approve in the dashboard."""
    from roost.agent.pairing import PairingFailed, find_hub, pair
    from roost.agent.trust import learn_hub_ca, pinned_context, save_ca
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
            f"  Compare it with the code the Roost dashboard shows for {rt.facts['hostname']} and approve it there.\n"
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
                    facts=rt.facts,
                    capabilities=rt.manager.capabilities(),
                    ceiling=settings.ceiling,
                    ca_fingerprint=fp,
                    ssl_context=pinned_context(hub_url, config.data_dir),
                    show_code=show,
                )
                break
            except PairingFailed as err:
                if "expired" not in str(err):
                    raise
                print("Pairing request expired; asking again with a new code.", flush=True)
    finally:
        if announcer is not None:
            await announcer.stop()
    print(f"Approved: this host is node {paired.node_id}.", flush=True)
    return {"node_id": paired.node_id, "hub_id": paired.hub_id, "hub": hub_url, "ca_fingerprint": fp}


def cmd_join_token(args: argparse.Namespace) -> int:
    config = _hub_config(args)
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(_join_token(config, args))


async def _join_token(config: Any, args: argparse.Namespace) -> int:
    from .hub.app import create_join_token, hub_tls
    from .store.sqlite import SQLiteStore

    store = SQLiteStore(config.store_path)
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    await store.open()
    try:
        if args.action == "create":
            try:
                ttl = parse_duration(args.expires)
            except Exception:
                print(f"roost join-token: --expires {args.expires!r} is not a duration such as 30m, 1h or 7d", file=sys.stderr)
                return EXIT_CONFIG
            if not 60 <= ttl <= 365 * 86400:
                print("roost join-token: --expires must be between 1m and 365d", file=sys.stderr)
                return EXIT_CONFIG
            tls = await asyncio.to_thread(hub_tls, config)
            token, record = await create_join_token(store, ttl=ttl, uses=args.uses, note=args.note or "", ca_fingerprint=tls.ca_fingerprint)
            hub_url = args.hub_url or config.url()
            print(token)
            print(f"# valid for {args.expires}, {args.uses} use(s). On the new host run:", file=sys.stderr)
            print(f"roost agent --hub {hub_url} --join {token}", file=sys.stderr)
        elif args.action == "list":
            import time

            for tok in await store.list_join_tokens():
                left = "revoked" if tok.revoked else ("expired" if tok.expires_at < time.time() else f"{tok.uses_left} use(s) left")
                print(f"{tok.token_id}\t{left}\t{tok.note}")
        elif args.action == "revoke":
            if not await store.revoke_join_token(args.token_id):
                print(f"roost join-token: no token with id {args.token_id!r}", file=sys.stderr)
                return EXIT_FAILURE
            print(f"revoked {args.token_id}")
    finally:
        await store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roost", description="Roost: a local-first hub and node agent for homelabs.")
    parser.add_argument("--version", action="version", version=f"roost {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{hub,agent,join-token}")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="TOML config file (optional; defaults work without one)")
        p.add_argument("--data-dir", help="where state lives (default: $ROOST_DATA_DIR or ~/.local/share/roost[-agent])")

    hub = sub.add_parser("hub", help="run the hub: dashboard, API and agent gateway, with this host as a node")
    common(hub)
    hub.add_argument("--bind", help="address to listen on (default 127.0.0.1; 0.0.0.0 to let other hosts' agents in)")
    hub.add_argument("--port", type=int, help="port to listen on (default 8765)")
    hub.set_defaults(func=cmd_hub)

    agent = sub.add_parser("agent", help="run an agent that reports this host to a hub")
    common(agent)
    agent.add_argument("--hub", help="the hub's URL, e.g. http://hub.lan:8765")
    agent.add_argument("--join", metavar="TOKEN", help="join token for the first start (from `roost join-token create` on the hub)")
    agent.add_argument("--name", help="display name for this node (default: its hostname)")
    agent.set_defaults(func=cmd_agent)

    tokens = sub.add_parser("join-token", help="create, list or revoke join tokens (run on the hub host)")
    tsub = tokens.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create", help="create a join token and print the agent command")
    common(create)
    create.add_argument("--expires", default="1h", help="how long the token is valid (default 1h)")
    create.add_argument("--uses", type=int, default=1, help="how many agents may join with it (default 1)")
    create.add_argument("--note", help="a note to remember what it was for")
    create.add_argument("--hub-url", help="the URL agents use to reach the hub (default: from the hub config)")
    lst = tsub.add_parser("list", help="list join tokens")
    common(lst)
    revoke = tsub.add_parser("revoke", help="revoke a join token by id")
    common(revoke)
    revoke.add_argument("token_id")
    tokens.set_defaults(func=cmd_join_token)
    return parser


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
