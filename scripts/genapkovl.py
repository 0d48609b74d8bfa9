#!/usr/bin/env python3
"""Pack the staged live-system overlay into `<hostname>.apkovl.tar.gz`, byte for byte reproducibly.

mkimage runs this through iso/mkimg/genapkovl-bee_debug.sh (under fakeroot, from inside its apkovl work
section, the hostname as argument). Alpine's initramfs extracts the result with `busybox tar -zxf` onto the
live system's root. Standard library only: mkimage may run it with any python3 on the builder.

The archive holds every file of the overlay folder that scripts/live_system.py staged, plus the OpenRC
runlevel links (`etc/runlevels/<level>/<service>` -> `/etc/init.d/<service>`) and `etc/hostname`.
Entries are sorted; every entry is owned by root:root (uid/gid 0) and dated SOURCE_DATE_EPOCH; modes are
normalized (folders 0755, executables 0755, files others could not read 0600, the rest 0644, links 0777);
the gzip header carries no time and no name. Two runs on the same inputs give the same bytes.

It refuses, with one line naming the problem: a config or overlay it cannot read, an overlay symlink that
is absolute or leads outside the overlay, a device/fifo/socket, runlevel links already in the overlay, a
hostname that differs from the staged one, and an archive that would carry neither authorized_keys nor a
password hash (nobody could log in). The rule itself is scripts/live_system.py's `login_problem`, checked
before staging; this is the check that the archive really carries what it promised.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import posixpath
import stat
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

REQUIRED_KEYS = (
    "overlay_dir", "hostname", "runlevels", "source_date_epoch",
    "password_fallback", "authorized_keys_file", "password_hash_file",
)
RUNLEVELS_DIR = "etc/runlevels"
HOSTNAME_FILE = "etc/hostname"
WORLD_FILE = "etc/apk/world"
INIT_DIR = "/etc/init.d"


class ApkovlError(Exception):
    """A problem with the inputs; its message says what is wrong and what to do."""


@dataclass(frozen=True)
class Entry:
    """One archive member: `name` relative to the live root, no leading slash."""

    name: str
    kind: str  # "dir", "file", "link"
    mode: int
    source: Path | None = None  # file contents, for "file" entries read from the overlay
    data: bytes | None = None  # file contents, for generated files
    target: str = ""  # link target, for "link" entries


def load_config(path: Path) -> dict:
    """Return the generator config (JSON written by scripts/live_system.py), checked for every needed key."""
    try:
        config = json.loads(path.read_text())
    except OSError as exc:
        raise ApkovlError(f"cannot read the apkovl config {path}: {exc.strerror}; stage the live system "
                          "(scripts/live_system.py)") from exc
    except json.JSONDecodeError as exc:
        raise ApkovlError(f"{path} is not valid JSON ({exc}); stage the live system again") from exc
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise ApkovlError(f"{path} lacks {', '.join(missing)}; stage the live system again")
    return config


def normalized_mode(st_mode: int) -> int:
    """Return the archive mode of an overlay file: 0755 executable, 0600 private, else 0644."""
    if st_mode & stat.S_IXUSR:
        return 0o755
    if not st_mode & stat.S_IROTH:
        return 0o600
    return 0o644


def check_link(overlay: Path, name: str, target: str) -> None:
    """Refuse a symlink that is absolute or whose target leads outside the overlay."""
    if target.startswith("/"):
        raise ApkovlError(
            f"overlay symlink {name} -> {target} is absolute: on the builder it points outside the overlay; "
            "make it relative"
        )
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    # The second test follows the links on the way (d/x -> b/../y with d/b -> .. leaves the overlay).
    real = Path(os.path.realpath(overlay / name))
    if resolved == ".." or resolved.startswith("../") or not real.is_relative_to(overlay.resolve()):
        raise ApkovlError(f"overlay symlink {name} -> {target} leads outside the overlay {overlay}")


def overlay_entries(overlay: Path) -> list[Entry]:
    """Return an entry for every folder, file and symlink under `overlay`, refusing what cannot be shipped."""
    if not overlay.is_dir():
        raise ApkovlError(f"overlay folder {overlay} does not exist; stage the live system first")
    entries = []
    for root, dirs, files in os.walk(overlay, onerror=_walk_error):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(root) / name
            rel = path.relative_to(overlay).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                check_link(overlay, rel, target)
                entries.append(Entry(rel, "link", 0o777, target=target))
                if name in dirs:
                    dirs.remove(name)  # never walk into a linked folder
            elif stat.S_ISDIR(st.st_mode):
                if not os.access(path, os.R_OK | os.X_OK):
                    raise ApkovlError(f"cannot read overlay folder {path}; fix its permissions")
                entries.append(Entry(rel, "dir", 0o755))
            elif stat.S_ISREG(st.st_mode):
                if not os.access(path, os.R_OK):
                    raise ApkovlError(f"cannot read overlay file {path}; fix its permissions")
                entries.append(Entry(rel, "file", normalized_mode(st.st_mode), source=path))
            else:
                raise ApkovlError(f"overlay entry {path} is not a file, folder or symlink; remove it")
    return entries


def _walk_error(exc: OSError) -> None:
    raise ApkovlError(f"cannot read overlay folder {exc.filename}: {exc.strerror}")


def runlevel_entries(runlevels: dict[str, list[str]]) -> list[Entry]:
    """Return the `etc/runlevels/<level>/<service>` links to `/etc/init.d/<service>` and their folders."""
    entries = [Entry(RUNLEVELS_DIR, "dir", 0o755)]
    for level, services in runlevels.items():
        for name in [level, *services]:
            if not name or "/" in name or name.startswith("."):
                raise ApkovlError(f"bad runlevel or service name {name!r} in bee.live.runlevels")
        entries.append(Entry(f"{RUNLEVELS_DIR}/{level}", "dir", 0o755))
        entries += [Entry(f"{RUNLEVELS_DIR}/{level}/{svc}", "link", 0o777, target=f"{INIT_DIR}/{svc}")
                    for svc in services]
    return entries


def parent_entries(names: set[str]) -> list[Entry]:
    """Return folder entries for every parent of `names` that is not itself listed."""
    parents = set()
    for name in names:
        parts = name.split("/")[:-1]
        parents |= {"/".join(parts[: i + 1]) for i in range(len(parts))}
    return [Entry(parent, "dir", 0o755) for parent in parents - names]


def _nonempty_file(entries: dict[str, Entry], name: str) -> bool:
    entry = entries.get(name.lstrip("/"))
    return bool(entry and entry.kind == "file" and entry.source and entry.source.stat().st_size > 0)


def collect_entries(config: dict, hostname: str) -> list[Entry]:
    """Return every archive entry, sorted so that each folder precedes its contents."""
    if hostname != config["hostname"]:
        raise ApkovlError(
            f"mkimage asks for hostname {hostname!r} but the overlay was staged for {config['hostname']!r}; "
            "stage the live system again"
        )
    overlay = Path(config["overlay_dir"])
    entries = {e.name: e for e in overlay_entries(overlay)}
    if any(name == RUNLEVELS_DIR or name.startswith(RUNLEVELS_DIR + "/") for name in entries):
        raise ApkovlError(f"{overlay} holds {RUNLEVELS_DIR}: runlevels come from bee.live.runlevels only")
    if WORLD_FILE not in entries:
        raise ApkovlError(f"{overlay} has no {WORLD_FILE}: the live system would get no packages; stage it")
    staged_hostname = entries.get(HOSTNAME_FILE)
    if staged_hostname is None:
        entries[HOSTNAME_FILE] = Entry(HOSTNAME_FILE, "file", 0o644, data=f"{hostname}\n".encode())
    elif staged_hostname.source and staged_hostname.source.read_text().strip() != hostname:
        raise ApkovlError(f"{overlay}/{HOSTNAME_FILE} does not say {hostname!r}; stage the live system again")
    has_keys = _nonempty_file(entries, config["authorized_keys_file"])
    has_hash = config["password_fallback"] and _nonempty_file(entries, config["password_hash_file"])
    if not has_keys and not has_hash:
        raise ApkovlError(
            f"no SSH keys ({config['authorized_keys_file']}) and no password fallback in {overlay}: nobody "
            "could log in; add bee.paths.authorized_keys or enable bee.live.password_fallback"
        )
    entries.update({e.name: e for e in runlevel_entries(config["runlevels"])})
    entries.update({e.name: e for e in parent_entries(set(entries))})
    return sorted(entries.values(), key=lambda e: e.name.split("/"))


def tar_info(entry: Entry, mtime: int, size: int = 0) -> tarfile.TarInfo:
    """Return the header of `entry`: root-owned, dated `mtime`, with its normalized mode."""
    info = tarfile.TarInfo(entry.name)
    info.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "link": tarfile.SYMTYPE}[entry.kind]
    info.mode = entry.mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.size = size
    info.linkname = entry.target
    return info


def write_archive(entries: list[Entry], mtime: int, output: Path) -> None:
    """Write the gzip'd tar of `entries` to `output` (through a temporary name, then renamed)."""
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        with tmp.open("wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0
        ) as gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for entry in entries:
                if entry.kind != "file":
                    tar.addfile(tar_info(entry, mtime))
                elif entry.data is not None:
                    tar.addfile(tar_info(entry, mtime, len(entry.data)), io.BytesIO(entry.data))
                else:
                    with entry.source.open("rb") as src:
                        size = os.fstat(src.fileno()).st_size
                        tar.addfile(tar_info(entry, mtime, size), src)
        tmp.replace(output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ApkovlError(f"cannot write {output}: {exc.strerror} ({exc.filename})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def build_apkovl(config_file: Path, hostname: str, output_dir: Path) -> Path:
    """Write `<output_dir>/<hostname>.apkovl.tar.gz` from the staged overlay; return its path."""
    config = load_config(config_file)
    entries = collect_entries(config, hostname)
    output = output_dir / f"{hostname}.apkovl.tar.gz"
    write_archive(entries, int(config["source_date_epoch"]), output)
    return output


def main(argv: list[str] | None = None) -> int:
    """Command line: `genapkovl.py --config FILE --hostname NAME --output DIR`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="JSON written by scripts/live_system.py")
    parser.add_argument("--hostname", required=True, help="the live system's hostname (mkimage's $1)")
    parser.add_argument("--output", required=True, type=Path, help="folder for <hostname>.apkovl.tar.gz")
    args = parser.parse_args(argv)
    try:
        written = build_apkovl(args.config, args.hostname, args.output)
    except ApkovlError as exc:
        print(f"genapkovl: {exc}", file=sys.stderr)
        return 1
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
