"""The bee build, as invoke tasks: `invoke --list` names them, `invoke build-debug` runs them all.

Tasks stay thin: the work lives in the importable functions of scripts/ (scripts/iso_build.py for the ISO
build's steps), which are runnable alone too. Every value comes from invoke.yaml (`c.config.bee`), and
`invoke --dry TASK` prints every command and file operation without doing it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import invoke
from invoke import task
from invoke.exceptions import Exit

from scripts import buildconfig, iso_build


class Executor(invoke.Executor):
    """invoke's Executor (invoke.yaml names it as tasks.executor_class) that first checks the overrides.

    Invoke casts each `INVOKE_BEE_*` value to its key's type only when a task starts, and a bad one is a
    traceback; here it is one line naming the variable, the key and the type, and exit status 1.
    """

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Refuse bad `INVOKE_BEE_*` values (buildconfig.environment_problems), then run the tasks."""
        problems = buildconfig.environment_problems(self.config)
        if problems:
            raise Exit("\n".join(f"error: {line}" for line in problems), code=1)
        return super().execute(*args, **kwargs)


def actions(c) -> iso_build.Actions:
    """The build's file and command runner for this invocation (dry under `invoke --dry`)."""
    return iso_build.Actions(dry=bool(c.config.run.dry))


def step(c, function: Callable[..., Any], *args: Any) -> Any:
    """Run one build function; a BuildError ends invoke with its one-line message and exit status 1."""
    try:
        return iso_build.run_step(function, c.config, actions(c), *args)
    except iso_build.BuildError as err:
        raise Exit(f"error: {err}", code=1) from err


@task
def config(c):
    """Print the effective build configuration (invoke.yaml plus INVOKE_* overrides) as JSON."""
    json.dump(buildconfig.template_context(c.config), sys.stdout, indent=2, sort_keys=True)
    print()


@task
def render(c):
    """Render every template (profile, generator wrapper, services) into build/rendered/."""
    out_dir = buildconfig.config_path(c.config, "build") / "rendered"
    if c.config.run.dry:
        for template in buildconfig.templates():
            print(f"[dry] would render {template} into {out_dir}")
        return
    for written in buildconfig.render_all(c.config, out_dir):
        print(written)


@task
def setup_builder(c):
    """Prepare an Alpine builder: apk add the builder packages, abuild signing key, aports checkout."""
    not_alpine = iso_build.check_alpine(c.config)  # apk, abuild and mkimage exist nowhere else
    if not_alpine and not c.config.run.dry:
        raise Exit(f"error: {not_alpine[0]}; nothing was installed", code=1)
    for command in iso_build.setup_builder_commands(c.config):
        if c.config.run.dry:  # invoke's own dry run would echo the bare command, as if it ran
            print(f"[dry] would run: {command}")
        else:
            c.run(command)
    if not_alpine:  # --dry: the plan was shown, but it would fail here
        raise Exit(f"error: {not_alpine[0]}; a real run would install nothing", code=1)


@task
def preflight(c):
    """Check the builder before slow work: Alpine, tools, abuild key, headers, free space, login."""
    step(c, iso_build.preflight)


@task
def audit(c):
    """Byte-compile audit/audit.py and place it in the overlay as the live audit command."""
    step(c, iso_build.place_audit)


@task
def nvidia(c):
    """Check the kernel headers, build the NVIDIA modules and userland (cached in dist/)."""
    step(c, iso_build.build_nvidia)


@task
def overlay(c):
    """Assemble the overlay in build/ (audit, cached NVIDIA files, static files, live system)."""
    step(c, iso_build.overlay_step)


@task
def profile(c):
    """Render the mkimage profile and apkovl generator into ~/.mkimage/ AND /var/tmp/ (where mkimage runs)."""
    step(c, iso_build.install_profile)


@task
def mkimage(c):
    """Clean stale mkimage sections, run aports' mkimage.sh, check and checksum the ISO."""
    step(c, iso_build.mkimage_step)


@task
def build_debug(c):
    """Build the debug ISO: preflight, audit, nvidia, overlay, profile, mkimage, in that order."""
    step(c, iso_build.build_debug)


@task(help={"all": "also remove the mkimage workdir, build/, the ISO, NVIDIA builds and profile copies"})
def clean(c, all=False):  # `all` shadows the builtin: invoke names the flag after the parameter
    """Remove mkimage's apkovl/image sections and the ISO (--all: every build product but downloads)."""
    step(c, iso_build.clean_all if all else iso_build.clean_workdir)
