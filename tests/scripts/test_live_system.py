"""scripts/live_system.py: the staged overlay, the password fallback, and the config genapkovl reads."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys

import pytest

from scripts import buildconfig, genapkovl, live_system

# `openssl passwd -6 -salt abcdefgh` of "pw".
HASH = ("$6$abcdefgh$KQeXafAQAaOoKTevphVU215RvJdgzyfASRasIOuh12hO8u0r1bGW92ZnTmC9IjsiQ8VPiTXBiZF49dFL1U4wX/")
KEYS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest bee@builder\n"


@pytest.fixture
def env(config_copy, tmp_path, monkeypatch):
    """A config copy whose build folder, builder home and date are under tmp_path."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/authorized_keys").write_text(KEYS)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    return config_copy


def load(config_copy, **replacements):
    text = config_copy.read_text()
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    config_copy.write_text(text)
    return buildconfig.load_config(config_copy.parent)


def stage(cfg, tmp_path, name="overlay"):
    return live_system.stage_live_system(cfg, tmp_path / name, password_file=tmp_path / "dist/password.txt")


def verify(password, hashed):
    """True when `hashed` ($6$salt$...) is the SHA-512 crypt of `password` (checked with openssl)."""
    salt = hashed.split("$")[2]
    result = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password,
                            capture_output=True, text=True, check=True)
    return result.stdout.strip() == hashed


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_stages_services_and_system_files(env, tmp_path):
    cfg = load(env)
    config_file = stage(cfg, tmp_path)
    overlay = tmp_path / "overlay"
    for name in ("bee-sshsetup", "bee-network", "bee-nvidia", "bee-audit-debug"):
        script = overlay / "etc/init.d" / name
        assert mode(script) == 0o755
        assert script.read_text().startswith("#!/sbin/openrc-run\n")
        assert "{{" not in script.read_text()
    conf = (overlay / "etc/conf.d/dropbear").read_text()
    assert f'DROPBEAR_OPTS="{cfg.bee.live.dropbear_opts}"' in conf
    assert 'rc_need="localmount bee-sshsetup !net"' in conf
    assert not (overlay / "etc/init.d/dropbear").exists(), "the package's init script would replace it"
    assert (overlay / "etc/network/interfaces").read_text() == "auto lo\niface lo inet loopback\n"
    assert (overlay / "etc/hostname").read_text() == f"{cfg.bee.iso.hostname}\n"
    assert (overlay / "etc/apk/world").read_text().split() == list(cfg.bee.live.packages)
    assert "blacklist nouveau" in (overlay / "etc/modprobe.d/blacklist-nouveau.conf").read_text()
    assert not (overlay / ".gitkeep").exists()
    assert config_file == tmp_path / "apkovl.json", "beside the overlay folder"


def test_keys_are_staged_private(env, tmp_path):
    cfg = load(env)
    stage(cfg, tmp_path)
    keys = tmp_path / "overlay" / cfg.bee.live.authorized_keys_file.lstrip("/")
    assert keys.read_text() == KEYS
    assert mode(keys) == 0o600


def test_generated_password_only_its_hash_reaches_the_overlay(env, tmp_path, capsys):
    cfg = load(env)
    stage(cfg, tmp_path)
    password_file = tmp_path / "dist/password.txt"
    password = password_file.read_text().strip()
    assert len(password) >= 16
    assert mode(password_file) == 0o600
    hash_file = tmp_path / "overlay" / cfg.bee.live.password_hash_file.lstrip("/")
    assert mode(hash_file) == 0o600
    assert verify(password, hash_file.read_text().strip())
    out = capsys.readouterr().out
    assert password not in out and str(password_file) in out, "only where it is, never the password"
    for path in (tmp_path / "overlay").rglob("*"):
        if path.is_file():
            assert password not in path.read_text(errors="ignore"), path
    assert password not in (tmp_path / "apkovl.json").read_text()


def test_each_build_makes_a_new_password(env, tmp_path):
    cfg = load(env)
    stage(cfg, tmp_path)
    first = (tmp_path / "dist/password.txt").read_text()
    stage(cfg, tmp_path)
    assert (tmp_path / "dist/password.txt").read_text() != first


def test_configured_hash_is_used_as_it_is_and_no_password_file_is_left(env, tmp_path):
    hashed = HASH
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist/password.txt").write_text("stale\n")
    cfg = load(env, **{'password_hash: ""': f"password_hash: '{hashed}'"})
    stage(cfg, tmp_path)
    assert (tmp_path / "overlay/etc/bee/password.hash").read_text() == hashed + "\n"
    assert not (tmp_path / "dist/password.txt").exists()


@pytest.mark.parametrize("value", ["hunter2", "$6$salt$hash:root:", "$6$salt$hash other", "$6$a\\nroot"])
def test_refuses_a_hash_that_is_not_a_crypt_hash(env, tmp_path, value):
    """bee-sshsetup feeds `user:hash` lines to chpasswd: a colon or a line break would reach other fields."""
    cfg = load(env, **{'password_hash: ""': f'password_hash: "{value}"'})
    with pytest.raises(live_system.StagingError, match="crypt"):
        stage(cfg, tmp_path)


def test_refuses_missing_keys_without_fallback(env, tmp_path):
    (tmp_path / "home/.ssh/authorized_keys").unlink()
    cfg = load(env, **{"password_fallback: true": "password_fallback: false"})
    with pytest.raises(live_system.StagingError, match="nobody could log in"):
        stage(cfg, tmp_path)


def test_keys_only_without_fallback(env, tmp_path):
    cfg = load(env, **{"password_fallback: true": "password_fallback: false"})
    stage(cfg, tmp_path)
    assert not (tmp_path / "overlay/etc/bee/password.hash").exists()
    assert not (tmp_path / "dist/password.txt").exists()


def test_missing_keys_with_fallback_is_password_only(env, tmp_path, capsys):
    (tmp_path / "home/.ssh/authorized_keys").unlink()
    cfg = load(env)
    stage(cfg, tmp_path)
    assert not (tmp_path / "overlay/etc/bee/authorized_keys").exists()
    assert "password only" in capsys.readouterr().out


@pytest.mark.parametrize("tool", ["openssl", "busybox"])
def test_both_hash_tools_make_verifiable_sha512_hashes(tool, monkeypatch):
    assert shutil.which(tool), f"{tool} is required"
    commands = [c for c in live_system.hash_tools() if c[0] == tool]
    assert commands, f"no {tool} command offered"
    monkeypatch.setattr(live_system, "hash_tools", lambda: commands)
    hashed = live_system.hash_password("correct horse")
    assert hashed.startswith("$6$") and verify("correct horse", hashed)


def test_no_hash_tool_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(live_system, "hash_tools", lambda: [])
    with pytest.raises(live_system.StagingError, match="install openssl"):
        live_system.hash_password("x")


# What aports' scripts/genapkovl-dhcp.sh (the stock live image's apkovl) enables, level by level.
APORTS_RUNLEVELS = {
    "sysinit": ["devfs", "dmesg", "mdev", "hwdrivers", "modloop"],
    "boot": ["hwclock", "modules", "sysctl", "hostname", "bootmisc", "syslog"],
    "shutdown": ["mount-ro", "killprocs", "savecache"],
}


def test_runlevels_are_aports_own_plus_the_justified_differences(env):
    """invoke.yaml explains each difference from aports; a new one must be added there and here."""
    cfg = load(env)
    levels = live_system.runlevels(cfg)
    assert list(levels) == ["sysinit", "boot", "default", "shutdown"]
    for level, services in APORTS_RUNLEVELS.items():
        assert levels[level][: len(services)] == services, level
    extra = {level: levels[level][len(APORTS_RUNLEVELS.get(level, [])):] for level in levels}
    assert extra == {"sysinit": [], "boot": ["networking"], "shutdown": [],
                     "default": ["bee-sshsetup", "dropbear", "bee-network", "bee-nvidia", "bee-audit-debug"]}
    yaml_text = (buildconfig.REPO_ROOT / "invoke.yaml").read_text()
    for justified in ("genapkovl-dhcp.sh", "hwclock", "networking", "bee-network"):
        assert justified in yaml_text.split("runlevels:")[0].rsplit("\n\n", 1)[-1], justified


def test_generator_config_is_what_genapkovl_reads(env, tmp_path):
    cfg = load(env)
    config = json.loads(stage(cfg, tmp_path).read_text())
    assert config["overlay_dir"] == str((tmp_path / "overlay").resolve())
    assert config["hostname"] == cfg.bee.iso.hostname
    assert config["runlevels"] == live_system.runlevels(cfg)
    assert config["source_date_epoch"] == 1700000000
    assert set(genapkovl.REQUIRED_KEYS) <= set(config)


def test_staged_overlay_packs_reproducibly_and_extracts_with_busybox(env, tmp_path):
    """Stage twice (configured hash, fixed date) and pack both: identical bytes, busybox extracts them."""
    hashed = HASH
    cfg = load(env, **{'password_hash: ""': f"password_hash: '{hashed}'"})
    archives = []
    for name in ("a", "b"):
        config_file = stage(cfg, tmp_path, f"overlay-{name}")
        out = tmp_path / f"out-{name}"
        out.mkdir()
        archives.append(genapkovl.build_apkovl(config_file, cfg.bee.iso.hostname, out))
    assert archives[0].read_bytes() == archives[1].read_bytes()
    root = tmp_path / "sysroot"
    root.mkdir()
    subprocess.run(["busybox", "tar", "-C", str(root), "-zxf", str(archives[0])], check=True)
    assert mode(root / "etc/bee/authorized_keys") == 0o600
    assert mode(root / "etc/init.d/bee-nvidia") == 0o755
    assert (root / "etc/runlevels/default/dropbear").readlink().as_posix() == "/etc/init.d/dropbear"


def test_unknown_runlevel_is_refused(env, tmp_path):
    cfg = load(env, **{"      shutdown: [": "      reboot: ["})
    with pytest.raises(live_system.StagingError, match="unknown runlevels"):
        live_system.runlevels(cfg)


def test_cli_runs_alone(env, tmp_path, monkeypatch):
    monkeypatch.setenv("INVOKE_BEE_PATHS_BUILD", str(tmp_path / "build"))
    result = subprocess.run([sys.executable, "scripts/live_system.py", "--overlay", str(tmp_path / "o"),
                             "--password-file", str(tmp_path / "pw")],
                            cwd=buildconfig.REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o/etc/init.d/bee-nvidia").exists()
    assert (tmp_path / "apkovl.json").exists() and not (tmp_path / "build").exists()
    assert json.loads((tmp_path / "apkovl.json").read_text())["overlay_dir"] == str(tmp_path / "o")
    assert mode(tmp_path / "pw") == 0o600


def test_cli_staging_into_another_folder_touches_nothing_else(env, tmp_path):
    """No overrides at all: the repository's build/ and dist/ stay as they are."""
    def state(folder):
        return sorted((str(p), p.stat().st_mtime_ns) for p in folder.rglob("*")) if folder.exists() else None

    repo = buildconfig.REPO_ROOT
    before = {name: state(repo / name) for name in ("build", "dist")}
    result = subprocess.run([sys.executable, "scripts/live_system.py", "--overlay", str(tmp_path / "o")],
                            cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert {name: state(repo / name) for name in ("build", "dist")} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in ("config", "home")) == [
        "apkovl.json", "live-password.txt", "o"]
    assert mode(tmp_path / "live-password.txt") == 0o600


def test_cli_help_names_the_configured_defaults():
    cfg = buildconfig.load_config()
    result = subprocess.run([sys.executable, "scripts/live_system.py", "--help"], cwd=buildconfig.REPO_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "bee.paths.live_password" in text and "bee.paths.overlay" in text
    assert str(buildconfig.config_path(cfg, "live_password")) in text.replace(" ", "")


def test_cli_default_password_file_is_paths_live_password(env, tmp_path, monkeypatch):
    """One source: without --password-file the generated password goes where bee.paths.live_password says."""
    monkeypatch.setenv("INVOKE_BEE_PATHS_OVERLAY", str(tmp_path / "o"))
    monkeypatch.setenv("INVOKE_BEE_PATHS_LIVE_PASSWORD", str(tmp_path / "elsewhere/pw.txt"))
    result = subprocess.run([sys.executable, "scripts/live_system.py"],
                            cwd=buildconfig.REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    password = (tmp_path / "elsewhere/pw.txt").read_text().strip()
    assert mode(tmp_path / "elsewhere/pw.txt") == 0o600
    assert password not in result.stdout and str(tmp_path / "elsewhere/pw.txt") in result.stdout
    assert verify(password, (tmp_path / "o/etc/bee/password.hash").read_text().strip())


def test_cli_reports_a_staging_error_in_one_line(env, tmp_path, monkeypatch):
    (tmp_path / "home/.ssh/authorized_keys").unlink()
    monkeypatch.setenv("INVOKE_BEE_PATHS_BUILD", str(tmp_path / "build"))
    monkeypatch.setenv("INVOKE_BEE_LIVE_PASSWORD_FALLBACK", "0")  # invoke reads "false" as true
    result = subprocess.run([sys.executable, "scripts/live_system.py", "--overlay", str(tmp_path / "o"),
                             "--password-file", str(tmp_path / "pw")],
                            cwd=buildconfig.REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "nobody could log in" in result.stderr


@pytest.mark.parametrize("user", ["Bee", "bee user", "bee;rm", "1bee", "-bee", ""])
def test_refuses_a_user_name_the_live_system_cannot_take(env, tmp_path, user):
    cfg = load(env, **{"    user: bee\n": f"    user: '{user}'\n"})
    with pytest.raises(live_system.StagingError, match="not a valid user name"):
        stage(cfg, tmp_path)
    assert not (tmp_path / "overlay").exists()


def test_doas_rule_is_staged_from_the_template(env, tmp_path):
    cfg = load(env, **{"    user: bee\n": "    user: inspector\n"})
    stage(cfg, tmp_path)
    conf = tmp_path / "overlay/etc/doas.d/bee.conf"
    assert conf.read_text().splitlines()[-1] == "permit nopass inspector"
    assert mode(conf) & 0o022 == 0
    assert not (tmp_path / "overlay/etc/doas.d/bee.conf.j2").exists()


# -- the built-in acceptance profile (bee.live.expect_profile) ----------------------------------------------


def test_no_profile_is_built_in_by_default(env, tmp_path):
    stage(load(env), tmp_path)
    assert not (tmp_path / "overlay/etc/bee/profile.json").exists()


def test_the_built_in_profile_is_checked_and_staged_where_the_service_looks(env, tmp_path):
    profile = tmp_path / "fleet.json"
    profile.write_text('{"name": "GPU fleet 2026", "gpus": {"count": 8, "product": "*H100*"}}\n')
    cfg = load(env, **{'    expect_profile: ""\n': f"    expect_profile: {profile}\n",
                       "    expect_profile_file: /etc/bee/profile.json\n":
                       "    expect_profile_file: /etc/bee/fleet.json\n"})
    stage(cfg, tmp_path)
    staged = tmp_path / "overlay/etc/bee/fleet.json"
    assert staged.read_bytes() == profile.read_bytes()
    assert mode(staged) == 0o644
    service = (tmp_path / "overlay/etc/init.d/bee-audit-debug").read_text()
    assert ': "${BEE_EXPECT_PROFILE:=/etc/bee/fleet.json}"' in service


def test_an_invalid_built_in_profile_fails_the_build_in_one_line(env, tmp_path):
    profile = tmp_path / "fleet.json"
    profile.write_text('{"gpus": {"count": 8, "prodcut": "*H100*"}}\n')
    cfg = load(env, **{'    expect_profile: ""\n': f"    expect_profile: {profile}\n"})
    with pytest.raises(live_system.StagingError) as error:
        stage(cfg, tmp_path)
    assert str(error.value).startswith(f"bee.live.expect_profile: {profile}: gpus.prodcut: unknown key")
