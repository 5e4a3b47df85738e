"""Signed releases of the roost executable: the manifest the operator signs, and the checks every host makes before running one.

A release is three files side by side: the executable (``roost-linux-x86_64``),
its manifest (``.manifest``: a few ``key: value`` lines, so that a POSIX shell
can read it) and the operator's Ed25519 signature over it (``.sig``, base64).
The operator signs on their own machine with the operator key (`roost release
sign`); the hub only stores and serves the files, and cannot make a release
that an agent or the install script accepts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

RELEASE_CONTEXT = b"roost release v1\n"
MANIFEST_FORMAT = "1"
FIELDS = ("roost-release", "name", "version", "arch", "sha256", "size", "issued", "expires")
ARCHES = ("x86_64", "aarch64")
RELEASES_DIR = "releases"
DEFAULT_RELEASE_TTL = 90 * 86400
MAX_RELEASE_TTL = 3 * 365 * 86400
MAX_MANIFEST_BYTES = 1024
MAX_CLOCK_SKEW = 300
VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+[A-Za-z0-9.+-]{0,32}$")
NAME_RE = re.compile(r"^roost-linux-(x86_64|aarch64)$")


class ReleaseError(Exception):
    """A release that must not be installed; the message says what was wrong and what to do."""


@dataclass(frozen=True)
class Release:
    name: str
    version: str
    arch: str
    sha256: str
    size: int
    issued: int
    expires: int
    raw: bytes  # the manifest exactly as signed

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "arch": self.arch, "sha256": self.sha256,
                "size": self.size, "issued": self.issued, "expires": self.expires}


def artefact_name(arch: str) -> str:
    return f"roost-linux-{arch}"


def version_key(version: str):
    """Versions compare as PEP 440 versions (0.10.0 > 0.9.0)."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version)
    except InvalidVersion:
        raise ReleaseError(f"{version!r} is not a version such as 0.2.0") from None


def make_manifest(*, name: str, version: str, sha256: str, size: int, issued: int, expires: int) -> bytes:
    match = NAME_RE.match(name)
    if not match:
        raise ReleaseError(f"a release is named roost-linux-x86_64 or roost-linux-aarch64, not {name!r}")
    if not VERSION_RE.match(version):
        raise ReleaseError(f"{version!r} is not a version such as 0.2.0")
    values = (MANIFEST_FORMAT, name, version, match.group(1), sha256, str(size), str(issued), str(expires))
    return "".join(f"{k}: {v}\n" for k, v in zip(FIELDS, values)).encode()


def parse_manifest(raw: bytes) -> Release:
    """The manifest's fields, strictly: exactly these lines in this order, nothing else."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ReleaseError("the release manifest is too large to be one")
    try:
        lines = raw.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise ReleaseError("the release manifest is not ASCII text") from None
    if lines[-1] != "" or len(lines) != len(FIELDS) + 1:
        raise ReleaseError("the release manifest does not have the lines of a Roost release manifest")
    values: dict[str, str] = {}
    for field, line in zip(FIELDS, lines):
        key, sep, value = line.partition(": ")
        if key != field or not sep:
            raise ReleaseError(f"the release manifest should have {field!r} where it has {line[:40]!r}")
        values[field] = value
    if values["roost-release"] != MANIFEST_FORMAT:
        raise ReleaseError(f"release manifest format {values['roost-release']!r} is not one this roost reads; update roost first")
    match = NAME_RE.match(values["name"])
    if not match or values["arch"] != match.group(1):
        raise ReleaseError(f"the release manifest names {values['name']!r} for {values['arch']!r}")
    if not VERSION_RE.match(values["version"]):
        raise ReleaseError(f"the release manifest's version {values['version']!r} is not a version")
    if not re.fullmatch(r"[0-9a-f]{64}", values["sha256"]):
        raise ReleaseError("the release manifest's sha256 is not 64 hex digits")
    for field in ("size", "issued", "expires"):
        if not values[field].isdigit() or len(values[field]) > 15:
            raise ReleaseError(f"the release manifest's {field} is not a number")
    return Release(
        name=values["name"], version=values["version"], arch=values["arch"], sha256=values["sha256"],
        size=int(values["size"]), issued=int(values["issued"]), expires=int(values["expires"]), raw=raw,
    )


def sign_manifest(raw: bytes, private_key: Ed25519PrivateKey) -> str:
    return base64.b64encode(private_key.sign(RELEASE_CONTEXT + raw)).decode("ascii")


def verify_manifest(raw: bytes, signature: str | bytes, keys: Iterable[str], *, now: float | None = None) -> Release:
    """The release, if one of `keys` (base64 Ed25519 operator keys) signed it and it is still valid; else ReleaseError."""
    release = parse_manifest(raw)
    keys = [k for k in keys if k]
    if not keys:
        raise ReleaseError("no operator key to check releases against: set [hub] operator_keys (roost operator keygen) and enrol again")
    try:
        sig = base64.b64decode(signature.strip() if isinstance(signature, (str, bytes)) else b"", validate=True)
    except (binascii.Error, ValueError):
        raise ReleaseError("the release signature is not base64") from None
    for key in keys:
        try:
            Ed25519PublicKey.from_public_bytes(base64.b64decode(key)).verify(sig, RELEASE_CONTEXT + raw)
            break
        except (InvalidSignature, ValueError):
            continue
    else:
        raise ReleaseError(f"roost {release.version} ({release.name}) is not signed by an operator key this host trusts; refused")
    now = time.time() if now is None else now
    if release.expires < now:
        raise ReleaseError(f"the manifest of roost {release.version} expired {time.strftime('%Y-%m-%d', time.gmtime(release.expires))}; sign the release again (roost release sign)")
    if release.issued > now + MAX_CLOCK_SKEW:
        raise ReleaseError(f"the manifest of roost {release.version} is dated in the future; check this host's clock")
    return release


def check_file(path: Path, release: Release) -> None:
    """The file is the release's executable: its size and SHA-256 match the signed manifest."""
    size = path.stat().st_size
    if size != release.size:
        raise ReleaseError(f"the download of roost {release.version} has {size} bytes, its signed manifest {release.size} (truncated or tampered); refused")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    if digest.hexdigest() != release.sha256:
        raise ReleaseError(f"the download of roost {release.version} has SHA-256 {digest.hexdigest()[:16]}…, its signed manifest {release.sha256[:16]}… (tampered); refused")


def releases_dir(data_dir: Path) -> Path:
    return Path(data_dir) / RELEASES_DIR


def stored_release(directory: Path, name: str) -> Release | None:
    """The release stored as `name` in `directory` (parsed, not verified), or None when any of its three files is missing."""
    if not NAME_RE.match(name):
        return None
    paths = [directory / name, directory / f"{name}.manifest", directory / f"{name}.sig"]
    if not all(p.is_file() for p in paths):
        return None
    try:
        return parse_manifest(paths[1].read_bytes())
    except (OSError, ReleaseError):
        return None


def stored_releases(directory: Path) -> dict[str, Release]:
    return {name: rel for arch in ARCHES if (rel := stored_release(directory, name := artefact_name(arch))) is not None}


def add_release(directory: Path, executable: Path, keys: Iterable[str], *, now: float | None = None) -> Release:
    """Check a signed release (its .manifest and .sig beside it) and store it as the one served for its arch."""
    executable = Path(executable)
    try:
        raw = executable.with_name(executable.name + ".manifest").read_bytes()
        sig = executable.with_name(executable.name + ".sig").read_text()
    except OSError as err:
        raise ReleaseError(f"{executable}: needs {executable.name}.manifest and {executable.name}.sig beside it ({err.strerror}); make them with `roost release sign`") from None
    release = verify_manifest(raw, sig, keys, now=now)
    check_file(executable, release)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The executable first, the manifest last: a release is served once its manifest is there.
    for suffix in ("", ".manifest"):
        (directory / (release.name + suffix)).unlink(missing_ok=True)
    tmp = directory / f".{release.name}.tmp"
    shutil.copyfile(executable, tmp)
    os.chmod(tmp, 0o644)
    tmp.replace(directory / release.name)
    (directory / f"{release.name}.sig").write_text(sig.strip() + "\n")
    (directory / f"{release.name}.manifest").write_bytes(raw)
    return release
