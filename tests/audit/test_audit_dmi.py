"""board, cpu and memory: every real dmidecode fixture through the parsers, the binary dumps through the
real `dmidecode --from-dump`, and the DMI finding rules."""

from __future__ import annotations

from collections import Counter

import pytest

from audit import audit
from tests.audit.fakes import dmidecode_from_dump, dmidecode_from_text, lab_output
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
