"""sensors: every real `ipmitool sdr` / `sdr elist` / `sdr type` / `sensor` file parsed, what a person reads
in each, the findings a sensor's status and discrete state give (and the many it must not give), and the
collector end to end with a fake ipmitool under the one ipmitool lock."""

from __future__ import annotations

import pytest

from audit import audit
from tests.audit.fakes import tool_printing, write_tool
from tests.paths import REAL_FIXTURES

IPMI = REAL_FIXTURES / "ipmitool"

# file -> (sensors, status counts) as counted in the file
SENSOR_FILES = {
    "actsys-intel-s2600-sdr.txt": (89, {"ok": 74, "ns": 15}),
    "collegeboreal-hp-proliant-dl360-g7-sdr-elist-full.txt": (43, {"ok": 42, "ns": 1}),
    "datakit-dell-r620-sdr-elist.txt": (139, {"ok": 76, "ns": 63}),
    "datakit-dell-r620-sdr.txt": (139, {"ok": 76, "ns": 63}),
    "datakit-huawei-rh2288v3-sdr-elist.txt": (146, {"ok": 81, "ns": 65}),
    "gengwg-ansible-dell-r740xd-sdr-type-power-supply.txt": (3, {"ok": 3}),
    "gh-dell-idrac-fan-378-r510-idrac6-sdr-type-temperature.txt": (12, {"ok": 1, "ns": 11}),
    "gh-ipmitool-176-sdr-pwr-unit-redund.txt": (4, {"ok": 4}),
    "gh-smfc-5-supermicro-x9-sdr.txt": (18, {"ok": 17, "ns": 1}),
    "lovoo-ipmi-exporter-supermicro-gpu-board-sensor.txt": (66, None),
    "redhat-cip-hardware-hp-proliant-sdr.txt": (52, {"ok": 50, "ns": 2}),
}


def read(name):
    return (IPMI / name).read_text()


def by_name(sensors, name):
    matches = [sensor for sensor in sensors if sensor["name"] == name]
    assert len(matches) == 1, name
    return matches[0]


@pytest.mark.parametrize("name", sorted(SENSOR_FILES))
def test_every_sensor_line_is_a_sensor(name):
    text = read(name)
    sensors = audit.parse_sensors(text)
    count, statuses = SENSOR_FILES[name]
    assert len(sensors) == count == len([line for line in text.splitlines() if line.strip()])
    if statuses is not None:
        counted = {}
        for sensor in sensors:
            counted[sensor["status"]] = counted.get(sensor["status"], 0) + 1
        assert counted == statuses


def test_sensor_files_are_all_covered():
    names = {path.name for path in IPMI.iterdir() if "-sdr" in path.name or "-sensor" in path.name}
    assert names == set(SENSOR_FILES)


def test_hp_dl360_g7_elist_full():
    sensors = audit.parse_sensors(read("collegeboreal-hp-proliant-dl360-g7-sdr-elist-full.txt"))
    assert by_name(sensors, "Power Supply 1") == {
        "name": "Power Supply 1",
        "number": 0x06,
        "entity": "10.1",
        "type": "power supply",
        "reading": 0,
        "unit": "Watts",
        "status": "ok",
        "state": "Presence detected, Failure detected",
        "thresholds": None,
    }
    assert (by_name(sensors, "Power Supply 2")["reading"], by_name(sensors, "Power Supply 2")["state"]) == (
        95,
        "Presence detected",
    )
    assert by_name(sensors, "Power Supplies")["state"] == "Non-Redundant: Sufficient from Redundant"
    fan = by_name(sensors, "Fan Block 1")
    assert (fan["reading"], fan["unit"], fan["state"], fan["type"]) == (
        21.56,
        "percent",
        "Transition to Running",
        "fan",
    )
    temp = by_name(sensors, "Temp 17")  # entity 8.10 widens its column
    assert (temp["entity"], temp["number"], temp["reading"], temp["unit"], temp["type"]) == (
        "8.10",
        0x1E,
        30,
        "degrees C",
        "temperature",
    )
    assert by_name(sensors, "Temp 4")["status"] == "ns" and by_name(sensors, "Temp 4")["reading"] is None
    assert by_name(sensors, "UID Light")["state"] is None
    assert by_name(sensors, "Memory")["state"] == (
        "Correctable ECC, Correctable ECC logging limit reached, Presence Detected"
    )


def test_hp_dl360_g7_findings_failed_supply_lost_redundancy_and_ecc():
    sensors = audit.parse_sensors(read("collegeboreal-hp-proliant-dl360-g7-sdr-elist-full.txt"))
    found = audit.sensor_findings({"sensors": sensors})
    assert [(f["severity"], f["component"], f["message"], f["ref"]) for f in found] == [
        (
            "critical",
            "sensor Power Supply 1 (power supply)",
            'BMC sensor Power Supply 1: state "Failure detected": power supply failure (reading 0 Watts)',
            "/sensors/5",
        ),
        (
            "warning",
            "sensor Power Supplies (power supply)",
            'BMC sensor Power Supplies: state "Non-Redundant: Sufficient from Redundant": redundancy lost',
            "/sensors/7",
        ),
    ]


def test_dell_r620_both_formats_agree():
    elist = audit.parse_sensors(read("datakit-dell-r620-sdr-elist.txt"))
    plain = audit.parse_sensors(read("datakit-dell-r620-sdr.txt"))
    assert [s["name"] for s in elist] == [s["name"] for s in plain]
    assert [s["status"] for s in elist] == [s["status"] for s in plain]
    assert elist[2] == {
        "name": "Fan1A RPM",
        "number": 0x30,
        "entity": "7.1",
        "type": "fan",
        "reading": 2160,
        "unit": "RPM",
        "status": "ok",
        "state": None,
        "thresholds": None,
    }
    assert (plain[0]["name"], plain[0]["status"], plain[0]["reading"]) == ("SEL", "ns", None)
    assert plain[13]["state"] == "0x00"  # a discrete sensor in plain `sdr`: its raw state
    assert [s["state"] for s in elist if s["name"] == "Presence"][:4] == [
        "Present",
        "Present",
        "Present",
        "Absent",
    ]
    assert elist[0]["state"] is None  # "No Reading" is no state


@pytest.mark.parametrize("name", sorted(SENSOR_FILES))
def test_healthy_servers_have_no_sensor_finding(name):
    """Every file but the HP DL360 G7 (a failed supply) is a healthy server: its absent devices, disabled
    sensors, "Presence detected", "Fully Redundant" and `ns` rows give nothing."""
    if name == "collegeboreal-hp-proliant-dl360-g7-sdr-elist-full.txt":
        return
    assert audit.sensor_findings({"sensors": audit.parse_sensors(read(name))}) == []


def test_huawei_no_reading_rows():
    sensors = audit.parse_sensors(read("datakit-huawei-rh2288v3-sdr-elist.txt"))
    pch = by_name(sensors, "PCH Temp")
    assert (pch["status"], pch["reading"], pch["state"], pch["entity"], pch["type"]) == (
        "ns",
        None,
        None,
        "7.96",
        "temperature",
    )
    assert by_name(sensors, "DISK4")["entity"] == "4.100" and by_name(sensors, "DISK4")["type"] == "drive"
    assert by_name(sensors, "PS Redundancy")["entity"] == "11.102"
    assert (by_name(sensors, "Power1")["reading"], by_name(sensors, "Power1")["type"]) == (18, "power")
    assert by_name(sensors, "ACPI State")["state"] == "S4/S5: soft-off"


def test_supermicro_sensor_table_with_thresholds():
    sensors = audit.parse_sensors(read("lovoo-ipmi-exporter-supermicro-gpu-board-sensor.txt"))
    cpu1 = by_name(sensors, "CPU1 Temp")
    assert (cpu1["reading"], cpu1["unit"], cpu1["status"], cpu1["type"]) == (
        33.0,
        "degrees C",
        "ok",
        "temperature",
    )
    assert cpu1["thresholds"] == {
        "lower_non_recoverable": 0.0,
        "lower_critical": 0.0,
        "lower_non_critical": 0.0,
        "upper_non_critical": 79.0,
        "upper_critical": 82.0,
        "upper_non_recoverable": 84.0,
    }
    assert (by_name(sensors, "12V")["reading"], by_name(sensors, "12V")["unit"]) == (12.084, "Volts")
    assert by_name(sensors, "FAN1")["status"] == "ns" and by_name(sensors, "FAN1")["thresholds"] is None
    ps1 = by_name(sensors, "PS1 Status")  # discrete: "0x1 | discrete | 0x0100|": the state bits
    assert (ps1["status"], ps1["state"], ps1["reading"], ps1["type"]) == (
        "ok",
        "0x0100",
        None,
        "power supply",
    )


def test_supermicro_x9_plain_sdr():
    sensors = audit.parse_sensors(read("gh-smfc-5-supermicro-x9-sdr.txt"))
    assert (by_name(sensors, "-12V")["reading"], by_name(sensors, "-12V")["type"]) == (-12.29, "voltage")
    assert by_name(sensors, "FAN 1")["status"] == "ns"
    assert by_name(sensors, "FAN 2")["reading"] == 675
    assert by_name(sensors, "System Temp")["reading"] == 0  # as the BMC says (a bad probe), no finding


def test_intel_s2600_airflow_and_margins():
    sensors = audit.parse_sensors(read("actsys-intel-s2600-sdr.txt"))
    assert (by_name(sensors, "System Airflow")["reading"], by_name(sensors, "System Airflow")["type"]) == (
        62,
        "airflow",
    )
    assert by_name(sensors, "P1 Therm Margin")["reading"] == -65
    assert by_name(sensors, "MIC Status 1")["status"] == "ns"


# What real BMCs print worse than the files: CRLF, cr/nr/nc rows, AC lost, insufficient redundancy.
FAULTY_ELIST = (
    "Inlet Temp       | 04h | cr  |  7.1 | 48 degrees C\r\n"
    "Fan3A RPM        | 34h | nr  |  7.1 | 0 RPM\r\n"
    "Exhaust Temp     | 01h | nc  |  7.1 | 71 degrees C\r\n"
    "Status           | 85h | ok  | 10.1 | Presence detected, Power Supply AC lost\r\n"
    "Status           | 86h | ok  | 10.2 | Presence detected\r\n"
    "PS Redundancy    | 77h | ok  |  7.1 | Non-Redundant: Insufficient Resources\r\n"
    "PS3 Status       | 87h | ok  | 208.1 | Presence detected, Predictive failure, Config Error\r\n"
    "Drive 0          | 90h | ok  |  4.1 | Drive Present, Drive Fault\r\n"
    "CMOS Battery     | 91h | ok  |  7.1 | Failed\r\n"
    "Presence         | 43h | ok  | 10.2 | Absent\r\n"
    "garbage line without columns\r\n"
    "PCIe Slot1       | 90h | ns  |  7.1 | Disabled\r\n"
    "Trunc            | 92h | o"
)


def test_faulty_server_findings():
    sensors = audit.parse_sensors(FAULTY_ELIST)
    assert len(sensors) == 11
    assert sensors[0]["name"] == "Inlet Temp" and sensors[0]["status"] == "cr"
    assert sensors[6]["entity"] == "208.1"
    found = audit.sensor_findings({"sensors": sensors})
    assert [(f["severity"], f["component"], f["message"]) for f in found] == [
        ("critical", "sensor Inlet Temp (temperature)", "BMC sensor Inlet Temp: critical at 48 degrees C"),
        ("critical", "sensor Fan3A RPM (fan)", "BMC sensor Fan3A RPM: non-recoverable at 0 RPM"),
        (
            "warning",
            "sensor Exhaust Temp (temperature)",
            "BMC sensor Exhaust Temp: non-critical at 71 degrees C",
        ),
        (
            "critical",
            "sensor Status (power supply)",
            'BMC sensor Status: state "Power Supply AC lost": power supply without AC input',
        ),
        (
            "warning",
            "sensor PS Redundancy (power supply)",
            'BMC sensor PS Redundancy: state "Non-Redundant: Insufficient Resources": redundancy lost',
        ),
        (
            "warning",
            "sensor PS3 Status (power supply)",
            'BMC sensor PS3 Status: state "Predictive failure", "Config Error": predictive failure; '
            "configuration error",
        ),
        ("critical", "sensor Drive 0 (drive)", 'BMC sensor Drive 0: state "Drive Fault": drive failure'),
        (
            "warning",
            "sensor CMOS Battery (battery)",
            'BMC sensor CMOS Battery: state "Failed": battery failed or low (CMOS/RTC battery)',
        ),
    ]


def test_threshold_named_when_the_sensor_table_gives_it():
    line = "CPU1 Temp | 86.000 | degrees C | ucr | 0.000 | 0.000 | 0.000 | 79.000 | 82.000 | 84.000"
    found = audit.sensor_findings({"sensors": audit.parse_sensors(line)})
    assert [f["message"] for f in found] == [
        "BMC sensor CPU1 Temp: critical at 86 degrees C (over the upper non recoverable threshold 84)"
    ]


def test_collector_reads_sdr_elist_once(bmc):
    calls = bmc / "calls"
    fixture = IPMI / "collegeboreal-hp-proliant-dl360-g7-sdr-elist-full.txt"
    write_tool(bmc / "bin", "ipmitool", f'echo "$*" >> {calls}\n/bin/cat {fixture}')
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev")
    data, report = audit.run_collector("sensors", audit.collect_sensors, runner)
    assert (report["status"], len(data), calls.read_text()) == ("ok", 43, "sdr elist\n")


def test_collector_without_bmc_is_skipped(tmp_path, monkeypatch):
    tool_printing(tmp_path / "bin", "ipmitool", IPMI / "datakit-dell-r620-sdr-elist.txt")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    report = audit.run_collector("sensors", audit.collect_sensors, runner)[1]
    assert (report["status"], report["reason"]) == (
        "skipped",
        "no /dev/ipmi0 (nor /dev/ipmi/0, /dev/ipmidev/0): no BMC, or its driver is not loaded",
    )


def test_collector_failure_is_an_error(bmc):
    write_tool(bmc / "bin", "ipmitool", "echo 'Unable to open SDR for reading' >&2; exit 1")
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev")
    data, report = audit.run_collector("sensors", audit.collect_sensors, runner)
    assert (data, report["status"]) == (None, "error")
    assert report["errors"] == [
        {
            "collector": "sensors",
            "command": "ipmitool sdr elist",
            "message": "exit status 1: Unable to open SDR for reading",
        }
    ]


def test_collector_garbage_is_an_error(bmc):
    write_tool(bmc / "bin", "ipmitool", "echo 'Error: garbage from a confused BMC'")
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev")
    data, report = audit.run_collector("sensors", audit.collect_sensors, runner)
    assert (data, report["status"]) == ([], "error")
    assert report["errors"][0]["message"] == (
        "no sensor lines in the output: Error: garbage from a confused BMC (run `ipmitool sdr elist` by hand "
        "to see what the BMC answers)"
    )


def test_collector_binary_garbage_is_an_error_without_the_raw_bytes(bmc):
    """Binary garbage is shown printable ("?") and cut, never echoed raw into the error."""
    garbage = bmc / "garbage.bin"
    garbage.write_bytes(b"\x00\x01\xff\xfe|\x1b[2J" + b"A" * 400 + b"\n")
    tool_printing(bmc / "bin", "ipmitool", garbage)
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev")
    data, report = audit.run_collector("sensors", audit.collect_sensors, runner)
    message = report["errors"][0]["message"]
    assert message.isprintable() and "\x1b" not in message
    assert message.startswith("no sensor lines in the output: ???") and "A" * 180 + "..." in message
    assert len(message) < 320


def test_collector_hung_ipmitool_is_killed(bmc, monkeypatch):
    monkeypatch.setattr(audit, "IPMI_SLOW_TIMEOUT", 0.5)  # `sdr elist` gets max(--timeout, this)
    write_tool(bmc / "bin", "ipmitool", "exec /bin/sleep 30")
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev", timeout=0.5)
    data, report = audit.run_collector("sensors", audit.collect_sensors, runner)
    assert data is None and report["errors"][0]["message"].startswith("timed out after")


def test_type_of_a_sensor_without_reading_comes_from_its_name():
    """`sdr type temperature` on an R510: every row is a temperature, also the disabled ones of the supplies
    (entity 10) and CPUs (entity 3)."""
    sensors = audit.parse_sensors(read("gh-dell-idrac-fan-378-r510-idrac6-sdr-type-temperature.txt"))
    assert {sensor["type"] for sensor in sensors} == {"temperature"}
    assert [(s["entity"], s["status"]) for s in sensors[:3]] == [("3.1", "ns"), ("3.2", "ns"), ("10.1", "ns")]
    assert (sensors[4]["name"], sensors[4]["reading"], sensors[4]["status"]) == ("Ambient Temp", 29, "ok")


def test_a_sensor_at_cr_with_a_fault_state_is_one_finding_pointing_at_its_supply():
    """A power supply sensor at `cr` whose state says "Failure detected" is one critical finding naming
    it, pointing at the supply of /psu with its number (PS2 is "Power Supply 2"); without a matching
    supply it points at the sensor."""
    sensors = audit.parse_sensors(
        "PS2 Status       | 86h | cr  | 10.2 | Presence detected, Failure detected\n"
        "PS3 Status       | 87h | cr  | 10.3 | Presence detected, Power Supply AC lost\n"
    )
    psu = {"power_supplies": [{"name": "Power Supply 1", "location": None},
                              {"name": "PWS-2K21A", "location": "PSU2"}]}
    found = audit.sensor_findings({"sensors": sensors, "psu": psu})
    assert [(f["severity"], f["message"], f["ref"]) for f in found] == [
        (
            "critical",
            'BMC sensor PS2 Status: critical; state "Failure detected": power supply failure',
            "/psu/power_supplies/1",
        ),
        (
            "critical",
            'BMC sensor PS3 Status: critical; state "Power Supply AC lost": power supply without AC input',
            "/sensors/1",
        ),
    ]


def test_intel_state_asserted_on_caterr_and_therm_trip_is_critical():
    """Intel's generic discrete sensors say only "State Asserted": CATERR and SSB Therm Trip (the names of
    the S2600's SDR) asserted are critical, in the SDR and in the SEL (named through the SDR)."""
    names = [s["name"] for s in audit.parse_sensors(read("actsys-intel-s2600-sdr.txt"))]
    assert {"CATERR", "SSB Therm Trip"} <= set(names)
    sensors = audit.parse_sensors(
        "CATERR           | 42h | ok  |  7.1 | State Asserted\n"
        "SSB Therm Trip   | 43h | ok  |  7.1 | State Asserted\n"
        "P1 Status        | 44h | ok  |  3.1 | State Asserted\n"
        "CATERR           | 45h | ok  |  7.1 | State Deasserted\n"
    )
    found = audit.sensor_findings({"sensors": sensors})
    assert [(f["severity"], f["message"]) for f in found] == [
        ("critical", 'BMC sensor CATERR: state "State Asserted": processor failure (catastrophic error)'),
        ("critical", 'BMC sensor SSB Therm Trip: state "State Asserted": thermal trip'),
    ]
    summary = audit.summarize_sel(
        audit.parse_sel_list("1 | 03/01/2024 | 10:00:00 | Processor #0x42 | State Asserted | Asserted\n")
    )
    document = {"sensors": sensors, "event_log": {"summary": summary}}
    audit.name_sel_sensors(document)
    assert [(f["severity"], f["message"]) for f in audit.event_log_findings(document)] == [
        (
            "critical",
            'BMC event log: Processor #0x42 (CATERR) "State Asserted" (processor failure (catastrophic '
            'error)), once, 2024-03-01T10:00:00',
        )
    ]
