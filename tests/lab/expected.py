"""The one table of what the lab's emulated server is: every value QEMU is told and every value asserted.

The SMBIOS options, the raw SMBIOS type 16/17 structures, the IPMI FRU and SDR files and the disks'
properties are all generated from here (tests/lab/smbios.py, tests/lab/ipmi_fru.py, tests/lab/qemu.py),
and the tests compare the real tools' output and the audit's document with these same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MiB = 1024 * 1024
GiB = 1024 * MiB

BIOS = {"vendor": "Acme BIOS Corp", "version": "2.4.1", "date": "03/15/2024", "release": "2.4"}
SYSTEM = {
    "manufacturer": "Acme Servers", "product": "LabServer 2U", "version": "Rev A",
    "serial": "SYS-SN-ABC123", "uuid": "4c4c4544-0042-3510-8058-b2c04f4a4b32",
    "sku": "LS2U-SKU", "family": "LabServer",
}
BOARD = {
    "manufacturer": "Acme Boards Inc.", "product": "X13DPi-LAB", "version": "1.01",
    "serial": "BRD-SN-123456", "asset": "BOARD-ASSET",
}
CHASSIS = {"manufacturer": "Acme Servers", "version": "2U", "serial": "CHS-SN-77001", "asset": "CHS-ASSET"}
CPU = {
    "sockets": 2,
    "socket_prefix": "CPU",          # QEMU names sockets "<prefix> <n>"
    "manufacturer": "Intel(R) Corporation",
    "model": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
    "serial": "CPU-SN-0",           # QEMU gives every socket the same serial
    "asset": "CPU-ASSET",
    "part": "SRKJ9",
    "max_speed_mhz": 3200,
    "current_speed_mhz": 2000,
}


@dataclass(frozen=True)
class Dimm:
    """One memory slot (SMBIOS type 17); `size_bytes == 0` is an empty slot."""

    handle: int
    locator: str
    bank: str
    size_bytes: int = 0
    speed_mts: int = 0
    configured_speed_mts: int = 0
    manufacturer: str = ""
    serial: str = ""
    asset: str = ""
    part: str = ""
    rank: int = 0

    @property
    def populated(self) -> bool:
        """True when a module is installed in the slot."""
        return self.size_bytes > 0


MEMORY_ARRAY_HANDLE = 0x1000   # QEMU's own type 19 points here, so our type 16 takes this handle
MEMORY_ARRAY_MAX_BYTES = 1024 * GiB


def _dimms() -> list[Dimm]:
    slots = []
    for index in range(16):
        cpu, channel = divmod(index, 8)
        locator = f"CPU{cpu}_DIMM_{'ABCDEFGH'[channel]}1"
        bank = f"P{cpu}_Node{cpu}_Channel{'ABCDEFGH'[channel]}_Dimm0"
        handle = 0x1100 + index
        if channel % 2:   # B, D, F, H left empty
            slots.append(Dimm(handle, locator, bank))
            continue
        slots.append(Dimm(
            handle, locator, bank, size_bytes=32 * GiB, speed_mts=3200, configured_speed_mts=2933,
            manufacturer="Samsung", serial=f"S1A2B{index:04X}", asset=f"ASSET-DIMM-{index:02d}",
            part="M393A4K40DB3-CWE", rank=2,
        ))
    return slots


DIMMS = _dimms()


@dataclass(frozen=True)
class Disk:
    """A disk the lab attaches, as the tools should report it."""

    name: str              # kernel name in the guest
    model: str
    serial: str
    size_bytes: int
    transport: str         # lsblk TRAN
    wwn: str | None = None
    smart_passed: bool | None = None   # None: no SMART through this path
    removable: bool = False
    extra: dict = field(default_factory=dict)


QEMU_NVME_VENDOR = 0x1B36   # Red Hat, the PCI vendor of QEMU's NVMe controller
QEMU_VERSION_FIRMWARE = "7.2.22"   # QEMU 7.2's NVMe reports its version as firmware revision


def nvme_wwn(vendor: int, serial: str, model: str, nsid: int = 1) -> str:
    """Return the `nvme.` WWN Linux makes for a namespace without EUI/NGUID/UUID."""
    return f"nvme.{vendor:04x}-{serial.encode().hex()}-{model.encode().hex()}-{nsid:08x}"


NVME = Disk(
    name="nvme0n1", model="QEMU NVMe Ctrl", serial="NVME-SN-0001", size_bytes=256 * MiB, transport="nvme",
    wwn=nvme_wwn(QEMU_NVME_VENDOR, "NVME-SN-0001", "QEMU NVMe Ctrl"), smart_passed=True,
    extra={"firmware": QEMU_VERSION_FIRMWARE},
)
SATA = Disk(
    name="sda", model="ST4000NM0035-1V4107", serial="ZC1A2B3C", size_bytes=256 * MiB, transport="sata",
    wwn="0x5000c500a1b2c3d4", smart_passed=True,
)
USB_STICK = Disk(
    name="sdb", model="QEMU HARDDISK", serial="USB-SN-42", size_bytes=64 * MiB, transport="usb",
    removable=True, extra={"label": "BEEUSB", "fstype": "vfat"},
)

# PCIe: the NVMe sits behind a root port whose capability we set; QEMU 7.2's NVMe always links 2.5 GT/s x1.
NVME_ROOT_PORT = {"bdf": "0000:00:03.0", "max_speed": "8.0 GT/s PCIe", "max_width": 4,
                  "x_speed": 8, "x_width": 4}
NVME_PCI = {"bdf": "0000:01:00.0", "max_speed": "2.5 GT/s PCIe", "max_width": 1,
            "current_speed": "2.5 GT/s PCIe", "current_width": 1}

# IPMI FRU 0 (the BMC's builtin FRU) and a PSU FRU found through an SDR FRU device locator.
FRU_CHASSIS = {"type": 0x17, "type_name": "Rack Mount Chassis", "part": "CHS-PN-0042",
               "serial": CHASSIS["serial"]}
FRU_BOARD = {"mfg_minutes": 14000000, "manufacturer": BOARD["manufacturer"], "product": BOARD["product"],
             "serial": BOARD["serial"], "part": "BRD-PN-9000"}
FRU_PRODUCT = {"manufacturer": SYSTEM["manufacturer"], "name": SYSTEM["product"], "part": "LS2U-PN-1",
               "version": SYSTEM["version"], "serial": SYSTEM["serial"], "asset": "ASSET-0001"}
PSU = {"fru_id": 1, "name": "PSU1 FRU", "manufacturer": "Acme Power", "model": "PSU 1600W Titanium",
       "part": "PWS-1K62A-1R", "version": "1.0", "serial": "PSU-SN-000777"}
FRU_AREA_SIZE = 1024

# The BMC's Get Device ID (ipmitool mc info), set on QEMU's ipmi-bmc-sim. ipmitool names the manufacturer
# and product from its own tables (IANA 10876 is Supermicro); the minor firmware revision is BCD (0x88 = 88).
BMC = {"device_id": 32, "device_rev": 0, "fwrev1": 3, "fwrev2": 0x88, "firmware_revision": "3.88",
       "ipmi_version": "2.0", "mfg_id": 10876, "manufacturer": "Super Micro Computer Inc.",
       "product_id": 2402, "product_name": "X11DPT-B+"}
# A network card (no backend: its link is down), for `ethtool -i` and the audit's network section.
NIC = {"model": "e1000e", "driver": "e1000e", "bdf": "0000:00:06.0", "addr": "0x6",
       "mac": "52:54:00:be:e0:18"}

# Disks the lab itself uses (not the server's hardware): the audit must not call them wrong, only list them.
LAB_DISK_SERIALS = {"in": "LABIN", "out": "LABOUT"}
GUEST_MEMORY_MIB = 1024

# Health (issue 11). The BMC's sensors: compact SDR records of discrete sensors, which `ipmi-bmc-sim`
# registers (it reads no states for them, so they read "ok" with no state: the faults come from the event
# log).
# (sensor number, name, IPMI sensor type code, entity id, entity instance, the audit's type)
SENSORS = [
    (1, "CPU0 Status", 0x07, 3, 1, "processor"),
    (2, "PSU1 Status", 0x08, 10, 1, "power supply"),
    (3, "DIMM Status", 0x0C, 32, 1, "memory"),
]
# SEL records the guest adds with `ipmitool sel add FILE` before the audit: (the 7 bytes `sel add` reads:
# EvM revision, sensor type, sensor number, direction|event type, event data 1-3; the sensor and event text
# `sel list` prints; the direction). The audit never clears them; the BMC forgets them at power-off.
SEL_EVENTS = [
    ("0x04 0x0c 0x03 0x6f 0x01 0xff 0xff", "Memory #0x03", "Uncorrectable ECC", "asserted"),
    ("0x04 0x08 0x02 0x6f 0x03 0xff 0xff", "Power Supply #0x02", "Power Supply AC lost", "asserted"),
    ("0x04 0x08 0x02 0x6f 0x01 0xff 0xff", "Power Supply #0x02", "Failure detected", "asserted"),
    ("0x04 0x08 0x02 0xef 0x01 0xff 0xff", "Power Supply #0x02", "Failure detected", "deasserted"),
    ("0x04 0x07 0x01 0x6f 0x00 0xff 0xff", "Processor #0x01", "IERR", "asserted"),
    ("0x04 0x07 0x01 0x6f 0x00 0xff 0xff", "Processor #0x01", "IERR", "asserted"),
    ("0x04 0x01 0x30 0x01 0x09 0xff 0xff", "Temperature #0x30", "Upper Critical going high", "asserted"),
]
# Kernel log lines the guest writes into /dev/kmsg before the audit (@SATA@: the SATA disk's kernel name).
# The EDAC line and the SEL's Uncorrectable ECC are one fault of one DIMM: one finding with both sources.
KMSG_DIMM = DIMMS[0].locator
KMSG_LINES = [
    f"<3>EDAC MC0: 1 UE memory read error on {KMSG_DIMM} (channel:0 slot:0 page:0x1234 offset:0x0 grain:32 "
    "syndrome:0x0)",
    "<3>blk_update_request: critical medium error, dev @SATA@, sector 2048 op 0x0:(READ) flags 0x0 "
    "phys_seg 1 prio class 0",
]
