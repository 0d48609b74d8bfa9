"""scripts/iso_build.py, step by step: preflight, audit, overlay, profile, workdir cleanup, mkimage."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from scripts import buildconfig, iso_build
from tests.paths import REPO_ROOT
from tests.scripts.iso_build_support import (
    BUILDER_TOOLS,
    CACHED_SECTIONS,
    KVER,
    STALE_SECTIONS,
    make_builder,
    snapshot,
)


@pytest.fixture
def builder(tmp_path, monkeypatch):
    return make_builder(tmp_path, monkeypatch)


@pytest.fixture
def act():
    lines = []
    actions = iso_build.Actions(out=lines.append)
    actions.lines = lines
    return actions


# ------------------------------------------------------------------------------------------- mkimage


def test_mkimage_command_is_exact(builder):
    cfg = builder.config()
    assert iso_build.mkimage_command(cfg) == [
        str(builder.root / "host/home/aports/scripts/mkimage.sh"),
        "--profile", "bee_debug",
        "--tag", "0.1.0",
        "--arch", "x86_64",
        "--outdir", str(builder.project / "dist" / "iso"),
        "--workdir", str(builder.root / "host/var/tmp/bee-mkimage"),
        "--repository", "https://dl-cdn.alpinelinux.org/alpine/v3.22/main",
        "--repository", "https://dl-cdn.alpinelinux.org/alpine/v3.22/community",
    ]


# How the two forms of aports' scripts/mkimage.sh parse their repository options (their own lines).
CURRENT_MKIMAGE = """#!/bin/sh
while [ $# -gt 0 ]; do
	opt="$1"
	shift
	case "$opt" in
	--repositories-file) REPOS_FILE="$1"; shift ;;
	--repository)
		if [ -z "$REPOS" ]; then
			REPOS="$1"
		else
			REPOS=$(printf '%s\\n%s' "$REPOS" "$1");
		fi
		shift ;;
	--extra-repository)
		warning "--extra-repository is deprecated. Use multiple --repository"
		EXTRAREPOS="$EXTRAREPOS $1"
		shift ;;
	esac
done
"""
OLDER_MKIMAGE = """#!/bin/sh
while [ $# -gt 0 ]; do
	opt="$1"
	shift
	case "$opt" in
	--repository) REPODIR="$1"; shift ;;
	--extra-repository) EXTRAREPOS="$EXTRAREPOS $1"; shift ;;
	esac
done
"""


# What each form then writes into apkroot-<arch>/etc/apk/repositories (their own lines, $APKROOT made ours).
CURRENT_APKROOT = """_repositories="$APKROOT/etc/apk/repositories"
echo "$REPOS" >> "$_repositories"
for repo in $EXTRAREPOS; do
	echo "$repo" >> "$_repositories"
done
"""
OLDER_APKROOT = """echo "$REPODIR" > "$APKROOT/etc/apk/repositories"
for repo in $EXTRAREPOS; do
	echo "$repo" >> "$APKROOT/etc/apk/repositories"
done
"""


@pytest.mark.parametrize(("script", "apkroot", "second"), [
    (CURRENT_MKIMAGE, CURRENT_APKROOT, "--repository"),
    (OLDER_MKIMAGE, OLDER_APKROOT, "--extra-repository"),
])
def test_repositories_are_passed_in_the_form_the_checkout_supports(builder, tmp_path, script, apkroot,
                                                                   second):
    """Current mkimage.sh takes --repository several times (and warns about --extra-repository); an older
    one keeps only the last --repository, so the others must be --extra-repository there. Each form's own
    loop runs (busybox sh) on the options we produce: both URLs reach REPOS, or REPODIR and EXTRAREPOS, and
    the apk root's repositories file it writes is the one clean_workdir takes as the configured one."""
    (builder.root / "host/home/aports/scripts/mkimage.sh").write_text(script)
    cfg = builder.config()
    main, community = buildconfig.repository_urls(cfg)
    options = iso_build.repository_options(cfg)
    assert iso_build.mkimage_command(cfg)[-4:] == options == ["--repository", main, second, community]

    root = tmp_path / "apkroot-x86_64"
    (root / "etc" / "apk").mkdir(parents=True)
    report = 'printf "REPOS=%s|REPODIR=%s|EXTRAREPOS=%s\\n" "$REPOS" "$REPODIR" "$EXTRAREPOS"\n'
    program = ('warning() { echo "WARNING: $*" >&2; }\n' + script.removeprefix("#!/bin/sh\n")
               + f'APKROOT="{root}"\n' + apkroot + report)
    busybox = shutil.which("busybox")
    assert busybox, "busybox runs aports' shell code here"
    result = subprocess.run([busybox, "sh", "-c", program, "mkimage.sh", *options],
                            capture_output=True, text=True, check=True, timeout=30)

    assert result.stderr == "", "no deprecation warning"
    if second == "--repository":
        assert result.stdout == f"REPOS={main}\n{community}|REPODIR=|EXTRAREPOS=\n"
    else:
        assert result.stdout == f"REPOS=|REPODIR={main}|EXTRAREPOS= {community}\n"
    assert (root / "etc/apk/repositories").read_text() == f"{main}\n{community}\n"
    assert iso_build.apkroot_repositories(root) == [main, community]


def test_with_the_shipped_config_mkimage_runs_from_var_tmp_with_tmpdir_var_tmp(fp, monkeypatch, act):
    """The spec's invariants: profile and generator in ~/.mkimage/ AND /var/tmp/, mkimage's working folder,
    and TMPDIR=/var/tmp."""
    cfg = buildconfig.load_config()
    assert not iso_build.iso_path(cfg).exists(), "a real ISO in dist/ would hide the check below"
    monkeypatch.setattr(iso_build, "clean_workdir", lambda cfg, act: [])
    monkeypatch.setattr(iso_build.Actions, "mkdir", lambda self, path: None)
    seen = []
    fp.register(iso_build.mkimage_command(cfg), callback=lambda process: seen.append(process.kwargs))
    with pytest.raises(iso_build.BuildError, match="wrote no"):
        iso_build.run_mkimage(cfg, act)
    assert seen[0]["cwd"] == iso_build.Path("/var/tmp")
    assert seen[0]["env"]["TMPDIR"] == "/var/tmp"
    home = iso_build.Path("~/.mkimage").expanduser()
    assert sorted(iso_build.profile_copies(cfg)) == sorted(
        folder / name for folder in (home, iso_build.Path("/var/tmp"))
        for name in ("mkimg.bee_debug.sh", "genapkovl-bee_debug.sh"))


def make_workdir(builder):
    workdir = builder.path("mkimage_workdir")
    others = ("apkroot-x86_64", "syslinux_cfg_1a2b", "grub_cfg_9f8e", "apkovl_bee_77.work")
    for name in CACHED_SECTIONS + STALE_SECTIONS + others:
        (workdir / name).mkdir(parents=True)
        (workdir / name / "content").write_text(name)
    urls = buildconfig.repository_urls(builder.config())
    write_apkroot_repositories(builder, "".join(f"{url}\n" for url in urls))
    iso = iso_build.iso_path(builder.config())
    iso.parent.mkdir(parents=True)
    iso.write_bytes(b"old iso")
    iso_build.checksum_path(iso).write_text("0  old\n")
    return workdir, iso


def write_apkroot_repositories(builder, text):
    """The file mkimage writes once, when it creates apkroot-<arch>: one repository URL a line."""
    repositories = builder.path("mkimage_workdir") / "apkroot-x86_64" / "etc" / "apk" / "repositories"
    repositories.parent.mkdir(parents=True, exist_ok=True)
    repositories.write_text(text)


@pytest.mark.parametrize("older", ["https://dl-cdn.alpinelinux.org/alpine/v3.21/main\n"
                                   "https://dl-cdn.alpinelinux.org/alpine/v3.21/community\n",
                                   "https://dl-cdn.alpinelinux.org/alpine/v3.22/main\n",
                                   None])
def test_an_apk_root_of_other_repositories_goes_with_its_kernel_and_apks_sections(builder, act, older):
    """mkimage writes apkroot-<arch>/etc/apk/repositories only when it creates that folder: after a change
    of bee.alpine.branch it would go on fetching the old branch's kernel and packages."""
    workdir, iso = make_workdir(builder)
    root = workdir / "apkroot-x86_64"
    if older is None:
        (root / "etc" / "apk" / "repositories").unlink()  # an apk root mkimage never finished
    else:
        write_apkroot_repositories(builder, older)

    removed = iso_build.clean_workdir(builder.config(), act)

    left = sorted(p.name for p in workdir.iterdir())
    assert left == sorted(["syslinux_77aa", "grub_efi_x86_64_3c4d", "syslinux_cfg_1a2b", "grub_cfg_9f8e"])
    assert {p.name for p in removed} >= {"apkroot-x86_64", "apks_x86_64_5f1c", "kernel_x86_64_lts_9ab2"}
    why = next(line for line in act.lines if "apkroot-x86_64 holds" in line)
    assert "https://dl-cdn.alpinelinux.org/alpine/v3.22/community" in why and "kernel_* and apks_*" in why
    if older:
        assert older.split()[0] in why


def test_an_apk_root_of_the_configured_repositories_is_kept_with_comments_and_blank_lines(builder, act):
    workdir, _ = make_workdir(builder)
    main, community = buildconfig.repository_urls(builder.config())
    write_apkroot_repositories(builder, f"# mkimage\n{main}/\n\n{community}\r\n")
    iso_build.clean_workdir(builder.config(), act)
    assert {"apkroot-x86_64", *CACHED_SECTIONS} <= {p.name for p in workdir.iterdir()}
    assert not any("holds" in line for line in act.lines)


def test_clean_keeps_cached_sections_and_removes_apkovl_image_and_iso(builder, act):
    workdir, iso = make_workdir(builder)
    removed = iso_build.clean_workdir(builder.config(), act)

    left = sorted(p.name for p in workdir.iterdir())
    assert left == sorted([*CACHED_SECTIONS, "apkroot-x86_64", "syslinux_cfg_1a2b", "grub_cfg_9f8e"])
    assert not iso.exists() and not iso_build.checksum_path(iso).exists()
    gone = {*STALE_SECTIONS, "apkovl_bee_77.work", iso.name, iso.name + ".sha256"}
    assert {p.name for p in removed} == gone
    assert (workdir / CACHED_SECTIONS[0] / "content").read_text() == CACHED_SECTIONS[0]


def test_clean_dry_prints_and_removes_nothing(builder):
    workdir, iso = make_workdir(builder)
    before = snapshot(builder.root)
    lines = []
    iso_build.clean_workdir(builder.config(), iso_build.Actions(dry=True, out=lines.append))
    assert snapshot(builder.root) == before
    assert f"[dry] would rm -rf {workdir / STALE_SECTIONS[0]}" in lines
    assert f"[dry] would rm -rf {iso}" in lines


def test_clean_all_keeps_only_the_download_cache(builder, act, fp):
    cfg = builder.config()
    workdir, iso = make_workdir(builder)
    downloads = builder.path("download_cache")
    downloads.mkdir(parents=True)
    (downloads / "NVIDIA.run").write_bytes(b"installer")
    nvidia_cache = builder.path("dist") / f"nvidia-{cfg.bee.nvidia.version}-{KVER}"
    nvidia_cache.mkdir(parents=True)
    iso_build.install_profile(cfg, act)
    (builder.path("build") / "overlay").mkdir(parents=True)

    iso_build.clean_all(cfg, act)

    assert not workdir.exists() and not builder.path("build").exists() and not nvidia_cache.exists()
    assert not iso.parent.exists()
    for folder in ("mkimage_home", "mkimage_cwd"):
        assert not list(builder.path(folder).iterdir())
    assert [line for line in act.lines if line.startswith("clean")] == [act.lines[-1]], "one summary"
    assert (downloads / "NVIDIA.run").read_bytes() == b"installer"


def test_clean_all_dry_counts_each_item_once_as_the_real_run_does(builder):
    cfg = builder.config()
    make_workdir(builder)
    iso_build.install_profile(cfg, iso_build.Actions(out=lambda line: None))
    dry_lines = []
    would = iso_build.clean_all(cfg, iso_build.Actions(dry=True, out=dry_lines.append))
    assert len(would) == len(set(would))
    assert not [p for p in would for q in would if p != q and p.is_relative_to(q)], "nothing counted twice"
    assert [line.split("\n")[0] for line in dry_lines if line.startswith("clean")] == [
        f"clean --all: would remove {len(would)} item(s)"]
    real_lines = []
    removed = iso_build.clean_all(cfg, iso_build.Actions(out=real_lines.append))
    assert removed == would and real_lines[-1].startswith(f"clean --all: removed {len(removed)} item(s)")


@pytest.mark.parametrize("folder", ["/var", "/var/tmp", "/tmp", str(REPO_ROOT), str(REPO_ROOT.parent)])
def test_refuses_to_delete_a_top_or_protected_folder(folder):
    with pytest.raises(iso_build.BuildError, match=f"refusing to delete {folder}: check the paths"):
        iso_build.refuse_dangerous_removal(iso_build.Path(folder))  # what Actions.remove asks first


def test_remove_asks_before_deleting(monkeypatch, tmp_path):
    asked = []
    monkeypatch.setattr(iso_build, "refuse_dangerous_removal", asked.append)
    (tmp_path / "x").mkdir()
    assert iso_build.Actions().remove(tmp_path / "x") is True
    assert asked == [tmp_path / "x"] and not (tmp_path / "x").exists()


def test_run_mkimage_runs_in_cwd_with_tmpdir_and_checksums_the_iso(builder, act, fp):
    cfg = builder.config()
    make_workdir(builder)
    command = builder.register_mkimage(fp)

    iso = iso_build.run_mkimage(cfg, act)

    assert list(fp.calls) == [command]
    run = builder.mkimage_runs[0]
    cwd = builder.path("mkimage_cwd")
    assert run["cwd"] == cwd and run["TMPDIR"] == str(cwd)
    assert run["env"] == {**os.environ, "TMPDIR": str(cwd)}, "our environment, only TMPDIR changed"
    assert run["iso_before"] is False
    assert not set(STALE_SECTIONS) & set(run["sections"]) and set(CACHED_SECTIONS) <= set(run["sections"])
    digest = hashlib.sha256(iso.read_bytes()).hexdigest()
    assert iso_build.checksum_path(iso).read_text() == f"{digest}  {iso.name}\n"
    assert f"ISO: {iso}\n  size: {iso.stat().st_size} bytes\n  sha256: {digest}" in act.lines
    assert f"cd {cwd} && TMPDIR={cwd} {' '.join(command)}" in act.lines


def test_mkimage_alone_checks_the_builder_first(builder, act, fp, monkeypatch):
    break_tool("xorriso")(builder, monkeypatch)
    break_headers_absent(builder, monkeypatch)  # not mkimage's business: not checked here
    with pytest.raises(iso_build.PreflightError) as raised:
        iso_build.mkimage_step(builder.config(), act)
    assert raised.value.problems == ["builder tool xorriso not found on PATH: run `invoke setup-builder`"]
    assert list(fp.calls) == []

    monkeypatch.setenv("PATH", f"{builder.root / 'host' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    (builder.root / "host" / "bin" / "xorriso").write_text("#!/bin/sh\n")
    (builder.root / "host" / "bin" / "xorriso").chmod(0o755)
    command = builder.register_mkimage(fp)
    assert iso_build.mkimage_step(builder.config(), act) == iso_build.iso_path(builder.config())
    assert list(fp.calls) == [command]


def test_mkimage_that_skipped_the_profile_is_an_error(builder, act, fp):
    builder.register_mkimage(fp, make_iso=False)
    with pytest.raises(iso_build.BuildError, match="wrote no .*alpine-bee_debug-0.1.0-x86_64.iso.*skipped"):
        iso_build.run_mkimage(builder.config(), act)


def test_mkimage_failure_is_an_error(builder, act, fp):
    builder.register_mkimage(fp, make_iso=False, returncode=3)
    with pytest.raises(iso_build.BuildError, match="mkimage.sh failed with exit status 3"):
        iso_build.run_mkimage(builder.config(), act)


# ------------------------------------------------------------------------------------------- profile


def test_a_profile_copy_another_user_owns_is_replaced_by_ours(builder, act):
    """Identical bytes are not enough in /var/tmp: its owner could change them before mkimage runs it.
    The tests run as root, as the lab does: root may replace it even in a sticky folder."""
    cfg = builder.config()
    iso_build.install_profile(cfg, act)
    cwd = builder.path("mkimage_cwd")
    cwd.chmod(0o1777)  # as /var/tmp is
    copies = [cwd / "genapkovl-bee_debug.sh", cwd / "mkimg.bee_debug.sh"]
    contents = [copy.read_bytes() for copy in copies]
    for copy in copies:
        os.chown(copy, 54321, 54321)
    assert iso_build.check_profile_copies(cfg) == [], "root can replace them: nothing to report"

    iso_build.install_profile(cfg, act)

    assert [copy.read_bytes() for copy in copies] == contents
    for copy in copies:
        assert copy.stat().st_uid == os.geteuid() and f"profile: {copy} written" in act.lines
    assert iso_build.check_profile_copies(cfg) == []


@pytest.fixture
def sticky_tmp():
    """A folder like /var/tmp (mode 1777, root's) that another uid can reach: pytest's tmp_path is 0700."""
    folder = iso_build.Path(tempfile.mkdtemp(prefix="bee-sticky-", dir="/var/tmp"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder)


def as_nobody(sticky, step):
    """`python3 scripts/iso_build.py STEP` as the unprivileged user nobody, with the shipped invoke.yaml and
    the builder's folders moved into `sticky`: its home (~/.mkimage) and mkimage_cwd, `sticky` itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    env.update(HOME=str(sticky / "home"), PYTHONDONTWRITEBYTECODE="1",
               INVOKE_BEE_PATHS_MKIMAGE_HOME=str(sticky / "home" / ".mkimage"),
               INVOKE_BEE_PATHS_MKIMAGE_CWD=str(sticky))
    nobody = pwd.getpwnam("nobody")
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) runs the build as another user here"
    command = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
               sys.executable, "scripts/iso_build.py", step]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)


def shipped_generator(sticky, monkeypatch):
    """The generator as the build run by as_nobody(sticky, ...) renders it."""
    monkeypatch.setenv("INVOKE_BEE_PATHS_MKIMAGE_HOME", str(sticky / "home" / ".mkimage"))
    monkeypatch.setenv("INVOKE_BEE_PATHS_MKIMAGE_CWD", str(sticky))
    return buildconfig.render_template(buildconfig.load_config(), "iso/mkimg/genapkovl-bee_debug.sh.j2")


def test_a_builder_that_is_not_root_writes_both_copies_into_the_sticky_var_tmp(sticky_tmp, monkeypatch):
    result = as_nobody(sticky_tmp, "profile")

    assert result.returncode == 0, result.stderr
    nobody = pwd.getpwnam("nobody").pw_uid
    for folder in (sticky_tmp / "home" / ".mkimage", sticky_tmp):
        for name in ("mkimg.bee_debug.sh", "genapkovl-bee_debug.sh"):
            assert (folder / name).stat().st_uid == nobody
            assert f"profile: {folder / name} written" in result.stdout
    assert (sticky_tmp / "genapkovl-bee_debug.sh").read_text() == shipped_generator(sticky_tmp, monkeypatch)


@pytest.mark.parametrize("name", ["genapkovl-bee_debug.sh", ".genapkovl-bee_debug.sh.tmp"])
def test_another_users_copy_a_builder_that_is_not_root_cannot_replace_is_one_line_naming_it(
        sticky_tmp, monkeypatch, name):
    """Identical bytes, but daemon's: in the sticky /var/tmp only daemon or root may replace it. Preflight
    says so before any slow work, and the profile step in the same line instead of a bare EPERM."""
    theirs = sticky_tmp / name
    theirs.write_text(shipped_generator(sticky_tmp, monkeypatch))
    theirs.chmod(0o755)
    daemon = pwd.getpwnam("daemon")
    os.chown(theirs, daemon.pw_uid, daemon.pw_gid)
    line = (f"{theirs} belongs to daemon, and in the sticky {sticky_tmp} this user (nobody) cannot replace"
            " it with the build's own copy: remove it as daemon or root")

    preflight = as_nobody(sticky_tmp, "preflight")
    profile = as_nobody(sticky_tmp, "profile")

    assert preflight.returncode == 1 and f"preflight: {line}\n" in preflight.stdout
    assert profile.returncode == 1 and profile.stderr == f"profile: {line}\n"
    assert theirs.stat().st_uid == daemon.pw_uid
    assert theirs.read_text() == shipped_generator(sticky_tmp, monkeypatch), "left as it was"
    left = sorted(p.name for p in sticky_tmp.iterdir())
    assert left == sorted({"home", "mkimg.bee_debug.sh", name}), "no temp file of ours left behind"


def test_profile_and_generator_go_to_mkimage_home_and_mkimage_cwd(builder, act):
    """mkimage reads profiles from ~/.mkimage (besides its scripts folder) and looks the generator up in
    its working folder first: the spec's "copy mkimg profile + genapkovl to ~/.mkimage/ AND /var/tmp/"."""
    cfg = builder.config()
    installed = iso_build.install_profile(cfg, act)

    expected = {
        "mkimg.bee_debug.sh": (buildconfig.render_template(cfg, "iso/mkimg/mkimg.bee_debug.sh.j2"), 0o644),
        "genapkovl-bee_debug.sh": (
            buildconfig.render_template(cfg, "iso/mkimg/genapkovl-bee_debug.sh.j2"), 0o755),
    }
    home, cwd = builder.path("mkimage_home"), builder.path("mkimage_cwd")
    assert sorted(installed) == sorted(folder / name for folder in (home, cwd) for name in expected)
    for path in installed:
        content, mode = expected[path.name]
        assert path.read_text() == content
        assert path.stat().st_mode & 0o777 == mode
    assert sorted(p.name for p in cwd.glob("*.sh")) == sorted(expected)
    assert "profile_bee_debug()" in expected["mkimg.bee_debug.sh"][0]

    before = snapshot(builder.root / "host")
    iso_build.install_profile(cfg, act)
    assert snapshot(builder.root / "host") == before, "unchanged copies are not rewritten"


def test_a_profile_without_templates_is_a_clear_error(builder, act, monkeypatch):
    monkeypatch.setenv("INVOKE_BEE_ISO_PROFILE", "nosuch")
    with pytest.raises(iso_build.BuildError, match="no template iso/mkimg/mkimg.nosuch.sh.j2"):
        iso_build.install_profile(builder.config(), act)


# ------------------------------------------------------------------------------------------- audit


def test_audit_is_placed_with_shebang_and_mode_then_skipped(builder, act):
    cfg = builder.config()
    target = iso_build.place_audit(cfg, act)

    assert target == builder.path("overlay") / cfg.bee.live.audit_path.lstrip("/")
    text = target.read_bytes()
    assert text.startswith(b"#!/usr/bin/env python3\n")
    assert text.split(b"\n", 1)[1] == (REPO_ROOT / "audit" / "audit.py").read_bytes().split(b"\n", 1)[1]
    assert target.stat().st_mode & 0o777 == 0o755

    stamp = target.stat().st_mtime_ns
    iso_build.place_audit(cfg, act)
    assert target.stat().st_mtime_ns == stamp
    assert act.lines[-1] == f"audit: {target} is up to date"


def test_audit_with_a_syntax_error_stops_the_build(builder, act, tmp_path):
    broken = tmp_path / "audit.py"
    broken.write_text("def broken(:\n")
    with pytest.raises(iso_build.BuildError, match="does not compile"):
        iso_build.place_audit(builder.config(), act, source=broken)
    assert not builder.path("overlay").exists()


def test_audit_source_without_shebang_gets_one(tmp_path):
    source = tmp_path / "a.py"
    source.write_text("print(1)\n")
    assert iso_build.audit_program(source) == b"#!/usr/bin/env python3\nprint(1)\n"


# ------------------------------------------------------------------------------------------- overlay


def test_overlay_holds_audit_nvidia_static_and_live_files_and_drops_stale_ones(builder, act):
    cfg = builder.config()
    nvidia = iso_build.build_nvidia(cfg, act)
    overlay = builder.path("overlay")
    stale = overlay / "lib" / "modules" / "6.1.0-old" / "nvidia.ko"
    stale.parent.mkdir(parents=True)
    stale.write_text("old kernel")

    assert iso_build.assemble_overlay(cfg, act, nvidia) == overlay

    files = sorted(str(p.relative_to(overlay)) for p in overlay.rglob("*") if p.is_file())
    live = cfg.bee.live
    assert files == sorted([
        live.audit_path.lstrip("/"),
        f"{live.nvidia_modules_dir.lstrip('/')}/{KVER}/nvidia.ko",
        f"{live.nvidia_modules_dir.lstrip('/')}/{KVER}/nvidia-modeset.ko",
        f"{live.nvidia_modules_dir.lstrip('/')}/{KVER}/nvidia-uvm.ko",
        f"{live.bin_dir.lstrip('/')}/nvidia-smi",
        f"{live.firmware_dir.lstrip('/')}/nvidia/{cfg.bee.nvidia.version}/gsp_ga10x.bin",
        "etc/init.d/bee-audit-debug",
        f"home/{live.user}/.ssh/authorized_keys",
    ])
    assert not (overlay / "lib").exists(), "stale folders go too"
    assert builder.live.calls == [(overlay, builder.path("live_password"))]
    assert builder.nvidia.calls[-1] == "install_into_overlay"


@pytest.mark.parametrize("inside", ["", "sub", ".."])
def test_overlay_never_goes_into_the_tracked_overlay(builder, act, monkeypatch, inside):
    tracked = REPO_ROOT / "iso" / "overlay-debug"
    monkeypatch.setenv("INVOKE_BEE_PATHS_OVERLAY", str(tracked / inside))
    before = snapshot(tracked)
    with pytest.raises(iso_build.BuildError, match="overlaps the tracked"):
        iso_build.assemble_overlay(builder.config(), act, iso_build.NvidiaBuild(KVER, builder.root))
    assert snapshot(tracked) == before
    assert builder.live.calls == []


def test_live_system_errors_become_one_line_build_errors(builder, act):
    def refuse(cfg, overlay_dir, *, password_file):
        raise builder.live.StagingError("no SSH keys and no fallback: add keys")

    builder.live.stage_live_system = refuse
    nvidia = iso_build.build_nvidia(builder.config(), act)
    with pytest.raises(iso_build.BuildError, match="^no SSH keys and no fallback: add keys$"):
        iso_build.assemble_overlay(builder.config(), act, nvidia)


def test_overlay_alone_needs_a_cached_nvidia_build(builder, act):
    with pytest.raises(iso_build.BuildError, match="no NVIDIA build for .* run `invoke nvidia`"):
        iso_build.cached_nvidia(builder.config(), act)
    assert builder.nvidia.makes == 0
    iso_build.build_nvidia(builder.config(), act)
    assert iso_build.cached_nvidia(builder.config(), act).kver == KVER
    assert builder.nvidia.makes == 1


# ------------------------------------------------------------------------------------------- preflight


def test_preflight_passes_on_a_ready_builder(builder, act):
    iso_build.preflight(builder.config(), act)
    assert act.lines == []


def test_preflight_passes_with_a_valid_built_in_profile(builder, act, monkeypatch):
    good = builder.root / "fleet.json"
    good.write_text('{"name": "fleet", "gpus": {"count": 8, "product": "*H100*"}}\n')
    monkeypatch.setenv("INVOKE_BEE_LIVE_EXPECT_PROFILE", str(good))
    iso_build.preflight(builder.config(), act)
    assert act.lines == []


def break_alpine(builder, monkeypatch):
    builder.path("alpine_release").unlink()


def break_tool(tool):
    def breaker(builder, monkeypatch):
        (builder.root / "host" / "bin" / tool).unlink()
        folders = os.environ["PATH"].split(os.pathsep)  # hide a real one too (Debian has fakeroot)
        kept = [f for f in folders if not (iso_build.Path(f) / tool).exists()]
        monkeypatch.setenv("PATH", os.pathsep.join(kept))
    return breaker


def break_mkimage_script(builder, monkeypatch):
    (builder.root / "host/home/aports/scripts/mkimage.sh").unlink()


def break_abuild_key(builder, monkeypatch):
    next((builder.root / "host/home/.abuild").glob("*.rsa")).unlink()


def break_abuild_conf(builder, monkeypatch):
    (builder.root / "host/home/.abuild/abuild.conf").write_text("# nothing\n")


def break_headers_absent(builder, monkeypatch):
    builder.kernel.headers_present = False


def break_aports_branch(builder, monkeypatch):
    git = builder.root / "host/home/aports/.git"
    git.mkdir()
    (git / "HEAD").write_text("ref: refs/heads/3.20-stable\n")


def break_space(builder, monkeypatch):
    monkeypatch.setenv("INVOKE_BEE_BUILDER_MIN_FREE_GIB", "1000000")


def break_foreign_copy(builder, monkeypatch):
    """Another user's generator in the sticky /var/tmp, and a builder that is not root (its real runs as
    nobody: test_another_users_copy_a_builder_that_is_not_root_cannot_replace_is_one_line_naming_it)."""
    cwd = builder.path("mkimage_cwd")
    cwd.chmod(0o1777)
    (cwd / "genapkovl-bee_debug.sh").write_text("#!/bin/sh\n")
    os.chown(cwd / "genapkovl-bee_debug.sh", 54321, 54321)
    monkeypatch.setattr(iso_build.os, "geteuid", lambda: pwd.getpwnam("nobody").pw_uid)


def break_login(builder, monkeypatch):
    (builder.root / "host/home/.ssh/authorized_keys").write_text("")
    monkeypatch.setenv("INVOKE_BEE_LIVE_PASSWORD_FALLBACK", "")


def break_profile(builder, monkeypatch):
    bad = builder.root / "fleet.json"
    bad.write_text('{"gpus": {"count": 8, "prodcut": "*H100*"}}\n')
    monkeypatch.setenv("INVOKE_BEE_LIVE_EXPECT_PROFILE", str(bad))


BREAKAGES = {
    "not alpine": (break_alpine, "not an Alpine system"),
    **{f"no {tool}": (break_tool(tool), f"builder tool {tool} not found on PATH: run `invoke setup-builder`")
       for tool in BUILDER_TOOLS},
    "no mkimage.sh": (break_mkimage_script, "mkimage.sh (bee.paths.aports): run `invoke setup-builder`"),
    "no abuild key": (break_abuild_key, "no abuild signing key"),
    "no abuild conf": (break_abuild_conf, "no abuild signing key (no PACKAGER_PRIVKEY"),
    "headers absent": (break_headers_absent, "no kernel headers"),
    "aports branch": (break_aports_branch, "is on branch 3.20-stable, not 3.22-stable (bee.alpine.branch)"),
    "no space": (break_space, "mkimage needs 1e+06 GiB"),
    "another user's copy": (break_foreign_copy, "genapkovl-bee_debug.sh belongs to uid 54321, and in the"
                                                " sticky {root}/host/var/tmp this user (nobody) cannot"),
    "no login": (break_login, "password_fallback is false: nobody could log in"),
    "bad profile": (break_profile, "bee.live.expect_profile: {root}/fleet.json: gpus.prodcut: unknown key"),
}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_each_preflight_failure_is_one_line_and_nothing_slow_starts(builder, act, monkeypatch, fp, name):
    breaker, message = BREAKAGES[name]
    breaker(builder, monkeypatch)
    before = snapshot(builder.root)

    with pytest.raises(iso_build.PreflightError) as raised:
        iso_build.build_debug(builder.config(), act)

    assert len(raised.value.problems) == 1, raised.value.problems
    problem = raised.value.problems[0]
    assert message.format(root=builder.root) in problem and "\n" not in problem
    assert f"preflight: {problem}" in act.lines
    assert "build" not in builder.nvidia.calls and builder.nvidia.makes == 0
    assert list(fp.calls) == []
    assert snapshot(builder.root) == before, "nothing was written"
    assert "==> audit" not in act.lines


def test_dry_preflight_reports_but_goes_on(builder, monkeypatch):
    break_alpine(builder, monkeypatch)
    lines = []
    iso_build.preflight(builder.config(), iso_build.Actions(dry=True, out=lines.append))
    assert lines == [f"preflight: not an Alpine system ({builder.path('alpine_release')} is missing): build"
                     " the ISO on an Alpine builder"]


def test_preflight_is_local_it_asks_no_repository_and_creates_nothing(builder, act, fp):
    """apk's question (network, up to bee.nvidia.apk_timeout) belongs to the nvidia step."""
    fp.allow_unregistered(False)
    before = snapshot(builder.root)
    iso_build.preflight(builder.config(), act)
    assert builder.kernel.calls == ["find_headers"], "the installed headers only, no apk, no match check"
    assert list(fp.calls) == [] and snapshot(builder.root) == before


def test_headers_of_another_kernel_stop_the_nvidia_step_before_any_build(builder, act):
    builder.kernel.iso_kver = "6.12.60-0-lts"
    with pytest.raises(iso_build.BuildError, match=f"headers are {KVER} but the ISO kernel is 6.12.60-0-lts"):
        iso_build.build_debug(builder.config(), act)
    assert "==> nvidia" in act.lines and "build" not in builder.nvidia.calls and builder.nvidia.makes == 0


def test_the_end_of_a_build_says_where_the_password_is_never_the_password(builder, act):
    cfg = builder.config()
    password_file = builder.path("live_password")
    password_file.parent.mkdir(parents=True, exist_ok=True)
    password_file.write_text("s3cret-Passw0rd-xyz\n")
    iso_build.report_password(cfg, act)
    assert act.lines == [f"live password of {cfg.bee.live.user} and root: in {password_file} (mode 0600)"]


# ------------------------------------------------------------------------------------------- setup-builder


def test_setup_builder_on_a_ready_builder_only_installs_packages(builder):
    cfg = builder.config()
    assert iso_build.setup_builder_commands(cfg) == ["apk add " + " ".join(cfg.bee.builder.packages)]


def test_setup_builder_switches_a_checkout_on_another_branch(builder, monkeypatch):
    break_aports_branch(builder, monkeypatch)
    aports = builder.root / "host/home/aports"
    assert iso_build.setup_builder_commands(builder.config())[1:] == [
        f"git -C {aports} fetch --depth 1 origin +refs/heads/3.22-stable:refs/remotes/origin/3.22-stable",
        f"git -C {aports} checkout -B 3.22-stable origin/3.22-stable",
    ]
    (aports / ".git/HEAD").write_text("ref: refs/heads/3.22-stable\n")
    assert len(iso_build.setup_builder_commands(builder.config())) == 1, "on the right branch: nothing"


@pytest.mark.parametrize(("branch", "ref"), [("v3.21", "3.21-stable"), ("edge", "master")])
def test_the_aports_clone_is_pinned_to_the_configured_alpine_branch(builder, monkeypatch, branch, ref):
    break_mkimage_script(builder, monkeypatch)
    monkeypatch.setenv("INVOKE_BEE_ALPINE_BRANCH", branch)
    assert f"git clone --depth 1 --branch {ref} " in iso_build.setup_builder_commands(builder.config())[-1]


def test_setup_builder_creates_the_key_and_clones_aports_when_missing(builder, monkeypatch):
    break_abuild_key(builder, monkeypatch)
    break_mkimage_script(builder, monkeypatch)
    cfg = builder.config()
    assert iso_build.setup_builder_commands(cfg)[1:] == [
        "abuild-keygen -i -a -n",
        f"git clone --depth 1 --branch 3.22-stable {cfg.bee.builder.aports_url}"
        f" {builder.root}/host/home/aports",
    ]


# ------------------------------------------------------------------------------------------- command line


def test_runs_alone_with_help():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "iso_build.py"), "--help"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in ("preflight", "audit", "nvidia", "overlay", "profile", "mkimage", "clean", "build", "--dry"):
        assert name in result.stdout


def test_main_reports_a_build_error_in_one_line(builder, monkeypatch, capsys):
    break_alpine(builder, monkeypatch)
    cfg = builder.config()
    monkeypatch.setattr(buildconfig, "load_config", lambda: cfg)
    assert iso_build.main(["preflight"]) == 1
    assert capsys.readouterr().err.strip() == "preflight: preflight found 1 problem(s); nothing was built"


def test_an_empty_iso_is_an_error(builder, act, fp):
    cfg = builder.config()
    iso = iso_build.iso_path(cfg)
    fp.register(iso_build.mkimage_command(cfg), callback=lambda process: iso.write_bytes(b""))
    with pytest.raises(iso_build.BuildError, match="wrote no .*iso.*skipped"):
        iso_build.run_mkimage(cfg, act)
    assert not iso_build.checksum_path(iso).exists()


def test_audit_syntax_error_names_the_line(builder, act, tmp_path):
    broken = tmp_path / "audit.py"
    broken.write_text("import os\n\ndef broken(:\n")
    expected = rf"^{broken}:3 does not compile: .*; fix it and build again$"
    with pytest.raises(iso_build.BuildError, match=expected):
        iso_build.place_audit(builder.config(), act, source=broken)
