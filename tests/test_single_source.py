"""One source of truth: the facts of invoke.yaml reach every rendered file and are written nowhere else."""

from __future__ import annotations

import pytest

from scripts import buildconfig
from tests.paths import REPO_ROOT, repository_files

# Files the project ships (code, templates, services); docs and tests may quote values.
SHIPPED_DIRS = ("scripts", "iso", "openrc", "audit")
SHIPPED_FILES = ("tasks.py",)


def shipped_files():
    tracked = repository_files()
    return [
        REPO_ROOT / name for name in tracked
        if (name.split("/")[0] in SHIPPED_DIRS or name in SHIPPED_FILES) and (REPO_ROOT / name).is_file()
    ]


def facts(cfg):
    """The values that must live only in invoke.yaml."""
    bee = cfg.bee
    values = [
        bee.nvidia.version, bee.nvidia.sha256, bee.alpine.mirror, bee.alpine.branch,
        bee.live.audit_output, bee.live.nvidia_modules_dir, bee.live.firmware_dir, bee.iso.kernel_cmdline,
        bee.paths.mkimage_workdir, bee.paths.aports,
    ]
    # Package names distinctive enough to find by text (not "python3", which code names as a command).
    values += [p for p in bee.live.packages if p in ("libqrencode-tools", "gcompat", "alpine-base")]
    values += [p for p in bee.builder.packages if p in ("squashfs-tools", "grub-efi", "alpine-sdk")]
    return values


@pytest.mark.parametrize("value", facts(buildconfig.load_config()))
def test_fact_is_not_repeated_in_shipped_files(value):
    holders = [
        str(p.relative_to(REPO_ROOT)) for p in shipped_files() if value in p.read_text(errors="ignore")
    ]
    assert holders == [], f"{value!r} is written in {holders}; take it from invoke.yaml instead"


CHANGES = {
    # invoke.yaml line prefix -> (old value, new value)
    "hostname: bee": ("bee", "hive-7"),
    "arch: x86_64": ("x86_64", "aarch64"),
    "firmware_dir: /usr/lib/bee/firmware": ("/usr/lib/bee/firmware", "/opt/fw-test"),
    "  - gcompat": ("gcompat", "gcompat-test"),
    "flavor: lts": ("lts", "virt"),
    "audit_output: /var/log/bee-audit.json": ("/var/log/bee-audit.json", "/srv/inventory.json"),
    "user: bee": ("bee", "inspector"),
    "serial_console: {port: 0, baud: 115200}": ("115200", "57600"),
    "abbrev: bee": ("bee", "hive"),
}


def render(config_dir, out_dir):
    """Every rendered file of the configuration in `config_dir`, by relative path."""
    written = buildconfig.render_all(buildconfig.load_config(config_dir), out_dir)
    return {p.relative_to(out_dir): p.read_text() for p in written}


@pytest.mark.parametrize("line", list(CHANGES))
def test_changing_one_value_changes_every_rendered_file(config_copy, tmp_path, line):
    old, new = CHANGES[line]
    text = config_copy.read_text()
    assert text.count(line) == 1, f"{line!r} should appear once in invoke.yaml"
    before = render(config_copy.parent, tmp_path / "a")
    config_copy.write_text(text.replace(line, line.replace(old, new)))
    after = render(config_copy.parent, tmp_path / "b")

    changed = [name for name in before if before[name] != after[name]]
    assert changed, f"no rendered file uses {old!r}"
    for name in changed:
        assert new in after[name], f"{name} changed but does not hold the new value {new!r}"


def test_invoke_yaml_states_each_key_once():
    """A key written twice in one mapping silently keeps the last value: each fact has one line."""
    from invoke.util import yaml

    class Strict(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        keys = [loader.construct_object(key) for key, _ in node.value]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        assert not repeated, f"invoke.yaml line {node.start_mark.line + 1}: {repeated} given twice"
        return loader.construct_mapping(node)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    yaml.load((REPO_ROOT / "invoke.yaml").read_text(), Loader=Strict)
