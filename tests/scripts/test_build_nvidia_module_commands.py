"""scripts/build_nvidia_module.py: the exact commands for NVIDIA's real installer and Alpine's apk (faked
with pytest-subprocess: they cannot run here), and the kernel checks against headers like Alpine's."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from scripts import build_nvidia_module as nv
from scripts import buildconfig

KVER = "6.12.58-0-lts"


@pytest.fixture
def cfg(config_copy):
    cfg = buildconfig.load_config(config_copy.parent)
    cfg.bee.nvidia.jobs = 3
    return cfg


def fake_headers(root, kver):
    """A headers folder like linux-lts-dev's: /usr/src/linux-headers-<kver> with its utsrelease.h."""
    headers = root / f"linux-headers-{kver}"
    (headers / "include" / "generated").mkdir(parents=True)
    (headers / "include" / "generated" / "utsrelease.h").write_text(f'#define UTS_RELEASE "{kver}"\n')
    return headers


# ---------------------------------------------------------------------------- the real installer's commands


@pytest.fixture
def cached_installer(cfg):
    """A file in the download cache whose sha256 is the pinned one: the build will not download."""
    data = b"stands for NVIDIA-Linux-x86_64.run"
    path = nv.installer_path(cfg)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    cfg.bee.nvidia.sha256 = hashlib.sha256(data).hexdigest()
    return path


def lay_out_installer(target, version):
    """What NVIDIA's installer extracts (the parts the build uses)."""
    for name in ("kernel", "kernel-open", "firmware"):
        (target / name).mkdir(parents=True)
    for name in ("nvidia-smi", "nvidia-modprobe", f"libnvidia-ml.so.{version}", "firmware/gsp_ga10x.bin",
                 "firmware/gsp_tu10x.bin"):
        (target / name).write_bytes(name.encode())


@pytest.mark.parametrize(("flavor", "folder"), [("proprietary", "kernel"), ("open", "kernel-open")])
def test_exact_commands_for_nvidias_installer(fp, cfg, cached_installer, tmp_path, flavor, folder):
    cfg.bee.nvidia.flavor = flavor
    version = cfg.bee.nvidia.version
    headers = fake_headers(tmp_path / "usr-src", KVER)
    work = nv.work_dir_for(cfg, KVER)
    extracted = work / "installer"
    staging = nv.cache_dir_for(cfg, KVER).with_name(f".nvidia-{version}-{KVER}.tmp") / "modules"
    modules = ["nvidia", "nvidia-modeset", "nvidia-uvm"]

    extract = ["sh", str(cached_installer), "--extract-only", "--target", str(work / ".installer.tmp")]
    make = ["make", "-C", str(extracted / folder), "-j3", "modules", f"SYSSRC={headers}"]
    strip = ["strip", "--strip-debug", *(str(staging / f"{m}.ko") for m in modules)]
    recorders = [
        fp.register(extract, callback=lambda _: lay_out_installer(work / ".installer.tmp", version)),
        fp.register(make, callback=lambda _: [
            (extracted / folder / f"{m}.ko").write_bytes(m.encode()) for m in [*modules, "nvidia-drm"]
        ]),
        fp.register(strip),
    ]

    cache_dir = nv.build(cfg, KVER, headers=headers, progress=False)

    assert list(fp.calls) == [extract, make, strip]
    for recorder in recorders:
        kwargs = recorder.calls[0].kwargs
        assert kwargs["stdout"] == 2, "the tools' output goes to stderr; stdout stays clean"
        assert kwargs.get("cwd") is None and kwargs.get("env") is None
    assert sorted(p.name for p in (cache_dir / "modules").iterdir()) == sorted(f"{m}.ko" for m in modules)
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    assert manifest["inputs"]["flavor"] == flavor
    assert "bin/nvidia-smi" in manifest["outputs"] and "firmware/gsp_tu10x.bin" in manifest["outputs"]

    fp.allow_unregistered(False)
    assert nv.build(cfg, KVER, headers=headers, progress=False) == cache_dir  # a hit: no command at all
    assert len(fp.calls) == 3


def test_jobs_default_to_one_per_cpu(cfg):
    cfg.bee.nvidia.jobs = 0
    assert nv.jobs_count(cfg) == (os.cpu_count() or 1)


def test_a_failing_extraction_leaves_nothing_under_the_target(fp, tmp_path):
    installer, target = tmp_path / "x.run", tmp_path / "out"
    fp.register(["sh", str(installer), "--extract-only", "--target", str(tmp_path / ".out.tmp")],
                callback=lambda _: (tmp_path / ".out.tmp").mkdir(), returncode=1)
    with pytest.raises(nv.CommandError, match=r"extracting x.run failed \(exit 1\)"):
        nv.extract(installer, target)
    assert not target.exists()


def test_a_missing_module_names_the_setting_to_change(fp, tmp_path):
    kernel_dir = tmp_path / "kernel"
    kernel_dir.mkdir()
    (kernel_dir / "nvidia.ko").write_bytes(b"ko")
    with pytest.raises(nv.NvidiaBuildError, match="no nvidia-peermem.ko .*remove nvidia-peermem"):
        nv.collect_modules(kernel_dir, ["nvidia", "nvidia-peermem"], tmp_path / "out")


# --------------------------------------------------------------------------------- the kernel the ISO boots


def apk_command(cfg):
    return [
        "apk", "--update-cache", "--repositories-file", "/dev/null",
        "--repository", buildconfig.repository_urls(cfg)[0], "--arch", cfg.bee.alpine.arch,
        "--cache-dir", str(buildconfig.config_path(cfg, "build") / "apk-cache"),
        "search", "--exact", f"linux-{cfg.bee.kernel.flavor}",
    ]


def test_iso_kernel_release_asks_apk_for_the_configured_repository(fp, cfg):
    fp.register(apk_command(cfg), stdout="linux-lts-6.12.58-r0\n")
    assert nv.iso_kernel_release(cfg) == KVER
    assert apk_command(cfg)[5].endswith(f"/{cfg.bee.alpine.branch}/main")


def test_iso_kernel_release_follows_the_configured_flavor(fp, cfg):
    cfg.bee.kernel.flavor = "virt"
    fp.register(apk_command(cfg), stdout="linux-virt-6.12.60-r2\n")
    assert nv.iso_kernel_release(cfg) == "6.12.60-2-virt"


def test_a_repository_kernel_of_another_series_is_an_error(fp, cfg):
    fp.register(apk_command(cfg), stdout="linux-lts-6.18.2-r0\n")
    with pytest.raises(nv.KernelMismatchError, match="6.18.2-0-lts, not of series 6.12"):
        nv.iso_kernel_release(cfg)


def test_apk_failing_is_a_clear_error(fp, cfg):
    fp.register(apk_command(cfg), stderr="fetch failed\nERROR: unable to select packages\n", returncode=1)
    with pytest.raises(nv.CommandError, match="failed: ERROR: unable to select packages; check the network"):
        nv.iso_kernel_release(cfg)


def test_a_configured_release_needs_no_apk(fp, cfg):
    cfg.bee.nvidia.kernel_release = "6.12.1-0-lts"
    fp.allow_unregistered(False)
    assert nv.iso_kernel_release(cfg) == "6.12.1-0-lts"
    assert list(fp.calls) == []


def test_without_apk_the_error_says_what_to_do(cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(nv.NvidiaBuildError, match="apk not found.*--iso-kver"):
        nv.iso_kernel_release(cfg)


# ---------------------------------------------------------------------------------------------- the headers


def test_find_headers_picks_the_configured_flavor_and_series(cfg, tmp_path):
    for kver in ("6.6.100-0-lts", "6.12.58-0-virt", "6.120.1-0-lts", KVER):
        fake_headers(tmp_path, kver)
    cfg.bee.nvidia.headers_root = str(tmp_path)
    assert nv.find_headers(cfg) == (KVER, tmp_path / f"linux-headers-{KVER}")
    older = "6.6.100-0-lts"
    assert nv.find_headers(cfg, older) == (older, tmp_path / f"linux-headers-{older}")


def test_find_headers_reads_the_release_from_utsrelease(cfg, tmp_path):
    headers = fake_headers(tmp_path, KVER)
    (headers / "include" / "generated" / "utsrelease.h").write_text('#define UTS_RELEASE "6.12.58-1-lts"\n')
    assert nv.find_headers(cfg, headers_root=tmp_path)[0] == "6.12.58-1-lts"


def test_no_headers_says_which_package_to_install(cfg, tmp_path):
    with pytest.raises(nv.HeadersError, match="no linux-headers-6.12.*-lts in .*apk add linux-lts-dev"):
        nv.find_headers(cfg, headers_root=tmp_path)
    with pytest.raises(nv.HeadersError, match=f"no kernel headers for {KVER}"):
        nv.find_headers(cfg, KVER, headers_root=tmp_path)


def test_several_headers_ask_for_a_choice(cfg, tmp_path):
    fake_headers(tmp_path, KVER)
    fake_headers(tmp_path, "6.12.59-0-lts")
    with pytest.raises(nv.HeadersError, match="several kernel headers .*--kver"):
        nv.find_headers(cfg, headers_root=tmp_path)


def test_unprepared_headers_are_an_error(cfg, tmp_path):
    (tmp_path / f"linux-headers-{KVER}").mkdir()
    with pytest.raises(nv.HeadersError, match="utsrelease.h is missing"):
        nv.find_headers(cfg, headers_root=tmp_path)


def test_check_headers_match_names_both_versions():
    nv.check_headers_match(KVER, KVER)
    with pytest.raises(nv.KernelMismatchError) as error:
        nv.check_headers_match("6.12.57-0-lts", KVER)
    assert "6.12.57-0-lts" in str(error.value) and KVER in str(error.value)
    assert "invalid module format" in str(error.value)


def test_main_headers_step_reports_a_mismatch_with_both_versions(cfg, tmp_path, capsys):
    fake_headers(tmp_path, "6.12.57-0-lts")
    code = nv.main(["--step", "headers", "--iso-kver", KVER, "--headers-root", str(tmp_path)], cfg=cfg)
    err = capsys.readouterr().err
    assert code == 1
    assert "headers are for 6.12.57-0-lts but the ISO boots 6.12.58-0-lts" in err and err.count("\n") == 1


def test_main_headers_step_prints_the_match(fp, cfg, tmp_path, capsys):
    headers = fake_headers(tmp_path, KVER)
    cfg.bee.nvidia.headers_root = str(tmp_path)
    fp.register(apk_command(cfg), stdout="linux-lts-6.12.58-r0\n")
    assert nv.main(["--step", "headers"], cfg=cfg) == 0
    assert capsys.readouterr().out == f"{KVER}\t{headers}\n"


def test_every_default_comes_from_the_configuration(cfg):
    settings = cfg.bee.nvidia
    settings.version, settings.flavor, settings.kernel_release, settings.jobs = "1.2.3", "open", KVER, 7
    args = nv.parse_args(cfg, [])
    assert (args.version, args.flavor, args.iso_kver, args.jobs) == ("1.2.3", "open", KVER, 7)
    assert (args.sha256, args.url) == (settings.sha256, settings.url)
    assert str(args.headers_root) == settings.headers_root
    assert args.cache_root == buildconfig.config_path(cfg, "dist")


def test_find_headers_defaults_to_the_configured_release(cfg, tmp_path):
    fake_headers(tmp_path, KVER)
    headers = fake_headers(tmp_path, "6.1.0-56-amd64")  # another flavor, as tests use Debian's
    cfg.bee.nvidia.kernel_release = "6.1.0-56-amd64"
    assert nv.find_headers(cfg, headers_root=tmp_path) == ("6.1.0-56-amd64", headers)


def test_iso_builds_check_with_a_configured_release(cfg, tmp_path):
    """What scripts/iso_build.py does: find_headers(cfg), then check against iso_kernel_release(cfg)."""
    fake_headers(tmp_path, KVER)
    cfg.bee.nvidia.headers_root, cfg.bee.nvidia.kernel_release = str(tmp_path), KVER
    kver, _ = nv.find_headers(cfg)
    nv.check_headers_match(kver, nv.iso_kernel_release(cfg))
    assert kver == KVER
