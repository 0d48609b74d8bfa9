"""Fixtures shared by the OpenRC service tests: the build configuration, the rendered services, a sandbox."""

from __future__ import annotations

import pytest

from scripts import buildconfig
from tests.openrc.openrc_harness import Sandbox, rendered_services


@pytest.fixture(scope="module")
def cfg():
    return buildconfig.load_config()


@pytest.fixture(scope="module")
def services(cfg, tmp_path_factory):
    return rendered_services(cfg, tmp_path_factory.mktemp("init.d"))


@pytest.fixture
def box(tmp_path):
    return Sandbox(tmp_path / "box")
