#!/usr/bin/env python3
"""Benchmark of audit/audit.py on a simulated large GPU server, and on this machine beside `lshw -json`.

The simulated server: fake tools on PATH that print real fixture outputs after realistic delays
(24 SATA disks with smartctl ~0.3 s each, `nvidia-smi -q -x` ~2 s for 8 GPUs then `nvlink -s` and
`topo -m`, a slow BMC: `ipmitool fru` 3 s, `sdr elist` 6 s, `sel info` 0.3 s, `sel list` 4 s and the BMC's
mc info and one lan print (ipmitool finds the LAN channel itself, so no channel info runs), never two at
once; ethtool per NIC, dmesg, dmidecode with 32 DIMM slots, ~150 PCI functions in a fake sysfs). Prints the
audit's wall time, the sum of all tool delays (what running them one after another would cost), the
longest chain of tools that must run one after another, their ratio (target <= 1.3) and the audit's peak
RSS (target < 80 MB). Then the kernel log parser on an 87,000-line log (every real kernel fixture, repeated
among ordinary boot lines): its time and lines per second.

Usage: python3 benchmarks/audit_bench.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures"
AUDIT = REPO / "audit" / "audit.py"

DISKS = 24
GPU_BUS = [f"0000:00:{slot:02x}.0" for slot in range(0x0D, 0x15)]  # as in the 8-GPU nvidia-smi fixture
DELAYS = {  # seconds, per run
    "dmidecode": 0.10,
    "lsblk": 0.05,
    "smartctl": 0.30,
    "lspci": 0.25,
    "dmesg": 0.05,
}
OUTPUTS = {  # tool -> fixture printed (the parsers under test accept these)
    "dmidecode": FIXTURES / "real/dmidecode/linuxhw-gigabyte-g482-z54-gpu-server-2s-epyc.txt",
    "smartctl": FIXTURES / "real/smartctl/netdata-sat-hdd-wd181kryz.json",
    "dmesg": FIXTURES / "real/kernel/gh-rpi-pcie-116-dmesg-aer-uncorrected-nonfatal-cm4.log",
}
# Tools whose answer depends on the command:
# tool -> [(shell case pattern on "$*", fixture printed or None, delay, exit status)]
CASES = {
    "ipmitool": [  # one at a time (the audit's ipmitool lock): their chain is their sum
        ("fru", FIXTURES / "real/ipmitool/glpi-fru-dell-r640-psu.txt", 3.0, 0),
        ("mc info", FIXTURES / "real/ipmitool/manageiq-dell-idrac-fw157-mc-info.txt", 0.1, 0),
        ("lan print", FIXTURES / "real/ipmitool/go-hal-supermicro-static-lan-print.txt", 0.3, 0),
        ("sdr elist", FIXTURES / "real/ipmitool/datakit-dell-r620-sdr-elist.txt", 6.0, 0),  # the SDR walk
        ("sel info", FIXTURES / "real/ipmitool/gh-ipmitool-277-sel-info-open.txt", 0.3, 0),
        ("sel list", FIXTURES / "real/ipmitool/gh-op-build-607-openpower-sel-list-last20-partial.txt", 4.0,
         0),
    ],
    "nvidia-smi": [  # one after another in the nvidia collector
        ("-q -x", FIXTURES / "real/nvidia-smi/datakit-8x-tesla-v100s-pcie-32gb-passthrough.xml", 2.0, 0),
        ("nvlink -s", FIXTURES / "real/nvidia-smi/gpud-a100-sxm4-80gb-8gpu-nvlink-status.txt", 0.3, 0),
        ("topo -m", FIXTURES / "real/nvidia-smi/cheatsheets-dgx-a100-8gpu-12nic-nvidia-smi-topo-m.txt", 0.3,
         0),
    ],
    "ethtool": [  # two per interface, interfaces side by side
        ("-i *", FIXTURES / "real/ethtool/adamxiao-intel-ixgbe-ethtool-i.txt", 0.02, 0),
        ("*", FIXTURES / "real/ethtool/adamxiao-intel-ixgbe-10g-fibre-ethtool-link.txt", 0.02, 0),
    ],
}


def lab_text(name: str) -> str:
    """A qemu-lab capture without its `### command` and `### rc=N` lines."""
    lines = (FIXTURES / "qemu-lab" / name).read_text().rstrip("\n").split("\n")
    return "\n".join(lines[1:-1]) + "\n"


def fake_tool(bin_dir: Path, name: str, output: Path, delay: float, log: Path) -> None:
    """A /bin/sh tool that logs its start and end, sleeps `delay` and prints `output`."""
    fake_cases(bin_dir, name, [("*", output, delay, 0)], log)


def fake_cases(bin_dir: Path, name: str, cases, log: Path) -> None:
    """A /bin/sh tool that logs its start and end and, by its arguments, sleeps and prints a file."""
    arms = []
    for pattern, output, delay, rc in cases:
        case = f'"{pattern}"' if " " in pattern and "*" not in pattern else pattern.replace(" ", "\\ ")
        text = f"/bin/cat {shlex.quote(str(output))}" if output else ":"
        arms.append(f"  {case}) /bin/sleep {delay}; {text}; rc={rc};;")
    script = (
        "#!/bin/sh\n"
        f'echo "start $(/bin/date +%s.%N) {name} $*" >> {log}\n'
        "rc=1\n"
        'case "$*" in\n' + "\n".join(arms) + "\nesac\n"
        f'echo "end $(/bin/date +%s.%N) {name} $*" >> {log}\n'
        "exit $rc\n"
    )
    path = bin_dir / name
    path.write_text(script)
    path.chmod(0o755)


def make_lsblk(path: Path) -> None:
    """24 SATA disks shaped like the lab's real `lsblk -J -b` SATA disk."""
    lab = json.loads(lab_text("lsblk.txt"))
    template = next(d for d in lab["blockdevices"] if d.get("tran") == "sata")
    disks = []
    for index in range(DISKS):
        name = "sd" + ("" if index < 26 else "a") + chr(ord("a") + index % 26)
        disk = dict(template, name=name, kname=name, path=f"/dev/{name}", serial=f"ZC1A{index:04d}")
        disks.append(disk)
    path.write_text(json.dumps({"blockdevices": disks}, indent=3))


def make_pci(sysfs: Path, lspci_out: Path) -> int:
    """~150 PCI functions: 8 GPUs behind root ports, NICs, NVMe-less storage controllers, chipset devices.
    Writes the sysfs tree and the matching `lspci -vmm -D` text (records in the lab's real format)."""
    records = []
    devices = sysfs / "devices" / "pci0000:00"
    bus_dir = sysfs / "bus" / "pci" / "devices"
    bus_dir.mkdir(parents=True)
    (sysfs / "bus/pci/drivers/nvidia").mkdir(parents=True)
    (sysfs / "bus/pci/drivers/ixgbe").mkdir(parents=True)

    def add(address, parent_dir, cls, class_name, vendor, vendor_name, device_name, driver=None, link=None):
        directory = parent_dir / address
        directory.mkdir(parents=True)
        files = {
            "vendor": f"0x{vendor:04x}",
            "device": "0x1df6",
            "class": f"0x{cls:06x}",
            "subsystem_vendor": f"0x{vendor:04x}",
            "subsystem_device": "0x13d6",
            "revision": "0xa1",
            "numa_node": "0",
        }
        if link:
            files.update(
                current_link_speed=f"{link[0]} GT/s PCIe",
                current_link_width=str(link[1]),
                max_link_speed=f"{link[0]} GT/s PCIe",
                max_link_width=str(link[1]),
                aer_dev_correctable="RxErr 0\nTOTAL_ERR_COR 0\n",
                aer_dev_nonfatal="TOTAL_ERR_NONFATAL 0\n",
                aer_dev_fatal="TOTAL_ERR_FATAL 0\n",
            )
        for key, value in files.items():
            (directory / key).write_text(value + "\n")
        if driver:
            (directory / "driver").symlink_to(sysfs / "bus/pci/drivers" / driver)
        (bus_dir / address).symlink_to(directory)
        records.append(
            f"Slot:\t{address}\nClass:\t{class_name}\nVendor:\t{vendor_name}\nDevice:\t{device_name}\n"
            f"SVendor:\t{vendor_name}\nSDevice:\t{device_name}\nRev:\ta1\nNUMANode:\t0\n"
        )
        return directory

    for number, gpu in enumerate(GPU_BUS):  # a root port per GPU, the GPU behind it on its own bus
        port = add(
            f"0000:{0x10 + number:02x}:00.0",
            devices,
            0x060400,
            "PCI bridge",
            0x8086,
            "Intel Corporation",
            "Root Port",
            "pcieport",
            (16.0, 16),
        )
        (sysfs / "bus/pci/drivers/pcieport").mkdir(exist_ok=True)
        add(
            gpu,
            port,
            0x030200,
            "3D controller",
            0x10DE,
            "NVIDIA Corporation",
            "GV100GL [Tesla V100S PCIe 32GB]",
            "nvidia",
            (16.0, 16),
        )
    for number in range(4):  # NICs
        add(
            f"0000:3b:00.{number}",
            devices,
            0x020000,
            "Ethernet controller",
            0x8086,
            "Intel Corporation",
            "Ethernet Controller X710",
            "ixgbe",
            (8.0, 8),
        )
    number = 0
    while len(records) < 150:  # chipset functions without a PCIe link
        add(
            f"0000:80:{number // 8:02x}.{number % 8}",
            devices,
            0x088000,
            "System peripheral",
            0x8086,
            "Intel Corporation",
            "Sky Lake-E Ubox Registers",
        )
        number += 1
    lspci_out.write_text("\n".join(records))
    return len(records)


def make_sysfs_rest(sysfs: Path, procfs: Path, devfs: Path) -> None:
    """EDAC with 32 DIMMs, 4 network interfaces on the NICs, the NVIDIA driver and an IPMI device."""
    for mc in range(2):
        base = sysfs / f"devices/system/edac/mc/mc{mc}"
        base.mkdir(parents=True)
        for name, value in {
            "mc_name": "skx_edac",
            "ce_count": 0,
            "ue_count": 0,
            "ce_noinfo_count": 0,
            "ue_noinfo_count": 0,
        }.items():
            (base / name).write_text(f"{value}\n")
        for dimm in range(16):
            directory = base / f"dimm{dimm}"
            directory.mkdir()
            for name, value in {
                "dimm_label": f"CPU_SrcID#{mc}_MC#0_Chan#{dimm}_DIMM#0",
                "size": 16384,
                "dimm_ce_count": 0,
                "dimm_ue_count": 0,
                "dimm_location": f"channel {dimm}",
            }.items():
                (directory / name).write_text(f"{value}\n")
    (sysfs / "class/net").mkdir(parents=True)
    for number in range(4):
        pci = sysfs / "devices/pci0000:00" / f"0000:3b:00.{number}"
        interface = pci / "net" / f"eth{number}"
        interface.mkdir(parents=True)
        for name, value in {
            "address": f"3c:fd:fe:00:00:0{number}",
            "addr_assign_type": "0",
            "operstate": "up",
            "speed": "10000",
            "type": "1",
        }.items():
            (interface / name).write_text(f"{value}\n")
        (interface / "device").symlink_to(pci)
        if not (pci / "subsystem").exists():
            (pci / "subsystem").symlink_to(sysfs / "bus/pci")
        (sysfs / "class/net" / f"eth{number}").symlink_to(interface)
    (procfs / "driver" / "nvidia").mkdir(parents=True)
    devfs.mkdir(parents=True)
    (devfs / "ipmi0").touch()


def read_log(log: Path) -> list[tuple[str, float, float]]:
    """(tool and args, start, end) of every fake tool run."""
    starts, runs = {}, []
    for line in log.read_text().splitlines():
        kind, stamp, rest = line.split(" ", 2)
        if kind == "start":
            starts.setdefault(rest, []).append(float(stamp))
        else:
            runs.append((rest, starts[rest].pop(0), float(stamp)))
    return runs


def run_audit(args: list[str], path: str) -> tuple[float, int, str]:
    """Wall time, exit status and stderr of one audit run (JSON to a file, no QR)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(AUDIT), *args],
        capture_output=True,
        text=True,
        env={"PATH": path, "LC_ALL": "C"},
        timeout=300,
    )
    return time.monotonic() - started, done.returncode, done.stderr


def simulated(work: Path) -> None:
    bin_dir, sysfs, procfs, devfs = work / "bin", work / "sys", work / "proc", work / "dev"
    bin_dir.mkdir(parents=True)
    log = work / "tools.log"
    make_lsblk(work / "lsblk.json")
    functions = make_pci(sysfs, work / "lspci.txt")
    make_sysfs_rest(sysfs, procfs, devfs)
    outputs = {**OUTPUTS, "lsblk": work / "lsblk.json", "lspci": work / "lspci.txt"}
    for tool, delay in DELAYS.items():
        fake_tool(bin_dir, tool, outputs[tool], delay, log)
    for tool, cases in CASES.items():
        fake_cases(bin_dir, tool, cases, log)
    out = work / "audit.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    wall, status, stderr = run_audit(
        [
            "--no-qr",
            "--output",
            str(out),
            "--sysfs",
            str(sysfs),
            "--procfs",
            str(procfs),
            "--devfs",
            str(devfs),
        ],
        str(bin_dir),
    )
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    document = json.loads(out.read_text())
    runs = read_log(log)
    total = sum(end - start for _, start, end in runs)
    by_tool: dict[str, list[float]] = {}
    for command, start, end in runs:
        by_tool.setdefault(command.split()[0], []).append(end - start)
    # Tools that must run one after another: lsblk then a disk's smartctl (disks are independent of each
    # other); every ipmitool (psu's fru, bmc's mc info and lan print, sensors' sdr elist, event_log's sel
    # info and sel list: one at a time); the
    # nvidia collector's nvidia-smi runs; one interface's two ethtool runs. dmidecode and lspci run once.
    sequential = {"lsblk", "smartctl", "ipmitool", "nvidia-smi", "ethtool"}
    chains = {
        "storage (lsblk, then one smartctl)": max(by_tool.get("lsblk", [0]))
        + max(by_tool.get("smartctl", [0])),
        "ipmitool (every run, one at a time)": sum(by_tool.get("ipmitool", [0])),
        "nvidia-smi (-q -x, nvlink -s, topo -m)": sum(by_tool.get("nvidia-smi", [0])),
        "ethtool (-i and link of one interface)": 2 * max(by_tool.get("ethtool", [0])),
        **{f"{tool}": max(times) for tool, times in by_tool.items() if tool not in sequential},
    }
    longest_name, longest = max(chains.items(), key=lambda item: item[1])
    print("Simulated 8-GPU server (fake tools with real fixture outputs):")
    print(
        f"  tool runs: {len(runs)} ({', '.join(f'{t} x{len(v)}' for t, v in sorted(by_tool.items()))}); "
        f"PCI functions: {functions}"
    )
    print(
        "  collectors: "
        + ", ".join(f"{name}={report['status']}" for name, report in document["collectors"].items())
    )
    print(
        f"  disks: {len(document.get('storage') or [])}, "
        f"GPUs: {len((document.get('nvidia') or {}).get('gpus') or [])}, "
        f"DIMM slots: {(document.get('memory') or {}).get('total_slots')}, "
        f"PCI entries: {len(document.get('pcie') or [])}, PSUs: "
        f"{len((document.get('psu') or {}).get('power_supplies') or [])}, errors: {len(document['errors'])}"
    )
    print(
        f"  BMC sensors: {len(document.get('sensors') or [])}, SEL records: "
        f"{(document.get('event_log') or {}).get('total_records')}, kernel log events: "
        f"{len((document.get('kernel_log') or {}).get('events') or [])}, "
        f"findings: {len(document['findings'])}"
    )
    ipmitool_runs = sorted((start, end) for command, start, end in runs if command.startswith("ipmitool"))
    pairs = zip(ipmitool_runs, ipmitool_runs[1:], strict=False)
    overlaps = sum(1 for (_, end), (start, _) in pairs if start < end)
    print(f"  ipmitool runs overlapping: {overlaps} (must be 0)")
    print(f"  audit wall time:        {wall:6.2f} s   (exit status {status})")
    print(f"  sum of tool delays:     {total:6.2f} s   (running them one after another)")
    print(f"  longest chain:          {longest:6.2f} s   ({longest_name})")
    print(f"  wall / longest chain:   {wall / longest:6.2f}     (target <= 1.30)")
    print(
        f"  peak RSS of the audit:  {peak_kib / 1024:6.1f} MB  (target < 80; children's maximum)"
        + ("" if before < peak_kib else "  [an earlier child had a larger RSS]")
    )
    if status != 0 or document["errors"]:
        print("  stderr:", stderr.strip()[:2000])


def this_machine(work: Path) -> None:
    """The audit and `lshw -json` on this machine with its real tools."""
    import os

    path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    path = ":".join([path, "/usr/sbin", "/sbin"])
    wall, status, _ = run_audit(["--no-qr", "--output", str(work / "here.json")], path)
    print("This machine:")
    print(f"  audit wall time:        {wall:6.2f} s   (exit status {status})")
    lshw = shutil.which("lshw", path=path)
    if lshw is None:
        print("  lshw -json:             not installed (apt-get install lshw)")
        return
    started = time.monotonic()
    done = subprocess.run([lshw, "-json"], capture_output=True, timeout=600)
    print(f"  lshw -json wall time:   {time.monotonic() - started:6.2f} s   (exit status {done.returncode})")


KERNEL_LOG_LINES = 87_000


def kernel_log_parse() -> None:
    """Time parse_kernel_log on a KERNEL_LOG_LINES-line log: the real kernel fixtures' lines, one in ten,
    among ordinary boot lines (a long-running server's ring buffer or a journal a user brings)."""
    sys.path.insert(0, str(REPO))
    from audit import audit

    errors = [line for path in sorted((FIXTURES / "real/kernel").glob("*.log"))
              for line in path.read_text(errors="replace").splitlines() if line.strip()]
    lines = []
    for i in range(KERNEL_LOG_LINES):
        ordinary = f"[{i / 10:12.6f}] usb 1-{i % 7}: new high-speed USB device {i % 120} using xhci_hcd"
        lines.append(errors[i // 10 % len(errors)] if i % 10 == 0 else ordinary)
    text = "\n".join(lines) + "\n"
    started = time.perf_counter()
    log = audit.parse_kernel_log(text)
    elapsed = time.perf_counter() - started
    print("Kernel log parser:")
    print(f"  {log['lines']} lines in {elapsed:6.2f} s  ({log['lines'] / elapsed:,.0f} lines/s), "
          f"{len(log['events'])} events")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="build the fake server in DIR and keep it")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        work = args.keep
        simulated(work)
        this_machine(work)
    else:
        with tempfile.TemporaryDirectory(prefix="bee-audit-bench-") as tmp:
            simulated(Path(tmp))
            this_machine(Path(tmp))
    kernel_log_parse()
    return 0


if __name__ == "__main__":
    sys.exit(main())
