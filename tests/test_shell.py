"""Every shell file the repository ships passes shellcheck (POSIX sh) and busybox sh -n (Alpine's ash)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scripts import buildconfig
from tests.paths import REPO_ROOT, repository_files


def is_shell(path: Path) -> bool:
    """A file is shell when its name ends in .sh or its first line is a sh or openrc-run shebang."""
    if path.name.endswith(".sh"):
        return True
    try:
        first = path.open("rb").readline()
    except OSError:
        return False
    return first.startswith(b"#!") and (b"sh" in first.split(b"/")[-1] or b"openrc-run" in first)


def shipped_shell_files(rendered_dir: Path) -> list[Path]:
    """Shell files tracked in git (templates rendered first) plus the rendered templates."""
    listed = repository_files()
    plain = [REPO_ROOT / n for n in listed if not n.endswith(".j2") and n.split("/")[0] != "tests"]
    rendered = buildconfig.render_all(buildconfig.load_config(), rendered_dir)
    return [p for p in plain + rendered if p.is_file() and is_shell(p)]


@pytest.fixture(scope="module")
def shell_files(tmp_path_factory):
    files = shipped_shell_files(tmp_path_factory.mktemp("rendered"))
    names = {p.name for p in files}
    assert {"test.sh", "run", "mkimg.bee_debug.sh", "genapkovl-bee_debug.sh"} <= names
    return files


def test_shellcheck_posix_sh(shell_files):
    result = subprocess.run(
        ["shellcheck", "--shell=sh", "--severity=style", *map(str, shell_files)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_busybox_sh_parses(shell_files):
    for path in shell_files:
        result = subprocess.run(["busybox", "sh", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}: {result.stderr}"
