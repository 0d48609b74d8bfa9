"""psu: every real `ipmitool fru` fixture, the qemu-lab BMC, the dmidecode type 39 fallback, and the rule
that two ipmitool commands never run at once."""

from __future__ import annotations

import pytest

from audit import audit
from tests.audit.fakes import dmidecode_from_text, lab_output, tool_printing, write_tool
from tests.paths import REAL_FIXTURES

IPMI = REAL_FIXTURES / "ipmitool"
DMI = REAL_FIXTURES / "dmidecode"


def psu(name, manufacturer, product, part, serial, version=None):
    return {
        "name": name,
        "location": None,
        "manufacturer": manufacturer,
        "product": product,
        "part_number": part,
        "serial": serial,
        "version": version,
        "max_power_w": None,
        "status": None,
        "source": "ipmitool fru",
    }


def ident(chassis=(None, None, None), board=(None, None, None, None), product=(None, None, None, None, None)):
    return {
        "chassis": dict(zip(["type", "part_number", "serial"], chassis, strict=True)),
        "board": dict(zip(["manufacturer", "product", "part_number", "serial"], board, strict=True)),
        "product": dict(
            zip(["manufacturer", "name", "part_number", "serial", "asset_tag"], product, strict=True)
        ),
    }


# What a person reads in each `ipmitool fru print` file.
FRU_FILES = {
    "glpi-fru-aspeed-ast2300-no-psu.txt": (
        [],
        ident(("Main Server Chassis", None, None), (None, None, "B48-STI2F03G00C01A", "37030-1513-00248")),
    ),
    "glpi-fru-dell-psu-only-750w.txt": (
        [
            psu("PS1", "DELL", "PWR SPLY,750WP,RDNT,DELTA", "05NF18A01", "CN1797238QA8EI"),
            psu("PS2", "DELL", "PWR SPLY,750WP,RDNT,DELTA", "05NF18A01", "CN1797238QA8B4"),
        ],
        ident(),
    ),
    "glpi-fru-dell-r640-psu.txt": (
        [
            psu("PS1", "DELL", "PWR SPLY,750W,RDNT,DELTA", "05RHVVA03", "CNDED0003G0NQA"),
            psu("PS2", "DELL", "PWR SPLY,750W,RDNT,DELTA", "05RHVVA03", "CNDED0003G0O0P"),
        ],
        ident(
            board=("DELL", "PowerEdge R640", "06NR82A03", "CNIVC0005G0184"),
            product=("DELL", "PowerEdge R640", None, "2RJF153", None),
        ),
    ),
    "glpi-fru-dell-r720.txt": (
        [
            psu("PS1", "DELL", "PWR SPLY,750WP,RDNT,DELTA", "09PXCVA00", "CN1797246N1D4J"),
            psu("PS2", "DELL", "PWR SPLY,750WP,RDNT,DELTA", "09PXCVA00", "CN1797246N1D04"),
        ],
        ident(
            board=("DELL", "PowerEdge R720", "0X3D66A07", "CN7016346K000G"),
            product=("DELL", "PowerEdge R720xd", None, "7PPDY12", None),
        ),
    ),
    "glpi-fru-hp-dl360-gen8.txt": (
        [],
        ident(
            ("Rack Mount Chassis", None, "USE2236835"),
            ("HP", "ProLiant DL360p Gen8", "654081-B21", "USE2236835"),
            ("HP", "ProLiant DL360p Gen8", "654081-B21", "USE2236835", None),
        ),
    ),
    "glpi-fru-intel-s7200ap-samsung-psu.txt": (
        [
            psu(
                "Pwr Supply 1 FRU",
                "SAMSUNG ELECTRO-MECHANICS CO.,LTD",
                "PSSF222201A",
                "H66158-007",
                "CNS2221A4SG7Q0942",
                "01A",
            ),
            psu(
                "Pwr Supply 2 FRU",
                "SAMSUNG ELECTRO-MECHANICS CO.,LTD",
                "PSSF222201A",
                "H66158-007",
                "CNS2221A4SG7Q0944",
                "01A",
            ),
        ],
        ident(
            ("Rack Mount Chassis", None, None),  # "Chassis Serial : ......" is a placeholder
            ("Intel Corporation", "S7200AP", "G94286-351", "QSAD73702029"),
            ("Intel Corporation", "S7200AP", None, None, None),
        ),
    ),
    "glpi-fru-sun-x2200-m2.txt": (  # the builtin FRU is "Device not present": Mainboard (ID 1) carries them
        [],
        ident(
            ("Rack Mount Chassis", "21S39SV0009", "QTFCKS717058B"),
            (None, "S39", "26S39MA0001", "2029QTF0723MT0459"),
            ("Sun Microsystems", "Sun Fire X2200 M2", "3777724-7", "0732QBT057", None),
        ),
    ),
}
NOT_FRU_FILES = [
    "datakit-dell-r620-sdr-elist.txt",
    "datakit-dell-r620-sdr.txt",
    "datakit-huawei-rh2288v3-sdr-elist.txt",
]


@pytest.mark.parametrize("name", sorted(FRU_FILES))
def test_fru_fixture(name):
    records = audit.parse_fru((IPMI / name).read_text())
    supplies = [audit.psu_from_fru(r) for r in records if audit.is_psu_fru(r) and r["present"]]
    expected_supplies, expected_identity = FRU_FILES[name]
    assert supplies == expected_supplies
    assert audit.fru_identity(records) == expected_identity


def test_fru_record_details():
    r640 = audit.parse_fru((IPMI / "glpi-fru-dell-r640-psu.txt").read_text())
    assert [(r["description"], r["id"], r["present"]) for r in r640] == [
        ("Builtin FRU Device", 0, True),
        ("PS1", 1, True),
        ("PS2", 2, True),
        ("BP0", 12, False),
        ("BP1", 13, True),
        ("NDC", 4, True),
        ("PERC1", 10, True),
        ("OEM fru", 17, True),
    ]
    assert r640[0]["fields"]["Board Mfg Date"] == "Mon May 18 12:39:00 2020"  # a value holding colons
    aspeed = audit.parse_fru((IPMI / "glpi-fru-aspeed-ast2300-no-psu.txt").read_text())
    assert [(r["description"], r["id"]) for r in aspeed] == [("Builtin FRU Device", 0), ("AST2300-1", None)]
    sun = audit.parse_fru((IPMI / "glpi-fru-sun-x2200-m2.txt").read_text())
    assert sun[0]["present"] is False
    assert sun[2]["fields"]["Product Extra"] == "02"  # a repeated name keeps its first value


@pytest.mark.parametrize("name", NOT_FRU_FILES)
def test_sdr_output_is_not_fru_output(name, tmp_path, monkeypatch):
    """`ipmitool sdr` tables are not FRU output: as `ipmitool fru` output they give no record, an error
    entry, and the dmidecode type 39 fallback; never a made-up PSU."""
    assert audit.parse_fru((IPMI / name).read_text()) == []
    tool_printing(tmp_path / "bin", "ipmitool", IPMI / name)
    dmidecode_from_text(tmp_path / "bin", DMI / "glpi-type39-psu-hpe-dl380-gen10.txt")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ipmi0").touch()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    data, report = audit.run_collector("psu", audit.collect_psu, runner)
    assert report["status"] == "partial"
    assert report["errors"][0]["command"] == "ipmitool fru"
    assert report["errors"][0]["message"].startswith("no FRU records in the output")
    assert data["source"] == "dmidecode -t 39"
    assert [p["serial"] for p in data["power_supplies"]] == ["5WBXU0ALL875XW", "5WBXU0ALL873NT"]


def test_qemu_lab_psu_fru_print():
    """`ipmitool fru print 1` of the lab's PSU FRU, as the collector reads a FRU's fields."""
    text, rc = lab_output("ipmitool-fru-print1.txt")
    record = {"description": "PSU1 FRU", "id": 1, "fields": audit.parse_fru_fields(text), "present": True}
    assert rc == 0 and audit.is_psu_fru(record)
    assert audit.psu_from_fru(record) == {
        "name": "PSU1 FRU", "location": None, "manufacturer": "Acme Power", "product": "PSU 1600W Titanium",
        "part_number": "PWS-1K62A-1R", "serial": "PSU-SN-000777", "version": "1.0", "max_power_w": None,
        "status": None, "source": "ipmitool fru",
    }


def test_other_qemu_lab_ipmitool_outputs_hold_no_fru_records():
    for name in ["ipmitool-mc-info.txt", "ipmitool-sdr.txt"]:
        text, rc = lab_output(name)
        assert rc == 0 and audit.parse_fru(text) == []


def lab_bmc(tmp_path, log):
    """An ipmitool that answers like the qemu-lab BMC and logs each call's start and end; a second call
    while one runs is logged as OVERLAP."""
    outputs = {}
    for argv, name in [("fru", "ipmitool-fru.txt"), ("fru print 0", "ipmitool-fru-print0.txt")]:
        text, rc = lab_output(name)
        path = tmp_path / f"{name}.out"
        path.write_text(text)
        outputs[argv] = (path, rc)
    cases = "\n".join(f'  "{argv}") /bin/cat {path}; code={rc};;' for argv, (path, rc) in outputs.items())
    write_tool(
        tmp_path / "bin",
        "ipmitool",
        f"""
if ! /bin/mkdir {tmp_path}/ipmi.lock 2>/dev/null; then echo OVERLAP >> {log}; fi
echo "start $*" >> {log}
/bin/sleep 0.3
code=1
case "$*" in
{cases}
esac
echo "end $*" >> {log}
/bin/rmdir {tmp_path}/ipmi.lock 2>/dev/null
exit $code""",
    )


def test_qemu_lab_bmc(tmp_path, monkeypatch):
    """Plain `ipmitool fru` omits the builtin FRU's fields there; `fru print 0` runs after it, not beside."""
    log = tmp_path / "ipmitool.log"
    lab_bmc(tmp_path, log)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ipmi0").touch()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    data, report = audit.run_collector("psu", audit.collect_psu, runner)
    assert report["errors"] == []
    assert data == {
        "source": "ipmitool fru",
        "power_supplies": [
            psu("PSU1 FRU", "Acme Power", "PSU 1600W Titanium", "PWS-1K62A-1R", "PSU-SN-000777", "1.0")
        ],
        **ident(
            ("Rack Mount Chassis", "CHS-PN-0042", "CHS-SN-77001"),
            ("Acme Boards Inc.", "X13DPi-LAB", "BRD-PN-9000", "BRD-SN-123456"),
            ("Acme Servers", "LabServer 2U", "LS2U-PN-1", "SYS-SN-ABC123", "ASSET-0001"),
        ),
    }
    assert log.read_text().split("\n") == ["start fru", "end fru", "start fru print 0", "end fru print 0", ""]


def test_ipmitool_never_runs_twice_at_once(tmp_path, monkeypatch):
    """Several psu collectors at once (as in a thread pool) still reach the BMC one command at a time."""
    import concurrent.futures

    log = tmp_path / "ipmitool.log"
    lab_bmc(tmp_path, log)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ipmi0").touch()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: audit.run_collector("psu", audit.collect_psu, runner), range(3)))
    assert all(report["errors"] == [] for _, report in results)
    lines = log.read_text().split()
    assert "OVERLAP" not in lines and lines.count("start") == 6


def test_no_ipmi_device_is_silent(tmp_path, monkeypatch):
    log = tmp_path / "ipmitool.log"
    lab_bmc(tmp_path, log)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # ipmitool present, dmidecode absent, no /dev/ipmi0
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    data, report = audit.run_collector("psu", audit.collect_psu, runner)
    assert (data, report["status"], report["errors"]) == (None, "skipped", [])
    assert not log.exists()


def test_fru_without_psu_falls_back_to_dmidecode_type_39(tmp_path, monkeypatch):
    tool_printing(tmp_path / "bin", "ipmitool", IPMI / "glpi-fru-hp-dl360-gen8.txt")
    dmidecode_from_text(tmp_path / "bin", DMI / "glpi-type39-psu-supermicro-x11dpu.txt")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ipmi0").touch()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    data, report = audit.run_collector("psu", audit.collect_psu, runner)
    assert report["status"] == "ok"
    assert data["source"] == "dmidecode -t 39"
    assert data["chassis"]["serial"] == "USE2236835"  # the FRU serials stay
    assert data["power_supplies"] == [
        {
            "name": "PWS-751P-1R",
            "location": f"PSU{n}",
            "manufacturer": "SUPERMICRO",
            "product": None,
            "part_number": "PWS-751P-1R",
            "serial": serial,
            "version": "1.1",
            "max_power_w": 750,
            "status": "Present, OK",
            "source": "dmidecode -t 39",
        }
        for n, serial in [(1, "P751PCH10A00840"), (2, "P751PCH10A00839")]
    ]


def test_dmidecode_type_39_hpe():
    supplies = audit.parse_psu_dmi(
        audit.parse_dmidecode((DMI / "glpi-type39-psu-hpe-dl380-gen10.txt").read_text())
    )
    assert [
        (
            p["name"],
            p["location"],
            p["manufacturer"],
            p["serial"],
            p["part_number"],
            p["version"],
            p["max_power_w"],
            p["status"],
        )
        for p in supplies
    ] == [
        ("Power Supply 1", None, "HPE", "5WBXU0ALL875XW", "865414-B21", None, 800, "Present, OK"),
        ("Power Supply 2", None, "HPE", "5WBXU0ALL873NT", "865414-B21", None, 800, "Present, OK"),
    ]


# type 39 structures in the full dmidecode outputs (counted in each file)
TYPE_39 = {
    "linuxhw-dell-poweredge-r740-2s.txt": 2,
    "linuxhw-dell-poweredge-r7525-2s-epyc.txt": 2,
    "linuxhw-gigabyte-g482-z54-gpu-server-2s-epyc.txt": 1,
    "linuxhw-hpe-proliant-dl380-gen10-1of2-sockets.txt": 2,
    "linuxhw-inspur-nf5280m6-2s.txt": 2,
    "linuxhw-phytium-ft2000-4-arm64.txt": 1,
    "linuxhw-supermicro-sys-2049u-tr4-4s.txt": 4,
    "netboxagent-dell-dss7500.txt": 2,
    "netboxagent-hp-sl4540-gen8-trailing-space.txt": 4,
    "uroot-supermicro-x9dbl-server.txt": 1,
    "uroot-synology-rs3614xsplus-nas.txt": 1,
    "linuxhw-dell-poweredge-r720-cpu2-populated-idle.txt": 0,
}


@pytest.mark.parametrize("name", sorted(TYPE_39))
def test_type_39_in_full_outputs(name):
    supplies = audit.parse_psu_dmi(audit.parse_dmidecode((DMI / name).read_text()))
    assert len(supplies) == TYPE_39[name]


def test_type_39_supermicro_4s_anonymised_serials():
    supplies = audit.parse_psu_dmi(
        audit.parse_dmidecode((DMI / "linuxhw-supermicro-sys-2049u-tr4-4s.txt").read_text())
    )
    assert supplies[0]["name"] == "PWS-1K62A-1R" and supplies[0]["location"] == "System Power Supply #1"
    assert supplies[0]["max_power_w"] == 1600 and supplies[0]["serial"] is None  # "--"


@pytest.mark.parametrize("returncode", [0, 1])
def test_fru_exit_status_of_the_last_absent_fru_keeps_the_records(tmp_path, monkeypatch, returncode):
    """`ipmitool fru` exits 1 when the LAST FRU it reads is absent (its status is that FRU's): the records it
    printed are the data, not a failure."""
    tool_printing(tmp_path / "bin", "ipmitool", IPMI / "glpi-fru-dell-r640-psu.txt", returncode)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ipmi0").touch()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    data, report = audit.run_collector("psu", audit.collect_psu, runner)
    assert (report["status"], report["errors"]) == ("ok", [])
    assert [(p["name"], p["serial"]) for p in data["power_supplies"]] == [
        ("PS1", "CNDED0003G0NQA"),
        ("PS2", "CNDED0003G0O0P"),
    ]
    assert data["product"]["serial"] == "2RJF153"


def test_fru_failing_without_records_is_an_error(tmp_path, monkeypatch):
    tool_printing(tmp_path / "bin", "ipmitool", tmp_path / "none")
    (tmp_path / "bin" / "ipmitool").write_text(
        "#!/bin/sh\necho 'Could not open device at /dev/ipmi0: No such device' >&2\nexit 1\n"
    )
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ipmi0").touch()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    data, report = audit.run_collector("psu", audit.collect_psu, runner)
    assert (data, report["status"]) == (None, "error")
    assert report["errors"] == [
        {
            "collector": "psu",
            "command": "ipmitool fru",
            "message": "exit status 1: Could not open device at /dev/ipmi0: No such device",
        }
    ]
