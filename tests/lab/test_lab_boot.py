"""Scenario 2: the live system's boot sequence, with Debian's OpenRC as init and our services from openrc/.

Two boots, each once per module: with no network card at all, the repository's audit and a bee-sshsetup
made to fail (its adduser fails): the boot must go on, with SSH left stopped; and with an e1000e card that
no DHCP server answers and an audit made to fail: SSH must come up all the same, udhcpc keeps trying in
the background, and the boot goes on. Everything is asserted from what the guest reported after
`openrc default` returned.
"""

from __future__ import annotations

import json

import pytest

from scripts import buildconfig, live_system
from tests.lab import checks, scenarios

BOOT_ORDER_HEAD = ["localmount"]   # the README: localmount first, then the default runlevel in order
SSH_PORT = 22


def report_of(boot) -> dict:
    path = boot.results / "report.json"
    assert path.is_file(), f"the guest wrote no report; console log: {boot.console}\n{boot.console_tail()}"
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def no_nic():
    """The boot with no network card, the repository's audit and a failing bee-sshsetup: (boot, report)."""
    boot = scenarios.boot_sequence(scenarios.run_dir("boot-no-nic"), nic=None, failing_audit=False,
                                   failing_sshsetup=True)
    print(f"lab: scenario 2 (no NIC) booted under {boot.accel} in {boot.seconds:.0f} s")
    return boot, report_of(boot)


@pytest.fixture(scope="module")
def with_nic():
    """The boot with an e1000e card, no DHCP server and a failing audit; bee-sshsetup works."""
    boot = scenarios.boot_sequence(scenarios.run_dir("boot-nic"), nic="e1000e", failing_audit=True)
    print(f"lab: scenario 2 (e1000e) booted under {boot.accel} in {boot.seconds:.0f} s")
    return boot, report_of(boot)


def default_services() -> list[str]:
    return live_system.runlevels(buildconfig.load_config())["default"]


def started_names(report: dict) -> list[str]:
    return [entry["name"] for entry in report["started"]]


def boot_order() -> list[str]:
    return BOOT_ORDER_HEAD + default_services()


def test_configured_default_runlevel_is_the_documented_boot_order():
    # The README's boot order: localmount, bee-sshsetup, dropbear, bee-network, bee-nvidia,
    # bee-audit-debug. invoke.yaml's list is what the ISO installs; the lab boots exactly that list.
    assert default_services() == ["bee-sshsetup", "dropbear", "bee-network", "bee-nvidia", "bee-audit-debug"]


@pytest.mark.parametrize("which", ["no_nic", "with_nic"])
def test_every_service_started_in_the_documented_boot_order(request, which):
    _, report = request.getfixturevalue(which)
    started = started_names(report)
    # In the boot without a NIC bee-sshsetup is made to fail, and dropbear, which needs it, must not start.
    failed = {"bee-sshsetup", "dropbear"} if which == "no_nic" else set()
    missing = [s for s in boot_order() if s not in started and s != "localmount" and s not in failed]
    assert missing == [], f"not started: {missing}\n{report['rc_status']}"
    # localmount is provided by the lab's stand-in, which OpenRC records under its own name.
    ours = [("localmount" if name == "lab-localmount" else name) for name in started]
    assert [name for name in ours if name in boot_order()] == [s for s in boot_order() if s not in failed]


def test_dropbear_listens_on_port_22_with_a_nic_that_no_dhcp_server_answers(with_nic):
    """dropbear does not need net: SSH is up while udhcpc is still asking (a technician on the same
    segment can reach it by a link-local or static address, or once a lease comes)."""
    _, report = with_nic
    assert len([i for i in report["interfaces"] if i["physical"]]) == 1, report["interfaces"]
    assert any("udhcpc" in " ".join(argv[:2]) for argv in report["processes"]), "no lease: still asking"
    assert "dropbear" in started_names(report) and SSH_PORT in report["listening_tcp"]
    assert any(argv[0].endswith("dropbear") for argv in report["processes"])


def test_no_network_card_still_boots_through_bee_network(no_nic):
    _, report = no_nic
    assert "bee-network" in started_names(report)
    assert not any(argv[0].endswith("udhcpc") or argv[:2] == ["udhcpc", "-b"] for argv in report["processes"])


def test_the_audit_output_exists_and_is_valid_json(no_nic):
    boot, report = no_nic
    assert report["audit_output"]["exists"] and report["audit_output"]["valid"], report["audit_output"]
    document = json.loads((boot.results / "bee-audit.json").read_text())
    assert checks.schema_problems(document) == []


def test_bee_network_runs_udhcpc_in_the_background_for_the_physical_nic(with_nic):
    _, report = with_nic
    physical = [i["name"] for i in report["interfaces"] if i["physical"]]
    assert len(physical) == 1, report["interfaces"]
    udhcpc = [argv for argv in report["processes"] if "udhcpc" in " ".join(argv[:2])]
    assert any("-b" in argv and physical[0] in argv for argv in udhcpc), udhcpc
    # Boot went on: the services after bee-network started although no lease ever came.
    started = started_names(report)
    assert started.index("bee-network") < started.index("bee-audit-debug")


def test_a_failing_bee_sshsetup_leaves_dropbear_stopped_and_says_why(no_nic):
    """Root's password may still be blank and dropbear runs with -B: no SSH at all is the safe outcome."""
    boot, report = no_nic
    started = started_names(report)
    assert "bee-sshsetup" not in started and "dropbear" not in started, report["rc_status"]
    assert SSH_PORT not in report["listening_tcp"]
    assert not any(argv[0].endswith("dropbear") for argv in report["processes"])
    rc_log = (boot.results / "rc.log").read_text(errors="replace")
    user = buildconfig.load_config().bee.live.user
    assert f"adduser {user} failed" in rc_log, rc_log[-2000:]
    assert "cannot start dropbear as bee-sshsetup would not start" in rc_log, rc_log[-2000:]
    assert "bee-audit-debug" in started, "the boot went on after the failed setup"


def test_a_failing_audit_still_reports_its_service_started(with_nic):
    boot, report = with_nic
    assert "bee-audit-debug" in started_names(report)
    assert not report["audit_output"]["exists"]
    assert "made to fail" in (boot.results / "bee-audit.log").read_text()
