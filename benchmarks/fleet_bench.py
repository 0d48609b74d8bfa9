#!/usr/bin/env python3
"""Benchmark of scripts/fleet_report.py over 1,000 documents (target: the whole command under 2 s).

The documents: the real audit run on real fixture outputs (tests/scripts/fleet_docs.py: a GPU server, a
server with a failed disk, ...), then copied round-robin into DIR with a serial and a time of their own
each (one server in ten audited twice, so the report also has older documents to list), plus a few files
that are not bee documents. Prints the number and size of the documents, the wall time of
`python3 scripts/fleet_report.py DIR -o report.html --csv report.csv` (best and median of several runs),
its parts measured in-process (reading, grouping, HTML, CSV), and the size of the page.

Usage: python3 benchmarks/fleet_bench.py [--documents N] [--runs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts import fleet_report  # noqa: E402
from tests.scripts.fleet_docs import make_fleet  # noqa: E402

TARGET_SECONDS = 2.0


def fleet_folder(folder: Path, work: Path, count: int) -> int:
    """Write `count` documents into `folder` (see the module docstring); return their total bytes."""
    real = [json.loads(path.read_text()) for path in make_fleet(work / "real", work / "audit").values()]
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    total = 0
    for index in range(count):
        server = index - 1 if index % 10 == 9 else index  # every tenth document: a server's second one
        document = json.loads(json.dumps(real[server % len(real)]))
        system = (document.get("board") or {}).get("system")
        if system is not None:
            system["serial"] = f"BENCH{server:05d}"
        document["generated_at"] = (start + dt.timedelta(minutes=index)).isoformat()
        text = json.dumps(document, indent=2)
        (folder / f"bee-audit-BENCH{server:05d}-{index:05d}.json").write_text(text)
        total += len(text)
    (folder / "README.json").write_text("not json\n")
    (folder / "old.json").write_text(json.dumps({"schema_version": 0, "audit_version": "0.0.1"}))
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="make the documents and the page in DIR and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as scratch:
        work = args.keep or Path(scratch)
        folder = work / "documents"
        folder.mkdir(parents=True, exist_ok=False)
        total = fleet_folder(folder, work, args.documents)
        each = total / args.documents / 1e3
        print(f"documents: {args.documents} ({total / 1e6:.1f} MB, {each:.1f} kB each)")

        command = [sys.executable, str(REPO / "scripts" / "fleet_report.py"), str(folder),
                   "-o", str(work / "report.html"), "--csv", str(work / "report.csv")]
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        best, median = min(times), statistics.median(times)
        verdict = "OK" if median < TARGET_SECONDS else "TOO SLOW"
        print(f"fleet_report.py, whole command: best {best:.2f} s, median {median:.2f} s of {args.runs} runs"
              f" (target < {TARGET_SECONDS:.0f} s: {verdict})")

        started = time.perf_counter()
        documents, rejected = fleet_report.read_folder(folder)
        read = time.perf_counter()
        rows = fleet_report.group(documents)
        summary = fleet_report.fleet_summary(rows, documents, rejected)
        grouped = time.perf_counter()
        page = fleet_report.render_html(rows, summary, rejected, "bench")
        rendered = time.perf_counter()
        fleet_report.render_csv(rows)
        done = time.perf_counter()
        print(f"  in-process: read {read - started:.2f} s, group {grouped - read:.2f} s, "
              f"HTML {rendered - grouped:.2f} s, CSV {done - rendered:.2f} s")
        print(f"page: {len(rows)} servers, {len(rejected)} other files, {len(page) / 1e6:.1f} MB")
        return 0 if median < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
