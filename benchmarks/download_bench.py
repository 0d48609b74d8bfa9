#!/usr/bin/env python3
"""Benchmark of scripts/build_nvidia_module.py: the download step and the cache hit of the whole step.

1. A 512 MB file served from 127.0.0.1 (a thread of this process, sendfile): our download+verify (one
   streaming pass that hashes while it writes) beside `curl -o f && sha256sum f` (two passes) in the same
   run. Target: not slower than the pair.
2. The cache hit of the whole step: `python3 scripts/build_nvidia_module.py` run as a user runs it, with a
   warm cache of realistic sizes (about 180 MB of modules, firmware and userland to re-hash), and build()
   alone in this process.

Everything lives in a temp folder removed at the end. Usage: python3 benchmarks/download_bench.py [--mb N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from scripts import build_nvidia_module as nv  # noqa: E402
from scripts import buildconfig, fileops  # noqa: E402

# Sizes of a 590 build's cached outputs, roughly (MB): what a cache hit re-hashes.
CACHE_FILES_MB = {
    "proprietary/nvidia.ko": 60, "proprietary/nvidia-modeset.ko": 2, "proprietary/nvidia-uvm.ko": 3,
    "open/nvidia.ko": 60, "open/nvidia-modeset.ko": 2, "open/nvidia-uvm.ko": 3,
    "firmware/gsp_ga10x.bin": 75, "firmware/gsp_tu10x.bin": 35,
    "bin/nvidia-smi": 1, "bin/nvidia-modprobe": 1, "lib/libnvidia-ml.so.{version}": 3,
}
KVER = "6.12.58-0-lts"


def write_random(path: Path, megabytes: int) -> str:
    """Write `megabytes` MB of random bytes to `path`; return their sha256."""
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        for i in range(megabytes):
            chunk = block[i % 251:] + block[: i % 251]  # distinct blocks, cheaply
            out.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    """Serve the files of `folder` on 127.0.0.1 with sendfile; return the server and its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = folder / self.path.lstrip("/")
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self.connection.sendfile(f)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def timed(action, *args, **kwargs):
    """Return (seconds, result) of `action(*args, **kwargs)`."""
    start = time.perf_counter()
    result = action(*args, **kwargs)
    return time.perf_counter() - start, result


def bench_download(tmp: Path, megabytes: int, rounds: int) -> None:
    served = tmp / "served"
    expected = write_random(served / "NVIDIA.run", megabytes)
    httpd, base = serve(served)
    url = f"{base}/NVIDIA.run"
    try:
        for round_number in range(1, rounds + 1):
            ours_dest = tmp / "ours" / "NVIDIA.run"
            ours, _ = timed(nv.download, url, ours_dest, expected, progress=False)
            assert fileops.sha256_file(ours_dest) == expected
            ours_dest.unlink()

            curl_dest = tmp / "curl.run"
            shell = f"curl -sS -o '{curl_dest}' '{url}' && sha256sum '{curl_dest}'"
            pair, result = timed(subprocess.run, shell, shell=True, capture_output=True, text=True)
            assert result.returncode == 0 and result.stdout.split()[0] == expected, result.stderr
            curl_dest.unlink()
            print(f"round {round_number}: {megabytes} MB  download+verify (ours) {ours:6.2f} s "
                  f"({megabytes / ours:5.0f} MB/s)   curl -o f && sha256sum f {pair:6.2f} s "
                  f"({megabytes / pair:5.0f} MB/s)   ours/pair {ours / pair:4.2f}")
    finally:
        httpd.shutdown()
        httpd.server_close()


def bench_cache_hit(tmp: Path, rounds: int) -> None:
    cfg = buildconfig.load_config()
    version = cfg.bee.nvidia.version
    headers_root = tmp / "src"
    uts = headers_root / f"linux-headers-{KVER}" / "include" / "generated" / "utsrelease.h"
    uts.parent.mkdir(parents=True)
    uts.write_text(f'#define UTS_RELEASE "{KVER}"\n')
    cache_root = tmp / "dist"
    cache_dir = nv.cache_dir_for(cfg, KVER, cache_root)
    for name, megabytes in CACHE_FILES_MB.items():
        write_random(cache_dir / name.format(version=version), megabytes)
    (cache_dir / cfg.bee.nvidia.gpu_list).write_text("0x2901 open\n")
    flavors = nv.flavors_to_build(cfg.bee.nvidia.flavor)
    for flavor in flavors:
        nv.write_manifest(cache_dir / flavor, nv.flavor_inputs(cfg, KVER, flavor))
    nv.write_manifest(cache_dir, nv.build_inputs(cfg, KVER), exclude=tuple(nv.KERNEL_DIRS))
    total = sum(CACHE_FILES_MB.values())

    command = [sys.executable, str(REPO_ROOT / "scripts" / "build_nvidia_module.py"), "--iso-kver", KVER,
               "--headers-root", str(headers_root), "--cache-root", str(cache_root)]
    for round_number in range(1, rounds + 1):
        whole, result = timed(subprocess.run, command, capture_output=True, text=True, check=True)
        assert result.stdout.strip() == str(cache_dir), result.stderr
        inner, built = timed(nv.build, cfg, KVER, headers=headers_root, cache_root=cache_root)
        assert built == cache_dir
        print(f"round {round_number}: cache hit ({total} MB re-hashed)  whole script {whole:5.2f} s   "
              f"build() alone {inner:5.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="size of the served file (default: 512)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each measure (default: 2)")
    args = parser.parse_args(argv)
    for needed in ("curl", "sha256sum"):
        if not shutil.which(needed):
            print(f"download_bench: {needed} is missing", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="bee-download-bench-") as name:
        tmp = Path(name)
        bench_download(tmp, args.mb, args.rounds)
        bench_cache_hit(tmp, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
