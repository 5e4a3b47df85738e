"""`roost release`: sign a built executable with the operator key (on the operator's machine), add it to a hub, list what a hub serves."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from pathlib import Path

from .release import DEFAULT_RELEASE_TTL, MAX_RELEASE_TTL, ReleaseError, make_manifest, parse_manifest, sign_manifest

EXIT_FAILURE = 1
EXIT_CONFIG = 2


def cmd_release(args: argparse.Namespace) -> int:
    try:
        if args.action == "sign":
            return _sign(args)
        if args.action == "add":
            return _add(args)
        return _list(args)
    except ReleaseError as err:
        print(f"roost release: {err}", file=sys.stderr)
        return EXIT_FAILURE


def _version_of(executable: Path) -> str:
    """Ask the build itself (`roost --version` prints "roost X.Y.Z")."""
    try:
        out = subprocess.run([str(executable), "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise ReleaseError(f"cannot run {executable} --version to learn its version ({err}); pass --release-version") from None
    parts = out.split()
    if len(parts) != 2 or parts[0] != "roost":
        raise ReleaseError(f"{executable} --version printed {out.strip()[:60]!r}, not 'roost X.Y.Z'; pass --release-version")
    return parts[1]


def _sign(args: argparse.Namespace) -> int:
    from .cli import _operator_passphrase
    from .config import parse_duration
    from .identity import fingerprint
    from .signing import OperatorKeyError, default_operator_key_path, load_operator_key, public_key_of

    executable = Path(args.file)
    if not executable.is_file():
        raise ReleaseError(f"{executable} is not a file; build one with scripts/build-binary")
    try:
        ttl = parse_duration(args.expires)
    except Exception:
        ttl = -1
    if not 3600 <= ttl <= MAX_RELEASE_TTL:
        print("roost release: --expires must be a duration between 1h and 3y, such as 90d", file=sys.stderr)
        return EXIT_CONFIG
    name = args.name or executable.name
    version = args.release_version or _version_of(executable)
    digest = hashlib.sha256()
    with open(executable, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    now = int(time.time())
    raw = make_manifest(name=name, version=version, sha256=digest.hexdigest(), size=executable.stat().st_size, issued=now, expires=now + int(ttl))
    try:
        key = load_operator_key(Path(args.key).expanduser() if args.key else default_operator_key_path(), _operator_passphrase(args.passphrase_file, confirm=False))
    except OperatorKeyError as err:
        print(f"roost release: {err}", file=sys.stderr)
        return EXIT_FAILURE
    executable.with_name(executable.name + ".manifest").write_bytes(raw)
    executable.with_name(executable.name + ".sig").write_text(sign_manifest(raw, key) + "\n")
    print(raw.decode(), end="")
    print(
        f"# signed {name} {version} with operator key {fingerprint(public_key_of(key))}; copy {executable.name}, "
        f"{executable.name}.manifest and {executable.name}.sig to the hub and run `roost release add {executable.name}` there.",
        file=sys.stderr,
    )
    return 0


def _add(args: argparse.Namespace) -> int:
    from .cli import _hub_config
    from .release import add_release, releases_dir

    config = _hub_config(args)
    release = add_release(releases_dir(config.data_dir), Path(args.file), config.operator_keys)
    print(f"added {release.name} {release.version}; the hub serves it at /download/{release.name} and agents may update to it")
    return 0


def _list(args: argparse.Namespace) -> int:
    from .cli import _hub_config
    from .release import releases_dir, stored_releases

    config = _hub_config(args)
    for name, release in sorted(stored_releases(releases_dir(config.data_dir)).items()):
        expires = time.strftime("%Y-%m-%d", time.gmtime(release.expires))
        print(f"{name}\t{release.version}\t{release.size} bytes\tsha256 {release.sha256}\texpires {expires}")
    return 0


def add_release_parser(sub: argparse._SubParsersAction, common) -> None:
    release = sub.add_parser("release", help="sign a built roost with the operator key, add it to the hub, list the hub's releases")
    rsub = release.add_subparsers(dest="action", required=True)
    sign = rsub.add_parser("sign", help="write FILE.manifest and FILE.sig for a built executable (on your machine, where the operator key is)")
    sign.add_argument("file", help="the executable from scripts/build-binary, e.g. dist/roost-linux-x86_64")
    sign.add_argument("--key", help="the operator key file (default: $ROOST_OPERATOR_KEY or ~/.config/roost/operator-key.pem)")
    sign.add_argument("--passphrase-file", help="read the passphrase from the first line of this file instead of asking")
    sign.add_argument("--expires", default=f"{DEFAULT_RELEASE_TTL // 86400}d", help="how long agents accept this manifest (default 90d)")
    sign.add_argument("--release-version", help="the version it is (default: what FILE --version prints)")
    sign.add_argument("--name", help="the release name (default: the file's name, roost-linux-<arch>)")
    add = rsub.add_parser("add", help="check a signed release against the hub's operator keys and serve it (run on the hub host)")
    common(add)
    add.add_argument("file", help="the executable, with FILE.manifest and FILE.sig beside it")
    common(rsub.add_parser("list", help="list the releases this hub serves"))
    release.set_defaults(func=cmd_release)

    update = sub.add_parser("update", help="update this installed agent to the newest signed release its hub holds (checked, staged, rolled back if unhealthy)")
    common(update)
    update.add_argument("--no-restart", action="store_true", help="switch, but leave restarting the service to you")
    update.set_defaults(func=cmd_update)


def cmd_update(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from roost.agent.update import UpdateRefused, update_from_hub

    from .config import load_agent_config

    logging.basicConfig(level=logging.WARNING)
    config = load_agent_config(args.config, overrides={"agent": {"data_dir": args.data_dir}})
    try:
        version = asyncio.run(update_from_hub(config.data_dir, restart=not args.no_restart))
    except UpdateRefused as err:
        print(f"roost update: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"switched to roost {version}; it is committed after its health window, or rolled back by the supervisor")
    return 0


__all__ = ["add_release_parser", "cmd_release", "parse_manifest"]
