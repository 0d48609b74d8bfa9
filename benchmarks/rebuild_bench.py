#!/usr/bin/env python3
"""Benchmark of a warm `invoke build-debug`: the time of our own steps, and proof that it fetches nothing.

A throw-away builder in a temp folder: invoke.yaml's paths pointed into it with INVOKE_BEE_* variables, an
Alpine-looking host (alpine-release, stand-ins for the builder tools this machine lacks, an abuild key), the
NVIDIA stand-in installer of the tests (real makeself, real kbuild against this machine's kernel headers,
GSP firmware padded to a realistic size) served over HTTP from 127.0.0.1, and mkimage faked by a tiny
script (the real one is Alpine's and slow by nature: it is not ours to time).

It runs `python -m invoke build-debug` as a user does: once cold, then warm several times, and counts
HTTP requests, installer extractions and make/strip runs (PATH shims that log and exec the real tool).
Target: a warm rebuild under 2 s, dominated by interpreter start-up, with zero downloads, extractions and
makes. Exit status 1 when the warm runs did any of those.

Usage: python3 benchmarks/rebuild_bench.py [--runs N] [--firmware-mb N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from scripts import buildconfig, iso_kernel  # noqa: E402
from tests.scripts.iso_build_support import alpine_host, write_executable  # noqa: E402
from tests.scripts.nvidia_fake.installer import extract_only_header, make_payload  # noqa: E402
from tests.scripts.nvidia_fake.server import FakeServer  # noqa: E402

STEP_LINE = re.compile(r"^<== (\w+) \(([\d.]+) s\)$", re.MULTILINE)

FAKE_MKIMAGE = """#!/bin/sh -e
# mkimage faked: records its run, keeps cached sections, writes an ISO-named file.
while [ $# -gt 0 ]; do
	case "$1" in
	--profile) PROFILE=$2 ;; --tag) RELEASE=$2 ;; --arch) ARCH=$2 ;;
	--outdir) OUTDIR=$2 ;; --workdir) WORKDIR=$2 ;;
	esac
	shift 2
done
echo "mkimage" >> "$BENCH_LOG"
for section in apks_1 kernel_2 syslinux_3 grub_4; do
	[ -d "$WORKDIR/$section" ] || { mkdir -p "$WORKDIR/$section"; echo "download $section" >> "$BENCH_LOG"; }
done
mkdir -p "$WORKDIR/apkovl_bee_1" "$WORKDIR/image-1-$ARCH-$PROFILE"
echo "iso" > "$OUTDIR/alpine-$PROFILE-$RELEASE-$ARCH.iso"
"""

COUNTING_SHIM = """#!/bin/sh
echo "{name} $*" >> "$BENCH_LOG"
exec {real} "$@"
"""

SH_SHIM = """#!/bin/sh
case " $* " in *" --extract-only "*) echo "extract $*" >> "$BENCH_LOG" ;; esac
exec /bin/sh "$@"
"""


def kernel_headers() -> tuple[str, Path]:
    """The newest prepared kernel headers of this machine and their release."""
    for headers in sorted(Path("/usr/src").glob("linux-headers-*"), reverse=True):
        if (headers / "include" / "generated" / "utsrelease.h").is_file():
            return iso_kernel.headers_release(headers), headers
    sys.exit("rebuild_bench: no prepared kernel headers in /usr/src (apt-get install linux-headers-amd64)")


def make_installer(work: Path, version: str, firmware_mb: int) -> Path:
    """The tests' stand-in installer with GSP firmware of a realistic size."""
    payload = make_payload(work / "payload", version)
    for firmware in sorted((payload / "firmware").glob("gsp_*.bin")):
        firmware.write_bytes(os.urandom(firmware_mb * 1024 * 1024 // 2))
    installer = work / f"NVIDIA-Linux-x86_64-{version}.run"
    subprocess.run(
        ["makeself", "--header", str(extract_only_header(work / "header.sh")), "--nox11", "--quiet",
         str(payload), str(installer), f"stand-in NVIDIA {version}", "./nvidia-installer"],
        check=True, capture_output=True,
    )
    shutil.rmtree(payload)
    return installer


def builder_environment(root: Path, url: str, sha256: str, kver: str, headers: Path) -> dict[str, str]:
    """INVOKE_BEE_* variables that put every path of the build under `root`, plus the shims on PATH.

    The host is the tests' Alpine-looking one (tests/scripts/iso_build_support.alpine_host) with mkimage
    faked by FAKE_MKIMAGE; make, strip and the installer's sh are counting shims.
    """
    cfg = buildconfig.load_config()
    host, project = root / "host", root / "project"
    env = {f"INVOKE_BEE_PATHS_{name.upper()}": str(project / name) for name in cfg.bee.paths}
    env.update({
        "INVOKE_BEE_PATHS_DOWNLOAD_CACHE": str(project / "dist" / "downloads"),
        "INVOKE_BEE_PATHS_DIST": str(project / "dist"),
        "INVOKE_BEE_PATHS_BUILD": str(project / "build"),
        "INVOKE_BEE_PATHS_OVERLAY": str(project / "build" / "overlay"),
        "INVOKE_BEE_PATHS_MKIMAGE_OUTDIR": str(project / "dist" / "iso"),
        **alpine_host(host, FAKE_MKIMAGE),
        "HOME": str(host / "home"),
        "INVOKE_BEE_KERNEL_FLAVOR": kver.rsplit("-", 1)[1],
        "INVOKE_BEE_KERNEL_SERIES": ".".join(kver.split(".")[:2]),
        "INVOKE_BEE_NVIDIA_KERNEL_RELEASE": kver,
        "INVOKE_BEE_NVIDIA_HEADERS_ROOT": str(headers.parent),
        "INVOKE_BEE_NVIDIA_URL": url,
        "INVOKE_BEE_NVIDIA_SHA256": sha256,
        "BENCH_LOG": str(root / "bench.log"),
    })
    shims = root / "shims"
    for tool in ("make", "strip"):
        write_executable(shims / tool, COUNTING_SHIM.format(name=tool, real=shutil.which(tool)))
    write_executable(shims / "sh", SH_SHIM)
    env["PATH"] = os.pathsep.join([str(shims), str(host / "bin"), str(Path(sys.executable).parent),
                                   os.environ["PATH"]])
    return env


def build(env: dict[str, str], log: Path) -> tuple[float, dict[str, float], dict[str, int], str]:
    """Run `invoke build-debug` once; return wall time, step times, what it counted, and its output."""
    log.write_text("")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "build-debug"], cwd=REPO_ROOT, env={**os.environ, **env},
        capture_output=True, text=True, check=False,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"rebuild_bench: the build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    lines = log.read_text().splitlines()
    counts = {
        "extractions": sum(line.startswith("extract ") for line in lines),
        "makes": sum(line.startswith("make ") for line in lines),
        "strips": sum(line.startswith("strip ") for line in lines),
        "mkimage runs": sum(line == "mkimage" for line in lines),
        "mkimage section downloads": sum(line.startswith("download ") for line in lines),
    }
    steps = {name: float(seconds) for name, seconds in STEP_LINE.findall(result.stdout)}
    return wall, steps, counts, result.stdout


def startup_time() -> float:
    """Seconds for this Python to start and import what every task run imports."""
    started = time.perf_counter()
    command = [sys.executable, "-c", "import invoke, jinja2, requests, tasks"]
    subprocess.run(command, cwd=REPO_ROOT, check=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm rebuilds to time (default 3)")
    parser.add_argument("--firmware-mb", type=int, default=70, help="GSP firmware size to cache (default 70)")
    args = parser.parse_args(argv)

    version = buildconfig.load_config().bee.nvidia.version
    kver, headers = kernel_headers()
    with tempfile.TemporaryDirectory(prefix="bee-rebuild-bench-") as tmp:
        root = Path(tmp)
        installer = make_installer(root / "installer", version, args.firmware_mb)
        path = f"/{version}/{installer.name}"
        with FakeServer({path: installer.read_bytes()}) as server:
            sha256 = hashlib.sha256(installer.read_bytes()).hexdigest()
            url = server.url("/{version}/NVIDIA-Linux-x86_64-{version}.run")
            env = builder_environment(root, url, sha256, kver, headers)
            log = root / "bench.log"

            wall, steps, counts, _ = build(env, log)
            print(f"cold build against {kver}: {wall:.2f} s; HTTP requests {len(server.requests)}, "
                  + ", ".join(f"{k} {v}" for k, v in counts.items()))

            warm = []
            for _ in range(args.runs):
                before = len(server.requests)
                wall, steps, counts, _ = build(env, log)
                warm.append((wall, steps, counts, len(server.requests) - before))

    walls = [w for w, *_ in warm]
    ours = [sum(s.values()) for _, s, _, _ in warm]
    startup = startup_time()
    print(f"warm rebuild, `python -m invoke build-debug` wall time over {args.runs} runs: "
          f"min {min(walls):.2f} s, median {statistics.median(walls):.2f} s (target < 2 s)")
    print(f"  interpreter + imports (python -c 'import invoke, jinja2, requests, tasks'): {startup:.2f} s")
    print(f"  our steps in the process: median {statistics.median(ours):.2f} s — " + ", ".join(
        f"{name} {statistics.median(s[name] for _, s, _, _ in warm):.3f} s" for name in warm[-1][1]))
    problems = []
    for number, (_, _, counts, requests) in enumerate(warm, 1):
        fetched = {"HTTP requests": requests, **counts}
        print(f"  warm run {number}: " + ", ".join(f"{k} {v}" for k, v in fetched.items()))
        if requests or counts["extractions"] or counts["makes"] or counts["strips"] \
                or counts["mkimage section downloads"] or counts["mkimage runs"] != 1:
            problems.append(number)
    verdict = "PASS" if not problems and statistics.median(walls) < 2 else "MISS"
    print(f"{verdict}: warm runs fetched/extracted/made nothing: {not problems}; "
          f"median under 2 s: {statistics.median(walls) < 2}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
