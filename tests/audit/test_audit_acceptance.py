"""Acceptance (--make-profile, --expect, --strict, --document, --expect-live): real fixtures turned into
documents by the audit itself (stand-in tools printing them), a profile made from each, then the mutations
a technician meets: a pulled DIMM, another BIOS, one GPU fewer, a degraded GPU link, another VBIOS, a
smaller disk, a disk failing SMART. The profile language's errors, the exit statuses, the QR verdict, the
profile fetched over HTTP (a real server) and the live system's order of sources."""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from audit import audit
from tests.audit.fakes import lab_tools, tool_printing, write_tool
from tests.paths import REAL_FIXTURES, REPO_ROOT

PROFILE_SCHEMA = json.loads((REPO_ROOT / "audit" / "bee-profile.schema.json").read_text())
DOCUMENT_SCHEMA = json.loads((REPO_ROOT / "audit" / "bee-audit.schema.json").read_text())
GiB = 1 << 30
MiB = 1 << 20
DMI = REAL_FIXTURES / "dmidecode"
V100S_XML = REAL_FIXTURES / "nvidia-smi" / "datakit-8x-tesla-v100s-pcie-32gb-passthrough.xml"
GPU_SERVER_DMI = DMI / "linuxhw-gigabyte-g482-z54-gpu-server-2s-epyc.txt"
LSBLK = REAL_FIXTURES / "lsblk" / "mvth1s-hwbench-asrock-b850-desktop-2nvme-reserialized.json"
SMART_OK = REAL_FIXTURES / "smartctl" / "netdata-nvme-seagate-firecuda530-nvme0.json"
SMART_FAILED = REAL_FIXTURES / "smartctl" / "scrutiny-usbjmicron-hitachi-hds721050-FAILED.json"


def profile_of(document: dict) -> audit.Profile:
    """The profile made from a document, through its text (as a person would read and edit it)."""
    text = audit.render_profile(audit.make_profile(document))
    made = json.loads(text)
    jsonschema.Draft202012Validator(PROFILE_SCHEMA).validate(made)
    return audit.parse_profile(text.encode(), "made.json")


def profile(data: dict) -> audit.Profile:
    jsonschema.Draft202012Validator(PROFILE_SCHEMA).validate(data)
    return audit.parse_profile(json.dumps(data).encode(), "test.json")


def failures(document: dict, rules: audit.Profile) -> list[str]:
    acceptance = audit.check_profile(document, rules)
    return [check["message"] for check in acceptance["checks"] if not check["passed"]]


def replace_in_record(text: str, dmi_type: int, field: str, value: str, which=lambda record: True) -> str:
    """The dmidecode text with `field` of the first structure of `dmi_type` accepted by `which` set to
    `value` (CRLF texts stay CRLF)."""
    records = re.split(r"(?m)^(?=Handle 0x)", text)
    for index, record in enumerate(records):
        if re.match(rf"Handle 0x[0-9A-Fa-f]+, DMI type {dmi_type},", record) and which(record):
            pattern = rf"(?m)^(\s*{re.escape(field)}:)[^\r\n]*"
            changed, count = re.subn(pattern, rf"\1 {value}", record, count=1)
            assert count == 1, record
            records[index] = changed
            return "".join(records)
    raise AssertionError(f"no DMI type {dmi_type} structure to change")


# -- the emulated lab server (its real tools' outputs) ------------------------------------------------------


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """The lab server's tools (qemu-lab files in tmp_path/files, editable) and a runner for it."""
    lab_tools(tmp_path / "bin", tmp_path / "files")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ipmi0").touch()
    (tmp_path / "sys").mkdir()  # an empty sysfs: --sysfs names a folder that exists (issue 16)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return tmp_path


def lab_document(root: Path) -> dict:
    return audit.build_document(audit.Runner(sysfs=root / "sys", procfs=root / "proc", devfs=root / "dev"))


def test_lab_profile_says_what_the_lab_server_is(lab):
    made = audit.make_profile(lab_document(lab))
    assert made["board"] == {
        "manufacturer": "Acme Servers", "product": "LabServer 2U", "bios_version": "2.4.1"}
    assert made["cpu"]["count"] == 2
    assert made["cpu"]["model"] == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    memory = made["memory"]
    assert (memory["count"], memory["total_bytes"], memory["size_bytes"]) == (8, "256 GiB", "32 GiB")
    assert (memory["type"], memory["speed_mts"], memory["configured_speed_mts"]) == (
        "DDR4", {"min": 3200}, {"min": 2933})
    assert memory["slots"]["CPU0_DIMM_A1"] == "32 GiB" and memory["slots"]["CPU0_DIMM_B1"] == "empty"
    assert len(memory["slots"]) == 16
    groups = {json.dumps(group["match"], sort_keys=True): group for group in made["disks"]}
    nvme = groups[json.dumps({"model": "QEMU NVMe Ctrl", "transport": "nvme"}, sort_keys=True)]
    assert (nvme["count"], nvme["size_bytes"], nvme["firmware"]) == (1, "268 MB", "7.2.22")  # 256 MiB
    sata = groups[json.dumps({"model": "ST4000NM0035-1V4107", "transport": "sata"}, sort_keys=True)]
    assert (sata["count"], sata["size_bytes"]) == (1, "268 MB")
    assert not any(group["match"].get("transport") == "usb" for group in made["disks"])  # the stick
    assert made["psus"] == {"count": 1, "part_number": "PWS-1K62A-1R"}
    assert made["bmc"] == {"firmware": "3.88", "manufacturer": "Super Micro Computer Inc."}  # its mc info
    assert made["health"] == {"no_critical_findings": True, "no_degraded_links": ["gpu", "nic", "storage"]}


def test_lab_profile_passes_on_the_lab_server(lab):
    document = lab_document(lab)
    acceptance = audit.check_profile(document, profile_of(document))
    assert acceptance["passed"] is True
    assert acceptance["checks_failed"] == 0
    assert acceptance["checks_total"] > 40


def test_lab_server_with_a_pulled_dimm_fails(lab):
    rules = profile_of(lab_document(lab))
    dmi = lab / "files" / "dmidecode-all.txt"
    dmi.write_text(replace_in_record(dmi.read_text(), 17, "Size", "No Module Installed",
                                     lambda record: "Locator: CPU1_DIMM_C1\n" in record))
    failed = failures(lab_document(lab), rules)
    assert "memory: slot CPU1_DIMM_C1 expected 32 GiB, found empty" in failed
    assert "memory: total 224 GiB, expected 256 GiB" in failed
    count = next(message for message in failed if message.startswith("memory: 7 of 8"))
    assert count.startswith("memory: 7 of 8 DIMMs found; empty slots: CPU0_DIMM_B1, ")
    assert "CPU1_DIMM_C1" in count


def test_lab_server_with_another_bios_fails(lab):
    rules = profile_of(lab_document(lab))
    dmi = lab / "files" / "dmidecode-all.txt"
    dmi.write_text(replace_in_record(dmi.read_text(), 0, "Version", "2.12.2"))
    assert failures(lab_document(lab), rules) == ["board: BIOS version 2.12.2, expected 2.4.1"]


def test_sixteen_dimms_expected_names_the_eight_empty_slots(lab):
    rules = profile({"memory": {"count": 16, "size_bytes": "32 GiB"}})
    failed = failures(lab_document(lab), rules)
    empty = [f"CPU{cpu}_DIMM_{channel}1" for cpu in (0, 1) for channel in "BDFH"]
    assert failed == [f"memory: 8 of 16 DIMMs found; empty slots: {', '.join(empty)}"]


def test_lab_server_with_a_smaller_disk_fails(lab):
    rules = profile_of(lab_document(lab))
    lsblk = lab / "files" / "lsblk.txt"
    data = json.loads(lsblk.read_text())
    for device in data["blockdevices"]:
        if device["name"] == "sda":
            device["size"] = 128 * MiB
    lsblk.write_text(json.dumps(data))
    assert failures(lab_document(lab), rules) == [
        "disk /dev/sda (ST4000NM0035-1V4107, ZC1A2B3C): size 134 MB, expected 268 MB"]


# -- a GPU server: real SMBIOS of an 8-GPU server, real nvidia-smi XML of 8 V100S, links in sysfs --------


def gpu_server(root: Path, xml: str, widths: dict[str, str] | None = None) -> audit.Runner:
    """Stand-in tools printing real fixtures, and a sysfs with each GPU at x16 behind a root port."""
    bin_dir = root / "bin"
    tool_printing(bin_dir, "dmidecode", GPU_SERVER_DMI)
    (root / "gpu.xml").write_text(xml)
    tool_printing(bin_dir, "nvidia-smi", root / "gpu.xml")
    sysfs = root / "sys"
    for index, address in enumerate(re.findall(r"<pci_bus_id>0{4}([^<]+)</pci_bus_id>", xml)):
        address = address.lower()
        port = f"0000:00:{index + 1:02x}.1"
        for path, class_code, width in ((f"pci0000:00/{port}", "0x060400", "16"),
                                        (f"pci0000:00/{port}/{address}", "0x030200",
                                         (widths or {}).get(address, "16"))):
            directory = sysfs / "devices" / path
            directory.mkdir(parents=True, exist_ok=True)
            for name, value in {"vendor": "0x10de", "device": "0x1df6", "class": class_code,
                                "current_link_speed": "8.0 GT/s PCIe", "max_link_speed": "8.0 GT/s PCIe",
                                "current_link_width": width, "max_link_width": "16"}.items():
                (directory / name).write_text(value + "\n")
            link = sysfs / "bus/pci/devices" / path.rsplit("/", 1)[-1]
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f"../../../devices/{path}")
    (root / "proc/driver/nvidia").mkdir(parents=True)
    os.environ["PATH"] = str(bin_dir)  # the test's monkeypatch restores it
    return audit.Runner(sysfs=sysfs, procfs=root / "proc", devfs=root / "dev")


@pytest.fixture
def gpu_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return tmp_path


def test_gpu_server_profile_and_its_own_pass(gpu_path):
    document = audit.build_document(gpu_server(gpu_path / "a", V100S_XML.read_text()))
    made = audit.make_profile(document)
    assert made["gpus"] == {"count": 8, "product": "Tesla V100S-PCIE-32GB", "memory_total_bytes": "34.1 GB",
                            "vbios_version": "88.00.98.00.01", "link_width": {"min": 16},
                            "link_speed_gts": {"min": 8.0}}
    assert made["board"]["product"] == "G482-Z54-00"
    assert made["cpu"]["count"] == 2 and made["cpu"]["model"].startswith("AMD EPYC")
    assert audit.check_profile(document, profile_of(document))["passed"] is True


def test_gpu_server_with_one_gpu_fewer_fails(gpu_path):
    xml = V100S_XML.read_text()
    rules = profile_of(audit.build_document(gpu_server(gpu_path / "a", xml)))
    last = xml.rindex('<gpu id="')
    fewer = xml[:last] + xml[xml.index("</gpu>", last) + len("</gpu>"):]
    assert failures(audit.build_document(gpu_server(gpu_path / "b", fewer)), rules) == [
        "gpus: 7 of 8 Tesla V100S-PCIE-32GB found"]


def test_gpu_server_with_a_degraded_gpu_link_fails(gpu_path):
    xml = V100S_XML.read_text()
    rules = profile_of(audit.build_document(gpu_server(gpu_path / "a", xml)))
    document = audit.build_document(gpu_server(gpu_path / "b", xml, {"0000:00:0f.0": "8"}))
    failed = failures(document, rules)
    assert ("gpu 0000:00:0f.0 (Tesla V100S-PCIE-32GB, 1563320001045): PCIe link width 8, "
            "expected at least 16") in failed
    assert any(message.startswith("pcie 0000:00:0f.0") and "PCIe link x8 is narrower than the x16" in message
               for message in failed)  # the health gate on degraded GPU links
    assert len(failed) == 2


def test_gpu_server_with_another_vbios_fails_and_versions_compare_as_versions(gpu_path):
    xml = V100S_XML.read_text()
    older = xml.replace("88.00.98.00.01", "88.00.9.00.01", 1)
    document = audit.build_document(gpu_server(gpu_path / "a", older))
    failed = failures(document, profile({"gpus": {"vbios_version": "88.00.98.00.01"}}))
    assert failed == ["gpu 0000:00:0d.0 (Tesla V100S-PCIE-32GB, 1562920006088): VBIOS 88.00.9.00.01, "
                      "expected 88.00.98.00.01"]
    assert failures(document, profile({"gpus": {"vbios_version": {"min": "88.00.10"}}})) == [
        "gpu 0000:00:0d.0 (Tesla V100S-PCIE-32GB, 1562920006088): VBIOS 88.00.9.00.01, "
        "expected at least 88.00.10"]
    assert failures(document, profile({"gpus": {"vbios_version": "88.00.*"}})) == []


# -- every real nvidia-smi -q -x XML: its profile passes on it, fails with another VBIOS or one GPU fewer ---

NVIDIA_XMLS = sorted((REAL_FIXTURES / "nvidia-smi").glob("*.xml"))


@pytest.mark.parametrize("fixture", NVIDIA_XMLS, ids=[path.stem for path in NVIDIA_XMLS])
def test_every_nvidia_smi_fixture_passes_its_own_profile_and_fails_mutated(fixture, gpu_path):
    xml = fixture.read_text()
    document = audit.build_document(gpu_server(gpu_path / "a", xml), [("nvidia", audit.collect_nvidia)])
    gpus = document["nvidia"]["gpus"]
    assert gpus and document["collectors"]["nvidia"]["status"] == "ok"
    rules = profile_of(document)
    made = rules.rules["sections"]["gpus"]
    assert made["count"] == len(gpus) == xml.count('<gpu id="')
    assert audit.check_profile(document, rules)["passed"] is True
    assert made["fields"]["product"] == gpus[0]["product"]
    vbios = gpus[0]["vbios_version"]
    if vbios:  # another VBIOS on the first GPU: exactly that GPU fails, by address and words
        other = xml.replace(f"<vbios_version>{vbios}<", "<vbios_version>1.2.3<", 1)
        changed = audit.build_document(gpu_server(gpu_path / "b", other), [("nvidia", audit.collect_nvidia)])
        failed = failures(changed, rules)
        assert len(failed) == 1 and failed[0].startswith(f"gpu {gpus[0]['bus_id']} (")
        assert failed[0].endswith(f"VBIOS 1.2.3, expected {vbios}")
    if len(gpus) > 1:
        last = xml.rindex('<gpu id="')
        fewer = xml[:last] + xml[xml.index("</gpu>", last) + len("</gpu>"):]
        changed = audit.build_document(gpu_server(gpu_path / "c", fewer), [("nvidia", audit.collect_nvidia)])
        count = f"gpus: {len(gpus) - 1} of {len(gpus)} {gpus[0]['product']} found"
        assert failures(changed, rules) == [count]


# -- disks: a real lsblk listing with real smartctl JSON per disk ------------------------------------------


def disk_machine(root: Path, smart_for_nvme1: Path) -> audit.Runner:
    bin_dir = root / "bin"
    tool_printing(bin_dir, "lsblk", LSBLK)
    write_tool(bin_dir, "smartctl", f'case "$*" in *nvme0n1) /bin/cat {SMART_OK}; exit 0;; '
               f"*nvme1n1) /bin/cat {smart_for_nvme1}; exit $(/bin/cat {root}/rc);; esac; exit 1")
    (root / "rc").write_text("216" if smart_for_nvme1 == SMART_FAILED else "0")
    os.environ["PATH"] = str(bin_dir)  # the test's monkeypatch restores it
    return audit.Runner(sysfs=root / "sys", procfs=root / "proc", devfs=root / "dev")


def test_a_disk_failing_smart_is_a_critical_finding_that_fails_the_health_gate(gpu_path):
    good = audit.build_document(disk_machine(gpu_path / "a", SMART_OK), [("storage", audit.collect_storage)])
    rules = profile_of(good)
    assert audit.check_profile(good, rules)["passed"] is True
    bad = audit.build_document(disk_machine(gpu_path / "b", SMART_FAILED),
                               [("storage", audit.collect_storage)])
    failed = failures(bad, rules)
    assert any(message.startswith("health: 1 critical findings: disk /dev/nvme1n1")
               and "SMART overall health self-assessment FAILED" in message for message in failed)


NVME_SMART = sorted(path for path in (REAL_FIXTURES / "smartctl").glob("*nvme*.json")
                    if "scan" not in path.name)
AZURE_LSBLK = REAL_FIXTURES / "lsblk" / "azuremetadata-azure-vm-sles-lsblk-J-default.json"


def disks_machine(root: Path, lsblk: Path, smart: dict[str, Path]) -> dict:
    """The storage collector on stand-in lsblk and smartctl printing real files (smartctl: one per disk)."""
    bin_dir = root / "bin"
    tool_printing(bin_dir, "lsblk", lsblk)
    cases = " ".join(f"*/{name}) /bin/cat {path}; exit 0;;" for name, path in smart.items())
    write_tool(bin_dir, "smartctl", f'case "$*" in {cases} esac; exit 1')
    os.environ["PATH"] = str(bin_dir)  # the test's monkeypatch restores it
    runner = audit.Runner(sysfs=root / "sys", procfs=root / "proc", devfs=root / "dev")
    return audit.build_document(runner, [("storage", audit.collect_storage)])


@pytest.mark.parametrize("smart", NVME_SMART, ids=[path.stem for path in NVME_SMART])
def test_two_nvme_disks_make_groups_in_human_sizes(gpu_path, smart):
    document = disks_machine(gpu_path / "a", LSBLK, {"nvme0n1": smart, "nvme1n1": SMART_OK})
    first, second = document["storage"]
    assert (first["size_bytes"], second["size_bytes"]) == (1_024_209_543_168, 4_000_787_030_016)
    assert second["model"] == "Seagate FireCuda 530 ZP4000GM30023"  # smartctl's word over lsblk's
    firmware = json.loads(smart.read_text()).get("firmware_version")
    made = audit.make_profile(document)["disks"]
    if first["model"] == second["model"]:  # the FireCuda twice: one group, both sizes allowed
        assert made == [{"match": {"transport": "nvme", "model": second["model"]}, "count": 2,
                         "size_bytes": ["1.02 TB", "4 TB"], "firmware": "REDACTED"}]
    else:
        assert made == [
            {"match": {"transport": "nvme", "model": first["model"]}, "count": 1, "size_bytes": "1.02 TB",
             **({"firmware": firmware} if firmware else {})},
            {"match": {"transport": "nvme", "model": second["model"]}, "count": 1, "size_bytes": "4 TB",
             "firmware": "REDACTED"}]
    rules = profile_of(document)
    assert audit.check_profile(document, rules)["passed"] is True
    # a 3.84 TB disk where the 4 TB one was, and other firmware on the first: each named, nothing else
    listing = json.loads(LSBLK.read_text())
    listing["blockdevices"][1]["size"] = 3_840_755_982_336
    write(gpu_path / "b.json", listing)
    write(gpu_path / "smart.json", json.loads(smart.read_text()) | {"firmware_version": "0.0.1"})
    changed = disks_machine(gpu_path / "b", gpu_path / "b.json", {"nvme0n1": gpu_path / "smart.json",
                                                                  "nvme1n1": SMART_OK})
    failed = failures(changed, rules)
    label = audit.PROFILE_SECTIONS["disks"].label
    expected_size = "1.02 TB, 4 TB" if first["model"] == second["model"] else "4 TB"
    assert f"{label(audit._disk_items(changed)[1])}: size 3.84 TB, expected " + (
        f"one of {expected_size}" if "," in expected_size else expected_size) in failed
    assert len(failed) == 1 + bool(firmware)
    if firmware:
        assert f"{label(audit._disk_items(changed)[0])}: firmware 0.0.1, expected {firmware}" in failed


def test_disks_of_unknown_size_are_counted_not_sized(gpu_path):
    document = disks_machine(gpu_path / "a", AZURE_LSBLK, {})  # lsblk without -b: sizes are "30G" texts
    made = audit.make_profile(document)
    assert made["disks"] == [{"match": {}, "count": 2}]
    rules = profile_of(document)
    assert audit.check_profile(document, rules)["passed"] is True
    listing = json.loads(AZURE_LSBLK.read_text())
    del listing["blockdevices"][1]  # the 16G resource disk
    write(gpu_path / "one.json", listing)
    assert failures(disks_machine(gpu_path / "b", gpu_path / "one.json", {}), rules) == [
        "disks[0]: 1 of 2 disks found"]
    assert failures(document, profile({"disks": [{"size_bytes": {"min": "16 GB"}, "count": 2}]})) == [
        f"disk /dev/{name}: size unknown, expected at least 16 GB" for name in ("sda", "sdb")]


@pytest.mark.parametrize(("text", "size", "holds"), [
    ("3.84 TB", 3_840_755_982_336, True),    # a KIOXIA KCD61LUL3T84 as lsblk -b says it
    ("4 TB", 3_840_755_982_336, False),      # a 3.84 TB disk is not a 4 TB one
    ("4 TB", 4_000_787_030_016, True),
    ("1.02 TB", 1_024_209_543_168, True),
    ("1 TB", 1_024_209_543_168, False),
    ("32 GiB", 32 * GiB, True),
    ("32 GiB", 31 * GiB, False),
    ("268 MB", 256 * MiB, True),
    ("512 B", 512, True),
    ("512 B", 513, False),
])
def test_a_size_text_holds_at_its_precision(text, size, holds):
    spec = audit.normalize_spec("size", text, "x")
    assert audit.spec_holds("size", spec, size) is holds
    assert audit.describe_spec("size", spec) == text


def test_a_size_text_survives_a_copy_of_the_checked_document(lab):
    document = lab_document(lab)
    checked = audit.apply_acceptance(document, audit.check_profile(document, profile_of(document)))
    again = copy.deepcopy(checked)
    assert again == checked and audit.render(again) == audit.render(checked)
    spec = copy.deepcopy(audit.normalize_spec("size", "3.84 TB", "x"))
    assert (spec.text, spec.holds(3_840_755_982_336), int(spec)) == ("3.84 TB", True, 3_840_000_000_000)


def test_one_size_formatter_everywhere():
    assert not hasattr(audit, "gib")
    for size in (32 * GiB, 3_840_755_982_336, 4_000_787_030_016, 256 * MiB, 999, 2 << 40):
        shown = audit.human_size(size)
        assert audit.spec_holds("size", audit.normalize_spec("size", shown, "x"), size), shown
    assert (audit.human_size(None), audit.human_size(None, "?")) == ("unknown", "?")


# -- every real SMBIOS fixture: its profile passes on it, and fails with a DIMM pulled or another BIOS ------

DMI_TEXTS = sorted(DMI.glob("*.txt"))


def dmi_document(root: Path, text: str) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dmi.txt").write_text(text)
    tool_printing(root / "bin", "dmidecode", root / "dmi.txt")
    runner = audit.Runner(sysfs=root / "sys", procfs=root / "proc", devfs=root / "dev")
    return audit.build_document(runner, [(name, fn) for name, fn in audit.COLLECTORS
                                         if name in ("board", "cpu", "memory", "psu")])


@pytest.mark.parametrize("fixture", DMI_TEXTS, ids=[path.stem for path in DMI_TEXTS])
def test_every_smbios_fixture_passes_its_own_profile_and_fails_mutated(fixture, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "a" / "bin"))
    text = fixture.read_text(errors="replace")
    document = dmi_document(tmp_path / "a", text)
    rules = profile_of(document)
    own = audit.check_profile(document, rules)
    assert own["passed"], [c["message"] for c in own["checks"] if not c["passed"]]
    slots = (document["memory"] or {}).get("slots") or []
    populated = [(key, slot) for key, slot in zip(audit.slot_keys(slots), slots, strict=True)
                 if slot["populated"] and slot["size_bytes"]]
    if populated:
        key, slot = populated[0]
        monkeypatch.setenv("PATH", str(tmp_path / "b" / "bin"))
        pulled = replace_in_record(text, 17, "Size", "No Module Installed",
                                   lambda record: record.startswith(f"Handle {slot['handle']},"))
        failed = failures(dmi_document(tmp_path / "b", pulled), rules)
        assert f"memory: slot {key} expected {audit.human_size(slot['size_bytes'])}, found empty" in failed
        count = f"memory: {len(populated) - 1} of {len(populated)} DIMMs found"
        assert any(message.startswith(count) for message in failed)
    version = ((document["board"] or {}).get("bios") or {}).get("version")
    if version:
        monkeypatch.setenv("PATH", str(tmp_path / "c" / "bin"))
        other = replace_in_record(text, 0, "Version", "0.0.1-other")
        assert failures(dmi_document(tmp_path / "c", other), rules) == [
            f"board: BIOS version 0.0.1-other, expected {version}"]


# -- the language ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "found", "holds"), [
    ("2.10.0", "2.10.0", True),
    ({"min": "2.10.0"}, "2.9.1", False),
    ({"min": "2.9.1"}, "2.10.0", True),
    ({"max": "U46"}, "U47", False),
    (["1.0", "1.1"], "1.1", True),
    ("2.17.*", "2.17.1", True),
    ("2.17.1", None, False),
])
def test_versions_compare_as_versions(spec, found, holds):
    assert audit.spec_holds("version", spec, found) is holds


@pytest.mark.parametrize(("kind", "spec", "found", "holds"), [
    ("text", "*h100*", "NVIDIA H100 80GB HBM3", True),
    ("text", "NVIDIA  H100 80GB HBM3", "NVIDIA H100 80GB HBM3", True),  # runs of blanks are one blank
    ("text", "NVIDIA H100 80GB HBM3", "NVIDIA  H100  80GB HBM3", True),  # found blanks collapse
    ("text", ["DDR4", "DDR5"], "DDR5", True),
    ("count", {"min": 2, "max": 4}, 5, False),
    ("size", 68719476736, 64 * GiB, True),
])
def test_globs_lists_and_ranges(kind, spec, found, holds):
    spec = audit.normalize_spec(kind, spec, "x")
    assert audit.spec_holds(kind, spec, found) is holds


@pytest.mark.parametrize(("text", "size"), [
    ("64 GiB", 64 * GiB), ("3.84 TB", 3_840_000_000_000), ("512MB", 512_000_000), (1024, 1024),
])
def test_sizes_take_units(text, size):
    assert audit.parse_size(text) == size


@pytest.mark.parametrize(("data", "message"), [
    ({"gpu": {"count": 8}}, "gpu: unknown key (known here: $schema, name, description, severity, board, "),
    ({"gpus": {"cuont": 8}}, "gpus.cuont: unknown key (known here: severity, count, product, "),
    ({"disks": [{"match": {"modle": "X"}}]}, "disks[0].match.modle: unknown key"),
    ({"memory": {"size_bytes": "64 gigs"}}, 'memory.size_bytes: expected bytes or a size like "64 GiB"'),
    ({"memory": {"speed_mts": {"least": 5600}}}, 'memory.speed_mts: a range has only "min" and/or "max"'),
    ({"disks": {"count": 2}}, "disks: expected a list of groups"),
    ({"memory": {"slots": {"A1": "full"}}}, 'memory.slots.A1: expected a size, "populated" or "empty"'),
    ({"health": {"no_degraded_links": ["gpus"]}}, "health.no_degraded_links: expected a list of gpu, nic"),
    ({"severity": "fatal"}, "severity: expected one of critical, warning, info"),
    ([1, 2], "a profile is a JSON object"),
])
def test_profile_errors_name_the_key_and_the_problem(data, message):
    with pytest.raises(audit.ProfileError) as error:
        audit.parse_profile(json.dumps(data).encode(), "p.json")
    assert str(error.value).startswith(message), str(error.value)
    with pytest.raises(jsonschema.ValidationError):  # the schema says the same
        jsonschema.Draft202012Validator(PROFILE_SCHEMA).validate(data)


def test_the_profile_schema_lists_exactly_the_language():
    jsonschema.Draft202012Validator.check_schema(PROFILE_SCHEMA)
    assert list(PROFILE_SCHEMA["properties"]) == list(audit.PROFILE_TOP_KEYS)
    for name, section in audit.PROFILE_SECTIONS.items():
        part = PROFILE_SCHEMA["properties"][name]
        part = part["items"] if section.groups else part
        keys = set(part["properties"]) - {"severity", "count", "match", *section.own}
        assert keys == set(section.fields), name
        if section.groups:
            assert set(part["properties"]["match"]["properties"]) == set(section.fields)
    assert set(PROFILE_SCHEMA["properties"]["health"]["properties"]) == {"severity", *audit.HEALTH_KEYS}


def test_a_warning_check_is_a_warning_finding_and_does_not_fail(lab):
    document = lab_document(lab)
    rules = profile({"board": {"bios_version": "9.9", "severity": "warning"}, "cpu": {"count": 2}})
    acceptance = audit.check_profile(document, rules)
    assert acceptance["passed"] is True and acceptance["checks_failed"] == 1
    result = audit.apply_acceptance(document, acceptance)
    assert {"severity": "warning", "component": "acceptance",
            "message": "board: BIOS version 2.4.1, expected 9.9"} in result["findings"]
    assert list(result)[-4:] == ["findings", "acceptance", "errors", "duration_s"]
    jsonschema.Draft202012Validator(DOCUMENT_SCHEMA).validate(json.loads(audit.render(result)))


def test_a_section_with_nothing_to_check_fails_when_nothing_is_there(lab):
    document = lab_document(lab)
    document["nvidia"], document["collectors"]["nvidia"] = [], {"status": "ok", "duration_s": 0, "errors": []}
    failed = failures(document, profile({"gpus": {"product": "*H100*"}}))
    assert failed == ["gpus: 0 GPUs found, expected at least 1"]


# -- a collector that was skipped or failed: unknown, one failed check per section, never "0 found" -------


def test_a_skipped_nvidia_collector_is_unknown_not_zero_gpus(gpu_path):
    xml = V100S_XML.read_text()
    runner = gpu_server(gpu_path / "a", xml)
    rules = profile_of(audit.build_document(runner))
    (gpu_path / "a" / "proc/driver/nvidia").rmdir()  # the driver did not load: 8 GPUs without a driver
    document = audit.build_document(runner)
    assert document["collectors"]["nvidia"]["status"] == "partial"
    assert len(document["nvidia"]["without_driver"]) == 8 and document["nvidia"]["gpus"] == []
    acceptance = audit.check_profile(document, rules)
    assert [c["message"] for c in acceptance["checks"] if c["check"].startswith("gpus")] == [
        "gpus: unknown, the nvidia collector failed (no NVIDIA kernel module is loaded, but 8 NVIDIA GPU(s) "
        "have no driver (see bee-nvidia's line on the console))"]
    assert acceptance["passed"] is False  # we could not verify: that is not a pass
    jsonschema.Draft202012Validator(DOCUMENT_SCHEMA).validate(
        json.loads(audit.render(audit.apply_acceptance(document, acceptance))))


CPU_ONLY = "the pcie section lists no NVIDIA GPU; the nvidia collector was skipped (driver not loaded)"
UNKNOWN = "gpus: unknown, the nvidia collector was skipped (driver not loaded)"


def test_a_cpu_only_server_has_0_gpus_when_pcie_lists_no_nvidia_gpu(lab):
    """The lab server: no NVIDIA driver (nvidia skipped), lspci's functions named (no sysfs ids here)."""
    document = lab_document(lab)
    assert document["collectors"]["nvidia"]["status"] == "skipped"
    assert {entry["vendor"] for entry in document["pcie"]} == {"Intel Corporation", "Red Hat, Inc."}
    acceptance = audit.check_profile(document, profile({"gpus": {"count": 0}}))
    checks = [(check["check"], check["expected"], check["found"], check["passed"], check["message"])
              for check in acceptance["checks"]]
    assert checks == [("gpus.count", 0, 0, True, f"gpus: 0 GPUs found, expected 0 ({CPU_ONLY})")]
    assert acceptance["passed"] is True
    jsonschema.Draft202012Validator(DOCUMENT_SCHEMA).validate(
        json.loads(audit.render(audit.apply_acceptance(document, acceptance))))
    assert failures(document, profile({"gpus": {"count": 2}})) == [f"gpus: 0 of 2 GPUs found ({CPU_ONLY})"]


def with_function(document: dict, **entry) -> dict:
    """The document with one more pcie function (ids as sysfs gives them, names as lspci does)."""
    changed = copy.deepcopy(document)
    keys = ("vendor_id", "class_id", "vendor", "class")
    changed["pcie"].append({"address": "0000:03:00.0", **dict.fromkeys(keys), **entry})
    return changed


@pytest.mark.parametrize("entry", [
    {"vendor_id": "1234", "class_id": "0300", "vendor": "Device 1234"},     # QEMU's standard VGA
    {"vendor_id": "10de", "class_id": "0680", "class": "Bridge"},           # an NVSwitch: no GPU itself
    {"vendor_id": "10de", "class_id": "0403", "class": "Audio device"},     # a GPU's sound function
    {"vendor": "NVIDIA Corporation", "class": "Ethernet controller"},       # names only (no sysfs): a NIC
])
def test_gpus_count_0_holds_beside_other_functions(lab, entry):
    document = with_function(lab_document(lab), **entry)
    assert failures(document, profile({"gpus": {"count": 0}})) == []


@pytest.mark.parametrize("entry", [
    {"vendor_id": "10de", "class_id": "0302"},                              # a 3D controller nvidia missed
    {"vendor_id": "10de", "class_id": "0300"},
    {"vendor": "NVIDIA Corporation", "class": "VGA compatible controller"},  # by lspci's names
    {"vendor": "NVIDIA Corporation", "class": "3D controller"},
    {"vendor": "NVIDIA Corporation"},                                        # class unknown: could be one
    {"class_id": "0302"},                                                    # vendor unknown
])
def test_gpus_count_0_stays_unknown_when_pcie_may_hold_an_nvidia_gpu(lab, entry):
    document = with_function(lab_document(lab), **entry)
    assert failures(document, profile({"gpus": {"count": 0}})) == [UNKNOWN]


def test_gpus_count_0_stays_unknown_when_pcie_is_not_trusted(lab):
    document = lab_document(lab)
    document["collectors"]["pcie"]["status"] = "partial"  # lspci or sysfs met an error: a GPU may be unlisted
    document["collectors"]["pcie"]["errors"] = [
        {"collector": "pcie", "command": "lspci -vmm -D", "message": "timed out after 30.0 s and was killed"}]
    rules = profile({"gpus": {"count": 0}})
    assert failures(document, rules) == [UNKNOWN]
    document["pcie"], document["collectors"]["pcie"] = None, {
        "status": "skipped", "duration_s": 0.0, "errors": [], "reason": "lspci not installed"}
    assert failures(document, rules) == [UNKNOWN]
    document["pcie"], document["collectors"]["pcie"] = [], {"status": "ok", "duration_s": 0.0, "errors": []}
    assert failures(document, rules) == [UNKNOWN]


def test_nvidia_smi_missing_says_so(gpu_path):
    runner = gpu_server(gpu_path / "a", V100S_XML.read_text())
    (gpu_path / "a" / "bin" / "nvidia-smi").unlink()
    document = audit.build_document(runner, [("nvidia", audit.collect_nvidia)])
    assert failures(document, profile({"gpus": {"count": 8}})) == [
        "gpus: unknown, the nvidia collector failed (nvidia-smi -q -x: nvidia-smi is not installed, but the "
        "NVIDIA kernel module is loaded; install nvidia-smi of the same driver version)"]


def test_no_dmi_is_one_unknown_check_per_section_not_sixteen_missing_slots(lab):
    document = lab_document(lab)
    rules = profile_of(document)
    write_tool(lab / "bin", "dmidecode", "echo '# No SMBIOS nor DMI entry point found' >&2; exit 1")
    failed = failures(lab_document(lab), rules)
    for name in ("board", "cpu", "memory"):
        types = {"board": "0,1,2,3", "cpu": "4", "memory": "17"}[name]
        assert [message for message in failed if message.startswith(f"{name}:")] == [
            f"{name}: unknown, the {name} collector failed (dmidecode -t {types}: no SMBIOS/DMI table found "
            "(No SMBIOS nor DMI entry point found); the VM or firmware provides none: DMI data unknown)"]
    assert not any("not found" in message or " of " in message for message in failed), failed
    (lab / "bin" / "dmidecode").unlink()
    failed = failures(lab_document(lab), rules)
    assert "memory: unknown, the memory collector was skipped (dmidecode not installed)" in failed


def test_make_profile_says_which_sections_it_could_not_fill(lab, tmp_path, capsys):
    document = lab_document(lab)  # here the lab has no NVIDIA driver and no /sys/class/net
    saved = write(tmp_path / "doc.json", audit.render(document))
    capsys.readouterr()
    assert audit.main(["--no-qr", "--document", str(saved), "--make-profile", str(tmp_path / "p.json"),
                       "--output", str(tmp_path / "out.json")]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"audit: --make-profile: no {name} in the profile: the {collector} collector was skipped ({reason}); "
        "add them by hand or audit again"
        for name, collector, reason in (
            ("gpus", "nvidia", "driver not loaded"), ("nics", "network", "no /sys/class/net"),
            ("hcas", "infiniband", "no /sys/class/infiniband: no RDMA driver loaded"))]
    made = json.loads((tmp_path / "p.json").read_text())
    assert "gpus" not in made and "nics" not in made


def test_a_group_section_whose_collector_failed_is_one_unknown_check(lab):
    document = lab_document(lab)
    document["storage"] = None
    document["collectors"]["storage"] = {"status": "error", "duration_s": 0.1, "errors": [
        {"collector": "storage", "command": "lsblk -J", "message": "timed out after 30.0 s and was killed"}]}
    rules = profile({"disks": [{"match": {"transport": "nvme"}, "count": 2, "severity": "warning"},
                               {"match": {}, "count": 0}]})
    acceptance = audit.check_profile(document, rules)
    assert [(c["check"], c["severity"], c["message"]) for c in acceptance["checks"]] == [
        ("disks", "critical",
         "disks: unknown, the storage collector failed (lsblk -J: timed out after 30.0 s and was killed)")]


def test_degraded_links_unknown_without_pcie(lab):
    document = lab_document(lab)
    document["pcie"], document["collectors"]["pcie"]["status"] = None, "skipped"
    document["collectors"]["pcie"]["reason"] = "lspci not installed"
    assert failures(document, profile({"health": {"no_degraded_links": ["gpu"]}})) == [
        "health: PCIe links unknown, the pcie collector was skipped (lspci not installed)"]


def test_a_last_empty_group_forbids_other_disks(lab):
    rules = profile({"disks": [{"match": {"transport": "nvme"}, "count": 1},
                               {"match": {"transport": "sata"}, "count": 1},
                               {"match": {}, "count": 0}]})
    # the lab's two virtio disks (LABIN, LABOUT) are neither NVMe nor SATA; the USB stick is never counted
    assert failures(lab_document(lab), rules) == ["disks[2]: 2 disks found, expected 0"]


# -- the command line ------------------------------------------------------------------------------------


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def test_make_profile_then_expect_then_strict(lab, capsys):
    document, made = lab / "doc.json", lab / "profile.json"
    assert audit.main(["--no-qr", "--output", str(document), "--make-profile", str(made),
                       "--devfs", str(lab / "dev"), "--sysfs", str(lab / "sys")]) == 0
    assert json.loads(made.read_text())["memory"]["count"] == 8
    assert "acceptance" not in json.loads(document.read_text())
    assert audit.main(["--no-qr", "--output", str(document), "--expect", str(made), "--strict",
                       "--devfs", str(lab / "dev"), "--sysfs", str(lab / "sys")]) == 0
    result = json.loads(document.read_text())
    assert result["acceptance"]["passed"] is True
    assert result["acceptance"]["sha256"] == hashlib.sha256(made.read_bytes()).hexdigest()
    edited = json.loads(made.read_text())
    edited["memory"]["count"] = 16
    write(made, edited)
    capsys.readouterr()
    assert audit.main(["--no-qr", "--output", str(document), "--expect", str(made), "--strict",
                       "--devfs", str(lab / "dev"), "--sysfs", str(lab / "sys")]) == 3
    err = capsys.readouterr().err
    assert "audit: acceptance: FAIL: 1 of " in err
    assert "audit: acceptance: critical: memory: 8 of 16 DIMMs found; empty slots: CPU0_DIMM_B1" in err
    # without --strict a failed acceptance is still exit 0: the document was written
    assert audit.main(["--no-qr", "--output", str(document), "--expect", str(made),
                       "--devfs", str(lab / "dev"), "--sysfs", str(lab / "sys")]) == 0


def test_document_rechecks_a_saved_document_without_running_anything(lab, tmp_path, monkeypatch, capsys):
    saved = write(tmp_path / "saved.json", audit.render(lab_document(lab)))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no tool at all
    rules = write(tmp_path / "p.json", {"name": "LabServer order 42", "cpu": {"count": 4}})
    capsys.readouterr()
    assert audit.main(["--no-qr", "--document", str(saved), "--expect", str(rules), "--strict"]) == 3
    out = json.loads(capsys.readouterr().out)
    assert out["acceptance"]["profile"] == "LabServer order 42"
    assert [f["message"] for f in out["findings"] if f["component"] == "acceptance"] == [
        "cpu: 2 of 4 populated CPU sockets found"]
    assert out["board"] == json.loads(saved.read_text())["board"]
    # checked again with another profile: the old acceptance and its findings are replaced
    again = write(tmp_path / "again.json", audit.render(out))
    rules = write(tmp_path / "p.json", {"cpu": {"count": 2}})
    assert audit.main(["--no-qr", "--document", str(again), "--expect", str(rules), "--strict"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert not [f for f in out["findings"] if f["component"] == "acceptance"]
    made = tmp_path / "made.json"
    assert audit.main(["--no-qr", "--document", str(saved), "--make-profile", str(made)]) == 0
    assert json.loads(made.read_text())["board"]["bios_version"] == "2.4.1"


@pytest.mark.parametrize(("content", "message"), [
    (None, "audit: --expect {p}: No such file or directory"),
    ('{"cpu": {"count": 2},\n "gpus": {"count": 8,}}',
     "audit: --expect {p}: not JSON: line 2 column 22: Expecting property name"),
    ('{"gpus": {"count": 8, "vbios": "x"}}', "audit: --expect {p}: gpus.vbios: unknown key"),
])
def test_a_bad_profile_is_exit_2_and_one_line(tmp_path, monkeypatch, capsys, content, message):
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert audit.main(["--no-qr", "--expect", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(p=path)), lines


def test_a_bad_document_is_exit_2_and_one_line(tmp_path, capsys):
    path = write(tmp_path / "d.json", {"hello": 1})
    assert audit.main(["--no-qr", "--document", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"audit: --document {path}: not a bee audit document (no schema_version and collectors)"]


@pytest.mark.parametrize("option", ["--expect", "--make-profile"])
def test_a_document_of_another_schema_version_is_exit_2_and_one_line(lab, tmp_path, capsys, option):
    document = json.loads(audit.render(lab_document(lab)))
    document["schema_version"] = 1
    saved = write(tmp_path / "old.json", audit.render(document))
    rules = write(tmp_path / "p.json", {"cpu": {"count": 2}})
    target = str(rules) if option == "--expect" else str(tmp_path / "made.json")
    capsys.readouterr()
    assert audit.main(["--no-qr", "--document", str(saved), option, target]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"audit: --document {saved}: schema_version 1, this audit reads {audit.SCHEMA_VERSION}; "
        "audit the machine again with this audit"]
    assert not (tmp_path / "made.json").exists()


@pytest.mark.parametrize(("data", "message"), [
    ({"memory": {"count": {"min": 8, "max": 4}}}, "memory.count: min 8 is above max 4, so nothing"),
    ({"disks": [{"match": {"size_bytes": {"min": "4 TB", "max": "3.8 TB"}}}]},
     'disks[0].match.size_bytes: min "4 TB" is above max "3.8 TB"'),
    ({"board": {"bios_version": {"min": "2.10.0", "max": "2.9.1"}}},
     'board.bios_version: min "2.10.0" is above max "2.9.1"'),
])
def test_an_impossible_range_is_a_bad_profile(tmp_path, capsys, data, message):
    path = write(tmp_path / "p.json", data)
    assert audit.main(["--no-qr", "--expect", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"audit: --expect {path}: {message}"), lines
    assert audit.normalize_spec("version", {"min": "2.9.1", "max": "2.10.0"}, "x")  # in order: fine


def test_qr_summary_starts_with_the_verdict(lab, monkeypatch):
    document = lab_document(lab)
    passed = audit.apply_acceptance(document, audit.check_profile(document, profile_of(document)))
    assert audit.qr_summary_text(passed).startswith("PASS 0\nbee ")
    failed = audit.apply_acceptance(document, audit.check_profile(document, profile(
        {"memory": {"count": 16}, "cpu": {"count": 4}})))
    text = audit.qr_summary_text(failed)
    assert text.startswith("FAIL 2\nbee ") and len(text) <= audit.QR_MAX_BYTES
    assert "SN SYS-SN-ABC123" in text
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the real qrencode
    assert audit.qr_code(text) is not None  # it still fits a console


# -- over the network and on the live system ---------------------------------------------------------------


class ProfileServer(http.server.BaseHTTPRequestHandler):
    """Serves `body` after answering 503 `failures` times."""

    body = b"{}"
    failures = 0
    requests = 0

    def do_GET(self):  # noqa: N802 (the http.server name)
        type(self).requests += 1
        if type(self).requests <= type(self).failures:
            self.send_error(503)
            return
        if self.path.partition("?")[0] != "/p.json":  # a presigned URL's query is ignored
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(audit, "PROFILE_FETCH_BACKOFF", 0.01)
    ProfileServer.body, ProfileServer.failures, ProfileServer.requests = b'{"cpu": {"count": 2}}', 0, 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ProfileServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_expect_fetches_an_http_profile_retrying_while_the_server_fails(server, lab):
    ProfileServer.failures = 2
    rules = audit.load_profile(f"{server}/p.json")
    assert ProfileServer.requests == 3
    assert audit.check_profile(lab_document(lab), rules)["passed"] is True


def test_a_missing_http_profile_is_not_retried(server):
    with pytest.raises(audit.ProfileError, match=r"/nope.json: cannot fetch it: HTTP 404 .*\(after 1 tries"):
        audit.load_profile(f"{server}/nope.json")


def test_an_unreachable_profile_server_gives_up_after_bounded_tries(monkeypatch, server):
    started = time.monotonic()
    with pytest.raises(audit.ProfileError, match=r"cannot fetch it: .*\(after 6 tries\)"):
        audit.fetch_profile("http://127.0.0.1:9/p.json", audit.PROFILE_FETCH_ATTEMPTS)  # discard: refused
    assert time.monotonic() - started < 5


def test_expect_url_says_each_retry_and_gives_up_sooner_than_the_live_system(server, capsys):
    ProfileServer.failures = 99
    url = f"{server}/p.json"
    assert audit.main(["--no-qr", "--expect", url]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert ProfileServer.requests == audit.PROFILE_EXPECT_ATTEMPTS == 3 < audit.PROFILE_FETCH_ATTEMPTS
    assert lines == [
        f"audit: profile {url}: try 1 of 3 failed: HTTP 503 Service Unavailable; trying again in 0.01 s",
        f"audit: profile {url}: try 2 of 3 failed: HTTP 503 Service Unavailable; trying again in 0.02 s",
        f"audit: --expect {url}: cannot fetch it: HTTP 503 Service Unavailable (after 3 tries)"]


def test_a_profile_url_secret_is_never_shown(server, tmp_path, monkeypatch, capsys):
    ProfileServer.failures = 1
    secret = f"{server}/p.json?X-Amz-Signature=SECRET"
    out = tmp_path / "doc.json"
    monkeypatch.setenv("PATH", str(tmp_path))  # no tool: the document is empty but has acceptance
    audit.main(["--no-qr", "--output", str(out), "--expect", secret])
    written = out.read_text()
    acceptance = json.loads(written)["acceptance"]
    assert (acceptance["source"], acceptance["profile"]) == (f"{server}/p.json", "p.json")
    err = capsys.readouterr().err
    assert f"audit: profile {server}/p.json: try 1 of 3 failed: HTTP 503" in err
    ProfileServer.failures, ProfileServer.requests = 99, 0
    with pytest.raises(audit.ProfileError) as raised:
        audit.load_profile(secret)
    assert str(raised.value).startswith(f"{server}/p.json: cannot fetch it: HTTP 503")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cmdline").write_text(f"bee.profile={secret}\n")
    monkeypatch.setattr(audit, "PROFILE_FETCH_ATTEMPTS", 1)
    assert audit.live_profile(tmp_path / "proc", None) is None
    err += capsys.readouterr().err
    assert f"audit: acceptance: profile {server}/p.json: cannot fetch it: HTTP 503" in err
    with pytest.raises(audit.ProfileError) as raised:  # urllib takes no user:password: the message hides it
        audit.load_profile(secret.replace("http://", "http://user:PASSWORD@"))
    assert str(raised.value).startswith(f"{server}/p.json: cannot fetch it: ")
    err += capsys.readouterr().err
    for text in (written, err, str(raised.value)):
        assert "SECRET" not in text and "PASSWORD" not in text


def test_a_profile_server_with_an_unknown_certificate_is_not_retried(tmp_path, capsys):
    """As for --report: a wrong CA is final at once, not a minute of retries at boot."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ProfileServer)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(audit.ProfileError, match=r"^cannot fetch it: TLS: certificate verify failed: .*"
                                                     r"\(after 1 tries\)"):
            audit.fetch_profile(f"https://127.0.0.1:{httpd.server_address[1]}/p.json", 6)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("body", [b"{" * (1 << 20) + b"}", b'{"cpus": {}}'])
def test_a_profile_that_arrived_invalid_is_final_at_once(server, body):
    ProfileServer.body = body
    with pytest.raises(audit.ProfileError, match=r"larger than 1048576 bytes|cpus: unknown key"):
        audit.load_profile(f"{server}/p.json")
    assert ProfileServer.requests == 1


def test_a_garbled_answer_is_retried_not_a_crash(monkeypatch, capsys):
    monkeypatch.setattr(audit, "PROFILE_FETCH_BACKOFF", 0.01)
    listener = socket.create_server(("127.0.0.1", 0))
    answers = []

    def garble():
        for _ in range(2):
            connection, _ = listener.accept()
            connection.recv(4096)
            connection.sendall(b"garbage\r\n\r\n")
            connection.close()
            answers.append(1)

    server = threading.Thread(target=garble, daemon=True)
    server.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/p.json"
    with pytest.raises(audit.ProfileError, match=r"^cannot fetch it: BadStatusLine: garbage \(after 2 tries"):
        audit.fetch_profile(url, 2)
    server.join(timeout=10)  # it counts its second answer after the client already read it
    listener.close()
    assert len(answers) == 2
    assert capsys.readouterr().err == (f"audit: profile {url}: try 1 of 2 failed: BadStatusLine: garbage; "
                                       "trying again in 0.01 s\n")


def live_machine(root: Path, cmdline: str, stick: dict | None) -> Path:
    """procfs with a kernel command line, and an lsblk listing a mounted USB stick holding `stick`."""
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "cmdline").write_text(cmdline + "\n")
    mount = root / "stick"
    mount.mkdir()
    if stick is not None:
        write(mount / "bee-profile.json", stick)
    partition = {"name": "sdb1", "path": "/dev/sdb1", "rm": True, "hotplug": True, "tran": None,
                 "type": "part", "fstype": "vfat", "mountpoint": str(mount), "serial": None}
    disk = {"name": "sdb", "path": "/dev/sdb", "rm": True, "hotplug": True, "tran": "usb", "type": "disk",
            "fstype": None, "mountpoint": None, "serial": "USB-SN-42", "children": [partition]}
    listing = {"blockdevices": [disk]}
    write(root / "usb.json", listing)
    tool_printing(root / "bin", "lsblk", root / "usb.json")
    return root / "proc"


def test_live_profile_prefers_the_kernel_command_line(server, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    procfs = live_machine(tmp_path, f"console=ttyS0 bee.profile={server}/p.json quiet", {"name": "stick"})
    found = audit.live_profile(procfs, write(tmp_path / "built.json", {"name": "built"}))
    assert found.source == f"{server}/p.json" and found.rules["sections"]["cpu"]["count"] == 2


def test_live_profile_falls_back_to_the_stick_then_the_build(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(audit, "PROFILE_FETCH_ATTEMPTS", 2)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    procfs = live_machine(tmp_path, f"bee.profile={server}/nope.json", {"name": "stick"})
    built = write(tmp_path / "built.json", {"name": "built"})
    found = audit.live_profile(procfs, built)
    assert (found.name, found.source) == ("stick", "/dev/sdb1:/bee-profile.json")
    assert capsys.readouterr().err.splitlines() == [
        f"audit: acceptance: profile {server}/nope.json: cannot fetch it: HTTP 404 Not Found "
        "(after 1 tries); trying the next source"]
    (tmp_path / "stick" / "bee-profile.json").write_text('{"name": "stick", "cpus": {}}')
    found = audit.live_profile(procfs, built)
    assert found.name == "built"
    err = capsys.readouterr().err
    assert "audit: acceptance: profile /dev/sdb1:/bee-profile.json: cpus: unknown key" in err
    (tmp_path / "stick" / "bee-profile.json").unlink()
    assert audit.live_profile(procfs, tmp_path / "absent.json") is None
    assert "audit: acceptance: no profile" in capsys.readouterr().err


def test_live_profile_mounts_an_unmounted_stick_read_only_and_unmounts_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    procfs = live_machine(tmp_path, "quiet", {"name": "stick"})
    listing = json.loads((tmp_path / "usb.json").read_text())
    listing["blockdevices"][0]["children"][0]["mountpoint"] = None
    write(tmp_path / "usb.json", listing)
    log_file = tmp_path / "mount.log"
    # mount "mounts" by copying the stick's file into the folder it is given
    write_tool(tmp_path / "bin", "mount", f'echo "mount $*" >> {log_file}; /bin/cp {tmp_path}/stick/* "$4"')
    write_tool(tmp_path / "bin", "umount", f'echo "umount $*" >> {log_file}; /bin/rm -f "$1"/*')
    found = audit.live_profile(procfs, None)
    assert (found.name, found.source) == ("stick", "/dev/sdb1:/bee-profile.json")
    mount, umount = log_file.read_text().splitlines()
    folder = mount.rsplit(" ", 1)[1]
    assert mount == f"mount -o ro /dev/sdb1 {folder}" and umount == f"umount {folder}"
    assert not Path(folder).exists()


def test_expect_live_on_the_command_line(tmp_path, monkeypatch, lab):
    procfs = live_machine(tmp_path / "live", "quiet", None)
    monkeypatch.setenv("PATH", f"{tmp_path / 'live' / 'bin'}:{lab / 'bin'}")
    built = write(tmp_path / "built.json", {"name": "built", "memory": {"count": 16}})
    out = tmp_path / "doc.json"
    assert audit.main(["--no-qr", "--output", str(out), "--expect-live", str(built), "--strict", "--procfs",
                       str(procfs), "--sysfs", str(lab / "sys"), "--devfs", str(lab / "dev")]) == 3
    assert json.loads(out.read_text())["acceptance"]["profile"] == "built"


def test_made_profile_is_stable_and_readable(lab):
    document = lab_document(lab)
    first = audit.render_profile(audit.make_profile(document))
    again = audit.render_profile(audit.make_profile(copy.deepcopy(document)))
    assert first == again
    assert '"no_degraded_links": ["gpu", "nic", "storage"]' in first
    assert list(json.loads(first)) == [
        "name", "severity", "board", "cpu", "memory", "disks", "psus", "bmc", "health"]


def test_the_readme_example_is_a_valid_profile():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Acceptance"):]
    example = section[section.index("```json\n") + 8:section.index("\n```", section.index("```json\n"))]
    rules = profile(json.loads(example))
    assert rules.name == "GPU node, order 4711"
    assert rules.rules["sections"]["memory"]["total_bytes"] == 2 << 40
    assert rules.rules["sections"]["disks"][0]["match"]["size_bytes"] == {"min": 3_800_000_000_000,
                                                                          "max": 3_900_000_000_000}


def test_an_odd_saved_document_is_a_failed_check_never_a_crash(lab, tmp_path, capsys):
    document = json.loads(audit.render(lab_document(lab)))
    rules = profile_of(document)
    document["cpu"] = ["not", "sockets"]
    document["memory"]["slots"] = "garbage"
    acceptance = audit.check_profile(document, rules)
    assert acceptance["passed"] is False
    odd = [c["message"] for c in acceptance["checks"] if "cannot be checked" in c["message"]]
    assert [message.split(":")[0] for message in odd] == ["cpu", "memory"]
    saved = write(tmp_path / "odd.json", audit.render(document))
    made = tmp_path / "made.json"
    assert audit.main(["--no-qr", "--document", str(saved), "--make-profile", str(made),
                       "--output", str(tmp_path / "out.json")]) == 1
    err = capsys.readouterr().err  # the last line: the lab fakes' collectors may have said theirs before
    assert err.splitlines()[-1].startswith("audit: --make-profile: cannot make a profile from this document")
    assert not made.exists()
