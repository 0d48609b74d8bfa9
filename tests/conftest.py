"""Fixtures for every test: a temp copy of the configuration."""

from __future__ import annotations

import shutil

import pytest

from tests.paths import REPO_ROOT


@pytest.fixture
def config_copy(tmp_path):
    """A copy of invoke.yaml in a temp folder; edit its text, then load it with buildconfig.load_config."""
    target = tmp_path / "config"
    target.mkdir()
    shutil.copy(REPO_ROOT / "invoke.yaml", target / "invoke.yaml")
    return target / "invoke.yaml"
