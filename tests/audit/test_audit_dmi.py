"""board, cpu and memory: every real dmidecode fixture through the parsers, the binary dumps through the
real `dmidecode --from-dump`, and the DMI finding rules."""

from __future__ import annotations

import re
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from audit import audit
from tests.audit.fakes import REAL_DMIDECODE, dmidecode_from_dump, dmidecode_from_text, lab_output
from tests.paths import REAL_FIXTURES

DMI = REAL_FIXTURES / "dmidecode"
GiB = 1 << 30
MiB = 1 << 20
EN = "Populated, Enabled"


def E(product, serial, board_serial, sockets, slots, populated, total, statuses=None):  # noqa: N802
    """One file's expectation, read from the file: system product/serial, baseboard serial, CPU sockets,
    memory slots, populated slots and total bytes; statuses counts the CPU `Status:` lines."""
    return {
        "product": product,
        "serial": serial,
        "board_serial": board_serial,
        "sockets": sockets,
        "slots": slots,
        "populated": populated,
        "total": total,
        "statuses": statuses if statuses is not None else ({EN: sockets} if sockets else {}),
    }


# Values as a person reads them in each file. linuxhw anonymised serials to "--" (null); "To Be Filled
# By O.E.M.", "Default string", "None", blanks and "........." are placeholders (null).
TEXT_FILES = {
    "glpi-freebsd62-via-cn700-blank-strings.txt": E(None, None, None, 1, 1, 1, 512 * MiB),
    "glpi-hyperv-2019-vm-windows-dmidecode3.3.txt": E(
        "Virtual Machine",
        "3135-4298-3414-7021-8716-7514-85",
        "3135-4298-3414-7021-8716-7514-85",
        1,
        2,
        2,
        4 * GiB,
    ),
    "glpi-intel-s5000vsa-server-board.txt": E("MP Server", None, "QSSA64700622", 2, 8, 8, 8 * GiB),
    "glpi-microsoft-surface-go-2-partial.txt": E("Surface Go 2", "48368130c2f8", "002460202151", 0, 0, 0, 0),
    "glpi-oracle-server-x5-2.txt": E(
        "ORACLE SERVER X5-2", "1634NM1107", "489089M+16324B2191", 2, 24, 16, 512 * GiB
    ),
    "glpi-rhel62-vmware-vm-2vcpu-many-empty-slots.txt": E(
        "VMware Virtual Platform",
        "VMware-42 1b ba bd 5f 4e af 7e-3a 56 b5 af 1c e1 a9 77",
        None,
        64,
        64,
        1,
        4 * GiB,
        {EN: 2, "Populated, Disabled By BIOS": 62},
    ),
    "glpi-type39-psu-hpe-dl380-gen10.txt": E(None, None, None, 0, 0, 0, 0),
    "glpi-type39-psu-supermicro-x11dpu.txt": E(None, None, None, 0, 0, 0, 0),
    "glpi-vmware-esx-vm-dmidecode2.10.txt": E(
        "VMware Virtual Platform",
        "VMware-42 30 bf 6a ce 71 e1 68-6c 2d 17 6e 66 d0 4a 0d",
        None,
        8,
        15,
        1,
        2 * GiB,
        {EN: 1, "Unpopulated": 7},
    ),
    "glpi-windows2008-two-different-cpus.txt": E(None, None, None, 2, 0, 0, 0),
    "linuxhw-asrock-880gm-le-fx-desktop-to-be-filled.txt": E(
        None, None, None, 1, 2, 2, 8 * GiB, {"Populated, Disabled By BIOS": 1}
    ),
    "linuxhw-asrock-b650-livemixer-am5-desktop.txt": E("B650 LiveMixer", None, None, 1, 4, 2, 32 * GiB),
    "linuxhw-dell-poweredge-r720-cpu2-populated-idle.txt": E(
        "PowerEdge R720", None, None, 2, 24, 8, 64 * GiB, {EN: 1, "Populated, Idle": 1}
    ),
    "linuxhw-dell-poweredge-r740-2s.txt": E("PowerEdge R740", None, None, 2, 24, 16, 256 * GiB),
    "linuxhw-dell-poweredge-r7525-2s-epyc.txt": E("PowerEdge R7525", None, None, 2, 32, 8, 128 * GiB),
    "linuxhw-fujitsu-primergy-rx2540-m4.txt": E("PRIMERGY RX2540 M4", None, None, 2, 24, 12, 384 * GiB),
    "linuxhw-gigabyte-g482-z54-gpu-server-2s-epyc.txt": E("G482-Z54-00", None, None, 2, 32, 16, 256 * GiB),
    "linuxhw-hpe-proliant-dl380-gen10-1of2-sockets.txt": E(
        "ProLiant DL380 Gen10", None, None, 2, 24, 1, 32 * GiB, {EN: 1, "Unpopulated": 1}
    ),
    "linuxhw-huawei-taishan-2280-v2-arm64-2s.txt": E("TaiShan 2280 V2", None, None, 2, 32, 16, 512 * GiB),
    "linuxhw-ibm-system-x3850-x5-4s.txt": E("System x3850 X5 -[7143Y61]-", None, None, 4, 64, 12, 96 * GiB),
    "linuxhw-inspur-nf5280m6-2s.txt": E("NF5280M6", None, None, 2, 32, 16, 512 * GiB),
    "linuxhw-lenovo-thinkpad-x1-carbon-gen9-laptop.txt": E("20XW003FUS", None, None, 1, 8, 8, 16 * GiB),
    "linuxhw-lenovo-thinksystem-sr650-v2.txt": E("ThinkSystem SR650 V2", None, None, 2, 32, 12, 384 * GiB),
    "linuxhw-lenovo-thinksystem-sr950-v3-8s.txt": E("ThinkSystem SR950 V3", None, None, 8, 128, 8, 512 * GiB),
    "linuxhw-phytium-ft2000-4-arm64.txt": E("FT-2000/4", None, None, 1, 3, 2, 32 * GiB),
    "linuxhw-supermicro-sys-2049u-tr4-4s.txt": E("SYS-2049U-TR4", None, None, 4, 48, 16, 512 * GiB),
    "netboxagent-dell-dss7500.txt": E("DSS7500", "4242-SERVICE_TAG", "4242", 2, 12, 12, 192 * GiB),
    "netboxagent-dell-poweredge-m630-blade.txt": E("PowerEdge M630", "4242", "4242", 2, 24, 8, 64 * GiB),
    "netboxagent-hp-sl4540-gen8-trailing-space.txt": E(
        "ProLiant SL4540 Gen8", "4242", "4242", 2, 12, 8, 128 * GiB, {EN: 1, "Populated, Idle": 1}
    ),
    "netboxagent-hpe-bl460c-gen10-graphics-exp-smbios3.2-warning.txt": E(
        "ProLiant BL460c Gen10 Graphics Exp", "4242", "PWWFB0DLMCC0OG", 2, 16, 4, 128 * GiB
    ),
    "netboxagent-qct-quantamicro-x10e-9n.txt": E(
        "QuantaMicro X10E-9N", "QTFCQ57140285", "CQ571000415", 1, 4, 2, 32 * GiB
    ),
    "uroot-gigabyte-x399-threadripper-desktop.txt": E("X399 AORUS XTREME", None, None, 1, 8, 8, 128 * GiB),
    "uroot-lenovo-thinkpad-t480-laptop.txt": E("20L8S07A14", "PC131TBF", "L1HF9380025", 1, 2, 2, 24 * GiB),
    "uroot-supermicro-x9dbl-server.txt": E(
        "X9DBL-3F/X9DBL-iF", "9000116105", "VM147S018307", 2, 6, 6, 48 * GiB
    ),
    "uroot-synology-rs3614xsplus-nas.txt": E("RS3614xs+", None, None, 1, 4, 4, 32 * GiB),
    "uroot-vmware-vm-128-cpu-sockets.txt": E(
        "VMware Virtual Platform",
        "VMware-56 4d e2 c3 c3 c0 e1 e2-46 22 55 4d c5 eb 6b a1",
        None,
        128,
        128,
        1,
        1 * GiB,
        {EN: 2, "Populated, Disabled By BIOS": 126},
    ),
}

# The binary dumps, replayed with the real dmidecode (3.4 here): the five with a text twin give what the
# twin says; the two without one were read from `dmidecode --from-dump FILE`.
BIN_FILES = {
    "uroot-gigabyte-x399-threadripper-desktop.bin": TEXT_FILES[
        "uroot-gigabyte-x399-threadripper-desktop.txt"
    ],
    "uroot-lenovo-thinkpad-t480-laptop.bin": TEXT_FILES["uroot-lenovo-thinkpad-t480-laptop.txt"],
    "uroot-lenovo-thinkpad-t490-smbios3.1.1.bin": E(
        "20N2CTO1WW", "PF1NKFHN", "L1HF93508A3", 1, 2, 2, 40 * GiB
    ),
    "uroot-supermicro-x9dbl-server.bin": TEXT_FILES["uroot-supermicro-x9dbl-server.txt"],
    "uroot-synology-rs3614xsplus-nas.bin": TEXT_FILES["uroot-synology-rs3614xsplus-nas.txt"],
    "uroot-toshiba-satellite-pro-l70-laptop.bin": E(
        "SATELLITE PRO L70-A", "XD198915C", None, 1, 4, 2, 16 * GiB
    ),
    "uroot-vmware-vm-128-cpu-sockets.bin": TEXT_FILES["uroot-vmware-vm-128-cpu-sockets.txt"],
}


RACK = "Rack Mount Chassis"
MAIN = "Main Server Chassis"
NO_TYPE_3 = "no type 3"  # the file holds no Chassis Information structure: board.chassis is null

# SMBIOS type 3 (Chassis Information) of each file as a person reads it: (Type, Serial Number). linuxhw's
# "--", "None", "Not Specified", "Default string", "To Be Filled By O.E.M.", "0123456789", blanks and
# "OEM Chassis Serial Number" are placeholders (null); "Other" is what the firmware says, not a placeholder.
CHASSIS = {
    "glpi-freebsd62-via-cn700-blank-strings.txt": ("Desktop", None),
    "glpi-hyperv-2019-vm-windows-dmidecode3.3.txt": ("Desktop", "3135-4298-3414-7021-8716-7514-85"),
    "glpi-intel-s5000vsa-server-board.txt": (RACK, None),
    "glpi-microsoft-surface-go-2-partial.txt": ("Laptop", "bb4b0be3-56a6"),
    "glpi-oracle-server-x5-2.txt": (MAIN, "1634NM1107"),
    "glpi-rhel62-vmware-vm-2vcpu-many-empty-slots.txt": ("Other", None),
    "glpi-type39-psu-hpe-dl380-gen10.txt": NO_TYPE_3,
    "glpi-type39-psu-supermicro-x11dpu.txt": NO_TYPE_3,
    "glpi-vmware-esx-vm-dmidecode2.10.txt": ("Other", None),
    "glpi-windows2008-two-different-cpus.txt": NO_TYPE_3,
    "linuxhw-asrock-880gm-le-fx-desktop-to-be-filled.txt": ("Desktop", None),
    "linuxhw-asrock-b650-livemixer-am5-desktop.txt": ("Desktop", None),
    "linuxhw-dell-poweredge-r720-cpu2-populated-idle.txt": (RACK, None),
    "linuxhw-dell-poweredge-r740-2s.txt": (RACK, None),
    "linuxhw-dell-poweredge-r7525-2s-epyc.txt": (RACK, None),
    "linuxhw-fujitsu-primergy-rx2540-m4.txt": (RACK, None),
    "linuxhw-gigabyte-g482-z54-gpu-server-2s-epyc.txt": (RACK, None),
    "linuxhw-hpe-proliant-dl380-gen10-1of2-sockets.txt": (RACK, None),
    "linuxhw-huawei-taishan-2280-v2-arm64-2s.txt": (MAIN, None),
    "linuxhw-ibm-system-x3850-x5-4s.txt": (RACK, None),
    "linuxhw-inspur-nf5280m6-2s.txt": (RACK, None),
    "linuxhw-lenovo-thinkpad-x1-carbon-gen9-laptop.txt": ("Notebook", None),
    "linuxhw-lenovo-thinksystem-sr650-v2.txt": (RACK, None),
    "linuxhw-lenovo-thinksystem-sr950-v3-8s.txt": (RACK, None),
    "linuxhw-phytium-ft2000-4-arm64.txt": (MAIN, None),
    "linuxhw-supermicro-sys-2049u-tr4-4s.txt": ("Other", None),
    "netboxagent-dell-dss7500.txt": (RACK, "4242"),
    "netboxagent-dell-poweredge-m630-blade.txt": ("Multi-system", "4242"),
    "netboxagent-hp-sl4540-gen8-trailing-space.txt": ("Multi-system", "4242"),
    "netboxagent-hpe-bl460c-gen10-graphics-exp-smbios3.2-warning.txt": ("Blade", "4343"),
    "netboxagent-qct-quantamicro-x10e-9n.txt": (RACK, "QTFCQ571402FD"),
    "uroot-gigabyte-x399-threadripper-desktop.txt": ("Desktop", None),
    "uroot-lenovo-thinkpad-t480-laptop.txt": ("Notebook", "PC131TBF"),
    "uroot-supermicro-x9dbl-server.txt": (MAIN, None),
    "uroot-synology-rs3614xsplus-nas.txt": (RACK, None),
    "uroot-vmware-vm-128-cpu-sockets.txt": ("Other", None),
    # the binary dumps, read from `dmidecode --from-dump FILE -t 3` (3.4): the same as their text twins
    "uroot-gigabyte-x399-threadripper-desktop.bin": ("Desktop", None),
    "uroot-lenovo-thinkpad-t480-laptop.bin": ("Notebook", "PC131TBF"),
    "uroot-lenovo-thinkpad-t490-smbios3.1.1.bin": ("Notebook", "PF1NKFHN"),
    "uroot-supermicro-x9dbl-server.bin": (MAIN, None),
    "uroot-synology-rs3614xsplus-nas.bin": (RACK, None),
    "uroot-toshiba-satellite-pro-l70-laptop.bin": ("Notebook", None),  # "OEM Chassis Serial Number"
    "uroot-vmware-vm-128-cpu-sockets.bin": ("Other", None),
}


def test_every_dmidecode_fixture_has_a_chassis_expectation():
    assert sorted(CHASSIS) == sorted([*TEXT_FILES, *BIN_FILES])


def check_chassis(name, board):
    """The file's chassis type and serial; null chassis (not an all-null object) when it has no type 3."""
    chassis = (board or {}).get("chassis")
    if CHASSIS[name] == NO_TYPE_3:
        assert chassis is None
        return
    assert chassis is not None and list(chassis) == [
        "manufacturer", "type", "version", "serial", "asset_tag", "sku"
    ]
    assert (chassis["type"], chassis["serial"]) == CHASSIS[name]


def check(expected, board, cpu, memory):
    system = (board or {}).get("system") or {}
    baseboard = (board or {}).get("baseboard") or {}
    assert system.get("product") == expected["product"]
    assert system.get("serial") == expected["serial"]
    assert baseboard.get("serial") == expected["board_serial"]
    sockets = (cpu or {}).get("sockets") or []
    assert len(sockets) == expected["sockets"]
    assert Counter(s["status"] for s in sockets) == Counter(expected["statuses"])
    assert all(s["populated"] == s["status"].startswith("Populated") for s in sockets)
    slots = (memory or {}).get("slots") or []
    assert len(slots) == expected["slots"]
    assert sum(1 for s in slots if s["populated"]) == expected["populated"]
    assert sum(s["size_bytes"] or 0 for s in slots) == expected["total"]
    if memory:
        assert memory["total_slots"] == expected["slots"]
        assert memory["populated_slots"] == expected["populated"]
        assert memory["total_bytes"] == expected["total"]
    for slot in slots:  # an empty slot carries no vendor strings ("NO DIMM", "Not Specified" ...)
        if slot["populated"] is False:
            assert slot["size_bytes"] is None and slot["serial"] is None and slot["manufacturer"] is None


@pytest.mark.parametrize("name", sorted(TEXT_FILES))
def test_text_fixture(name):
    records = audit.parse_dmidecode((DMI / name).read_bytes().decode("utf-8", "replace"))
    assert records, name
    board = audit.parse_board(records)
    check(TEXT_FILES[name], board, audit.parse_cpus(records), audit.parse_memory(records))
    check_chassis(name, board)


@pytest.mark.parametrize("name", sorted(BIN_FILES))
def test_binary_dump_through_the_real_dmidecode(name, tmp_path, monkeypatch):
    """The collectors run `dmidecode -t ...` on PATH, which is the real dmidecode reading the dump."""
    dmidecode_from_dump(tmp_path / "bin", DMI / name)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    results = {}
    for collector_name, function in [
        ("board", audit.collect_board),
        ("cpu", audit.collect_cpu),
        ("memory", audit.collect_memory),
    ]:
        data, report = audit.run_collector(collector_name, function, runner)
        assert report["errors"] == [], report
        results[collector_name] = data
    check(BIN_FILES[name], results["board"], results["cpu"], results["memory"])
    check_chassis(name, results["board"])


def test_x9dbl_dump_details(tmp_path, monkeypatch):
    """Values read from `dmidecode --from-dump uroot-supermicro-x9dbl-server.bin` (and its .txt twin)."""
    dmidecode_from_dump(tmp_path / "bin", DMI / "uroot-supermicro-x9dbl-server.bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    board, _ = audit.run_collector("board", audit.collect_board, runner)
    assert board["system"]["uuid"] == "00000000-0000-0000-0000-0cc47a133878"  # not all zeros: kept
    assert board["baseboard"]["product"] == "X9DBL-3F/X9DBL-iF"
    memory, _ = audit.run_collector("memory", audit.collect_memory, runner)
    assert [s["locator"] for s in memory["slots"]] == [
        "P1-DIMM1A",
        "P1-DIMM1B",
        "P1-DIMM1C",
        "P2-DIMM1D",
        "P2-DIMM1E",
        "P2-DIMM1F",
    ]
    assert [s["size_bytes"] for s in memory["slots"]] == [4 * GiB, 4 * GiB, 16 * GiB] * 2
    psu, report = audit.run_collector("psu", audit.collect_psu, runner)  # no /dev/ipmi0: type 39
    assert report["errors"] == []
    assert psu["source"] == "dmidecode -t 39" and len(psu["power_supplies"]) == 1


def test_qemu_lab_dmidecode_values(tmp_path, monkeypatch):
    """The emulated server's README values, through `dmidecode -t 0,1,2,4,17` as the lab captured it."""
    text, rc = lab_output("dmidecode.txt")
    assert rc == 0
    records = audit.parse_dmidecode(text)
    board = audit.parse_board(records)
    assert board["bios"] == {
        "vendor": "Acme BIOS Corp",
        "version": "2.4.1",
        "release_date": "03/15/2024",
        "revision": "2.4",
    }
    assert board["system"] == {
        "manufacturer": "Acme Servers",
        "product": "LabServer 2U",
        "version": "Rev A",
        "serial": "SYS-SN-ABC123",
        "uuid": "4c4c4544-0042-3510-8058-b2c04f4a4b32",
        "sku": "LS2U-SKU",
        "family": "LabServer",
    }
    assert board["baseboard"] == {
        "manufacturer": "Acme Boards Inc.",
        "product": "X13DPi-LAB",
        "version": "1.01",
        "serial": "BRD-SN-123456",
        "asset_tag": "BOARD-ASSET",
    }
    assert board["chassis"] is None  # this capture asked for types 0,1,2,4,17: no type 3 in it
    cpu = audit.parse_cpus(records)
    assert cpu["socket_count"] == 2 and cpu["populated_sockets"] == 2
    for socket, name in zip(cpu["sockets"], ["CPU 0", "CPU 1"], strict=True):
        assert socket["designation"] == name
        assert socket["model"] == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
        assert socket["manufacturer"] == "Intel(R) Corporation"
        assert (socket["max_speed_mhz"], socket["current_speed_mhz"]) == (3200, 2000)
        assert (socket["cores"], socket["enabled_cores"], socket["threads"]) == (1, 1, 1)
        assert socket["family"] == "Other" and socket["status"] == "Populated, Enabled"
    memory = audit.parse_memory(records)
    # The file holds 16 slots with 8 modules (S1A2B0000, ...02, ... 0E); the lab README's "12 populated"
    # does not match what the file says.
    assert memory["total_slots"] == 16 and memory["populated_slots"] == 8
    assert memory["total_bytes"] == 8 * 32 * GiB
    populated = [s for s in memory["slots"] if s["populated"]]
    assert [s["serial"] for s in populated] == [f"S1A2B000{d}" for d in "02468ACE"]
    first = populated[0]
    assert first == {
        "handle": "0x1100",
        "locator": "CPU0_DIMM_A1",
        "bank": "P0_Node0_ChannelA_Dimm0",
        "array_handle": "0x1000",
        "populated": True,
        "size_bytes": 32 * GiB,
        "type": "DDR4",
        "type_detail": "Synchronous Registered (Buffered)",
        "speed_mts": 3200,
        "configured_speed_mts": 2933,
        "manufacturer": "Samsung",
        "serial": "S1A2B0000",
        "part_number": "M393A4K40DB3-CWE",
        "asset_tag": "ASSET-DIMM-00",
        "rank": 2,
        "form_factor": "DIMM",
        "edac_corrected": None,
        "edac_uncorrected": None,
    }
    empty = [s["locator"] for s in memory["slots"] if s["populated"] is False]
    assert empty == [f"CPU{c}_DIMM_{x}1" for c in "01" for x in "BDFH"]
    # the same values from the full `dmidecode` capture
    full, _ = lab_output("dmidecode-all.txt")
    full_board = audit.parse_board(audit.parse_dmidecode(full))
    # README: "SMBIOS 3: chassis serial CHS-SN-77001"; QEMU's type 3 is always of type "Other" (0x01)
    assert full_board == {
        **board,
        "chassis": {
            "manufacturer": "Acme Servers",
            "type": "Other",
            "version": "2U",
            "serial": "CHS-SN-77001",
            "asset_tag": "CHS-ASSET",
            "sku": None,  # "SKU Number: Not Specified"
        },
    }
    assert audit.parse_memory(audit.parse_dmidecode(full)) == memory


def test_qemu_lab_dmidecode_through_the_collectors(tmp_path, monkeypatch):
    text, _ = lab_output("dmidecode-all.txt")
    (tmp_path / "out.txt").write_text(text)
    dmidecode_from_text(tmp_path / "bin", tmp_path / "out.txt")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    collectors = [
        ("board", audit.collect_board),
        ("cpu", audit.collect_cpu),
        ("memory", audit.collect_memory),
        ("psu", audit.collect_psu),
    ]
    document = audit.build_document(runner, collectors)
    assert document["board"]["system"]["serial"] == "SYS-SN-ABC123"
    assert document["board"]["chassis"]["serial"] == "CHS-SN-77001"
    assert document["cpu"]["total_cores"] == 2
    assert document["memory"]["edac"] is None  # no EDAC in this sysfs
    assert document["psu"] is None and document["collectors"]["psu"]["status"] == "skipped"
    assert [f for f in document["findings"] if f["component"] in {"cpu", "memory"}] == []


def chassis_of(name: str) -> dict | None:
    return audit.parse_board(audit.parse_dmidecode((DMI / name).read_text()))["chassis"]


def C(manufacturer, kind, version, serial, asset_tag, sku):  # noqa: N802
    return {"manufacturer": manufacturer, "type": kind, "version": version, "serial": serial,
            "asset_tag": asset_tag, "sku": sku}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # every field real; "SKU Number:" followed by blanks only
        ("glpi-oracle-server-x5-2.txt",
         C("Oracle Corporation", MAIN, "ORACLE SERVER X5-2", "1634NM1107", "7092459", None)),
        ("glpi-hyperv-2019-vm-windows-dmidecode3.3.txt",  # 8-space indentation (Windows port)
         C("Microsoft Corporation", "Desktop", "Hyper-V UEFI Release v4.0",
           "3135-4298-3414-7021-8716-7514-85", "3135-4298-3414-7021-8716-7514-85", "Virtual Machine")),
        # "Version: Chassis Version", "Asset Tag: <BAD INDEX>", no SKU Number line at all
        ("glpi-microsoft-surface-go-2-partial.txt",
         C("Microsoft Corporation", "Laptop", None, "bb4b0be3-56a6", None, None)),
        # "Asset Tag: N/A", "SKU Number: Default string"
        ("netboxagent-qct-quantamicro-x10e-9n.txt",
         C("Quanta Cloud Technology Inc.", RACK, "32S3ECAST00", "QTFCQ571402FD", None, None)),
        # linuxhw's "--" for serial and asset tag, "Version: none", a real SKU
        ("linuxhw-lenovo-thinksystem-sr650-v2.txt", C("Lenovo", RACK, None, None, None, "7Z73CTO1WW")),
        # "Version: 01234567", "SKU Number: 01234567890123456789AB"
        ("linuxhw-gigabyte-g482-z54-gpu-server-2s-epyc.txt", C("GIGABYTE", RACK, None, None, None, None)),
        # "Version: 123456789"; Type "Other" is what the firmware says
        ("linuxhw-supermicro-sys-2049u-tr4-4s.txt", C("Supermicro", "Other", None, None, None, None)),
        # "Version: 0123456789", "Serial Number: 0123456789", "To Be Filled By O.E.M."
        ("uroot-supermicro-x9dbl-server.txt", C("Supermicro", MAIN, None, None, None, None)),
        ("uroot-gigabyte-x399-threadripper-desktop.txt", C(None, "Desktop", None, None, None, None)),
        ("glpi-freebsd62-via-cn700-blank-strings.txt", C(None, "Desktop", None, None, None, None)),
        # "No Enclosure", "N/A", "None", "No Asset Tag"; no SKU line (SMBIOS 2.4)
        ("glpi-vmware-esx-vm-dmidecode2.10.txt", C(None, "Other", None, None, None, None)),
        # a line without a key where "Boot-up State" was (linuxhw's anonymisation) is skipped
        ("linuxhw-hpe-proliant-dl380-gen10-1of2-sockets.txt", C("HPE", RACK, None, None, None, None)),
        # "Contained Elements: 3" with an indented list below it; "Asset Tag:" of blanks
        ("netboxagent-hp-sl4540-gen8-trailing-space.txt", C("HP", "Multi-system", None, "4242", None, None)),
    ],
)
def test_chassis_fields(name, expected):
    assert chassis_of(name) == expected


def test_chassis_of_a_dump_without_a_text_twin(tmp_path, monkeypatch):
    """Toshiba's Insyde firmware names its fields instead of filling them ("OEM Chassis Serial Number")."""
    dmidecode_from_dump(tmp_path / "bin", DMI / "uroot-toshiba-satellite-pro-l70-laptop.bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    board, report = audit.run_collector("board", audit.collect_board, runner)
    assert report["errors"] == []
    assert board["chassis"] == C(None, "Notebook", None, None, None, None)
    assert board["system"]["serial"] == "XD198915C"


def test_no_type_3_gives_a_null_chassis_beside_the_other_parts():
    """A table without a chassis structure: chassis null, the other parts as they are (not all-null)."""
    text = (DMI / "glpi-intel-s5000vsa-server-board.txt").read_text()
    records = [r for r in audit.parse_dmidecode(text) if r.type != 3]
    board = audit.parse_board(records)
    assert board["chassis"] is None and board["baseboard"]["serial"] == "QSSA64700622"
    only_chassis = audit.parse_board([r for r in audit.parse_dmidecode(text) if r.type == 3])
    assert only_chassis == {"bios": None, "system": None, "baseboard": None,
                            "chassis": C(None, RACK, None, None, None, None)}
    assert audit.parse_board([r for r in audit.parse_dmidecode(text) if r.type == 4]) is None


def test_odd_formats():
    crlf = audit.parse_dmidecode((DMI / "glpi-windows2008-two-different-cpus.txt").read_text())
    cpus = audit.parse_cpus(crlf)["sockets"]
    assert [c["model"] for c in cpus] == [
        "Intel(R) Xeon(R) CPU E5504 @ 2.00GHz",
        "Intel(R) Xeon(R) CPU E5506 @ 2.13GHz",
    ]
    assert [(c["cores"], c["threads"], c["max_speed_mhz"]) for c in cpus] == [(4, 4, 2000)] * 2
    hyperv = audit.parse_board(
        audit.parse_dmidecode((DMI / "glpi-hyperv-2019-vm-windows-dmidecode3.3.txt").read_text())
    )
    assert hyperv["bios"]["version"] == "Hyper-V UEFI Release v4.0"
    assert hyperv["system"]["uuid"] == "f78a0579-5bf5-4de9-a5c7-b5ad2023449b"
    assert hyperv["system"]["sku"] is None  # "SKU Number: None"
    assert hyperv["baseboard"]["asset_tag"] is None
    blank = audit.parse_board(
        audit.parse_dmidecode((DMI / "glpi-freebsd62-via-cn700-blank-strings.txt").read_text())
    )
    assert blank["system"]["manufacturer"] is None and blank["system"]["uuid"] is None  # "Not Present"
    assert blank["baseboard"]["product"] == "CN700-8237R"
    oem = audit.parse_board(
        audit.parse_dmidecode((DMI / "linuxhw-asrock-880gm-le-fx-desktop-to-be-filled.txt").read_text())
    )
    assert oem["system"]["manufacturer"] is None and oem["system"]["product"] is None
    warning = audit.parse_dmidecode(
        (DMI / "netboxagent-hpe-bl460c-gen10-graphics-exp-smbios3.2-warning.txt").read_text()
    )
    assert audit.parse_board(warning)["system"]["manufacturer"] == "HPE"


def test_repeated_locators_are_not_merged():
    phytium = audit.parse_memory(
        audit.parse_dmidecode((DMI / "linuxhw-phytium-ft2000-4-arm64.txt").read_text())
    )
    dimm1 = [s for s in phytium["slots"] if s["locator"] == "DIMM1"]
    assert [(s["handle"], s["manufacturer"], s["size_bytes"]) for s in dimm1] == [
        ("0x1009", "Kingston", 16 * GiB),
        ("0x000B", "Samsung", 16 * GiB),
    ]
    oracle = audit.parse_memory(audit.parse_dmidecode((DMI / "glpi-oracle-server-x5-2.txt").read_text()))
    d11 = [s["bank"] for s in oracle["slots"] if s["locator"] == "D11"]
    assert d11 == ["/SYS/MB/P0", "/SYS/MB/P1"]


def test_firmware_that_omits_empty_slots_lists_only_what_it_has():
    hyperv = audit.parse_memory(
        audit.parse_dmidecode((DMI / "glpi-hyperv-2019-vm-windows-dmidecode3.3.txt").read_text())
    )
    assert hyperv["total_slots"] == 2 and hyperv["populated_slots"] == 2


def test_cpu_statuses():
    r720 = audit.parse_cpus(
        audit.parse_dmidecode((DMI / "linuxhw-dell-poweredge-r720-cpu2-populated-idle.txt").read_text())
    )
    assert [(s["designation"], s["status"], s["populated"]) for s in r720["sockets"]] == [
        ("CPU1", "Populated, Enabled", True),
        ("CPU2", "Populated, Idle", True),
    ]
    hpe = audit.parse_cpus(
        audit.parse_dmidecode((DMI / "linuxhw-hpe-proliant-dl380-gen10-1of2-sockets.txt").read_text())
    )
    assert [(s["designation"], s["status"], s["populated"]) for s in hpe["sockets"]] == [
        ("Proc 1", "Populated, Enabled", True),
        ("Proc 2", "Unpopulated", False),
    ]
    assert hpe["sockets"][1]["model"] is None and hpe["sockets"][1]["family"] is None  # <OUT OF SPEC>
    assert hpe["populated_sockets"] == 1


def document_from(name: str) -> dict:
    records = audit.parse_dmidecode((DMI / name).read_text())
    return {"cpu": audit.parse_cpus(records), "memory": audit.parse_memory(records)}


def test_finding_empty_socket_beside_a_populated_one():
    found = audit.empty_cpu_sockets(document_from("linuxhw-hpe-proliant-dl380-gen10-1of2-sockets.txt"))
    assert found == [
        audit.finding("warning", "cpu", "1 of 2 CPU sockets empty (Proc 2) beside populated ones")
    ]
    assert audit.empty_cpu_sockets(document_from("linuxhw-dell-poweredge-r740-2s.txt")) == []
    # the empty socket's empty DIMM slots are not a second, "uneven DIMMs" finding
    assert (
        audit.uneven_dimm_population(document_from("linuxhw-hpe-proliant-dl380-gen10-1of2-sockets.txt")) == []
    )


BALANCED = [
    "uroot-supermicro-x9dbl-server.txt",
    "netboxagent-hpe-bl460c-gen10-graphics-exp-smbios3.2-warning.txt",
    "linuxhw-inspur-nf5280m6-2s.txt",
    "linuxhw-lenovo-thinksystem-sr650-v2.txt",
    "netboxagent-hp-sl4540-gen8-trailing-space.txt",
    "linuxhw-fujitsu-primergy-rx2540-m4.txt",
    "glpi-oracle-server-x5-2.txt",
    "linuxhw-supermicro-sys-2049u-tr4-4s.txt",
    "linuxhw-gigabyte-g482-z54-gpu-server-2s-epyc.txt",
    "linuxhw-huawei-taishan-2280-v2-arm64-2s.txt",
    "linuxhw-lenovo-thinksystem-sr950-v3-8s.txt",
]


@pytest.mark.parametrize("name", BALANCED)
def test_balanced_servers_have_no_dimm_finding(name):
    """These servers have the same modules on every socket (read from their locators)."""
    document = document_from(name)
    assert audit.dimm_sockets(document["memory"]["slots"]) is not None  # the rule could tell
    assert audit.uneven_dimm_population(document) == []


def test_finding_uneven_dimm_population():
    text, _ = lab_output("dmidecode.txt")
    # take CPU1_DIMM_G1 (the last module of socket 1) out: 4 modules on CPU0, 3 on CPU1
    head, tail = text.split("Locator: CPU1_DIMM_G1")
    head = (
        head[: head.rindex("Size: 32 GB")]
        + "Size: No Module Installed"
        + head[head.rindex("Size: 32 GB") + len("Size: 32 GB") :]
    )
    records = audit.parse_dmidecode(head + "Locator: CPU1_DIMM_G1" + tail)
    document = {"cpu": audit.parse_cpus(records), "memory": audit.parse_memory(records)}
    assert audit.uneven_dimm_population(document) == [
        audit.finding(
            "warning",
            "memory",
            "DIMM population differs between CPU sockets "
            "(socket 0: 4 DIMMs, 128 GiB, socket 1: 3 DIMMs, 96 GiB)",
        )
    ]


def test_unknown_sockets_give_no_dimm_finding():
    """Dell's "A1"/"B1" locators do not name a socket: no guess, no finding."""
    document = document_from("linuxhw-dell-poweredge-r720-cpu2-populated-idle.txt")
    assert audit.dimm_sockets(document["memory"]["slots"]) is None
    assert audit.uneven_dimm_population(document) == []


def make_edac(root, controllers):
    """A sysfs tree with /sys/devices/system/edac/mc/mcN/dimmM files."""
    for mc, (ce, ue, dimms) in controllers.items():
        base = root / "devices/system/edac/mc" / mc
        base.mkdir(parents=True)
        for name, value in {
            "mc_name": "ghes_edac",
            "ce_count": ce,
            "ue_count": ue,
            "ce_noinfo_count": 0,
            "ue_noinfo_count": 0,
        }.items():
            (base / name).write_text(f"{value}\n")
        for dimm, (label, size_mb, dce, due) in dimms.items():
            (base / dimm).mkdir()
            for name, value in {
                "dimm_label": label,
                "dimm_location": "memory 0",
                "size": size_mb,
                "dimm_ce_count": dce,
                "dimm_ue_count": due,
            }.items():
                (base / dimm / name).write_text(f"{value}\n")


def test_edac_counts_per_dimm_and_the_uncorrected_finding(tmp_path, monkeypatch):
    text, _ = lab_output("dmidecode-all.txt")
    (tmp_path / "out.txt").write_text(text)
    dmidecode_from_text(tmp_path / "bin", tmp_path / "out.txt")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    make_edac(
        tmp_path / "sys",
        {
            "mc0": (
                5,
                2,
                {
                    "dimm0": ("P0_Node0_ChannelA_Dimm0 CPU0_DIMM_A1", 32768, 5, 0),
                    "dimm1": ("P1_Node1_ChannelC_Dimm0 CPU1_DIMM_C1", 32768, 0, 2),
                    "dimm2": ("CPU_SrcID#0_MC#0_Chan#0_DIMM#0", 32768, 0, 0),
                },
            )
        },
    )
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    memory, report = audit.run_collector("memory", audit.collect_memory, runner)
    assert report["status"] == "ok"
    by_locator = {s["locator"]: s for s in memory["slots"]}
    assert (by_locator["CPU0_DIMM_A1"]["edac_corrected"], by_locator["CPU0_DIMM_A1"]["edac_uncorrected"]) == (
        5,
        0,
    )
    assert (by_locator["CPU1_DIMM_C1"]["edac_corrected"], by_locator["CPU1_DIMM_C1"]["edac_uncorrected"]) == (
        0,
        2,
    )
    assert by_locator["CPU0_DIMM_C1"]["edac_corrected"] is None
    assert memory["edac"]["controllers"] == [
        {
            "name": "mc0",
            "driver": "ghes_edac",
            "corrected": 5,
            "uncorrected": 2,
            "corrected_noinfo": 0,
            "uncorrected_noinfo": 0,
        }
    ]
    assert [d["size_bytes"] for d in memory["edac"]["dimms"]] == [32 * GiB] * 3
    assert "slot_handle" not in memory["edac"]["dimms"][2]  # its label names no DMI slot
    found = audit.memory_error_findings({"memory": memory})
    critical = [f for f in found if f["severity"] == "critical"]
    assert [(f["component"], f["message"], f["sources"]) for f in critical] == [
        ("memory", "DIMM P1_Node1_ChannelC_Dimm0 CPU1_DIMM_C1: 2 uncorrected memory errors (EDAC)",
         ["memory"])
    ]


def test_garbage_never_raises():
    for garbage in [
        "",
        "\x00\xff\xfe garbage",
        "Handle 0x0001, DMI type 17, 40 bytes",
        "Handle zz\n\tSize:",
        "Handle 0x0001, DMI type 4, 40 bytes\nProcessor Information\n\tStatus\n\t\tweird",
    ]:
        records = audit.parse_dmidecode(garbage)
        audit.parse_board(records)
        audit.parse_cpus(records)
        audit.parse_memory(records)
    assert audit.parse_dmidecode(None) == []


def test_placeholders_become_null():
    for value in [
        "Not Specified",
        "To Be Filled By O.E.M.",
        "Default string",
        "0123456789",
        "None",
        "--",
        "00000000-0000-0000-0000-000000000000",
        "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
        "NO DIMM",
        "Dimm0_AssetTag",
        "<OUT OF SPEC>",
        "<BAD INDEX>",
        "NOT AVAILABLE",
        "  ",
        ".........",
    ]:
        assert audit.dmi_clean(value) is None, value
    assert audit.dmi_clean(" ProLiant SL4540 Gen8 ") == "ProLiant SL4540 Gen8"
    assert audit.dmi_size("16384 MB") == 16 * GiB and audit.dmi_size("2 TB") == 2 << 40
    assert audit.dmi_speed("667 MHz (1.5 ns)") == 667 and audit.dmi_speed("Unknown") is None


@pytest.mark.parametrize(
    "value",
    [
        "Not Specified",
        "not specified ",
        "To Be Filled By O.E.M.",
        "To be filled by O.E.M.",
        "Default string",
        "0123456789",
        "1234567890",
        "9876543210",
        "None",
        "N/A",
        "n/a",
        "NA",
        "Unknown",
        "Not Settable",
        "Not Present",
        "System Serial Number",
        "Chassis Serial Number",
        "Base Board Serial Number",
        "0",
        "00000000",
        "0000-0000",
        "FFFFFFFF",
        "ffff ffff",
        "XXXXXXXXXX",
        "x.x",
        "SerNum1",
        "PartNum0",
        "Array1_PartNumber0",
        "0123456789ABCDEF",
        "Fill By OEM",
        "Chassis Version",  # the chassis' own field names (Surface Go 2, Toshiba Satellite Pro L70)
        "OEM Chassis Manufacturer",
        "OEM Chassis Serial Number",
        "Chassis Manufacture",
        "Chassis Asset Tag",
        "01234567",  # digit runs counting up (Gigabyte G482, Supermicro SYS-2049U)
        "123456789",
        "01234567890123456789AB",
        "03000200-0400-0500-0006-000700080009",
        "03000200-0400-0500-0006-000700080009".lower(),
    ],
)
def test_placeholder_is_null(value):
    assert audit.dmi_clean(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "9000116105",
        "002460202151",
        "50395532",
        "4242",
        "12345678",
        "0001",
        "00000001",  # digits only
        "NA12345",
        "N/A-7",
        "NONE-123",
        "F",
        "FF",
        "B",
        "0x1000",
        "DIMM_F1",
        "FFFE1234",
        "VM147S018307",
        "QTFCQ571402FD",
        "RX2540M4R5",
        "7Z73CTO1WW",
        "Rack Mount Chassis",
        "Other",
        "4C4C4544-0048-5110-804A-C6C04F594A32",
        "03000200-0400-0500-0006-00070008000A",
    ],
)
def test_real_value_is_kept(value):
    assert audit.dmi_clean(value) == value
    assert audit.clean(f" {value} ") == value


def test_no_empty_socket_finding_on_a_virtual_machine():
    """VMware describes a 1-vCPU guest as 8 sockets, 7 of them empty: not a hardware finding."""
    records = audit.parse_dmidecode((DMI / "glpi-vmware-esx-vm-dmidecode2.10.txt").read_text())
    document = {"board": audit.parse_board(records), "cpu": audit.parse_cpus(records)}
    assert document["cpu"]["socket_count"] == 8 and document["cpu"]["populated_sockets"] == 1
    assert audit.is_virtual_machine(document)
    assert audit.empty_cpu_sockets(document) == []
    document["board"]["system"].update(manufacturer="Dell Inc.", product="PowerEdge R740")
    assert [f["message"][:31] for f in audit.empty_cpu_sockets(document)] == [
        "7 of 8 CPU sockets empty (CPU s"
    ]
    for product in ["Standard PC (Q35 + ICH9, 2009)", "Virtual Machine", "HVM domU", "KVM"]:
        manufacturer = {"Virtual Machine": "Microsoft Corporation", "HVM domU": "Xen"}.get(product, "QEMU")
        assert audit.is_virtual_machine(
            {"board": {"system": {"manufacturer": manufacturer, "product": product}}}
        )
    hpe = document_from("linuxhw-hpe-proliant-dl380-gen10-1of2-sockets.txt")
    assert not audit.is_virtual_machine(hpe) and audit.empty_cpu_sockets(hpe) != []


# -- issue 15: what 800 real tables showed (sockets of any Type, zeroed empty sockets, templates, truncation)

DATA = Path(__file__).parent / "data" / "dmidecode"  # real outputs beside the shared ones (SOURCES.md)
X9DBL = DMI / "uroot-supermicro-x9dbl-server.bin"  # dual-socket Supermicro, SMBIOS 2.7, 115 structures
CPU_TYPE, CPU_FAMILY, CPU_STATUS, CPU_UPGRADE = 0x05, 0x06, 0x18, 0x19  # offsets in an SMBIOS type 4


def smbios_structures(dump: bytes) -> list[tuple[int, int, int]]:
    """(type, start, end) of each structure of a `dmidecode --dump-bin` file with a 32-bit (_SM_) entry
    point: the table starts where the entry point says, each structure is its formatted part then its
    strings up to a double NUL."""
    assert dump[:4] == b"_SM_"
    offset, found = struct.unpack_from("<I", dump, 0x18)[0], []
    while offset < len(dump):
        kind, length = dump[offset], dump[offset + 1]
        end = dump.index(b"\0\0", offset + length) + 2
        found.append((kind, offset, end))
        offset = end
        if kind == 127:
            break
    return found


def changed_dump(
    tmp_path: Path, cpus: dict[int, dict[int, int]] | None = None, keep: int | None = None
) -> Path:
    """The X9DBL dump with bytes of its processor structures changed ({cpu index: {offset: byte}}), or with
    its table cut after `keep` structures while the entry point still announces all 115 (its table length
    and both checksums fixed, so dmidecode reads it as a firmware would present it)."""
    dump = bytearray(X9DBL.read_bytes())
    structures = smbios_structures(bytes(dump))
    processors = [start for kind, start, _ in structures if kind == 4]
    for index, changes in (cpus or {}).items():
        for offset, value in changes.items():
            dump[processors[index] + offset] = value
    if keep is not None:
        end = structures[keep - 1][2]
        struct.pack_into("<H", dump, 0x16, end - 0x20)
        dump[0x15] = 0
        dump[0x15] = -sum(dump[0x10:0x1F]) & 0xFF  # the intermediate (_DMI_) checksum
        dump[0x04] = 0
        dump[0x04] = -sum(dump[0 : dump[0x05]]) & 0xFF  # the entry point checksum
        del dump[end:]
    path = tmp_path / "changed.bin"
    path.write_bytes(bytes(dump))
    return path


def dmi_document(tmp_path: Path, monkeypatch, dmidecode: Path) -> dict:
    """The board, cpu, memory and psu of a document, with `dmidecode` on PATH (and nothing else)."""
    monkeypatch.setenv("PATH", str(dmidecode.parent))
    for root in ("sys", "proc", "dev"):
        (tmp_path / root).mkdir(exist_ok=True)
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    collectors = [(name, fn) for name, fn in audit.COLLECTORS if name in {"board", "cpu", "memory", "psu"}]
    return audit.build_document(runner, collectors)


def real_dmidecode(dump: Path, *types: str) -> str:
    done = subprocess.run([REAL_DMIDECODE, "--from-dump", str(dump), *types], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout + done.stderr


def test_a_processor_whose_type_is_other_is_a_socket(tmp_path, monkeypatch):
    """ARM servers say `Type: Other`: the CPU is there all the same (issue 15.1)."""
    dump = changed_dump(tmp_path, {0: {CPU_TYPE: 0x01}, 1: {CPU_TYPE: 0x02}})  # Other, Unknown
    text = real_dmidecode(dump, "-t", "4")
    assert "\tType: Other\n" in text and "\tType: Unknown\n" in text
    document = dmi_document(tmp_path, monkeypatch, dmidecode_from_dump(tmp_path / "bin", dump))
    cpu = document["cpu"]
    assert (cpu["source"], cpu["socket_count"], cpu["populated_sockets"], cpu["total_cores"]) == (
        "smbios", 2, 2, 8)
    assert [s["model"] for s in cpu["sockets"]] == ["Intel(R) Xeon(R) CPU E5-2403 v2 @ 1.80GHz"] * 2
    assert document["collectors"]["cpu"] == {**document["collectors"]["cpu"], "status": "ok", "errors": []}


def test_an_arm_server_saying_type_other_keeps_its_two_sockets():
    """The Huawei TaiShan 2280 V2 (Kunpeng 920, `Family: ARM`) as firmware that says `Type: Other` prints it:
    its real table with the Type line as the issue saw it on an ARM server."""
    text = (DMI / "linuxhw-huawei-taishan-2280-v2-arm64-2s.txt").read_text()
    assert text.count("\tType: Central Processor\n") == 2 and "\tFamily: ARM\n" in text
    other = text.replace("\tType: Central Processor\n", "\tType: Other\n")
    cpu = audit.parse_cpus(audit.parse_dmidecode(other))
    assert cpu["socket_count"] == cpu["populated_sockets"] == 2
    assert {s["family"] for s in cpu["sockets"]} == {"ARM"}
    assert cpu == audit.parse_cpus(audit.parse_dmidecode(text))  # the same as when it says Central Processor


@pytest.mark.parametrize(
    "kind,name", [(0x04, "Math Processor"), (0x05, "DSP Processor"), (0x06, "Video Processor")]
)
def test_a_coprocessor_is_not_a_socket(kind, name, tmp_path, monkeypatch):
    dump = changed_dump(tmp_path, {1: {CPU_TYPE: kind}})
    assert f"\tType: {name}\n" in real_dmidecode(dump, "-t", "4")
    cpu = dmi_document(tmp_path, monkeypatch, dmidecode_from_dump(tmp_path / "bin", dump))["cpu"]
    assert (cpu["socket_count"], cpu["populated_sockets"]) == (1, 1)
    assert cpu["sockets"][0]["designation"] == "SOCKET 0"


def test_an_empty_socket_out_of_spec_is_an_empty_socket(tmp_path, monkeypatch):
    """The empty socket of a dual-socket board whose firmware zeroes its structure: `Type: <OUT OF SPEC>`,
    `Status: Unpopulated`. It counts, and the empty-socket finding fires (issue 15.2)."""
    zeroed = {CPU_TYPE: 0, CPU_FAMILY: 0, CPU_STATUS: 0, CPU_UPGRADE: 0}
    dump = changed_dump(tmp_path, {1: zeroed})
    text = real_dmidecode(dump, "-t", "4")
    assert "\tType: <OUT OF SPEC>\n\tFamily: <OUT OF SPEC>\n" in text and "\tStatus: Unpopulated\n" in text
    document = dmi_document(tmp_path, monkeypatch, dmidecode_from_dump(tmp_path / "bin", dump))
    cpu = document["cpu"]
    assert (cpu["socket_count"], cpu["populated_sockets"], cpu["total_cores"]) == (2, 1, 4)
    empty = cpu["sockets"][1]
    assert (empty["designation"], empty["populated"], empty["status"], empty["family"]) == (
        "SOCKET 1", False, "Unpopulated", None)
    assert [f for f in document["findings"] if f["component"] == "cpu"] == [
        audit.finding("warning", "cpu", "1 of 2 CPU sockets empty (SOCKET 1) beside populated ones")]


def test_a_truncated_dump_is_one_error_naming_both_counts(tmp_path, monkeypatch):
    """A table that announces 115 structures but holds 3 (BIOS, system, baseboard): one error for the whole
    document, none per missing type, and what the 3 hold is kept (issue 15.4)."""
    dump = changed_dump(tmp_path, keep=3)
    assert "Wrong DMI structures count: 115 announced, only 3 decoded." in real_dmidecode(dump, "-t", "17")
    document = dmi_document(tmp_path, monkeypatch, dmidecode_from_dump(tmp_path / "bin", dump))
    assert [e["message"] for e in document["errors"]] == [
        "the SMBIOS table is truncated: 115 structures announced, 3 found; board, cpu, memory and psu show "
        "only what those hold"]
    assert document["errors"][0]["command"].startswith("dmidecode -t ")
    assert document["board"]["baseboard"]["product"] == "X9DBL-3F/X9DBL-iF"
    assert document["board"]["chassis"] is None
    assert document["cpu"] is None and document["memory"] is None and document["psu"] is None


def test_a_truncated_text_table_is_one_error_too(tmp_path, monkeypatch):
    """A saved output (dmidecode 2.x prints the count) cut after its third structure."""
    text = (DMI / "glpi-freebsd62-via-cn700-blank-strings.txt").read_text()
    assert "25 structures occupying" in text
    cut = text[: [m.start() for m in re.finditer(r"^Handle 0x", text, re.MULTILINE)][3]]
    (tmp_path / "cut.txt").write_text(cut)
    fake = dmidecode_from_text(tmp_path / "bin", tmp_path / "cut.txt")
    document = dmi_document(tmp_path, monkeypatch, fake)
    messages = [e["message"] for e in document["errors"]]
    assert len(messages) == 1 and messages[0].startswith(
        "the SMBIOS table is truncated: 25 structures announced, 3 found;")
    assert document["board"]["system"] is not None and document["board"]["chassis"] is not None  # types 1, 3
    assert document["cpu"] is None  # its type 4 came fourth


def test_a_whole_table_is_not_called_truncated():
    for name in sorted(TEXT_FILES):
        text = (DMI / name).read_text(errors="replace")
        assert audit.dmi_truncation(text, "") is None, name
    assert audit.dmi_truncation("", "Wrong DMI structures count: 41 announced, only 3 decoded.\n") == (41, 3)


@pytest.mark.parametrize(
    "value",
    [
        # issue 15.3, each seen in real tables
        "Type1Family", "Type1Sku0", "Type1ProductConfigId", "Type2 - Board Vendor Name1",
        "Type2 - Board Version",
        "TBD by OEM", "To be filled by O.E.M", "To Be Filled By OEM", "(null)", "Not Set", "Not Defined",
        "NOT SUPPORT", "NotSupport", "ModulePartNumber00", "ModulePartNumber01", "Manufacturer00", "SerNum00",
        "AssetTagNum0", "OEM Define 0", "OEM Define 6", "OEM_Define0", "OEM_Define6", "Manufacturer not set ",
        "Part Number not set",
        # the review's near-variants
        "TBD By O.E.M.", "TBD by O.E.M", "Type0 BIOS Vendor", "Type1 Product Name", "Type3 Chassis Serial",
    ],
)
def test_firmware_template_is_null(value):
    assert audit.dmi_clean(value) is None


def test_fru_fields_lose_the_same_templates_as_dmi():
    """ipmitool fru strings go through the same cleaning as DMI: type-N, OEM Define N, TBD By O.E.M."""
    text = (
        "FRU Device Description : Builtin FRU Device (ID 0)\n"
        " Chassis Type          : Rack Mount Chassis\n"
        " Chassis Serial        : Type3 Chassis Serial\n"
        " Board Mfg             : Type2 - Board Vendor Name1\n"
        " Board Product         : X12DPG-QT6\n"
        " Board Serial          : TBD By O.E.M.\n"
        " Product Manufacturer  : Type1 Manufacturer\n"
        " Product Name          : SYS-420GP-TNR\n"
        " Product Serial        : S123456X1234567\n"
        " Product Asset Tag     : OEM Define 3\n"
        "\n"
        "FRU Device Description : PSU1 (ID 2)\n"
        " Product Manufacturer  : OEM_Define0\n"
        " Product Name          : PWS-2K20A-1R\n"
        " Product Serial        : Type0 BIOS Vendor\n"
    )
    records = audit.parse_fru(text)
    identity = audit.fru_identity(records)
    assert identity["chassis"] == {"type": "Rack Mount Chassis", "part_number": None, "serial": None}
    assert identity["board"] == {"manufacturer": None, "product": "X12DPG-QT6", "part_number": None,
                                 "serial": None}
    assert identity["product"] == {"manufacturer": None, "name": "SYS-420GP-TNR", "part_number": None,
                                   "serial": "S123456X1234567", "asset_tag": None}
    psu = audit.psu_from_fru(records[1])
    assert (psu["manufacturer"], psu["product"], psu["serial"]) == (None, "PWS-2K20A-1R", None)


@pytest.mark.parametrize("value", ["Type-C Dock", "TYPE 2 chassis", "Typhoon 3", "OEM Defined Platform X",
                                   "Samsung", "M393A8G40AB2-CWE", "Not-a-serial-42", "TBD-7", "Nullsoft"])
def test_a_value_that_only_looks_like_a_template_is_kept(value):
    assert audit.dmi_clean(value) == value


def test_the_placeholder_families_are_in_one_place_with_their_source():
    """One table per scope, each family commented with where it was seen (the block above them)."""
    source = Path(audit.__file__).read_text()
    block = source[source.index("GENERIC_PLACEHOLDERS = {"): source.index("PLACEHOLDER = re.compile(")]
    assert "DMI_ONLY_PLACEHOLDERS = {" in block
    families = list(audit.GENERIC_PLACEHOLDERS) + list(audit.DMI_ONLY_PLACEHOLDERS)
    for family in families:
        before = block[: block.index(f'    "{family}":')].rstrip().split("\n")[-1]
        assert before.strip().startswith("#") or before.rstrip().endswith(","), family
    assert source.count("PLACEHOLDER = re.compile(") == 2 and "PLACEHOLDERS = {\n    \"\"," not in source


def test_phytium_d2000_not_set_strings_are_null():
    """linuxhw's Phytium D2000 (SOURCES.md): `Not Set` in versions, SKU and CPU part, a blank DIMM part."""
    records = audit.parse_dmidecode((DATA / "linuxhw-phytium-d2000-not-set.txt").read_text())
    board = audit.parse_board(records)
    assert (board["system"]["manufacturer"], board["system"]["product"], board["system"]["family"]) == (
        "PHYTIUM LTD", "D2000", "D2000")
    assert board["system"]["version"] is None and board["system"]["sku"] is None
    assert board["baseboard"]["version"] is None and board["chassis"]["version"] is None
    assert board["chassis"]["type"] == "Main Server Chassis"
    cpu = audit.parse_cpus(records)
    assert (cpu["socket_count"], cpu["total_cores"]) == (1, 8)
    assert cpu["sockets"][0]["model"] == "Phytium D2000/8 E8C"
    memory = audit.parse_memory(records)
    slot = memory["slots"][0]
    assert (slot["size_bytes"], slot["manufacturer"], slot["part_number"], slot["speed_mts"]) == (
        16 * GiB, "Samsung", None, 2666)


def test_ami_numbered_templates_of_populated_dimms_are_null():
    """The Asus Eee 1215N's DIMMs (SOURCES.md): Manufacturer00, SerNum00, AssetTagNum0, ModulePartNumber00."""
    memory = audit.parse_memory(audit.parse_dmidecode(
        (DATA / "forum-asus-eee-1215n-t17-template-strings.txt").read_text()))
    assert (memory["total_slots"], memory["populated_slots"], memory["total_bytes"]) == (2, 2, 8 * GiB)
    for slot in memory["slots"]:
        assert slot["populated"] is True and slot["speed_mts"] == 800
        assert slot["type"] is None  # <OUT OF SPEC>
        assert (slot["manufacturer"], slot["serial"], slot["asset_tag"], slot["part_number"]) == (None,) * 4
    assert [slot["locator"] for slot in memory["slots"]] == ["DIMM0", "DIMM1"]


def test_toshiba_type_n_and_oem_define_templates_through_the_real_dmidecode(tmp_path, monkeypatch):
    """The Toshiba Satellite Pro L70's table (shared fixture): `Type1Family`, `Type2 - Board ...` and a type
    39 whose every string is `OEM_Define0` ... `OEM_Define6`."""
    dump = DMI / "uroot-toshiba-satellite-pro-l70-laptop.bin"
    text = real_dmidecode(dump, "-t", "1,2,39")
    assert "Family: Type1Family" in text and "Name: OEM_Define1" in text and "Revision: OEM_Define6" in text
    document = dmi_document(tmp_path, monkeypatch, dmidecode_from_dump(tmp_path / "bin", dump))
    board = document["board"]
    assert board["system"]["family"] is None and board["system"]["product"] == "SATELLITE PRO L70-A"
    assert board["baseboard"] == dict.fromkeys(board["baseboard"])  # every field a Type2 template
    supplies = document["psu"]["power_supplies"]
    assert len(supplies) == 1 and supplies[0]["max_power_w"] == 75
    for key in ("name", "location", "manufacturer", "serial", "part_number", "version"):
        assert supplies[0][key] is None, key
