"""SMBIOS for the lab's QEMU guest, from tests/lab/expected.py.

QEMU makes types 0-4 from `-smbios type=N,...` options; the memory (type 16 and one type 17 per slot) it
cannot describe that way, so those are raw structures, one per file, passed with `-smbios file=`.
`table_dump()` also wraps structures into a dump that `dmidecode --from-dump` reads on the host.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tests.lab import expected

NOT_PROVIDED = 0xFFFE
UNKNOWN_WIDTH = 0xFFFF
MEMORY_TYPE_DDR4 = 0x1A
MEMORY_TYPE_UNKNOWN = 0x02
FORM_FACTOR_DIMM = 0x09
TYPE_DETAIL_SYNCHRONOUS_REGISTERED = 0x0080 | 0x2000
MILLIVOLTS = 1200


def strings_area(strings: list[str]) -> bytes:
    """Return the SMBIOS string set: each string NUL-terminated, then a NUL (two NULs when empty)."""
    if not strings:
        return b"\0\0"
    return b"".join(s.encode("ascii") + b"\0" for s in strings) + b"\0"


class Strings:
    """Collects a structure's strings and hands out their 1-based numbers (0 for an empty string)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def ref(self, text: str) -> int:
        """Return the string number of `text`, adding it; 0 when `text` is empty."""
        if not text:
            return 0
        self.items.append(text)
        return len(self.items)


def memory_array() -> bytes:
    """Return the type 16 structure (Physical Memory Array) at the handle QEMU's type 19 points to."""
    max_kib = expected.MEMORY_ARRAY_MAX_BYTES // 1024
    body = struct.pack(
        "<BBHBBBIHHQ", 16, 23, expected.MEMORY_ARRAY_HANDLE,
        0x03,   # location: system board or motherboard
        0x03,   # use: system memory
        0x06,   # error correction: multi-bit ECC
        max_kib, NOT_PROVIDED, len(expected.DIMMS), 0,
    )
    return body + strings_area([])


def memory_device(dimm: expected.Dimm) -> bytes:
    """Return the type 17 structure (Memory Device, SMBIOS 2.8 layout, 40 bytes) of one slot."""
    strings = Strings()
    locator, bank = strings.ref(dimm.locator), strings.ref(dimm.bank)
    maker, serial = strings.ref(dimm.manufacturer), strings.ref(dimm.serial)
    asset, part = strings.ref(dimm.asset), strings.ref(dimm.part)
    size_mib = dimm.size_bytes // expected.MiB
    size_field, extended = (0x7FFF, size_mib) if size_mib >= 0x7FFF else (size_mib, 0)
    populated = dimm.populated
    body = struct.pack(
        "<BBHHHHHHBBBBBHHBBBBBIHHHH", 17, 40, dimm.handle, expected.MEMORY_ARRAY_HANDLE, NOT_PROVIDED,
        72 if populated else UNKNOWN_WIDTH, 64 if populated else UNKNOWN_WIDTH, size_field,
        FORM_FACTOR_DIMM, 0, locator, bank,
        MEMORY_TYPE_DDR4 if populated else MEMORY_TYPE_UNKNOWN,
        TYPE_DETAIL_SYNCHRONOUS_REGISTERED if populated else 0,
        dimm.speed_mts, maker, serial, asset, part, dimm.rank & 0x0F, extended,
        dimm.configured_speed_mts, *(3 * [MILLIVOLTS if populated else 0]),
    )
    assert len(body) == 40
    return body + strings_area(strings.items)


def raw_structures() -> list[bytes]:
    """Return the raw structures QEMU gets as files: type 16, then every type 17 in slot order."""
    return [memory_array()] + [memory_device(d) for d in expected.DIMMS]


def write_structure_files(folder: Path) -> list[Path]:
    """Write one file per raw structure into `folder`; return them in order for `-smbios file=`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(raw_structures()):
        path = folder / f"smbios-{index:02d}-type{data[0]}.bin"
        path.write_bytes(data)
        paths.append(path)
    return paths


def qemu_escape(value: str) -> str:
    """Return `value` escaped for a QEMU option list (a comma is written twice)."""
    return value.replace(",", ",,")


def qemu_options() -> list[str]:
    """Return the `-smbios` arguments: types 0-4 as fields, from the expected table."""
    bios, system, board, chassis, cpu = (
        expected.BIOS, expected.SYSTEM, expected.BOARD, expected.CHASSIS, expected.CPU,
    )
    major, minor = bios["release"].split(".")
    types = [
        ("0", {"vendor": bios["vendor"], "version": bios["version"], "date": bios["date"],
               "release": f"{major}.{minor}", "uefi": "off"}),
        ("1", {"manufacturer": system["manufacturer"], "product": system["product"],
               "version": system["version"], "serial": system["serial"], "uuid": system["uuid"],
               "sku": system["sku"], "family": system["family"]}),
        ("2", {"manufacturer": board["manufacturer"], "product": board["product"],
               "version": board["version"], "serial": board["serial"], "asset": board["asset"],
               "location": "Mainboard"}),
        ("3", {"manufacturer": chassis["manufacturer"], "version": chassis["version"],
               "serial": chassis["serial"], "asset": chassis["asset"]}),
        ("4", {"sock_pfx": cpu["socket_prefix"], "manufacturer": cpu["manufacturer"], "version": cpu["model"],
               "serial": cpu["serial"], "asset": cpu["asset"], "part": cpu["part"],
               "max-speed": str(cpu["max_speed_mhz"]), "current-speed": str(cpu["current_speed_mhz"])}),
    ]
    args = []
    for kind, fields in types:
        args += ["-smbios", ",".join([f"type={kind}"] + [f"{k}={qemu_escape(v)}" for k, v in fields.items()])]
    return args


def end_of_table(handle: int = 0xFEFF) -> bytes:
    """Return the type 127 structure that ends a table."""
    return struct.pack("<BBH", 127, 4, handle) + strings_area([])


def table_dump(structures: list[bytes]) -> bytes:
    """Return a dump in dmidecode's --dump-bin layout: a 64-bit entry point at 0, the table at 0x20."""
    table = b"".join(structures) + end_of_table()
    entry = bytearray(struct.pack("<5sBBBBBBBIQ", b"_SM3_", 0, 0x18, 3, 0, 0, 1, 0, len(table), 0x20))
    entry[5] = (-sum(entry)) & 0xFF
    return bytes(entry).ljust(0x20, b"\0") + table
