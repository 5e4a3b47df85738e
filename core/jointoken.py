"""Join tokens as strings: `rjt_<id>_<secret>.<hub CA fingerprint>.<hub key fingerprint>`, shared by the hub that makes them and the agent that uses them."""

from __future__ import annotations

JOIN_TOKEN_PREFIX = "rjt"


class JoinTokenError(Exception):
    """A join token that cannot be used."""


def split_join_token(token: str) -> tuple[str, str]:
    """(token id, secret); the fingerprint parts are the agent's business."""
    parts = token.strip().split(".", 1)[0].split("_")
    if len(parts) != 3 or parts[0] != JOIN_TOKEN_PREFIX or not parts[1] or not parts[2]:
        raise JoinTokenError("malformed join token; it looks like rjt_<id>_<secret>.<fingerprint> — copy it again from `roost join-token create`")
    return parts[1], parts[2]


def join_token_fingerprint(token: str) -> str | None:
    """The hub CA fingerprint a join token carries, for the agent to pin (None in a token without one)."""
    parts = token.strip().split(".")
    return parts[1] if len(parts) > 1 and parts[1] else None


def join_token_hub_key(token: str) -> str | None:
    """The fingerprint of the hub's identity key a join token carries (None in a token made before hubs had one)."""
    parts = token.strip().split(".")
    return parts[2] if len(parts) > 2 and parts[2] else None
