"""A stand-in for NVIDIA's `.run` installer, made with Debian's real makeself.

NVIDIA's installer is a makeself archive whose header (makeself "1.6.0-nv") adds `-x`/`--extract-only`:
extract, but do not run nvidia-installer. Debian's makeself header has `--noexec` for that, so the tests
build with a copy of Debian's own header (`makeself --header`) in which `-x` and `--extract-only` are two
more names of `--noexec`. The archive's startup script fails loudly, so an extraction that runs it fails.

Contents, laid out like NVIDIA's 590 installer: `kernel/` and `kernel-open/` (the same tiny real
out-of-tree modules, with a Makefile honouring SYSSRC), nvidia-smi (a real glibc program), nvidia-modprobe,
libnvidia-ml.so.<version>, firmware/gsp_ga10x.bin and firmware/gsp_tu10x.bin, and
supported-gpus/supported-gpus.json (SUPPORTED_GPUS below).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEBIAN_HEADER = Path("/usr/share/makeself/makeself-header.sh")
NOEXEC_CASE = "\t--noexec)\n"
FIRMWARE_FILES = ("gsp_ga10x.bin", "gsp_tu10x.bin")

# A few entries of NVIDIA's supported-gpus/supported-gpus.json, in its format: {"chips": [{"devid",
# optional "subdevid"/"subvendorid", "name", optional "legacybranch", "features"}]}, device ids as "0x"
# and upper-case hex. The shape and these values are those of the file NVIDIA ships in its .run installers
# (as packaged in github.com/megvadulthangya/nvidia-driver-assistant, supported-gpus/supported-gpus.json, and
# read by NVIDIA's own nvidia-driver-assistant): "kernelopen" marks a GPU the open modules drive,
# "gsp_proprietary_supported" one the proprietary modules drive too; without the latter (Grace Hopper,
# Blackwell) only the open modules work, and a "legacybranch" GPU is not supported by this branch at all.
# The V100 is "580.xx" legacy since 590, as NVRM says ("supported through the NVIDIA 580.xx Legacy drivers").
DISPLAY_FEATURES = ["dpycbcr420", "dpgsynccompatible", "hdmi4k60rgb444", "hdmigsynccompatible", "runtimepm",
                    "vdpaufeaturesetK"]
SUPPORTED_GPUS = {"chips": [
    # A legacy entry keeps its features ("kernelopen" too): legacy must win over kernelopen.
    {"devid": "0x1DB4", "name": "Tesla V100-PCIE-16GB", "legacybranch": "580.xx", "features": ["kernelopen"]},
    {"devid": "0x20B0", "name": "NVIDIA A100-SXM4-40GB",
     "features": [*DISPLAY_FEATURES, "kernelopen", "gsp_proprietary_supported"]},
    {"devid": "0x2330", "subdevid": "0x16C1", "subvendorid": "0x10DE", "name": "NVIDIA H100 80GB HBM3",
     "features": [*DISPLAY_FEATURES, "kernelopen", "gsp_proprietary_supported"]},
    {"devid": "0x2342", "subdevid": "0x16EB", "subvendorid": "0x10DE", "name": "NVIDIA GH200 120GB",
     "features": [*DISPLAY_FEATURES, "kernelopen"]},
    {"devid": "0x2342", "subdevid": "0x1809", "subvendorid": "0x10DE", "name": "NVIDIA GH200 480GB",
     "features": [*DISPLAY_FEATURES, "kernelopen"]},
    {"devid": "0x2901", "name": "NVIDIA B200", "features": [*DISPLAY_FEATURES, "kernelopen"]},
    {"devid": "0x2BB5", "subdevid": "0x204E", "subvendorid": "0x10DE",
     "name": "NVIDIA RTX PRO 6000 Blackwell Server Edition", "features": [*DISPLAY_FEATURES, "kernelopen"]},
]}


def extract_only_header(target: Path) -> Path:
    """Write Debian's makeself header with `-x | --extract-only` added to its `--noexec` case."""
    text = DEBIAN_HEADER.read_text()
    assert text.count(NOEXEC_CASE) == 1, f"{DEBIAN_HEADER} changed: no single --noexec case to extend"
    target.write_text(text.replace(NOEXEC_CASE, "\t--noexec | -x | --extract-only)\n"))
    return target


def make_payload(payload: Path, version: str, *, kernel_dirs: tuple[str, ...] = ("kernel", "kernel-open"),
                 firmware: bool = True, supported_gpus: dict | None = SUPPORTED_GPUS) -> Path:
    """Lay out the installer's contents in `payload` (no GPU list if `supported_gpus` is None); return it."""
    payload.mkdir(parents=True)
    if supported_gpus is not None:
        (payload / "supported-gpus").mkdir()
        (payload / "supported-gpus" / "supported-gpus.json").write_text(json.dumps(supported_gpus))
    for name in kernel_dirs:
        shutil.copytree(HERE / "kernel", payload / name)
    shutil.copy2(HERE / "nvidia-installer", payload / "nvidia-installer")
    subprocess.run(  # a real glibc program, with libdl among its DT_NEEDED like NVIDIA's
        ["gcc", "-O1", "-o", str(payload / "nvidia-smi"), str(HERE / "nvidia-smi.c"), "-Wl,--no-as-needed",
         "-l:libdl.so.2", "-lm"],
        check=True, capture_output=True,
    )
    (payload / "nvidia-modprobe").write_bytes(b"\x7fELF stand-in nvidia-modprobe\n")
    (payload / "nvidia-modprobe").chmod(0o755)
    (payload / f"libnvidia-ml.so.{version}").write_bytes(b"\x7fELF stand-in libnvidia-ml " + os.urandom(4096))
    if firmware:
        (payload / "firmware").mkdir()
        for name in FIRMWARE_FILES:
            (payload / "firmware" / name).write_bytes(os.urandom(64 * 1024))
    return payload


def make_installer(work: Path, version: str, **payload_options) -> Path:
    """Build `work/NVIDIA-Linux-x86_64-<version>.run` with makeself; return its path."""
    work.mkdir(parents=True, exist_ok=True)
    payload = make_payload(work / "payload", version, **payload_options)
    header = extract_only_header(work / "makeself-header.sh")
    installer = work / f"NVIDIA-Linux-x86_64-{version}.run"
    subprocess.run(
        ["makeself", "--header", str(header), "--nox11", "--quiet", str(payload), str(installer),
         f"stand-in NVIDIA driver {version}", "./nvidia-installer"],
        check=True, capture_output=True,
    )
    shutil.rmtree(payload)
    return installer
