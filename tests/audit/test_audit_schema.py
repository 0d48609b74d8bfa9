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
from tests.audit.fakes import lab_tools, write_tool
from tests.paths import REPO_ROOT

SCHEMA_PATH = REPO_ROOT / "audit" / "bee-audit.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


@pytest.fixture
def lab_machine(tmp_path, monkeypatch):
    """The emulated lab server: every tool prints what the real one printed there (qemu-lab files)."""
    lab_tools(tmp_path / "bin", tmp_path)
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
    assert document["board"]["chassis"]["serial"] == "CHS-SN-77001"  # SMBIOS type 3 agrees with the FRU
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
        lambda d: d.update(schema_version=1),  # a document of the schema before this one
        lambda d: d["board"].pop("chassis"),  # the chassis is always there (null without type 3)
        lambda d: d["board"]["chassis"].update(serial=77001),
        lambda d: d["board"]["chassis"].update(height="2 U"),  # a chassis key the schema does not know
    ]:
        document = copy.deepcopy(good)
        change(document)
        wrong.append(VALIDATOR.is_valid(document))
    assert wrong == [False] * 11
    good["board"]["chassis"] = None
    assert VALIDATOR.is_valid(good)


# -- every fixture family through its parser, validated as part of a whole document ---------------------

REAL = REPO_ROOT.parent / "shared" / "fixtures" / "real"


def real_files(tool: str, *suffixes: str) -> list:
    return sorted(p for p in (REAL / tool).iterdir() if p.suffix in suffixes)


def skeleton() -> dict:
    """A valid document with every collector skipped, to put one collector's data into."""
    report = {"status": "skipped", "duration_s": 0.0, "errors": []}
    return {
        "schema_version": audit.SCHEMA_VERSION,
        "audit_version": audit.AUDIT_VERSION,
        "generated_at": "2026-11-25T23:00:00+00:00",
        "hostname": "h",
        "kernel": "6.12.0",
        "collectors": {name: dict(report) for name, _ in audit.COLLECTORS},
        **{name: None for name, _ in audit.COLLECTORS},
        "findings": [],
        "errors": [],
        "duration_s": 0.1,
    }


def validated(**sections) -> None:
    document = skeleton()
    document.update(sections)
    for name in sections:
        document["collectors"][name]["status"] = "ok"
    audit.link_documents(document)
    document["findings"] = audit.derive_findings(document)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in VALIDATOR.iter_errors(json.loads(audit.render(document)))
    ]
    assert errors == []


@pytest.mark.parametrize("path", real_files("dmidecode", ".txt"), ids=lambda p: p.name)
def test_schema_takes_every_dmidecode_fixture(path):
    records = audit.parse_dmidecode(path.read_text(errors="replace"))
    memory = audit.parse_memory(records)
    if memory is not None:
        memory["edac"] = None
    supplies = audit.parse_psu_dmi(records)
    psu = (
        {"source": "dmidecode -t 39", "power_supplies": supplies, **audit.fru_identity([])}
        if supplies
        else None
    )
    validated(board=audit.parse_board(records), cpu=audit.parse_cpus(records), memory=memory, psu=psu)


@pytest.mark.parametrize("path", real_files("ipmitool", ".txt"), ids=lambda p: p.name)
def test_schema_takes_every_ipmitool_fixture(path):
    records = audit.parse_fru(path.read_text(errors="replace"))
    supplies = [audit.psu_from_fru(r) for r in records if audit.is_psu_fru(r) and r["present"]]
    validated(
        psu={
            "source": "ipmitool fru" if supplies else None,
            "power_supplies": supplies,
            **audit.fru_identity(records),
        }
    )


def disk(name: str = "sda") -> dict:
    return {
        "name": name,
        "path": f"/dev/{name}",
        "size_bytes": None,
        "model": None,
        "serial": None,
        "firmware": None,
        "wwn": None,
        "transport": None,
        "rotational": None,
        "removable": None,
        "pci_address": None,
        "health": audit.empty_health(),
    }


@pytest.mark.parametrize("path", real_files("smartctl", ".json"), ids=lambda p: p.name)
def test_schema_takes_every_smartctl_fixture(path):
    text = path.read_text()
    exit_status = (audit.load_json(text).get("smartctl") or {}).get("exit_status", 0)
    entry = disk()
    ctx = audit.Context("storage", audit.Runner())
    audit.apply_smartctl(
        ctx, entry, audit.ToolResult(["smartctl", "-j", "-a", "/dev/sda"], exit_status, text, "")
    )
    validated(storage=[entry])


@pytest.mark.parametrize("path", real_files("nvme", ".json"), ids=lambda p: p.name)
def test_schema_takes_every_nvme_fixture(path):
    text = path.read_text()
    entry = disk("nvme0n1")
    ctx = audit.Context("storage", audit.Runner())
    results = {
        ("nvme0n1", tool): audit.ToolResult(["nvme", tool, "/dev/nvme0n1"], 0, text, "")
        for tool in ("id-ctrl", "smart-log")
    }
    audit.apply_nvme(ctx, entry, results)
    listed = audit.parse_nvme_list(text) or {}
    for path_name, identity in listed.items():
        other = disk(path_name.rsplit("/", 1)[-1])
        audit.merge_identity(other, identity, ("model", "serial", "firmware"))
    validated(storage=[entry])


@pytest.mark.parametrize("path", real_files("lsblk", ".json"), ids=lambda p: p.name)
def test_schema_takes_every_lsblk_fixture(path):
    disks = audit.parse_lsblk(path.read_text())
    assert disks is not None  # the inverse (-s) listing has no top-level disk: an empty list
    for entry in disks:
        entry["pci_address"], entry["health"] = None, audit.empty_health()
    validated(storage=disks)


@pytest.mark.parametrize("path", real_files("lspci", ".txt"), ids=lambda p: p.name)
def test_schema_takes_every_lspci_fixture(path):
    devices = audit.parse_lspci_vmm(path.read_text(errors="replace"))
    for entry in devices:
        for key in (
            "class_id",
            "prog_if",
            "vendor_id",
            "device_id",
            "subsystem_vendor_id",
            "subsystem_device_id",
            "revision",
            "driver",
            "numa_node",
            "link",
            "upstream",
            "aer",
        ):
            entry.setdefault(key, None)
    validated(pcie=devices or None)


@pytest.mark.parametrize("path", real_files("nvidia-smi", ".xml", ".txt"), ids=lambda p: p.name)
def test_schema_takes_every_nvidia_smi_fixture(path):
    gpus = audit.parse_nvidia_smi_xml(path.read_text(errors="replace"))
    validated(nvidia=None if gpus is None else {"kernel_module": None, "gpus": gpus, "without_driver": [],
                                                 "not_usable": []})


@pytest.mark.parametrize(
    "path", [p for p in real_files("ipmitool", ".txt") if "-sdr" in p.name or "-sensor" in p.name],
    ids=lambda p: p.name,
)
def test_schema_takes_every_sensor_fixture(path):
    validated(sensors=audit.parse_sensors(path.read_text()))


@pytest.mark.parametrize(
    "path", [p for p in real_files("ipmitool", ".txt") if "-sel-" in p.name], ids=lambda p: p.name
)
def test_schema_takes_every_sel_fixture(path):
    text = path.read_text()
    records = audit.parse_sel_list(text)
    event_log = {"info": audit.parse_sel_info(text), "total_records": len(records), "records": records,
                 "duplicate_ids": [], "summary": audit.summarize_sel(records)}
    validated(event_log=event_log)


@pytest.mark.parametrize("path", sorted((REAL / "kernel").iterdir()), ids=lambda p: p.name)
def test_schema_takes_every_kernel_log_fixture(path):
    validated(kernel_log=audit.parse_kernel_log(path.read_text()),
              storage=[disk("sdb"), disk("sde")], nvidia=None)
