"""Helpers for the audit tests (and the lab's): qemu-lab outputs, fake tools on PATH that print real
fixture files, documents compared without their times, parts checked against the document schema."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import jsonschema

from audit import audit
from tests.paths import LAB_FIXTURES, REPO_ROOT

REAL_DMIDECODE = shutil.which("dmidecode") or next(
    (str(path) for path in (Path("/usr/sbin/dmidecode"), Path("/sbin/dmidecode")) if path.exists()), None
)


def lab_output(name: str) -> tuple[str, int]:
    """A qemu-lab file without its `### <command>` first line and `### rc=N` last line, and that N."""
    lines = (LAB_FIXTURES / name).read_text().split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    assert lines[0].startswith("### ") and lines[-1].startswith("### rc="), name
    return "\n".join(lines[1:-1]) + "\n", int(lines[-1].removeprefix("### rc="))


def write_tool(bin_dir: Path, name: str, body: str) -> Path:
    """An executable /bin/sh script `name` in bin_dir running `body`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def tool_printing(bin_dir: Path, name: str, output_file: Path, returncode: int = 0) -> Path:
    """A fake tool that prints a file's bytes unchanged and exits with `returncode`."""
    return write_tool(bin_dir, name, f"/bin/cat {shlex.quote(str(output_file))}\nexit {returncode}")


def dmidecode_from_dump(bin_dir: Path, dump: Path) -> Path:
    """A `dmidecode` on PATH that runs the REAL dmidecode on a binary dump (--from-dump) with its args."""
    assert REAL_DMIDECODE, "dmidecode is not installed (apt-get install dmidecode)"
    return write_tool(
        bin_dir, "dmidecode", f'exec {shlex.quote(REAL_DMIDECODE)} --from-dump {shlex.quote(str(dump))} "$@"'
    )


def dmidecode_from_text(bin_dir: Path, text_file: Path) -> Path:
    """A `dmidecode` that prints a captured text output whatever types it is asked for (the parsers filter
    by type, as they must: `-t 0,1,2,3` output holds four types)."""
    return tool_printing(bin_dir, "dmidecode", text_file)


LAB_TOOLS = {  # tool -> [(shell case pattern on "$*", qemu-lab file)]
    "dmidecode": [("*", "dmidecode-all.txt")],
    "ipmitool": [
        ("fru", "ipmitool-fru.txt"),
        ("fru print 0", "ipmitool-fru-print0.txt"),
        ("mc info", "ipmitool-mc-info.txt"),
        ("sdr elist", "ipmitool-sdr.txt"),
    ],
    "lsblk": [("*", "lsblk.txt")],
    "lspci": [("-vmm -D", "lspci-vmm.txt")],
    "smartctl": [
        ("*/sda", "smartctl-sda.txt"),
        ("*/sdb", "smartctl-sdb.txt"),
        ("*/vd*", "smartctl-vda.txt"),
        ("*/nvme*", "smartctl-nvme0.txt"),
    ],
    "nvme": [
        ("id-ctrl*", "nvme-id-ctrl.txt"),
        ("smart-log*", "nvme-smart-log.txt"),
        ("list*", "nvme-list.txt"),
    ],
}


def lab_tools(bin_dir: Path, files: Path) -> None:
    """Fake tools in bin_dir that print what the real ones printed on the emulated lab server (its
    qemu-lab files, copied to `files`), with the exit status they had there; anything else exits 1."""
    files.mkdir(parents=True, exist_ok=True)
    for tool, cases in LAB_TOOLS.items():
        arms = []
        for pattern, name in cases:
            text, rc = lab_output(name)
            (files / name).write_text(text)
            case = f'"{pattern}"' if " " in pattern else pattern  # a pattern with blanks is quoted
            arms.append(f"  {case}) /bin/cat {files / name}; exit {rc};;")
        write_tool(bin_dir, tool, 'case "$*" in\n' + "\n".join(arms) + "\nesac\nexit 1")


def without_times(document: dict) -> dict:
    """A copy of the document without what depends on how fast it ran (the durations)."""
    copy = json.loads(json.dumps(document))
    copy.pop("duration_s", None)
    for report in (copy.get("collectors") or {}).values():
        report.pop("duration_s", None)
    return copy


def assert_schema(definition: str, value) -> None:
    """`value` is valid against the document schema's `$defs/<definition>` (audit/bee-audit.schema.json)."""
    schema = json.loads((REPO_ROOT / "audit" / "bee-audit.schema.json").read_text())
    jsonschema.Draft202012Validator({"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]}).validate(
        json.loads(json.dumps(value))
    )


def failed_checks(document: dict, profile: dict) -> list[str]:
    """The messages of the failed acceptance checks of `document` against `profile` (a profile valid
    against audit/bee-profile.schema.json, parsed as --expect parses a file)."""
    schema = json.loads((REPO_ROOT / "audit" / "bee-profile.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(profile)
    rules = audit.parse_profile(json.dumps(profile).encode(), "test.json")
    checks = audit.check_profile(document, rules)["checks"]
    return [check["message"] for check in checks if check["passed"] is False]
