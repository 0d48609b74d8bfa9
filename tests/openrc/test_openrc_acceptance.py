"""bee-audit-debug and acceptance: it passes the build's profile (--expect-live, --strict), prints PASS or
FAIL big on the console with the failed checks, and still ends with eend 0. With the real audit (on a saved
lab document) and with a stand-in audit."""

from __future__ import annotations

import json
import sys

import pytest

from audit import audit
from tests.audit.fakes import lab_tools
from tests.paths import REPO_ROOT

PASS_ROW = "  #####      ##      #####    #####"
FAIL_ROW = "  ######     ##     #####   #"


@pytest.fixture(scope="module")
def saved_document(tmp_path_factory):
    """The lab server's document, audited once with its real tool outputs."""
    root = tmp_path_factory.mktemp("lab")
    lab_tools(root / "bin", root / "files")
    (root / "dev").mkdir()
    (root / "dev/ipmi0").touch()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(root / "bin"))
        document = audit.build_document(audit.Runner(sysfs=root / "sys", procfs=root / "proc",
                                                     devfs=root / "dev"))
    path = root / "document.json"
    path.write_text(audit.render(document))
    return path


def real_audit(box, tmp_path, saved_document):
    """The real audit as the service runs it, on the saved document, with an empty kernel command line."""
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cmdline").write_text("console=ttyS0\n")
    return box.stand_in("audit", f'exec {sys.executable} {REPO_ROOT}/audit/audit.py --no-qr '
                                 f'--document {saved_document} --procfs {tmp_path}/proc "$@"\n')


def env(tmp_path, audit_path, profile):
    return {"BEE_AUDIT": str(audit_path), "BEE_AUDIT_OUTPUT": str(tmp_path / "log/bee-audit.json"),
            "BEE_AUDIT_LOG": str(tmp_path / "log/bee-audit.log"), "BEE_EXPECT_PROFILE": str(profile)}


def test_the_service_passes_the_built_in_profile(services, cfg):
    text = services["bee-audit-debug"].read_text()
    assert f': "${{BEE_EXPECT_PROFILE:={cfg.bee.live.expect_profile_file}}}"' in text
    assert '--expect-live "$BEE_EXPECT_PROFILE" --strict' in text


def test_a_made_profile_shows_pass(box, services, tmp_path, saved_document):
    profile = tmp_path / "profile.json"
    assert audit.main(["--no-qr", "--document", str(saved_document), "--make-profile", str(profile),
                       "--output", str(tmp_path / "ignored.json")]) == 0
    result = box.run_function(services["bee-audit-debug"], "start",
                              env(tmp_path, real_audit(box, tmp_path, saved_document), profile))
    assert result.returncode == 0
    assert PASS_ROW in result.stdout.splitlines() and FAIL_ROW not in result.stdout
    assert "  PASS: 0 of " in result.stdout
    assert box.openrc()[-2:] == [f"einfo audit written to {tmp_path}/log/bee-audit.json", "eend 0"]
    assert json.loads((tmp_path / "log/bee-audit.json").read_text())["acceptance"]["passed"] is True


def test_sixteen_dimms_expected_shows_fail_and_the_empty_slots(box, services, tmp_path, saved_document):
    profile = tmp_path / "profile.json"
    profile.write_text('{"name": "16 DIMMs", "memory": {"count": 16}}')
    result = box.run_function(services["bee-audit-debug"], "start",
                              env(tmp_path, real_audit(box, tmp_path, saved_document), profile))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert FAIL_ROW in lines and PASS_ROW not in lines
    assert "  FAIL: 1 of 1 checks failed (profile 16 DIMMs)" in lines
    assert ("  critical: memory: 8 of 16 DIMMs found; empty slots: CPU0_DIMM_B1, CPU0_DIMM_D1, CPU0_DIMM_F1, "
            "CPU0_DIMM_H1, CPU1_DIMM_B1, CPU1_DIMM_D1, CPU1_DIMM_F1, CPU1_DIMM_H1") in lines
    assert box.openrc()[-1] == "eend 0"  # a failed acceptance never fails the boot
    assert not any(line.startswith("ewarn") for line in box.openrc())


def test_no_profile_anywhere_shows_no_verdict(box, services, tmp_path, saved_document):
    audit_path = real_audit(box, tmp_path, saved_document)
    service = services["bee-audit-debug"]
    result = box.run_function(service, "start", env(tmp_path, audit_path, tmp_path / "none"))
    assert result.returncode == 0
    assert PASS_ROW not in result.stdout and FAIL_ROW not in result.stdout
    assert "audit: acceptance: no profile" in (tmp_path / "log/bee-audit.log").read_text()
    assert box.openrc()[-1] == "eend 0"


def test_a_crashing_audit_shows_no_verdict_and_still_ends_0(box, services, tmp_path):
    crashing = box.stand_in("audit", 'echo "Traceback: boom" >&2\nexit 1\n')
    result = box.run_function(services["bee-audit-debug"], "start", env(tmp_path, crashing, tmp_path / "p"))
    assert result.returncode == 0
    assert FAIL_ROW not in result.stdout and PASS_ROW not in result.stdout
    assert any("status 1" in line for line in box.openrc() if line.startswith("ewarn"))
    assert box.openrc()[-1] == "eend 0"


def test_fail_with_many_checks_and_the_largest_qr_fits_an_80x25_screen(box, services, tmp_path):
    """A real qrencode's largest summary (QR_MAX_BYTES): caption, QR rows, and beside them the banner, the
    first 3 acceptance lines (wrapped) and how many more: at most 25 rows of at most 79 columns."""
    import re

    drawing = audit.qr_code("s" * audit.QR_MAX_BYTES)  # byte mode: the largest code
    assert drawing is not None, "qrencode is required (apt install qrencode)"
    qr_rows = drawing.rstrip("\n").split("\n")
    assert len(qr_rows) == audit.QR_MAX_LINES - 1  # the constant is the largest code's rows plus the caption
    summary = tmp_path / "qr.txt"
    summary.write_text("bee audit summary, system serial S1:\n" + drawing)
    checks = [f"critical: storage: disk {n} of the profile's 8 x 3.84 TB NVMe is missing from slot {n}"
              for n in range(5)]
    log_lines = "".join(f"audit: acceptance: {line}\n" for line in
                        ["FAIL: 5 of 5 checks failed (profile rack 12)", *checks])
    fake = box.stand_in("audit", f'cat "{summary}"\nprintf "%s" "{log_lines}" >&2\nexit 3\n')
    result = box.run_function(services["bee-audit-debug"], "start", env(tmp_path, fake, tmp_path / "p"))
    assert result.returncode == 0
    lines = result.stdout.rstrip("\n").split("\n")
    assert len(lines) <= 25, len(lines)
    visible = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
    assert max(len(line) for line in visible) <= 79
    assert lines[0] == "bee audit summary, system serial S1:"
    for row, line in zip(qr_rows, lines[1:], strict=False):
        assert line.startswith(row)  # the QR code itself is untouched
    column = " ".join(line[len(re.sub(r"\x1b\[[0-9;]*m", "", qr_rows[0])):].strip() for line in visible[1:])
    assert FAIL_ROW.strip() in column and "#####   ######" in column
    assert "FAIL: 5 of 5 checks failed (profile rack 12)" in column
    assert checks[0] in column and checks[1] in column and checks[2] not in column
    assert f"3more in{tmp_path}/log/bee-audit.log".replace(" ", "") in column.replace(" ", "")  # cut at 33
    assert box.openrc()[-1] == "eend 0"
