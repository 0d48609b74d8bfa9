"""scripts/build_nvidia_module.py: the exact commands for NVIDIA's real installer and Alpine's apk (faked
with pytest-subprocess: they cannot run here), and the kernel checks against headers like Alpine's."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

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
        assert kwargs["stdin"] == subprocess.DEVNULL and kwargs["start_new_session"] is True
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
        nv.extract(installer, target, timeout=60)
    assert not target.exists()


def test_a_missing_module_names_the_setting_to_change(fp, tmp_path):
    kernel_dir = tmp_path / "kernel"
    kernel_dir.mkdir()
    (kernel_dir / "nvidia.ko").write_bytes(b"ko")
    with pytest.raises(nv.NvidiaBuildError, match="no nvidia-peermem.ko .*remove nvidia-peermem"):
        nv.collect_modules(kernel_dir, ["nvidia", "nvidia-peermem"], tmp_path / "out", timeout=60)


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


# ------------------------------------------------------------------------ hung and failing tools, a full disk


def test_a_hung_tool_is_stopped_with_everything_it_started(tmp_path, monkeypatch):
    monkeypatch.setattr(nv, "STOP_GRACE", 1.0)
    pid_file = tmp_path / "child.pid"
    hung = ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"]
    started = time.monotonic()
    with pytest.raises(nv.CommandError) as error:
        nv.run_command(hung, what="building the NVIDIA modules", timeout=0.5)
    assert time.monotonic() - started < 10
    message = str(error.value)
    assert message.startswith("building the NVIDIA modules did not finish in 0.5 s and was stopped: sh -c")
    assert "bee.nvidia.tool_timeout" in message and "\n" not in message
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(child), "the tool's own children are stopped too"


def test_an_interrupted_build_stops_the_tool_it_was_waiting_for(tmp_path, monkeypatch):
    """The tool runs in its own session, so Ctrl-C reaches only us: we must stop it ourselves."""
    monkeypatch.setattr(nv, "STOP_GRACE", 1.0)
    pid_file = tmp_path / "child.pid"
    real_wait = subprocess.Popen.wait
    interrupted = []

    def wait_then_ctrl_c(process, timeout=None):
        if not interrupted:
            interrupted.append(True)
            while not (pid_file.exists() and pid_file.read_text().endswith("\n")):
                time.sleep(0.02)
            raise KeyboardInterrupt
        return real_wait(process, timeout=timeout)

    monkeypatch.setattr(subprocess.Popen, "wait", wait_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        nv.run_command(["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"], what="make", timeout=60)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(child)


def process_alive(pid):
    """True while `pid` runs (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_tool_that_reads_its_input_cannot_hang_the_build():
    """Our own stdin is an open pipe nobody writes to: a tool reading it would wait forever."""
    read_end, write_end = os.pipe()
    saved = os.dup(0)
    os.dup2(read_end, 0)
    try:
        started = time.monotonic()
        nv.run_command(["sh", "-c", "cat"], what="a tool asking a question", timeout=10)
        assert time.monotonic() - started < 5, "stdin is /dev/null: the read ends at once"
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)


def test_a_missing_tool_says_to_install_it():
    expected = "^stripping: no-such-strip not found; install it on the builder$"
    with pytest.raises(nv.CommandError, match=expected):
        nv.run_command(["no-such-strip"], what="stripping", timeout=5)


def test_garbage_from_apk_is_one_clear_line(fp, cfg):
    fp.register(apk_command(cfg), stdout="<html><body>Captive portal</body></html>\n")
    with pytest.raises(nv.NvidiaBuildError) as error:
        nv.iso_kernel_release(cfg)
    message = str(error.value)
    assert message.startswith("apk named no linux-lts-<version>-r<N> in the configured repository")
    assert "it printed '<html><body>Captive portal</body></html>'" in message
    assert "check bee.alpine" in message and "\n" not in message


def test_silence_from_apk_is_one_clear_line(fp, cfg):
    fp.register(apk_command(cfg), stdout="")
    with pytest.raises(nv.NvidiaBuildError, match=r"\(it printed nothing\); check bee.alpine"):
        nv.iso_kernel_release(cfg)


def test_a_hung_apk_is_stopped(cfg, tmp_path, monkeypatch):
    fake_apk = tmp_path / "bin" / "apk"
    fake_apk.parent.mkdir()
    fake_apk.write_text("#!/bin/sh\nexec sleep 300\n")
    fake_apk.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_apk.parent}{os.pathsep}{os.environ['PATH']}")
    cfg.bee.nvidia.apk_timeout = 0.5
    expected = r"^apk --update-cache .* gave no answer in 0.5 s and was stopped"
    with pytest.raises(nv.CommandError, match=expected):
        nv.iso_kernel_release(cfg)


@pytest.fixture
def faked_real_installer(fp, cfg, cached_installer, tmp_path):
    """The real installer's extract and make faked with fp (as in the exact-commands test), proprietary."""
    work = nv.work_dir_for(cfg, KVER)
    modules = ["nvidia", "nvidia-modeset", "nvidia-uvm"]
    headers = fake_headers(tmp_path / "usr-src", KVER)
    extract = ["sh", str(cached_installer), "--extract-only", "--target", str(work / ".installer.tmp")]
    make = ["make", "-C", str(work / "installer" / "kernel"), "-j3", "modules", f"SYSSRC={headers}"]

    def register(times=1):
        for _ in range(times):
            fp.register(extract, callback=lambda _: lay_out_installer(work / ".installer.tmp",
                                                                      cfg.bee.nvidia.version))
            fp.register(make, callback=lambda _: [
                (work / "installer" / "kernel" / f"{m}.ko").write_bytes(m.encode()) for m in modules])
            fp.register(["strip", fp.any()])
    return headers, register


def test_a_full_disk_while_collecting_leaves_no_cache_and_the_next_run_builds(
    cfg, faked_real_installer, monkeypatch
):
    headers, register = faked_real_installer
    register(times=2)
    real_copy2, copies = nv.shutil.copy2, []

    def copy2_on_a_full_disk(source, target):
        copies.append(target)
        if len(copies) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        return real_copy2(source, target)

    monkeypatch.setattr(nv.shutil, "copy2", copy2_on_a_full_disk)
    with pytest.raises(nv.NvidiaBuildError) as error:
        nv.build(cfg, KVER, headers=headers, progress=False)
    message = str(error.value)
    assert message.startswith(f"No space left on device: {copies[1]}; free some space there")
    assert "\n" not in message
    cache_dir = nv.cache_dir_for(cfg, KVER)
    assert not cache_dir.exists() and not list(cache_dir.parent.glob(".nvidia-*")), "no half-made cache"

    monkeypatch.setattr(nv.shutil, "copy2", real_copy2)
    assert nv.build(cfg, KVER, headers=headers, progress=False) == cache_dir
    assert nv.cache_is_valid(cache_dir, nv.build_inputs(cfg, KVER))


def test_a_full_disk_while_extracting_leaves_nothing_under_the_final_name(fp, cfg, cached_installer,
                                                                         tmp_path):
    work = nv.work_dir_for(cfg, KVER)
    partial = work / ".installer.tmp"
    fp.register(["sh", str(cached_installer), "--extract-only", "--target", str(partial)],
                callback=lambda _: (partial / "kernel").mkdir(parents=True),
                stderr="tar: write error: No space left on device\n", returncode=1)
    expected = r"^extracting .*\.run failed \(exit 1\): .*its output is above$"
    with pytest.raises(nv.CommandError, match=expected):
        nv.build(cfg, KVER, headers=fake_headers(tmp_path / "src", KVER), progress=False)
    assert not (work / "installer").exists() and not nv.cache_dir_for(cfg, KVER).exists()


def test_a_main_run_on_an_unwritable_cache_is_one_line(cfg, cached_installer, tmp_path, capsys, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(nv.fileops, "remove_path", refuse)
    headers = fake_headers(tmp_path / "src", KVER)
    code = nv.main(["--iso-kver", KVER, "--headers-root", str(headers.parent), "--no-progress"], cfg=cfg)
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("build_nvidia_module: Permission denied: ") and "permissions" in err


# ----------------------------------------------------------------------------------- the manifest decides


def test_any_changed_input_or_output_invalidates_the_cache(cfg, tmp_path):
    cache_dir = tmp_path / "cache"
    (cache_dir / "modules").mkdir(parents=True)
    (cache_dir / "modules" / "nvidia.ko").write_bytes(b"module")
    inputs = nv.build_inputs(cfg, KVER)
    nv.write_manifest(cache_dir, inputs)
    assert nv.cache_is_valid(cache_dir, inputs)
    for key in inputs:
        assert not nv.cache_is_valid(cache_dir, {**inputs, key: "other"}), key
    cfg.bee.nvidia.flavor = "open"
    assert not nv.cache_is_valid(cache_dir, nv.build_inputs(cfg, KVER)), "open vs proprietary"
    (cache_dir / "modules" / "nvidia.ko").write_bytes(b"modulX")
    assert not nv.cache_is_valid(cache_dir, inputs)
    (cache_dir / "modules" / "nvidia.ko").unlink()
    assert not nv.cache_is_valid(cache_dir, inputs)
    (cache_dir / "manifest.json").write_text("{not json")
    assert not nv.cache_is_valid(cache_dir, inputs)


def test_kernel_for_iso_is_the_one_checked_answer(fp, cfg, tmp_path):
    cfg.bee.nvidia.headers_root = str(tmp_path)
    fake_headers(tmp_path, "6.12.57-0-lts")
    fp.register(apk_command(cfg), stdout="linux-lts-6.12.58-r0\n")
    with pytest.raises(nv.KernelMismatchError, match="for 6.12.57-0-lts but the ISO boots 6.12.58-0-lts"):
        nv.kernel_for_iso(cfg)
    headers = fake_headers(tmp_path, KVER)  # now both are there: the ISO's is chosen, not "several"
    fp.register(apk_command(cfg), stdout="linux-lts-6.12.58-r0\n")
    assert nv.kernel_for_iso(cfg) == (KVER, headers)
