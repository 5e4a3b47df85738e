"""Signed operations, rule by rule: binding, signature, keys, clock, single use across restarts, the key file and the CLI."""

from __future__ import annotations

import io
import json
import time

import pytest
import voluptuous as vol
from cryptography.hazmat.primitives import serialization

from roost.core import cli, signing
from roost.core.config import ConfigError, load_agent_config, load_hub_config
from roost.core.identity import fingerprint
from roost.core.signing import EnvelopeError, NonceCache, OperatorKeyError

NOW = 1_800_000_000
ACTION = "test.guest.destroy"
NODE = "nabc123"
PARAMS = {"vmid": 101, "purge": True}


@pytest.fixture
def key():
    return signing.generate_operator_key()


@pytest.fixture
def pub(key):
    return signing.public_key_of(key)


@pytest.fixture
def cache(tmp_path):
    c = NonceCache(tmp_path / "nonces.db")
    yield c
    c.close()


def signed(key, *, action=ACTION, params=PARAMS, node=NODE, target=101, ttl=600, now=NOW):
    return signing.sign_envelope(signing.make_envelope(action, params, node, target, ttl, now=now), key)


def check(envelope, pub, cache, **over):
    kwargs = {"action": ACTION, "params": PARAMS, "node_id": NODE, "target": 101, "operator_keys": [pub], "seen": cache, "now": NOW + 1}
    kwargs.update(over)
    return signing.verify_envelope(envelope, **kwargs)


def refused(envelope, pub, cache, match, **over):
    with pytest.raises(EnvelopeError, match=match) as info:
        check(envelope, pub, cache, **over)
    return str(info.value)


# ------------------------------------------------------------------ format


def test_a_signed_envelope_has_a_version_and_every_binding(key, pub):
    env = signed(key)
    assert set(env) == {"v", "action", "params", "node_id", "target", "nonce", "issued_at", "expires_at", "key", "signature"}
    assert env["v"] == signing.ENVELOPE_VERSION and env["key"] == pub
    assert env["issued_at"] == NOW and env["expires_at"] == NOW + 600 and len(env["nonce"]) == 32
    # Canonical: the signed bytes do not depend on key order, and are ASCII JSON after a context line.
    shuffled = dict(reversed(list(env.items())))
    assert signing.canonical_bytes(shuffled) == signing.canonical_bytes(env)
    assert signing.canonical_bytes(env).startswith(b"roost signed operation v1\n{")
    assert b'"signature"' not in signing.canonical_bytes(env)


def test_two_envelopes_for_the_same_operation_have_different_nonces(key):
    assert signed(key)["nonce"] != signed(key)["nonce"]


def test_make_envelope_refuses_what_could_not_be_verified():
    with pytest.raises(EnvelopeError, match="ttl"):
        signing.make_envelope(ACTION, PARAMS, NODE, 101, 10)
    with pytest.raises(EnvelopeError, match="ttl"):
        signing.make_envelope(ACTION, PARAMS, NODE, 101, 3 * 86400)
    with pytest.raises(EnvelopeError, match="plain JSON"):
        signing.make_envelope(ACTION, {"x": float("nan")}, NODE, 101)
    with pytest.raises(EnvelopeError, match="target"):
        signing.make_envelope(ACTION, PARAMS, NODE, True)
    with pytest.raises(EnvelopeError, match="node_id"):
        signing.make_envelope(ACTION, PARAMS, "../etc", 101)


# ------------------------------------------------------------------ happy path


def test_a_valid_envelope_is_accepted_once(key, pub, cache):
    env = signed(key)
    assert check(env, pub, cache) == env
    refused(env, pub, cache, "already used on this host")


def test_a_replay_is_refused_after_the_cache_is_reopened(key, pub, tmp_path):
    env = signed(key)
    first = NonceCache(tmp_path / "n.db")
    check(env, pub, first)
    first.close()
    again = NonceCache(tmp_path / "n.db")  # the agent restarted
    try:
        refused(env, pub, again, "already used")
    finally:
        again.close()


def test_a_refused_envelope_does_not_use_up_its_nonce(key, pub, cache):
    env = signed(key)
    refused(env, pub, cache, "not this node", node_id="nother")
    refused(env, pub, cache, "expired", now=NOW + 3600)
    assert env["nonce"] not in cache
    check(env, pub, cache)
    assert env["nonce"] in cache


# ------------------------------------------------------------------ binding


def test_bound_to_the_action(key, pub, cache):
    assert "signed for action test.guest.destroy, not test.guest.wipe" in refused(signed(key), pub, cache, "action", action="test.guest.wipe")


def test_bound_to_the_node(key, pub, cache):
    refused(signed(key), pub, cache, "signed for node nabc123, not this node \\(nzzz\\)", node_id="nzzz")


def test_bound_to_the_target(key, pub, cache):
    other = {**PARAMS, "vmid": 102}
    refused(signed(key), pub, cache, "signed for target 101, not 102", target=102, params=other)
    # A guest id as text or number names the same guest.
    check(signed(key, target="101"), pub, cache)


def test_bound_to_every_parameter(key, pub, cache):
    env = signed(key)
    for params, name in (
        ({**PARAMS, "purge": False}, "purge"),
        ({**PARAMS, "purge": 1}, "purge"),  # 1 is not true
        ({"vmid": 101}, "purge"),
        ({**PARAMS, "force": True}, "force"),
        ({**PARAMS, "vmid": 101.5}, "vmid"),
        ({**PARAMS, "vmid": "101"}, "vmid"),
    ):
        refused(env, pub, cache, f"parameters differ from the signed ones \\({name}\\)", params=params)
    check(env, pub, cache, params={**PARAMS, "vmid": 101.0})  # the same number


def test_a_browser_reserialising_the_envelope_does_not_break_the_signature(key, pub, cache):
    env = signed(key, params={"vmid": 101, "size": 1e16, "ratio": 0.1, "whole": 2.0})
    through_js = json.loads(json.dumps(env).replace("1e+16", "10000000000000000").replace("2.0", "2"))
    assert through_js["params"]["size"] == 10**16 and isinstance(through_js["params"]["whole"], int)
    check(through_js, pub, cache, params={"vmid": 101, "size": 1e16, "ratio": 0.1, "whole": 2.0})


def test_defaults_filled_in_by_the_actions_schema_are_no_difference(key, pub, cache):
    schema = vol.Schema({vol.Required("vmid"): int, vol.Optional("purge", default=False): bool})
    env = signed(key, params={"vmid": 101})
    run = schema({"vmid": 101})
    refused(env, pub, cache, "parameters differ", params=run)  # without the schema: a difference
    check(env, pub, cache, params=run, schema=schema)
    bad = signed(key, params={"vmid": "x"})
    refused(bad, pub, cache, "not valid for this action", params=run, schema=schema)


def test_any_change_after_signing_breaks_the_signature(key, pub, cache):
    env = signed(key)
    for field, value in (
        ("params", {**PARAMS, "vmid": 102}),
        ("node_id", "nother"),
        ("target", 102),
        ("action", "test.guest.wipe"),
        ("expires_at", NOW + 3000),
        ("issued_at", NOW + 1),
        ("nonce", "0" * 32),
    ):
        tampered = {**env, field: value}
        refused(tampered, pub, cache, "signature does not match")
    refused({**env, "signature": env["signature"][:-4] + "AAA="}, pub, cache, "signature does not match")


# ------------------------------------------------------------------ keys


def test_no_trusted_key_is_refused_with_what_to_do(key, cache):
    message = refused(signed(key), "", cache, "trusts no operator key", operator_keys=[])
    assert "[agent] operator_keys" in message and "roost operator keygen" in message


def test_an_unknown_key_is_refused(key, pub, cache):
    other = signing.public_key_of(signing.generate_operator_key())
    message = refused(signed(key), other, cache, "does not trust", operator_keys=[other])
    assert fingerprint(pub) in message and fingerprint(other) in message


def test_a_key_claimed_but_not_used_to_sign_is_refused(key, pub, cache):
    thief = signing.generate_operator_key()
    forged = signing.sign_envelope(signing.make_envelope(ACTION, PARAMS, NODE, 101, now=NOW), thief)
    forged["key"] = pub  # claims the operator's key, signature is the thief's
    refused(forged, pub, cache, "signature does not match")


def test_garbage_among_trusted_keys_is_ignored(key, pub, cache):
    check(signed(key), pub, cache, operator_keys=["not-a-key", "", pub])


# ------------------------------------------------------------------ clock


def test_expired_envelopes_are_refused_beyond_the_skew(key, pub, cache):
    env = signed(key, ttl=600)
    refused(env, pub, cache, r"expired at .* ago\); sign a new one", now=NOW + 600 + 121)
    check(env, pub, cache, now=NOW + 600 + 119)  # within the allowed clock difference


def test_far_future_envelopes_are_refused(key, pub, cache):
    env = signed(key, now=NOW + 3600)
    refused(env, pub, cache, "issued 3599 s in the future", now=NOW + 1)
    refused(env, pub, cache, "in the future", now=NOW + 3600 - 200, max_skew=60)
    check(env, pub, cache, now=NOW + 3600 - 100)


def test_validity_longer_than_a_day_is_refused_even_if_signed(key, pub, cache):
    env = signing.make_envelope(ACTION, PARAMS, NODE, 101, now=NOW)
    env["expires_at"] = NOW + 2 * 86400
    body = {**env, "key": pub}
    body["signature"] = signing.b64(key.sign(signing.canonical_bytes(body)))
    refused(body, pub, cache, "valid for more than 24 h")


# ------------------------------------------------------------------ shape


def test_malformed_envelopes_say_what_is_wrong(key, pub, cache):
    env = signed(key)
    refused(None, pub, cache, "carries no signed envelope")
    refused("text", pub, cache, "JSON object")
    unsigned = {k: v for k, v in env.items() if k not in ("key", "signature")}
    refused(unsigned, pub, cache, "not signed yet; run it through `roost sign`")
    refused({**env, "v": 2}, pub, cache, "version 2 is newer")
    refused({**env, "v": "1"}, pub, cache, "not a Roost signed-operation envelope")
    refused({**env, "comment": "hi"}, pub, cache, "does not know: comment")
    refused({**env, "issued_at": float(NOW)}, pub, cache, "whole seconds")
    refused({**env, "expires_at": env["issued_at"]}, pub, cache, "expires before")
    refused({**env, "target": [101]}, pub, cache, "target must be")


def test_without_a_replay_cache_nothing_is_accepted(key, pub):
    refused(signed(key), pub, None, "replay cache is not open", seen=None)


def test_control_characters_in_a_summary_are_escaped(key):
    env = signed(key, params={"vmid": "1\x1b[2J\x07", "note": "a\u202eb\x7f"}, target="1\x1b[2J\x07")
    text = signing.describe_envelope(env, now=NOW)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "\x7f" not in text
    assert "\\x1b[2J" in text and "\\u001b[2J" in text and "\\u202e" in text and "\\u007f" in text
    assert "test.guest.destroy" in text and NODE in text and "in 10 min" in text
    assert "EXPIRED" in signing.describe_envelope(env, now=NOW + 9999)


def test_refusal_reasons_escape_what_the_envelope_says(key, pub, cache):
    env = signed(key, target="x\x1b[31m")
    message = refused(env, pub, cache, "signed for target", target="y")
    assert "\x1b" not in message


# ------------------------------------------------------------------ cache


def test_nonces_are_pruned_only_long_after_their_envelope_expired(tmp_path):
    cache = NonceCache(tmp_path / "n.db")
    try:
        assert cache.claim("a" * 32, keep_until=NOW + 100, now=NOW)
        assert not cache.claim("a" * 32, keep_until=NOW + 100, now=NOW + 50)
        assert cache.prune(now=NOW + 99) == 0 and len(cache) == 1
        assert cache.claim("b" * 32, keep_until=NOW + 500, now=NOW + 101)  # a claim prunes what is past
        assert "a" * 32 not in cache and "b" * 32 in cache
    finally:
        cache.close()


def test_the_nonce_cache_keeps_nonces_a_day_past_expiry(key, pub, cache):
    env = signed(key, ttl=600)
    check(env, pub, cache)
    cache.prune(now=NOW + 600 + 120 + 86400 - 1)
    assert env["nonce"] in cache


# ------------------------------------------------------------------ key file


def test_the_key_file_is_encrypted_private_and_notes_its_public_key(tmp_path, key, pub):
    path = tmp_path / "op" / "key.pem"
    assert signing.save_operator_key(path, key, "correct horse battery", scrypt_n=2**10) == pub
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert "ENCRYPTED PRIVATE KEY" in text and f"# public-key: {pub}" in text and "kdf: scrypt n=1024" in text
    assert signing.read_operator_public_key(path) == pub
    loaded = signing.load_operator_key(path, "correct horse battery")
    assert signing.public_key_of(loaded) == pub
    # The passphrase alone does not open the PEM: it is stretched with scrypt first.
    pem = text[text.index("-----BEGIN") :].encode()
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(pem, password=b"correct horse battery")


def test_key_file_mistakes_are_clear(tmp_path, key):
    path = tmp_path / "key.pem"
    with pytest.raises(OperatorKeyError, match="at least 8 characters"):
        signing.save_operator_key(path, key, "short")
    signing.save_operator_key(path, key, "correct horse battery", scrypt_n=2**10)
    with pytest.raises(OperatorKeyError, match="already exists"):
        signing.save_operator_key(path, key, "correct horse battery", scrypt_n=2**10)
    with pytest.raises(OperatorKeyError, match="wrong passphrase"):
        signing.load_operator_key(path, "wrong horse battery")
    with pytest.raises(OperatorKeyError, match="no operator key at"):
        signing.load_operator_key(tmp_path / "missing.pem", "x")
    other = signing.public_key_of(signing.generate_operator_key())
    edited = tmp_path / "edited.pem"
    edited.write_text(path.read_text().replace(signing.public_key_of(key), other))
    with pytest.raises(OperatorKeyError, match="was edited"):
        signing.load_operator_key(edited, "correct horse battery")
    plain = tmp_path / "plain.pem"
    plain.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(OperatorKeyError, match="is not encrypted"):
        signing.load_operator_key(plain, "correct horse battery")


def test_a_plain_encrypted_pkcs8_key_from_openssl_works_too(tmp_path, key):
    path = tmp_path / "openssl.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"correct horse")))
    assert signing.public_key_of(signing.load_operator_key(path, "correct horse")) == signing.public_key_of(key)


# ------------------------------------------------------------------ config


def test_operator_keys_in_configs(tmp_path, pub):
    agent = tmp_path / "agent.toml"
    agent.write_text(f'[agent]\noperator_keys = ["{pub}"]\n')
    assert load_agent_config(agent).settings.operator_keys == [pub]
    hub = tmp_path / "hub.toml"
    hub.write_text(f'[hub]\nbind = "127.0.0.1"\noperator_keys = ["{pub}"]\n')
    config = load_hub_config(hub)
    assert config.operator_keys == [pub] and config.local_agent.operator_keys == [pub]  # the hub's own host trusts it too
    agent.write_text('[agent]\noperator_keys = ["c2VjcmV0"]\n')
    with pytest.raises(ConfigError, match="agent.operator_keys.0: not an operator public key"):
        load_agent_config(agent)


# ------------------------------------------------------------------ CLI


@pytest.fixture
def passphrase_file(tmp_path):
    path = tmp_path / "pass"
    path.write_text("correct horse battery staple\n")
    return path


def _run(capsys, monkeypatch, argv, stdin=""):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_keygen_pubkey_and_sign_round_trip(tmp_path, passphrase_file, capsys, monkeypatch, cache):
    key_path = tmp_path / "keys" / "operator.pem"
    code, out, err = _run(capsys, monkeypatch, ["operator", "keygen", "--out", str(key_path), "--passphrase-file", str(passphrase_file)])
    assert code == 0, err
    public = out.strip()
    assert signing.valid_operator_key(public) == public and "operator_keys" in err and key_path.stat().st_mode & 0o777 == 0o600
    code, out, _ = _run(capsys, monkeypatch, ["operator", "pubkey", str(key_path)])
    assert code == 0 and out.strip() == public
    # A second keygen never overwrites the first key.
    code, _, err = _run(capsys, monkeypatch, ["operator", "keygen", "--out", str(key_path), "--passphrase-file", str(passphrase_file)])
    assert code == 1 and "already exists" in err

    now = time.time()
    unsigned = signing.make_envelope(ACTION, {"vmid": 101, "note": "wipe\x1b[2J"}, NODE, 101, 600, now=now)
    code, out, err = _run(
        capsys, monkeypatch, ["sign", "--key", str(key_path), "--passphrase-file", str(passphrase_file), "-"], stdin=json.dumps(unsigned)
    )
    assert code == 0, err
    env = json.loads(out)
    assert env["key"] == public and "\x1b" not in err
    for line in ("action:   test.guest.destroy", f"node:     {NODE}", "target:   101", '"vmid": 101', "expires:"):
        assert line in err
    signing.verify_envelope(env, action=ACTION, params=unsigned["params"], node_id=NODE, target=101, operator_keys=[public], seen=cache)

    # From a file too; a wrong passphrase is a clear error and prints nothing to stdout.
    envelope_file = tmp_path / "env.json"
    envelope_file.write_text(json.dumps(unsigned))
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    code, out, err = _run(capsys, monkeypatch, ["sign", "--key", str(key_path), "--passphrase-file", str(wrong), str(envelope_file)])
    assert code == 1 and out == "" and f"wrong passphrase for {key_path}" in err


def test_cli_sign_refuses_what_it_should_not_sign(tmp_path, passphrase_file, capsys, monkeypatch, key):
    key_path = tmp_path / "k.pem"
    signing.save_operator_key(key_path, key, passphrase_file.read_text().strip(), scrypt_n=2**10)
    args = ["sign", "--key", str(key_path), "--passphrase-file", str(passphrase_file)]
    stale = signing.make_envelope(ACTION, PARAMS, NODE, 101, 60, now=time.time() - 3600)
    code, out, err = _run(capsys, monkeypatch, args, stdin=json.dumps(stale))
    assert code == 1 and out == "" and "expired" in err
    code, out, err = _run(capsys, monkeypatch, args, stdin="{not json")
    assert code == 1 and "not valid JSON" in err
    code, out, err = _run(capsys, monkeypatch, args, stdin=json.dumps({**stale, "extra": 1}))
    assert code == 1 and "does not know: extra" in err
    code, out, err = _run(capsys, monkeypatch, ["sign", "--key", str(tmp_path / "none.pem"), "--passphrase-file", str(passphrase_file)], stdin=json.dumps(signing.make_envelope(ACTION, PARAMS, NODE, 101)))
    assert code == 1 and "no operator key at" in err and "roost operator keygen" in err


def test_default_key_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ROOST_OPERATOR_KEY", str(tmp_path / "k.pem"))
    assert signing.default_operator_key_path() == tmp_path / "k.pem"
    monkeypatch.delenv("ROOST_OPERATOR_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert signing.default_operator_key_path() == tmp_path / "cfg" / "roost" / "operator-key.pem"
