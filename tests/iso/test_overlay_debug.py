"""iso/overlay-debug: the static files of the live system as they arrive on it (staged, packed, busybox tar).

The doas rule is checked with the real doas (`doas -C FILE CMD` parses FILE and says whether the user
running it may run CMD, as doas itself decides), and its owner and mode as doas checks them before
reading a config: owned by root, writable by neither group nor others.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from scripts import buildconfig, genapkovl, live_system

DOAS_CONF = "etc/doas.d/bee.conf"
# A user every Debian host has, to stand in for the live user when the real doas evaluates the rule.
HOST_USER, HOST_GROUP = "nobody", "nogroup"
OTHER_USER = "daemon"


@pytest.fixture
def live_root(config_copy, tmp_path, monkeypatch):
    """Stage the live system (live.user = a host user), pack it, extract it with busybox tar: the root."""
    text = config_copy.read_text()
    assert text.count("    user: bee\n") == 1
    config_copy.write_text(text.replace("    user: bee\n", f"    user: {HOST_USER}\n"))
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/authorized_keys").write_text("ssh-ed25519 AAAA test\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    cfg = buildconfig.load_config(config_copy.parent)
    config_file = live_system.stage_live_system(cfg, tmp_path / "overlay", password_file=tmp_path / "pw")
    archive = genapkovl.build_apkovl(config_file, cfg.bee.iso.hostname, tmp_path)
    root = tmp_path / "sysroot"
    root.mkdir()
    subprocess.run(["busybox", "tar", "-C", str(root), "-zxf", str(archive)], check=True)
    return cfg, root


def doas_check(conf: Path, user: str, group: str) -> subprocess.CompletedProcess:
    """Run the real `doas -C` on a copy of `conf` as `user`: prints "permit nopass", "permit" or "deny"."""
    doas, setpriv = shutil.which("doas"), shutil.which("setpriv")
    assert doas, "doas is required (apt install doas)"
    assert setpriv, "setpriv is required (apt install util-linux)"
    readable = Path(tempfile.mkdtemp())
    try:
        readable.chmod(0o755)
        copy = readable / conf.name
        shutil.copy(conf, copy)
        copy.chmod(0o644)
        return subprocess.run([setpriv, f"--reuid={user}", f"--regid={group}", "--clear-groups", doas, "-C",
                               str(copy), "/usr/local/bin/audit"], capture_output=True, text=True)
    finally:
        shutil.rmtree(readable)


def test_doas_rule_is_rendered_for_the_live_user(live_root):
    cfg, root = live_root
    rules = [line for line in (root / DOAS_CONF).read_text().splitlines() if not line.startswith("#")]
    assert rules == [f"permit nopass {cfg.bee.live.user}"]


def test_doas_config_passes_doas_own_owner_and_mode_checks(live_root):
    _, root = live_root
    st = (root / DOAS_CONF).stat()
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and st.st_gid == 0
    assert st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) == 0
    assert (root / DOAS_CONF).name.endswith(".conf"), "Alpine's doas reads only /etc/doas.d/*.conf"


def test_real_doas_lets_the_live_user_run_as_root_without_a_password(live_root):
    _, root = live_root
    result = doas_check(root / DOAS_CONF, HOST_USER, HOST_GROUP)
    assert (result.returncode, result.stdout.strip()) == (0, "permit nopass"), result.stderr


def test_real_doas_denies_everyone_else(live_root):
    _, root = live_root
    result = doas_check(root / DOAS_CONF, OTHER_USER, OTHER_USER)
    assert (result.returncode, result.stdout.strip()) == (1, "deny"), result.stderr


def test_doas_is_a_live_package(live_root):
    cfg, root = live_root
    assert "doas" in (root / "etc/apk/world").read_text().split()
    assert "doas" in cfg.bee.live.packages


def test_static_files_lose_group_and_other_write(tmp_path, monkeypatch):
    """A checkout made under umask 002 has 0664 files: the staged copies must not keep the g+w bit."""
    static = tmp_path / "static"
    (static / "etc/doas.d").mkdir(parents=True)
    (static / "etc/doas.d/x.conf").write_text("permit nopass bee\n")
    (static / "etc/doas.d/x.conf").chmod(0o666)
    (static / "usr/bin").mkdir(parents=True)
    (static / "usr/bin/tool").write_text("#!/bin/sh\n")
    (static / "usr/bin/tool").chmod(0o775)
    monkeypatch.setattr(live_system, "STATIC_OVERLAY", static)
    live_system.stage_static(buildconfig.load_config(), tmp_path / "overlay")
    assert stat.S_IMODE((tmp_path / "overlay/etc/doas.d/x.conf").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "overlay/usr/bin/tool").stat().st_mode) == 0o755
