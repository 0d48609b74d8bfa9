"""No parser raises on garbage: every fixture cut at random points, random bytes, empty text, and tool JSON
whose values were swapped for values of the wrong type go through every parser (a fixed seed: the same
cases on every run). A raise inside a collector loses that collector's whole data, every disk at once."""

from __future__ import annotations

import json
import random

import pytest

from audit import audit
from tests.audit.fakes import write_tool
from tests.paths import LAB_FIXTURES, REAL_FIXTURES

FIXTURES = sorted(
    path
    for path in [*REAL_FIXTURES.rglob("*"), *LAB_FIXTURES.glob("*")]
    if path.is_file() and path.suffix != ".md"
)
WRONG_TYPES = ["x", "", -1, 0, 2**70, 1.5, None, True, [], {}, [1], {"a": 1}, "0x", "ffff", "\x00\ufffd"]


def every_parser(text: str) -> None:
    """Feed `text` to every parser of the module, and what they return to the steps that use it."""
    records = audit.parse_dmidecode(text)
    memory = audit.parse_memory(records)
    document = {"cpu": audit.parse_cpus(records), "memory": memory, "board": audit.parse_board(records)}
    audit.parse_psu_dmi(records)
    fru = audit.parse_fru(text)
    audit.fru_identity(fru)
    for record in fru:
        audit.is_psu_fru(record)
        audit.psu_from_fru(record)
    audit.parse_fru_fields(text)
    audit.parse_lsblk(text)
    for exit_status in (None, 0, 1, 2, 4, 8, 216):
        audit.parse_smartctl(text, exit_status)
    audit.parse_nvme_id_ctrl(text)
    audit.parse_nvme_smart_log(text)
    audit.parse_nvme_list(text)
    document["pcie"] = audit.parse_lspci_vmm(text)
    audit.parse_aer(text)
    unbound = {"address": "0000:c1:00.0", "device_id": "0x2901"}
    document["nvidia"] = {
        "kernel_module": audit.parse_nvidia_version(text), "gpus": audit.parse_nvidia_smi_xml(text) or [],
        "without_driver": [{**unbound, "reason": audit.why_without_driver(unbound, None, text)}],
    }
    for gpu, status in zip(document["nvidia"]["gpus"], audit.parse_nvlink_status(text), strict=False):
        gpu["nvlink"] = audit.nvlink_summary(status)
    audit.parse_topology(text)
    document["bmc"] = {**(audit.parse_mc_info(text) or {}), "lan": [audit.parse_lan_print(text, 1) or {}]}
    audit.lan_channel_medium(text)
    audit.redact_lan_secrets(text.encode())
    link = audit.parse_ethtool_link(text) or {}
    document["network"] = [{**(audit.parse_ethtool_info(text) or {}), **link}]
    port = {"state": audit.ib_state(text), "phys_state": audit.ib_state(text[::-1])}
    port["rate_gbps"] = audit.ib_rate(text)
    hca = {"name": "x", "node_guid": audit.ib_guid(text), "ports": [port, {"port": text}]}
    document["infiniband"] = [hca]
    audit.usb_targets(audit.load_json(text))
    document["sensors"] = audit.parse_sensors(text)
    records = audit.parse_sel_list(text)
    document["event_log"] = {"info": audit.parse_sel_info(text), "records": records,
                             "summary": audit.summarize_sel(records)}
    document["kernel_log"] = audit.parse_kernel_log(text)
    for linker in audit.LINKERS:
        linker(document)
    audit.link_gpus_to_pcie(document)
    for rule in audit.FINDING_RULES:
        rule(document)
    audit.qr_summary_text(document)


def wrong_types(value, rng: random.Random):
    """A copy of a JSON value with some values (objects and arrays too) replaced by other types."""
    if rng.random() < 0.05:
        return rng.choice(WRONG_TYPES)
    if isinstance(value, dict):
        return {key: wrong_types(item, rng) for key, item in value.items()}
    if isinstance(value, list):
        return [wrong_types(item, rng) for item in value]
    return rng.choice(WRONG_TYPES) if rng.random() < 0.15 else value


def garbage_cases(path, rng: random.Random) -> list[str]:
    data = path.read_bytes()
    text = audit.decode(data)
    cases = [text[: rng.randrange(len(text) + 1)] for _ in range(12)]
    cases += [text[rng.randrange(len(text) + 1) :] for _ in range(3)]
    cases += ["", " \n", "\x00\xff", audit.decode(bytes(rng.randrange(256) for _ in range(300)))]
    cases.append(data[:400].decode("latin-1"))
    parsed = audit.load_json(text)
    if parsed is not None:
        cases += [json.dumps(wrong_types(parsed, rng)) for _ in range(40)]
    return cases


def test_fixtures_are_there():
    assert len(FIXTURES) > 100
    assert {path.parent.name for path in FIXTURES} >= {
        "dmidecode",
        "ipmitool",
        "lsblk",
        "lspci",
        "nvidia-smi",
        "nvme",
        "smartctl",
        "qemu-lab",
    }


@pytest.mark.parametrize("path", FIXTURES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_no_parser_raises_on_garbage(path):
    rng = random.Random(path.name)
    failures = []
    for case in garbage_cases(path, rng):
        try:
            every_parser(case)
        except Exception as exc:  # noqa: BLE001 - collect every failure to show them all
            failures.append(f"{type(exc).__name__}: {exc} on {case[:80]!r}")
    assert failures == []


def test_a_disk_whose_smartctl_json_has_the_wrong_shape_keeps_the_other_disks(tmp_path, monkeypatch):
    """smartctl printing `"smart_status": 1` (wrong shape) for one disk: both disks stay listed."""
    lsblk = {
        "blockdevices": [
            {"name": "sda", "kname": "sda", "path": "/dev/sda", "type": "disk", "size": 1000, "serial": "S1"},
            {"name": "sdb", "kname": "sdb", "path": "/dev/sdb", "type": "disk", "size": 2000, "serial": "S2"},
        ]
    }
    odd = {
        "smartctl": {"exit_status": 0},
        "smart_status": 1,
        "temperature": [],
        "power_on_time": "x",
        "ata_smart_attributes": {"table": 5},
        "serial_number": "S1",
    }
    bin_dir = tmp_path / "bin"
    (tmp_path / "lsblk.json").write_text(json.dumps(lsblk))
    (tmp_path / "odd.json").write_text(json.dumps(odd))
    for name, body in {
        "lsblk": f"cat {tmp_path / 'lsblk.json'}",
        "smartctl": f'case "$*" in *sda) cat {tmp_path / "odd.json"};; *) exit 1;; esac',
    }.items():
        write_tool(bin_dir, name, body)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    runner = audit.Runner(sysfs=tmp_path / "s", procfs=tmp_path / "p", devfs=tmp_path / "d")
    document = audit.build_document(runner, [("storage", audit.collect_storage)])
    assert [disk["serial"] for disk in document["storage"]] == ["S1", "S2"]
    sda = document["storage"][0]["health"]
    assert (sda["smart_passed"], sda["temperature_c"], sda["power_on_hours"]) == (None, None, None)
