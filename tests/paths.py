"""Where things are, for every test: the repository and the shared fixtures."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
REAL_FIXTURES = SHARED / "fixtures" / "real"
LAB_FIXTURES = SHARED / "fixtures" / "qemu-lab"
