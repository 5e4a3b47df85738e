"""The pairing, grants and join token pages rendered by a real hub app, with real pairing requests over the agent socket."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
from aiohttp import web
from roost import frontend
from roost.core.const import WS_PATH
from roost.core.hub.app import HUB_KEY, create_app, create_join_token
from roost.core.identity import Identity
from roost.core.pairing import new_nonce, pair_payload, short_code
from support_auth import seed_user
from support_hub import FakeAgent, hub_config

OFFERED = ["host.metrics.read", "network.info.read", "docker.read", "docker.manage", "process.execute.limited"]
READ_ONLY_CEILING = {"mode": "read-only", "allow": ["*"], "deny": ["network.*"]}
EVIL = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


@pytest.fixture
async def hub(aiohttp_client, tmp_path):
    """A real hub app on a real SQLite file, with an admin's and a viewer's API token."""
    config = hub_config(tmp_path)
    tokens = {"admin": await seed_user(config, "alice", "admin"), "viewer": await seed_user(config, "victor", "viewer")}
    client = await aiohttp_client(create_app(config))
    return SimpleNamespace(client=client, app=client.app, hub=client.app[HUB_KEY], tokens=tokens)


async def page(hub, path: str, role: str = "admin", status: int = 200) -> str:
    resp = await hub.client.get(path, headers={"Authorization": f"Bearer {hub.tokens[role]}"})
    text = await resp.text()
    assert resp.status == status, text[:800]
    return text


async def call(hub, method: str, path: str, body=None, role: str = "admin"):
    resp = await hub.client.request(method, path, json=body, headers={"Authorization": f"Bearer {hub.tokens[role]}"})
    data = await resp.json()
    assert resp.status < 300, data
    return data


async def ask_to_pair(hub, hostname: str = "newbox", *, capabilities=OFFERED, ceiling=None, facts=None, name: str = ""):
    """What `roost agent` does without a token: open the socket, send a signed pair request, compute the code."""
    identity = Identity.generate()
    ws = await hub.client.ws_connect(WS_PATH)
    challenge = await ws.receive_json(timeout=5)
    agent_nonce = new_nonce()
    await ws.send_str(
        json.dumps(
            {
                "v": 1,
                "type": "pair",
                "public_key": identity.public_key,
                "signature": identity.sign(pair_payload(challenge["hub_id"], identity.public_key, challenge["nonce"], agent_nonce)),
                "agent_nonce": agent_nonce,
                "agent_version": "test",
                "hostname": hostname,
                "name": name,
                "facts": facts if facts is not None else {"os": "Debian GNU/Linux", "os_version": "12", "arch": "x86_64", "mem_total_bytes": 8 * 1024**3},
                "capabilities": capabilities,
                "ceiling": ceiling or READ_ONLY_CEILING,
            }
        )
    )
    pending = await ws.receive_json(timeout=5)
    assert pending["type"] == "pair_pending", pending
    code = short_code(agent_public_key=identity.public_key, ca_fingerprint=hub.hub.ca_fingerprint, hub_key=challenge["hub_key"], agent_nonce=agent_nonce, hub_nonce=pending["hub_nonce"])
    return SimpleNamespace(ws=ws, code=code, request_id=pending["request_id"], identity=identity)


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_scripts: list[str] = []
        self._script: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._script = dict(attrs) if tag == "script" else None

    def handle_endtag(self, tag):
        self._script = None

    def handle_data(self, data):
        if self._script is not None and data.strip() and self._script.get("type") != "application/json":
            self.inline_scripts.append(data)


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


def card_of(html: str, request_id: str) -> str:
    start = html.index(f'data-request-id="{request_id}"')
    return html[start : html.index("</article>", start)]


def checkbox(card: str, capability: str) -> str:
    match = re.search(rf'<input type="checkbox" name="grant" value="{re.escape(capability)}"[^>]*>', card)
    assert match, capability
    return match.group(0)


# ---------------------------------------------------------------- pairing page


async def test_a_pending_request_shows_the_agents_code_and_the_default_grants(hub):
    agent = await ask_to_pair(hub)
    html = await page(hub, "/pairing")
    card = card_of(html, agent.request_id)
    assert f'<span class="pair-code mono" data-testid="pair-code">{agent.code}</span>' in card
    assert re.fullmatch(r"\d{3} \d{3}", agent.code)
    assert ">newbox</h2>" in card
    assert "127.0.0.1" in card  # the peer
    assert "Debian GNU/Linux" in card and "8.0 GiB" in card  # facts summary, formatted
    # Pre-ticked: the read-only part of the offer; what changes things is not ticked and is marked.
    for cap in ("host.metrics.read", "network.info.read", "docker.read"):
        assert " checked" in checkbox(card, cap), cap
    for cap in ("docker.manage", "process.execute.limited"):
        assert " checked" not in checkbox(card, cap), cap
    assert 'class="cap cap-write cap-refused" data-capability="docker.manage"' in card
    assert 'class="cap cap-read" data-capability="docker.read"' in card
    # The ceiling denies network.*: read-only, but refused by the agent itself.
    assert 'class="cap cap-read cap-refused" data-capability="network.info.read"' in card
    assert card.count("the agent's ceiling refuses it") == 3
    assert 'data-testid="approve"' in card and 'data-testid="reject"' in card
    assert 'data-testid="confirm-approve"' in card  # the confirm step names the code again
    assert f"show <span class=\"mono confirm-code\">{agent.code}</span>?" in card
    assert "KEY CHANGED" not in card
    # The hub's CA as the agent prints it, and the pending count in the menu.
    short = " ".join(hub.hub.ca_fingerprint[i : i + 4] for i in range(0, 16, 4))
    assert f'data-testid="ca-short">{short}<' in html
    assert re.search(r'id="pairing-count" data-count="1"><span class="nav-count-n">1</span>', html)
    await agent.ws.close()


async def test_a_known_hostname_with_a_new_key_is_flagged_key_changed(hub):
    old = FakeAgent(hub.client)
    await old.enroll(hostname="box")
    agent = await ask_to_pair(hub, "box")
    card = card_of(await page(hub, "/pairing"), agent.request_id)
    assert 'data-testid="key-changed"' in card
    assert f'KEY CHANGED for node <a href="/nodes/{old.node_id}">box</a>' in card
    assert "pair-card key-changed" in (await page(hub, "/pairing"))
    assert "This host's key changed" in card  # repeated in the confirm step
    await agent.ws.close()


async def test_a_second_agent_on_a_host_shows_its_own_name_and_no_key_change(hub):
    old = FakeAgent(hub.client)
    await old.enroll(hostname="box")
    agent = await ask_to_pair(hub, "box", name="box-docker")
    card = card_of(await page(hub, "/pairing"), agent.request_id)
    assert 'data-testid="key-changed"' not in card
    assert ">box-docker <span class=\"muted small\">on box</span></h2>" in card
    assert 'placeholder="box-docker"' in card  # approval names the node after it unless the admin types another
    await agent.ws.close()


async def test_hostnames_and_facts_from_an_agent_are_escaped(hub):
    agent = await ask_to_pair(hub, EVIL, facts={"os": EVIL, "kernel": "6.1"})
    html = await page(hub, "/pairing")
    assert EVIL not in html
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert not parse(html).inline_scripts
    await agent.ws.close()


async def test_a_viewer_sees_neither_codes_nor_the_pairing_menu(hub):
    """Like GET /api/v1/pairing, the page is for admins: a viewer gets "Not allowed", no code, no request, no menu entry or badge."""
    agent = await ask_to_pair(hub)
    for path in ("/pairing", "/pairing?fragment=pending", "/pairing?fragment=count"):
        html = await page(hub, path, role="viewer", status=403)
        assert agent.code not in html and agent.request_id not in html and "newbox" not in html, path
    assert "seeing pairing requests, their codes and the agents announcing themselves needs the admin role and victor is viewer" in html
    overview = await page(hub, "/", role="viewer")
    assert 'href="/pairing"' not in overview and 'id="pairing-count"' not in overview and 'href="/join-tokens"' not in overview
    assert 'href="/pairing"' in await page(hub, "/") and 'href="/join-tokens"' in await page(hub, "/")
    await agent.ws.close()


async def test_the_pending_fragment_is_only_the_list(hub):
    agent = await ask_to_pair(hub)
    html = await page(hub, "/pairing?fragment=pending")
    assert "<html" not in html and "<nav" not in html
    assert agent.code in html and 'id="discovered"' in html
    assert "A hint only" in html
    await agent.ws.close()


async def test_the_menu_badge_count_is_a_fragment(hub):
    agents = [await ask_to_pair(hub, f"box{i}") for i in range(2)]
    html = await page(hub, "/pairing?fragment=count")
    assert html.strip() == '<span id="pending-count-value" data-count="2">2</span>'
    for agent in agents:
        await agent.ws.close()


async def test_no_pending_requests_says_how_to_start_one(hub):
    html = await page(hub, "/pairing")
    assert 'id="no-pending"' in html and 'id="no-pending" hidden' not in html
    assert f"roost agent --hub {hub.hub.config.url()}</code>" in html
    assert "No unpaired agents are announcing themselves" in html
    assert 'id="pairing-count" data-count="0" hidden' in html


# ------------------------------------------------------------------ node page


async def approved_node(hub, grants=None) -> str:
    agent = await ask_to_pair(hub)
    body = {"grants": grants} if grants is not None else {}
    node_id = (await call(hub, "POST", f"/api/v1/pairing/{agent.request_id}/approve", body))["node_id"]
    await agent.ws.close()
    return node_id


def grant_row(html: str, capability: str) -> str:
    start = html.index(f'data-capability="{capability}"')
    return html[html.rindex("<tr", 0, start) : html.index("</tr>", start)]


async def test_node_page_shows_granted_ceiling_and_effective_per_capability(hub):
    node_id = await approved_node(hub, ["host.metrics.read", "network.info.read", "docker.manage"])
    html = await page(hub, f"/nodes/{node_id}")
    assert '<h2 id="grants-heading">Grants</h2>' in html
    assert 'data-testid="ceiling-mode">Ceiling: read-only<' in html
    runs = grant_row(html, "host.metrics.read")
    assert 'data-granted="true" data-permitted="true" data-effective="true"' in runs and ">runs<" in runs
    denied = grant_row(html, "network.info.read")  # granted, but the ceiling denies network.*
    assert 'data-granted="true" data-permitted="false" data-effective="false"' in denied and ">refuses<" in denied
    write = grant_row(html, "docker.manage")  # granted, but the ceiling is read-only
    assert 'class="cap-write"' in write and 'data-effective="false"' in write
    offered = grant_row(html, "docker.read")
    assert 'data-granted="false" data-permitted="true" data-effective="false"' in offered
    assert '<input type="checkbox" name="grant" value="docker.read">' in offered
    assert 'data-testid="save-grants"' in html and 'data-testid="revoke-node"' in html
    assert "<code class=\"wrap\">network.*</code>" in html  # what the ceiling denies


async def test_a_viewer_sees_grants_without_controls(hub):
    node_id = await approved_node(hub)
    html = await page(hub, f"/nodes/{node_id}", role="viewer")
    assert '<h2 id="grants-heading">Grants</h2>' in html
    assert 'name="grant"' not in html
    assert 'data-testid="save-grants"' not in html and 'data-testid="revoke-node"' not in html
    assert ">granted<" in grant_row(html, "host.metrics.read")


async def test_a_revoked_node_can_no_longer_be_edited_or_revoked(hub):
    node_id = await approved_node(hub)
    await call(hub, "POST", f"/api/v1/nodes/{node_id}/revoke")
    html = await page(hub, f"/nodes/{node_id}")
    assert 'data-testid="node-revoked"' in html
    assert 'name="grant"' not in html and 'data-testid="revoke-node"' not in html


async def test_the_hubs_own_node_cannot_be_revoked(hub):
    node = await hub.hub.add_node(public_key=Identity.generate().public_key, hostname="hubhost", name="hubhost", facts={}, local=True, grants=["host.metrics.read"])
    html = await page(hub, f"/nodes/{node.node_id}")
    assert 'data-testid="save-grants"' in html
    assert 'data-testid="revoke-node"' not in html
    assert "the hub's own host; it cannot be revoked" in html


async def test_node_fragments_leave_the_grants_out(hub):
    node_id = await approved_node(hub)
    html = await page(hub, f"/nodes/{node_id}?fragment=details")
    assert "grants-heading" not in html


async def test_a_hub_without_pairing_renders_the_node_page_without_grants(aiohttp_client, samples, tmp_path):
    app = web.Application()
    app[HUB_KEY] = await samples.with_hub_halves(samples.FakeHub(), tmp_path, "linux_host")
    frontend.setup(app)
    client = await aiohttp_client(app)
    resp = await client.get(f"/nodes/{samples.SUMMARY['id']}")
    assert resp.status == 200
    assert "grants-heading" not in await resp.text()


# ------------------------------------------------------------ join tokens page


async def test_join_tokens_page_lists_tokens_with_their_state(hub):
    store = hub.hub.store
    _token, active = await create_join_token(store, ttl=3600, uses=3, note=EVIL)
    _token, revoked = await create_join_token(store, ttl=3600, uses=1, note="old laptop")
    await store.revoke_join_token(revoked.token_id)
    html = await page(hub, "/join-tokens")
    assert 'id="token-form"' in html and 'data-testid="create-token"' in html
    row = html[html.index(f'data-token-id="{active.token_id}"') :]
    row = row[: row.index("</tr>")]
    assert 'data-state="active"' in row and ">active<" in row and 'data-testid="revoke-token"' in row
    assert "&lt;script&gt;window.__xss=1" in row and EVIL not in html
    assert ">3<" in row  # uses left
    old = html[html.index(f'data-token-id="{revoked.token_id}"') :]
    old = old[: old.index("</tr>")]
    assert ">revoked<" in old and "revoke-token" not in old
    # Choosing grants: every capability Roost knows, read-only ones ticked, the rest marked.
    assert '<input type="checkbox" name="grant" value="host.metrics.read" checked>' in html
    assert '<input type="checkbox" name="grant" value="docker.manage">' in html
    assert not parse(html).inline_scripts


async def test_a_viewer_sees_no_join_tokens(hub):
    """Like GET /api/v1/join-tokens, the page is for admins: no token id or note reaches a viewer."""
    _, record = await create_join_token(hub.hub.store, ttl=3600, uses=1, note="nas")
    for path in ("/join-tokens", "/join-tokens?fragment=tokens"):
        html = await page(hub, path, role="viewer", status=403)
        assert "nas" not in html and record.token_id not in html, path
    assert "seeing join tokens needs the admin role and victor is viewer; ask an admin" in html


async def test_the_tokens_fragment_is_only_the_table(hub):
    await create_join_token(hub.hub.store, ttl=3600, uses=1, note="nas")
    html = await page(hub, "/join-tokens?fragment=tokens")
    assert "<html" not in html and "token-form" not in html and "nas" in html


# ------------------------------------------------------------------ every page


@pytest.mark.parametrize("path", ["/pairing", "/join-tokens", "/nodes/{node}"])
async def test_trust_pages_need_no_inline_script_or_style(hub, path):
    agent = await ask_to_pair(hub, "pending-one")
    node_id = await approved_node(hub)
    html = await page(hub, path.format(node=node_id))
    tags = parse(html)
    assert not tags.inline_scripts
    for tag, attrs in tags.tags:
        assert "style" not in attrs, tag
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "script":
            assert attrs.get("src") or attrs.get("type") == "application/json", attrs
    assert "/static/js/pairing.js?v=" in html and "/static/pairing.css?v=" in html
    await agent.ws.close()
