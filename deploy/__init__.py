"""What a host needs to run Roost as a service: the systemd units, the agent install script and its update supervisor, rendered for one hub."""

from __future__ import annotations

import base64
import hashlib
import shlex
from pathlib import Path
from typing import Iterable

DEPLOY_DIR = Path(__file__).parent
AGENT_UNIT = "roost-agent.service"
HUB_UNIT = "roost-hub.service"
INSTALL_SCRIPT = "install.sh"
SUPERVISOR = "supervise.sh"


def read(name: str) -> str:
    return (DEPLOY_DIR / name).read_text(encoding="utf-8")


def spki_pin(cert_pem: bytes) -> str:
    """curl's --pinnedpubkey value for the first certificate in cert_pem: sha256// and the base64 SHA-256 of its public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def render_install_script(*, hub_url: str, pin: str, operator_keys: Iterable[str], releases: Iterable[str]) -> str:
    """install.sh for this hub: its URL, its pin, the operator keys releases must be signed by, the releases it holds."""
    values = {
        "@HUB_URL_Q@": shlex.quote(hub_url),
        "@PIN_Q@": shlex.quote(pin),
        "@OPERATOR_KEYS_Q@": shlex.quote(" ".join(operator_keys)),
        "@RELEASES_Q@": shlex.quote(" ".join(sorted(releases))),
        "@HUB_URL@": hub_url.replace("\n", ""),
        "@SUPERVISE@": read(SUPERVISOR).rstrip("\n"),
        "@AGENT_UNIT@": read(AGENT_UNIT).rstrip("\n"),
    }
    text = read(INSTALL_SCRIPT)
    for marker, value in values.items():
        text = text.replace(marker, value)
    return text


def install_command(hub_url: str, pin: str, token: str) -> str:
    """The one line a person pastes on a new host (as a user with sudo)."""
    return f"curl -fsSLk --pinnedpubkey '{pin}' {hub_url}/install.sh | sudo sh -s -- --join {shlex.quote(token)}"


def compose_snippet(hub_url: str, token: str, version: str) -> str:
    """A Docker Compose service for people who run the agent in a container (image built from the repo's Dockerfile)."""
    return (
        "services:\n"
        "  roost-agent:\n"
        f"    image: roost:{version}  # docker build -t roost:{version} . (docs/install.md)\n"
        f"    command: [\"agent\", \"--hub\", \"{hub_url}\", \"--join\", \"{token}\", \"--data-dir\", \"/data\"]\n"
        "    restart: unless-stopped\n"
        "    network_mode: host  # real interface names and addresses\n"
        "    pid: host           # the host's processes, not the container's\n"
        "    read_only: true\n"
        "    cap_drop: [ALL]\n"
        "    # group_add: [\"998\"]  # the host's docker group id (getent group docker), to read its socket\n"
        "    security_opt: [\"no-new-privileges:true\"]\n"
        "    volumes:\n"
        "      - roost-agent:/data\n"
        "      - /var/run/docker.sock:/var/run/docker.sock:ro  # docker integration (read-only ceiling)\n"
        "volumes:\n"
        "  roost-agent: {}\n"
    )
