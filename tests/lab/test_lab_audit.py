"""Scenario 1: the emulated server, audited end to end by the real tools and the repository's audit.

The guest boots once for this module (a module-scoped fixture). First the real tools' own output is
compared with tests/lab/expected.py — proving the lab's hardware is what the table says, whatever state the
audit is in — then the audit's document, its --usb copy, its QR summary and its --replay.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import pytest

from tests.audit.fakes import without_times
from tests.lab import checks, expected, fat, qr, scenarios

# Errors the lab itself explains (none today: the virtio disks and the USB bridge have no SMART, which the
# audit reports as health, not as an error). Each entry: (collector, substring of the message).
EXPLAINED_ERRORS: list[tuple[str, str]] = []


@pytest.fixture(scope="module")
def lab():
    """One boot of the emulated server with the current audit; its results folder and boot record."""
    boot = scenarios.audit_boot(scenarios.run_dir("audit"))
    print(f"lab: scenario 1 booted under {boot.accel} in {boot.seconds:.0f} s; work folder {boot.workdir}")
    return boot


@pytest.fixture(scope="module")
def raw(lab):
    """The real tools' recorded output in the guest: name -> stdout (exit status checked by the tests)."""
    folder = lab.results / "raw"
    return {p.stem: p.read_text(errors="replace") for p in folder.glob("*.out")}


def raw_rc(lab, name: str) -> int:
    return int((lab.results / "raw" / f"{name}.rc").read_text())


@pytest.fixture(scope="module")
def document(lab):
    """The audit's JSON document written in the guest (fails with the audit's stderr when there is none)."""
    path = lab.results / "audit.json"
    stderr = (lab.results / "audit.stderr").read_text(errors="replace")
    assert path.is_file(), f"the audit wrote no document; its stderr:\n{stderr[-3000:]}"
    return json.loads(path.read_text())


def by_serial(disks: list[dict]) -> dict[str, dict]:
    return {d.get("serial"): d for d in disks or []}


# -- the real tools: the hardware is what the table says --------------------------------------------------


def test_real_dmidecode_shows_the_platform_and_every_dimm(lab, raw):
    assert raw_rc(lab, "dmidecode") == 0
    blocks = checks.dmidecode_blocks(raw["dmidecode"])
    assert checks.check_platform(blocks) == []
    assert checks.check_memory(blocks) == []


def test_real_lsblk_shows_the_disks_with_serials_and_wwns(lab, raw):
    assert raw_rc(lab, "lsblk") == 0
    assert checks.check_lsblk(raw["lsblk"]) == []


def test_real_smartctl_and_nvme_cli_identify_the_disks(lab, raw):
    names = {d.serial: checks.lsblk_by_serial(raw["lsblk"])[d.serial]["name"]
             for d in (expected.SATA, expected.NVME)}
    sata = json.loads(raw[f"smartctl-{names[expected.SATA.serial]}"])
    nvme_controller = names[expected.NVME.serial].rsplit("n", 1)[0]
    nvme = json.loads(raw[f"smartctl-{nvme_controller}"])
    assert checks.check_smart(sata, expected.SATA) + checks.check_smart(nvme, expected.NVME) == []
    id_ctrl = json.loads(raw["nvme-id-ctrl"])
    assert (id_ctrl["sn"].strip(), id_ctrl["mn"].strip(), id_ctrl["fr"].strip()) == (
        expected.NVME.serial, expected.NVME.model, expected.NVME.extra["firmware"])


def test_real_sysfs_shows_the_nvme_link_and_its_root_port(raw):
    assert checks.check_pci_links(raw["pci-link"]) == []


def test_real_ipmitool_reads_both_frus(lab, raw):
    assert raw_rc(lab, "ipmitool-fru-print0") == 0 and raw_rc(lab, "ipmitool-fru-print1") == 0
    assert checks.check_fru(raw["ipmitool-fru-print0"], raw["ipmitool-fru-print1"]) == []
    assert f"{expected.PSU['name']} (ID {expected.PSU['fru_id']})" in raw["ipmitool-fru"]


def test_real_ipmitool_mc_info_shows_the_bmc(lab, raw):
    assert raw_rc(lab, "ipmitool-mc-info") == 0
    assert checks.check_mc_info(raw["ipmitool-mc-info"]) == []


def nic_name(raw) -> str:
    """The guest's name for the lab's network card (udev names it), found by its MAC."""
    names = [name.removeprefix("net-address-") for name, text in raw.items()
             if name.startswith("net-address-") and text.strip() == expected.NIC["mac"]]
    assert len(names) == 1, f"network cards seen: {[n for n in raw if n.startswith('net-address-')]}"
    return names[0]


def ethtool_info(raw, name: str) -> dict[str, str]:
    """The guest's `ethtool -i NAME` as {field: value}."""
    return dict(line.split(": ", 1) for line in raw[f"ethtool-i-{name}"].splitlines() if ": " in line)


def test_real_ethtool_shows_the_network_card(lab, raw):
    name = nic_name(raw)
    assert raw_rc(lab, f"ethtool-i-{name}") == 0
    fields = ethtool_info(raw, name)
    assert (fields["driver"], fields["bus-info"]) == (expected.NIC["driver"], expected.NIC["bdf"])


# -- the audit's document -----------------------------------------------------------------------------------


def test_audit_ran_and_exited_zero(lab, document):
    assert (lab.results / "audit.rc").read_text().strip() == "0", (lab.results / "audit.stderr").read_text()
    assert document["schema_version"] >= 1


def test_audit_document_matches_its_json_schema(document):
    assert checks.schema_problems(document) == []


def test_audit_board_system_and_bios(document):
    board = document["board"]
    assert board["bios"]["vendor"] == expected.BIOS["vendor"]
    assert board["bios"]["version"] == expected.BIOS["version"]
    assert board["bios"]["release_date"] == expected.BIOS["date"]
    system = board["system"]
    assert (system["manufacturer"], system["product"], system["serial"], system["uuid"]) == (
        expected.SYSTEM["manufacturer"], expected.SYSTEM["product"], expected.SYSTEM["serial"],
        expected.SYSTEM["uuid"])
    assert (board["baseboard"]["product"], board["baseboard"]["serial"]) == (
        expected.BOARD["product"], expected.BOARD["serial"])


def test_audit_chassis_serial(document):
    # Both sources must carry the chassis serial: SMBIOS type 3 (board.chassis, from dmidecode -t 0,1,2,3)
    # and the IPMI FRU's chassis area (psu.chassis, from ipmitool fru).
    smbios = document["board"]["chassis"]
    assert smbios is not None, "no SMBIOS type 3 in the audit's board data"
    assert (smbios["serial"], smbios["manufacturer"], smbios["version"], smbios["asset_tag"]) == (
        expected.CHASSIS["serial"], expected.CHASSIS["manufacturer"], expected.CHASSIS["version"],
        expected.CHASSIS["asset"])
    fru = document["psu"]["chassis"]
    assert (fru["serial"], fru["part_number"], fru["type"]) == (
        expected.FRU_CHASSIS["serial"], expected.FRU_CHASSIS["part"], expected.FRU_CHASSIS["type_name"])
    assert smbios["serial"] == fru["serial"] == expected.CHASSIS["serial"]


def test_audit_both_cpu_sockets(document):
    cpu = document["cpu"]
    assert cpu["socket_count"] == expected.CPU["sockets"]
    assert cpu["populated_sockets"] == expected.CPU["sockets"]
    for index, socket in enumerate(cpu["sockets"]):
        assert socket["designation"] == f"{expected.CPU['socket_prefix']} {index}"
        assert socket["model"] == expected.CPU["model"]
        assert socket["populated"] is True
        assert socket["max_speed_mhz"] == expected.CPU["max_speed_mhz"]
        assert socket["current_speed_mhz"] == expected.CPU["current_speed_mhz"]


def test_audit_every_dimm_slot(document):
    memory = document["memory"]
    slots = memory["slots"]
    assert [s["locator"] for s in slots] == [d.locator for d in expected.DIMMS]
    for slot, dimm in zip(slots, expected.DIMMS, strict=True):
        assert slot["bank"] == dimm.bank
        assert slot["populated"] is dimm.populated, dimm.locator
        if dimm.populated:
            assert (slot["size_bytes"], slot["speed_mts"], slot["configured_speed_mts"], slot["manufacturer"],
                    slot["serial"], slot["part_number"], slot["rank"]) == (
                dimm.size_bytes, dimm.speed_mts, dimm.configured_speed_mts, dimm.manufacturer, dimm.serial,
                dimm.part, dimm.rank), dimm.locator
        else:
            empty = (slot["size_bytes"], slot["serial"], slot["part_number"])
            assert empty == (None, None, None), dimm.locator
    populated = [d for d in expected.DIMMS if d.populated]
    assert memory["total_slots"] == len(expected.DIMMS)
    assert memory["populated_slots"] == len(populated)
    assert memory["total_bytes"] == sum(d.size_bytes for d in populated)


@pytest.mark.parametrize("disk", [expected.NVME, expected.SATA], ids=["nvme", "sata"])
def test_audit_disk_identity_and_smart(document, disk):
    found = by_serial(document["storage"]).get(disk.serial)
    assert found is not None, f"no disk with serial {disk.serial} in {list(by_serial(document['storage']))}"
    assert (found["model"], found["wwn"], found["size_bytes"], found["transport"]) == (
        disk.model, disk.wwn, disk.size_bytes, disk.transport)
    assert found["health"]["smart_passed"] is disk.smart_passed


def test_audit_usb_stick_is_a_removable_usb_disk(document):
    stick = by_serial(document["storage"]).get(expected.USB_STICK.serial)
    assert stick is not None
    assert (stick["transport"], stick["removable"], stick["size_bytes"]) == (
        "usb", True, expected.USB_STICK.size_bytes)


def test_audit_usb_copy_was_written_onto_the_stick(lab, document):
    files = fat.root_files(lab.disks["usb"])
    copies = {name: data for name, data in files.items()
              if name.startswith(f"bee-audit-{expected.SYSTEM['serial']}-") and name.endswith(".json")}
    assert len(copies) == 1, f"files on the stick: {sorted(files)}"
    assert json.loads(next(iter(copies.values()))) == document


def test_audit_nvme_pcie_link_and_its_root_port(document):
    devices = {d["address"]: d for d in document["pcie"]}
    nvme, port = devices[expected.NVME_PCI["bdf"]], devices[expected.NVME_ROOT_PORT["bdf"]]
    speed = float(expected.NVME_PCI["max_speed"].split()[0])
    assert nvme["link"] == {"current_speed_gts": speed, "current_width": expected.NVME_PCI["current_width"],
                            "max_speed_gts": speed, "max_width": expected.NVME_PCI["max_width"]}
    port_speed = float(expected.NVME_ROOT_PORT["max_speed"].split()[0])
    assert nvme["upstream"] == {"address": expected.NVME_ROOT_PORT["bdf"], "max_speed_gts": port_speed,
                                "max_width": expected.NVME_ROOT_PORT["max_width"]}
    assert (port["link"]["max_speed_gts"], port["link"]["max_width"]) == (
        port_speed, expected.NVME_ROOT_PORT["max_width"])


def test_audit_psu_from_the_fru(document):
    psu = document["psu"]
    assert psu["source"] == "ipmitool fru"
    supplies = [(p["manufacturer"], p["product"], p["part_number"], p["serial"])
                for p in psu["power_supplies"]]
    assert supplies == [
        (expected.PSU["manufacturer"], expected.PSU["model"], expected.PSU["part"], expected.PSU["serial"])]
    assert psu["board"]["serial"] == expected.BOARD["serial"]
    assert psu["product"]["serial"] == expected.SYSTEM["serial"]


def test_audit_bmc_identity(document):
    bmc = document["bmc"]
    assert (bmc["firmware_revision"], bmc["ipmi_version"], bmc["manufacturer_id"], bmc["manufacturer"],
            bmc["product_id"], bmc["product_name"], bmc["device_id"], bmc["device_revision"]) == (
        expected.BMC["firmware_revision"], expected.BMC["ipmi_version"], expected.BMC["mfg_id"],
        expected.BMC["manufacturer"], expected.BMC["product_id"], expected.BMC["product_name"],
        expected.BMC["device_id"], expected.BMC["device_rev"])
    assert bmc["lan"] == []  # QEMU's BMC has no LAN channel (it answers no Get Channel Info)


def test_audit_network_card_with_ethtool_facts(document, raw):
    (nic,) = [entry for entry in document["network"] if entry["pci_address"] == expected.NIC["bdf"]]
    assert (nic["name"], nic["mac"], nic["driver"], nic["bus_info"]) == (
        nic_name(raw), expected.NIC["mac"], expected.NIC["driver"], expected.NIC["bdf"])
    fields = ethtool_info(raw, nic["name"])
    assert nic["driver_version"] == fields["version"]
    assert (nic["firmware"] or {}).get("printed") == (fields.get("firmware-version") or None)


# -- health: the BMC's sensors and event log, the kernel log ------------------------------------------------


def test_real_ipmitool_lists_the_sensors_and_the_added_events(lab, raw):
    assert raw_rc(lab, "ipmitool-sel-add") == 0, raw.get("ipmitool-sel-add")
    assert raw_rc(lab, "ipmitool-sdr-elist") == 0 and raw_rc(lab, "ipmitool-sel-list") == 0
    for number, name, *_ in expected.SENSORS:
        assert re.search(rf"^{re.escape(name)}\s*\|\s*{number:02X}h\s*\|", raw["ipmitool-sdr-elist"], re.M), (
            raw["ipmitool-sdr-elist"])
    rows = [[field.strip() for field in line.split("|")] for line in raw["ipmitool-sel-list"].splitlines()
            if "|" in line]
    # the BMC says it is Supermicro's: ipmitool's Supermicro decoding appends "()" to sensor-specific events
    assert [(row[3], row[4].removesuffix(" ()"), row[5].lower()) for row in rows] == [
        (sensor, event, direction) for _, sensor, event, direction in expected.SEL_EVENTS]


def test_real_dmesg_holds_the_injected_lines(raw):
    assert f"EDAC MC0: 1 UE memory read error on {expected.KMSG_DIMM}" in raw["dmesg"]
    sata = checks.lsblk_by_serial(raw["lsblk"])[expected.SATA.serial]["name"]
    assert f"critical medium error, dev {sata}, sector 2048" in raw["dmesg"]


def test_audit_sensors_from_the_sdr(document):
    sensors = {sensor["name"]: sensor for sensor in document["sensors"]}
    for number, name, _, entity, instance, kind in expected.SENSORS:
        found = sensors[name]
        assert (found["number"], found["entity"], found["type"], found["status"]) == (
            number, f"{entity}.{instance}", kind, "ok"), found


def test_audit_event_log_records_named_from_the_sdr(document):
    log = document["event_log"]
    assert log["total_records"] == len(expected.SEL_EVENTS) == log["info"]["entries"]
    assert [(r["sensor"], r["event"], r["direction"]) for r in log["records"]] == [
        (sensor, event, direction) for _, sensor, event, direction in expected.SEL_EVENTS]
    names = {number: name for number, name, *_ in expected.SENSORS}
    assert {r["sensor_number"]: r.get("sensor_name") for r in log["records"]} == {**names, 0x30: None}
    assert all(r["time"] for r in log["records"])  # the BMC stamps what `sel add` gives it
    ierr = next(group for group in log["summary"] if group["event"] == "IERR")
    assert (ierr["count"], ierr["active"], ierr["severity"]) == (2, True, "critical")


def test_audit_kernel_log_events(document, raw):
    sata = checks.lsblk_by_serial(raw["lsblk"])[expected.SATA.serial]["name"]
    events = {(event["kind"], event["device"]): event for event in document["kernel_log"]["events"]}
    memory = events[("memory", expected.KMSG_DIMM)]
    assert (memory["severity"], memory["count"], memory["memory_controller"]) == ("critical", 1, 0)
    assert events[("disk_medium", sata)]["count"] == 1


def test_audit_findings_are_exactly_the_injected_faults(document):
    """The faults the lab injected, each told once (the DIMM's kernel line and SEL record are one finding),
    and nothing else: in particular the NVMe's x1 link is its own maximum, not degraded."""
    audit = scenarios.audit_module()
    disk = by_serial(document["storage"])[expected.SATA.serial]
    slot = next(i for i, s in enumerate(document["memory"]["slots"]) if s["locator"] == expected.KMSG_DIMM)
    found = sorted((f["severity"], f["component"], f.get("ref"), tuple(f.get("sources") or []))
                   for f in document["findings"])
    summary = [group["event"] for group in document["event_log"]["summary"]]

    def sel(event):  # a SEL finding points at its summary entry
        return f"/event_log/summary/{summary.index(event)}"

    assert found == sorted([
        ("critical", "memory", f"/memory/slots/{slot}", ("kernel_log", "event_log")),
        ("critical", "psu", sel("Power Supply AC lost"), ("event_log",)),
        ("warning", "psu", sel("Failure detected"), ("event_log",)),  # deasserted since
        ("critical", "cpu", sel("IERR"), ("event_log",)),  # twice
        ("critical", "temperature", sel("Upper Critical going high"), ("event_log",)),
        ("critical", audit.disk_label(disk), f"/storage/{document['storage'].index(disk)}", ("kernel_log",)),
    ])
    messages = "\n".join(f["message"] for f in document["findings"])
    assert 'Processor #0x01 (CPU0 Status) "IERR" (processor failure), 2 times' in messages
    assert 'Power Supply #0x02 (PSU1 Status) "Power Supply AC lost"' in messages
    assert f"DIMM {expected.KMSG_DIMM}: uncorrected memory errors: 1 in the kernel log" in messages


def test_audit_errors_only_those_the_lab_explains(document):
    unexplained = [e for e in document["errors"] if not any(
        e.get("collector") == collector and text in (e.get("message") or "")
        for collector, text in EXPLAINED_ERRORS)]
    assert unexplained == []


def test_audit_qr_summary_decodes_to_the_expected_text(lab, document, tmp_path):
    audit = scenarios.audit_module()  # here: a broken audit fails this test, not the module's collection
    text = qr.decode_drawing((lab.results / "audit.stdout").read_text(), tmp_path)
    assert text == audit.qr_summary_text(document)   # the code carries the whole summary, uncut
    populated = [d for d in expected.DIMMS if d.populated]
    total_gib = sum(d.size_bytes for d in populated) // expected.GiB
    model_number = expected.CPU["model"].split(" CPU")[0].split()[-1]   # "6338"
    assert re.search(rf"(^|\s){re.escape(expected.SYSTEM['serial'])}(\s|$)", text), text
    assert re.search(rf"\b{total_gib} ?GiB\b", text), text
    assert f"{len(populated)}/{len(expected.DIMMS)}" in text, text
    assert f"{expected.CPU['sockets']}x" in text and model_number in text, text
    assert f"FINDINGS {len(document['findings'])}" in text, text
    critical = sum(1 for f in document["findings"] if f["severity"] == "critical")
    assert critical and f"({critical} critical)" in text, text
    # The audit shortens the longest line only when the summary exceeds what the QR code holds.
    if len(text.encode()) < audit.QR_MAX_BYTES:
        assert expected.SYSTEM["product"] in text, text


def test_replaying_the_capture_gives_the_same_document(lab, document, tmp_path):
    replayed_path = tmp_path / "replayed.json"
    result = subprocess.run(
        [sys.executable, str(scenarios.AUDIT), "--replay", str(lab.results / "capture"),
         "--output", str(replayed_path), "--no-qr"], capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert without_times(json.loads(replayed_path.read_text())) == without_times(document)


# -- acceptance: a profile made from the server passes on it; one expecting every slot populated fails -----


def acceptance_result(lab, name: str) -> tuple[int, dict, str]:
    folder = lab.results / "acceptance"
    stderr = (folder / f"{name}.stderr").read_text(errors="replace")
    assert (folder / f"{name}.json").is_file(), f"no {name}.json; stderr:\n{stderr[-3000:]}"
    return int((folder / f"{name}.rc").read_text()), json.loads((folder / f"{name}.json").read_text()), stderr


def test_acceptance_profile_made_from_the_server_says_what_it_has(lab):
    folder = lab.results / "acceptance"
    assert int((folder / "make.rc").read_text()) == 0, (folder / "make.stderr").read_text()
    made = json.loads((folder / "made.json").read_text())
    assert made["board"]["bios_version"] == expected.BIOS["version"]
    assert made["cpu"]["count"] == expected.CPU["sockets"]
    assert made["memory"]["count"] == sum(d.populated for d in expected.DIMMS)
    assert made["memory"]["slots"] == {
        d.locator: f"{d.size_bytes // expected.GiB} GiB" if d.populated else "empty" for d in expected.DIMMS}


def test_acceptance_made_profile_found_on_the_stick_passes_on_a_second_audit(lab):
    status, document, stderr = acceptance_result(lab, "made-check")
    assert status == 0, stderr[-3000:]
    acceptance = document["acceptance"]
    assert acceptance["passed"] is True and acceptance["checks_failed"] == 0, acceptance
    assert acceptance["source"].endswith(":/bee-profile.json")   # found on the USB stick
    made = (lab.results / "acceptance" / "made.json").read_bytes()
    assert acceptance["sha256"] == hashlib.sha256(made).hexdigest()
    assert "audit: acceptance: PASS: 0 of " in stderr
    # after `ipmitool sel clear` and `dmesg -C` (the faults dealt with): no health finding at all
    assert (document["event_log"]["total_records"], document["kernel_log"]["events"]) == (0, [])
    assert [f for f in document["findings"] if f.get("sources")] == []


def test_acceptance_expecting_every_slot_populated_fails_and_names_the_empty_ones(lab):
    status, document, stderr = acceptance_result(lab, "all-dimms")
    assert status == 3, stderr[-3000:]
    empty = [d.locator for d in expected.DIMMS if not d.populated]
    message = (f"memory: {len(expected.DIMMS) - len(empty)} of {len(expected.DIMMS)} DIMMs found; "
               f"empty slots: {', '.join(empty)}")
    assert [f["message"] for f in document["findings"] if f["component"] == "acceptance"] == [message]
    assert document["acceptance"]["passed"] is False


def test_acceptance_made_profile_holds_the_bmc_and_the_network_card(lab):
    made = json.loads((lab.results / "acceptance" / "made.json").read_text())
    assert made["bmc"] == {"firmware": expected.BMC["firmware_revision"],
                           "manufacturer": expected.BMC["manufacturer"]}
    assert [(group["match"].get("driver"), group["count"]) for group in made["nics"]] == [
        (expected.NIC["driver"], 1)]
