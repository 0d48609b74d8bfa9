"""The bee build, as invoke tasks: `invoke --list` names them, `invoke build-debug` runs them all.

Tasks stay thin: the work lives in the importable functions of scripts/, which are runnable alone too.
Every value comes from invoke.yaml (`c.config.bee`).
"""

from __future__ import annotations

import json
import sys

from invoke import task

from scripts import buildconfig


@task
def config(c):
    """Print the effective build configuration (invoke.yaml plus INVOKE_* overrides) as JSON."""
    json.dump(buildconfig.template_context(c.config), sys.stdout, indent=2, sort_keys=True)
    print()


@task
def render(c):
    """Render every template (profile, generator wrapper, services) into build/rendered/."""
    out_dir = buildconfig.config_path(c.config, "build") / "rendered"
    for written in buildconfig.render_all(c.config, out_dir):
        print(written)
