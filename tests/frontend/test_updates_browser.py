"""The Updates page in Chromium: a node older than the hub's newest release is listed as outdated, and "Update all outdated" answers what it started and why it skipped."""

from __future__ import annotations

import hashlib
import shutil
import time

import pytest

from roost.core.release import make_manifest

pytestmark = pytest.mark.browser


@pytest.fixture
def newer_release(live_hub):
    """A release 99.0.0 in the hub's store (only its manifest is read for the list; nothing is installed from it)."""
    releases = live_hub.log.parent / "data" / "releases"
    releases.mkdir(parents=True, exist_ok=True)
    name = "roost-linux-x86_64"
    payload = b"#!/bin/sh\n"
    now = int(time.time())
    (releases / name).write_bytes(payload)
    (releases / f"{name}.manifest").write_bytes(make_manifest(name=name, version="99.0.0", sha256=hashlib.sha256(payload).hexdigest(), size=len(payload), issued=now, expires=now + 3600))
    (releases / f"{name}.sig").write_text("AAAA\n")
    yield "99.0.0"
    shutil.rmtree(releases)


def test_update_all_lists_outdated_nodes_and_says_why_one_is_skipped(tab, live_hub, newer_release):
    tab.goto("/updates")
    row = tab.page.locator(f'tr[data-node-id="{live_hub.node_id}"]')
    assert row.get_attribute("data-outdated") == "yes" and newer_release in row.inner_text()
    tab.page.locator('[data-testid="update-all"]').click()
    status = tab.page.locator('[data-testid="update-status"]')
    status.wait_for()
    text = status.inner_text()
    assert "Started 0 update job(s)" in text and live_hub.node_id in text and "self_update.update" in text
    tab.assert_no_errors()
