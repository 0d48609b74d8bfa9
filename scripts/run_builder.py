#!/usr/bin/env python3
"""Run the ISO build in a detached screen session, so an SSH disconnect does not kill it.

    python3 scripts/run_builder.py start     # `invoke build-debug` (bee.builder.command) in screen
    python3 scripts/run_builder.py status    # running / finished with its exit status / never started
                                            # (exits with the build's status once it finished)
    python3 scripts/run_builder.py log [-n 40] [--follow]
    python3 scripts/run_builder.py attach    # watch it live; detach again with Ctrl-a d

The build's output goes to the screen window and to paths.builder_log; its exit status is written to
paths.builder_status when it ends. `status` exits with that status once the build finished (0 while it
runs, 1 when it stopped without one or never started), so a script can tell a failed build from a good
one. A second `start` while a build runs is refused. Works with the screen
of Alpine and Debian (only `-dmS`, `-ls` and `-r` are used).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `scripts` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import buildconfig

START_TIMEOUT = 10.0  # seconds to wait for the new session to show up in `screen -ls`


class BuilderError(Exception):
    """The runner cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class Builder:
    """Where one project's background build lives: its screen session, command, log and status file."""

    session: str
    command: str
    log: Path
    status: Path
    cwd: Path

    @classmethod
    def from_config(cls, cfg: Any) -> Builder:
        """Return the builder described by bee.builder and bee.paths of `cfg`."""
        return cls(
            session=cfg.bee.builder.screen_session,
            command=cfg.bee.builder.command,
            log=buildconfig.config_path(cfg, "builder_log"),
            status=buildconfig.config_path(cfg, "builder_status"),
            cwd=buildconfig.project_dir(cfg),
        )

    @property
    def lock(self) -> Path:
        """The lock file that makes checking and starting one step (two starts cannot both pass)."""
        return self.status.with_name(self.status.name + ".lock")


def require_screen() -> str:
    """Return the path of screen, or raise BuilderError saying how to install it."""
    found = shutil.which("screen")
    if not found:
        raise BuilderError("screen is not installed: apk add screen (Alpine), apt install screen (Debian)")
    return found


def session_running(session: str) -> bool:
    """True when a screen session named exactly `session` exists (`screen -ls` lists `<pid>.<name>`)."""
    listing = subprocess.run(
        [require_screen(), "-ls", session], capture_output=True, text=True, check=False
    ).stdout
    return re.search(rf"^\s*\d+\.{re.escape(session)}\s", listing, re.MULTILINE) is not None


def session_script(builder: Builder) -> str:
    """Return the sh script the session runs: the command, its output to the log, then its exit status.

    The command runs in its own `sh -c`, so an `exit` inside it still lets the status be recorded; the
    status is written under a temporary name and renamed, so a status file is always complete.
    """
    log, status = shlex.quote(str(builder.log)), shlex.quote(str(builder.status))
    tmp = shlex.quote(str(builder.status) + ".tmp")
    return (
        f"{{ echo \"run_builder: started $(date -u +%FT%TZ):\" {shlex.quote(builder.command)}; "
        f"sh -c {shlex.quote(builder.command)}; code=$?; "
        f"echo \"run_builder: finished with exit status $code\"; echo $code > {tmp}; }} 2>&1 | tee {log}; "
        f"mv {tmp} {status}"
    )


def session_environment() -> dict[str, str]:
    """Return the session's environment: ours, with this Python's bin folder first (for `invoke`)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TERM", "vt100")  # screen refuses to start without a terminal type
    env["PYTHONUNBUFFERED"] = "1"  # the log gets Python's lines in order with the commands' output
    return env


def read_status(builder: Builder) -> int | None:
    """Return the recorded exit status of the last build, or None when there is none."""
    try:
        return int(builder.status.read_text().strip())
    except (OSError, ValueError):
        return None


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start(builder: Builder) -> str:
    """Start the build in a detached screen session; return a line saying where to follow it.

    Raises BuilderError when a build is already running (checked and started under a lock).
    """
    screen = require_screen()
    with locked(builder.lock):
        if session_running(builder.session):
            raise BuilderError(
                f"a build is already running in screen session {builder.session}: "
                "see `run_builder.py status`, `log` or `attach`"
            )
        builder.status.unlink(missing_ok=True)
        Path(str(builder.status) + ".tmp").unlink(missing_ok=True)
        builder.log.parent.mkdir(parents=True, exist_ok=True)
        builder.log.write_text("")
        subprocess.run(
            [screen, "-dmS", builder.session, "sh", "-c", session_script(builder)],
            cwd=builder.cwd, env=session_environment(), check=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not session_running(builder.session) and read_status(builder) is None:
            if time.monotonic() > deadline:
                raise BuilderError(f"screen session {builder.session} did not start; try `screen -ls`")
            time.sleep(0.05)
    return f"started `{builder.command}` in screen session {builder.session}; log: {builder.log}"


def status(builder: Builder) -> str:
    """Return one line: running, finished with its exit status, stopped without one, or never started."""
    code = read_status(builder)
    if code is not None:
        return f"finished with exit status {code}; log: {builder.log}"
    if session_running(builder.session):
        return f"running in screen session {builder.session}; log: {builder.log}"
    if builder.log.exists():
        return f"stopped without recording an exit status (killed?); log: {builder.log}"
    return "never started"


def status_code(builder: Builder) -> int:
    """Return the exit status `status` ends with: the build's once finished, 0 while running, else 1."""
    code = read_status(builder)
    if code is not None:
        return code
    return 0 if session_running(builder.session) else 1


def tail(builder: Builder, lines: int) -> str:
    """Return the last `lines` lines of the build's log."""
    try:
        with builder.log.open(errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except FileNotFoundError:
        raise BuilderError(f"no log at {builder.log}: the build was never started") from None


def follow(builder: Builder, lines: int, poll: float = 0.5) -> None:
    """Print the log's last lines, then new output as it comes, until the build has ended."""
    sys.stdout.write(tail(builder, lines))
    with builder.log.open(errors="replace") as handle:
        handle.seek(0, os.SEEK_END)
        while True:
            chunk = handle.read()
            if chunk:
                sys.stdout.write(chunk)
                sys.stdout.flush()
            elif read_status(builder) is not None or not session_running(builder.session):
                sys.stdout.write(handle.read())
                return
            else:
                time.sleep(poll)


def attach(builder: Builder) -> None:
    """Attach this terminal to the running build's screen session (does not return when it works)."""
    screen = require_screen()
    if not session_running(builder.session):
        raise BuilderError(f"no build is running (screen session {builder.session}): {status(builder)}")
    os.execvp(screen, [screen, "-r", builder.session])


def main(argv: list[str] | None = None, cfg: Any = None) -> int:
    """Command line: start, status, log, attach (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", help="what to run instead of bee.builder.command (e.g. for a test)")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("start", help="start the build in a detached screen session")
    actions.add_parser("status", help="running, finished (with exit status) or never started; exits with "
                       "the build's status once it finished (0 while running, 1 without a status)")
    log_parser = actions.add_parser("log", help="print the end of the build's log")
    log_parser.add_argument("-n", "--lines", type=int, default=40, help="how many lines (default 40)")
    log_parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the build ends")
    actions.add_parser("attach", help="attach to the build's screen session (detach: Ctrl-a d)")
    args = parser.parse_args(argv)

    builder = Builder.from_config(cfg if cfg is not None else buildconfig.load_config())
    if args.command:
        builder = Builder(builder.session, args.command, builder.log, builder.status, builder.cwd)
    try:
        if args.action == "start":
            print(start(builder))
        elif args.action == "status":
            print(status(builder))
            return status_code(builder)
        elif args.action == "log":
            if args.follow:
                follow(builder, args.lines)
            else:
                sys.stdout.write(tail(builder, args.lines))
        else:
            attach(builder)
    except BuilderError as err:
        print(f"run_builder: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
