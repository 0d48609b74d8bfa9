"""infiniband: /sys/class/infiniband trees modelled on real ones (leptonai/gpud's H100 node: "4: ACTIVE",
"5: LinkUp", "400 Gb/sec (4X NDR)", "MT_0000000838") and built from every real ibstat, ibstatus and
ibv_devinfo fixture (those tools print what sysfs holds); the findings; capture and replay."""

from __future__ import annotations

import os
import re

import pytest

from audit import audit
from tests.audit.fakes import assert_schema, failed_checks
from tests.paths import REAL_FIXTURES

IB = REAL_FIXTURES / "infiniband"


# How the kernel writes the port states (drivers/infiniband/core/sysfs.c) for what ibstat prints.
STATES = {"down": "1: DOWN", "initializing": "2: INIT", "armed": "3: ARMED", "active": "4: ACTIVE"}
PHYS_STATES = {"sleep": "1: Sleep", "polling": "2: Polling", "disabled": "3: Disabled", "linkup": "5: LinkUp"}


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def add_hca(sysfs, name, pci, files: dict[str, str], ports: dict[int, dict[str, str]], netdevs=()):
    """devices/.../<pci>/infiniband/<name> with its files and ports, class/infiniband/<name> linking to it and
    `device` linking back to the PCI function (whose net/ holds the netdevs), as the kernel lays it out."""
    function = sysfs / "devices" / "pci0000:00" / pci
    directory = function / "infiniband" / name
    for file_name, value in files.items():
        write(directory / file_name, value)
    for port, values in ports.items():
        for file_name, value in values.items():
            write(directory / "ports" / str(port) / file_name, value)
    for netdev in netdevs:
        (function / "net" / netdev).mkdir(parents=True)
    (directory / "device").symlink_to("../..")
    (sysfs / "class/infiniband").mkdir(parents=True, exist_ok=True)
    (sysfs / "class/infiniband" / name).symlink_to(os.path.relpath(directory, sysfs / "class/infiniband"))


def collect(sysfs, **kwargs):
    runner = audit.Runner(sysfs=sysfs, procfs=sysfs / "proc", devfs=sysfs / "dev", **kwargs)
    return audit.build_document(runner, [("infiniband", audit.collect_infiniband)])


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    root = tmp_path / "sys"
    root.mkdir()
    return root


def guid_of(ibstat_guid: str) -> str:
    """0x946dae0300cde72c (ibstat) -> 946d:ae03:00cd:e72c (sysfs node_guid)."""
    digits = ibstat_guid.lower().removeprefix("0x").rjust(16, "0")
    return ":".join(digits[i : i + 4] for i in range(0, 16, 4))


def read_ibstat(text: str) -> list[dict]:
    """The CAs of `ibstat` output: name, CA type, firmware, node GUID, ports with state, physical state,
    rate and link layer (TAB- or space-indented; a trailing ibpanic line is ignored)."""
    cas: list[dict] = []
    port = None
    for line in text.splitlines():
        if match := re.match(r"^CA '(.+)'", line):
            cas.append({"name": match[1], "ports": {}})
            continue
        key, _, value = line.strip().partition(": ")
        if not cas or not key:
            continue
        if match := re.match(r"Port (\d+):", line.strip()):
            port = cas[-1]["ports"].setdefault(int(match[1]), {})
        elif key in ("CA type", "Firmware version", "Node GUID"):
            cas[-1][key] = value.strip()
        elif key in ("State", "Physical state", "Rate", "Link layer") and port is not None:
            port[key] = value.strip()
    return cas


def tree_from_ibstat(sysfs, text: str, cards: dict[str, str] | None = None) -> list[dict]:
    """A sysfs tree holding what `ibstat` printed; each CA its own PCI function 0000:<n>:00.0 unless
    `cards` gives it another (the functions of one dual-port card)."""
    cas = read_ibstat(text)
    for number, ca in enumerate(cas, start=1):
        ca["pci"] = (cards or {}).get(ca["name"]) or f"0000:{number:02x}:00.0"
        add_hca(
            sysfs,
            ca["name"],
            ca["pci"],
            {
                "hca_type": ca["CA type"],
                "fw_ver": ca["Firmware version"],
                "node_guid": guid_of(ca["Node GUID"]),
            },
            {
                n: {
                    "state": STATES[p["State"].lower()],
                    "phys_state": PHYS_STATES[p["Physical state"].lower()],
                    "rate": f"{p['Rate']} Gb/sec (4X)",
                    "link_layer": p["Link layer"],
                }
                for n, p in ca["ports"].items()
            },
        )
    return cas


IBSTAT_FILES = {  # file: (CAs, active ports, {(type, firmware)}, {rates}, {link layers})
    "gpud-azure-a100-cx6-vf-ibpanic-ibstat.txt": (8, 8, {("MT4124", "20.41.1000")}, {200.0}, {"InfiniBand"}),
    "gpud-cloud-a100-cx-vf-9ca-ibstat.txt": (
        9,
        9,
        {("MT4126", "22.35.2302"), ("MT4126", "28.37.1014")},
        {200.0},
        {"InfiniBand", "Ethernet"},
    ),
    "gpud-h100-8xcx7-4xcx6dx-all-active-ibstat.txt": (
        12,
        12,
        {("MT4129", "28.39.1002"), ("MT4125", "22.39.1002")},
        {400.0, 100.0},
        {"Ethernet"},
    ),
    "gpud-h100-8xcx7-4xcx6dx-some-down-ibstat.txt": (
        12,
        9,
        {("MT4129", "28.39.1002"), ("MT4125", "22.38.1002")},
        {400.0, 100.0, 40.0},
        {"InfiniBand", "Ethernet"},
    ),
    "gpud-h100-8xcx7-bluefield3-ibstat.txt": (
        9,
        9,
        {("MT4129", "28.41.1000"), ("MT41692", "32.38.3056")},
        {400.0, 200.0},
        {"InfiniBand", "Ethernet"},
    ),
    "ksl-docs-kaust-ibex-cx6-hdr100-ibstat.txt": (1, 1, {("MT4123", "20.35.1012")}, {100.0}, {"InfiniBand"}),
}


@pytest.mark.parametrize("name", sorted(IBSTAT_FILES))
def test_ibstat_fixture_as_sysfs(sysfs, name):
    cas = tree_from_ibstat(sysfs, (IB / name).read_text())
    document = collect(sysfs)
    assert document["errors"] == []
    hcas = document["infiniband"]
    count, active, models, rates, layers = IBSTAT_FILES[name]
    assert len(hcas) == count
    assert sum(port["state"] == "ACTIVE" for hca in hcas for port in hca["ports"]) == active
    assert {(hca["hca_type"], hca["firmware_version"]) for hca in hcas} == models
    assert {port["rate_gbps"] for hca in hcas for port in hca["ports"]} == rates
    assert {port["link_layer"] for hca in hcas for port in hca["ports"]} == layers
    by_name = {hca["name"]: hca for hca in hcas}
    for ca in cas:  # every CA, field by field
        hca = by_name[ca["name"]]
        assert (hca["hca_type"], hca["firmware_version"], hca["node_guid"], hca["pci_address"]) == (
            ca["CA type"],
            ca["Firmware version"],
            guid_of(ca["Node GUID"]),
            ca["pci"],
        )
        assert [(p["port"], p["phys_state"]) for p in hca["ports"]] == [
            (n, PHYS_STATES[p["Physical state"].lower()].split(": ")[1]) for n, p in ca["ports"].items()
        ]
    assert document["findings"] == []  # one CA per card here: nothing is down beside a port that is up


def test_ibstat_some_down_with_dual_port_cards(sysfs):
    """The some-down H100 node with its ConnectX-6 Dx ports as the two functions of dual-port cards
    (mlx5_1+mlx5_2 on 0000:31:00.x, mlx5_7+mlx5_8 on 0000:b1:00.x): mlx5_2 is down beside an up port."""
    text = (IB / "gpud-h100-8xcx7-4xcx6dx-some-down-ibstat.txt").read_text()
    cards = {
        "mlx5_1": "0000:31:00.0",
        "mlx5_2": "0000:31:00.1",
        "mlx5_7": "0000:b1:00.0",
        "mlx5_8": "0000:b1:00.1",
    }
    tree_from_ibstat(sysfs, text, cards)
    document = collect(sysfs)
    down = {
        hca["name"]: hca["ports"][0] for hca in document["infiniband"] if hca["ports"][0]["state"] == "DOWN"
    }
    assert sorted(down) == ["mlx5_2", "mlx5_7", "mlx5_8"]
    assert down["mlx5_2"] | {} == {
        "port": 1,
        "state": "DOWN",
        "phys_state": "Disabled",
        "rate": "40 Gb/sec (4X)",
        "rate_gbps": 40.0,
        "link_layer": "Ethernet",
        "lid": None,
        "netdev": None,
    }
    assert document["findings"] == [
        {
            "severity": "warning",
            "component": "hca mlx5_2 (0000:31:00.1)",
            "message": "port 1 is down (Disabled) while other ports of the adapter are up",
        }
    ]


def read_ibstatus(text: str) -> dict[str, dict[str, str]]:
    devices: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        if match := re.match(r"^Infiniband device '(.+)' port (\d+) status:", line):
            current = devices.setdefault(match[1], {"port": match[2]})
        elif current is not None and ":" in line:
            key, _, value = line.strip().partition(":")
            current[key.strip()] = value.strip()
    return devices


def test_ibstatus_fixture_as_sysfs(sysfs):
    """ibstatus prints the sysfs files verbatim ("4: ACTIVE", "200 Gb/sec (4X HDR)"): the same tree."""
    devices = read_ibstatus((IB / "gpud-azure-a100-cx6-vf-ibstatus.txt").read_text())
    assert len(devices) == 9
    for number, (name, values) in enumerate(devices.items(), start=1):
        ports = {
            int(values["port"]): {
                "state": values["state"],
                "phys_state": values["phys state"],
                "rate": values["rate"],
                "link_layer": values["link_layer"],
                "lid": values["base lid"],
            }
        }
        add_hca(sysfs, name, f"0000:{number:02x}:00.0", {}, ports)
    document = collect(sysfs)
    ports = {hca["name"]: hca["ports"][0] for hca in document["infiniband"]}
    assert ports["mlx5_0"] == {
        "port": 1,
        "state": "ACTIVE",
        "phys_state": "LinkUp",
        "rate": "200 Gb/sec (4X HDR)",
        "rate_gbps": 200.0,
        "link_layer": "InfiniBand",
        "lid": 0x33BF,
        "netdev": None,
    }
    assert ports["mlx5_8"]["rate"] == "40 Gb/sec (4X QDR)" and ports["mlx5_8"]["link_layer"] == "Ethernet"
    assert sum(port["rate_gbps"] == 200.0 for port in ports.values()) == 8
    assert document["findings"] == []


IBV_STATES = {"PORT_ACTIVE (4)": "4: ACTIVE", "PORT_DOWN (1)": "1: DOWN", "PORT_INIT (2)": "2: INIT"}


def read_ibv_devinfo(text: str) -> list[dict[str, str]]:
    hcas: list[dict[str, str]] = []
    for line in text.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "hca_id":
            hcas.append({})
        if hcas and value.strip():
            hcas[-1].setdefault(key.strip(), value.strip())
    return hcas


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "ksl-docs-kaust-ibex-cx6-hdr100-ibv_devinfo.txt",
            [("mlx5_0", "MT4123", "20.35.1012", "MT_0000000222", "b859:9f03:0022:626e", "InfiniBand", 762)],
        ),
        (
            "performance-study-azure-hb120v3-cx6vf-cx4lxvf-ibv_devinfo.txt",
            [
                ("mlx5_0", "MT4124", "20.31.1014", "MT_0000000223", "0015:5dff:fe33:ff18", "InfiniBand", 383),
                ("mlx5_1", "MT4118", "14.30.1284", "MSF0010110035", "000d:3aff:fe72:a6b3", "Ethernet", 0),
            ],
        ),
    ],
)
def test_ibv_devinfo_fixture_as_sysfs(sysfs, name, expected):
    """ibv_devinfo prints board_id (the PSID) and node_guid as sysfs has them."""
    for number, hca in enumerate(read_ibv_devinfo((IB / name).read_text()), start=1):
        add_hca(
            sysfs,
            hca["hca_id"],
            f"0000:{number:02x}:00.0",
            {
                "fw_ver": hca["fw_ver"],
                "board_id": hca["board_id"],
                "node_guid": hca["node_guid"],
                "hca_type": f"MT{hca['vendor_part_id']}",
                "hw_rev": hca["hw_ver"],
            },
            {1: {"state": IBV_STATES[hca["state"]], "link_layer": hca["link_layer"], "lid": hca["port_lid"]}},
        )
    document = collect(sysfs)
    assert [
        (
            h["name"],
            h["hca_type"],
            h["firmware_version"],
            h["psid"],
            h["node_guid"],
            h["ports"][0]["link_layer"],
            h["ports"][0]["lid"],
        )
        for h in document["infiniband"]
    ] == expected
    assert all(h["ports"][0]["state"] == "ACTIVE" for h in document["infiniband"])


def test_every_infiniband_fixture_is_covered():
    covered = {
        *IBSTAT_FILES,
        "gpud-azure-a100-cx6-vf-ibstatus.txt",
        "ksl-docs-kaust-ibex-cx6-hdr100-ibv_devinfo.txt",
        "performance-study-azure-hb120v3-cx6vf-cx4lxvf-ibv_devinfo.txt",
    }
    assert {p.name for p in IB.iterdir()} == covered


def gpud_h100_hca(
    sysfs,
    name,
    pci,
    fw="28.41.1000",
    state="4: ACTIVE",
    phys="5: LinkUp",
    netdevs=("ibp24s0",),
    rate="400 Gb/sec (4X NDR)",
    link_layer="InfiniBand",
    **extra,
):
    """A ConnectX-7 as leptonai/gpud's sys-class-infiniband-h100 testdata has it."""
    add_hca(
        sysfs,
        name,
        pci,
        {
            "hca_type": "MT4129",
            "fw_ver": fw,
            "board_id": "MT_0000000838",
            "node_guid": "946d:ae03:00cd:e72c",
            "hw_rev": "0x0",
            "node_desc": "h100-node mlx5_0",
        },
        {
            1: {
                "state": state,
                "phys_state": phys,
                "rate": rate,
                "link_layer": link_layer,
                "lid": "0x4b",
                **extra,
            }
        },
        netdevs,
    )


def test_a_full_hca_entry(sysfs):
    gpud_h100_hca(sysfs, "mlx5_0", "0000:18:00.0")
    gpud_h100_hca(
        sysfs,
        "mlx5_bond_0",
        "0000:9b:00.0",
        netdevs=("bond0",),
        rate="200 Gb/sec (2X NDR)",
        link_layer="Ethernet",
        **{"gid_attrs/ndevs/0": "bond0"},
    )
    document = collect(sysfs)
    assert document["errors"] == []
    assert document["infiniband"][0] == {
        "name": "mlx5_0",
        "hca_type": "MT4129",
        "firmware_version": "28.41.1000",
        "psid": "MT_0000000838",
        "hw_revision": "0x0",
        "node_guid": "946d:ae03:00cd:e72c",
        "node_description": "h100-node mlx5_0",
        "pci_address": "0000:18:00.0",
        "netdevs": ["ibp24s0"],
        "ports": [
            {
                "port": 1,
                "state": "ACTIVE",
                "phys_state": "LinkUp",
                "rate": "400 Gb/sec (4X NDR)",
                "rate_gbps": 400.0,
                "link_layer": "InfiniBand",
                "lid": 0x4B,
                "netdev": None,
            }
        ],
    }
    assert document["infiniband"][1]["ports"][0]["netdev"] == "bond0"
    assert document["infiniband"][1]["ports"][0]["rate_gbps"] == 200.0
    assert_schema("infiniband", document["infiniband"])


def test_findings(sysfs):
    """Link up but INIT (no subnet manager), and two firmware versions of one ConnectX-7 model."""
    gpud_h100_hca(sysfs, "mlx5_0", "0000:18:00.0")
    gpud_h100_hca(sysfs, "mlx5_1", "0000:2a:00.0", state="2: INIT")
    gpud_h100_hca(sysfs, "mlx5_2", "0000:3a:00.0", fw="28.39.1002")
    gpud_h100_hca(
        sysfs, "mlx5_3", "0000:5d:00.0", state="1: DOWN", phys="3: Disabled", rate="10 Gb/sec (4X SDR)"
    )
    document = collect(sysfs)
    assert document["findings"] == [
        {
            "severity": "warning",
            "component": "hca mlx5_1 (0000:2a:00.0)",
            "message": "port 1: physical link up but state INIT "
            "(not ACTIVE: no subnet manager, or the port is stuck)",
        },
        {
            "severity": "warning",
            "component": "hca MT4129",
            "message": "HCAs of one model run different firmware "
            "(28.39.1002: mlx5_2; 28.41.1000: mlx5_0, mlx5_1, mlx5_3)",
        },
    ]


def test_garbage_and_missing_files(sysfs):
    add_hca(
        sysfs,
        "qedr0",
        "0000:41:00.0",
        {"fw_ver": "\x00\xff", "node_guid": "not a guid"},
        {1: {"state": "garbage", "rate": "fast"}, 2: {"state": ""}},
    )
    document = collect(sysfs)
    assert document["errors"] == []
    (hca,) = document["infiniband"]
    assert (hca["hca_type"], hca["node_guid"], hca["psid"]) == (None, None, None)
    assert [(p["port"], p["state"], p["rate_gbps"], p["phys_state"]) for p in hca["ports"]] == [
        (1, "garbage", None, None),
        (2, None, None, None),
    ]


def test_no_infiniband_class_is_skipped(sysfs):
    document = collect(sysfs)
    assert (document["infiniband"], document["collectors"]["infiniband"]["status"]) == (None, "skipped")


def test_capture_then_replay(sysfs, tmp_path):
    """The capture keeps /sys/class/infiniband's links (class -> devices, device -> PCI function) so the
    replay reads the same HCAs, PCI addresses and netdevs."""
    gpud_h100_hca(sysfs, "mlx5_0", "0000:18:00.0")
    gpud_h100_hca(sysfs, "mlx5_1", "0000:2a:00.0", state="2: INIT", netdevs=("ibp42s0",))
    capture = tmp_path / "capture"
    live = collect(sysfs, capture=capture)
    (capture / "commands").mkdir(exist_ok=True)
    replayed = audit.build_document(audit.Runner(replay=capture), [("infiniband", audit.collect_infiniband)])
    assert (
        live["infiniband"][1]["netdevs"] == ["ibp42s0"]
        and live["infiniband"][1]["pci_address"] == "0000:2a:00.0"
    )
    assert replayed["infiniband"] == live["infiniband"]
    assert replayed["findings"] == live["findings"] != []
    assert (capture / "sysfs/class/infiniband/mlx5_0").is_symlink()


# -- acceptance: HCA count, firmware, PSID, port rate and state in a profile --------------------------------


def test_profile_of_the_h100_node_and_its_degraded_twin(tmp_path):
    """--make-profile on the all-active H100 node (8 ConnectX-7 and 4 ConnectX-6 Dx, all RoCE there) writes
    one group per type and link layer; the some-down node (its ConnectX-7 on InfiniBand, three ConnectX-6 Dx
    down, older ConnectX-6 Dx firmware) fails it port by port, naming what a technician acts on."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    tree_from_ibstat(good, (IB / "gpud-h100-8xcx7-4xcx6dx-all-active-ibstat.txt").read_text())
    tree_from_ibstat(bad, (IB / "gpud-h100-8xcx7-4xcx6dx-some-down-ibstat.txt").read_text())
    made = audit.make_profile(collect(good))
    assert made["hcas"] == [
        {
            "match": {"hca_type": "MT4129", "link_layer": "Ethernet"},
            "count": 8,
            "firmware": "28.39.1002",
            "state": "ACTIVE",
            "rate_gbps": {"min": 400.0},
        },
        {
            "match": {"hca_type": "MT4125", "link_layer": "Ethernet"},
            "count": 4,
            "firmware": "22.39.1002",
            "state": "ACTIVE",
            "rate_gbps": {"min": 100.0},
        },
    ]
    assert failed_checks(collect(good), {"hcas": made["hcas"]}) == []
    spec = {"hcas": [{**made["hcas"][1]}, {"match": {"hca_type": "MT4129"}, "count": 8, "rate_gbps": 400}]}
    failed = failed_checks(collect(bad), spec)
    assert not any(message.startswith("hcas[") for message in failed)  # every card is there: counts hold
    assert "hca mlx5_2 (MT4125): port state DOWN, expected ACTIVE" in failed
    assert "hca mlx5_2 (MT4125): port rate (Gb/s) 40, expected at least 100" in failed
    assert "hca mlx5_1 (MT4125): firmware 22.38.1002, expected 22.39.1002" in failed
    assert sum("firmware 22.38.1002" in message for message in failed) == 4
    assert sum("port state DOWN" in message for message in failed) == 3
    assert not any("MT4129" in message for message in failed)  # the ConnectX-7 group (InfiniBand there)
    assert len(failed) == 4 + 3 + 3


def test_profile_checks_the_psid_and_a_missing_hca(sysfs):
    gpud_h100_hca(sysfs, "mlx5_0", "0000:18:00.0")
    document = collect(sysfs)
    assert audit.make_profile(document)["hcas"] == [
        {
            "match": {"hca_type": "MT4129", "link_layer": "InfiniBand"},
            "count": 1,
            "firmware": "28.41.1000",
            "psid": "MT_0000000838",
            "state": "ACTIVE",
            "rate_gbps": {"min": 400.0},
        }
    ]
    assert failed_checks(
        document, {"hcas": [{"count": 2, "psid": "MT_0000000834", "firmware": {"min": "28.42.1000"}}]}
    ) == [
        "hcas[0]: 1 of 2 HCAs found",
        "hca mlx5_0 (MT4129): PSID MT_0000000838, expected MT_0000000834",
        "hca mlx5_0 (MT4129): firmware 28.41.1000, expected at least 28.42.1000",
    ]
