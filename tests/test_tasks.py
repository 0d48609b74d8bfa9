"""tasks.py: the whole `invoke build-debug` with every external command faked, and each task's wiring.

The build's steps run subprocess directly (faked here with pytest-subprocess); the only task that uses
invoke's c.run is setup-builder, tested with invoke's MockContext.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Context, MockContext, Result
from invoke.exceptions import Exit

import tasks
from scripts import iso_build
from tests.paths import REPO_ROOT
from tests.scripts.iso_build_support import CACHED_SECTIONS, KVER, STALE_SECTIONS, make_builder, snapshot

TASKS = ("audit", "build-debug", "clean", "config", "mkimage", "nvidia", "overlay", "preflight", "profile",
         "render", "setup-builder")


@pytest.fixture
def builder(tmp_path, monkeypatch):
    return make_builder(tmp_path, monkeypatch)


def test_build_debug_runs_every_step_in_order_then_a_warm_rebuild_only_reruns_mkimage(builder, fp, capsys):
    cfg = builder.config()
    first = builder.register_mkimage(fp)

    tasks.build_debug(Context(config=cfg))

    out = capsys.readouterr().out
    steps = [line[4:] for line in out.splitlines() if line.startswith("==> ")]
    assert steps == ["preflight", "audit", "nvidia", "overlay", "profile", "mkimage"]
    assert list(fp.calls) == [first]
    run = builder.mkimage_runs[0]
    cwd = builder.path("mkimage_cwd")
    assert run["cwd"] == cwd and run["TMPDIR"] == str(cwd)
    assert run["profile_in_cwd"] == ["genapkovl-bee_debug.sh", "mkimg.bee_debug.sh"]
    for folder in (builder.path("mkimage_home"), cwd):
        assert (folder / "genapkovl-bee_debug.sh").stat().st_mode & 0o777 == 0o755
        assert "profile_bee_debug()" in (folder / "mkimg.bee_debug.sh").read_text()
    overlay = builder.path("overlay")
    live = cfg.bee.live
    expected_files = (
        live.audit_path, f"{live.nvidia_modules_dir}/{KVER}/nvidia.ko", f"{live.bin_dir}/nvidia-smi",
        "/etc/init.d/bee-audit-debug", f"/home/{live.user}/.ssh/authorized_keys",
    )
    for placed in expected_files:
        assert (overlay / placed.lstrip("/")).is_file(), placed
    iso = iso_build.iso_path(cfg)
    assert f"ISO: {iso}" in out and iso_build.checksum_path(iso).is_file()
    assert (builder.nvidia.downloads, builder.nvidia.extractions, builder.nvidia.makes) == (1, 1, 1)
    assert builder.kernel.calls == ["find_headers",  # preflight: the installed headers, locally
                                    "kernel_for_iso", "iso_kernel_release", "find_headers",
                                    "check_headers_match"], "apk asked once, by the nvidia step"

    # Warm rebuild: the same command again, nothing downloaded, extracted or made, cached sections kept.
    cache = builder.path("dist") / f"nvidia-{cfg.bee.nvidia.version}-{KVER}"
    host_before = snapshot(builder.root / "host" / "home")
    cache_before = snapshot(cache)
    audit_before = (overlay / live.audit_path.lstrip("/")).stat().st_mtime_ns
    second = builder.register_mkimage(fp)

    tasks.build_debug(Context(config=builder.config()))

    assert list(fp.calls) == [first, second] and first == second
    assert (builder.nvidia.downloads, builder.nvidia.extractions, builder.nvidia.makes) == (1, 1, 1)
    sections = builder.mkimage_runs[1]["sections"]
    assert set(CACHED_SECTIONS) <= set(sections) and not set(STALE_SECTIONS) & set(sections)
    assert builder.mkimage_runs[1]["iso_before"] is False, "the previous ISO is removed before mkimage"
    assert snapshot(cache) == cache_before
    assert snapshot(builder.root / "host" / "home") == host_before, "profile copies and keys untouched"
    assert (overlay / live.audit_path.lstrip("/")).stat().st_mtime_ns == audit_before
    assert "audit: " in capsys.readouterr().out


def test_dry_build_debug_changes_nothing_and_prints_the_plan(builder, fp, capsys):
    cfg = builder.config()
    cfg.run.dry = True
    before = snapshot(builder.root)

    tasks.build_debug(Context(config=cfg))

    assert snapshot(builder.root) == before
    assert list(fp.calls) == []
    assert builder.nvidia.makes == 0 and builder.live.calls == []
    out = capsys.readouterr().out
    cwd = builder.path("mkimage_cwd")
    assert f"cd {cwd} && TMPDIR={cwd} {' '.join(iso_build.mkimage_command(cfg))}" in out
    assert f"[dry] would write {cwd / 'genapkovl-bee_debug.sh'}" in out
    audit = builder.path('overlay') / cfg.bee.live.audit_path.lstrip('/')
    assert out.count(f"[dry] would write {audit}") == 1, "the audit is placed once per build"
    assert out.count("[dry] would ask the repository for the ISO's kernel") == 1, "by the nvidia step only"


def test_a_build_error_ends_the_task_with_one_line_and_status_1(builder, fp):
    builder.path("alpine_release").unlink()
    with pytest.raises(Exit) as raised:
        tasks.build_debug(Context(config=builder.config()))
    assert raised.value.code == 1
    assert raised.value.message == "error: preflight found 1 problem(s); nothing was built"
    assert list(fp.calls) == []


@pytest.mark.parametrize(("task", "function"), [
    (tasks.preflight, "preflight"), (tasks.audit, "place_audit"), (tasks.nvidia, "build_nvidia"),
    (tasks.profile, "install_profile"), (tasks.mkimage, "mkimage_step"), (tasks.build_debug, "build_debug"),
])
def test_each_step_task_calls_its_function_with_the_config_and_dry_flag(monkeypatch, task, function):
    seen = []
    monkeypatch.setattr(iso_build, function, lambda cfg, act: seen.append((cfg, act.dry)))
    c = MockContext()
    c.config.run.dry = True
    task(c)
    assert seen == [(c.config, True)]


def test_overlay_task_uses_the_cached_nvidia_build(monkeypatch):
    found = iso_build.NvidiaBuild(KVER, REPO_ROOT / "dist" / "x")
    seen = []
    monkeypatch.setattr(iso_build, "cached_nvidia", lambda cfg, act: found)
    monkeypatch.setattr(iso_build, "assemble_overlay", lambda cfg, act, nvidia: seen.append(nvidia))
    tasks.overlay(MockContext())
    assert seen == [found]


@pytest.mark.parametrize(("flag", "function"), [(False, "clean_workdir"), (True, "clean_all")])
def test_clean_and_clean_all(monkeypatch, flag, function):
    seen = []
    for name in ("clean_workdir", "clean_all"):
        monkeypatch.setattr(iso_build, name, lambda cfg, act, name=name: seen.append(name))
    tasks.clean(MockContext(), all=flag)
    assert seen == [function]


def test_setup_builder_runs_apk_add_keygen_and_clone(builder, monkeypatch):
    next((builder.root / "host/home/.abuild").glob("*.rsa")).unlink()
    cfg = builder.config()
    expected = iso_build.setup_builder_commands(cfg)
    assert expected[0].startswith("apk add ") and "abuild-keygen -i -a -n" in expected
    c = MockContext(config=cfg, run={command: Result(command) for command in expected})
    tasks.setup_builder(c)
    assert [call.args[0] for call in c.run.call_args_list] == expected


def test_invoke_list_names_every_task_with_a_description():
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "--list"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    listed = {}
    for line in result.stdout.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            name, _, description = line.strip().partition(" ")
            listed[name] = description.strip()
    assert set(listed) == set(TASKS)
    assert all(listed.values()), listed


def test_steps_are_named_by_their_task_names_never_numbered():
    docs = {name: getattr(tasks, name.replace("-", "_")).__doc__ for name in TASKS}
    numbered = {name: doc for name, doc in docs.items() if re.search(r"\bsteps? \d", doc, re.I)}
    assert numbered == {}
    build_steps = docs["build-debug"].split(": ", 1)[1].split(", in that order")[0].split(", ")
    assert build_steps == ["preflight", "audit", "nvidia", "overlay", "profile", "mkimage"]
    assert set(build_steps) <= set(TASKS) and set(build_steps) <= set(iso_build.STEPS)


# ------------------------------------------------------------------------------ `invoke --dry`, for real


def configured_places():
    """Every place the shipped configuration lets the build write: bee.paths (in mkimage_cwd, which is all
    of /var/tmp, shared with others, only the profile copies)."""
    cfg = iso_build.buildconfig.load_config()
    places = [iso_build.buildconfig.config_path(cfg, name) for name in cfg.bee.paths if name != "mkimage_cwd"]
    cwd = iso_build.buildconfig.config_path(cfg, "mkimage_cwd")
    places += [cwd / name for name in iso_build.profile_files(cfg)]
    return sorted(set(places))


def state(places):
    """What is at each place now: its snapshot when a folder, (mtime, inode) of a file, None when absent."""
    found = {}
    for place in places:
        if place.is_dir():
            found[place] = snapshot(place)
        elif place.exists() or place.is_symlink():
            found[place] = (place.lstat().st_mtime_ns, place.lstat().st_ino)
        else:
            found[place] = None
    return found


@pytest.mark.parametrize("task", ["build-debug", "preflight", "audit", "nvidia", "overlay", "profile",
                                  "mkimage", "clean", "clean --all", "render", "setup-builder"])
def test_invoke_dry_writes_nothing_anywhere(tmp_path, task):
    asked = tmp_path / "a-tool-ran"
    shims = tmp_path / "bin"
    shims.mkdir()
    for tool in ("apk", "abuild-keygen", "git", "make", "strip", "sh"):
        (shims / tool).write_text(f"#!/bin/sh\necho {tool} >> {asked}\n")
        (shims / tool).chmod(0o755)
    places = [REPO_ROOT / "build", REPO_ROOT / "dist", *configured_places()]
    before = state(places)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    env.update(PATH=f"{shims}{os.pathsep}{os.environ['PATH']}", PYTHONDONTWRITEBYTECODE="1")

    result = subprocess.run([sys.executable, "-m", "invoke", "--dry", *task.split()], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, check=False, timeout=120)

    # No Alpine builder here: where a real run would stop, the dry run shows its plan, then exits 1.
    if task in ("build-debug", "preflight", "mkimage"):
        assert result.returncode == 1 and "preflight: not an Alpine system" in result.stdout
        assert result.stderr.splitlines()[-1].endswith("problem(s); a real build would stop there")
    elif task == "setup-builder":
        assert result.returncode == 1 and result.stdout.startswith("[dry] would run: apk add ")
        assert all(line.startswith("[dry] would run: ") for line in result.stdout.splitlines()), result.stdout
        assert result.stderr.startswith("error: not an Alpine system") and result.stderr.count("\n") == 1
    else:
        assert result.returncode == 0, result.stderr
    assert state(places) == before
    assert not asked.exists(), asked.read_text() if asked.exists() else ""
    if task == "build-debug":
        assert "[dry] would ask the repository for the ISO's kernel: apk" in result.stdout
        assert f"{iso_build.mkimage_script(iso_build.buildconfig.load_config())} --profile" in result.stdout


# ------------------------------------------------------------------------------------------- a full disk


def test_a_full_disk_ends_a_task_with_one_line_and_no_half_file(builder, monkeypatch):
    real_write_bytes = Path.write_bytes

    def full_disk(path, data):
        if path.name.endswith(".tmp"):
            real_write_bytes(path, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    cfg = builder.config()
    with pytest.raises(Exit) as raised:
        tasks.profile(Context(config=cfg))
    assert raised.value.code == 1
    message = raised.value.message
    home = builder.path("mkimage_home")
    assert message.startswith(f"error: No space left on device: {home}/.mkimg.bee_debug.sh.tmp; free some")
    assert "\n" not in message
    assert not home.exists() or list(home.iterdir()) == [], "neither the file nor its temp name is left"


def test_render_honours_dry(builder, capsys):
    cfg = builder.config()
    cfg.run.dry = True
    before = snapshot(builder.root)
    tasks.render(Context(config=cfg))
    assert snapshot(builder.root) == before
    assert "[dry] would render iso/mkimg/mkimg.bee_debug.sh.j2 into " in capsys.readouterr().out


# ------------------------------------------------------------------------------- what a new user types wrong


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("INVOKE_BEE_NVIDIA_JOBS", "abc", "bee.nvidia.jobs takes a whole number (int), e.g. 4"),
    ("INVOKE_BEE_NVIDIA_DOWNLOAD_BACKOFF", "fast", "bee.nvidia.download_backoff takes a number (float)"),
    ("INVOKE_BEE_ALPINE_REPOSITORIES", "main", "bee.alpine.repositories is a list, which an environment"),
    ("INVOKE_BEE_LIVE_PASSWORD_FALLBACK", "false", "bee.live.password_fallback is true or false, and invoke"
                                                   " reads any text but 0 and the empty one as true: set it"),
    ("INVOKE_BEE_LIVE_PASSWORD_FALLBACK", " Off", "bee.live.password_fallback is true or false"),
    ("INVOKE_BEE_LIVE_PASSWORD_FALLBACK", "NO", "bee.live.password_fallback is true or false"),
])
def test_a_bad_override_is_one_line_naming_variable_key_and_type(variable, value, expected):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}, variable: value}
    for command in ([sys.executable, "-m", "invoke", "config"], [sys.executable, "scripts/iso_build.py",
                                                                    "preflight", "--dry"]):
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, command
        assert result.stderr.startswith(f"error: {variable}={value!r}: {expected}"), result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stdout == ""


def test_a_variable_naming_no_key_is_one_line_with_the_closest_one():
    """A typo is silently ignored by invoke: the build would run with the value the user meant to change."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    env["INVOKE_BEE_NVIDIA_JOB"] = "4"
    for command in ([sys.executable, "-m", "invoke", "config"], [sys.executable, "scripts/iso_build.py",
                                                                    "preflight", "--dry"]):
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and result.stdout == "", command
        assert result.stderr == ("error: INVOKE_BEE_NVIDIA_JOB='4' names no key of invoke.yaml's bee section,"
                                 " so it would change nothing: did you mean INVOKE_BEE_NVIDIA_JOBS?\n")


def test_good_overrides_of_every_type_still_work(monkeypatch):
    for variable, value in {"INVOKE_BEE_NVIDIA_JOBS": "7", "INVOKE_BEE_NVIDIA_DOWNLOAD_BACKOFF": "0.5",
                            "INVOKE_BEE_LIVE_PASSWORD_FALLBACK": "0", "INVOKE_BEE_ISO_TAG": "x",
                            "INVOKE_BEE_ISO_SERIAL_CONSOLE_BAUD": "9600"}.items():
        monkeypatch.setenv(variable, value)
    cfg = iso_build.buildconfig.load_config()
    assert (cfg.bee.nvidia.jobs, cfg.bee.nvidia.download_backoff) == (7, 0.5)
    assert (cfg.bee.live.password_fallback, cfg.bee.iso.tag) == (False, "x")
    assert cfg.bee.iso.serial_console.baud == 9600
    monkeypatch.setenv("INVOKE_BEE_LIVE_PASSWORD_FALLBACK", "yes")
    assert iso_build.buildconfig.load_config().bee.live.password_fallback is True


def test_setup_builder_off_alpine_says_so_and_runs_nothing(builder):
    builder.path("alpine_release").unlink()
    c = MockContext(config=builder.config(), run={})  # no command may run: MockContext refuses any
    with pytest.raises(Exit) as raised:
        tasks.setup_builder(c)
    assert raised.value.code == 1
    assert raised.value.message.startswith("error: not an Alpine system (")
    assert raised.value.message.endswith("; nothing was installed")
    assert not c.run.call_args_list


def test_a_dry_build_with_preflight_problems_shows_the_whole_plan_then_exits_1(builder, fp, capsys):
    builder.path("alpine_release").unlink()
    cfg = builder.config()
    cfg.run.dry = True
    with pytest.raises(Exit) as raised:
        tasks.build_debug(Context(config=cfg))
    out = capsys.readouterr().out
    assert raised.value.code == 1
    assert raised.value.message == "error: preflight found 1 problem(s); a real build would stop there"
    assert out.index("preflight: not an Alpine system") < out.index("==> mkimage"), "the whole plan first"
    assert "[dry] would run: cd " in out and list(fp.calls) == []


def test_a_dry_run_says_would_never_done(builder, capsys):
    cfg = builder.config()
    cfg.run.dry = True
    tasks.nvidia(Context(config=cfg))
    tasks.clean(Context(config=cfg), all=True)
    out = capsys.readouterr().out
    assert "(cached)" not in out and "removed" not in out.replace("would remove", "")
    assert "[dry] would build NVIDIA " in out and "clean --all: would remove " in out
    assert all(line.startswith(("[dry] would ", "clean", "  ")) for line in out.splitlines()), out
