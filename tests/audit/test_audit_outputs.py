"""Outputs: the QR summary through the real qrencode and zbarimg, where it is printed, --output atomicity,
and --usb (finding, mounting, writing, unmounting)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import threading

import pytest

from audit import audit
from tests.audit.fakes import lab_output, write_tool

GiB = 1 << 30


def lab_document() -> dict:
    """A document of the emulated lab server: DMI from its dmidecode, 3 disks and 8 GPUs."""
    records = audit.parse_dmidecode(lab_output("dmidecode-all.txt")[0])
    return {
        "board": audit.parse_board(records),
        "cpu": audit.parse_cpus(records),
        "memory": audit.parse_memory(records),
        "storage": [{}, {}, {}],
        "nvidia": {"kernel_module": None, "gpus": [{}] * 8, "without_driver": []},
        "findings": [audit.finding("critical", "memory", "x"), audit.finding("warning", "cpu", "y")],
    }


def real_tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (apt-get install {'zbar-tools' if name == 'zbarimg' else name})"
    return path


def decode_qr(text: str, tmp_path) -> str:
    """The text a phone would read: `qrencode -o x.png` of the same text, decoded by zbarimg."""
    png = tmp_path / "x.png"
    subprocess.run([real_tool("qrencode"), "-l", "L", "-o", str(png), text], check=True, timeout=30)
    done = subprocess.run(
        [real_tool("zbarimg"), "--raw", "-q", str(png)], capture_output=True, timeout=30, check=True
    )
    return done.stdout.decode()


def test_summary_text_of_the_lab_server():
    assert audit.qr_summary_text(lab_document()) == "\n".join(
        [
            f"bee {audit.AUDIT_VERSION}",
            "SN SYS-SN-ABC123",
            "PN LabServer 2U",
            "CPU 2x Intel Xeon Gold 6338 2c",
            "MEM 256 GiB 8/16 DIMM",
            "DISK 3 GPU 8",
            "FINDINGS 2 (1 critical)",
        ]
    )


def test_summary_of_an_empty_document_says_unknown():
    text = audit.qr_summary_text({})
    assert "SN ?" in text and "DISK ? GPU ?" in text and "FINDINGS 0" in text


def test_summary_round_trip_through_qrencode_and_zbarimg(tmp_path):
    text = audit.qr_summary_text(lab_document())
    assert decode_qr(text, tmp_path) == text + "\n"


def test_long_values_are_cut_to_fit_an_80x25_console(tmp_path):
    document = lab_document()
    document["board"]["system"]["serial"] = "S" * 24
    document["board"]["system"]["product"] = "Product Name Ünïcode " * 6
    for socket in document["cpu"]["sockets"]:
        socket["model"] = "AMD EPYC 9754 128-Core Processor with a very long marketing name indeed"
    text = audit.qr_summary_text(document)
    assert len(text.encode()) <= audit.QR_MAX_BYTES and text.isascii()
    lines = text.split("\n")
    assert lines[0] == f"bee {audit.AUDIT_VERSION}"
    assert lines[1] == "SN " + "S" * 24  # the serial is kept whole; CPU and product lines were cut
    assert lines[2].startswith("PN Product") and lines[2].endswith("~")
    assert lines[3].startswith("CPU 2x AMD EPYC") and lines[3].endswith("~")
    drawing = audit.qr_code(text)
    assert drawing is not None
    rows = drawing.rstrip("\n").split("\n")
    assert len(rows) <= 23  # + the caption line: 24 of 25 lines
    assert all(len(row.replace("\x1b[40;37;1m", "").replace("\x1b[0m", "")) <= 80 for row in rows)
    assert decode_qr(text, tmp_path) == text + "\n"


@pytest.fixture
def quiet_machine(tmp_path, monkeypatch):
    """PATH with only the real qrencode; empty sysfs/procfs/devfs: an audit with nothing to find."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "qrencode").symlink_to(real_tool("qrencode"))
    monkeypatch.setenv("PATH", str(bin_dir))
    for root in "spd":
        (tmp_path / root).mkdir()
    return ["--sysfs", str(tmp_path / "s"), "--procfs", str(tmp_path / "p"), "--devfs", str(tmp_path / "d")]


def test_qr_goes_to_stdout_when_the_json_goes_to_a_file(tmp_path, quiet_machine, capsys):
    assert audit.main([*quiet_machine, "--output", str(tmp_path / "a.json")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("bee audit summary, system serial unknown:\n") and "\u2580" in out
    assert "\u2580" not in err


def test_qr_goes_to_stderr_when_the_json_goes_to_stdout(quiet_machine, capsys):
    assert audit.main(quiet_machine) == 0
    out, err = capsys.readouterr()
    json.loads(out)  # stdout holds the document only
    assert "bee audit summary" in err and "\u2580" in err


def test_no_qr(tmp_path, quiet_machine, capsys):
    assert audit.main([*quiet_machine, "--no-qr", "--output", str(tmp_path / "a.json")]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "summary" not in err


def test_without_qrencode_there_is_a_note_and_exit_0(tmp_path, quiet_machine, capsys):
    (tmp_path / "bin" / "qrencode").unlink()
    assert audit.main([*quiet_machine, "--output", str(tmp_path / "a.json")]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "audit: no QR summary (qrencode is not installed or failed)" in err


# -- --output atomicity ----------------------------------------------------------------------------------


def test_a_reader_never_sees_a_partial_output_file(tmp_path):
    target = tmp_path / "audit.json"
    documents = [audit.render({"n": n, "pad": "x" * 400_000}) for n in range(2)]
    audit.write_atomically(target, documents[0])
    stop = threading.Event()
    seen, bad = set(), []

    def reader():
        while not stop.is_set():
            text = target.read_text()
            try:
                seen.add(json.loads(text)["n"])
            except ValueError:
                bad.append(len(text))

    thread = threading.Thread(target=reader)
    thread.start()
    for round_number in range(60):
        audit.write_atomically(target, documents[round_number % 2])
    stop.set()
    thread.join()
    assert bad == [] and seen == {0, 1}
    assert [p.name for p in tmp_path.iterdir()] == ["audit.json"]  # no temp file left


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "audit.json"
    audit.write_atomically(target, "old\n")

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        audit.write_atomically(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["audit.json"]


# -- --usb -----------------------------------------------------------------------------------------------


def lab_lsblk() -> dict:
    """The emulated server's real `lsblk -J -b -O`: its USB stick sdb (hotplug, rm 0) has no filesystem."""
    return json.loads(lab_output("lsblk.txt")[0])


def with_partition(lsblk: dict, fstype: str = "vfat", mountpoint=None) -> dict:
    for disk in lsblk["blockdevices"]:
        if disk["name"] == "sdb":
            disk["children"] = [
                {
                    "name": "sdb1",
                    "path": "/dev/sdb1",
                    "rm": False,
                    "hotplug": True,
                    "tran": None,
                    "type": "part",
                    "fstype": fstype,
                    "mountpoint": mountpoint,
                }
            ]
    return lsblk


def fake_usb_tools(tmp_path, lsblk: dict):
    """lsblk printing `lsblk`, and mount/umount that log their arguments (mount mounts nothing)."""
    (tmp_path / "lsblk.json").write_text(json.dumps(lsblk))
    bin_dir = tmp_path / "bin"
    write_tool(bin_dir, "lsblk", f"/bin/cat {tmp_path / 'lsblk.json'}")
    write_tool(bin_dir, "mount", f'echo "mount $*" >> {tmp_path / "usb.log"}')
    write_tool(bin_dir, "umount", f'echo "umount $*" >> {tmp_path / "usb.log"}')
    return tmp_path / "usb.log"


def test_usb_targets_of_the_lab_machine():
    assert audit.usb_targets(lab_lsblk()) == []  # the stick has no filesystem
    assert audit.usb_targets(with_partition(lab_lsblk())) == [
        {"path": "/dev/sdb1", "fstype": "vfat", "mountpoint": None, "disk_serial": "USB-SN-42"}
    ]
    assert audit.usb_targets(with_partition(lab_lsblk(), "iso9660")) == []  # the boot medium
    old_style = with_partition(lab_lsblk())
    old_style["blockdevices"][1].update(rm="1", hotplug="0")  # util-linux before 2.33 printed strings
    assert len(audit.usb_targets(old_style)) == 1
    assert audit.usb_targets(None) == [] and audit.usb_targets({"blockdevices": "x"}) == []


def test_usb_file_name():
    import datetime as dt

    when = dt.datetime(2026, 11, 25, 22, 43, 5, 123456, tzinfo=dt.UTC)
    assert (audit.usb_file_name(lab_document(), when, "a1b2")
            == "bee-audit-SYS-SN-ABC123-20261125T224305.123Z-a1b2.json")
    assert (
        audit.usb_file_name({"board": {"system": {"serial": "VMware-42 1b/ba"}}}, when, "0000")
        == "bee-audit-VMware-42_1b_ba-20261125T224305.123Z-0000.json"
    )
    assert audit.usb_file_name({}, when, "ffff") == "bee-audit-unknown-20261125T224305.123Z-ffff.json"
    # two runs in the same millisecond never share a name: the random suffix differs
    names = {audit.usb_file_name({}, when) for _ in range(50)}
    pattern = r"bee-audit-unknown-20261125T224305\.123Z-[0-9a-f]{4}\.json"
    assert len(names) > 40 and all(re.fullmatch(pattern, name) for name in names)


def test_usb_file_name_without_a_serial_uses_the_uuid_then_the_permanent_mac():
    import datetime as dt

    when = dt.datetime(2026, 11, 25, 22, 43, 5, tzinfo=dt.UTC)
    document = lab_document()
    for part in ("system", "chassis", "baseboard"):
        if document["board"].get(part):
            document["board"][part]["serial"] = None
    document["board"]["system"]["uuid"] = "4C4C4544-0042-3510-8056-B4C04F564433"
    assert (audit.usb_file_name(document, when, "0000")
            == "bee-audit-4c4c4544-0042-3510-8056-b4c04f564433-20261125T224305.000Z-0000.json")
    for uuid in ("00000000-0000-0000-0000-000000000000", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", None,
                 "garbage"):
        document["board"]["system"]["uuid"] = uuid
        document["network"] = [{"name": "eno1", "mac": "02:00:00:00:00:01", "permanent_mac": None},
                               {"name": "eno2", "mac": "0c:c4:7a:1d:22:e3",
                                "permanent_mac": "0C:C4:7A:1D:22:E3"}]
        assert audit.machine_name(document) == "mac-0cc47a1d22e3"
    document["network"] = []
    assert audit.machine_name(document) == "unknown"


def test_machine_serial_falls_back_from_system_to_chassis_to_baseboard():
    document = lab_document()
    board = document["board"]
    assert audit.machine_serial(document) == "SYS-SN-ABC123"
    board["system"]["serial"] = None  # e.g. "0123456789" on a Supermicro board
    assert audit.machine_serial(document) == "CHS-SN-77001"
    assert "SN CHS-SN-77001" in audit.qr_summary_text(document).split("\n")
    import datetime as dt

    when = dt.datetime(2026, 11, 25, 22, 43, 5, tzinfo=dt.UTC)
    assert (audit.usb_file_name(document, when, "0a0b")
            == "bee-audit-CHS-SN-77001-20261125T224305.000Z-0a0b.json")
    board["chassis"] = None  # no type 3 in the table
    assert audit.machine_serial(document) == "BRD-SN-123456"
    board["baseboard"]["serial"] = None
    assert audit.machine_serial(document) is None
    assert "SN ?" in audit.qr_summary_text(document).split("\n")


def test_usb_mounts_writes_syncs_and_unmounts(tmp_path, monkeypatch):
    log = fake_usb_tools(tmp_path, with_partition(lab_lsblk()))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    document = lab_document()
    assert audit.write_to_usb(document, audit.render(document)) is True
    mount, umount = log.read_text().strip().split("\n")
    assert mount.startswith("mount /dev/sdb1 ")
    directory = mount.split(" ", 2)[2]
    assert umount == f"umount {directory}"
    [written] = list(__import__("pathlib").Path(directory).iterdir())
    assert re.fullmatch(r"bee-audit-SYS-SN-ABC123-\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{4}\.json", written.name)
    assert json.loads(written.read_text())["board"]["system"]["serial"] == "SYS-SN-ABC123"
    shutil.rmtree(directory)


def test_usb_already_mounted_is_written_in_place(tmp_path, monkeypatch):
    stick = tmp_path / "stick"
    stick.mkdir()
    log = fake_usb_tools(tmp_path, with_partition(lab_lsblk(), mountpoint=str(stick)))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert audit.write_to_usb({}, "{}\n") is True
    assert not log.exists()  # nothing mounted, nothing unmounted
    assert [p.name.startswith("bee-audit-unknown-") for p in stick.iterdir()] == [True]


def test_usb_none_found_is_one_clear_message_and_exit_0(tmp_path, monkeypatch, capsys):
    fake_usb_tools(tmp_path, lab_lsblk())
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    args = [
        "--usb",
        "--no-qr",
        "--output",
        str(tmp_path / "a.json"),
        "--sysfs",
        str(tmp_path),
        "--devfs",
        str(tmp_path),
    ]
    assert audit.main(args) == 0
    err = capsys.readouterr().err
    assert "audit: --usb: no removable USB disk with a filesystem found; plug one in and run again\n" in err
    assert json.loads((tmp_path / "a.json").read_text())["schema_version"] == audit.SCHEMA_VERSION


def test_usb_that_cannot_be_written_exits_1(tmp_path, monkeypatch, capsys):
    fake_usb_tools(tmp_path, with_partition(lab_lsblk()))
    write_tool(tmp_path / "bin", "mount", "echo 'mount: /dev/sdb1: can not mount' >&2; exit 32")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert (
        audit.main(["--usb", "--no-qr", "--sysfs", str(tmp_path), "--devfs", str(tmp_path)]) == 1
    )
    out, err = capsys.readouterr()
    json.loads(out)  # the document itself still went to stdout
    assert "audit: --usb: cannot mount /dev/sdb1: mount: /dev/sdb1: can not mount" in err


def test_usb_without_a_working_lsblk_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert audit.write_to_usb({}, "{}\n") is False
    assert "audit: --usb: cannot list the disks: lsblk is not installed" in capsys.readouterr().err
    write_tool(tmp_path / "bin", "lsblk", "echo 'lsblk: unknown column: PATH' >&2; exit 1")
    assert audit.write_to_usb({}, "{}\n") is False
    assert "cannot list the disks: lsblk: unknown column: PATH" in capsys.readouterr().err


def test_stdout_carries_only_the_document_with_every_tool_and_qrencode_present(tmp_path):
    """`audit.py | python3 -m json.tool`, as a process: the lab tools (some print on stderr, some fail) and
    the real qrencode on PATH; stdout is exactly the document, the QR code goes to stderr."""
    import sys

    from tests.audit.fakes import lab_tools
    from tests.paths import REPO_ROOT

    bin_dir = tmp_path / "bin"
    lab_tools(bin_dir, tmp_path / "files")
    write_tool(bin_dir, "nvidia-smi", "echo 'NVIDIA-SMI has failed' ; echo oops >&2; exit 9")
    (bin_dir / "qrencode").symlink_to(real_tool("qrencode"))
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "s").mkdir()
    (tmp_path / "d").mkdir()
    audit_py = str(REPO_ROOT / "audit" / "audit.py")
    roots = [
        "--sysfs",
        str(tmp_path / "s"),
        "--procfs",
        str(tmp_path / "proc"),
        "--devfs",
        str(tmp_path / "d"),
    ]
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    pipeline = (
        f"{sys.executable} {audit_py} {' '.join(roots)} | {sys.executable} -m json.tool > {tmp_path / 'out'}"
    )
    done = subprocess.run(["/bin/sh", "-c", pipeline], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "out").read_text())
    assert document["board"]["system"]["serial"] == "SYS-SN-ABC123"
    assert document["collectors"]["nvidia"]["errors"][0]["message"] == "exit status 9: oops"
    assert "bee audit summary, system serial SYS-SN-ABC123:" in done.stderr and "\u2580" in done.stderr
    raw = subprocess.run(
        [sys.executable, audit_py, *roots], capture_output=True, text=True, env=env, timeout=120
    )
    assert raw.stdout == audit.render(json.loads(raw.stdout))  # nothing before, after or inside it


# -- issue 16: --output over what is already there, `-`, an empty path; the QR's CPU and address -----------


def test_output_over_a_fifo_writes_through_it_and_leaves_the_fifo(tmp_path, quiet_machine):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    assert audit.main(["--no-qr", "--output", str(fifo), *quiet_machine]) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still a FIFO, not a file renamed over it
    assert json.loads(received[0])["schema_version"] == audit.SCHEMA_VERSION


def test_output_over_a_character_device_writes_in_place(tmp_path, quiet_machine, capsys):
    """A real /dev/null and /dev/full made with mknod: still devices afterwards; /dev/full's ENOSPC is one
    line and exit 1."""
    null, full = tmp_path / "null", tmp_path / "full"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    assert audit.main(["--no-qr", "--output", str(null), *quiet_machine]) == 0
    assert stat.S_ISCHR(null.lstat().st_mode) and null.stat().st_rdev == os.makedev(1, 3)
    assert capsys.readouterr().err == ""
    assert audit.main(["--no-qr", "--output", str(full), *quiet_machine]) == 1
    assert stat.S_ISCHR(full.lstat().st_mode)
    assert capsys.readouterr().err == (
        f"audit: cannot write {full}: No space left on device; choose another --output path\n")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp left


def test_output_dash_is_stdout(tmp_path, quiet_machine, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert audit.main(["--no-qr", "--output", "-", *quiet_machine]) == 0
    assert json.loads(capsys.readouterr().out)["schema_version"] == audit.SCHEMA_VERSION
    assert not (tmp_path / "-").exists()


def test_an_empty_output_path_is_a_bad_argument(capsys):
    with pytest.raises(SystemExit) as exited:
        audit.parse_args(["--output", ""])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "audit: error: argument --output: an empty path: name a file, or - for stdout")


def test_output_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path, quiet_machine):
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old\n")
    link.symlink_to(target)
    assert audit.main(["--no-qr", "--output", str(link), *quiet_machine]) == 0
    assert link.is_symlink() and json.loads(target.read_text())["schema_version"] == audit.SCHEMA_VERSION


def test_output_onto_a_folder_is_one_line_and_exit_1(tmp_path, quiet_machine, capsys):
    assert audit.main(["--no-qr", "--output", str(tmp_path), *quiet_machine]) == 1
    assert capsys.readouterr().err == (
        f"audit: cannot write {tmp_path}: Is a directory; choose another --output path\n")


def test_qr_says_cpu_unknown_never_cpu_0x(tmp_path):
    for document in ({}, {"cpu": None}, {"cpu": {"sockets": [{"populated": False, "model": None}]}}):
        lines = audit.qr_summary_text(document).split("\n")
        assert lines[3] == "CPU unknown" and "0x" not in audit.qr_summary_text(document)


def test_qr_of_a_machine_without_smbios_and_with_an_address(tmp_path):
    document = {
        "cpu": audit.parse_cpuinfo(
            "processor\t: 0\nmodel name\t: AMD EPYC\nphysical id\t: 0\ncpu cores\t: 2\n\n"
            "processor\t: 1\nmodel name\t: AMD EPYC\nphysical id\t: 0\ncpu cores\t: 2\n"
        ),
        "memory": audit.parse_meminfo("MemTotal:       24683652 kB\nMemFree:        1 kB\n"),
        "addresses": [
            {"interface": "eth0", "address": "10.20.30.40"},
            {"interface": "eth1", "address": "fd00::2"},
        ],
    }
    text = audit.qr_summary_text(document)
    assert text.split("\n")[3:5] == ["CPU 1x AMD EPYC 2c", "MEM 23.5 GiB (kernel)"]
    assert text.split("\n")[-1] == "IP 10.20.30.40"
    assert decode_qr(text, tmp_path) == text + "\n"


def test_the_first_address_survives_a_summary_cut_to_fit(tmp_path):
    document = lab_document()
    document["cpu"]["sockets"][0]["model"] = "Intel Xeon " + "Platinum " * 20
    document["addresses"] = [{"interface": "enp1s0f0", "address": "2001:db8:1234:5678:9abc:def0:1234:5678"}]
    text = audit.qr_summary_text(document)
    assert len(text) <= audit.QR_MAX_BYTES
    assert text.split("\n")[-1] == "IP 2001:db8:1234:5678:9abc:def0:1234:5678"


def test_make_profile_over_a_character_device_writes_in_place(tmp_path, quiet_machine):
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    out = tmp_path / "doc.json"
    assert audit.main(["--no-qr", "--output", str(out), "--make-profile", str(null), *quiet_machine]) == 0
    assert stat.S_ISCHR(null.lstat().st_mode) and json.loads(out.read_text())["schema_version"]


# -- issue 16 review: a disk or a socket is never an output --------------------------------------------------


def block_node(tmp_path):
    """A block device node (loop major 7, a minor no loop device has): refused before any open."""
    node = tmp_path / "disk"
    os.mknod(node, stat.S_IFBLK | 0o660, os.makedev(7, 250))
    return node


@pytest.mark.parametrize("option", ["--output", "--make-profile"])
def test_a_block_device_is_refused_before_the_audit_runs(option, tmp_path, quiet_machine, capsys):
    node = block_node(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(node)
    for path in (node, link):
        assert audit.main(["--no-qr", option, str(path), *quiet_machine]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err == (f"audit: {option} {path} is a block device (a disk): the audit never writes over a "
                       "disk; name a file, e.g. on a mounted stick\n")
    assert stat.S_ISBLK(node.lstat().st_mode) and node.stat().st_rdev == os.makedev(7, 250)


def test_a_socket_is_refused(tmp_path, quiet_machine, capsys):
    import socket

    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert audit.main(["--no-qr", "--output", str(path), *quiet_machine]) == 2
    assert capsys.readouterr().err == f"audit: --output {path} is a socket, not a file; name a file\n"
    assert stat.S_ISSOCK(path.lstat().st_mode)


def test_write_output_itself_never_opens_a_block_device(tmp_path):
    """Should a disk appear at the path after the check (or a caller skip it), the writer still refuses."""
    node = block_node(tmp_path)
    with pytest.raises(OSError) as raised:
        audit.write_output(node, "{}\n")
    assert "block device" in str(raised.value) and stat.S_ISBLK(node.lstat().st_mode)


@pytest.mark.parametrize("option", ["--capture", "--replay", "--document", "--make-profile", "--spool"])
def test_an_empty_path_is_a_bad_argument(option, capsys):
    with pytest.raises(SystemExit) as exited:
        audit.parse_args([option, ""])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"audit: error: argument {option}: an empty path: name a file or folder")
