"""The storage collector: lsblk, smartctl, nvme-cli parsers on real and lab outputs, and the collector
end to end with faked tools (exit-status bits, a hung disk, garbage, missing tools)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

from audit import audit
from tests.audit.fakes import lab_output
from tests.paths import REAL_FIXTURES

LSBLK = [
    "lsblk",
    "-J",
    "-b",
    "-d",
    "-o",
    "NAME,KNAME,PATH,TYPE,SIZE,MODEL,SERIAL,REV,WWN,TRAN,ROTA,RM,HOTPLUG",
]
FAILING_FLAGS = [
    "disk_failing",
    "prefail_attributes_at_or_below_threshold",
    "error_log_has_errors",
    "self_test_log_has_errors",
]


def real(tool: str, name: str) -> str:
    return (REAL_FIXTURES / tool / name).read_text()


# -- smartctl: every real file ---------------------------------------------------------------------------

SCAN = {"model": None, "serial": None, "smart_passed": None, "exit": 0, "flags": []}
SMARTCTL_EXPECTED = {
    "netdata-nvme-scan.json": SCAN,
    "netdata-sat-scan.json": SCAN,
    "scrutiny-scan-megaraid.json": SCAN,
    "netdata-nvme-seagate-firecuda530-nvme0.json": {
        "model": "Seagate FireCuda 530 ZP4000GM30023",
        "serial": "REDACTED",
        "firmware": "REDACTED",
        "size_bytes": 4000787030016,
        "smart_passed": True,
        "power_on_hours": 3113,
        "temperature_c": 39,
        "critical_warning": 0,
        "percentage_used": 0,
        "media_errors": 0,
        "unsafe_shutdowns": 1,
        "reallocated_sectors": None,
        "exit": 0,
        "flags": [],
    },
    "netdata-sat-hdd-wd181kryz.json": {
        "model": "WDC WD181KRYZ-01AGBB0",
        "wwn": "0x5000cca2b6f3bfe2",
        "size_bytes": 18000207937536,
        "smart_passed": True,
        "power_on_hours": 8244,
        "temperature_c": 49,
        "reallocated_sectors": 0,
        "pending_sectors": 0,
        "critical_warning": None,
        "percentage_used": None,
        "exit": 0,
    },
    "netdata-sat-ssd-wds400t1r0a.json": {
        "model": "WDC  WDS400T1R0A-68A4W0",
        "wwn": "0x5001b448b0708fba",
        "size_bytes": 4000787030016,
        "smart_passed": True,
        "power_on_hours": 8244,
        "temperature_c": 27,
        "reallocated_sectors": 0,
        "pending_sectors": None,
    },
    "netdata-scsi-sda-redacted.json": {
        "model": "REDACTED",
        "size_bytes": 4000787030016,
        "smart_passed": True,
        "power_on_hours": 1641,
        "temperature_c": 34,
        "reallocated_sectors": 0,
        "wwn": "REDACTED",
    },
    "scrutiny-info-nvme-kioxia-kcd61lul3t84-talos.json": {
        "model": "KCD61LUL3T84",
        "serial": "61Q0A05UT7B8",
        "firmware": "8002",
        "size_bytes": 3840755982336,
        "smart_passed": None,
        "power_on_hours": None,
        "smart_available": None,
    },
    "scrutiny-nvme-corsair-force-mp510-unraid.json": {
        "model": "Force MP510",
        "serial": "yes",
        "firmware": "ECFM12.3",
        "size_bytes": 480103981056,
        "smart_passed": True,
        "power_on_hours": 6487,
        "temperature_c": 38,
        "critical_warning": 0,
        "percentage_used": 1,
        "media_errors": 0,
        "unsafe_shutdowns": 4,
        "smart_available": True,
    },
    "scrutiny-sat-megaraid0-wd4000fyyx.json": {
        "model": "WD4000FYYX",
        "serial": None,
        "firmware": "00.0D1K4",
        "size_bytes": 4000787030016,
        "wwn": "0x50014ee26101eee7",
        "smart_passed": True,
        "power_on_hours": 37787,
        "temperature_c": 36,
        "reallocated_sectors": 0,
        "pending_sectors": 0,
        "exit": 4,
        "flags": ["smart_command_failed"],
    },
    "scrutiny-sat-samsung-860evo-xall-flatcar.json": {
        "model": "Samsung SSD 860 EVO 500GB",
        "serial": "S3YZNB0KB00864E",
        "firmware": "RVT02B6Q",
        "size_bytes": 500107862016,
        "wwn": "0x5002538e40a22954",
        "smart_passed": True,
        "power_on_hours": 14551,
        "temperature_c": 36,
        "reallocated_sectors": 0,
        "pending_sectors": None,
    },
    "scrutiny-scsi-sas-seagate-st1200mm0088-smartctl6.7.json": {
        "model": "SEAGATE ST1200MM0088",
        "serial": "Z4028VRY0000C810BZXB",
        "firmware": "N004",
        "size_bytes": 1200243695616,
        "smart_passed": True,
        "power_on_hours": 5675,
        "temperature_c": 31,
        "reallocated_sectors": 0,
    },
    "scrutiny-usbjmicron-hitachi-hds721050-FAILED.json": {
        "model": "Hitachi HDS721050DLE630",
        "serial": "MSK423Y20S3HBC",
        "firmware": "MS1OA650",
        "size_bytes": 500107862016,
        "wwn": "0x5000cca37fca81a8",
        "smart_passed": False,
        "power_on_hours": 65592,
        "temperature_c": 25,
        "reallocated_sectors": 1975,
        "pending_sectors": 8,
        "exit": 216,
        "flags": FAILING_FLAGS,
    },
    "scrutiny-windows-intel-raid1-volume.json": {
        "model": "Intel Raid 1 Volume",
        "serial": "Volume1",
        "firmware": "1.0.",
        "size_bytes": 1000202043392,
        "smart_passed": None,
        "temperature_c": None,
        "exit": 4,
    },
    "scrutiny-windows-open-device-failed-exit2.json": {
        "model": None,
        "serial": None,
        "smart_available": False,
        "smart_passed": None,
        "exit": 2,
        "message": "Smartctl open device: /dev/sda failed: \\\\.\\PhysicalDrive0: Open failed, Error=5",
    },
    "smartctl_exporter-nvme-intel-p4510-8tb.json": {
        "model": "INTEL SSDPE2KX080T8",
        "size_bytes": 8001563222016,
        "smart_passed": True,
        "power_on_hours": 12164,
        "temperature_c": 29,
        "critical_warning": 0,
        "percentage_used": 0,
        "media_errors": 0,
        "unsafe_shutdowns": 8,
    },
    "smartctl_exporter-nvme-samsung-pm1735-6.4tb.json": {
        "model": "SAMSUNG MZPLJ6T4HALA-00007",
        "size_bytes": 6401252745216,
        "smart_passed": True,
        "power_on_hours": 861,
        "temperature_c": 33,
        "percentage_used": 0,
        "unsafe_shutdowns": 10,
    },
    "smartctl_exporter-sat-kingston-a400-m2-exit4.json": {
        "model": "KINGSTON SA400M8120G",
        "size_bytes": 120034123776,
        "wwn": "0x50026b70499602d2",
        "smart_passed": True,
        "power_on_hours": 4994,
        "temperature_c": 38,
        "reallocated_sectors": None,
        "exit": 4,
        "flags": ["smart_command_failed"],
    },
    "smartctl_exporter-sat-toshiba-mg05aca800e-exit64.json": {
        "model": "TOSHIBA MG05ACA800E",
        "size_bytes": 8001563222016,
        "wwn": "0x50000390499602d2",
        "smart_passed": True,
        "power_on_hours": 37603,
        "temperature_c": 24,
        "reallocated_sectors": 0,
        "pending_sectors": 0,
        "exit": 64,
        "flags": ["error_log_has_errors"],
    },
    "smartctl_exporter-scsi-hp-73g-mas3735nc.json": {
        "model": "HP 73.4G MAS3735NC",
        "firmware": "HPC3",
        "size_bytes": 73407865856,
        "smart_passed": True,
        "power_on_hours": None,
        "temperature_c": 28,
        "reallocated_sectors": 0,
        "wwn": "0x1234567890abcdef",
    },
    "smartctl_exporter-scsi-sas-hitachi-sun-600g.json": {
        "model": "HITACHI H109060SESUN600G",
        "firmware": "A690",
        "size_bytes": 600127266816,
        "smart_passed": True,
        "power_on_hours": 982,
        "temperature_c": 27,
        "reallocated_sectors": 0,
        "wwn": "0x1234567890abcdef",
    },
}
HEALTH_ALIASES = {"exit": "smartctl_exit_status", "flags": "smartctl_flags", "message": "smartctl_message"}


def assert_smartctl(parsed: dict, expected: dict) -> None:
    for key, value in expected.items():
        key = HEALTH_ALIASES.get(key, key)
        actual = parsed[key] if key in parsed else parsed["health"][key]
        assert actual == value, key


@pytest.mark.parametrize("name", sorted(SMARTCTL_EXPECTED))
def test_smartctl_real_file(name):
    parsed = audit.parse_smartctl(real("smartctl", name))
    assert parsed is not None
    assert_smartctl(parsed, SMARTCTL_EXPECTED[name])


LAB_SMARTCTL = {
    "smartctl-sda.txt": {
        "model": "ST4000NM0035-1V4107",
        "serial": "ZC1A2B3C",
        "firmware": "2.5+",
        "wwn": "0x5000c500a1b2c3d4",
        "size_bytes": 268435456,
        "smart_passed": True,
        "power_on_hours": 1,
        "temperature_c": 31,
        "reallocated_sectors": 0,
        "exit": 4,
        "flags": ["smart_command_failed"],
        "smart_available": True,
    },
    "smartctl-nvme0.txt": {
        "model": "QEMU NVMe Ctrl",
        "serial": "NVME-SN-0001",
        "firmware": "7.2.22",
        "smart_passed": True,
        "temperature_c": 50,
        "critical_warning": 0,
        "percentage_used": 0,
        "exit": 0,
    },
    "smartctl-sdb.txt": {
        "model": None,
        "serial": None,
        "smart_available": False,
        "smart_passed": None,
        "exit": 1,
        "message": "/dev/sdb: Unknown USB bridge [0x46f4:0x0001 (0x000)]",
    },
    "smartctl-vda.txt": {
        "smart_available": False,
        "exit": 1,
        "message": "/dev/vda: Unable to detect device type",
    },
}


@pytest.mark.parametrize("name", sorted(LAB_SMARTCTL))
def test_smartctl_lab_file(name):
    text, rc = lab_output(name)
    parsed = audit.parse_smartctl(text, rc)
    assert_smartctl(parsed, LAB_SMARTCTL[name])


@pytest.mark.parametrize("text", ["", '{"smartctl": {', "\x00\x01\x02garbage", "[1, 2]", '{"a": 1}'])
def test_smartctl_garbage_is_none(text):
    assert audit.parse_smartctl(text) is None


# -- nvme-cli: every real file and the lab ---------------------------------------------------------------

NVME_LIST_EXPECTED = {
    "hwbench-nvme-cli-1.16-list-v-dell-boss-n1-ps1030.json": {
        "/dev/nvme0n1": {
            "model": "Dell BOSS-N1",
            "serial": "CN03YGWTFCP0051E00H5",
            "firmware": "11131069",
            "controller": "nvme0",
            "pci_address": "0000:01:00.0",
        },
        "/dev/nvme1n1": {
            "model": "Dell NVMe ISE PS1030 MU U.2 6.4TB",
            "serial": "BID8N0071I1908N3W",
            "firmware": "1.2.0",
            "controller": "nvme1",
            "pci_address": "0000:c1:00.0",
        },
        "/dev/nvme2n1": {
            "model": "Dell NVMe ISE PS1030 MU U.2 6.4TB",
            "serial": "BID8N0071I1908N3T",
            "firmware": "1.2.0",
            "controller": "nvme2",
            "pci_address": "0000:c2:00.0",
        },
    },
    "netboxagent-nvme-cli-1.x-list-toshiba-kxg60.json": {
        "/dev/nvme0n1": {
            "model": "KXG60ZNV1T02 NVMe TOSHIBA 1024GB",
            "serial": "19FA109SK07N",
            "firmware": "10604103",
            "controller": None,
            "pci_address": None,
        },
    },
    "netdata-nvme-cli-2.11-list-firecuda530x3.json": {
        "/dev/nvme0n1": {
            "model": "Seagate FireCuda 530 ZP4000GM30023",
            "serial": "XXX02YYY",
            "firmware": "SU6SM005",
            "controller": "nvme0",
            "pci_address": "0000:01:00.0",
        },
        "/dev/nvme1n1": {
            "model": "Seagate FireCuda 530 ZP4000GM30023",
            "serial": "XXX00YYY",
            "firmware": "SU6SM001",
            "controller": "nvme1",
            "pci_address": "0000:81:00.0",
        },
        "/dev/nvme2n1": {
            "model": "Seagate FireCuda 530 ZP4000GM30023",
            "serial": "7VS00KNX",
            "firmware": "SU6SM001",
            "controller": "nvme2",
            "pci_address": "0000:61:00.0",
        },
    },
    "netdata-nvme-cli-2.3-list-firecuda530x2.json": {
        "/dev/nvme0n1": {
            "model": "Seagate FireCuda 530 ZP4000GM30023",
            "serial": "XXX00YYY",
            "firmware": "SU6SM001",
            "controller": None,
            "pci_address": None,
        },
        "/dev/nvme1n1": {
            "model": "Seagate FireCuda 530 ZP4000GM30023",
            "serial": "XXX01YYY",
            "firmware": "SU6SM001",
            "controller": None,
            "pci_address": None,
        },
    },
    "netdata-nvme-list-empty.json": {},
}
NVME_SMART_LOG_EXPECTED = {
    # 2.11 turns critical_warning into an object; temperatures are kelvin (324 K = 51 C, 310 K = 37 C)
    "netdata-nvme-cli-2.11-smart-log-firecuda530.json": {
        "critical_warning": 0,
        "temperature_c": 51,
        "percentage_used": 30,
        "power_on_hours": 24424,
        "media_errors": 0,
        "unsafe_shutdowns": 49,
    },
    "netdata-nvme-cli-2.3-smart-log.json": {
        "critical_warning": 0,
        "temperature_c": 37,
        "percentage_used": 2,
        "power_on_hours": 4974,
        "media_errors": 0,
        "unsafe_shutdowns": 39,
    },
}


@pytest.mark.parametrize("name", sorted(NVME_LIST_EXPECTED))
def test_nvme_list_real_file(name):
    assert audit.parse_nvme_list(real("nvme", name)) == NVME_LIST_EXPECTED[name]


@pytest.mark.parametrize("name", sorted(NVME_SMART_LOG_EXPECTED))
def test_nvme_smart_log_real_file(name):
    assert audit.parse_nvme_smart_log(real("nvme", name)) == NVME_SMART_LOG_EXPECTED[name]


def test_nvme_smart_log_2_11_critical_warning_object_with_bits_set():
    data = json.loads(real("nvme", "netdata-nvme-cli-2.11-smart-log-firecuda530.json"))
    data["critical_warning"]["value"] = 5
    assert audit.parse_nvme_smart_log(json.dumps(data))["critical_warning"] == 5


def test_nvme_lab_files():
    id_ctrl = audit.parse_nvme_id_ctrl(lab_output("nvme-id-ctrl.txt")[0])
    assert id_ctrl["serial"] == "NVME-SN-0001"  # the padded "NVME-SN-0001        " trimmed
    assert id_ctrl["model"] == "QEMU NVMe Ctrl"
    assert id_ctrl["firmware"] == "7.2.22"
    assert id_ctrl["pci_vendor_id"] == "1b36"  # vid 6966
    smart_log = audit.parse_nvme_smart_log(lab_output("nvme-smart-log.txt")[0])
    assert smart_log == {  # nvme-cli 2.3 prints the 128-bit counters as strings; 323 K = 50 C
        "critical_warning": 0,
        "temperature_c": 50,
        "percentage_used": 0,
        "power_on_hours": 0,
        "media_errors": 0,
        "unsafe_shutdowns": 0,
    }
    assert audit.parse_nvme_list(lab_output("nvme-list.txt")[0]) == {
        "/dev/nvme0n1": {
            "model": "QEMU NVMe Ctrl",
            "serial": "NVME-SN-0001",
            "firmware": "7.2.22",
            "controller": None,
            "pci_address": None,
        }
    }


@pytest.mark.parametrize("text", ["", "{", "\xff\xfe", "[]", '{"x": 1}'])
def test_nvme_parsers_garbage_is_none(text):
    assert audit.parse_nvme_id_ctrl(text) is None
    assert audit.parse_nvme_smart_log(text) is None
    assert audit.parse_nvme_list(text) is None


# -- lsblk -----------------------------------------------------------------------------------------------


def disk_summary(disks):
    return [
        (
            d["name"],
            d["path"],
            d["size_bytes"],
            d["model"],
            d["serial"],
            d["transport"],
            d["rotational"],
            d["removable"],
        )
        for d in disks
    ]


LSBLK_EXPECTED = {
    # default columns without -b: sizes are "30G" strings, which must not become a guessed number
    "azuremetadata-azure-vm-sles-lsblk-J-default.json": [
        ("sda", "/dev/sda", None, None, None, None, None, False),
        ("sdb", "/dev/sdb", None, None, None, None, None, False),
    ],
    "mvth1s-hwbench-asrock-b850-desktop-2nvme-reserialized.json": [
        ("nvme0n1", "/dev/nvme0n1", 1024209543168, "Lexar SSD NM1090 PRO 1TB", None, "nvme", False, None),
        ("nvme1n1", "/dev/nvme1n1", 4000787030016, "Samsung SSD 990 EVO Plus 4TB", None, "nvme", False, None),
    ],
    # an inverse (-s) query of a partition: its disk is only a child, and nothing top-level is a disk
    "mvth1s-hwbench-asrock-b850-lsblk-inverse-s.json": [],
}


@pytest.mark.parametrize("name", sorted(LSBLK_EXPECTED))
def test_lsblk_real_file(name):
    assert disk_summary(audit.parse_lsblk(real("lsblk", name))) == LSBLK_EXPECTED[name]


def test_lsblk_lab_file():
    disks = audit.parse_lsblk(lab_output("lsblk.txt")[0])
    assert disk_summary(disks) == [
        ("sda", "/dev/sda", 268435456, "ST4000NM0035-1V4107", "ZC1A2B3C", "sata", True, False),
        ("sdb", "/dev/sdb", 268435456, "QEMU HARDDISK", "USB-SN-42", "usb", True, True),  # RM 0, HOTPLUG 1
        ("vda", "/dev/vda", 1258291200, None, None, None, True, False),
        ("vdb", "/dev/vdb", 67108864, None, "LABOUT", None, True, False),
        ("nvme0n1", "/dev/nvme0n1", 268435456, "QEMU NVMe Ctrl", "NVME-SN-0001", "nvme", False, False),
    ]
    assert disks[0]["wwn"] == "0x5000c500a1b2c3d4"
    assert disks[0]["firmware"] == "2.5+"


def test_lsblk_keeps_only_whole_physical_disks():
    devices = [
        {"name": n, "type": t, "size": 1}
        for n, t in [
            ("sda", "disk"),
            ("sda1", "part"),
            ("loop0", "loop"),
            ("zram0", "disk"),
            ("ram0", "disk"),
            ("nbd0", "disk"),
            ("md0", "raid1"),
            ("md127", "disk"),
            ("dm-0", "lvm"),
            ("sr0", "rom"),
            ("nvme0n1", "disk"),
            ("vda", "disk"),
            ("mmcblk0", "disk"),
            ("mmcblk0boot0", "disk"),
            ("mmcblk0rpmb", "disk"),
        ]
    ]
    disks = audit.parse_lsblk(json.dumps({"blockdevices": devices}))
    assert [d["name"] for d in disks] == ["sda", "nvme0n1", "vda", "mmcblk0"]


@pytest.mark.parametrize("text", ["", '{"blockdevices": [', "\x00\x00", '{"blockdevices": 3}'])
def test_lsblk_garbage_is_none(text):
    assert audit.parse_lsblk(text) is None


# -- the collector with faked tools ----------------------------------------------------------------------


def run_storage(sysfs, timeout=30.0):
    runner = audit.Runner(sysfs=sysfs, procfs=sysfs / "proc", devfs=sysfs / "dev", timeout=timeout)
    return audit.build_document(runner, [("storage", audit.collect_storage)])


def lsblk_json(*disks: tuple[str, str]) -> str:
    return json.dumps(
        {
            "blockdevices": [
                {
                    "name": name,
                    "kname": name,
                    "path": f"/dev/{name}",
                    "type": "disk",
                    "size": 1000,
                    "model": None,
                    "serial": f"LSBLK-{name}",
                    "rev": None,
                    "wwn": None,
                    "tran": tran,
                    "rota": True,
                    "rm": False,
                    "hotplug": False,
                }
                for name, tran in disks
            ]
        }
    )


def link_nvme_to_pci(sysfs):
    """sysfs/block/nvme0n1/device -> the NVMe controller under PCI 0000:01:00.0, as on the lab guest."""
    controller = sysfs / "devices/pci0000:00/0000:00:03.0/0000:01:00.0/nvme/nvme0"
    controller.mkdir(parents=True)
    (sysfs / "block/nvme0n1").mkdir(parents=True)
    (sysfs / "block/nvme0n1/device").symlink_to(controller)


def test_collector_on_the_lab_outputs(fp, tools):
    tools("lsblk", "smartctl", "nvme")
    link_nvme_to_pci(tools.sysfs)
    fp.register(LSBLK, stdout=lab_output("lsblk.txt")[0])
    for disk, fixture in [
        ("sda", "smartctl-sda.txt"),
        ("sdb", "smartctl-sdb.txt"),
        ("vda", "smartctl-vda.txt"),
        ("vdb", "smartctl-vda.txt"),
        ("nvme0n1", "smartctl-nvme0.txt"),
    ]:
        text, rc = lab_output(fixture)
        fp.register(["smartctl", "-j", "-a", f"/dev/{disk}"], stdout=text, returncode=rc)
    fp.register(["nvme", "id-ctrl", "-o", "json", "/dev/nvme0n1"], stdout=lab_output("nvme-id-ctrl.txt")[0])
    smart_log, _ = lab_output("nvme-smart-log.txt")
    fp.register(["nvme", "smart-log", "-o", "json", "/dev/nvme0n1"], stdout=smart_log)

    document = run_storage(tools.sysfs)

    assert document["errors"] == []  # exit 4 is a flag, exit 1 on virtio/USB means "no SMART there"
    assert document["collectors"]["storage"]["status"] == "ok"
    disks = {d["name"]: d for d in document["storage"]}
    assert list(disks) == ["sda", "sdb", "vda", "vdb", "nvme0n1"]
    sda = disks["sda"]
    assert (sda["model"], sda["serial"], sda["wwn"], sda["firmware"]) == (
        "ST4000NM0035-1V4107",
        "ZC1A2B3C",
        "0x5000c500a1b2c3d4",
        "2.5+",
    )
    assert sda["health"]["smart_passed"] is True
    assert sda["health"]["smartctl_flags"] == ["smart_command_failed"]
    sdb = disks["sdb"]
    assert (sdb["serial"], sdb["removable"], sdb["transport"]) == ("USB-SN-42", True, "usb")
    assert sdb["health"]["smart_available"] is False
    assert sdb["health"]["smart_passed"] is None
    nvme = disks["nvme0n1"]
    assert (nvme["serial"], nvme["model"], nvme["firmware"]) == ("NVME-SN-0001", "QEMU NVMe Ctrl", "7.2.22")
    assert nvme["pci_address"] == "0000:01:00.0"
    assert nvme["health"]["temperature_c"] == 50
    assert nvme["health"]["critical_warning"] == 0
    assert nvme["removable"] is False
    assert document["findings"] == []


@pytest.mark.parametrize(
    "fixture, exit_status, findings",
    [
        ("smartctl_exporter-sat-kingston-a400-m2-exit4.json", 4, []),
        ("smartctl_exporter-sat-toshiba-mg05aca800e-exit64.json", 64, []),
        (
            "scrutiny-usbjmicron-hitachi-hds721050-FAILED.json",
            216,
            [
                ("critical", "SMART overall health self-assessment FAILED"),
                ("warning", "1975 reallocated sectors"),
                ("warning", "8 pending sectors"),
            ],
        ),
    ],
)
def test_smartctl_exit_bits_above_1_are_flags_not_errors(fp, tools, fixture, exit_status, findings):
    tools("lsblk", "smartctl")
    fp.register(LSBLK, stdout=lsblk_json(("sda", "sata")))
    fp.register(
        ["smartctl", "-j", "-a", "/dev/sda"], stdout=real("smartctl", fixture), returncode=exit_status
    )
    document = run_storage(tools.sysfs)
    assert document["errors"] == []
    health = document["storage"][0]["health"]
    assert health["smartctl_exit_status"] == exit_status
    assert [(f["severity"], f["message"]) for f in document["findings"]] == findings
    assert all(f["component"].startswith("disk /dev/sda (") for f in document["findings"])


def test_smartctl_open_failure_is_an_error_and_the_disk_stays(fp, tools):
    tools("lsblk", "smartctl")
    fp.register(LSBLK, stdout=lsblk_json(("sda", "sata"), ("sdb", "sata")))
    fp.register(
        ["smartctl", "-j", "-a", "/dev/sda"],
        returncode=2,
        stdout=real("smartctl", "scrutiny-windows-open-device-failed-exit2.json"),
    )
    fp.register(
        ["smartctl", "-j", "-a", "/dev/sdb"],
        stdout=real("smartctl", "scrutiny-sat-samsung-860evo-xall-flatcar.json"),
    )
    document = run_storage(tools.sysfs)
    assert [(e["command"], e["message"]) for e in document["errors"]] == [
        (
            "smartctl -j -a /dev/sda",
            "exit status 2: Smartctl open device: /dev/sda failed: "
            "\\\\.\\PhysicalDrive0: Open failed, Error=5",
        )
    ]
    assert document["collectors"]["storage"]["status"] == "partial"
    sda, sdb = document["storage"]
    assert sda["serial"] == "LSBLK-sda"  # lsblk's identity kept
    assert sda["health"]["smart_available"] is False
    assert sdb["serial"] == "S3YZNB0KB00864E"  # smartctl's serial of the disk itself


@pytest.mark.parametrize(
    "stdout",
    [b"", b'{"smartctl": {"exit_status"', b"\xff\xfe\x00binary\x80", "caf\u00e9 not json".encode("latin-1")],
)
def test_smartctl_garbage_leaves_a_complete_document(fp, tools, stdout):
    tools("lsblk", "smartctl")
    fp.register(LSBLK, stdout=lsblk_json(("sda", "sata")))
    fp.register(["smartctl", "-j", "-a", "/dev/sda"], stdout=stdout)
    document = run_storage(tools.sysfs)
    assert [e["command"] for e in document["errors"]] == ["smartctl -j -a /dev/sda"]
    assert document["storage"][0]["serial"] == "LSBLK-sda"
    assert document["storage"][0]["health"]["smart_passed"] is None


def test_nvme_cli_garbage_and_failure_are_errors(fp, tools):
    tools("lsblk", "smartctl", "nvme")
    fp.register(LSBLK, stdout=lsblk_json(("nvme0n1", "nvme")))
    fp.register(["smartctl", "-j", "-a", "/dev/nvme0n1"], stdout=lab_output("smartctl-nvme0.txt")[0])
    fp.register(["nvme", "id-ctrl", "-o", "json", "/dev/nvme0n1"], stdout="\x00\x01", returncode=0)
    fp.register(["nvme", "smart-log", "-o", "json", "/dev/nvme0n1"], stderr="Permission denied", returncode=1)
    document = run_storage(tools.sysfs)
    assert sorted(e["command"] for e in document["errors"]) == [
        "nvme id-ctrl -o json /dev/nvme0n1",
        "nvme smart-log -o json /dev/nvme0n1",
    ]
    assert document["storage"][0]["health"]["temperature_c"] == 50  # smartctl's values still there


def test_nvme_list_fills_identity_when_nothing_else_knows_it(fp, tools):
    tools("lsblk", "nvme")  # no smartctl
    listing = json.loads(lsblk_json(("nvme0n1", "nvme")))
    listing["blockdevices"][0]["serial"] = None
    fp.register(LSBLK, stdout=json.dumps(listing))
    fp.register(["nvme", "id-ctrl", "-o", "json", "/dev/nvme0n1"], returncode=1, stderr="failed")
    smart_log, _ = lab_output("nvme-smart-log.txt")
    fp.register(["nvme", "smart-log", "-o", "json", "/dev/nvme0n1"], stdout=smart_log)
    fp.register(["nvme", "list", "-o", "json"], stdout=lab_output("nvme-list.txt")[0])
    document = run_storage(tools.sysfs)
    disk = document["storage"][0]
    assert (disk["serial"], disk["model"], disk["firmware"]) == ("NVME-SN-0001", "QEMU NVMe Ctrl", "7.2.22")


def test_missing_lsblk_skips_silently(fp, tools):
    tools("smartctl")
    document = run_storage(tools.sysfs)
    assert document["storage"] is None
    assert document["collectors"]["storage"]["status"] == "skipped"
    assert document["errors"] == []


def test_missing_smartctl_lists_disks_without_health_or_errors(fp, tools):
    tools("lsblk")
    fp.register(LSBLK, stdout=lsblk_json(("sda", "sata")))
    document = run_storage(tools.sysfs)
    assert document["errors"] == []
    assert document["storage"][0]["health"]["smart_passed"] is None
    assert document["collectors"]["storage"]["status"] == "ok"


def test_hung_smartctl_on_one_disk_is_recorded_and_the_others_complete(fp, tools):
    tools("lsblk", "smartctl")
    names = [f"sd{chr(ord('a') + i)}" for i in range(6)]
    fp.register(LSBLK, stdout=lsblk_json(*[(n, "sata") for n in names]))
    healthy = real("smartctl", "scrutiny-sat-samsung-860evo-xall-flatcar.json")

    def hang(process):
        raise subprocess.TimeoutExpired(process.args, 30)

    for name in names:
        if name == "sdc":
            fp.register(["smartctl", "-j", "-a", "/dev/sdc"], callback=hang)
        else:
            fp.register(["smartctl", "-j", "-a", f"/dev/{name}"], stdout=healthy)
    document = run_storage(tools.sysfs)
    assert [(e["command"], e["message"].split(" after")[0]) for e in document["errors"]] == [
        ("smartctl -j -a /dev/sdc", "timed out")
    ]
    disks = {d["name"]: d for d in document["storage"]}
    assert disks["sdc"]["health"]["smart_passed"] is None
    assert all(disks[n]["health"]["power_on_hours"] == 14551 for n in names if n != "sdc")
    assert document["collectors"]["storage"]["status"] == "partial"


def test_per_disk_tools_run_concurrently_but_bounded(fp, tools):
    tools("lsblk", "smartctl")
    names = [f"sd{a}{b}" for a in "ab" for b in "abcdefghijkl"]  # 24 disks
    fp.register(LSBLK, stdout=lsblk_json(*[(n, "sata") for n in names]))
    lock, state = threading.Lock(), {"running": 0, "most": 0}

    def slow(process):
        with lock:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
        time.sleep(0.05)
        with lock:
            state["running"] -= 1

    healthy = real("smartctl", "scrutiny-sat-samsung-860evo-xall-flatcar.json")
    for name in names:
        fp.register(["smartctl", "-j", "-a", f"/dev/{name}"], stdout=healthy, callback=slow)
    document = run_storage(tools.sysfs)
    assert len(document["storage"]) == 24
    assert all(d["serial"] == "S3YZNB0KB00864E" for d in document["storage"])
    assert 1 < state["most"] <= audit.DISK_TOOL_WORKERS


def test_real_hung_smartctl_is_killed_with_its_group(tools, monkeypatch):
    """A real shell script that hangs (in a child sleep) on one disk: killed at the timeout, the rest kept."""
    healthy = REAL_FIXTURES / "smartctl" / "scrutiny-sat-samsung-860evo-xall-flatcar.json"
    listing = lsblk_json(("sda", "sata"), ("sdb", "sata"))
    tools("lsblk", script=f"#!/bin/sh\ncat <<'EOF'\n{listing}\nEOF\n")
    hang_on_sdb = 'if [ "$3" = /dev/sdb ]; then sleep 60; fi'
    tools("smartctl", script=f'#!/bin/sh\n{hang_on_sdb}\ncat "{healthy}"\n')
    monkeypatch.setenv("PATH", f"{tools.bin_dir}{os.pathsep}/usr/bin:/bin")
    document = run_storage(tools.sysfs, timeout=1.0)
    assert [e["command"] for e in document["errors"]] == ["smartctl -j -a /dev/sdb"]
    assert "timed out" in document["errors"][0]["message"]
    assert document["storage"][0]["serial"] == "S3YZNB0KB00864E"
    assert document["storage"][1]["serial"] == "LSBLK-sdb"


def test_storage_findings_thresholds():
    def doc(**health):
        return {"storage": [{"path": "/dev/nvme0n1", "model": "M", "serial": "S", "health": health}]}

    assert audit.storage_findings(doc(percentage_used=89)) == []
    assert audit.storage_findings(doc(percentage_used=90)) == [
        {
            "severity": "warning",
            "component": "disk /dev/nvme0n1 (M, S)",
            "message": "90 % of the rated endurance used",
        }
    ]
    assert audit.storage_findings(doc(critical_warning=0x4)) == [
        {
            "severity": "critical",
            "component": "disk /dev/nvme0n1 (M, S)",
            "message": "NVMe critical warning 0x4: reliability degraded",
        }
    ]
    assert (
        audit.storage_findings(
            doc(critical_warning=0, reallocated_sectors=0, pending_sectors=0, smart_passed=True)
        )
        == []
    )
