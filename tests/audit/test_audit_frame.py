"""The frame: collector order, the subprocess layer under pytest-subprocess (missing tool, non-zero exit,
hang, garbage, non-UTF-8), a real hung tool killed with its process group, capture/replay, exit status."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from audit import audit
from tests.audit.fakes import lab_output, tool_printing, write_tool
from tests.paths import REPO_ROOT

SCHEMA = json.loads((REPO_ROOT / "audit" / "bee-audit.schema.json").read_text())
# The agreed document order (issue 17); a new collector registers in its place in audit.py.
DOCUMENT_ORDER = ["board", "cpu", "memory", "storage", "pcie", "psu", "nvidia", "network", "infiniband",
                  "bmc", "sensors", "event_log", "kernel_log"]
NAMES = [name for name, _ in audit.COLLECTORS]
TOP_KEYS = [
    "schema_version",
    "audit_version",
    "generated_at",
    "hostname",
    "kernel",
    "addresses",
    "collectors",
    *NAMES,
    "findings",
    "errors",
    "duration_s",
]
DMI_COMMANDS = [
    ["dmidecode", "-t", "0,1,2,3"],
    ["dmidecode", "-t", "4"],
    ["dmidecode", "-t", "17"],
    ["dmidecode", "-t", "39"],
]


def assert_complete(document):
    """Every key in its place, JSON-serialisable, valid against the schema."""
    assert list(document) == TOP_KEYS
    assert list(document["collectors"]) == NAMES
    json.loads(json.dumps(document))
    jsonschema.validate(document, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_collectors_register_in_document_order():
    assert NAMES[:8] == ["board", "cpu", "memory", "storage", "pcie", "psu", "nvidia", "network"]
    assert [name for name in DOCUMENT_ORDER if name in NAMES] == NAMES  # no unknown name, none out of place


def test_document_order_does_not_depend_on_who_finished_first(tools):
    runner = tools.runner(timeout=2)

    def slow(seconds, value):
        def function(ctx):
            time.sleep(seconds)
            return value

        return function

    fakes = [("board", slow(0.3, 3)), ("cpu", slow(0.1, 4)), ("psu", slow(0, 2)), ("extra", slow(0, 1))]
    document = audit.build_document(runner, fakes)
    assert [k for k in document if k in {"extra", "psu", "board", "cpu"}] == ["board", "cpu", "psu", "extra"]
    assert list(document["collectors"]) == ["board", "cpu", "psu", "extra"]


def test_tool_missing_is_skipped_without_error(tools):
    runner = tools.runner(timeout=2)
    document = audit.build_document(runner)
    assert_complete(document)
    for name in ["board", "cpu", "memory", "psu"]:
        assert document[name] is None
        assert document["collectors"][name]["status"] == "skipped"
    assert document["errors"] == []


def test_non_zero_exit_is_an_error_entry(tools, fp):
    tools("dmidecode")
    runner = tools.runner(timeout=2)
    for argv in DMI_COMMANDS:
        fp.register(argv, stderr=b"dmidecode: invalid option -- 'j'\n", returncode=1)
    document = audit.build_document(runner)
    assert_complete(document)
    assert document["collectors"]["board"] == {
        "status": "error",
        "duration_s": document["collectors"]["board"]["duration_s"],
        "errors": [
            {
                "collector": "board",
                "command": "dmidecode -t 0,1,2,3",
                "message": "exit status 1: dmidecode: invalid option -- 'j'",
            }
        ],
    }
    assert {e["collector"] for e in document["errors"]} == {"board", "cpu", "memory", "psu"}


NO_SMBIOS_MESSAGE = "no SMBIOS/DMI table found ({}); the VM or firmware provides none: DMI data unknown"


@pytest.mark.parametrize(
    ("stdout", "stderr", "returncode", "said"),
    [
        # dmidecode 3.4 on a VM with neither /sys/firmware/dmi/tables nor /dev/mem (this very machine)
        (
            "# dmidecode 3.4\nScanning /dev/mem for entry point.\n",
            "/dev/mem: No such file or directory\n",
            1,
            "/dev/mem: No such file or directory",
        ),
        # /dev/mem readable but no entry point in it: dmidecode says so on stdout and exits 0
        (
            "# dmidecode 3.4\nScanning /dev/mem for entry point.\n"
            "# No SMBIOS nor DMI entry point found, sorry.\n",
            "",
            0,
            "No SMBIOS nor DMI entry point found, sorry.",
        ),
        (
            "# dmidecode 3.4\n# No SMBIOS nor DMI entry point found, sorry.\n",
            "",
            1,
            "No SMBIOS nor DMI entry point found, sorry.",
        ),
    ],
)
def test_no_smbios_table_is_one_clear_error_per_dmi_collector_one_stderr_line_and_no_data(
    tmp_path, monkeypatch, capsys, stdout, stderr, returncode, said
):
    (tmp_path / "out").write_text(stdout)
    (tmp_path / "err").write_text(stderr)
    script = f"cat {tmp_path / 'out'}; cat {tmp_path / 'err'} >&2; exit {returncode}"
    write_tool(tmp_path / "bin", "dmidecode", script)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    runner = audit.Runner(sysfs=tmp_path / "s", procfs=tmp_path / "p", devfs=tmp_path / "d")
    document = audit.build_document(runner)
    assert_complete(document)
    message = NO_SMBIOS_MESSAGE.format(said)
    for name, types in [("board", "0,1,2,3"), ("cpu", "4"), ("memory", "17"), ("psu", "39")]:
        assert document[name] is None
        assert document["collectors"][name]["status"] == "error"
        assert document["collectors"][name]["errors"] == [
            {"collector": name, "command": f"dmidecode -t {types}", "message": message}
        ]
    said = [line for line in capsys.readouterr().err.splitlines() if "SMBIOS" in line]
    assert said == [f"audit: board, cpu, memory, psu: dmidecode: {message}"]  # one line, not four


def test_dmidecode_denied_says_run_as_root(tools, fp):
    tools("dmidecode")
    runner = tools.runner(timeout=2)
    fp.register(
        ["dmidecode", "-t", "4"],
        stdout=b"# dmidecode 3.4\n",
        stderr=b"/sys/firmware/dmi/tables/smbios_entry_point: Permission denied\n",
        returncode=1,
    )
    document = audit.build_document(runner, [("cpu", audit.collect_cpu)])
    assert document["collectors"]["cpu"]["errors"][0]["message"] == (
        "exit status 1: /sys/firmware/dmi/tables/smbios_entry_point: Permission denied"
        " (run the audit as root)"
    )


def test_an_smbios_table_without_the_asked_type_says_so(tools, fp):
    tools("dmidecode")
    runner = tools.runner(timeout=2)
    fp.register(
        ["dmidecode", "-t", "17"],
        stdout=b"# dmidecode 3.4\nGetting SMBIOS data from sysfs.\nSMBIOS 2.8 present.\n\n",
    )
    fp.register(
        ["dmidecode", "-t", "39"],
        stdout=b"# dmidecode 3.4\nGetting SMBIOS data from sysfs.\nSMBIOS 2.8 present.\n\n",
    )
    document = audit.build_document(runner, [("memory", audit.collect_memory), ("psu", audit.collect_psu)])
    assert document["collectors"]["memory"]["errors"][0]["message"] == (
        "the SMBIOS table holds no structure of type 17"
    )
    psu = document["collectors"]["psu"]  # no type 39 is no power supply listed there: not an error
    assert (document["psu"], psu["status"], psu["errors"]) == (None, "skipped", [])


def test_hung_tool_is_recorded_and_the_rest_completes(tools, fp, capsys):
    tools("dmidecode")
    runner = tools.runner(timeout=2)
    text, _ = lab_output("dmidecode-all.txt")

    def hang(process):
        raise subprocess.TimeoutExpired(process.args, 2)

    fp.register(["dmidecode", "-t", "4"], callback=hang)
    fp.register(["dmidecode", "-t", "0,1,2,3"], stdout=text)
    fp.register(["dmidecode", "-t", "17"], stdout=text)
    document = audit.build_document(runner)
    assert_complete(document)
    assert document["cpu"] is None and document["collectors"]["cpu"]["status"] == "error"
    assert document["collectors"]["cpu"]["errors"][0]["message"].startswith("timed out after")
    assert document["board"]["system"]["serial"] == "SYS-SN-ABC123"
    assert document["board"]["chassis"]["serial"] == "CHS-SN-77001"  # type 3 from the same one run
    assert fp.call_count(["dmidecode", "-t", "0,1,2,3"]) == 1
    assert document["memory"]["populated_slots"] == 8
    assert "cpu: dmidecode -t 4: timed out" in capsys.readouterr().err


@pytest.mark.parametrize("garbage", [b"\x00\xff\xfe\x89PNG\r\n\x1a\n" * 50, b"   \n", b'{"truncated": ['])
def test_garbage_output_leaves_a_complete_document(tools, fp, garbage):
    tools("dmidecode")
    runner = tools.runner(timeout=2)
    for argv in DMI_COMMANDS:
        fp.register(argv, stdout=garbage)
    document = audit.build_document(runner)
    assert_complete(document)
    for name in ["board", "cpu", "memory"]:
        assert document[name] is None and document["collectors"][name]["status"] == "error"


def test_truncated_output_keeps_what_was_whole(tools, fp):
    tools("dmidecode")
    runner = tools.runner(timeout=2)
    text, _ = lab_output("dmidecode.txt")
    cut = text[: text.index("Locator: CPU0_DIMM_E1")]  # cut in the middle of the fifth slot
    fp.register(["dmidecode", "-t", "17"], stdout=cut)
    document = audit.build_document(runner, [("memory", audit.collect_memory)])
    assert [s["locator"] for s in document["memory"]["slots"]] == [
        "CPU0_DIMM_A1",
        "CPU0_DIMM_B1",
        "CPU0_DIMM_C1",
        "CPU0_DIMM_D1",
        None,
    ]


def test_non_utf8_bytes_are_replaced(tools, fp):
    tools("dmidecode")
    runner = tools.runner(timeout=2)
    text, _ = lab_output("dmidecode-all.txt")
    raw = text.replace("Acme Boards Inc.", "Acme Cart\xe9s").encode("latin-1")
    fp.register(["dmidecode", "-t", "0,1,2,3"], stdout=raw)
    document = audit.build_document(runner)
    assert_complete(document)
    assert document["board"]["baseboard"]["manufacturer"] == "Acme Cart\ufffds"
    assert document["board"]["system"]["serial"] == "SYS-SN-ABC123"
    assert document["board"]["chassis"]["manufacturer"] == "Acme Servers"


def test_a_real_hung_tool_is_killed_with_its_process_group(tmp_path, monkeypatch):
    """A dmidecode that starts a child and hangs: both die at the timeout; the audit goes on."""
    pid_file = tmp_path / "child.pid"
    write_tool(tmp_path / "bin", "dmidecode", f"/bin/sleep 60 &\necho $! > {pid_file}\n/bin/sleep 60")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = audit.Runner(
        sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev", timeout=0.5
    )
    started = time.monotonic()
    data, report = audit.run_collector("cpu", audit.collect_cpu, runner)
    assert time.monotonic() - started < 10
    assert data is None and report["status"] == "error"
    assert (report["errors"][0]["collector"], report["errors"][0]["command"]) == ("cpu", "dmidecode -t 4")
    assert re.fullmatch(
        r"timed out after (0\.[5-9]|[1-9]\.\d) s and was killed", report["errors"][0]["message"]
    )
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            break  # gone
        if state == "Z":
            break  # killed, waiting for its reaper
        time.sleep(0.05)
    else:
        pytest.fail("the hung tool's child survived the timeout")


def test_capture_then_replay_gives_the_same_document(tmp_path, monkeypatch):
    text, _ = lab_output("dmidecode-all.txt")
    (tmp_path / "dmi.txt").write_text(text)
    tool_printing(tmp_path / "bin", "dmidecode", tmp_path / "dmi.txt")
    (tmp_path / "sys/devices/system/edac/mc/mc0").mkdir(parents=True)
    (tmp_path / "sys/devices/system/edac/mc/mc0/ue_count").write_text("0\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    capture = tmp_path / "capture"
    live = audit.build_document(
        audit.Runner(
            sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev", capture=capture
        )
    )
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    replayed = audit.build_document(audit.Runner(replay=capture))
    for document in (live, replayed):
        document.pop("duration_s")
        for report in document["collectors"].values():
            report.pop("duration_s")
    assert replayed == live
    assert replayed["memory"]["edac"]["controllers"][0]["uncorrected"] == 0
    assert (capture / "host.json").exists()


def run_audit(args, env_path, cwd):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "audit" / "audit.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(env_path)},
        cwd=cwd,
        timeout=120,
    )


def test_stdout_is_pure_json_and_exit_zero_with_errors(tmp_path):
    """`audit.py | python3 -m json.tool` works: nothing but the document on stdout, even with errors."""
    write_tool(tmp_path / "bin", "dmidecode", "echo '/dev/mem: Permission denied' >&2; exit 1")
    done = run_audit(
        ["--sysfs", str(tmp_path), "--procfs", str(tmp_path), "--devfs", str(tmp_path)],
        tmp_path / "bin",
        tmp_path,
    )
    assert done.returncode == 0
    document = json.loads(done.stdout)
    assert_complete(document)
    assert document["collectors"]["board"]["status"] == "error"
    assert "board: dmidecode -t 0,1,2,3: exit status 1: /dev/mem: Permission denied" in done.stderr


def test_unwritable_output_exits_1_with_one_line(tmp_path):
    done = run_audit(
        ["--no-qr", "--output", str(tmp_path / "missing" / "a.json"), "--sysfs", str(tmp_path)],
        tmp_path / "bin",
        tmp_path,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith(f"audit: cannot write {tmp_path / 'missing' / 'a.json'}: ")


def test_replay_of_a_folder_that_is_no_capture_exits_2(tmp_path):
    done = run_audit(["--replay", str(tmp_path)], tmp_path / "bin", tmp_path)
    assert done.returncode == 2 and "is not a capture" in done.stderr


def test_main_writes_the_output_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    for root in "spd":
        (tmp_path / root).mkdir()
    target = tmp_path / "out.json"
    assert (
        audit.main(
            [
                "--no-qr",
                "--output",
                str(target),
                "--sysfs",
                str(tmp_path / "s"),
                "--procfs",
                str(tmp_path / "p"),
                "--devfs",
                str(tmp_path / "d"),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == ""
    assert_complete(json.loads(target.read_text()))
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.json")] == []


def test_capture_keeps_symlinks_so_replay_resolves_them(tmp_path):
    """sysfs links, relative (as the kernel writes them) and absolute, chained through linked folders."""
    sysfs = tmp_path / "sys"
    device = sysfs / "devices/pci0000:00/0000:00:1f.6"
    (device / "net/eno1").mkdir(parents=True)
    (device / "vendor").write_text("0x8086\n")
    (device / "net/eno1/address").write_text("3c:ec:ef:01:02:03\n")
    (sysfs / "bus/pci/drivers/e1000e").mkdir(parents=True)
    (device / "driver").symlink_to("../../../bus/pci/drivers/e1000e")  # relative
    (device / "net/eno1/device").symlink_to(device)  # absolute
    (sysfs / "class/net").mkdir(parents=True)
    (sysfs / "class/net/eno1").symlink_to("../../devices/pci0000:00/0000:00:1f.6/net/eno1")
    capture = tmp_path / "capture"

    def facts(runner):
        return (
            runner.listdir("sysfs", "class/net"),
            runner.realpath("sysfs", "class/net/eno1/device"),
            runner.realpath("sysfs", "class/net/eno1/device/driver"),
            runner.read("sysfs", "class/net/eno1/address"),
            runner.read("sysfs", "class/net/eno1/device/vendor"),
            runner.exists("sysfs", "class/net/eno1/device/driver"),
        )

    live = facts(audit.Runner(sysfs=sysfs, capture=capture))
    assert live == (
        ["eno1"],
        "devices/pci0000:00/0000:00:1f.6",
        "bus/pci/drivers/e1000e",
        "3c:ec:ef:01:02:03",
        "0x8086",
        True,
    )
    (capture / "commands").mkdir()
    assert facts(audit.Runner(replay=capture)) == live
    assert (capture / "sysfs/class/net/eno1").is_symlink()


def test_a_closed_stdout_is_exit_1_with_one_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "audit" / "audit.py"), "--no-qr", "--sysfs", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PATH": str(tmp_path / "bin")},
    )
    process.stdout.close()  # the reader went away (`audit.py | head -c0`)
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert err == "audit: cannot write the document to stdout: Broken pipe\n"


def test_timeout_option_kills_a_hung_tool_and_the_audit_completes(tmp_path):
    """`--timeout 1`: a dmidecode that hangs (with a child) is killed after about a second, recorded, and
    the document still comes out whole on stdout with exit status 0."""
    write_tool(tmp_path / "bin", "dmidecode", "/bin/sleep 120 & /bin/sleep 120")
    started = time.monotonic()
    done = run_audit(
        [
            "--no-qr",
            "--timeout",
            "1",
            "--sysfs",
            str(tmp_path),
            "--procfs",
            str(tmp_path),
            "--devfs",
            str(tmp_path),
        ],
        tmp_path / "bin",
        tmp_path,
    )
    assert time.monotonic() - started < 60  # four dmidecode runs at once, each cut at ~1 s
    assert done.returncode == 0
    document = json.loads(done.stdout)
    assert_complete(document)
    for name in ("board", "cpu", "memory", "psu"):
        [error] = document["collectors"][name]["errors"]
        assert re.fullmatch(r"timed out after 1\.\d s and was killed", error["message"])
    assert "board: dmidecode -t 0,1,2,3: timed out after 1." in done.stderr


@pytest.mark.parametrize("value", ["0", "-5", "abc", "inf", "nan"])
def test_a_bad_timeout_is_refused(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        audit.main(["--timeout", value, "--sysfs", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--timeout: " in capsys.readouterr().err


def test_default_timeout_is_a_few_tens_of_seconds():
    assert 10 <= audit.parse_args([]).timeout == audit.DEFAULT_TIMEOUT <= 60
    assert audit.parse_args(["--timeout", "2.5"]).timeout == 2.5


def test_a_failing_finding_rule_is_an_error_in_the_document(tools, monkeypatch, capsys):
    """A rule that raises (a bug, odd data) must not make its findings vanish silently."""
    runner = tools.runner(timeout=2)

    def broken(document):
        raise KeyError("health")

    monkeypatch.setattr(audit, "FINDING_RULES", [broken, *audit.FINDING_RULES])
    document = audit.build_document(runner)
    assert document["errors"] == [
        {"collector": "audit", "command": None, "message": "finding rule broken failed: KeyError: 'health'"}
    ]
    jsonschema.validate(json.loads(audit.render(document)), SCHEMA)
    assert "audit: finding rule broken failed: KeyError: 'health'\n" in capsys.readouterr().err


def test_a_tool_whose_child_escapes_the_group_and_holds_the_pipe_still_ends(tmp_path, monkeypatch):
    """A child in its own session (beyond the process-group kill, like a process stuck in the kernel) keeps
    stdout open: the run still ends a few seconds after the timeout, recorded as timed out."""
    pid_file = tmp_path / "escaped.pid"
    write_tool(
        tmp_path / "bin", "dmidecode", f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 60' &\nsleep 60"
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    runner = audit.Runner(sysfs=tmp_path / "s", procfs=tmp_path / "p", devfs=tmp_path / "d", timeout=0.5)
    started = time.monotonic()
    try:
        data, report = audit.run_collector("cpu", audit.collect_cpu, runner)
        assert time.monotonic() - started < 20
        assert data is None and report["errors"][0]["message"].startswith("timed out after ")
    finally:
        deadline = time.monotonic() + 5
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_file.exists():
            with contextlib.suppress(OSError):
                os.kill(int(pid_file.read_text()), 9)


# -- issue 16: bad arguments, interruptions, and a machine without SMBIOS ------------------------------------


@pytest.mark.parametrize("value", ["1e9", "86401", "inf"])
def test_a_timeout_past_one_day_is_a_bad_argument(value, capsys):
    with pytest.raises(SystemExit) as exited:
        audit.parse_args(["--timeout", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("audit: error: argument --timeout: ") and "at most 86400 (one day)" in err


def test_one_day_is_still_a_timeout():
    assert audit.parse_args(["--timeout", "86400"]).timeout == audit.MAX_TIMEOUT == 86400


@pytest.mark.parametrize("option", ["--sysfs", "--procfs", "--devfs"])
def test_a_missing_root_folder_is_a_bad_argument(option, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for path, said in [(tmp_path / "nowhere", "does not exist"), (tmp_path / "file", "is not a folder")]:
        with pytest.raises(SystemExit) as exited:
            audit.main([option, str(path)])
        assert exited.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == (f"audit: error: argument {option}: '{path}' {said}; name the root of a sysfs, "
                           "procfs or devfs tree")


@pytest.mark.parametrize("option", ["--sysfs", "--procfs", "--devfs"])
def test_an_empty_root_is_a_bad_argument_not_the_current_folder(option, capsys):
    with pytest.raises(SystemExit) as exited:
        audit.parse_args([option, ""])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"audit: error: argument {option}: an empty path; name the root of a sysfs, procfs or devfs tree")


def hanging_dmidecode(tmp_path: Path) -> Path:
    """A dmidecode that records its pid, then hangs far past any test (in its own process group)."""
    pids = tmp_path / "pids"
    pids.mkdir()
    write_tool(tmp_path / "bin", "dmidecode", f'echo $$ > {pids}/$$; exec sleep 300')
    return pids


@pytest.mark.parametrize(("signum", "status", "name"), [(signal.SIGINT, 130, "SIGINT (Ctrl-C)"),
                                                        (signal.SIGTERM, 143, "SIGTERM")])
def test_ctrl_c_or_sigterm_stops_the_running_tools_at_once(signum, status, name, tmp_path):
    pids = hanging_dmidecode(tmp_path)
    for root in "spd":
        (tmp_path / root).mkdir()
    audit_py = str(REPO_ROOT / "audit" / "audit.py")
    proc = subprocess.Popen(
        [sys.executable, audit_py, "--no-qr", "--output", str(tmp_path / "out.json"),
         "--sysfs", str(tmp_path / "s"), "--procfs", str(tmp_path / "p"), "--devfs", str(tmp_path / "d")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"},
    )
    deadline = time.monotonic() + 30
    while len(list(pids.iterdir())) < 4 and time.monotonic() < deadline:  # board, cpu, memory, psu
        time.sleep(0.05)
    hung = [int(path.name) for path in pids.iterdir()]
    assert len(hung) == 4
    started = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - started < 5  # at once, not after the 30 s tool timeout
    assert proc.returncode == status
    assert err == f"audit: interrupted by {name}: the running tools were stopped; no document was written\n"
    assert out == "" and not (tmp_path / "out.json").exists()
    for pid in hung:  # every hung tool is gone (reaped by the audit, not left running)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def start_audit(tmp_path: Path, *args: str, ignore_sigint: bool = False) -> subprocess.Popen:
    """The real audit.py as a process on empty roots with tmp_path/bin first on PATH (SIGINT ignored as in
    a background job when asked)."""
    for root in "spd":
        (tmp_path / root).mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "audit" / "audit.py"), *args,
         "--sysfs", str(tmp_path / "s"), "--procfs", str(tmp_path / "p"), "--devfs", str(tmp_path / "d")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"},
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None,
    )


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


def test_ctrl_c_stops_the_audit_even_where_sigint_was_inherited_as_ignored(tmp_path):
    """A background job (`audit &`) starts with SIGINT ignored: the audit installs its handler anyway."""
    pids = hanging_dmidecode(tmp_path)
    proc = start_audit(tmp_path, "--no-qr", "--output", str(tmp_path / "out.json"), ignore_sigint=True)
    wait_for(lambda: len(list(pids.iterdir())) == 4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert err == ("audit: interrupted by SIGINT (Ctrl-C): the running tools were stopped; no document was "
                   "written\n")


def test_sigterm_does_not_wait_for_pipes_held_by_an_escaped_descendant(tmp_path):
    """A tool whose child left its process group (setsid) keeps the pipes open: after SIGTERM the audit
    still exits at once (not after the 30 s timeout), its worker threads not waited for."""
    escaped = tmp_path / "escaped"
    escaped.mkdir()
    write_tool(tmp_path / "bin", "dmidecode",
               f"setsid sh -c 'echo $$ > {escaped}/$$; exec sleep 1000' &\nexec sleep 1000")
    proc = start_audit(tmp_path, "--no-qr", "--output", str(tmp_path / "out.json"))
    try:
        wait_for(lambda: len(list(escaped.iterdir())) == 4)
        time.sleep(0.3)  # the tools are in their communicate() now
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - started < 1.5
        assert proc.returncode == 143
        assert err == ("audit: interrupted by SIGTERM: the running tools were stopped; no document was "
                       "written\n")
        assert not (tmp_path / "out.json").exists()
    finally:
        for pid in escaped.iterdir():
            with contextlib.suppress(OSError):
                os.kill(int(pid.name), signal.SIGKILL)


def test_ctrl_c_while_the_qr_code_is_drawn_kills_qrencode_and_says_the_document_was_written(tmp_path):
    qr_pid = tmp_path / "qrencode.pid"
    write_tool(tmp_path / "bin", "qrencode", f"echo $$ > {qr_pid}; exec sleep 1000")
    out_json = tmp_path / "out.json"
    proc = start_audit(tmp_path, "--output", str(out_json))
    wait_for(lambda: qr_pid.exists() and qr_pid.read_text().strip() != "")
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - started < 5
    assert proc.returncode == 130
    assert err.splitlines()[-1] == (f"audit: interrupted by SIGINT (Ctrl-C): the running tools were stopped; "
                                    f"the document was written to {out_json}, nothing after it was done")
    assert json.loads(out_json.read_text())["schema_version"] == audit.SCHEMA_VERSION
    with pytest.raises(ProcessLookupError):
        os.kill(int(qr_pid.read_text()), 0)


def test_sigterm_during_the_usb_unmount_lets_it_finish_then_exits_143(tmp_path):
    """The stick the audit mounted is unmounted to the end (umount is never killed halfway), then the
    audit stops with its one line."""
    from tests.audit.test_audit_outputs import lab_lsblk, with_partition

    (tmp_path / "lsblk.json").write_text(json.dumps(with_partition(lab_lsblk())))
    log_file = tmp_path / "usb.log"
    write_tool(tmp_path / "bin", "lsblk", f"cat {tmp_path / 'lsblk.json'}")
    write_tool(tmp_path / "bin", "mount", f'echo "mount $*" >> {log_file}')
    write_tool(tmp_path / "bin", "umount",
               f'echo "umount starts" >> {log_file}; sleep 1.5; echo "umount $*" >> {log_file}')
    out_json = tmp_path / "out.json"
    proc = start_audit(tmp_path, "--no-qr", "--usb", "--output", str(out_json))
    wait_for(lambda: log_file.exists() and "umount starts" in log_file.read_text())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 143
    mount, starts, umount = log_file.read_text().splitlines()
    folder = mount.split()[-1]
    assert mount == f"mount /dev/sdb1 {folder}" and umount == f"umount {folder}"
    assert [p.name.endswith(".json") for p in Path(folder).iterdir()] == [True]  # (the fake mounts nothing)
    shutil.rmtree(folder)
    assert err.splitlines()[-1] == (f"audit: interrupted by SIGTERM: the running tools were stopped; the "
                                    f"document was written to {out_json}, nothing after it was done")


def test_without_smbios_cpu_and_memory_come_from_proc_and_the_error_stays(tmp_path, monkeypatch):
    """A VM without an SMBIOS table (as this machine): cpu and memory from the real /proc/cpuinfo and
    /proc/meminfo, marked with their source, beside the unchanged SMBIOS errors; lscpu agrees."""
    write_tool(tmp_path / "bin", "dmidecode",
               'echo "# dmidecode 3.4"; echo "# No SMBIOS nor DMI entry point found, sorry."')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_bytes(Path("/proc/cpuinfo").read_bytes())
    (proc / "meminfo").write_bytes(Path("/proc/meminfo").read_bytes())
    runner = audit.Runner(sysfs=tmp_path / "s", procfs=proc, devfs=tmp_path / "d")
    document = audit.build_document(runner)
    assert_complete(document)
    message = NO_SMBIOS_MESSAGE.format("No SMBIOS nor DMI entry point found, sorry.")
    for name in ("cpu", "memory"):
        assert document["collectors"][name]["status"] == "partial"  # data, and the SMBIOS error kept
        assert [e["message"] for e in document["collectors"][name]["errors"]] == [message]
    lscpu = {row["field"].rstrip(":"): row["data"]
             for row in json.loads(subprocess.run(["lscpu", "-J"], capture_output=True, text=True,
                                                  check=True, env={"LC_ALL": "C"}).stdout)["lscpu"]}
    cpu = document["cpu"]
    assert cpu["source"] == "/proc/cpuinfo"
    assert cpu["socket_count"] == int(lscpu["Socket(s)"])
    assert cpu["total_threads"] == int(lscpu["CPU(s)"]) == os.cpu_count()
    assert cpu["total_cores"] == int(lscpu["Socket(s)"]) * int(lscpu["Core(s) per socket"])
    assert {s["model"] for s in cpu["sockets"]} == {lscpu["Model name"]}
    memory = document["memory"]
    total_kb = int(re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)[1])
    assert (memory["source"], memory["total_bytes"]) == ("/proc/meminfo", total_kb * 1024)
    assert memory["slots"] == [] and memory["total_slots"] is None
    assert audit.qr_summary_text(document).split("\n")[3].startswith(f"CPU {cpu['socket_count']}x ")


def test_cpuinfo_of_two_sockets_and_of_an_arm_board():
    """/proc/cpuinfo's blocks grouped per physical id (this machine's real blocks, renumbered as a
    two-socket host shows them), and ARM's, which name no package and no model."""
    blocks = [b for b in Path("/proc/cpuinfo").read_text().split("\n\n") if b.strip()]
    two = []
    for index in range(8):
        block = re.sub(r"^processor\s*:.*$", f"processor\t: {index}", blocks[0], flags=re.M)
        block = re.sub(r"^physical id\s*:.*$", f"physical id\t: {index % 2}", block, flags=re.M)
        block = re.sub(r"^core id\s*:.*$", f"core id\t\t: {index // 2}", block, flags=re.M)
        block = re.sub(r"^cpu cores\s*:.*$", "cpu cores\t: 4", block, flags=re.M)
        two.append(block)
    cpu = audit.parse_cpuinfo("\n\n".join(two) + "\n")
    assert (cpu["socket_count"], cpu["total_cores"], cpu["total_threads"]) == (2, 8, 8)
    assert [s["designation"] for s in cpu["sockets"]] == ["physical id 0", "physical id 1"]
    arm = "".join(f"processor\t: {n}\nBogoMIPS\t: 100.00\nCPU implementer\t: 0x48\nCPU part\t: 0xd01\n\n"
                  for n in range(4))
    cpu = audit.parse_cpuinfo(arm)
    assert (cpu["socket_count"], cpu["total_threads"], cpu["total_cores"]) == (1, 4, None)
    assert cpu["sockets"][0]["model"] == "Kunpeng-920" and cpu["sockets"][0]["designation"] is None
    assert audit.parse_cpuinfo("garbage\n\x00\n") is None and audit.parse_meminfo("MemFree: 1 kB\n") is None


CPUINFO = REPO_ROOT / "tests" / "audit" / "data" / "cpuinfo"  # real ARM texts, SOURCES.md there


def test_arm_cpuinfo_of_a_kunpeng_920_names_the_cpu_and_the_qr_never_says_question_mark(tmp_path):
    """Huawei Cloud's Kunpeng 920 (huawei-cloud-kunpeng-920-cpuinfo.txt): no model name, only `CPU
    implementer 0x48` and `CPU part 0xd01`, which util-linux's lscpu-arm.c names HiSilicon Kunpeng-920."""
    from tests.audit.test_audit_outputs import decode_qr

    text = (CPUINFO / "huawei-cloud-kunpeng-920-cpuinfo.txt").read_text()
    assert "model name" not in text and "CPU part\t: 0xd01" in text
    cpu = audit.parse_cpuinfo(text)
    assert (cpu["socket_count"], cpu["total_threads"]) == (1, 1)
    assert (cpu["sockets"][0]["manufacturer"], cpu["sockets"][0]["model"]) == ("HiSilicon", "Kunpeng-920")
    memory = audit.parse_meminfo((CPUINFO / "huawei-cloud-kunpeng-920-meminfo-head.txt").read_text())
    assert memory["total_bytes"] == 1006904 * 1024
    summary = audit.qr_summary_text({"cpu": cpu, "memory": memory})
    assert summary.split("\n")[3:5] == ["CPU 1x Kunpeng-920", "MEM 1 GiB (kernel)"]
    assert decode_qr(summary, tmp_path) == summary + "\n"


def test_arm_cpuinfo_of_an_ampere_altra_is_a_neoverse_n1():
    """The Ampere Altra's CPU lines (ampere-altra-grep-cpu.txt, as grep printed them) in a file of 4 CPUs."""
    lines = (CPUINFO / "ampere-altra-grep-cpu.txt").read_text()
    cpu = audit.parse_cpuinfo("".join(f"processor\t: {n}\n{lines}\n" for n in range(4)))
    assert (cpu["sockets"][0]["manufacturer"], cpu["sockets"][0]["model"]) == ("ARM", "Neoverse-N1")
    assert (cpu["socket_count"], cpu["total_threads"]) == (1, 4)


@pytest.mark.parametrize(("implementer", "part", "vendor", "model"), [
    ("0x41", "0xd40", "ARM", "Neoverse-V1"), ("0x41", "0xd4f", "ARM", "Neoverse-V2"),
    ("0x43", "0x0af", "Cavium", "ThunderX2-99xx"), ("0x46", "0x001", "FUJITSU", "A64FX"),
    ("0xc0", "0xac3", "Ampere", "Ampere-1"), ("0x70", "0x662", "Phytium", "FTC662"),
    ("0x48", "0xd24", "HiSilicon", "HiSilicon part 0xd24"),  # a part the table does not know
    ("0x99", "0x123", "implementer 0x99", "implementer 0x99 part 0x123"),
])
def test_arm_parts_by_implementer(implementer, part, vendor, model):
    cpu = audit.parse_cpuinfo(f"processor\t: 0\nCPU implementer\t: {implementer}\nCPU part\t: {part}\n")
    assert (cpu["sockets"][0]["manufacturer"], cpu["sockets"][0]["model"]) == (vendor, model)


def test_a_cpu_without_any_model_is_an_unknown_model_in_the_qr():
    cpu = audit.parse_cpuinfo("processor\t: 0\nBogoMIPS\t: 100.00\n\nprocessor\t: 1\nBogoMIPS\t: 100.00\n")
    assert cpu["sockets"][0]["model"] is None
    line = audit.qr_summary_text({"cpu": cpu}).split("\n")[3]
    assert line == "CPU 1x unknown model" and "?" not in line


def test_log_lines_said_by_threads_at_once_never_glue_together(monkeypatch):
    """A slow stderr (a serial console) that switches threads inside every write: each line stays whole."""

    class SlowStream:
        def __init__(self):
            self.parts: list[str] = []

        def write(self, text: str) -> int:
            for char in text:
                self.parts.append(char)
                time.sleep(0)  # let another thread run mid-write
            return len(text)

        def flush(self) -> None:
            pass

    stream = SlowStream()
    monkeypatch.setattr(sys, "stderr", stream)
    import threading

    threads = [threading.Thread(target=lambda n=n: [audit.log(f"thread {n} line {i}") for i in range(20)])
               for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = "".join(stream.parts).split("\n")
    assert lines[-1] == "" and len(lines) == 121
    assert sorted(lines[:-1]) == sorted(f"audit: thread {n} line {i}" for n in range(6) for i in range(20))
