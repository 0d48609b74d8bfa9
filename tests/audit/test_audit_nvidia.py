"""The nvidia collector: nvidia-smi -q -x XML of several driver branches, the capture bundles (not XML),
the collector with a faked nvidia-smi, the GPU <-> PCIe linker and the GPU findings."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ElementTree

import pytest

from audit import audit
from tests.paths import REAL_FIXTURES

NVSMI_DIR = REAL_FIXTURES / "nvidia-smi"
NVSMI = ["nvidia-smi", "-q", "-x"]
MIB = 1024 * 1024


def xml(name: str) -> str:
    return (NVSMI_DIR / name).read_text()


def zero_ecc():
    return {"volatile": {"corrected": 0, "uncorrected": 0}, "aggregate": {"corrected": 0, "uncorrected": 0}}


NO_ECC = {
    "volatile": {"corrected": None, "uncorrected": None},
    "aggregate": {"corrected": None, "uncorrected": None},
}
NO_ROWS = {"corrected": None, "uncorrected": None, "pending": None, "failure": None}
V100S = {
    "product": "Tesla V100S-PCIE-32GB",
    "vbios_version": "88.00.98.00.01",
    "memory_total_bytes": 32510 * MIB,
    "ecc_mode": "Enabled",
    "ecc_errors": zero_ecc(),
    "power_limit_w": 250.0,
    "retired_pages": {"single_bit": 0, "double_bit": 0, "pending": False},
    "remapped_rows": NO_ROWS,
    "pcie": {"current_gen": 3, "max_gen": 3, "current_width": 16, "max_width": 16},
    "driver_version": "460.73.01",
    "cuda_version": "11.2",
    "mig_mode": None,
}
XML_EXPECTED = {
    "datakit-8x-tesla-v100s-pcie-32gb-passthrough.xml": (
        8,
        {
            0: {
                **V100S,
                "serial": "1562920006088",
                "uuid": "GPU-76098dc1-d3bc-9a1b-7ea6-f7b48837829e",
                "bus_id": "0000:00:0d.0",
                "temperature": 66,
            },
            7: {
                **V100S,
                "serial": "1562920006372",
                "uuid": "GPU-1d955959-c95b-4f40-2cac-100d3006ffe2",
                "bus_id": "0000:00:14.0",
                "temperature": 57,
            },
        },
    ),
    "datakit-geforce-graphics-device-driver418-nodoctype.xml": (
        1,
        {
            0: {
                "product": "Graphics Device",
                "serial": None,
                "uuid": "GPU-304a277d-3545-63b8-3a36-dfde3c992989",
                "vbios_version": "90.16.25.00.4C",
                "bus_id": "0000:43:00.0",
                "memory_total_bytes": 5912 * MIB,
                "ecc_mode": None,
                "ecc_errors": NO_ECC,
                "power_limit_w": 130.0,
                "temperature": 40,
                "pcie": {"current_gen": 1, "max_gen": 3, "current_width": 16, "max_width": 16},
                "driver_version": "418.43",
                "cuda_version": "10.1",
                "mig_mode": None,
                "mig_devices": 0,
            }
        },
    ),
    "datakit-tesla-v100-pcie-32gb.xml": (
        1,
        {
            0: {
                "product": "Tesla V100-PCIE-32GB",
                "serial": "0324418086185",
                "uuid": "GPU-e77ce5d8-8b63-c936-3c1b-839d45bcd0f2",
                "vbios_version": "88.00.48.00.02",
                "bus_id": "0000:21:01.0",
                "memory_total_bytes": 32510 * MIB,
                "ecc_mode": "Enabled",
                "ecc_errors": zero_ecc(),
                "power_limit_w": 250.0,
                "temperature": 66,
                "driver_version": "460.39",
                "cuda_version": "11.2",
                "pcie": {"current_gen": 3, "max_gen": 3, "current_width": 16, "max_width": 16},
            }
        },
    ),
    "netdata-a100-sxm4-40gb-mig-driver510.xml": (
        1,
        {
            0: {
                "product": "NVIDIA A100-SXM4-40GB",
                "serial": "1324321002473",
                "uuid": "GPU-27b94a00-ed54-5c24-b1fd-1054085de32a",
                "vbios_version": "92.00.45.00.03",
                "bus_id": "0000:00:04.0",
                "memory_total_bytes": 40960 * MIB,
                "ecc_mode": "Enabled",
                "ecc_errors": {
                    "volatile": {"corrected": None, "uncorrected": None},
                    "aggregate": {"corrected": 0, "uncorrected": 0},
                },
                "power_limit_w": 400.0,
                "temperature": 36,
                "mig_mode": "Enabled",
                "mig_devices": 2,
                "pcie": {"current_gen": 4, "max_gen": 4, "current_width": 16, "max_width": 16},
                "driver_version": "510.47.03",
                "cuda_version": "11.6",
            }
        },
    ),
    "netdata-rtx3060-laptop.xml": (
        1,
        {
            0: {
                "product": "NVIDIA GeForce RTX 3060 Laptop GPU",
                "serial": None,
                "uuid": "GPU-473d8d0f-d462-185c-6b36-6fc23e23e571",
                "vbios_version": "94.06.19.00.51",
                "bus_id": "0000:01:00.0",
                "memory_total_bytes": 6144 * MIB,
                "ecc_mode": None,
                "power_limit_w": None,
                "temperature": 45,
                "pcie": {"current_gen": 1, "max_gen": 4, "current_width": 8, "max_width": 16},
                "driver_version": "515.65.01",
                "cuda_version": "11.7",
            }
        },
    ),
    "netdata-rtx4090-driver535.xml": (
        1,
        {
            0: {
                "product": "NVIDIA GeForce RTX 4090",
                "serial": None,
                "uuid": "GPU-71d1acc2-662d-2166-bf9f-65272d2fc437",
                "vbios_version": "95.02.18.80.5F",
                "bus_id": "0000:84:00.0",
                "memory_total_bytes": 24564 * MIB,
                "ecc_mode": "Disabled",
                "ecc_errors": NO_ECC,
                "power_limit_w": 450.0,
                "temperature": 40,
                "remapped_rows": {"corrected": 0, "uncorrected": 0, "pending": False, "failure": False},
                "retired_pages": {"single_bit": None, "double_bit": None, "pending": None},
                "pcie": {"current_gen": 1, "max_gen": 3, "current_width": 16, "max_width": 16},
                "driver_version": "535.86.05",
                "cuda_version": "12.2",
                "board_part_number": None,
            }
        },
    ),
    "netdata-tesla-p100-pcie-16gb.xml": (
        1,
        {
            0: {
                "product": "Tesla P100-PCIE-16GB",
                "serial": "0324217145110",
                "uuid": "GPU-d3da8716-eaab-75db-efc1-60e88e1cd55e",
                "vbios_version": "86.00.52.00.02",
                "bus_id": "0000:00:04.0",
                "memory_total_bytes": 16384 * MIB,
                "ecc_mode": "Enabled",
                "ecc_errors": {
                    "volatile": {"corrected": 0, "uncorrected": 0},
                    "aggregate": {"corrected": 3, "uncorrected": 0},
                },
                "retired_pages": {"single_bit": 0, "double_bit": 0, "pending": False},
                "power_limit_w": 250.0,
                "temperature": 38,
                "driver_version": "510.47.03",
                "cuda_version": "11.6",
            }
        },
    ),
    # DTD v12, driver 535: <gpu_power_readings> with current_power_limit, sram_/dram_ ECC counters,
    # remapped_rows "N/A", four 1g.20gb MIG instances; attached_gpus says 4 but the file holds one <gpu>.
    "telegraf-a100-sxm4-80gb-mig-nvidia-smi-q-x.xml": (
        1,
        {
            0: {
                "product": "NVIDIA A100-SXM4-80GB",
                "serial": "1650522003820",
                "uuid": "GPU-513536b6-7d19-9063-b049-1e69664bb298",
                "vbios_version": "92.00.36.00.02",
                "board_part_number": "692-2G506-0212-002",
                "bus_id": "0000:01:00.0",
                "memory_total_bytes": 81920 * MIB,
                "ecc_mode": "Enabled",
                "ecc_mode_pending": "Enabled",
                "ecc_errors": zero_ecc(),
                "retired_pages": {"single_bit": None, "double_bit": None, "pending": None},
                "remapped_rows": NO_ROWS,
                "power_limit_w": 500.0,
                "temperature": 27,
                "pcie": {"current_gen": 4, "max_gen": 4, "current_width": 16, "max_width": 16},
                "mig_mode": "Enabled",
                "mig_devices": 4,
                "driver_version": "535.54.03",
                "cuda_version": "12.2",
            }
        },
    ),
}
# Capture bundles (`-q` text, CSV, tables of drivers 590-610) and --query-gpu CSV excerpts: the audit runs
# only `-q -x`, so these must not parse as XML; the GPU bus ids they print check the bus-id normalisation.
NOT_XML = {
    "nvgpuexp-capture-h100-80gb-hbm3-drv590.txt": "0000:00:09.0",
    "nvgpuexp-capture-h200-mig-drv590.txt": "0000:83:00.0",
    "nvgpuexp-capture-l40s-drv595.txt": "0000:01:00.0",
    "nvgpuexp-capture-rtx4080super-drv595.txt": "0000:01:00.0",
    "nvgpuexp-capture-windows-rtx2080super-drv610.txt": "0000:0c:00.0",
    "nvgpuexp-query-gpu-idle-h100-80gb-hbm3.csv": "0000:00:09.0",
    "nvgpuexp-query-gpu-idle-h200-mig.csv": "0000:83:00.0",
    "nvgpuexp-query-gpu-idle-l40s.csv": "0000:01:00.0",
}


@pytest.mark.parametrize("name", sorted(XML_EXPECTED))
def test_nvidia_smi_xml_real_file(name):
    gpus = audit.parse_nvidia_smi_xml(xml(name))
    count, expected = XML_EXPECTED[name]
    assert len(gpus) == count
    for index, fields in expected.items():
        assert {key: gpus[index][key] for key in fields} == fields


def bus_id_printed_in(name: str) -> str:
    """The 8-digit-domain bus id a bundle's `-q` section ("GPU 00000000:..") or CSV row prints."""
    text = (NVSMI_DIR / name).read_text()
    return re.search(r"(?:^GPU |, )([0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.[0-7])", text, re.M)[1]


@pytest.mark.parametrize("name", sorted(NOT_XML))
def test_capture_bundles_and_csv_are_not_xml(name):
    assert audit.parse_nvidia_smi_xml((NVSMI_DIR / name).read_text()) is None
    assert audit.normalize_pci_address(bus_id_printed_in(name)) == NOT_XML[name]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\x00\x01\xff",
        "<nvidia_smi_log><gpu id=",
        "<other/>",
        "not xml <nvidia_smi_log",
        xml("datakit-tesla-v100-pcie-32gb.xml")[:5000],  # truncated
    ],
)
def test_garbage_xml_is_none(text):
    assert audit.parse_nvidia_smi_xml(text) is None


def test_empty_log_has_no_gpus():
    assert (
        audit.parse_nvidia_smi_xml("<nvidia_smi_log><driver_version>1</driver_version></nvidia_smi_log>")
        == []
    )


@pytest.mark.parametrize(
    "children, counts",
    [
        # 550+ split sram_uncorrectable into _parity and _secded (as the 590 `-q` text shows): summed once
        (
            "<sram_correctable>1</sram_correctable><sram_uncorrectable_parity>2</sram_uncorrectable_parity>"
            "<sram_uncorrectable_secded>3</sram_uncorrectable_secded><dram_correctable>4</dram_correctable>"
            "<dram_uncorrectable>5</dram_uncorrectable>",
            {"corrected": 5, "uncorrected": 10},
        ),
        # a branch printing the parent and its parts: the parent only, never counted twice
        (
            "<sram_uncorrectable>5</sram_uncorrectable><sram_uncorrectable_parity>2</sram_uncorrectable_parity>"
            "<sram_uncorrectable_secded>3</sram_uncorrectable_secded><sram_threshold_exceeded>No"
            "</sram_threshold_exceeded>",
            {"corrected": None, "uncorrected": 5},
        ),
    ],
)
def test_ecc_counts_of_newer_branches(children, counts):
    assert audit.ecc_counts(ElementTree.fromstring(f"<volatile>{children}</volatile>")) == counts


# -- the collector ---------------------------------------------------------------------------------------


def register_pcie_only_nvlink(fp, gpus: int) -> None:
    """`nvlink -s` and `topo -m` of PCIe cards without NVLink (as nvidia-smi 595 prints them for an L40S)."""
    fp.register(
        ["nvidia-smi", "nvlink", "-s"],
        stdout="".join(
            f"GPU {n}: Tesla V100S-PCIE-32GB\nDevice does not have or support Nvlink\n" for n in range(gpus)
        ),
    )
    header = "\t" + "\t".join(f"GPU{n}" for n in range(gpus)) + "\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\n"
    rows = "".join(
        f"GPU{n}\t" + "\t".join(" X " if m == n else "PHB" for m in range(gpus)) + "\t0-15\t0\t\tN/A\n"
        for n in range(gpus)
    )
    fp.register(["nvidia-smi", "topo", "-m"], stdout=header + rows)


def load_driver(tools):
    """The NVIDIA driver loaded (/proc/driver/nvidia) and an nvidia-smi on PATH."""
    (tools.procfs / "driver/nvidia").mkdir(parents=True)
    tools("nvidia-smi")


def test_no_driver_means_skipped_and_nothing_run(fp, tools):
    tools("nvidia-smi")
    document = audit.build_document(tools.runner(), [("nvidia", audit.collect_nvidia)])
    assert document["nvidia"] is None
    assert document["collectors"]["nvidia"]["status"] == "skipped"
    assert document["errors"] == []
    assert fp.call_count(NVSMI) == 0


def test_driver_without_nvidia_smi_is_skipped_silently(tools, monkeypatch, tmp_path):
    load_driver(tools)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    document = audit.build_document(tools.runner(), [("nvidia", audit.collect_nvidia)])
    assert document["nvidia"] is None
    assert document["errors"] == []


def test_collector_reads_the_xml(fp, tools):
    load_driver(tools)
    fp.register(NVSMI, stdout=xml("datakit-8x-tesla-v100s-pcie-32gb-passthrough.xml"))
    register_pcie_only_nvlink(fp, 8)
    document = audit.build_document(tools.runner(), [("nvidia", audit.collect_nvidia)])
    assert [gpu["bus_id"] for gpu in document["nvidia"]] == [
        f"0000:00:{slot}.0" for slot in ("0d", "0e", "0f", "10", "11", "12", "13", "14")
    ]
    assert document["collectors"]["nvidia"]["status"] == "ok"
    assert document["findings"] == []


@pytest.mark.parametrize(
    "stdout, returncode, message",
    [
        (b"\xff\xfe<garbage", 0, "printed no nvidia-smi XML"),
        (b"", 0, "printed nothing"),
        (
            b"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            9,
            "exit status 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        ),
    ],
)
def test_collector_failures_are_errors(fp, tools, stdout, returncode, message):
    load_driver(tools)
    fp.register(NVSMI, stdout=stdout, returncode=returncode)
    document = audit.build_document(tools.runner(), [("nvidia", audit.collect_nvidia)])
    assert [(e["command"], e["message"]) for e in document["errors"]] == [("nvidia-smi -q -x", message)]
    assert document["collectors"]["nvidia"]["status"] == "error"


def test_hung_nvidia_smi_is_killed(tools):
    load_driver(tools)
    sleep = shutil.which("sleep", path="/usr/bin:/bin")
    tools("nvidia-smi", script=f"#!/bin/sh\n{sleep} 60\n")
    document = audit.build_document(tools.runner(timeout=1.0), [("nvidia", audit.collect_nvidia)])
    assert document["errors"][0]["command"] == "nvidia-smi -q -x"
    assert "timed out" in document["errors"][0]["message"]


# -- linking and findings --------------------------------------------------------------------------------


def test_linker_attaches_gpus_to_their_pcie_entries(fp, tools):
    load_driver(tools)
    fp.register(NVSMI, stdout=xml("datakit-8x-tesla-v100s-pcie-32gb-passthrough.xml"))
    register_pcie_only_nvlink(fp, 8)
    pcie = [
        {"address": "0000:00:0d.0", "class_id": "0302"},
        {"address": "0000:00:0e.0", "class_id": "0302"},
        {"address": "0000:00:01.0", "class_id": "0601"},
    ]
    collectors = [("pcie", lambda ctx: [dict(entry) for entry in pcie]), ("nvidia", audit.collect_nvidia)]
    document = audit.build_document(tools.runner(), collectors)
    gpus = document["nvidia"]
    assert gpus[0]["pcie_address"] == "0000:00:0d.0"  # lspci's 4-digit domain, lower case
    assert gpus[1]["pcie_address"] == "0000:00:0e.0"
    assert gpus[2]["pcie_address"] is None  # no pcie entry for 00:0f.0
    entries = {entry["address"]: entry for entry in document["pcie"]}
    assert entries["0000:00:0d.0"]["gpu_uuid"] == "GPU-76098dc1-d3bc-9a1b-7ea6-f7b48837829e"
    assert entries["0000:00:0e.0"]["gpu_uuid"] == "GPU-bbf7a241-bf9a-eb90-b2fb-d213294faf48"
    assert "gpu_uuid" not in entries["0000:00:01.0"]


def findings_of(text):
    return audit.nvidia_findings({"nvidia": audit.parse_nvidia_smi_xml(text)})


def test_gpu_findings():
    assert findings_of(xml("netdata-tesla-p100-pcie-16gb.xml")) == []  # 3 corrected: not a finding
    v100 = xml("datakit-tesla-v100-pcie-32gb.xml")
    aggregate = v100.index("<aggregate>")
    double_bit = v100.index("<double_bit>", aggregate)
    total = v100.index("<total>0</total>", double_bit)
    broken = v100[:total] + "<total>2</total>" + v100[total + len("<total>0</total>") :]
    broken = broken.replace(
        "<pending_retirement>No</pending_retirement>", "<pending_retirement>Yes</pending_retirement>"
    )
    component = "gpu 0000:21:01.0 (Tesla V100-PCIE-32GB, 0324418086185)"
    assert findings_of(broken) == [
        {"severity": "critical", "component": component, "message": "2 uncorrected ECC errors (aggregate)"},
        {
            "severity": "warning",
            "component": component,
            "message": "retired memory pages pending (reset the GPU)",
        },
    ]
    rtx = xml("netdata-rtx4090-driver535.xml").replace(
        "<remapped_row_pending>No</remapped_row_pending>", "<remapped_row_pending>Yes</remapped_row_pending>"
    )
    assert [(f["severity"], f["message"]) for f in findings_of(rtx)] == [
        ("warning", "remapped memory rows pending (reset the GPU)")
    ]
