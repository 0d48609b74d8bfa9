"""A small fleet of real bee documents for the fleet report's tests, its benchmark and the README picture.

Each server is the REAL audit (audit/audit.py in a subprocess) run with stand-in tools on PATH that print
real outputs from ../shared/fixtures: dmidecode of a real machine (the real dmidecode on a binary dump, or
its text), lsblk and smartctl JSON of real disks, nvidia-smi XML of real GPUs, and the QEMU lab's outputs.
`accept` gives a document an acceptance verdict the way a person does: the audit's --make-profile on a
known-good document, then --document ... --expect that profile.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from audit import audit
from tests.audit.fakes import LAB_TOOLS, REAL_DMIDECODE, lab_output, write_tool
from tests.paths import REAL_FIXTURES, REPO_ROOT

AUDIT = REPO_ROOT / "audit" / "audit.py"
DMI = REAL_FIXTURES / "dmidecode"
SMART = REAL_FIXTURES / "smartctl"
NVSMI = REAL_FIXTURES / "nvidia-smi"


@dataclass
class Server:
    """One stand-in machine: its dmidecode source and, per tool, (shell case pattern, file, exit status)."""

    name: str
    dmidecode: Path                      # a .bin (for the real dmidecode --from-dump) or a text output
    tools: dict[str, list[tuple[str, Path, int]]] = field(default_factory=dict)
    nvidia: Path | None = None           # nvidia-smi -q -x XML; the driver counts as loaded when given
    lab_tools: bool = False              # also the QEMU lab's lsblk/lspci/smartctl/nvme/ipmitool outputs


def lab_file(name: str, work: Path) -> tuple[Path, int]:
    """A QEMU lab output without its `###` header and footer, written under work, and its exit status."""
    text, rc = lab_output(name)
    path = work / "lab" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path, rc


def smart(name: str) -> tuple[Path, int]:
    """A smartctl JSON fixture and the exit status smartctl had when it printed it."""
    path = SMART / name
    return path, json.loads(path.read_text())["smartctl"]["exit_status"]


def servers(work: Path) -> list[Server]:
    """The fleet: a GPU server, a server with a failed disk, a clean server, a lab-like server with IPMI, two
    servers sharing a placeholder serial, and two machines whose serials the uploader anonymised (no serial:
    each document is its own row)."""
    lsblk_lab, lsblk_rc = lab_file("lsblk.txt", work)
    lspci_lab = [("-vmm -D", *lab_file("lspci-vmm.txt", work))]  # the PCI functions of the QEMU lab server
    lsblk_2nvme = REAL_FIXTURES / "lsblk" / "mvth1s-hwbench-asrock-b850-desktop-2nvme-reserialized.json"
    return [
        Server(
            "x9dbl-gpu",
            DMI / "uroot-supermicro-x9dbl-server.bin",
            {
                "lsblk": [("*", lsblk_2nvme, 0)],
                "smartctl": [
                    ("*/nvme0n1", *smart("netdata-nvme-seagate-firecuda530-nvme0.json")),
                    ("*/nvme1n1", *smart("smartctl_exporter-nvme-samsung-pm1735-6.4tb.json")),
                ],
            },
            nvidia=NVSMI / "datakit-8x-tesla-v100s-pcie-32gb-passthrough.xml",
        ),
        Server(
            "qct-failed-disk",
            DMI / "netboxagent-qct-quantamicro-x10e-9n.txt",
            {
                "lsblk": [("*", lsblk_lab, lsblk_rc)],
                "lspci": lspci_lab,
                "smartctl": [
                    ("*/sda", *smart("scrutiny-usbjmicron-hitachi-hds721050-FAILED.json")),
                    ("*/sdb", *smart("smartctl_exporter-sat-toshiba-mg05aca800e-exit64.json")),
                    ("*/vd*", *lab_file("smartctl-vda.txt", work)),
                    ("*/nvme*", *lab_file("smartctl-nvme0.txt", work)),
                ],
            },
        ),
        Server(
            "oracle-x5-2",
            DMI / "glpi-oracle-server-x5-2.txt",
            {
                "lsblk": [("*", lsblk_lab, lsblk_rc)],
                "lspci": lspci_lab,
                "smartctl": [
                    ("*/sda", *smart("netdata-sat-hdd-wd181kryz.json")),
                    ("*/sdb", *smart("netdata-sat-ssd-wds400t1r0a.json")),
                    ("*/vd*", *lab_file("smartctl-vda.txt", work)),
                    ("*/nvme*", *lab_file("smartctl-nvme0.txt", work)),
                ],
            },
            nvidia=NVSMI / "netdata-a100-sxm4-40gb-mig-driver510.xml",
        ),
        Server("s5000vsa-lab", DMI / "glpi-intel-s5000vsa-server-board.txt", lab_tools=True),
        # two different machines whose vendors' tools left the same placeholder serial
        Server("m630-serial-4242", DMI / "netboxagent-dell-poweredge-m630-blade.txt"),
        Server("sl4540-serial-4242", DMI / "netboxagent-hp-sl4540-gen8-trailing-space.txt"),
        Server("r740-anonymised", DMI / "linuxhw-dell-poweredge-r740-2s.txt"),
        Server(
            "g482-anonymised",
            DMI / "linuxhw-gigabyte-g482-z54-gpu-server-2s-epyc.txt",
            nvidia=NVSMI / "telegraf-a100-sxm4-80gb-mig-nvidia-smi-q-x.xml",
        ),
    ]


def install_tools(server: Server, root: Path, work: Path) -> Path:
    """The stand-in tools of `server` in root/bin and its procfs/devfs under root; returns the bin folder."""
    bin_dir = root / "bin"
    tools: dict[str, list[tuple[str, Path, int]]] = {}
    if server.lab_tools:
        for tool, cases in LAB_TOOLS.items():  # the server's own dmidecode below replaces the lab's
            tools[tool] = [(pattern, *lab_file(name, work)) for pattern, name in cases]
        (root / "dev").mkdir(parents=True, exist_ok=True)
        (root / "dev" / "ipmi0").touch()  # the psu collector asks ipmitool only when the BMC's node exists
    tools.update(server.tools)
    if server.nvidia is not None:
        tools["nvidia-smi"] = [("-q -x", server.nvidia, 0)]
        (root / "proc" / "driver" / "nvidia").mkdir(parents=True, exist_ok=True)
    for tool, cases in tools.items():
        arms = [
            f'  {shlex.quote(pattern) if " " in pattern else pattern}) /bin/cat {shlex.quote(str(path))};'
            f" exit {rc};;"
            for pattern, path, rc in cases
        ]
        write_tool(bin_dir, tool, 'case "$*" in\n' + "\n".join(arms) + "\nesac\nexit 1")
    if server.dmidecode.suffix == ".bin":
        assert REAL_DMIDECODE, "dmidecode is not installed (apt-get install dmidecode)"
        body = f'exec {shlex.quote(REAL_DMIDECODE)} --from-dump {shlex.quote(str(server.dmidecode))} "$@"'
    else:
        body = f"/bin/cat {shlex.quote(str(server.dmidecode))}"
    write_tool(bin_dir, "dmidecode", body)
    for folder in ("sys", "proc", "dev"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return bin_dir


def run_audit(root: Path, bin_dir: Path, output: Path, *extra: str) -> dict:
    """Run the real audit against the stand-ins under root, writing `output`; return the document."""
    argv = [sys.executable, str(AUDIT), "--no-qr", "--output", str(output), "--sysfs", str(root / "sys"),
            "--procfs", str(root / "proc"), "--devfs", str(root / "dev"), "--timeout", "20", *extra]
    done = subprocess.run(argv, env={"PATH": str(bin_dir), "LC_ALL": "C.UTF-8"}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"the audit failed: {done.stderr}"
    return json.loads(output.read_text())


def file_name(document: dict) -> str:
    """The name --report and --usb give a document: bee-audit-<machine>-<UTC time>-<random>.json (the
    audit's own usb_file_name)."""
    stamp = dt.datetime.fromisoformat(document["generated_at"])
    return audit.usb_file_name(document, stamp)


def place(document_file: Path, target: Path, server: str) -> Path:
    """Move a document into `target` under the name the audit gives it (should two names ever meet, the
    second one gets the server's name too)."""
    name = file_name(json.loads(document_file.read_text()))
    path = target / name
    if path.exists():
        path = target / name.replace("bee-audit-", f"bee-audit-{server}-", 1)
    shutil.move(document_file, path)
    return path


def make_fleet(target: Path, work: Path) -> dict[str, Path]:
    """Audit every server into `target` (see `place`); the GPU server is also audited a second time, from
    a capture whose time is one day earlier (--replay), to give it an older document. Returns server name
    -> file."""
    target.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    for server in servers(work):
        root = work / server.name
        bin_dir = install_tools(server, root, work)
        capture = work / f"{server.name}.capture"
        scratch = work / f"{server.name}.json"
        run_audit(root, bin_dir, scratch, "--capture", str(capture))
        made[server.name] = place(scratch, target, server.name)
    # an older audit of the GPU server: its capture with the time set back one day, replayed
    capture = work / "x9dbl-gpu.capture"
    host = json.loads((capture / "host.json").read_text())
    earlier = dt.datetime.fromisoformat(host["generated_at"]) - dt.timedelta(days=1)
    host["generated_at"] = earlier.isoformat(timespec="seconds")
    (capture / "host.json").write_text(json.dumps(host))
    older = work / "x9dbl-gpu-older.json"
    run_audit(work / "x9dbl-gpu", work / "x9dbl-gpu" / "bin", older, "--replay", str(capture))
    made["x9dbl-gpu-older"] = place(older, target, "x9dbl-gpu")
    return made


def accept(document: Path, known_good: Path, work: Path) -> dict:
    """Check `document` (in place) against the profile the audit makes from `known_good` (its
    --make-profile, then --document --expect); returns the acceptance section."""
    work.mkdir(parents=True, exist_ok=True)
    profile = work / f"{known_good.stem}.profile.json"
    for args in (["--document", str(known_good), "--make-profile", str(profile), "--output",
                  str(work / "scratch.json")],
                 ["--document", str(document), "--expect", str(profile), "--output", str(document)]):
        done = subprocess.run([sys.executable, str(AUDIT), "--no-qr", *args], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    return json.loads(document.read_text())["acceptance"]


def accept_fleet(made: dict[str, Path], work: Path) -> None:
    """The Oracle X5-2 checked against its own profile (PASS), the QuantaMicro against its own, which it
    fails: a made profile forbids critical findings, and one of its disks fails SMART."""
    accept(made["oracle-x5-2"], made["oracle-x5-2"], work / "profiles")
    accept(made["qct-failed-disk"], made["qct-failed-disk"], work / "profiles")


def picture(target: Path, work: Path) -> None:
    """The README's picture: the page of this fleet (acceptance verdicts as in the tests, accept_fleet) in
    headless Chromium, the failing server's details open."""
    from scripts import fleet_report

    made = make_fleet(work / "incoming", work / "audit")
    accept_fleet(made, work)
    (work / "incoming" / "notes.json").write_text("{oops\n")
    page = work / "report.html"
    assert fleet_report.main([str(work / "incoming"), "-o", str(page)]) == 0
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed (apt-get install chromium)"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={work / 'profile'}", f"--screenshot={target.resolve()}",
                    "--window-size=1400,1050", page.as_uri() + "#open=QTFCQ57140285"],
                   check=True, capture_output=True, timeout=120)


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="Make the test fleet's documents, or the README picture.")
    parser.add_argument("--picture", type=Path, help="write the fleet page's screenshot here (PNG)")
    parser.add_argument("--documents", type=Path, help="write the fleet's documents into this folder")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bee-fleet-") as scratch:
        if options.picture:
            picture(options.picture, Path(scratch) / "picture")
        if options.documents:
            make_fleet(options.documents, Path(scratch) / "audit")
