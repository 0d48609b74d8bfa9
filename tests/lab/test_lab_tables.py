"""The lab's generated hardware and its image cache, checked on the host without booting anything.

The raw SMBIOS structures are read back with the real dmidecode (--from-dump); the FRU and SDR files are
checked byte by byte against the IPMI layout; the image cache is checked for its keying and its
temp-name-then-rename rule.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.audit.fakes import lab_output
from tests.lab import checks, expected, guest_image, ipmi_fru, qemu, qr, scenarios, smbios


def test_dmidecode_reads_the_generated_memory_tables_as_expected(tmp_path):
    dump = tmp_path / "dmi.bin"
    dump.write_bytes(smbios.table_dump(smbios.raw_structures()))
    result = subprocess.run(["dmidecode", "--from-dump", str(dump)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    blocks = checks.dmidecode_blocks(result.stdout)
    assert checks.check_memory(blocks) == []
    assert sum(1 for b in blocks if b["type"] == 17 and b.get("Size") == "32 GB") == 8


def test_memory_check_notices_a_wrong_serial(tmp_path):
    dump = tmp_path / "dmi.bin"
    structures = smbios.raw_structures()
    structures[1] = structures[1].replace(b"S1A2B0000", b"S1A2B9999")
    dump.write_bytes(smbios.table_dump(structures))
    text = subprocess.run(["dmidecode", "--from-dump", str(dump)], capture_output=True, text=True).stdout
    assert checks.check_memory(checks.dmidecode_blocks(text)) == [
        "DIMM CPU0_DIMM_A1 Serial Number: got 'S1A2B9999', expected 'S1A2B0000'"
    ]


def test_each_raw_structure_is_one_structure_ending_in_a_double_nul():
    for data in smbios.raw_structures():
        assert data[1] in (23, 40)
        assert data.endswith(b"\0\0")
        assert b"\0\0" not in data[data[1]:-2], "exactly one structure per file"


def test_smbios_options_carry_the_table_and_escape_commas():
    options = smbios.qemu_options()
    assert options[0::2] == ["-smbios"] * 5
    assert f"serial={expected.SYSTEM['serial']}" in options[3]
    assert smbios.qemu_escape("a,b") == "a,,b"


def area_at(image: bytes, slot: int) -> bytes:
    offset = image[slot] * 8
    return image[offset: offset + image[offset + 1] * 8]


def fields_of(area: bytes, skip: int) -> list[str]:
    position, found = skip, []
    while area[position] != ipmi_fru.END_OF_FIELDS:
        length = area[position] & 0x3F
        found.append(area[position + 1: position + 1 + length].decode())
        position += 1 + length
    return found


def test_fru_areas_have_valid_checksums_and_the_expected_fields():
    image = ipmi_fru.server_fru()
    assert sum(image[:8]) % 256 == 0
    chassis, board, product = (area_at(image, slot) for slot in (2, 3, 4))
    for area in (chassis, board, product):
        assert sum(area) % 256 == 0 and len(area) % 8 == 0
    assert fields_of(chassis, 3) == [expected.FRU_CHASSIS["part"], expected.CHASSIS["serial"]]
    assert fields_of(board, 6)[:4] == [expected.BOARD["manufacturer"], expected.BOARD["product"],
                                       expected.BOARD["serial"], expected.FRU_BOARD["part"]]
    assert fields_of(product, 3)[4] == expected.SYSTEM["serial"]


def test_fru_data_file_puts_the_psu_at_its_id():
    data = ipmi_fru.fru_data_file()
    psu = data[expected.PSU["fru_id"] * expected.FRU_AREA_SIZE:]
    assert fields_of(area_at(psu, 4), 3)[:5] == [expected.PSU[k] for k in
                                                 ("manufacturer", "model", "part", "version", "serial")]


def sdr_records(data: bytes) -> list[bytes]:
    records, position = [], 0
    while position < len(data):
        length = 5 + data[position + 4]
        records.append(data[position:position + length])
        position += length
    assert position == len(data)
    return records


def test_sdr_records_are_a_fru_locator_naming_the_psu_then_the_sensors():
    record, *sensors = sdr_records(ipmi_fru.sdr_file())
    assert record[2:4] == bytes([0x51, 0x11])
    assert record[6] == expected.PSU["fru_id"]
    assert record[-len(expected.PSU["name"]):].decode() == expected.PSU["name"]
    assert len(sensors) == len(expected.SENSORS)
    for sensor, row in zip(sensors, expected.SENSORS, strict=True):
        number, name, sensor_type, entity, instance, _ = row
        # the layout ipmi-bmc-sim reads (struct ipmi_sdr_compact): type 02h, at least 20 bytes long
        assert sensor[3] == 0x02 and sensor[4] >= 20
        assert (sensor[7], sensor[8], sensor[9], sensor[12], sensor[13]) == (
            number, entity, instance, sensor_type, 0x6F)
        assert number < 20  # ipmi-bmc-sim's MAX_SENSORS
        assert sensor[31] == 0xC0 | len(name) and sensor[32:].decode() == name


def test_sel_events_are_seven_bytes_each():
    for line, *_ in expected.SEL_EVENTS:
        assert [int(byte, 16) for byte in line.split()][:1] == [0x04] and len(line.split()) == 7


def test_recipe_key_changes_with_the_package_list(monkeypatch):
    before = guest_image.recipe_key()
    monkeypatch.setattr(guest_image, "DEBOOTSTRAP_PACKAGES", [*guest_image.DEBOOTSTRAP_PACKAGES, "x"])
    assert guest_image.recipe_key() != before


def test_a_complete_cache_entry_is_used_without_building(tmp_path, monkeypatch):
    entry = tmp_path / f"guest-{guest_image.recipe_key()}"
    entry.mkdir()
    for name in ("root.ext4", "vmlinuz", "initrd.img"):
        (entry / name).write_text("x")
    monkeypatch.setattr(guest_image, "build_entry", lambda *a: pytest.fail("must not build"))
    image = guest_image.ensure_image(tmp_path)
    assert image.root == entry / "root.ext4" and image.build_seconds is None


def test_an_interrupted_build_is_redone_under_the_temp_name_then_renamed(tmp_path, monkeypatch):
    key = guest_image.recipe_key()
    stale = tmp_path / f"guest-{key}.tmp"
    stale.mkdir()
    (stale / "half-written").write_text("x")
    seen = []

    def fake_build(work, log):
        seen.append(sorted(p.name for p in work.iterdir()))
        (work / "root.ext4").write_text("image")

    monkeypatch.setattr(guest_image, "require_tools", lambda: None)
    monkeypatch.setattr(guest_image, "build_entry", fake_build)
    image = guest_image.ensure_image(tmp_path)
    assert seen == [[]], "the stale temp folder must be discarded"
    assert image.root.read_text() == "image" and image.build_seconds is not None
    assert not stale.exists()


def test_debian_mirror_comes_from_the_hosts_deb822_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("BEE_LAB_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert guest_image.debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_tcg_is_chosen_without_virtualisation_flags(monkeypatch):
    monkeypatch.setattr(qemu, "kvm_usable", lambda: False)
    accel, args = qemu.accel_args()
    assert accel == "tcg" and args[:2] == ["-accel", "tcg,thread=multi"]


def test_a_terminal_qr_drawing_decodes_back_to_its_text(tmp_path):
    text = "bee-audit 0.1.0\nSN SYS-SN-ABC123\nFINDINGS 0"
    drawing = subprocess.run(["qrencode", "-t", "ANSIUTF8", "-l", "L", "-m", "2", "-o", "-"],
                             input=text.encode(), capture_output=True, check=True).stdout.decode()
    assert qr.decode_drawing(f"bee audit summary:\n{drawing}", tmp_path) == text


GUEST_SCRIPTS = sorted(p for p in scenarios.GUEST_DIR.rglob("*") if p.is_file() and p.suffix != ".py")


@pytest.mark.parametrize("script", GUEST_SCRIPTS, ids=lambda p: p.name)
def test_guest_shell_scripts_pass_shellcheck_and_parse(script):
    # tests/test_shell.py skips tests/: the guest's scripts are checked here (they run under Debian's dash).
    check = subprocess.run(["shellcheck", "--shell=sh", "--severity=style", str(script)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    parse = subprocess.run(["busybox", "sh", "-n", str(script)], capture_output=True, text=True)
    assert parse.returncode == 0, parse.stderr


def test_boot_sequence_folder_holds_the_live_services_and_the_stand_ins(tmp_path):
    folder = scenarios.boot_sequence_folder(tmp_path / "labin", failing_audit=True)
    default = (folder / "default-runlevel").read_text().split()
    installed = {p.name for p in (folder / "overlay" / "etc" / "init.d").iterdir()}
    assert set(default) - {"dropbear"} <= installed, "every default service comes from openrc/"
    assert "need net" in (folder / "openrc" / "dropbear").read_text(), "Alpine's stock depend() is kept"
    assert "provide localmount" in (folder / "openrc" / "lab-localmount").read_text()
    assert (folder / "audit").read_text() == scenarios.FAILING_AUDIT
    assert (folder / "init").stat().st_mode & 0o111


def test_results_are_read_from_a_tar_on_the_raw_disk(tmp_path):
    import tarfile

    source = tmp_path / "src"
    source.mkdir()
    (source / "report.json").write_text("{}")
    disk = qemu.sparse_file(tmp_path / "labout.img", 1024 * 1024)
    with open(disk, "r+b") as raw, tarfile.open(fileobj=raw, mode="w") as archive:
        archive.add(source, arcname=".")
    assert qemu.read_results(disk, tmp_path / "out")
    assert (tmp_path / "out" / "report.json").read_text() == "{}"
    assert not qemu.read_results(qemu.sparse_file(tmp_path / "empty.img", 4096), tmp_path / "none")


def test_run_folders_live_in_the_lab_cache_and_only_the_newest_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("BEE_LAB_CACHE", str(tmp_path))
    for stamp in ("20250101T000000", "20250102T000000", "20250103T000000"):
        (tmp_path / "runs" / f"audit-{stamp}-1").mkdir(parents=True)
    (tmp_path / "runs" / "boot-nic-20250101T000000-1").mkdir()
    new = scenarios.run_dir("audit")
    left = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert new.parent == tmp_path / "runs"
    assert left == sorted(["audit-20250102T000000-1", "audit-20250103T000000-1", new.name,
                           "boot-nic-20250101T000000-1"])


def test_a_damaged_cache_entry_is_built_again(tmp_path, monkeypatch):
    entry = tmp_path / f"guest-{guest_image.recipe_key()}"
    entry.mkdir()
    (entry / "vmlinuz").write_text("x")   # root.ext4 and initrd.img missing

    def fake_build(work, log):
        for name in ("root.ext4", "vmlinuz", "initrd.img"):
            (work / name).write_text("new")

    monkeypatch.setattr(guest_image, "require_tools", lambda: None)
    monkeypatch.setattr(guest_image, "build_entry", fake_build)
    image = guest_image.ensure_image(tmp_path)
    assert image.root.read_text() == "new" and image.build_seconds is not None


def test_the_bmc_table_is_what_ipmitool_printed_for_it():
    """The qemu-lab `ipmitool mc info` (real ipmitool 1.8.19, QEMU's BMC with these settings) matches
    expected.BMC, and a wrong value is noticed."""
    text, rc = lab_output("ipmitool-mc-info.txt")
    assert rc == 0
    assert checks.check_mc_info(text) == []
    assert checks.check_mc_info(text.replace("3.88", "3.87")) == [
        "mc info Firmware Revision: got '3.87', expected '3.88'"
    ]
