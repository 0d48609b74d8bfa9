"""The lab's guest: a Debian bookworm root filesystem, its kernel and a small initramfs, cached.

The cache entry is keyed by a hash of the recipe (packages, initramfs modules, image size and the stub
init baked into the image), lives outside the repository (`$BEE_LAB_CACHE`, default
/var/tmp/bee-lab-cache) and is built under a temporary name, then renamed: an entry that exists is
complete. Everything that changes from run to run (the audit, the guest scripts) travels on a second disk
at boot, so editing them never rebuilds the image.

Run alone to build (or find) the image and print where it is and how long it took:
`python3 tests/lab/guest_image.py`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
# debootstrap --include: the audit's tools (scenario 1) and the kernel.
DEBOOTSTRAP_PACKAGES = [
    "python3", "dmidecode", "smartmontools", "nvme-cli", "pciutils", "ipmitool", "util-linux", "kmod",
    "udev", "busybox", "qrencode", "linux-image-amd64", "e2fsprogs", "ethtool",
]
# Installed afterwards with apt inside the root: sysvinit-core's "sysv-rc | file-rc | openrc" needs apt's
# resolver (debootstrap would take sysv-rc, which conflicts with openrc). Scenario 2: the boot sequence.
APT_PACKAGES = ["openrc", "sysvinit-core", "dropbear-bin"]
INITRAMFS_MODULES = ["virtio_pci", "virtio_blk", "ext4", "crc32c_generic"]
IMAGE_SIZE = "1600M"
ROOT_LABEL = "labroot"
# The one file baked into the image that the lab reads at boot: it mounts the LABIN disk and runs its init.
STUB_PATH = "sbin/lab-stub"
STUB_SOURCE = Path(__file__).with_name("guest") / "lab-stub.sh"
DEFAULT_CACHE = Path("/var/tmp/bee-lab-cache")


@dataclass(frozen=True)
class GuestImage:
    """A complete cache entry: the root filesystem image, the kernel and its initramfs."""

    root: Path
    kernel: Path
    initrd: Path
    build_seconds: float | None   # None when the entry came from the cache


class ImageBuildError(RuntimeError):
    """The guest image could not be built; the message says which step and what to do."""


def recipe() -> dict:
    """Return everything that decides the image's content; its hash names the cache entry."""
    return {
        "suite": SUITE,
        "variant": "minbase",
        "debootstrap_packages": DEBOOTSTRAP_PACKAGES,
        "apt_packages": APT_PACKAGES,
        "initramfs_modules": INITRAMFS_MODULES,
        "image_size": IMAGE_SIZE,
        "root_label": ROOT_LABEL,
        "stub": STUB_SOURCE.read_text(),
        "layout": 1,
    }


def recipe_key() -> str:
    """Return the short hash of the recipe that names the cache entry."""
    text = json.dumps(recipe(), sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def cache_dir() -> Path:
    """Return the lab's cache folder: `$BEE_LAB_CACHE`, else /var/tmp/bee-lab-cache."""
    return Path(os.environ.get("BEE_LAB_CACHE") or DEFAULT_CACHE)


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """Return the Debian mirror: `$BEE_LAB_MIRROR`, else the first Debian URI in the host's apt sources."""
    if os.environ.get("BEE_LAB_MIRROR"):
        return os.environ["BEE_LAB_MIRROR"]
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        for uri in re.findall(r"(?:^URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+)", path.read_text(), re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def entry_paths(entry: Path) -> GuestImage:
    """Return the files of the cache entry at `entry`."""
    return GuestImage(entry / "root.ext4", entry / "vmlinuz", entry / "initrd.img", None)


def entry_complete(entry: Path) -> bool:
    """True when the cache entry holds its root image, kernel and initramfs."""
    image = entry_paths(entry)
    return all(p.is_file() and p.stat().st_size > 0 for p in (image.root, image.kernel, image.initrd))


def run(step: str, cmd: list[str], log, **kwargs) -> None:
    """Run one build step, appending its output to the build log; fail with the step's name and log."""
    log.write(f"\n### {step}: {' '.join(cmd)}\n")
    log.flush()
    result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, **kwargs)
    if result.returncode != 0:
        raise ImageBuildError(
            f"guest image: {step} failed (exit {result.returncode}); see {log.name}"
        )


def require_tools() -> None:
    """Fail with a clear message when a host tool the build needs is missing."""
    missing = [t for t in ("debootstrap", "mkfs.ext4", "chroot") if shutil.which(t) is None]
    if missing:
        raise ImageBuildError(
            f"guest image: missing host tools {missing}; install debootstrap and e2fsprogs (./test.sh does)"
        )
    if os.geteuid() != 0:
        raise ImageBuildError("guest image: debootstrap needs root; run the lab tests as root")


def install_stub(root: Path) -> None:
    """Copy the stub init into the root filesystem, executable."""
    target = root / STUB_PATH
    shutil.copy(STUB_SOURCE, target)
    target.chmod(0o755)


def write_initramfs_config(root: Path) -> Path:
    """Write an initramfs-tools config folder inside `root` asking for only our modules; return it."""
    conf = root / "etc/initramfs-tools-lab"
    (conf / "conf.d").mkdir(parents=True, exist_ok=True)
    (conf / "scripts").mkdir(exist_ok=True)
    (conf / "initramfs.conf").write_text("MODULES=list\nBUSYBOX=auto\nCOMPRESS=gzip\n")
    (conf / "modules").write_text("\n".join(INITRAMFS_MODULES) + "\n")
    return conf


def kernel_version(root: Path) -> str:
    """Return the one kernel version installed in `root`."""
    versions = sorted(p.name for p in (root / "lib/modules").iterdir())
    if len(versions) != 1:
        raise ImageBuildError(f"guest image: expected one kernel in the root, found {versions}")
    return versions[0]


def build_entry(work: Path, log) -> None:
    """Build the guest's files into the empty folder `work`."""
    root = work / "rootfs"
    chroot_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    run("debootstrap", [
        "debootstrap", "--variant=minbase", f"--include={','.join(DEBOOTSTRAP_PACKAGES)}",
        SUITE, str(root), debian_mirror(),
    ], log, env=chroot_env)
    (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
    (root / "usr/sbin/policy-rc.d").chmod(0o755)
    run("apt-get install", [
        "chroot", str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES,
    ], log, env=chroot_env)
    (root / "usr/sbin/policy-rc.d").unlink()
    run("apt-get clean", ["chroot", str(root), "apt-get", "clean"], log, env=chroot_env)
    install_stub(root)
    (root / "etc/hostname").write_text("lab\n")
    (root / "etc/fstab").write_text(f"LABEL={ROOT_LABEL} / ext4 rw 0 1\n")
    kver = kernel_version(root)
    conf = write_initramfs_config(root)
    run("mkinitramfs", [
        "chroot", str(root), "mkinitramfs", "-d", "/" + str(conf.relative_to(root)),
        "-o", "/boot/initrd.lab", kver,
    ], log, env=chroot_env)
    shutil.copy(root / f"boot/vmlinuz-{kver}", work / "vmlinuz")
    shutil.move(root / "boot/initrd.lab", work / "initrd.img")
    for old in (root / "boot").glob("initrd.img-*"):
        old.unlink()   # Debian's own full initramfs: the lab boots the small one
    run("mkfs.ext4", [
        "mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(root), str(work / "root.ext4"), IMAGE_SIZE,
    ], log)
    shutil.rmtree(root)


def ensure_image(cache: Path | None = None) -> GuestImage:
    """Return the cached guest image for the current recipe, building it first when it is missing.

    The build runs under an exclusive lock in `<cache>/guest-<key>.tmp` and is renamed to
    `<cache>/guest-<key>` only when complete, so a crashed build is never mistaken for an image.
    """
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    entry = cache / f"guest-{recipe_key()}"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if entry_complete(entry):
            return entry_paths(entry)
        if entry.exists():   # a complete entry was damaged by hand: build it again
            shutil.rmtree(entry)
        require_tools()
        work = entry.with_name(entry.name + ".tmp")
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
        started = time.monotonic()
        log_path = cache / f"{entry.name}.build.log"
        with open(log_path, "w") as log:
            build_entry(work, log)
        seconds = time.monotonic() - started
        (work / "recipe.json").write_text(json.dumps(recipe(), indent=2, sort_keys=True) + "\n")
        (work / "build-seconds").write_text(f"{seconds:.1f}\n")
        work.rename(entry)
        image = entry_paths(entry)
        return GuestImage(image.root, image.kernel, image.initrd, seconds)


def main() -> int:
    """Build or find the guest image and print its paths and the build time."""
    try:
        image = ensure_image()
    except ImageBuildError as error:
        print(error, file=sys.stderr)
        return 1
    state = "cached" if image.build_seconds is None else f"built in {image.build_seconds:.0f} s"
    print(f"{image.root.parent} ({state})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
