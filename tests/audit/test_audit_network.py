"""The network collector on fake /sys/class/net trees: physical interfaces only, permanent MAC without
ethtool, driver, bus, PCI address, state and speed."""

from __future__ import annotations

import pytest

from audit import audit
from tests.paths import LAB_FIXTURES


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


def collect(sysfs):
    runner = audit.Runner(sysfs=sysfs, procfs=sysfs / "proc", devfs=sysfs / "dev")
    return audit.build_document(runner, [("network", audit.collect_network)])


@pytest.fixture
def sysfs(tmp_path):
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
