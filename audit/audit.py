#!/usr/bin/env python3
"""bee audit: one JSON hardware inventory of the machine it runs on.

Standard library only (the live system has python3 and nothing from PyPI). Each collector is a plain
function registered with `@collector(name)` in the order the document lists them; it gets a `Collector`
context to run tools and read sysfs, and returns plain data (or None when its tools are absent). Nothing a
collector meets is fatal: a missing tool contributes nothing, a failing, hung or garbage-printing tool is
an entry in `errors`, and the document is always complete.

Units in the document: sizes in bytes, CPU speeds in MHz, memory speeds in MT/s, temperatures in degrees
Celsius, durations in seconds, PCIe link speeds in GT/s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AUDIT_VERSION = "0.1.0"
SCHEMA_VERSION = 1
DEFAULT_TIMEOUT = 30.0  # seconds per tool run; a hung tool is killed with its process group
TOOL_ENV = {"LC_ALL": "C", "LANG": "C"}


def log(message: str) -> None:
    """Write one line to stderr (never stdout: stdout may carry the JSON document)."""
    print(f"audit: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------
# Running tools: timeouts, process groups, capture and replay
# --------------------------------------------------------------------------------------------------------


@dataclass
class ToolResult:
    """What one tool run gave: exit status (None when it timed out), output as text, and timing."""

    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def decode(data: bytes) -> str:
    """Tool output as text: UTF-8, undecodable bytes replaced, NUL bytes dropped."""
    return data.decode("utf-8", errors="replace").replace("\x00", "")


def capture_key(argv: list[str]) -> str:
    """The file stem under which a command's output is captured: stable for the same argv."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", " ".join(argv))[:60].strip("_")
    digest = hashlib.sha1("\0".join(argv).encode()).hexdigest()[:10]
    return f"{name}-{digest}"


class Runner:
    """Runs tools (or replays a capture of them) and reads the sysfs, procfs and devfs trees.

    Capture layout (`--capture DIR`, read back by `--replay DIR`):
      DIR/host.json                      hostname, kernel, time of the capture
      DIR/commands/<key>.json            {"argv", "returncode", "timed_out", "duration"}
      DIR/commands/<key>.stdout|.stderr  the raw bytes the tool wrote
      DIR/sysfs/..., DIR/procfs/...      every file the audit read, at its path under the root
      DIR/devfs/...                      an empty file for every device node the audit found present
    """

    def __init__(
        self,
        sysfs: Path = Path("/sys"),
        procfs: Path = Path("/proc"),
        devfs: Path = Path("/dev"),
        timeout: float = DEFAULT_TIMEOUT,
        capture: Path | None = None,
        replay: Path | None = None,
    ):
        self.timeout = timeout
        self.capture = capture
        self.replay = replay
        if replay is not None:
            sysfs, procfs, devfs = replay / "sysfs", replay / "procfs", replay / "devfs"
        self.roots = {"sysfs": sysfs, "procfs": procfs, "devfs": devfs}
        self._capture_lock = threading.Lock()

    # -- commands ------------------------------------------------------------------------------------

    def have(self, tool: str) -> bool:
        """Whether `tool` can be run (on PATH, or present in the replayed capture)."""
        if self.replay is not None:
            return any(
                json.loads(p.read_text()).get("argv", [None])[0] == tool
                for p in (self.replay / "commands").glob("*.json")
            )
        return shutil.which(tool) is not None

    def run(self, argv: list[str], timeout: float | None = None) -> ToolResult | None:
        """Run `argv` under a timeout; None when the tool is not installed (not an error).

        A run that exceeds the timeout is killed with its whole process group and comes back with
        `timed_out` set. Output is decoded leniently; nothing here raises for what a tool prints.
        """
        if self.replay is not None:
            return self._replayed(argv)
        if shutil.which(argv[0]) is None:
            return None
        timeout = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env={**os.environ, **TOOL_ENV},
            )
        except OSError as exc:
            return ToolResult(argv, 127, "", f"cannot run: {exc}", duration=time.monotonic() - started)
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc)
            try:
                out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:  # a child kept the pipes open
                out, err = b"", b""
        duration = time.monotonic() - started
        if self.capture is not None:
            self._save_command(argv, proc.returncode, timed_out, duration, out, err)
        return ToolResult(
            argv, None if timed_out else proc.returncode, decode(out), decode(err), timed_out, duration
        )

    def _save_command(self, argv, returncode, timed_out, duration, out: bytes, err: bytes) -> None:
        directory = self.capture / "commands"
        directory.mkdir(parents=True, exist_ok=True)
        key = capture_key(argv)
        (directory / f"{key}.stdout").write_bytes(out)
        (directory / f"{key}.stderr").write_bytes(err)
        meta = {
            "argv": argv,
            "returncode": returncode,
            "timed_out": timed_out,
            "duration": round(duration, 3),
        }
        (directory / f"{key}.json").write_text(json.dumps(meta, indent=1) + "\n")

    def _replayed(self, argv: list[str]) -> ToolResult | None:
        directory = self.replay / "commands"
        key = capture_key(argv)
        try:
            meta = json.loads((directory / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        out = (directory / f"{key}.stdout").read_bytes() if (directory / f"{key}.stdout").exists() else b""
        err = (directory / f"{key}.stderr").read_bytes() if (directory / f"{key}.stderr").exists() else b""
        timed_out = bool(meta.get("timed_out"))
        return ToolResult(
            argv, None if timed_out else meta.get("returncode"), decode(out), decode(err), timed_out,
            float(meta.get("duration") or 0.0),
        )

    # -- files ---------------------------------------------------------------------------------------

    def path(self, root: str, relative: str) -> Path:
        """The path of `relative` (like "class/net/eth0/address") under the sysfs, procfs or devfs root."""
        return self.roots[root] / relative.lstrip("/")

    def read(self, root: str, relative: str) -> str | None:
        """The text of a file under a root, stripped; None when it is absent or unreadable."""
        source = self.path(root, relative)
        try:
            data = source.read_bytes()
        except OSError:
            return None
        if self.capture is not None:
            self._save_file(root, relative, data)
        return decode(data).strip()

    def listdir(self, root: str, relative: str) -> list[str]:
        """The sorted entry names of a directory under a root; empty when it is absent."""
        try:
            names = sorted(os.listdir(self.path(root, relative)))
        except OSError:
            return []
        if self.capture is not None:
            for name in names:  # keep the directory's shape even for entries nothing reads
                target = self.capture / root / relative.lstrip("/") / name
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if self.path(root, f"{relative}/{name}").is_dir():
                        target.mkdir(exist_ok=True)
        return names

    def exists(self, root: str, relative: str) -> bool:
        """Whether a path exists under a root (a device node in devfs, a file in sysfs)."""
        present = self.path(root, relative).exists()
        if present and self.capture is not None:
            target = self.capture / root / relative.lstrip("/")
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                if self.path(root, relative).is_dir():
                    target.mkdir(exist_ok=True)
                else:
                    target.write_bytes(b"")
        return present

    def realpath(self, root: str, relative: str) -> str | None:
        """Where a symlink under a root points, as a path relative to that root (sysfs device links)."""
        source = self.path(root, relative)
        try:
            resolved = source.resolve(strict=True)
            rel = resolved.relative_to(self.roots[root].resolve())
        except (OSError, ValueError):
            return None
        if self.capture is not None:
            target = self.capture / root / relative.lstrip("/")
            with self._capture_lock:
                if not target.exists() and not target.is_symlink():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    depth = len(Path(relative.lstrip("/")).parts) - 1
                    target.symlink_to(Path(*([".."] * depth)) / rel if depth else rel)
        return str(rel)

    def _save_file(self, root: str, relative: str, data: bytes) -> None:
        target = self.capture / root / relative.lstrip("/")
        with self._capture_lock:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a process and everything it started (it leads its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


# --------------------------------------------------------------------------------------------------------
# Collectors: the registry and the context each one gets
# --------------------------------------------------------------------------------------------------------


@dataclass
class Collector:
    """What a collector works with: the runner, and its own list of errors."""

    name: str
    runner: Runner
    errors: list[dict[str, Any]] = field(default_factory=list)

    def error(self, command: list[str] | str | None, message: str) -> None:
        """Record an error of this collector (and say it on stderr); the audit goes on."""
        cmd = " ".join(command) if isinstance(command, list) else command
        self.errors.append({"collector": self.name, "command": cmd, "message": message})
        log(f"{self.name}: {cmd + ': ' if cmd else ''}{message}")

    def run(self, argv: list[str], timeout: float | None = None) -> ToolResult | None:
        """Run a tool (see Runner.run); None when it is not installed."""
        return self.runner.run(argv, timeout)

    def output(
        self, argv: list[str], ok_codes: tuple[int, ...] = (0,), timeout: float | None = None
    ) -> str | None:
        """A tool's stdout when it ran well; None when it is absent (silently) or failed (an error).

        Failure: a timeout, an exit status outside `ok_codes`, or no output at all.
        """
        result = self.run(argv, timeout)
        if result is None:
            return None
        if not self.check(result, ok_codes):
            return None
        return result.stdout

    def check(self, result: ToolResult, ok_codes: tuple[int, ...] = (0,)) -> bool:
        """Whether a tool run succeeded with output; records the error when it did not."""
        if result.timed_out:
            self.error(result.argv, f"timed out after {result.duration:.0f} s and was killed")
            return False
        if result.returncode not in ok_codes:
            detail = first_line(result.stderr) or first_line(result.stdout) or "no output"
            self.error(result.argv, f"exit status {result.returncode}: {detail}")
            return False
        if not result.stdout.strip():
            self.error(result.argv, "printed nothing")
            return False
        return True

    def read(self, root: str, relative: str) -> str | None:
        return self.runner.read(root, relative)

    def listdir(self, root: str, relative: str) -> list[str]:
        return self.runner.listdir(root, relative)

    def exists(self, root: str, relative: str) -> bool:
        return self.runner.exists(root, relative)

    def realpath(self, root: str, relative: str) -> str | None:
        return self.runner.realpath(root, relative)


CollectorFunction = Callable[[Collector], Any]
COLLECTORS: list[tuple[str, CollectorFunction]] = []


def collector(name: str) -> Callable[[CollectorFunction], CollectorFunction]:
    """Register a collector under `name`; the document lists collectors in registration order."""

    def register(function: CollectorFunction) -> CollectorFunction:
        COLLECTORS.append((name, function))
        return function

    return register


FindingRule = Callable[[dict[str, Any]], list[dict[str, Any]]]
FINDING_RULES: list[FindingRule] = []


def finding_rule(function: FindingRule) -> FindingRule:
    """Register a rule that derives findings from the finished document."""
    FINDING_RULES.append(function)
    return function


def finding(severity: str, component: str, message: str) -> dict[str, str]:
    """One finding: severity is "critical", "warning" or "info"; component names what it is about."""
    return {"severity": severity, "component": component, "message": message}


# --------------------------------------------------------------------------------------------------------
# Shared parsing helpers
# --------------------------------------------------------------------------------------------------------

PLACEHOLDERS = {
    "", "not specified", "not available", "not applicable", "not present", "to be filled by o.e.m.",
    "to be filled by oem", "default string", "0123456789", "1234567890", "none", "null", "n/a", "na",
    "unknown", "system serial number", "system product name", "system manufacturer", "system version",
    "base board serial number", "chassis serial number", "o.e.m.", "oem", "xxxxxxxxxx", "--", "-",
    "[n/a]", "not settable", "no asset tag", "asset tag", "type2 - board serial number",
    "unknow", "invalid", "serial number", "part number", "no asset information", "undefined",
}


def clean(value: Any) -> Any:
    """A vendor string, or None when it is a placeholder ("Not Specified", "To Be Filled By O.E.M.",
    all zeros, all F, all dots or spaces ...). Non-strings pass through."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in PLACEHOLDERS:
        return None
    bare = re.sub(r"[-\s:.]", "", text)
    if bare == "" or set(bare) <= {"0"} or set(bare.upper()) <= {"F"} or set(bare) <= {"X", "x"}:
        return None
    return text


def first_line(text: str) -> str:
    """The first non-empty line of `text`, stripped (for one-line error messages)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def to_int(value: Any) -> int | None:
    """An integer from an int or a decimal/hex string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text, 16) if text.lower().startswith("0x") else int(text)
        except ValueError:
            return None
    return None


def load_json(text: str | None) -> Any:
    """Parsed JSON, or None for empty, truncated or otherwise invalid text."""
    if not text or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


# ===== DMI, memory, PSU collectors (board, cpu, memory, psu) =====

# ===== end DMI, memory, PSU collectors =====

# ===== storage, pcie, nvidia, network collectors =====

# ===== end storage, pcie, nvidia, network collectors =====


# --------------------------------------------------------------------------------------------------------
# The document
# --------------------------------------------------------------------------------------------------------


def run_collector(name: str, function: CollectorFunction, runner: Runner) -> tuple[Any, dict[str, Any]]:
    """Run one collector; return its data and its report (status, duration, errors). Never raises."""
    ctx = Collector(name, runner)
    started = time.monotonic()
    data = None
    try:
        data = function(ctx)
    except Exception as exc:  # a collector bug must not lose the rest of the document
        ctx.error(None, f"collector failed: {type(exc).__name__}: {exc}")
        data = None
    duration = round(time.monotonic() - started, 3)
    status = collector_status(data, ctx.errors)
    return data, {"status": status, "duration": duration, "errors": ctx.errors}


def collector_status(data: Any, errors: list) -> str:
    """ok: data, no errors; partial: data and errors; error: errors, no data; skipped: neither."""
    if errors:
        return "partial" if data else "error"
    return "ok" if data is not None else "skipped"


def build_document(
    runner: Runner, collectors: list[tuple[str, CollectorFunction]] | None = None
) -> dict[str, Any]:
    """Run every collector concurrently and assemble the document in registration order."""
    collectors = COLLECTORS if collectors is None else collectors
    started = time.monotonic()
    host = host_facts(runner)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(collectors))) as pool:
        futures = [(name, pool.submit(run_collector, name, fn, runner)) for name, fn in collectors]
        results = [(name, future.result()) for name, future in futures]
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "audit_version": AUDIT_VERSION,
        **host,
        "collectors": {},
    }
    errors: list[dict[str, Any]] = []
    for name, (data, report) in results:
        document[name] = data
        document["collectors"][name] = report
        errors.extend(report["errors"])
    link_documents(document)
    document["findings"] = derive_findings(document)
    document["errors"] = errors
    document["duration"] = round(time.monotonic() - started, 3)
    return document


def host_facts(runner: Runner) -> dict[str, Any]:
    """Host name, kernel release and the time of the audit (from the capture when replaying)."""
    if runner.replay is not None:
        try:
            return json.loads((runner.replay / "host.json").read_text())
        except (OSError, ValueError):
            return {"generated_at": None, "hostname": None, "kernel": None}
    facts = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
    }
    if runner.capture is not None:
        runner.capture.mkdir(parents=True, exist_ok=True)
        (runner.capture / "host.json").write_text(json.dumps(facts, indent=1) + "\n")
    return facts


LINKERS: list[Callable[[dict[str, Any]], None]] = []


def linker(function: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """Register a step that cross-links collectors' data once all have finished (GPU to PCIe entry...)."""
    LINKERS.append(function)
    return function


def link_documents(document: dict[str, Any]) -> None:
    """Run every linker; a failing linker is an error entry, not a lost document."""
    for function in LINKERS:
        try:
            function(document)
        except Exception as exc:
            document.setdefault("collectors", {})
            log(f"linking failed in {function.__name__}: {exc}")


def derive_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every finding the registered rules derive from the document; a failing rule is logged and skipped."""
    findings: list[dict[str, Any]] = []
    for rule in FINDING_RULES:
        try:
            findings.extend(rule(document))
        except Exception as exc:
            log(f"finding rule {rule.__name__} failed: {type(exc).__name__}: {exc}")
    return findings


# --------------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------------


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` so a reader sees the old file or the whole new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(path.parent or ".", os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def render(document: dict[str, Any]) -> str:
    """The document as JSON text."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="audit",
        description="Write one JSON hardware inventory of this machine (stdout unless told otherwise).",
    )
    parser.add_argument("--output", type=Path, metavar="FILE", help="write the JSON to FILE (atomically)")
    parser.add_argument("--usb", action="store_true", help="also write the JSON onto a removable USB disk")
    parser.add_argument("--no-qr", action="store_true", help="do not print the QR summary")
    parser.add_argument("--sysfs", type=Path, default=Path("/sys"), metavar="DIR", help="sysfs root (/sys)")
    parser.add_argument(
        "--procfs", type=Path, default=Path("/proc"), metavar="DIR", help="procfs root (/proc)"
    )
    parser.add_argument("--devfs", type=Path, default=Path("/dev"), metavar="DIR", help="devfs root (/dev)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time limit for each tool run (default {DEFAULT_TIMEOUT:.0f})")
    parser.add_argument("--capture", type=Path, metavar="DIR",
                        help="also save every raw tool output and file read under DIR")
    parser.add_argument("--replay", type=Path, metavar="DIR",
                        help="build the document from a capture in DIR, running nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the audit; exit 0 whenever a document was produced, 1 (one line) when it could not be written."""
    args = parse_args(argv)
    if args.replay is not None and not (args.replay / "commands").is_dir():
        log(f"{args.replay} is not a capture (no commands/ folder); make one with --capture")
        return 2
    runner = Runner(args.sysfs, args.procfs, args.devfs, args.timeout, args.capture, args.replay)
    document = build_document(runner)
    text = render(document)
    if args.output is not None:
        try:
            write_atomically(args.output, text)
        except OSError as exc:
            log(f"cannot write {args.output}: {exc.strerror or exc}; choose another --output path")
            return 1
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
