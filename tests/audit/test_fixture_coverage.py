"""Every shared fixture is named by some test: a real output nobody parses is a machine nobody checked.

A file counts as covered when its name appears in a tests/**/*.py file other than this one (the per-tool
expectation tables name them). PENDING lists the files whose parser is still being written; each issue's
engineer removes its entries as the parser lands, and this test fails for an entry that is already covered.
"""

from __future__ import annotations

import re

from tests.paths import LAB_FIXTURES, REAL_FIXTURES, REPO_ROOT

# Fixtures that arrived before their parser, relative to ../shared/fixtures.
PENDING = {
    # Issue 11 (ipmitool sdr, sel and sensor; the kernel log):
    "real/ipmitool/actsys-intel-s2600-sdr.txt",
    "real/ipmitool/collegeboreal-hp-proliant-dl360-g7-sdr-elist-full.txt",
    "real/ipmitool/collegeboreal-hp-proliant-dl360-g7-sel-list.txt",
    "real/ipmitool/gengwg-ansible-dell-r740xd-sdr-type-power-supply.txt",
    "real/ipmitool/gh-dell-idrac-fan-378-r510-idrac6-sdr-type-temperature.txt",
    "real/ipmitool/gh-ibm-openbmc-3638-everest-sel-list-partial.txt",
    "real/ipmitool/gh-ipmitool-176-sdr-pwr-unit-redund.txt",
    "real/ipmitool/gh-ipmitool-277-sel-info-open.txt",
    "real/ipmitool/gh-ipmitool-335-hpe-ml30-gen9-sel-list-first5.txt",
    "real/ipmitool/gh-ipmitool-340-quanta-purley-ipmisim-sel-elist.txt",
    "real/ipmitool/gh-ipmitool-346-sel-list-start-preinit.txt",
    "real/ipmitool/gh-op-build-607-openpower-sel-list-last20-partial.txt",
    "real/ipmitool/gh-openbmc-3258-witherspoon-sel-info.txt",
    "real/ipmitool/gh-smfc-5-supermicro-x9-sdr.txt",
    "real/ipmitool/kube-bmc-gooxi-sy8108g-g4-sel-elist.txt",
    "real/ipmitool/lovoo-ipmi-exporter-supermicro-gpu-board-sensor.txt",
    "real/ipmitool/redhat-cip-hardware-hp-proliant-sdr.txt",
    "real/kernel/gh-bbf-29-dmesg-mpt2sas-io-error.log",
    "real/kernel/gh-edac-utils-10-dmesg-T-edac-sbridge-ce.log",
    "real/kernel/gh-longhorn-1920-dmesg-T-critical-medium-error.log",
    "real/kernel/gh-longhorn-2030-rfc5424-syslog-critical-medium-error.log",
    "real/kernel/gh-mcelog-70-nuc-j5005-journal-mce-bank4.log",
    "real/kernel/gh-minisforum-ms02-10-journal-aer-uncorrectable-nonfatal-acsviol.log",
    "real/kernel/gh-nvsentinel-155-dmesg-nvrm-fallen-off-bus-multiline.log",
    "real/kernel/gh-open-gpu-kmod-1150-nvrm-xid45-after-xid149-145.log",
    "real/kernel/gh-openebs-1433-syslog-critical-medium-error.log",
    "real/kernel/gh-osm-operations-300-syslog-edac-ce-legacy-format.log",
    "real/kernel/gh-osm-operations-759-ras-mc-ctl-errors-partial.txt",
    "real/kernel/gh-radiasoft-devops-134-journal-edac-sbridge-ce-scrub.log",
    "real/kernel/gh-rasdaemon-155-dmesg-tail-mce-bank9.log",
    "real/kernel/gh-rpi-linux-6661-journal-nvme-controller-down.log",
    "real/kernel/gh-rpi-pcie-116-dmesg-aer-uncorrected-nonfatal-cm4.log",
}


def fixtures() -> list[str]:
    """Every fixture file, relative to ../shared/fixtures (PROVENANCE.md and the lab's README.md describe the
    fixtures; they are none)."""
    root = REAL_FIXTURES.parent
    found = [*REAL_FIXTURES.rglob("*"), *LAB_FIXTURES.rglob("*")]
    documentation = {REAL_FIXTURES / "PROVENANCE.md", LAB_FIXTURES / "README.md"}
    return sorted(
        str(path.relative_to(root)) for path in found if path.is_file() and path not in documentation
    )


def source_of_tests() -> str:
    """The source of every test module but this one."""
    this = REPO_ROOT / "tests" / "audit" / "test_fixture_coverage.py"
    return "\n".join(path.read_text() for path in sorted((REPO_ROOT / "tests").rglob("*.py")) if path != this)


def named(name: str, text: str) -> bool:
    """Whether the file name appears in the text as a whole name (not inside a longer one)."""
    return re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", text) is not None


def test_every_fixture_is_named_by_a_test():
    text = source_of_tests()
    covered = {path for path in fixtures() if named(path.rsplit("/", 1)[-1], text)}
    assert sorted(set(fixtures()) - covered - PENDING) == []  # a new fixture: name it in a test


def test_pending_fixtures_exist_and_are_not_covered_yet():
    text = source_of_tests()
    assert sorted(PENDING - set(fixtures())) == []  # a PENDING entry that is no fixture
    # a test names it now: remove it from PENDING
    assert sorted(path for path in PENDING if named(path.rsplit("/", 1)[-1], text)) == []
