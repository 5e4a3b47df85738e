"""Pairing by numeric comparison: the short code both sides show, and the commitment that keeps a man in the middle from choosing it.

The hub commits to a random nonce (sends its SHA-256) before it learns the
agent's key and nonce, and reveals it only after. The code mixes the agent's
public key, the hub CA's fingerprint and the hub's identity key as each side
sees them, and both nonces.
A party in the middle has to fix its nonces before it learns the other side's,
so it can make the two codes agree only by luck (one in a million per try),
and every try is a visible pending request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_DIGITS = 6


def new_nonce() -> str:
    return secrets.token_hex(16)


def commitment(nonce: str) -> str:
    return hashlib.sha256(f"roost-pair-commit-v1\n{nonce}".encode()).hexdigest()


def check_commitment(commit: str, nonce: str) -> bool:
    return hmac.compare_digest(commitment(nonce), commit)


def short_code(*, agent_public_key: str, ca_fingerprint: str, hub_key: str, agent_nonce: str, hub_nonce: str) -> str:
    """Six digits shown as 'NNN NNN' on the agent's console and in the dashboard.

    ``hub_key`` is the hub identity key the agent will pin: a party in the
    middle that offers its own key changes the agent's code.
    """
    material = "\n".join(("roost-pair-code-v2", agent_public_key, ca_fingerprint.lower(), hub_key, agent_nonce, hub_nonce))
    value = int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big") % 10**CODE_DIGITS
    digits = f"{value:0{CODE_DIGITS}d}"
    return f"{digits[:3]} {digits[3:]}"


def pair_payload(hub_id: str, public_key: str, nonce: str, agent_nonce: str) -> bytes:
    """What a pairing agent signs: proves it holds the key it asks to pair, for this hub and this connection."""
    return f"roost-pair-v1\n{hub_id}\n{public_key}\n{nonce}\n{agent_nonce}".encode()
