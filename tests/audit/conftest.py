"""Fixtures for the audit tests: fake tools on PATH and empty sysfs, procfs and devfs roots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from audit import audit


@dataclass
class Tools:
    """A PATH holding only `bin_dir`, and empty sysfs, procfs and devfs roots. Call it to put executables
    named like the tools there: Runner checks PATH before running, then pytest-subprocess (`fp`) fakes the
    runs, or the script given here really runs."""

    bin_dir: Path
    sysfs: Path
    procfs: Path
    devfs: Path

    def __call__(self, *names: str, script: str = "#!/bin/sh\nexit 99\n") -> None:
        """Install an executable for each name, running `script` (by default: exit 99)."""
        for name in names:
            path = self.bin_dir / name
            path.write_text(script)
            path.chmod(0o755)

    def runner(self, timeout: float = 20.0) -> audit.Runner:
        """A Runner on these roots."""
        return audit.Runner(sysfs=self.sysfs, procfs=self.procfs, devfs=self.devfs, timeout=timeout)


@pytest.fixture
def tools(tmp_path, monkeypatch) -> Tools:
    """Fake tools on an otherwise empty PATH, and empty roots under tmp_path (bin, sys, proc, dev)."""
    found = Tools(*(tmp_path / name for name in ("bin", "sys", "proc", "dev")))
    for folder in (found.bin_dir, found.sysfs, found.procfs, found.devfs):
        folder.mkdir()
    monkeypatch.setenv("PATH", str(found.bin_dir))
    return found


@pytest.fixture
def bmc(tmp_path, monkeypatch):
    """A machine with a BMC (dev/ipmi0 under tmp_path), PATH only tmp_path/bin for its fake ipmitool."""
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ipmi0").touch()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return tmp_path
