"""The JSON Schema of the audit document (audit/bee-audit.schema.json) against real documents: the lab
server's tool outputs end to end, this machine's own audit, all-skipped and all-failed documents; and the
schema rejects what is wrong."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import jsonschema
import pytest

from audit import audit
from tests.audit.frame_fakes import lab_output, write_tool
from tests.paths import REPO_ROOT

SCHEMA_PATH = REPO_ROOT / "audit" / "bee-audit.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)

LAB_TOOLS = {  # tool -> [(shell case pattern on "$*", lab file)]
    "dmidecode": [("*", "dmidecode-all.txt")],
    "ipmitool": [("fru", "ipmitool-fru.txt"), ("fru print 0", "ipmitool-fru-print0.txt")],
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


@pytest.fixture
def lab_machine(tmp_path, monkeypatch):
    """The emulated lab server: every tool prints what the real one printed there (qemu-lab files)."""
    for tool, cases in LAB_TOOLS.items():
        arms = []
        for pattern, name in cases:
            text, rc = lab_output(name)
            (tmp_path / name).write_text(text)
            case = f'"{pattern}"' if " " in pattern else pattern  # a pattern with blanks is quoted
            arms.append(f"  {case}) /bin/cat {tmp_path / name}; exit {rc};;")
        write_tool(tmp_path / "bin", tool, 'case "$*" in\n' + "\n".join(arms) + "\nesac\nexit 1")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ipmi0").touch()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")


def test_the_schema_is_valid_draft_2020_12():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_lab_server_document(lab_machine):
    document = audit.build_document(lab_machine)
    VALIDATOR.validate(json.loads(audit.render(document)))
    assert document["board"]["system"]["serial"] == "SYS-SN-ABC123"
    assert document["psu"]["power_supplies"][0]["serial"] == "PSU-SN-000777"
    assert document["psu"]["chassis"]["serial"] == "CHS-SN-77001"
    assert {
        report["status"]
        for name, report in document["collectors"].items()
        if name in {"board", "cpu", "memory", "psu"}
    } == {"ok"}
    assert document["storage"] and document["pcie"]  # the devices collectors' data is covered too


def test_this_machines_own_audit():
    """The real audit of the machine the tests run on (whatever its tools can see)."""
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "audit" / "audit.py"), "--no-qr"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0
    VALIDATOR.validate(json.loads(done.stdout))


def test_all_skipped_and_all_failed_documents(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "s", procfs=tmp_path / "p", devfs=tmp_path / "d")
    VALIDATOR.validate(json.loads(audit.render(audit.build_document(runner))))
    for tool in ["dmidecode", "lsblk", "lspci", "smartctl", "nvme", "ipmitool", "nvidia-smi"]:
        write_tool(tmp_path / "bin", tool, "echo broken >&2; exit 3")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "ipmi0").touch()
    failed = audit.build_document(runner)
    assert failed["errors"]
    VALIDATOR.validate(json.loads(audit.render(failed)))


def test_the_schema_rejects_wrong_documents(lab_machine):
    good = json.loads(audit.render(audit.build_document(lab_machine)))
    wrong = []
    for change in [
        lambda d: d.pop("board"),  # a collector missing
        lambda d: d.update(extra=1),  # an unknown top-level key
        lambda d: d["memory"]["slots"][0].update(size_bytes="32 GB"),  # a size that is not bytes
        lambda d: d["cpu"]["sockets"][0].update(max_speed_mhz=-1),
        lambda d: d["collectors"]["board"].update(status="fine"),
        lambda d: d["findings"].append({"severity": "bad", "component": "x", "message": "y"}),
        lambda d: d["psu"]["power_supplies"][0].pop("serial"),
        lambda d: d.update(schema_version=2),
    ]:
        document = copy.deepcopy(good)
        change(document)
        wrong.append(VALIDATOR.is_valid(document))
    assert wrong == [False] * 8
