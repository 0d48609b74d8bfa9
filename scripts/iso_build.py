"""The steps of `invoke build-debug`, as importable functions.

preflight -> audit -> nvidia -> overlay -> profile -> mkimage. tasks.py calls these functions; for debugging,
`python3 scripts/iso_build.py STEP [--dry]` runs one step (or `build` for all of them) without invoke.

Every path and value comes from invoke.yaml (`buildconfig.config_path`). Every file operation and command
goes through `Actions`, which with `dry=True` (invoke's `--dry`) only prints what it would do. Files are
written under a temporary name and renamed, so an interrupted build never leaves a half-written file that
the next run would trust.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `scripts` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import build_nvidia_module, buildconfig, fileops, iso_kernel, live_system

REPO_ROOT = buildconfig.REPO_ROOT
AUDIT_SOURCE = REPO_ROOT / "audit" / "audit.py"
PROFILE_TEMPLATES = Path("iso") / "mkimg"
BUILDER_TOOLS = ("abuild", "apk", "xorriso", "mksquashfs", "fakeroot")
PYTHON3_SHEBANG = b"#!/usr/bin/env python3\n"
# mkimage work sections rebuilt every time: the apkovl (keyed on the generator script alone, so a changed
# overlay would be ignored) and the final image. The slow, downloaded ones are kept.
STALE_SECTIONS = ("apkovl_", "image-")
# Sections made from the packages of the apk root's repositories (apkroot-<arch>/etc/apk/repositories, which
# mkimage writes only when it creates that folder): stale as a whole when the configured repositories change.
REPOSITORY_SECTIONS = ("kernel_", "apks_")
GIB = 1024**3


class BuildError(Exception):
    """A build step cannot go on. The message is one line: what went wrong and what to do."""


class PreflightError(BuildError):
    """Preflight found problems; `problems` holds one line each, and no slow step has started.

    After a dry run (which goes on to show the whole plan) it says that a real build would stop there.
    """

    def __init__(self, problems: list[str], dry: bool = False):
        self.problems = problems
        what = "a real build would stop there" if dry else "nothing was built"
        super().__init__(f"preflight found {len(problems)} problem(s); {what}")


# --------------------------------------------------------------------------------------------- actions


@dataclass
class Actions:
    """Runs the build's commands and file operations, or with `dry` only prints them."""

    dry: bool = False
    out: Callable[[str], None] = print
    memo: dict[str, Any] = field(default_factory=dict)  # answers worth asking once per build

    def say(self, message: str) -> None:
        """Print one line of progress."""
        self.out(message)

    def _dry(self, message: str) -> bool:
        if self.dry:
            self.out(f"[dry] would {message}")
        return self.dry

    def mkdir(self, path: Path) -> None:
        """Create `path` and its parents if missing."""
        if not path.is_dir() and not self._dry(f"mkdir -p {path}"):
            path.mkdir(parents=True, exist_ok=True)

    def write_file(self, path: Path, data: bytes, mode: int = 0o644) -> bool:
        """Write `data` to `path` with `mode` (temp name, then rename); False when it was already so."""
        if _same_file(path, data, mode):
            return False
        if not self._dry(f"write {path} ({len(data)} bytes, mode {mode:04o})"):
            fileops.write_atomic(path, data, mode)
        return True

    def remove(self, path: Path) -> bool:
        """Remove a file, symlink or whole directory; False when there was nothing to remove."""
        if not path.exists() and not path.is_symlink():
            return False
        refuse_dangerous_removal(path)
        if not self._dry(f"rm -rf {path}"):
            fileops.remove_path(path)
        return True

    def run(self, argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> None:
        """Run `argv` in `cwd` with `env` added to the environment; a failure raises BuildError."""
        shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        line = f"cd {shlex.quote(str(cwd))} && {shown} {shlex.join(argv)}".replace("&&  ", "&& ")
        self.out(f"[dry] would run: {line}" if self.dry else line)
        if self.dry:
            return
        sys.stdout.flush()  # our lines before the command's own output, also when piped to a log
        try:
            result = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, check=False)
        except OSError as err:
            raise BuildError(f"cannot run {argv[0]}: {err}") from err
        if result.returncode != 0:
            raise BuildError(f"{Path(argv[0]).name} failed with exit status {result.returncode}: see above")


def _same_file(path: Path, data: bytes, mode: int) -> bool:
    """True when `path` is ours (owned by this user), has `mode` and holds `data`.

    A file another user owns is never "already so", even with the same bytes: they could change it before
    mkimage reads it (a profile copy in /var/tmp, for one), so the build writes its own.
    """
    try:
        st = path.stat()
        return st.st_uid == os.geteuid() and st.st_mode & 0o7777 == mode and path.read_bytes() == data
    except OSError:
        return False


def refuse_dangerous_removal(path: Path) -> None:
    """Raise BuildError for a path no build step may delete: a top folder, or home, the repository,
    /tmp or /var/tmp, or a folder holding one of them (a mistyped path in invoke.yaml must not cost them).
    """
    resolved = path.parent.resolve() / path.name if path.is_symlink() else path.resolve()
    protected = (Path.home().resolve(), REPO_ROOT, Path("/tmp"), Path("/var/tmp"))
    if len(resolved.parts) < 3 or any(p.is_relative_to(resolved) for p in protected):
        raise BuildError(f"refusing to delete {path}: check the paths in invoke.yaml")


# --------------------------------------------------------------------------------------------- preflight


def check_alpine(cfg: Any) -> list[str]:
    """The build runs on Alpine (mkimage, apk and abuild exist nowhere else)."""
    release = buildconfig.config_path(cfg, "alpine_release")
    if release.is_file():
        return []
    return [f"not an Alpine system ({release} is missing): build the ISO on an Alpine builder"]


def check_builder_tools(cfg: Any) -> list[str]:
    """Every tool mkimage needs is on PATH and the aports checkout holds scripts/mkimage.sh."""
    problems = [
        f"builder tool {tool} not found on PATH: run `invoke setup-builder`"
        for tool in BUILDER_TOOLS
        if shutil.which(tool) is None
    ]
    script = mkimage_script(cfg)
    if not os.access(script, os.X_OK):
        problems.append(
            f"no executable {script} (bee.paths.aports): run `invoke setup-builder` to clone aports"
        )
    aports, wanted = buildconfig.config_path(cfg, "aports"), aports_branch(cfg)
    branch = checkout_branch(aports)
    if branch not in (None, wanted):
        problems.append(
            f"the aports checkout {aports} is on branch {branch}, not {wanted} (bee.alpine.branch): run "
            "`invoke setup-builder` to switch it"
        )
    return problems


def aports_branch(cfg: Any) -> str:
    """Return the aports branch of the configured Alpine branch (vX.Y: X.Y-stable; edge: master)."""
    branch = str(cfg.bee.alpine.branch)
    return "master" if branch == "edge" else f"{branch.removeprefix('v')}-stable"


def checkout_branch(checkout: Path) -> str | None:
    """Return the branch a git checkout is on (read from .git/HEAD), or None when unknown or detached."""
    try:
        head = (checkout / ".git" / "HEAD").read_text().strip()
    except OSError:
        return None
    return head.removeprefix("ref: refs/heads/") if head.startswith("ref: refs/heads/") else None


def abuild_private_key(cfg: Any) -> Path | None:
    """Return the abuild signing key named by PACKAGER_PRIVKEY in abuild.conf, or None when unset."""
    conf = buildconfig.config_path(cfg, "abuild_conf")
    try:
        lines = conf.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.strip().partition("=")
        if name.strip() == "PACKAGER_PRIVKEY" and value.strip().strip("\"'"):
            return Path(os.path.expanduser(value.strip().strip("\"'")))
    return None


def check_abuild_key(cfg: Any) -> list[str]:
    """abuild.conf names a signing key that exists (mkimage signs the modloop with it)."""
    key = abuild_private_key(cfg)
    if key is not None and key.is_file():
        return []
    conf = buildconfig.config_path(cfg, "abuild_conf")
    missing = f"{key} is missing" if key else f"no PACKAGER_PRIVKEY in {conf}"
    return [f"no abuild signing key ({missing}): run `invoke setup-builder` (abuild-keygen -i -a -n)"]


def check_headers(cfg: Any) -> list[str]:
    """Headers of the configured kernel flavor and series are installed (bee.nvidia.kernel_release's if set).

    Local only: whether they are those of the repository's kernel, the nvidia step asks apk.
    """
    try:
        iso_kernel.find_headers(cfg)
    except iso_kernel.KernelError as err:
        return [str(err)]
    return []


def check_free_space(cfg: Any) -> list[str]:
    """mkimage's TMPDIR (paths.mkimage_cwd) and its workdir have bee.builder.min_free_gib free."""
    needed = float(cfg.bee.builder.min_free_gib)
    problems, seen = [], set()
    for name in ("mkimage_cwd", "mkimage_workdir"):
        place = existing_ancestor(buildconfig.config_path(cfg, name))
        device = place.stat().st_dev
        if device in seen:
            continue
        seen.add(device)
        free = shutil.disk_usage(place).free / GIB
        if free < needed:
            problems.append(
                f"only {free:.1f} GiB free in {place} (paths.{name}); mkimage needs {needed:g} GiB:"
                " free some space or point the path elsewhere"
            )
    return problems


def existing_ancestor(path: Path) -> Path:
    """Return `path` or its nearest existing parent."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def user_name(uid: int) -> str:
    """Return the login name of `uid`, or "uid N" when the system knows no such user."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def foreign_copy_problem(path: Path) -> str | None:
    """Return one line when `path` is another user's file that this user cannot replace, else None.

    A profile copy another user owns is never kept (see _same_file): the build renames its own over it.
    In a sticky folder such as /var/tmp only the file's owner, the folder's owner or root may do that;
    the line names the file, its owner and what to do.
    """
    try:
        owner = path.lstat().st_uid
        folder = path.parent.stat()
    except FileNotFoundError:
        return None
    except OSError as err:
        return fileops.os_error_line(err)
    me = os.geteuid()
    if me == 0 or owner == me or folder.st_uid == me or not folder.st_mode & stat.S_ISVTX:
        return None
    who = user_name(owner)
    return (f"{path} belongs to {who}, and in the sticky {path.parent} this user ({user_name(me)}) cannot"
            f" replace it with the build's own copy: remove it as {who if owner == 0 else who + ' or root'}")


def check_profile_copies(cfg: Any) -> list[str]:
    """Every profile copy (and its temporary name) that another user owns can be replaced by this user."""
    places = [p for copy in profile_copies(cfg) for p in (copy, fileops.temp_name(copy))]
    return [line for line in map(foreign_copy_problem, places) if line]


def check_login(cfg: Any) -> list[str]:
    """The live system can be logged into (live_system.login_problem, the one place of that rule)."""
    problem = live_system.login_problem(cfg)
    return [problem] if problem else []


def check_expect_profile(cfg: Any) -> list[str]:
    """The built-in acceptance profile (bee.live.expect_profile), when set, is one the audit can use: a bad
    one stops the build before the slow NVIDIA step, not after it."""
    try:
        live_system.load_expect_profile(cfg)
    except live_system.StagingError as err:
        return [str(err)]
    return []


PREFLIGHT_CHECKS: dict[str, Callable[[Any], list[str]]] = {
    "alpine": check_alpine,
    "tools": check_builder_tools,
    "abuild_key": check_abuild_key,
    "headers": check_headers,
    "space": check_free_space,
    "profile_copies": check_profile_copies,
    "login": check_login,
    "profile": check_expect_profile,
}


MKIMAGE_CHECKS = ("alpine", "tools", "abuild_key", "space", "profile_copies")


def preflight(cfg: Any, act: Actions, checks: Iterable[str] = tuple(PREFLIGHT_CHECKS)) -> None:
    """Run the named checks (all by default), print one line per problem, raise PreflightError if any.

    Every check is local and quick (no network, no command) and changes nothing, so the build stops before
    any slow work. In a dry run the problems are printed but do not stop it, so `invoke --dry build-debug`
    shows the plan anywhere; they are kept in `act.memo` and run_step then ends the dry run with status 1.
    """
    problems = [line for name in checks for line in PREFLIGHT_CHECKS[name](cfg)]
    for line in problems:
        act.say(f"preflight: {line}")
    if problems and not act.dry:
        raise PreflightError(problems)
    act.memo.setdefault("preflight_problems", []).extend(problems)  # run_step ends a dry run with them


# --------------------------------------------------------------------------------------------- audit


def audit_target(cfg: Any, overlay: Path) -> Path:
    """Return where the audit lives in the overlay: bee.live.audit_path under `overlay`."""
    return buildconfig.live_path(overlay, cfg.bee.live.audit_path)


def audit_program(source: Path = AUDIT_SOURCE) -> bytes:
    """Return the audit as the live system runs it: the source with a python3 shebang as first line."""
    text = source.read_bytes()
    if text.startswith(b"#!"):
        text = text.split(b"\n", 1)[1] if b"\n" in text else b""
    return PYTHON3_SHEBANG + text


def place_audit(cfg: Any, act: Actions, overlay: Path | None = None, source: Path = AUDIT_SOURCE) -> Path:
    """Place audit/audit.py at the live system's audit path in the overlay (mode 0755, python3 shebang).

    It is byte-compiled first (in memory: no .pyc is written anywhere) so a syntax error stops the build
    here and not at boot. When the placed file is already identical nothing is compiled or written.
    """
    overlay = overlay or buildconfig.config_path(cfg, "overlay")
    target = audit_target(cfg, overlay)
    program = audit_program(source)
    if _same_file(target, program, 0o755):
        act.say(f"audit: {target} is up to date")
        return target
    try:
        compile(source.read_bytes(), str(source), "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as err:
        where = f"{source}:{err.lineno}" if isinstance(err, SyntaxError) and err.lineno else str(source)
        reason = err.msg if isinstance(err, SyntaxError) else str(err)
        raise BuildError(f"{where} does not compile: {reason}; fix it and build again") from err
    if act.write_file(target, program, 0o755) and not act.dry:
        act.say(f"audit: placed {source.name} as {target}")
    return target


# --------------------------------------------------------------------------------------------- nvidia


@dataclass(frozen=True)
class NvidiaBuild:
    """The NVIDIA build for the ISO's kernel: its release and the cache folder holding the files."""

    kver: str
    cache_dir: Path


def kernel_headers(cfg: Any, act: Actions | None = None) -> tuple[str, Path]:
    """Return (kernel release, headers folder) of the installed headers, checked against the ISO's kernel.

    Raises BuildError (one line naming both versions) when the headers are absent or mismatched. The
    answer is remembered in `act.memo`, so apk is asked only once per build.
    A dry run does not ask apk (it writes its cache): it prints the question and takes the installed
    headers unchecked, unless bee.nvidia.kernel_release names the ISO's kernel.
    """
    memo = act.memo if act is not None else {}
    if "kernel_headers" not in memo:
        try:
            if act is not None and act.dry and not str(cfg.bee.nvidia.kernel_release or "").strip():
                question = iso_kernel.apk_search_command(cfg, iso_kernel.apk_cache_dir(cfg))
                act.say(f"[dry] would ask the repository for the ISO's kernel: {shlex.join(question)}")
                kver, headers = iso_kernel.find_headers(cfg)
            else:
                kver, headers = iso_kernel.kernel_for_iso(cfg)
        except iso_kernel.KernelError as err:
            raise BuildError(str(err)) from err
        memo["kernel_headers"] = (kver, Path(headers))
    return memo["kernel_headers"]


def nvidia_cache_dir(cfg: Any, kver: str) -> Path:
    """Return the cache folder of the NVIDIA build for `kver`: dist/nvidia-<version>-<kver>/."""
    return build_nvidia_module.cache_dir_for(cfg, kver, buildconfig.config_path(cfg, "dist"))


def build_nvidia(cfg: Any, act: Actions, progress: Any = None) -> NvidiaBuild:
    """Build (or find cached) the NVIDIA modules and userland for the ISO's kernel."""
    if act.dry:
        try:
            kver, headers = kernel_headers(cfg, act)
        except BuildError as err:  # a dry run shows the plan even on a machine that cannot build
            act.say(f"[dry] nvidia: {err}")
            kver, headers = "KVER", Path("HEADERS")
        cache = nvidia_cache_dir(cfg, kver)
        act.say(f"[dry] would build NVIDIA {cfg.bee.nvidia.version} for {kver} against {headers}, or reuse "
                f"{cache} if its manifest still matches")
        return NvidiaBuild(kver, cache)
    kver, headers = kernel_headers(cfg, act)
    try:
        cache_dir = build_nvidia_module.build(
            cfg, kver, headers=headers, cache_root=buildconfig.config_path(cfg, "dist"), progress=progress
        )
    except build_nvidia_module.NvidiaBuildError as err:
        raise BuildError(str(err)) from err
    act.say(f"nvidia: {cache_dir}")
    return NvidiaBuild(kver, Path(cache_dir))


def cached_nvidia(cfg: Any, act: Actions) -> NvidiaBuild:
    """Return the NVIDIA build already cached for the ISO's kernel (for running `overlay` alone).

    Raises BuildError when there is none yet, instead of starting the slow download and build.
    """
    if act.dry:
        return build_nvidia(cfg, act)
    kver, _ = kernel_headers(cfg, act)
    if not nvidia_cache_dir(cfg, kver).is_dir():
        raise BuildError(f"no NVIDIA build for {kver} in {nvidia_cache_dir(cfg, kver)}: run `invoke nvidia`")
    return build_nvidia(cfg, act)


# --------------------------------------------------------------------------------------------- overlay


def reset_overlay(act: Actions, overlay: Path, keep: Iterable[Path]) -> None:
    """Remove everything in `overlay` except the files in `keep`, so no stale file reaches the ISO."""
    kept = set(keep)
    if not overlay.is_dir():
        return
    for path in sorted(overlay.rglob("*"), reverse=True):  # children before their folder
        if path in kept:
            continue
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()) and not any(k.is_relative_to(path) for k in kept):
                act.remove(path)
            continue
        act.remove(path)


def overlaps(one: Path, other: Path) -> bool:
    """True when one folder is the other or inside it."""
    one, other = one.resolve(), other.resolve()
    return one.is_relative_to(other) or other.is_relative_to(one)


def assemble_overlay(cfg: Any, act: Actions, nvidia: NvidiaBuild, audit: Path | None = None) -> Path:
    """Assemble the live system's overlay in paths.overlay (build/, never the tracked iso/overlay-debug/).

    In order: the audit (placed here unless the audit step already placed it at `audit`), the NVIDIA
    files, then the live system (static files of iso/overlay-debug/, services, configuration,
    authorized_keys, password) and the generator's JSON configuration. Files of an earlier build that
    this one does not make again are removed first.
    """
    overlay = buildconfig.config_path(cfg, "overlay")
    tracked = live_system.STATIC_OVERLAY
    if overlaps(overlay, tracked):
        raise BuildError(f"paths.overlay {overlay} overlaps the tracked {tracked}: use build/overlay")
    audit = audit or place_audit(cfg, act, overlay)
    reset_overlay(act, overlay, keep=[audit])
    act.mkdir(overlay)
    if act.dry:
        act.say(f"[dry] would install the NVIDIA files of {nvidia.cache_dir} into {overlay}")
    else:
        try:
            nvidia_files = build_nvidia_module.install_into_overlay(
                nvidia.cache_dir, overlay, cfg, nvidia.kver
            )
        except build_nvidia_module.NvidiaBuildError as err:
            raise BuildError(str(err)) from err
        act.say(f"overlay: {len(nvidia_files)} NVIDIA files for {nvidia.kver}")
    password_file = buildconfig.config_path(cfg, "live_password")
    if act.dry:
        act.say(f"[dry] would stage the live system into {overlay} (password file {password_file})")
        return overlay
    try:
        generator_config = Path(live_system.stage_live_system(cfg, overlay, password_file=password_file))
    except live_system.StagingError as err:
        raise BuildError(str(err)) from err
    expected = buildconfig.generator_config_path(cfg)
    if generator_config.resolve() != expected.resolve():
        raise BuildError(f"the live system wrote {generator_config}, but the generator reads {expected}")
    act.say(f"overlay: {overlay} ready, generator configuration {generator_config}")
    return overlay


def overlay_step(cfg: Any, act: Actions) -> Path:
    """The overlay task run alone: assemble the overlay with the NVIDIA build already cached."""
    return assemble_overlay(cfg, act, cached_nvidia(cfg, act))


# --------------------------------------------------------------------------------------------- profile


PROFILE_FOLDERS = ("mkimage_home", "mkimage_cwd")


def profile_files(cfg: Any) -> dict[str, tuple[Path, int]]:
    """Return {installed name: (template, mode)} of the mkimage profile and its apkovl generator."""
    profile = cfg.bee.iso.profile
    return {
        f"mkimg.{profile}.sh": (PROFILE_TEMPLATES / f"mkimg.{profile}.sh.j2", 0o644),
        f"genapkovl-{profile}.sh": (PROFILE_TEMPLATES / f"genapkovl-{profile}.sh.j2", 0o755),
    }


def profile_copies(cfg: Any) -> list[Path]:
    """Return where install_profile puts the profile and its generator: both in paths.mkimage_home AND
    paths.mkimage_cwd (the spec's "~/.mkimage/ AND /var/tmp/")."""
    folders = [buildconfig.config_path(cfg, folder) for folder in PROFILE_FOLDERS]
    return [folder / name for name in profile_files(cfg) for folder in folders]


def install_profile(cfg: Any, act: Actions) -> list[Path]:
    """Render the profile and generator and copy both to paths.mkimage_home AND paths.mkimage_cwd.

    mkimage reads profiles from ~/.mkimage and looks the generator up in its working directory
    (paths.mkimage_cwd, /var/tmp) first: a copy only in ~/.mkimage would be found by the profile but not
    keyed right. Unchanged copies of this user's are left alone; a copy another user owns is replaced by
    ours even when its bytes are the same (they could change it before mkimage runs it). Where that is
    not allowed (another user's copy in the sticky /var/tmp, a builder that is not root) BuildError says
    whose file it is and what to do.
    """
    installed = []
    for name, (template, mode) in profile_files(cfg).items():
        if not (REPO_ROOT / template).is_file():
            raise BuildError(f"no template {template} for profile {cfg.bee.iso.profile} (bee.iso.profile)")
        content = buildconfig.render_template(cfg, template).encode()
        for folder in PROFILE_FOLDERS:
            target = buildconfig.config_path(cfg, folder) / name
            try:
                changed = act.write_file(target, content, mode)
            except PermissionError as err:
                blocking = (foreign_copy_problem(p) for p in (target, fileops.temp_name(target)))
                raise BuildError(next((line for line in blocking if line), None)
                                 or fileops.os_error_line(err)) from err
            if not act.dry:
                act.say(f"profile: {target} {'written' if changed else 'is up to date'}")
            installed.append(target)
    return installed


# --------------------------------------------------------------------------------------------- mkimage


def mkimage_script(cfg: Any) -> Path:
    """Return aports' scripts/mkimage.sh in the configured checkout."""
    return buildconfig.config_path(cfg, "aports") / "scripts" / "mkimage.sh"


def iso_path(cfg: Any) -> Path:
    """Return the ISO mkimage writes: <outdir>/alpine-<profile>-<tag>-<arch>.iso."""
    bee = cfg.bee
    name = f"alpine-{bee.iso.profile}-{bee.iso.tag}-{bee.alpine.arch}.iso"
    return buildconfig.config_path(cfg, "mkimage_outdir") / name


def checksum_path(iso: Path) -> Path:
    """Return the `<iso>.sha256` file written beside the ISO."""
    return iso.with_name(iso.name + ".sha256")


def apkroot(cfg: Any) -> Path:
    """Return mkimage's apk root for the configured arch: <workdir>/apkroot-<arch>."""
    return buildconfig.config_path(cfg, "mkimage_workdir") / f"apkroot-{cfg.bee.alpine.arch}"


def apkroot_repositories(root: Path) -> list[str] | None:
    """Return the repository URLs in `root`/etc/apk/repositories (one a line, blanks and # comments
    skipped), or None when the file cannot be read (an apk root mkimage did not finish)."""
    try:
        text = (root / "etc" / "apk" / "repositories").read_text(errors="replace")
    except OSError:
        return None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def repository_stale_sections(cfg: Any) -> list[Path]:
    """Return the apk root and its kernel_*/apks_* sections when it holds other repositories than configured.

    mkimage writes apkroot-<arch>/etc/apk/repositories only when it creates that folder, so after a change
    of bee.alpine (branch, mirror, repositories) it would go on fetching from the old ones. Empty when the
    apk root is absent or its repositories are the configured ones.
    """
    root = apkroot(cfg)
    if not root.is_dir() or root.is_symlink():
        return []
    found = apkroot_repositories(root)
    wanted = buildconfig.repository_urls(cfg)
    if found is not None and [u.rstrip("/") for u in found] == [u.rstrip("/") for u in wanted]:
        return []
    sections = sorted(p for p in root.parent.iterdir() if p.name.startswith(REPOSITORY_SECTIONS))
    return [root, *sections]


def stale_items(cfg: Any) -> tuple[list[Path], str]:
    """Return what a clean removes before mkimage runs, and a line saying why, when the repositories changed.

    The apkovl_* and image-* sections, the previous ISO and its checksum; and the apk root with its
    kernel_*/apks_* sections when its repositories are not the configured ones (repository_stale_sections).
    """
    workdir = buildconfig.config_path(cfg, "mkimage_workdir")
    stale = []
    if workdir.is_dir():
        stale = [p for p in sorted(workdir.iterdir()) if p.name.startswith(STALE_SECTIONS)]
    why = ""
    repository_sections = repository_stale_sections(cfg)
    if repository_sections:
        found = apkroot_repositories(repository_sections[0])
        was = " ".join(found) if found else "no readable repositories file"
        why = (f"clean: {repository_sections[0]} holds {was}, not bee.alpine's "
               f"{' '.join(buildconfig.repository_urls(cfg))}: mkimage never rewrites it, so it goes with "
               "the kernel_* and apks_* sections made from it")
        stale += repository_sections
    iso = iso_path(cfg)
    stale += [p for p in (iso, checksum_path(iso)) if p.exists() or p.is_symlink()]
    return stale, why


def clean_workdir(cfg: Any, act: Actions) -> list[Path]:
    """Remove mkimage's apkovl_* and image-* sections and the previous ISO; keep the cached sections.

    apks_*, kernel_*, syslinux_*, grub_* (downloads, modloop) survive, unless the apk root was made from
    other repositories than the configured ones: then it goes with its kernel_* and apks_* sections (a
    line says why). Returns what was removed.
    """
    stale, why = stale_items(cfg)
    if why:
        act.say(why)
    for path in stale:
        act.remove(path)
    done = "would remove" if act.dry else "removed"
    act.say(f"clean: {done} {len(stale)} stale item(s)" + "".join(f"\n  {p}" for p in stale))
    return stale


def clean_all(cfg: Any, act: Actions) -> list[Path]:
    """Remove everything the build made except the downloaded installer: workdir, build/, ISO, caches.

    The NVIDIA installer in paths.download_cache stays (it is verified against its pinned sha256 and slow
    to fetch again; a folder holding it is not removed); delete it by hand to force a new download. Each
    item is removed and counted once: the stale sections inside the workdir go with it.
    """
    dist = buildconfig.config_path(cfg, "dist")
    downloads = buildconfig.config_path(cfg, "download_cache")
    targets = [
        buildconfig.config_path(cfg, "mkimage_workdir"),
        buildconfig.config_path(cfg, "build"),
        buildconfig.config_path(cfg, "mkimage_outdir"),
        *sorted(dist.glob(nvidia_cache_dir(cfg, "*").name) if dist.is_dir() else []),
        *profile_copies(cfg),
    ]
    targets = [p for p in targets if not downloads.is_relative_to(p)]
    targets += [p for p in stale_items(cfg)[0] if not any(p.is_relative_to(t) for t in targets)]
    removed = []
    for path in targets:
        if path not in removed and act.remove(path):
            removed.append(path)
    done = "would remove" if act.dry else "removed"
    act.say(f"clean --all: {done} {len(removed)} item(s)" + "".join(f"\n  {p}" for p in removed))
    return removed


def takes_one_repository(script: Path) -> bool:
    """True when the checkout's mkimage.sh keeps a single --repository (a second one replaces the first).

    Such checkouts (older aports) take the others as --extra-repository; current ones take --repository
    several times and warn that --extra-repository is deprecated. A script that cannot be read is taken
    as current (preflight reports it missing).
    """
    try:
        text = script.read_text(errors="replace")
    except OSError:
        return False
    return re.search(r"--repository\)\s*REPODIR=", text) is not None


def repository_options(cfg: Any) -> list[str]:
    """Return mkimage's repository options in the form the aports checkout's mkimage.sh supports."""
    main, *extra = buildconfig.repository_urls(cfg)
    other = "--extra-repository" if takes_one_repository(mkimage_script(cfg)) else "--repository"
    options = ["--repository", main]
    for url in extra:
        options += [other, url]
    return options


def mkimage_command(cfg: Any) -> list[str]:
    """Return the mkimage.sh command line: profile, tag, arch, outdir, workdir and the repositories."""
    command = [
        str(mkimage_script(cfg)),
        "--profile", cfg.bee.iso.profile,
        "--tag", str(cfg.bee.iso.tag),
        "--arch", cfg.bee.alpine.arch,
        "--outdir", str(buildconfig.config_path(cfg, "mkimage_outdir")),
        "--workdir", str(buildconfig.config_path(cfg, "mkimage_workdir")),
        *repository_options(cfg),
    ]
    return command


def run_mkimage(cfg: Any, act: Actions) -> Path | None:
    """Clean the stale sections, run mkimage.sh (cwd and TMPDIR paths.mkimage_cwd), check the ISO.

    mkimage exits 0 even when it skipped the profile, so the ISO's existence is checked; its path, size
    and sha256 are printed and the sha256 written to `<iso>.sha256`. Returns the ISO (None in a dry run).
    """
    clean_workdir(cfg, act)
    cwd = buildconfig.config_path(cfg, "mkimage_cwd")
    for folder in ("mkimage_workdir", "mkimage_outdir"):
        act.mkdir(buildconfig.config_path(cfg, folder))
    act.run(mkimage_command(cfg), cwd=cwd, env={"TMPDIR": str(cwd)})
    if act.dry:
        return None
    iso = iso_path(cfg)
    if not iso.is_file() or iso.stat().st_size == 0:
        raise BuildError(
            f"mkimage succeeded but wrote no {iso}: was profile {cfg.bee.iso.profile} skipped? its arch"
            f" must include {cfg.bee.alpine.arch} and mkimg.{cfg.bee.iso.profile}.sh be in"
            f" {buildconfig.config_path(cfg, 'mkimage_home')}"
        )
    digest = fileops.sha256_file(iso)
    act.write_file(checksum_path(iso), f"{digest}  {iso.name}\n".encode())
    act.say(f"ISO: {iso}\n  size: {iso.stat().st_size} bytes\n  sha256: {digest}")
    return iso


def mkimage_step(cfg: Any, act: Actions) -> Path | None:
    """The mkimage task run alone: the preflight checks it needs (Alpine, tools, key, space, the profile
    copies), then mkimage."""
    preflight(cfg, act, MKIMAGE_CHECKS)
    return run_mkimage(cfg, act)


# --------------------------------------------------------------------------------------------- whole build


def report_password(cfg: Any, act: Actions) -> None:
    """Say where the generated fallback password is at the end of a build, never the password itself.

    The build's output may be kept in a log others can read (scripts/run_builder.py's, for one).
    """
    password_file = buildconfig.config_path(cfg, "live_password")
    if not cfg.bee.live.password_hash and password_file.is_file():
        act.say(f"live password of {cfg.bee.live.user} and root: in {password_file} (mode 0600)")


def build_debug(cfg: Any, act: Actions, progress: Any = None) -> Path | None:
    """Run every step in order: preflight, audit, nvidia, overlay, profile, mkimage.

    Prints each step's time; returns the ISO (None in a dry run).
    """
    def timed(name: str, step: Callable[[], Any]) -> Any:
        act.say(f"==> {name}")
        started = time.perf_counter()
        result = step()
        act.say(f"<== {name} ({time.perf_counter() - started:.2f} s)")
        return result

    timed("preflight", lambda: preflight(cfg, act))
    audit = timed("audit", lambda: place_audit(cfg, act))
    nvidia = timed("nvidia", lambda: build_nvidia(cfg, act, progress))
    timed("overlay", lambda: assemble_overlay(cfg, act, nvidia, audit))
    timed("profile", lambda: install_profile(cfg, act))
    iso = timed("mkimage", lambda: run_mkimage(cfg, act))
    report_password(cfg, act)
    return iso


def setup_builder_commands(cfg: Any) -> list[str]:
    """Return the shell commands that prepare an Alpine builder (only those still needed).

    apk add of bee.builder.packages; abuild-keygen when there is no signing key; a clone of aports pinned
    to the configured Alpine branch (aports_branch) when scripts/mkimage.sh is missing, or a switch of an
    existing checkout that is on another branch.
    """
    commands = ["apk add " + " ".join(shlex.quote(p) for p in cfg.bee.builder.packages)]
    if check_abuild_key(cfg):
        commands.append("abuild-keygen -i -a -n")
    ref, url = aports_branch(cfg), shlex.quote(cfg.bee.builder.aports_url)
    aports = buildconfig.config_path(cfg, "aports")
    git = f"git -C {shlex.quote(str(aports))}"
    if not mkimage_script(cfg).is_file():
        commands.append(f"git clone --depth 1 --branch {ref} {url} {shlex.quote(str(aports))}")
    elif checkout_branch(aports) not in (None, ref):
        commands.append(f"{git} fetch --depth 1 origin +refs/heads/{ref}:refs/remotes/origin/{ref}")
        commands.append(f"{git} checkout -B {ref} origin/{ref}")
    return commands


# --------------------------------------------------------------------------------------------- command line

STEPS: dict[str, Callable[[Any, Actions], Any]] = {
    "preflight": preflight,
    "audit": place_audit,
    "nvidia": build_nvidia,
    "overlay": overlay_step,
    "profile": install_profile,
    "mkimage": mkimage_step,
    "clean": clean_workdir,
    "clean-all": clean_all,
    "build": build_debug,
}


def run_step(step: Callable[..., Any], cfg: Any, act: Actions, *args: Any) -> Any:
    """Run one build function; an OSError (a full disk, a permission) becomes a one-line BuildError.

    A dry run whose preflight found problems goes on to the end of its plan, then raises PreflightError:
    `invoke --dry build-debug` exits 1 on a builder where the real build would stop.
    """
    try:
        result = step(cfg, act, *args)
    except OSError as err:
        raise BuildError(fileops.os_error_line(err)) from err
    problems = act.memo.get("preflight_problems")
    if act.dry and problems:
        raise PreflightError(problems, dry=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run one build step without invoke (for debugging); values come from invoke.yaml as for the tasks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=list(STEPS), help="the step to run (`build`: all of them in order)")
    parser.add_argument("--dry", action="store_true", help="print commands and file operations only")
    args = parser.parse_args(argv)
    try:
        run_step(STEPS[args.step], buildconfig.load_config(), Actions(dry=args.dry))
    except BuildError as err:
        print(f"{args.step}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
