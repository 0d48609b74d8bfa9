#!/usr/bin/python3
"""Scenario 2's report, run by the guest's inittab once `openrc default` has returned (boot went on).

Writes report.json (service states and start order, listening TCP ports, running processes, network
interfaces, the audit's output) plus copies of the logs into a tar archive on the LABOUT disk, then
powers the guest off. Reads everything from /proc, /sys and files: nothing here can hang.
"""

import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

STARTED = Path("/run/openrc/started")
TCP_LISTEN = "0A"
LOGS = ["/var/log/rc.log", "/var/log/bee-audit.log", "/var/log/bee-audit.json"]


def started_services():
    """Services OpenRC marked started, in the order it marked them (the links' change times)."""
    if not STARTED.is_dir():
        return []
    entries = [(p.lstat().st_mtime_ns, p.name) for p in STARTED.iterdir()]
    return [{"name": name, "ns": ns} for ns, name in sorted(entries)]


def listening_ports():
    """TCP ports in LISTEN state (IPv4 and IPv6)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == TCP_LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def processes():
    """Command lines of every process, as argument lists."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in argv if a]
        if argv:
            found.append(argv)
    return found


def interfaces():
    """Network interfaces: name, whether a device is behind it (physical), operstate."""
    result = []
    for entry in sorted(Path("/sys/class/net").iterdir()):
        state = (entry / "operstate").read_text().strip() if (entry / "operstate").exists() else None
        result.append({"name": entry.name, "physical": (entry / "device").exists(), "operstate": state})
    return result


def audit_output(path):
    """Whether the audit's JSON exists and parses, with its top-level keys."""
    target = Path(path)
    if not target.is_file():
        return {"exists": False, "valid": False, "keys": []}
    try:
        document = json.loads(target.read_text())
    except ValueError:
        return {"exists": True, "valid": False, "keys": []}
    return {"exists": True, "valid": isinstance(document, dict), "keys": sorted(document)}


def rc_status():
    """`rc-status --all` as text (for people reading a failure)."""
    try:
        return subprocess.run(["rc-status", "--all"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"rc-status failed: {exc}"


def labout_disk():
    for block in Path("/sys/block").glob("vd*"):
        serial = block / "serial"
        if serial.exists() and serial.read_text().strip() == "LABOUT":
            return f"/dev/{block.name}"
    return None


def main():
    out = Path("/run/lab-results")
    out.mkdir(parents=True, exist_ok=True)
    audit_file = Path("/etc/lab-audit-output").read_text().strip()
    report = {
        "uptime": float(Path("/proc/uptime").read_text().split()[0]),
        "started": started_services(),
        "listening_tcp": listening_ports(),
        "processes": processes(),
        "interfaces": interfaces(),
        "audit_output": audit_output(audit_file),
        "rc_status": rc_status(),
        "runlevel_default": sorted(os.listdir("/etc/runlevels/default")),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    for log in LOGS + [audit_file]:
        if Path(log).is_file():
            (out / Path(log).name).write_bytes(Path(log).read_bytes())
    disk = labout_disk()
    print(f"lab: report written, {len(report['started'])} services started", flush=True)
    if disk:
        with open(disk, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as archive:
            archive.add(out, arcname=".")
    os.sync()
    Path("/proc/sysrq-trigger").write_text("o")
    time.sleep(30)


if __name__ == "__main__":
    main()
