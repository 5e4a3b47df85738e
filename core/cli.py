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

    from .hub.app import create_app

    app = create_app(config)
    url = f"http://{config.bind if ':' not in config.bind else f'[{config.bind}]'}:{config.port}"
    print(f"Roost hub {__version__} on {url} (data in {config.data_dir})", flush=True)
    try:
        web.run_app(app, host=config.bind, port=config.port, access_log=None, shutdown_timeout=5, print=None)
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
    from roost.agent.runtime import AgentRuntime, load_state, save_state
    from roost.agent.uplink import EnrollError, WebSocketUplink, enroll

    state = load_state(config.data_dir)
    hub_url = config.hub or state.get("hub", "")
    if not hub_url:
        print("roost agent: no hub configured — run `roost agent --hub http://HUB:8765 --join TOKEN` (create the token on the hub with `roost join-token create`)", file=sys.stderr)
        return EXIT_CONFIG
    rt = AgentRuntime(data_dir=config.data_dir, settings=config.settings, integrations_config=config.integrations)
    if not state.get("node_id"):
        if not join:
            print(f"roost agent: this agent is not enrolled with {hub_url} yet — add --join TOKEN (create one on the hub with `roost join-token create`)", file=sys.stderr)
            return EXIT_CONFIG
        try:
            answer = await enroll(hub_url, join, rt.identity, hostname=rt.facts["hostname"], name=config.settings.name, facts=rt.facts)
        except EnrollError as err:
            print(f"roost agent: {err}", file=sys.stderr)
            return EXIT_FAILURE
        state = {"node_id": answer["node_id"], "hub_id": answer.get("hub_id", ""), "hub": hub_url}
        save_state(config.data_dir, state)
        _LOGGER.info("enrolled with %s as node %s", hub_url, state["node_id"])
    elif join:
        _LOGGER.info("already enrolled as node %s; ignoring --join", state["node_id"])
    if state.get("hub") != hub_url:
        state["hub"] = hub_url
        save_state(config.data_dir, state)
    rt.node_id = state["node_id"]
    await rt.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _LOGGER.info("agent for node %s reporting to %s every %g s", rt.node_id, hub_url, config.settings.interval)
    try:
        await rt.run(WebSocketUplink(hub_url), stop)
    finally:
        await rt.stop()
    return 0


def cmd_join_token(args: argparse.Namespace) -> int:
    config = _hub_config(args)
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(_join_token(config, args))


async def _join_token(config: Any, args: argparse.Namespace) -> int:
    from .hub.app import create_join_token
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
            token, record = await create_join_token(store, ttl=ttl, uses=args.uses, note=args.note or "")
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
