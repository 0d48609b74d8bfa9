"""event_log: every real `ipmitool sel list` / `sel elist` / `sel info` file parsed with what a person reads
in it, the time forms ipmitool prints, OEM and Pre-Init records, repeated ids, the summary per sensor
and event (1,462 records are a handful of findings), full and overflowed logs, and the collector end to
end."""

from __future__ import annotations

import pytest

from audit import audit
from tests.audit.fakes import write_tool
from tests.paths import REAL_FIXTURES

IPMI = REAL_FIXTURES / "ipmitool"

SEL_FILES = {  # file -> records (lines) in it
    "collegeboreal-hp-proliant-dl360-g7-sel-list.txt": 2,
    "gh-ibm-openbmc-3638-everest-sel-list-partial.txt": 17,
    "gh-ipmitool-335-hpe-ml30-gen9-sel-list-first5.txt": 5,
    "gh-ipmitool-340-quanta-purley-ipmisim-sel-elist.txt": 2,
    "gh-ipmitool-346-sel-list-start-preinit.txt": 3,
    "gh-op-build-607-openpower-sel-list-last20-partial.txt": 13,
    "kube-bmc-gooxi-sy8108g-g4-sel-elist.txt": 30,
}


def records(name):
    return audit.parse_sel_list((IPMI / name).read_text())


def test_sel_files_are_all_covered():
    names = {path.name for path in IPMI.iterdir() if "-sel-" in path.name}
    assert names == set(SEL_FILES) | {
        "gh-ipmitool-277-sel-info-open.txt",
        "gh-openbmc-3258-witherspoon-sel-info.txt",
    }


@pytest.mark.parametrize("name", sorted(SEL_FILES))
def test_every_record_is_parsed(name):
    assert len(records(name)) == SEL_FILES[name]


def test_hp_dl360_ecc_logging_limit():
    found = records("collegeboreal-hp-proliant-dl360-g7-sel-list.txt")
    assert found[0] == {
        "id": "0",
        "time": "2021-06-29T08:18:06",
        "zone": None,
        "seconds_after_power_on": None,
        "sensor": "Memory #0x2b",
        "sensor_type": "Memory",
        "sensor_number": 0x2B,
        "event": "Correctable ECC logging limit reached",
        "direction": "asserted",
        "trigger": None,
        "oem": False,
    }
    assert found[1]["time"] == "2021-11-03T15:01:48"
    summary = audit.summarize_sel(found)
    assert [
        (g["sensor"], g["event"], g["severity"], g["count"], g["first"], g["last"], g["active"])
        for g in summary
    ] == [
        (
            "Memory #0x2b",
            "Correctable ECC logging limit reached",
            "warning",
            2,
            "2021-06-29T08:18:06",
            "2021-11-03T15:01:48",
            True,
        )
    ]
    # a memory ECC event is told with the DIMM story (here alone: no EDAC, no kernel log)
    assert audit.event_log_findings({"event_log": {"summary": summary}}) == []
    found = audit.memory_error_findings({"event_log": {"summary": summary}})
    assert [(f["severity"], f["component"], f["message"]) for f in found] == [
        (
            "warning",
            "memory",
            'BMC event log: Memory #0x2b "Correctable ECC logging limit reached" (correctable '
            "memory errors (so many that the BMC stopped logging them)), 2 times, 2021-06-29T08:18:06 to "
            "2021-11-03T15:01:48",
        )
    ]


def test_openpower_ierr_among_boot_progress_and_an_oem_record():
    found = records("gh-op-build-607-openpower-sel-list-last20-partial.txt")
    assert (found[10]["id"], found[10]["sensor"], found[10]["event"]) == ("89", "Processor #0xc9", "IERR")
    oem = found[12]
    assert (oem["id"], oem["oem"], oem["sensor"], oem["event"], oem["direction"], oem["time"]) == (
        "8b",
        True,
        "OEM record df",
        "040020 | 12616faaaaaa",
        None,
        "2016-08-31T06:21:15",
    )
    summary = audit.summarize_sel(found)
    progress = [g for g in summary if g["sensor"] == "System Firmware Progress #0x05"]
    assert [(g["event"], g["count"]) for g in progress] == [
        ("Motherboard initialization", 4),
        ("PCI resource configuration", 2),
        ("System boot initiated", 3),
        ("Memory initialization", 1),
        ("Secondary CPU Initialization", 1),
    ]
    assert all(g["severity"] is None for g in progress)
    found = audit.event_log_findings({"event_log": {"summary": summary}})
    assert [(f["severity"], f["component"], f["message"], f["count"]) for f in found] == [
        (
            "critical",
            "cpu",
            'BMC event log: Processor #0xc9 "IERR" (processor failure), once, 2016-08-31T06:20:30',
            1,
        )
    ]


def test_quanta_pre_init_bus_fatal_error_and_short_oem_record():
    found = records("gh-ipmitool-340-quanta-purley-ipmisim-sel-elist.txt")
    assert (
        found[0]["time"],
        found[0]["seconds_after_power_on"],
        found[0]["sensor_type"],
        found[0]["event"],
    ) == (None, 198492, "Critical Interrupt", "Bus Fatal Error")
    assert (found[1]["oem"], found[1]["seconds_after_power_on"], found[1]["event"]) == (
        True,
        205817,
        "001c4c | 868034123407",
    )
    found = audit.event_log_findings({"event_log": {"summary": audit.summarize_sel(found)}})
    assert [(f["severity"], f["component"], f["message"]) for f in found] == [
        (
            "critical",
            "pcie",
            'BMC event log: Critical Interrupt #0xa1 "Bus Fatal Error" (fatal bus error (PCIe)), '
            "once, 198492 s after power-on",
        )
    ]


def test_pre_init_reserved_records_with_an_empty_event():
    found = records("gh-ipmitool-346-sel-list-start-preinit.txt")
    assert [(r["id"], r["seconds_after_power_on"], r["sensor_number"], r["event"]) for r in found] == [
        ("3d", 204, 0xFF, None),
        ("3e", 205, 0xFF, None),
        ("3f", 206, 0xFF, None),
    ]
    assert audit.event_log_findings({"event_log": {"summary": audit.summarize_sel(found)}}) == []


def test_hpe_battery_failed_five_times():
    found = audit.event_log_findings(
        {
            "event_log": {
                "summary": audit.summarize_sel(records("gh-ipmitool-335-hpe-ml30-gen9-sel-list-first5.txt"))
            }
        }
    )
    assert [(f["severity"], f["component"], f["count"], f["first"], f["last"]) for f in found] == [
        ("warning", "battery", 5, "2020-04-17T18:57:07", "2020-12-13T10:24:28")
    ]


def test_openbmc_everest_hardware_failure_and_unknown_sensor():
    summary = audit.summarize_sel(records("gh-ibm-openbmc-3638-everest-sel-list-partial.txt"))
    assert [(g["sensor"], g["count"], g["severity"]) for g in summary] == [
        ("Unknown #0x49", 15, None),
        ("System Event #0x4a", 2, "warning"),
    ]
    assert records("gh-ibm-openbmc-3638-everest-sel-list-partial.txt")[7]["id"] == "4a"


def test_gooxi_threshold_flapping_is_one_finding_with_the_trigger_reading():
    found = records("kube-bmc-gooxi-sy8108g-g4-sel-elist.txt")
    assert found[1]["sensor_name"] == "Inlet_Temp" and found[1]["sensor_type"] == "Temperature"
    assert found[1]["trigger"] == {
        "text": "Reading 40 > Threshold 40 degrees C",
        "reading": 40,
        "threshold": 40,
        "unit": "degrees C",
    }
    assert found[0]["direction"] == "deasserted"
    summary = audit.summarize_sel(found)
    inlet = summary[0]
    assert (
        inlet["count"],
        inlet["first"],
        inlet["last"],
        inlet["active"],
        inlet["first_id"],
        inlet["last_id"],
    ) == (14, "2026-10-04T12:28:08", "2026-10-05T15:03:47", True, "825e", "8278")
    found = audit.event_log_findings({"event_log": {"summary": summary}})
    assert [(f["severity"], f["component"], f["message"]) for f in found] == [
        (
            "warning",
            "temperature",
            'BMC event log: Temperature Inlet_Temp "Upper Non-critical going high" '
            "(upper non-critical threshold crossed), 14 times, 2026-10-04T12:28:08 to 2026-10-05T15:03:47",
        )
    ]


def test_sel_info_files():
    info = audit.parse_sel_info((IPMI / "gh-ipmitool-277-sel-info-open.txt").read_text())
    assert info == {
        "version": "1.5 (v1.5, v2 compliant)",
        "entries": 490,
        "free_bytes": 56682,
        "percent_used": 12,
        "last_add_time": "03/11/2021 15:45:59",
        "last_del_time": "03/03/2021 17:18:19",
        "overflow": False,
    }
    full = audit.parse_sel_info((IPMI / "gh-openbmc-3258-witherspoon-sel-info.txt").read_text())
    assert (full["entries"], full["free_bytes"], full["percent_used"], full["last_del_time"]) == (
        2,
        0,
        100,
        None,
    )
    assert audit.event_log_findings({"event_log": {"info": info}}) == []
    # OpenBMC always says 0 bytes free, 100 % used (openbmc/openbmc#3518): 2 entries are no full log
    assert audit.event_log_findings({"event_log": {"info": full}}) == []
    really_full = {**full, "entries": 3639}
    full_warning = audit.finding(
        "warning",
        "bmc",
        "BMC event log is full: new events are being lost (read it, then clear it: ipmitool sel clear)",
    )
    assert audit.event_log_findings({"event_log": {"info": really_full}}) == [full_warning]
    mc_info = IPMI / "phosphor-net-ipmid-issue3-openbmc-witherspoon-mc-info.txt"
    witherspoon = audit.parse_mc_info(mc_info.read_text())
    assert audit.event_log_findings({"event_log": {"info": really_full}, "bmc": witherspoon}) == []
    openbmc = {"manufacturer_id": 49871, "manufacturer": None}
    assert audit.event_log_findings({"event_log": {"info": really_full}, "bmc": openbmc}) == []


def test_overflow_and_1970_dates():
    info = audit.parse_sel_info(
        "SEL Information\r\nEntries : 3639\r\nFree Space : 0 bytes\r\n"
        "Percent Used : unknown\r\nLast Add Time : 01/01/1970 00:02:11\r\n"
        "Overflow : true\r\n"
    )
    assert (info["overflow"], info["percent_used"], info["last_add_time"]) == (
        True,
        None,
        "01/01/1970 00:02:11",
    )
    assert [f["message"] for f in audit.event_log_findings({"event_log": {"info": info}})] == [
        "BMC event log overflowed: new events are being lost (read it, then clear it: ipmitool sel clear)"
    ]


# The forms ipmitool prints that the files lack: 1.8.19's two-digit years with a zone, a 12-hour clock,
# CRLF, a record cut short, garbage.
WORSE = (
    "   1 | 12/14/22 | 23:09:44 CET | Power Supply PS1 Status | Power Supply AC lost | Asserted\r\n"
    "   2 | 12/15/22 | 05:15:35 PM CEST | Power Supply PS1 Status | Power Supply AC lost | Deasserted\r\n"
    "   3 | 01/02/2023 | 01:00:00 | Fan #0x30 | Lower Non-recoverable going low  | Asserted | "
    "Reading 0 < Threshold 300 RPM\r\n"
    "   3 | 01/02/2023 | 01:00:05 | Memory #0xd0 | Uncorrectable ECC | Asserted\r\n"
    "this is not a record\r\n"
    "   5 | 13/45/2023 | 99:00:00 | Processor #0x01 | Thermal Trip\r\n"
    "   6 | 01/0"
)


def test_worse_forms():
    found = audit.parse_sel_list(WORSE)
    assert [(r["id"], r["time"], r["zone"]) for r in found] == [
        ("1", "2022-12-14T23:09:44", "CET"),
        ("2", "2022-12-15T17:15:35", "CEST"),
        ("3", "2023-01-02T01:00:00", None),
        ("3", "2023-01-02T01:00:05", None),
        ("5", None, None),
    ]
    assert found[0]["sensor_type"] == "Power Supply" and found[0]["sensor_name"] == "PS1 Status"
    assert found[2]["event"] == "Lower Non-recoverable going low"  # two spaces before the pipe
    assert found[2]["trigger"]["reading"] == 0 and found[2]["trigger"]["threshold"] == 300
    assert found[4]["direction"] is None
    summary = audit.summarize_sel(found)
    document = {
        "event_log": {"summary": summary, "records": found},
        "sensors": [{"name": "FAN1", "number": 0x30}, {"name": "DIMM Status", "number": 0xD0}],
    }
    audit.name_sel_sensors(document)
    assert found[2]["sensor_name"] == "FAN1"
    found_findings = audit.event_log_findings(document)
    assert [(f["severity"], f["component"], f["message"]) for f in found_findings] == [
        (
            "warning",
            "psu",
            'BMC event log: Power Supply PS1 Status "Power Supply AC lost" (power supply without '
            "AC input), once, 2022-12-14T23:09:44 CET, deasserted since",
        ),
        (
            "critical",
            "fan",
            'BMC event log: Fan #0x30 (FAN1) "Lower Non-recoverable going low" (lower '
            "non-recoverable threshold crossed), once, 2023-01-02T01:00:00",
        ),
        ("critical", "cpu", 'BMC event log: Processor #0x01 "Thermal Trip" (processor failure), once'),
    ]
    memory = audit.memory_error_findings(document)
    assert [(f["severity"], f["message"]) for f in memory] == [
        (
            "critical",
            'BMC event log: Memory #0xd0 (DIMM Status) "Uncorrectable ECC" (uncorrectable memory error), '
            "once, 2023-01-02T01:00:05",
        )
    ]


def test_1462_records_make_one_finding():
    lines = [
        f"{i:4x} | 03/0{1 + i // 1000}/2024 | 10:{(i // 60) % 60:02d}:{i % 60:02d} | Memory #0x2b | "
        f"Correctable ECC | Asserted"
        for i in range(1, 1463)
    ]
    lines.insert(700, " 5b0 | 03/01/2024 | 11:00:00 | Power Supply #0x61 | Failure detected | Asserted")
    found = audit.parse_sel_list("\n".join(lines))
    summary = audit.summarize_sel(found)
    assert [(g["sensor"], g["count"]) for g in summary] == [("Memory #0x2b", 1462), ("Power Supply #0x61", 1)]
    assert (summary[0]["first"], summary[0]["last"]) == ("2024-03-01T10:00:01", "2024-03-02T10:24:22")
    findings = audit.event_log_findings({"event_log": {"summary": summary}}) + audit.memory_error_findings(
        {"event_log": {"summary": summary}}
    )
    assert [(f["severity"], f["count"]) for f in findings] == [("critical", 1), ("warning", 1462)]


def test_collector_keeps_the_newest_1000_records_and_summarizes_all(bmc):
    log = bmc / "sel.txt"
    log.write_text(
        "".join(
            f"{i:4x} | 03/01/2024 | 10:00:00 | Memory #0x2b | Correctable ECC | Asserted\n"
            for i in range(1, 1463)
        )
    )
    calls = bmc / "calls"
    write_tool(
        bmc / "bin",
        "ipmitool",
        f'echo "$*" >> {calls}\ncase "$*" in\n'
        f'  "sel info") /bin/cat {IPMI / "gh-ipmitool-277-sel-info-open.txt"};;\n'
        f'  "sel list") /bin/cat {log};;\n  *) exit 1;;\nesac',
    )
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev")
    data, report = audit.run_collector("event_log", audit.collect_event_log, runner)
    assert report["status"] == "ok" and calls.read_text() == "sel info\nsel list\n"
    assert (
        data["total_records"],
        len(data["records"]),
        data["records"][0]["id"],
        data["records"][-1]["id"],
    ) == (1462, 1000, f"{463:x}", f"{1462:x}")
    assert data["summary"][0]["count"] == 1462 and data["info"]["entries"] == 490
    assert data["duplicate_ids"] == []


def test_collector_empty_log_and_repeated_ids(bmc):
    write_tool(
        bmc / "bin", "ipmitool", 'case "$*" in\n  "sel list") exit 0;;\n  *) echo "Entries : 0";;\nesac'
    )
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev")
    data, report = audit.run_collector("event_log", audit.collect_event_log, runner)
    assert (report["status"], data["total_records"], data["summary"]) == ("ok", 0, [])
    everest = IPMI / "gh-ibm-openbmc-3638-everest-sel-list-partial.txt"
    write_tool(
        bmc / "bin",
        "ipmitool",
        f'case "$*" in\n  "sel list") /bin/cat {everest} {everest};;\n  *) echo "Entries : 34";;\nesac',
    )
    data, report = audit.run_collector("event_log", audit.collect_event_log, runner)
    assert data["total_records"] == 34 and len(data["duplicate_ids"]) == 17


def test_collector_failure_is_an_error_and_without_bmc_skipped(bmc, tmp_path, monkeypatch):
    write_tool(bmc / "bin", "ipmitool", "echo 'Get SEL Info command failed' >&2; exit 1")
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev")
    data, report = audit.run_collector("event_log", audit.collect_event_log, runner)
    assert (data, report["status"]) == (None, "error")
    assert [e["command"] for e in report["errors"]] == ["ipmitool sel info", "ipmitool sel list"]
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "nodev")
    report = audit.run_collector("event_log", audit.collect_event_log, runner)[1]
    assert (report["status"], report["reason"]) == (
        "skipped",
        "no /dev/ipmi0 (nor /dev/ipmi/0, /dev/ipmidev/0): no BMC, or its driver is not loaded",
    )


def test_garbage_sel_info_is_an_error_not_a_silent_null(bmc):
    write_tool(
        bmc / "bin",
        "ipmitool",
        'case "$*" in\n  "sel info") printf "\\001\\002: \\377garbage\\n";;\n  *) exit 0;;\nesac',
    )
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev")
    data, report = audit.run_collector("event_log", audit.collect_event_log, runner)
    assert data["info"] is None and report["status"] == "partial"
    assert report["errors"] == [
        {
            "collector": "event_log",
            "command": "ipmitool sel info",
            "message": "no SEL information in the output: ??: ?garbage (run `ipmitool sel info` by hand to "
            "see what the BMC answers)",
        }
    ]


def test_ipmitool_commands_of_psu_sensors_and_event_log_never_overlap(bmc):
    """The three collectors run concurrently, their ipmitool commands one at a time (IPMITOOL_LOCK)."""
    log = bmc / "runs"
    write_tool(
        bmc / "bin",
        "ipmitool",
        f'echo "start $*" >> {log}\n/bin/sleep 0.2\necho "end $*" >> {log}\necho "Entries : 1"',
    )
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev")
    audit.build_document(
        runner,
        [
            ("psu", audit.collect_psu),
            ("sensors", audit.collect_sensors),
            ("event_log", audit.collect_event_log),
        ],
    )
    lines = log.read_text().splitlines()
    assert len(lines) == 8  # fru, sdr elist, sel info, sel list: each started and ended
    assert all(lines[i].startswith("start") and lines[i + 1] == "end" + lines[i][5:] for i in range(0, 8, 2))


def test_a_dimm_named_by_ipmitool_and_a_kernel_panic_record():
    """ipmitool adds "CPU 1 DIMM 2" to a memory event of sensor 0 (and prints no "#0x00"), and prints an
    OEM f0h record as "Linux kernel panic: <11 characters>"."""
    found = audit.parse_sel_list(
        "  7 | 01/02/2023 | 01:00:09 | Memory | Uncorrectable ECC | Asserted | CPU 1 DIMM 2\n"
        "  8 | 01/02/2023 | 01:00:10 | Linux kernel panic: Fatal excep\n"
    )
    assert (found[0]["sensor"], found[0]["detail"], found[0]["trigger"]) == ("Memory", "CPU 1 DIMM 2", None)
    assert (found[1]["sensor"], found[1]["event"], found[1]["oem"]) == (
        "Linux kernel panic: Fatal excep",
        None,
        False,
    )
    summary = audit.summarize_sel(found)
    assert [
        (f["severity"], f["message"]) for f in audit.event_log_findings({"event_log": {"summary": summary}})
    ] == [
        (
            "critical",
            "BMC event log: Linux kernel panic: Fatal excep (the operating system panicked), once, "
            "2023-01-02T01:00:10",
        )
    ]


def test_a_hung_bmc_is_asked_once(bmc, monkeypatch):
    """After one ipmitool command hangs, the other collectors do not ask the BMC again (each would wait the
    whole timeout): one timeout, then one error per command that was not run."""
    monkeypatch.setattr(audit, "IPMI_SLOW_TIMEOUT", 0.5)
    log = bmc / "runs"
    write_tool(bmc / "bin", "ipmitool", f'echo "$*" >> {log}\nexec /bin/sleep 30')
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev", timeout=0.5)
    document = audit.build_document(
        runner,
        [
            ("psu", audit.collect_psu),
            ("sensors", audit.collect_sensors),
            ("event_log", audit.collect_event_log),
        ],
    )
    assert len(log.read_text().splitlines()) == 1
    messages = [error["message"] for error in document["errors"]]
    hung = next(message for message in messages if message.startswith("timed out after"))
    assert len(messages) == 4 and hung
    assert sum(message.startswith("not run: the BMC did not answer `ipmitool ") for message in messages) == 3


# Real ipmitool 1.8.19 output in the lab, once its BMC said it is Supermicro's (IANA 10876): ipmitool's
# Supermicro decoding appends "()" to sensor-specific events when it has nothing to add.
SUPERMICRO_SEL = """\
   0 | 12/01/26 | 17:29:22 UTC | Memory #0x03 | Uncorrectable ECC | Asserted
   1 | 12/01/26 | 17:29:22 UTC | Power Supply #0x02 | Power Supply AC lost () | Asserted
   2 | 12/01/26 | 17:29:22 UTC | Power Supply #0x02 | Failure detected () | Asserted
   3 | 12/01/26 | 17:29:22 UTC | Power Supply #0x02 | Failure detected () | Deasserted
   4 | 12/01/26 | 17:29:22 UTC | Processor #0x01 | IERR () | Asserted
   5 | 12/01/26 | 17:29:22 UTC | Processor #0x01 | IERR () | Asserted
   6 | 12/01/26 | 17:29:22 UTC | Temperature #0x30 | Upper Critical going high | Asserted
"""


def test_ipmitool_oem_decoding_in_parentheses_is_the_events_detail():
    found = audit.parse_sel_list(SUPERMICRO_SEL)
    assert [(r["event"], r.get("detail"), r["zone"]) for r in found[:3]] == [
        ("Uncorrectable ECC", None, "UTC"),
        ("Power Supply AC lost", None, "UTC"),
        ("Failure detected", None, "UTC"),
    ]
    summary = audit.summarize_sel(found)
    failure = next(group for group in summary if group["event"] == "Failure detected")
    assert (failure["count"], failure["active"], failure["severity"]) == (1, False, "critical")
    dimm = audit.parse_sel_list(
        " 7 | 12/01/26 | 17:30:00 UTC | Memory #0x03 | Correctable ECC (@DIMMA1(CPU1)) | Asserted\n"
    )[0]
    assert (dimm["event"], dimm["detail"]) == ("Correctable ECC", "@DIMMA1(CPU1)")


def test_a_slow_sdr_walk_neither_loses_the_sel_nor_marks_the_bmc_hung(bmc):
    """`sdr elist` and `sel list` walk a whole repository: they get max(--timeout, IPMI_SLOW_TIMEOUT), so a
    2 s walk under --timeout 0.5 still reads the sensors and the SEL."""
    write_tool(
        bmc / "bin",
        "ipmitool",
        'case "$*" in\n'
        '  "sdr elist") /bin/sleep 2; echo "Fan1 | 30h | ok | 29.1 | 2160 RPM";;\n'
        '  "sel info") echo "Entries : 1";;\n'
        '  "sel list") /bin/sleep 2; echo "1 | 03/01/2024 | 10:00:00 | Fan #0x30 | Lower Critical going low '
        '| Asserted";;\n  *) exit 1;;\nesac',
    )
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev", timeout=0.5)
    document = audit.build_document(
        runner, [("sensors", audit.collect_sensors), ("event_log", audit.collect_event_log)]
    )
    assert document["errors"] == []
    assert [s["name"] for s in document["sensors"]] == ["Fan1"]
    assert document["event_log"]["total_records"] == 1


def test_a_slow_walk_out_of_time_after_the_bmc_answered_is_no_hung_bmc(bmc, monkeypatch):
    """An `sdr elist` past even the long limit is an error of its own; the BMC answered `sel info`, so it is
    not hung: `sel list` is still asked and read."""
    monkeypatch.setattr(audit, "IPMI_SLOW_TIMEOUT", 0.5)
    log = bmc / "runs"
    write_tool(
        bmc / "bin",
        "ipmitool",
        f'echo "$*" >> {log}\ncase "$*" in\n'
        '  "sdr elist") exec /bin/sleep 30;;\n'
        '  "sel info") echo "Entries : 1";;\n'
        '  "sel list") echo "1 | 03/01/2024 | 10:00:00 | Fan #0x30 | Lower Critical going low | Asserted";;\n'
        "  *) exit 1;;\nesac",
    )
    runner = audit.Runner(sysfs=bmc / "sys", procfs=bmc / "proc", devfs=bmc / "dev", timeout=0.5)
    ctx = audit.Context("event_log", runner)
    assert audit.ipmitool_text(ctx, ["ipmitool", "sel", "info"]) == "Entries : 1\n"
    assert audit.ipmitool_text(ctx, ["ipmitool", "sdr", "elist"], slow=True) is None
    assert audit.ipmitool_text(ctx, ["ipmitool", "sel", "list"], slow=True).startswith("1 |")
    assert log.read_text().splitlines() == ["sel info", "sdr elist", "sel list"]
    assert [e["message"].startswith("timed out") for e in ctx.errors] == [True]
