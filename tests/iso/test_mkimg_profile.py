"""iso/mkimg: the profile sourced in sh as mkimage sources it; the apkovl wrapper run as mkimage runs it."""

from __future__ import annotations

import subprocess

import pytest

from scripts import buildconfig, live_system

# What mkimage's profile_standard leaves behind (multi-arch list, its own apks and cmdline), so the test
# sees which values profile_bee_debug replaces and which it extends.
PROFILE_STANDARD = """
profile_standard() {
	standard_called=yes
	arch="aarch64 armv7 x86 x86_64 ppc64le riscv64"
	kernel_flavors="virt lts"
	kernel_cmdline="standard-cmdline"
	apks="alpine-base busybox openssh"
	apkovl=
	hostname="alpine"
}
"""
SHOW = 'printf "%s=%s\\n" standard_called "$standard_called" arch "$arch" kernel_flavors "$kernel_flavors" ' \
       'kernel_cmdline "$kernel_cmdline" apks "$apks" apkovl "$apkovl" hostname "$hostname"'


def rendered(cfg, tmp_path, name):
    target = tmp_path / name
    target.write_text(buildconfig.render_template(cfg, f"iso/mkimg/{name}.j2"))
    return target


@pytest.fixture
def profile(tmp_path):
    cfg = buildconfig.load_config()
    path = rendered(cfg, tmp_path, f"mkimg.{cfg.bee.iso.profile}.sh")
    result = subprocess.run(
        ["busybox", "sh", "-c", f'{PROFILE_STANDARD}\n. "{path}"\nprofile_{cfg.bee.iso.profile}\n{SHOW}'],
        capture_output=True, text=True, check=True,
    )
    values = dict(line.split("=", 1) for line in result.stdout.splitlines())
    return cfg, values


def test_profile_builds_on_profile_standard(profile):
    _, values = profile
    assert values["standard_called"] == "yes"


def test_profile_arch_is_one_arch(profile):
    cfg, values = profile
    assert values["arch"] == cfg.bee.alpine.arch == "x86_64"


def test_profile_kernel_flavor(profile):
    cfg, values = profile
    assert values["kernel_flavors"] == cfg.bee.kernel.flavor


def test_profile_cmdline_has_firmware_path_and_blacklist(profile):
    cfg, values = profile
    cmdline = values["kernel_cmdline"].split()
    assert "standard-cmdline" not in cmdline
    assert cfg.bee.iso.kernel_cmdline.split() == cmdline[: len(cfg.bee.iso.kernel_cmdline.split())]
    assert f"firmware_class.path={cfg.bee.live.firmware_dir}" in cmdline
    assert "modprobe.blacklist=nouveau" in cmdline


def test_profile_apks_hold_every_live_package(profile):
    cfg, values = profile
    apks = values["apks"].split()
    assert apks[:3] == ["alpine-base", "busybox", "openssh"]
    assert set(cfg.bee.live.packages) <= set(apks)


def test_profile_apkovl_and_hostname(profile):
    cfg, values = profile
    assert values["apkovl"] == f"genapkovl-{cfg.bee.iso.profile}.sh"
    assert values["hostname"] == cfg.bee.iso.hostname


def test_wrapper_under_fakeroot_writes_the_apkovl_in_its_cwd(config_copy, tmp_path, monkeypatch):
    """mkimage: `(cd "$DESTDIR"; fakeroot "$script" "$hostname")`; the wrapper has absolute paths baked in."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/authorized_keys").write_text("ssh-ed25519 AAAA test\n")
    monkeypatch.setenv("HOME", str(home))
    cfg = buildconfig.load_config(config_copy.parent)
    live_system.stage_live_system(cfg, tmp_path / "overlay", password_file=tmp_path / "pw")
    wrapper = rendered(cfg, tmp_path, f"genapkovl-{cfg.bee.iso.profile}.sh")
    wrapper.chmod(0o755)
    section = tmp_path / f"apkovl_{cfg.bee.iso.hostname}_0123.work"
    section.mkdir()
    result = subprocess.run(["fakeroot", str(wrapper), cfg.bee.iso.hostname], cwd=section,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    archive = section / f"{cfg.bee.iso.hostname}.apkovl.tar.gz"
    assert [p.name for p in section.iterdir()] == [archive.name]
    listing = subprocess.run(["busybox", "tar", "-tzf", str(archive)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert "etc/runlevels/default/bee-audit-debug" in listing
    assert "etc/bee/authorized_keys" in listing


def test_wrapper_without_hostname_fails(tmp_path):
    cfg = buildconfig.load_config()
    wrapper = rendered(cfg, tmp_path, f"genapkovl-{cfg.bee.iso.profile}.sh")
    result = subprocess.run(["sh", str(wrapper)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert "usage" in result.stderr
