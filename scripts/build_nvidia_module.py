#!/usr/bin/env python3
"""The nvidia step of `invoke build-debug`: NVIDIA's modules and userland for the ISO kernel, built, cached.

a. download NVIDIA's `.run` installer (streamed, sha256 computed in the same pass, resumed from a `.part`
   file, retried on resets and 5xx with one line per retry, failing at once when the host does not
   resolve) and trust it only if it matches the pinned `bee.nvidia.sha256` (else it is kept aside);
b. extract it (`sh <installer> --extract-only --target <dir>`) into a temp dir renamed when complete;
c. compare the builder's gcc with the kernel's, then build `kernel/` (proprietary), `kernel-open/` (open)
   or both (`bee.nvidia.flavor: auto`), only the shipped modules, against the ISO kernel's headers (found
   and checked by scripts/iso_kernel.py), and strip the debug info from the `.ko` files;
d. take the userland the live system needs: nvidia-smi, nvidia-modprobe, libnvidia-ml, the GSP firmware,
   and the GPU list bee-nvidia chooses the flavor by at boot (from the installer's supported-gpus.json);
e. keep all of it in `dist/nvidia-<version>-<kver>/` (the modules in a folder per flavor) with a manifest
   of the inputs and of each output's sha256, one per flavor too: when all still match, the whole step is
   skipped.

`install_into_overlay` then copies the cached files to their live-system paths (`bee.live.*`) in the overlay.
Every failure is one line saying what to do (a full disk included: OSErrors become NvidiaBuildError), and
every cache is written under a temp name and renamed. The tools read nothing (stdin is /dev/null) and are
stopped, with their children, after `bee.nvidia.tool_timeout` seconds.
Every default comes from invoke.yaml; `python scripts/build_nvidia_module.py --help` runs one step alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as a script: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import buildconfig, fileops, iso_kernel  # noqa: E402

CHUNK_SIZE = fileops.CHUNK_SIZE
# The useful part of a requests error, whose message nests several reprs.
REASON_PATTERN = r"\[Errno -?\d+\] [^'\")]+|Connection re\w+|Read timed out|IncompleteRead\([^)]*\)"
# What a requests error says when the host name did not resolve (no network, no DNS): retrying cannot help.
NAME_RESOLUTION = re.compile(
    r"Name or service not known|Temporary failure in name resolution|No address associated with hostname|"
    r"nodename nor servname|getaddrinfo failed|NameResolutionError|Failed to resolve"
)
# What it says when this builder has no route to the host (ENETUNREACH, EHOSTUNREACH): no network either.
NO_ROUTE = re.compile(r"Network is unreachable|No route to host|\[Errno (?:101|113)\]")
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 2
KERNEL_DIRS = {"proprietary": "kernel", "open": "kernel-open"}  # flavor -> the installer's source folder
AUTO = "auto"  # bee.nvidia.flavor: build both flavors, bee-nvidia chooses at boot
# NVIDIA's GPU list in its installer: {"chips": [{"devid", "name", "features", "legacybranch"?}]}
SUPPORTED_GPUS = Path("supported-gpus") / "supported-gpus.json"
COMPILE_H = Path("include") / "generated" / "compile.h"  # LINUX_COMPILER: the compiler of the kernel
AUTOCONF_H = Path("include") / "generated" / "autoconf.h"  # CONFIG_CC_VERSION_TEXT: its command first
USERLAND_BINARIES = ("nvidia-smi", "nvidia-modprobe")
FIRMWARE_PATTERN = "gsp_*.bin"
STRIP_COMMAND = ("strip", "--strip-debug")
STOP_GRACE = 5.0  # seconds a timed-out tool gets after SIGTERM before SIGKILL
# Cache sub-folders, each installed at one live-system path (see install_into_overlay); the modules of each
# flavor are in a sub-folder named after it (proprietary/, open/), with a manifest of their own.
FIRMWARE, BIN, LIB = "firmware", "bin", "lib"


class NvidiaBuildError(Exception):
    """A failure of this step; its message is one line saying what went wrong and what to do."""


class DownloadError(NvidiaBuildError):
    """The installer could not be downloaded."""


class ChecksumError(DownloadError):
    """The installer (downloaded or cached) is not the pinned one; it was kept aside under another name."""


class CommandError(NvidiaBuildError):
    """An external command (the installer, make, strip, apk) failed."""


class _TransientError(Exception):
    """A failure worth retrying: a reset or cut connection, a timeout, a 5xx."""


# ----------------------------------------------------------------------------- failures and external commands


@contextmanager
def os_errors_as_build_errors() -> Iterator[None]:
    """Turn an OSError (a full disk, a permission) inside the block into a one-line NvidiaBuildError."""
    try:
        yield
    except NvidiaBuildError:
        raise
    except OSError as err:
        raise NvidiaBuildError(fileops.os_error_line(err)) from err


def tool_timeout(cfg: Any) -> float:
    """Return the seconds the installer's extraction, make or strip may run (`bee.nvidia.tool_timeout`)."""
    return float(cfg.bee.nvidia.tool_timeout)


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop `process` and every process it started (it leads its own session): SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, None)):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)  # the group outlives its leader while a child still runs
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)


def run_command(command: list[str], *, what: str, timeout: float, cwd: Path | None = None) -> None:
    """Run `command` with its output on our stderr (stdout stays clean); raise CommandError if it fails.

    The tool reads nothing (stdin is /dev/null, so a question cannot hang the build) and runs in its own
    session: when it takes longer than `timeout` seconds, or the build is interrupted, it is stopped
    together with every process it started (make's compilers).
    """
    try:
        process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=2, stderr=2,
                                   start_new_session=True)
    except FileNotFoundError:
        raise CommandError(f"{what}: {command[0]} not found; install it on the builder") from None
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(process)
        raise CommandError(
            f"{what} did not finish in {timeout:g} s and was stopped: {shlex.join(command)}; its output "
            "is above (raise bee.nvidia.tool_timeout if the builder is only slow)"
        ) from None
    except BaseException:  # an interrupt: the tool is in its own session, so Ctrl-C did not reach it
        stop_process_group(process)
        raise
    if returncode != 0:
        raise CommandError(f"{what} failed (exit {returncode}): {shlex.join(command)}; its output is above")


# ---------------------------------------------------------------------------------------------- a. download


def partial_path(dest: Path) -> Path:
    """Return the `.part` file a download into `dest` grows in until it is complete and verified."""
    return dest.with_name(dest.name + ".part")


@dataclass
class _Transfer:
    """A download in progress: the `.part` file, the sha256 of its bytes so far, and their count."""

    part: Path
    hasher: Any = field(default_factory=hashlib.sha256)
    offset: int = 0
    bar: Any = None
    received: int = 0  # bytes that arrived in this run

    def resume(self) -> None:
        """Hash what an earlier, interrupted run left in the `.part` file, to continue after it."""
        if self.part.is_file():
            with self.part.open("rb") as f:
                while chunk := f.read(CHUNK_SIZE):
                    self.hasher.update(chunk)
                    self.offset += len(chunk)

    def restart(self) -> None:
        """Forget the partial bytes: the server cannot continue them."""
        self.part.unlink(missing_ok=True)
        self.hasher = hashlib.sha256()
        self.offset = 0
        if self.bar is not None:
            self.bar.reset()

    def append(self, out: Any, chunk: bytes) -> None:
        """Write `chunk` to the open `.part` file, then count and hash it (only once it is written)."""
        out.write(chunk)
        self.hasher.update(chunk)
        self.offset += len(chunk)
        self.received += len(chunk)
        if self.bar is not None:
            self.bar.update(len(chunk))

    def keep_what_was_hashed(self) -> None:
        """After a failed write, cut the `.part` file back to the bytes hashed so far (or delete it).

        A write that fails half-way (ENOSPC) may leave part of a chunk the hash has not seen; cutting it
        keeps the `.part` file a clean prefix that the next run resumes from.
        """
        try:
            os.truncate(self.part, self.offset)
        except OSError:
            self.part.unlink(missing_ok=True)


def _open_progress(enabled: bool, name: str, initial: int, total: int | None) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, leave=False)


def _fetch_once(session: Any, url: str, transfer: _Transfer, timeout: float, progress: bool) -> None:
    """Append the rest of `url` to the transfer; raise _TransientError for what a retry may fix."""
    import requests

    headers = {"Accept-Encoding": "identity"}
    if transfer.offset:
        headers["Range"] = f"bytes={transfer.offset}-"
    try:
        with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
            status = response.status_code
            if status == 416:  # nothing after the .part: complete already, or longer than the file
                if response.headers.get("Content-Range", "") == f"bytes */{transfer.offset}":
                    return
                transfer.restart()
                raise _TransientError("the server refused to resume (HTTP 416)")
            if status >= 500 or status == 429:
                raise _TransientError(f"HTTP {status} {response.reason}")
            if status not in (200, 206):
                raise DownloadError(
                    f"cannot download {url}: HTTP {status} {response.reason}; "
                    "check bee.nvidia.version and bee.nvidia.url"
                )
            if status == 200 and transfer.offset:  # the server ignored the Range: start over
                transfer.restart()
            if status == 206 and not response.headers.get("Content-Range", "").startswith(
                f"bytes {transfer.offset}-"
            ):
                transfer.restart()
                raise _TransientError("the server resumed at another offset")
            length = response.headers.get("Content-Length")
            total = transfer.offset + int(length) if length and length.isdigit() else None
            if progress and transfer.bar is None:
                transfer.bar = _open_progress(True, Path(url).name, transfer.offset, total)
            _save_body(response, transfer, url)
    except requests.ConnectionError as exc:
        host = urlsplit(url).hostname or url
        for pattern, what, why in ((NAME_RESOLUTION, f"{host} does not resolve", "no network or no DNS"),
                                   (NO_ROUTE, f"no route to {host}", "no network")):
            if pattern.search(str(exc)):
                raise DownloadError(
                    f"cannot download {url}: {what} ({_short_reason(exc)}): {why} on this builder; check the "
                    "network (and bee.nvidia.url), then run again"
                ) from None
        raise _TransientError(_short_reason(exc)) from exc
    except (requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise _TransientError(_short_reason(exc)) from exc
    except requests.RequestException as exc:  # a bad URL or the like: retrying cannot help
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DownloadError(f"cannot download {url}: {reason}; check bee.nvidia.url") from None


def _save_body(response: Any, transfer: _Transfer, url: str) -> None:
    """Append the response body to the `.part` file; a failed write (a full disk) is a DownloadError."""
    import requests

    try:
        with transfer.part.open("ab") as out:
            for chunk in response.iter_content(CHUNK_SIZE):
                transfer.append(out, chunk)
    except requests.RequestException:
        raise
    except OSError as err:
        transfer.keep_what_was_hashed()
        raise DownloadError(
            f"cannot save {Path(url).name}: {fileops.os_error_line(err)} to resume the download"
        ) from None


def _short_reason(exc: BaseException) -> str:
    """A one-line reason for a requests exception (they nest long reprs)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    match = re.search(REASON_PATTERN, text)
    return match.group(0) if match else type(exc).__name__


def _plain_reason(reason: str) -> str:
    """`[Errno 111] Connection refused` -> `connection refused`, for the one-line retry messages."""
    reason = re.sub(r"^\[Errno -?\d+\] ", "", str(reason))
    return reason[:1].lower() + reason[1:] if re.match(r"[A-Z][a-z]+\b", reason) else reason


def _size(count: int) -> str:
    """A byte count for people: `3.0 MiB`, `512 bytes`."""
    value, unit = float(count), 0
    units = ("bytes", "KiB", "MiB", "GiB")
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{count} bytes" if unit == 0 else f"{value:.1f} {units[unit]}"


def set_aside(path: Path, digest: str) -> Path:
    """Rename `path` (an installer that is not the pinned one) to `<name>.sha256-<12 hex digits>`; return it.

    Kept rather than deleted: when the pin is the wrong one, that file is the right one.
    """
    aside = path.with_name(f"{path.with_suffix('').name if path.suffix == '.part' else path.name}"
                           f".sha256-{digest[:12]}")
    path.replace(aside)
    return aside


def _mismatch(url: str, path: Path, expected: str, got: str) -> ChecksumError:
    aside = set_aside(path, got)
    return ChecksumError(
        f"{url}: sha256 mismatch: expected {expected}, got {got}; the file was kept aside as {aside}. If the "
        "pin is the wrong one, fix bee.nvidia.sha256; otherwise run again to download it afresh"
    )


def _say(line: str) -> None:
    """One progress line on stderr (stdout holds only results)."""
    print(f"build_nvidia_module: {line}", file=sys.stderr, flush=True)


def download(
    url: str,
    dest: Path,
    sha256: str,
    *,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60,
    progress: bool | None = None,
    session: Any = None,
) -> Path:
    """Download `url` to `dest` unless `dest` already has the sha256 `sha256`; return `dest`.

    The file grows in `<dest>.part` (resumed with an HTTP Range request after an interruption, also across
    runs), hashed while it is written; resets, cut connections, timeouts and 5xx answers are retried
    `retries` times with a doubling backoff, each retry announced in one line on stderr ("retrying in 4 s
    (2/5): connection refused"); a host name that does not resolve (no network) fails at once. The last
    error says whether any byte arrived. Only a file whose sha256 matches is renamed to `dest`; a cached
    `dest` or a finished download that does not match is kept aside (`set_aside`) and ChecksumError names
    both sums. Nothing is requested when `dest` matches.
    """
    import requests

    expected = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise DownloadError(
            f"the pinned sha256 {sha256!r} is not 64 hex digits; fix bee.nvidia.sha256 "
            "(python scripts/build_nvidia_module.py --print-sha256 shows NVIDIA's published one)"
        )
    if dest.is_file():
        got = fileops.sha256_file(dest)
        if got == expected:
            return dest
        raise _mismatch(f"the cached {dest}", dest, expected, got)
    dest.parent.mkdir(parents=True, exist_ok=True)
    transfer = _Transfer(partial_path(dest))
    transfer.resume()
    show = sys.stderr.isatty() if progress is None else progress
    session = session or requests.Session()
    failures = 0
    try:
        while True:
            before = transfer.offset
            try:
                _fetch_once(session, url, transfer, timeout, show)
                break
            except _TransientError as exc:
                failures = 1 if transfer.offset > before else failures + 1
                if failures > retries:
                    raise DownloadError(
                        f"cannot download {url}: {exc} ({retries} retries failed; {_arrived(transfer)}); "
                        "check the network and bee.nvidia.url, then run again to resume"
                    ) from None
                delay = backoff * 2 ** (failures - 1)
                reason = _plain_reason(str(exc))
                _say(f"{dest.name}: retrying in {delay:g} s ({failures}/{retries}): {reason}")
                time.sleep(delay)
    finally:
        if transfer.bar is not None:
            transfer.bar.close()
    got = transfer.hasher.hexdigest()
    if got != expected:
        raise _mismatch(url, transfer.part, expected, got)
    transfer.part.replace(dest)
    return dest


def _arrived(transfer: _Transfer) -> str:
    """Whether any byte arrived in this run, and what the `.part` file keeps for the next one."""
    arrived = "no byte arrived" if not transfer.received else f"{_size(transfer.received)} arrived"
    if transfer.offset:
        arrived += f", {_size(transfer.offset)} kept in {transfer.part.name}"
    return arrived


def installer_url(cfg: Any) -> str:
    """Return the download URL of the configured installer."""
    return buildconfig.nvidia_url(cfg)


def installer_path(cfg: Any) -> Path:
    """Return where the configured installer is cached (`paths.download_cache/<its file name>`)."""
    name = installer_url(cfg).rsplit("/", 1)[-1]
    return buildconfig.config_path(cfg, "download_cache") / name


def download_installer(cfg: Any, *, progress: bool | None = None) -> Path:
    """Download (or find in the cache) the configured installer, verified against `bee.nvidia.sha256`."""
    nv = cfg.bee.nvidia
    return download(
        installer_url(cfg), installer_path(cfg), nv.sha256,
        retries=int(nv.download_retries), backoff=float(nv.download_backoff),
        timeout=float(nv.download_timeout), progress=progress,
    )


def published_sha256(url: str, *, timeout: float = 60) -> str:
    """Return the sha256 NVIDIA publishes beside `url` (`<url>.sha256sum`), to help pin a new version.

    The build never trusts it: it is printed for a person to check and copy into bee.nvidia.sha256.
    """
    import requests

    sums_url = url + ".sha256sum"
    try:
        response = requests.get(sums_url, timeout=timeout)
    except requests.RequestException as exc:
        raise DownloadError(f"cannot fetch {sums_url}: {_short_reason(exc)}; check the network") from None
    if response.status_code != 200:
        raise DownloadError(f"cannot fetch {sums_url}: HTTP {response.status_code}; check bee.nvidia.version")
    words = response.text.split()
    if not words or not re.fullmatch(r"[0-9a-fA-F]{64}", words[0]):
        raise DownloadError(f"{sums_url} holds no sha256 sum; check it by hand")
    return words[0].lower()


# ----------------------------------------------------------------------------------------------- b. extract


def extract_command(installer: Path, target: Path) -> list[str]:
    """Return the command that extracts NVIDIA's installer into `target` without running it."""
    return ["sh", str(installer), "--extract-only", "--target", str(target)]


def extract(installer: Path, target: Path, *, timeout: float) -> Path:
    """Extract `installer` into `target` (replaced), through a temp folder renamed when complete."""
    tmp = fileops.temp_name(target)
    fileops.remove_path(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    run_command(extract_command(installer, tmp), what=f"extracting {installer.name}", timeout=timeout)
    if not tmp.is_dir():
        raise CommandError(f"extracting {installer.name} created no {tmp}; is it NVIDIA's .run installer?")
    fileops.remove_path(target)
    tmp.rename(target)
    return target


# ------------------------------------------------------------------------------------------------- c. build


def kernel_dir_name(flavor: str) -> str:
    """Return the installer's folder of the module sources for `flavor` (proprietary or open)."""
    try:
        return KERNEL_DIRS[flavor]
    except KeyError:
        choices = ", ".join([AUTO, *KERNEL_DIRS][:-1]) + f" or {list(KERNEL_DIRS)[-1]}"
        raise NvidiaBuildError(f"unknown bee.nvidia.flavor {flavor!r}; use {choices}") from None


def flavors_to_build(flavor: str) -> list[str]:
    """Return the module flavors `bee.nvidia.flavor` asks for: both for `auto`, else that one."""
    if flavor == AUTO:
        return list(KERNEL_DIRS)
    kernel_dir_name(flavor)
    return [flavor]


def jobs_count(cfg: Any) -> int:
    """Return make's -j: `bee.nvidia.jobs`, or one per CPU when it is 0."""
    configured = int(cfg.bee.nvidia.jobs or 0)
    return configured if configured > 0 else (os.cpu_count() or 1)


def make_command(kernel_dir: Path, headers: Path, jobs: int, modules: list[str] | None = None,
                 *, ignore_cc_mismatch: bool = False, cc: str | None = None) -> list[str]:
    """Return the make command building NVIDIA's modules in `kernel_dir` against `headers`.

    Only `modules` are built (NVIDIA's Makefile builds what NV_KERNEL_MODULES names, by default every
    module it has); `cc` other than plain gcc (the kernel's own, e.g. gcc-12) is passed as CC=, as NVIDIA's
    conftest.sh recommends; IGNORE_CC_MISMATCH=1 lets NVIDIA's build accept a compiler other than the
    kernel's.
    """
    command = ["make", "-C", str(kernel_dir), f"-j{jobs}", "modules", f"SYSSRC={headers}"]
    if cc and cc != "gcc":
        command.append(f"CC={cc}")
    if modules:
        command.append(f"NV_KERNEL_MODULES={' '.join(modules)}")
    if ignore_cc_mismatch:
        command.append("IGNORE_CC_MISMATCH=1")
    return command


def module_names(cfg: Any) -> list[str]:
    """Return the modules to ship: `bee.nvidia.modules` then `bee.nvidia.optional_modules`."""
    names = list(cfg.bee.nvidia.modules) + list(cfg.bee.nvidia.optional_modules or [])
    return list(dict.fromkeys(names))


def kernel_compiler(headers: Path) -> str | None:
    """Return the compiler that built the kernel of `headers` (LINUX_COMPILER of compile.h), or None."""
    try:
        text = (Path(headers) / COMPILE_H).read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r'#define\s+LINUX_COMPILER\s+"([^"]*)"', text)
    return match.group(1).split(",")[0].strip() if match else None


def kernel_cc(headers: Path) -> str:
    """Return the compiler command the kernel of `headers` was built with: the first word of
    CONFIG_CC_VERSION_TEXT in include/generated/autoconf.h (`gcc-12` on Debian, `gcc` on Alpine); `gcc`
    when the headers do not say or name no gcc."""
    try:
        text = (Path(headers) / AUTOCONF_H).read_text(errors="replace")
    except OSError:
        return "gcc"
    match = re.search(r'#define\s+CONFIG_CC_VERSION_TEXT\s+"([^"\s]+)', text)
    name = match.group(1) if match else ""
    return name if re.fullmatch(r"[\w.+-]*gcc[\w.+-]*", name) else "gcc"


def builder_compiler(cc: str = "gcc") -> str:
    """Return the first line of `<cc> --version` on this builder (the compiler kbuild runs)."""
    try:
        result = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise CommandError(f"{cc} not found; install the builder's compiler (apk add build-base)") from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"{cc} --version did not answer in 60 s; check the builder's {cc}") from None
    return (result.stdout.splitlines() or [""])[0].strip()


def compiler_version(text: str) -> str | None:
    """The version a compiler line ends with: `gcc (Alpine 14.2.0) 14.2.0` -> `14.2.0`."""
    for part in (text.rsplit(")", 1)[-1], text):
        found = re.findall(r"\d+\.\d+(?:\.\d+)?", part)
        if found:
            return found[-1]
    return None


def kernel_compiler_major_minor(line: str) -> tuple[str, str] | None:
    """(major, minor) of LINUX_COMPILER as NVIDIA's conftest.sh (cc_version_check) reads it: the first
    x.y.z in the line, else the first x.y."""
    match = re.search(r"\d+\.\d+\.\d+", line) or re.search(r"\d+\.\d+", line)
    return tuple(match.group(0).split(".")[:2]) if match else None


def builder_major_minor(line: str) -> tuple[str, str] | None:
    """(major, minor) of a `<cc> --version` line (its last version: what __GNUC__ and __GNUC_MINOR__ say)."""
    version = compiler_version(line)
    return tuple(version.split(".")[:2]) if version else None


def check_compiler(cfg: Any, headers: Path) -> bool:
    """Compare the builder's gcc with the kernel's; return whether to pass IGNORE_CC_MISMATCH.

    NVIDIA's conftest.sh (cc_version_check) compares the major and minor version of the compiler it runs
    with those of LINUX_COMPILER in `include/generated/compile.h`; so does this, asking the compiler the
    kernel names (`kernel_cc`, e.g. gcc-12, the one the build then uses). A mismatch fails here in one
    line naming both, unless `bee.nvidia.ignore_cc_mismatch` is true: then it is one warning line and
    True. Headers without compile.h cannot be checked (False).
    """
    kernel = kernel_compiler(headers)
    if kernel is None:
        return False
    builder = builder_compiler(kernel_cc(headers))
    wanted = kernel_compiler_major_minor(kernel)
    if wanted is not None and wanted == builder_major_minor(builder):
        return False
    if cfg.bee.nvidia.ignore_cc_mismatch:
        _say(f"warning: the kernel was built with {kernel}, this builder has {builder}; building anyway "
             "with IGNORE_CC_MISMATCH=1 (bee.nvidia.ignore_cc_mismatch)")
        return True
    raise NvidiaBuildError(
        f"the kernel was built with {kernel} ({Path(headers) / COMPILE_H}), but this builder's gcc is "
        f"{builder or 'unknown'}; NVIDIA's build needs the same compiler: install that gcc, or set "
        "bee.nvidia.ignore_cc_mismatch: true to build anyway"
    )


def build_modules(extracted: Path, flavor: str, headers: Path, jobs: int, *, timeout: float,
                  modules: list[str] | None = None, ignore_cc_mismatch: bool = False,
                  cc: str | None = None) -> Path:
    """Run make in the extracted installer's kernel folder for `flavor`; return that folder."""
    kernel_dir = extracted / kernel_dir_name(flavor)
    if not kernel_dir.is_dir():
        other = "open" if flavor == "proprietary" else "proprietary"
        raise NvidiaBuildError(
            f"the installer has no {kernel_dir.name}/ for the {flavor} modules; set bee.nvidia.flavor={other}"
        )
    command = make_command(kernel_dir, headers, jobs, modules, ignore_cc_mismatch=ignore_cc_mismatch, cc=cc)
    run_command(command, what=f"building the NVIDIA modules in {kernel_dir}", timeout=timeout)
    return kernel_dir


def collect_modules(kernel_dir: Path, names: list[str], out_dir: Path, *, timeout: float) -> list[Path]:
    """Copy the built `<name>.ko` files to `out_dir` and strip their debug info; return the copies."""
    out_dir.mkdir(parents=True, exist_ok=True)
    copies = []
    for name in names:
        built = kernel_dir / f"{name}.ko"
        if not built.is_file():
            raise NvidiaBuildError(
                f"make produced no {built.name} in {kernel_dir}; remove {name} from bee.nvidia modules lists"
            )
        copies.append(Path(shutil.copy2(built, out_dir / built.name)))
    run_command([*STRIP_COMMAND, *map(str, copies)], what="stripping the debug info of the modules",
                timeout=timeout)
    return copies


# ---------------------------------------------------------------------------------------------- d. userland


def library_name(version: str) -> str:
    """Return the file name of NVIDIA's management library for `version`."""
    return f"libnvidia-ml.so.{version}"


def collect_userland(extracted: Path, version: str, out_dir: Path) -> list[Path]:
    """Copy nvidia-smi, nvidia-modprobe, libnvidia-ml.so.<version> and firmware/gsp_*.bin to `out_dir`."""
    wanted = [(extracted / name, out_dir / BIN / name) for name in USERLAND_BINARIES]
    wanted.append((extracted / library_name(version), out_dir / LIB / library_name(version)))
    firmware = sorted((extracted / "firmware").glob(FIRMWARE_PATTERN))
    if not firmware:
        raise NvidiaBuildError(
            f"the installer has no firmware/{FIRMWARE_PATTERN} (the GSP firmware); check bee.nvidia.version"
        )
    wanted += [(source, out_dir / FIRMWARE / source.name) for source in firmware]
    copies = []
    for source, target in wanted:
        if not source.is_file():
            raise NvidiaBuildError(f"the installer has no {source.name}; check bee.nvidia.version")
        target.parent.mkdir(parents=True, exist_ok=True)
        copies.append(Path(shutil.copy2(source, target)))
    return copies


def gpu_support_text(extracted: Path, version: str) -> str:
    """Return the GPU list bee-nvidia reads at boot, made from the installer's supported-gpus.json.

    One line per PCI device id (lower-case `0x` hex) that needs care: `<id> open` when NVIDIA marks it
    "kernelopen" without "gsp_proprietary_supported" (only the open modules drive it: Grace Hopper,
    Blackwell; a device id with several entries counts when any entry says so), `<id> legacy <branch>`
    when it has a "legacybranch" (not supported by this driver branch). NVIDIA's own
    nvidia-driver-assistant reads the same file and flags. An installer without the file gives a list
    with its header alone (the boot then relies on the proprietary modules failing).
    """
    path = extracted / SUPPORTED_GPUS
    header = (f"# NVIDIA {version}: PCI device ids from {SUPPORTED_GPUS.as_posix()}; open: only the open "
              "kernel modules drive it; legacy <branch>: not supported by this driver branch\n")
    if not path.is_file():
        return header + f"# the installer has no {SUPPORTED_GPUS.as_posix()}\n"
    try:
        chips = json.loads(path.read_text())["chips"]
        open_only, legacy, supported = set(), {}, set()
        for chip in chips:
            devid = str(chip.get("devid", "")).lower()
            if not re.fullmatch(r"0x[0-9a-f]{4}", devid):
                continue
            features = {str(feature).lower() for feature in chip.get("features") or []}
            if chip.get("legacybranch"):
                legacy.setdefault(devid, str(chip["legacybranch"]).split()[0])
                continue
            supported.add(devid)
            if "kernelopen" in features and "gsp_proprietary_supported" not in features:
                open_only.add(devid)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise NvidiaBuildError(f"{path} is not NVIDIA's GPU list ({type(err).__name__}: {err}); check "
                               "bee.nvidia.version") from None
    lines = [f"{devid} open" for devid in sorted(open_only)]
    lines += [f"{devid} legacy {legacy[devid]}" for devid in sorted(set(legacy) - supported)]
    return header + "".join(f"{line}\n" for line in lines)


def elf_dependencies(path: Path) -> dict[str, Any]:
    """Return what the 64-bit little-endian ELF file at `path` needs from the system to run.

    `{"interpreter": "ld-linux-x86-64.so.2" or None, "needed": [DT_NEEDED sonames]}`, read from its
    program headers; a file that is no such ELF (a script) needs nothing.
    """
    data = path.read_bytes()
    if data[:6] != b"\x7fELF\x02\x01" or len(data) < 64:
        return {"interpreter": None, "needed": []}
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    headers = [struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize) for i in range(phnum)]
    loads = [(h[3], h[2], h[5]) for h in headers if h[0] == 1]  # PT_LOAD: vaddr, offset, filesz

    def string_at(offset: int) -> str:
        return data[offset:data.index(b"\0", offset)].decode()

    interpreter = next((string_at(h[2]) for h in headers if h[0] == 3), None)  # PT_INTERP
    entries = []
    for h in (h for h in headers if h[0] == 2):  # PT_DYNAMIC
        for at in range(h[2], h[2] + h[5], 16):
            tag, value = struct.unpack_from("<qQ", data, at)
            if tag == 0:
                break
            entries.append((tag, value))
    strtab = next((value for tag, value in entries if tag == 5), None)  # DT_STRTAB, an address
    base = next((off + strtab - vaddr for vaddr, off, size in loads if strtab is not None
                 and vaddr <= strtab < vaddr + size), None)
    needed = [string_at(base + value) for tag, value in entries if tag == 1 and base is not None]
    return {"interpreter": Path(interpreter).name if interpreter else None, "needed": needed}


def userland_needs(cache_dir: Path) -> dict[str, dict[str, Any]]:
    """Return, for each program and library of the cache, what it needs (see elf_dependencies)."""
    files = sorted(p for folder in (BIN, LIB) for p in (cache_dir / folder).glob("*") if p.is_file())
    return {p.relative_to(cache_dir).as_posix(): elf_dependencies(p) for p in files}


def check_live_libraries(cfg: Any, needs: dict[str, dict[str, Any]]) -> None:
    """Raise unless every library the userland needs exists on the live system.

    The live system has the glibc sonames its compatibility package provides (`bee.nvidia.glibc_sonames`),
    the links this step adds for the ones it lacks (`bee.nvidia.compat_links`), and the NVIDIA library.
    """
    nv = cfg.bee.nvidia
    provided = set(nv.glibc_sonames) | set(nv.compat_links or {})
    provided |= {library_name(nv.version), "libnvidia-ml.so.1"}
    for name, need in sorted(needs.items()):
        wanted = [need["interpreter"], *need["needed"]] if need.get("interpreter") else need["needed"]
        missing = sorted(set(wanted) - provided)
        if missing:
            raise NvidiaBuildError(
                f"{name} needs {', '.join(missing)}, which the live system lacks; add a package providing "
                "it to bee.live.packages and bee.nvidia.glibc_sonames, or a link in bee.nvidia.compat_links"
            )


# ------------------------------------------------------------------------------------------------- e. cache


def build_inputs(cfg: Any, kver: str) -> dict[str, Any]:
    """Return what the cache's userland, firmware and GPU list depend on; other inputs mean a rebuild."""
    nv = cfg.bee.nvidia
    return {
        "format": MANIFEST_FORMAT,
        "version": nv.version,
        "installer_sha256": nv.sha256.strip().lower(),
        "kver": kver,
        "gpu_list": str(nv.gpu_list),
    }


def flavor_inputs(cfg: Any, kver: str, flavor: str) -> dict[str, Any]:
    """Return what the cached modules of `flavor` (their own folder and manifest) depend on."""
    return {
        **{k: v for k, v in build_inputs(cfg, kver).items() if k != "gpu_list"},
        "flavor": flavor,
        "modules": module_names(cfg),
        "strip": " ".join(STRIP_COMMAND),
    }


def cache_holds(cfg: Any, kver: str, cache_dir: Path) -> bool:
    """Return True when `cache_dir` holds a valid build of every flavor `bee.nvidia.flavor` asks for."""
    flavors = flavors_to_build(cfg.bee.nvidia.flavor)
    return cache_is_valid(cache_dir, build_inputs(cfg, kver)) and all(
        cache_is_valid(cache_dir / flavor, flavor_inputs(cfg, kver, flavor)) for flavor in flavors)


def cache_dir_for(cfg: Any, kver: str, cache_root: Path | None = None) -> Path:
    """Return `<dist>/nvidia-<version>-<kver>/`, the cache of one driver version for one kernel."""
    root = Path(cache_root) if cache_root is not None else buildconfig.config_path(cfg, "dist")
    return root / f"nvidia-{cfg.bee.nvidia.version}-{kver}"


def read_manifest(cache_dir: Path) -> dict[str, Any] | None:
    """Return the manifest of `cache_dir`, or None when it is missing or unreadable."""
    try:
        manifest = json.loads((cache_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def write_manifest(cache_dir: Path, inputs: dict[str, Any], needs: dict[str, Any] | None = None,
                   *, exclude: tuple[str, ...] = ()) -> Path:
    """Write the manifest of `cache_dir`: inputs, the sha256 of every file in it (but those under the
    sub-folders `exclude`, which have manifests of their own), what the userland needs."""
    outputs = {
        path.relative_to(cache_dir).as_posix(): fileops.sha256_file(path)
        for path in sorted(cache_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
        and path.relative_to(cache_dir).parts[0] not in exclude
    }
    manifest = {"inputs": inputs, "outputs": outputs, "needs": needs or {}}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return fileops.write_atomic(cache_dir / MANIFEST_NAME, text.encode())


def cache_is_valid(cache_dir: Path, inputs: dict[str, Any]) -> bool:
    """Return True when `cache_dir`'s manifest records `inputs` and every output still has its sha256."""
    manifest = read_manifest(cache_dir)
    if not manifest or manifest.get("inputs") != inputs:
        return False
    outputs = manifest.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return False
    for name, digest in outputs.items():
        path = cache_dir / name
        if not path.is_file() or fileops.sha256_file(path) != digest:
            return False
    return True


def replace_dir(new: Path, final: Path) -> None:
    """Put the complete folder `new` in place of `final` (renames; the old one is then deleted)."""
    old = final.with_name(f".{final.name}.old")
    fileops.remove_path(old)
    if final.exists():
        final.rename(old)
    new.rename(final)
    fileops.remove_path(old)


EXTRACTED_STAMP = "installer.sha256"  # beside the extraction: the sha256 of the installer it came from


def extract_for_build(cfg: Any, kver: str, installer: Path) -> Path:
    """Return the extracted installer build() compiles in (`<work dir>/installer`), extracting it first
    unless an extraction of this very installer (its pinned sha256 in the stamp beside it) is there.

    `--step extract` and build() both go through here, so a build after `--step extract` reuses it. The
    stamp marks a clean extraction: build() removes it before compiling in it, so the leftovers of a build
    that failed (kept for debugging) are never built on again.
    """
    work = work_dir_for(cfg, kver)
    target, stamp = work / "installer", work / EXTRACTED_STAMP
    pinned = cfg.bee.nvidia.sha256.strip().lower()
    try:
        reusable = target.is_dir() and stamp.read_text().strip() == pinned
    except OSError:
        reusable = False
    if reusable:
        return target
    fileops.remove_path(work)
    extract(installer, target, timeout=tool_timeout(cfg))
    fileops.write_atomic(stamp, f"{pinned}\n".encode())
    return target


def work_dir_for(cfg: Any, kver: str) -> Path:
    """Return the scratch folder a build extracts and compiles in (`paths.build/nvidia-<version>-<kver>`)."""
    return buildconfig.config_path(cfg, "build") / f"nvidia-{cfg.bee.nvidia.version}-{kver}"


def build(
    cfg: Any, kver: str, *, headers: Path, cache_root: Path | None = None, progress: bool | None = None
) -> Path:
    """Return the cache dir `dist/nvidia-<version>-<kver>/`, built first unless its manifests still hold.

    The cache holds the userland, the GSP firmware and the GPU list (`bee.nvidia.gpu_list`) with a
    manifest, and one folder per module flavor (`proprietary/`, `open/`: both for `bee.nvidia.flavor:
    auto`) with a manifest each. A valid cache (same inputs, every file with its recorded sha256) returns
    at once, without the installer, make or anything else. Otherwise: compare the builder's gcc with the
    kernel's (check_compiler), download and verify, extract, make each flavor against `headers` (only the
    shipped modules), strip, take the userland and the GPU list, write the manifests, all in temp folders
    renamed into place at the end; the scratch folder is deleted after a success and kept after a failure
    for debugging. Every failure, a full disk included, is a one-line NvidiaBuildError and leaves no cache
    that a later run would trust; so is a userland needing a library the live system lacks.
    """
    nv = cfg.bee.nvidia
    cache_dir = cache_dir_for(cfg, kver, cache_root)
    flavors = flavors_to_build(nv.flavor)  # a bad flavor fails before the download
    if cache_holds(cfg, kver, cache_dir):
        check_live_libraries(cfg, (read_manifest(cache_dir) or {}).get("needs", {}))
        return cache_dir
    ignore_cc_mismatch = check_compiler(cfg, Path(headers))
    timeout = tool_timeout(cfg)
    staging = fileops.temp_name(cache_dir)
    names = module_names(cfg)
    with os_errors_as_build_errors():
        installer = download_installer(cfg, progress=progress)
        work = work_dir_for(cfg, kver)
        extracted = extract_for_build(cfg, kver, installer)
        fileops.remove_path(work / EXTRACTED_STAMP)  # compiled in from here on: not clean any more
        fileops.remove_path(staging)
        try:
            for flavor in flavors:
                kernel_dir = build_modules(extracted, flavor, Path(headers), jobs_count(cfg), timeout=timeout,
                                           modules=names, ignore_cc_mismatch=ignore_cc_mismatch,
                                           cc=kernel_cc(Path(headers)))
                collect_modules(kernel_dir, names, staging / flavor, timeout=timeout)
                write_manifest(staging / flavor, flavor_inputs(cfg, kver, flavor))
            collect_userland(extracted, nv.version, staging)
            (staging / str(nv.gpu_list)).write_text(gpu_support_text(extracted, nv.version))
            needs = userland_needs(staging)
            write_manifest(staging, build_inputs(cfg, kver), needs, exclude=tuple(KERNEL_DIRS))
            replace_dir(staging, cache_dir)
        finally:
            fileops.remove_path(staging)  # nothing after a success; a half-made cache after a failure
        fileops.remove_path(work)
    check_live_libraries(cfg, needs)
    return cache_dir


# ---------------------------------------------------------------------------------------------- the overlay


def overlay_targets(cfg: Any, kver: str, overlay_root: Path) -> dict[str, Path]:
    """Return, per cache sub-folder ("" for the cache's own files), the overlay folder its files go to."""
    live, live_path = cfg.bee.live, buildconfig.live_path
    modules = live_path(overlay_root, live.nvidia_modules_dir) / kver
    return {
        **{flavor: modules / flavor for flavor in KERNEL_DIRS},
        "": modules,  # the GPU list, beside the flavors' folders
        FIRMWARE: live_path(overlay_root, live.firmware_dir) / "nvidia" / cfg.bee.nvidia.version,
        BIN: live_path(overlay_root, live.bin_dir),
        LIB: live_path(overlay_root, live.lib_dir),
    }


def _symlink(link: Path, points_to: str) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = fileops.temp_name(link)
    fileops.remove_path(tmp)
    tmp.symlink_to(points_to)
    tmp.replace(link)
    return link


@os_errors_as_build_errors()
def install_into_overlay(cache_dir: Path, overlay_root: Path, cfg: Any, kver: str) -> list[Path]:
    """Copy the cached build into the overlay tree at its live-system paths; return what was written.

    The modules of each flavor `bee.nvidia.flavor` asks for go to `<live.nvidia_modules_dir>/<kver>/<flavor>/`
    (proprietary/, open/) and the GPU list beside them, where bee-nvidia chooses at boot; the GSP firmware
    to `<live.firmware_dir>/nvidia/<version>/`, nvidia-smi and nvidia-modprobe to `<live.bin_dir>/`,
    libnvidia-ml.so.<version> to `<live.lib_dir>/` beside a `libnvidia-ml.so.1` symlink to it, and the
    `bee.nvidia.compat_links` (glibc sonames the live system lacks) as relative symlinks in `<live.lib_dir>/`.
    """
    cache_dir = Path(cache_dir)
    version = cfg.bee.nvidia.version
    parts = {"": read_manifest(cache_dir)}
    for flavor in flavors_to_build(cfg.bee.nvidia.flavor):
        parts[flavor] = read_manifest(cache_dir / flavor)
    for folder, manifest in parts.items():
        inputs = (manifest or {}).get("inputs", {})
        if inputs.get("kver") != kver or inputs.get("version") != version:
            what = f"{folder} modules of " if folder else ""
            raise NvidiaBuildError(
                f"{cache_dir} holds no complete build of the {what}NVIDIA {version} for kernel {kver}; "
                "run python scripts/build_nvidia_module.py first"
            )
    targets = overlay_targets(cfg, kver, overlay_root)
    written = []
    for part, manifest in parts.items():
        for name in sorted(manifest.get("outputs", {})):
            folder, _, file_name = name.rpartition("/")
            if part:
                folder, file_name = part, name
            if folder not in targets or "/" in file_name:
                continue
            source = cache_dir / part / name
            if not source.is_file():
                raise NvidiaBuildError(f"{source} is missing; run scripts/build_nvidia_module.py again")
            mode = 0o755 if folder in (BIN, LIB) else 0o644
            written.append(fileops.copy_atomic(source, targets[folder] / file_name, mode))
    links = {"libnvidia-ml.so.1": library_name(version), **dict(cfg.bee.nvidia.compat_links or {})}
    lib_dir = str(cfg.bee.live.lib_dir)
    for name, points_to in links.items():  # relative: the overlay's links must stay inside the overlay
        relative = os.path.relpath(points_to, lib_dir) if os.path.isabs(points_to) else points_to
        written.append(_symlink(targets[LIB] / name, relative))
    return written


# ----------------------------------------------------------------------------------------------- the script


STEPS = ("headers", "download", "extract", "build")


def parse_args(cfg: Any, argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; every default is the configuration's value."""
    nv = cfg.bee.nvidia
    parser = argparse.ArgumentParser(
        prog="build_nvidia_module.py",
        description="Download, verify, extract, build and cache NVIDIA's driver for the ISO kernel "
        "(the nvidia step of invoke build-debug). Defaults come from invoke.yaml (bee.nvidia).",
    )
    parser.add_argument("--step", choices=STEPS, default=None,
                        help="stop after this step: headers (print kver and headers dir), download (print "
                        "the installer), extract (print the folder the build compiles in), build (the "
                        "default: print the cache dir)")
    parser.add_argument("--version", default=nv.version, help="driver version (default: %(default)s)")
    parser.add_argument("--sha256", default=nv.sha256, help="pinned sha256 of the installer")
    parser.add_argument("--url", default=nv.url, help="installer URL; {version} is replaced")
    parser.add_argument("--flavor", choices=[AUTO, *KERNEL_DIRS], default=None,
                        help=f"proprietary (kernel/), open (kernel-open/) or auto: both ({nv.flavor})")
    parser.add_argument("--jobs", type=int, default=int(nv.jobs or 0), help="make -j; 0: one per CPU")
    parser.add_argument("--iso-kver", default=str(nv.kernel_release or ""),
                        help="release of the kernel the ISO boots (default: bee.nvidia.kernel_release, or "
                        "ask apk for the repository's linux-<flavor>)")
    parser.add_argument("--headers", type=Path, default=None, help="build against this headers dir")
    parser.add_argument("--headers-root", type=Path, default=Path(nv.headers_root),
                        help="where linux-headers-<kver>/ folders are (default: %(default)s)")
    parser.add_argument("--cache-root", type=Path, default=buildconfig.config_path(cfg, "dist"),
                        help="where nvidia-<version>-<kver>/ is cached (default: %(default)s)")
    parser.add_argument("--overlay", type=Path, default=None,
                        help="after the build, install into this overlay tree and print the files written")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="a download progress bar (default: only on a terminal)")
    parser.add_argument("--print-sha256", action="store_true",
                        help="print the sha256 NVIDIA publishes for --version and exit (to pin a new "
                        "version; the build trusts only bee.nvidia.sha256)")
    args = parser.parse_args(argv)
    if args.print_sha256 and args.step is not None:
        parser.error(f"--print-sha256 only prints NVIDIA's published sum; it takes no --step {args.step}")
    ignored = [option for option, value in (("--overlay", args.overlay), ("--headers", args.headers),
                                            ("--flavor", args.flavor)) if value is not None]
    if args.print_sha256 and ignored:
        parser.error(f"--print-sha256 only prints NVIDIA's published sum; it takes no {', '.join(ignored)}")
    args.flavor = args.flavor or nv.flavor
    if args.overlay is not None and args.step not in (None, "build"):
        parser.error(f"--overlay installs a finished build; it takes no --step {args.step}")
    args.step = args.step or "build"
    return args


def apply_args(cfg: Any, args: argparse.Namespace) -> None:
    """Make the command line's values the configuration's, so every function sees them."""
    nv = cfg.bee.nvidia
    nv.version, nv.sha256, nv.url, nv.flavor = args.version, args.sha256, args.url, args.flavor
    nv.jobs, nv.kernel_release, nv.headers_root = args.jobs, args.iso_kver, str(args.headers_root)


def resolve_kernel(cfg: Any, args: argparse.Namespace) -> tuple[str, Path]:
    """Return `(kver, headers)` to build against (`--headers`, else the ISO kernel's under
    `--headers-root`), checked against the kernel the ISO boots."""
    if args.headers is None:
        return iso_kernel.kernel_for_iso(cfg)
    iso_kver = iso_kernel.iso_kernel_release(cfg)
    kver, headers = iso_kernel.headers_release(args.headers), args.headers
    iso_kernel.check_headers_match(kver, iso_kver)
    return kver, headers


def run(cfg: Any, args: argparse.Namespace) -> list[str]:
    """Run the steps the arguments ask for; return the lines to print."""
    if args.print_sha256:
        return [published_sha256(installer_url(cfg), timeout=float(cfg.bee.nvidia.download_timeout))]
    if args.step == "download":
        return [str(download_installer(cfg, progress=args.progress))]
    kver, headers = resolve_kernel(cfg, args)
    if args.step == "headers":
        return [f"{kver}\t{headers}"]
    if args.step == "extract":
        with os_errors_as_build_errors():
            installer = download_installer(cfg, progress=args.progress)
            return [str(extract_for_build(cfg, kver, installer))]
    cache_dir = build(cfg, kver, headers=headers, cache_root=args.cache_root, progress=args.progress)
    lines = [str(cache_dir)]
    if args.overlay is not None:
        lines += [str(p) for p in install_into_overlay(cache_dir, args.overlay, cfg, kver)]
    return lines


def main(argv: list[str] | None = None, cfg: Any = None) -> int:
    """Run the script: print the result on stdout, or one error line on stderr and return 1.

    `cfg` defaults to the repository's configuration (tests pass another one).
    """
    try:
        cfg = cfg if cfg is not None else buildconfig.load_config()
        args = parse_args(cfg, argv)
        apply_args(cfg, args)
        with os_errors_as_build_errors():
            lines = run(cfg, args)
    except (NvidiaBuildError, iso_kernel.KernelError) as exc:
        print(f"build_nvidia_module: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("build_nvidia_module: interrupted; run again to resume", file=sys.stderr)
        return 130
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
