"""manifest.json is data: read and validated without importing the integration, with errors that say what to fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from roost.core.integration import Manifest, ManifestError, humanize_invalid
from roost.core.plugins import builtin_dir

REPO = Path(__file__).resolve().parents[2]

VALID: dict[str, Any] = {
    "domain": "widget",
    "name": "Widget",
    "version": "1.2.3",
    "roles": ["agent", "hub"],
}


def with_(**changes: Any) -> dict[str, Any]:
    data = dict(VALID)
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return data


def test_minimal_manifest_gets_defaults() -> None:
    manifest = Manifest.from_dict(VALID)
    assert manifest == Manifest(
        domain="widget",
        name="Widget",
        version="1.2.3",
        roles=("agent", "hub"),
        requirements=(),
        dependencies=(),
        documentation="",
        description="",
    )


def test_full_manifest() -> None:
    manifest = Manifest.from_dict(
        with_(
            requirements=["docker>=7.0"],
            dependencies=["linux_host"],
            documentation="https://example.org/widget",
            description="Widgets.",
            codeowners=["@me"],
        )
    )
    assert manifest.requirements == ("docker>=7.0",)
    assert manifest.dependencies == ("linux_host",)
    assert manifest.documentation == "https://example.org/widget"


def test_manifest_is_frozen() -> None:
    manifest = Manifest.from_dict(VALID)
    with pytest.raises(AttributeError):
        manifest.domain = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (with_(version=...), "version: required key not provided"),
        (with_(name=...), "name: required key not provided"),
        (with_(roles=...), "roles: required key not provided"),
        (with_(domain="Widget"), "domain: domain must be lower_snake_case, 1-64 chars"),
        (with_(domain="1widget"), "domain: domain must be lower_snake_case"),
        (with_(version="one"), "version: version must look like 1.2.3"),
        (with_(roles=["toaster"]), "roles.0: roles may only contain 'agent' and 'hub'"),
        (with_(roles=[]), "roles: roles must name at least one of 'agent', 'hub'"),
        (with_(roles="agent"), "roles: expected a list"),
        (with_(dependencies=["Not A Domain"]), "dependencies.0:"),
        (with_(requirements=[""]), "requirements.0:"),
        (with_(colour="blue"), "colour: extra keys not allowed"),
        (["not", "an", "object"], "(top level): expected a dictionary"),
    ],
)
def test_invalid_manifest_says_what_is_wrong(raw: Any, message: str) -> None:
    with pytest.raises(ManifestError) as err:
        Manifest.from_dict(raw)
    assert message in str(err.value)


def test_several_errors_are_all_reported() -> None:
    with pytest.raises(ManifestError) as err:
        Manifest.from_dict(with_(version=..., roles=["toaster"]))
    assert "version: required key not provided" in str(err.value)
    assert "roles.0:" in str(err.value)


def test_domain_must_match_its_folder() -> None:
    with pytest.raises(ManifestError, match="domain 'widget' does not match its folder 'gadget'; rename one"):
        Manifest.from_dict(VALID, expected_domain="gadget")


def test_bad_json_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match="manifest.json is not valid JSON: .*line 1"):
        Manifest.from_text('{"domain": "widget",')


def test_unreadable_file_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read .*manifest.json"):
        Manifest.from_path(tmp_path / "manifest.json")


def test_from_path_reads_utf8(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(with_(name="Wärmepumpe")), encoding="utf-8")
    assert Manifest.from_path(path, expected_domain="widget").name == "Wärmepumpe"


def test_humanize_invalid_joins_paths() -> None:
    schema = vol.Schema({vol.Required("targets"): [{vol.Required("port"): int}]})
    with pytest.raises(vol.Invalid) as err:
        schema({"targets": [{"port": 1}, {"port": "x"}]})
    assert humanize_invalid(err.value) == "targets.1.port: expected int"


def shipped_manifests() -> list[Path]:
    return sorted(builtin_dir().glob("*/manifest.json")) + sorted((REPO / "custom_integrations").glob("*/manifest.json"))


@pytest.mark.parametrize("path", shipped_manifests(), ids=lambda p: p.parent.name)
def test_every_shipped_manifest_is_valid(path: Path) -> None:
    manifest = Manifest.from_path(path, expected_domain=path.parent.name)
    assert manifest.roles
    assert (path.parent / "__init__.py").is_file()


def test_the_example_integration_is_among_them() -> None:
    assert REPO / "custom_integrations" / "tcp_probe" / "manifest.json" in shipped_manifests()
