"""The whole build with the REAL helpers: scripts/build_nvidia_module.py (a makeself stand-in installer,
real kbuild against Debian's headers), scripts/live_system.py and scripts/genapkovl.py run by a stand-in
mkimage.sh under the real fakeroot, as mkimage runs it. Every process the build starts is recorded: a warm
rebuild downloads, extracts and makes nothing and leaves the cached mkimage sections alone.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from invoke import Context

import tasks
from scripts import build_nvidia_module, iso_build, iso_kernel, live_system
from tests.scripts.iso_build_support import make_builder, snapshot, write_executable
from tests.scripts.nvidia_fake.installer import make_installer

# A stand-in for aports' scripts/mkimage.sh: its options, its profile lookup ($HOME/.mkimage), its section
# names and caching, and its generator call (`cd` into the section, `fakeroot "$script" "$hostname"`, the
# script found in $PWD first). It "downloads" a section only when it is missing, and logs that.
MKIMAGE_STAND_IN = r"""#!/bin/sh -e
while [ $# -gt 0 ]; do
	case "$1" in
	--profile) PROFILE=$2 ;;
	--tag) RELEASE=$2 ;;
	--arch) ARCH=$2 ;;
	--outdir) OUTDIR=$2 ;;
	--workdir) WORKDIR=$2 ;;
	--repository | --extra-repository) ;;
	*) echo "mkimage: unknown option $1" >&2; exit 2 ;;
	esac
	shift 2
done
# The test builder's layout, as the shipped one: mkimage runs from (host)/var/tmp with TMPDIR set to it.
[ "$TMPDIR" = "$PWD" ] || { echo "mkimage: TMPDIR=$TMPDIR but cwd $PWD" >&2; exit 3; }
profile_standard() { apks="busybox"; }
# shellcheck disable=SC1090
. "$HOME/.mkimage/mkimg.$PROFILE.sh"
"profile_$PROFILE"
case " $arch " in *" $ARCH "*) ;; *) exit 0 ;; esac
for section in "apks_${ARCH}_1" "kernel_${ARCH}_${kernel_flavors}_2" syslinux_3 "grub_efi_${ARCH}_4"; do
	if [ ! -d "$WORKDIR/$section" ]; then
		mkdir -p "$WORKDIR/$section"
		echo "$section" >> "$WORKDIR/downloads.log"
	fi
done
script="$PWD/$apkovl"   # mkimage falls back to ~/.mkimage, but then keys the section on nothing right
[ -f "$script" ] || { echo "mkimage: no $apkovl in $PWD" >&2; exit 4; }
key=$(sha1sum "$apkovl" | cut -c1-8)
ovl="$WORKDIR/apkovl_${hostname}_$key"
if [ ! -d "$ovl" ]; then
	mkdir -p "$ovl.work"
	(cd "$ovl.work" && fakeroot "$script" "$hostname")
	mv "$ovl.work" "$ovl"
fi
image="$WORKDIR/image-$key-$ARCH-$PROFILE"
mkdir -p "$image"
cp "$ovl/$hostname.apkovl.tar.gz" "$image/"
tar -cf "$OUTDIR/alpine-$PROFILE-$RELEASE-$ARCH.iso" -C "$image" .
"""

STEPS_THAT_MUST_NOT_REPEAT = ("--extract-only", "make", "strip")


@pytest.fixture
def real_builder(tmp_path, monkeypatch):
    builder = make_builder(tmp_path, monkeypatch)
    for module in (iso_kernel, build_nvidia_module, live_system):
        monkeypatch.setattr(iso_build, module.__name__.rsplit(".", 1)[1], module)
    home = builder.root / "host" / "home"
    monkeypatch.setenv("HOME", str(home))
    write_executable(home / "aports" / "scripts" / "mkimage.sh", MKIMAGE_STAND_IN)
    (builder.root / "host" / "bin" / "fakeroot").unlink()  # the real one runs the generator
    assert shutil.which("fakeroot"), "fakeroot is missing: apt-get install fakeroot"

    headers = sorted(Path("/usr/src").glob("linux-headers-*-amd64"))
    assert headers, "Debian's kernel headers are missing: apt-get install linux-headers-amd64"
    kver = iso_kernel.headers_release(headers[-1])
    version = builder.config().bee.nvidia.version
    installer = make_installer(tmp_path / "installer", version)
    for name, value in {
        "INVOKE_BEE_KERNEL_FLAVOR": kver.rsplit("-", 1)[1],
        "INVOKE_BEE_KERNEL_SERIES": ".".join(kver.split(".")[:2]),
        "INVOKE_BEE_NVIDIA_KERNEL_RELEASE": kver,
        "INVOKE_BEE_NVIDIA_HEADERS_ROOT": str(headers[-1].parent),
        "INVOKE_BEE_NVIDIA_SHA256": hashlib.sha256(installer.read_bytes()).hexdigest(),
        "INVOKE_BEE_NVIDIA_URL": "http://127.0.0.1:9/{version}/NVIDIA-Linux-x86_64-{version}.run",  # dead
        "INVOKE_BEE_NVIDIA_JOBS": "2",
        "SOURCE_DATE_EPOCH": "1700000000",
    }.items():
        monkeypatch.setenv(name, value)
    cached = build_nvidia_module.installer_path(builder.config())
    cached.parent.mkdir(parents=True)
    shutil.copy(installer, cached)
    builder.kver = kver
    return builder


@pytest.fixture
def processes(monkeypatch):
    """Every command the build starts through subprocess, in order."""
    started = []

    class Recording(subprocess.Popen):
        def __init__(self, args, *rest, **kwargs):
            started.append([str(a) for a in args] if not isinstance(args, str) else [args])
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return started


def apkovl_members(iso: Path, hostname: str) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(iso) as image:
        apkovl = image.extractfile(f"./{hostname}.apkovl.tar.gz")
        with tarfile.open(fileobj=apkovl, mode="r:gz") as overlay:
            return {m.name: m for m in overlay.getmembers()}


def test_real_build_then_warm_rebuild(real_builder, processes, capsys):
    builder = real_builder
    cfg = builder.config()
    live = cfg.bee.live

    tasks.build_debug(Context(config=cfg))

    iso = iso_build.iso_path(cfg)
    members = apkovl_members(iso, cfg.bee.iso.hostname)
    for path in (live.audit_path, f"{live.nvidia_modules_dir}/{builder.kver}/proprietary/nvidia.ko",
                 f"{live.nvidia_modules_dir}/{builder.kver}/open/nvidia.ko",
                 f"{live.bin_dir}/nvidia-smi", f"{live.lib_dir}/libnvidia-ml.so.{cfg.bee.nvidia.version}",
                 "/etc/init.d/bee-audit-debug", "/etc/apk/world", live.authorized_keys_file):
        assert path.lstrip("/") in members, f"{path} is not in the apkovl: {sorted(members)}"
    assert members[live.audit_path.lstrip("/")].mode & 0o777 == 0o755
    assert members[live.audit_path.lstrip("/")].uid == 0
    assert iso_build.checksum_path(iso).read_text().split()[0] == hashlib.sha256(iso.read_bytes()).hexdigest()
    assert any("--extract-only" in p for p in processes) and any(p[0] == "make" for p in processes)
    workdir = builder.path("mkimage_workdir")
    downloads = (workdir / "downloads.log").read_text()
    assert len(downloads.splitlines()) == 4

    # Warm rebuild: only the overlay's new state reaches a new apkovl; nothing is fetched or compiled.
    processes.clear()
    capsys.readouterr()
    (Path(cfg.bee.paths.authorized_keys)).write_text("ssh-ed25519 AAAAC3Nza second@bee\n")

    tasks.build_debug(Context(config=builder.config()))

    commands = [" ".join(p) for p in processes]
    repeated = [c for c in commands if any(word in c.split() for word in STEPS_THAT_MUST_NOT_REPEAT)]
    assert not repeated, commands
    assert sum(p[0] == str(iso_build.mkimage_script(cfg)) for p in processes) == 1
    assert (workdir / "downloads.log").read_text() == downloads, "cached sections were kept"
    with tarfile.open(iso) as image, \
            tarfile.open(fileobj=image.extractfile(f"./{cfg.bee.iso.hostname}.apkovl.tar.gz")) as overlay:
        keys = overlay.extractfile(live.authorized_keys_file.lstrip("/")).read()
    assert keys == b"ssh-ed25519 AAAAC3Nza second@bee\n", "a changed overlay reaches the new ISO"
    assert "audit: " in capsys.readouterr().out

    # A dry run over the built tree: it deletes, rewrites and starts nothing.
    processes.clear()
    dry = builder.config()
    dry.run.dry = True
    before = snapshot(builder.root)
    tasks.build_debug(Context(config=dry))
    assert snapshot(builder.root) == before
    assert processes == []
    assert f"[dry] would rm -rf {iso}" in capsys.readouterr().out


def test_dry_build_on_a_fresh_builder_writes_nothing_and_runs_nothing(real_builder, processes, monkeypatch,
                                                                       capsys):
    builder = real_builder
    monkeypatch.delenv("INVOKE_BEE_NVIDIA_KERNEL_RELEASE")  # a real build would now ask apk
    asked = builder.root / "apk-was-run"
    write_executable(builder.root / "host" / "bin" / "apk", f"#!/bin/sh\necho \"$@\" >> {asked}\n")
    cfg = builder.config()
    cfg.run.dry = True
    before = snapshot(builder.root)

    tasks.build_debug(Context(config=cfg))

    assert snapshot(builder.root) == before, "not even build/ or dist/ may appear"
    assert processes == [] and not asked.exists()
    out = capsys.readouterr().out
    assert "[dry] would ask the repository for the ISO's kernel: apk --update-cache" in out
    assert f"[dry] would build NVIDIA {cfg.bee.nvidia.version} for {builder.kver}" in out
    assert f"TMPDIR={builder.path('mkimage_cwd')} {iso_build.mkimage_script(cfg)} --profile" in out
