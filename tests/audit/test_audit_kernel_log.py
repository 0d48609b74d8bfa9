"""kernel_log: every real kernel log excerpt (dmesg, dmesg -T, journal, syslog, RFC 5424, a ras-mc-ctl dump)
parsed with what a person reads in it, the forms the files lack (GHES, old AER ids, dmesg -H, ATA UNC,
NVMe timeouts, Xids and their meanings), findings pointing at the GPU, disk or PCIe function of the
document, one memory story from three sources, and the collector running plain `dmesg`."""

from __future__ import annotations

import pytest

from audit import audit
from tests.audit.fakes import tool_printing, write_tool
from tests.paths import REAL_FIXTURES

KERNEL = REAL_FIXTURES / "kernel"


def events(name):
    return audit.parse_kernel_log((KERNEL / name).read_text())["events"]


def brief(found):
    return [
        (e["kind"], e["severity"], e["device"], e["message"], e["count"], e["first"], e["last"])
        for e in found
    ]


# file -> what a person reads in it: (kind, severity, device, message, count, first, last)
KERNEL_FILES = {
    "gh-bbf-29-dmesg-mpt2sas-io-error.log": [
        (
            "disk_io",
            "warning",
            "sde",
            "I/O errors",
            1,
            "26058.722563 s after boot",
            "26058.722563 s after boot",
        ),
        (
            "disk_medium",
            "critical",
            "sde",
            "medium errors (unreadable sectors)",
            1,  # Sense Key : 0x3
            "26058.722738 s after boot",
            "26058.722738 s after boot",
        ),
    ],
    "gh-edac-utils-10-dmesg-T-edac-sbridge-ce.log": [
        (
            "memory",
            "warning",
            "CPU_SrcID#0_Ha#0_Chan#2_DIMM#0",
            "corrected memory errors",
            1,
            "Mon Jan 27 19:27:15 2020",
            "Mon Jan 27 19:27:15 2020",
        ),
    ],
    "gh-longhorn-1920-dmesg-T-critical-medium-error.log": [
        (
            "disk_medium",
            "critical",
            "sde",
            "medium errors (unreadable sectors)",
            3,
            "Tue Oct 27 08:51:30 2020",
            "Tue Oct 27 08:51:30 2020",
        ),
    ],
    "gh-longhorn-2030-rfc5424-syslog-critical-medium-error.log": [
        (
            "disk_medium",
            "critical",
            "sdd",
            "medium errors (unreadable sectors)",
            1,
            "2020-12-02T21:55:55.868746+01:00",
            "2020-12-02T21:55:55.872025+01:00",
        ),
        (
            "disk_io",
            "warning",
            "sdd",
            "I/O errors",
            5,
            "2020-12-02T21:55:55.868843+01:00",
            "2020-12-02T21:55:55.871064+01:00",
        ),
    ],
    "gh-mcelog-70-nuc-j5005-journal-mce-bank4.log": [  # status a6...: UC set
        (
            "machine_check",
            "critical",
            "CPU 0",
            "uncorrected machine check, bank 4",
            1,
            "Sep 16 19:51:15",
            "Sep 16 19:51:15",
        ),
    ],
    "gh-minisforum-ms02-10-journal-aer-uncorrectable-nonfatal-acsviol.log": [
        (
            "pcie_aer",
            "info",
            "0000:80:1b.4",
            "PCIe AER corrected errors",
            2,
            "Sep 22 09:59:09",
            "Sep 22 09:59:09",
        ),
        (
            "pcie_aer",
            "warning",
            "0000:80:1b.4",
            "PCIe AER uncorrectable non-fatal errors",
            1,
            "Sep 22 09:59:09",
            "Sep 22 09:59:09",
        ),
    ],
    "gh-nvsentinel-155-dmesg-nvrm-fallen-off-bus-multiline.log": [
        (
            "gpu_lost",
            "critical",
            "0000:b3:00.0",
            "GPU has fallen off the bus (not responding)",
            1,
            "1843.308145 s after boot",
            "1843.308145 s after boot",
        ),
    ],
    "gh-open-gpu-kmod-1150-nvrm-xid45-after-xid149-145.log": [
        (
            "nvidia_xid",
            "critical",
            "0000:dc:00.0",
            "NVIDIA Xid 45: preemptive cleanup, due to a previous error (after Xid 149)",
            2,
            None,
            None,
        ),
        (
            "nvidia_xid",
            "critical",
            "0000:ed:00.0",
            "NVIDIA Xid 45: preemptive cleanup, due to a previous error (after Xid 145)",
            2,
            None,
            None,
        ),
        (
            "nvidia_xid",
            "critical",
            "0000:ba:00.0",
            "NVIDIA Xid 45: preemptive cleanup, due to a previous error (after Xid 145)",
            2,
            None,
            None,
        ),
        (
            "nvidia_xid",
            "critical",
            "0000:97:00.0",
            "NVIDIA Xid 45: preemptive cleanup, due to a previous error (after Xid 145)",
            1,
            None,
            None,
        ),
    ],
    "gh-openebs-1433-syslog-critical-medium-error.log": [
        (
            "disk_medium",
            "critical",
            "sdb",
            "medium errors (unreadable sectors)",
            2,
            "Apr 16 07:07:38",
            "Apr 16 07:07:38",
        ),
        ("disk_io", "warning", "sdb", "I/O errors", 3, "Apr 16 07:07:38", "Apr 16 07:07:38"),
    ],
    "gh-osm-operations-300-syslog-edac-ce-legacy-format.log": [  # 4+2+6+1+1+1+1 errors on 7 lines
        (
            "memory",
            "warning",
            "CPU#0Channel#2_DIMM#0",
            "corrected memory errors",
            16,
            "May 7 06:45:12",
            "May 7 06:45:20",
        ),
    ],
    "gh-osm-operations-759-ras-mc-ctl-errors-partial.txt": [
        (
            "memory",
            "warning",
            "CPU_SrcID#1_MC#1_Chan#1_DIMM#0",
            "corrected memory errors",
            5,
            "2022-10-16 08:54:38 +0000",
            "2022-10-16 09:07:58 +0000",
        ),
    ],
    "gh-radiasoft-devops-134-journal-edac-sbridge-ce-scrub.log": [
        (
            "memory",
            "warning",
            "CPU_SrcID#1_Ha#0_Chan#0_DIMM#0",
            "corrected memory errors",
            1,
            "Feb 23 03:28:16",
            "Feb 23 03:28:16",
        ),
    ],
    "gh-rasdaemon-155-dmesg-tail-mce-bank9.log": [
        (
            "machine_check",
            "warning",
            "CPU 0",
            "corrected machine check, bank 9",
            1,
            "1366.830251 s after boot",
            "1366.830251 s after boot",
        ),
    ],
    "gh-rpi-linux-6661-journal-nvme-controller-down.log": [
        ("nvme", "critical", "nvme0", "NVMe controller is down", 2, "Jan 29 16:41:37", "Jan 29 17:09:49"),
        ("disk_io", "warning", "nvme0n1", "I/O errors", 1, "Jan 29 17:09:49", "Jan 29 17:09:49"),
    ],
    "gh-rpi-pcie-116-dmesg-aer-uncorrected-nonfatal-cm4.log": [
        (
            "pcie_aer",
            "warning",
            "0000:00:00.0",
            "PCIe AER uncorrectable non-fatal errors",
            2,
            "58.258850 s after boot",
            "58.321146 s after boot",
        ),
    ],
}


def test_kernel_files_are_all_covered():
    assert {path.name for path in KERNEL.iterdir()} == set(KERNEL_FILES)


@pytest.mark.parametrize("name", sorted(KERNEL_FILES))
def test_what_a_person_reads_in_each_file(name):
    assert brief(events(name)) == KERNEL_FILES[name]


def test_edac_sbridge_location_and_the_mce_lines_are_one_error():
    found = events("gh-edac-utils-10-dmesg-T-edac-sbridge-ce.log")
    assert (found[0]["memory_controller"], found[0]["location"]) == (0, "channel 2 slot 0")
    assert all(event["kind"] != "machine_check" for event in found)  # the MCE lines are EDAC's error


def test_aer_error_names_and_samples():
    found = events("gh-rpi-pcie-116-dmesg-aer-uncorrected-nonfatal-cm4.log")
    assert found[0]["errors"] == ["Transaction Layer", "CmpltTO", "MalfTLP"]
    assert found[0]["sample"] == (
        "[   58.258850] pcieport 0000:00:00.0: AER: Uncorrected (Non-Fatal) error received: 0000:00:00.0"
    )
    assert events("gh-minisforum-ms02-10-journal-aer-uncorrectable-nonfatal-acsviol.log")[1]["errors"] == [
        "Transaction Layer",
        "ACSViol",
    ]


def test_multiline_nvrm_message_keeps_its_lines_in_the_sample():
    found = events("gh-nvsentinel-155-dmesg-nvrm-fallen-off-bus-multiline.log")
    assert found[0]["sample"].count("\n") == 2 and "fallen off the bus" in found[0]["sample"]


WORSE = """\
[Mon Dec  1 10:00:00 2025] {1}[Hardware Error]: Hardware error from APEI Generic Hardware Error Source: 1
[Mon Dec  1 10:00:00 2025] {1}[Hardware Error]: event severity: fatal
[Mon Dec  1 10:00:00 2025] {1}[Hardware Error]:  Error 0, type: fatal
[Mon Dec  1 10:00:00 2025] {1}[Hardware Error]:   section_type: PCIe error
[Mon Dec  1 10:00:00 2025] {1}[Hardware Error]:   device_id: 0000:3b:00.0
<3>[  12.5] pcieport 0000:00:1c.0: AER: Corrected error received: id=00e8\r
<3>[  12.5] pcieport 0000:00:1c.0: PCIe Bus Error: severity=Corrected, type=Physical Layer, \
id=00e8(Receiver ID)
<3>[  12.5] pcieport 0000:00:1c.0:   device [8086:a110] error status/mask=00000001/00002000
<3>[  12.5] pcieport 0000:00:1c.0:    [ 0] Receiver Error         (First)
[Dec 1 10:01] pcieport 0000:5d:00.0: PCIe Bus Error: severity=Uncorrected (Fatal), \
type=Transaction Layer, (Requester ID)
[  +0.000123] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
[  +0.000200] NVRM: Xid (PCI:0000:3b:00): 48, pid=1, name=x, An uncorrectable double bit error
[  +0.000300] NVRM: Xid (PCI:0000:3b:00): 48, pid=1, name=x, An uncorrectable double bit error
2025-12-01T10:02:00+0000 host kernel: NVRM: Xid (PCI:0000:86:00): 999, pid=1, name=x, something new
Dec  1 10:03:00 host kernel: ata3.00: error: { UNC }
Dec  1 10:03:01 host kernel: nvme nvme1: I/O 123 QID 4 timeout, aborting
Dec  1 10:03:02 host kernel: nvme nvme1: I/O 124 QID 4 timeout, reset controller
Dec  1 10:03:03 host kernel: Buffer I/O error on dev sdc1, logical block 0, async page read
Dec  1 10:03:04 host kernel: EDAC MC0: UE row 2, channel 0, label "DIMM_B1": i5000 UE
Dec  1 10:03:05 host kernel: EDAC MC1: 1 UE memory read error on unknown memory (page:0x0 offset:0x0)
garbage \x00 line with no meaning
[  13.0] mce: [Hardware Error]: Machine check events logged
"""


def test_worse_forms():
    found = audit.parse_kernel_log(WORSE)["events"]
    assert brief(found) == [
        (
            "hardware_error",
            "critical",
            "0000:3b:00.0",
            "firmware-reported (APEI GHES) fatal hardware error (PCIe error)",
            1,
            "Mon Dec 1 10:00:00 2025",
            "Mon Dec 1 10:00:00 2025",
        ),
        (
            "pcie_aer",
            "info",
            "0000:00:1d.0",
            "PCIe AER corrected errors",
            1,
            "12.500000 s after boot",
            "12.500000 s after boot",
        ),
        (
            "pcie_aer",
            "critical",
            "0000:5d:00.0",
            "PCIe AER uncorrectable fatal errors",
            1,
            "Dec 1 10:01",
            "Dec 1 10:01",
        ),
        (
            "nvidia_xid",
            "critical",
            "0000:3b:00.0",
            "NVIDIA Xid 79: GPU has fallen off the bus",
            1,
            None,
            None,
        ),
        ("nvidia_xid", "critical", "0000:3b:00.0", "NVIDIA Xid 48: double-bit ECC error", 2, None, None),
        (
            "nvidia_xid",
            "warning",
            "0000:86:00.0",
            "NVIDIA Xid 999: see NVIDIA's Xid catalog",
            1,
            "2025-12-01T10:02:00+0000",
            "2025-12-01T10:02:00+0000",
        ),
        (
            "disk_medium",
            "critical",
            "ata3.00",
            "medium errors (unreadable sectors)",
            1,
            "Dec 1 10:03:00",
            "Dec 1 10:03:00",
        ),
        ("nvme", "warning", "nvme1", "NVMe I/O timeouts", 2, "Dec 1 10:03:01", "Dec 1 10:03:02"),
        ("disk_io", "warning", "sdc", "I/O errors", 1, "Dec 1 10:03:03", "Dec 1 10:03:03"),
        ("memory", "critical", "DIMM_B1", "uncorrected memory errors", 1, "Dec 1 10:03:04", "Dec 1 10:03:04"),
        (
            "memory",
            "critical",
            "unknown memory",
            "uncorrected memory errors",
            1,
            "Dec 1 10:03:05",
            "Dec 1 10:03:05",
        ),
        (
            "machine_check",
            "warning",
            None,
            "machine check events logged",
            1,
            "13.000000 s after boot",
            "13.000000 s after boot",
        ),
    ]
    assert found[1]["errors"] == ["Physical Layer", "Receiver Error"]
    assert audit.parse_kernel_log(WORSE)["lines"] == len(WORSE.strip().split("\n"))


def test_findings_point_at_the_gpu_and_the_disk_of_the_document():
    document = {
        "nvidia": {"gpus": [{"bus_id": "0000:97:00.0"}, {"bus_id": "0000:dc:00.0"}]},
        "pcie": [{"address": "0000:ed:00.0", "vendor": "NVIDIA Corporation", "device": "GH100"}],
        "storage": [
            {"name": "sda", "path": "/dev/sda"},
            {"name": "sdb", "path": "/dev/sdb", "model": "ST4000", "serial": "ZC1"},
        ],
        "kernel_log": audit.parse_kernel_log(
            (KERNEL / "gh-open-gpu-kmod-1150-nvrm-xid45-after-xid149-145.log").read_text()
            + (KERNEL / "gh-openebs-1433-syslog-critical-medium-error.log").read_text()
        ),
    }
    audit.link_kernel_events(document)
    found = audit.kernel_log_findings(document)
    assert [(f["severity"], f["component"], f["ref"], f["count"]) for f in found] == [
        ("critical", "gpu 0000:dc:00.0", "/nvidia/gpus/1", 2),  # Xid 45 after NVLink Xid 149: the cause's
        ("critical", "gpu 0000:ed:00.0", "/pcie/0", 2),
        ("critical", "gpu 0000:ba:00.0", "/kernel_log/events/2", 2),
        ("critical", "gpu 0000:97:00.0", "/nvidia/gpus/0", 1),
        ("critical", "disk /dev/sdb (ST4000, ZC1)", "/storage/1", 3),  # medium and I/O errors: one story
    ]
    assert found[0]["message"].startswith("kernel log: gpu 0000:dc:00.0: NVIDIA Xid 45")
    assert (
        found[4]["message"] == "kernel log: disk /dev/sdb (ST4000, ZC1): medium errors (unreadable sectors), "
        "2 times; I/O errors, 3 times,"
        " at Apr 16 07:07:38"
    )
    assert found[0]["sources"] == ["kernel_log"]


def test_one_memory_story_from_edac_counters_kernel_lines_and_the_event_log():
    """The same DIMM in sysfs EDAC (by label), in the kernel's EDAC lines and as SEL ECC events: one finding
    that lists its sources, pointing at the DIMM's slot."""
    memory = {
        "slots": [{"handle": "0x0011", "locator": "DIMM_A1"}, {"handle": "0x0012", "locator": "DIMM_A2"}],
        "edac": {
            "controllers": [{"name": "mc0", "uncorrected_noinfo": 0}],
            "dimms": [
                {
                    "controller": "mc0",
                    "name": "dimm2",
                    "label": "CPU_SrcID#0_Ha#0_Chan#2_DIMM#0",
                    "location": "channel 2 slot 0",
                    "corrected": 17,
                    "uncorrected": 0,
                    "slot_handle": "0x0012",
                }
            ],
        },
    }
    sel = audit.summarize_sel(
        audit.parse_sel_list(
            (REAL_FIXTURES / "ipmitool" / "collegeboreal-hp-proliant-dl360-g7-sel-list.txt").read_text()
        )
    )
    document = {
        "memory": memory,
        "event_log": {"summary": sel},
        "kernel_log": audit.parse_kernel_log(
            (KERNEL / "gh-edac-utils-10-dmesg-T-edac-sbridge-ce.log").read_text()
        ),
    }
    found = (
        audit.memory_error_findings(document)
        + audit.event_log_findings(document)
        + audit.kernel_log_findings(document)
    )
    assert found == [
        {
            "severity": "warning",
            "component": "memory",
            "message": "DIMM CPU_SrcID#0_Ha#0_Chan#2_DIMM#0: 17 corrected memory errors (EDAC); "
            "1 in the kernel log, "
            'at Mon Jan 27 19:27:15 2020; BMC event log "Correctable ECC logging limit reached" 2 times, '
            "first 2021-06-29T08:18:06, last 2021-11-03T15:01:48",
            "sources": ["memory", "kernel_log", "event_log"],
            "ref": "/memory/slots/1",
        }
    ]


def test_kernel_line_joins_the_sysfs_dimm_by_location_when_labels_differ():
    memory = {
        "slots": [],
        "edac": {
            "controllers": [],
            "dimms": [
                {
                    "controller": "mc0",
                    "name": "dimm0",
                    "label": "CPU0_DIMM_C1",
                    "location": "channel 2 slot 0",
                    "corrected": 0,
                    "uncorrected": 3,
                }
            ],
        },
    }
    kernel = audit.parse_kernel_log(
        "EDAC MC0: 3 UE memory read error on CPU_SrcID#0_Ha#0_Chan#2_DIMM#0 "
        "(channel:2 slot:0 page:0x1 offset:0x0 grain:32 syndrome:0x0)"
    )
    found = audit.memory_error_findings({"memory": memory, "kernel_log": kernel})
    assert [(f["severity"], f["message"]) for f in found] == [
        ("critical", "DIMM CPU0_DIMM_C1: 3 uncorrected memory errors (EDAC); 3 in the kernel log")
    ]


def test_healthy_boot_log_has_no_event():
    text = (
        "[    0.000000] Linux version 6.6.58-0-lts (buildozer@build-3-20-x86_64)\n"
        "[    0.412345] mce: CPU supports 22 MCE banks\n"
        "[    1.234567] nvme nvme0: 8/0/0 default/read/poll queues\n"
        "[    1.300000] EDAC MC: Ver: 3.0.0\n"
        "[    2.000000] pcieport 0000:00:01.0: AER: enabled with IRQ 120\n"
        "[    3.000000] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.54.14\n"
    )
    assert audit.parse_kernel_log(text)["events"] == []


def test_collector_runs_plain_dmesg(tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    log = KERNEL / "gh-rpi-pcie-116-dmesg-aer-uncorrected-nonfatal-cm4.log"
    write_tool(tmp_path / "bin", "dmesg", f'echo "$*" >> {calls}\n/bin/cat {log}')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "s", procfs=tmp_path / "p", devfs=tmp_path / "d")
    data, report = audit.run_collector("kernel_log", audit.collect_kernel_log, runner)
    assert (report["status"], calls.read_text(), data["source"], data["lines"]) == ("ok", "\n", "dmesg", 15)
    assert [event["kind"] for event in data["events"]] == ["pcie_aer"]


def test_collector_refused_dmesg_is_an_error(tmp_path, monkeypatch):
    tool_printing(tmp_path / "bin", "dmesg", tmp_path / "none", returncode=1)
    (tmp_path / "bin" / "dmesg").write_text(
        "#!/bin/sh\necho 'dmesg: klogctl: Operation not permitted' >&2\nexit 1\n"
    )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "s", procfs=tmp_path / "p", devfs=tmp_path / "d")
    data, report = audit.run_collector("kernel_log", audit.collect_kernel_log, runner)
    assert (data, report["errors"][0]["message"]) == (
        None,
        "exit status 1: dmesg: klogctl: Operation not permitted",
    )


def test_aer_errors_the_sysfs_counters_already_tell_are_one_finding():
    """The kernel's AER lines and the function's sysfs AER counters are the same errors: the pcie finding
    tells non-fatal and fatal ones, the kernel log only what the counters do not (here: corrected)."""
    log = audit.parse_kernel_log(
        (KERNEL / "gh-minisforum-ms02-10-journal-aer-uncorrectable-nonfatal-acsviol.log").read_text()
    )
    entry = {
        "address": "0000:80:1b.4",
        "vendor": "Intel Corporation",
        "device": "Root Port",
        "aer": {"correctable": 0, "nonfatal": 1, "fatal": 0, "counters": {}},
    }
    document = {"pcie": [entry], "kernel_log": log}
    audit.link_kernel_events(document)
    kernel = audit.kernel_log_findings(document)
    assert [(f["severity"], f["component"], f["ref"]) for f in kernel] == [
        ("info", "pcie 0000:80:1b.4 (Intel Corporation Root Port)", "/pcie/0")
    ]
    entry["aer"] = None  # no counters (an old kernel): the kernel log tells it
    assert [f["severity"] for f in audit.kernel_log_findings(document)] == ["info", "warning"]


GHES_MEMORY = """\
[ 5021.350000] {1}[Hardware Error]: Hardware error from APEI Generic Hardware Error Source: 1
[ 5021.350001] {1}[Hardware Error]: It has been corrected by h/w and requires no further action
[ 5021.350002] {1}[Hardware Error]: event severity: corrected
[ 5021.350003] {1}[Hardware Error]:  Error 0, type: corrected
[ 5021.350004] {1}[Hardware Error]:  fru_text: Card03, ChnB, DIMM0
[ 5021.350005] {1}[Hardware Error]:   section_type: memory error
[ 5021.350006] {1}[Hardware Error]:   physical_address: 0x000000105a8c1000
[ 5021.350007] {1}[Hardware Error]:   DIMM location: CPU 2 DIMM 12
"""


def test_firmware_memory_record_alone_and_with_its_edac_line():
    """APEI GHES (the kernel's cper format): alone, a firmware-reported error at its DIMM location; followed
    by ghes_edac's EDAC line about the same error, one memory error of that DIMM."""
    alone = audit.parse_kernel_log(GHES_MEMORY)["events"]
    assert brief(alone) == [
        (
            "hardware_error",
            "warning",
            "CPU 2 DIMM 12",
            "firmware-reported (APEI GHES) corrected hardware error (memory error)",
            1,
            "5021.350002 s after boot",
            "5021.350002 s after boot",
        )
    ]
    edac = (
        "[ 5021.350100] EDAC MC0: 1 CE Memory Read error on CPU 2 DIMM 12 (node:3 card:1 module:0 rank:1)\n"
    )
    both = audit.parse_kernel_log(GHES_MEMORY + edac)["events"]
    assert [(e["kind"], e["device"], e["count"]) for e in both] == [("memory", "CPU 2 DIMM 12", 1)]


def test_xid_79_and_the_fallen_off_the_bus_lines_are_one_fault():
    text = (
        "[ 99.1] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, "
        "GPU has fallen off the bus.\n"
        "[ 99.2] NVRM: GPU 0000:3b:00.0: GPU has fallen off the bus.\n"
        "[ 99.3] NVRM: GPU 0000:5e:00.0: GPU has fallen off the bus.\n"
    )
    found = audit.parse_kernel_log(text)["events"]
    assert [(e["kind"], e["device"], e["count"]) for e in found] == [
        ("nvidia_xid", "0000:3b:00.0", 1),
        ("gpu_lost", "0000:5e:00.0", 1),
    ]


def test_collector_empty_ring_buffer_is_a_log_without_errors(tmp_path, monkeypatch):
    write_tool(tmp_path / "bin", "dmesg", "exit 0")  # after `dmesg -C`
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "s", procfs=tmp_path / "p", devfs=tmp_path / "d")
    data, report = audit.run_collector("kernel_log", audit.collect_kernel_log, runner)
    assert (data, report["status"]) == ({"source": "dmesg", "lines": 0, "events": []}, "ok")


def test_a_fatal_record_before_a_corrected_error_on_another_dimm_is_never_folded():
    """MCE and GHES records fold into an EDAC line only when it has their severity and DIMM: a fatal
    machine check or a fatal GHES memory record followed by a corrected error on DIMM_B2 stays critical."""
    ce = "[  206.0] EDAC MC0: 1 CE memory read error on DIMM_B2 (channel:1 slot:0 page:0x1 offset:0x0)"
    mce = audit.parse_kernel_log(
        "[  205.0] mce: [Hardware Error]: CPU 3: Machine Check Exception: 5 Bank 1: b200000000000175\n"
        "[  205.0] Kernel panic - not syncing: Fatal machine check\n" + ce + "\n"
    )["events"]
    assert [(e["kind"], e["severity"], e["device"]) for e in mce] == [
        ("machine_check", "critical", "CPU 3"),
        ("machine_check", "critical", None),
        ("memory", "warning", "DIMM_B2"),
    ]
    ghes = (
        "[  201.0] {1}[Hardware Error]: Hardware error from APEI Generic Hardware Error Source: 1\n"
        "[  201.0] {1}[Hardware Error]: event severity: fatal\n"
        "[  201.0] {1}[Hardware Error]:   section_type: memory error\n"
        "[  201.0] {1}[Hardware Error]:   DIMM location: CPU0_DIMM_A1\n"
    )
    found = audit.parse_kernel_log(ghes + ce + "\n")["events"]
    assert [(e["kind"], e["severity"], e["device"]) for e in found] == [
        ("hardware_error", "critical", "CPU0_DIMM_A1"),
        ("memory", "warning", "DIMM_B2"),
    ]
    same = ghes + "[  202.0] EDAC MC0: 1 UE memory read error on CPU0_DIMM_A1 (channel:0 slot:0 page:0x1)\n"
    assert [(e["kind"], e["severity"]) for e in audit.parse_kernel_log(same)["events"]] == [
        ("memory", "critical")
    ]


ATA_UNC_LOG = """\
[ 1000.100000] ata3.00: exception Emask 0x0 SAct 0x1000 SErr 0x0 action 0x0
[ 1000.100020] ata3.00: failed command: READ FPDMA QUEUED
[ 1000.100040] ata3.00: status: { DRDY ERR }
[ 1000.100050] ata3.00: error: { UNC }
[ 1000.110000] ata3.00: configured for UDMA/133
[ 1000.110010] sd 2:0:0:0: [sdb] tag#12 FAILED Result: hostbyte=DID_OK driverbyte=DRIVER_SENSE cmd_age=3s
[ 1000.110020] sd 2:0:0:0: [sdb] tag#12 Sense Key : Medium Error [current]
[ 1000.110030] sd 2:0:0:0: [sdb] tag#12 Add. Sense: Unrecovered read error - auto reallocate failed
[ 1000.110050] I/O error, dev sdb, sector 2048 op 0x0:(READ) flags 0x80700 phys_seg 1 prio class 2
[ 1000.110060] ata3: EH complete
"""


def test_one_bad_sector_is_one_disk_finding_with_libata_mapped_through_sysfs(tmp_path, monkeypatch):
    """libata's `ata3.00: error: { UNC }`, the SCSI sense and the block layer's I/O error of one read are
    one finding about sdb (ata3.00 is sdb by where /sys/block/sdb points)."""
    device = tmp_path / "sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sdb"
    device.mkdir(parents=True)
    (tmp_path / "sys/block").mkdir()
    (tmp_path / "sys/block/sdb").symlink_to(device)
    (tmp_path / "dmesg.txt").write_text(ATA_UNC_LOG)
    tool_printing(tmp_path / "bin", "dmesg", tmp_path / "dmesg.txt")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    log, report = audit.run_collector("kernel_log", audit.collect_kernel_log, runner)
    assert report["status"] == "ok"
    assert [(e["kind"], e["device"], e["count"]) for e in log["events"]] == [
        ("disk_medium", "sdb", 1),
        ("disk_io", "sdb", 1),
    ]
    document = {"storage": [{"name": "sdb", "path": "/dev/sdb", "model": "ST4000", "serial": "ZC1"}],
                "kernel_log": log}
    audit.link_kernel_events(document)
    found = audit.kernel_log_findings(document)
    assert [(f["severity"], f["ref"], f["count"], f["message"]) for f in found] == [
        (
            "critical",
            "/storage/0",
            1,
            "kernel log: disk /dev/sdb (ST4000, ZC1): medium errors (unreadable sectors), 1 time; "
            "I/O errors, 1 time, first 1000.100050 s after boot, last 1000.110050 s after boot",
        )
    ]
    unmapped = audit.parse_kernel_log(ATA_UNC_LOG)["events"]
    assert [e["device"] for e in unmapped] == ["ata3.00", "sdb", "sdb"]


def test_one_dying_nvme_is_one_finding_at_its_worst_severity():
    log = audit.parse_kernel_log(
        "[ 10.0] nvme nvme0: I/O 5 QID 3 timeout, aborting\n"
        "[ 10.1] nvme nvme0: I/O 5 QID 3 timeout, reset controller\n"
        "[ 10.2] nvme nvme0: resetting controller\n"
        "[ 11.0] nvme nvme0: controller is down; will reset: CSTS=0xffffffff, PCI_STATUS=0xffff\n"
        "[ 11.1] nvme nvme0: Removing after probe failure status: -19\n"
        "[ 11.2] nvme0n1: detected capacity change from 100 to 0\n"
    )
    found = audit.kernel_log_findings({"kernel_log": log})
    assert [(f["severity"], f["component"], f["count"]) for f in found] == [("critical", "disk nvme0", 2)]
    assert found[0]["message"] == (
        "kernel log: disk nvme0: NVMe I/O timeouts, 2 times; NVMe controller resets, 1 time; NVMe controller "
        "is down, 1 time; NVMe removing after probe failure, 1 time, first 10.000000 s after boot, "
        "last 11.100000 s after boot"
    )


def dl360(name):
    return (REAL_FIXTURES / "ipmitool" / f"collegeboreal-hp-proliant-dl360-g7-{name}.txt").read_text()


def test_the_sdr_memory_sensor_and_the_sel_ecc_events_of_one_machine_are_one_story():
    """The DL360 G7's SDR `Memory` sensor 2Bh says "Correctable ECC, Correctable ECC logging limit reached"
    and its SEL has `Memory #0x2b` ECC events: one finding with both sources, pointing at the SEL entry;
    with a kernel EDAC line about one DIMM, all three are that DIMM's story."""
    sensors = audit.parse_sensors(dl360("sdr-elist-full"))
    summary = audit.summarize_sel(audit.parse_sel_list(dl360("sel-list")))
    document = {"sensors": sensors, "event_log": {"summary": summary}}
    found = audit.memory_error_findings(document) + audit.sensor_findings(document)
    ecc = [f for f in found if "ECC" in f["message"]]
    assert ecc == [
        {
            "severity": "warning",
            "component": "memory",
            "message": 'BMC event log: Memory #0x2b "Correctable ECC logging limit reached" (correctable '
            "memory errors (so many that the BMC stopped logging them)), 2 times, 2021-06-29T08:18:06 to "
            '2021-11-03T15:01:48; BMC sensor Memory "Correctable ECC", '
            '"Correctable ECC logging limit reached"',
            "count": 2,
            "first": "2021-06-29T08:18:06",
            "last": "2021-11-03T15:01:48",
            "sources": ["event_log", "sensors"],
            "ref": "/event_log/summary/0",
        }
    ]
    kernel = (KERNEL / "gh-edac-utils-10-dmesg-T-edac-sbridge-ce.log").read_text()
    document["kernel_log"] = audit.parse_kernel_log(kernel)
    found = audit.memory_error_findings(document)
    assert [(f["message"], f["sources"]) for f in found] == [
        (
            "DIMM CPU_SrcID#0_Ha#0_Chan#2_DIMM#0: corrected memory errors: 1 in the kernel log, at Mon Jan "
            '27 19:27:15 2020; BMC event log "Correctable ECC logging limit reached" 2 times, first '
            '2021-06-29T08:18:06, last 2021-11-03T15:01:48; BMC sensor Memory "Correctable ECC", '
            '"Correctable ECC logging limit reached"',
            ["kernel_log", "event_log", "sensors"],
        )
    ]


def test_a_sel_ecc_event_naming_its_dimm_joins_that_dimms_story():
    """Two DIMMs with corrected errors in the kernel log; the SEL's ECC event names DIMM_B2 (ipmitool's
    Supermicro decoding "@DIMM_B2(CPU1)"): it joins DIMM_B2, not a story of its own."""
    document = {
        "kernel_log": audit.parse_kernel_log(
            "[ 10.0] EDAC MC0: 1 CE memory read error on DIMM_A1 (channel:0 slot:0 page:0x1)\n"
            "[ 11.0] EDAC MC0: 2 CE memory read error on DIMM_B2 (channel:1 slot:0 page:0x1)\n"
        ),
        "event_log": {
            "summary": audit.summarize_sel(
                audit.parse_sel_list(
                    "1 | 12/01/26 | 17:29:22 UTC | Memory #0x03 | Correctable ECC (@DIMM_B2(CPU1)) | "
                    "Asserted\n"
                    "2 | 12/01/26 | 17:29:23 UTC | Memory #0x03 | Correctable ECC (@DIMM_A1(CPU1)) | "
                    "Asserted\n"
                )
            )
        },
    }
    assert [g["detail"] for g in document["event_log"]["summary"]] == ["@DIMM_B2(CPU1)", "@DIMM_A1(CPU1)"]
    found = audit.memory_error_findings(document)
    assert [(f["message"].split(":")[0], f["sources"]) for f in found] == [
        ("DIMM DIMM_A1", ["kernel_log", "event_log"]),
        ("DIMM DIMM_B2", ["kernel_log", "event_log"]),
    ]
    assert "2026-12-01T17:29:22" in found[1]["message"]


@pytest.mark.parametrize(("name", "text", "named"), [
    ("DIMM_A1", "CPU0_DIMM_A1", True),        # GHES location and EDAC label of one DIMM
    ("CPU0_DIMM_A1", "DIMM_A1", False),       # the longer name is not in the shorter (asked both ways)
    ("DIMM_A1", "@DIMMA1(CPU1)", True),       # a SEL event's detail
    ("DIMM_A1", "@DIMMA10(CPU1)", False),     # another slot, though its name starts the same
    ("DIMM_A1", "CPU0_DIMM_A10", False),
    ("A1", "DIMM_A1", False),                 # too short to name a DIMM
    (None, "DIMM_A1", False),
])
def test_one_dimm_name_comparison(name, text, named):
    assert audit.dimm_named(name, text) is named
