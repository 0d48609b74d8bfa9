"""IPMI FRU data and SDR records for QEMU's `ipmi-bmc-sim`, from tests/lab/expected.py.

`frudatafile=` holds FRU id N at offset N * fruareasize: FRU 0 is the server (chassis, board and
product areas), FRU 1 the power supply (a product area). `sdrfile=` holds SDR records back to back; one
FRU Device Locator record names FRU 1 so `ipmitool fru` lists it, compact sensor records give the BMC its
sensors. Formats: IPMI Platform Management FRU
Information Storage Definition v1.0 and IPMI 2.0 section 43.8 (SDR type 11h).
"""

from __future__ import annotations

import struct
from pathlib import Path

from tests.lab import expected

END_OF_FIELDS = 0xC1
ENGLISH = 0


def checksum(data: bytes) -> int:
    """Return the byte that makes `data` plus it sum to zero modulo 256."""
    return (-sum(data)) & 0xFF


def field(text: str) -> bytes:
    """Return a type/length byte (8-bit ASCII) and the text."""
    raw = text.encode("ascii")
    if len(raw) > 63:
        raise ValueError(f"FRU field too long: {text!r}")
    return bytes([0xC0 | len(raw)]) + raw


def area(header: bytes, fields: list[str]) -> bytes:
    """Return one FRU area: version, length, `header`, the fields, end marker, padding and checksum."""
    body = b"".join(field(f) for f in fields) + bytes([END_OF_FIELDS])
    unpadded = 2 + len(header) + len(body) + 1
    length = (unpadded + 7) // 8 * 8
    data = bytes([1, length // 8]) + header + body + bytes(length - unpadded)
    return data + bytes([checksum(data)])


def chassis_area() -> bytes:
    """Return the chassis info area of FRU 0."""
    c = expected.FRU_CHASSIS
    return area(bytes([c["type"]]), [c["part"], c["serial"]])


def board_area() -> bytes:
    """Return the board info area of FRU 0 (manufacturing date in minutes since 1996-01-01)."""
    b = expected.FRU_BOARD
    date = struct.pack("<I", b["mfg_minutes"])[:3]
    return area(bytes([ENGLISH]) + date, [b["manufacturer"], b["product"], b["serial"], b["part"], ""])


def product_area(p: dict) -> bytes:
    """Return a product info area for the fields of `p`."""
    return area(bytes([ENGLISH]), [p["manufacturer"], p["name"], p["part"], p["version"], p["serial"],
                                   p.get("asset", ""), ""])


def fru_image(areas: list[tuple[int, bytes]]) -> bytes:
    """Return a FRU image: the common header, then the areas; `areas` pairs a header slot (1-4) with data."""
    offsets = [0] * 5   # internal use, chassis, board, product, multirecord
    position = 8
    payload = b""
    for slot, data in areas:
        offsets[slot] = position // 8
        payload += data
        position += len(data)
    header = bytes([1, *offsets, 0])
    return header + bytes([checksum(header)]) + payload


def server_fru() -> bytes:
    """Return FRU 0: the chassis, board and product areas."""
    return fru_image([(1, chassis_area()), (2, board_area()), (3, product_area(expected.FRU_PRODUCT))])


def psu_fru() -> bytes:
    """Return the power supply's FRU: a product area only."""
    psu = expected.PSU
    product = {"manufacturer": psu["manufacturer"], "name": psu["model"], "part": psu["part"],
               "version": psu["version"], "serial": psu["serial"]}
    return fru_image([(3, product_area(product))])


def fru_data_file() -> bytes:
    """Return the `frudatafile=` content: FRU 0 and the PSU FRU, each padded to the FRU area size."""
    size = expected.FRU_AREA_SIZE
    frus = {0: server_fru(), expected.PSU["fru_id"]: psu_fru()}
    data = bytearray(size * (max(frus) + 1))
    for fru_id, image in frus.items():
        assert len(image) <= size
        data[fru_id * size: fru_id * size + len(image)] = image
    return bytes(data)


def fru_locator_record(record_id: int, fru_id: int, name: str) -> bytes:
    """Return an SDR FRU Device Locator record (type 11h) for a logical FRU behind the BMC."""
    body = bytes([
        0x20,          # device access address: the BMC
        fru_id,        # FRU device ID
        0x80,          # logical FRU device, LUN 0, private bus 0
        0x00,          # channel 0
        0x00,          # reserved
        0x10,          # device type: FRU inventory device behind management controller
        0x00,          # device type modifier
        0x0A,          # entity: power supply
        0x01,          # entity instance
        0x00,          # OEM
    ]) + field(name)
    return struct.pack("<HBBB", record_id, 0x51, 0x11, len(body)) + body


def compact_sensor_record(record_id: int, number: int, name: str, sensor_type: int, entity: int,
                          instance: int) -> bytes:
    """Return an SDR Compact Sensor Record (type 02h, IPMI 2.0 section 43.2) of a discrete sensor with
    sensor-specific states (event/reading type 6Fh), scanning and events enabled."""
    body = bytes([
        0x20, 0x00, number,   # owner: the BMC, LUN 0; sensor number
        entity, instance,
        0x63,                 # initialization: scanning and events enabled
        0x00,                 # capabilities
        sensor_type, 0x6F,    # sensor type; sensor-specific discrete
        0xFF, 0x7F,           # assertion event mask
        0xFF, 0x7F,           # deassertion event mask
        0xFF, 0x7F,           # discrete reading mask
        0x00, 0x00, 0x00,     # units: none (discrete)
        0x00, 0x00,           # record sharing
        0x00, 0x00,           # hysteresis
        0x00, 0x00, 0x00,     # reserved
        0x00,                 # OEM
    ]) + field(name)
    return struct.pack("<HBBB", record_id, 0x51, 0x02, len(body)) + body


def sdr_file() -> bytes:
    """Return the `sdrfile=` content: the FRU locator of the PSU, then the sensors of expected.SENSORS."""
    psu = expected.PSU
    records = [fru_locator_record(1, psu["fru_id"], psu["name"])]
    for index, (number, name, sensor_type, entity, instance, _) in enumerate(expected.SENSORS):
        records.append(compact_sensor_record(2 + index, number, name, sensor_type, entity, instance))
    return b"".join(records)


def write_files(folder: Path) -> tuple[Path, Path]:
    """Write the FRU data and SDR files into `folder`; return (frudatafile, sdrfile)."""
    folder.mkdir(parents=True, exist_ok=True)
    fru, sdr = folder / "fru.bin", folder / "sdr.bin"
    fru.write_bytes(fru_data_file())
    sdr.write_bytes(sdr_file())
    return fru, sdr
