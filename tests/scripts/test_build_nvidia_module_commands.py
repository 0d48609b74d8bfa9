"""scripts/build_nvidia_module.py: the exact commands for NVIDIA's real installer (faked with
pytest-subprocess: it cannot run here), hung and failing tools, a full disk, and the manifest."""

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
from tests.scripts.iso_build_support import KVER, apk_command, fake_headers


@pytest.fixture
def cfg(config_copy):
    cfg = buildconfig.load_config(config_copy.parent)
    cfg.bee.nvidia.jobs = 3
    return cfg


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


MODULES = ["nvidia", "nvidia-modeset", "nvidia-uvm"]
SHIPPED = "NV_KERNEL_MODULES=nvidia nvidia-modeset nvidia-uvm"   # nvidia-drm, nvidia-peermem: not built


@pytest.mark.parametrize(("flavor", "folders"), [
    ("proprietary", {"proprietary": "kernel"}), ("open", {"open": "kernel-open"}),
    ("auto", {"proprietary": "kernel", "open": "kernel-open"}),
])
def test_exact_commands_for_nvidias_installer(fp, cfg, cached_installer, tmp_path, flavor, folders):
    cfg.bee.nvidia.flavor = flavor
    version = cfg.bee.nvidia.version
    headers = fake_headers(tmp_path / "usr-src", KVER)   # no compile.h: no compiler to compare
    work = nv.work_dir_for(cfg, KVER)
    extracted = work / "installer"
    staging = nv.cache_dir_for(cfg, KVER).with_name(f".nvidia-{version}-{KVER}.tmp")

    extract = ["sh", str(cached_installer), "--extract-only", "--target", str(work / ".installer.tmp")]
    expected = [extract]
    recorders = [fp.register(extract, callback=lambda _: lay_out_installer(work / ".installer.tmp", version))]
    for name, folder in folders.items():
        make = ["make", "-C", str(extracted / folder), "-j3", "modules", f"SYSSRC={headers}", SHIPPED]
        strip = ["strip", "--strip-debug", *(str(staging / name / f"{m}.ko") for m in MODULES)]
        recorders.append(fp.register(make, callback=lambda _, folder=folder: [
            (extracted / folder / f"{m}.ko").write_bytes(f"{folder}/{m}".encode()) for m in MODULES]))
        recorders.append(fp.register(strip))
        expected += [make, strip]

    cache_dir = nv.build(cfg, KVER, headers=headers, progress=False)

    assert list(fp.calls) == expected
    for recorder in recorders:
        kwargs = recorder.calls[0].kwargs
        assert kwargs["stdout"] == 2, "the tools' output goes to stderr; stdout stays clean"
        assert kwargs["stdin"] == subprocess.DEVNULL and kwargs["start_new_session"] is True
        assert kwargs.get("cwd") is None and kwargs.get("env") is None
    for name, folder in folders.items():
        assert sorted(p.name for p in (cache_dir / name).glob("*.ko")) == sorted(f"{m}.ko" for m in MODULES)
        assert (cache_dir / name / "nvidia.ko").read_bytes() == f"{folder}/nvidia".encode()
        assert json.loads((cache_dir / name / "manifest.json").read_text())["inputs"]["flavor"] == name
    assert sorted(p.name for p in cache_dir.iterdir() if p.is_dir()) == sorted([*folders, "bin", "firmware",
                                                                                "lib"])
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    assert "bin/nvidia-smi" in manifest["outputs"] and "firmware/gsp_tu10x.bin" in manifest["outputs"]
    assert cfg.bee.nvidia.gpu_list in manifest["outputs"]

    fp.allow_unregistered(False)
    assert nv.build(cfg, KVER, headers=headers, progress=False) == cache_dir  # a hit: no command at all
    assert len(fp.calls) == len(expected)


def compile_h(headers, compiler):
    (headers / "include" / "generated" / "compile.h").write_text(
        f'#define UTS_MACHINE "x86_64"\n#define LINUX_COMPILER "{compiler}, GNU ld (GNU Binutils) 2.44"\n')


ALPINE_GCC = "gcc (Alpine 14.2.0) 14.2.0"


def test_the_same_compiler_builds_without_ignoring_anything(fp, cfg, cached_installer, tmp_path):
    cfg.bee.nvidia.flavor = "proprietary"
    headers = fake_headers(tmp_path / "usr-src", KVER)
    compile_h(headers, ALPINE_GCC)
    fp.register(["gcc", "--version"], stdout=f"{ALPINE_GCC}\nCopyright (C) 2024 Free Software Foundation\n")
    assert nv.check_compiler(cfg, headers) is False


def test_another_compiler_fails_before_anything_is_downloaded(fp, cfg, tmp_path):
    headers = fake_headers(tmp_path / "usr-src", KVER)
    compile_h(headers, ALPINE_GCC)
    fp.register(["gcc", "--version"], stdout="gcc (Alpine 15.1.0) 15.1.0\n")
    fp.allow_unregistered(False)
    with pytest.raises(nv.NvidiaBuildError) as error:
        nv.build(cfg, KVER, headers=headers, progress=False)
    message = str(error.value)
    assert message.startswith(f"the kernel was built with {ALPINE_GCC} ({headers}/include/generated/"
                              "compile.h), but this builder's gcc is gcc (Alpine 15.1.0) 15.1.0;")
    assert message.endswith("set bee.nvidia.ignore_cc_mismatch: true to build anyway") and "\n" not in message
    assert list(fp.calls) == [["gcc", "--version"]]
    assert not nv.installer_path(cfg).exists()


def test_ignore_cc_mismatch_passes_it_to_make_with_a_warning(fp, cfg, cached_installer, tmp_path, capsys):
    cfg.bee.nvidia.flavor = "proprietary"
    cfg.bee.nvidia.ignore_cc_mismatch = True
    headers = fake_headers(tmp_path / "usr-src", KVER)
    compile_h(headers, ALPINE_GCC)
    work = nv.work_dir_for(cfg, KVER)
    fp.register(["gcc", "--version"], stdout="gcc (Alpine 15.1.0) 15.1.0\n")
    fp.register(["sh", str(cached_installer), "--extract-only", "--target", str(work / ".installer.tmp")],
                callback=lambda _: lay_out_installer(work / ".installer.tmp", cfg.bee.nvidia.version))
    make = ["make", "-C", str(work / "installer" / "kernel"), "-j3", "modules", f"SYSSRC={headers}", SHIPPED,
            "IGNORE_CC_MISMATCH=1"]
    fp.register(make, callback=lambda _: [(work / "installer" / "kernel" / f"{m}.ko").write_bytes(b"ko")
                                          for m in MODULES])
    fp.register(["strip", fp.any()])
    nv.build(cfg, KVER, headers=headers, progress=False)
    assert make in list(fp.calls)
    assert capsys.readouterr().err == (
        f"build_nvidia_module: warning: the kernel was built with {ALPINE_GCC}, this builder has gcc (Alpine "
        "15.1.0) 15.1.0; building anyway with IGNORE_CC_MISMATCH=1 (bee.nvidia.ignore_cc_mismatch)\n")


def test_a_patch_release_of_the_kernels_gcc_is_the_same_compiler(fp, cfg, tmp_path):
    # NVIDIA's conftest.sh (cc_version_check) compares __GNUC__ and __GNUC_MINOR__ only.
    headers = fake_headers(tmp_path / "usr-src", KVER)
    compile_h(headers, ALPINE_GCC)
    fp.register(["gcc", "--version"], stdout="gcc (Alpine 14.2.1_git20250101) 14.2.1 20250101\n")
    assert nv.check_compiler(cfg, headers) is False


DEBIAN_GCC = "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"


def test_the_compiler_the_kernel_names_is_asked_and_used(fp, cfg, cached_installer, tmp_path):
    """Debian's kernel names gcc-12 (CONFIG_CC_VERSION_TEXT): that one is asked, and make gets CC=gcc-12."""
    cfg.bee.nvidia.flavor = "proprietary"
    headers = fake_headers(tmp_path / "usr-src", KVER)
    compile_h(headers, DEBIAN_GCC)
    (headers / "include/generated/autoconf.h").write_text(
        f'#define CONFIG_CC_IS_GCC 1\n#define CONFIG_CC_VERSION_TEXT "{DEBIAN_GCC}"\n'
        "#define CONFIG_GCC_VERSION 120200\n")
    fp.register(["gcc-12", "--version"], stdout=f"{DEBIAN_GCC}\n")
    work = nv.work_dir_for(cfg, KVER)
    fp.register(["sh", str(cached_installer), "--extract-only", "--target", str(work / ".installer.tmp")],
                callback=lambda _: lay_out_installer(work / ".installer.tmp", cfg.bee.nvidia.version))
    make = ["make", "-C", str(work / "installer" / "kernel"), "-j3", "modules", f"SYSSRC={headers}",
            "CC=gcc-12", SHIPPED]
    fp.register(make, callback=lambda _: [(work / "installer" / "kernel" / f"{m}.ko").write_bytes(b"ko")
                                          for m in MODULES])
    fp.register(["strip", fp.any()])
    fp.allow_unregistered(False)
    nv.build(cfg, KVER, headers=headers, progress=False)
    assert make in list(fp.calls) and ["gcc", "--version"] not in list(fp.calls)


@pytest.mark.parametrize(("line", "major_minor"), [
    (f"{ALPINE_GCC}, GNU ld (GNU Binutils) 2.44", ("14", "2")),
    (f"{DEBIAN_GCC}, GNU ld (GNU Binutils for Debian) 2.40", ("12", "2")),
    ("aarch64-linux-gcc.br_real (Buildroot 2020.08-14-ge5a2a90) 9.3.0, GNU ld (GNU Binutils) 2.33.1",
     ("9", "3")),   # an example NVIDIA's conftest.sh quotes
    ("gcc version 4.8", ("4", "8")),
    ("garbage", None),
])
def test_kernel_compiler_as_nvidia_reads_it(line, major_minor):
    assert nv.kernel_compiler_major_minor(line) == major_minor


@pytest.mark.parametrize(("line", "version"), [
    ("gcc (Alpine 14.2.0) 14.2.0", "14.2.0"),
    ("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", "12.2.0"),
    ("x86_64-linux-gnu-gcc-13 (Ubuntu 13.3.0-6ubuntu2~24.04) 13.3.0", "13.3.0"),
    ("clang version 19.1.7", "19.1.7"),
    ("garbage", None),
])
def test_compiler_versions(line, version):
    assert nv.compiler_version(line) == version


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


@pytest.fixture
def faked_real_installer(fp, cfg, cached_installer, tmp_path):
    """The real installer's extract and make faked with fp (as in the exact-commands test), proprietary."""
    cfg.bee.nvidia.flavor = "proprietary"
    work = nv.work_dir_for(cfg, KVER)
    modules = ["nvidia", "nvidia-modeset", "nvidia-uvm"]
    headers = fake_headers(tmp_path / "usr-src", KVER)
    extract = ["sh", str(cached_installer), "--extract-only", "--target", str(work / ".installer.tmp")]
    make = ["make", "-C", str(work / "installer" / "kernel"), "-j3", "modules", f"SYSSRC={headers}", SHIPPED]

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
    assert nv.cache_holds(cfg, KVER, cache_dir)


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
    cache_dir = tmp_path / "cache" / "proprietary"
    cache_dir.mkdir(parents=True)
    (cache_dir / "nvidia.ko").write_bytes(b"module")
    inputs = nv.flavor_inputs(cfg, KVER, "proprietary")
    nv.write_manifest(cache_dir, inputs)
    assert nv.cache_is_valid(cache_dir, inputs)
    for key in inputs:
        assert not nv.cache_is_valid(cache_dir, {**inputs, key: "other"}), key
    assert not nv.cache_is_valid(cache_dir, nv.flavor_inputs(cfg, KVER, "open")), "open vs proprietary"
    (cache_dir / "nvidia.ko").write_bytes(b"modulX")
    assert not nv.cache_is_valid(cache_dir, inputs)
    (cache_dir / "nvidia.ko").unlink()
    assert not nv.cache_is_valid(cache_dir, inputs)
    (cache_dir / "manifest.json").write_text("{not json")
    assert not nv.cache_is_valid(cache_dir, inputs)


def test_the_caches_own_manifest_leaves_the_flavors_to_theirs(cfg, tmp_path):
    cache_dir = tmp_path / "cache"
    (cache_dir / "open").mkdir(parents=True)
    (cache_dir / "open" / "nvidia.ko").write_bytes(b"module")
    (cache_dir / "firmware").mkdir()
    (cache_dir / "firmware" / "gsp_ga10x.bin").write_bytes(b"gsp")
    nv.write_manifest(cache_dir, nv.build_inputs(cfg, KVER), exclude=("proprietary", "open"))
    outputs = json.loads((cache_dir / "manifest.json").read_text())["outputs"]
    assert list(outputs) == ["firmware/gsp_ga10x.bin"]
    cfg.bee.nvidia.flavor = "open"
    assert not nv.cache_holds(cfg, KVER, cache_dir), "the open folder has no manifest of its own"
    nv.write_manifest(cache_dir / "open", nv.flavor_inputs(cfg, KVER, "open"))
    assert nv.cache_holds(cfg, KVER, cache_dir)
    cfg.bee.nvidia.flavor = "auto"
    assert not nv.cache_holds(cfg, KVER, cache_dir), "auto needs the proprietary folder too"


# ------------------------------------------------------------------------------------------ the command line


def test_extract_step_and_build_share_one_extraction(fp, cfg, cached_installer, tmp_path, capsys):
    cfg.bee.nvidia.flavor = "proprietary"
    headers = fake_headers(tmp_path / "usr-src", KVER)
    work = nv.work_dir_for(cfg, KVER)
    extract = ["sh", str(cached_installer), "--extract-only", "--target", str(work / ".installer.tmp")]
    version = cfg.bee.nvidia.version
    fp.register(extract, callback=lambda _: lay_out_installer(work / ".installer.tmp", version))
    fp.register(["make", fp.any()], callback=lambda _: [
        (work / "installer" / "kernel" / f"{m}.ko").write_bytes(b"ko") for m in MODULES])
    fp.register(["strip", fp.any()])
    args = ["--iso-kver", KVER, "--headers-root", str(headers.parent), "--no-progress"]
    assert nv.main(["--step", "extract", *args], cfg=cfg) == 0
    assert capsys.readouterr().out == f"{work / 'installer'}\n"
    assert (work / nv.EXTRACTED_STAMP).read_text() == f"{cfg.bee.nvidia.sha256}\n"
    assert nv.main(args, cfg=cfg) == 0
    assert fp.call_count(extract) == 1, "the build compiled in the extraction --step extract made"
    assert capsys.readouterr().out == f"{nv.cache_dir_for(cfg, KVER)}\n"


def test_a_failed_builds_leftovers_are_not_built_on_again(fp, cfg, cached_installer, tmp_path):
    cfg.bee.nvidia.flavor = "proprietary"
    headers = fake_headers(tmp_path / "usr-src", KVER)
    work = nv.work_dir_for(cfg, KVER)
    extract = ["sh", str(cached_installer), "--extract-only", "--target", str(work / ".installer.tmp")]
    version = cfg.bee.nvidia.version
    fp.register(extract, callback=lambda _: lay_out_installer(work / ".installer.tmp", version))
    fp.register(extract, callback=lambda _: lay_out_installer(work / ".installer.tmp", version))

    def half_built(_):
        (work / "installer" / "kernel" / "nvidia.o").write_bytes(b"an object of the failed build")
    fp.register(["make", fp.any()], returncode=2, stderr="make: *** [nvidia.o] Error 1\n",
                callback=half_built)
    fp.register(["make", fp.any()], callback=lambda _: [
        (work / "installer" / "kernel" / f"{m}.ko").write_bytes(b"ko") for m in MODULES])
    fp.register(["strip", fp.any()])
    with pytest.raises(nv.NvidiaBuildError):
        nv.build(cfg, KVER, headers=headers, progress=False)
    assert (work / "installer" / "kernel" / "nvidia.o").exists(), "kept for debugging"
    assert not (work / nv.EXTRACTED_STAMP).exists()
    nv.build(cfg, KVER, headers=headers, progress=False)
    assert fp.call_count(extract) == 2, "the second build extracted afresh"


def test_an_extraction_of_another_installer_is_not_reused(fp, cfg, cached_installer, tmp_path):
    work = nv.work_dir_for(cfg, KVER)
    (work / "installer" / "kernel").mkdir(parents=True)
    (work / nv.EXTRACTED_STAMP).write_text("0" * 64 + "\n")
    extract = ["sh", str(cached_installer), "--extract-only", "--target", str(work / ".installer.tmp")]
    version = cfg.bee.nvidia.version
    fp.register(extract, callback=lambda _: lay_out_installer(work / ".installer.tmp", version))
    assert nv.extract_for_build(cfg, KVER, cached_installer) == work / "installer"
    assert fp.call_count(extract) == 1 and (work / "installer" / "firmware").is_dir()


@pytest.mark.parametrize("argv, complaint", [
    (["--print-sha256", "--step", "download"], "--print-sha256 only prints NVIDIA's published sum; it takes "
                                               "no --step download"),
    (["--overlay", "/tmp/o", "--step", "extract"], "--overlay installs a finished build; it takes no --step "
                                                   "extract"),
    (["--kver", "6.12.58-0-lts"], "unrecognized arguments: --kver 6.12.58-0-lts"),
    (["--print-sha256", "--overlay", "/tmp/o"], "it takes no --overlay"),
    (["--print-sha256", "--headers", "/usr/src/h", "--flavor", "open"], "it takes no --headers, --flavor"),
])
def test_arguments_that_would_be_ignored_are_refused(cfg, capsys, argv, complaint):
    with pytest.raises(SystemExit) as stopped:
        nv.main(argv, cfg=cfg)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(complaint)
