"""NVLink, GPU topology and the NVSwitch fabric: every real `nvidia-smi nvlink -s`, `topo -m` and `-q` (text)
fixture, the sections of the capture bundles, the nvidia collector with nvidia-smi faked (no NVIDIA hardware
here: pytest-subprocess, exact commands and order) and the findings."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from audit import audit
from tests.audit.fakes import assert_schema, failed_checks
from tests.paths import REAL_FIXTURES, REPO_ROOT

NVSMI_DIR = REAL_FIXTURES / "nvidia-smi"
A100_STATUS = NVSMI_DIR / "gpud-a100-sxm4-80gb-8gpu-nvlink-status.txt"
A100 = "NVIDIA A100-SXM4-80GB"  # the product of the A100 `nvlink -s` fixture's GPUs
COMMANDS = [["nvidia-smi", "-q", "-x"], ["nvidia-smi", "nvlink", "-s"], ["nvidia-smi", "topo", "-m"]]


def bundle_section(name: str, command: str) -> str:
    """One section of an nvgpuexp capture bundle: the text between `# $ <command>`'s banner and the next."""
    text = (NVSMI_DIR / name).read_text()
    start = text.index(f"# $ {command}\n")
    start = text.index("\n", text.index("#####", start)) + 1
    return text[start : text.index("\n#####", start)]


def test_a100_nvlink_status():
    gpus = audit.parse_nvlink_status(A100_STATUS.read_text())
    assert [gpu["index"] for gpu in gpus] == list(range(8))
    assert gpus[0]["uuid"] == "GPU-5269b708-678a-b1a8-60f0-c90406537486"
    assert gpus[1]["uuid"] == "GPU-a7605225-d684-1f65-4ad4-ee2ab39338b4"
    for gpu in gpus:
        assert gpu["supported"] is True and gpu["message"] is None
        assert gpu["links"] == [{"link": n, "active": True, "speed_gbps": 25.0} for n in range(12)]


CAPTURES = {  # bundle: (supported, listed links, active, speed, message)
    "nvgpuexp-capture-h100-80gb-hbm3-drv590.txt": (True, 18, 18, 26.562, None),
    "nvgpuexp-capture-h200-mig-drv590.txt": (
        None,
        0,
        None,
        None,
        "Nvlink queries are not supported for Devices in MIG mode",
    ),
    "nvgpuexp-capture-l40s-drv595.txt": (False, 0, None, None, "Device does not have or support Nvlink"),
    "nvgpuexp-capture-rtx4080super-drv595.txt": (
        False,
        0,
        None,
        None,
        "Device does not have or support Nvlink",
    ),
    "nvgpuexp-capture-windows-rtx2080super-drv610.txt": (
        True,
        0,
        0,
        None,
        "NVML: Unable to retrieve Nvlink information as all links are inActive",
    ),
}


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_bundle_nvlink_section(name):
    (gpu,) = audit.parse_nvlink_status(bundle_section(name, "nvidia-smi nvlink -s"))
    supported, listed, active, speed, message = CAPTURES[name]
    summary = audit.nvlink_summary(gpu)
    assert (summary["supported"], len(summary["links"]), summary["active_links"], summary["message"]) == (
        supported,
        listed,
        active,
        message,
    )
    assert {link["speed_gbps"] for link in summary["links"]} <= {speed}


TOPO_FILES = {  # file: (GPUs, NVLinks to each peer, GPU0's NUMA node, GPU7's NUMA node, GPU0's NICs)
    "cheatsheets-dgx-a100-8gpu-12nic-nvidia-smi-topo-m.txt": (
        8,
        12,
        3,
        5,
        {"mlx5_0": "PXB", "mlx5_1": "PXB", **{f"mlx5_{n}": "SYS" for n in range(2, 12)}},
    ),
    "deepseek-serving-8xh200-8nic-nvidia-smi-topo-m.txt": (  # NIC0..7 named by the NIC legend
        8,
        18,
        0,
        1,
        {
            "mlx5_0": "NODE",
            "mlx5_1": "NODE",
            "mlx5_2": "SYS",
            "mlx5_3": "NODE",
            "mlx5_4": "PIX",
            "mlx5_5": "SYS",
            "mlx5_6": "SYS",
            "mlx5_7": "SYS",
        },
    ),
    "training-on-eks-aws-p4d-8xa100-nvidia-smi-topo-m.txt": (8, 12, 0, 1, {}),  # header indented by spaces
    "training-on-eks-aws-p5-8xh100-nvidia-smi-topo-m.txt": (8, 18, 0, 1, {}),  # space-aligned columns
}


@pytest.mark.parametrize("name", sorted(TOPO_FILES))
def test_topology_fixture(name):
    rows = audit.parse_topology((NVSMI_DIR / name).read_text())
    count, links, numa0, numa7, nics = TOPO_FILES[name]
    assert [row["gpu"] for row in rows] == [f"GPU{n}" for n in range(count)]
    for number, row in enumerate(rows):
        assert row["nvlink_peers"] == {f"GPU{n}": links for n in range(count) if n != number}
    assert (rows[0]["numa_node"], rows[7]["numa_node"]) == (numa0, numa7)
    assert rows[0]["nics"] == nics
    assert rows[0]["cpu_affinity"] and rows[0]["cpu_affinity"][0].isdigit()


def test_topology_of_one_gpu_with_terminal_escapes():
    """The H100 bundle's `topo -m`: a bold (ESC [4m) header, one GPU, no peers."""
    section = bundle_section("nvgpuexp-capture-h100-80gb-hbm3-drv590.txt", "nvidia-smi topo -m")
    assert "\x1b[4m" in section
    assert audit.parse_topology(section) == [
        {"gpu": "GPU0", "nvlink_peers": {}, "nics": {}, "cpu_affinity": "0-19", "numa_node": 0}
    ]


def test_topology_garbage():
    assert audit.parse_topology("NVIDIA-SMI has failed\n\x00\xff") == []
    assert audit.parse_topology(None) == []
    truncated = "\n".join(
        (NVSMI_DIR / "cheatsheets-dgx-a100-8gpu-12nic-nvidia-smi-topo-m.txt").read_text().split("\n")[:3]
    )
    rows = audit.parse_topology(truncated[:-40])  # the second GPU row cut short: skipped
    assert [row["gpu"] for row in rows] == ["GPU0"]


def fabric_of_q_text(text: str) -> list[tuple[str, str, str]]:
    """(bus id, fabric state, fabric status) of every GPU block of `nvidia-smi -q` text."""
    blocks = re.split(r"^GPU ([0-9A-Fa-f:.]+)\s*$", text, flags=re.M)[1:]
    found = []
    for bus, block in zip(blocks[::2], blocks[1::2], strict=True):
        fabric = re.search(r"^    Fabric\n\s+State\s+: (.*)\n\s+Status\s+: (.*)$", block, re.M)
        found.append((bus, fabric[1].strip(), fabric[2].strip()))
    return found


def q_x_xml(
    gpus: list[tuple[str, str, str]], uuids: list[str] | None = None, product: str = "NVIDIA H100 80GB HBM3"
) -> str:
    """`nvidia-smi -q -x` XML (DTD v12 element names) with one <gpu> per (bus id, fabric state, status)."""
    body = "".join(
        f'<gpu id="{bus}"><product_name>{product}</product_name>'
        f"<uuid>{(uuids or [''] * len(gpus))[n]}</uuid><pci><pci_bus_id>{bus}</pci_bus_id></pci>"
        f"<fabric><state>{state}</state><status>{status}</status></fabric></gpu>"
        for n, (bus, state, status) in enumerate(gpus)
    )
    head = '<?xml version="1.0" ?>\n<nvidia_smi_log><driver_version>535.161.08</driver_version>'
    return f"{head}{body}</nvidia_smi_log>"


def test_fabric_of_the_8x_h100_q_text():
    """The HGX H100's `nvidia-smi -q` (text): eight GPUs, fabric Completed/Success; the -q -x XML of the
    same facts gives each GPU its fabric, and no finding."""
    gpus = fabric_of_q_text((NVSMI_DIR / "gpud-8xh100-80gb-hbm3-nvidia-smi-q.txt").read_text())
    assert len(gpus) == 8 and gpus[0][0] == "00000000:19:00.0"
    assert {(state, status) for _, state, status in gpus} == {("Completed", "Success")}
    parsed = audit.parse_nvidia_smi_xml(q_x_xml(gpus))
    assert [gpu["fabric"] for gpu in parsed] == [{"state": "Completed", "status": "Success"}] * 8
    assert [gpu["bus_id"] for gpu in parsed][:2] == ["0000:19:00.0", "0000:3b:00.0"]
    assert audit.nvlink_findings({"nvidia": {"gpus": parsed}}) == []


def test_fabric_of_the_h100_bundle_and_the_xml_fixtures():
    """The H100 bundle's -q text shows Completed/Success; the 535 XML fixtures of non-NVSwitch GPUs "N/A"."""
    section = bundle_section("nvgpuexp-capture-h100-80gb-hbm3-drv590.txt", "nvidia-smi -q")
    assert [(state, status) for _, state, status in fabric_of_q_text(section)] == [("Completed", "Success")]
    for name in ("netdata-rtx4090-driver535.xml", "telegraf-a100-sxm4-80gb-mig-nvidia-smi-q-x.xml"):
        (gpu,) = audit.parse_nvidia_smi_xml((NVSMI_DIR / name).read_text())
        assert gpu["fabric"] is None  # <state>N/A</state>


def a100_status(inactive: dict[int, set[int]]) -> str:
    """The A100 `nvlink -s` fixture with some links of some GPUs turned "<inactive>"."""
    out, gpu = [], None
    for line in A100_STATUS.read_text().split("\n"):
        if match := re.match(r"^GPU (\d+):", line):
            gpu = int(match[1])
        elif (match := re.match(r"^(\s+Link (\d+): ).*$", line)) and int(match[2]) in inactive.get(gpu, ()):
            line = match[1] + "<inactive>"
        out.append(line)
    return "\n".join(out)


@pytest.fixture
def driver(tmp_path, monkeypatch):
    """A loaded NVIDIA driver and an nvidia-smi on PATH (never run: pytest-subprocess answers for it)."""
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/nvidia-smi").write_text("#!/bin/sh\nexit 99\n")
    (tmp_path / "bin/nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return audit.Runner(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", devfs=tmp_path / "dev")


def a100_machine(fp, state="Completed", status="Success", inactive=None):
    """Eight A100s (UUIDs of the A100 `nvlink -s` fixture, listed in reverse in the XML to prove the UUID
    match), the DGX A100's `topo -m`."""
    uuids = [gpu["uuid"] for gpu in audit.parse_nvlink_status(A100_STATUS.read_text())]
    buses = [f"00000000:{bus}:00.0" for bus in ("07", "0F", "47", "4E", "87", "90", "B7", "BD")]
    gpus = [(bus, state, status) for bus in buses]
    fp.register(COMMANDS[0], stdout=q_x_xml(gpus[::-1], uuids[::-1], A100))
    fp.register(COMMANDS[1], stdout=a100_status(inactive or {}))
    fp.register(
        COMMANDS[2], stdout=(NVSMI_DIR / "cheatsheets-dgx-a100-8gpu-12nic-nvidia-smi-topo-m.txt").read_text()
    )
    return uuids


def test_collector_matches_links_by_uuid(fp, driver):
    uuids = a100_machine(fp, inactive={3: {10, 11}})
    document = audit.build_document(driver, [("nvidia", audit.collect_nvidia)])
    assert [call for call in fp.calls] == COMMANDS
    assert document["errors"] == []
    by_uuid = {gpu["uuid"]: gpu for gpu in document["nvidia"]["gpus"]}
    assert by_uuid[uuids[0]]["nvlink"]["active_links"] == 12
    assert by_uuid[uuids[3]]["nvlink"]["active_links"] == 10
    assert by_uuid[uuids[3]]["nvlink"]["links"][10] == {"link": 10, "active": False, "speed_gbps": None}
    assert_schema("nvidia", document["nvidia"])
    gpus = document["nvidia"]["gpus"]
    first = gpus[0]  # the XML lists GPU 7 first: its topology row is GPU7's, not the first
    assert first["uuid"] == uuids[7] and first["topology"]["gpu"] == "GPU7"
    assert [gpu["topology"]["gpu"] for gpu in gpus] == [f"GPU{n}" for n in range(7, -1, -1)]
    assert first["fabric"] == {"state": "Completed", "status": "Success"}
    assert document["findings"] == [
        {
            "severity": "warning",
            "component": "gpu 0000:4e:00.0 (NVIDIA A100-SXM4-80GB)",
            "message": "10 active NVLinks where other GPUs have 12",
        },
    ]


def h100_machine(fp, state="Not Started", status="N/A", active=False):
    """An HGX 8x H100: the H100 bundle's `nvlink -s` GPU as eight GPUs (every link inactive unless `active`),
    their fabric (state, status) in the XML, and the AWS p5's 8x H100 `topo -m` (NV18 between all)."""
    one = bundle_section("nvgpuexp-capture-h100-80gb-hbm3-drv590.txt", "nvidia-smi nvlink -s")
    if not active:
        one = re.sub(r"(?m)^(\s+Link \d+: ).*$", r"\1<inactive>", one)
    uuids = [f"GPU-{n:08x}-5f3a-11ee-9c3e-0242ac120002" for n in range(8)]
    status_text = "".join(
        one.replace("GPU 0:", f"GPU {n}:").replace("GPU-00000000-0000-0000-0000-000000000000", uuid)
        for n, uuid in enumerate(uuids)
    )
    buses = [f"00000000:{bus}:00.0" for bus in ("19", "3B", "4C", "5D", "9B", "BB", "CB", "DB")]
    fp.register(COMMANDS[0], stdout=q_x_xml([(bus, state, status) for bus in buses], uuids))
    fp.register(COMMANDS[1], stdout=status_text)
    fp.register(
        COMMANDS[2], stdout=(NVSMI_DIR / "training-on-eks-aws-p5-8xh100-nvidia-smi-topo-m.txt").read_text()
    )
    return uuids


UNTRAINED = (
    "NVSwitch system without a running fabric manager (the live system has none): NVLinks are untrained, "
    "their state cannot be judged here"
)


@pytest.mark.parametrize("state", ["Not Started", "In Progress"])
def test_no_links_and_fabric_not_started(fp, driver, state):
    """An HGX H100 booted from the ISO (no fabric manager): every link inactive, fabric Not Started or In
    Progress. One warning, no per-GPU criticals or fabric warnings."""
    h100_machine(fp, state=state)
    document = audit.build_document(driver, [("nvidia", audit.collect_nvidia)])
    assert {gpu["nvlink"]["active_links"] for gpu in document["nvidia"]["gpus"]} == {0}
    assert document["findings"] == [{"severity": "warning", "component": "nvidia", "message": UNTRAINED}]
    assert_schema("nvidia", document["nvidia"])


def test_untrained_a100_is_told_by_its_nvswitch_functions(fp, driver):
    """An HGX A100 has no fabric state (N/A): its NVSwitches (PCI vendor 10de, class 0680) tell it apart
    from GPUs whose links are really down."""
    a100_machine(fp, state="N/A", status="N/A", inactive={n: set(range(12)) for n in range(8)})
    document = audit.build_document(driver, [("nvidia", audit.collect_nvidia)])
    assert {gpu["fabric"] for gpu in document["nvidia"]["gpus"]} == {None}
    switches = [
        {"address": f"0000:{bus}:00.0", "vendor_id": "10de", "class_id": "0680"} for bus in ("c4", "c5")
    ]
    with_switches = {
        **document,
        "pcie": [{"address": "0000:00:00.0", "vendor_id": "8086", "class_id": "0600"}, *switches],
    }
    assert audit.nvswitch_functions(with_switches) == ["0000:c4:00.0", "0000:c5:00.0"]
    assert audit.nvlink_findings(with_switches) == [
        {"severity": "warning", "component": "nvidia", "message": UNTRAINED}
    ]
    # without NVSwitches the same links are eight GPUs without any active NVLink
    found = audit.nvlink_findings(document)
    assert len(found) == 8 and {(f["severity"], f["message"]) for f in found} == {
        ("critical", "no active NVLink (of 12)")
    }


def test_fabric_not_done_is_one_finding_listing_the_gpus(fp, driver):
    """Links up but the fabric not Completed/Success on some GPUs: one warning naming them, "N/A" (not
    "None") for a status nvidia-smi does not give."""
    h100_machine(fp, state="In Progress", status="N/A", active=True)
    document = audit.build_document(driver, [("nvidia", audit.collect_nvidia)])
    assert document["findings"] == [
        {
            "severity": "warning",
            "component": "nvidia",
            "message": "NVSwitch fabric state In Progress, status N/A on 8 of 8 GPUs (0000:19:00.0, "
            "0000:3b:00.0, 0000:4c:00.0, 0000:5d:00.0, 0000:9b:00.0, 0000:bb:00.0, 0000:cb:00.0, "
            "0000:db:00.0): not usable for multi-GPU work until the fabric manager has run",
        }
    ]


def test_one_gpu_without_links_beside_its_peers(fp, driver):
    uuids = a100_machine(fp, inactive={5: set(range(12))})
    document = audit.build_document(driver, [("nvidia", audit.collect_nvidia)])
    (found,) = document["findings"]
    assert found["severity"] == "critical" and found["message"] == "no active NVLink (of 12)"
    assert {gpu["uuid"]: gpu["nvlink"]["active_links"] for gpu in document["nvidia"]["gpus"]}[uuids[5]] == 0


def test_pcie_gpus_and_mig_have_no_nvlink_findings():
    gpus = [
        {"bus_id": "0000:01:00.0", "nvlink": {"supported": False, "active_links": None, "links": []}},
        {"bus_id": "0000:02:00.0", "nvlink": {"supported": None, "active_links": None, "links": []}},
        {"bus_id": "0000:03:00.0", "nvlink": None, "fabric": None},
    ]
    assert audit.nvlink_findings({"nvidia": {"gpus": gpus}}) == []
    assert audit.nvlink_findings({"nvidia": None}) == []


def test_nvlink_and_topology_failures_are_errors_and_the_gpus_stay(fp, driver):
    fp.register(COMMANDS[0], stdout=q_x_xml([("00000000:07:00.0", "N/A", "N/A")]))
    fp.register(COMMANDS[1], stdout="", stderr="Failed to initialize NVML: Unknown Error\n", returncode=255)
    fp.register(COMMANDS[2], stdout="\x00garbage\n")
    document = audit.build_document(driver, [("nvidia", audit.collect_nvidia)])
    assert [(e["command"], e["message"]) for e in document["errors"]] == [
        ("nvidia-smi nvlink -s", "exit status 255: Failed to initialize NVML: Unknown Error")
    ]
    (gpu,) = document["nvidia"]["gpus"]
    assert (gpu["nvlink"], gpu["topology"], gpu["fabric"]) == (None, None, None)
    assert document["collectors"]["nvidia"]["status"] == "partial"


# -- acceptance: active NVLinks per GPU in a profile --------------------------------------------------------


def test_profile_checks_active_nvlinks_per_gpu(fp, driver):
    """--make-profile on an NVLink system writes the active links per GPU as a minimum; a GPU with two links
    down fails it. PCIe GPUs (no NVLink) get no such key."""
    a100_machine(fp)
    good = audit.build_document(driver, [("nvidia", audit.collect_nvidia)])
    made = audit.make_profile(good)
    assert made["gpus"]["nvlinks_active"] == {"min": 12}
    assert failed_checks(good, {"gpus": {"count": 8, "nvlinks_active": made["gpus"]["nvlinks_active"]}}) == []
    a100_machine(fp, inactive={3: {10, 11}})
    degraded = audit.build_document(driver, [("nvidia", audit.collect_nvidia)])
    assert failed_checks(degraded, {"gpus": {"count": 8, "nvlinks_active": {"min": 12}}}) == [
        "gpu 0000:4e:00.0 (NVIDIA A100-SXM4-80GB): active NVLinks 10, expected at least 12"
    ]
    pcie_only = {"nvidia": {"gpus": [{"bus_id": "0000:01:00.0",
                                      "nvlink": {"supported": False, "active_links": None}}]}}
    assert "nvlinks_active" not in audit.make_profile(pcie_only)["gpus"]


def test_untrained_nvlinks_are_unknown_in_acceptance_and_made_from_the_topology(fp, driver):
    """On an HGX H100 without a fabric manager, --make-profile writes nvlinks_active from topo -m's NV18 and
    says so; checking it there gives an unknown result (passed null) that fails nothing, unless the profile
    says "required": true. Where the links are trained, the same profile is checked as usual."""
    h100_machine(fp)
    untrained = audit.build_document(driver, [("nvidia", audit.collect_nvidia)])
    made = audit.make_profile(untrained)
    assert made["gpus"]["nvlinks_active"] == {"min": 18}
    assert "untrained" in made["description"] and list(made)[:2] == ["name", "description"]
    profile = audit.parse_profile(audit.render_profile(made).encode(), "made.json")
    result = audit.check_profile(untrained, profile)
    (check,) = [c for c in result["checks"] if c["check"] == "gpus.nvlinks_active"]
    assert (check["passed"], check["found"], result["passed"], result["checks_unknown"]) == (
        None,
        None,
        True,
        1,
    )
    assert check["message"] == f"gpus: active NVLinks not checkable: {UNTRAINED}"
    assert failed_checks(untrained, {"gpus": {"nvlinks_active": {"min": 18}}}) == []
    assert failed_checks(untrained, {"gpus": {"nvlinks_active": {"min": 18, "required": True}}}) == [
        f"gpus: active NVLinks not checkable: {UNTRAINED}; the profile requires them"
    ]
    accepted = audit.apply_acceptance(untrained, result)
    schema = json.loads((REPO_ROOT / "audit" / "bee-audit.schema.json").read_text())
    jsonschema.Draft202012Validator(
        {**schema["properties"]["acceptance"], "$defs": schema["$defs"]}
    ).validate(json.loads(json.dumps(accepted["acceptance"])))
    assert [f for f in accepted["findings"] if f["component"] == "acceptance"] == []
    h100_machine(fp, state="Completed", status="Success", active=True)
    trained = audit.build_document(driver, [("nvidia", audit.collect_nvidia)])
    assert trained["findings"] == []
    assert failed_checks(trained, {"gpus": {"nvlinks_active": {"min": 18, "required": True}}}) == []
    assert failed_checks(trained, {"gpus": {"nvlinks_active": {"min": 19}}}) == [
        f"gpu {gpu['bus_id']} (NVIDIA H100 80GB HBM3): active NVLinks 18, expected at least 19"
        for gpu in trained["nvidia"]["gpus"]
    ]


def test_untrained_without_topology_counts_is_left_out_with_a_note():
    gpus = [
        {
            "bus_id": f"0000:0{n}:00.0",
            "fabric": {"state": "Not Started", "status": None},
            "nvlink": {"supported": True, "active_links": 0, "links": []},
            "topology": None,
        }
        for n in range(2)
    ]
    made = audit.make_profile({"nvidia": {"gpus": gpus}})
    assert "nvlinks_active" not in made["gpus"]
    assert made["description"].startswith("gpus.nvlinks_active left out")


def test_required_must_be_a_bool_and_only_where_a_field_can_be_unknown():
    with pytest.raises(audit.ProfileError, match=r"gpus\.nvlinks_active\.required: expected true or false"):
        audit.normalize_profile({"gpus": {"nvlinks_active": {"min": 18, "required": "yes"}}})
    with pytest.raises(audit.ProfileError, match=r"gpus\.link_width: a range has only"):
        audit.normalize_profile({"gpus": {"link_width": {"min": 16, "required": True}}})
