"""scripts/build_nvidia_module.py end to end, without NVIDIA: a makeself stand-in installer served over HTTP,
real kbuild of both kernel/ and kernel-open/ against Debian's linux-headers-amd64, the cache (a manifest per
flavor), the GPU list, the compiler check, and the overlay at the live-system paths."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import build_nvidia_module as nv
from scripts import buildconfig, iso_kernel
from tests.paths import REPO_ROOT
from tests.scripts.nvidia_fake.installer import SUPPORTED_GPUS, make_installer
from tests.scripts.nvidia_fake.server import FakeServer

VERSION = buildconfig.load_config().bee.nvidia.version


def tool(name):
    candidates = [shutil.which(name), f"/usr/sbin/{name}", f"/sbin/{name}"]
    found = next((p for p in candidates if p and os.access(p, os.X_OK)), None)
    assert found, f"{name} is missing: apt-get install kmod binutils"
    return found


def modinfo(path, field):
    return subprocess.run([tool("modinfo"), "-F", field, str(path)], capture_output=True, text=True,
                          check=True).stdout.strip()


def debug_sections(path):
    out = subprocess.run([tool("readelf"), "-S", "--wide", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return [word for word in out.split() if word.startswith(".debug_")]


@pytest.fixture(scope="module")
def debian_headers():
    found = sorted(Path("/usr/src").glob("linux-headers-*-amd64"))
    assert found, "Debian's kernel headers are missing: apt-get install linux-headers-amd64"
    return iso_kernel.headers_release(found[-1]), found[-1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    installer = make_installer(tmp_path_factory.mktemp("installer"), VERSION)
    bare = make_installer(tmp_path_factory.mktemp("bare"), "0.0.1", kernel_dirs=("kernel-open",))
    files = {f"/{VERSION}/{installer.name}": installer.read_bytes(), f"/0.0.1/{bare.name}": bare.read_bytes()}
    with FakeServer(files) as running:
        running.sha256 = {v: hashlib.sha256(files[f"/{v}/{p.name}"]).hexdigest()
                          for v, p in ((VERSION, installer), ("0.0.1", bare))}
        yield running


def project(folder: Path, server, debian_headers, **nvidia):
    """A copy of invoke.yaml in `folder`, loaded, pointed at the stand-in installer and Debian's kernel."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "invoke.yaml", folder / "invoke.yaml")
    cfg = buildconfig.load_config(folder)
    settings = cfg.bee.nvidia
    settings.url = server.url("/{version}/NVIDIA-Linux-x86_64-{version}.run")
    settings.kernel_release, headers = debian_headers
    settings.headers_root = str(headers.parent)
    settings.jobs = 2
    settings.download_backoff = 0.01
    for key, value in nvidia.items():
        setattr(settings, key, value)
    settings.sha256 = server.sha256[settings.version]
    return cfg


@pytest.fixture(scope="module")
def built(tmp_path_factory, server, debian_headers):
    """One real build shared by the tests that only read it."""
    cfg = project(tmp_path_factory.mktemp("built"), server, debian_headers)
    kver, headers = debian_headers
    cache_dir = nv.build(cfg, kver, headers=headers, progress=False)
    return cfg, kver, cache_dir


@pytest.mark.parametrize("flavor, folder", [("proprietary", "kernel"), ("open", "kernel-open")])
def test_auto_builds_loadable_stripped_modules_of_both_flavors(built, flavor, folder):
    cfg, kver, cache_dir = built
    assert cfg.bee.nvidia.flavor == "auto", "the configured default"
    assert cache_dir == buildconfig.config_path(cfg, "dist") / f"nvidia-{VERSION}-{kver}"
    modules = sorted(p.name for p in (cache_dir / flavor).iterdir() if p.suffix == ".ko")
    assert modules == sorted(f"{name}.ko" for name in cfg.bee.nvidia.modules)
    for module in modules:
        path = cache_dir / flavor / module
        assert modinfo(path, "vermagic").split()[0] == kver
        assert modinfo(path, "description") == f"bee test stand-in for {module[:-3]}, built from {folder}"
        assert debug_sections(path) == [], f"{module} keeps debug info"
    assert modinfo(cache_dir / flavor / "nvidia-modeset.ko", "depends") == "nvidia"


def test_build_takes_the_userland_and_writes_a_manifest_per_part(built):
    cfg, kver, cache_dir = built
    for name in ("bin/nvidia-smi", "bin/nvidia-modprobe", f"lib/libnvidia-ml.so.{VERSION}",
                 "firmware/gsp_ga10x.bin", "firmware/gsp_tu10x.bin", cfg.bee.nvidia.gpu_list):
        assert (cache_dir / name).is_file(), name
    assert os.access(cache_dir / "bin" / "nvidia-smi", os.X_OK)
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    common = {"format": 2, "version": VERSION, "installer_sha256": cfg.bee.nvidia.sha256, "kver": kver}
    assert manifest["inputs"] == {**common, "gpu_list": cfg.bee.nvidia.gpu_list}
    files = sorted(p.relative_to(cache_dir).as_posix() for p in cache_dir.rglob("*") if p.is_file())
    assert sorted(manifest["outputs"]) == [f for f in files if f != "manifest.json"
                                           and f.split("/")[0] not in ("proprietary", "open")]
    for flavor in ("proprietary", "open"):
        own = json.loads((cache_dir / flavor / "manifest.json").read_text())
        assert own["inputs"] == {**common, "flavor": flavor, "modules": list(cfg.bee.nvidia.modules),
                                 "strip": "strip --strip-debug"}
        assert sorted(own["outputs"]) == sorted(f"{m}.ko" for m in cfg.bee.nvidia.modules)
        for name, digest in own["outputs"].items():
            assert hashlib.sha256((cache_dir / flavor / name).read_bytes()).hexdigest() == digest
    for name, digest in manifest["outputs"].items():
        assert hashlib.sha256((cache_dir / name).read_bytes()).hexdigest() == digest
    assert not nv.work_dir_for(cfg, kver).exists(), "the scratch folder is removed after a success"
    assert not list(cache_dir.parent.glob(".nvidia-*")), "no temp folders left"


def test_the_gpu_list_comes_from_the_installers_supported_gpus_json(built):
    cfg, kver, cache_dir = built
    lines = (cache_dir / cfg.bee.nvidia.gpu_list).read_text().splitlines()
    assert lines[0].startswith(f"# NVIDIA {VERSION}: PCI device ids from supported-gpus/supported-gpus.json")
    # GH200 (two entries), B200 and RTX PRO 6000 Blackwell are kernelopen only; the V100 is 580.xx legacy;
    # the A100 and H100 are gsp_proprietary_supported too, so the proprietary modules drive them.
    # The V100 entry says "kernelopen" too, as legacy entries of the real file do: legacy wins.
    assert lines[1:] == ["0x2342 open", "0x2901 open", "0x2bb5 open", "0x1db4 legacy 580.xx"]
    assert {chip["devid"] for chip in SUPPORTED_GPUS["chips"]} >= {"0x20B0", "0x2330"}


@pytest.mark.parametrize("text, problem", [
    ("{", "JSONDecodeError"), ('{"gpus": []}', "KeyError"), ('{"chips": 7}', "TypeError"),
])
def test_a_garbled_gpu_list_is_one_line(tmp_path, text, problem):
    (tmp_path / "supported-gpus").mkdir()
    (tmp_path / "supported-gpus" / "supported-gpus.json").write_text(text)
    expected = rf"supported-gpus.json is not NVIDIA's GPU list \({problem}: .*check bee.nvidia.version$"
    with pytest.raises(nv.NvidiaBuildError, match=expected):
        nv.gpu_support_text(tmp_path, VERSION)


def test_an_installer_without_a_gpu_list_gives_the_header_alone(tmp_path):
    lines = nv.gpu_support_text(tmp_path, VERSION).splitlines()
    assert len(lines) == 2 and lines[1] == "# the installer has no supported-gpus/supported-gpus.json"


def test_second_run_is_a_cache_hit_running_nothing(built, server, monkeypatch, tmp_path):
    cfg, kver, cache_dir = built
    requests_before = len(server.requests)
    installer = nv.installer_path(cfg)
    hidden = installer.rename(tmp_path / "hidden.run")  # the cache hit does not even need the installer
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sh, make or strip to run
    try:
        assert nv.build(cfg, kver, headers=Path("/nonexistent"), progress=False) == cache_dir
    finally:
        hidden.rename(installer)
    assert len(server.requests) == requests_before, "a cache hit makes no request"


def test_main_builds_and_installs_into_an_overlay(built, tmp_path, capsys):
    cfg, kver, cache_dir = built
    overlay = tmp_path / "overlay"
    assert nv.main(["--overlay", str(overlay)], cfg=cfg) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(cache_dir)
    written = [Path(line) for line in lines[1:]]
    assert written and all(p.is_relative_to(overlay) and (p.is_file() or p.is_symlink()) for p in written)


def test_install_into_overlay_uses_the_live_system_paths(built, tmp_path):
    cfg, kver, cache_dir = built
    live = cfg.bee.live
    overlay = tmp_path / "overlay"
    written = nv.install_into_overlay(cache_dir, overlay, cfg, kver)

    modules_dir = overlay / live.nvidia_modules_dir.lstrip("/") / kver
    firmware_dir = overlay / live.firmware_dir.lstrip("/") / "nvidia" / VERSION
    bin_dir, lib_dir = overlay / live.bin_dir.lstrip("/"), overlay / live.lib_dir.lstrip("/")
    expected = {modules_dir / flavor / f"{m}.ko" for m in cfg.bee.nvidia.modules for flavor in ("proprietary",
                                                                                                  "open")}
    expected |= {modules_dir / cfg.bee.nvidia.gpu_list}
    expected |= {firmware_dir / "gsp_ga10x.bin", firmware_dir / "gsp_tu10x.bin"}
    expected |= {bin_dir / "nvidia-smi", bin_dir / "nvidia-modprobe"}
    expected |= {lib_dir / f"libnvidia-ml.so.{VERSION}", lib_dir / "libnvidia-ml.so.1"}
    expected |= {lib_dir / name for name in cfg.bee.nvidia.compat_links}
    assert set(written) == expected
    link = lib_dir / "libnvidia-ml.so.1"
    assert link.is_symlink() and os.readlink(link) == f"libnvidia-ml.so.{VERSION}" and link.is_file()
    assert stat.S_IMODE((bin_dir / "nvidia-smi").stat().st_mode) == 0o755
    for flavor in ("proprietary", "open"):
        module = modules_dir / flavor / "nvidia.ko"
        assert stat.S_IMODE(module.stat().st_mode) == 0o644
        assert module.read_bytes() == (cache_dir / flavor / "nvidia.ko").read_bytes()
    gpu_list = modules_dir / cfg.bee.nvidia.gpu_list
    assert gpu_list.read_text() == (cache_dir / cfg.bee.nvidia.gpu_list).read_text()
    assert not (overlay / "lib" / "modules").exists(), "modloop hides /lib/modules"
    assert not (overlay / "lib" / "firmware").exists(), "anything in /lib/firmware breaks modloop's link"
    assert not list(overlay.rglob(".*.tmp"))


def test_install_into_overlay_ships_only_the_configured_flavor(built, tmp_path):
    cfg, kver, cache_dir = built
    cfg.bee.nvidia.flavor = "open"
    try:
        written = nv.install_into_overlay(cache_dir, tmp_path, cfg, kver)
    finally:
        cfg.bee.nvidia.flavor = "auto"
    modules_dir = tmp_path / cfg.bee.live.nvidia_modules_dir.lstrip("/") / kver
    assert sorted(p.name for p in modules_dir.iterdir()) == sorted(["open", cfg.bee.nvidia.gpu_list])
    assert len([p for p in written if p.suffix == ".ko"]) == len(cfg.bee.nvidia.modules)


def test_install_into_overlay_refuses_a_build_for_another_kernel(built, tmp_path):
    cfg, kver, cache_dir = built
    with pytest.raises(nv.NvidiaBuildError, match="for kernel 9.9.9-0-lts; run python scripts/build_nvidia"):
        nv.install_into_overlay(cache_dir, tmp_path, cfg, "9.9.9-0-lts")


def test_a_corrupted_cached_file_is_rebuilt(tmp_path, server, debian_headers, capfd):
    cfg = project(tmp_path / "p", server, debian_headers)
    kver, headers = debian_headers
    cache_dir = nv.build(cfg, kver, headers=headers, progress=False)
    downloads = len(server.requests)
    module = cache_dir / "open" / "nvidia-uvm.ko"
    good = module.read_bytes()
    module.write_bytes(good[:-16] + b"\0" * 16)
    assert nv.cache_is_valid(cache_dir, nv.build_inputs(cfg, kver)), "the userland part is intact"
    assert not nv.cache_holds(cfg, kver, cache_dir)
    capfd.readouterr()

    assert nv.main(["--no-progress"], cfg=cfg) == 0
    out, err = capfd.readouterr()
    assert out == f"{cache_dir}\n", "the installer's and make's output go to stderr, even from the children"
    assert "LD [M]" in err, "make ran again"
    assert "nvidia-drm" not in err and "nvidia-peermem" not in err, "modules not shipped are not built"
    assert nv.cache_holds(cfg, kver, cache_dir)
    assert module.read_bytes()[-16:] != b"\0" * 16
    assert modinfo(module, "vermagic").split()[0] == kver
    assert len(server.requests) == downloads, "the verified installer in the download cache is reused"


def test_open_flavor_builds_kernel_open_with_optional_modules(tmp_path, server, debian_headers):
    cfg = project(tmp_path / "p", server, debian_headers, flavor="open", optional_modules=["nvidia-drm"])
    kver, headers = debian_headers
    cache_dir = nv.build(cfg, kver, headers=headers, progress=False)
    assert (cache_dir / "open" / "nvidia-drm.ko").is_file()
    assert not (cache_dir / "open" / "nvidia-peermem.ko").exists()
    assert not (cache_dir / "proprietary").exists()
    assert modinfo(cache_dir / "open" / "nvidia.ko", "description").endswith("built from kernel-open")
    assert json.loads((cache_dir / "open" / "manifest.json").read_text())["inputs"]["flavor"] == "open"


def test_a_failed_make_leaves_no_cache_and_keeps_the_scratch(tmp_path, server, debian_headers):
    cfg = project(tmp_path / "p", server, debian_headers)
    kver, _ = debian_headers
    with pytest.raises(nv.CommandError, match=r"building the NVIDIA modules .* failed \(exit 2\)"):
        nv.build(cfg, kver, headers=tmp_path / "no-headers", progress=False)
    cache_dir = nv.cache_dir_for(cfg, kver)
    assert not cache_dir.exists() and not list(cache_dir.parent.glob(".nvidia-*"))
    assert (nv.work_dir_for(cfg, kver) / "installer" / "kernel").is_dir(), "kept for debugging"


def test_an_installer_without_the_flavors_folder_says_which_flavor_to_use(tmp_path, server, debian_headers):
    cfg = project(tmp_path / "p", server, debian_headers, version="0.0.1")
    kver, headers = debian_headers
    with pytest.raises(nv.NvidiaBuildError, match=r"no kernel/ .*set bee.nvidia.flavor=open"):
        nv.build(cfg, kver, headers=headers, progress=False)
    assert not nv.cache_dir_for(cfg, kver).exists()


def test_the_script_runs_alone(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/build_nvidia_module.py",
         "--step", "headers", "--iso-kver", "6.12.1-0-lts", "--headers-root", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("build_nvidia_module: no kernel headers for 6.12.1-0-lts")
    assert result.stderr.count("\n") == 1


def readelf_needed(path):
    out = subprocess.run([tool("readelf"), "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def test_manifest_records_what_the_glibc_userland_needs(built):
    cfg, kver, cache_dir = built
    smi = cache_dir / "bin" / "nvidia-smi"
    needs = json.loads((cache_dir / "manifest.json").read_text())["needs"]
    assert needs["bin/nvidia-smi"] == {"interpreter": "ld-linux-x86-64.so.2", "needed": readelf_needed(smi)}
    assert "libdl.so.2" in needs["bin/nvidia-smi"]["needed"]
    assert needs["bin/nvidia-modprobe"] == {"interpreter": None, "needed": []}, "not an ELF: needs nothing"


@pytest.mark.parametrize("program", ["/bin/ls", "/usr/bin/make"])
def test_elf_dependencies_agree_with_readelf(program):
    assert nv.elf_dependencies(Path(program))["needed"] == readelf_needed(program)


def test_a_library_the_live_system_lacks_fails_the_step(built, tmp_path):
    cfg, kver, cache_dir = built
    links = dict(cfg.bee.nvidia.compat_links)
    for name in links:  # invoke merges an assigned {} into the old dict: delete the keys instead
        del cfg.bee.nvidia.compat_links[name]
    try:
        with pytest.raises(nv.NvidiaBuildError, match="bin/nvidia-smi needs libdl.so.2, which the live"):
            nv.build(cfg, kver, headers=Path("/nonexistent"), progress=False)
    finally:
        for name, target in links.items():
            cfg.bee.nvidia.compat_links[name] = target
    assert nv.build(cfg, kver, headers=Path("/nonexistent"), progress=False) == cache_dir


def test_overlay_gets_the_compat_links(built, tmp_path):
    cfg, kver, cache_dir = built
    nv.install_into_overlay(cache_dir, tmp_path, cfg, kver)
    lib_dir = tmp_path / cfg.bee.live.lib_dir.lstrip("/")
    for name, target in cfg.bee.nvidia.compat_links.items():
        link = os.readlink(lib_dir / name)
        assert not os.path.isabs(link), "an absolute link would point outside the overlay on the builder"
        assert os.path.normpath(os.path.join(cfg.bee.live.lib_dir, link)) == target


def test_extract_step_alone_leaves_the_extracted_installer(tmp_path, server, debian_headers, capfd):
    cfg = project(tmp_path / "p", server, debian_headers)
    assert nv.main(["--step", "extract"], cfg=cfg) == 0
    out, err = capfd.readouterr()
    extracted = Path(out.strip())
    assert out.count("\n") == 1 and extracted.is_relative_to(buildconfig.config_path(cfg, "build"))
    assert (extracted / "kernel" / "Makefile").is_file() and (extracted / "nvidia-smi").is_file()
    assert "stand-in nvidia-installer ran" not in err, "--extract-only must not run the installer"
    assert not list(extracted.parent.glob(".*.tmp"))


def test_debians_headers_name_the_compiler_this_builder_has(built, debian_headers):
    cfg, _, _ = built
    _, headers = debian_headers
    kernel = nv.kernel_compiler(headers)
    assert kernel and kernel.split()[0].startswith("gcc"), kernel
    assert nv.compiler_version(kernel) == nv.compiler_version(nv.builder_compiler())
    assert nv.check_compiler(cfg, headers) is False, "the same gcc: nothing to ignore"
