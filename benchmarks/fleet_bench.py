#!/usr/bin/env python3
"""Benchmark of scripts/fleet_report.py over 1,000 documents (target: the whole command under 2 s).

Two fleets of documents made by the real audit: (1) the tests' fleet (tests/scripts/fleet_docs.py: real
fixture outputs of a GPU server, a server with a failed disk, ...; about 20 kB each), (2) the simulated
large 8-GPU server of benchmarks/audit_bench.py (24 disks, ~150 PCI functions; about 200 kB each). Each is
copied round-robin into a folder with a serial and a time of its own per document (one server in ten
audited twice, so the report also lists older documents), plus a few files that are not bee documents.
Per fleet: the number and size of the documents, the wall time of
`python3 scripts/fleet_report.py DIR -o report.html --csv report.csv` (best and median of several runs) and
its peak RSS, its parts measured in-process (reading, grouping, HTML, CSV), and the size of the page.

Usage: python3 benchmarks/fleet_bench.py [--documents N] [--runs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import io
import json
import os
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


def large_server(work: Path) -> dict:
    """The document of audit_bench.py's simulated large 8-GPU server (its own output silenced)."""
    spec = importlib.util.spec_from_file_location("audit_bench", REPO / "benchmarks" / "audit_bench.py")
    audit_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(audit_bench)
    work.mkdir(parents=True)
    with contextlib.redirect_stdout(io.StringIO()):
        audit_bench.simulated(work)
    return json.loads((work / "audit.json").read_text())


def fleet_folder(folder: Path, real: list[dict], count: int) -> int:
    """Write `count` documents made from `real` into `folder` (see the module docstring); return their
    total bytes."""
    folder.mkdir(parents=True)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    total = 0
    for index in range(count):
        server = index - 1 if index % 10 == 9 else index  # every tenth document: a server's second one
        document = json.loads(json.dumps(real[server % len(real)]))
        system = (document.get("board") or {}).get("system")
        if system is not None:
            system["serial"] = f"BENCH{server:05d}"
        document["generated_at"] = (start + dt.timedelta(minutes=index)).isoformat()
        text = fleet_report.bee_audit.render(document)  # as the audit writes it
        (folder / f"bee-audit-BENCH{server:05d}-{index:05d}.json").write_text(text)
        total += len(text)
    (folder / "README.json").write_text("not json\n")
    (folder / "old.json").write_text(json.dumps({"schema_version": 0, "audit_version": "0.0.1"}))
    return total


def measure(name: str, folder: Path, work: Path, runs: int, total: int, count: int) -> float:
    """Print the figures of one fleet; return the median wall time of the whole command."""
    print(f"{name}: {count} documents ({total / 1e6:.1f} MB, {total / count / 1e3:.1f} kB each); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the runs")
    command = [sys.executable, str(REPO / "scripts" / "fleet_report.py"), str(folder),
               "-o", str(work / f"{folder.name}.html"), "--csv", str(work / f"{folder.name}.csv")]
    times, rss = [], 0.0
    for _ in range(runs):
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)  # this run's own peak RSS
        times.append(time.perf_counter() - started)
        assert os.waitstatus_to_exitcode(status) == 0, f"{command} failed"
        process.returncode = 0
        rss = max(rss, usage.ru_maxrss / 1024)
    best, median = min(times), statistics.median(times)
    verdict = "OK" if median < TARGET_SECONDS else "TOO SLOW"
    print(f"  whole command: best {best:.2f} s, median {median:.2f} s of {runs} runs (target < "
          f"{TARGET_SECONDS:.0f} s: {verdict}); peak RSS {rss:.0f} MB")
    started = time.perf_counter()
    documents, rejected = fleet_report.read_folder(folder)
    read = time.perf_counter()
    rows = fleet_report.group(documents)
    summary = fleet_report.fleet_summary(rows, documents, rejected)
    grouped = time.perf_counter()
    page = fleet_report.render_html(rows, summary, rejected, "bench")
    rendered = time.perf_counter()
    fleet_report.render_csv(rows, rejected)
    done = time.perf_counter()
    print(f"  in-process: read {read - started:.2f} s, group {grouped - read:.2f} s, "
          f"HTML {rendered - grouped:.2f} s, CSV {done - rendered:.2f} s")
    print(f"  page: {len(rows)} servers, {len(rejected)} other files, {len(page) / 1e6:.1f} MB")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="make the documents and the pages in DIR and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        tests_fleet = [json.loads(path.read_text())
                       for path in make_fleet(work / "real", work / "audit").values()]
        large = [large_server(work / "large-server")]
        medians = []
        for name, real in (("the tests' fleet", tests_fleet), ("large 8-GPU servers", large)):
            folder = work / ("fleet" if real is tests_fleet else "large")
            total = fleet_folder(folder, real, args.documents)
            medians.append(measure(name, folder, work, args.runs, total, args.documents))
        return 0 if max(medians) < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
