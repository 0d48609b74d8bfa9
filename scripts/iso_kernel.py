#!/usr/bin/env python3
"""The release of the kernel the ISO boots, and the installed headers of that very kernel.

mkimage puts the newest linux-<flavor> of the configured Alpine main repository on the ISO; NVIDIA's modules
must be built against the headers of exactly that release, or they fail at boot with "invalid module
format". `iso_kernel_release` names the release (`bee.nvidia.kernel_release` when set, else asked of apk),
`find_headers` finds the installed `linux-headers-<kver>` folders, and `kernel_for_iso` is the one checked
answer the build uses. Every failure is a KernelError whose message is one line saying what to do.
`python3 scripts/iso_kernel.py` prints the answer: `<kver><TAB><headers folder>`.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import buildconfig  # noqa: E402

# What a user types to name the ISO kernel's release, from invoke and from the scripts alike.
RELEASE_HINT = "INVOKE_BEE_NVIDIA_KERNEL_RELEASE=<release, e.g. 6.12.58-0-lts>"


class KernelError(Exception):
    """The ISO kernel's release or headers cannot be established; the message says what to do."""


class HeadersError(KernelError):
    """The kernel headers to build against are missing or unreadable."""


class KernelMismatchError(KernelError):
    """The kernel headers are not those of the kernel the ISO boots."""


def headers_release(headers: Path) -> str:
    """Return the kernel release the headers at `headers` build for (UTS_RELEASE, which vermagic uses)."""
    uts = headers / "include" / "generated" / "utsrelease.h"
    try:
        text = uts.read_text()
    except OSError:
        raise HeadersError(
            f"{headers} holds no prepared kernel headers ({uts} is missing); "
            "reinstall the kernel's -dev package"
        ) from None
    match = re.search(r'#define\s+UTS_RELEASE\s+"([^"]+)"', text)
    if not match:
        raise HeadersError(f"{uts} names no UTS_RELEASE; reinstall the kernel's -dev package")
    return match.group(1)


def _headers_root(cfg: Any, headers_root: Path | None) -> Path:
    return Path(headers_root) if headers_root is not None else Path(cfg.bee.nvidia.headers_root)


def find_headers(cfg: Any, kver: str | None = None, headers_root: Path | None = None) -> tuple[str, Path]:
    """Return `(kernel release, headers dir)` of the ISO kernel's headers, `<root>/linux-headers-<kver>`.

    `kver` defaults to `bee.nvidia.kernel_release`; when both are empty, the one headers dir of the
    configured flavor and series (`bee.kernel`) is taken. `headers_root` defaults to
    `bee.nvidia.headers_root`. Raises HeadersError when there is none (or several, without a kver),
    saying which package to install.
    """
    root = _headers_root(cfg, headers_root)
    kver = kver or str(cfg.bee.nvidia.kernel_release or "").strip()
    if kver:
        headers = root / f"linux-headers-{kver}"
        if not headers.is_dir():
            hint = _install_hint(cfg)
            raise HeadersError(f"no kernel headers for {kver} at {headers}; {hint} of that kernel")
        return headers_release(headers), headers
    return installed_headers(cfg, root)


def _dev_package(kver: str) -> str:
    """The -dev package of the kernel release `kver` (`6.12.58-0-lts` -> linux-lts-dev)."""
    return f"linux-{kver.rsplit('-', 1)[-1]}-dev"


def _install_hint(cfg: Any) -> str:
    flavor = cfg.bee.kernel.flavor
    return f"install linux-{flavor}-dev (apk add linux-{flavor}-dev)"


def installed_headers(cfg: Any, root: Path) -> tuple[str, Path]:
    """Return `(kernel release, headers dir)` of the one `linux-headers-<series>.*-<flavor>` in `root`."""
    flavor, series = cfg.bee.kernel.flavor, str(cfg.bee.kernel.series)
    pattern = re.compile(rf"linux-headers-({re.escape(series)}[.-]\S*-{re.escape(flavor)})")
    found = sorted(p for p in root.glob("linux-headers-*") if pattern.fullmatch(p.name) and p.is_dir())
    if not found:
        raise HeadersError(f"no linux-headers-{series}.*-{flavor} in {root}; {_install_hint(cfg)}")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise HeadersError(f"several kernel headers in {root} ({names}); name the ISO's with {RELEASE_HINT}")
    return headers_release(found[0]), found[0]


def apk_search_command(cfg: Any, cache_dir: Path) -> list[str]:
    """Return the apk command listing the newest linux-<flavor> of the configured main repository only."""
    main_repository = buildconfig.repository_urls(cfg)[0]
    return [
        "apk", "--update-cache", "--repositories-file", "/dev/null", "--repository", main_repository,
        "--arch", cfg.bee.alpine.arch, "--cache-dir", str(cache_dir),
        "search", "--exact", f"linux-{cfg.bee.kernel.flavor}",
    ]


def parse_kernel_package(output: str, flavor: str) -> str:
    """Return the kernel release of `linux-<flavor>-<ver>-r<rel>` in apk's output: `<ver>-<rel>-<flavor>`.

    That is the release Alpine's kernel reports (its localversion is `-<pkgrel>-<flavor>`).
    """
    pattern = re.compile(rf"linux-{re.escape(flavor)}-(\d[^\s-]*)-r(\d+)")
    for line in output.split():
        match = pattern.fullmatch(line.strip())
        if match:
            return f"{match.group(1)}-{match.group(2)}-{flavor}"
    words = output.split()
    printed = f"it printed {' '.join(words[:3])[:60]!r}" if words else "it printed nothing"
    raise KernelError(
        f"apk named no linux-{flavor}-<version>-r<N> in the configured repository ({printed}); "
        "check bee.alpine (mirror, branch) and bee.kernel.flavor"
    )


def apk_cache_dir(cfg: Any) -> Path:
    """Return the apk cache folder used to ask the repository for its kernel (`paths.build/apk-cache`)."""
    return buildconfig.config_path(cfg, "build") / "apk-cache"


def iso_kernel_release(cfg: Any) -> str:
    """Return the release of the kernel the ISO will boot, e.g. `6.12.58-0-lts`.

    `bee.nvidia.kernel_release` when set; otherwise the newest linux-<flavor> of the configured Alpine
    main repository (what mkimage installs), asked of apk. It must belong to `bee.kernel.series`.
    """
    configured = str(cfg.bee.nvidia.kernel_release or "").strip()
    if configured:
        return configured
    flavor, series = cfg.bee.kernel.flavor, str(cfg.bee.kernel.series)
    cache_dir = apk_cache_dir(cfg)
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = apk_search_command(cfg, cache_dir)
    timeout = float(cfg.bee.nvidia.apk_timeout)
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout, check=False)
    except FileNotFoundError:
        raise KernelError(
            "apk not found: cannot ask the repository which kernel the ISO boots; run this on the Alpine "
            f"builder or name the release with {RELEASE_HINT}"
        ) from None
    except subprocess.TimeoutExpired:
        raise KernelError(
            f"{shlex.join(command)} gave no answer in {timeout:g} s and was stopped; check the network and "
            f"bee.alpine.mirror (or name the release with {RELEASE_HINT})"
        ) from None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise KernelError(f"{shlex.join(command)} failed: {reason}; check the network and bee.alpine")
    release = parse_kernel_package(result.stdout, flavor)
    if not release.startswith(series + "."):
        raise KernelMismatchError(
            f"the repository's linux-{flavor} is {release}, not of series {series}; update bee.kernel.series"
        )
    return release


def check_headers_match(headers_kver: str, iso_kver: str) -> None:
    """Raise KernelMismatchError, naming both, unless the headers are for the kernel the ISO boots."""
    if headers_kver != iso_kver:
        raise KernelMismatchError(
            f"the kernel headers are for {headers_kver} but the ISO boots {iso_kver}: modules built for "
            "another kernel fail at boot (invalid module format); install the -dev package of the ISO's "
            f"kernel: apk add -u {_dev_package(iso_kver)}"
        )


def headers_for_iso(cfg: Any, iso_kver: str, headers_root: Path | None = None) -> tuple[str, Path]:
    """Return `(kver, headers)` for the ISO kernel `iso_kver`, or raise naming the headers installed.

    Headers of that release that are there but not prepared (no utsrelease.h) say so (headers_release).
    """
    if (_headers_root(cfg, headers_root) / f"linux-headers-{iso_kver}").is_dir():
        return find_headers(cfg, iso_kver, headers_root)
    try:
        return find_headers(cfg, iso_kver, headers_root)
    except HeadersError:
        try:
            installed, _ = installed_headers(cfg, _headers_root(cfg, headers_root))
        except HeadersError:
            raise HeadersError(
                f"no kernel headers for {iso_kver} in {_headers_root(cfg, headers_root)}; install "
                f"linux-{cfg.bee.kernel.flavor}-dev of that release"
            ) from None
        check_headers_match(installed, iso_kver)
        raise


def kernel_for_iso(cfg: Any) -> tuple[str, Path]:
    """Return `(kver, headers dir)` of the kernel the ISO boots, checked: the one answer for the build.

    The ISO's release comes from iso_kernel_release (configured, or asked of apk); its headers must be
    installed and report that very release, or a HeadersError / KernelMismatchError names both versions.
    """
    iso_kver = iso_kernel_release(cfg)
    kver, headers = headers_for_iso(cfg, iso_kver)
    check_headers_match(kver, iso_kver)
    return kver, headers


def main(argv: list[str] | None = None) -> int:
    """Print `<kver><TAB><headers>` of the ISO's kernel, or one error line on stderr and return 1."""
    del argv
    try:
        kver, headers = kernel_for_iso(buildconfig.load_config())
    except KernelError as exc:
        print(f"iso_kernel: {exc}", file=sys.stderr)
        return 1
    print(f"{kver}\t{headers}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
