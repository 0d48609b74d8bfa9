"""The build configuration: `invoke.yaml` loaded once, and the templates rendered from it.

`invoke.yaml` is the one source of truth for every fact of the build. Tasks get it as `c.config`; the
standalone scripts call `load_config()`, which loads the same file the same way (environment overrides
included), so a script run alone when debugging behaves exactly as when a task calls it.
"""

from __future__ import annotations

import difflib
import os
import shlex
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python3 scripts/buildconfig.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import fileops  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_SUFFIX = ".j2"
# Folders whose *.j2 files are rendered into the build folder, keeping their relative paths.
TEMPLATE_DIRS = ("iso", "openrc")
GENERATOR_CONFIG = "apkovl.json"  # scripts/genapkovl.py's configuration, written beside the overlay folder


class ConfigError(SystemExit):
    """A bad `INVOKE_BEE_*` value: ends a script with its message, one line per variable, and status 1."""


def load_config(config_dir: Path | str = REPO_ROOT) -> Any:
    """Return the invoke Config of `config_dir/invoke.yaml`, with `INVOKE_*` environment overrides applied.

    The result is the same object a task sees as `c.config`: `cfg.bee.nvidia.version` and so on. An
    override invoke cannot cast to its key's type raises ConfigError naming the variable, key and type.
    """
    from invoke import Config

    cfg = Config(project_location=str(Path(config_dir).resolve()))
    cfg.load_project()
    problems = environment_problems(cfg)
    if problems:
        raise ConfigError("\n".join(f"error: {line}" for line in problems))
    cfg.load_shell_env()
    return cfg


ENV_PREFIX = "INVOKE_BEE_"
FALSE_WORDS = ("false", "no", "off", "n", "f")  # invoke reads every text but "0" and "" as true


def environment_problems(cfg: Any, environ: dict[str, str] | None = None) -> list[str]:
    """Return one line per `INVOKE_BEE_*` variable that would not do what its user meant.

    Invoke casts an override to the type of the value in invoke.yaml (`int("abc")` fails with a traceback
    that names neither): this names the variable, the key and the type expected. A boolean set to
    false/no/off is refused (invoke would read it as true: only 0 and the empty text are false); lists
    cannot be set from the environment at all; and a variable naming no key (a typo, which invoke ignores
    silently) is named with the closest key's variable.
    """
    environ = os.environ if environ is None else environ
    problems, known = [], []

    def walk(value: Any, keys: list[str]) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, [*keys, key])
            return
        variable = "INVOKE_" + "_".join(keys).upper()
        known.append(variable)
        if variable in environ:
            expected = _cast_problem(value, environ[variable])
            if expected:
                problems.append(f"{variable}={environ[variable]!r}: {'.'.join(keys)} {expected}")

    walk({"bee": plain(cfg.bee)}, [])
    for variable in sorted(v for v in environ if v.startswith(ENV_PREFIX) and v not in known):
        close = difflib.get_close_matches(variable, known, n=1)
        hint = f"did you mean {close[0]}?" if close else "see `invoke config` for the keys"
        problems.append(f"{variable}={environ[variable]!r} names no key of invoke.yaml's bee section, so it"
                        f" would change nothing: {hint}")
    return problems


def _cast_problem(value: Any, text: str) -> str | None:
    """What `text` would need to be to replace `value` (invoke's cast), or None when it casts."""
    if isinstance(value, bool):
        if text.strip().lower() in FALSE_WORDS:
            return ("is true or false, and invoke reads any text but 0 and the empty one as true: set it to 0"
                    " (or empty) for false, 1 for true")
        return None
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, list | tuple):
        return "is a list, which an environment variable cannot set: change it in invoke.yaml"
    try:
        type(value)(text)
    except (TypeError, ValueError):
        kind = {int: "a whole number (int), e.g. 4", float: "a number (float), e.g. 2.5"}.get(
            type(value), f"a {type(value).__name__}")
        return f"takes {kind}: fix or unset the variable"
    return None


def project_dir(cfg: Any) -> Path:
    """Return the folder of the `invoke.yaml` that `cfg` was loaded from (the repository by default)."""
    prefix = getattr(cfg, "_project_prefix", None)
    return Path(prefix).resolve() if prefix else REPO_ROOT


def plain(value: Any) -> Any:
    """Return `value` (a Config, DataProxy, dict or list) as plain dicts and lists, safe to dump as JSON."""
    if hasattr(value, "items"):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def resolve_path(cfg: Any, value: str) -> Path:
    """Return `value` from the configuration as an absolute path: `~` expanded, relative to the project."""
    resolved = Path(os.path.expanduser(value))
    if not resolved.is_absolute():
        resolved = project_dir(cfg) / resolved
    return resolved


def config_path(cfg: Any, name: str) -> Path:
    """Return the absolute path configured as `bee.paths.<name>`."""
    return resolve_path(cfg, cfg.bee.paths[name])


def live_path(overlay: Path, absolute: str) -> Path:
    """Return where the live system's `absolute` path (a `bee.live.*` value) is staged in `overlay`."""
    return Path(overlay) / str(absolute).lstrip("/")


def generator_config_path(cfg: Any, overlay: Path | None = None) -> Path:
    """Return the JSON configuration scripts/genapkovl.py reads: apkovl.json beside the overlay folder.

    `overlay` defaults to bee.paths.overlay (so build/apkovl.json); staging elsewhere writes beside that.
    """
    folder = Path(overlay) if overlay is not None else config_path(cfg, "overlay")
    return folder.absolute().parent / GENERATOR_CONFIG


def nvidia_url(cfg: Any) -> str:
    """Return the download URL of the configured NVIDIA installer."""
    return cfg.bee.nvidia.url.format(version=cfg.bee.nvidia.version)


def repository_urls(cfg: Any) -> list[str]:
    """Return the Alpine repository URLs, main first (mkimage's --repository), then the extra ones."""
    alpine = cfg.bee.alpine
    return [f"{alpine.mirror}/{alpine.branch}/{repo}" for repo in alpine.repositories]


def template_context(cfg: Any) -> dict[str, Any]:
    """Return the values templates see: the `bee` section as plain data plus a few derived facts."""
    context = plain(cfg.bee)
    context["paths"] = {name: str(config_path(cfg, name)) for name in cfg.bee.paths}
    context["nvidia"]["download_url"] = nvidia_url(cfg)
    context["alpine"]["repository_urls"] = repository_urls(cfg)
    context["generator"] = {
        "script": str(REPO_ROOT / "scripts" / "genapkovl.py"),
        "config": str(generator_config_path(cfg)),
    }
    return context


def templates() -> list[Path]:
    """Return every template of the project, as paths relative to the repository, sorted."""
    found = [p for d in TEMPLATE_DIRS for p in (REPO_ROOT / d).rglob(f"*{TEMPLATE_SUFFIX}") if p.is_file()]
    return sorted(p.relative_to(REPO_ROOT) for p in found)


def shell_quote(value: Any) -> str:
    """Return `value` as one shell word (the `shquote` filter of templates): `'...'` when it needs quoting."""
    return shlex.quote(str(value))


def render_template(cfg: Any, template: Path | str, extra: dict[str, Any] | None = None) -> str:
    """Render one template (a path relative to the project) with the configuration; unknown names fail."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(REPO_ROOT),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["shquote"] = shell_quote
    context = template_context(cfg)
    context.update(extra or {})
    return env.get_template(Path(template).as_posix()).render(**context)


def render_all(cfg: Any, out_dir: Path, extra: dict[str, Any] | None = None) -> list[Path]:
    """Render every template into `out_dir` at its relative path without `.j2`; return the files written.

    Each file is written under a temporary name and renamed (fileops.write_atomic), with the template's mode.
    """
    written = []
    for template in templates():
        target = out_dir / str(template)[: -len(TEMPLATE_SUFFIX)]
        mode = (REPO_ROOT / template).stat().st_mode & 0o777
        written.append(fileops.write_atomic(target, render_template(cfg, template, extra).encode(), mode))
    return written


def main(argv: list[str] | None = None) -> int:
    """Print the effective configuration as JSON (`python3 scripts/buildconfig.py`)."""
    import json

    del argv
    json.dump(template_context(load_config()), sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
