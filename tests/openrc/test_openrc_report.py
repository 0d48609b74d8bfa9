"""The report at boot: bee-audit-debug's report block and the overlay's bee-report command, run in busybox
sh; stand-ins where the command line is checked, the real audit and a real nginx end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts import buildconfig, live_system
from tests.collector import Nginx, free_port
from tests.openrc.openrc_harness import Sandbox
from tests.paths import REPO_ROOT

BEE_REPORT = Path("iso/overlay-debug/usr/local/bin/bee-report.j2")
CMDLINE = "BOOT_IMAGE=/boot/vmlinuz-lts modules=loop,squashfs quiet console=tty0"


@pytest.fixture
def box(tmp_path):
    sandbox = Sandbox(tmp_path / "box")
    for applet in ("date", "mktemp"):
        (sandbox.bin / applet).symlink_to(sandbox.busybox)
    return sandbox


def render_bee_report(cfg, target: Path) -> Path:
    target.write_text(live_system.render_source(cfg, BEE_REPORT))
    target.chmod(0o755)
    return target


def report_env(tmp_path: Path, cmdline: str, **extra: str) -> dict[str, str]:
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    return {"BEE_CMDLINE": str(tmp_path / "cmdline"), "BEE_REPORT_SPOOL": str(tmp_path / "spool"),
            "BEE_REPORT_LOG": str(tmp_path / "log" / "bee-report.log"),
            "BEE_REPORT_TOKEN": str(tmp_path / "report.token"), **extra}


def run_report(box: Sandbox, script: Path, env: dict[str, str], *args: str,
               timeout: int = 60) -> subprocess.CompletedProcess:
    """bee-report run by busybox sh with the sandbox's PATH and its `audit`."""
    environment = {"PATH": str(box.bin), "CALLS_LOG": str(box.calls_log), "BEE_AUDIT": str(box.bin / "audit"),
                   **env}
    return subprocess.run([box.busybox, "sh", str(script), *args], capture_output=True, text=True,
                          timeout=timeout, env=environment)


def wait_for_calls(box: Sandbox, name: str, count: int) -> list[str]:
    """The calls of `name` once there are `count` (a background job starts a moment later)."""
    deadline = time.monotonic() + 10
    while len(box.calls(name)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return box.calls(name)


def spool_a_document(tmp_path: Path, name: str = "bee-audit-S1-20261201T120000Z.json") -> Path:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    (spool / name).write_text('{"schema_version": 1}\n')
    return spool / name


# --- bee-audit-debug ---------------------------------------------------------------------------------------

def audit_env(tmp_path, audit, bee_report):
    return {"BEE_AUDIT": str(audit), "BEE_AUDIT_OUTPUT": str(tmp_path / "log/bee-audit.json"),
            "BEE_AUDIT_LOG": str(tmp_path / "log/bee-audit.log"), "BEE_REPORT": str(bee_report),
            "BEE_REPORT_SPOOL": str(tmp_path / "spool"),
            "BEE_REPORT_LOG": str(tmp_path / "log/bee-report.log"), "BEE_CONSOLE": str(tmp_path / "console"),
            "BEE_EXPECT_PROFILE": str(tmp_path / "profile.json"), "BEE_CMDLINE": str(tmp_path / "no-cmdline"),
            "BEE_DEV": str(tmp_path / "dev")}


def audit_call(tmp_path, *extra):
    """The audit's command line in bee-audit-debug (acceptance's options, then the report's)."""
    return " ".join(["audit --output", f"{tmp_path}/log/bee-audit.json --expect-live {tmp_path}/profile.json",
                     "--strict", *extra])


def test_without_a_collector_the_audit_runs_as_before(box, services, tmp_path):
    audit = box.stand_in("audit")
    bee_report = box.stand_in("bee-report", "exit 1\n")  # --url: no collector configured
    result = box.run_function(services["bee-audit-debug"], "start", audit_env(tmp_path, audit, bee_report))
    assert result.returncode == 0, result.stderr
    assert box.calls("audit") == [audit_call(tmp_path)]
    assert box.calls("bee-report") == ["bee-report --url"]
    assert box.openrc()[-1] == "eend 0"


def test_the_gpu_list_without_a_collector_never_starts_bee_report(box, services, tmp_path):
    """The GPU list's option is no collector: no "sending it to the collector", no bee-report --boot."""
    audit = box.stand_in("audit")
    bee_report = box.stand_in("bee-report", "exit 1\n")  # --url: no collector configured
    gpu_list = tmp_path / "gpu-list"
    gpu_list.write_text("0x2901 open\n")
    env = {**audit_env(tmp_path, audit, bee_report), "BEE_NVIDIA_GPU_LIST": str(gpu_list)}
    result = box.run_function(services["bee-audit-debug"], "start", env)
    assert result.returncode == 0, result.stderr
    assert box.calls("audit") == [audit_call(tmp_path, f"--nvidia-gpu-list {gpu_list}")]
    time.sleep(0.3)
    assert box.calls("bee-report") == ["bee-report --url"]
    assert not any("collector" in line for line in box.openrc())


def test_with_a_collector_the_audit_spools_and_bee_report_sends_in_the_background(box, services, tmp_path):
    audit = box.stand_in("audit")
    # the collector is down: bee-report --boot keeps trying (here 20 s) while the boot goes on
    bee_report = box.stand_in("bee-report", 'case "$1" in --url) echo http://c/fleet/;; --boot) sleep 20; '
                                            'echo "bee-report: done";; esac\n')
    started = time.monotonic()
    result = box.run_function(services["bee-audit-debug"], "start", audit_env(tmp_path, audit, bee_report))
    assert time.monotonic() - started < 10  # start() returned long before bee-report ended
    assert result.returncode == 0, result.stderr
    assert box.calls("audit") == [audit_call(tmp_path, f"--spool {tmp_path}/spool")]
    assert wait_for_calls(box, "bee-report", 2) == ["bee-report --url", "bee-report --boot"]
    assert not (tmp_path / "console").exists()  # its line comes when it is done, on the console
    assert f"einfo sending it to the collector in the background; progress in {tmp_path}/log/bee-report.log" \
        in box.openrc()
    assert box.openrc()[-1] == "eend 0"


def test_bee_reports_line_reaches_the_serial_console_too(box, services, tmp_path):
    audit = box.stand_in("audit")
    bee_report = box.stand_in("bee-report", 'case "$1" in --url) echo http://c/f/;; --boot) '
                                            'echo "bee-report: delivered 1 files to http://c/f/";; esac\n')
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ttyS0").write_text("")
    (tmp_path / "cmdline").write_text("quiet console=ttyS0,115200 console=tty0\n")
    env = {**audit_env(tmp_path, audit, bee_report), "BEE_CMDLINE": str(tmp_path / "cmdline")}
    result = box.run_function(services["bee-audit-debug"], "start", env)
    assert result.returncode == 0, result.stderr
    line = "bee-report: delivered 1 files to http://c/f/\n"
    deadline = time.monotonic() + 10
    while line not in (tmp_path / "dev" / "ttyS0").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "dev" / "ttyS0").read_text().endswith(line)
    assert (tmp_path / "console").read_text() == line


def test_a_serial_port_that_fails_to_write_says_nothing(box, services, tmp_path):
    """A console= whose device exists but cannot be written (no UART behind ttyS0) adds no shell error."""
    audit = box.stand_in("audit", "echo QR\n")
    bee_report = box.stand_in("bee-report", "exit 1\n")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ttyS0").mkdir()  # writable by test -w, yet no file to write into
    (tmp_path / "cmdline").write_text("console=ttyS0,115200 console=tty0\n")
    env = {**audit_env(tmp_path, audit, bee_report), "BEE_CMDLINE": str(tmp_path / "cmdline")}
    result = box.run_function(services["bee-audit-debug"], "start", env)
    assert result.returncode == 0
    assert result.stdout == "QR\n"
    assert result.stderr == ""


def test_a_failing_audit_still_hands_the_spool_to_bee_report_and_returns_0(box, services, tmp_path):
    audit = box.stand_in("audit", "exit 1\n")
    bee_report = box.stand_in("bee-report", 'case "$1" in --url) echo http://c/fleet/;; esac\n')
    result = box.run_function(services["bee-audit-debug"], "start", audit_env(tmp_path, audit, bee_report))
    assert result.returncode == 0
    assert wait_for_calls(box, "bee-report", 2) == ["bee-report --url", "bee-report --boot"]
    assert box.openrc()[-1] == "eend 0"


# --- bee-report --------------------------------------------------------------------------------------------

def test_the_kernel_command_line_names_the_collector_and_the_timeout(box, cfg, tmp_path):
    script = render_bee_report(cfg, tmp_path / "bee-report")
    box.stand_in("audit", 'rm -f "$2"/bee-audit-*\n')  # delivers everything
    spool_a_document(tmp_path)
    url = "https://s3.example.com/fleet/rack12.json?X-Amz-Signature=0badc0ffee&X-Amz-Expires=600"
    env = report_env(tmp_path, f"{CMDLINE} bee.report={url} bee.report_timeout=42 nomodeset")
    assert run_report(box, script, env, "--url").stdout == "https://s3.example.com/fleet/rack12.json\n"
    done = run_report(box, script, env, "--boot")
    assert done.returncode == 0, done.stderr
    assert box.calls("audit") == [f"audit --send-spool {tmp_path}/spool --report {url} --report-timeout 42"]
    line = "bee-report: delivered 1 files to https://s3.example.com/fleet/rack12.json"
    assert done.stdout == line + "\n"
    log = (tmp_path / "log" / "bee-report.log").read_text()
    assert log.endswith(f" {line}\n") and "0badc0ffee" not in log + done.stdout


def test_the_build_default_and_a_url_given_by_hand(box, config_copy, tmp_path):
    config_copy.write_text(config_copy.read_text().replace('report_url: ""',
                                                           'report_url: "http://10.0.0.5:8080/fleet/"'))
    script = render_bee_report(buildconfig.load_config(config_copy.parent), tmp_path / "bee-report")
    env = report_env(tmp_path, CMDLINE)
    assert run_report(box, script, env, "--url").stdout == "http://10.0.0.5:8080/fleet/\n"
    env = report_env(tmp_path, f"{CMDLINE} bee.report=http://192.0.2.9/in/")  # the command line wins
    assert run_report(box, script, env, "--url").stdout == "http://192.0.2.9/in/\n"
    box.stand_in("audit")
    spool_a_document(tmp_path)
    (tmp_path / "report.token").write_text("t0ken\n")
    run_report(box, script, env, "http://other.example/x/")  # by hand, another collector
    assert box.calls("audit") == [f"audit --send-spool {tmp_path}/spool --report http://other.example/x/ "
                                  f"--report-timeout 600 --report-token-file {tmp_path}/report.token"]


def test_a_built_in_url_is_one_shell_word_and_never_shown_whole(box, config_copy, tmp_path):
    """bee.live.report_url is quoted at render time: quotes, $(...) and ; in it are the URL's, never run."""
    url = "https://u:pw@c.example/in/?sig=a'b\"c$(touch pwned);x=`id`&y=${HOME}"
    yaml = config_copy.read_text()
    config_copy.write_text(yaml.replace('report_url: ""', f"report_url: {json.dumps(url)}"))
    cfg = buildconfig.load_config(config_copy.parent)
    assert cfg.bee.live.report_url == url
    script = render_bee_report(cfg, tmp_path / "bee-report")
    box.stand_in("audit")
    spool_a_document(tmp_path)
    env = report_env(tmp_path, CMDLINE)
    shown = run_report(box, script, env, "--url")
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, "https://c.example/in/\n", "")
    run_report(box, script, env, "--boot")
    assert box.calls("audit")[0].startswith(f"audit --send-spool {tmp_path}/spool --report {url} ")
    assert not list(Path.cwd().glob("pwned")) and not (tmp_path / "pwned").exists()


def test_help_shows_the_whole_usage(box, cfg, tmp_path):
    script = render_bee_report(cfg, tmp_path / "bee-report")
    usage = run_report(box, script, report_env(tmp_path, CMDLINE), "--help").stdout
    assert usage.startswith("bee-report: send the audit documents")
    assert usage.rstrip().endswith(f"{cfg.bee.live.report_timeout}) and end with one line on stdout (the "
                                   "console at boot).")


def test_no_collector_an_empty_spool_and_a_bad_timeout(box, cfg, tmp_path):
    script = render_bee_report(cfg, tmp_path / "bee-report")
    box.stand_in("audit", "exit 1\n")
    env = report_env(tmp_path, CMDLINE)
    assert run_report(box, script, env, "--url").returncode == 1  # invoke.yaml's default is empty
    done = run_report(box, script, env)
    assert (done.returncode, done.stderr) == (2, "bee-report: no collector: boot with bee.report=URL or run "
                                                 "bee-report URL\n")
    env = report_env(tmp_path, f"{CMDLINE} bee.report=http://c/f/ bee.report_timeout=10m")
    done = run_report(box, script, env)
    assert (done.returncode, done.stdout) == (0, f"bee-report: nothing to send in {tmp_path}/spool\n")
    spool_a_document(tmp_path)
    done = run_report(box, script, env)
    assert done.returncode == 1
    assert box.calls("audit")[-1].endswith("--report-timeout 600")
    assert done.stdout == (f"bee-report: 1 of 1 files not delivered to http://c/f/; they stay in "
                           f"{tmp_path}/spool (see {tmp_path}/log/bee-report.log), run bee-report to "
                           "resend\n")
    log = (tmp_path / "log" / "bee-report.log").read_text()
    assert "bee.report_timeout=10m is not a number of seconds from 1 to 86400; using 600" in log
    assert run_report(box, script, env, "--bogus").returncode == 2


@pytest.mark.parametrize(("given", "used"), [("86400", "86400"), ("86401", "600"), ("9" * 20, "600"),
                                             ("0", "600"), ("1", "1")])
def test_bee_report_timeout_has_the_audits_bound(box, cfg, tmp_path, given, used):
    """bee.report_timeout= is checked against the bound --report-timeout has (audit.MAX_TIMEOUT): a value
    bee-report takes, the audit takes too."""
    from audit import audit as bee_audit

    assert f"\nMAX_TIMEOUT={bee_audit.MAX_TIMEOUT:.0f} " in (REPO_ROOT / BEE_REPORT).read_text()
    script = render_bee_report(cfg, tmp_path / "bee-report")
    box.stand_in("audit", 'rm -f "$2"/bee-audit-*\n')
    spool_a_document(tmp_path)
    env = report_env(tmp_path, f"{CMDLINE} bee.report=http://c/f/ bee.report_timeout={given}")
    assert run_report(box, script, env).returncode == 0
    assert box.calls("audit")[-1].endswith(f"--report-timeout {used}")
    log = (tmp_path / "log" / "bee-report.log").read_text()
    assert (f"bee.report_timeout={given} is not a number of seconds from 1 to 86400; using 600" in log) == \
        (used != given)
    assert bee_audit.positive_seconds(used) == float(used)  # the audit takes what bee-report passes


def test_bee_report_never_shows_a_user_password_or_query(box, cfg, tmp_path):
    script = render_bee_report(cfg, tmp_path / "bee-report")
    real_audit(box)
    spool_a_document(tmp_path)
    url = "https://fleet:hunter2@c.example:8443/in/?X-Amz-Signature=0badc0ffee"
    env = report_env(tmp_path, f"{CMDLINE} bee.report={url}")
    done = run_report(box, script, env, "--boot")
    assert done.returncode == 1
    assert done.stdout.startswith("bee-report: 1 of 1 files not delivered to https://c.example:8443/in/;")
    log = (tmp_path / "log" / "bee-report.log").read_text()
    assert ("audit: --report https://c.example:8443/in/: a user name or password in the URL is not "
            "supported; put a bearer token into a file and give --report-token-file FILE") in log
    assert "sending 1 files from" in log and " to https://c.example:8443/in/ (up to 600 s)" in log
    for secret in ("hunter2", "fleet:", "0badc0ffee"):
        assert secret not in log + done.stdout + done.stderr


def real_audit(box: Sandbox) -> Path:
    """The repository's audit as the live system runs it (a python3 script on PATH)."""
    return box.stand_in("audit", f'exec {sys.executable} {REPO_ROOT / "audit" / "audit.py"} "$@"\n')


def test_end_to_end_the_spool_reaches_a_real_nginx(box, cfg, tmp_path):
    nginx = Nginx(tmp_path / "nginx").start()
    try:
        script = render_bee_report(cfg, tmp_path / "bee-report")
        real_audit(box)
        first, second = spool_a_document(tmp_path), spool_a_document(tmp_path, "bee-audit-S2-x.json")
        url = f"http://127.0.0.1:{nginx.port}/fleet/"
        env = report_env(tmp_path, f"{CMDLINE} bee.report={url}")
        done = run_report(box, script, env, "--boot")
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"bee-report: delivered 2 files to {url}\n"
        assert sorted(path.name for path in (nginx.root / "fleet").iterdir()) == [first.name, second.name]
        assert list((tmp_path / "spool").iterdir()) == []
        log = (tmp_path / "log" / "bee-report.log").read_text()
        assert f"audit: --report: delivered {first.name} to {url}{first.name} (HTTP 201)" in log
    finally:
        nginx.stop()


def test_end_to_end_a_collector_that_stays_down_leaves_the_spool(box, cfg, tmp_path):
    script = render_bee_report(cfg, tmp_path / "bee-report")
    real_audit(box)
    document = spool_a_document(tmp_path)
    url = f"http://127.0.0.1:{free_port()}/fleet/"
    env = report_env(tmp_path, f"{CMDLINE} bee.report={url} bee.report_timeout=2")
    started = time.monotonic()
    done = run_report(box, script, env, "--boot")
    assert time.monotonic() - started < 15
    assert done.returncode == 1
    assert done.stdout.startswith(f"bee-report: 1 of 1 files not delivered to {url}")
    assert [path.name for path in (tmp_path / "spool").iterdir()] == [document.name]
    log = (tmp_path / "log" / "bee-report.log").read_text()
    assert "connection refused; trying again in 1 s" in log
    assert f"could not deliver {document.name} to {url}: connection refused" in log
