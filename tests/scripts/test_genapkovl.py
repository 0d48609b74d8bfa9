"""scripts/genapkovl.py: the apkovl as Alpine's initramfs sees it (real `busybox tar -zxf`), reproducible."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import tarfile

import pytest

from scripts import genapkovl

EPOCH = 1_700_000_000
RUNLEVELS = {
    "sysinit": ["devfs", "modloop"],
    "boot": ["hostname"],
    "default": ["bee-sshsetup", "dropbear"],
    "shutdown": ["killprocs"],
}
HASH = "$6$salt$hash\n"


def make_overlay(root, reverse=False):
    """A staged overlay like live_system writes it (plus NVIDIA-like files), created in either order."""
    files = [
        ("etc/apk/world", "alpine-base\npython3\n", 0o664),
        ("etc/hostname", "bee\n", 0o644),
        ("etc/init.d/bee-sshsetup", "#!/sbin/openrc-run\n", 0o775),
        ("etc/conf.d/dropbear", 'DROPBEAR_OPTS="-R -B"\n', 0o644),
        ("etc/bee/authorized_keys", "ssh-ed25519 AAAA test\n", 0o600),
        ("etc/bee/password.hash", HASH, 0o640),
        ("usr/lib/libnvidia-ml.so.590.48.01", "\x7fELF binary\x00\x01", 0o755),
        ("usr/lib/bee/nvidia/6.12.1-0-lts/nvidia.ko", "ko" * 5000, 0o644),
        ("usr/local/bin/audit", "#!/usr/bin/env python3\n", 0o700),
    ]
    for rel, content, mode in reversed(files) if reverse else files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("latin-1"))
        path.chmod(mode)
        os.utime(path, (12345 if reverse else 99999,) * 2)
    (root / "usr/lib/libnvidia-ml.so.1").symlink_to("libnvidia-ml.so.590.48.01")
    if reverse:  # another builder user owns the files: the archive still says root
        for path in root.rglob("*"):
            os.lchown(path, 1000, 1000)
    return root


def write_config(tmp_path, overlay, **changes):
    config = {
        "overlay_dir": str(overlay), "hostname": "bee", "runlevels": RUNLEVELS,
        "source_date_epoch": EPOCH, "password_fallback": True,
        "authorized_keys_file": "/etc/bee/authorized_keys", "password_hash_file": "/etc/bee/password.hash",
        **changes,
    }
    path = tmp_path / f"apkovl-{len(list(tmp_path.glob('apkovl-*.json')))}.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def built(tmp_path):
    overlay = make_overlay(tmp_path / "overlay")
    out = tmp_path / "out"
    out.mkdir()
    return genapkovl.build_apkovl(write_config(tmp_path, overlay), "bee", out)


def busybox_extract(archive, dest):
    """Extract as mkinitfs's initramfs-init does: busybox tar -C $sysroot -zxf."""
    dest.mkdir()
    result = subprocess.run([shutil.which("busybox") or "busybox", "tar", "-C", str(dest), "-zxf",
                             str(archive)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return dest


def test_output_name_is_what_mkimage_expects(built):
    assert built.name == "bee.apkovl.tar.gz"
    assert not list(built.parent.glob(".*tmp"))


def test_busybox_extracts_every_path_mode_and_link(built, tmp_path):
    root = busybox_extract(built, tmp_path / "sysroot")
    modes = {
        "etc": 0o755, "etc/apk/world": 0o644, "etc/hostname": 0o644, "etc/init.d/bee-sshsetup": 0o755,
        "etc/conf.d/dropbear": 0o644, "etc/bee": 0o755, "etc/bee/authorized_keys": 0o600,
        "etc/bee/password.hash": 0o600, "usr/lib/libnvidia-ml.so.590.48.01": 0o755,
        "usr/lib/bee/nvidia/6.12.1-0-lts/nvidia.ko": 0o644, "usr/local/bin/audit": 0o755,
        "etc/runlevels": 0o755, "etc/runlevels/default": 0o755,
    }
    for rel, mode in modes.items():
        st = (root / rel).lstat()
        assert stat.S_IMODE(st.st_mode) == mode, rel
        assert (st.st_uid, st.st_gid) == (0, 0), rel
        if stat.S_ISREG(st.st_mode):  # busybox leaves folders dated by what it extracted into them
            assert st.st_mtime == EPOCH, rel
    assert os.readlink(root / "usr/lib/libnvidia-ml.so.1") == "libnvidia-ml.so.590.48.01"
    for level, services in RUNLEVELS.items():
        assert sorted(p.name for p in (root / "etc/runlevels" / level).iterdir()) == sorted(services)
        for svc in services:
            assert os.readlink(root / "etc/runlevels" / level / svc) == f"/etc/init.d/{svc}"
    assert (root / "usr/lib/bee/nvidia/6.12.1-0-lts/nvidia.ko").read_text() == "ko" * 5000
    assert (root / "etc/bee/password.hash").read_text() == HASH


def test_archive_headers_are_root_sorted_and_dated(built):
    with tarfile.open(built) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "root", "root", EPOCH)}
    assert not any(n.startswith(("/", "./")) for n in names)


def test_gzip_header_has_no_time_and_no_name(built):
    header = built.read_bytes()[:10]
    assert header[:3] == b"\x1f\x8b\x08"
    assert header[3] & 0x08 == 0, "FNAME flag set"
    assert header[4:8] == b"\0\0\0\0", "gzip mtime set"
    gzip.decompress(built.read_bytes())


def test_two_builds_are_byte_identical(tmp_path, built):
    other = make_overlay(tmp_path / "overlay2", reverse=True)
    out = tmp_path / "out2"
    out.mkdir()
    second = genapkovl.build_apkovl(write_config(tmp_path, other), "bee", out)
    assert second.read_bytes() == built.read_bytes()


def test_hostname_file_is_made_when_the_overlay_has_none(tmp_path):
    overlay = make_overlay(tmp_path / "overlay")
    (overlay / "etc/hostname").unlink()
    out = genapkovl.build_apkovl(write_config(tmp_path, overlay), "bee", tmp_path)
    root = busybox_extract(out, tmp_path / "sysroot")
    assert (root / "etc/hostname").read_text() == "bee\n"


@pytest.mark.parametrize(("target", "message"), [
    ("/etc/shadow", "is absolute"),
    ("../../../outside", "leads outside the overlay"),
])
def test_refuses_symlinks_leading_outside(tmp_path, target, message):
    overlay = make_overlay(tmp_path / "overlay")
    (overlay / "etc/bad").symlink_to(target)
    with pytest.raises(genapkovl.ApkovlError, match=message):
        genapkovl.build_apkovl(write_config(tmp_path, overlay), "bee", tmp_path)


def test_refuses_a_link_that_leaves_through_another_link(tmp_path):
    overlay = make_overlay(tmp_path / "overlay")
    (overlay / "etc/up").symlink_to("..")  # the overlay root: fine by itself
    (overlay / "etc/escape").symlink_to("up/../outside")  # lexically etc/outside, really ../outside
    with pytest.raises(genapkovl.ApkovlError, match="escape -> up/../outside leads outside"):
        genapkovl.build_apkovl(write_config(tmp_path, overlay), "bee", tmp_path)


def test_accepts_a_link_to_what_a_live_package_provides(tmp_path):
    """bee.nvidia.compat_links: usr/lib/libdl.so.2 -> ../../lib/libgcompat.so.0, dangling on the builder."""
    overlay = make_overlay(tmp_path / "overlay")
    (overlay / "usr/lib/libdl.so.2").symlink_to("../../lib/libgcompat.so.0")
    out = genapkovl.build_apkovl(write_config(tmp_path, overlay), "bee", tmp_path)
    root = busybox_extract(out, tmp_path / "r")
    assert os.readlink(root / "usr/lib/libdl.so.2") == "../../lib/libgcompat.so.0"


def test_long_paths_survive_busybox_tar(tmp_path):
    """Names over tar's 100 bytes take GNU long-name entries, which busybox tar must understand."""
    overlay = make_overlay(tmp_path / "overlay")
    deep = "usr/lib/bee/firmware/nvidia/590.48.01/" + "a-very-long-folder-name-for-testing/" * 3
    (overlay / deep).mkdir(parents=True)
    (overlay / deep / "gsp_ga10x.bin").write_bytes(b"\x00firmware")
    (overlay / deep / "link-with-a-long-name").symlink_to("gsp_ga10x.bin")
    assert len(deep + "gsp_ga10x.bin") > 100
    out = genapkovl.build_apkovl(write_config(tmp_path, overlay), "bee", tmp_path)
    root = busybox_extract(out, tmp_path / "r")
    assert (root / deep / "gsp_ga10x.bin").read_bytes() == b"\x00firmware"
    assert os.readlink(root / deep / "link-with-a-long-name") == "gsp_ga10x.bin"


def test_accepts_a_relative_link_staying_inside(tmp_path):
    overlay = make_overlay(tmp_path / "overlay")
    (overlay / "etc/init.d/alias").symlink_to("../../usr/local/bin/audit")
    out = genapkovl.build_apkovl(write_config(tmp_path, overlay), "bee", tmp_path)
    extracted = busybox_extract(out, tmp_path / "r")
    assert os.readlink(extracted / "etc/init.d/alias") == "../../usr/local/bin/audit"


def test_refuses_missing_keys_without_password_fallback(tmp_path):
    overlay = make_overlay(tmp_path / "overlay")
    (overlay / "etc/bee/authorized_keys").unlink()
    with pytest.raises(genapkovl.ApkovlError, match="nobody could log in"):
        genapkovl.build_apkovl(write_config(tmp_path, overlay, password_fallback=False), "bee", tmp_path)
    (overlay / "etc/bee/password.hash").write_text("")
    with pytest.raises(genapkovl.ApkovlError, match="nobody could log in"):
        genapkovl.build_apkovl(write_config(tmp_path, overlay), "bee", tmp_path)


def test_keys_alone_are_enough(tmp_path):
    overlay = make_overlay(tmp_path / "overlay")
    (overlay / "etc/bee/password.hash").unlink()
    assert genapkovl.build_apkovl(write_config(tmp_path, overlay, password_fallback=False), "bee", tmp_path)


def test_refuses_a_fifo(tmp_path):
    overlay = make_overlay(tmp_path / "overlay")
    os.mkfifo(overlay / "etc/pipe")
    with pytest.raises(genapkovl.ApkovlError, match="not a file, folder or symlink"):
        genapkovl.build_apkovl(write_config(tmp_path, overlay), "bee", tmp_path)


def test_refuses_an_unreadable_file(tmp_path, monkeypatch):
    overlay = make_overlay(tmp_path / "overlay")
    secret = overlay / "etc/bee/authorized_keys"
    real_access = os.access
    # Tests run as root, who can read anything: make the permission check see what a user would.
    monkeypatch.setattr(genapkovl.os, "access", lambda p, m: real_access(p, m) and str(p) != str(secret))
    with pytest.raises(genapkovl.ApkovlError, match="cannot read overlay file"):
        genapkovl.build_apkovl(write_config(tmp_path, overlay), "bee", tmp_path)


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read the apkovl config"),
    ("{not json", "is not valid JSON"),
    ('{"hostname": "bee"}', "lacks overlay_dir"),
])
def test_refuses_a_bad_config(tmp_path, content, message):
    config = tmp_path / "apkovl.json"
    if content is not None:
        config.write_text(content)
    with pytest.raises(genapkovl.ApkovlError, match=message):
        genapkovl.build_apkovl(config, "bee", tmp_path)


def test_refuses_a_missing_overlay_and_a_staged_runlevel(tmp_path):
    with pytest.raises(genapkovl.ApkovlError, match="does not exist"):
        genapkovl.build_apkovl(write_config(tmp_path, tmp_path / "nope"), "bee", tmp_path)
    overlay = make_overlay(tmp_path / "overlay")
    (overlay / "etc/runlevels/default").mkdir(parents=True)
    with pytest.raises(genapkovl.ApkovlError, match="runlevels come from"):
        genapkovl.build_apkovl(write_config(tmp_path, overlay), "bee", tmp_path)


def test_refuses_another_hostname(tmp_path):
    overlay = make_overlay(tmp_path / "overlay")
    with pytest.raises(genapkovl.ApkovlError, match="staged for 'bee'"):
        genapkovl.build_apkovl(write_config(tmp_path, overlay), "hive-7", tmp_path)


def test_cli_prints_one_line_and_fails_on_bad_input(tmp_path):
    script = genapkovl.__file__
    result = subprocess.run(["python3", script, "--config", str(tmp_path / "none.json"), "--hostname", "bee",
                             "--output", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("genapkovl: cannot read")
    assert not list(tmp_path.iterdir())


def test_cli_under_fakeroot_with_system_python(tmp_path):
    """As mkimage runs it: fakeroot, the system python3 (standard library only), cwd = the output."""
    overlay = make_overlay(tmp_path / "overlay")
    section = tmp_path / "apkovl_bee_123"
    section.mkdir()
    result = subprocess.run(["fakeroot", "python3", genapkovl.__file__, "--config",
                             str(write_config(tmp_path, overlay)), "--hostname", "bee", "--output", "."],
                            cwd=section, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in section.iterdir()] == ["bee.apkovl.tar.gz"]
