"""The lab's two scenarios, ready to boot: what goes on the LABIN disk and how the guest is started.

Scenario 1 (`audit_boot`) copies the repository's CURRENT audit/audit.py into the guest, so the lab always
tests the audit as it is in the tree. Scenario 2 (`boot_sequence`) boots OpenRC with the live system's
services, staged by scripts/live_system.py exactly as the ISO stages them. Each run gets its own folder
under <lab cache>/runs (console log, qemu arguments, disks, unpacked results).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from tests.lab import expected, guest_image, qemu
from tests.paths import REPO_ROOT

GUEST_DIR = Path(__file__).with_name("guest")
# The audit the guest runs: the repository's, unless BEE_LAB_AUDIT names another file (to try a change).
AUDIT = Path(os.environ.get("BEE_LAB_AUDIT") or REPO_ROOT / "audit" / "audit.py")
AUDIT_OPTIONS = ["--usb"]   # --output and --capture are added by the guest's init
BOOT_TIMEOUT = 420          # seconds; a TCG boot with the audit takes one to two minutes here
KEPT_RUNS = 3   # per scenario, in the lab cache's runs/ folder


def run_dir(name: str) -> Path:
    """Return a new folder for one run of a scenario under <lab cache>/runs, keeping the newest few.

    Outside pytest's temp folders on purpose: their rotation (shared by every pytest run on the machine)
    would delete a failed run's console log before anyone reads it.
    """
    runs = guest_image.cache_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    earlier = sorted(runs.glob(f"{name}-*"))
    for old in earlier[: max(0, len(earlier) - (KEPT_RUNS - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    folder = runs / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    folder.mkdir()
    return folder


def install(source: Path, target: Path) -> None:
    """Copy one file into the LABIN folder, keeping it executable when it is a script."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    if source.suffix == ".sh":
        target.chmod(0o755)


def audit_lab_folder(folder: Path) -> Path:
    """Fill `folder` with scenario 1's LABIN content: its init, the current audit and the audit's options,
    and the SEL records and kernel log lines the guest injects before the audit."""
    if not AUDIT.is_file():
        raise qemu.LabError(f"lab: {AUDIT} is missing; the lab runs the repository's audit")
    install(GUEST_DIR / "init-audit.sh", folder / "init")
    (folder / "init").chmod(0o755)
    install(AUDIT, folder / "audit.py")
    (folder / "audit-options").write_text(" ".join(AUDIT_OPTIONS) + "\n")
    disks = (expected.NVME, expected.SATA, expected.USB_STICK)
    (folder / "expect-serials").write_text("".join(f"{d.serial}\n" for d in disks))
    # acceptance: the stick the made profile goes onto, and a profile expecting every slot populated
    (folder / "usb-label").write_text(expected.USB_STICK.extra["label"] + "\n")
    all_dimms = {"name": "every DIMM slot populated", "memory": {"count": len(expected.DIMMS)}}
    (folder / "profile-all-dimms.json").write_text(json.dumps(all_dimms, indent=2) + "\n")
    (folder / "sel-events").write_text("".join(f"{line}\n" for line, *_ in expected.SEL_EVENTS))
    (folder / "kmsg-lines").write_text("".join(f"{line}\n" for line in expected.KMSG_LINES))
    (folder / "sata-serial").write_text(expected.SATA.serial + "\n")
    return folder


def audit_module():
    """Import the audit the guest runs (AUDIT) as a module, for its summary and limits."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lab_audit", AUDIT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def audit_boot(workdir: Path) -> qemu.Boot:
    """Boot the emulated server once with scenario 1's init; return the boot with its results."""
    folder = audit_lab_folder(workdir / "labin")
    return qemu.boot(workdir / "vm", folder, hardware=True, timeout=BOOT_TIMEOUT)


# -- scenario 2: the boot sequence ------------------------------------------------------------------------

FAILING_AUDIT = "#!/bin/sh\necho 'lab: this audit is made to fail' >&2\nexit 3\n"
# An adduser that fails, as busybox's does on a full /etc: bee-sshsetup then fails, and dropbear (which
# needs it) must stay stopped.
FAILING_ADDUSER = "#!/bin/sh\necho 'lab: adduser is made to fail' >&2\nexit 1\n"
LAB_SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5vdC1hLXJlYWwta2V5LWxhYi1vbmx5LTAwMDAwMDAw lab@bee\n"


def boot_sequence_folder(folder: Path, *, failing_audit: bool, failing_sshsetup: bool = False) -> Path:
    """Fill `folder` with scenario 2's LABIN content: the live system's services staged exactly as the
    ISO stages them (scripts/live_system.py), the default runlevel from invoke.yaml, the lab's stand-ins,
    the audit (the repository's, or one that fails) and adduser (the lab's, or one that fails)."""
    from scripts import buildconfig, live_system

    cfg = buildconfig.load_config()
    overlay = folder / "overlay"
    live_system.stage_services(cfg, overlay)
    keys = overlay / cfg.bee.live.authorized_keys_file.lstrip("/")
    keys.parent.mkdir(parents=True, exist_ok=True)
    keys.write_text(LAB_SSH_KEY)
    for stand_in in sorted((GUEST_DIR / "openrc").iterdir()):
        install(stand_in, folder / "openrc" / stand_in.name)
    (folder / "default-runlevel").write_text("".join(f"{s}\n" for s in live_system.runlevels(cfg)["default"]))
    (folder / "audit-path").write_text(cfg.bee.live.audit_path + "\n")
    (folder / "audit-output").write_text(cfg.bee.live.audit_output + "\n")
    if failing_audit:
        (folder / "audit").write_text(FAILING_AUDIT)
    else:
        install(AUDIT, folder / "audit")
    install(GUEST_DIR / "init-openrc.sh", folder / "init")
    if failing_sshsetup:
        (folder / "adduser.sh").write_text(FAILING_ADDUSER)
    else:
        install(GUEST_DIR / "adduser.sh", folder / "adduser.sh")
    install(GUEST_DIR / "report.py", folder / "report.py")
    return folder


def boot_sequence(workdir: Path, *, nic: str | None, failing_audit: bool,
                  failing_sshsetup: bool = False) -> qemu.Boot:
    """Boot the guest with OpenRC as init and the live system's services; return the boot and its report.

    Without the server's storage and IPMI devices: scenario 1 covers them, and fewer devices make udev's
    start (the slowest part of an emulated boot) shorter.
    """
    folder = boot_sequence_folder(workdir / "labin", failing_audit=failing_audit,
                                  failing_sshsetup=failing_sshsetup)
    return qemu.boot(workdir / "vm", folder, hardware=False, nic=nic, timeout=BOOT_TIMEOUT)
