"""Secret masking on the agent: env values, labels, command arguments and URL passwords."""

from __future__ import annotations

import json

import pytest

from roost.integrations.docker.const import MASK
from roost.integrations.docker.masking import Masker


def test_env_values_of_secret_looking_names_are_masked():
    masker = Masker()
    env = masker.env(
        [
            "DB_PASSWORD=hunter2",
            "API_TOKEN=tok-123",
            "aws_secret_access_key=AKIA/abc",
            "SSH_PRIVATE=-----BEGIN",
            "GIT_CREDENTIALS=user:pw",
            "PATH=/usr/bin",
            "EMPTY=",
            "NOVALUE",
        ]
    )
    by_key = {e["key"]: e for e in env}
    for key in ("DB_PASSWORD", "API_TOKEN", "aws_secret_access_key", "SSH_PRIVATE", "GIT_CREDENTIALS"):
        assert by_key[key] == {"key": key, "value": MASK, "masked": True}
    assert by_key["PATH"] == {"key": "PATH", "value": "/usr/bin", "masked": False}
    assert by_key["EMPTY"]["value"] == "" and not by_key["EMPTY"]["masked"]
    assert by_key["NOVALUE"]["value"] is None
    text = json.dumps(env)
    for secret in ("hunter2", "tok-123", "AKIA/abc", "BEGIN", "user:pw"):
        assert secret not in text


def test_url_passwords_are_masked_whatever_the_variable_is_called():
    env = Masker().env(["DATABASE_URL=postgres://app:s3cr3t@db:5432/app", "HOME_PAGE=https://example.org/a:b@c"])
    assert env[0] == {"key": "DATABASE_URL", "value": f"postgres://app:{MASK}@db:5432/app", "masked": True}
    # Not userinfo (the '@' is after a '/'): left alone.
    assert env[1]["value"] == "https://example.org/a:b@c"


def test_command_arguments_with_secrets_are_masked():
    args = Masker().args(
        ["server", "--password", "hunter2", "--api-key=abc123", "--verbose", "-c", "export API_TOKEN=xyz; run --db redis://:pw@r:6379"]
    )
    assert args[:5] == ["server", "--password", MASK, f"--api-key={MASK}", "--verbose"]
    assert "xyz" not in args[6] and "API_TOKEN=" + MASK in args[6]
    assert ":pw@" not in args[6]
    assert Masker().args(["sh", "-c", "exec app --token abc --db-password=def --verbose -p 80"]) == [
        "sh",
        "-c",
        f"exec app --token {MASK} --db-password={MASK} --verbose -p 80",
    ]


def test_labels_with_secret_names_are_masked():
    labels = Masker().labels({"com.example.api-key": "abc", "traefik.enable": "true", "backup.url": "s3://k:v@bucket"})
    assert labels == {"com.example.api-key": MASK, "traefik.enable": "true", "backup.url": f"s3://k:{MASK}@bucket"}


def test_the_pattern_is_configurable_and_case_insensitive():
    masker = Masker("^MY_|PIN")
    env = {e["key"]: e["value"] for e in masker.env(["my_thing=a", "PHONE_PIN=1234", "DB_PASSWORD=visible"])}
    assert env == {"my_thing": MASK, "PHONE_PIN": MASK, "DB_PASSWORD": "visible"}


def test_a_bad_pattern_is_refused_by_the_config_schema():
    import voluptuous as vol

    from roost.integrations.docker import CONFIG_SCHEMA

    with pytest.raises(vol.Invalid, match="not a regular expression"):
        CONFIG_SCHEMA({"secret_pattern": "PASS("})
    with pytest.raises(vol.Invalid):
        CONFIG_SCHEMA({"url": "/var/run/docker.sock"})
    assert CONFIG_SCHEMA({"url": "unix:///run/podman/podman.sock"})["url"].endswith("podman.sock")
