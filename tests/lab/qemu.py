"""Boot the lab's emulated server in QEMU: the machine from tests/lab/expected.py, under a timeout.

The guest boots the cached image (tests/lab/guest_image.py) read-write on a throwaway snapshot, with
`init=/sbin/lab-stub`; the stub runs `/init` from the LABIN disk that `make_lab_disk()` builds from a
folder at every run. The guest writes a tar archive of its results onto the raw LABOUT disk, which
`read_results()` unpacks on the host. The console goes to a log file that is kept when anything fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab import expected, guest_image, ipmi_fru, smbios

QEMU = "qemu-system-x86_64"
LABOUT_SIZE = 64 * expected.MiB
LAB_IN, LAB_OUT = expected.LAB_DISK_SERIALS["in"], expected.LAB_DISK_SERIALS["out"]


class LabError(RuntimeError):
    """The lab could not run or the guest did not finish; the message points at the console log."""


@dataclass
class Boot:
    """One boot of the guest: where its files are, how it ran, and what it wrote."""

    workdir: Path
    console: Path
    results: Path
    accel: str
    seconds: float
    returncode: int
    disks: dict[str, Path] = field(default_factory=dict)

    def console_tail(self, lines: int = 40) -> str:
        """Return the last lines of the console log (for failure messages)."""
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def kvm_usable() -> bool:
    """True when /dev/kvm can be opened read-write AND the CPU flags show vmx or svm."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    if " vmx" not in flags and " svm" not in flags:
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def accel_args() -> tuple[str, list[str]]:
    """Return the accelerator's name and its QEMU arguments: KVM when usable, else TCG."""
    if kvm_usable():
        return "kvm", ["-accel", "kvm", "-cpu", "host"]
    return "tcg", ["-accel", "tcg,thread=multi", "-cpu", "max"]


def require_tool(name: str, package: str) -> str:
    """Return the path of a host tool, or fail saying which Debian package provides it."""
    path = shutil.which(name)
    if path is None:
        raise LabError(f"lab: {name} is not installed; apt-get install {package} (./test.sh does)")
    return path


def make_ext4(source: Path, image: Path, size: str, label: str) -> Path:
    """Make an ext4 image of the folder `source` with mkfs.ext4 -d."""
    require_tool("mkfs.ext4", "e2fsprogs")
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(source), str(image), size],
                   check=True, capture_output=True)
    return image


def sparse_file(path: Path, size: int) -> Path:
    """Create an empty sparse file of `size` bytes."""
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def usb_stick(path: Path) -> Path:
    """Make the USB stick's image: FAT32 (as sticks come), made with busybox mkdosfs."""
    busybox = require_tool("busybox", "busybox")
    sparse_file(path, expected.USB_STICK.size_bytes)
    subprocess.run([busybox, "mkdosfs", "-n", expected.USB_STICK.extra["label"], str(path)],
                   check=True, capture_output=True)
    return path


def hardware_args(workdir: Path, usb_image: Path) -> tuple[list[str], dict[str, Path]]:
    """Return the QEMU arguments of the server's hardware and the disk images made for it."""
    tables = smbios.write_structure_files(workdir / "smbios")
    fru, sdr = ipmi_fru.write_files(workdir / "ipmi")
    nvme = sparse_file(workdir / "nvme.img", expected.NVME.size_bytes)
    sata = sparse_file(workdir / "sata.img", expected.SATA.size_bytes)
    port, bmc, nic = expected.NVME_ROOT_PORT, expected.BMC, expected.NIC
    args = smbios.qemu_options()
    for table in tables:
        args += ["-smbios", f"file={table}"]
    args += [
        "-device", f"pcie-root-port,id=rp0,chassis=1,slot=0,bus=pcie.0,addr=0x3,"
                   f"x-speed={port['x_speed']},x-width={port['x_width']}",
        "-drive", f"if=none,id=nvme0,format=raw,file={nvme}",
        "-device", f"nvme,drive=nvme0,serial={expected.NVME.serial},bus=rp0",
        "-drive", f"if=none,id=sata0,format=raw,file={sata}",
        "-device", f"ide-hd,drive=sata0,bus=ide.0,model={expected.SATA.model},serial={expected.SATA.serial},"
                   f"wwn={expected.SATA.wwn},rotation_rate=7200",
        "-device", "qemu-xhci,id=xhci,bus=pcie.0,addr=0x4",
        "-drive", f"if=none,id=usb0,format=raw,file={usb_image}",
        "-device", f"usb-storage,bus=xhci.0,drive=usb0,serial={expected.USB_STICK.serial},"
                   f"removable={'on' if expected.USB_STICK.removable else 'off'}",
        "-device", f"ipmi-bmc-sim,id=bmc0,frudatafile={fru},sdrfile={sdr},"
                   f"fruareasize={expected.FRU_AREA_SIZE},device_id={bmc['device_id']},"
                   f"device_rev={bmc['device_rev']},fwrev1={bmc['fwrev1']},fwrev2={bmc['fwrev2']},"
                   f"mfg_id={bmc['mfg_id']},product_id={bmc['product_id']}",
        "-device", "isa-ipmi-kcs,bmc=bmc0",
        "-device", f"{nic['model']},id=nic1,mac={nic['mac']},bus=pcie.0,addr={nic['addr']}",
    ]
    return args, {"nvme": nvme, "sata": sata, "usb": usb_image}


def boot(workdir: Path, lab_folder: Path, *, hardware: bool = True, nic: str | None = None,
         timeout: float = 300, cmdline: str = "") -> Boot:
    """Boot the guest once and wait for it to power off; return the boot with its unpacked results.

    `lab_folder` becomes the LABIN disk (its `init` runs as the guest's init). `hardware` adds the
    server's SMBIOS, NVMe, SATA, USB and IPMI devices; `nic` adds a network card model (no backend, so no
    DHCP server answers). Raises LabError on a timeout or when the guest wrote no results.
    """
    require_tool(QEMU, "qemu-system-x86")
    image = guest_image.ensure_image()
    workdir.mkdir(parents=True, exist_ok=True)
    labin = make_ext4(lab_folder, workdir / "labin.ext4", "64M", "labin")
    labout = sparse_file(workdir / "labout.img", LABOUT_SIZE)
    console = workdir / "console.log"
    accel, accel_opts = accel_args()
    args = [
        QEMU, "-machine", "q35", "-nodefaults", "-display", "none", "-no-reboot", "-nic", "none",
        *accel_opts, "-m", str(expected.GUEST_MEMORY_MIB),
        "-smp", f"{expected.CPU['sockets']},sockets={expected.CPU['sockets']},cores=1,threads=1",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", f"root=/dev/vda rw console=ttyS0,115200 init=/sbin/{Path(guest_image.STUB_PATH).name} "
                   f"panic=-1 loglevel=4 {cmdline}".strip(),
        "-serial", f"file:{console}",
        "-drive", f"if=none,id=root,format=raw,file={image.root},snapshot=on",
        "-device", "virtio-blk-pci,drive=root,bus=pcie.0,addr=0x1",
        "-drive", f"if=none,id=labin,format=raw,file={labin},readonly=on",
        "-device", f"virtio-blk-pci,drive=labin,serial={LAB_IN},bus=pcie.0,addr=0x2",
        "-drive", f"if=none,id=labout,format=raw,file={labout}",
        "-device", f"virtio-blk-pci,drive=labout,serial={LAB_OUT},bus=pcie.0,addr=0x5",
    ]
    disks = {"labin": labin, "labout": labout}
    if hardware:
        extra, made = hardware_args(workdir, usb_stick(workdir / "usb.img"))
        args += extra
        disks.update(made)
    if nic:
        args += ["-device", f"{nic},id=nic0"]
    (workdir / "qemu-args.txt").write_text("\n".join(args) + "\n")
    started = time.monotonic()
    try:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        result = Boot(workdir, console, workdir / "results", accel, time.monotonic() - started, -1, disks)
        raise LabError(
            f"lab: the guest did not power off within {timeout:.0f} s ({accel}); console log kept at "
            f"{console}:\n{result.console_tail()}"
        ) from expired
    result = Boot(workdir, console, workdir / "results", accel, time.monotonic() - started,
                  proc.returncode, disks)
    (workdir / "qemu-stderr.txt").write_text(proc.stderr)
    if proc.returncode != 0:
        raise LabError(f"lab: qemu exited {proc.returncode}: {proc.stderr.strip()[:2000]}\n"
                       f"console log kept at {console}:\n{result.console_tail()}")
    if not read_results(labout, result.results):
        raise LabError(f"lab: the guest wrote no results; console log kept at {console}:\n"
                       f"{result.console_tail()}")
    return result


def read_results(labout: Path, target: Path) -> bool:
    """Unpack the tar archive the guest wrote onto the raw LABOUT disk into `target`; False if none."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    try:
        with tarfile.open(labout, "r:") as archive:
            # The archive is the lab's own guest writing its capture (relative symlinks into sysfs).
            trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
            archive.extractall(target, **trusted)
    except tarfile.ReadError:
        return False
    return any(target.iterdir())
