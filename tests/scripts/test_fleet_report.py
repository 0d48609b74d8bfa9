"""scripts/fleet_report.py over real documents (the real audit run on real fixture outputs, see
fleet_docs.py), rendered in a real headless Chromium: the DOM after the page's own JS ran, and a
screenshot."""

from __future__ import annotations

import csv
import html.parser
import io
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from scripts import fleet_report
from tests.paths import REPO_ROOT
from tests.scripts.fleet_docs import accept_fleet, make_fleet

SCRIPT = REPO_ROOT / "scripts" / "fleet_report.py"
@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A collector's folder: nine real documents of eight servers, two with an acceptance verdict, and files
    that are not bee documents."""
    root = tmp_path_factory.mktemp("fleet")
    folder = root / "incoming"
    made = make_fleet(folder, root / "work")
    accept_fleet(made, root / "work")
    (folder / "notes.json").write_text('{"serial": 12,\n  oops}\n')
    (folder / "list.json").write_text("[1, 2, 3]\n")
    other = json.loads(made["s5000vsa-lab"].read_text())
    other["schema_version"] = 999
    (folder / "sub").mkdir()
    (folder / "sub" / "from-the-future.json").write_text(json.dumps(other))
    (folder / "latin1.json").write_bytes(b'{"product": "caf\xe9"}')
    (folder / ".bee-audit-upload.json").write_text("{half")  # an upload in progress: not listed
    (folder / "bee-audit-9000116105-capture.tar.gz").write_bytes(b"\x1f\x8b")  # not *.json: not read
    return {"folder": folder, "made": made, "root": root}


def run_report(folder: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(folder), "-o", str(output), *extra],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def page(fleet):
    """The page and the CSV of the fleet, made by the command line."""
    output = fleet["root"] / "out" / "report.html"
    done = run_report(fleet["folder"], output, "--csv", str(fleet["root"] / "out" / "report.csv"))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"fleet_report: 8 servers from 9 documents (4 other files) -> {output}"
    return output


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run Debian's headless Chromium (root needs --no-sandbox) with its own profile folder."""
    binary = shutil.which("chromium")
    assert binary, "chromium is not installed (apt-get install chromium)"
    done = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
        capture_output=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done


class Rows(html.parser.HTMLParser):
    """The fleet table as the DOM holds it: per server row its data-serial, its cells' text and
    data-sort values, and whether its details row is shown, with the details' text."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self.summary: dict[str, str] = {}
        self.rejected: list[str] = []
        self.common: list[str] = []
        self.scripts = 0
        self._cell: dict | None = None
        self._in: str | None = None
        self._text: list[str] = []
        self._depth = 0  # tables nested in a details row

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self._in == "details" and tag in ("td", "p", "h3"):
            self._text.append(" ")
        if self._in == "details" and tag == "tr":
            self._depth += 1
        if tag == "script":
            self.scripts += 1
        if tag == "tr" and "server" in (attrs.get("class") or "").split():
            self.rows.append({"serial": attrs.get("data-serial"), "cells": [], "sort": [], "open": False,
                              "details": ""})
        elif tag == "tr" and attrs.get("class") == "details":
            self.rows[-1]["open"] = "hidden" not in attrs
            self._in, self._text = "details", []
        elif tag == "td" and self._in is None and self.rows and (attrs.get("class") or "").startswith("col-"):
            self.rows[-1]["sort"].append(attrs.get("data-sort"))
            self._in, self._text = "cell", []
        elif tag == "b" and (attrs.get("id") or "").startswith("count-"):
            self._in, self._text, self._cell = "count", [], {"id": attrs["id"]}
        elif tag == "li" and self._in is None:
            self._in, self._text = "li", []

    def handle_endtag(self, tag):
        text = " ".join("".join(self._text).split())
        if self._in == "cell" and tag == "td":
            self.rows[-1]["cells"].append(text)
            self._in = None
        elif self._in == "details" and tag == "tr" and self._depth:
            self._depth -= 1
        elif self._in == "details" and tag == "tr":
            self.rows[-1]["details"] = text
            self._in = None
        elif self._in == "count" and tag == "b":
            self.summary[self._cell["id"].removeprefix("count-")] = text
            self._in = None
        elif self._in == "li" and tag == "li":
            (self.rejected if ": " in text and ".json" in text else self.common).append(text)
            self._in = None

    def handle_data(self, data):
        if self._in:
            self._text.append(data)


def dom(tmp_path: Path, page: Path, fragment: str = "") -> tuple[Rows, str]:
    """The page's DOM after its scripts ran (chromium --dump-dom), parsed."""
    text = chromium(tmp_path, "--dump-dom", page.as_uri() + fragment).stdout.decode()
    parser = Rows()
    parser.feed(text)
    return parser, text


def cells(row: dict) -> dict[str, str]:
    return dict(zip([key for key, _ in fleet_report.COLUMNS], row["cells"], strict=True))


def test_dom_shows_one_row_per_server_worst_first(page, tmp_path):
    parsed, _ = dom(tmp_path, page)
    assert [row["serial"] for row in parsed.rows] == [
        "QTFCQ57140285",  # critical findings (a failed disk, failed acceptance) first
        "1634NM1107", "4242", "4242", "9000116105", "QSSA64700622", "", "",
    ]
    assert all(not row["open"] for row in parsed.rows)
    qct, oracle, _, _, x9dbl, s5000, *anonymous = (cells(row) for row in parsed.rows)
    # values a person reads in the fixtures: netboxagent-qct-quantamicro-x10e-9n.txt, the scrutiny FAILED
    # Hitachi (SMART failed, 1975 reallocated, 8 pending sectors), the lab's five disks
    assert qct["product"] == "QuantaMicro X10E-9N"
    assert qct["cpus"] == "1x Intel Xeon E3-1240 v6 (4 cores)"
    assert qct["memory"] == "32 GiB (2/4 DIMMs)"
    assert qct["acceptance"] == "FAIL"
    assert qct["findings"] == "2 2"  # badges: 2 critical (SMART, the failed health check), 2 warnings
    # uroot-supermicro-x9dbl-server.bin through the real dmidecode, datakit's 8x V100S XML, two NVMe disks
    # of 1024209543168 + 4000787030016 bytes (mvth1s-hwbench lsblk)
    assert x9dbl["serial"] == "9000116105 +1 older"
    assert x9dbl["product"] == "X9DBL-3F/X9DBL-iF"
    assert x9dbl["cpus"] == "2x Intel Xeon E5-2403 v2 (8 cores)"
    assert x9dbl["memory"] == "48 GiB (6/6 DIMMs)"
    assert x9dbl["disks"] == "2 (5.0 TB)"
    assert x9dbl["gpus"] == "8x Tesla V100S-PCIE-32GB"
    assert x9dbl["acceptance"] == "-" and x9dbl["findings"] == "none"
    assert oracle["product"] == "ORACLE SERVER X5-2" and oracle["acceptance"] == "PASS"
    assert oracle["gpus"] == "1x NVIDIA A100-SXM4-40GB"
    assert oracle["cpus"] == "2x Intel Xeon E5-2699 v3 (36 cores)"
    assert s5000["product"] == "MP Server" and s5000["gpus"] == "-"  # no NVIDIA driver: nvidia did not run
    assert sorted(row["product"] for row in anonymous) == ["G482-Z54-00", "PowerEdge R740"]
    assert all(row["serial"] == "unknown" and row["disks"] == "?" for row in anonymous)


def test_summary_counts_and_most_common_findings(page, tmp_path):
    parsed, text = dom(tmp_path, page)
    assert parsed.summary == {"servers": "8", "passed": "1", "failed": "1", "unchecked": "6", "critical": "1"}
    assert parsed.common[0] == "critical SMART overall health self-assessment FAILED — 1 server"
    assert "warning n reallocated sectors — 1 server" in parsed.common
    assert ("critical health: n critical findings: disk /dev/sda (Hitachi HDS721050DLE630, MSK423Y20S3HBC): "
            "SMART overall health self-assessment FAILED — 1 server") in parsed.common
    # two different products behind one placeholder serial are two rows, and the page says so
    assert "<code>4242</code> (PowerEdge M630, ProLiant SL4540 Gen8)" in text


def test_files_that_are_not_bee_documents_are_listed_with_the_reason(page, tmp_path):
    parsed, _ = dom(tmp_path, page)
    assert parsed.rejected == [
        "latin1.json: not UTF-8 text",
        "list.json: JSON, but not a bee audit document (no schema_version/audit_version)",
        "notes.json: not JSON (Expecting property name enclosed in double quotes at line 2 column 3)",
        "sub/from-the-future.json: bee document of schema_version 999; this report reads "
        f"{fleet_report.bee_audit.SCHEMA_VERSION} (re-run the audit, or --replay its capture with this "
        "audit)",
    ]


def test_a_link_sorts_and_opens_a_server(page, fleet, tmp_path):
    parsed, _ = dom(tmp_path, page, "#sort=memory&dir=desc&open=9000116105")
    memory = [float(row["sort"][3]) for row in parsed.rows]
    assert memory == sorted(memory, reverse=True) and memory[0] == 512 * 2**30  # the Oracle X5-2's 16x32 GiB
    opened = [row for row in parsed.rows if row["open"]]
    assert [row["serial"] for row in opened] == ["9000116105"]
    older = fleet["made"]["x9dbl-gpu-older"].name
    assert "Older documents (1)" in opened[0]["details"] and older in opened[0]["details"]
    assert "No findings." in opened[0]["details"]


def test_sorting_by_serial_and_by_findings(page, fleet, tmp_path):
    parsed, _ = dom(tmp_path, page, "#sort=serial")
    serials = [row["serial"] for row in parsed.rows]
    assert serials == ["1634NM1107", "4242", "4242", "9000116105", "QSSA64700622", "QTFCQ57140285", "", ""]
    parsed, _ = dom(tmp_path, page, "#sort=findings&dir=desc&open=QTFCQ57140285")
    assert parsed.rows[0]["serial"] == "QTFCQ57140285"
    details = parsed.rows[0]["details"]
    acceptance = json.loads(fleet["made"]["qct-failed-disk"].read_text())["acceptance"]  # the audit's
    assert (f"Acceptance: FAIL profile {acceptance['profile']} sha256 {acceptance['sha256'][:12]}, 1 of "
            f"{acceptance['checks_total']} checks failed") in details
    assert "critical disk /dev/sda (Hitachi HDS721050DLE630, MSK423Y20S3HBC) SMART overall health " \
           "self-assessment FAILED" in details
    assert ("critical acceptance health: 1 critical findings: disk /dev/sda (Hitachi HDS721050DLE630, "
            "MSK423Y20S3HBC): SMART overall health self-assessment FAILED") in details


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the unfiltered scanlines of an 8-bit RGB(A) non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0
    step = 4 if color == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * step
    lines, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up, corner = previous[x], previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        lines.append(bytes(line))
        previous = line
    return width, height, [bytes(line[i:i + 3]) for line in lines for i in range(0, stride, step)]


def test_screenshot_shows_the_page(page, tmp_path):
    shot = tmp_path / "page.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,900", page.as_uri())
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1400, 900)
    colours = set(pixels)
    assert len(colours) > 50  # text, badges, lines: not a blank page
    critical, passed = bytes.fromhex("b3261e"), bytes.fromhex("1e7b34")  # the page's --crit and --pass
    assert pixels.count(critical) > 200  # the red badges of the failing server
    assert pixels.count(passed) > 100  # the green PASS badge and figure


def test_the_page_is_self_contained_and_escapes_document_text(fleet, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    document = json.loads(fleet["made"]["oracle-x5-2"].read_text())
    document["board"]["system"]["product"] = '<img src=x onerror="document.title=1"><script>alert(1)</script>'
    (folder / "evil.json").write_text(json.dumps(document))
    output = tmp_path / "report.html"
    assert run_report(folder, output).returncode == 0
    text = output.read_text()
    assert "http://" not in text and "https://" not in text and "<link" not in text
    assert text.count("<script") == 1 and "<script src" not in text
    parsed, dumped = dom(tmp_path, output)
    assert parsed.scripts == 1
    assert cells(parsed.rows[0])["product"].startswith('<img src=x onerror="document.title=1">')
    assert "<title>bee fleet report</title>" in dumped


@pytest.mark.parametrize("garbage", ["text", 7, None, [], {}, [1, "x", None], {"sockets": "x"}])
def test_documents_of_the_wrong_shape_still_make_a_row(fleet, tmp_path, garbage):
    document = json.loads(fleet["made"]["x9dbl-gpu"].read_text())
    for key in ("board", "cpu", "memory", "storage", "nvidia", "findings", "errors", "acceptance",
                "generated_at"):
        document[key] = garbage
    rows = fleet_report.group([fleet_report.summarise(fleet_report.Document("odd.json", document))])
    row = rows[0].cells()
    assert row["serial"][0] == "unknown" and row["acceptance"][0] == "-"
    html = fleet_report.render_html(rows, fleet_report.fleet_summary(rows, [], []), [], "t")
    assert "odd.json" in html
    assert fleet_report.render_csv(rows).count("\n") == 2


def test_csv_has_the_page_columns(page, fleet):
    with (fleet["root"] / "out" / "report.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    headings = [heading for key, heading in fleet_report.COLUMNS if key != "findings"]
    assert list(table[0])[: len(headings)] == headings
    assert list(table[0])[len(headings):] == ["Critical", "Warning", "Info", "Errors", "Older documents",
                                             "File", "Not read because"]
    by_serial = {row["Serial"]: row for row in table}
    assert by_serial["QTFCQ57140285"]["Acceptance"] == "FAIL"
    assert (by_serial["QTFCQ57140285"]["Critical"], by_serial["QTFCQ57140285"]["Warning"]) == ("2", "2")
    assert by_serial["9000116105"]["GPUs"] == "8x Tesla V100S-PCIE-32GB"
    assert by_serial["9000116105"]["Older documents"] == "1"
    assert by_serial["9000116105"]["File"] == fleet["made"]["x9dbl-gpu"].name
    servers = [row for row in table if not row["Not read because"]]
    assert len(servers) == 8
    not_read = {row["File"]: row["Not read because"] for row in table if row["Not read because"]}
    assert sorted(not_read) == ["latin1.json", "list.json", "notes.json", "sub/from-the-future.json"]
    assert not_read["sub/from-the-future.json"].startswith("bee document of schema_version 999;")
    assert all(row["Serial"] == "" for row in table if row["Not read because"])


def test_csv_cells_that_a_spreadsheet_would_run_are_text(fleet, tmp_path):
    document = json.loads(fleet["made"]["x9dbl-gpu"].read_text())
    document["board"]["system"]["serial"] = '=HYPERLINK("http://evil.example","x")'
    document["board"]["system"]["product"] = "@SUM(1+1)"
    rows = fleet_report.group([fleet_report.summarise(fleet_report.Document("-evil.json", document))])
    rejected = [fleet_report.Rejected("+bad.json", "=1+1")]
    table = list(csv.DictReader(io.StringIO(fleet_report.render_csv(rows, rejected))))
    assert table[0]["Serial"] == '\'=HYPERLINK("http://evil.example","x")'
    assert table[0]["Product"] == "'@SUM(1+1)" and table[0]["File"] == "'-evil.json"
    assert (table[1]["File"], table[1]["Not read because"]) == ("'+bad.json", "'=1+1")
    assert fleet_report.csv_cell("-") == "-" and fleet_report.csv_cell(3) == 3
    assert fleet_report.csv_cell("Tesla V100") == "Tesla V100"


def test_an_empty_folder_is_a_page_saying_so(tmp_path):
    (tmp_path / "in").mkdir()
    assert run_report(tmp_path / "in", tmp_path / "r.html").returncode == 0
    assert "No bee documents in this folder." in (tmp_path / "r.html").read_text()


def test_a_missing_folder_and_an_unwritable_output_are_one_line_and_exit_2(tmp_path):
    done = run_report(tmp_path / "nowhere", tmp_path / "r.html")
    assert done.returncode == 2
    assert done.stderr == (f"fleet_report: {tmp_path / 'nowhere'} is not a folder; give the folder the "
                           "documents arrive in\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "file").write_text("")
    done = run_report(tmp_path / "in", tmp_path / "file" / "r.html")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"fleet_report: cannot write {tmp_path / 'file' / 'r.html'}: ")


def projected(value, spec):
    """What load_sections promises: `value` reduced to `spec` (fleet_report.PICKED), by a full parse."""
    if spec is None:
        return value
    if isinstance(spec, dict) and isinstance(value, dict):
        return {key: projected(value[key], spec[key]) for key in spec if key in value}
    if isinstance(spec, list) and isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return [projected(item, spec[0]) for item in value]
    return value


def test_reading_only_the_sections_shown_gives_what_a_full_parse_gives(fleet):
    for path in fleet["made"].values():
        text = path.read_text()
        whole = json.loads(text)
        picked = fleet_report.load_sections(text)
        assert picked == projected(whole, fleet_report.PICKED)
        if whole.get("storage"):
            sizes = [disk["size_bytes"] for disk in whole["storage"]]
            assert [disk["size_bytes"] for disk in picked["storage"]] == sizes
            assert all(set(disk) == {"size_bytes"} for disk in picked["storage"])  # SMART details skipped
        summary = fleet_report.summarise(fleet_report.Document(path.name, picked))
        assert summary == fleet_report.summarise(fleet_report.Document(path.name, whole))
    # shapes a document from the field may have: each still gives what a full parse gives
    document = json.loads(fleet["made"]["x9dbl-gpu"].read_text())
    shapes = [([], {}, {"gpus": [], "without_driver": []}),
              ([{}, {"size_bytes": 5}], {"total_bytes": None}, [{"product": "old list"}]),
              ([None, {"size_bytes": 1}], [], None), ("text", {"slots": [{}]}, 7)]
    for storage, memory, nvidia in shapes:
        document.update(storage=storage, memory=memory, nvidia=nvidia)
        text = fleet_report.bee_audit.render(document)
        assert fleet_report.load_sections(text) == projected(json.loads(text), fleet_report.PICKED)
    # a message holding what looks like a key of the outer object, and a compact document (parsed whole)
    document = json.loads(fleet["made"]["qct-failed-disk"].read_text())
    document["findings"].append({"severity": "info", "component": "x", "message": '\n  "pcie": [\n  "a": '})
    indented = fleet_report.bee_audit.render(document)
    assert fleet_report.load_sections(indented)["findings"] == document["findings"]
    compact = json.dumps(document)
    assert fleet_report.load_sections(compact) == document
    with pytest.raises(json.JSONDecodeError):
        fleet_report.load_sections(indented[: len(indented) // 2])  # a cut upload is no document


def test_a_large_folder_is_read_by_several_processes_with_the_same_result(fleet, monkeypatch):
    sequential = fleet_report.read_folder(fleet["folder"])
    monkeypatch.setattr(fleet_report, "PER_WORKER", 2)
    monkeypatch.setattr(fleet_report.os, "cpu_count", lambda: 3)
    parallel = fleet_report.read_folder(fleet["folder"])
    assert parallel == sequential
    assert [version.name for version in parallel[0]] == sorted(version.name for version in parallel[0])


@pytest.mark.parametrize("nvidia, shown", [
    ({"kernel_module": None, "gpus": [{"product": "NVIDIA B200"}] * 8, "without_driver": []},
     ("8x NVIDIA B200", 8)),                                          # schema 3: nvidia.gpus
    ([{"product": "Tesla V100S-PCIE-32GB"}] * 2, ("2x Tesla V100S-PCIE-32GB", 2)),  # schema 2: a list
    ({"kernel_module": None, "gpus": [], "without_driver": [{"address": "0000:c1:00.0"}]},
     ("1 without a driver", 0)),
    ({"kernel_module": None, "gpus": [{"product": "NVIDIA H100"}], "without_driver": [{}, {}]},
     ("1x NVIDIA H100 + 2 without a driver", 1)),
    ({"kernel_module": None, "gpus": [], "without_driver": []}, ("none", 0)),
    ({"kernel_module": None, "gpus": [{"product": "NVIDIA H100"}], "without_driver": [{}],
      "not_usable": [{"address": "0000:c1:00.0"}]},
     ("1x NVIDIA H100 + 1 without a driver + 1 not usable", 1)),
    ({"kernel_module": None, "gpus": [], "without_driver": [], "not_usable": [{}]}, ("1 not usable", 0)),
    (None, ("-", 0)),
])
def test_gpus_of_both_document_shapes(nvidia, shown):
    assert fleet_report.gpus(fleet_report.Document("a.json", {"nvidia": nvidia})) == shown
