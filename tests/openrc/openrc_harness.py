"""Helpers for the OpenRC service tests: rendered services, busybox sh, stand-ins, openrc functions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from scripts import live_system

# Busybox applets the services use, run as on Alpine (everything else is a stand-in or missing).
BUSYBOX_APPLETS = ["awk", "cat", "cp", "mv", "mkdir", "ln", "rm", "chmod", "tr", "printf", "sleep", "kill",
                   "touch", "timeout", "ls", "grep", "sed", "head", "dirname", "basename", "sh"]

# openrc-run's output functions, recording what they are told (one line each) in $OPENRC_LOG.
OPENRC_FUNCTIONS = r"""
ebegin() { echo "ebegin $*" >>"$OPENRC_LOG"; }
einfo() { echo "einfo $*" >>"$OPENRC_LOG"; }
ewarn() { echo "ewarn $*" >>"$OPENRC_LOG"; }
eerror() { echo "eerror $*" >>"$OPENRC_LOG"; }
eend() { echo "eend $*" >>"$OPENRC_LOG"; return "${1:-0}"; }
"""

# A stand-in command: records its name and arguments in $CALLS_LOG, as one write (stand-ins run in the
# background at the same time, as udhcpc does, must not interleave their lines).
RECORDER = """#!/bin/sh
_call="${0##*/}"
for arg in "$@"; do _call="$_call $arg"; done
printf '%s\\n' "$_call" >>"$CALLS_LOG"
"""


def render_sources(cfg, sources: dict[str, Path], out_dir: Path) -> dict[str, Path]:
    """Render (or copy) each source into out_dir under its name; return name -> file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, source in sources.items():
        target = out_dir / name
        target.write_text(live_system.render_source(cfg, source))
        written[name] = target
    return written


def rendered_services(cfg, out_dir: Path) -> dict[str, Path]:
    """Every service of openrc/, rendered into out_dir; name -> file."""
    return render_sources(cfg, live_system.service_sources(), out_dir)


def rendered_conf_d(cfg, out_dir: Path) -> dict[str, Path]:
    """Every conf.d file of openrc/conf.d, rendered into out_dir; name -> file."""
    return render_sources(cfg, live_system.conf_d_sources(), out_dir)


class Sandbox:
    """A temp PATH of busybox applets plus stand-ins, and logs of what the stand-ins and openrc saw."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.calls_log = root / "calls.log"
        self.openrc_log = root / "openrc.log"
        self.calls_log.touch()
        self.openrc_log.touch()
        self.busybox = shutil.which("busybox")
        assert self.busybox, "busybox is required (apt install busybox)"
        for applet in ["busybox", *BUSYBOX_APPLETS]:
            (self.bin / applet).symlink_to(self.busybox)

    def stand_in(self, name: str, body: str = "exit 0\n") -> Path:
        """Put a command `name` on PATH that records its call, then runs `body` (sh)."""
        path = self.bin / name
        if path.is_symlink():
            path.unlink()
        path.write_text(RECORDER + body)
        path.chmod(0o755)
        return path

    def calls(self, name: str | None = None) -> list[str]:
        """The recorded calls (each "name arg arg ..."), optionally only those of `name`."""
        lines = self.calls_log.read_text().splitlines()
        return [line for line in lines if name is None or line.split(" ", 1)[0] == name]

    def openrc(self) -> list[str]:
        """What the service told ebegin/einfo/ewarn/eerror/eend, one line each."""
        return self.openrc_log.read_text().splitlines()

    def run_function(self, service: Path, function: str, env: dict[str, str] | None = None,
                     timeout: int = 60) -> subprocess.CompletedProcess:
        """Source `service` in busybox sh with the openrc stand-ins and call `function`; returns the result.

        The function's status is the process's return code.
        """
        script = f'{OPENRC_FUNCTIONS}\n. "{service}"\n{function}\n'
        environment = {
            "PATH": str(self.bin),
            "CALLS_LOG": str(self.calls_log),
            "OPENRC_LOG": str(self.openrc_log),
            "HOME": str(self.root),
            **(env or {}),
        }
        return subprocess.run([self.busybox, "sh", "-c", script], env=environment, capture_output=True,
                              text=True, timeout=timeout, cwd=self.root)


def write_tree(root: Path, files: dict[str, str]) -> None:
    """Create files (relative path -> content) under root; a content of None makes a folder."""
    for rel, content in files.items():
        path = root / rel
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
