"""iso/mkimg: the profile sourced in sh as mkimage sources it; the apkovl wrapper run as mkimage runs it."""

from __future__ import annotations

import os
import subprocess

import pytest

from scripts import buildconfig, live_system

# mkimage.sh as it meets the profile, reduced to that: `set -e`, profiles found with its sed over
# `^profile_NAME() {$` lines and sourced, `$ARCH` set, then build_profile: `profile_$PROFILE`, and a silent
# `return 0` unless $ARCH is in the profile's `arch`. profile_base and profile_standard are aports' own
# (scripts/mkimg.base.sh and scripts/mkimg.standard.sh of the 3.22 era, every variable they set), so the
# tests see what mkimage will.
MKIMAGE = r"""
set -e
profile_base() {
	kernel_flavors="lts"
	initfs_cmdline="modules=loop,squashfs,sd-mod,usb-storage quiet"
	initfs_features="ata base bootchart cdrom ext4 mmc nvme raid scsi squashfs usb virtio"
	modloop_sign=yes
	grub_mod="all_video disk part_gpt part_msdos linux normal configfile search search_label efi_gop fat"
	grub_mod="$grub_mod iso9660 cat echo ls test true help gzio"  # one line in aports
	case "$ARCH" in
		x86*) grub_mod="$grub_mod multiboot2 efi_uga";;
	esac
	case "$ARCH" in
		x86_64) initfs_features="$initfs_features nfit";;
	esac
	apks="alpine-base busybox chrony dhcpcd doas e2fsprogs
		kbd-bkeymaps network-extras openntpd openssl openssh
		tzdata wget tiny-cloud-nocloud"
	apkovl=
	hostname="alpine"
}
profile_standard() {
	standard_called=yes
	title="Standard"
	desc="Alpine as it was intended.
		Just enough to get you started.
		Network connection is required."
	profile_base
	profile_abbrev="std"
	image_ext="iso"
	arch="aarch64 armv7 x86 x86_64 ppc64le s390x loongarch64"
	output_format="iso"
	kernel_addons="xtables-addons"
	case "$ARCH" in
	s390x)
		apks="$apks s390-tools"
		initfs_features="$initfs_features dasd_mod qeth zfcp"
		initfs_cmdline="modules=loop,squashfs,dasd_mod,qeth,zfcp quiet"
		;;
	ppc64le)
		initfs_cmdline="modules=loop,squashfs,sd-mod,usb-storage,ibmvscsi quiet"
		;;
	esac
	apks="$apks iw wpa_supplicant"
}
list_has() {
	needle="$1"; shift
	for i in "$@"; do [ "$needle" != "$i" ] || return 0; done
	return 1
}
all_profiles="$(sed -n -e 's/^profile_\(.*\)() {$/\1/p' "$PLUGIN")"
. "$PLUGIN"
build_profile() {
	profile_$PROFILE
	list_has "$ARCH" $arch || { echo "skipped=yes"; return 0; }
	printf "%s=%s\n" all_profiles "$all_profiles" standard_called "$standard_called" arch "$arch" \
		kernel_flavors "$kernel_flavors" kernel_cmdline "$kernel_cmdline" apks "$(echo $apks)" \
		apkovl "$apkovl" hostname "$hostname" image_ext "$image_ext" output_format "$output_format" \
		kernel_addons "$kernel_addons" profile_abbrev "$profile_abbrev" syslinux_serial "$syslinux_serial" \
		volume_label "alpine-${profile_abbrev:-$PROFILE} $RELEASE $ARCH"
	# What syslinux.cfg and grub.cfg put on the kernel's command line.
	echo "append=$initfs_cmdline $kernel_cmdline"
}
(build_profile)
"""


def rendered(cfg, tmp_path, name):
    target = tmp_path / name
    target.write_text(buildconfig.render_template(cfg, f"iso/mkimg/{name}.j2"))
    return target


def run_mkimage(cfg, tmp_path, arch):
    """The profile values mkimage sees for `--arch arch --profile <bee.iso.profile>` (one per line)."""
    plugin = rendered(cfg, tmp_path, f"mkimg.{cfg.bee.iso.profile}.sh")
    result = subprocess.run(["busybox", "sh", "-c", MKIMAGE],
                            env={"PATH": os.environ["PATH"], "PLUGIN": str(plugin), "ARCH": arch,
                                 "PROFILE": cfg.bee.iso.profile, "RELEASE": str(cfg.bee.iso.tag)},
                            capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


@pytest.fixture
def profile(tmp_path):
    cfg = buildconfig.load_config()
    return cfg, run_mkimage(cfg, tmp_path, cfg.bee.alpine.arch)


def test_mkimage_finds_the_profile_by_its_sed(profile):
    cfg, values = profile
    assert values["all_profiles"].split() == [cfg.bee.iso.profile]


def test_profile_is_skipped_for_another_arch(tmp_path):
    """Why arch matters: mkimage returns 0 without an ISO when --arch is not in the profile's list."""
    cfg = buildconfig.load_config()
    assert run_mkimage(cfg, tmp_path, "aarch64") == {"skipped": "yes"}


def test_boot_command_line_keeps_initfs_and_adds_ours(profile):
    cfg, values = profile
    append = values["append"].split()
    assert append[:2] == ["modules=loop,squashfs,sd-mod,usb-storage", "quiet"], "initfs_cmdline kept"
    firmware = f"firmware_class.path={cfg.bee.live.firmware_dir}"
    serial = cfg.bee.iso.serial_console
    consoles = [f"console=ttyS{serial.port},{serial.baud}", "console=tty0"]
    assert append[2:] == [*consoles, *cfg.bee.iso.kernel_cmdline.split(), firmware]


def test_the_screen_is_the_primary_console_and_the_boot_menu_is_on_serial_too(profile):
    """The last console= is /dev/console (OpenRC's messages); syslinux's SERIAL takes "port baud"."""
    cfg, values = profile
    consoles = [w for w in values["kernel_cmdline"].split() if w.startswith("console=")]
    assert consoles[-1] == "console=tty0"
    serial = cfg.bee.iso.serial_console
    assert consoles[:-1] == [f"console=ttyS{serial.port},{serial.baud}"]
    assert values["syslinux_serial"] == "0 115200"


def test_what_profile_standard_brings_and_bee_does_not_want_is_overridden(profile):
    cfg, values = profile
    assert values["kernel_addons"] == "", "no xtables-addons modules built into the image"
    assert values["profile_abbrev"] == cfg.bee.iso.abbrev == "bee"
    assert values["volume_label"] == f"alpine-bee {cfg.bee.iso.tag} x86_64"
    assert values["output_format"] == "iso"


def test_the_stand_in_is_aports_profile_standard(tmp_path):
    """Without our overrides, the stand-in gives what aports' profile_standard gives: the tests can fail."""
    plugin = tmp_path / "mkimg.plain.sh"
    plugin.write_text("profile_plain() {\n\tprofile_standard\n}\n")
    result = subprocess.run(["busybox", "sh", "-c", MKIMAGE],
                            env={"PATH": os.environ["PATH"], "PLUGIN": str(plugin), "ARCH": "x86_64",
                                 "PROFILE": "plain", "RELEASE": "1"},
                            capture_output=True, text=True, check=True)
    values = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert values["kernel_addons"] == "xtables-addons" and values["profile_abbrev"] == "std"
    assert values["volume_label"] == "alpine-std 1 x86_64" and values["syslinux_serial"] == ""


def test_profile_keeps_the_iso_image_type(profile):
    _, values = profile
    assert values["image_ext"] == "iso"


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
    assert cfg.bee.iso.kernel_cmdline.split() == cmdline[2: 2 + len(cfg.bee.iso.kernel_cmdline.split())]
    assert f"firmware_class.path={cfg.bee.live.firmware_dir}" in cmdline
    assert "modprobe.blacklist=nouveau" in cmdline


def test_profile_apks_hold_every_live_package(profile):
    cfg, values = profile
    apks = values["apks"].split()
    assert apks[:5] == ["alpine-base", "busybox", "chrony", "dhcpcd", "doas"], "profile_base's apks kept"
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
    live_system.stage_live_system(cfg, buildconfig.config_path(cfg, "overlay"), password_file=tmp_path / "pw")
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
