"""scripts/buildconfig.py: the configuration loads as invoke loads it and renders into every template."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from scripts import buildconfig


def test_loads_the_values_of_invoke_yaml():
    cfg = buildconfig.load_config()
    assert cfg.run.shell == "/bin/sh"
    assert cfg.bee.nvidia.version == "590.48.01"
    assert cfg.bee.nvidia.sha256 == "b9e2f80693781431cc87f4cd29109e133dcecb50a50d6b68d4b3bf2d696bd689"
    assert cfg.bee.kernel.flavor == "lts"
    assert cfg.bee.nvidia.flavor == "auto"


def test_derived_facts():
    cfg = buildconfig.load_config()
    assert buildconfig.nvidia_url(cfg) == (
        "https://download.nvidia.com/XFree86/Linux-x86_64/590.48.01/NVIDIA-Linux-x86_64-590.48.01.run"
    )
    main, community = buildconfig.repository_urls(cfg)
    assert main.endswith(f"/{cfg.bee.alpine.branch}/main")
    assert community.endswith(f"/{cfg.bee.alpine.branch}/community")


def test_paths_are_absolute(config_copy):
    cfg = buildconfig.load_config(config_copy.parent)
    assert buildconfig.config_path(cfg, "build") == config_copy.parent / "build"
    assert buildconfig.config_path(cfg, "aports") == buildconfig.Path(os.path.expanduser("~/aports"))
    assert buildconfig.config_path(cfg, "mkimage_cwd") == buildconfig.Path("/var/tmp")


def test_environment_overrides_reach_scripts(monkeypatch):
    monkeypatch.setenv("INVOKE_BEE_NVIDIA_FLAVOR", "open")
    assert buildconfig.load_config().bee.nvidia.flavor == "open"


def test_unknown_template_name_fails(tmp_path, monkeypatch):
    """A template naming no configuration value fails the render; tried in a copy, never the repository."""
    import jinja2

    tree = tmp_path / "tree"
    for folder in buildconfig.TEMPLATE_DIRS:
        shutil.copytree(buildconfig.REPO_ROOT / folder, tree / folder)
    (tree / "iso" / "mkimg" / "zz-test-undefined.sh.j2").write_text("{{ no_such_value }}\n")
    cfg = buildconfig.load_config()
    monkeypatch.setattr(buildconfig, "REPO_ROOT", tree)
    assert buildconfig.Path("iso/mkimg/zz-test-undefined.sh.j2") in buildconfig.templates()
    with pytest.raises(jinja2.UndefinedError, match="no_such_value"):
        buildconfig.render_all(cfg, tmp_path / "out")


def test_render_keeps_modes_and_leaves_no_temp_files(tmp_path):
    written = buildconfig.render_all(buildconfig.load_config(), tmp_path)
    assert written, "the project has templates"
    for path in written:
        source = buildconfig.REPO_ROOT / (str(path.relative_to(tmp_path)) + ".j2")
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(source.stat().st_mode)
        assert "{{" not in path.read_text()
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_live_path_places_a_live_system_path_inside_the_overlay(tmp_path):
    cfg = buildconfig.load_config()
    assert buildconfig.live_path(tmp_path, "/usr/lib/bee") == tmp_path / "usr" / "lib" / "bee"
    assert buildconfig.live_path(tmp_path, cfg.bee.live.audit_path).is_relative_to(tmp_path)


@pytest.mark.parametrize("value", ["", "http://c/f/", "https://h/?a=1&b='2'", 'x"$(id)`id`;${HOME}\\'])
def test_shquote_makes_one_shell_word_of_any_value(tmp_path, value):
    """The `shquote` filter: busybox sh reads the rendered word back as the value, running nothing."""
    import subprocess

    word = buildconfig.shell_quote(value)
    busybox = shutil.which("busybox")
    assert busybox, "busybox is required (apt install busybox)"
    done = subprocess.run([busybox, "sh", "-c", f"v={word}; printf '%s' \"$v\""], capture_output=True,
                          text=True, cwd=tmp_path, env={"PATH": ""})
    assert (done.stdout, done.stderr) == (value, "")
