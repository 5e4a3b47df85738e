"""Deeply nested JSON within the size limit gets a clear refusal everywhere JSON is parsed: HTTP bodies, the agent socket, the agent's side."""

from __future__ import annotations

import json

import pytest
from aiohttp import WSMsgType

from roost.core import jsonparse, protocol
from roost.core.const import ENROLL_PATH, WS_PATH
from roost.core.jsonparse import MAX_JSON_DEPTH

DEEP = "[" * 1500 + "]" * 1500  # 3 kB: far inside every size limit, far past the recursion limit
JUST_TOO_DEEP = '{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1)  # parses fine, still refused


def _object_nested(levels: int) -> str:
    return '{"k":' * levels + "1" + "}" * levels


def test_the_parser_refuses_past_the_limit_and_accepts_up_to_it() -> None:
    assert jsonparse.loads(_object_nested(MAX_JSON_DEPTH))["k"]
    assert not jsonparse.deeper_than(jsonparse.loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH), MAX_JSON_DEPTH)
    assert jsonparse.loads('{"s": "' + "[" * 500 + '"}') == {"s": "[" * 500}  # brackets in strings do not nest
    for text in (DEEP, JUST_TOO_DEEP, DEEP.encode()):
        with pytest.raises(jsonparse.JSONTooDeep, match=f"more than {MAX_JSON_DEPTH} levels"):
            jsonparse.loads(text)
    with pytest.raises(ValueError):
        jsonparse.loads("[1,")


# What json accepts beyond the standard, what orjson reads differently, and plain JSON.
AWKWARD_JSON = [
    '{"a": 1, "b": [1.5, -0.0, 2.5e-7, 1e16, 1E5, 0.1, 5e-324, 1.7976931348623157e308]}',
    "NaN", "[Infinity, -Infinity]", '{"x": NaN}', "1e400", "-1e400", "[1e309]",
    "18446744073709551616", "-9223372036854775809", "9223372036854775807", "[123456789012345678901234567890]",
    '{"f": 0.12345678901234567890123}', '"\\ud800"', '"\\ud83d\\ude00"', '"\u00fc\\u00fc"',
    '{"a": 1, "a": 2}', " [ 1 , 2 ] ", "", "[1,", "[1,]", "01", '"\x01"', "\ufeff[1]", "true", "null", "-", "[-]",
    '{"k": "' + "9" * 40 + '"}', '[' * 70 + ']' * 70,
]


@pytest.mark.parametrize("text", AWKWARD_JSON + [t.encode() for t in AWKWARD_JSON] + [b"\xef\xbb\xbf[1]", b"[\xff]", "[1]".encode("utf-16")])
def test_the_fast_parser_gives_what_json_gives(text: str | bytes) -> None:
    """orjson is used only where it agrees with json.loads: same value (and type), or a refusal either way."""
    try:
        expected: object = json.loads(text)
    except RecursionError:
        expected = jsonparse.JSONTooDeep
    except ValueError:
        expected = ValueError
    try:
        got: object = jsonparse.loads(text, max_depth=1000)
    except ValueError:
        got = ValueError
    assert repr(got) == repr(expected)
    assert type(got) is type(expected) or expected is ValueError


def test_reports_are_parsed_by_orjson_when_it_is_installed() -> None:
    """The hot path really is the fast one where orjson is installed (CI installs it)."""
    pytest.importorskip("orjson")
    done, value = jsonparse._fast_loads('{"v": 1, "metrics": {"a": 1.5}}')
    assert done and value == {"v": 1, "metrics": {"a": 1.5}}
    assert jsonparse._fast_loads("NaN") == (False, None)
    assert jsonparse._fast_loads("18446744073709551616") == (False, None)


def test_the_wire_protocol_refuses_deep_messages_on_both_sides() -> None:
    for schemas in (protocol.AGENT_OPENERS, protocol.AGENT_MESSAGES, protocol.HUB_MESSAGES):
        for text in (DEEP, '{"v": 1, "type": "report", "data": {"x": ' + JUST_TOO_DEEP + "}}"):
            with pytest.raises(protocol.ProtocolError) as caught:
                protocol.parse(text, schemas)
            assert caught.value.code == protocol.ERR_BAD_JSON and "levels deep" in str(caught.value)


ENDPOINTS = [
    ("POST", ENROLL_PATH),
    ("POST", "/api/v1/session"),
    ("POST", "/api/v1/users"),
    ("POST", "/api/v1/tokens"),
    ("POST", "/api/v1/join-tokens"),
    ("POST", "/api/v1/pairing/p000000000000/approve"),
    ("PUT", "/api/v1/nodes/{node}/grants"),
    ("POST", "/api/v1/nodes/{node}/wake"),
    ("POST", "/api/v1/nodes/{node}/actions/host.ping"),
    ("POST", "/api/v1/schedules"),
    ("POST", "/api/v1/push-tokens"),
]


@pytest.mark.parametrize("body", [DEEP, JUST_TOO_DEEP], ids=["recursion", "over-limit"])
async def test_every_json_endpoint_answers_400_saying_why(client, fake_agent, body) -> None:
    agent = fake_agent()
    await agent.enroll()
    for method, path in ENDPOINTS:
        resp = await client.request(method, path.format(node=agent.node_id), data=body, headers={"Content-Type": "application/json"})
        text = await resp.text()
        assert resp.status == 400, f"{method} {path}: {resp.status} {text[:300]}"
        assert "nested more than 64 levels" in json.loads(text)["error"], f"{method} {path}: {text[:300]}"
    # The hub goes on serving.
    assert (await client.get("/api/v1/health")).status == 200


async def test_the_push_endpoint_refuses_deep_reports(make_hub) -> None:
    client = await make_hub(push=True)
    resp = await client.post("/api/v1/push-tokens", json={"name": "nas"})
    assert resp.status == 201, await resp.text()
    token = (await resp.json())["token"]
    resp = await client.post("/api/v1/push/docker", data=DEEP, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert resp.status == 400 and "levels deep" in (await resp.json())["error"]


async def test_the_agent_socket_tells_the_sender_and_closes_with_a_reason(client, fake_agent) -> None:
    ws = await client.ws_connect(WS_PATH)
    assert (await ws.receive_json(timeout=5))["type"] == "challenge"
    await ws.send_str(DEEP)
    error = await ws.receive_json(timeout=5)
    assert error["type"] == "error" and error["code"] == protocol.ERR_BAD_JSON and "nested more than 64 levels" in error["message"]
    closing = await ws.receive(timeout=5)
    assert closing.type == WSMsgType.CLOSE and closing.data == 1008 and "levels deep" in closing.extra

    # After the handshake a deep report is refused too, and the connection carries on.
    agent = fake_agent()
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    await agent.send(json.dumps(agent.report())[:-1] + ', "junk": ' + JUST_TOO_DEEP + "}")
    error = await agent.expect("error")
    assert error["code"] == protocol.ERR_BAD_JSON and "levels deep" in error["message"]
    await agent.send(agent.report())
    assert (await agent.expect("ack"))["seq"] == agent.seq
