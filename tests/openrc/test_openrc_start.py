"""Each service's start() run in busybox sh, with stand-in commands on PATH and temp sysfs/proc/dev trees."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

from scripts import live_system
from tests.openrc.openrc_harness import write_tree
from tests.paths import REPO_ROOT

KVER = "6.12.99-0-lts"


# --- bee-network -------------------------------------------------------------------------------------------

def fake_net(sysfs):
    write_tree(sysfs, {
        "class/net/lo/address": "00:00:00:00:00:00\n",
        "class/net/eth0/device/vendor": "0x8086\n",
        "class/net/enp3s0f1/device/vendor": "0x15b3\n",
        "class/net/br0/bridge/forward_delay": "1500\n",
        "class/net/bond0/bonding/mode": "active-backup 1\n",
        "class/net/tap0/tun_flags": "0x1002\n",
        "class/net/veth1/address": "aa:bb:cc:dd:ee:ff\n",
    })
    # A bridge and a tap with a device link must still be left alone.
    (sysfs / "class/net/br0/device").mkdir()
    (sysfs / "class/net/tap0/device").mkdir()


def wait_for_calls(box, name, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while len(box.calls(name)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # any extra (wrong) call has time to show up
    return box.calls(name)


def test_network_starts_udhcpc_once_per_physical_interface(box, services, tmp_path):
    sysfs = tmp_path / "sys"
    fake_net(sysfs)
    box.stand_in("udhcpc")
    box.stand_in("ip")
    result = box.run_function(services["bee-network"], "start",
                              {"BEE_SYSFS": str(sysfs), "BEE_RUNDIR": str(tmp_path / "run")})
    assert result.returncode == 0, result.stderr
    calls = wait_for_calls(box, "udhcpc", 2)
    interfaces = sorted(call.split(" -i ")[1].split()[0] for call in calls)
    assert interfaces == ["enp3s0f1", "eth0"]
    for call in calls:
        assert " -b " in f"{call} "
        assert " -s /usr/share/udhcpc/bee.script " in f"{call} "  # the overlay's event script, below
    assert "eend 0" in box.openrc()


def test_network_start_again_leaves_a_running_udhcpc_alone(box, services, tmp_path):
    sysfs = tmp_path / "sys"
    fake_net(sysfs)
    box.stand_in("udhcpc")
    box.stand_in("ip")
    run = tmp_path / "run"
    run.mkdir()
    (run / "udhcpc.eth0.pid").write_text(f"{os.getpid()}\n")  # a live process: udhcpc still running on eth0
    (run / "udhcpc.enp3s0f1.pid").write_text("999999999\n")  # a stale pid file: no such process
    env = {"BEE_SYSFS": str(sysfs), "BEE_RUNDIR": str(run)}
    result = box.run_function(services["bee-network"], "start", env)
    assert result.returncode == 0
    calls = wait_for_calls(box, "udhcpc", 1)
    assert [call.split(" -i ")[1].split()[0] for call in calls] == ["enp3s0f1"]


def test_network_with_no_interface_still_succeeds(box, services, tmp_path):
    sysfs = tmp_path / "sys"
    write_tree(sysfs, {"class/net/lo/address": "00:00:00:00:00:00\n"})
    box.stand_in("udhcpc")
    result = box.run_function(services["bee-network"], "start",
                              {"BEE_SYSFS": str(sysfs), "BEE_RUNDIR": str(tmp_path / "run")})
    assert result.returncode == 0
    assert wait_for_calls(box, "udhcpc", 0, timeout=0) == []
    assert any(line.startswith("ewarn no physical network interface") for line in box.openrc())


# --- udhcpc's event script: the leased address on the console and in /etc/issue ---------------------------

UDHCPC_SCRIPT = Path("iso/overlay-debug/usr/share/udhcpc/bee.script.j2")


def test_udhcpc_script_is_staged_where_bee_network_looks_for_it(services):
    staged = "/" + str(UDHCPC_SCRIPT.relative_to("iso/overlay-debug")).removesuffix(".j2")
    assert f'BEE_UDHCPC_SCRIPT:={staged}}}' in services["bee-network"].read_text()
    assert (REPO_ROOT / UDHCPC_SCRIPT).stat().st_mode & 0o111  # stage_static keeps the mode: executable


def run_udhcpc_script(box, script, tmp_path, event, **lease):
    if not (tmp_path / "cmdline").exists():
        (tmp_path / "cmdline").write_text("console=tty0\n")
    (tmp_path / "dev").mkdir(exist_ok=True)
    env = {"BEE_RUNDIR": str(tmp_path / "run"), "BEE_CONSOLE": str(tmp_path / "console"),
           "BEE_ISSUE": str(tmp_path / "issue"), "BEE_UDHCPC_DEFAULT": str(box.bin / "default.script"),
           "BEE_CMDLINE": str(tmp_path / "cmdline"), "BEE_DEV": str(tmp_path / "dev"), **lease}
    return subprocess.run([box.busybox, "sh", str(script), event], capture_output=True, text=True, timeout=30,
                          env={"PATH": str(box.bin), "CALLS_LOG": str(box.calls_log), **env})


def test_udhcpc_script_says_the_address_on_the_console_and_in_issue(box, cfg, tmp_path):
    script = tmp_path / "bee.script"
    script.write_text(live_system.render_source(cfg, UDHCPC_SCRIPT))
    box.stand_in("default.script")
    (tmp_path / "issue").write_text("Welcome to Alpine Linux 3.21\nKernel \\r on an \\m (\\l)\n\n")
    lease = {"interface": "eth0", "ip": "10.20.30.40", "mask": "24"}

    result = run_udhcpc_script(box, script, tmp_path, "bound", **lease)
    assert result.returncode == 0, result.stderr
    assert box.calls("default.script") == ["default.script bound"]  # the stock script configured it first
    user = cfg.bee.live.user
    assert (tmp_path / "console").read_text() == (
        f"bee: eth0 got 10.20.30.40/24 from DHCP: ssh {user}@10.20.30.40\n")
    issue = (tmp_path / "issue").read_text()
    assert issue.startswith("Welcome to Alpine Linux 3.21\n")
    assert issue.endswith(f"bee: eth0 10.20.30.40/24: ssh {user}@10.20.30.40\n")

    # A renewal of the same lease says nothing new; a second NIC adds its line.
    run_udhcpc_script(box, script, tmp_path, "renew", **lease)
    run_udhcpc_script(box, script, tmp_path, "bound", interface="eth1", ip="192.168.7.9", mask="16")
    assert (tmp_path / "console").read_text().count("\n") == 1  # the console file was rewritten, not appended
    issue = (tmp_path / "issue").read_text()
    assert issue.count("bee: ") == 2 and f"bee: eth1 192.168.7.9/16: ssh {user}@192.168.7.9" in issue
    assert issue.count("Welcome to Alpine") == 1  # the boot text once, whatever the number of events

    # A lost lease takes its line away.
    run_udhcpc_script(box, script, tmp_path, "deconfig", interface="eth0")
    issue = (tmp_path / "issue").read_text()
    assert "10.20.30.40" not in issue and "192.168.7.9" in issue


def test_udhcpc_script_says_the_address_on_the_serial_console_too(box, cfg, tmp_path):
    """As bee-audit-debug's QR summary: /dev/console is the screen (the last console=), the serial port of
    the kernel command line gets the same line; a console= without a device is no error."""
    script = tmp_path / "bee.script"
    script.write_text(live_system.render_source(cfg, UDHCPC_SCRIPT))
    box.stand_in("default.script")
    (tmp_path / "issue").write_text("")
    serial = cfg.bee.iso.serial_console
    (tmp_path / "cmdline").write_text(
        f"BOOT_IMAGE=/boot/vmlinuz-lts console=ttyS9,9600 console=ttyS{serial.port},{serial.baud} "
        "console=tty0 quiet\n")
    (tmp_path / "dev").mkdir()
    for tty in (f"ttyS{serial.port}", "tty0"):
        (tmp_path / "dev" / tty).write_text("")
    result = run_udhcpc_script(box, script, tmp_path, "bound", interface="eth0", ip="10.20.30.40", mask="24")
    assert result.returncode == 0 and result.stderr == ""
    line = f"bee: eth0 got 10.20.30.40/24 from DHCP: ssh {cfg.bee.live.user}@10.20.30.40\n"
    assert (tmp_path / "console").read_text() == line
    assert (tmp_path / "dev" / f"ttyS{serial.port}").read_text() == line
    assert (tmp_path / "dev" / "tty0").read_text() == "", "/dev/console is the screen already"


def test_udhcpc_script_renames_a_new_issue_over_the_old_one(box, cfg, tmp_path):
    """/etc/issue is never rewritten in place (a getty reading it would see half): a new file (a new inode)
    is renamed over it, readable by all, and no temporary file stays beside it."""
    script = tmp_path / "bee.script"
    script.write_text(live_system.render_source(cfg, UDHCPC_SCRIPT))
    box.stand_in("default.script")
    issue = tmp_path / "issue"
    issue.write_text("Welcome\n")
    before = issue.stat().st_ino
    result = run_udhcpc_script(box, script, tmp_path, "bound", interface="eth0", ip="10.0.0.2", mask="8")
    assert result.returncode == 0, result.stderr
    assert issue.stat().st_ino != before
    assert issue.read_text() == f"Welcome\nbee: eth0 10.0.0.2/8: ssh {cfg.bee.live.user}@10.0.0.2\n"
    assert issue.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("issue")) == ["issue"]


def test_udhcpc_script_keeps_the_stock_scripts_status(box, cfg, tmp_path):
    script = tmp_path / "bee.script"
    script.write_text(live_system.render_source(cfg, UDHCPC_SCRIPT))
    box.stand_in("default.script", "exit 3\n")
    (tmp_path / "issue").write_text("")
    result = run_udhcpc_script(box, script, tmp_path, "bound", interface="eth0", ip="10.0.0.2", mask="8")
    assert result.returncode == 3
    # no "ssh bee@..." to an address the stock script could not configure: a warning instead
    assert (tmp_path / "console").read_text() == (
        f"bee: WARNING: eth0 was offered 10.0.0.2/8 by DHCP, but {box.bin}/default.script failed (status 3) "
        "to configure it\n")
    assert (tmp_path / "issue").read_text() == ""


def test_udhcpc_scripts_at_the_same_time_lose_no_address(box, cfg, tmp_path):
    """One udhcpc per interface: leases that come together each keep their line in /etc/issue."""
    script = tmp_path / "bee.script"
    script.write_text(live_system.render_source(cfg, UDHCPC_SCRIPT))
    box.stand_in("default.script")
    (tmp_path / "issue").write_text("Welcome\n")
    (tmp_path / "cmdline").write_text("console=tty0\n")
    (tmp_path / "dev").mkdir()
    count = 12
    base = {"PATH": str(box.bin), "CALLS_LOG": str(box.calls_log), "BEE_RUNDIR": str(tmp_path / "run"),
            "BEE_CONSOLE": str(tmp_path / "console"), "BEE_ISSUE": str(tmp_path / "issue"),
            "BEE_UDHCPC_DEFAULT": str(box.bin / "default.script"), "BEE_CMDLINE": str(tmp_path / "cmdline"),
            "BEE_DEV": str(tmp_path / "dev")}
    runs = [subprocess.Popen([box.busybox, "sh", str(script), "bound"], stderr=subprocess.PIPE, text=True,
                             env={**base, "interface": f"eth{n}", "ip": f"10.0.0.{n + 1}", "mask": "24"})
            for n in range(count)]
    for run in runs:
        assert run.wait(timeout=60) == 0
        assert run.stderr.read() == ""
    issue = (tmp_path / "issue").read_text().splitlines()
    assert issue[0] == "Welcome"
    user = cfg.bee.live.user
    assert sorted(issue[1:]) == sorted(f"bee: eth{n} 10.0.0.{n + 1}/24: ssh {user}@10.0.0.{n + 1}"
                                       for n in range(count))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("issue")) == ["issue"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(
        ["issue.orig", *(f"address.eth{n}" for n in range(count))])  # the lock is gone too


def test_udhcpc_script_takes_over_a_lock_whose_holder_is_gone(box, cfg, tmp_path):
    script = tmp_path / "bee.script"
    script.write_text(live_system.render_source(cfg, UDHCPC_SCRIPT))
    box.stand_in("default.script")
    (tmp_path / "issue").write_text("")
    (tmp_path / "run" / "issue.lock").mkdir(parents=True)
    (tmp_path / "run" / "issue.lock" / "pid").write_text("999999\n")  # no such process
    result = run_udhcpc_script(box, script, tmp_path, "bound", interface="eth0", ip="10.0.0.2", mask="8")
    assert result.returncode == 0, result.stderr
    assert "10.0.0.2/8" in (tmp_path / "issue").read_text()
    assert not (tmp_path / "run" / "issue.lock").exists()


# --- bee-audit-debug ---------------------------------------------------------------------------------------

def audit_env(tmp_path, audit, cmdline="console=tty0"):
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    (tmp_path / "dev").mkdir(exist_ok=True)
    return {"BEE_AUDIT": str(audit), "BEE_AUDIT_OUTPUT": str(tmp_path / "log/bee-audit.json"),
            "BEE_AUDIT_LOG": str(tmp_path / "log/bee-audit.log"), "BEE_CMDLINE": str(tmp_path / "cmdline"),
            "BEE_DEV": str(tmp_path / "dev")}


def test_audit_crash_still_returns_0(box, services, tmp_path):
    audit = box.stand_in("audit", 'echo "Traceback: boom" >&2\nexit 3\n')
    result = box.run_function(services["bee-audit-debug"], "start", audit_env(tmp_path, audit))
    assert result.returncode == 0
    assert box.openrc()[-1] == "eend 0"
    assert any("status 3" in line for line in box.openrc() if line.startswith("ewarn"))
    assert "Traceback: boom" in (tmp_path / "log/bee-audit.log").read_text()


def test_audit_writes_its_json_where_configured_and_its_qr_to_the_console(box, services, tmp_path, cfg):
    audit = box.stand_in("audit", 'echo "QR-SUMMARY"\n')
    result = box.run_function(services["bee-audit-debug"], "start", audit_env(tmp_path, audit))
    assert result.returncode == 0
    assert box.calls("audit") == [f"audit --output {tmp_path}/log/bee-audit.json "
                                  f"--expect-live {cfg.bee.live.expect_profile_file} --strict"]
    assert "QR-SUMMARY" in result.stdout


def test_the_isos_nvidia_gpu_list_reaches_the_audit(box, services, tmp_path, cfg):
    audit = box.stand_in("audit", 'echo "QR-SUMMARY"\n')
    gpu_list = tmp_path / cfg.bee.nvidia.gpu_list
    absent = {**audit_env(tmp_path, audit), "BEE_NVIDIA_GPU_LIST": str(gpu_list)}
    assert box.run_function(services["bee-audit-debug"], "start", absent).returncode == 0
    gpu_list.write_text("0x1db4 legacy 580.xx\n")
    assert box.run_function(services["bee-audit-debug"], "start", absent).returncode == 0
    plain = (f"audit --output {tmp_path}/log/bee-audit.json --expect-live {cfg.bee.live.expect_profile_file} "
             "--strict")
    assert box.calls("audit") == [plain, f"{plain} --nvidia-gpu-list {gpu_list}"]


def test_the_summary_reaches_the_serial_console_too(box, services, tmp_path, cfg):
    """The screen is /dev/console (the last console=, our output); the serial port gets a copy."""
    serial = cfg.bee.iso.serial_console
    cmdline = f"BOOT_IMAGE=/boot/vmlinuz-lts console=ttyS{serial.port},{serial.baud} console=tty0 quiet"
    env = audit_env(tmp_path, box.stand_in("audit", 'echo "QR-SUMMARY"\necho "PASS"\n'), cmdline)
    for tty in (f"ttyS{serial.port}", "tty0"):
        (tmp_path / "dev" / tty).write_text("")
    result = box.run_function(services["bee-audit-debug"], "start", env)
    assert result.returncode == 0
    assert result.stdout == "QR-SUMMARY\nPASS\n"
    assert (tmp_path / "dev" / f"ttyS{serial.port}").read_text() == "QR-SUMMARY\nPASS\n"
    assert (tmp_path / "dev" / "tty0").read_text() == "", "/dev/console is the screen already"
    assert not list((tmp_path / "log").glob("*summary*")), "no temporary file left"


def test_a_missing_serial_port_is_no_error(box, services, tmp_path):
    env = audit_env(tmp_path, box.stand_in("audit", 'echo "QR-SUMMARY"\n'), "console=ttyS1,9600 console=tty0")
    result = box.run_function(services["bee-audit-debug"], "start", env)
    assert result.returncode == 0 and result.stdout == "QR-SUMMARY\n" and result.stderr == ""
    assert box.openrc()[-1] == "eend 0"


def test_audit_defaults_come_from_invoke_yaml(services, cfg):
    text = services["bee-audit-debug"].read_text()
    assert f'BEE_AUDIT:={cfg.bee.live.audit_path}' in text
    assert f'BEE_AUDIT_OUTPUT:={cfg.bee.live.audit_output}' in text


def test_missing_audit_returns_0(box, services, tmp_path):
    result = box.run_function(services["bee-audit-debug"], "start", audit_env(tmp_path, tmp_path / "none"))
    assert result.returncode == 0
    assert box.openrc()[-1] == "eend 0"


# --- bee-sshsetup ------------------------------------------------------------------------------------------
# A temp root with Alpine's accounts (root's password blank, as on the live system), the real chpasswd of
# shadow-utils applied to it (`-R`), and a stand-in for busybox adduser -D: passwd line, locked shadow line.

HASH = "$6$saltsalt$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ./0123456789abcdefgh"
ALPINE_PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
                 "daemon:x:2:2:daemon:/sbin:/sbin/nologin\n"
                 "operator:x:11:0:operator:/root:/sbin/nologin\n")
# ghost: a stale shadow line without an account; chpasswd refuses a batch that names it.
ALPINE_SHADOW = "root:::0:::::\ndaemon:!::0:::::\noperator:::0:::::\nghost:::0:::::\n"
CHPASSWD = "/usr/sbin/chpasswd"


def sshsetup_box(box, tmp_path, keys="ssh-ed25519 AAAAC3Nza bee@test\n", hash_=HASH):
    """The live root's files under tmp_path/root; returns the service's environment and the user's home."""
    root = tmp_path / "root"
    write_tree(root, {"etc/passwd": ALPINE_PASSWD, "etc/shadow": ALPINE_SHADOW, "etc/group": "root:x:0:\n"})
    home = root / "home/bee"
    assert Path(CHPASSWD).is_file(), "chpasswd is required (apt install passwd)"
    box.stand_in("chpasswd", f'exec {CHPASSWD} -R "{root}" "$@"\n')
    box.stand_in("adduser", f'for a in "$@"; do user="$a"; done\n'
                            f'echo "$user:x:1000:1000:bee live user:{home}:/bin/sh" >>"{root}/etc/passwd"\n'
                            f'echo "$user:!:20000:0:99999:7:::" >>"{root}/etc/shadow"\n'
                            f'echo "$user:x:1000:" >>"{root}/etc/group"\n'
                            f'busybox mkdir -p "{home}"\n')
    box.stand_in("chown")
    env = {"BEE_PASSWD": str(root / "etc/passwd"), "BEE_SHADOW": str(root / "etc/shadow"),
           "BEE_KEYS": str(tmp_path / "etc/bee/authorized_keys"),
           "BEE_HASH": str(tmp_path / "etc/bee/password.hash")}
    files = {}
    if keys is not None:
        files["etc/bee/authorized_keys"] = keys
    if hash_ is not None:
        files["etc/bee/password.hash"] = hash_ + "\n"
    write_tree(tmp_path, files)
    return env, home


def password_fields(env) -> dict[str, str]:
    """account -> its password as the system sees it (shadow's field when passwd says x)."""
    shadow = dict(line.split(":")[:2] for line in Path(env["BEE_SHADOW"]).read_text().splitlines())
    fields = {}  # accounts are the passwd lines; a shadow line without one is nobody
    for line in Path(env["BEE_PASSWD"]).read_text().splitlines():
        name, field = line.split(":")[:2]
        fields[name] = shadow.get(name, "") if field == "x" else field
    return fields


def test_sshsetup_creates_the_user_with_keys_and_modes(box, services, tmp_path, cfg):
    env, home = sshsetup_box(box, tmp_path)
    result = box.run_function(services["bee-sshsetup"], "start", env)
    assert result.returncode == 0, (result.stderr, box.openrc())
    assert box.calls("adduser") == [f"adduser -D -s /bin/sh -g bee live user {cfg.bee.live.user}"]
    assert stat.S_IMODE((home / ".ssh").stat().st_mode) == 0o700
    keys = home / ".ssh/authorized_keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert keys.read_text() == "ssh-ed25519 AAAAC3Nza bee@test\n"
    assert box.calls("chown") == [f"chown -R {cfg.bee.live.user}:{cfg.bee.live.user} {home}/.ssh"]
    assert box.openrc()[-1] == "eend 0"


def test_sshsetup_gives_root_and_the_user_the_hash_and_leaves_no_blank_password(box, services, tmp_path, cfg):
    env, home = sshsetup_box(box, tmp_path)
    assert password_fields(env)["root"] == "", "the stand-in live system starts with root's password blank"
    result = box.run_function(services["bee-sshsetup"], "start", env)
    assert result.returncode == 0, (result.stderr, box.openrc())
    fields = password_fields(env)
    assert fields["root"] == fields[cfg.bee.live.user] == HASH
    assert fields["operator"] == "*" and fields["daemon"] == "!"
    assert "" not in fields.values()
    assert box.calls("chpasswd") == ["chpasswd -e"]
    assert [p.name for p in home.rglob("*") if p.is_file()] == ["authorized_keys"]


def test_sshsetup_keys_only_locks_root_and_the_user(box, services, tmp_path, cfg):
    env, home = sshsetup_box(box, tmp_path, hash_=None)
    result = box.run_function(services["bee-sshsetup"], "start", env)
    assert result.returncode == 0, (result.stderr, box.openrc())
    fields = password_fields(env)
    # "*" matches no password and is not "!" (which dropbear treats as a locked account, keys included).
    assert fields["root"] == fields[cfg.bee.live.user] == fields["operator"] == "*"
    assert "" not in fields.values()
    assert any(line.startswith("ewarn no password hash") for line in box.openrc())
    assert (home / ".ssh/authorized_keys").is_file()


def test_sshsetup_is_idempotent_for_an_existing_user(box, services, tmp_path):
    env, home = sshsetup_box(box, tmp_path)
    box.run_function(services["bee-sshsetup"], "start", env)
    first = password_fields(env)
    result = box.run_function(services["bee-sshsetup"], "start", env)
    assert result.returncode == 0
    assert len(box.calls("adduser")) == 1
    assert password_fields(env) == first


def test_sshsetup_without_keys_warns_and_keeps_the_password(box, services, tmp_path, cfg):
    env, home = sshsetup_box(box, tmp_path, keys=None)
    result = box.run_function(services["bee-sshsetup"], "start", env)
    assert result.returncode == 0
    assert not (home / ".ssh/authorized_keys").exists()
    assert any(line.startswith("ewarn no SSH keys") for line in box.openrc())
    assert password_fields(env)[cfg.bee.live.user] == HASH


def test_sshsetup_fails_when_a_blank_password_remains(box, services, tmp_path):
    """chpasswd failing must not pass silently: with -B, root's blank password would open SSH to anyone."""
    env, _ = sshsetup_box(box, tmp_path)
    box.stand_in("chpasswd", "cat >/dev/null\nexit 1\n")
    result = box.run_function(services["bee-sshsetup"], "start", env)
    assert result.returncode == 1
    assert "eerror chpasswd failed" in box.openrc()
    assert box.openrc()[-1] == ("eend 1 accounts with a blank password remain, open to anyone over SSH "
                                "(dropbear -B): root operator")


def test_sshsetup_still_locks_root_when_adduser_fails(box, services, tmp_path):
    env, home = sshsetup_box(box, tmp_path)
    box.stand_in("adduser", "exit 1\n")
    result = box.run_function(services["bee-sshsetup"], "start", env)
    assert result.returncode == 1
    fields = password_fields(env)
    assert fields["root"] == HASH and "" not in fields.values()
    assert box.openrc()[-1] == "eend 1"
