"""scripts/fileops.py: writes that never leave half a file, and one-line messages for OSErrors."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from scripts import fileops


def os_error(code, path):
    return OSError(code, os.strerror(code), str(path))


def enospc(path):
    return os_error(errno.ENOSPC, path)


def test_write_atomic_writes_with_mode_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "f"
    assert fileops.write_atomic(target, b"data", 0o600) == target
    assert target.read_bytes() == b"data" and target.stat().st_mode & 0o777 == 0o600
    assert os.listdir(target.parent) == ["f"]


def test_a_full_disk_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    real = Path.write_bytes

    def half_then_full(path, data):
        real(path, data[:2])
        raise enospc(path)

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(OSError) as raised:
        fileops.write_atomic(target, b"new content")
    assert raised.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]


def test_copy_atomic_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    source = tmp_path / "source"
    source.write_bytes(b"x" * 1000)
    target = tmp_path / "out" / "copy"

    def half_then_full(src, dst):
        Path(dst).write_bytes(b"x" * 10)
        raise enospc(dst)

    monkeypatch.setattr(shutil, "copyfile", half_then_full)
    with pytest.raises(OSError):
        fileops.copy_atomic(source, target, 0o755)
    assert os.listdir(target.parent) == []
    monkeypatch.undo()
    fileops.copy_atomic(source, target, 0o755)
    assert target.read_bytes() == source.read_bytes() and target.stat().st_mode & 0o777 == 0o755


def test_remove_path_removes_files_folders_and_links_but_not_link_targets(tmp_path):
    folder, file, kept = tmp_path / "d", tmp_path / "f", tmp_path / "kept"
    (folder / "sub").mkdir(parents=True)
    file.write_text("x")
    kept.mkdir()
    link, dangling = tmp_path / "link", tmp_path / "dangling"
    link.symlink_to(kept)
    dangling.symlink_to(tmp_path / "nothing")
    for path in (folder, file, link, dangling, tmp_path / "absent"):
        fileops.remove_path(path)
        assert not path.exists() and not path.is_symlink()
    assert kept.is_dir()


def test_sha256_file(tmp_path):
    data = os.urandom(3 * fileops.CHUNK_SIZE + 7)
    (tmp_path / "f").write_bytes(data)
    assert fileops.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(("err", "expected"), [
    (enospc("/var/tmp/x"), "No space left on device: /var/tmp/x; free some space there"),
    (os_error(errno.EACCES, "/root/x"), "Permission denied: /root/x; check that path"),
    (os_error(errno.EROFS, "/usr/x"), "Read-only file system: /usr/x; check that path"),
    (os_error(errno.ENOENT, "/nope"), "No such file or directory: /nope; check that"),
    (OSError("odd"), "odd; check that path"),
])
def test_os_error_line_says_what_and_what_to_do(err, expected):
    line = fileops.os_error_line(err)
    assert line.startswith(expected) and line.endswith("run again") and "\n" not in line


def test_a_secret_is_never_readable_by_others_even_before_its_rename(tmp_path, monkeypatch):
    modes = []
    real = Path.write_bytes

    def recording(path, data):
        modes.append(stat.S_IMODE(path.stat().st_mode))
        return real(path, data)

    monkeypatch.setattr(Path, "write_bytes", recording)
    fileops.write_atomic(tmp_path / "password.txt", b"secret\n", 0o600)
    assert modes == [0o600]
    assert stat.S_IMODE((tmp_path / "password.txt").stat().st_mode) == 0o600
