"""Support for the ISO build tests (no tests here): a builder host in a temp folder and fake helpers.

`make_builder` copies invoke.yaml, points every host path (mkimage_home, mkimage_cwd = the host's /var/tmp,
workdir, aports, authorized_keys, abuild.conf) into tmp_path with INVOKE_BEE_PATHS_* variables, makes an
Alpine-looking host (alpine-release, stub builder tools on PATH, an abuild key, an aports mkimage.sh), and
replaces the ISO kernel, NVIDIA and live-system modules with recording fakes. mkimage itself is faked with
pytest-subprocess (`fp`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts import build_nvidia_module, buildconfig, iso_build, live_system
from tests.paths import REPO_ROOT

KVER = "6.12.58-0-lts"
BUILDER_TOOLS = ("abuild", "apk", "xorriso", "mksquashfs", "fakeroot")
CACHED_SECTIONS = ("apks_x86_64_5f1c", "kernel_x86_64_lts_9ab2", "syslinux_77aa", "grub_efi_x86_64_3c4d")
STALE_SECTIONS = ("apkovl_bee_0e1f", "image-4d2a-x86_64-bee_debug")


def fake_headers(root, kver):
    """A headers folder like linux-lts-dev's: /usr/src/linux-headers-<kver> with its utsrelease.h."""
    headers = root / f"linux-headers-{kver}"
    (headers / "include" / "generated").mkdir(parents=True)
    (headers / "include" / "generated" / "utsrelease.h").write_text(f'#define UTS_RELEASE "{kver}"\n')
    return headers


def apk_command(cfg):
    """The apk command scripts/iso_kernel.py runs to ask the main repository for its linux-<flavor>."""
    return [
        "apk", "--update-cache", "--repositories-file", "/dev/null",
        "--repository", buildconfig.repository_urls(cfg)[0], "--arch", cfg.bee.alpine.arch,
        "--cache-dir", str(buildconfig.config_path(cfg, "build") / "apk-cache"),
        "search", "--exact", f"linux-{cfg.bee.kernel.flavor}",
    ]


class FakeKernelError(Exception):
    """Stands for iso_kernel.KernelError."""


class FakeIsoKernel:
    """Stands for scripts/iso_kernel.py: records calls; headers are `kver`, the ISO's kernel `iso_kver`."""

    KernelError = FakeKernelError

    def __init__(self, headers_root: Path, kver: str = KVER, iso_kver: str = KVER):
        self.headers_root, self.kver, self.iso_kver = headers_root, kver, iso_kver
        self.headers_present = True
        self.calls: list[str] = []

    def find_headers(self, cfg, kver=None, headers_root=None):
        self.calls.append("find_headers")
        if not self.headers_present:
            raise FakeKernelError(f"no kernel headers in {self.headers_root}: apk add linux-lts-dev")
        return self.kver, self.headers_root / f"linux-headers-{self.kver}"

    def iso_kernel_release(self, cfg, *args, **kwargs):
        self.calls.append("iso_kernel_release")
        return self.iso_kver

    def check_headers_match(self, headers_kver, iso_kver):
        self.calls.append("check_headers_match")
        if headers_kver != iso_kver:
            raise FakeKernelError(f"headers are {headers_kver} but the ISO kernel is {iso_kver}")

    def kernel_for_iso(self, cfg):
        """Like the real one: the ISO's release, its headers, and the check that they match."""
        self.calls.append("kernel_for_iso")
        iso_kver = self.iso_kernel_release(cfg)
        kver, headers = self.find_headers(cfg, iso_kver)
        self.check_headers_match(kver, iso_kver)
        return kver, headers

    def apk_cache_dir(self, cfg):
        return buildconfig.config_path(cfg, "build") / "apk-cache"

    def apk_search_command(self, cfg, cache_dir):
        self.calls.append("apk_search_command")
        return ["apk", "--cache-dir", str(cache_dir), "search", "--exact", f"linux-{cfg.bee.kernel.flavor}"]


class FakeNvidiaBuildError(Exception):
    """Stands for build_nvidia_module.NvidiaBuildError."""


class FakeNvidia:
    """Records calls; `build` 'downloads' and 'makes' only when its cache folder has no manifest."""

    NvidiaBuildError = FakeNvidiaBuildError
    cache_dir_for = staticmethod(build_nvidia_module.cache_dir_for)  # pure naming: the real one

    def __init__(self):
        self.calls: list[str] = []
        self.downloads = self.extractions = self.makes = 0
    def build(self, cfg, kver, *, headers, cache_root=None, progress=None):
        self.calls.append("build")
        cache = Path(cache_root) / f"nvidia-{cfg.bee.nvidia.version}-{kver}"
        if not (cache / "manifest.json").is_file():
            self.downloads += 1
            self.extractions += 1
            self.makes += 1
            for name in ("nvidia.ko", "nvidia-modeset.ko", "nvidia-uvm.ko", "nvidia-smi", "gsp_ga10x.bin"):
                (cache / name).parent.mkdir(parents=True, exist_ok=True)
                (cache / name).write_text(f"fake {name}\n")
            (cache / "manifest.json").write_text(json.dumps({"kver": kver}))
        return cache

    def install_into_overlay(self, cache_dir, overlay_root, cfg, kver):
        self.calls.append("install_into_overlay")
        live = cfg.bee.live
        placed = []
        for name in ("nvidia.ko", "nvidia-modeset.ko", "nvidia-uvm.ko"):
            placed.append(Path(overlay_root) / live.nvidia_modules_dir.lstrip("/") / kver / name)
        placed.append(Path(overlay_root) / live.bin_dir.lstrip("/") / "nvidia-smi")
        firmware = Path(overlay_root) / live.firmware_dir.lstrip("/") / "nvidia" / cfg.bee.nvidia.version
        placed.append(firmware / "gsp_ga10x.bin")
        for target in placed:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(cache_dir) / target.name, target)
        return placed


class FakeStagingError(Exception):
    """Stands for live_system.StagingError."""


class FakeLive:
    """Stands for scripts/live_system.py: writes a service, the keys and the generator's JSON config."""

    StagingError = FakeStagingError
    STATIC_OVERLAY = live_system.STATIC_OVERLAY
    login_problem = staticmethod(live_system.login_problem)  # the rule itself: the real one

    def __init__(self):
        self.calls: list[tuple[Path, Path]] = []

    def load_expect_profile(self, cfg):
        """The real check (quick, pure: the audit's own loader), its error as this stand-in's."""
        try:
            return live_system.load_expect_profile(cfg)
        except live_system.StagingError as err:
            raise FakeStagingError(str(err)) from None

    def stage_live_system(self, cfg, overlay_dir, *, password_file):
        self.calls.append((Path(overlay_dir), Path(password_file)))
        service = Path(overlay_dir) / "etc" / "init.d" / "bee-audit-debug"
        service.parent.mkdir(parents=True, exist_ok=True)
        service.write_text("#!/sbin/openrc-run\n")
        keys = buildconfig.config_path(cfg, "authorized_keys")
        if keys.is_file():
            target = Path(overlay_dir) / "home" / cfg.bee.live.user / ".ssh" / "authorized_keys"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(keys, target)
        config = Path(buildconfig.template_context(cfg)["generator"]["config"])
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"overlay": str(overlay_dir)}))
        return config


@dataclass
class Builder:
    """A fake Alpine builder in tmp_path, with the configuration loaded from a copy pointing into it."""

    root: Path
    project: Path
    env: dict[str, str]
    kernel: FakeIsoKernel
    nvidia: FakeNvidia
    live: FakeLive
    mkimage_runs: list[dict[str, Any]] = field(default_factory=list)

    def config(self) -> Any:
        """Load the copied invoke.yaml (with the INVOKE_BEE_* overrides set by make_builder)."""
        return buildconfig.load_config(self.project)

    def path(self, name: str) -> Path:
        """Return bee.paths.<name> as this builder's configuration resolves it."""
        return buildconfig.config_path(self.config(), name)

    def register_mkimage(self, fp, *, make_iso: bool = True, returncode: int = 0) -> list[str]:
        """Register one faked mkimage.sh run with `fp`; it records what it saw, then acts like mkimage."""
        cfg = self.config()
        command = iso_build.mkimage_command(cfg)

        def mkimage(process):
            workdir = Path(command[command.index("--workdir") + 1])
            cwd = Path(process.kwargs["cwd"])
            self.mkimage_runs.append({
                "cwd": cwd,
                "TMPDIR": process.kwargs["env"].get("TMPDIR"),
                "env": dict(process.kwargs["env"]),
                "sections": sorted(p.name for p in workdir.iterdir()),
                "profile_in_cwd": sorted(p.name for p in cwd.glob("*.sh")),
                "iso_before": iso_build.iso_path(cfg).exists(),
            })
            for name in CACHED_SECTIONS + STALE_SECTIONS:
                (workdir / name).mkdir(exist_ok=True)
            if make_iso:
                iso = iso_build.iso_path(cfg)
                iso.write_bytes(b"fake iso " * 1000)

        fp.register(command, callback=mkimage, returncode=returncode)
        return command


NEVER_RUN = "#!/bin/sh\necho never run\nexit 99\n"


def alpine_host(host: Path, mkimage_script: str = NEVER_RUN) -> dict[str, str]:
    """Make an Alpine-looking builder host in `host`; return the INVOKE_BEE_* variables pointing at it.

    alpine-release, /var/tmp, stand-ins for the builder tools in `host/bin` (put it first on PATH), an
    aports checkout whose scripts/mkimage.sh is `mkimage_script`, an abuild key named by abuild.conf and
    an authorized_keys file, all in `host/home`.
    """
    home = host / "home"
    (host / "var" / "tmp").mkdir(parents=True)
    (host / "etc").mkdir()
    (host / "etc" / "alpine-release").write_text("3.22.2\n")
    for tool in BUILDER_TOOLS:
        write_executable(host / "bin" / tool, "#!/bin/sh\nexit 0\n")
    write_executable(home / "aports" / "scripts" / "mkimage.sh", mkimage_script)
    key = home / ".abuild" / "builder-6543.rsa"
    key.parent.mkdir(parents=True)
    key.write_text("PRIVATE KEY\n")
    (home / ".abuild" / "abuild.conf").write_text(f'PACKAGER_PRIVKEY="{key}"\n')
    (home / ".ssh").mkdir()
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAAC3Nza test@bee\n")
    return {
        "INVOKE_BEE_PATHS_MKIMAGE_HOME": str(home / ".mkimage"),
        "INVOKE_BEE_PATHS_MKIMAGE_CWD": str(host / "var" / "tmp"),
        "INVOKE_BEE_PATHS_MKIMAGE_WORKDIR": str(host / "var" / "tmp" / "bee-mkimage"),
        "INVOKE_BEE_PATHS_APORTS": str(home / "aports"),
        "INVOKE_BEE_PATHS_AUTHORIZED_KEYS": str(home / ".ssh" / "authorized_keys"),
        "INVOKE_BEE_PATHS_ABUILD_CONF": str(home / ".abuild" / "abuild.conf"),
        "INVOKE_BEE_PATHS_ALPINE_RELEASE": str(host / "etc" / "alpine-release"),
        "INVOKE_BEE_BUILDER_MIN_FREE_GIB": "0",
    }


def make_builder(tmp_path: Path, monkeypatch) -> Builder:
    """Create the fake builder host and install the fakes (see the module docstring)."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "invoke.yaml", project / "invoke.yaml")
    host = tmp_path / "host"
    env = alpine_host(host)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", f"{host / 'bin'}{os.pathsep}{os.environ['PATH']}")

    kernel, nvidia, live = FakeIsoKernel(host / "usr" / "src"), FakeNvidia(), FakeLive()
    monkeypatch.setattr(iso_build, "iso_kernel", kernel)
    monkeypatch.setattr(iso_build, "build_nvidia_module", nvidia)
    monkeypatch.setattr(iso_build, "live_system", live)
    return Builder(tmp_path, project, env, kernel, nvidia, live)


def write_executable(path: Path, text: str) -> None:
    """Write a small executable script."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Return {relative path: (mtime_ns, inode)} of every file, link and folder under `root` (and of `root`
    itself, as "."): what a run changed, a folder made or emptied included. A missing `root` is {}."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.lstat().st_mtime_ns, p.lstat().st_ino)
        for p in [root, *sorted(root.rglob("*"))]
    }
