#!/usr/bin/env python3
"""Stage the live system's own files into the overlay folder that becomes the apkovl.

`stage_live_system()` writes the OpenRC services (rendered from openrc/), /etc/conf.d/dropbear, the files
of iso/overlay-debug/ (its `*.j2` rendered, such as /etc/doas.d/bee.conf), /etc/network/interfaces,
/etc/hostname, /etc/apk/world, the live user's SSH keys and password hash, the acceptance profile of
`bee.live.expect_profile` (when set, checked first), then the JSON config scripts/genapkovl.py reads when
mkimage runs it (apkovl.json beside the overlay folder: staging into another folder touches nothing
else). Every value comes from invoke.yaml (`bee.live`, `bee.iso`, `bee.paths`).

The password fallback: `bee.live.password_hash` (a crypt hash) is used as it is; when it is empty, a random
password is made, hashed with `openssl passwd -6` (or busybox `mkpasswd`), written to `password_file`
(mode 0600), and only that file is named in the output; the overlay, and so the ISO, holds only the hash. With
`bee.live.password_fallback: false` there is no password at all and SSH keys are required.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python3 scripts/live_system.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import buildconfig, fileops  # noqa: E402

SERVICES_DIR = "openrc"
CONF_D_DIR = "conf.d"
STATIC_OVERLAY = buildconfig.REPO_ROOT / "iso" / "overlay-debug"
IGNORED_STATIC = {".gitkeep"}
INTERFACES = "auto lo\niface lo inet loopback\n"
PASSWORD_BYTES = 15  # 20 URL-safe characters
PASSWORD_FILE = "live-password.txt"  # beside an overlay staged elsewhere than bee.paths.overlay
RUNLEVEL_ORDER = ("sysinit", "boot", "default", "shutdown")
NOT_WRITABLE_BY_OTHERS = 0o022  # group and other write bits, dropped from every staged static file
# What busybox adduser accepts and what the services and /etc/doas.d take unquoted.
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class StagingError(Exception):
    """A problem with the build's inputs; its message says what is wrong and what to do."""


def runlevels(cfg: Any) -> dict[str, list[str]]:
    """Return the services of each runlevel (sysinit, boot, default, shutdown) from `bee.live.runlevels`.

    The one place the apkovl's runlevel links come from; `default` is in start order.
    """
    configured = buildconfig.plain(cfg.bee.live.runlevels)
    unknown = set(configured) - set(RUNLEVEL_ORDER)
    if unknown:
        raise StagingError(f"bee.live.runlevels has unknown runlevels {sorted(unknown)}; use "
                           f"{', '.join(RUNLEVEL_ORDER)}")
    return {level: list(configured.get(level, [])) for level in RUNLEVEL_ORDER}


def service_sources() -> dict[str, Path]:
    """Return the service files of openrc/ (name without .j2 -> source path relative to the repository)."""
    return _sources(buildconfig.REPO_ROOT / SERVICES_DIR)


def conf_d_sources() -> dict[str, Path]:
    """Return the files of openrc/conf.d/ (name without .j2 -> source path relative to the repository)."""
    return _sources(buildconfig.REPO_ROOT / SERVICES_DIR / CONF_D_DIR)


def _sources(folder: Path) -> dict[str, Path]:
    return {p.name.removesuffix(buildconfig.TEMPLATE_SUFFIX): p.relative_to(buildconfig.REPO_ROOT)
            for p in sorted(folder.iterdir()) if p.is_file()}


def render_source(cfg: Any, source: Path) -> str:
    """Return a service or conf.d file: rendered when it is a template, else as it is."""
    if source.name.endswith(buildconfig.TEMPLATE_SUFFIX):
        return buildconfig.render_template(cfg, source)
    return (buildconfig.REPO_ROOT / source).read_text()


def write_file(path: Path, content: str | bytes, mode: int) -> Path:
    """Write `content` to `path` with `mode`, through a temporary name created with that mode; return path."""
    return fileops.write_atomic(path, content.encode() if isinstance(content, str) else content, mode)


def hash_tools() -> list[list[str]]:
    """Return the commands that can hash a password read on stdin into SHA-512 crypt, best first."""
    tools = []
    if shutil.which("openssl"):
        tools.append(["openssl", "passwd", "-6", "-stdin"])
    if shutil.which("busybox"):
        tools.append(["busybox", "mkpasswd", "-m", "sha512", "-P", "0"])
    return tools


def hash_password(password: str) -> str:
    """Return a SHA-512 crypt(3) hash (`$6$...`) of `password`, passed to the tool on stdin, never argv."""
    for command in hash_tools():
        result = subprocess.run(command, input=password + "\n", capture_output=True, text=True)
        hashed = result.stdout.strip()
        if result.returncode == 0 and hashed.startswith("$6$"):
            return hashed
    raise StagingError("cannot hash the fallback password: install openssl (apk add openssl) or busybox")


def password_hash(cfg: Any, password_file: Path) -> str | None:
    """Return the crypt hash for the live user, making a random password when none is configured.

    A made password is written to `password_file` (mode 0600), never printed (build output ends up in
    logs others can read): only where it is. Only its hash is returned.
    Returns None when `bee.live.password_fallback` is false.
    """
    live = cfg.bee.live
    if not live.password_fallback or live.password_hash:
        password_file.unlink(missing_ok=True)  # a password of an earlier build would no longer work
    if not live.password_fallback:
        return None
    if live.password_hash:
        hashed = str(live.password_hash)
        if not hashed.startswith("$") or ":" in hashed or len(hashed.split()) != 1:
            raise StagingError("bee.live.password_hash must be one crypt(3) hash such as $6$... (no spaces "
                               "or colons); make one with `openssl passwd -6`")
        return hashed
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    hashed = hash_password(password)
    write_file(password_file, password + "\n", 0o600)
    print(f"live_system: a new password of {live.user} and root is in {password_file} (mode 0600; the ISO "
          "holds only its hash)")
    return hashed


def source_date_epoch() -> int:
    """Return SOURCE_DATE_EPOCH from the environment, else the time of the last git commit, else 0."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        result = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=buildconfig.REPO_ROOT,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return int(result.stdout.strip()) if result.stdout.strip().isdigit() else 0


def stage_services(cfg: Any, overlay_dir: Path) -> None:
    """Write every service of openrc/ to /etc/init.d (0755) and every conf.d file to /etc/conf.d (0644)."""
    for name, source in service_sources().items():
        write_file(overlay_dir / "etc" / "init.d" / name, render_source(cfg, source), 0o755)
    for name, source in conf_d_sources().items():
        write_file(overlay_dir / "etc" / "conf.d" / name, render_source(cfg, source), 0o644)


def stage_static(cfg: Any, overlay_dir: Path) -> None:
    """Copy iso/overlay-debug/ into the overlay; `*.j2` files are rendered and lose the suffix.

    Modes are kept, less any group or other write bit: doas, for one, refuses a config others can write.
    """
    for path in sorted(STATIC_OVERLAY.rglob("*")):
        if path.name in IGNORED_STATIC or not path.is_file():
            continue
        rel = path.relative_to(STATIC_OVERLAY)
        mode = path.stat().st_mode & 0o777 & ~NOT_WRITABLE_BY_OTHERS
        if path.name.endswith(buildconfig.TEMPLATE_SUFFIX):
            target = overlay_dir / str(rel).removesuffix(buildconfig.TEMPLATE_SUFFIX)
            write_file(target, render_source(cfg, path.relative_to(buildconfig.REPO_ROOT)), mode)
        else:
            write_file(overlay_dir / rel, path.read_bytes(), mode)


def stage_system_files(cfg: Any, overlay_dir: Path) -> None:
    """Write /etc/network/interfaces (lo only), /etc/hostname and /etc/apk/world."""
    write_file(overlay_dir / "etc" / "network" / "interfaces", INTERFACES, 0o644)
    write_file(overlay_dir / "etc" / "hostname", f"{cfg.bee.iso.hostname}\n", 0o644)
    write_file(overlay_dir / "etc" / "apk" / "world", "".join(f"{p}\n" for p in cfg.bee.live.packages), 0o644)


def has_keys(cfg: Any) -> bool:
    """True when bee.paths.authorized_keys is a non-empty file."""
    keys = buildconfig.config_path(cfg, "authorized_keys")
    return keys.is_file() and keys.stat().st_size > 0


def login_problem(cfg: Any) -> str | None:
    """Return why nobody could log in to the live system (no SSH keys and no password fallback), or None.

    The one place of that rule: preflight and the staging both ask it.
    """
    if has_keys(cfg) or cfg.bee.live.password_fallback:
        return None
    keys = buildconfig.config_path(cfg, "authorized_keys")
    return (f"no SSH keys in {keys} (bee.paths.authorized_keys) and bee.live.password_fallback is false: "
            "nobody could log in; add your public key there or enable the fallback")


def stage_credentials(cfg: Any, overlay_dir: Path, password_file: Path) -> None:
    """Stage the SSH keys and the password hash (both 0600); refuse when neither would exist."""
    live = cfg.bee.live
    keys_source = buildconfig.config_path(cfg, "authorized_keys")
    keys_target = buildconfig.live_path(overlay_dir, live.authorized_keys_file)
    hash_target = buildconfig.live_path(overlay_dir, live.password_hash_file)
    problem = login_problem(cfg)
    if problem:
        raise StagingError(problem)
    if has_keys(cfg):
        try:
            write_file(keys_target, keys_source.read_bytes(), 0o600)
        except OSError as exc:
            raise StagingError(f"cannot read the SSH keys {keys_source}: {exc.strerror}") from exc
    else:
        keys_target.unlink(missing_ok=True)
        print(f"live_system: no SSH keys at {keys_source}: {live.user} logs in with the password only")
    hashed = password_hash(cfg, password_file)
    if hashed:
        write_file(hash_target, hashed + "\n", 0o600)
    else:
        hash_target.unlink(missing_ok=True)


def load_expect_profile(cfg: Any) -> tuple[Path, Any] | None:
    """The file and the loaded profile of `bee.live.expect_profile`, checked with the audit's own loader (a
    typo fails the build, not the boot); None when none is set. Raises StagingError (one line). The one
    place this is checked: the build's preflight and the staging below both call it."""
    live = cfg.bee.live
    if not live.expect_profile:
        return None
    from audit import audit  # standard library only; the live system runs the same loader

    source = buildconfig.resolve_path(cfg, live.expect_profile)
    try:
        return source, audit.load_profile(str(source))
    except audit.ProfileError as exc:
        raise StagingError(f"bee.live.expect_profile: {exc}; fix the profile (audit --make-profile makes "
                           "one) or set bee.live.expect_profile to \"\"") from None


def stage_expect_profile(cfg: Any, overlay_dir: Path) -> None:
    """Put the acceptance profile of `bee.live.expect_profile` (if set) at `bee.live.expect_profile_file`
    in the overlay, after checking it (load_expect_profile)."""
    live = cfg.bee.live
    target = buildconfig.live_path(overlay_dir, live.expect_profile_file)
    loaded = load_expect_profile(cfg)
    if loaded is None:
        target.unlink(missing_ok=True)
        return
    source, profile = loaded
    write_file(target, source.read_bytes(), 0o644)
    print(f"live_system: acceptance profile {profile.name!r} ({source}) built in as "
          f"{live.expect_profile_file}")


def generator_config(cfg: Any, overlay_dir: Path) -> dict[str, Any]:
    """Return what scripts/genapkovl.py needs: overlay, hostname, runlevels, date, credential paths."""
    live = cfg.bee.live
    return {
        "overlay_dir": str(overlay_dir.resolve()),
        "hostname": cfg.bee.iso.hostname,
        "runlevels": runlevels(cfg),
        "source_date_epoch": source_date_epoch(),
        "password_fallback": bool(live.password_fallback),
        "authorized_keys_file": live.authorized_keys_file,
        "password_hash_file": live.password_hash_file,
    }


def stage_live_system(cfg: Any, overlay_dir: Path, *, password_file: Path) -> Path:
    """Stage the live system's files into `overlay_dir` and write genapkovl's JSON config beside it (the
    folder's sibling apkovl.json, build/apkovl.json for the default build/overlay); return its path.

    `password_file` receives a generated password (mode 0600) when `bee.live.password_hash` is empty.
    Raises StagingError (one clear line) on bad input.
    """
    overlay_dir = Path(overlay_dir)
    if not USER_NAME.fullmatch(str(cfg.bee.live.user)):
        raise StagingError(f"bee.live.user {cfg.bee.live.user!r} is not a valid user name; use lower-case "
                           "letters, digits, _ and -, starting with a letter or _")
    missing = [svc for svc in runlevels(cfg)["default"] if svc not in service_sources() and svc != "dropbear"]
    if missing:
        raise StagingError(f"bee.live.runlevels.default names {missing}, which openrc/ does not have")
    stage_static(cfg, overlay_dir)
    stage_services(cfg, overlay_dir)
    stage_system_files(cfg, overlay_dir)
    stage_credentials(cfg, overlay_dir, Path(password_file))
    stage_expect_profile(cfg, overlay_dir)
    config_file = buildconfig.generator_config_path(cfg, overlay_dir)
    generator = json.dumps(generator_config(cfg, overlay_dir), indent=2, sort_keys=True)
    write_file(config_file, generator + "\n", 0o644)
    return config_file


def main(argv: list[str] | None = None) -> int:
    """Command line: `live_system.py [--overlay DIR] [--password-file FILE]`, defaults from bee.paths.

    Staging into another folder than bee.paths.overlay writes only there and beside it (apkovl.json and,
    unless --password-file says otherwise, live-password.txt): nothing of the build's own.
    """
    cfg = buildconfig.load_config()
    configured = buildconfig.config_path(cfg, "overlay")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overlay", type=Path, default=configured,
                        help="the overlay folder to stage into; genapkovl's apkovl.json is written beside it "
                             "(default: bee.paths.overlay, %(default)s)")
    password = buildconfig.config_path(cfg, "live_password")
    parser.add_argument("--password-file", type=Path, default=None,
                        help="where a generated fallback password goes, mode 0600 (default: "
                             f"bee.paths.live_password, {password}; with another --overlay, "
                             f"{PASSWORD_FILE} beside it)")
    args = parser.parse_args(argv)
    password_file = args.password_file
    if password_file is None:
        same = args.overlay.absolute() == configured.absolute()
        password_file = password if same else args.overlay.absolute().parent / PASSWORD_FILE
    started = time.monotonic()
    try:
        config_file = stage_live_system(cfg, args.overlay, password_file=password_file)
    except StagingError as exc:
        print(f"live_system: {exc}", file=sys.stderr)
        return 1
    print(f"live_system: staged {args.overlay} and {config_file} in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
