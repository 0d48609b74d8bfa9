#!/usr/bin/env python3
"""One page for a whole fleet: every bee audit document in a folder, a row per server.

    python scripts/fleet_report.py DIR -o report.html [--csv FILE]

DIR is where the documents arrive (the collector's folder, copies from USB sticks, ...), searched
recursively for `*.json`. Each server is one row, keyed by its machine serial (the audit's own choice:
system, else chassis, else baseboard) and product: the newest document (by `generated_at`) is the row, older
ones are listed in its details. A file that is not a bee document (not JSON, not an audit document, another
`schema_version`) is listed with the reason, never a crash. The page is one self-contained HTML file (inline
CSS and JS, nothing fetched): a summary on top, sortable columns, a click on a row shows that server's
findings, acceptance checks, collector errors and older documents. `--csv` writes the same columns.

Exit status: 0 when the page was written (non-bee files included); 2 with one line for a missing DIR or an
output that cannot be written.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import datetime as dt
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `scripts` and `audit` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audit import audit as bee_audit  # noqa: E402
from scripts import fileops  # noqa: E402

TEMPLATE = Path(__file__).resolve().parent / "templates" / "fleet_report.html.j2"
SEVERITIES = ("critical", "warning", "info")
# The columns of the page and of the CSV, in order: (key of Row.cells, heading).
COLUMNS = (
    ("serial", "Serial"),
    ("product", "Product"),
    ("cpus", "CPUs"),
    ("memory", "Memory"),
    ("disks", "Disks"),
    ("gpus", "GPUs"),
    ("acceptance", "Acceptance"),
    ("findings", "Findings"),
    ("audited", "Audit time (UTC)"),
)
CSV_COLUMNS = (
    *(heading for key, heading in COLUMNS if key != "findings"),
    "Critical", "Warning", "Info", "Errors", "Older documents", "File", "Not read because",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula
COMMON_FINDINGS = 10  # how many of the most common findings the summary lists
PER_WORKER = 100  # documents per reading process at least: fewer are read in this one
# What the page reads of a document: per key, None for the whole value, a dict for only those keys of an
# object, a one-item list for those keys of each object of a list, each in the audit's order. The rest
# (pcie, sensors, logs, memory modules, SMART details, ...) is skipped unparsed.
PICKED: dict[str, Any] = {
    "schema_version": None, "audit_version": None, "generated_at": None, "hostname": None, "board": None,
    "cpu": None, "memory": {"total_slots": None, "populated_slots": None, "total_bytes": None},
    "storage": [{"size_bytes": None}], "nvidia": {"gpus": [{"product": None}], "without_driver": None},
    "findings": None, "errors": None, "acceptance": None,
}
SECTIONS = tuple(PICKED)


# -- reading documents -----------------------------------------------------------------------------------


@dataclass
class Document:
    """One bee audit document read from `path` (relative to DIR in `name`)."""

    name: str
    data: dict[str, Any]

    def section(self, key: str) -> Any:
        """The document's value at `key`, or None."""
        return self.data.get(key)


@dataclass
class Rejected:
    """A file in DIR that is not a bee document, and why."""

    name: str
    reason: str


class Unexpected(Exception):
    """Text not laid out as json.dumps(indent=2) lays it out: parse it whole instead."""


def load_sections(text: str) -> Any:
    """The PICKED parts of a JSON document. A document as the audit writes it (json.dumps, indent 2: a key
    at depth d starts a line with 2*d spaces and a quote, which no deeper key or string can) is cut at the
    keys and list items it needs and only their values are parsed; anything laid out otherwise is parsed
    whole. Raises JSONDecodeError."""
    return pick(text, 0, PICKED)


def pick(text: str, indent: int, spec: Any) -> Any:
    """The value `text` (indented as at depth indent/2) reduced to `spec` (see PICKED)."""
    if spec is None or not text.startswith(("{\n", "[\n")):
        return json.loads(text)
    try:
        if isinstance(spec, dict) and text[0] == "{":
            return pick_object(text, " " * (indent + 2), spec)
        if isinstance(spec, list) and text[0] == "[":
            return pick_list(text, indent, spec[0])
    except Unexpected:
        pass
    return json.loads(text)


def pick_object(text: str, inner: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The keys of `spec` of an indented object whose keys are indented by `inner` (a line starting with
    `inner` and a quote is a key of this object). A few keys are found directly, each searched from where
    the one before ended (they come in the audit's order; from the start when not); many (the outer
    object) by one pass over every key."""
    body = text.rstrip()
    if not body.endswith("}"):
        raise Unexpected
    marker = "\n" + inner + '"'
    found: list[tuple[str, int, int]] = []  # (key, where its value starts, where the next key starts)
    if len(spec) > 4:
        position = text.find(marker)
        while position != -1:
            colon = text.find('": ', position + len(marker))
            if colon == -1:
                raise Unexpected
            following = text.find(marker, colon)
            key = text[position + len(marker):colon]
            found.append((json.loads(f'"{key}"') if "\\" in key else key, colon + 3, following))
            position = following
    else:
        cursor = 0
        for key in spec:
            head = f"{marker}{key}\": "
            at = text.find(head, cursor)
            if at == -1 and cursor:
                at = text.find(head, 0, cursor + len(head))
            if at != -1:
                following = text.find(marker, at + len(head))
                found.append((key, at + len(head), following))
                cursor = at + len(head) if following == -1 else following
    data = {}
    for key, start, stop in found:
        if key in spec:
            value = text[start:len(body) - 1 if stop == -1 else stop].rstrip().removesuffix(",")
            data[key] = pick(value, len(inner), spec[key])
    return data


def pick_list(text: str, indent: int, spec: Any) -> list[Any]:
    """Each object of an indented list (depth indent/2) reduced to `spec`; a list holding anything but
    objects is Unexpected."""
    inner = " " * (indent + 2)
    close, end = "\n" + inner + "}", "\n" + " " * indent + "]"
    items = []
    position = 2  # after "[\n"
    while True:
        if not text.startswith(inner, position):
            raise Unexpected
        start = position + len(inner)
        if text.startswith("{}", start):
            after = start + 2
        elif text.startswith("{\n", start) and (stop := text.find(close, start)) != -1:
            after = stop + len(close)
        else:
            raise Unexpected
        items.append(pick(text[start:after], len(inner), spec))
        if text.startswith(",\n", after):
            position = after + 2
        elif text.startswith(end, after) and not text[after + len(end):].strip():
            return items
        else:
            raise Unexpected


def read_document(path: Path, name: str) -> Document | Rejected:
    """Parse one file: a Document when it is a bee audit document of the schema this report reads, else a
    Rejected with a one-line reason."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return Rejected(name, f"cannot be read: {exc.strerror or exc}")
    try:
        data = load_sections(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return Rejected(name, "not UTF-8 text")
    except json.JSONDecodeError as exc:
        return Rejected(name, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    except RecursionError:
        return Rejected(name, "not JSON this report can read (nested too deeply)")
    if not isinstance(data, dict) or "schema_version" not in data or "audit_version" not in data:
        return Rejected(name, "JSON, but not a bee audit document (no schema_version/audit_version)")
    version = data.get("schema_version")
    if version != bee_audit.SCHEMA_VERSION:
        return Rejected(
            name,
            f"bee document of schema_version {version!r}; this report reads {bee_audit.SCHEMA_VERSION} "
            "(re-run the audit, or --replay its capture with this audit)",
        )
    return Document(name, data)


def read_summaries(folder: Path, names: list[str]) -> list[Version | Rejected]:
    """Read and summarise the files `names` of `folder`, in order."""
    found: list[Version | Rejected] = []
    for name in names:
        result = read_document(folder / name, name)
        found.append(summarise(result) if isinstance(result, Document) else result)
    return found


def read_folder(folder: Path) -> tuple[list[Version], list[Rejected]]:
    """Every `*.json` file under `folder` (hidden files and temporary names skipped), read in name order
    and summarised at once; a large folder by one process per CPU."""
    names = []
    for path in sorted(folder.rglob("*.json")):
        name = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in Path(name).parts) or not path.is_file():
            continue  # an upload still in progress (nginx, rsync and our own writes use hidden temp names)
        names.append(name)
    workers = min(os.cpu_count() or 1, 8, len(names) // PER_WORKER)
    if workers < 2:
        results = read_summaries(folder, names)
    else:
        size = -(-len(names) // workers)
        chunks = [names[start:start + size] for start in range(0, len(names), size)]
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            parts = pool.map(read_summaries, [folder] * len(chunks), chunks)
            results = [item for part in parts for item in part]
    documents = [item for item in results if isinstance(item, Version)]
    rejected = [item for item in results if isinstance(item, Rejected)]
    return documents, rejected


# -- what a row shows ------------------------------------------------------------------------------------


def as_dict(value: Any) -> dict[str, Any]:
    """`value` when it is a dict, else an empty one (documents from the field may hold anything)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """`value` when it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def number(value: Any) -> float | None:
    """`value` when it is a real number (not a bool), else None."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def text(value: Any) -> str | None:
    """`value` as a non-empty stripped string, else None."""
    return value.strip() or None if isinstance(value, str) else None


def size_text(size: float | None, unit: int = 1 << 30, name: str = "GiB") -> str:
    """Bytes in `name` units, at most one decimal ("512 GiB", "1.5 TiB")."""
    if size is None:
        return "?"
    value = size / unit
    return f"{value:.0f} {name}" if value >= 100 or value == int(value) else f"{value:.1f} {name}"


def disk_size_text(size: float) -> str:
    """A disk capacity as vendors print it (decimal): "960 GB", "3.8 TB"."""
    return size_text(size, 10**12, "TB") if size >= 10**12 else size_text(size, 10**9, "GB")


def cpus(document: Document) -> tuple[str, float | None]:
    """"2x Xeon Gold 6338 (64 cores)" and the number of cores to sort by (else the sockets)."""
    cpu = as_dict(document.section("cpu"))
    sockets = [as_dict(item) for item in as_list(cpu.get("sockets"))]
    populated = [item for item in sockets if item.get("populated")]
    if not sockets:
        return "?", None
    models = collections.Counter(bee_audit.short_cpu_model(text(item.get("model"))) for item in populated)
    parts = [f"{count}x {model}" for model, count in models.items()] or ["no CPU"]
    cores = number(cpu.get("total_cores"))
    shown = " + ".join(parts) + (f" ({cores:g} cores)" if cores else "")
    return shown, cores if cores is not None else len(populated)


def memory(document: Document) -> tuple[str, float | None]:
    """"512 GiB (16/32 DIMMs)" and the total in bytes to sort by."""
    mem = as_dict(document.section("memory"))
    total = number(mem.get("total_bytes"))
    if not mem:
        return "?", None
    populated, slots = number(mem.get("populated_slots")), number(mem.get("total_slots"))
    dimms = f" ({populated:g}/{slots:g} DIMMs)" if populated is not None and slots is not None else ""
    return size_text(total) + dimms, total


def disks(document: Document) -> tuple[str, float | None]:
    """"4 (15.4 TB)" (the count and the sum of the known sizes) and the count to sort by."""
    storage = document.section("storage")
    if not isinstance(storage, list):
        return "?", None
    sizes = [number(as_dict(disk).get("size_bytes")) for disk in storage]
    known = [size for size in sizes if size]
    total = f" ({disk_size_text(sum(known))})" if known else ""
    return f"{len(storage)}{total}", len(storage)


def gpus(document: Document) -> tuple[str, float | None]:
    """"8x NVIDIA H100 80GB HBM3" per product, "none" when the driver saw none, "-" when nvidia did not
    run (no NVIDIA driver loaded), and the count to sort by. The GPUs are `nvidia.gpus` (schema 3 on), or
    the `nvidia` list itself (older documents); NVIDIA GPUs no driver took are added as "+ 2 without a
    driver", and those bound but missing from nvidia-smi as "+ 1 not usable"."""
    nvidia = document.section("nvidia")
    unbound = unusable = 0
    if isinstance(nvidia, dict):
        unbound = len(nvidia.get("without_driver") or [])
        unusable = len(nvidia.get("not_usable") or [])
        nvidia = nvidia.get("gpus")
    if not isinstance(nvidia, list):
        return "-", 0
    missing = [f"{unbound} without a driver"] if unbound else []
    missing += [f"{unusable} not usable"] if unusable else []
    if not nvidia:
        return " + ".join(missing) or "none", 0
    models = collections.Counter(text(as_dict(gpu).get("product")) or "?" for gpu in nvidia)
    shown = [f"{count}x {model}" for model, count in models.items()] + missing
    return " + ".join(shown), len(nvidia)


def acceptance(document: Document) -> dict[str, Any] | None:
    """The acceptance verdict, when the audit checked the server against a profile (--expect):
    {"verdict": "PASS"|"FAIL", "profile", "sha256", "failed": [checks that did not hold]}."""
    section = document.section("acceptance")
    if not isinstance(section, dict) or not isinstance(section.get("passed"), bool):
        return None
    profile = section.get("profile")
    name = text(as_dict(profile).get("name")) if isinstance(profile, dict) else text(profile)
    checks = [as_dict(check) for check in as_list(section.get("checks"))]
    failed = [check for check in checks if check.get("passed", check.get("held")) is False]
    return {
        "verdict": "PASS" if section["passed"] else "FAIL",
        "profile": name or text(section.get("name")),
        "sha256": text(section.get("sha256")) or text(as_dict(profile).get("sha256")),
        "checks": len(checks),
        "failed": failed,
    }


def findings(document: Document) -> list[dict[str, str]]:
    """The document's findings, each with severity, component and message as text, worst first."""
    found = []
    for item in as_list(document.section("findings")):
        item = as_dict(item)
        severity = text(item.get("severity")) or "info"
        found.append({
            "severity": severity if severity in SEVERITIES else "info",
            "component": str(item.get("component") or ""),
            "message": str(item.get("message") or ""),
        })
    rank = {severity: index for index, severity in enumerate(SEVERITIES)}
    return sorted(found, key=lambda item: rank[item["severity"]])


def errors(document: Document) -> list[dict[str, str]]:
    """The collector errors of the document, as text: what the audit could not read."""
    found = []
    for item in as_list(document.section("errors")):
        item = as_dict(item)
        command = item.get("command")
        found.append({
            "collector": str(item.get("collector") or ""),
            "command": " ".join(map(str, command)) if isinstance(command, list) else str(command or ""),
            "message": str(item.get("message") or ""),
        })
    return found


def audit_time(document: Document) -> dt.datetime | None:
    """`generated_at` as an aware UTC datetime, None when absent or not a time."""
    value = text(document.section("generated_at"))
    if value is None:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def time_text(stamp: dt.datetime | None) -> str:
    """"2026-12-01 16:48" or "?"."""
    return stamp.strftime("%Y-%m-%d %H:%M:%S") if stamp else "?"


def product(document: Document) -> str | None:
    """The system's product name, else the baseboard's."""
    board = as_dict(document.section("board"))
    for part in ("system", "baseboard"):
        name = text(as_dict(board.get(part)).get("product"))
        if name:
            return name
    return None


def serial(document: Document) -> str | None:
    """The machine serial as the audit names the machine (bee_audit.machine_serial), or None."""
    try:
        return text(bee_audit.machine_serial(document.data))
    except (AttributeError, TypeError):  # a board section of the wrong shape
        return None


def finding_kind(message: str) -> str:
    """A finding's message with its numbers as "n": "3 reallocated sectors" and "12 reallocated sectors"
    are one kind of finding. Digits inside a word (a model, a serial, "x16") are kept."""
    return re.sub(r"\b(?:0x[0-9a-f]+|\d+(?:\.\d+)*)\b", "n", message, flags=re.I)


# -- rows and the page -----------------------------------------------------------------------------------


@dataclass
class Version:
    """One document of a server, summarised for a row or for the list of older documents (the document
    itself is not kept: a thousand large ones would not fit in memory)."""

    name: str                        # the file, relative to DIR
    key: str                         # server_key
    serial: str | None
    product: str | None
    hostname: str | None
    audit_version: str | None
    time: dt.datetime | None
    hardware: dict[str, tuple[str, Any]]  # cpus, memory, disks, gpus: (shown, sort value)
    findings: list[dict[str, str]]
    errors: list[dict[str, str]]
    acceptance: dict[str, Any] | None

    @property
    def counts(self) -> dict[str, int]:
        """Findings per severity."""
        counted = collections.Counter(item["severity"] for item in self.findings)
        return {severity: counted[severity] for severity in SEVERITIES}


@dataclass
class Row:
    """One server: its newest document (`latest`) and the older ones."""

    key: str
    versions: list[Version] = field(default_factory=list)

    @property
    def latest(self) -> Version:
        """The newest document (by audit time, then file name)."""
        return self.versions[0]

    @property
    def older(self) -> list[Version]:
        """The older documents, newest first."""
        return self.versions[1:]

    def cells(self) -> dict[str, tuple[str, Any]]:
        """Per column key: the text shown and the value the column sorts by."""
        latest = self.latest
        verdict = latest.acceptance["verdict"] if latest.acceptance else ""
        counts = latest.counts
        shown = " ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s]) or "none"
        return {
            "serial": (latest.serial or "unknown", latest.serial or ""),
            "product": (latest.product or "?", latest.product or ""),
            **latest.hardware,
            "acceptance": (verdict or "-", {"FAIL": 0, "PASS": 2}.get(verdict, 1)),
            "findings": (shown, counts["critical"] * 10**6 + counts["warning"] * 10**3 + counts["info"]),
            "audited": (time_text(latest.time), latest.time.isoformat() if latest.time else ""),
        }


def summarise(document: Document) -> Version:
    """The parts of a document the page shows."""
    return Version(
        name=document.name,
        key=server_key(document),
        serial=serial(document),
        product=product(document),
        hostname=text(document.section("hostname")),
        audit_version=text(document.section("audit_version")),
        time=audit_time(document),
        hardware={"cpus": cpus(document), "memory": memory(document), "disks": disks(document),
                  "gpus": gpus(document)},
        findings=findings(document),
        errors=errors(document),
        acceptance=acceptance(document),
    )


def server_key(document: Document) -> str:
    """What makes two documents one server: the machine serial with the product (one serial on two
    products is two servers); without a serial, the system UUID; without either, the file itself."""
    serial_text = serial(document)
    if serial_text:
        return f"serial:{serial_text}\0{product(document) or ''}"
    uuid = text(as_dict(as_dict(document.section("board")).get("system")).get("uuid"))
    return f"uuid:{uuid}" if uuid else f"file:{document.name}"


def group(versions: list[Version]) -> list[Row]:
    """Rows, one per server, each with its documents newest first; rows ordered worst first (critical
    findings, failed acceptance), then by serial."""
    rows: dict[str, Row] = {}
    for version in versions:
        rows.setdefault(version.key, Row(version.key)).versions.append(version)
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    for row in rows.values():
        row.versions.sort(key=lambda version: (version.time or oldest, version.name), reverse=True)

    def order(row: Row) -> tuple:
        verdict = row.latest.acceptance["verdict"] if row.latest.acceptance else None
        serial_text = row.latest.serial or "~"  # rows without a serial last
        return (-row.latest.counts["critical"], verdict != "FAIL", serial_text, row.key)

    return sorted(rows.values(), key=order)


def fleet_summary(rows: list[Row], documents: list[Version], rejected: list[Rejected]) -> dict[str, Any]:
    """The figures on top of the page: servers, passed, failed, without a profile, with critical
    findings, documents read, files rejected, the most common findings (by servers having them), and
    serials seen on more than one product."""
    verdicts = collections.Counter(
        row.latest.acceptance["verdict"] if row.latest.acceptance else None for row in rows
    )
    kinds: collections.Counter = collections.Counter()
    for row in rows:
        kinds.update({(item["severity"], finding_kind(item["message"])) for item in row.latest.findings})
    rank = {severity: index for index, severity in enumerate(SEVERITIES)}
    common = sorted(kinds.items(), key=lambda item: (-item[1], rank[item[0][0]], item[0][1]))
    products_by_serial: dict[str, set[str]] = collections.defaultdict(set)
    for row in rows:
        if row.latest.serial:
            products_by_serial[row.latest.serial].add(row.latest.product or "?")
    return {
        "servers": len(rows),
        "passed": verdicts["PASS"],
        "failed": verdicts["FAIL"],
        "unchecked": verdicts[None],
        "critical": sum(1 for row in rows if row.latest.counts["critical"]),
        "documents": len(documents),
        "rejected": len(rejected),
        "common": [
            {"severity": severity, "kind": kind, "servers": count}
            for (severity, kind), count in common[:COMMON_FINDINGS]
        ],
        "shared_serials": {
            serial_text: sorted(names) for serial_text, names in sorted(products_by_serial.items())
            if len(names) > 1
        },
    }


def render_html(rows: list[Row], summary: dict[str, Any], rejected: list[Rejected], title: str) -> str:
    """The self-contained page (jinja2, autoescaped: every value from a document is text, never markup)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE.name).render(
        title=title,
        generated=time_text(dt.datetime.now(dt.UTC)),
        columns=COLUMNS,
        severities=SEVERITIES,
        rows=[{"row": row, "cells": row.cells()} for row in rows],
        summary=summary,
        rejected=rejected,
        time_text=time_text,
    )


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a text of more than one character starting with = + - @,
    a tab or a carriage return gets a leading ' (CSV injection: a serial like =HYPERLINK(...) from a
    machine's firmware must not run); numbers and a lone "-" stay as they are."""
    if isinstance(value, str) and len(value) > 1 and value.startswith(FORMULA_START):
        return "'" + value
    return value


def render_csv(rows: list[Row], rejected: list[Rejected] | None = None) -> str:
    """The same columns as the page (findings split per severity), one line per server, then one line per
    file that is not a bee document (only its File and why it was not read); every cell through csv_cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        cells = row.cells()
        counts = row.latest.counts
        writer.writerow([csv_cell(cell) for cell in (
            *(cells[key][0] for key, _ in COLUMNS if key != "findings"),
            *(counts[severity] for severity in SEVERITIES),
            len(row.latest.errors),
            len(row.older),
            row.latest.name,
            "",
        )])
    blank = [""] * (len(CSV_COLUMNS) - 2)
    for item in rejected or []:
        writer.writerow([*blank, csv_cell(item.name), csv_cell(item.reason)])
    return out.getvalue()


def build(folder: Path) -> tuple[list[Row], dict[str, Any], list[Rejected]]:
    """Read `folder` and return the rows, the summary and the rejected files."""
    documents, rejected = read_folder(folder)
    rows = group(documents)
    return rows, fleet_summary(rows, documents, rejected), rejected


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fleet_report.py",
        description="One self-contained HTML page (and optionally a CSV) of every bee audit document in DIR.",
    )
    parser.add_argument("folder", type=Path, metavar="DIR", help="folder holding the documents (recursive)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="the HTML page")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write the rows as CSV")
    parser.add_argument("--title", default="bee fleet report", help="the page's title")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the page (and the CSV); 0 when written, 2 with one line on stderr otherwise."""
    args = parse_args(argv)
    if not args.folder.is_dir():
        print(f"fleet_report: {args.folder} is not a folder; give the folder the documents arrive in",
              file=sys.stderr)
        return 2
    rows, summary, rejected = build(args.folder)
    outputs = [(args.output, render_html(rows, summary, rejected, args.title))]
    if args.csv is not None:
        outputs.append((args.csv, render_csv(rows, rejected)))
    for path, content in outputs:
        try:
            fileops.write_atomic(path, content.encode("utf-8"))
        except OSError as exc:
            print(f"fleet_report: cannot write {path}: {exc.strerror or exc}; choose another path",
                  file=sys.stderr)
            return 2
    print(f"fleet_report: {summary['servers']} servers from {summary['documents']} documents"
          f" ({summary['rejected']} other files) -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
