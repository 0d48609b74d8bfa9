"""--report: the audit PUTs its document to a real nginx (Debian's, on 127.0.0.1, with a configuration made
by the test from the README's): the bytes that arrive, a collector answering 503 twice then 201, one that is
down, one that is slow, TLS with a CA made here by openssl and with a wrong CA, a bearer token, a proxy,
--report-capture, the spool and --send-spool."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from audit import audit as bee_audit
from tests.audit.fakes import lab_tools, without_times
from tests.collector import TOKEN, Nginx, free_port
from tests.paths import REAL_FIXTURES, REPO_ROOT

AUDIT = REPO_ROOT / "audit" / "audit.py"


@pytest.fixture
def nginx(tmp_path):
    server = Nginx(tmp_path / "nginx")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """Stand-in tools printing the QEMU lab server's real outputs."""
    root = tmp_path_factory.mktemp("machine")
    lab_tools(root / "bin", root / "files")
    for name in ("sys", "proc", "dev"):
        (root / name).mkdir()
    return root


def audit(machine: Path, tmp_path: Path, *args: str, env: dict | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real audit on the stand-in machine with --output tmp_path/doc.json and `args`."""
    argv = [sys.executable, str(AUDIT), "--no-qr", "--output", str(tmp_path / "doc.json"),
            "--sysfs", str(machine / "sys"), "--procfs", str(machine / "proc"),
            "--devfs", str(machine / "dev"), *args]
    environment = {"PATH": str(machine / "bin"), "LC_ALL": "C.UTF-8", **(env or {})}
    return subprocess.run(argv, capture_output=True, text=True, env=environment, timeout=timeout)


def arrived(nginx: Nginx, folder: str = "fleet") -> list[Path]:
    return sorted((nginx.root / folder).glob("*")) if (nginx.root / folder).is_dir() else []


def report_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("audit: --report")]


def test_the_document_arrives_byte_for_byte_under_its_usb_name(nginx, machine, tmp_path):
    nginx.start()
    url = f"http://127.0.0.1:{nginx.port}/fleet/"
    done = audit(machine, tmp_path, "--report", url)
    assert done.returncode == 0, done.stderr
    files = arrived(nginx)
    assert [path.name for path in files] == [files[0].name]
    # the lab's SMBIOS serial, the UTC time to the millisecond, a random suffix
    assert re.fullmatch(r"bee-audit-SYS-SN-ABC123-\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{4}\.json", files[0].name)
    assert files[0].read_bytes() == (tmp_path / "doc.json").read_bytes()
    assert report_lines(done.stderr) == [f"audit: --report: delivered {files[0].name} to {url}{files[0].name}"
                                         " (HTTP 201)"]
    assert nginx.statuses() == [201]


def test_503_twice_then_201(nginx, machine, tmp_path):
    nginx.start()
    nginx.maintenance.touch()

    def end_maintenance():  # the collector comes back after turning two PUTs away
        deadline = time.monotonic() + 60
        while nginx.statuses().count(503) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        nginx.maintenance.unlink()

    watcher = threading.Thread(target=end_maintenance)
    watcher.start()
    done = audit(machine, tmp_path, "--report", f"http://127.0.0.1:{nginx.port}/fleet/")
    watcher.join()
    assert done.returncode == 0, done.stderr
    assert nginx.statuses() == [503, 503, 201]
    lines = report_lines(done.stderr)
    assert len(lines) == 3
    for line, wait in zip(lines[:2], (1, 2), strict=True):
        assert re.fullmatch(rf"audit: --report: bee-audit-\S+\.json: HTTP 503: 503 Service Temporarily "
                            rf"Unavailable; trying again in {wait} s", line), line
    assert arrived(nginx)[0].read_bytes() == (tmp_path / "doc.json").read_bytes()


def test_a_collector_that_is_down_is_given_up_within_the_timeout(machine, tmp_path):
    port = free_port()  # nothing listens there
    started = time.monotonic()
    done = audit(machine, tmp_path, "--report", f"http://127.0.0.1:{port}/fleet/", "--report-timeout", "3")
    took = time.monotonic() - started
    assert done.returncode == 1
    assert took < 3 + 5  # the audit itself, then at most the report timeout
    lines = report_lines(done.stderr)
    assert [line.rsplit("; trying again", 1)[1] for line in lines[:-1]] == [" in 1 s", " in 2 s"]
    assert re.fullmatch(rf"audit: --report: could not deliver bee-audit-\S+\.json to http://127\.0\.0\.1:{port}"
                        r"/fleet/: connection refused \(gave up after 3 tries in 3 s\)", lines[-1]), lines[-1]
    document = json.loads((tmp_path / "doc.json").read_text())  # the document is still written
    assert document["board"]["system"]["serial"] == "SYS-SN-ABC123"


def test_a_slow_collector_is_cut_off_by_the_per_request_timeout(nginx, machine, tmp_path):
    nginx.start()
    started = time.monotonic()
    done = audit(machine, tmp_path, "--report", f"http://127.0.0.1:{nginx.port}/slow/",
                 "--report-timeout", "2")
    took = time.monotonic() - started
    assert done.returncode == 1
    assert took < 2 + 5
    assert report_lines(done.stderr)[-1].endswith("/slow/: no answer in time (gave up after 1 try in 2 s)")


def test_a_4xx_is_final_at_once(nginx, machine, tmp_path):
    nginx.start()
    started = time.monotonic()
    done = audit(machine, tmp_path, "--report", f"http://127.0.0.1:{nginx.port}/readonly/")
    assert done.returncode == 1 and time.monotonic() - started < 30
    assert report_lines(done.stderr) == [
        f"audit: --report: could not deliver {name} to http://127.0.0.1:{nginx.port}/readonly/: HTTP 405: "
        "405 Not Allowed" for name in [report_lines(done.stderr)[0].split()[5]]
    ]
    assert nginx.statuses() == [405]


def test_a_file_url_that_gets_405_hints_at_the_folder_slash(nginx, machine, tmp_path):
    nginx.start()
    done = audit(machine, tmp_path, "--report", f"http://127.0.0.1:{nginx.port}/readonly")
    assert done.returncode == 1
    [line] = report_lines(done.stderr)
    assert line.endswith(": HTTP 405: 405 Not Allowed; a folder URL ends in / (the file name is added to it)")


def test_two_runs_of_one_machine_in_one_second_are_two_files(nginx, machine, tmp_path):
    """Machines without a serial, or one machine audited twice at once, never overwrite each other's
    document at the collector: the name has milliseconds and a random suffix."""
    nginx.start()
    url = f"http://127.0.0.1:{nginx.port}/fleet/"
    first = audit(machine, tmp_path, "--report", url)
    document = tmp_path / "doc.json"
    argv = [sys.executable, str(AUDIT), "--no-qr", "--document", str(document), "--report", url]
    runs = [subprocess.run(argv, capture_output=True, text=True, timeout=60) for _ in range(3)]
    assert first.returncode == 0 and all(run.returncode == 0 for run in runs), [r.stderr for r in runs]
    assert len(arrived(nginx)) == 4 and nginx.statuses() == [201] * 4


def test_if_none_match_lets_a_collector_refuse_to_overwrite(nginx, tmp_path):
    nginx.start()
    setup = bee_audit.ReportSetup(f"http://127.0.0.1:{nginx.port}/once/", 10, None, None)
    upload = bee_audit.Upload("bee-audit-X-20261125T224305.000Z-0000.json", b"{}\n", "application/json")
    assert bee_audit.deliver(setup, upload) is None
    reason = bee_audit.deliver(setup, bee_audit.Upload(upload.name, b"[]\n", "application/json"))
    assert reason == (f"HTTP 412: exists; the collector already holds a file named {upload.name}, it was not "
                      "overwritten")
    assert (nginx.root / "once" / upload.name).read_bytes() == b"{}\n"
    # the README's plain WebDAV folder ignores If-None-Match and overwrites (what the README says)
    setup = bee_audit.ReportSetup(f"http://127.0.0.1:{nginx.port}/fleet/", 10, None, None)
    assert bee_audit.deliver(setup, upload) is None and bee_audit.deliver(setup, upload) is None
    deadline = time.monotonic() + 10  # nginx logs a request a moment after it answered
    while len(nginx.statuses()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert nginx.statuses() == [201, 412, 201, 204]


def make_ca(work: Path, name: str) -> tuple[Path, Path]:
    """A CA certificate and key made by openssl."""
    cert, key = work / f"{name}.pem", work / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"], check=True, capture_output=True)
    return cert, key


def server_cert(work: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by `ca`."""
    key, csr, cert, ext = (work / name for name in ("server.key", "server.csr", "server.pem", "ext.cnf"))
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
                    "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)],
                   check=True, capture_output=True)
    return cert, key


def test_https_with_the_collectors_ca_and_with_a_wrong_one(nginx, machine, tmp_path):
    pki = tmp_path / "pki"
    pki.mkdir()
    ca, wrong = make_ca(pki, "bee-test-ca"), make_ca(pki, "another-ca")
    nginx.start(tls=server_cert(pki, ca))
    url = f"https://127.0.0.1:{nginx.tls_port}/fleet/"
    done = audit(machine, tmp_path, "--report", url, "--report-ca", str(ca[0]))
    assert done.returncode == 0, done.stderr
    assert arrived(nginx)[0].read_bytes() == (tmp_path / "doc.json").read_bytes()

    started = time.monotonic()
    done = audit(machine, tmp_path, "--report", url, "--report-ca", str(wrong[0]))
    assert done.returncode == 1
    assert time.monotonic() - started < 30  # a wrong certificate is not retried
    assert report_lines(done.stderr) == [
        f"audit: --report: could not deliver {name} to {url}: TLS: certificate verify failed: unable to get "
        "local issuer certificate; give the collector's CA with --report-ca FILE"
        for name in [report_lines(done.stderr)[0].split()[5]]
    ]
    # without --report-ca the system's CA store does not know the test CA either
    done = audit(machine, tmp_path, "--report", url, "--report-timeout", "5")
    assert done.returncode == 1 and "certificate verify failed" in done.stderr


def test_a_bearer_token_from_a_file_and_never_in_the_output(nginx, machine, tmp_path):
    nginx.start()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    url = f"http://127.0.0.1:{nginx.port}/token/"
    done = audit(machine, tmp_path, "--report", url, "--report-token-file", str(token_file))
    assert done.returncode == 0, done.stderr
    assert len(arrived(nginx, "token")) == 1
    assert TOKEN not in done.stderr and TOKEN not in (tmp_path / "doc.json").read_text()
    token_file.write_text("not-the-token\n")
    done = audit(machine, tmp_path, "--report", url, "--report-token-file", str(token_file))
    assert done.returncode == 1
    assert report_lines(done.stderr)[-1].endswith(f"{url}: HTTP 401: wrong or no token")
    assert nginx.statuses("/token/") == [201, 401]


def test_a_presigned_url_is_used_as_it_is_and_its_signature_never_shown(nginx, machine, tmp_path):
    nginx.start()
    url = (f"http://127.0.0.1:{nginx.port}/fleet/rack-12.json?X-Amz-Algorithm=AWS4-HMAC-SHA256"
           "&X-Amz-Signature=0badc0ffee")
    done = audit(machine, tmp_path, "--report", url)
    assert done.returncode == 0, done.stderr
    assert [path.name for path in arrived(nginx)] == ["rack-12.json"]
    assert "0badc0ffee" not in done.stderr
    shown = f"http://127.0.0.1:{nginx.port}/fleet/rack-12.json"
    assert report_lines(done.stderr)[0].endswith(f"to {shown} (HTTP 201)")


def test_the_proxy_variables_are_honoured(nginx, machine, tmp_path):
    nginx.start()
    # collector.invalid resolves nowhere: the PUT can only arrive through the proxy
    url = f"http://collector.invalid:{nginx.port}/fleet/"
    done = audit(machine, tmp_path, "--report", url, env={"http_proxy": f"http://127.0.0.1:{nginx.proxy_port}"})
    assert done.returncode == 0, done.stderr
    assert arrived(nginx)[0].read_bytes() == (tmp_path / "doc.json").read_bytes()
    assert nginx.statuses() == [201, 201]  # the proxy's line and the collector's


def test_report_capture_sends_a_tar_gz_that_replays_to_the_same_document(nginx, machine, tmp_path):
    nginx.start()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = audit(machine, tmp_path, "--report", f"http://127.0.0.1:{nginx.port}/fleet/", "--report-capture",
                 env={"TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr
    assert list(scratch.iterdir()) == []  # the capture made for the report is removed once sent
    document_file, capture_file = arrived(nginx)
    assert capture_file.name == document_file.name.replace(".json", ".tar.gz")
    with tarfile.open(capture_file) as archive:
        archive.extractall(tmp_path / "unpacked", filter="tar")
    capture = tmp_path / "unpacked" / document_file.name.removesuffix(".json")
    assert (capture / "host.json").is_file() and (capture / "commands").is_dir()
    (tmp_path / "replay").mkdir()
    replayed = audit(machine, tmp_path / "replay", "--replay", str(capture))
    assert replayed.returncode == 0, replayed.stderr
    original = json.loads(document_file.read_text())
    again = json.loads((tmp_path / "replay" / "doc.json").read_text())
    assert without_times(again) == without_times(original)


def test_the_capture_never_carries_the_collectors_secrets_from_the_kernel_command_line(nginx, machine,
                                                                                      tmp_path):
    """dmesg's "Kernel command line:" line holds bee.report=URL: the capture keeps it without the
    user:password and the query; the kernel log around it is captured as it was."""
    nginx.start()
    real = (REAL_FIXTURES / "kernel" / "gh-bbf-29-dmesg-mpt2sas-io-error.log").read_text()
    cmdline = ("[    0.000000] Kernel command line: BOOT_IMAGE=/boot/vmlinuz-lts quiet "
               'bee.report="https://fleet:hunter2@s3.example.com/b/k.json?X-Amz-Signature=0badc0ffee" '
               "bee.profile=https://s3.example.com/p.json?X-Amz-Credential=AKIA42 console=tty0\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "dmesg.txt").write_text(cmdline + real)
    (tools / "dmesg").write_text(f"#!/bin/sh\nexec /bin/cat {tools / 'dmesg.txt'}\n")
    (tools / "dmesg").chmod(0o755)
    capture = tmp_path / "capture"
    done = audit(machine, tmp_path, "--report", f"http://127.0.0.1:{nginx.port}/fleet/", "--capture",
                 str(capture), "--report-capture", env={"PATH": f"{tools}:{machine / 'bin'}"})
    assert done.returncode == 0, done.stderr
    _, archive_file = arrived(nginx)
    with tarfile.open(archive_file) as archive:
        captured = b"".join(archive.extractfile(member).read() for member in archive.getmembers()
                            if member.isfile() and member.name.split("/")[-1].startswith("dmesg"))
    [local] = [path for path in (capture / "commands").iterdir() if path.name.startswith("dmesg")
               and path.read_bytes().startswith(b"[    0.000000] Kernel")]
    for text in (captured.decode(), local.read_text()):
        assert ('bee.report="https://s3.example.com/b/k.json" bee.profile=https://s3.example.com/p.json '
                "console=tty0") in text
        for secret in ("hunter2", "fleet:", "0badc0ffee", "AKIA42", "X-Amz"):
            assert secret not in text
        assert real.splitlines()[-1] in text  # the rest of the log as the kernel wrote it


def test_what_cannot_be_sent_stays_in_the_spool_and_send_spool_delivers_it(nginx, machine, tmp_path):
    spool = tmp_path / "spool"
    down = f"http://127.0.0.1:{free_port()}/fleet/"
    done = audit(machine, tmp_path, "--report", down, "--report-timeout", "1", "--spool", str(spool))
    assert done.returncode == 1
    kept = sorted(path.name for path in spool.iterdir())
    assert len(kept) == 1 and report_lines(done.stderr)[-1].endswith(f"; it stays in {spool}")
    assert (spool / kept[0]).read_bytes() == (tmp_path / "doc.json").read_bytes()

    nginx.start()
    url = f"http://127.0.0.1:{nginx.port}/fleet/"
    resend = subprocess.run([sys.executable, str(AUDIT), "--send-spool", str(spool), "--report", url],
                            capture_output=True, text=True, timeout=60)
    assert resend.returncode == 0, resend.stderr
    assert [path.name for path in arrived(nginx)] == kept
    assert list(spool.iterdir()) == []
    again = subprocess.run([sys.executable, str(AUDIT), "--send-spool", str(spool), "--report", url],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stderr == f"audit: --send-spool: nothing to send in {spool}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--report", "ftp://host/x/"], "audit: --report ftp://host/x/: not an http:// or https:// URL"),
        (["--report", "http://h/x.json", "--report-capture"],
         "audit: --report-capture needs a folder URL (ending in /) to put the capture beside the document; "
         "a presigned URL names one object"),
        (["--report", "http://h/", "--report-ca", "/nonexistent/ca.pem"],
         "audit: --report-ca /nonexistent/ca.pem: not a PEM certificate file: No such file or directory"),
        (["--report", "http://h/", "--report-token-file", "/nonexistent/token"],
         "audit: --report-token-file /nonexistent/token: cannot be read: No such file or directory"),
        (["--report", "http://h:80a/x/"], "audit: --report http://h:80a/...: the port is not a number"),
        (["--send-spool", "/tmp"], "audit: --send-spool needs --report URL"),
        (["--report", "https://fleet:hunter2@c.example/in/"],
         "audit: --report https://c.example/in/: a user name or password in the URL is not supported; put a "
         "bearer token into a file and give --report-token-file FILE"),
        (["--report-capture"], "audit: --report-capture needs --report URL or --spool DIR"),
        (["--report", "http://h/", "--report-capture", "--document", "/nonexistent.json"],
         "audit: --report-capture sends the raw capture of this run: a --document has none"),
    ],
)
def test_bad_report_arguments_are_one_line_and_exit_2(args, message, tmp_path):
    done = subprocess.run([sys.executable, str(AUDIT), "--no-qr", "--sysfs", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": str(tmp_path)})
    assert done.returncode == 2
    assert done.stderr == message + "\n"
    assert done.stdout == ""  # refused before any audit ran


def test_a_token_file_that_holds_no_token_is_refused(tmp_path):
    token = tmp_path / "token"
    token.write_text("Bearer abc def\n")  # a header pasted instead of the token
    done = subprocess.run([sys.executable, str(AUDIT), "--report", "http://h/", "--report-token-file",
                           str(token)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"audit: --report-token-file {token}: not a bearer token (one line of letters, "
                           "digits and -._~+/=)\n")


@pytest.mark.parametrize(
    ("url", "shown", "target"),
    [
        ("http://user:pw@c.example:8080/fleet/", "http://c.example:8080/fleet/",
         "http://user:pw@c.example:8080/fleet/bee-audit-S%201-T.json"),
        ("https://[2001:db8::5]/in/?x=1", "https://[2001:db8::5]/in/", "https://[2001:db8::5]/in/bee-audit-S%201-T.json?x=1"),
        ("https://s3.example/b/k.json?X-Amz-Signature=ff", "https://s3.example/b/k.json",
         "https://s3.example/b/k.json?X-Amz-Signature=ff"),
    ],
)
def test_urls_shown_without_secrets_and_where_files_go(url, shown, target):
    assert bee_audit.shown_url(url) == shown
    assert bee_audit.upload_url(url, "bee-audit-S 1-T.json") == target
