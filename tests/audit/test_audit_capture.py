"""--capture then --replay, end to end through main(): a fake machine (the lab server's tool outputs, a real
nvidia-smi XML, and a sysfs/procfs/devfs tree with PCIe links, AER, EDAC, a disk, a NIC and an InfiniBand
HCA) where every collector finds data; the replayed document equals the live one, times aside, with no tool
on PATH."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from audit import audit
from tests.audit.fakes import lab_tools, tool_printing, without_times, write_tool
from tests.paths import REAL_FIXTURES

GPU_XML = REAL_FIXTURES / "nvidia-smi" / "datakit-tesla-v100-pcie-32gb.xml"  # one V100 at 00000000:21:01.0
SEL_LIST = REAL_FIXTURES / "ipmitool" / "gh-op-build-607-openpower-sel-list-last20-partial.txt"  # an IERR
SEL_INFO = REAL_FIXTURES / "ipmitool" / "gh-ipmitool-277-sel-info-open.txt"
DMESG = REAL_FIXTURES / "kernel" / "gh-rpi-linux-6661-journal-nvme-controller-down.log"  # nvme0 is down


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def pci_function(sysfs, path: str, class_code: str, link: tuple[str, str, str, str], **files: str):
    """A PCI function at sysfs/devices/<path> (its address is the last part), listed in bus/pci/devices."""
    directory = sysfs / "devices" / path
    address = path.rsplit("/", 1)[-1]
    values = {"vendor": "0x10de", "device": "0x1db6", "class": class_code, "numa_node": "1"}
    names = ("current_link_speed", "current_link_width", "max_link_speed", "max_link_width")
    values.update(zip(names, link, strict=True))
    for name, value in {**values, **files}.items():
        write(directory / name, value + "\n")
    (sysfs / "bus/pci/devices").mkdir(parents=True, exist_ok=True)
    (sysfs / "bus/pci/devices" / address).symlink_to(f"../../../devices/{path}")
    (directory / "subsystem").symlink_to(os.path.relpath(sysfs / "bus/pci", directory))
    return directory


def fake_machine(root):
    """The sysfs, procfs and devfs trees of the fake machine under `root`."""
    sysfs, procfs, devfs = root / "sys", root / "proc", root / "dev"
    port = "pci0000:20/0000:20:03.0"
    pci_function(sysfs, port, "0x060400", ("8.0 GT/s PCIe", "16", "8.0 GT/s PCIe", "16"))
    gpu = pci_function(
        sysfs,
        f"{port}/0000:21:01.0",
        "0x030200",
        ("8.0 GT/s PCIe", "8", "8.0 GT/s PCIe", "16"),
        aer_dev_fatal="Undefined 0\nTOTAL_ERR_FATAL 0",
        aer_dev_nonfatal="CmpltTO 3\nTOTAL_ERR_NONFATAL 3",
        aer_dev_correctable="RxErr 1\nTOTAL_ERR_COR 1",
    )
    write(sysfs / "bus/pci/drivers/nvidia/new_id", "")
    (gpu / "driver").symlink_to("../../../../bus/pci/drivers/nvidia")
    nic = pci_function(
        sysfs, "pci0000:00/0000:00:1f.6", "0x020000", ("2.5 GT/s PCIe", "1", "2.5 GT/s PCIe", "1")
    )
    for name, value in {
        "address": "3c:ec:ef:01:02:03",
        "addr_assign_type": "0",
        "operstate": "up",
        "speed": "1000",
    }.items():
        write(nic / "net/eno1" / name, value + "\n")
    (nic / "net/eno1/device").symlink_to("../../../0000:00:1f.6")
    (sysfs / "class/net").mkdir(parents=True)
    (sysfs / "class/net/eno1").symlink_to("../../devices/pci0000:00/0000:00:1f.6/net/eno1")
    (sysfs / "devices/pci0000:00/0000:00:1f.6/nvme/nvme0/nvme0n1").mkdir(parents=True)
    (sysfs / "block").mkdir()
    (sysfs / "block/nvme0n1").symlink_to("../devices/pci0000:00/0000:00:1f.6/nvme/nvme0/nvme0n1")
    (sysfs / "devices/pci0000:00/0000:00:1f.6/nvme/nvme0/nvme0n1/device").symlink_to("../../nvme0")
    edac = sysfs / "devices/system/edac/mc/mc0"
    for name, value in {
        "mc_name": "skx_edac",
        "ce_count": "5",
        "ue_count": "1",
        "ce_noinfo_count": "0",
        "ue_noinfo_count": "0",
        "dimm0/dimm_label": "CPU0_DIMM_A1",
        "dimm0/size": "32768",
        "dimm0/dimm_ce_count": "5",
        "dimm0/dimm_ue_count": "1",
    }.items():
        write(edac / name, value + "\n")
    hca = sysfs / "devices/pci0000:00/0000:00:1f.6/infiniband/mlx5_0"  # an HCA, sharing the NIC's function
    for name, value in {
        "hca_type": "MT4129",
        "fw_ver": "28.41.1000",
        "board_id": "MT_0000000838",
        "ports/1/state": "2: INIT",
        "ports/1/phys_state": "5: LinkUp",
        "ports/1/rate": "400 Gb/sec (4X NDR)",
        "ports/1/link_layer": "InfiniBand",
    }.items():
        write(hca / name, value + "\n")
    (hca / "device").symlink_to("../..")
    (sysfs / "class/infiniband").mkdir(parents=True)
    (sysfs / "class/infiniband/mlx5_0").symlink_to("../../devices/pci0000:00/0000:00:1f.6/infiniband/mlx5_0")
    write(procfs / "driver/nvidia/version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  418.67\n")
    write(devfs / "ipmi0", "")
    return ["--sysfs", str(sysfs), "--procfs", str(procfs), "--devfs", str(devfs)]


@pytest.fixture
def machine(tmp_path, monkeypatch):
    lab_tools(tmp_path / "bin", tmp_path / "files")
    tool_printing(tmp_path / "bin", "nvidia-smi", GPU_XML)
    write(
        tmp_path / "files/ethtool-i",
        "driver: e1000e\nversion: 6.1.0\nfirmware-version: 28.41.1000 (MT_0000000838)\n"
        "bus-info: 0000:00:1f.6\n",
    )
    write_tool(
        tmp_path / "bin",
        "ethtool",
        f'case "$1" in -i) /bin/cat {tmp_path}/files/ethtool-i;; *) exit 75;; esac',
    )
    tool_printing(tmp_path / "bin", "dmesg", DMESG)
    (tmp_path / "bin" / "ipmitool").rename(tmp_path / "bin" / "ipmitool-lab")
    lab = tmp_path / "bin" / "ipmitool-lab"
    write_tool(tmp_path / "bin", "ipmitool", f'case "$*" in\n  "sel info") /bin/cat {SEL_INFO};;\n'
               f'  "sel list") /bin/cat {SEL_LIST};;\n  *) exec {lab} "$@";;\nesac')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return fake_machine(tmp_path)


def test_capture_then_replay_of_all_collectors_gives_the_same_document(tmp_path, machine, monkeypatch):
    capture, live_file, replay_file = tmp_path / "capture", tmp_path / "live.json", tmp_path / "replay.json"
    assert audit.main(["--no-qr", "--output", str(live_file), "--capture", str(capture), *machine]) == 0
    live = json.loads(live_file.read_text())
    # every collector found something here, so the replay is tested on every collector
    names = [name for name, _ in audit.COLLECTORS]
    assert {name: live[name] is not None for name in names} == dict.fromkeys(names, True)
    assert live["nvidia"]["gpus"][0]["pcie_address"] == "0000:21:01.0"
    assert live["nvidia"]["kernel_module"] == {"version": "418.67", "flavor": "proprietary"}
    assert live["memory"]["edac"]["dimms"][0]["uncorrected"] == 1
    assert live["network"][0]["pci_address"] == "0000:00:1f.6"
    assert any(disk["pci_address"] == "0000:00:1f.6" for disk in live["storage"])
    assert sorted((f["severity"], f["message"]) for f in live["findings"]) == [
        ("critical", 'BMC event log: Processor #0xc9 "IERR" (processor failure), once, 2016-08-31T06:20:30'),
        ("critical", "DIMM CPU0_DIMM_A1: 1 uncorrected memory errors (EDAC)"),
        ("critical", "kernel log: disk /dev/nvme0n1 (QEMU NVMe Ctrl, NVME-SN-0001): NVMe controller is down, "
                     "2 times; I/O errors, 1 time, first Jan 29 16:41:37, last Jan 29 17:09:49"),
        ("warning", "3 AER non-fatal errors"),
        ("warning", "DIMM CPU0_DIMM_A1: 5 corrected memory errors (EDAC)"),
        ("warning", "PCIe link x8 is narrower than the x16 both the device and its upstream port support"),
        (
            "warning",
            "port 1: physical link up but state INIT (not ACTIVE: no subnet manager, or the port is stuck)",
        ),
    ]
    assert live["infiniband"][0]["pci_address"] == "0000:00:1f.6"
    assert live["bmc"]["firmware_revision"] == "3.88"  # the lab BMC's `mc info`
    assert live["network"][0]["firmware"]["psid"] == "MT_0000000838"  # from the fake ethtool -i
    nvme = next(f for f in live["findings"] if "NVMe controller" in f["message"])  # at the disk nvme0n1
    assert live["storage"][int(nvme["ref"].rsplit("/", 1)[1])]["name"] == "nvme0n1"

    shutil.rmtree(tmp_path / "bin")  # nothing can run now
    shutil.rmtree(tmp_path / "sys")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert audit.main(["--no-qr", "--output", str(replay_file), "--replay", str(capture)]) == 0
    replayed = json.loads(replay_file.read_text())
    assert without_times(replayed) == without_times(live)
    assert replayed["generated_at"] == live["generated_at"]  # the time of the capture, not of the replay


def test_capture_layout(tmp_path, machine):
    capture = tmp_path / "capture"
    assert (
        audit.main(["--no-qr", "--output", str(tmp_path / "a.json"), "--capture", str(capture), *machine])
        == 0
    )
    host = json.loads((capture / "host.json").read_text())
    assert set(host) == {"generated_at", "hostname", "kernel", "addresses"}
    key = audit.capture_key(["nvidia-smi", "-q", "-x"])
    meta = json.loads((capture / "commands" / f"{key}.json").read_text())
    assert meta["argv"] == ["nvidia-smi", "-q", "-x"] and meta["returncode"] == 0 and not meta["timed_out"]
    assert (capture / "commands" / f"{key}.stdout").read_bytes() == GPU_XML.read_bytes()
    assert (capture / "commands" / f"{key}.stderr").read_bytes() == b""
    assert (capture / "sysfs/bus/pci/devices/0000:21:01.0").is_symlink()
    assert (
        (capture / "sysfs/bus/pci/devices/0000:21:01.0/aer_dev_nonfatal").read_text().startswith("CmpltTO 3")
    )
    assert (capture / "procfs/driver/nvidia").is_dir()
    assert (capture / "devfs/ipmi0").exists()


def test_a_timed_out_tool_replays_as_timed_out(tmp_path, monkeypatch):
    """A capture keeps a hang as a hang: the replay records the same timeout error."""
    write_tool(tmp_path / "bin", "lspci", "exec /bin/sleep 30")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    capture = tmp_path / "capture"
    runner = audit.Runner(
        sysfs=tmp_path / "s", procfs=tmp_path / "p", devfs=tmp_path / "d", timeout=0.3, capture=capture
    )
    live = audit.build_document(runner, [("pcie", audit.collect_pcie)])
    replayed = audit.build_document(audit.Runner(replay=capture), [("pcie", audit.collect_pcie)])
    assert live["errors"] == replayed["errors"]
    assert live["errors"][0]["message"].startswith("timed out after 0.")


def test_a_tool_that_cannot_be_run_is_an_error_live_and_replayed(tools, tmp_path):
    """On PATH but not executable by its interpreter line: an error both live and from the capture."""
    tools("lspci", script="#!/nonexistent/interpreter\n")
    capture = tmp_path / "capture"
    runner = audit.Runner(sysfs=tools.sysfs, procfs=tools.procfs, devfs=tools.devfs, capture=capture)
    live = audit.build_document(runner, [("pcie", audit.collect_pcie)])
    replayed = audit.build_document(audit.Runner(replay=capture), [("pcie", audit.collect_pcie)])
    assert live["errors"] == replayed["errors"]
    assert live["errors"][0]["message"].startswith("exit status 127: cannot run: ")


# -- issue 16: a capture that cannot be written, an older capture in the way, --replay with --capture -----


@pytest.mark.parametrize("where", ["a file", "under /proc", "under /sys"])
def test_a_capture_that_cannot_be_written_is_one_line_exit_1_and_the_document_is_written(
    where, tmp_path, machine, capsys
):
    capture = {
        "a file": tmp_path / "taken",
        "under /proc": Path("/proc/bee-capture-test"),  # FileNotFoundError: procfs takes no folders
        "under /sys": Path("/sys/bee-capture-test"),  # PermissionError: sysfs takes none either
    }[where]
    (tmp_path / "taken").write_text("someone's file\n")
    output = tmp_path / "doc.json"
    assert audit.main(["--no-qr", "--output", str(output), "--capture", str(capture), *machine]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("audit: --capture")]
    assert len(lines) == 1 and lines[0].startswith(f"audit: --capture {capture}: cannot write there (")
    assert lines[0].endswith("); the document is written without a capture")
    assert "Traceback" not in err
    assert json.loads(output.read_text())["board"]["system"]["serial"] == "SYS-SN-ABC123"
    assert (tmp_path / "taken").read_text() == "someone's file\n"  # left as it was


def test_a_folder_holding_an_older_capture_is_refused_before_anything_runs(tmp_path, machine, capsys):
    capture, output = tmp_path / "capture", tmp_path / "doc.json"
    (capture / "sysfs/class/net/eth9").mkdir(parents=True)  # what an older capture left there
    assert audit.main(["--no-qr", "--output", str(output), "--capture", str(capture), *machine]) == 2
    assert capsys.readouterr().err == (
        f"audit: --capture {capture}: the folder is not empty (an older capture?); name a new or empty "
        "folder\n")
    assert not output.exists() and not (capture / "commands").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert audit.main(["--no-qr", "--output", str(output), "--capture", str(empty), *machine]) == 0
    assert (empty / "host.json").is_file()


def test_replay_with_capture_copies_the_whole_capture(tmp_path, machine, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    live = tmp_path / "live.json"
    assert audit.main(["--no-qr", "--output", str(live), "--capture", str(first), *machine]) == 0
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert audit.main(["--no-qr", "--output", str(tmp_path / "a.json"), "--replay", str(first),
                       "--capture", str(second)]) == 0
    files = sorted(str(p.relative_to(first)) for p in first.rglob("*"))
    assert sorted(str(p.relative_to(second)) for p in second.rglob("*")) == files  # all of it, links too
    assert (second / "sysfs/bus/pci/devices/0000:21:01.0").is_symlink()
    assert audit.main(["--no-qr", "--output", str(tmp_path / "b.json"), "--replay", str(second)]) == 0
    assert without_times(json.loads((tmp_path / "b.json").read_text())) == without_times(
        json.loads((tmp_path / "a.json").read_text()))
