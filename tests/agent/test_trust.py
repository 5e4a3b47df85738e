"""The agent's first contact with a hub URL: what it says when nothing, or something else, answers there."""

from __future__ import annotations

import pytest
from aiohttp import web
from support import free_port

from roost.agent.trust import HubIdentityError, HubUnreachable, TrustError, learn_hub_ca, prove_hub_identity
from roost.core.identity import Identity


async def test_nothing_listening_is_unreachable_and_names_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(HubUnreachable) as caught:
        await learn_hub_ca(url)
    assert str(caught.value) == f"cannot reach the hub at {url} (connection refused)"
    with pytest.raises(HubUnreachable, match="https://127.0.0.1"):
        await learn_hub_ca(f"https://127.0.0.1:{free_port()}")


async def test_another_web_server_on_the_port_is_named_not_retried(aiohttp_server):
    app = web.Application()  # answers 404 to everything, as a wrong port often does
    server = await aiohttp_server(app, host="127.0.0.1")
    url = f"http://127.0.0.1:{server.port}"
    with pytest.raises(TrustError) as caught:
        await learn_hub_ca(url)
    assert not isinstance(caught.value, HubUnreachable)
    assert "answered HTTP 404: is that a Roost hub, and is the port right?" in str(caught.value)
    with pytest.raises(HubIdentityError, match="did not prove its identity"):
        await prove_hub_identity(url, None, expected_key=None)


async def test_a_hub_proving_another_key_than_the_tokens_is_refused(aiohttp_client, tmp_path):
    from support_hub import hub_config

    from roost.core.hub.app import HUB_KEY, create_app
    from roost.core.identity import key_digest
    from roost.core.tls import compact_fingerprint

    client = await aiohttp_client(create_app(hub_config(tmp_path)))  # no login: the proof is public
    hub = client.app[HUB_KEY]
    url = str(client.make_url("")).rstrip("/")
    assert await prove_hub_identity(url, None, expected_key=compact_fingerprint(key_digest(hub.identity.public_key))) == (hub.hub_id, hub.identity.public_key)
    other = compact_fingerprint(key_digest(Identity.generate().public_key))
    with pytest.raises(HubIdentityError, match="not the hub key in the join token"):
        await prove_hub_identity(url, None, expected_key=other)
