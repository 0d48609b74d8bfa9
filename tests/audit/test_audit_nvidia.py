"""The nvidia collector: nvidia-smi -q -x XML of several driver branches, the capture bundles (not XML),
/proc/driver/nvidia/version of both module flavors, the collector with a faked nvidia-smi and dmesg, the
NVIDIA GPUs no driver took (and why), the GPU <-> PCIe linker and the GPU findings."""

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
                "temperature_c": 66,
            },
            7: {
                **V100S,
                "serial": "1562920006372",
                "uuid": "GPU-1d955959-c95b-4f40-2cac-100d3006ffe2",
                "bus_id": "0000:00:14.0",
                "temperature_c": 57,
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
                "temperature_c": 40,
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
                "temperature_c": 66,
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
                "temperature_c": 36,
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
                "temperature_c": 45,
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
                "temperature_c": 40,
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
                "temperature_c": 38,
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
                "temperature_c": 27,
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


# /proc/driver/nvidia/version as NVIDIA's README (kernel_open.html) and bug reports quote it: the
# proprietary module (a 515.76 troubleshooting note), the open one (nix-community/nixGL#186, #139).
PROPRIETARY_VERSION = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  515.76  Mon Sep 12 19:21:56 UTC "
                       "2022\nGCC version:  gcc version 7.5.0 (Ubuntu 7.5.0-3ubuntu1~18.04)\n")
OPEN_VERSION = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  565.57.01  Release Build  "
                "(dvs-builder@U16-A24-9-2)  Thu Oct 10 12:15:00 UTC 2024\n"
                "GCC version:  gcc version 13.3.0 (Ubuntu 13.3.0-6ubuntu2~24.04)\n")
JETSON_VERSION = ("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  35.3.1  Release Build  "
                  "(buildbrain@mobile-u64-6289-d7000)  Sun Mar 19 08:09:33 PDT 2023\n"
                  "GCC version:  gcc version 9.3.0 (Buildroot 2020.08) \n")


@pytest.mark.parametrize("text, module", [
    (PROPRIETARY_VERSION, {"version": "515.76", "flavor": "proprietary"}),
    (OPEN_VERSION, {"version": "565.57.01", "flavor": "open"}),
    (JETSON_VERSION, {"version": "35.3.1", "flavor": "open"}),
    (OPEN_VERSION.replace("\n", "\r\n"), {"version": "565.57.01", "flavor": "open"}),
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  ", None),
    ("", None), (None, None), ("\x00\xff garbage", None),
])
def test_kernel_module_version_and_flavor(text, module):
    assert audit.parse_nvidia_version(text) == module


def load_driver(tools, version_text=PROPRIETARY_VERSION):
    """The NVIDIA driver loaded (/proc/driver/nvidia/version) and an nvidia-smi on PATH."""
    (tools.procfs / "driver/nvidia").mkdir(parents=True)
    (tools.procfs / "driver/nvidia/version").write_text(version_text)
    tools("nvidia-smi")


def nvidia_of(tools, timeout=20.0):
    document = audit.build_document(tools.runner(timeout), [("nvidia", audit.collect_nvidia)])
    return document, document["nvidia"]


def test_no_driver_means_skipped_and_nothing_run(fp, tools):
    tools("nvidia-smi", "dmesg")
    document, nvidia = nvidia_of(tools)
    assert nvidia is None
    assert document["collectors"]["nvidia"]["status"] == "skipped"
    assert document["errors"] == []
    assert list(fp.calls) == []


def test_nvidia_smi_missing_while_the_module_is_loaded_is_an_error(tools, monkeypatch, tmp_path):
    load_driver(tools, OPEN_VERSION)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    document, nvidia = nvidia_of(tools)
    assert nvidia == {"kernel_module": {"version": "565.57.01", "flavor": "open"}, "gpus": [],
                      "without_driver": [], "not_usable": []}
    assert [(e["command"], e["message"]) for e in document["errors"]] == [(
        "nvidia-smi -q -x", "nvidia-smi is not installed, but the NVIDIA kernel module 565.57.01 is loaded; "
        "install nvidia-smi of the same driver version")]
    assert document["collectors"]["nvidia"]["status"] == "partial"


def test_collector_reads_the_xml(fp, tools):
    load_driver(tools)
    fp.register(NVSMI, stdout=xml("datakit-8x-tesla-v100s-pcie-32gb-passthrough.xml"))
    register_pcie_only_nvlink(fp, 8)
    document, nvidia = nvidia_of(tools)
    assert nvidia["kernel_module"] == {"version": "515.76", "flavor": "proprietary"}
    assert [gpu["bus_id"] for gpu in nvidia["gpus"]] == [
        f"0000:00:{slot}.0" for slot in ("0d", "0e", "0f", "10", "11", "12", "13", "14")
    ]
    assert nvidia["without_driver"] == []
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
def test_collector_failures_are_errors_and_keep_the_kernel_module(fp, tools, stdout, returncode, message):
    load_driver(tools, OPEN_VERSION)
    fp.register(NVSMI, stdout=stdout, returncode=returncode)
    document, nvidia = nvidia_of(tools)
    assert [(e["command"], e["message"]) for e in document["errors"]] == [("nvidia-smi -q -x", message)]
    assert nvidia["kernel_module"] == {"version": "565.57.01", "flavor": "open"} and nvidia["gpus"] == []
    assert document["collectors"]["nvidia"]["status"] == "partial"


def test_a_version_file_naming_no_module_is_an_error(fp, tools):
    load_driver(tools, "something else entirely\n")
    fp.register(NVSMI, stdout=xml("datakit-tesla-v100-pcie-32gb.xml"))
    register_pcie_only_nvlink(fp, 1)
    document, nvidia = nvidia_of(tools)
    assert nvidia["kernel_module"] is None and len(nvidia["gpus"]) == 1
    assert [(e["command"], e["message"]) for e in document["errors"]] == [
        ("/proc/driver/nvidia/version", "names no NVIDIA kernel module: 'something else entirely'")]


def test_hung_nvidia_smi_is_killed(tools):
    load_driver(tools)
    sleep = shutil.which("sleep", path="/usr/bin:/bin")
    tools("nvidia-smi", script=f"#!/bin/sh\n{sleep} 60\n")
    document, _ = nvidia_of(tools, timeout=1.0)
    assert document["errors"][0]["command"] == "nvidia-smi -q -x"
    assert "timed out" in document["errors"][0]["message"]


# -- NVIDIA GPUs no driver took ---------------------------------------------------------------------------

# dmesg as NVIDIA's nvidia.ko writes it: a GPU that needs the open modules (the line the issue quotes, in the
# layout of the NVRM reports in NVIDIA/open-gpu-kernel-modules#587), the legacy notice (NixOS/nixos-hardware
# #1880, which names no address) and an adapter that failed to initialise (open-gpu-kernel-modules#230).
DMESG = """\
[    3.412345] nvidia: loading out-of-tree module taints kernel.
[    3.501234] NVRM: The NVIDIA GPU 0000:c1:00.0 (PCI ID: 10de:2901)
               NVRM: installed in this system requires use of the NVIDIA open kernel modules.
[    3.502000] NVRM: The NVIDIA Tesla V100-PCIE-16GB GPU installed in this system is
               NVRM:  supported through the NVIDIA 580.xx Legacy drivers. Please
               NVRM:  visit http://www.nvidia.com/object/unix.html for more
               NVRM:  information.  The 590.48.01 NVIDIA driver will ignore
               NVRM:  this GPU.  Continuing probe...
[    3.824916] NVRM: GPU 0000:43:00.0: RmInitAdapter failed! (0x63:0x0:1905)
[    3.827920] NVRM: GPU 0000:43:00.0: rm_init_adapter failed, device minor number 0
"""


def nvidia_pci(tools, functions):
    """PCI functions {address: (device id, class, bound to nvidia)} under the fake sysfs."""
    drivers = tools.sysfs / "bus/pci/drivers/nvidia"
    drivers.mkdir(parents=True, exist_ok=True)
    for address, (device, klass, bound) in functions.items():
        base = tools.sysfs / "bus/pci/devices" / address
        base.mkdir(parents=True)
        (base / "vendor").write_text("0x10de\n")
        (base / "device").write_text(f"{device}\n")
        (base / "class").write_text(f"{klass}\n")
        if bound:
            (base / "driver").symlink_to(drivers)


MACHINE = {
    "0000:21:01.0": ("0x1db6", "0x030200", True),    # the V100 32GB the nvidia-smi fixture lists
    "0000:41:00.1": ("0x22e8", "0x040300", False),   # its audio function: not a GPU
    "0000:42:00.0": ("0x1db4", "0x030200", False),   # V100: pre-Turing
    "0000:43:00.0": ("0x20b0", "0x030200", False),   # A100 whose adapter failed to initialise
    "0000:44:00.0": ("0x2331", "0x030000", False),   # an H100 PCIe (VGA class) the log says nothing about
    "0000:c1:00.0": ("0x2901", "0x030200", False),   # B200: needs the open modules
}


def test_dmesg_runs_once_for_nvidia_and_kernel_log(fp, tools):
    load_driver(tools, PROPRIETARY_VERSION.replace("515.76", "590.48.01"))
    tools("dmesg")
    nvidia_pci(tools, MACHINE)
    fp.register(NVSMI, stdout=xml("datakit-tesla-v100-pcie-32gb.xml"))
    register_pcie_only_nvlink(fp, 1)
    fp.register(["dmesg"], stdout=DMESG)  # once: a second run would not be registered
    document = audit.build_document(tools.runner(20.0), [("nvidia", audit.collect_nvidia),
                                                         ("kernel_log", audit.collect_kernel_log)])
    assert fp.call_count(["dmesg"]) == 1
    assert document["errors"] == []
    assert document["kernel_log"]["lines"] == len(DMESG.splitlines())
    assert document["nvidia"]["without_driver"][-1]["reason"] == (
        "it needs the NVIDIA open kernel modules (the kernel log says so)")


def test_gpus_without_a_driver_are_named_with_the_reason(fp, tools):
    load_driver(tools, PROPRIETARY_VERSION.replace("515.76", "590.48.01"))
    tools("dmesg")
    nvidia_pci(tools, MACHINE)
    fp.register(NVSMI, stdout=xml("datakit-tesla-v100-pcie-32gb.xml"))
    register_pcie_only_nvlink(fp, 1)
    fp.register(["dmesg"], stdout=DMESG)
    document, nvidia = nvidia_of(tools)
    assert nvidia["without_driver"] == [
        {"address": "0000:42:00.0", "device_id": "0x1db4",
         "reason": "a pre-Turing GPU (device id 0x1db4): not supported by the 590 driver branch (Turing "
                   "is the oldest it drives; older GPUs need a legacy branch: 580 for Maxwell, Pascal and "
                   "Volta, 470 for Kepler)"},
        {"address": "0000:43:00.0", "device_id": "0x20b0",
         "reason": "the driver failed: GPU 0000:43:00.0: rm_init_adapter failed, device minor number 0"},
        {"address": "0000:44:00.0", "device_id": "0x2331",
         "reason": "the proprietary NVIDIA kernel module did not take it: see the kernel log (dmesg)"},
        {"address": "0000:c1:00.0", "device_id": "0x2901",
         "reason": "it needs the NVIDIA open kernel modules (the kernel log says so)"},
    ]
    assert document["collectors"]["nvidia"]["status"] == "ok"
    assert document["findings"][-1] == {
        "severity": "warning", "component": "gpu 0000:c1:00.0 (0x2901)",
        "message": "no driver: it needs the NVIDIA open kernel modules (the kernel log says so)"}
    assert [(f["severity"], f["component"]) for f in document["findings"]] == [
        ("warning", f"gpu {address} ({MACHINE[address][0]})")
        for address in ("0000:42:00.0", "0000:43:00.0", "0000:44:00.0", "0000:c1:00.0")]


def test_gpus_without_any_nvidia_module_loaded(fp, tools):
    tools("nvidia-smi", "dmesg")
    nvidia_pci(tools, {"0000:41:00.0": ("0x2330", "0x030200", False),
                       "0000:42:00.0": ("0x1db4", "0x030200", False)})
    fp.register(["dmesg"], stdout="[    1.0] NVRM: No NVIDIA GPU found.\n")
    document, nvidia = nvidia_of(tools)
    assert fp.call_count(NVSMI) == 0, "nvidia-smi cannot work without the module"
    assert nvidia["kernel_module"] is None and nvidia["gpus"] == []
    assert [entry["reason"] for entry in nvidia["without_driver"]] == [
        "the NVIDIA kernel module is not loaded (see bee-nvidia's line on the console, and dmesg)",
        "a pre-Turing GPU (device id 0x1db4): not supported by this driver branch (Turing is the oldest it "
        "drives; older GPUs need a legacy branch: 580 for Maxwell, Pascal and Volta, 470 for Kepler)",
    ]
    assert [(e["command"], e["message"]) for e in document["errors"]] == [
        (None, "no NVIDIA kernel module is loaded, but 2 NVIDIA GPU(s) have no driver (see bee-nvidia's line "
               "on the console)")]
    assert len(document["findings"]) == 2 and document["collectors"]["nvidia"]["status"] == "partial"


def test_an_unreadable_kernel_log_still_gives_a_reason(fp, tools):
    load_driver(tools)
    tools("dmesg")
    nvidia_pci(tools, {"0000:c1:00.0": ("0x2901", "0x030200", False)})
    fp.register(NVSMI, stdout=xml("datakit-tesla-v100-pcie-32gb.xml"))
    register_pcie_only_nvlink(fp, 1)
    fp.register(["dmesg"], stdout="", stderr="dmesg: read kernel buffer failed: Operation not permitted\n",
                returncode=1)
    _, nvidia = nvidia_of(tools)
    assert nvidia["without_driver"][0]["reason"] == (
        "the proprietary NVIDIA kernel module did not take it: see the kernel log (dmesg)")


# The GPU list the ISO ships (scripts/build_nvidia_module.py's gpu_support_text of the installer's
# supported-gpus.json): a Kepler Tesla K80 (0x102d) is 470.xx legacy, a V100 580.xx; CRLF and garbage too.
GPU_LIST = ("# NVIDIA 590.48.01: PCI device ids from supported-gpus/supported-gpus.json; open: ...\r\n"
            "0x2901 open\r\n0x102D legacy 470.xx\r\n0x1db4 legacy 580.xx\r\nnot a line\r\n0x12 legacy\r\n")


def test_gpu_list_parsing():
    assert audit.parse_nvidia_gpu_list(GPU_LIST) == {
        "0x2901": "open", "0x102d": "legacy 470.xx", "0x1db4": "legacy 580.xx"}
    assert audit.parse_nvidia_gpu_list(None) == {} and audit.parse_nvidia_gpu_list("\x00\xff") == {}


def test_the_isos_gpu_list_names_the_legacy_branch(fp, tools, tmp_path, monkeypatch, capsys):
    load_driver(tools, PROPRIETARY_VERSION.replace("515.76", "590.48.01"))
    tools("dmesg")
    nvidia_pci(tools, {"0000:05:00.0": ("0x102d", "0x030200", False),    # Tesla K80: Kepler, 470 legacy
                       "0000:06:00.0": ("0x1db4", "0x030200", False),    # V100: 580 legacy
                       "0000:07:00.0": ("0x1b38", "0x030200", False)})   # P40: not in this list
    fp.register(NVSMI, stdout="No devices were found\n", returncode=6)
    fp.register(["dmesg"], stdout="")
    gpu_list = tmp_path / "gpu-support.txt"
    gpu_list.write_text(GPU_LIST)
    runner = tools.runner(20.0)
    runner.nvidia_gpu_list = audit.read_nvidia_gpu_list(gpu_list)
    nvidia = audit.build_document(runner, [("nvidia", audit.collect_nvidia)])["nvidia"]
    assert [entry["reason"] for entry in nvidia["without_driver"]] == [
        "not supported by the 590 driver branch: NVIDIA's GPU list names the 470.xx legacy branch for device "
        "id 0x102d",
        "not supported by the 590 driver branch: NVIDIA's GPU list names the 580.xx legacy branch for device "
        "id 0x1db4",
        "a pre-Turing GPU (device id 0x1b38): not supported by the 590 driver branch (Turing is the oldest "
        "it drives; older GPUs need a legacy branch: 580 for Maxwell, Pascal and Volta, 470 for Kepler)",
    ]


def test_a_missing_gpu_list_is_no_list(tmp_path):
    assert audit.read_nvidia_gpu_list(tmp_path / "absent.txt") == {}
    assert audit.read_nvidia_gpu_list(None) == {}


# A B200 the proprietary nvidia.ko bound at probe and refused when nvidia-smi first opened it (NVIDIA's two
# NVRM lines, as above), beside the V100 of the nvidia-smi fixture (bus id 00000000:21:01.0).
BOUND_BUT_REFUSED = {"0000:21:01.0": ("0x1db6", "0x030200", True),
                     "0000:c1:00.0": ("0x2901", "0x030200", True)}
REFUSED_LOG = """\
[    9.101000] NVRM: The NVIDIA GPU 0000:c1:00.0 (PCI ID: 10de:2901)
               NVRM: installed in this system requires use of the NVIDIA open kernel modules.
[    9.101100] NVRM: GPU 0000:c1:00.0: RmInitAdapter failed! (0x22:0x56:884)
"""


def test_a_bound_gpu_missing_from_nvidia_smi_is_named_not_usable(fp, tools):
    load_driver(tools, PROPRIETARY_VERSION.replace("515.76", "590.48.01"))
    tools("dmesg")
    nvidia_pci(tools, BOUND_BUT_REFUSED)
    fp.register(NVSMI, stdout=xml("datakit-tesla-v100-pcie-32gb.xml"))
    register_pcie_only_nvlink(fp, 1)
    fp.register(["dmesg"], stdout=REFUSED_LOG)
    document, nvidia = nvidia_of(tools)
    assert [gpu["bus_id"] for gpu in nvidia["gpus"]] == ["0000:21:01.0"] and nvidia["without_driver"] == []
    assert nvidia["not_usable"] == [{
        "address": "0000:c1:00.0", "device_id": "0x2901",
        "reason": "it needs the NVIDIA open kernel modules (the kernel log says so)"}]
    assert document["findings"] == [{
        "severity": "warning", "component": "gpu 0000:c1:00.0 (0x2901)",
        "message": "not usable: it needs the NVIDIA open kernel modules (the kernel log says so)"}]
    assert audit.gpu_count(document) == 2


def test_no_devices_found_names_every_bound_gpu_not_usable(fp, tools):
    load_driver(tools)
    tools("dmesg")
    nvidia_pci(tools, {"0000:c1:00.0": ("0x2901", "0x030200", True),
                       "0000:c2:00.0": ("0x2901", "0x030200", True)})
    fp.register(NVSMI, stdout="No devices were found\n", returncode=6)
    fp.register(["dmesg"], stdout="[    2.0] NVRM: GPU 0000:c2:00.0: RmInitAdapter failed! (0x22:0x56:884)\n")
    document, nvidia = nvidia_of(tools)
    assert nvidia["not_usable"] == [
        {"address": "0000:c1:00.0", "device_id": "0x2901",
         "reason": "bound to the proprietary NVIDIA kernel module, but nvidia-smi does not list it: see the "
                   "kernel log (dmesg)"},
        {"address": "0000:c2:00.0", "device_id": "0x2901",
         "reason": "the driver failed: GPU 0000:c2:00.0: RmInitAdapter failed! (0x22:0x56:884)"},
    ]
    assert [(e["command"], e["message"]) for e in document["errors"]] == [
        ("nvidia-smi -q -x", "exit status 6: No devices were found")]


def test_a_failed_nvidia_smi_claims_no_gpu_unusable(fp, tools):
    load_driver(tools)
    tools("dmesg")
    nvidia_pci(tools, BOUND_BUT_REFUSED)
    failed = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
    fp.register(NVSMI, stdout=failed, returncode=9)
    _, nvidia = nvidia_of(tools)
    assert nvidia["not_usable"] == [] and fp.call_count(["dmesg"]) == 0


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
    gpus = document["nvidia"]["gpus"]
    assert gpus[0]["pcie_address"] == "0000:00:0d.0"  # lspci's 4-digit domain, lower case
    assert gpus[1]["pcie_address"] == "0000:00:0e.0"
    assert gpus[2]["pcie_address"] is None  # no pcie entry for 00:0f.0
    entries = {entry["address"]: entry for entry in document["pcie"]}
    assert entries["0000:00:0d.0"]["gpu_uuid"] == "GPU-76098dc1-d3bc-9a1b-7ea6-f7b48837829e"
    assert entries["0000:00:0e.0"]["gpu_uuid"] == "GPU-bbf7a241-bf9a-eb90-b2fb-d213294faf48"
    assert "gpu_uuid" not in entries["0000:00:01.0"]


def findings_of(text):
    nvidia = {"kernel_module": None, "gpus": audit.parse_nvidia_smi_xml(text), "without_driver": []}
    return audit.nvidia_findings({"nvidia": nvidia})


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
