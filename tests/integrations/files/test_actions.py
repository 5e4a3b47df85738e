"""files.list and files.read: under configured roots only — traversal, absolute paths, symlinks, swaps and special files are refused."""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

import pytest
import voluptuous as vol
from support_actions import make_ctx, set_up

from roost.core.actions import ActionError, ActionRefused
from roost.integrations.files import CONFIG_SCHEMA
from roost.integrations.files import paths as paths_module
from roost.integrations.files.actions import action_specs, list_files, read_file
from roost.integrations.files.paths import PathRefused


@pytest.fixture
def tree(tmp_path):
    """root/ with files, a subdirectory and an outside directory next to it holding a secret."""
    root = tmp_path / "root"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "hello.txt").write_text("hello world\n")
    (root / "sub" / "notes.md").write_text("# notes\n")
    (root / "sub" / "deeper" / "leaf.txt").write_text("leaf\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("top secret\n")
    return root, outside


def config_for(root: Path, **extra):
    return CONFIG_SCHEMA({"roots": {"share": str(root)}, **extra})


def schemas(config):
    return {spec.name: spec.schema for spec in action_specs(config)}


def test_config_takes_absolute_existing_directories_only(tmp_path):
    (tmp_path / "f").write_text("x")
    for bad, why in (({"share": "relative/dir"}, "absolute"), ({"share": str(tmp_path / "nope")}, "not a directory"), ({"share": str(tmp_path / "f")}, "not a directory"), ({"Bad Name": str(tmp_path)}, "root names")):
        with pytest.raises(vol.Invalid, match=why):
            CONFIG_SCHEMA({"roots": bad})
    with pytest.raises(vol.Invalid):
        CONFIG_SCHEMA({"roots": {"share": str(tmp_path)}, "max_read_bytes": 10 * 1024 * 1024})
    # The owner's own symlink as a root is fine: it is resolved once, when the config is read.
    os.symlink(tmp_path, tmp_path.parent / f"{tmp_path.name}-link")
    assert CONFIG_SCHEMA({"roots": {"share": str(tmp_path.parent / f"{tmp_path.name}-link")}})["roots"]["share"] == str(tmp_path.resolve())


def test_list_and_read(tree):
    root, _ = tree
    config = config_for(root)
    ctx = make_ctx(config)
    listing = list_files(ctx, {"root": "share", "path": ""})
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [("hello.txt", "file"), ("sub", "dir")]
    assert "hello.txt" in listing["output"] and "sub/" in listing["output"]
    assert [e["name"] for e in list_files(ctx, {"root": "share", "path": "sub/./deeper/"})["entries"]] == ["leaf.txt"]
    read = read_file(ctx, {"root": "share", "path": "hello.txt"})
    assert read["output"] == "hello world\n" and read["encoding"] == "utf-8" and read["eof"] and read["size"] == 12
    part = read_file(ctx, {"root": "share", "path": "hello.txt", "offset": 6, "length": 3})
    assert part["output"] == "wor" and part["length"] == 3 and not part["eof"]


def test_reads_are_capped_and_binary_comes_as_base64(tree):
    root, _ = tree
    (root / "big.bin").write_bytes(b"\x00\x01\x02" * 1000)
    (root / "utf8.txt").write_text("é" * 10)  # 20 bytes, 2 per character
    config = config_for(root, max_read_bytes=1024)
    ctx = make_ctx(config)
    with pytest.raises(vol.Invalid, match="between 1 and 1024"):
        schemas(config)["files.read"]({"root": "share", "path": "big.bin", "length": 4096})
    params = schemas(config)["files.read"]({"root": "share", "path": "big.bin"})
    read = read_file(ctx, params)
    assert read["encoding"] == "base64" and read["length"] == 1024 and not read["eof"]
    assert base64.b64decode(read["content_base64"]) == (b"\x00\x01\x02" * 1000)[:1024]
    # A character cut by the end of the range is left for the next read, not turned into binary.
    cut = read_file(ctx, {"root": "share", "path": "utf8.txt", "length": 5})
    assert cut["output"] == "éé" and cut["length"] == 4
    assert read_file(ctx, {"root": "share", "path": "utf8.txt", "offset": 4, "length": 1024})["output"] == "é" * 8


BAD_PATHS = [
    ("../outside/secret", "'..'"),
    ("../../etc/passwd", "'..'"),
    ("sub/../../outside/secret", "'..'"),
    ("..", "'..'"),
    ("/etc/passwd", "absolute"),
    (str(Path("/tmp")), "absolute"),
    ("hello.txt\x00.png", "NUL"),
    ("hello.txt\n", "newline"),
    ("sub\r/notes.md", "carriage return"),
    ("a/" * 3000, "longer than"),
]


@pytest.mark.parametrize("path,why", BAD_PATHS)
def test_traversal_and_absolute_paths_are_refused_by_the_schema_and_the_handler(tree, path, why):
    root, _ = tree
    config = config_for(root)
    for action in ("files.read", "files.list"):
        with pytest.raises(vol.Invalid, match=why):
            schemas(config)[action]({"root": "share", "path": path})
    with pytest.raises(PathRefused, match=why):
        read_file(make_ctx(config), {"root": "share", "path": path})
    with pytest.raises(ActionRefused, match=why):
        list_files(make_ctx(config), {"root": "share", "path": path})


def test_unknown_roots_are_refused(tree):
    root, _ = tree
    config = config_for(root)
    with pytest.raises(vol.Invalid, match="configured roots: share"):
        schemas(config)["files.list"]({"root": "etc", "path": ""})
    with pytest.raises(ActionError, match="no root named"):
        list_files(make_ctx(config), {"root": "etc", "path": ""})


def test_symlinks_are_never_followed(tree, tmp_path):
    root, outside = tree
    os.symlink(outside / "secret", root / "to-secret")  # a file link out of the root
    os.symlink(outside, root / "to-outside")  # a directory link out of the root
    os.symlink("/etc", root / "etc")
    os.symlink(root / "hello.txt", root / "inside-link")  # even one that stays inside
    os.symlink(root / "sub", root / "sub-link")  # a symlinked directory in the middle of a path
    ctx = make_ctx(config_for(root))
    for path in ("to-secret", "to-outside/secret", "etc/passwd", "inside-link", "sub-link/notes.md", "sub-link/deeper/leaf.txt"):
        with pytest.raises(PathRefused, match="symlink"):
            read_file(ctx, {"root": "share", "path": path})
    for path in ("to-outside", "etc", "sub-link", "sub-link/deeper"):
        with pytest.raises(PathRefused, match="symlink"):
            list_files(ctx, {"root": "share", "path": path})
    # Listing shows a link as a link, without looking through it.
    entries = {e["name"]: e["type"] for e in list_files(ctx, {"root": "share", "path": ""})["entries"]}
    assert entries["to-outside"] == "symlink" and entries["etc"] == "symlink"


def test_special_files_are_refused_without_being_opened(tree):
    root, _ = tree
    os.mkfifo(root / "fifo")  # opening it for reading would block forever
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    try:
        ctx = make_ctx(config_for(root))
        for path in ("fifo", "sock"):
            with pytest.raises(PathRefused, match="not a regular file or directory"):
                read_file(ctx, {"root": "share", "path": path})
    finally:
        sock.close()


def test_missing_and_wrong_kind(tree):
    root, _ = tree
    ctx = make_ctx(config_for(root))
    with pytest.raises(ActionError, match="no such file"):
        read_file(ctx, {"root": "share", "path": "nope.txt"})
    with pytest.raises(ActionError, match="is a directory"):
        read_file(ctx, {"root": "share", "path": "sub"})
    with pytest.raises(ActionError, match="is a file"):
        list_files(ctx, {"root": "share", "path": "hello.txt"})
    with pytest.raises(ActionError, match="not a directory"):
        read_file(ctx, {"root": "share", "path": "hello.txt/x"})


def _swap_on_stat(monkeypatch, name: str, swap):
    """Run ``swap`` right after the check of ``name`` and before its open: the window a racing attacker aims for."""
    real_stat = os.stat
    done = []

    def stat(path, *args, **kwargs):
        result = real_stat(path, *args, **kwargs)
        if path == name and kwargs.get("dir_fd") is not None and not done:
            done.append(path)
            swap()
        return result

    monkeypatch.setattr(paths_module.os, "stat", stat)
    return done


def test_a_file_swapped_for_a_symlink_after_the_check_is_refused(tree, monkeypatch):
    root, outside = tree
    ctx = make_ctx(config_for(root))

    def swap():
        os.rename(root / "hello.txt", root / "hello.old")
        os.symlink(outside / "secret", root / "hello.txt")

    done = _swap_on_stat(monkeypatch, "hello.txt", swap)
    with pytest.raises(PathRefused, match="changed while it was being opened"):
        read_file(ctx, {"root": "share", "path": "hello.txt"})
    assert done


def test_a_directory_swapped_for_a_symlink_after_the_check_is_refused(tree, monkeypatch):
    root, outside = tree
    ctx = make_ctx(config_for(root))

    def swap():
        os.rename(root / "sub", root / "sub.old")
        os.symlink(outside, root / "sub")

    done = _swap_on_stat(monkeypatch, "sub", swap)
    with pytest.raises(PathRefused, match="changed while it was being opened"):
        read_file(ctx, {"root": "share", "path": "sub/notes.md"})
    assert done


def test_a_file_replaced_by_another_after_the_check_is_refused(tree, monkeypatch):
    root, outside = tree
    ctx = make_ctx(config_for(root))
    done = _swap_on_stat(monkeypatch, "hello.txt", lambda: os.link(outside / "secret", root / "hello.new") or os.replace(root / "hello.new", root / "hello.txt"))
    with pytest.raises(PathRefused, match="changed while it was being opened"):
        read_file(ctx, {"root": "share", "path": "hello.txt"})
    assert done


def test_a_directory_moved_out_of_the_root_while_walked_is_refused(tree, monkeypatch):
    root, outside = tree
    ctx = make_ctx(config_for(root))
    # Once "sub" is open, it is moved outside the root; its child opens fine but is no longer under the root.
    done = _swap_on_stat(monkeypatch, "notes.md", lambda: os.rename(root / "sub", outside / "sub"))
    with pytest.raises(PathRefused, match="no longer under its root"):
        read_file(ctx, {"root": "share", "path": "sub/notes.md"})
    assert done


async def test_without_roots_the_integration_is_not_available(tmp_path):
    manager, integ = await set_up("files", {}, tmp_path)
    assert integ.state == "not_available" and "no roots configured" in integ.reason
    assert manager.capabilities() == [] and manager.actions() == {}


async def test_with_roots_it_offers_its_capability_and_actions(tree, tmp_path):
    root, _ = tree
    manager, integ = await set_up("files", {"roots": {"share": str(root)}}, tmp_path)
    assert integ.state == "loaded" and manager.capabilities() == ["filesystem.read.scoped"]
    assert sorted(manager.actions()) == ["files.list", "files.read"]
    described = {name: spec.describe() for name, (_, spec) in manager.actions().items()}
    assert {p["name"] for p in described["files.read"]["params"]} == {"root", "path", "offset", "length"}
    await manager.shutdown_all()
