"""The network collector on fake /sys/class/net trees: physical interfaces only, permanent MAC without
ethtool, driver, bus, PCI address, state, speed and duplex; `ethtool -i` and `ethtool IFACE` on every real
fixture and as fake tools, and the real ethtool on this machine's own interfaces."""

from __future__ import annotations

import shlex
import shutil

import pytest

from audit import audit
from tests.audit.fakes import assert_schema, failed_checks, write_tool
from tests.paths import LAB_FIXTURES, REAL_FIXTURES


def add_bus_device(sysfs, path: str, bus: str, driver: str | None):
    """A device directory under sysfs/devices with its subsystem (and driver) links, as the kernel has."""
    directory = sysfs / "devices" / path
    directory.mkdir(parents=True, exist_ok=True)
    bus_dir = sysfs / "bus" / bus
    (bus_dir / "drivers").mkdir(parents=True, exist_ok=True)
    (directory / "subsystem").symlink_to(bus_dir)
    if driver:
        (bus_dir / "drivers" / driver).mkdir(exist_ok=True)
        (directory / "driver").symlink_to(bus_dir / "drivers" / driver)
    return directory


def add_interface(sysfs, name, device=None, **files):
    """class/net/<name> -> devices/.../net/<name>, with a `device` link when it is hardware."""
    parent = device if device is not None else sysfs / "devices/virtual"
    directory = parent / "net" / name
    directory.mkdir(parents=True)
    for file_name, value in files.items():
        target = directory / file_name.replace("__", "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"{value}\n")
    if device is not None:
        (directory / "device").symlink_to(device)
    (sysfs / "class/net").mkdir(parents=True, exist_ok=True)
    (sysfs / "class/net" / name).symlink_to(directory)


NO_ETHTOOL = {  # what an interface has when ethtool is absent and sysfs has no duplex or carrier file
    "duplex": None,
    "link_detected": None,
    "port": None,
    "driver_version": None,
    "firmware": None,
    "expansion_rom_version": None,
    "bus_info": None,
}


def collect(sysfs):
    runner = audit.Runner(sysfs=sysfs, procfs=sysfs / "proc", devfs=sysfs / "dev")
    return audit.build_document(runner, [("network", audit.collect_network)])


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no ethtool unless a test writes one
    root = tmp_path / "sys"
    root.mkdir()
    return root


def test_physical_interfaces_and_their_facts(sysfs):
    onboard = add_bus_device(sysfs, "pci0000:00/0000:00:1f.6", "pci", "e1000e")
    add_interface(
        sysfs, "eno1", onboard, address="3C:EC:EF:01:02:03", addr_assign_type=0, operstate="up", speed=1000
    )
    mellanox = add_bus_device(sysfs, "pci0000:17/0000:17:00.0/0000:18:00.1", "pci", "mlx5_core")
    add_interface(
        sysfs,
        "ens1f1",
        mellanox,
        address="b8:ce:f6:00:00:02",
        addr_assign_type=3,
        operstate="up",
        speed=25000,
        bonding_slave__perm_hwaddr="b8:ce:f6:aa:bb:02",
    )  # enslaved: MAC set by bond
    virtio = add_bus_device(sysfs, "pci0000:00/0000:00:03.0/virtio2", "virtio", "virtio_net")
    add_interface(
        sysfs, "eth0", virtio, address="52:54:00:12:34:56", addr_assign_type=0, operstate="down", speed=-1
    )
    usb = add_bus_device(sysfs, "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0", "usb", "r8152")
    add_interface(
        sysfs, "enx00e04c680001", usb, address="00:e0:4c:68:00:01", addr_assign_type=1, operstate="unknown"
    )  # no speed file
    add_interface(sysfs, "lo", address="00:00:00:00:00:00", operstate="unknown")
    add_interface(sysfs, "bond0", address="b8:ce:f6:00:00:02", operstate="up", speed=25000)
    add_interface(sysfs, "docker0", address="02:42:ac:11:00:01", operstate="down")

    document = collect(sysfs)

    assert document["errors"] == []
    assert document["network"] == [
        {
            "name": "eno1",
            "mac": "3c:ec:ef:01:02:03",
            "permanent_mac": "3c:ec:ef:01:02:03",
            "driver": "e1000e",
            "bus": "pci",
            "pci_address": "0000:00:1f.6",
            "operstate": "up",
            "speed_mbps": 1000,
            **NO_ETHTOOL,
        },
        {
            "name": "ens1f1",
            "mac": "b8:ce:f6:00:00:02",
            "permanent_mac": "b8:ce:f6:aa:bb:02",
            "driver": "mlx5_core",
            "bus": "pci",
            "pci_address": "0000:18:00.1",
            "operstate": "up",
            "speed_mbps": 25000,
            **NO_ETHTOOL,
        },
        {
            "name": "enx00e04c680001",
            "mac": "00:e0:4c:68:00:01",
            "permanent_mac": None,
            "driver": "r8152",
            "bus": "usb",
            "pci_address": None,
            "operstate": "unknown",
            "speed_mbps": None,
            **NO_ETHTOOL,
        },
        {
            "name": "eth0",
            "mac": "52:54:00:12:34:56",
            "permanent_mac": "52:54:00:12:34:56",
            "driver": "virtio_net",
            "bus": "virtio",
            "pci_address": "0000:00:03.0",
            "operstate": "down",
            "speed_mbps": None,
            **NO_ETHTOOL,
        },
    ]


@pytest.mark.parametrize(
    "text, speed",
    [
        ("1000", 1000),
        ("-1", None),
        ("4294967295", None),
        ("0", None),
        ("", None),
        (None, None),
        ("garbage", None),
    ],
)
def test_speed(text, speed):
    assert audit.net_speed(text) == speed


def test_lab_guest_without_network_card_has_no_interfaces(sysfs):
    """The lab guest's /proc/net/dev lists only lo (README: no network card unless stated)."""
    lines = (LAB_FIXTURES / "ip-link.txt").read_text().splitlines()[1:-1]
    names = [line.split(":")[0].strip() for line in lines[2:]]
    assert names == ["lo"]
    for name in names:
        add_interface(sysfs, name, address="00:00:00:00:00:00", operstate="unknown")
    document = collect(sysfs)
    assert document["network"] == []
    assert document["collectors"]["network"]["status"] == "ok"


def test_no_sysfs_class_net_is_skipped(sysfs):
    document = collect(sysfs)
    assert document["network"] is None
    assert document["collectors"]["network"]["status"] == "skipped"


def test_garbage_in_sysfs_files_is_not_fatal(sysfs):
    nic = add_bus_device(sysfs, "pci0000:00/0000:00:1f.6", "pci", None)
    add_interface(sysfs, "eno1", nic, address="x", addr_assign_type="x", speed="fast")
    (sysfs / "devices/pci0000:00/0000:00:1f.6/net/eno1/address").write_bytes(b"\xff\xfe\x00")
    document = collect(sysfs)
    assert document["errors"] == []
    (interface,) = document["network"]
    assert (interface["name"], interface["permanent_mac"], interface["speed_mbps"], interface["driver"]) == (
        "eno1",
        None,
        None,
        None,
    )
    assert interface["operstate"] is None
    assert interface["mac"] is None  # undecodable bytes are not a MAC


def test_capture_then_replay_gives_the_same_interfaces(sysfs, tmp_path):
    """--capture must keep sysfs's symlinks (class/net/X, X/device, device/driver) so --replay reads the
    same facts; the capture may not break the collector either."""
    nic = add_bus_device(sysfs, "pci0000:00/0000:00:1f.6", "pci", "e1000e")
    add_interface(
        sysfs, "eno1", nic, address="3c:ec:ef:01:02:03", addr_assign_type=0, operstate="up", speed=1000
    )
    add_interface(sysfs, "lo", address="00:00:00:00:00:00", operstate="unknown")
    capture = tmp_path / "capture"
    live = audit.Runner(sysfs=sysfs, procfs=sysfs / "proc", devfs=sysfs / "dev", capture=capture)
    captured = audit.build_document(live, [("network", audit.collect_network)])
    (capture / "commands").mkdir(exist_ok=True)
    replayed = audit.build_document(audit.Runner(replay=capture), [("network", audit.collect_network)])
    assert captured["errors"] == []
    assert captured["network"][0]["pci_address"] == "0000:00:1f.6"
    assert replayed["network"] == captured["network"]


# -- ethtool ----------------------------------------------------------------------------------------------

ETHTOOL = REAL_FIXTURES / "ethtool"


def info(driver, version, firmware, bus, version_only=None, psid=None):
    return {
        "driver": driver,
        "driver_version": version,
        "firmware": None
        if firmware is None
        else {"printed": firmware, "version": version_only or firmware, "psid": psid},
        "expansion_rom_version": None,
        "bus_info": bus,
    }


# What a person reads in each `ethtool -i` file.
ETHTOOL_INFO_FILES = {
    "adamxiao-intel-ixgbe-ethtool-i.txt": info("ixgbe", "5.3.7", "0x800003df, 255.65535.255", "0000:01:00.0"),
    "aoi-broadcom-tg3-ethtool-i.txt": info("tg3", "5.10.0-30-2-amd64", "sb", "0000:02:00.0"),
    "ethq-issue27-intel-e810-iavf-vf-ethtool-i.txt": info(
        "iavf", "5.19.4-100.fc35.x86_64", None, "0000:3b:01.0"
    ),  # firmware-version: N/A
    "ethq-issue27-intel-e810-ice-ethtool-i.txt": info(
        "ice", "5.19.4-100.fc35.x86_64", "4.22 0x80010446 1.3197.0", "0000:3b:00.0"
    ),
    "ethq-issue4-intel-i350-igb-ethtool-i.txt": info("igb", "5.4.0-k", "1.61, 0x8000090e", "0000:02:00.0"),
    "ethq-issue6-broadcom-bcm57840-bnx2x-ethtool-i.txt": info(
        "bnx2x", "1.712.30-0", "bc 7.14.37", "0000:06:00.0"
    ),
    "ice-linux-issue24-intel-e810xxv-ice-oot-ethtool-i.txt": info(
        "ice", "1.16.3", "4.30 0x8001af27 1.3429.0", "0000:27:00.0"
    ),
    "ubuntu-mlnx-dpdk-nvidia-cx7-vf-mlx5_core-ethtool-i.txt": info(
        "mlx5_core",
        "6.1.106-116.188.amzn2023.x86_64",
        "28.42.1000 (MT_0000000834)",
        "0000:02:00.3",
        "28.42.1000",
        "MT_0000000834",
    ),
}

# What a person reads in each `ethtool IFACE` file.
ETHTOOL_LINK_FILES = {
    "adamxiao-intel-ixgbe-10g-fibre-ethtool-link.txt": {
        "speed_mbps": 10000,
        "duplex": "full",
        "port": "FIBRE",
        "auto_negotiation": True,
        "link_detected": True,
    },
    "aoi-broadcom-tg3-1g-ethtool-link.txt": {  # the source stops before "Link detected"
        "speed_mbps": 1000,
        "duplex": "full",
        "port": "Twisted Pair",
        "auto_negotiation": True,
        "link_detected": None,
    },
    "dklog-issue33-1g-copper-ethtool-link-tabs.txt": {
        "speed_mbps": 1000,
        "duplex": "full",
        "port": "Twisted Pair",
        "auto_negotiation": True,
        "link_detected": True,
    },
}


def test_every_ethtool_fixture_is_covered():
    assert sorted(p.name for p in ETHTOOL.iterdir()) == sorted([*ETHTOOL_INFO_FILES, *ETHTOOL_LINK_FILES])


@pytest.mark.parametrize("name", sorted(ETHTOOL_INFO_FILES))
def test_ethtool_info_fixture(name):
    assert audit.parse_ethtool_info((ETHTOOL / name).read_text()) == ETHTOOL_INFO_FILES[name]


@pytest.mark.parametrize("name", sorted(ETHTOOL_LINK_FILES))
def test_ethtool_link_fixture(name):
    text = (ETHTOOL / name).read_text()
    assert audit.parse_ethtool_link(text) == ETHTOOL_LINK_FILES[name]
    assert audit.parse_ethtool_link(text.replace("\n", "\r\n")) == ETHTOOL_LINK_FILES[name]


@pytest.mark.parametrize(
    "printed, version, psid",
    [
        ("28.42.1000 (MT_0000000834)", "28.42.1000", "MT_0000000834"),
        ("22.39.1002 (MT_0000000359)", "22.39.1002", "MT_0000000359"),
        ("14.30.1284 (MSF0010110035)", "14.30.1284 (MSF0010110035)", None),  # not a PSID form: kept whole
        ("220.0.59.0/pkg 220.0.83.0", "220.0.59.0/pkg 220.0.83.0", None),
        ("sb", "sb", None),
    ],
)
def test_firmware_split(printed, version, psid):
    assert audit.split_firmware(printed) == {"printed": printed, "version": version, "psid": psid}


@pytest.mark.parametrize("printed", ["N/A", "", "   ", None])
def test_no_firmware(printed):
    assert audit.split_firmware(printed) is None


def test_ethtool_unknowns_and_garbage():
    """What the real ethtool 6.1 prints for a virtio NIC here: speed and duplex "Unknown!"."""
    virtio = (
        "Settings for eth0:\n\tSpeed: Unknown!\n\tDuplex: Unknown! (255)\n\tPort: Other\n"
        "\tLink detected: yes\n"
    )
    assert audit.parse_ethtool_link(virtio) == {
        "speed_mbps": None,
        "duplex": None,
        "port": "Other",
        "auto_negotiation": None,
        "link_detected": True,
    }
    assert audit.parse_ethtool_link("No data available\n") is None
    assert audit.parse_ethtool_info("\x00\xff garbage") is None
    truncated = (ETHTOOL / "ethq-issue4-intel-i350-igb-ethtool-i.txt").read_text()[:60]
    assert audit.parse_ethtool_info(truncated)["driver_version"] == "5.4.0-k"


def fake_ethtool(bin_dir, answers: dict[str, tuple[str, int, str]]):
    """An ethtool on PATH: for each "args" the text it prints (a fixture's path or literal text), its exit
    status and its stderr; anything else fails as ethtool does for an unknown interface."""
    arms = []
    for args, (stdout, rc, stderr) in answers.items():
        source = (
            f"/bin/cat {shlex.quote(stdout)}"
            if stdout.startswith("/")
            else f"printf %s {shlex.quote(stdout)}"
        )
        arms.append(f'  "{args}") {source}; printf %s {shlex.quote(stderr)} >&2; exit {rc};;')
    write_tool(
        bin_dir,
        "ethtool",
        'case "$*" in\n'
        + "\n".join(arms)
        + '\nesac\necho "Cannot get driver information: No such device" >&2\n'
        "exit 71",
    )


def test_ethtool_facts_join_the_interfaces(sysfs, tmp_path):
    """A ConnectX-7 VF whose sysfs speed is unreadable (ethtool's is used), an igb port with sysfs link facts
    (kept over ethtool's), a NIC whose link settings are not supported (silent) and one whose ethtool prints
    garbage (an error, the interface still listed)."""
    cx7 = add_bus_device(sysfs, "pci0000:00/0000:00:02.0/0000:02:00.3", "pci", "mlx5_core")
    add_interface(sysfs, "net1", cx7, address="b8:3f:d2:00:00:01", addr_assign_type=0, operstate="up")
    igb = add_bus_device(sysfs, "pci0000:00/0000:00:1c.0/0000:02:00.0", "pci", "igb")
    add_interface(
        sysfs,
        "eth0",
        igb,
        address="a0:36:9f:00:00:01",
        addr_assign_type=0,
        operstate="up",
        speed=100,
        duplex="half",
        carrier=1,
    )
    vf = add_bus_device(sysfs, "pci0000:3a/0000:3a:00.0/0000:3b:01.0", "pci", "iavf")
    add_interface(sysfs, "enp59s0f0v0", vf, address="02:00:00:00:00:01", operstate="down", carrier=0)
    tg3 = add_bus_device(sysfs, "pci0000:00/0000:00:1c.4/0000:04:00.0", "pci", "tg3")
    add_interface(sysfs, "eno2", tg3, address="d0:94:66:00:00:02", addr_assign_type=0, operstate="down")
    mellanox_link = tmp_path / "cx7-link.txt"
    mellanox_link.write_text(
        "Settings for net1:\n\tSpeed: 200000Mb/s\n\tDuplex: Full\n\tPort: Direct Attach Copper\n"
        "\tLink detected: yes\n"
    )
    fake_ethtool(
        tmp_path / "bin",
        {
            "-i net1": (str(ETHTOOL / "ubuntu-mlnx-dpdk-nvidia-cx7-vf-mlx5_core-ethtool-i.txt"), 0, ""),
            "net1": (str(mellanox_link), 0, ""),
            "-i eth0": (str(ETHTOOL / "ethq-issue4-intel-i350-igb-ethtool-i.txt"), 0, ""),
            "eth0": (str(ETHTOOL / "dklog-issue33-1g-copper-ethtool-link-tabs.txt"), 0, ""),
            "-i enp59s0f0v0": (str(ETHTOOL / "ethq-issue27-intel-e810-iavf-vf-ethtool-i.txt"), 0, ""),
            "enp59s0f0v0": ("", 75, "netlink error: Operation not supported\n"),
            "-i eno2": ("\x01\x02 nothing useful\n", 0, ""),
            "eno2": ("No data available\n", 75, ""),
        },
    )
    document = collect(sysfs)
    by_name = {interface["name"]: interface for interface in document["network"]}
    assert by_name["net1"] == {
        "name": "net1",
        "mac": "b8:3f:d2:00:00:01",
        "permanent_mac": "b8:3f:d2:00:00:01",
        "driver": "mlx5_core",
        "bus": "pci",
        "pci_address": "0000:02:00.3",
        "operstate": "up",
        "speed_mbps": 200000,
        "duplex": "full",
        "link_detected": True,
        "port": "Direct Attach Copper",
        **{
            key: ETHTOOL_INFO_FILES["ubuntu-mlnx-dpdk-nvidia-cx7-vf-mlx5_core-ethtool-i.txt"][key]
            for key in ("driver_version", "firmware", "expansion_rom_version", "bus_info")
        },
    }
    assert by_name["net1"]["firmware"]["psid"] == "MT_0000000834"
    eth0 = by_name["eth0"]
    assert (eth0["speed_mbps"], eth0["duplex"], eth0["link_detected"], eth0["port"]) == (
        100,
        "half",
        True,
        "Twisted Pair",
    )
    assert (eth0["driver_version"], eth0["firmware"]["printed"]) == ("5.4.0-k", "1.61, 0x8000090e")
    vf_entry = by_name["enp59s0f0v0"]
    assert (
        vf_entry["firmware"],
        vf_entry["bus_info"],
        vf_entry["link_detected"],
        vf_entry["speed_mbps"],
    ) == (
        None,
        "0000:3b:01.0",
        False,
        None,
    )
    assert (by_name["eno2"]["driver"], by_name["eno2"]["firmware"]) == ("tg3", None)
    assert [(e["command"], e["message"]) for e in document["errors"]] == [
        ("ethtool -i eno2", "unreadable output: ?? nothing useful")
    ]
    assert document["collectors"]["network"]["status"] == "partial"
    assert_schema("network", document["network"])


def test_a_hung_ethtool_is_killed_and_the_rest_is_kept(sysfs, tmp_path):
    nic = add_bus_device(sysfs, "pci0000:00/0000:00:1f.6", "pci", "e1000e")
    add_interface(
        sysfs, "eno1", nic, address="3c:ec:ef:01:02:03", addr_assign_type=0, operstate="up", speed=1000
    )
    write_tool(tmp_path / "bin", "ethtool", "exec /bin/sleep 30")
    runner = audit.Runner(sysfs=sysfs, procfs=sysfs / "proc", devfs=sysfs / "dev", timeout=1.0)
    document = audit.build_document(runner, [("network", audit.collect_network)])
    assert [e["command"] for e in document["errors"]] == ["ethtool -i eno1", "ethtool eno1"]
    assert document["network"][0]["speed_mbps"] == 1000


def test_real_ethtool_on_this_machine(monkeypatch):
    """The real ethtool (installed by test.sh) on this machine's real interfaces: its bus info and driver
    agree with what sysfs says about every PCI interface."""
    monkeypatch.setenv("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
    assert shutil.which("ethtool"), "ethtool is not installed (apt-get install ethtool)"
    document = audit.build_document(audit.Runner(), [("network", audit.collect_network)])
    assert document["errors"] == []
    pci = [interface for interface in document["network"] if interface["pci_address"]]
    for interface in pci:
        assert interface["bus_info"] == interface["pci_address"], interface
        assert interface["driver_version"] is not None, interface


# -- acceptance: NIC firmware and PSID in a profile ---------------------------------------------------------


def test_profile_checks_nic_firmware_and_psid(sysfs, tmp_path):
    """--make-profile writes each NIC group's firmware (without the PSID) and PSID; a spec asking for newer
    firmware (compared as a version) or another PSID names the port."""
    cx7 = add_bus_device(sysfs, "pci0000:00/0000:00:02.0/0000:02:00.3", "pci", "mlx5_core")
    add_interface(sysfs, "net1", cx7, address="b8:3f:d2:00:00:01", addr_assign_type=0, operstate="up")
    fake_ethtool(
        tmp_path / "bin",
        {"-i net1": (str(ETHTOOL / "ubuntu-mlnx-dpdk-nvidia-cx7-vf-mlx5_core-ethtool-i.txt"), 0, "")},
    )
    document = collect(sysfs)
    made = audit.make_profile(document)
    assert made["nics"] == [
        {"match": {"driver": "mlx5_core"}, "count": 1, "firmware": "28.42.1000", "psid": "MT_0000000834"}
    ]
    assert failed_checks(document, {"nics": made["nics"]}) == []
    spec = {
        "nics": [{"match": {"driver": "mlx5_core"}, "firmware": {"min": "28.42.1010"}, "psid": "MT_*835"}]
    }
    assert failed_checks(document, spec) == [
        "nic net1: firmware 28.42.1000, expected at least 28.42.1010",
        "nic net1: PSID MT_0000000834, expected matching MT_*835",
    ]
