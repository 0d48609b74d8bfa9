"""Compare what the real tools print with tests/lab/expected.py; each check returns its mismatches.

A check returns a list of readable differences (empty when all is as expected), so a test can assert
`== []` and show every wrong value at once. The same checks run on the host (dmidecode --from-dump over
the generated tables) and on the guest's recorded tool output.
"""

from __future__ import annotations

import json
import re

from tests.lab import expected
from tests.paths import REPO_ROOT


def dmidecode_blocks(text: str) -> list[dict]:
    """Parse dmidecode's text into one dict per structure: {"type": N, "handle": H, field: value...}."""
    blocks = []
    current: dict | None = None
    for line in text.splitlines():
        header = re.match(r"Handle (0x[0-9A-Fa-f]+), DMI type (\d+),", line)
        if header:
            current = {"handle": int(header.group(1), 16), "type": int(header.group(2))}
            blocks.append(current)
            continue
        field = re.match(r"\t([^\t:][^:]*): (.*)$", line)
        if current is not None and field:
            current[field.group(1)] = field.group(2).strip()
    return blocks


def compare(problems: list[str], where: str, actual: object, wanted: object) -> None:
    """Append a readable difference to `problems` when `actual != wanted`."""
    if actual != wanted:
        problems.append(f"{where}: got {actual!r}, expected {wanted!r}")


def human_size(size_bytes: int) -> str:
    """Return a size the way dmidecode prints a DIMM size ("32 GB")."""
    return f"{size_bytes // expected.GiB} GB" if size_bytes >= expected.GiB else f"{size_bytes // 1024**2} MB"


def check_memory(blocks: list[dict]) -> list[str]:
    """Check the type 16 array and every type 17 slot against the expected DIMMs."""
    problems: list[str] = []
    arrays = [b for b in blocks if b["type"] == 16]
    compare(problems, "type 16 handles", [a["handle"] for a in arrays], [expected.MEMORY_ARRAY_HANDLE])
    if arrays:
        compare(problems, "type 16 devices", arrays[0].get("Number Of Devices"), str(len(expected.DIMMS)))
    slots = {b.get("Locator"): b for b in blocks if b["type"] == 17}
    compare(problems, "type 17 locators", sorted(slots), sorted(d.locator for d in expected.DIMMS))
    for dimm in expected.DIMMS:
        slot = slots.get(dimm.locator, {})
        where = f"DIMM {dimm.locator}"
        compare(problems, f"{where} handle", slot.get("handle"), dimm.handle)
        compare(problems, f"{where} array", slot.get("Array Handle"), f"0x{expected.MEMORY_ARRAY_HANDLE:04X}")
        compare(problems, f"{where} bank", slot.get("Bank Locator"), dimm.bank)
        if not dimm.populated:
            compare(problems, f"{where} size", slot.get("Size"), "No Module Installed")
            continue
        wanted = {
            "Size": human_size(dimm.size_bytes), "Speed": f"{dimm.speed_mts} MT/s",
            "Configured Memory Speed": f"{dimm.configured_speed_mts} MT/s", "Manufacturer": dimm.manufacturer,
            "Serial Number": dimm.serial, "Part Number": dimm.part, "Asset Tag": dimm.asset,
            "Rank": str(dimm.rank), "Type": "DDR4",
        }
        for key, value in wanted.items():
            compare(problems, f"{where} {key}", slot.get(key), value)
    return problems


def check_platform(blocks: list[dict]) -> list[str]:
    """Check SMBIOS types 0-4 (BIOS, system, board, chassis, both CPU sockets) against the table."""
    problems: list[str] = []
    by_type: dict[int, list[dict]] = {}
    for block in blocks:
        by_type.setdefault(block["type"], []).append(block)
    first = {t: (by_type.get(t) or [{}])[0] for t in (0, 1, 2, 3)}
    bios, system, board, chassis = expected.BIOS, expected.SYSTEM, expected.BOARD, expected.CHASSIS
    wanted = {
        0: {"Vendor": bios["vendor"], "Version": bios["version"], "Release Date": bios["date"],
            "BIOS Revision": bios["release"]},
        1: {"Manufacturer": system["manufacturer"], "Product Name": system["product"],
            "Version": system["version"], "Serial Number": system["serial"], "UUID": system["uuid"],
            "SKU Number": system["sku"], "Family": system["family"]},
        2: {"Manufacturer": board["manufacturer"], "Product Name": board["product"],
            "Version": board["version"], "Serial Number": board["serial"], "Asset Tag": board["asset"]},
        3: {"Manufacturer": chassis["manufacturer"], "Version": chassis["version"],
            "Serial Number": chassis["serial"], "Asset Tag": chassis["asset"]},
    }
    for kind, fields in wanted.items():
        for key, value in fields.items():
            compare(problems, f"type {kind} {key}", first[kind].get(key), value)
    cpus = by_type.get(4, [])
    cpu = expected.CPU
    compare(problems, "CPU sockets", [c.get("Socket Designation") for c in cpus],
            [f"{cpu['socket_prefix']} {n}" for n in range(cpu["sockets"])])
    for index, block in enumerate(cpus):
        for key, value in {"Version": cpu["model"], "Manufacturer": cpu["manufacturer"],
                           "Max Speed": f"{cpu['max_speed_mhz']} MHz",
                           "Current Speed": f"{cpu['current_speed_mhz']} MHz",
                           "Serial Number": cpu["serial"], "Part Number": cpu["part"]}.items():
            compare(problems, f"CPU {index} {key}", block.get(key), value)
    return problems


def ipmitool_fields(text: str) -> dict[str, str]:
    """Parse `ipmitool fru print N` into {field: value}."""
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def check_fru(fru0: str, fru1: str) -> list[str]:
    """Check `ipmitool fru print 0` and `... print 1` against the FRU table."""
    problems: list[str] = []
    got0, got1 = ipmitool_fields(fru0), ipmitool_fields(fru1)
    c, b, p, psu = expected.FRU_CHASSIS, expected.FRU_BOARD, expected.FRU_PRODUCT, expected.PSU
    wanted0 = {
        "Chassis Type": c["type_name"], "Chassis Part Number": c["part"], "Chassis Serial": c["serial"],
        "Board Mfg": b["manufacturer"], "Board Product": b["product"], "Board Serial": b["serial"],
        "Board Part Number": b["part"], "Product Manufacturer": p["manufacturer"], "Product Name": p["name"],
        "Product Part Number": p["part"], "Product Version": p["version"], "Product Serial": p["serial"],
        "Product Asset Tag": p["asset"],
    }
    wanted1 = {"Product Manufacturer": psu["manufacturer"], "Product Name": psu["model"],
               "Product Part Number": psu["part"], "Product Version": psu["version"],
               "Product Serial": psu["serial"]}
    for key, value in wanted0.items():
        compare(problems, f"FRU 0 {key}", got0.get(key), value)
    for key, value in wanted1.items():
        compare(problems, f"FRU {psu['fru_id']} {key}", got1.get(key), value)
    return problems


def check_mc_info(text: str) -> list[str]:
    """Check `ipmitool mc info` against the BMC table (what QEMU's ipmi-bmc-sim was told)."""
    problems: list[str] = []
    got, bmc = ipmitool_fields(text), expected.BMC
    wanted = {
        "Device ID": str(bmc["device_id"]), "Device Revision": str(bmc["device_rev"]),
        "Firmware Revision": bmc["firmware_revision"], "IPMI Version": bmc["ipmi_version"],
        "Manufacturer ID": str(bmc["mfg_id"]), "Manufacturer Name": bmc["manufacturer"],
        "Product ID": f"{bmc['product_id']} (0x{bmc['product_id']:04x})", "Product Name": bmc["product_name"],
    }
    for key, value in wanted.items():
        compare(problems, f"mc info {key}", got.get(key), value)
    return problems


def lsblk_by_serial(text: str) -> dict[str, dict]:
    """Parse `lsblk -J -b -O` into {serial: device}."""
    return {d["serial"]: d for d in json.loads(text)["blockdevices"] if d.get("serial")}


def check_lsblk(text: str) -> list[str]:
    """Check the NVMe, SATA and USB disks as lsblk reports them (model, WWN, size, transport, removable)."""
    problems: list[str] = []
    disks = lsblk_by_serial(text)
    for disk in (expected.NVME, expected.SATA, expected.USB_STICK):
        got = disks.get(disk.serial)
        if got is None:
            problems.append(f"lsblk: no disk with serial {disk.serial}")
            continue
        for key, value in {"model": disk.model, "wwn": disk.wwn, "size": disk.size_bytes,
                           "tran": disk.transport, "rm": disk.removable, "type": "disk"}.items():
            compare(problems, f"lsblk {disk.serial} {key}", got.get(key), value)
    return problems


def smart_wwn(report: dict) -> str | None:
    """Return smartctl's ATA WWN (naa, oui, id) as the 0x... hex lsblk prints."""
    wwn = report.get("wwn")
    if not wwn:
        return None
    return f"0x{wwn['naa']:01x}{wwn['oui']:06x}{wwn['id']:09x}"


def check_smart(report: dict, disk: expected.Disk) -> list[str]:
    """Check one `smartctl -j -a` report: model, serial, WWN, capacity and the SMART verdict."""
    problems: list[str] = []
    where = f"smartctl {disk.serial}"
    compare(problems, f"{where} model", report.get("model_name"), disk.model)
    compare(problems, f"{where} serial", report.get("serial_number"), disk.serial)
    compare(problems, f"{where} passed", (report.get("smart_status") or {}).get("passed"), disk.smart_passed)
    if disk.transport == "sata":
        compare(problems, f"{where} wwn", smart_wwn(report), disk.wwn)
        compare(problems, f"{where} bytes", (report.get("user_capacity") or {}).get("bytes"), disk.size_bytes)
    return problems


def pci_links(text: str) -> dict[str, dict[str, str]]:
    """Parse the guest's pci-link listing ("BDF class=... cur=SPEED/xW max=SPEED/xW") by address."""
    links = {}
    for line in text.splitlines():
        match = re.match(r"(\S+) class=(\S+) cur=(.*)/x(\S*) max=(.*)/x(\S*)$", line)
        if match:
            bdf, cls, cur_speed, cur_width, max_speed, max_width = match.groups()
            links[bdf] = {"class": cls, "cur_speed": cur_speed, "cur_width": cur_width,
                          "max_speed": max_speed, "max_width": max_width}
    return links


def check_pci_links(text: str) -> list[str]:
    """Check the NVMe's and its root port's PCIe link capability and status in sysfs."""
    problems: list[str] = []
    links = pci_links(text)
    port, nvme = expected.NVME_ROOT_PORT, expected.NVME_PCI
    got_port, got_nvme = links.get(port["bdf"], {}), links.get(nvme["bdf"], {})
    compare(problems, "root port max speed", got_port.get("max_speed"), port["max_speed"])
    compare(problems, "root port max width", got_port.get("max_width"), str(port["max_width"]))
    compare(problems, "NVMe class", got_nvme.get("class"), "0x010802")
    compare(problems, "NVMe max speed", got_nvme.get("max_speed"), nvme["max_speed"])
    compare(problems, "NVMe max width", got_nvme.get("max_width"), str(nvme["max_width"]))
    compare(problems, "NVMe link speed", got_nvme.get("cur_speed"), nvme["current_speed"])
    compare(problems, "NVMe link width", got_nvme.get("cur_width"), str(nvme["current_width"]))
    return problems


def schema_problems(document: dict) -> list[str]:
    """Return where `document` breaks the audit's JSON Schema (audit/bee-audit.schema.json)."""
    import jsonschema

    schema = json.loads((REPO_ROOT / "audit" / "bee-audit.schema.json").read_text())
    draft = jsonschema.Draft202012Validator
    validator = draft(schema, format_checker=draft.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
