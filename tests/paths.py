"""Where things are, for every test: the repository, its files and the shared fixtures."""

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
REAL_FIXTURES = SHARED / "fixtures" / "real"
LAB_FIXTURES = SHARED / "fixtures" / "qemu-lab"


def repository_files() -> list[str]:
    """The repository's files (tracked, or new and not ignored), relative to REPO_ROOT, as git lists them."""
    return subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
