"""scripts/run_builder.py with the real screen: a short stand-in build started, watched and finished."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from scripts import run_builder
from tests.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "run_builder.py"


class Stage:
    """A builder whose session, log, status and screen socket folder all live in tmp_path."""

    def __init__(self, tmp_path, monkeypatch):
        assert shutil.which("screen"), "screen must be installed (apt-get install screen)"
        self.gate = tmp_path / "gate"
        self.session = f"bee-test-{uuid.uuid4().hex[:8]}"
        self.log = tmp_path / "dist" / "builder.log"
        self.status = tmp_path / "dist" / "builder.status"
        # screen's socket path must stay short (sun_path holds 108 bytes): a folder directly in /tmp
        self.screendir = Path(tempfile.mkdtemp(prefix="bee-screen-", dir="/tmp"))
        screendir = self.screendir
        self.command = f"echo building; while [ ! -e {self.gate} ]; do sleep 0.05; done; echo done; exit 3"
        for name, value in {
            "INVOKE_BEE_BUILDER_SCREEN_SESSION": self.session,
            "INVOKE_BEE_BUILDER_COMMAND": self.command,
            "INVOKE_BEE_PATHS_BUILDER_LOG": str(self.log),
            "INVOKE_BEE_PATHS_BUILDER_STATUS": str(self.status),
            "SCREENDIR": str(screendir),
        }.items():
            monkeypatch.setenv(name, value)

    def cli(self, *args):
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False, timeout=60
        )

    def wait_for(self, predicate, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    def quit(self):
        subprocess.run(["screen", "-S", self.session, "-X", "quit"], capture_output=True, check=False)


@pytest.fixture
def stage(tmp_path, monkeypatch):
    staged = Stage(tmp_path, monkeypatch)
    yield staged
    staged.quit()  # only this test's own session, by its unique name
    shutil.rmtree(staged.screendir, ignore_errors=True)


def test_start_status_refusal_exit_status_and_log(stage):
    never = stage.cli("status")
    assert (never.stdout.strip(), never.returncode) == ("never started", 1)

    started = stage.cli("start")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == (
        f"started `{stage.command}` in screen session {stage.session}; log: {stage.log}"
    )
    running = f"running in screen session {stage.session}; log: {stage.log}"
    while_running = stage.cli("status")
    assert (while_running.stdout.strip(), while_running.returncode) == (running, 0)
    stage.wait_for(lambda: "building" in stage.log.read_text())

    again = stage.cli("start")
    assert again.returncode == 1
    assert f"a build is already running in screen session {stage.session}" in again.stderr
    assert "building" in stage.log.read_text(), "the running build's log is left alone"

    stage.gate.touch()
    stage.wait_for(lambda: stage.status.exists())
    stage.wait_for(lambda: not run_builder.session_running(stage.session))
    finished = stage.cli("status")
    assert finished.stdout.strip() == f"finished with exit status 3; log: {stage.log}"
    assert finished.returncode == 3, "status exits with the build's own status"
    assert stage.status.read_text() == "3\n"
    lines = stage.log.read_text().splitlines()
    assert lines[0].startswith("run_builder: started ") and lines[0].endswith(stage.command)
    assert lines[1:] == ["building", "done", "run_builder: finished with exit status 3"]
    assert stage.cli("log", "-n", "2").stdout.splitlines() == lines[-2:]

    restarted = stage.cli("--command", "echo second; exit 0", "start")
    assert restarted.returncode == 0, restarted.stderr
    stage.wait_for(lambda: stage.status.exists())
    assert stage.cli("status").stdout.strip() == f"finished with exit status 0; log: {stage.log}"
    assert stage.cli("status").returncode == 0
    assert "second" in stage.log.read_text() and "building" not in stage.log.read_text()


def test_two_simultaneous_starts_run_one_build(stage):
    quiet = subprocess.DEVNULL
    starts = [
        subprocess.Popen([sys.executable, str(SCRIPT), "start"], stdout=quiet, stderr=quiet)
        for _ in range(2)
    ]
    codes = sorted(p.wait(timeout=60) for p in starts)
    assert codes == [0, 1]
    listing = subprocess.run(["screen", "-ls"], capture_output=True, text=True, check=False).stdout
    assert listing.count(f".{stage.session}\t") + listing.count(f".{stage.session} ") == 1, listing


def test_a_killed_build_is_reported_without_status(stage):
    assert stage.cli("start").returncode == 0
    stage.wait_for(lambda: "building" in stage.log.read_text())
    stage.quit()
    stage.wait_for(lambda: not run_builder.session_running(stage.session))
    killed = stage.cli("status")
    assert killed.stdout.strip() == f"stopped without recording an exit status (killed?); log: {stage.log}"
    assert killed.returncode == 1


def test_attach_needs_a_running_build_and_then_attaches(stage, monkeypatch):
    refused = stage.cli("attach")
    assert refused.returncode == 1
    assert f"no build is running (screen session {stage.session}): never started" in refused.stderr

    assert stage.cli("start").returncode == 0
    calls = []
    monkeypatch.setattr(os, "execvp", lambda program, argv: calls.append(argv))
    assert run_builder.main(["attach"]) == 0
    assert calls == [[shutil.which("screen"), "-r", stage.session]]


def test_follow_prints_until_the_build_ends(stage, capsys):
    assert stage.cli("start").returncode == 0
    stage.gate.touch()
    run_builder.main(["log", "--follow", "-n", "100"])
    assert "run_builder: finished with exit status 3" in capsys.readouterr().out


def test_log_before_any_build_is_a_clear_error(stage):
    result = stage.cli("log")
    assert result.returncode == 1
    assert result.stderr.strip() == f"run_builder: no log at {stage.log}: the build was never started"


def test_the_default_command_is_the_build():
    cfg = run_builder.buildconfig.load_config()
    builder = run_builder.Builder.from_config(cfg)
    assert builder.command == "invoke build-debug" and builder.cwd == REPO_ROOT
    assert builder.log.parent == run_builder.buildconfig.config_path(cfg, "dist")


def test_the_session_script_runs_in_busybox_sh_as_on_alpine(tmp_path):
    builder = run_builder.Builder(
        session="unused", command="echo 'it''s built'; exit 4", log=tmp_path / "log",
        status=tmp_path / "status", cwd=tmp_path,
    )
    result = subprocess.run(["busybox", "sh", "-c", run_builder.session_script(builder)],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert builder.status.read_text() == "4\n"
    lines = builder.log.read_text().splitlines()
    assert lines[1:] == ["its built", "run_builder: finished with exit status 4"]
    assert result.stdout == builder.log.read_text(), "the screen window shows what the log gets"


@pytest.mark.parametrize("action", ["start", "status", "attach"])
def test_without_screen_each_action_says_how_to_install_it(stage, tmp_path, action):
    empty = tmp_path / "no-screen-here"
    empty.mkdir()
    result = subprocess.run([sys.executable, str(SCRIPT), action], capture_output=True, text=True,
                            check=False, timeout=60, env={**os.environ, "PATH": str(empty)})
    assert result.returncode == 1
    assert result.stderr == (
        "run_builder: screen is not installed: apk add screen (Alpine), apt install screen (Debian)\n"
    )
    assert not stage.log.exists() and not stage.status.exists(), "nothing started, nothing written"
