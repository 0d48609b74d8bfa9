"""File operations the build steps share: hashing, removing, and writes that never leave half a file.

Every write goes to a temporary name beside its target and is renamed over it only when complete, so a
full disk or an interrupt leaves either the old file or none under the final name, never a torn one that
a later run would trust. `os_error_line` turns an OSError into the one-line message the scripts print.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

CHUNK_SIZE = 1 << 20


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of the file at `path`."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def remove_path(path: Path) -> None:
    """Remove the file, symlink or whole folder at `path`; nothing when there is none."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def temp_name(path: Path) -> Path:
    """Return the temporary name a write into `path` uses before its rename: `.<name>.tmp` beside it."""
    return path.with_name(f".{path.name}.tmp")


def replace_atomic(path: Path, fill: Callable[[Path], object], mode: int) -> Path:
    """Make `path` by `fill(temporary path)`, set `mode`, then rename it over `path`; return `path`.

    On any error (ENOSPC included) the temporary file is removed and the error raised: `path` keeps its
    old content, or stays absent.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        fill(tmp)
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write `data` to `path` with `mode` through a temporary name (see replace_atomic); return `path`.

    The temporary file has `mode` from its creation: a secret written 0600 is never readable by others.
    """

    def fill(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)
        tmp.touch(mode=mode, exist_ok=False)
        tmp.write_bytes(data)

    return replace_atomic(path, fill, mode)


def copy_atomic(source: Path, target: Path, mode: int) -> Path:
    """Copy the file `source` to `target` with `mode` through a temporary name; return `target`."""
    return replace_atomic(target, lambda tmp: shutil.copyfile(source, tmp), mode)


def os_error_line(err: OSError) -> str:
    """Return one line for an OSError: what failed, on which path, and what to do about it."""
    reason = err.strerror or str(err) or type(err).__name__
    where = f": {err.filename}" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space there (or point that path in invoke.yaml elsewhere) and run again"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "check that path and its permissions (bee.paths in invoke.yaml) and run again"
    else:
        advice = "check that path (bee.paths in invoke.yaml) and run again"
    return f"{reason}{where}; {advice}"
