"""The pcie collector: lspci -vmm parsing (real files, real `lspci -F` replays), sysfs link/AER reading
from fake sysfs trees, and the degraded-link / AER findings."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from audit import audit
from tests.audit.fakes import lab_output
from tests.paths import LAB_FIXTURES, REAL_FIXTURES

LSPCI = ["lspci", "-vmm", "-D"]
LSPCI_DIR = REAL_FIXTURES / "lspci"


def pick(devices, address):
    return next(d for d in devices if d["address"] == address)


# -- lspci -vmm / -vmmn / -vmmnn files -------------------------------------------------------------------

HOST_BRIDGE_NAMES = {
    "class": "Host bridge",
    "vendor": "Intel Corporation",
    "device": "440BX/ZX/DX - 82443BX/ZX/DX Host bridge",
    "subsystem_vendor": "VMware",
    "subsystem_device": "Virtual Machine Chipset",
    "revision": "01",
}
HOST_BRIDGE_IDS = {
    "class_id": "0600",
    "vendor_id": "8086",
    "device_id": "7190",
    "subsystem_vendor_id": "15ad",
    "subsystem_device_id": "1976",
    "revision": "01",
}
SATA_NAMES = {
    "class": "SATA controller",
    "vendor": "VMware",
    "device": "SATA AHCI controller",
    "physical_slot": "37",
    "prog_if": "01",
}
SATA_IDS = {"class_id": "0106", "vendor_id": "15ad", "device_id": "07e0", "physical_slot": "37"}
VMM_EXPECTED = {
    "jc-vmware-vm-ubuntu2010-lspci-vmm.txt": (
        46,
        {
            "0000:00:00.0": {**HOST_BRIDGE_NAMES, "vendor_id": None, "class_id": None},
            "0000:00:0f.0": {
                "class": "VGA compatible controller",
                "vendor": "VMware",
                "device": "SVGA II Adapter",
            },
            "0000:02:05.0": SATA_NAMES,
        },
    ),
    "jc-vmware-vm-ubuntu2010-lspci-vmmn.txt": (
        46,
        {
            "0000:00:00.0": {**HOST_BRIDGE_IDS, "vendor": None, "class": None, "device": None},
            "0000:00:0f.0": {"class_id": "0300", "vendor_id": "15ad", "device_id": "0405"},
            "0000:02:05.0": SATA_IDS,
        },
    ),
    # -nn: both; jc added a last record written "Slot:   ff:02:05.0" with spaces instead of tabs
    "jc-vmware-vm-ubuntu2010-lspci-vmmnn.txt": (
        47,
        {
            "0000:00:00.0": {**HOST_BRIDGE_NAMES, **HOST_BRIDGE_IDS},
            "0000:00:0f.0": {
                "class": "VGA compatible controller",
                "class_id": "0300",
                "vendor_id": "15ad",
                "device": "SVGA II Adapter",
                "device_id": "0405",
            },
            "00ff:02:05.0": {**SATA_NAMES, **SATA_IDS},
        },
    ),
}


@pytest.mark.parametrize("name", sorted(VMM_EXPECTED))
def test_lspci_vmm_real_file(name):
    devices = audit.parse_lspci_vmm((LSPCI_DIR / name).read_text())
    count, expected = VMM_EXPECTED[name]
    assert len(devices) == count
    for address, fields in expected.items():
        device = pick(devices, address)
        assert {key: device[key] for key in fields} == fields


# The pciutils files are `lspci -vvxxx` dumps: the real lspci replays them (-F) in the -vmm format the
# audit reads. Expected: the addresses of the file's header lines, ids from each device's config-space bytes.
REPLAY_EXPECTED = {
    "pciutils-cavium-thunderx-arm64-domain0002-vvxxx.txt": (
        ["0002:01:00.0"],
        {"0002:01:00.0": ("Ethernet controller", "177d", "a01e", "08")},
    ),
    "pciutils-haswell-e-root-ports-aer-vvxxx.txt": (
        ["0000:00:02.0", "0000:03:00.0"],
        {
            "0000:00:02.0": ("PCI bridge", "8086", "2f04", "02"),
            "0000:03:00.0": ("Ethernet controller", "15b3", "1007", None),
        },
    ),
    "pciutils-ibm-power-pcix-multidomain-v.txt": (
        None,
        {
            "0000:00:01.0": ("Co-processor", "1014", "00e0", "01"),
            "0001:62:00.0": ("VGA compatible controller", "102b", "0525", "85"),
            "0004:01:01.0": ("Ethernet controller", "8086", "1229", "0d"),
        },
    ),
    "pciutils-ich7-desktop-16dev-vvxxx.txt": (
        [
            "0000:00:1b.0",
            "0000:00:1c.0",
            "0000:00:1c.1",
            "0000:00:1c.2",
            "0000:00:1c.3",
            "0000:00:1d.0",
            "0000:00:1d.1",
            "0000:00:1d.2",
            "0000:00:1d.3",
            "0000:00:1d.7",
            "0000:00:1e.0",
            "0000:00:1f.0",
            "0000:00:1f.2",
            "0000:00:1f.3",
            "0000:01:00.0",
            "0000:02:00.0",
        ],
        {
            "0000:00:1b.0": ("Audio device", "8086", "27d8", "02"),
            "0000:02:00.0": ("Network controller", "168c", "002a", "01"),
        },
    ),
    "pciutils-samsung-nvme-pcie5-32gt-vvxxx.txt": (
        ["0000:2e:00.0"],
        {"0000:2e:00.0": ("Non-Volatile memory controller", "144d", "a826", None)},
    ),
    "pciutils-sunrisepoint-laptop-4dev-lnkcap2-vvxxx.txt": (
        ["0000:00:1c.0", "0000:02:00.0", "0000:08:00.0", "0000:09:00.0"],
        {
            "0000:00:1c.0": ("PCI bridge", "8086", "9d10", "f1"),
            "0000:02:00.0": ("3D controller", "10de", "1d10", "a1"),
        },
    ),
}
# `lspci -v -nn` taken as non-root (no hex dump: lspci cannot replay them): not a format the audit runs;
# fed to the -vmm parser they must give no invented devices.
NOT_VMM = [
    "glpi-amd-matisse-desktop-nvidia-lspci-v-nn.txt",
    "glpi-asus-laptop-tigerlake-nvidia-lspci-v-nn-domain.txt",
]


REAL_LSPCI = shutil.which("lspci", path="/usr/bin:/bin:/usr/sbin:/sbin") or "lspci-not-installed"


def replay(name: str, *flags: str) -> str:
    """The real lspci's output for a dump file (`lspci -F FILE ...`)."""
    return subprocess.run(
        [REAL_LSPCI, "-F", str(LSPCI_DIR / name), *flags], check=True, capture_output=True, text=True
    ).stdout


@pytest.mark.parametrize("name", sorted(REPLAY_EXPECTED))
def test_lspci_replay_of_real_dump(name):
    addresses, expected = REPLAY_EXPECTED[name]
    named = audit.parse_lspci_vmm(replay(name, "-vmm", "-D"))
    numbered = audit.parse_lspci_vmm(replay(name, "-vmmnn", "-D"))
    if addresses is not None:
        assert [d["address"] for d in named] == addresses
    else:
        assert len(named) == 31 and {d["address"][:4] for d in named} == {
            "0000",
            "0001",
            "0002",
            "0003",
            "0004",
        }
    assert [d["address"] for d in numbered] == [d["address"] for d in named]
    for address, (class_name, vendor_id, device_id, revision) in expected.items():
        assert pick(named, address)["class"] == class_name
        device = pick(numbered, address)
        assert (device["class"], device["vendor_id"], device["device_id"], device["revision"]) == (
            class_name,
            vendor_id,
            device_id,
            revision,
        )


@pytest.mark.parametrize("name", NOT_VMM)
def test_lspci_v_nn_text_is_not_taken_for_vmm(name):
    assert audit.parse_lspci_vmm((LSPCI_DIR / name).read_text()) == []


@pytest.mark.parametrize("text", ["", "\x00\xff\x00", "Slot:\tnot-an-address\nClass:\tX\n", "garbage\n\n\n"])
def test_lspci_garbage_gives_no_devices(text):
    assert audit.parse_lspci_vmm(text) == []


def test_lspci_lab_file():
    devices = audit.parse_lspci_vmm(lab_output("lspci-vmm.txt")[0])
    assert len(devices) == 11
    nvme = pick(devices, "0000:01:00.0")
    assert (nvme["class"], nvme["vendor"], nvme["device"], nvme["physical_slot"], nvme["revision"]) == (
        "Non-Volatile memory controller",
        "Red Hat, Inc.",
        "QEMU NVM Express Controller",
        "0",
        "02",
    )
    assert pick(devices, "0000:02:00.0")["physical_slot"] == "0-2"


# -- small parsers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, speed",
    [
        ("8.0 GT/s PCIe", 8.0),
        ("2.5 GT/s PCIe", 2.5),
        ("16.0 GT/s PCIe", 16.0),
        ("32.0 GT/s PCIe", 32.0),
        ("5 GT/s", 5.0),
        ("8GT/s", 8.0),
        ("Unknown", None),
        ("", None),
        (None, None),
    ],
)
def test_link_speed(text, speed):
    assert audit.link_speed(text) == speed


@pytest.mark.parametrize(
    "text, width", [("4", 4), ("16", 16), ("x8", 8), ("0", None), ("", None), (None, None)]
)
def test_link_width(text, width):
    assert audit.link_width(text) == width


@pytest.mark.parametrize(
    "text, address",
    [
        ("00000000:17:00.0", "0000:17:00.0"),
        ("00000000:00:0D.0", "0000:00:0d.0"),
        ("17:00.0", "0000:17:00.0"),
        ("0002:01:00.0", "0002:01:00.0"),
        ("virtio2", None),
        ("pci0000:00", None),
        (None, None),
    ],
)
def test_normalize_pci_address(text, address):
    assert audit.normalize_pci_address(text) == address


# -- fake sysfs ------------------------------------------------------------------------------------------


def add_pci_device(
    sysfs,
    address,
    parent=None,
    class_code="0x020000",
    ids=("0x8086", "0x1234"),
    driver=None,
    link=None,
    files=None,
):
    """A PCI function under sysfs/devices/pci<domain>:<bus>/[parent/]address, linked from bus/pci/devices.

    link: (current speed, current width, max speed, max width) as sysfs prints them.
    """
    domain_root = sysfs / "devices" / f"pci{address[:4]}:00"
    directory = (
        (sysfs / "devices" / parent_path(sysfs, parent) / address) if parent else domain_root / address
    )
    directory.mkdir(parents=True)
    (directory / "vendor").write_text(ids[0] + "\n")
    (directory / "device").write_text(ids[1] + "\n")
    (directory / "class").write_text(class_code + "\n")
    (directory / "numa_node").write_text("-1\n")
    if link:
        for name, value in zip(
            ("current_link_speed", "current_link_width", "max_link_speed", "max_link_width"),
            link,
            strict=True,
        ):
            (directory / name).write_text(f"{value}\n")
    for name, value in (files or {}).items():
        (directory / name).write_text(value)
    if driver:
        driver_dir = sysfs / "bus/pci/drivers" / driver
        driver_dir.mkdir(parents=True, exist_ok=True)
        (directory / "driver").symlink_to(driver_dir)
    (sysfs / "bus/pci/devices").mkdir(parents=True, exist_ok=True)
    (sysfs / "bus/pci/devices" / address).symlink_to(directory)


def parent_path(sysfs, parent):
    return (sysfs / "bus/pci/devices" / parent).resolve().relative_to((sysfs / "devices").resolve())


def pci_link_sysfs_rows():
    """Rows of the lab's pci-link-sysfs.txt: address, class, (cur speed, cur width, max speed, max width)."""
    rows = []
    for line in (LAB_FIXTURES / "pci-link-sysfs.txt").read_text().splitlines():
        match = re.match(r"(\S+) class=(\S+) cur=(.+?)/x(\d+) max=(.+?)/x(\d+)$", line)
        rows.append((match[1], match[2], (match[3], match[4], match[5], match[6])))
    return rows


def test_lab_lspci_vvv_links_read_as_sysfs_says():
    """The lab's `lspci -vvv` LnkCap/LnkSta ("Speed 8GT/s, Width x4"), read with the audit's link helpers,
    give the maximum and current links that sysfs holds; as -vmm text it gives no device."""
    text = lab_output("lspci-vvv.txt")[0]
    assert audit.parse_lspci_vmm(text) == []
    links: dict[str, dict[str, tuple]] = {}
    address = None
    for line in text.splitlines():
        if re.match(r"[0-9a-f]{4}:[0-9a-f]{2}:", line):
            address = line.split()[0]
        match = re.match(r"\s+(LnkCap|LnkSta):\s.*?Speed ([\d.]+GT/s).*?, Width (x\d+)", line)
        if match:
            links.setdefault(address, {})[match[1]] = (audit.link_speed(match[2]), audit.link_width(match[3]))
    assert links == {
        address: {"LnkSta": (audit.link_speed(cur_speed), int(cur_width)),
                  "LnkCap": (audit.link_speed(max_speed), int(max_width))}
        for address, _, (cur_speed, cur_width, max_speed, max_width) in pci_link_sysfs_rows()
    }
    assert links["0000:00:03.0"] == {"LnkCap": (8.0, 4), "LnkSta": (2.5, 1)}


def run_pcie(sysfs):
    runner = audit.Runner(sysfs=sysfs, procfs=sysfs / "proc", devfs=sysfs / "dev", timeout=20)
    return audit.build_document(runner, [("pcie", audit.collect_pcie)])


def build_lab_sysfs(sysfs):
    parents = {"0000:01:00.0": "0000:00:03.0", "0000:02:00.0": "0000:00:04.0"}  # README: NVMe behind 00:03.0
    drivers = {
        "0000:00:03.0": "pcieport",
        "0000:00:04.0": "pcieport",
        "0000:01:00.0": "nvme",
        "0000:02:00.0": "xhci_hcd",
    }
    for address, class_code, link in pci_link_sysfs_rows():
        add_pci_device(
            sysfs, address, parents.get(address), class_code, ("0x1b36", "0x0010"), drivers[address], link
        )


def test_lab_nvme_x1_behind_x4_root_port_is_not_degraded(fp, tools):
    tools("lspci")
    build_lab_sysfs(tools.sysfs)
    fp.register(LSPCI, stdout=lab_output("lspci-vmm.txt")[0])
    document = run_pcie(tools.sysfs)
    assert document["errors"] == []
    assert document["findings"] == []
    nvme = pick(document["pcie"], "0000:01:00.0")
    assert nvme["link"] == {"current_speed_gts": 2.5, "current_width": 1,
                            "max_speed_gts": 2.5, "max_width": 1}
    assert nvme["upstream"] == {"address": "0000:00:03.0", "max_speed_gts": 8.0, "max_width": 4}
    assert (nvme["driver"], nvme["class_id"], nvme["prog_if"], nvme["numa_node"]) == (
        "nvme",
        "0108",
        "02",
        None,
    )
    assert nvme["device"] == "QEMU NVM Express Controller"  # name from lspci, ids from sysfs
    root_port = pick(document["pcie"], "0000:00:03.0")
    assert root_port["upstream"] is None
    assert root_port["link"] == {"current_speed_gts": 2.5, "current_width": 1,
                                 "max_speed_gts": 8.0, "max_width": 4}
    assert len(document["pcie"]) == 11  # lspci's functions; sysfs adds no unknown ones here


def test_degraded_width_and_speed_findings(fp, tools):
    tools("lspci")
    sysfs = tools.sysfs
    add_pci_device(
        sysfs, "0000:00:01.0", class_code="0x060400", link=("16.0 GT/s PCIe", "16", "16.0 GT/s PCIe", "16")
    )
    add_pci_device(
        sysfs,
        "0000:17:00.0",
        "0000:00:01.0",
        class_code="0x030200",
        ids=("0x10de", "0x20b5"),
        link=("2.5 GT/s PCIe", "8", "16.0 GT/s PCIe", "16"),
    )  # GPU: idle speed drop, and x8
    add_pci_device(
        sysfs, "0000:00:02.0", class_code="0x060400", link=("8.0 GT/s PCIe", "4", "8.0 GT/s PCIe", "4")
    )
    add_pci_device(
        sysfs,
        "0000:18:00.0",
        "0000:00:02.0",
        class_code="0x010802",
        link=("8.0 GT/s PCIe", "4", "16.0 GT/s PCIe", "4"),
    )  # Gen4 SSD in a Gen3 slot: fine
    add_pci_device(
        sysfs, "0000:00:03.0", class_code="0x060400", link=("8.0 GT/s PCIe", "4", "16.0 GT/s PCIe", "4")
    )
    add_pci_device(
        sysfs,
        "0000:19:00.0",
        "0000:00:03.0",
        class_code="0x010802",
        link=("8.0 GT/s PCIe", "4", "16.0 GT/s PCIe", "4"),
    )  # SSD slower than both ends
    fp.register(LSPCI, stdout="")
    document = run_pcie(sysfs)
    assert [(f["severity"], f["component"], f["message"]) for f in document["findings"]] == [
        (
            "warning",
            "pcie 0000:17:00.0",
            "PCIe link x8 is narrower than the x16 both the device and its upstream port support",
        ),
        (
            "info",
            "pcie 0000:17:00.0",
            "PCIe link at 2.5 GT/s, below the 16 GT/s both the device and its upstream port support",
        ),
        (
            "warning",
            "pcie 0000:19:00.0",
            "PCIe link at 8 GT/s, below the 16 GT/s both the device and its upstream port support",
        ),
    ]
    # lspci printed nothing: an error, and the functions still come from sysfs
    assert [e["message"] for e in document["errors"]] == ["printed nothing"]
    assert len(document["pcie"]) == 6


def test_aer_counters_and_findings(fp, tools):
    tools("lspci")
    correctable = (
        "RxErr 3\nBadTLP 0\nBadDLLP 1\nRollover 0\nTimeout 0\nNonFatalErr 0\nCorrIntErr 0\n"
        "HeaderOF 0\nTOTAL_ERR_COR 4\n"
    )
    fatal = (
        "Undefined 0\nDLP 1\nSDES 0\nTLP 0\nFCP 0\nCmpltTO 0\nCmpltAbrt 0\nUnxCmplt 0\nRxOF 0\n"
        "MalfTLP 0\nECRC 0\nUnsupReq 0\nACSViol 0\nUncorrIntErr 0\nBlockedTLP 0\nAtomicOpBlocked 0\n"
        "TLPBlockedErr 0\nTOTAL_ERR_FATAL 1\n"
    )
    nonfatal = (
        fatal.replace("DLP 1", "DLP 0")
        .replace("UnsupReq 0", "UnsupReq 2")
        .replace("TOTAL_ERR_FATAL 1", "TOTAL_ERR_NONFATAL 2")
    )
    add_pci_device(
        tools.sysfs,
        "0000:3b:00.0",
        files={"aer_dev_correctable": correctable, "aer_dev_fatal": fatal, "aer_dev_nonfatal": nonfatal},
    )
    add_pci_device(
        tools.sysfs,
        "0000:3c:00.0",
        files={
            "aer_dev_correctable": correctable,
            "aer_dev_fatal": fatal.replace("DLP 1", "DLP 0").replace(
                "TOTAL_ERR_FATAL 1", "TOTAL_ERR_FATAL 0"
            ),
        },
    )
    fp.register(LSPCI, stdout=lab_output("lspci-vmm.txt")[0].replace("0000:00:00.0", "0000:3b:00.0"))
    document = run_pcie(tools.sysfs)
    aer = pick(document["pcie"], "0000:3b:00.0")["aer"]
    assert (aer["correctable"], aer["nonfatal"], aer["fatal"]) == (4, 2, 1)
    assert aer["counters"]["correctable"]["RxErr"] == 3
    assert aer["counters"]["nonfatal"]["UnsupReq"] == 2
    assert pick(document["pcie"], "0000:3c:00.0")["aer"]["nonfatal"] is None  # file absent
    assert [(f["severity"], f["component"], f["message"]) for f in document["findings"]] == [
        (
            "critical",
            "pcie 0000:3b:00.0 (Intel Corporation 82G33/G31/P35/P31 Express DRAM Controller)",
            "1 AER fatal errors",
        ),
        (
            "warning",
            "pcie 0000:3b:00.0 (Intel Corporation 82G33/G31/P35/P31 Express DRAM Controller)",
            "2 AER non-fatal errors",
        ),
    ]


# -- links taken from real LnkCap/LnkSta lines of the pciutils dumps ------------------------------------


def sysfs_speed(text: str) -> str:
    """lspci's "8GT/s" as sysfs prints it ("8.0 GT/s PCIe"); "unknown" as "Unknown"."""
    match = re.match(r"([\d.]+)GT/s", text)
    return f"{float(match[1]):.1f} GT/s PCIe" if match else "Unknown"


def links_of_dump(name: str):
    """address -> (class code, link, secondary bus) from a -vv dump's header, Bus:, LnkCap: and LnkSta:."""
    devices, current = {}, None
    for line in (LSPCI_DIR / name).read_text().splitlines():
        header = re.match(r"^((?:[0-9a-f]{4}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) (.+?):", line)
        if header:
            current = audit.normalize_pci_address(header[1])
            devices[current] = {
                "bridge": header[2] == "PCI bridge",
                "cap": None,
                "sta": None,
                "secondary": None,
            }
        elif current and (m := re.search(r"LnkCap:\s+Port #\d+, Speed (\S+), Width x(\d+)", line)):
            devices[current]["cap"] = (sysfs_speed(m[1]), m[2])
        elif current and (m := re.search(r"LnkSta:\s+Speed (\S+?)(?: \(\w+\))?, Width x(\d+)", line)):
            devices[current]["sta"] = (sysfs_speed(m[1]), m[2])
        elif current and (m := re.search(r"Bus: primary=\w+, secondary=(\w+)", line)):
            devices[current]["secondary"] = m[1]
    return devices


def build_dump_sysfs(sysfs, name):
    devices = links_of_dump(name)
    bridges = {info["secondary"]: address for address, info in devices.items() if info["secondary"]}
    for address, info in devices.items():  # header order: bridges come before what is behind them
        link = (*info["sta"], *info["cap"]) if info["cap"] and info["sta"] else None
        add_pci_device(
            sysfs, address, bridges.get(address[5:7]), "0x060400" if info["bridge"] else "0x020000", link=link
        )
    return devices


DUMP_LINKS = {
    "pciutils-haswell-e-root-ports-aer-vvxxx.txt": {
        "0000:03:00.0": (
            {"current_speed_gts": 8.0, "current_width": 8, "max_speed_gts": 8.0, "max_width": 8},
            {"address": "0000:00:02.0", "max_speed_gts": 8.0, "max_width": 8},
        )
    },
    "pciutils-ich7-desktop-16dev-vvxxx.txt": {
        "0000:01:00.0": (
            {"current_speed_gts": 2.5, "current_width": 1, "max_speed_gts": 2.5, "max_width": 1},
            {"address": "0000:00:1c.0", "max_speed_gts": 2.5, "max_width": 1},
        ),
        "0000:00:1c.2": (
            {"current_speed_gts": 2.5, "current_width": None, "max_speed_gts": 2.5, "max_width": 1},
            None,
        ),
    },
    "pciutils-sunrisepoint-laptop-4dev-lnkcap2-vvxxx.txt": {
        "0000:02:00.0": (
            {"current_speed_gts": 8.0, "current_width": 4, "max_speed_gts": 8.0, "max_width": 4},
            {"address": "0000:00:1c.0", "max_speed_gts": 8.0, "max_width": 4},
        ),
        "0000:09:00.0": (
            {"current_speed_gts": 2.5, "current_width": 4, "max_speed_gts": 2.5, "max_width": 4},
            {"address": "0000:08:00.0", "max_speed_gts": 2.5, "max_width": 4},
        ),
    },
    "pciutils-samsung-nvme-pcie5-32gt-vvxxx.txt": {  # "Speed 16GT/s (downgraded)", no upstream in the dump
        "0000:2e:00.0": (
            {"current_speed_gts": 16.0, "current_width": 2, "max_speed_gts": 32.0, "max_width": 2}, None),
    },
    "pciutils-cavium-thunderx-arm64-domain0002-vvxxx.txt": {  # "Speed unknown, Width x0"
        "0002:01:00.0": (None, None)
    },
}


@pytest.mark.parametrize("name", sorted(DUMP_LINKS))
def test_links_of_real_dumps_through_real_lspci(tools, name):
    """lspci is the real binary replaying the dump; sysfs is built from the dump's own link registers."""
    tools("lspci", script=f'#!/bin/sh\nexec {REAL_LSPCI} -F "{LSPCI_DIR / name}" "$@"\n')
    build_dump_sysfs(tools.sysfs, name)
    document = run_pcie(tools.sysfs)
    assert document["errors"] == []
    assert document["findings"] == []  # every link in these dumps runs as fast and wide as both ends allow
    for address, (link, upstream) in DUMP_LINKS[name].items():
        entry = pick(document["pcie"], address)
        assert (entry["link"], entry["upstream"]) == (link, upstream)
        assert entry["vendor"] is not None  # the name came from the real lspci


def test_samsung_gen5_ssd_at_16gt_behind_a_gen5_port_is_a_warning(tools, fp):
    tools("lspci")
    info = links_of_dump("pciutils-samsung-nvme-pcie5-32gt-vvxxx.txt")["0000:2e:00.0"]
    add_pci_device(
        tools.sysfs,
        "0000:00:01.1",
        class_code="0x060400",
        link=("32.0 GT/s PCIe", "4", "32.0 GT/s PCIe", "4"),
    )
    add_pci_device(tools.sysfs, "0000:2e:00.0", "0000:00:01.1", "0x010802", link=(*info["sta"], *info["cap"]))
    fp.pass_command([REAL_LSPCI, fp.any()])
    fp.register(LSPCI, stdout=replay("pciutils-samsung-nvme-pcie5-32gt-vvxxx.txt", "-vmm", "-D"))
    document = run_pcie(tools.sysfs)
    assert [(f["severity"], f["message"]) for f in document["findings"]] == [
        ("warning", "PCIe link at 16 GT/s, below the 32 GT/s both the device and its upstream port support")
    ]


def test_lspci_missing_and_sysfs_present_lists_functions_silently(tools):
    add_pci_device(
        tools.sysfs, "0000:00:1f.2", class_code="0x010601", ids=("0x8086", "0x2922"), driver="ahci"
    )
    document = run_pcie(tools.sysfs)
    assert document["errors"] == []
    entry = document["pcie"][0]
    assert (entry["address"], entry["vendor_id"], entry["device_id"], entry["class_id"], entry["driver"]) == (
        "0000:00:1f.2",
        "8086",
        "2922",
        "0106",
        "ahci",
    )
    assert entry["vendor"] is None


def test_nothing_at_all_is_skipped(tools):
    document = run_pcie(tools.sysfs)
    assert document["pcie"] is None
    assert document["collectors"]["pcie"]["status"] == "skipped"


def test_lspci_binary_garbage_is_an_error_not_a_crash(fp, tools):
    tools("lspci")
    add_pci_device(tools.sysfs, "0000:00:1f.2")
    fp.register(LSPCI, stdout=b"\xff\xfe\x00\x80garbage")
    document = run_pcie(tools.sysfs)
    assert [e["message"] for e in document["errors"]] == ["printed no PCI device records"]
    assert [d["address"] for d in document["pcie"]] == ["0000:00:1f.2"]
    assert document["collectors"]["pcie"]["status"] == "partial"


def test_capture_then_replay_gives_the_same_functions(fp, tools, tmp_path):
    """--capture must keep sysfs's symlinks (bus/pci/devices/X, driver) so --replay finds the same
    upstream ports and drivers."""
    tools("lspci")
    build_lab_sysfs(tools.sysfs)
    fp.register(LSPCI, stdout=lab_output("lspci-vmm.txt")[0])
    capture = tmp_path / "capture"
    sysfs = tools.sysfs
    live = audit.Runner(sysfs=sysfs, procfs=sysfs / "proc", devfs=sysfs / "dev", capture=capture)
    captured = audit.build_document(live, [("pcie", audit.collect_pcie)])
    replayed = audit.build_document(audit.Runner(replay=capture), [("pcie", audit.collect_pcie)])
    assert pick(captured["pcie"], "0000:01:00.0")["upstream"]["address"] == "0000:00:03.0"
    assert replayed["pcie"] == captured["pcie"]
    assert replayed["errors"] == []


def test_a_switch_uplink_narrower_than_both_ends_is_found_once(fp, tools):
    """Root port x16 -> switch upstream port trained at x8 (a bad riser) -> downstream ports -> GPUs. The
    uplink is reported on the upstream port; the downstream ports' links are judged from the GPUs' side
    only, so a GPU at x4 is one finding, not two."""
    tools("lspci")
    sysfs = tools.sysfs
    gen4x16 = ("16.0 GT/s PCIe", "16", "16.0 GT/s PCIe", "16")
    add_pci_device(sysfs, "0000:00:01.0", class_code="0x060400", link=gen4x16)  # root port
    usp = ("16.0 GT/s PCIe", "8", "16.0 GT/s PCIe", "16")
    add_pci_device(sysfs, "0000:01:00.0", "0000:00:01.0", class_code="0x060400", link=usp)
    add_pci_device(sysfs, "0000:02:00.0", "0000:01:00.0", class_code="0x060400", link=gen4x16)
    dsp_x4 = ("16.0 GT/s PCIe", "4", "16.0 GT/s PCIe", "16")
    add_pci_device(sysfs, "0000:02:01.0", "0000:01:00.0", class_code="0x060400", link=dsp_x4)
    add_pci_device(sysfs, "0000:03:00.0", "0000:02:00.0", class_code="0x030200", link=gen4x16)
    gpu_x4 = ("16.0 GT/s PCIe", "4", "16.0 GT/s PCIe", "16")
    add_pci_device(sysfs, "0000:04:00.0", "0000:02:01.0", class_code="0x030200", link=gpu_x4)
    fp.register(LSPCI, stdout="")
    document = run_pcie(sysfs)
    assert audit.switch_upstream_ports(document["pcie"]) == {"0000:01:00.0"}
    narrow = "PCIe link x{} is narrower than the x16 both the device and its upstream port support"
    assert [(f["component"].split(" (")[0], f["message"]) for f in document["findings"]] == [
        ("pcie 0000:01:00.0", narrow.format(8)),
        ("pcie 0000:04:00.0", narrow.format(4)),
    ]
