"""bmc: every real `ipmitool mc info` and `lan print` fixture, the LAN channel found with `channel info`
(not assumed to be 1), secrets never captured, the no-address finding, and a BMC that hangs."""

from __future__ import annotations

import json
import shlex

import pytest

from audit import audit
from tests.audit.fakes import assert_schema, failed_checks, lab_output, write_tool
from tests.paths import REAL_FIXTURES

IPMI = REAL_FIXTURES / "ipmitool"


def mc(fw, manufacturer_id, manufacturer, product_id, device_id, revision, aux=None):
    return {
        "firmware_revision": fw,
        "ipmi_version": "2.0",
        "manufacturer_id": manufacturer_id,
        "manufacturer": manufacturer,
        "product_id": product_id,
        "product_name": None,  # every fixture's BMC is "Unknown (0x...)" to its ipmitool
        "device_id": device_id,
        "device_revision": revision,
        "aux_firmware_revision": aux,
    }


# What a person reads in each `ipmitool mc info` (= `bmc info`) file.
MC_INFO_FILES = {
    "ha-ipmi-issue22-supermicro-x10-bmc-info.txt": mc("1.53", 10876, "Supermicro", 2327, 32, 1),
    "manageiq-dell-idrac-fw157-mc-info.txt": mc(
        "1.57", 674, "DELL Inc", 256, 32, 1, ["0x00", "0x04", "0x39", "0x00"]
    ),
    "nodeconfig-operator-lenovo-imm-bmc-info.txt": mc("5.40", 19046, None, 1044, 32, 0),  # "Unknown (0x4A66)"
    "phosphor-net-ipmid-issue3-openbmc-witherspoon-mc-info.txt": mc(
        "0.00", 42817, None, 16975, 0, 0, ["0x01", "0x62", "0x00", "0x00"]
    ),
    "rubyipmi-hpe-ilo-mc-info.txt": mc(
        "2.9", 11, "Hewlett-Packard", 8192, 17, 1, ["0x00", "0x00", "0x00", "0x30"]
    ),
    "xcat-issue2350-intel-sgi-uv10-mc-info.txt": mc(  # "Aux Firmware Rev Info     : " with a trailing blank
        "0.20", 343, "Intel Corporation", 64, 33, 1, ["0x00", "0x23", "0x00", "0x20"]
    ),
}


def lan(source, ip, mask, gateway, mac, channel=1, vlan=None):
    return {
        "channel": channel,
        "ip_source": source,
        "ip_address": ip,
        "netmask": mask,
        "gateway": gateway,
        "mac": mac,
        "vlan_id": vlan,
    }


LAN_PRINT_FILES = {
    "go-hal-supermicro-dhcp-lan-print.txt": lan(
        "dhcp", "192.168.2.53", "255.255.255.0", "192.168.2.1", "ac:1f:6b:73:c9:f0"
    ),
    "go-hal-supermicro-static-lan-print.txt": lan(
        "static", "10.248.36.246", "255.255.252.0", "10.248.36.1", "0c:c4:7a:ed:3e:27"
    ),
    "nodeconfig-operator-lenovo-imm-lan-print.txt": lan(
        "static", "192.168.111.202", "255.255.255.0", "192.168.111.1", "08:94:ef:01:ed:c4"
    ),
    "openbmc-issue3704-openbmc-palmetto-qemu-lan-print.txt": lan(
        "dhcp", "10.0.2.15", "255.255.255.0", "10.0.2.2", "52:2e:32:a5:86:66"
    ),
    "pomona-dell-idrac-hydra2-lan-print-1.txt": lan(
        "static", "192.168.0.120", "255.255.255.0", "192.168.0.1", "b0:83:fe:e6:9a:b6"
    ),
    "rubyipmi-hpe-ilo-lan-print.txt": lan(
        "dhcp", "192.168.1.41", "255.255.255.0", "192.168.1.1", "00:17:a4:49:ab:70"
    ),
    "unknownrepo-intel-s2600-bmc-lan-print.txt": lan(
        "dhcp", "36.101.116.26", "255.255.0.0", "36.101.255.1", "a4:bf:01:34:36:04"
    ),
}

# `ipmitool channel info N` as ipmitool 1.8.19 prints it (lib/ipmi_channel.c: ipmi_get_channel_info).
CHANNEL_INFO = """Channel 0x{n:x} info:
  Channel Medium Type   : {medium}
  Channel Protocol Type : {protocol}
  Session Support       : {session}
  Active Session Count  : 0
  Protocol Vendor ID    : 7154
"""


def channel_info(n: int, medium: str) -> str:
    lan_medium = medium == "802.3 LAN"
    return CHANNEL_INFO.format(
        n=n,
        medium=medium,
        protocol="IPMB-1.0" if lan_medium else "IPMB-1.0",
        session="multi-session" if lan_medium else "session-less",
    )


@pytest.mark.parametrize("name", sorted(MC_INFO_FILES))
def test_mc_info_fixture(name):
    assert audit.parse_mc_info((IPMI / name).read_text()) == MC_INFO_FILES[name]


@pytest.mark.parametrize("name", sorted(LAN_PRINT_FILES))
def test_lan_print_fixture(name):
    assert audit.parse_lan_print((IPMI / name).read_text(), 1) == LAN_PRINT_FILES[name]


def test_every_mc_info_and_lan_print_fixture_is_covered():
    names = {
        p.name
        for p in IPMI.iterdir()
        if "-mc-info" in p.name or "-bmc-info" in p.name or "lan-print" in p.name
    }
    assert names == set(MC_INFO_FILES) | set(LAN_PRINT_FILES)


def test_qemu_lab_mc_info():
    """What QEMU's ipmi-bmc-sim answered in the lab guest (its device id, firmware, manufacturer)."""
    text, rc = lab_output("ipmitool-mc-info.txt")
    assert rc == 0
    assert audit.parse_mc_info(text) == {
        **mc("3.88", 10876, "Super Micro Computer Inc.", 2402, 32, 0),
        "product_name": "X11DPT-B+",
    }


def test_mc_info_crlf_truncated_and_garbage():
    text = (IPMI / "manageiq-dell-idrac-fw157-mc-info.txt").read_text().replace("\n", "\r\n")
    assert audit.parse_mc_info(text)["aux_firmware_revision"] == ["0x00", "0x04", "0x39", "0x00"]
    truncated = "\n".join((IPMI / "rubyipmi-hpe-ilo-mc-info.txt").read_text().split("\n")[:4])
    assert audit.parse_mc_info(truncated) == {
        **dict.fromkeys(audit.MC_INFO_KEYS),
        "firmware_revision": "2.9",
        "ipmi_version": "2.0",
        "device_id": 17,
        "device_revision": 1,
    }
    assert audit.parse_mc_info("Could not open device at /dev/ipmi0\n\x00\xff") is None
    assert audit.parse_mc_info(None) is None


def test_lan_print_vlan_and_garbage():
    text = (IPMI / "go-hal-supermicro-static-lan-print.txt").read_text()
    tagged = text.replace("802.1q VLAN ID          : Disabled", "802.1q VLAN ID          : 42")
    assert audit.parse_lan_print(tagged, 2)["vlan_id"] == 42
    assert audit.parse_lan_print(tagged, 2)["channel"] == 2
    broken = text.replace("10.248.36.246", "10.248.36.999").replace("0c:c4:7a:ed:3e:27", "zz")
    parsed = audit.parse_lan_print(broken, 1)
    assert (parsed["ip_address"], parsed["mac"], parsed["netmask"]) == (None, None, "255.255.252.0")
    assert audit.parse_lan_print("Invalid channel: 1\n", 1) is None


def test_lan_print_never_keeps_secrets():
    for name in LAN_PRINT_FILES:
        parsed = audit.parse_lan_print((IPMI / name).read_text(), 1)
        assert "public" not in json.dumps(parsed)
    raw = (IPMI / "go-hal-supermicro-dhcp-lan-print.txt").read_bytes()
    redacted = audit.redact_lan_secrets(raw)
    assert b"public" in raw and b"public" not in redacted
    assert b"SNMP Community String   : <redacted>\n" in redacted
    assert audit.parse_lan_print(redacted.decode(), 1) == audit.parse_lan_print(raw.decode(), 1)
    crlf = audit.redact_lan_secrets(raw.replace(b"\n", b"\r\n"))
    assert b"public" not in crlf and b"\r" not in crlf


def fake_bmc(
    tmp_path,
    mc_file,
    channels: dict[int, str],
    lan_files: dict[int, str],
    hang: str | None = None,
    default: str | None = None,
):
    """An ipmitool on PATH answering like a BMC: `mc info` from a file, `channel info N` with the medium of
    channel N (absent channels fail as ipmitool does), `lan print N` from a file, `lan print` (ipmitool
    finding the LAN channel itself) from `default` or failing as ipmitool does when it finds none; every
    call is logged."""
    files = tmp_path / "answers"
    files.mkdir()
    arms = [f'  "mc info") /bin/cat {shlex.quote(str(mc_file))}; exit 0;;']
    if default:
        arms.append(f'  "lan print") /bin/cat {shlex.quote(str(IPMI / default))}; exit 0;;')
    for n, medium in channels.items():
        (files / f"channel{n}").write_text(channel_info(n, medium))
        arms.append(f'  "channel info {n}") /bin/cat {files}/channel{n}; exit 0;;')
    for n, name in lan_files.items():
        arms.append(f'  "lan print {n}") /bin/cat {shlex.quote(str(IPMI / name))}; exit 0;;')
    if hang:
        arms.insert(0, f'  "{hang}") exec /bin/sleep 30;;')
    write_tool(
        tmp_path / "bin",
        "ipmitool",
        f'echo "$*" >> {tmp_path}/ipmitool.log\ncase "$*" in\n' + "\n".join(arms) + "\nesac\n"
        'case "$*" in "channel info"*) echo "Unable to Get Channel Info" >&2;;'
        ' "lan print") echo "No LAN channel found" >&2;; esac\nexit 1',
    )
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ipmi0").touch()


def bmc_runner(tmp_path, monkeypatch, **kwargs):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev", **kwargs)


def test_lan_print_lets_ipmitool_find_the_channel(tmp_path, monkeypatch):
    """One `ipmitool lan print` (ipmitool finds the first LAN channel itself), no `channel info` processes;
    the channel is null in the document since ipmitool does not print it."""
    fake_bmc(
        tmp_path,
        IPMI / "rubyipmi-hpe-ilo-mc-info.txt",
        {2: "802.3 LAN"},
        {2: "go-hal-supermicro-dhcp-lan-print.txt"},
        default="rubyipmi-hpe-ilo-lan-print.txt",
    )
    document = audit.build_document(bmc_runner(tmp_path, monkeypatch), [("bmc", audit.collect_bmc)])
    assert document["errors"] == []
    assert document["bmc"]["lan"] == [{**LAN_PRINT_FILES["rubyipmi-hpe-ilo-lan-print.txt"], "channel": None}]
    assert (tmp_path / "ipmitool.log").read_text().split("\n")[:-1] == ["mc info", "lan print"]
    assert_schema("bmc", document["bmc"])


def test_lan_channel_is_found_not_assumed(tmp_path, monkeypatch):
    """An Intel-style BMC whose ipmitool finds no LAN channel by itself: channel 1 is IPMB, the LANs are
    channels 3 and 8 (dedicated and shared), found by asking every channel."""
    fake_bmc(
        tmp_path,
        IPMI / "xcat-issue2350-intel-sgi-uv10-mc-info.txt",
        {1: "IPMB (I2C)", 3: "802.3 LAN", 7: "System Interface", 8: "802.3 LAN"},
        {
            3: "unknownrepo-intel-s2600-bmc-lan-print.txt",
            8: "go-hal-supermicro-static-lan-print.txt",
            1: "go-hal-supermicro-dhcp-lan-print.txt",
        },
    )
    document = audit.build_document(bmc_runner(tmp_path, monkeypatch), [("bmc", audit.collect_bmc)])
    assert document["errors"] == []
    assert document["collectors"]["bmc"]["status"] == "ok"
    assert document["bmc"] == {
        **MC_INFO_FILES["xcat-issue2350-intel-sgi-uv10-mc-info.txt"],
        "lan": [
            {**LAN_PRINT_FILES["unknownrepo-intel-s2600-bmc-lan-print.txt"], "channel": 3},
            {**LAN_PRINT_FILES["go-hal-supermicro-static-lan-print.txt"], "channel": 8},
        ],
    }
    calls = (tmp_path / "ipmitool.log").read_text().split("\n")[:-1]
    assert calls == [
        "mc info",
        "lan print",
        *[f"channel info {n}" for n in range(1, 12)],
        "lan print 3",
        "lan print 8",
    ]
    assert document["findings"] == []
    assert_schema("bmc", document["bmc"])


def test_bmc_without_address_is_an_info_finding(tmp_path, monkeypatch):
    answer = tmp_path / "unset-lan-print.txt"
    answer.write_text(
        (IPMI / "go-hal-supermicro-dhcp-lan-print.txt").read_text().replace("192.168.2.53", "0.0.0.0")
    )
    fake_bmc(
        tmp_path,
        IPMI / "ha-ipmi-issue22-supermicro-x10-bmc-info.txt",
        {1: "802.3 LAN"},
        {1: str(answer)},
        default=str(answer),
    )
    document = audit.build_document(bmc_runner(tmp_path, monkeypatch), [("bmc", audit.collect_bmc)])
    assert document["bmc"]["lan"][0]["ip_address"] == "0.0.0.0"
    assert document["findings"] == [
        {
            "severity": "info",
            "component": "bmc",
            "message": "the BMC has no IP address (its first LAN channel): "
            "it cannot be managed remotely until it gets one",
        }
    ]
    numbered = {**document["bmc"], "lan": [{**document["bmc"]["lan"][0], "channel": 3}]}
    assert audit.bmc_findings({"bmc": numbered})[0]["message"].startswith(
        "the BMC has no IP address (LAN channel 3):"
    )


def test_capture_holds_no_community_string_and_replays(tmp_path, monkeypatch):
    """The capture of `lan print` keeps whole only the lines the audit reads; community string,
    authentication types, cipher suites and password policy are names with "<redacted>"."""
    fake_bmc(
        tmp_path,
        IPMI / "manageiq-dell-idrac-fw157-mc-info.txt",
        {1: "802.3 LAN"},
        {},
        default="go-hal-supermicro-dhcp-lan-print.txt",
    )
    capture = tmp_path / "capture"
    live = audit.build_document(
        bmc_runner(tmp_path, monkeypatch, capture=capture), [("bmc", audit.collect_bmc)]
    )
    saved = b"".join(path.read_bytes() for path in (capture / "commands").iterdir())
    for secret in (b"public", b"1,2,3,6,7,8,11,12", b"XaaaXXaaaXXaaXX", b"MD5", b"=ADMIN"):
        assert secret not in saved
    for line in (
        b"SNMP Community String   : <redacted>\n",
        b"RMCP+ Cipher Suites     : <redacted>\n",
        b"Cipher Suite Priv Max   : <redacted>\n",
        b"Auth Type Enable        : <redacted>\n",
        b"Bad Password Threshold  : <redacted>\n",
        b"IP Address Source       : DHCP Address\n",
        b"MAC Address             : ac:1f:6b:73:c9:f0\n",
    ):
        assert line in saved
    replayed = audit.build_document(audit.Runner(replay=capture), [("bmc", audit.collect_bmc)])
    assert replayed["bmc"] == live["bmc"]
    assert live["bmc"]["lan"] == [
        {**LAN_PRINT_FILES["go-hal-supermicro-dhcp-lan-print.txt"], "channel": None}
    ]
    assert live["bmc"]["firmware_revision"] == "1.57"


@pytest.mark.parametrize("name", sorted(LAN_PRINT_FILES))
def test_redacted_lan_print_parses_the_same(name):
    raw = (IPMI / name).read_bytes()
    redacted = audit.redact_lan_secrets(raw)
    assert audit.parse_lan_print(redacted.decode(), 1) == audit.parse_lan_print(raw.decode(), 1)
    for line in redacted.decode().split("\n"):
        name = line.partition(":")[0].strip()
        assert name in audit.LAN_KEPT or line.endswith(": <redacted>") or not line, line
    assert not any(line.startswith(b" ") and b":" in line for line in redacted.split(b"\n"))


# Every text ipmitool prints for the IP address source (lib/ipmi_lanp.c), and what a broken BMC sends.
IP_SOURCE_TEXTS = {
    "Unspecified": None,
    "Static Address": "static",
    "DHCP Address": "dhcp",
    "BIOS Assigned Address": "bios",
    "Other": "other",
    "": None,
    "\x00\ufffd0x07": None,
    "DHCP": None,
}


@pytest.mark.parametrize("text", sorted(IP_SOURCE_TEXTS))
def test_ip_source_texts_map_to_the_schema(text):
    lines = (IPMI / "go-hal-supermicro-static-lan-print.txt").read_text()
    lines = lines.replace("IP Address Source       : Static Address", f"IP Address Source       : {text}")
    parsed = audit.parse_lan_print(lines, 1)
    assert parsed["ip_source"] == IP_SOURCE_TEXTS[text]
    assert_schema("bmc_lan", parsed)


def test_a_hung_lan_print_stops_the_search(tmp_path, monkeypatch):
    fake_bmc(tmp_path, IPMI / "rubyipmi-hpe-ilo-mc-info.txt", {1: "802.3 LAN"}, {}, hang="lan print")
    data, report = audit.run_collector(
        "bmc", audit.collect_bmc, bmc_runner(tmp_path, monkeypatch, timeout=1.0)
    )
    assert report["status"] == "partial"
    assert [e["command"] for e in report["errors"]] == ["ipmitool lan print"]
    assert data["lan"] == []
    assert (tmp_path / "ipmitool.log").read_text().split("\n")[:-1] == ["mc info", "lan print"]


def test_a_hung_channel_query_stops_the_search(tmp_path, monkeypatch):
    fake_bmc(
        tmp_path,
        IPMI / "rubyipmi-hpe-ilo-mc-info.txt",
        {1: "802.3 LAN"},
        {1: "rubyipmi-hpe-ilo-lan-print.txt"},
        hang="channel info 2",
    )
    runner = bmc_runner(tmp_path, monkeypatch, timeout=1.0)
    data, report = audit.run_collector("bmc", audit.collect_bmc, runner)
    assert report["status"] == "partial"
    assert [e["command"] for e in report["errors"]] == ["ipmitool channel info 2"]
    assert "timed out" in report["errors"][0]["message"]
    assert data["firmware_revision"] == "2.9"
    assert data["lan"] == [LAN_PRINT_FILES["rubyipmi-hpe-ilo-lan-print.txt"]]
    calls = (tmp_path / "ipmitool.log").read_text().split("\n")[:-1]
    assert calls == ["mc info", "lan print", "channel info 1", "channel info 2", "lan print 1"]


def test_mc_info_failing_is_an_error_and_garbage_too(tmp_path, monkeypatch):
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\xffnot an answer\n")
    fake_bmc(tmp_path, garbage, {}, {})
    data, report = audit.run_collector("bmc", audit.collect_bmc, bmc_runner(tmp_path, monkeypatch))
    assert (data, report["status"]) == (None, "error")
    assert report["errors"][0]["command"] == "ipmitool mc info"
    assert report["errors"][0]["message"].startswith("no BMC identity in the output")


def test_no_ipmi_device_or_no_ipmitool_is_skipped(tmp_path, monkeypatch):
    fake_bmc(tmp_path, IPMI / "rubyipmi-hpe-ilo-mc-info.txt", {}, {})
    (tmp_path / "dev" / "ipmi0").unlink()
    data, report = audit.run_collector("bmc", audit.collect_bmc, bmc_runner(tmp_path, monkeypatch))
    assert (data, report["status"]) == (None, "skipped")
    assert not (tmp_path / "ipmitool.log").exists()
    (tmp_path / "dev" / "ipmi0").touch()
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    runner = audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")
    data, report = audit.run_collector("bmc", audit.collect_bmc, runner)
    assert (data, report["status"]) == (None, "skipped")


def test_a_bmc_hung_on_mc_info_is_asked_nothing_more(tmp_path, monkeypatch):
    fake_bmc(tmp_path, IPMI / "rubyipmi-hpe-ilo-mc-info.txt", {1: "802.3 LAN"}, {}, hang="mc info")
    data, report = audit.run_collector(
        "bmc", audit.collect_bmc, bmc_runner(tmp_path, monkeypatch, timeout=1.0)
    )
    assert (data, report["status"]) == (None, "error")
    assert [e["command"] for e in report["errors"]] == ["ipmitool mc info"]
    assert (tmp_path / "ipmitool.log").read_text().split("\n")[:-1] == ["mc info"]


# -- acceptance: the BMC's firmware in a profile ------------------------------------------------------------


def test_profile_checks_the_bmc_firmware(tmp_path, monkeypatch):
    """--make-profile writes the BMC's firmware as found; a fleet spec asks for a minimum (as a version:
    0.20 < 1.5 < 1.57), and a machine without a BMC fails a profile that names one."""
    fake_bmc(tmp_path, IPMI / "xcat-issue2350-intel-sgi-uv10-mc-info.txt", {}, {})
    document = audit.build_document(bmc_runner(tmp_path, monkeypatch), [("bmc", audit.collect_bmc)])
    made = audit.make_profile(document)
    assert made["bmc"] == {"firmware": "0.20", "manufacturer": "Intel Corporation"}
    assert failed_checks(document, {"bmc": made["bmc"]}) == []
    assert failed_checks(document, {"bmc": {"firmware": {"min": "1.5"}, "ipmi_version": "2.0"}}) == [
        "bmc: firmware 0.20, expected at least 1.5"
    ]
    assert failed_checks({"bmc": None}, {"bmc": {"firmware": {"min": "1.5"}}}) == ["bmc: not in the document"]
