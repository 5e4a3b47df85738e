"""Fixtures: a real restic or borg repository with a tree to back up (see tests/support_backup.py)."""

from __future__ import annotations

import pytest
from support_backup import make_repo


@pytest.fixture
def restic_repo(tmp_path):
    return make_repo(tmp_path, "restic")


@pytest.fixture
def borg_repo(tmp_path):
    return make_repo(tmp_path, "borg")


@pytest.fixture(params=["restic", "borg"])
def repo(request, tmp_path):
    return make_repo(tmp_path, request.param)

