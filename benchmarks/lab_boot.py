#!/usr/bin/env python3
"""Benchmark of the hardware lab (issue 7): the guest image build and one boot of the emulated server.

It gets the guest image the way the lab tests do (`tests/lab/guest_image.ensure_image()`: built with
debootstrap when the recipe changed, otherwise taken from the cache) and prints its build time or
"cached", then boots scenario 1 once (`tests/lab/scenarios.audit_boot`: QEMU with the server's SMBIOS,
NVMe, SATA, USB and IPMI devices, the repository's current audit run inside with --output, --usb and
--capture) and prints the boot+audit wall time, the accelerator (kvm or tcg), and the audit's own
duration as its document reports it. The run's folder (console log, results) stays under
<lab cache>/runs/bench-*.

Usage: python3 benchmarks/lab_boot.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.lab import guest_image, qemu, scenarios  # noqa: E402


def image_figure() -> str:
    """Build or find the guest image; "cached" or "built in N s"."""
    image = guest_image.ensure_image()
    return "cached" if image.build_seconds is None else f"built in {image.build_seconds:.1f} s"


def audit_duration(results: Path) -> str:
    """The audit's own `duration_s` from the document the guest wrote, or why there is none."""
    try:
        document = json.loads((results / "audit.json").read_text())
    except (OSError, ValueError) as error:
        return f"no document ({error.__class__.__name__})"
    return f"{document.get('duration_s', 0):.1f} s"


def main() -> int:
    """Print the image build time (or "cached") and the boot+audit time; 1 with one line on failure."""
    try:
        started = time.monotonic()
        state = image_figure()
        image_seconds = time.monotonic() - started
        print(f"guest image ({guest_image.recipe_key()}): {state} ({image_seconds:.1f} s to get it)")
        started = time.monotonic()
        boot = scenarios.audit_boot(scenarios.run_dir("bench"))
        wall = time.monotonic() - started
    except (guest_image.ImageBuildError, qemu.LabError) as error:
        print(str(error).splitlines()[0], file=sys.stderr)
        return 1
    print(f"boot+audit: {wall:.1f} s wall ({boot.seconds:.1f} s in qemu, {boot.accel}); "
          f"the audit's own duration in the guest: {audit_duration(boot.results)}")
    print(f"run folder: {boot.workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
