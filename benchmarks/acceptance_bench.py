#!/usr/bin/env python3
"""Benchmark of acceptance: checking a large document against a profile made from it (target: well under
50 ms), and making that profile.

The large document: SMBIOS of an 8-socket server with 128 DIMM slots (a real dmidecode output), 8 GPUs (a
real nvidia-smi XML), 400 PCI functions with links, 48 disks and 32 NIC ports. The profile made from it
names every slot, so it is about as large as profiles get. Prints the median and worst time of each step.

Usage: python3 benchmarks/acceptance_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audit import audit  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures" / "real"
DMI = FIXTURES / "dmidecode" / "linuxhw-lenovo-thinksystem-sr950-v3-8s.txt"
GPUS = FIXTURES / "nvidia-smi" / "datakit-8x-tesla-v100s-pcie-32gb-passthrough.xml"
TARGET_MS = 50.0


def large_document() -> dict:
    """The document of a large GPU server, assembled from real parser outputs."""
    records = audit.parse_dmidecode(DMI.read_text(errors="replace"))
    memory = audit.parse_memory(records)
    for slot in memory["slots"]:  # populate every slot: the most checks a profile can ask for
        slot.update(populated=True, size_bytes=64 << 30, type="DDR5", speed_mts=5600,
                    configured_speed_mts=5600)
    memory.update(populated_slots=len(memory["slots"]), total_bytes=len(memory["slots"]) * (64 << 30))
    gpus = audit.parse_nvidia_smi_xml(GPUS.read_text())
    pcie = []
    for index in range(400):
        address = f"0000:{index // 32 + 1:02x}:{index % 32:02x}.0"
        pcie.append({"address": address, "class_id": ("0302", "0200", "0108", "0604")[index % 4],
                     "vendor": "Vendor", "device": f"Device {index}",
                     "link": {"current_speed_gts": 16.0, "current_width": 16,
                              "max_speed_gts": 16.0, "max_width": 16},
                     "upstream": {"address": "0000:00:01.0", "max_speed_gts": 16.0, "max_width": 16}})
    for gpu, entry in zip(gpus, pcie, strict=False):
        gpu["pcie_address"] = entry["address"]
    disks = [{"name": f"nvme{n}n1", "path": f"/dev/nvme{n}n1", "size_bytes": 3840755982336,
              "model": "SAMSUNG MZQL23T8HCLS-00A07", "serial": f"S64HNE0R{n:06d}", "firmware": "GDC5902Q",
              "transport": "nvme", "rotational": False, "removable": False} for n in range(48)]
    network = [{"name": f"ens{n}", "driver": "mlx5_core", "pci_address": pcie[n * 4 + 1]["address"],
                "speed_mbps": 200000} for n in range(32)]
    return {
        "schema_version": audit.SCHEMA_VERSION, "collectors": {},
        "generated_at": "2026-12-01T00:00:00+00:00",
        "board": audit.parse_board(records), "cpu": audit.parse_cpus(records), "memory": memory,
        "storage": disks, "pcie": pcie, "psu": {"power_supplies": [
            {"name": f"PSU{n}", "part_number": "PWS-3K01A-1R", "manufacturer": "Supermicro"}
            for n in range(6)]},
        "nvidia": {"kernel_module": {"version": "590.48.01", "flavor": "proprietary"}, "gpus": gpus,
                   "without_driver": [], "not_usable": []},
        "network": network, "findings": [], "errors": [],
    }


def timed(function, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    document = large_document()
    text = audit.render_profile(audit.make_profile(document))
    profile = audit.parse_profile(text.encode(), "large.json")
    result = audit.check_profile(document, profile)
    slots = len(document["memory"]["slots"])
    print(f"document: {len(json.dumps(document)) // 1024} KiB, {slots} DIMM slots, "
          f"{len(document['nvidia']['gpus'])} GPUs, {len(document['pcie'])} PCI functions, "
          f"{len(document['storage'])} disks, {len(document['network'])} NIC ports")
    print(f"profile: {len(text) // 1024} KiB, {result['checks_total']} checks, passed {result['passed']}")
    for name, function in (
        ("check (--expect)",
         lambda: audit.apply_acceptance(document, audit.check_profile(document, profile))),
        ("load a profile", lambda: audit.parse_profile(text.encode(), "large.json")),
        ("make a profile", lambda: audit.render_profile(audit.make_profile(document))),
    ):
        median, worst = timed(function, args.runs)
        print(f"{name:18} median {median:6.2f} ms  worst {worst:6.2f} ms")
    median, _ = timed(lambda: audit.check_profile(document, profile), args.runs)
    verdict = "ok" if median < TARGET_MS else "TOO SLOW"
    print(f"target: checking under {TARGET_MS:.0f} ms: {verdict}")
    return 0 if median < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
