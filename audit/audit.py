#!/usr/bin/env python3
"""bee audit: one JSON hardware inventory of the machine it runs on.

Standard library only (the live system has python3 and nothing from PyPI). Each collector is a plain function
registered with `@collector(name)` in the order the document lists them (the sections below follow that
order); it gets a `Context` to run tools and read sysfs, and returns plain data (or None when its tools are
absent). After the last collector's section, "memory errors from every source" tells each DIMM's errors once,
whichever of memory (EDAC), kernel_log and event_log saw them. Nothing a collector meets is fatal: a missing
tool contributes nothing, a failing, hung or garbage-printing tool is an entry in `errors`, and the document
is always complete.

Units in the document, named in the key where a key carries one (`size_bytes`, `speed_mbps`,
`temperature_c`, `duration_s`): sizes in bytes, CPU speeds in MHz, memory speeds in MT/s, network speeds in
Mb/s, power in watts, temperatures in degrees Celsius, durations in seconds, PCIe link speeds in GT/s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import decimal
import errno
import fcntl
import fnmatch
import hashlib
import http.client
import io
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import ssl
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AUDIT_VERSION = "0.1.0"
SCHEMA_VERSION = 3  # bumped when a key is renamed or removed or changes its meaning (see README)
DEFAULT_TIMEOUT = 30.0  # seconds per tool run; a hung tool is killed with its process group
TOOL_ENV = {"LC_ALL": "C", "LANG": "C"}


_LOG_LOCK = threading.Lock()


def log(message: str) -> None:
    """Write one line to stderr (never stdout: stdout may carry the JSON document), whole: one write under a
    lock, so lines said by collectors' threads at once never glue together."""
    with _LOG_LOCK:
        sys.stderr.write(f"audit: {message}\n")
        sys.stderr.flush()


# -- running tools: timeouts, process groups, signals, capture and replay ------------------------------------


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


RUNNERS: weakref.WeakSet[Runner] = weakref.WeakSet()  # every Runner alive, for stop_tools()
STOP_WAIT = 0.2  # seconds a stopped tool's pipes are still read (a descendant outside its group holds them)
POLL = 0.2  # seconds between looks at whether the audit was stopped while a tool runs


class Runner:
    """Runs tools (or replays a capture of them) and reads the sysfs, procfs and devfs trees.

    `--capture DIR` saves every tool run and every file read under DIR, `--replay DIR` reads them back; the
    layout of DIR is in README.md ("Capture and replay"), the file names of tool runs come from capture_key.
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
        self.nvidia_gpu_list: dict[str, str] = {}  # the ISO's GPU list (--nvidia-gpu-list): device id -> need
        self._capture_lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()  # tool runs under way (stopped at once on Ctrl-C)
        self._running_lock = threading.Lock()
        self.interrupted = False  # set by stop_all(): no tool starts any more
        self._said_lock = threading.Lock()
        self._said: set[str] = set()  # what the audit says once, whichever collector meets it first
        RUNNERS.add(self)  # a signal stops the tools of every runner alive (stop_tools)

    # Commands

    def run(
        self, argv: list[str], timeout: float | None = None, redact: Callable[[bytes], bytes] | None = None,
        stdin: bytes | None = None,
    ) -> ToolResult | None:
        """Run `argv` under a timeout, `stdin` as its input (else none); None when the tool is not installed
        (not an error) or the audit is being stopped.

        A run that exceeds the timeout is killed with its whole process group and comes back with
        `timed_out` set. Output is decoded leniently; nothing here raises for what a tool prints.
        `redact` rewrites stdout before it is captured or returned (secrets a tool prints never leave it).
        """
        if self.replay is not None:
            return self._replayed(argv)
        if shutil.which(argv[0]) is None or self.interrupted:
            return None
        timeout = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env={**os.environ, **TOOL_ENV},
            )
        except OSError as exc:  # on PATH but not runnable (permissions, a bad interpreter line)
            proc, timed_out, out, err = None, False, b"", f"cannot run: {exc}".encode()
        else:
            self._started(proc)
            try:
                timed_out, (out, err) = self._communicate(proc, timeout, stdin)
            except BaseException:  # Interrupted in the main thread: its group is killed; reap the tool
                kill_group(proc)
                with contextlib.suppress(Exception):
                    proc.wait(timeout=STOP_WAIT)
                raise
            finally:
                with self._running_lock:
                    self._running.discard(proc)
            out = redact(out) if redact is not None else out
        returncode = 127 if proc is None else proc.returncode
        duration = time.monotonic() - started
        if self.capture is not None:
            try:
                self._save_command(argv, returncode, timed_out, duration, out, err)
            except OSError as exc:
                log(f"--capture: cannot save the output of {' '.join(argv)}: {exc.strerror or exc}")
        status = None if timed_out else returncode
        return ToolResult(argv, status, decode(out), decode(err), timed_out, duration)

    def first_time(self, key: str) -> bool:
        """True the first time `key` is asked about during this audit (for what is said once), then False."""
        with self._said_lock:
            if key in self._said:
                return False
            self._said.add(key)
            return True

    def said(self, key: str) -> bool:
        """Whether first_time(key) was already answered True."""
        with self._said_lock:
            return key in self._said

    def _started(self, proc: subprocess.Popen) -> None:
        """Note a started tool; one that started as the audit was being stopped is stopped too."""
        with self._running_lock:
            self._running.add(proc)
            stop = self.interrupted
        if stop:
            kill_group(proc)

    def stop_all(self) -> None:
        """Stop every tool under way at once, each with its process group, and start no other (Ctrl-C,
        SIGTERM). Safe from a signal handler: it never waits for a lock held by the thread it interrupts."""
        self.interrupted = True
        if not self._running_lock.acquire(timeout=1.0):
            return
        try:
            running = list(self._running)
        finally:
            self._running_lock.release()
        for proc in running:
            kill_group(proc)

    def _communicate(
        self, proc: subprocess.Popen, timeout: float, stdin: bytes | None = None
    ) -> tuple[bool, tuple[bytes, bytes]]:
        """(timed out, (stdout, stderr)) of a started tool; at the timeout its process group is killed.
        Once the audit is stopped (stop_all) it waits only STOP_WAIT more for pipes a descendant outside
        the group may hold, never the rest of the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                wait = max(0.0, min(POLL, deadline - time.monotonic()))
                out, err = proc.communicate(stdin, timeout=wait)  # the input goes with the first call only
                return False, (out or b"", err or b"")
            except subprocess.TimeoutExpired:
                stdin = None
                if not self.interrupted and time.monotonic() < deadline:
                    continue
            kill_group(proc)
            try:
                out, err = proc.communicate(timeout=STOP_WAIT if self.interrupted else 5)
            except subprocess.TimeoutExpired:  # a child kept the pipes open
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    proc.wait(timeout=STOP_WAIT)  # reap the tool itself (its group was killed)
                out, err = b"", b""
            return not self.interrupted, (out or b"", err or b"")

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
            "duration": duration,
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

    # Files

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
            with self._capturing(root, relative):
                target = Path(os.path.realpath(self._mirror(root, relative)))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        return decode(data).strip()

    def listdir(self, root: str, relative: str) -> list[str]:
        """The sorted entry names of a directory under a root; empty when it is absent."""
        try:
            names = sorted(os.listdir(self.path(root, relative)))
        except OSError:
            return []
        if self.capture is not None:
            with self._capturing(root, relative):
                for name in names:  # keep the directory's shape even for entries nothing reads
                    self._mirror_entry(root, f"{relative.rstrip('/')}/{name}")
        return names

    def exists(self, root: str, relative: str) -> bool:
        """Whether a path exists under a root (a device node in devfs, a file in sysfs)."""
        present = self.path(root, relative).exists()
        if present and self.capture is not None:
            with self._capturing(root, relative):
                self._mirror_entry(root, relative)
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
            with self._capturing(root, relative):
                self._mirror_entry(root, relative)
                self._mirror_entry(root, str(rel))  # the target too, so the link resolves in the capture
        return str(rel)

    # Capture: the files read, with the tree's symlinks kept as symlinks

    @contextlib.contextmanager
    def _capturing(self, root: str, relative: str):
        """Hold the capture lock; a capture that cannot be written is said on stderr, never fatal."""
        with self._capture_lock:
            try:
                yield
            except OSError as exc:
                log(f"--capture: cannot save {root}/{relative}: {exc.strerror or exc}")

    def _mirror(self, root: str, relative: str) -> Path:
        """The capture path of `relative`, after mirroring every symlink on the way to it as a symlink and
        every other folder as a folder (so links like class/net/X -> ../../devices/... resolve in the
        capture as they do live). Call with the capture lock held."""
        parts = Path(relative.lstrip("/")).parts
        base = self.capture / root
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            live, captured = self.path(root, prefix), base / prefix
            if live.is_symlink():
                if not captured.is_symlink() and not captured.exists():
                    link = self._relative_link(root, live, captured)
                    Path(os.path.realpath(captured.parent)).mkdir(parents=True, exist_ok=True)
                    if link is not None:
                        captured.symlink_to(link)
            elif depth < len(parts):
                Path(os.path.realpath(captured)).mkdir(parents=True, exist_ok=True)
        return base / relative.lstrip("/")

    def _relative_link(self, root: str, live: Path, captured: Path) -> str | None:
        """A symlink's target as the capture needs it: as written when relative (the capture mirrors the
        tree, so it resolves the same), else relative to where the link's folder really is in the capture."""
        link = os.readlink(live)
        if not os.path.isabs(link):
            return link
        try:
            rel = Path(link).resolve().relative_to(self.roots[root].resolve())
        except (OSError, ValueError):
            return None
        return os.path.relpath(self.capture / root / rel, os.path.realpath(captured.parent))

    def _mirror_entry(self, root: str, relative: str) -> None:
        """Mirror one entry without reading it: a symlink as a symlink, a folder as a folder, anything
        else (device nodes, unread files) as an empty file."""
        target = self._mirror(root, relative)
        if target.is_symlink() or target.exists():
            return
        Path(os.path.realpath(target.parent)).mkdir(parents=True, exist_ok=True)
        if self.path(root, relative).is_dir():
            Path(os.path.realpath(target)).mkdir(parents=True, exist_ok=True)
        elif self.path(root, relative).exists():
            Path(os.path.realpath(target)).touch()


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a process and everything it started (it leads its own session)."""
    if proc.pid <= 0:  # not a real process (a test double): never signal our own process group
        proc.kill()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def run_plain(argv: list[str], timeout: float = 60.0, stdin: bytes | None = None) -> ToolResult | None:
    """Run a command that is not part of the audit (lsblk, mount, qrencode: never captured or replayed) in
    its own process group, `stdin` as its input; None when it is not installed."""
    return Runner(timeout=timeout).run(argv, stdin=stdin)


class Interrupted(Exception):
    """The audit was told to stop (SIGINT, SIGTERM): raised in the main thread by the signal handler."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@dataclass
class StopState:
    """What Ctrl-C and SIGTERM have done in this run (one per process: only the main thread gets signals)."""

    signum: int | None = None  # the first signal received
    raised: bool = False  # Interrupted was raised for it
    shielded: int = 0  # depth of shielded_from_signals blocks under way


STOP = StopState()


def stop_tools() -> None:
    """Stop the tools under way of every Runner alive (the audit's, lsblk/mount/qrencode ones), each with
    its process group, and let those runners start no other."""
    for runner in list(RUNNERS):
        runner.stop_all()


@contextlib.contextmanager
def shielded_from_signals():
    """Run the block (unmounting a stick the audit mounted) to its end under Ctrl-C and SIGTERM: a signal
    that comes meanwhile is only noted (by stopped_by_signals' handler); once the outermost such block is
    over, the tools under way are stopped and Interrupted is raised for it, once."""
    STOP.shielded += 1
    try:
        yield
    finally:
        STOP.shielded -= 1
    if not STOP.shielded and STOP.signum is not None and not STOP.raised:
        STOP.raised = True
        stop_tools()
        raise Interrupted(STOP.signum)


# -- registry: collectors, the context each one gets, linkers and finding rules ------------------------------


@dataclass
class Context:
    """What a collector works with: the runner, its own list of errors, the tools it found missing and why
    it skipped (when it says so)."""

    name: str
    runner: Runner
    errors: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    reason: str | None = None

    def skip(self, reason: str) -> None:
        """Say why there is nothing to collect ("driver not loaded"); the report of a skipped collector
        carries it. Returns None, for `return ctx.skip(...)`."""
        self.reason = reason

    def error(self, command: list[str] | str | None, message: str,
              shared: tuple[str, str] | None = None) -> None:
        """Record an error of this collector (and say it on stderr); the audit goes on. Once the audit is
        being stopped (Ctrl-C, SIGTERM), the tools it killed are no errors to say. `shared` (key, line):
        an error several collectors meet alike (no SMBIOS table); each records it, stderr gets `line` once
        per audit, whichever collector meets it first."""
        if self.runner.interrupted:
            return
        cmd = " ".join(command) if isinstance(command, list) else command
        self.errors.append({"collector": self.name, "command": cmd, "message": message})
        if shared is None:
            log(f"{self.name}: {cmd + ': ' if cmd else ''}{message}")
        elif self.runner.first_time(shared[0]):
            log(shared[1])

    def run(
        self, argv: list[str], timeout: float | None = None, redact: Callable[[bytes], bytes] | None = None
    ) -> ToolResult | None:
        """Run a tool (see Runner.run); None when it is not installed (remembered for the report)."""
        result = self.runner.run(argv, timeout, redact)
        if result is None and argv[0] not in self.missing:
            self.missing.append(argv[0])
        return result

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
            self.error(result.argv, f"timed out after {result.duration:.1f} s and was killed")
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


CollectorFunction = Callable[[Context], Any]
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


LINKERS: list[Callable[[dict[str, Any]], None]] = []


def linker(function: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """Register a step that cross-links collectors' data once all have finished (GPU to PCIe entry...)."""
    LINKERS.append(function)
    return function


def finding(severity: str, component: str, message: str) -> dict[str, str]:
    """One finding: severity is "critical", "warning" or "info"; component names what it is about."""
    return {"severity": severity, "component": component, "message": message}


# -- shared parsing helpers ----------------------------------------------------------------------------------

# What firmware and tools print instead of a value, in one place. Each family is a regular expression
# matched against the whole value (stripped, any case), with where it was seen. GENERIC families mean "no
# value" in any vendor string (a disk's, a NIC's, a DIMM's); DMI_ONLY ones only in DMI and FRU fields, where
# they are template text (a disk model or a NIC name may read "Empty" or "Type1").
GENERIC_PLACEHOLDERS = {
    # The SMBIOS spec's and dmidecode's words for no value, and what firmware writes for it: "Not
    # Specified", "Not Available", "Not Set" (Phytium), "Not Defined", "NOT SUPPORT" / "NotSupport" (DIMM
    # vendor and part of populated DIMMs, Chinese OEM boards), "Unknown"/"Unknow", "(null)" (a C NULL
    # printed), "N/A", "None", "-", "--" (also how linuxhw anonymised serials).
    "no value": r"not ?(?:specified|available|applicable|present|settable|set|defined|support(?:ed)?|"
                r"provided)|unknown?|invalid|undefined|none|null|\(null\)|\[?n/?a\]?|-{1,2}|"
                r"no asset (?:tag|information)",
    # AMI, Insyde and Phoenix template strings: "To Be Filled By O.E.M." (also without the final dot, or
    # "OEM"), "Default string", "TBD by OEM" (Loongson boards) and its dotted spelling "TBD By O.E.M.",
    # "O.E.M.", "OEM".
    "OEM template": r"to be filled by o\.?e\.?m\.?|default string|tbd(?: by o\.?e\.?m\.?)?|o\.?e\.?m\.?",
    # A field's own name left as its value: "System Serial Number", "Base Board Serial Number", "Type2 -
    # Board Serial Number", "Serial Number", "Part Number", "Asset Tag", "System Product Name".
    "field name": r"(?:system|base board|chassis) (?:serial number|product name|manufacturer|version)|"
                  r"serial number|part number|asset tag|type2 - board serial number",
    # Sample serials counting up, all digits or hex: "0123456789", "1234567890", "0123456789ABCDEF" (the
    # serial of many cheap USB flash drives), "XXXXXXXXXX".
    "sample serial": r"0123456789(?:abcdef)?|1234567890|x{10}",
}
DMI_ONLY_PLACEHOLDERS = {
    # AMI's numbered field templates, left in populated DIMMs and PSUs: "Manufacturer00", "SerNum00",
    # "AssetTagNum0", "PartNum0", "ModulePartNumber00" (Asus Eee 1215N), "Dimm0_AssetTag",
    # "Array1_PartNumber0", "NO DIMM", "No Module Installed", "Fill By OEM", "Empty", "No Enclosure".
    "AMI numbered template": r"\w*?(?:asset ?tag|ser(?:ial)? ?num(?:ber)?|part ?num(?:ber)?|manufacturer)"
                             r"(?:num)?[ _]?\d*|no dimm|no module installed|fill by oem|empty|no enclosure",
    # "<field> not set" of Ampere/ADLINK boards: "Manufacturer not set", "Part Number not set".
    "field not set": r"(?:manufacturer|part number|serial number|asset tag) not (?:set|specified)",
    # Templates named after their SMBIOS structure type (Insyde, Loongson, Acer, Toshiba): "Type1Family",
    # "Type1Sku0", "Type1ProductConfigId", "Type2 - Board Vendor Name1", "Type2 - Board Version", and the
    # same with a space only, "Type0 BIOS Vendor" (never "Type 2 ...": a space before the digit is prose).
    "type-N template": r"type\d{1,3}(?:[a-z_]\w*| - [\w .-]+| [a-z][\w .-]*)",
    # SMBIOS type 39 (power supply) fields of AMI boards: "OEM Define 0" ... "OEM Define 6", "OEM_Define0".
    "OEM Define N": r"oem[ _]?define[ _]?\d*",
    # A DMI field's own name ("Chassis Version", "OEM Chassis Serial Number", "Chassis Manufacture",
    # "System SKU Number"), and digit runs counting up ("01234567", "123456789", "01234567890123456789AB",
    # "9876543210"; "12345678" alone may be a real serial).
    "DMI field name": r"(?:oem )?(?:chassis|system|base ?board|board) (?:manufacturer|manufacture|version|"
                      r"serial(?: number)?|asset ?tag|product(?: name)?|sku(?: number)?)|"
                      r"(?:0123456|123456789)\w*|9876543210",
}
PLACEHOLDER = re.compile("(?i)^(?:" + "|".join(f"(?:{p})" for p in GENERIC_PLACEHOLDERS.values()) + ")$")
DMI_PLACEHOLDER = re.compile(
    "(?i)^(?:" + "|".join(f"(?:{p})" for p in DMI_ONLY_PLACEHOLDERS.values()) + ")$"
)
# UUIDs that firmware vendors ship on every board of a model (AMI's sample value): not an identity.
PLACEHOLDER_UUIDS = {"03000200-0400-0500-0006-000700080009"}


def clean(value: Any) -> Any:
    """A vendor string, or None when it is a placeholder (GENERIC_PLACEHOLDERS: "Not Specified", "To Be
    Filled By O.E.M.", "TBD by OEM", "(null)" ...; all zeros, all F (4 or more: a slot may be called "F"),
    all X, all dots or spaces, AMI's sample UUID). A serial of digits only ("9000116105") is a real serial
    and stays. Non-strings pass through."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if PLACEHOLDER.match(text) or text.lower() in PLACEHOLDER_UUIDS:
        return None
    bare = re.sub(r"[-\s:.]", "", text)
    if bare == "" or set(bare) <= {"0"} or set(bare) <= {"X", "x"}:
        return None
    if len(bare) >= 4 and set(bare.upper()) <= {"F"}:
        return None
    return text


def first_line(text: str) -> str:
    """The first non-empty line of `text`, stripped, for one-line error messages: at most 200 characters
    (cut ones end in "..."), anything unprintable (binary garbage) shown as "?"."""
    for line in text.splitlines():
        if line.strip():
            line = "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in line.strip())
            return line if len(line) <= 200 else line[:197] + "..."
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


def to_bool(value: Any) -> bool | None:
    """A boolean from JSON true/false, 1/0 or the strings lsblk prints ("1", "0", "true"); else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0 if value in (0, 1) else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes"):
            return True
        if text in ("0", "false", "no"):
            return False
    return None


def leading_int(text: Any) -> int | None:
    """The integer at the start of a string ("31 (Min/Max 31/31)" -> 31); ints pass through."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not isinstance(text, str):
        return None
    match = re.match(r"\s*(-?\d+)", text)
    return int(match.group(1)) if match else None


def leading_float(text: Any) -> float | None:
    """The number at the start of a string ("250.00 W" -> 250.0, "8.0 GT/s PCIe" -> 8.0); else None."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str):
        return None
    match = re.match(r"\s*(-?\d+(?:\.\d+)?)", text)
    return float(match.group(1)) if match else None


def as_dict(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (tool JSON of an unexpected shape never raises)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """`value` when it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def load_json(text: str | None) -> Any:
    """Parsed JSON, or None for empty, truncated or otherwise invalid text."""
    if not text or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def sum_known(values) -> int | None:
    """The sum of the values, or None when any of them is unknown (a partial sum would be a wrong value)."""
    values = list(values)
    if not values or any(value is None for value in values):
        return None
    return sum(values)


def human_size(size: Any, unknown: str = "unknown") -> str:
    """Bytes for a person, in a form a profile takes back: "32 GiB" for a whole number of GiB (memory),
    else 3 significant digits of a power of 1000 ("3.84 TB", "268 MB": disks as sold), "512 B" below a MB;
    `unknown` for anything not a number."""
    if not isinstance(size, int | float) or isinstance(size, bool):
        return unknown
    if size and size % (1 << 30) == 0:
        return f"{size // (1 << 30)} GiB"
    for unit, factor in (("PB", 10**15), ("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if abs(size) >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} B"


PCI_ADDRESS = re.compile(r"^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")
PCI_SYSFS_NAME = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")  # as in /sys/bus/pci/devices


def normalize_pci_address(text: Any) -> str | None:
    """A PCI address as lspci -D prints it (`0000:17:00.0`, lower case) from `17:00.0`, `0000:17:00.0` or
    nvidia-smi's 8-digit domain `00000000:17:00.0`; None when it is not an address."""
    if not isinstance(text, str):
        return None
    match = PCI_ADDRESS.match(text.strip())
    if not match:
        return None
    domain, bus, slot, function = match.groups()
    domain_number = int(domain, 16) if domain else 0
    return f"{domain_number:04x}:{bus}:{slot}.{function}".lower()


def pci_address_in_path(path: str | None) -> str | None:
    """The last PCI address in a sysfs device path (a disk's or NIC's controller), or None."""
    if not path:
        return None
    for part in reversed(path.split("/")):
        if PCI_SYSFS_NAME.match(part):
            return normalize_pci_address(part)
    return None


def shown_url(url: str) -> str:
    """The URL for messages and logs: no user:password and no query (a presigned URL's signature)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number: shown as it was written, still without user:password
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = host + (f":{port}" if port else "") if parts.hostname else parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- dmidecode: its text output, shared by board, cpu, memory and psu ----------------------------------------

DMI_HANDLE = re.compile(r"^Handle (0x[0-9A-Fa-f]+), DMI type (\d+), (\d+) bytes")


@dataclass
class DmiRecord:
    """One DMI structure as dmidecode prints it: its fields, and the indented lists some fields carry."""

    handle: str
    type: int
    name: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        """A field's value without vendor placeholders (None when absent or a placeholder)."""
        return dmi_clean(self.fields.get(key))


def dmi_clean(value: str | None) -> str | None:
    """A DMI/FRU string, or None for placeholders (clean(), then DMI_ONLY_PLACEHOLDERS: "ModulePartNumber00",
    "Type1Family", "OEM Define 3" ...), blanks and dmidecode's own <OUT OF SPEC>/<BAD INDEX>."""
    text = clean(value)
    if text is None:
        return None
    if (text.startswith("<") and text.endswith(">")) or DMI_PLACEHOLDER.match(text):
        return None
    return text


def parse_dmidecode(text: str | None) -> list[DmiRecord]:
    """Every structure in dmidecode's text output, in order (never raises).

    Tolerates CRLF line ends, the Windows ports' 8-space indentation, comment and warning lines, blank
    values and structures of any type; the first occurrence of a repeated field wins.
    """
    records: list[DmiRecord] = []
    if not text:
        return records
    current: DmiRecord | None = None
    field_indent: int | None = None
    last_key: str | None = None
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.expandtabs(8).rstrip()
        match = DMI_HANDLE.match(line)
        if match:
            current = DmiRecord(handle=match[1], type=int(match[2]))
            records.append(current)
            field_indent, last_key = None, None
            continue
        if current is None or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            if not current.name and not line.startswith("#"):
                current.name = line.strip()
            continue
        if field_indent is None:
            field_indent = indent
        if indent > field_indent and last_key is not None:
            current.lists.setdefault(last_key, []).append(line.strip())
            continue
        key, sep, value = line.strip().partition(":")
        if not sep:
            continue
        last_key = key.strip()
        current.fields.setdefault(last_key, value.strip())
    return records


def dmi_of_type(records: list[DmiRecord], dmi_type: int) -> list[DmiRecord]:
    """The records of one DMI type, in table order."""
    return [record for record in records if record.type == dmi_type]


UNIT_BYTES = {"bytes": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}


def dmi_size(value: str | None) -> int | None:
    """A dmidecode size ("32 GB", "16384 MB", "512 kB") in bytes; None for "No Module Installed"/unknown.

    dmidecode's kB/MB/GB are binary units (it prints the SMBIOS size in powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*(bytes|kB|MB|GB|TB)\s*", value or "", re.IGNORECASE)
    if not match:
        return None
    return int(match[1]) * UNIT_BYTES[match[2].lower()]


def dmi_speed(value: str | None) -> int | None:
    """A speed number from "3200 MT/s", "2666 MHz", "667 MHz (1.5 ns)"; None for "Unknown" or nanoseconds.

    dmidecode printed memory speeds as MHz before 3.2; the number is the transfer rate (MT/s) in both."""
    match = re.match(r"\s*(\d+)\s*(MT/s|MHz)\b", value or "")
    return int(match[1]) if match else None


def dmi_count(value: str | None) -> int | None:
    """A count field ("Core Count: 32"); None for "Unknown" or anything not a number."""
    match = re.fullmatch(r"\s*(\d+)\s*", value or "")
    return int(match[1]) if match else None


NO_SMBIOS = re.compile(
    r"No SMBIOS nor DMI entry point found|SMBIOS entry point missing|/dev/mem: No such file"
)


def no_smbios_message(result: ToolResult) -> str | None:
    """A clear message when dmidecode found no SMBIOS table at all (a VM or firmware without one, or a kernel
    exposing neither /sys/firmware/dmi/tables nor /dev/mem); None when it found one or failed otherwise.

    dmidecode says so on stdout ("# No SMBIOS nor DMI entry point found, sorry.", exit status 0) or, when
    /dev/mem is missing, on stderr with exit status 1."""
    if result.timed_out or "Handle 0x" in result.stdout:
        return None
    said = NO_SMBIOS.search(result.stdout) or NO_SMBIOS.search(result.stderr)
    if said is None:
        return None
    line = next(line for line in (result.stdout + "\n" + result.stderr).splitlines() if said[0] in line)
    said = line.strip(" #")
    return f"no SMBIOS/DMI table found ({said}); the VM or firmware provides none: DMI data unknown"


DMI_WRONG_COUNT = re.compile(r"Wrong DMI structures count: (\d+) announced, only (\d+) decoded")
DMI_ANNOUNCED = re.compile(r"^(\d+) structures occupying \d+ bytes\.?\s*$", re.MULTILINE)
TRUNCATED_TABLE = "dmi-truncated"  # the key under which the audit says a truncated table once
NO_SMBIOS_TABLE = "dmi-none"  # the key under which stderr says a missing table once
DMI_COLLECTORS = ("board", "cpu", "memory", "psu")  # the collectors that read dmidecode


def dmi_truncation(stdout: str, stderr: str) -> tuple[int, int] | None:
    """(structures announced, structures found) when the SMBIOS table holds fewer structures than its
    entry point announces; None otherwise. dmidecode says so on stderr ("Wrong DMI structures count: 41
    announced, only 3 decoded"); older dmidecode and saved outputs only print "41 structures occupying ..."
    (without -t), and the structures that follow are counted."""
    said = DMI_WRONG_COUNT.search(stderr)
    if said:
        return int(said[1]), int(said[2])
    announced = DMI_ANNOUNCED.search(stdout)
    if announced:
        found = len(re.findall(r"^Handle 0x", stdout, re.MULTILINE))
        if found < int(announced[1]):
            return int(announced[1]), found
    return None


def dmidecode_text(ctx: Context, types: str) -> str | None:
    """The output of `dmidecode -t TYPES`; None when dmidecode is absent (silently), found no SMBIOS table
    or failed (an error recorded, with a hint to run as root when access was denied). A truncated table is
    said once for the whole audit, whichever DMI collector meets it first."""
    argv = ["dmidecode", "-t", types]
    result = ctx.run(argv)
    if result is None:
        return None
    message = no_smbios_message(result)
    if message is not None:
        said_once = f"{', '.join(DMI_COLLECTORS)}: dmidecode: {message}"  # one stderr line, not four
        ctx.error(argv, message, shared=(NO_SMBIOS_TABLE, said_once))
        return None
    denied = first_line(result.stderr) if "permission denied" in result.stderr.lower() else ""
    if result.returncode != 0 and not result.timed_out and denied:
        ctx.error(argv, f"exit status {result.returncode}: {denied} (run the audit as root)")
        return None
    if not ctx.check(result):
        return None
    truncated = dmi_truncation(result.stdout, result.stderr)
    if truncated is not None and ctx.runner.first_time(TRUNCATED_TABLE):
        announced, found = truncated
        ctx.error(argv, f"the SMBIOS table is truncated: {announced} structures announced, {found} found; "
                        "board, cpu, memory and psu show only what those hold")
    return result.stdout


def dmidecode_records(ctx: Context, types: str) -> list[DmiRecord] | None:
    """Run `dmidecode -t TYPES`; its records, None when dmidecode is absent or failed (error recorded) or
    when a truncated table holds none of those types (said once, see dmidecode_text)."""
    text = dmidecode_text(ctx, types)
    if text is None:
        return None
    records = parse_dmidecode(text)
    if not records and ctx.runner.said(TRUNCATED_TABLE):
        return None  # the truncated table was said once; no error per missing type
    if not records:
        if re.search(r"^(?:SMBIOS|# SMBIOS) \d|^Table at ", text, re.MULTILINE):
            message = f"the SMBIOS table holds no structure of type {types}"
        else:
            message = f"no DMI structures in the output: {first_line(text) or 'empty'}"
        ctx.error(["dmidecode", "-t", types], message)
        return None
    return records


# -- ipmitool: one command at a time, shared by every collector that asks the BMC ----------------------------

IPMITOOL_LOCK = threading.Lock()  # never two ipmitool commands at once (concurrent KCS access broke BMCs)
IPMI_DEVICES = ("ipmi0", "ipmi/0", "ipmidev/0")
# Why a BMC collector is skipped when none of those device nodes exists (said alike by bmc, sensors,
# event_log and psu).
NO_IPMI_DEVICE = "no /dev/ipmi0 (nor /dev/ipmi/0, /dev/ipmidev/0): no BMC, or its driver is not loaded"
# The limit of the commands that walk a whole repository (`sdr elist`, `sel list`): a real BMC takes 5-30 s,
# a slow one minutes, far over a quick command's --timeout. Such a command gets max(--timeout, this).
IPMI_SLOW_TIMEOUT = 120.0
# Per runner (one audit), the ipmitool command that hung: the BMC does not answer, and every later command
# would wait the whole timeout too (fru, sdr, sel info and sel list: four timeouts one after another).
UNRESPONSIVE_BMC: weakref.WeakKeyDictionary[Runner, str] = weakref.WeakKeyDictionary()
# Per runner, whether the BMC answered a command of this audit: then a slow walk that runs out of time is
# a slow repository, not a hung BMC, and the other commands are still asked.
BMC_ANSWERED: weakref.WeakKeyDictionary[Runner, bool] = weakref.WeakKeyDictionary()


def ipmitool_run(ctx: Context, argv: list[str], redact=None, ask_anyway: bool = False,
                 slow: bool = False) -> ToolResult | None:
    """Run one ipmitool command holding the process-wide ipmitool lock (`redact` as for Context.run). None
    when ipmitool is absent, or when an earlier command of this audit hung: then the BMC is not asked again
    (unless `ask_anyway`: a caller with its own policy), and the error says why. A `slow` command (a walk
    of the SDR or the SEL) gets max(--timeout, IPMI_SLOW_TIMEOUT); the BMC counts as hung when a quick
    command times out, or a slow one before the BMC answered anything."""
    with IPMITOOL_LOCK:
        hung = UNRESPONSIVE_BMC.get(ctx.runner)
        if hung is not None and not ask_anyway:
            ctx.error(argv, f"not run: the BMC did not answer `{hung}` within the timeout")
            return None
        timeout = max(ctx.runner.timeout, IPMI_SLOW_TIMEOUT) if slow else None
        result = ctx.run(argv, timeout=timeout, redact=redact)
        if result is not None and result.timed_out:
            if not slow or not BMC_ANSWERED.get(ctx.runner):
                UNRESPONSIVE_BMC[ctx.runner] = " ".join(argv)
        elif result is not None and result.returncode == 0:
            BMC_ANSWERED[ctx.runner] = True
    return result


def run_ipmitool_quiet(ctx: Context, argv: list[str], redact=None) -> ToolResult | None:
    """One ipmitool run (by ipmitool_run: one at a time; a hang it meets keeps the other collectors from
    asking); the caller judges the result and decides itself whether to go on after a hang."""
    return ipmitool_run(ctx, argv, redact=redact, ask_anyway=True)


def ipmi_present(ctx: Context) -> bool:
    """Whether the kernel's IPMI device node exists (without it ipmitool has no BMC to talk to)."""
    return any(ctx.exists("devfs", device) for device in IPMI_DEVICES)


def ipmitool_text(ctx: Context, argv: list[str], slow: bool = False) -> str | None:
    """An ipmitool command's stdout (empty output included: an empty event log prints nothing), run by
    ipmitool_run (`slow`: a repository walk, with its longer limit); None when ipmitool is absent, or
    failed or hung (an error)."""
    result = ipmitool_run(ctx, argv, slow=slow)
    if result is None:
        return None
    if result.timed_out or result.returncode != 0:
        ctx.check(result)
        return None
    return result.stdout


# -- kernel log: dmesg, read once per audit, shared by nvidia and kernel_log ---------------------------------

# The prefixes a kernel log line may carry, whoever wrote it down: <priority>, RFC 5424 syslog, classic
# syslog and journal (with or without a host name), ISO journal, "kernel:", dmesg's [uptime], dmesg -T's
# [date] and dmesg -H's [Mon12 10:00] / [  +0.000123]. Each: (pattern, which group is a time).
KERNEL_PREFIXES = (
    re.compile(r"^<\d{1,3}>1 (\S+) \S+ \S+ \S+ \S+ \S+ ?"),
    re.compile(r"^<\d{1,3}>"),
    re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)\s+(?:\S+\s+)?kernel:\s?"),
    re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S*)\s+(?:\S+\s+)?kernel:\s?"),
    re.compile(r"^kernel:\s?"),
    re.compile(r"^\[\s*(\d+\.\d+)\]\s?"),
    re.compile(r"^\[([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d \d{4})\]\s?"),
    re.compile(r"^\[([A-Z][a-z]{2}[ \d]\d \d\d:\d\d)\]\s?"),
    re.compile(r"^\[\s*\+\d+\.\d+\]\s?"),
    re.compile(r"^\d+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}) "),  # a ras-mc-ctl --errors row
)


def strip_kernel_prefix(line: str) -> tuple[str, str | None, float | None]:
    """(message, wall time as printed, seconds since boot) of one log line, whatever its prefixes."""
    when, uptime = None, None
    for _ in range(4):
        for pattern in KERNEL_PREFIXES:
            match = pattern.match(line)
            if match:
                if match.groups() and match[1]:
                    if re.fullmatch(r"\d+\.\d+", match[1]):
                        uptime = float(match[1])
                    else:
                        when = " ".join(match[1].split())
                line = line[match.end():]
                break
        else:
            break
    return line, when, uptime


KERNEL_URL_WORD = re.compile(rb'(bee\.(?:report|profile)=)("?)([^\s"]+)')


def redact_kernel_urls(output: bytes) -> bytes:
    """Kernel output (dmesg's "Kernel command line:" line) with the URLs of bee.report= and bee.profile= as
    shown_url shows them: no user:password@ and no query (a presigned URL's signature), so a capture
    (--capture, --report-capture) never carries the collector's secrets."""
    def shown(match: re.Match[bytes]) -> bytes:
        url = match[3].decode("utf-8", "replace")
        try:
            safe = shown_url(url)
        except ValueError:  # not a URL urlsplit can read (a bad port): keep only the scheme and host
            safe = url.split("?", 1)[0].rpartition("@")[2]
        return match[1] + match[2] + safe.encode()
    return KERNEL_URL_WORD.sub(shown, output)


KERNEL_LOG_LOCK = threading.Lock()  # the first collector that asks runs dmesg; the other waits for it
# Per runner (one audit), dmesg's run (None: not installed), whichever of nvidia and kernel_log asked first.
KERNEL_LOGS: weakref.WeakKeyDictionary[Runner, ToolResult | None] = weakref.WeakKeyDictionary()


def kernel_log_run(ctx: Context) -> ToolResult | None:
    """The run of `dmesg` (plain: busybox's dmesg has few options) of this audit, its URLs redacted
    (redact_kernel_urls): run once per Runner, captured and replayed as any tool, whichever collector asks
    first; the caller judges the result. None when dmesg is not installed (missing, for each caller)."""
    with KERNEL_LOG_LOCK:
        if ctx.runner not in KERNEL_LOGS:
            KERNEL_LOGS[ctx.runner] = ctx.run(["dmesg"], redact=redact_kernel_urls)
        result = KERNEL_LOGS[ctx.runner]
    if result is None and "dmesg" not in ctx.missing:
        ctx.missing.append("dmesg")
    return result


# -- board: BIOS, system, baseboard and chassis (dmidecode -t 0,1,2,3) ---------------------------------------


def parse_chassis(chassis: DmiRecord | None) -> dict[str, Any] | None:
    """The chassis (SMBIOS type 3): manufacturer, type ("Rack Mount Chassis"), version, serial, asset tag and
    SKU, placeholders as null; None when the table has no type 3 structure."""
    if chassis is None:
        return None
    return {
        "manufacturer": chassis.get("Manufacturer"),
        "type": chassis.get("Type"),
        "version": chassis.get("Version"),
        "serial": chassis.get("Serial Number"),
        "asset_tag": chassis.get("Asset Tag"),
        "sku": chassis.get("SKU Number"),
    }


def parse_board(records: list[DmiRecord]) -> dict[str, Any] | None:
    """BIOS (type 0), system (type 1), baseboard (type 2) and chassis (type 3) identity; each part is None
    when its structure is absent, the whole None when none of them is present."""
    bios = next(iter(dmi_of_type(records, 0)), None)
    system = next(iter(dmi_of_type(records, 1)), None)
    board = next(iter(dmi_of_type(records, 2)), None)
    chassis = next(iter(dmi_of_type(records, 3)), None)
    if bios is None and system is None and board is None and chassis is None:
        return None
    return {
        "bios": None if bios is None else {
            "vendor": bios.get("Vendor"),
            "version": bios.get("Version"),
            "release_date": bios.get("Release Date"),
            "revision": bios.get("BIOS Revision"),
        },
        "system": None if system is None else {
            "manufacturer": system.get("Manufacturer"),
            "product": system.get("Product Name"),
            "version": system.get("Version"),
            "serial": system.get("Serial Number"),
            "uuid": system.get("UUID"),
            "sku": system.get("SKU Number"),
            "family": system.get("Family"),
        },
        "baseboard": None if board is None else {
            "manufacturer": board.get("Manufacturer"),
            "product": board.get("Product Name"),
            "version": board.get("Version"),
            "serial": board.get("Serial Number"),
            "asset_tag": board.get("Asset Tag"),
        },
        "chassis": parse_chassis(chassis),
    }


@collector("board")
def collect_board(ctx: Context) -> dict[str, Any] | None:
    """BIOS, system, baseboard and chassis identity from one `dmidecode -t 0,1,2,3`."""
    records = dmidecode_records(ctx, "0,1,2,3")
    return None if records is None else parse_board(records)


# -- cpu: one entry per socket (dmidecode -t 4) --------------------------------------------------------------


def parse_cpu_socket(record: DmiRecord) -> dict[str, Any]:
    """One processor socket: populated or empty, and what sits in it."""
    status = clean(record.fields.get("Status"))
    return {
        "designation": record.get("Socket Designation"),
        "manufacturer": record.get("Manufacturer"),
        "model": " ".join((record.get("Version") or "").split()) or None,  # runs of blanks made one
        "family": record.get("Family"),
        "max_speed_mhz": dmi_speed(record.fields.get("Max Speed")),
        "current_speed_mhz": dmi_speed(record.fields.get("Current Speed")),
        "cores": dmi_count(record.fields.get("Core Count")),
        "enabled_cores": dmi_count(record.fields.get("Core Enabled")),
        "threads": dmi_count(record.fields.get("Thread Count")),
        "status": status,
        "populated": None if status is None else status.lower().startswith("populated"),
    }


# Processor types that are not a CPU socket (SMBIOS type 4 "Processor Type"): co-processors. Every other
# processor structure is a socket, whatever its Type says: "Central Processor", "Other" (ARM servers),
# "Unknown", or <OUT OF SPEC> (the zeroed structure of an empty socket on dual-socket boards).
CO_PROCESSORS = {"math processor", "dsp processor", "video processor"}


def parse_cpus(records: list[DmiRecord]) -> dict[str, Any] | None:
    """Every CPU socket (type 4 structures but co-processors) and the totals of the populated ones."""
    sockets = [
        parse_cpu_socket(record)
        for record in dmi_of_type(records, 4)
        if record.fields.get("Type", "").strip().lower() not in CO_PROCESSORS
    ]
    if not sockets:
        return None
    populated = [socket for socket in sockets if socket["populated"]]
    return {
        "source": "smbios",
        "sockets": sockets,
        "socket_count": len(sockets),
        "populated_sockets": len(populated),
        "total_cores": sum_known(socket["cores"] for socket in populated),
        "total_threads": sum_known(socket["threads"] for socket in populated),
    }


# ARM CPUs name no model in /proc/cpuinfo, only their MIDR's `CPU implementer` and `CPU part`: the server
# and board parts among them, from util-linux's sys-utils/lscpu-arm.c (its hw_implementer and *_part tables).
ARM_IMPLEMENTERS: dict[int, tuple[str, dict[int, str]]] = {
    0x41: ("ARM", {0xd03: "Cortex-A53", 0xd07: "Cortex-A57", 0xd08: "Cortex-A72", 0xd0b: "Cortex-A76",
                   0xd0c: "Neoverse-N1", 0xd40: "Neoverse-V1", 0xd49: "Neoverse-N2", 0xd4a: "Neoverse-E1",
                   0xd4f: "Neoverse-V2"}),
    0x42: ("Broadcom", {0x516: "ThunderX2"}),
    0x43: ("Cavium", {0x0a1: "ThunderX-88XX", 0x0a2: "ThunderX-81XX", 0x0a3: "ThunderX-83XX",
                      0x0af: "ThunderX2-99xx", 0x0b8: "ThunderX3-T110"}),
    0x46: ("FUJITSU", {0x001: "A64FX"}),
    0x48: ("HiSilicon", {0xd01: "Kunpeng-920"}),  # aka TaiShan v110 (tsv110)
    0x4E: ("NVIDIA", {0x004: "Carmel"}),
    0x50: ("APM", {0x000: "X-Gene"}),
    0x51: ("Qualcomm", {0xc00: "Falkor", 0x800: "Falkor-V1/Kryo"}),
    0x70: ("Phytium", {0x660: "FTC660", 0x661: "FTC661", 0x662: "FTC662", 0x663: "FTC663"}),
    0xC0: ("Ampere", {0xac3: "Ampere-1", 0xac4: "Ampere-1a"}),
}


def arm_cpu(fields: dict[str, str]) -> tuple[str | None, str | None]:
    """(vendor, model) of an ARM /proc/cpuinfo block from its `CPU implementer` and `CPU part`: names from
    ARM_IMPLEMENTERS ("HiSilicon", "Kunpeng-920"); a part not in the table is "<vendor> part 0xNNN" (never
    nothing: the QR names it); (None, None) when the block carries no implementer."""
    implementer = to_int(fields.get("cpu implementer"))
    if implementer is None:
        return None, None
    part = to_int(fields.get("cpu part"))
    vendor, parts = ARM_IMPLEMENTERS.get(implementer, (f"implementer 0x{implementer:02x}", {}))
    if part is None:
        return vendor, None
    return vendor, parts.get(part) or f"{vendor} part 0x{part:03x}"


def parse_cpuinfo(text: str | None) -> dict[str, Any] | None:
    """CPU sockets as the kernel counts them (/proc/cpuinfo), for machines without SMBIOS (VMs, clouds):
    one socket per `physical id` (one in all when the kernel gives none, as on many ARM systems), with the
    model name and vendor (on ARM, which names neither, from `CPU implementer` and `CPU part`: arm_cpu),
    current clock, cores (`cpu cores`, else the distinct `core id`s) and threads (its
    logical CPUs); the same shape as the SMBIOS sockets, fields the kernel does not know as null. None when
    the text holds no processor."""
    blocks = []
    for chunk in re.split(r"\n\s*\n", (text or "").replace("\r\n", "\n")):
        fields: dict[str, str] = {}
        for line in chunk.split("\n"):
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip().lower(), value.strip())
        if "processor" in fields and dmi_count(fields["processor"]) is not None:
            blocks.append(fields)
    if not blocks:
        return None
    packages: dict[str, list[dict[str, str]]] = {}
    for fields in blocks:
        packages.setdefault(fields.get("physical id", ""), []).append(fields)
    sockets = []
    for package_id, cpus in sorted(packages.items(), key=lambda item: to_int(item[0]) or 0):
        first = cpus[0]
        core_ids = {fields["core id"] for fields in cpus if "core id" in fields}
        cores = dmi_count(first.get("cpu cores")) or (len(core_ids) or None)
        speed = leading_float(first.get("cpu mhz"))
        arm_vendor, arm_model = arm_cpu(first)
        sockets.append({
            "designation": f"physical id {package_id}" if package_id else None,
            "manufacturer": clean(first.get("vendor_id")) or arm_vendor,
            "model": " ".join((first.get("model name") or "").split()) or arm_model,
            "family": None,
            "max_speed_mhz": None,
            "current_speed_mhz": None if speed is None else round(speed),
            "cores": cores,
            "enabled_cores": None,
            "threads": len(cpus),
            "status": None,
            "populated": True,
        })
    return {
        "source": "/proc/cpuinfo",
        "sockets": sockets,
        "socket_count": len(sockets),
        "populated_sockets": len(sockets),
        "total_cores": sum_known(socket["cores"] for socket in sockets),
        "total_threads": sum(socket["threads"] for socket in sockets),
    }


@collector("cpu")
def collect_cpu(ctx: Context) -> dict[str, Any] | None:
    """Every processor socket from `dmidecode -t 4`; without SMBIOS data (no table, as on many VMs and
    clouds, no dmidecode, or a table without processors) the sockets the kernel knows (/proc/cpuinfo),
    marked "source": "/proc/cpuinfo". The SMBIOS error stays in the document either way."""
    records = dmidecode_records(ctx, "4")
    cpus = None if records is None else parse_cpus(records)
    return cpus if cpus is not None else parse_cpuinfo(ctx.read("procfs", "cpuinfo"))


VIRTUAL_MACHINE = re.compile(r"(?i)vmware|qemu|\bkvm\b|virtualbox|virtual machine|\bxen\b|\bhvm\b|bochs|"
                             r"parallels|bhyve|openstack nova|cloud hypervisor")


def is_virtual_machine(document: dict[str, Any]) -> bool:
    """Whether DMI names a hypervisor's virtual machine (VMware, QEMU/KVM, Hyper-V, Xen, VirtualBox ...),
    whose empty "sockets" are how the hypervisor describes its vCPUs, not hardware to look at."""
    system = (document.get("board") or {}).get("system") or {}
    names = " ".join(str(system.get(key) or "") for key in ("manufacturer", "product"))
    return bool(VIRTUAL_MACHINE.search(names))


@finding_rule
def empty_cpu_sockets(document: dict[str, Any]) -> list[dict[str, Any]]:
    """An empty CPU socket beside a populated one (not on a virtual machine)."""
    if is_virtual_machine(document):
        return []
    cpu = document.get("cpu") or {}
    sockets = cpu.get("sockets") or []
    empty = [socket for socket in sockets if socket["populated"] is False]
    if not empty or not any(socket["populated"] for socket in sockets):
        return []
    names = ", ".join(socket["designation"] or "?" for socket in empty[:8])
    names += " ..." if len(empty) > 8 else ""
    return [finding("warning", "cpu",
                    f"{len(empty)} of {len(sockets)} CPU sockets empty ({names}) beside populated ones")]


# -- memory: one entry per slot (dmidecode -t 17) and EDAC error counts --------------------------------------

EMPTY_SLOT_SIZES = {"no module installed", "not installed", "0 mb", "0 gb", "0 bytes", "none"}


def parse_memory_slot(record: DmiRecord) -> dict[str, Any]:
    """One memory slot; an empty slot keeps its locator but no vendor strings (firmware fills in junk)."""
    size_text = (record.fields.get("Size") or "").strip()
    size = dmi_size(size_text)
    if size_text.lower() in EMPTY_SLOT_SIZES:
        populated: bool | None = False
    else:
        populated = True if size else None
    module = populated is not False
    configured = record.fields.get("Configured Memory Speed") or record.fields.get("Configured Clock Speed")
    return {
        "handle": record.handle,
        "locator": record.get("Locator"),
        "bank": record.get("Bank Locator"),
        "array_handle": record.get("Array Handle"),
        "populated": populated,
        "size_bytes": size if populated else None,
        "type": record.get("Type") if module else None,
        "type_detail": record.get("Type Detail") if module else None,
        "speed_mts": dmi_speed(record.fields.get("Speed")) if module else None,
        "configured_speed_mts": dmi_speed(configured) if module else None,
        "manufacturer": record.get("Manufacturer") if module else None,
        "serial": record.get("Serial Number") if module else None,
        "part_number": record.get("Part Number") if module else None,
        "asset_tag": record.get("Asset Tag") if module else None,
        "rank": dmi_count(record.fields.get("Rank")) if module else None,
        "form_factor": record.get("Form Factor"),
        "edac_corrected": None,
        "edac_uncorrected": None,
    }


def parse_memory(records: list[DmiRecord]) -> dict[str, Any] | None:
    """Every memory slot (type 17), in table order, keyed by nothing: a repeated locator stays two slots."""
    slots = [parse_memory_slot(record) for record in dmi_of_type(records, 17)]
    if not slots:
        return None
    populated = [slot for slot in slots if slot["populated"]]
    return {
        "source": "smbios",
        "slots": slots,
        "total_slots": len(slots),
        "populated_slots": len(populated),
        "total_bytes": sum_known(slot["size_bytes"] for slot in populated) if populated else 0,
    }


EDAC_ROOT = "devices/system/edac/mc"


def read_edac(ctx: Context) -> dict[str, Any] | None:
    """EDAC memory controllers and their DIMMs (or ranks, or csrows on old kernels) with error counts."""
    controllers = [name for name in ctx.listdir("sysfs", EDAC_ROOT) if re.fullmatch(r"mc\d+", name)]
    if not controllers:
        return None
    result: dict[str, Any] = {"controllers": [], "dimms": []}
    for mc in controllers:
        base = f"{EDAC_ROOT}/{mc}"
        result["controllers"].append({
            "name": mc,
            "driver": ctx.read("sysfs", f"{base}/mc_name"),
            "corrected": to_int(ctx.read("sysfs", f"{base}/ce_count")),
            "uncorrected": to_int(ctx.read("sysfs", f"{base}/ue_count")),
            "corrected_noinfo": to_int(ctx.read("sysfs", f"{base}/ce_noinfo_count")),
            "uncorrected_noinfo": to_int(ctx.read("sysfs", f"{base}/ue_noinfo_count")),
        })
        entries = ctx.listdir("sysfs", base)
        units = [name for name in entries if re.fullmatch(r"(dimm|rank)\d+", name)]
        for unit in units:
            size_mb = to_int(ctx.read("sysfs", f"{base}/{unit}/size"))
            result["dimms"].append({
                "controller": mc,
                "name": unit,
                "label": ctx.read("sysfs", f"{base}/{unit}/dimm_label") or None,
                "location": ctx.read("sysfs", f"{base}/{unit}/dimm_location") or None,
                "size_bytes": None if size_mb is None else size_mb << 20,
                "corrected": to_int(ctx.read("sysfs", f"{base}/{unit}/dimm_ce_count")),
                "uncorrected": to_int(ctx.read("sysfs", f"{base}/{unit}/dimm_ue_count")),
            })
        if not units:  # kernels before 3.3 and some drivers: chip-select rows only
            for row in (name for name in entries if re.fullmatch(r"csrow\d+", name)):
                labels = [ctx.read("sysfs", f"{base}/{row}/{name}") or "" for name in
                          sorted(ctx.listdir("sysfs", f"{base}/{row}")) if name.endswith("_dimm_label")]
                size_mb = to_int(ctx.read("sysfs", f"{base}/{row}/size_mb"))
                result["dimms"].append({
                    "controller": mc,
                    "name": row,
                    "label": ", ".join(label for label in labels if label) or None,
                    "location": None,
                    "size_bytes": None if size_mb is None else size_mb << 20,
                    "corrected": to_int(ctx.read("sysfs", f"{base}/{row}/ce_count")),
                    "uncorrected": to_int(ctx.read("sysfs", f"{base}/{row}/ue_count")),
                })
    return result


def squash(text: str | None) -> str:
    """Lower case with runs of blanks made one space (to compare labels)."""
    return " ".join((text or "").lower().split())


def attach_edac(slots: list[dict[str, Any]], edac: dict[str, Any]) -> None:
    """Put each EDAC DIMM's counts on the one slot its label names ("<bank> <locator>" as ghes_edac writes
    it, or the locator alone); a label matching no slot or several stays only in the EDAC list."""
    for dimm in edac["dimms"]:
        label = squash(dimm["label"])
        if not label:
            continue
        matches = [slot for slot in slots if label in {
            squash(f"{slot['bank'] or ''} {slot['locator'] or ''}"), squash(slot["locator"])}]
        if len(matches) == 1 and matches[0]["edac_corrected"] is None:
            matches[0]["edac_corrected"] = dimm["corrected"]
            matches[0]["edac_uncorrected"] = dimm["uncorrected"]
            dimm["slot_handle"] = matches[0]["handle"]


def parse_meminfo(text: str | None) -> dict[str, Any] | None:
    """The memory the kernel manages (/proc/meminfo MemTotal, in bytes), for machines without SMBIOS: a
    little less than what is installed (firmware and kernel reservations); slots unknown. None when the
    text has no MemTotal."""
    match = re.search(r"^MemTotal:\s*(\d+)\s*kB\s*$", (text or "").replace("\r\n", "\n"), re.MULTILINE)
    if not match:
        return None
    return {
        "source": "/proc/meminfo",
        "slots": [],
        "total_slots": None,
        "populated_slots": None,
        "total_bytes": int(match[1]) * 1024,
        "edac": None,
    }


@collector("memory")
def collect_memory(ctx: Context) -> dict[str, Any] | None:
    """Every memory slot from `dmidecode -t 17`, with EDAC error counts where the kernel has EDAC; without
    SMBIOS data the memory the kernel manages (/proc/meminfo), marked "source": "/proc/meminfo"."""
    records = dmidecode_records(ctx, "17")
    memory = None if records is None else parse_memory(records)
    if memory is None:
        memory = parse_meminfo(ctx.read("procfs", "meminfo"))
    edac = read_edac(ctx)
    if memory is None and edac is None:
        return None
    if memory is None:
        memory = {"source": None, "slots": [], "total_slots": None, "populated_slots": None,
                  "total_bytes": None}
    memory["edac"] = edac
    if edac is not None:
        attach_edac(memory["slots"], edac)
    return memory


SOCKET_PATTERNS = (
    re.compile(r"(?i)\b(?:cpu|proc|processor|socket)\s*[_#-]?\s*(\d+)"),
    re.compile(r"(?i)(?:^|[^a-z0-9])p(\d+)(?![0-9])"),
)


def dimm_sockets(slots: list[dict[str, Any]]) -> list[int] | None:
    """The CPU socket number of every slot, from its locator or else its bank locator ("CPU1_DIMM_A1",
    "PROC 2 DIMM 3", "P1-DIMMA1", "SOCKET 0 CHANNEL 1"); None unless one rule names the socket of all."""
    for key in ("locator", "bank"):
        for pattern in SOCKET_PATTERNS:
            numbers = []
            for slot in slots:
                match = pattern.search(slot[key] or "")
                if not match:
                    break
                numbers.append(int(match[1]))
            else:
                if slots:
                    return numbers
    return None


@finding_rule
def uneven_dimm_population(document: dict[str, Any]) -> list[dict[str, Any]]:
    """DIMM population (count or capacity of modules) that differs between CPU sockets."""
    slots = (document.get("memory") or {}).get("slots") or []
    sockets = dimm_sockets(slots)
    if sockets is None or len(set(sockets)) < 2:
        return []
    groups: dict[int, list[dict[str, Any]]] = {number: [] for number in sorted(set(sockets))}
    for number, slot in zip(sockets, slots, strict=True):
        if slot["populated"]:
            groups[number].append(slot)
    populated_cpus = (document.get("cpu") or {}).get("populated_sockets")
    if isinstance(populated_cpus, int) and populated_cpus < len(groups):
        groups = {number: dimms for number, dimms in groups.items() if dimms}  # an empty socket's slots
    if len(groups) < 2:
        return []
    shapes = {number: (len(dimms), sum(slot["size_bytes"] or 0 for slot in dimms))
              for number, dimms in groups.items()}
    if len(set(shapes.values())) == 1:
        return []
    detail = ", ".join(
        f"socket {number}: {count} DIMMs, {human_size(size)}" for number, (count, size) in shapes.items()
    )
    return [finding("warning", "memory", f"DIMM population differs between CPU sockets ({detail})")]



# -- storage: whole disks from lsblk, identity and health from smartctl and nvme-cli -------------------------

VIRTUAL_DISK_PREFIXES = ("loop", "zram", "ram", "nbd", "md", "dm-", "sr", "fd")
DISK_TOOL_WORKERS = 8  # per-disk smartctl/nvme runs at once: fast on 24 disks, bounded on 200
SMARTCTL_FLAG_BITS = {
    2: "smart_command_failed",
    3: "disk_failing",
    4: "prefail_attributes_at_or_below_threshold",
    5: "attributes_were_at_or_below_threshold",
    6: "error_log_has_errors",
    7: "self_test_log_has_errors",
}
NVME_CRITICAL_WARNING_BITS = {
    0: "available spare below threshold",
    1: "temperature outside threshold",
    2: "reliability degraded",
    3: "read-only mode",
    4: "volatile memory backup failed",
    5: "persistent memory region read-only",
}
LSBLK_COLUMNS = "NAME,KNAME,PATH,TYPE,SIZE,MODEL,SERIAL,REV,WWN,TRAN,ROTA,RM,HOTPLUG"


def is_whole_disk(device: dict[str, Any]) -> bool:
    """Whether an lsblk entry is a physical whole disk (type "disk", not a loop/zram/ram/nbd/md/dm)."""
    name = str(device.get("kname") or device.get("name") or "")
    if device.get("type") != "disk" or not name:
        return False
    if re.fullmatch(r"mmcblk\d+(?:boot\d+|rpmb)", name):  # an eMMC's boot and RPMB areas, not disks
        return False
    return not name.startswith(VIRTUAL_DISK_PREFIXES)


def removable(device: dict[str, Any]) -> bool | None:
    """lsblk RM or HOTPLUG; None when lsblk printed neither."""
    flags = [to_bool(device.get(key)) for key in ("rm", "hotplug")]
    return True if True in flags else False if False in flags else None


def parse_lsblk(text: str | None) -> list[dict[str, Any]] | None:
    """Whole disks from `lsblk -J -b` output (children, partitions and virtual devices dropped).

    Each: name, path, size_bytes (None when lsblk printed a human size like "30G"), model, serial,
    firmware (REV), wwn, transport, rotational, removable (a removable medium, or a disk on a hot-plug
    bus such as USB: many USB sticks do not set RM). None when the text is not lsblk JSON.
    """
    data = load_json(text)
    if not isinstance(data, dict) or not isinstance(data.get("blockdevices"), list):
        return None
    disks = []
    for device in data["blockdevices"]:
        if not isinstance(device, dict) or not is_whole_disk(device):
            continue
        name = str(device.get("name"))
        disks.append({
            "name": name,
            "path": clean(device.get("path")) or f"/dev/{name}",
            "size_bytes": to_int(device.get("size")),
            "model": clean(device.get("model")),
            "serial": clean(device.get("serial")),
            "firmware": clean(device.get("rev")),
            "wwn": clean(device.get("wwn")),
            "transport": clean(device.get("tran")),
            "rotational": to_bool(device.get("rota")),
            "removable": removable(device),
        })
    return disks


def smartctl_wwn(wwn: Any) -> str | None:
    """smartctl's {"naa", "oui", "id"} WWN as lsblk prints it: 0x5000c500a1b2c3d4."""
    if not isinstance(wwn, dict):
        return None
    naa, oui, ident = (to_int(wwn.get(key)) for key in ("naa", "oui", "id"))
    if naa is None or oui is None or ident is None:
        return None
    return f"0x{naa:x}{oui:06x}{ident:09x}"


def ata_attribute_raw(data: dict[str, Any], attribute_id: int) -> int | None:
    """The raw count of an ATA SMART attribute (smartctl's interpreted raw string, else raw value)."""
    table = as_list(as_dict(data.get("ata_smart_attributes")).get("table"))
    for attribute in table:
        if isinstance(attribute, dict) and attribute.get("id") == attribute_id:
            raw = as_dict(attribute.get("raw"))
            value = leading_int(raw.get("string"))
            return value if value is not None else to_int(raw.get("value"))
    return None


def smartctl_flags(exit_status: int | None) -> list[str]:
    """The names of the set bits 2-7 of smartctl's exit status (bits 0-1 are run failures)."""
    if not exit_status:
        return []
    return [name for bit, name in SMARTCTL_FLAG_BITS.items() if exit_status & (1 << bit)]


def smartctl_message(data: dict[str, Any]) -> str | None:
    """The first error message smartctl put in its JSON (why a device could not be read)."""
    messages = as_list(as_dict(data.get("smartctl")).get("messages"))
    for message in messages:
        if isinstance(message, dict) and message.get("severity") == "error":
            return first_line(str(message.get("string") or "")) or None
    return None


def nvme_critical_warning(value: Any) -> int | None:
    """The NVMe critical warning bit field: an int, or nvme-cli 2.11's {"value": N, ...} object."""
    if isinstance(value, dict):
        value = value.get("value")
    return to_int(value)


def smart_available(data: dict[str, Any], failed_to_run: bool) -> bool | None:
    """Whether the device answers SMART: False when smartctl could not run on it."""
    if failed_to_run:
        return False
    available = as_dict(data.get("smart_support")).get("available")
    if isinstance(available, bool):
        return available
    return True if "smart_status" in data else None


def parse_smartctl(text: str | None, exit_status: int | None = None) -> dict[str, Any] | None:
    """Identity and health from `smartctl -j -a` (or -x / --info) JSON; None when it is not smartctl JSON.

    The exit status is a bit mask: bits 0-1 mean the command or the open failed (smart_available is then
    False and smartctl_message says why); with other bits the JSON is complete; bit 3 means failing.
    """
    data = load_json(text)
    if not isinstance(data, dict) or not isinstance(data.get("smartctl"), dict):
        return None
    if exit_status is None:
        exit_status = to_int(data["smartctl"].get("exit_status"))
    failed_to_run = bool(exit_status and exit_status & 0b11)
    nvme_log = as_dict(data.get("nvme_smart_health_information_log"))
    passed = as_dict(data.get("smart_status")).get("passed")
    if not isinstance(passed, bool):
        passed = False if exit_status and exit_status & 0b1000 else None
    temperature = to_int(as_dict(data.get("temperature")).get("current"))
    reallocated = ata_attribute_raw(data, 5)
    if reallocated is None:
        reallocated = to_int(data.get("scsi_grown_defect_list"))
    capacity = to_int(as_dict(data.get("user_capacity")).get("bytes"))
    if capacity is None:
        capacity = to_int(data.get("nvme_total_capacity"))
    return {
        "device_type": clean(as_dict(data.get("device")).get("type")),
        "model": clean(data.get("model_name") or data.get("scsi_model_name")),
        "serial": clean(data.get("serial_number")),
        "firmware": clean(data.get("firmware_version") or data.get("scsi_revision") or data.get("revision")),
        "wwn": smartctl_wwn(data.get("wwn")) or clean(data.get("logical_unit_id")),  # SAS: the LU id
        "size_bytes": capacity,
        "health": {
            "smart_available": smart_available(data, failed_to_run),
            "smart_passed": passed,
            "power_on_hours": to_int(as_dict(data.get("power_on_time")).get("hours")),
            "temperature_c": temperature if temperature and temperature > 0 else None,
            "reallocated_sectors": reallocated,
            "pending_sectors": ata_attribute_raw(data, 197),
            "critical_warning": nvme_critical_warning(nvme_log.get("critical_warning")),
            "percentage_used": to_int(
                nvme_log.get("percentage_used", data.get("scsi_percentage_used_endurance_indicator"))
            ),
            "media_errors": to_int(nvme_log.get("media_errors")),
            "unsafe_shutdowns": to_int(nvme_log.get("unsafe_shutdowns")),
            "smartctl_exit_status": exit_status,
            "smartctl_flags": smartctl_flags(exit_status),
            "smartctl_message": smartctl_message(data),
        },
    }


def parse_nvme_id_ctrl(text: str | None) -> dict[str, Any] | None:
    """Model, serial, firmware and PCI vendor from `nvme id-ctrl -o json`; None when it is not that."""
    data = load_json(text)
    if not isinstance(data, dict) or not any(key in data for key in ("sn", "mn", "fr")):
        return None
    vendor = to_int(data.get("vid"))
    return {
        "model": clean(data.get("mn")),
        "serial": clean(data.get("sn")),
        "firmware": clean(data.get("fr")),
        "pci_vendor_id": f"{vendor:04x}" if vendor else None,
        "subsystem_nqn": clean(data.get("subnqn")),
    }


def parse_nvme_smart_log(text: str | None) -> dict[str, Any] | None:
    """Health from `nvme smart-log -o json` (nvme-cli 1.x-2.11: numbers may be strings, temperature in
    kelvin, critical_warning an int or an object); None when it is not a smart log."""
    data = load_json(text)
    if not isinstance(data, dict) or "critical_warning" not in data:
        return None
    kelvin = to_int(data.get("temperature"))
    return {
        "critical_warning": nvme_critical_warning(data.get("critical_warning")),
        "temperature_c": kelvin - 273 if kelvin and kelvin > 273 else None,
        "percentage_used": to_int(data.get("percent_used", data.get("percentage_used"))),
        "power_on_hours": to_int(data.get("power_on_hours")),
        "media_errors": to_int(data.get("media_errors")),
        "unsafe_shutdowns": to_int(data.get("unsafe_shutdowns")),
    }


def parse_nvme_list(text: str | None) -> dict[str, dict[str, Any]] | None:
    """Namespace device path -> {model, serial, firmware, controller, pci_address} from `nvme list -o json`
    in all its shapes (1.x flat, 1.16 -v tree, 2.x flat, 2.11 subsystem tree); None when not that JSON."""
    data = load_json(text)
    if not isinstance(data, dict) or not isinstance(data.get("Devices"), list):
        return None
    found: dict[str, dict[str, Any]] = {}

    def add(namespace: Any, controller: dict[str, Any]) -> None:
        name = namespace.get("NameSpace") if isinstance(namespace, dict) else None
        path = namespace.get("DevicePath") if isinstance(namespace, dict) else None
        if not path and isinstance(name, str):
            path = f"/dev/{name}"
        if not isinstance(path, str):
            return
        found[path] = {
            "model": clean(controller.get("ModelNumber")),
            "serial": clean(controller.get("SerialNumber")),
            "firmware": clean(controller.get("Firmware")),
            "controller": clean(controller.get("Controller")),
            "pci_address": normalize_pci_address(controller.get("Address")),
        }

    def walk_subsystem(subsystem: dict[str, Any]) -> None:
        for controller in as_list(subsystem.get("Controllers")):
            if isinstance(controller, dict):
                for namespace in as_list(controller.get("Namespaces")):
                    add(namespace, controller)

    for device in data["Devices"]:
        if not isinstance(device, dict):
            continue
        if "DevicePath" in device:  # flat list (1.x, 2.0-2.10)
            add(device, device)
        elif "Controllers" in device:  # 1.16 `list -v`: one subsystem per entry
            walk_subsystem(device)
        for subsystem in as_list(device.get("Subsystems")):  # 2.11: host -> subsystems -> controllers
            if isinstance(subsystem, dict):
                walk_subsystem(subsystem)
    return found


def is_nvme_disk(disk: dict[str, Any]) -> bool:
    return disk.get("transport") == "nvme" or str(disk.get("name", "")).startswith("nvme")


def disk_commands(disk: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The per-disk tool runs: smartctl for every disk, and nvme-cli's id-ctrl and smart-log for NVMe."""
    path = disk["path"]
    commands = [("smartctl", ["smartctl", "-j", "-a", path])]
    if is_nvme_disk(disk):
        commands += [
            ("id-ctrl", ["nvme", "id-ctrl", "-o", "json", path]),
            ("smart-log", ["nvme", "smart-log", "-o", "json", path]),
        ]
    return commands


def run_disk_tools(ctx: Context, disks: list[dict[str, Any]]) -> dict[tuple[str, str], ToolResult]:
    """Run every per-disk tool, a bounded number at once; results keyed by (disk name, tool)."""
    jobs = [(disk["name"], tool, argv) for disk in disks for tool, argv in disk_commands(disk)]
    results: dict[tuple[str, str], ToolResult] = {}
    if not jobs:
        return results
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(DISK_TOOL_WORKERS, len(jobs))) as pool:
        futures = {pool.submit(ctx.run, argv): (name, tool) for name, tool, argv in jobs}
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            if result is not None:
                results[futures[future]] = result
    return results


def empty_health() -> dict[str, Any]:
    return {
        "smart_available": None, "smart_passed": None, "power_on_hours": None, "temperature_c": None,
        "reallocated_sectors": None, "pending_sectors": None, "critical_warning": None,
        "percentage_used": None, "media_errors": None, "unsafe_shutdowns": None,
        "smartctl_exit_status": None, "smartctl_flags": [], "smartctl_message": None,
    }


def merge_identity(disk: dict[str, Any], source: dict[str, Any] | None, keys: tuple[str, ...]) -> None:
    """Fill the disk's identity fields that are still unknown from another source."""
    for key in keys:
        if source and disk.get(key) is None and source.get(key) is not None:
            disk[key] = source[key]


def apply_smartctl(ctx: Context, disk: dict[str, Any], result: ToolResult | None) -> None:
    """Put smartctl's identity and health into the disk; record a real failure as an error."""
    if result is None:
        return
    if result.timed_out:
        ctx.check(result)
        return
    parsed = parse_smartctl(result.stdout, result.returncode)
    if parsed is None:
        detail = "printed no smartctl JSON" if result.stdout.strip() else "printed nothing"
        ctx.error(result.argv, f"exit status {result.returncode}: {detail}")
        return
    health = parsed["health"]
    if result.returncode is not None and result.returncode & 0b10:
        # bit 1: the device could not be opened (dead disk, permissions): a failure worth reporting
        reason = health["smartctl_message"] or "device open failed"
        ctx.error(result.argv, f"exit status {result.returncode}: {reason}")
    # bit 0 alone: smartctl cannot talk to this kind of device (virtio, unknown USB bridge): no SMART
    # there, which the disk's health says (smart_available false, smartctl_message), not a tool error.
    if not (result.returncode or 0) & 0b11:
        for key in ("model", "serial", "firmware", "wwn"):
            if parsed[key] is not None:
                disk[key] = parsed[key]
        merge_identity(disk, parsed, ("size_bytes",))
    disk["health"].update(health)


def apply_nvme(ctx: Context, disk: dict[str, Any], results: dict[tuple[str, str], ToolResult]) -> None:
    """Fill NVMe identity from id-ctrl and health from smart-log (smart-log wins for NVMe counters)."""
    id_ctrl = results.get((disk["name"], "id-ctrl"))
    if id_ctrl is not None and ctx.check(id_ctrl):
        parsed = parse_nvme_id_ctrl(id_ctrl.stdout)
        if parsed is None:
            ctx.error(id_ctrl.argv, "printed no nvme id-ctrl JSON")
        merge_identity(disk, parsed, ("model", "serial", "firmware"))
    smart_log = results.get((disk["name"], "smart-log"))
    if smart_log is not None and ctx.check(smart_log):
        parsed = parse_nvme_smart_log(smart_log.stdout)
        if parsed is None:
            ctx.error(smart_log.argv, "printed no nvme smart-log JSON")
            return
        health = disk["health"]
        for key, value in parsed.items():
            if value is not None and (key != "temperature_c" or health.get("temperature_c") is None):
                health[key] = value


def fill_from_nvme_list(ctx: Context, disks: list[dict[str, Any]]) -> None:
    """Last resort for NVMe disks still without model or serial: one `nvme list -o json`."""
    missing = [d for d in disks if is_nvme_disk(d) and (d.get("model") is None or d.get("serial") is None)]
    if not missing:
        return
    text = ctx.output(["nvme", "list", "-o", "json"])
    listed = parse_nvme_list(text) if text is not None else None
    for disk in missing:
        merge_identity(disk, (listed or {}).get(disk["path"]), ("model", "serial", "firmware"))


@collector("storage")
def collect_storage(ctx: Context) -> list[dict[str, Any]] | None:
    """Whole disks from lsblk, with smartctl (and nvme-cli for NVMe) identity and health per disk."""
    argv = ["lsblk", "-J", "-b", "-d", "-o", LSBLK_COLUMNS]
    text = ctx.output(argv)
    if text is None:
        return None
    disks = parse_lsblk(text)
    if disks is None:
        ctx.error(argv, "printed no lsblk JSON")
        return None
    for disk in disks:
        disk["pci_address"] = pci_address_in_path(ctx.realpath("sysfs", f"block/{disk['name']}/device"))
        disk["health"] = empty_health()
    results = run_disk_tools(ctx, disks)
    for disk in disks:
        try:
            apply_smartctl(ctx, disk, results.get((disk["name"], "smartctl")))
            if is_nvme_disk(disk):
                apply_nvme(ctx, disk, results)
        except Exception as exc:  # one disk's odd output must not lose the other disks
            ctx.error(None, f"{disk['path']}: cannot read its health: {type(exc).__name__}: {exc}")
    fill_from_nvme_list(ctx, disks)
    return disks


def disk_label(disk: dict[str, Any]) -> str:
    parts = [str(disk.get("path"))] + [str(disk[k]) for k in ("model", "serial") if disk.get(k)]
    return f"disk {parts[0]}" + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")


@finding_rule
def storage_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    """SMART failed, NVMe critical warning, wear at or over 90 %, reallocated or pending sectors."""
    found = []
    for disk in document.get("storage") or []:
        health = disk.get("health") or {}
        label = disk_label(disk)
        if health.get("smart_passed") is False:
            found.append(finding("critical", label, "SMART overall health self-assessment FAILED"))
        warning = health.get("critical_warning")
        if warning:
            names = [name for bit, name in NVME_CRITICAL_WARNING_BITS.items() if warning & (1 << bit)]
            found.append(finding("critical", label, f"NVMe critical warning {warning:#x}: "
                                 + (", ".join(names) or "unknown bit")))
        used = health.get("percentage_used")
        if used is not None and used >= 90:
            found.append(finding("warning", label, f"{used} % of the rated endurance used"))
        for key, what in (("reallocated_sectors", "reallocated"), ("pending_sectors", "pending")):
            count = health.get(key)
            if count:
                found.append(finding("warning", label, f"{count} {what} sectors"))
    return found


# -- pcie: every PCI function from lspci and sysfs -----------------------------------------------------------

NAME_WITH_ID = re.compile(r"^(.*?)\s*\[([0-9a-fA-F]{4})\]$")
UNNAMED = re.compile(r"^(?:Device|Vendor|Class) [0-9a-fA-F]{4}$")
VMM_FIELDS = {
    "Class": ("class", "class_id"),
    "Vendor": ("vendor", "vendor_id"),
    "Device": ("device", "device_id"),
    "SVendor": ("subsystem_vendor", "subsystem_vendor_id"),
    "SDevice": ("subsystem_device", "subsystem_device_id"),
}


def split_name_and_id(value: str, numeric: bool) -> tuple[str | None, str | None]:
    """("Intel Corporation", "8086") from "Intel Corporation [8086]" (-nn), "8086" (-n) or a bare name."""
    value = value.strip()
    if numeric:
        return None, value.lower() if re.fullmatch(r"[0-9a-fA-F]{4}", value) else None
    match = NAME_WITH_ID.match(value)
    name, ident = (match.group(1), match.group(2).lower()) if match else (value, None)
    if UNNAMED.match(name):  # lspci's stand-in when pci.ids has no name: an id, not a name
        return None, ident or name.split()[-1].lower()
    return clean(name), ident


def parse_lspci_vmm(text: str | None) -> list[dict[str, Any]]:
    """PCI functions from `lspci -vmm [-D]`, `-vmmn` or `-vmmnn`; records without a Slot are dropped."""
    if not text:
        return []
    records: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line.strip():
            records.append({})
            continue
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            records[-1].setdefault(key.strip(), value.strip())
    numeric = all(
        re.fullmatch(r"[0-9a-fA-F]{4}", r.get("Class", "")) for r in records if r.get("Class")
    ) and any(r.get("Class") for r in records)
    devices = []
    for record in records:
        address = normalize_pci_address(record.get("Slot"))
        if address is None:
            continue
        entry: dict[str, Any] = {"address": address}
        for key, (name_key, id_key) in VMM_FIELDS.items():
            name, ident = split_name_and_id(record.get(key, ""), numeric) if key in record else (None, None)
            entry[name_key], entry[id_key] = name, ident
        entry["revision"] = (record.get("Rev") or "").lower() or None
        entry["prog_if"] = (record.get("ProgIf") or "").lower() or None
        entry["physical_slot"] = record.get("PhySlot") or None
        entry["driver"] = record.get("Driver") or None
        entry["numa_node"] = numa_node(record.get("NUMANode"))
        devices.append(entry)
    return devices


def numa_node(value: Any) -> int | None:
    number = to_int(value)
    return number if number is not None and number >= 0 else None


def link_speed(value: str | None) -> float | None:
    """GT/s from sysfs `8.0 GT/s PCIe` / `2.5 GT/s` / lspci `8GT/s`; None for "Unknown" or absent."""
    if not value:
        return None
    match = re.search(r"(\d+(?:\.\d+)?)\s*GT/s", value)
    return float(match.group(1)) if match else None


def link_width(value: str | None) -> int | None:
    """Lanes from sysfs `4` (or `x4`); None when absent, unreadable or 0 (no link)."""
    number = to_int((value or "").strip().lstrip("x"))
    return number if number else None


def parse_aer(text: str | None) -> tuple[int | None, dict[str, int]]:
    """(total, counters) from a sysfs aer_dev_* file: "NAME COUNT" lines and a TOTAL_ERR_* line."""
    if text is None:
        return None, {}
    counters: dict[str, int] = {}
    total = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or to_int(parts[1]) is None:
            continue
        if parts[0].startswith("TOTAL_"):
            total = to_int(parts[1])
        else:
            counters[parts[0]] = to_int(parts[1])
    if total is None and counters:
        total = sum(counters.values())
    return total, counters


def read_pci_sysfs(ctx: Context, address: str) -> dict[str, Any]:
    """What sysfs says of one PCI function: ids, class, driver, NUMA node, link, upstream port, AER."""
    base = f"bus/pci/devices/{address}"

    def hex_id(name: str, digits: int = 4) -> str | None:
        value = to_int(ctx.read("sysfs", f"{base}/{name}"))
        return f"{value:0{digits}x}" if value is not None else None

    subsystem_vendor = hex_id("subsystem_vendor")
    has_subsystem = subsystem_vendor not in (None, "0000")  # 0000: the function names no subsystem
    info: dict[str, Any] = {
        "vendor_id": hex_id("vendor"), "device_id": hex_id("device"),
        "subsystem_vendor_id": subsystem_vendor if has_subsystem else None,
        "subsystem_device_id": hex_id("subsystem_device") if has_subsystem else None,
        "revision": hex_id("revision", 2),
    }
    class_code = hex_id("class", 6)
    info["class_id"], info["prog_if"] = (class_code[:4], class_code[4:]) if class_code else (None, None)
    driver = ctx.realpath("sysfs", f"{base}/driver")
    info["driver"] = driver.rsplit("/", 1)[-1] if driver else None
    info["numa_node"] = numa_node(ctx.read("sysfs", f"{base}/numa_node"))
    info["link"] = read_link(ctx, base)
    parent = pci_address_in_path(os.path.dirname(ctx.realpath("sysfs", base) or ""))
    info["upstream"] = None
    if parent is not None:
        upstream_link = read_link(ctx, f"bus/pci/devices/{parent}") or {}
        info["upstream"] = {
            "address": parent,
            "max_speed_gts": upstream_link.get("max_speed_gts"),
            "max_width": upstream_link.get("max_width"),
        }
    info["aer"] = read_aer(ctx, base)
    return info


def read_link(ctx: Context, base: str) -> dict[str, Any] | None:
    """The sysfs link speed and width of a PCI function; None when it has no PCIe link files."""
    values = {
        "current_speed_gts": link_speed(ctx.read("sysfs", f"{base}/current_link_speed")),
        "current_width": link_width(ctx.read("sysfs", f"{base}/current_link_width")),
        "max_speed_gts": link_speed(ctx.read("sysfs", f"{base}/max_link_speed")),
        "max_width": link_width(ctx.read("sysfs", f"{base}/max_link_width")),
    }
    return values if any(v is not None for v in values.values()) else None


def read_aer(ctx: Context, base: str) -> dict[str, Any] | None:
    """AER error counters of a PCI function, None when the kernel exposes none."""
    aer: dict[str, Any] = {"counters": {}}
    for kind in ("correctable", "nonfatal", "fatal"):
        total, counters = parse_aer(ctx.read("sysfs", f"{base}/aer_dev_{kind}"))
        aer[kind] = total
        if counters:
            aer["counters"][kind] = counters
    return aer if any(aer[k] is not None for k in ("correctable", "nonfatal", "fatal")) else None


@collector("pcie")
def collect_pcie(ctx: Context) -> list[dict[str, Any]] | None:
    """Every PCI function: names from `lspci -vmm -D`, ids, driver, NUMA node, link and AER from sysfs."""
    text = ctx.output(["lspci", "-vmm", "-D"])
    listed = {entry["address"]: entry for entry in parse_lspci_vmm(text)}
    if text is not None and not listed:
        ctx.error(["lspci", "-vmm", "-D"], "printed no PCI device records")
    in_sysfs = [a for a in ctx.listdir("sysfs", "bus/pci/devices") if normalize_pci_address(a) == a.lower()]
    addresses = sorted(set(listed) | {a.lower() for a in in_sysfs})
    if not addresses:
        return None
    devices = []
    for address in addresses:
        entry = listed.get(address) or {"address": address, **dict.fromkeys(
            ("class", "vendor", "device", "subsystem_vendor", "subsystem_device", "physical_slot"))}
        sysfs = read_pci_sysfs(ctx, address) if address in in_sysfs else {}
        for key, value in sysfs.items():
            if value is not None or key not in entry:
                entry[key] = value
        for key in ("class_id", "prog_if", "vendor_id", "device_id", "subsystem_vendor_id",
                    "subsystem_device_id", "revision", "driver", "numa_node", "link", "upstream", "aer"):
            entry.setdefault(key, None)
        devices.append(entry)
    return devices


def pcie_label(entry: dict[str, Any]) -> str:
    name = " ".join(str(entry[k]) for k in ("vendor", "device") if entry.get(k))
    return f"pcie {entry.get('address')}" + (f" ({name})" if name else "")


def idles_link_speed(entry: dict[str, Any]) -> bool:
    """GPUs (class 03) and NICs (class 02) lower their link speed when idle."""
    return str(entry.get("class_id") or "")[:2] in ("02", "03")


def is_bridge(entry: dict[str, Any]) -> bool:
    return str(entry.get("class_id") or "").startswith("0604")


def switch_upstream_ports(entries: list[dict[str, Any]]) -> set[str]:
    """The addresses of the PCIe switch upstream ports: bridges with an odd number of PCI bridges above them
    (root port -> upstream port -> downstream ports -> upstream port of a chained switch ...). Their own
    link is the one above them; a root or downstream port's link is the one to the device below."""
    by_address = {entry.get("address"): entry for entry in entries}
    found = set()
    for entry in entries:
        if not is_bridge(entry):
            continue
        above, parent, seen = 0, (entry.get("upstream") or {}).get("address"), set()
        while parent in by_address and parent not in seen:
            seen.add(parent)
            above += is_bridge(by_address[parent])  # not a VMD controller above Intel VMD root ports
            parent = (by_address[parent].get("upstream") or {}).get("address")
        if above % 2 == 1:
            found.add(entry["address"])
    return found


def link_findings(entry: dict[str, Any], upstream_port: bool = False) -> list[dict[str, Any]]:
    """A link narrower (or slower) than both the device and its upstream port support.

    Endpoints are judged, and bridges only when they are a switch's upstream port (`upstream_port`): a root
    or downstream port's "current" is the link to the device below, already judged from that device's
    side. Only when the upstream port is known.
    """
    link, upstream = entry.get("link") or {}, entry.get("upstream") or {}
    if (is_bridge(entry) and not upstream_port) or not upstream:
        return []
    current_width, current_speed = link.get("current_width"), link.get("current_speed_gts")
    found = []
    widths = [w for w in (link.get("max_width"), upstream.get("max_width")) if w]
    if current_width and len(widths) == 2 and current_width < min(widths):
        found.append(finding("warning", pcie_label(entry), f"PCIe link x{current_width} is narrower than "
                             f"the x{min(widths)} both the device and its upstream port support"))
    speeds = [s for s in (link.get("max_speed_gts"), upstream.get("max_speed_gts")) if s]
    if current_speed and len(speeds) == 2 and current_speed < min(speeds):
        severity = "info" if idles_link_speed(entry) else "warning"
        found.append(finding(severity, pcie_label(entry), f"PCIe link at {current_speed:g} GT/s, below the "
                             f"{min(speeds):g} GT/s both the device and its upstream port support"))
    return found


@finding_rule
def pcie_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Degraded links and AER fatal or non-fatal errors."""
    found = []
    entries = document.get("pcie") or []
    upstream_ports = switch_upstream_ports(entries)
    for entry in entries:
        found.extend(link_findings(entry, entry.get("address") in upstream_ports))
        aer = entry.get("aer") or {}
        if aer.get("fatal"):
            found.append(finding("critical", pcie_label(entry), f"{aer['fatal']} AER fatal errors"))
        if aer.get("nonfatal"):
            found.append(finding("warning", pcie_label(entry), f"{aer['nonfatal']} AER non-fatal errors"))
    return found


# -- psu: ipmitool fru, falling back to dmidecode -t 39 ------------------------------------------------------

PSU_NAME = re.compile(r"(?i)\b(psu|ps\s?\d+|pwr\s?supply|power\s?supply|pwr\s?sply|power\s?module)\b")


def parse_fru(text: str | None) -> list[dict[str, Any]]:
    """`ipmitool fru` output as records: {"description", "id", "fields", "present"} (never raises).

    Fields are "Name : value" lines; a repeated name ("Product Extra") keeps its first value. A record
    that says "Device not present (...)" or "Unknown FRU header" has `present` False."""
    records: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for raw in (text or "").replace("\r", "").split("\n"):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key == "FRU Device Description":
            match = re.match(r"(.*?)\s*\(ID\s*(\d+)\)\s*$", value.strip())
            description = match[1] if match else value.strip()
            current = {"description": description, "id": int(match[2]) if match else None,
                       "fields": {}, "present": True}
            records.append(current)
            continue
        if current is None:
            continue
        if not sep:
            if re.search(r"(?i)not present|unknown fru header|error", line):
                current["present"] = False
            continue
        current["fields"].setdefault(key, value.strip())
    return records


def fru_text(ctx: Context, argv: list[str]) -> str | None:
    """The output of an `ipmitool fru` command (run by ipmitool_run: one at a time, not after the BMC hung).

    `ipmitool fru` exits with the status of the LAST FRU it read: 1 when that one is absent ("Device not
    present", an empty PSU bay), so output holding FRU records is used whatever the exit status."""
    result = ipmitool_run(ctx, argv)
    if result is None:
        return None
    if not result.timed_out and result.returncode != 0 and parse_fru(result.stdout):
        return result.stdout
    return result.stdout if ctx.check(result) else None


def parse_fru_fields(text: str | None) -> dict[str, str]:
    """The "Name : value" fields of one FRU (`ipmitool fru print N`); a repeated name keeps its first."""
    fields: dict[str, str] = {}
    for raw in (text or "").replace("\r", "").split("\n"):
        key, sep, value = raw.strip().partition(":")
        if sep and key.strip():
            fields.setdefault(key.strip(), value.strip())
    return fields


def fru_value(record: dict[str, Any], *keys: str) -> str | None:
    """The first non-placeholder value among the FRU fields `keys`."""
    for key in keys:
        value = dmi_clean(record["fields"].get(key))
        if value is not None:
            return value
    return None


def is_psu_fru(record: dict[str, Any]) -> bool:
    """Whether a FRU record describes a power supply (by its description or its product/board name)."""
    names = [record["description"], record["fields"].get("Product Name", ""),
             record["fields"].get("Board Product", "")]
    return any(PSU_NAME.search(name or "") for name in names)


def psu_from_fru(record: dict[str, Any]) -> dict[str, Any]:
    """A power supply from its FRU record: product area first, board area when the product area is empty."""
    return {
        "name": dmi_clean(record["description"]),
        "location": None,
        "manufacturer": fru_value(record, "Product Manufacturer", "Board Mfg"),
        "product": fru_value(record, "Product Name", "Board Product"),
        "part_number": fru_value(record, "Product Part Number", "Board Part Number"),
        "serial": fru_value(record, "Product Serial", "Board Serial"),
        "version": fru_value(record, "Product Version"),
        "max_power_w": None,
        "status": None,
        "source": "ipmitool fru",
    }


def fru_identity(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Chassis, board and product serials of the builtin FRU (ID 0, else the first record that has them)."""
    ordered = sorted(records, key=lambda record: record["id"] != 0)
    identity: dict[str, Any] = {
        "chassis": {"type": None, "part_number": None, "serial": None},
        "board": {"manufacturer": None, "product": None, "part_number": None, "serial": None},
        "product": {"manufacturer": None, "name": None, "part_number": None, "serial": None,
                    "asset_tag": None},
    }
    keys = {
        "chassis": {"type": "Chassis Type", "part_number": "Chassis Part Number", "serial": "Chassis Serial"},
        "board": {"manufacturer": "Board Mfg", "product": "Board Product",
                  "part_number": "Board Part Number", "serial": "Board Serial"},
        "product": {"manufacturer": "Product Manufacturer", "name": "Product Name",
                    "part_number": "Product Part Number", "serial": "Product Serial",
                    "asset_tag": "Product Asset Tag"},
    }
    for area, fields in keys.items():
        for record in ordered:
            if is_psu_fru(record) or not any(record["fields"].get(key) for key in fields.values()):
                continue
            identity[area] = {name: fru_value(record, key) for name, key in fields.items()}
            break
    return identity


def parse_psu_dmi(records: list[DmiRecord]) -> list[dict[str, Any]]:
    """Power supplies from SMBIOS type 39 (System Power Supply)."""
    supplies = []
    for record in dmi_of_type(records, 39):
        status = clean(record.fields.get("Status"))
        power = re.match(r"\s*(\d+)\s*W\b", record.fields.get("Max Power Capacity") or "")
        supplies.append({
            "name": record.get("Name"),
            "location": record.get("Location"),
            "manufacturer": record.get("Manufacturer"),
            "product": None,
            "part_number": record.get("Model Part Number"),
            "serial": record.get("Serial Number"),
            "version": record.get("Revision"),
            "max_power_w": int(power[1]) if power else None,
            "status": status,
            "source": "dmidecode -t 39",
        })
    return supplies


@collector("psu")
def collect_psu(ctx: Context) -> dict[str, Any] | None:
    """Power supplies and the chassis/board FRU serials from `ipmitool fru` (only when /dev/ipmi0 exists),
    else (or when FRU lists no PSU) power supplies from `dmidecode -t 39`."""
    fru_records: list[dict[str, Any]] = []
    fru_ran = False
    if ipmi_present(ctx):
        text = fru_text(ctx, ["ipmitool", "fru"])
        fru_ran = text is not None
        fru_records = parse_fru(text)
        if text is not None and not fru_records:
            ctx.error(["ipmitool", "fru"], f"no FRU records in the output: {first_line(text)}")
        builtin = next((record for record in fru_records if record["id"] == 0), None)
        if builtin is not None and builtin["present"] and not builtin["fields"]:
            # Some BMCs (QEMU's among them) do not advertise FRU support: `fru` then omits the builtin
            # FRU's fields, which `fru print 0` still reads. Run after the first command, never beside it.
            builtin["fields"] = parse_fru_fields(fru_text(ctx, ["ipmitool", "fru", "print", "0"]))
    supplies = [psu_from_fru(record) for record in fru_records
                if is_psu_fru(record) and record["present"]]
    source = "ipmitool fru" if supplies else None
    if not supplies:
        supplies = parse_psu_dmi(parse_dmidecode(dmidecode_text(ctx, "39")))
        source = "dmidecode -t 39" if supplies else None
    if not fru_ran and not supplies:
        return ctx.skip(f"no power supply in dmidecode -t 39, and {NO_IPMI_DEVICE}")
    return {"source": source, "power_supplies": supplies, **fru_identity(fru_records)}


# -- nvidia: the kernel module, GPUs from nvidia-smi -q -x, nvlink -s and topo -m, GPUs no driver took -------

NVSMI_NOT_AVAILABLE = {
    "", "n/a", "[n/a]", "[not supported]", "not supported", "unknown error", "[unknown error]",
}


def xml_value(element: Any, path: str) -> str | None:
    """The stripped text at `path` under an element (a count, a mode...); None when absent or "N/A"."""
    if element is None:
        return None
    found = element.find(path)
    if found is None or found.text is None:
        return None
    text = found.text.strip()
    return None if text.lower() in NVSMI_NOT_AVAILABLE or text.lower().startswith("[requested") else text


def xml_text(element: Any, path: str) -> str | None:
    """An identity string at `path` (product, serial...); None also for placeholders such as all zeros."""
    return clean(xml_value(element, path))


def yes_no(text: str | None) -> bool | None:
    return {"yes": True, "no": False}.get((text or "").strip().lower())


def ecc_counts(section: Any) -> dict[str, int | None] | None:
    """{corrected, uncorrected} of an <ecc_errors><volatile|aggregate> element of any driver branch.

    Old branches: single_bit/total and double_bit/total. Newer: sram_/dram_ (un)correctable, where 550+
    splits sram_uncorrectable into _parity and _secded — a refinement is only summed when its parent
    name is absent, so nothing is counted twice.
    """
    if section is None:
        return None
    if section.find("single_bit") is not None or section.find("double_bit") is not None:
        return {"corrected": to_int(xml_value(section, "single_bit/total")),
                "uncorrected": to_int(xml_value(section, "double_bit/total"))}
    values = {child.tag: to_int(xml_value(section, child.tag)) for child in section}
    counts: dict[str, int | None] = {"corrected": None, "uncorrected": None}
    for tag, value in values.items():
        if value is None or any(tag.startswith(other + "_") for other in values if other != tag):
            continue
        key = "uncorrected" if "uncorrectable" in tag else "corrected" if "correctable" in tag else None
        if key:
            counts[key] = (counts[key] or 0) + value
    return counts


def mib_to_bytes(text: str | None) -> int | None:
    number = leading_int(text)
    return number * 1024 * 1024 if number is not None and "MiB" in (text or "") else None


def power_limit(gpu: Any) -> float | None:
    """The enforced power limit in watts, from <power_readings> (old) or <gpu_power_readings> (535+)."""
    for section in ("gpu_power_readings", "power_readings"):
        for tag in ("enforced_power_limit", "current_power_limit", "power_limit"):
            value = leading_float(xml_value(gpu, f"{section}/{tag}"))
            if value is not None:
                return value
    return None


def parse_gpu(gpu: Any, driver_version: str | None, cuda_version: str | None) -> dict[str, Any]:
    pci = gpu.find("pci")
    retired = gpu.find("retired_pages")
    retired_pending = xml_value(retired, "pending_retirement")
    if retired_pending is None:
        retired_pending = xml_value(retired, "pending_blacklist")
    return {
        "product": xml_text(gpu, "product_name"),
        "serial": xml_text(gpu, "serial"),
        "uuid": xml_text(gpu, "uuid"),
        "vbios_version": xml_text(gpu, "vbios_version"),
        "board_part_number": xml_text(gpu, "board_part_number"),
        "driver_version": driver_version,
        "cuda_version": cuda_version,
        "bus_id": normalize_pci_address(xml_value(gpu, "pci/pci_bus_id") or gpu.get("id")),
        "pcie_address": None,
        "memory_total_bytes": mib_to_bytes(xml_value(gpu, "fb_memory_usage/total")),
        "ecc_mode": xml_value(gpu, "ecc_mode/current_ecc"),
        "ecc_mode_pending": xml_value(gpu, "ecc_mode/pending_ecc"),
        "ecc_errors": {
            "volatile": ecc_counts(gpu.find("ecc_errors/volatile")),
            "aggregate": ecc_counts(gpu.find("ecc_errors/aggregate")),
        },
        "retired_pages": {
            "single_bit": to_int(xml_value(retired, "multiple_single_bit_retirement/retired_count")),
            "double_bit": to_int(xml_value(retired, "double_bit_retirement/retired_count")),
            "pending": yes_no(retired_pending),
        },
        "remapped_rows": {
            "corrected": to_int(xml_value(gpu, "remapped_rows/remapped_row_corr")),
            "uncorrected": to_int(xml_value(gpu, "remapped_rows/remapped_row_unc")),
            "pending": yes_no(xml_value(gpu, "remapped_rows/remapped_row_pending")),
            "failure": yes_no(xml_value(gpu, "remapped_rows/remapped_row_failure")),
        },
        "power_limit_w": power_limit(gpu),
        "temperature_c": leading_int(xml_value(gpu, "temperature/gpu_temp")),
        "pcie": {
            "current_gen": to_int(xml_value(pci, ".//current_link_gen")),
            "max_gen": to_int(xml_value(pci, ".//max_link_gen")),
            "current_width": leading_int(xml_value(pci, ".//current_link_width")),
            "max_width": leading_int(xml_value(pci, ".//max_link_width")),
        },
        "mig_mode": xml_value(gpu, "mig_mode/current_mig"),
        "mig_devices": len(gpu.findall("mig_devices/mig_device")),
        "fabric": fabric_state(gpu),
        "nvlink": None,
        "topology": None,
    }


def parse_nvidia_smi_xml(text: str | None) -> list[dict[str, Any]] | None:
    """GPUs from `nvidia-smi -q -x` (DTD v11/v12, with or without DOCTYPE, MIG), read by element name;
    a missing element is None. None when the text is not nvidia-smi XML."""
    if not text or "<nvidia_smi_log" not in text:
        return None
    import xml.etree.ElementTree as ElementTree  # loaded only where an NVIDIA driver is

    try:
        root = ElementTree.fromstring(text.strip())
    except ElementTree.ParseError:
        return None
    if root.tag != "nvidia_smi_log":
        return None
    driver_version, cuda_version = xml_text(root, "driver_version"), xml_text(root, "cuda_version")
    return [parse_gpu(gpu, driver_version, cuda_version) for gpu in root.findall("gpu")]


NVLINK_GPU = re.compile(r"^GPU (\d+): (.*?)(?: \(UUID: ([^)]*)\))?\s*$")
NVLINK_LINK = re.compile(r"^Link (\d+): (.*?)\s*$")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TOPO_NVLINK = re.compile(r"^NV(\d+)$")
FABRIC_DONE = ("completed", "success")


def parse_nvlink_status(text: str | None) -> list[dict[str, Any]]:
    """Per GPU of `nvidia-smi nvlink -s` (in nvidia-smi's index order): its index, UUID and links. A link
    is active only with a bandwidth figure ("Link 3: 26.562 GB/s"); "<inactive>" or anything else is
    inactive. `supported` is False for "Device does not have or support Nvlink", None when nvidia-smi
    could not tell (MIG mode, "all links are inActive" without a list), True when links were listed."""
    gpus: list[dict[str, Any]] = []
    for raw in (text or "").replace("\r", "").split("\n"):
        line = raw.strip()
        if match := NVLINK_GPU.match(line):
            gpus.append({"index": int(match[1]), "uuid": clean(match[3]), "supported": None, "links": [],
                         "message": None})
            continue
        if not gpus or not line:
            continue
        gpu = gpus[-1]
        if match := NVLINK_LINK.match(line):
            speed = re.fullmatch(r"([\d.]+)\s*GB/s", match[2])
            gpu["links"].append({"link": int(match[1]), "active": speed is not None,
                                 "speed_gbps": float(speed[1]) if speed else None})
            gpu["supported"] = True
        elif re.search(r"(?i)does not have or support nvlink", line):
            gpu["supported"], gpu["message"] = False, line
        elif gpu["message"] is None and not gpu["links"]:
            gpu["message"] = line  # MIG mode, "all links are inActive": the links are not listed
            if re.search(r"(?i)all links are inactive", line):
                gpu["supported"] = True
    return gpus


def parse_topology(text: str | None) -> list[dict[str, Any]]:
    """Per GPU row of `nvidia-smi topo -m`: NVLinks to each peer GPU ("NV12" -> 12), the path to each NIC
    (PIX, PXB, NODE, SYS...; NICn renamed by the NIC legend), CPU affinity and NUMA node. TAB- or
    space-separated, with or without the bold escape codes of a terminal; unreadable rows are skipped."""
    lines = [ANSI_ESCAPE.sub("", line).rstrip() for line in (text or "").replace("\r", "").split("\n")]
    at = next((number for number, line in enumerate(lines) if "GPU0" in line.split()), None)
    if at is None:
        return []
    header = lines[at].split()
    columns = header[: header.index("CPU")] if "CPU" in header else header
    legend = dict(re.findall(r"^\s*(NIC\d+):\s*(\S+)\s*$", "\n".join(lines), re.M))
    rows = []
    for line in lines[at + 1 :]:
        cells = line.split()
        if not cells or not re.fullmatch(r"GPU\d+", cells[0]) or len(cells) < len(columns) + 1:
            continue
        matrix, rest = cells[1 : len(columns) + 1], cells[len(columns) + 1 :]
        peers, nics = {}, {}
        for column, cell in zip(columns, matrix, strict=True):
            if cell == "X":
                continue
            if column.startswith("GPU"):
                nvlink = TOPO_NVLINK.match(cell)
                peers[column] = int(nvlink[1]) if nvlink else 0
            else:
                nics[legend.get(column, column)] = cell
        rows.append({
            "gpu": cells[0],
            "nvlink_peers": peers,
            "nics": nics,
            "cpu_affinity": clean(rest[0]) if rest else None,
            "numa_node": to_int(rest[1]) if len(rest) > 1 else None,
        })
    return rows


def fabric_state(gpu: Any) -> dict[str, Any] | None:
    """The NVSwitch fabric registration of a GPU from `nvidia-smi -q -x` <fabric> (535+): state and status;
    None when the GPU has none ("N/A": not an NVSwitch system, or an older driver)."""
    state, status = xml_value(gpu, "fabric/state"), xml_value(gpu, "fabric/status")
    if state is None and status is None:
        return None
    return {"state": state, "status": status}


def nvlink_summary(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the document keeps of one GPU's `nvlink -s` entry: supported, links, active link count."""
    if entry is None:
        return None
    active = sum(link["active"] for link in entry["links"]) if entry["supported"] else None
    if entry["supported"] and not entry["links"]:
        active = 0  # "all links are inActive"
    return {"supported": entry["supported"], "active_links": active, "links": entry["links"],
            "message": entry["message"]}


def attach_nvlink(ctx: Context, gpus: list[dict[str, Any]]) -> None:
    """Give every GPU its NVLinks (`nvidia-smi nvlink -s`) and topology row (`nvidia-smi topo -m`). The
    `nvlink -s` entry is the one naming the GPU's UUID (else, when either has no UUID, the one at the GPU's
    place in the XML, which nvidia-smi writes in index order); the topology row is the one named after that
    entry's index ("GPU3"), never a row taken by position."""
    status = parse_nvlink_status(ctx.output(["nvidia-smi", "nvlink", "-s"]))
    topology = {row["gpu"]: row for row in parse_topology(ctx.output(["nvidia-smi", "topo", "-m"]))}
    by_uuid = {entry["uuid"]: entry for entry in status if entry["uuid"]}
    by_index = {entry["index"]: entry for entry in status}
    for position, gpu in enumerate(gpus):
        entry = by_uuid.get(gpu.get("uuid")) if gpu.get("uuid") else None
        if entry is None:
            candidate = by_index.get(position)
            if candidate is not None and not (candidate["uuid"] and gpu.get("uuid")):
                entry = candidate
        gpu["nvlink"] = nvlink_summary(entry)
        index = entry["index"] if entry is not None else position
        gpu["topology"] = topology.get(f"GPU{index}")


NVIDIA_VENDOR_ID = "0x10de"
NVIDIA_GPU_CLASSES = ("0x0300", "0x0302")  # VGA and 3D controllers: the functions NVIDIA's driver binds
FIRST_TURING_DEVICE_ID = 0x1E00  # TU102; Maxwell, Pascal and Volta are below, and 580 was their last branch
# /proc/driver/nvidia/version, first line (as NVIDIA's README and bug reports show it):
#   proprietary: "NVRM version: NVIDIA UNIX x86_64 Kernel Module  515.76  <build date>"
#   open:        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  565.57.01  Release Build  (...)"
NVRM_VERSION = re.compile(r"NVRM version:.*?\b(Open\s+)?Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)\b")
# NVRM's word on a GPU it did not take, one message over several "NVRM:" lines, e.g. "The NVIDIA GPU
# 0000:c1:00.0 (PCI ID: 10de:2901) installed in this system requires use of the NVIDIA open kernel modules."
NVRM_GPU_VERDICT = re.compile(r"The NVIDIA GPU (?P<address>[0-9a-fA-F:.]+)\s*\(PCI ID: [^)]*\)\s*"
                              r"installed in this system (?P<verdict>.*?)\.(?:\s|$)")


def parse_nvidia_version(text: str | None) -> dict[str, Any] | None:
    """{version, flavor: "open" | "proprietary"} of the loaded NVIDIA kernel module from the text of
    /proc/driver/nvidia/version; None when it names no module."""
    match = NVRM_VERSION.search(text or "")
    if not match:
        return None
    return {"version": match.group(2), "flavor": "open" if match.group(1) else "proprietary"}


def nvidia_functions(ctx: Context) -> list[dict[str, Any]]:
    """Every NVIDIA display or 3D controller function in sysfs: {address, device_id, driver}."""
    found = []
    for name in sorted(ctx.listdir("sysfs", "bus/pci/devices")):
        base = f"bus/pci/devices/{name}"
        vendor = (ctx.read("sysfs", f"{base}/vendor") or "").strip().lower()
        klass = (ctx.read("sysfs", f"{base}/class") or "").strip().lower()
        if vendor != NVIDIA_VENDOR_ID or not klass.startswith(NVIDIA_GPU_CLASSES):
            continue
        driver = ctx.realpath("sysfs", f"{base}/driver")
        found.append({
            "address": normalize_pci_address(name) or name,
            "device_id": (ctx.read("sysfs", f"{base}/device") or "").strip().lower() or None,
            "driver": driver.rstrip("/").rsplit("/", 1)[-1] if driver else None,
        })
    return found


def kernel_log_text(kernel_log: str | None) -> str:
    """The kernel log as one line of text, without timestamps and "NVRM:" prefixes (NVRM's messages span
    several lines)."""
    return " ".join(nvrm_message(line) for line in (kernel_log or "").splitlines())


def nvrm_message(line: str) -> str:
    """A kernel log line's message without its prefixes (strip_kernel_prefix) and "NVRM:"."""
    return re.sub(r"^NVRM:\s*", "", strip_kernel_prefix(line.strip())[0]).strip()


def nvrm_verdict(address: str, kernel_log: str | None) -> str | None:
    """NVRM's own verdict on the GPU at `address` from the kernel log ("it needs the NVIDIA open kernel
    modules ..." or "the kernel log says it ..."); None when the log has none."""
    for match in NVRM_GPU_VERDICT.finditer(kernel_log_text(kernel_log)):
        if normalize_pci_address(match.group("address")) == address:
            verdict = match.group("verdict")
            if "open kernel modules" in verdict:
                return "it needs the NVIDIA open kernel modules (the kernel log says so)"
            return f"the kernel log says it {verdict}"
    return None


def nvrm_failure(address: str, kernel_log: str | None) -> str | None:
    """"the driver failed: <line>" from the last NVRM line of the kernel log naming `address`; None when no
    NVRM line names it."""
    short = address.split(":", 1)[1]
    failures = [line for line in (kernel_log or "").splitlines() if "NVRM" in line and short in line]
    if failures:
        return f"the driver failed: {nvrm_message(failures[-1])}"
    return None


def parse_nvidia_gpu_list(text: str | None) -> dict[str, str]:
    """The GPU list the ISO ships beside the NVIDIA modules (made from the installer's supported-gpus.json:
    "<device id> open" or "<device id> legacy <branch>" per line, "#" comments) as {device id (lower-case
    0x hex): "open" | "legacy <branch>"}; lines that are not such are ignored."""
    entries: dict[str, str] = {}
    for line in (text or "").splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and re.fullmatch(r"0x[0-9a-fA-F]{4}", words[0]) and words[1] in ("open", "legacy"):
            entries.setdefault(words[0].lower(), " ".join(words[1:3]))
    return entries


def read_nvidia_gpu_list(path: Path | None) -> dict[str, str]:
    """`parse_nvidia_gpu_list` of the file at `path`; empty when there is none (an ISO without NVIDIA
    modules) and, saying so in one line, when it cannot be read."""
    if path is None or not path.exists():
        return {}
    try:
        return parse_nvidia_gpu_list(path.read_text(errors="replace"))
    except OSError as err:
        log(f"nvidia: cannot read the GPU list {path} ({err.strerror or err}); GPUs without a driver are "
            "judged by their device id alone")
        return {}


def why_without_driver(
    function: dict[str, Any], module: dict[str, Any] | None, kernel_log: str | None,
    gpu_list: dict[str, str] | None = None,
) -> str:
    """Why an NVIDIA GPU function has no driver, as far as the kernel log, its device id and the loaded
    module tell: NVRM's own verdict on its address, the legacy branch the ISO's GPU list names for its
    device id (else a pre-Turing device id), no module loaded, the last NVRM line naming its address, or
    (knowing nothing more) a pointer to the kernel log."""
    address = function["address"]
    verdict = nvrm_verdict(address, kernel_log)
    if verdict:
        return verdict
    branch = f"the {module['version'].split('.')[0]}" if module else "this"
    need = (gpu_list or {}).get((function.get("device_id") or "").lower(), "")
    if need.startswith("legacy"):
        legacy = f"the {need.split(' ', 1)[1]}" if " " in need else "a"
        return (f"not supported by {branch} driver branch: NVIDIA's GPU list names {legacy} legacy "
                f"branch for device id {function['device_id']}")
    try:
        device = int(function.get("device_id") or "", 16)
    except ValueError:
        device = None
    if device is not None and device < FIRST_TURING_DEVICE_ID:
        return (f"a pre-Turing GPU (device id {function['device_id']}): not supported by {branch} driver "
                "branch (Turing is the oldest it drives; older GPUs need a legacy branch: 580 for Maxwell, "
                "Pascal and Volta, 470 for Kepler)")
    if module is None:
        return "the NVIDIA kernel module is not loaded (see bee-nvidia's line on the console, and dmesg)"
    return (nvrm_failure(address, kernel_log)
            or f"the {module['flavor']} NVIDIA kernel module did not take it: see the kernel log (dmesg)")


def why_not_usable(function: dict[str, Any], module: dict[str, Any] | None, kernel_log: str | None) -> str:
    """Why an NVIDIA GPU bound to the nvidia driver is missing from nvidia-smi: NVRM's verdict on its
    address (a Blackwell GPU under the proprietary module: it needs the open modules), the last NVRM line
    naming it, or a pointer to the kernel log."""
    address = function["address"]
    flavor = f"the {module['flavor']} " if module else "the "
    return (nvrm_verdict(address, kernel_log) or nvrm_failure(address, kernel_log)
            or f"bound to {flavor}NVIDIA kernel module, but nvidia-smi does not list it: see the kernel log "
               "(dmesg)")


@collector("nvidia")
def collect_nvidia(ctx: Context) -> dict[str, Any] | None:
    """The loaded NVIDIA kernel module ({version, flavor} from /proc/driver/nvidia/version, also when
    nvidia-smi fails), the GPUs from nvidia-smi's XML, each NVIDIA GPU function no driver took, with
    the reason (`why_without_driver`), and each one bound to nvidia that nvidia-smi (which ran) does not
    list, with the reason (`not_usable`, `why_not_usable`); `dmesg` is read only for those. Skipped
    ("driver not loaded") when no module is loaded and no NVIDIA GPU lacks a driver; no module beside GPUs
    without a driver, and nvidia-smi missing while the module is loaded, are errors, not skips."""
    loaded = ctx.exists("procfs", "driver/nvidia")
    functions = nvidia_functions(ctx)
    if not loaded and all(function["driver"] for function in functions):
        return ctx.skip("driver not loaded")
    module, gpus = None, []
    listed = False  # nvidia-smi ran and said which GPUs it can use
    if loaded:
        text = ctx.read("procfs", "driver/nvidia/version")
        module = parse_nvidia_version(text)
        if module is None and text is not None:
            ctx.error("/proc/driver/nvidia/version", f"names no NVIDIA kernel module: {first_line(text)!r}")
        argv = ["nvidia-smi", "-q", "-x"]
        result = ctx.run(argv)
        if result is None:
            version = f" {module['version']}" if module else ""
            ctx.error(argv, f"nvidia-smi is not installed, but the NVIDIA kernel module{version} is loaded; "
                            "install nvidia-smi of the same driver version")
        elif ctx.check(result):
            parsed = parse_nvidia_smi_xml(result.stdout)
            if parsed is None:
                ctx.error(argv, "printed no nvidia-smi XML")
            elif parsed:
                attach_nvlink(ctx, parsed)
            gpus = parsed or []
            listed = parsed is not None
        elif "No devices were found" in f"{result.stdout}\n{result.stderr}":
            listed = True
    unbound = [function for function in functions if function["driver"] is None]
    seen = {gpu.get("bus_id") for gpu in gpus}
    unusable = [function for function in functions
                if listed and function["driver"] == "nvidia" and function["address"] not in seen]
    if not loaded:  # GPUs the audit cannot read: an error (acceptance then says "unknown"), and findings
        ctx.error(None, f"no NVIDIA kernel module is loaded, but {len(unbound)} NVIDIA GPU(s) have no driver "
                        "(see bee-nvidia's line on the console)")
    kernel_log = None
    if unbound or unusable:
        result = kernel_log_run(ctx)
        kernel_log = result.stdout if result is not None and result.returncode == 0 else None
    without_driver = [{"address": function["address"], "device_id": function["device_id"],
                       "reason": why_without_driver(function, module, kernel_log, ctx.runner.nvidia_gpu_list)}
                      for function in unbound]
    not_usable = [{"address": function["address"], "device_id": function["device_id"],
                   "reason": why_not_usable(function, module, kernel_log)} for function in unusable]
    return {"kernel_module": module, "gpus": gpus, "without_driver": without_driver,
            "not_usable": not_usable}


def gpu_count(document: dict[str, Any]) -> int | None:
    """The NVIDIA GPUs of the document: those nvidia-smi reported plus those no driver took and those bound
    but unusable; None when none is known (no NVIDIA GPU or module, or nvidia-smi failed with every GPU
    bound)."""
    nvidia = document.get("nvidia") or {}
    count = sum(len(nvidia.get(key) or []) for key in ("gpus", "without_driver", "not_usable"))
    return count or None


@linker
def link_gpus_to_pcie(document: dict[str, Any]) -> None:
    """Give each GPU the address of its pcie entry, and that entry the GPU's UUID (matched by bus id)."""
    by_address = {entry.get("address"): entry for entry in document.get("pcie") or []}
    for gpu in (document.get("nvidia") or {}).get("gpus") or []:
        entry = by_address.get(gpu.get("bus_id"))
        if entry is not None:
            gpu["pcie_address"] = entry["address"]
            entry["gpu_uuid"] = gpu.get("uuid")


def gpu_label(gpu: dict[str, Any]) -> str:
    """How a finding names a GPU: its bus id, product and serial."""
    names = ", ".join(str(gpu[k]) for k in ("product", "serial") if gpu.get(k))
    return f"gpu {gpu.get('bus_id')}" + (f" ({names})" if names else "")


@finding_rule
def nvidia_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Uncorrected ECC errors, pages pending retirement, rows pending remapping or failed to remap; and a
    warning for every NVIDIA GPU no driver took, and for every one bound but missing from nvidia-smi, naming
    its address and why."""
    found = []
    nvidia = document.get("nvidia") or {}
    for key, what in (("without_driver", "no driver"), ("not_usable", "not usable")):
        for entry in nvidia.get(key) or []:
            device = f" ({entry['device_id']})" if entry.get("device_id") else ""
            component = f"gpu {entry.get('address')}{device}"
            found.append(finding("warning", component, f"{what}: {entry.get('reason')}"))
    for gpu in nvidia.get("gpus") or []:
        label = gpu_label(gpu)
        for scope in ("volatile", "aggregate"):
            uncorrected = ((gpu.get("ecc_errors") or {}).get(scope) or {}).get("uncorrected")
            if uncorrected:
                found.append(finding("critical", label, f"{uncorrected} uncorrected ECC errors ({scope})"))
        if (gpu.get("retired_pages") or {}).get("pending"):
            found.append(finding("warning", label, "retired memory pages pending (reset the GPU)"))
        rows = gpu.get("remapped_rows") or {}
        if rows.get("pending"):
            found.append(finding("warning", label, "remapped memory rows pending (reset the GPU)"))
        if rows.get("failure"):
            found.append(finding("critical", label, "memory row remapping failed"))
    return found


NVSWITCH_PCI = ("10de", "0680")  # NVIDIA's NVSwitch functions: vendor 10de, class 0680 ("Bridge: other")
FABRIC_UNTRAINED = ("not started", "in progress")
NVLINKS_UNTRAINED = ("NVSwitch system without a running fabric manager (the live system has none): NVLinks "
                     "are untrained, their state cannot be judged here")


def nvswitch_functions(document: dict[str, Any]) -> list[str]:
    """The PCI addresses of the NVSwitches (vendor 10de, class 0680) in the document's pcie section."""
    vendor, class_id = NVSWITCH_PCI
    return [str(entry.get("address")) for entry in document.get("pcie") or []
            if str(entry.get("vendor_id") or "").lower() == vendor
            and str(entry.get("class_id") or "").startswith(class_id)]


def nvlinks_untrained(document: dict[str, Any]) -> bool:
    """Whether the GPUs hang on NVSwitches that no fabric manager has set up (the live system runs none),
    so their NVLinks cannot be judged: every GPU that reports NVLinks has none active, and the fabric
    state is Not Started or In Progress (H100 and later), or no GPU has a fabric state (A100) and NVSwitch
    PCI functions are present."""
    gpus = [gpu for gpu in (document.get("nvidia") or {}).get("gpus") or [] if isinstance(gpu, dict)]
    counted = [(gpu.get("nvlink") or {}).get("active_links") for gpu in gpus]
    counted = [active for active in counted if active is not None]
    if not counted or any(counted):
        return False
    states = {str((gpu.get("fabric") or {}).get("state") or "").lower() for gpu in gpus}
    if states & set(FABRIC_UNTRAINED):
        return True
    return not any(gpu.get("fabric") for gpu in gpus) and bool(nvswitch_functions(document))


def topology_nvlinks(gpu: dict[str, Any]) -> int | None:
    """The NVLinks `nvidia-smi topo -m` shows for a GPU: its largest NV# to a peer (behind NVSwitches every
    peer shows all of the GPU's links, "NV18"); None without a topology row or NVLink peers."""
    peers = ((gpu.get("topology") or {}).get("nvlink_peers") or {}).values()
    return max((count for count in peers if isinstance(count, int)), default=0) or None


@finding_rule
def nvlink_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    """A GPU with fewer active NVLinks than its peers (warning), or none at all on an NVLink system
    (critical); one warning listing the GPUs whose NVSwitch fabric registration is not Completed/Success
    (they cannot do multi-GPU work until the fabric manager has run). An NVSwitch system whose links are
    untrained for want of a fabric manager (nvlinks_untrained) gets one warning saying so instead."""
    gpus = [gpu for gpu in (document.get("nvidia") or {}).get("gpus") or [] if isinstance(gpu, dict)]
    if nvlinks_untrained(document):
        return [finding("warning", "nvidia", NVLINKS_UNTRAINED)]
    found = []
    counted = [(gpu, (gpu.get("nvlink") or {}).get("active_links")) for gpu in gpus]
    counted = [(gpu, active) for gpu, active in counted if active is not None]
    most = max((active for _, active in counted), default=0)
    fabric_note = ""
    states = {(gpu.get("fabric") or {}).get("state") for gpu in gpus} - {None}
    if states and not states <= {"Completed"}:
        fabric_note = f" (NVSwitch fabric state: {', '.join(sorted(states))})"
    for gpu, active in counted:
        links = len((gpu.get("nvlink") or {}).get("links") or [])
        if active == 0 and (most > 0 or links > 0):
            found.append(finding("critical", gpu_label(gpu),
                                 f"no active NVLink (of {links or most}){fabric_note}"))
        elif active < most:
            found.append(finding("warning", gpu_label(gpu),
                                 f"{active} active NVLinks where other GPUs have {most}{fabric_note}"))
    pending: dict[tuple[str, str], list[str]] = {}
    for gpu in gpus:
        fabric = gpu.get("fabric") or {}
        state, status = fabric.get("state") or "N/A", fabric.get("status") or "N/A"
        if fabric and (state.lower(), status.lower()) != FABRIC_DONE:
            pending.setdefault((state, status), []).append(str(gpu.get("bus_id")))
    for (state, status), buses in pending.items():
        found.append(finding("warning", "nvidia",
                             f"NVSwitch fabric state {state}, status {status} on {len(buses)} of {len(gpus)} "
                             f"GPUs ({', '.join(buses)}): not usable for multi-GPU work until the fabric "
                             "manager has run"))
    return found


# -- network: physical interfaces from /sys/class/net --------------------------------------------------------


def hardware_address(text: str | None) -> str | None:
    """A MAC (or InfiniBand) address in lower case; None for all zeros or anything not colon-hex."""
    address = clean(text)
    if not address or not re.fullmatch(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2})+", address):
        return None
    return address.lower()


def permanent_mac(ctx: Context, name: str, current: str | None) -> str | None:
    """The burned-in MAC without ethtool: a bond slave's perm_hwaddr, else the current address when the
    kernel says it is the permanent one (addr_assign_type 0); None when it was randomised or set."""
    bonded = hardware_address(ctx.read("sysfs", f"class/net/{name}/bonding_slave/perm_hwaddr"))
    if bonded:
        return bonded
    return current if ctx.read("sysfs", f"class/net/{name}/addr_assign_type") == "0" else None


def net_speed(text: str | None) -> int | None:
    """Mb/s from sysfs `speed`; None when unreadable (link down), -1 or the unsigned -1."""
    number = to_int(text)
    return number if number is not None and 0 < number < 0xFFFFFFFF else None


ETHTOOL_WORKERS = 8  # ethtool runs at once: quick on a server with 128 SR-IOV functions, bounded too
ETHTOOL_NOT_APPLICABLE = re.compile(r"(?i)operation not supported|no data available|no such device")
FIRMWARE_PSID = re.compile(r"^(?P<version>.*?)\s*\((?P<psid>[A-Z]{2,4}_[0-9A-Za-z_]+)\)$")


def ethtool_fields(text: str | None) -> dict[str, str]:
    """The "name: value" lines of ethtool's output (`-i`, or the link settings, TAB- or space-indented);
    continuation lines of multi-line values are ignored. The first of a repeated name wins."""
    fields: dict[str, str] = {}
    for raw in (text or "").replace("\r", "").split("\n"):
        name, sep, value = raw.strip().partition(":")
        if sep and name.strip() and not name.startswith(("Settings for", "netlink error")):
            fields.setdefault(name.strip().lower(), value.strip())
    return fields


def split_firmware(printed: str | None) -> dict[str, Any] | None:
    """A NIC's firmware as `ethtool -i` prints it, plus the version and the Mellanox/NVIDIA PSID split out
    where the string carries one ("28.42.1000 (MT_0000000834)"); other forms ("4.22 0x80010446 1.3197.0",
    "1.61, 0x8000090e", "bc 7.14.37", "sb") are their own version. None when there is none ("N/A", "")."""
    text = clean(printed)
    if text is None:
        return None
    match = FIRMWARE_PSID.match(text)
    if match:
        return {"printed": text, "version": match["version"] or None, "psid": match["psid"]}
    return {"printed": text, "version": text, "psid": None}


def parse_ethtool_info(text: str | None) -> dict[str, Any] | None:
    """Driver, driver version, firmware, expansion ROM and bus info from `ethtool -i IFACE`; None when the
    output has no driver line."""
    fields = ethtool_fields(text)
    if "driver" not in fields:
        return None
    bus_info = clean(fields.get("bus-info"))
    return {
        "driver": clean(fields.get("driver")),
        "driver_version": clean(fields.get("version")),
        "firmware": split_firmware(fields.get("firmware-version")),
        "expansion_rom_version": clean(fields.get("expansion-rom-version")),
        "bus_info": normalize_pci_address(bus_info) or bus_info,
    }


def parse_ethtool_link(text: str | None) -> dict[str, Any] | None:
    """Speed (Mb/s), duplex, port, auto-negotiation and link detected from `ethtool IFACE`; "Unknown!"
    values are None. None when the output has none of these."""
    fields = ethtool_fields(text)
    keys = ("speed", "duplex", "port", "auto-negotiation", "link detected")
    if not any(key in fields for key in keys):
        return None
    speed = re.match(r"(\d+)\s*Mb/s", fields.get("speed") or "")
    duplex = (fields.get("duplex") or "").lower()
    return {
        "speed_mbps": int(speed[1]) if speed and int(speed[1]) > 0 else None,
        "duplex": duplex if duplex in ("full", "half") else None,
        "port": clean(fields.get("port")),
        "auto_negotiation": {"on": True, "off": False}.get((fields.get("auto-negotiation") or "").lower()),
        "link_detected": yes_no(fields.get("link detected")),
    }


def run_ethtool(ctx: Context, argv: list[str]) -> str | None:
    """ethtool's output, or None: absent tool, or an interface that does not support the query ("Operation
    not supported", "No data available": not an error). Link settings that come with an error exit status
    still count when they hold the "Settings for" block."""
    result = ctx.run(argv)
    if result is None:
        return None
    if not result.timed_out and "Settings for" in result.stdout and parse_ethtool_link(result.stdout):
        return result.stdout
    if not result.timed_out and result.returncode != 0 and ETHTOOL_NOT_APPLICABLE.search(
            result.stderr + result.stdout):
        return None
    return result.stdout if ctx.check(result) else None


def ethtool_facts(ctx: Context, name: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(`ethtool -i`, `ethtool`) of one interface, parsed; an output that parses to nothing is an error."""
    parsed = []
    queries = ((["ethtool", "-i", name], parse_ethtool_info), (["ethtool", name], parse_ethtool_link))
    for argv, parse in queries:
        text = run_ethtool(ctx, argv)
        facts = parse(text) if text is not None else None
        if text is not None and facts is None:
            ctx.error(argv, f"unreadable output: {first_line(text)}")
        parsed.append(facts)
    return parsed[0], parsed[1]


def net_duplex(text: str | None) -> str | None:
    """"full" or "half" from sysfs `duplex`; None when unknown (link down, virtual)."""
    return text if text in ("full", "half") else None


@collector("network")
def collect_network(ctx: Context) -> list[dict[str, Any]] | None:
    """Physical network interfaces (those with a `device` link) from /sys/class/net, with driver version,
    firmware and bus info from `ethtool -i` and the link from sysfs (ethtool's where sysfs has none)."""
    names = ctx.listdir("sysfs", "class/net")
    if not names:
        return ctx.skip("no /sys/class/net")
    interfaces = []
    for name in names:
        device = ctx.realpath("sysfs", f"class/net/{name}/device")
        if device is None:
            continue
        base = f"class/net/{name}"
        mac = hardware_address(ctx.read("sysfs", f"{base}/address"))
        driver = ctx.realpath("sysfs", f"{base}/device/driver")
        subsystem = ctx.realpath("sysfs", f"{base}/device/subsystem")
        bus = subsystem.rsplit("/", 1)[-1] if subsystem else None
        carrier = ctx.read("sysfs", f"{base}/carrier")
        interfaces.append({
            "name": name,
            "mac": mac,
            "permanent_mac": permanent_mac(ctx, name, mac),
            "driver": driver.rsplit("/", 1)[-1] if driver else None,
            "bus": bus,
            # a virtio NIC is its PCI function; a USB NIC's PCI ancestor is the USB host, not the NIC
            "pci_address": pci_address_in_path(device) if bus in ("pci", "virtio") else None,
            "operstate": ctx.read("sysfs", f"{base}/operstate") or None,
            "speed_mbps": net_speed(ctx.read("sysfs", f"{base}/speed")),
            "duplex": net_duplex(ctx.read("sysfs", f"{base}/duplex")),
            "link_detected": {"1": True, "0": False}.get(carrier or ""),
            "port": None,
            "driver_version": None,
            "firmware": None,
            "expansion_rom_version": None,
            "bus_info": None,
        })
    with concurrent.futures.ThreadPoolExecutor(max_workers=ETHTOOL_WORKERS) as pool:
        facts = list(pool.map(lambda interface: ethtool_facts(ctx, interface["name"]), interfaces))
    for interface, (info, link) in zip(interfaces, facts, strict=True):
        if info is not None:
            interface.update({key: info[key] for key in
                              ("driver_version", "firmware", "expansion_rom_version", "bus_info")})
            interface["driver"] = interface["driver"] or info["driver"]
        if link is not None:
            interface["port"] = link["port"]
            interface["link_detected"] = link["link_detected"] if link["link_detected"] is not None \
                else interface["link_detected"]
            for key, linked in (("speed_mbps", "speed_mbps"), ("duplex", "duplex")):
                interface[key] = interface[key] if interface[key] is not None else link[linked]
    return interfaces


# -- infiniband: InfiniBand and RoCE HCAs from /sys/class/infiniband (no tool needed) ------------------------

IB_STATE = re.compile(r"^\s*(\d+)\s*:\s*(\S.*?)\s*$")  # "4: ACTIVE", "5: LinkUp", "3: Disabled"


def ib_state(text: str | None) -> str | None:
    """The name in a port state file ("4: ACTIVE" -> "ACTIVE", "5: LinkUp" -> "LinkUp"); a bare name as is."""
    value = (text or "").strip()
    match = IB_STATE.match(value)
    return (match[2] if match else value) or None


def ib_rate(text: str | None) -> float | None:
    """Gb/s from a port's `rate` ("400 Gb/sec (4X NDR)", "2.5 Gb/sec (1X SDR)"); None when unreadable."""
    value = leading_float(text)
    return value if value is not None and value > 0 else None


def ib_guid(text: str | None) -> str | None:
    """A node GUID as sysfs writes it ("946d:ae03:00cd:e72c"), lower case; None when absent or all zeros."""
    value = clean(text)
    if value is None or not re.fullmatch(r"[0-9a-fA-F]{4}(?::[0-9a-fA-F]{4}){3}", value):
        return None
    return value.lower()


def read_ib_port(ctx: Context, base: str, port: str) -> dict[str, Any]:
    """One port of an HCA: state, physical state, rate, link layer and the netdev behind it (RoCE)."""
    where = f"{base}/ports/{port}"
    rate = clean(ctx.read("sysfs", f"{where}/rate"))
    return {
        "port": to_int(port),
        "state": ib_state(ctx.read("sysfs", f"{where}/state")),
        "phys_state": ib_state(ctx.read("sysfs", f"{where}/phys_state")),
        "rate": rate,
        "rate_gbps": ib_rate(rate),
        "link_layer": clean(ctx.read("sysfs", f"{where}/link_layer")),
        "lid": to_int(ctx.read("sysfs", f"{where}/lid")),
        "netdev": clean(ctx.read("sysfs", f"{where}/gid_attrs/ndevs/0")),
    }


@collector("infiniband")
def collect_infiniband(ctx: Context) -> list[dict[str, Any]] | None:
    """InfiniBand/RoCE HCAs from /sys/class/infiniband: firmware, PSID (board_id), HCA type, node GUID, the
    PCI function and netdevs behind each, and every port's state, physical state, rate and link layer.
    None (skipped) when the kernel has no InfiniBand class (no RDMA driver loaded)."""
    names = ctx.listdir("sysfs", "class/infiniband")
    if not names:
        return ctx.skip("no /sys/class/infiniband: no RDMA driver loaded")
    hcas = []
    for name in names:
        base = f"class/infiniband/{name}"
        device = ctx.realpath("sysfs", f"{base}/device")
        hcas.append({
            "name": name,
            "hca_type": clean(ctx.read("sysfs", f"{base}/hca_type")),
            "firmware_version": clean(ctx.read("sysfs", f"{base}/fw_ver")),
            "psid": clean(ctx.read("sysfs", f"{base}/board_id")),
            "hw_revision": clean(ctx.read("sysfs", f"{base}/hw_rev")),
            "node_guid": ib_guid(ctx.read("sysfs", f"{base}/node_guid")),
            "node_description": clean(ctx.read("sysfs", f"{base}/node_desc")),
            "pci_address": pci_address_in_path(device),
            "netdevs": ctx.listdir("sysfs", f"{base}/device/net") if device else [],
            "ports": [read_ib_port(ctx, base, port) for port in sorted(
                ctx.listdir("sysfs", f"{base}/ports"), key=lambda p: (to_int(p) is None, to_int(p) or 0, p))],
        })
    return hcas


def hca_label(hca: dict[str, Any]) -> str:
    """How a finding names an HCA: its name and PCI address."""
    return f"hca {hca.get('name')}" + (f" ({hca['pci_address']})" if hca.get("pci_address") else "")


def port_up(port: dict[str, Any]) -> bool:
    """Whether a port's physical link is up (LinkUp), whatever its logical state."""
    return (port.get("phys_state") or "").lower() == "linkup"


@finding_rule
def infiniband_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    """A port whose physical link is up but whose state is not ACTIVE (no subnet manager, or stuck in
    INIT/ARMED); a port down on an adapter whose other ports are up (the functions of one PCI device are one
    card); HCAs of one model with different firmware in one machine."""
    found = []
    hcas = document.get("infiniband") or []
    cards: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for hca in hcas:
        card = (hca.get("pci_address") or "").rsplit(".", 1)[0] or hca.get("name")
        for port in hca.get("ports") or []:
            cards.setdefault(card, []).append((hca, port))
            if port_up(port) and (port.get("state") or "").upper() != "ACTIVE":
                found.append(finding(
                    "warning", hca_label(hca), f"port {port.get('port')}: physical link up but state "
                    f"{port.get('state')} (not ACTIVE: no subnet manager, or the port is stuck)"))
    for ports in cards.values():
        if any(port_up(port) for _, port in ports):
            for hca, port in ports:
                if not port_up(port):
                    found.append(finding("warning", hca_label(hca),
                                         f"port {port.get('port')} is down ({port.get('phys_state')}) while "
                                         "other ports of the adapter are up"))
    models: dict[tuple[str, str], dict[str, list[str]]] = {}
    for hca in hcas:
        firmware = hca.get("firmware_version")
        if hca.get("hca_type") and firmware:
            # the firmware's major number is the silicon (20 ConnectX-6, 22 -6 Dx, 28 -7, 32 BlueField-3):
            # VFs of different cards share one hca_type (MT4126) but are not one model
            model = (hca["hca_type"], firmware.split(".")[0])
            models.setdefault(model, {}).setdefault(firmware, []).append(hca["name"])
    for (model, _), versions in models.items():
        if len(versions) > 1:
            listing = "; ".join(f"{fw}: {', '.join(names)}" for fw, names in sorted(versions.items()))
            found.append(finding("warning", f"hca {model}",
                                 f"HCAs of one model run different firmware ({listing})"))
    return found


# -- bmc: identity and LAN address of the BMC (ipmitool mc info, channel info, lan print) --------------------

IPMI_CHANNELS = range(1, 12)  # IPMI numbers channels 0-0xB; 0 is IPMB, 0xE "this channel", 0xF the system
MC_INFO_INTS = {"Device ID": "device_id", "Device Revision": "device_revision",
                "Manufacturer ID": "manufacturer_id", "Product ID": "product_id"}
MC_INFO_KEYS = ("firmware_revision", "ipmi_version", "manufacturer_id", "manufacturer", "product_id",
                "product_name", "device_id", "device_revision", "aux_firmware_revision")
IPMI_UNKNOWN_NAME = re.compile(r"(?i)^unknown\s*\(0x[0-9a-f]+\)$")
LAN_KEPT = ("Set in Progress", "IP Address Source", "IP Address", "Subnet Mask", "MAC Address",
            "Default Gateway IP", "802.1q VLAN ID")  # the lines of `lan print` a capture keeps whole
# what ipmitool prints for the IP address source (lib/ipmi_lanp.c: "Other" for any other value)
IP_SOURCES = {"static address": "static", "dhcp address": "dhcp", "bios assigned address": "bios",
              "other": "other", "other protocol": "other", "unspecified": None}


def key_value_lines(text: str | None) -> list[tuple[str, str]]:
    """The "Name   : value" lines of ipmitool's text output, in order; continuation lines (no colon, or
    an empty name: "      : User : MD5") come back with an empty name. CRLF and stray bytes are fine."""
    pairs = []
    for raw in (text or "").replace("\r", "").split("\n"):
        if not raw.strip():
            continue
        name, sep, value = raw.partition(":")
        if not sep or not name.strip():
            pairs.append(("", raw.strip().lstrip(":").strip()))
        else:
            pairs.append((name.strip(), value.strip()))
    return pairs


def parse_mc_info(text: str | None) -> dict[str, Any] | None:
    """The BMC's identity from `ipmitool mc info` (Get Device ID): firmware revision as printed, IPMI
    version, manufacturer id and name, product id and name (None when ipmitool prints "Unknown (0x...)"),
    and the four "Aux Firmware Rev Info" bytes when the BMC sent them. None when no field was found."""
    info: dict[str, Any] = dict.fromkeys(MC_INFO_KEYS)
    found, current = False, ""
    for name, value in key_value_lines(text):
        if name:
            current = name
        if name in MC_INFO_INTS:
            info[MC_INFO_INTS[name]] = to_int(value.split("(")[0])
        elif name == "Firmware Revision":
            info["firmware_revision"] = value or None
        elif name == "IPMI Version":
            info["ipmi_version"] = value or None
        elif name in ("Manufacturer Name", "Product Name"):
            key = "manufacturer" if name == "Manufacturer Name" else "product_name"
            info[key] = None if IPMI_UNKNOWN_NAME.match(value) else clean(value)
        elif name == "Aux Firmware Rev Info":
            info["aux_firmware_revision"] = [value] if re.fullmatch(r"0x[0-9a-fA-F]{2}", value) else []
        elif not name and current == "Aux Firmware Rev Info" and re.fullmatch(r"0x[0-9a-fA-F]{2}", value):
            info["aux_firmware_revision"].append(value.lower())
        found = found or name in MC_INFO_INTS or name == "Firmware Revision"
    if info["aux_firmware_revision"] == []:
        info["aux_firmware_revision"] = None
    return info if found else None


def lan_channel_medium(text: str | None) -> str | None:
    """The "Channel Medium Type" of `ipmitool channel info N` ("802.3 LAN", "IPMB (I2C)"...)."""
    for name, value in key_value_lines(text):
        if name == "Channel Medium Type":
            return value or None
    return None


def ipv4(text: str | None) -> str | None:
    """A dotted IPv4 address; None for anything else (garbage, an empty value)."""
    value = (text or "").strip()
    if re.fullmatch(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})", value) and all(
            int(part) <= 255 for part in value.split(".")):
        return value
    return None


def parse_lan_print(text: str | None, channel: int | None = None) -> dict[str, Any] | None:
    """The BMC's address on one LAN channel from `ipmitool lan print [N]`: IP source ("static", "dhcp",
    "bios", "other"; None for "Unspecified" or anything ipmitool does not print), IP address, netmask,
    default gateway, MAC and VLAN id (a number, None when disabled). Authentication types, cipher suites,
    community strings and password policy are never kept. None when the output holds no address at all."""
    lan: dict[str, Any] = {"channel": channel, "ip_source": None, "ip_address": None, "netmask": None,
                           "gateway": None, "mac": None, "vlan_id": None}
    found = False
    for name, value in key_value_lines(text):
        if name == "IP Address Source":
            lan["ip_source"] = IP_SOURCES.get(" ".join(value.lower().split()))  # garbage: None
        elif name == "IP Address":
            lan["ip_address"], found = ipv4(value), True
        elif name == "Subnet Mask":
            lan["netmask"] = ipv4(value)
        elif name == "Default Gateway IP":
            lan["gateway"] = ipv4(value)
        elif name == "MAC Address":
            lan["mac"], found = hardware_address(value), True
        elif name == "802.1q VLAN ID":
            lan["vlan_id"] = to_int(value)  # "Disabled" -> None
    return lan if found else None


def redact_lan_secrets(output: bytes) -> bytes:
    """`ipmitool lan print` output as a capture keeps it: the lines the audit reads (LAN_KEPT) whole, every
    other line as its name and "<redacted>" (SNMP community string, authentication types, cipher suites,
    password policy, ARP and IP header settings), their continuation lines dropped."""
    kept = []
    for line in output.replace(b"\r", b"").split(b"\n"):
        name, sep, _ = line.partition(b":")
        label = name.decode("utf-8", "replace").strip()
        if not sep or label in LAN_KEPT:
            kept.append(line)
        elif label:
            kept.append(name + b": <redacted>")
    return b"\n".join(kept)


def bmc_lan_channels(ctx: Context) -> list[int]:
    """The BMC's LAN channels (medium 802.3 LAN) among channels 1-11, asked one by one with `ipmitool
    channel info N`. A channel that does not exist fails and is skipped; a timeout stops the search (a BMC
    that does not answer would otherwise cost eleven timeouts)."""
    channels = []
    for channel in IPMI_CHANNELS:
        result = run_ipmitool_quiet(ctx, ["ipmitool", "channel", "info", str(channel)])
        if result is None:
            break
        if result.timed_out:
            ctx.check(result)
            break
        if result.ok and (lan_channel_medium(result.stdout) or "").lower().startswith("802.3"):
            channels.append(channel)
    return channels


def bmc_lan(ctx: Context) -> list[dict[str, Any]]:
    """The BMC's LAN address: `ipmitool lan print` without a channel, where ipmitool itself finds the first
    LAN channel in one process (the document's `channel` is then null: ipmitool does not say which). Only
    when that finds no address are channels 1-11 asked one by one (`channel info N`, then `lan print N` on
    each LAN channel). A timeout stops everything."""
    argv = ["ipmitool", "lan", "print"]
    result = run_ipmitool_quiet(ctx, argv, redact=redact_lan_secrets)
    if result is None:
        return []
    if result.timed_out:
        ctx.check(result)
        return []
    parsed = parse_lan_print(result.stdout) if result.ok else None
    if parsed is not None:
        return [parsed]
    lan = []
    for channel in bmc_lan_channels(ctx):
        argv = ["ipmitool", "lan", "print", str(channel)]
        result = run_ipmitool_quiet(ctx, argv, redact=redact_lan_secrets)
        if result is None or not ctx.check(result):
            continue
        parsed = parse_lan_print(result.stdout, channel)
        if parsed is None:
            ctx.error(argv, f"no LAN address in the output: {first_line(result.stdout)}")
        else:
            lan.append(parsed)
    return lan


@collector("bmc")
def collect_bmc(ctx: Context) -> dict[str, Any] | None:
    """The BMC (only when /dev/ipmi0 exists): `ipmitool mc info`, then its LAN address (bmc_lan). One
    ipmitool at a time, shared with every collector that asks the BMC. A BMC that does not answer `mc info`
    in time is asked nothing more."""
    if not ipmi_present(ctx):
        return ctx.skip(NO_IPMI_DEVICE)
    argv = ["ipmitool", "mc", "info"]
    result = run_ipmitool_quiet(ctx, argv)
    if result is None:
        return None
    info = parse_mc_info(result.stdout) if ctx.check(result) else None
    if result.timed_out:
        return None
    if result.ok and info is None:
        ctx.error(argv, f"no BMC identity in the output: {first_line(result.stdout)}")
    lan = bmc_lan(ctx)
    if info is None and not lan:
        return None
    return {**(info or dict.fromkeys(MC_INFO_KEYS)), "lan": lan}


@finding_rule
def bmc_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Info when the BMC has LAN channels but no address on any of them: it cannot be managed remotely."""
    bmc = document.get("bmc") or {}
    channels = bmc.get("lan") or []
    if channels and not any(lan.get("ip_address") not in (None, "0.0.0.0") for lan in channels):
        numbers = [str(lan.get("channel")) for lan in channels if lan.get("channel") is not None]
        where = f"LAN channel {', '.join(numbers)}" if numbers else "its first LAN channel"
        return [finding("info", "bmc", f"the BMC has no IP address ({where}): it cannot be "
                                       "managed remotely until it gets one")]
    return []


# -- sensors: the BMC's sensors (ipmitool sdr elist) ---------------------------------------------------------

# A sensor's status as ipmitool prints it (sdr: ok/ns/nc/cr/nr; sensor: which threshold is crossed).
SENSOR_STATUS = {"ok": "ok", "ns": "ns", "na": "ns", "nc": "nc", "lnc": "nc", "unc": "nc", "cr": "cr",
                 "lcr": "cr", "ucr": "cr", "nr": "nr", "lnr": "nr", "unr": "nr"}
SENSOR_UNIT_TYPES = {"degrees c": "temperature", "degrees f": "temperature", "rpm": "fan", "volts": "voltage",
                     "amps": "current", "watts": "power", "cfm": "airflow"}
# IPMI entity ids (the first number of the `sdr elist` entity column) that say what a sensor watches.
SENSOR_ENTITY_TYPES = {3: "processor", 4: "drive", 8: "memory", 10: "power supply", 19: "power unit",
                       20: "power supply", 26: "drive", 29: "fan", 30: "fan", 32: "memory", 40: "battery"}
SENSOR_NAME_TYPES = (  # the sensor's name when neither unit nor entity tells its type
    (re.compile(r"(?i)\bps(?:\s?\d|\b)|psu|pwr\s?s(?:u?p)?ply|power\s?suppl"), "power supply"),
    (re.compile(r"(?i)\bfan"), "fan"),
    (re.compile(r"(?i)temp|therm"), "temperature"),
    (re.compile(r"(?i)dimm|\bmem"), "memory"),
    (re.compile(r"(?i)\bcpu|\bproc|\bp\d\b"), "processor"),
    (re.compile(r"(?i)drive|disk|\bhdd|\bssd"), "drive"),
    (re.compile(r"(?i)batt"), "battery"),
)
SENSOR_NO_READING = {"no reading", "not readable", "disabled", "na", ""}
SENSOR_THRESHOLDS = ("lower_non_recoverable", "lower_critical", "lower_non_critical", "upper_non_critical",
                     "upper_critical", "upper_non_recoverable")
NUMBER_AND_UNIT = re.compile(r"^(-?\d+(?:\.\d+)?)(?:\s+(.+))?$")


def sensor_number(text: str) -> int | None:
    """A sensor number as `sdr elist` prints it ("30h"); None for anything else."""
    match = re.fullmatch(r"([0-9a-fA-F]{1,2})h", text.strip())
    return int(match[1], 16) if match else None


def number(text: str | None) -> int | float | None:
    """A decimal reading as a number: an int when it has no fraction ("2160"), else a float ("12.084")."""
    text = (text or "").strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+", text):
        return float(text)
    return None


def sensor_type(name: str, unit: str | None, entity: str | None, has_states: bool) -> str:
    """What a sensor watches: temperature, fan, voltage, current, power, airflow (from its unit), power
    supply, power unit, processor, memory, drive, battery (a sensor with states: from its entity id; else
    from its name, then its entity id), or "other"."""
    entity_id = to_int((entity or "").split(".")[0])
    by_entity = SENSOR_ENTITY_TYPES.get(entity_id) if entity_id is not None else None
    if has_states and by_entity:  # "Power Supply 1 | 0 Watts, Presence detected": a supply, not a meter
        return by_entity
    by_unit = SENSOR_UNIT_TYPES.get((unit or "").lower())
    if by_unit:
        return by_unit
    for pattern, kind in SENSOR_NAME_TYPES:  # "Temp | 05h | ns | 10.1 | Disabled": a supply's temperature
        if pattern.search(name):
            return kind
    return by_entity or "other"


def split_reading(text: str) -> tuple[int | float | None, str | None, str | None]:
    """(reading, unit, state text) of an `sdr` reading column: "2160 RPM", "0 Watts, Presence detected,
    Failure detected", "Presence detected", "0x00" (a discrete sensor's raw state), "No Reading"."""
    parts = [part.strip() for part in text.split(",")]
    match = NUMBER_AND_UNIT.match(parts[0]) if parts else None
    if match:
        states = ", ".join(part for part in parts[1:] if part)
        return number(match[1]), match[2], states or None
    state = text.strip()
    return None, None, state or None


def parse_sensor_line(fields: list[str]) -> dict[str, Any] | None:
    """One sensor from the columns of an `sdr` (3), `sdr elist` / `sdr type` (5) or `sensor` (10) line."""
    name = fields[0]
    sensor: dict[str, Any] = {"name": name or None, "number": None, "entity": None, "type": "other",
                              "reading": None, "unit": None, "status": None, "state": None,
                              "thresholds": None}
    if len(fields) == 3:
        reading, status = fields[1], fields[2]
    elif len(fields) == 5:
        sensor["number"] = sensor_number(fields[1])
        sensor["entity"] = fields[3] if re.fullmatch(r"\d+\.\d+", fields[3]) else None
        reading, status = fields[4], fields[2]
    elif len(fields) >= 10:
        value, unit, status = fields[1], fields[2], fields[3]
        if re.fullmatch(r"0x[0-9a-fA-F]+", status):  # a discrete sensor: its state bits, no threshold status
            value, status = status, "ok"
        if number(value) is not None:
            sensor["reading"], sensor["unit"] = number(value), unit or None
        elif value.lower() not in SENSOR_NO_READING:
            sensor["state"] = value  # a discrete sensor's raw state ("0x0080")
        thresholds = [number(item) for item in fields[4:10]]
        if any(item is not None for item in thresholds):
            sensor["thresholds"] = dict(zip(SENSOR_THRESHOLDS, thresholds, strict=True))
        reading = None
    else:
        return None
    status_key = status.strip().lower()
    if status_key not in SENSOR_STATUS:
        return None
    sensor["status"] = SENSOR_STATUS[status_key]
    if reading is not None:
        sensor["reading"], sensor["unit"], state = split_reading(reading)
        if state is not None and state.lower() not in SENSOR_NO_READING:
            sensor["state"] = state
    has_states = bool(sensor["state"]) and not sensor["state"].lower().startswith("0x")
    sensor["type"] = sensor_type(name, sensor["unit"], sensor["entity"], has_states)
    return sensor


def parse_sensors(text: str | None) -> list[dict[str, Any]]:
    """Every sensor of `ipmitool sdr elist` (also `sdr`, `sdr type X` and `sensor` outputs), in order.

    Each: name, number (from elist), entity ("10.1"), type, reading (a number or None) and unit, status
    (ok, nc, cr, nr, ns) and state (the discrete state text, "Presence detected, Failure detected").
    CRLF, blank, header and garbage lines are skipped; repeated names are kept (Dell has many "Presence")."""
    sensors = []
    for raw in (text or "").replace("\r", "").split("\n"):
        if raw.count("|") < 2:
            continue
        sensor = parse_sensor_line([field.strip() for field in raw.split("|")])
        if sensor is not None:
            sensors.append(sensor)
    return sensors


@collector("sensors")
def collect_sensors(ctx: Context) -> list[dict[str, Any]] | None:
    """The BMC's sensors from one `ipmitool sdr elist` (the one walk of the SDR repository; only when
    /dev/ipmi0 exists)."""
    if not ipmi_present(ctx):
        return ctx.skip(NO_IPMI_DEVICE)
    argv = ["ipmitool", "sdr", "elist"]
    text = ipmitool_text(ctx, argv, slow=True)
    if text is None:
        return None
    sensors = parse_sensors(text)
    if text.strip() and not sensors:
        ctx.error(argv, f"no sensor lines in the output: {first_line(text)} (run `ipmitool sdr elist` by "
                        "hand to see what the BMC answers)")
    return sensors


# What discrete states and event texts mean (the same words in the sensors' states and the event log):
# (pattern, severity, what a person should read). The first match wins.
HEALTH_STATES = (
    (re.compile(r"(?i)\buncorrectable ecc|uncorrectable machine check"), "critical",
     "uncorrectable memory error"),
    (re.compile(r"(?i)\bierr\b|machine check exception|thermal trip|\bfrb[123]\b|processor.*failure"),
     "critical", "processor failure"),
    (re.compile(r"(?i)bus fatal error|bus uncorrectable error|\bpci serr\b|\bpci perr\b|fatal nmi"),
     "critical", "fatal bus error (PCIe)"),
    (re.compile(r"(?i)power supply ac lost|ac lost or out-of-range|ac out-of-range|input lost"), "critical",
     "power supply without AC input"),
    (re.compile(r"(?i)^failure detected$|power supply failure"), "critical", "power supply failure"),
    (re.compile(r"(?i)drive fault|in failed array"), "critical", "drive failure"),
    (re.compile(r"(?i)correctable ecc logging limit"), "warning",
     "correctable memory errors (so many that the BMC stopped logging them)"),
    (re.compile(r"(?i)correctable ecc|bus correctable error"), "warning", "correctable errors"),
    (re.compile(r"(?i)predictive failure"), "warning", "predictive failure"),
    (re.compile(r"(?i)redundancy lost|redundancy degraded|non-redundant"), "warning", "redundancy lost"),
    (re.compile(r"(?i)config(?:uration)? error"), "warning", "configuration error"),
    (re.compile(r"(?i)in critical array|rebuild.*abort"), "warning", "drive array degraded"),
    (re.compile(r"(?i)undetermined system hardware failure"), "warning", "hardware failure (unspecified)"),
    (re.compile(r"(?i)memory device disabled|memory scrub failed"), "warning", "memory disabled"),
    (re.compile(r"(?i)\blog full\b|log almost full"), "warning", "event log full"),
)
BATTERY_STATES = re.compile(r"(?i)^(?:failed|low|battery failed|battery low)$")
# Intel's generic discrete sensors say only "State Asserted": their name says what asserted.
ASSERTED_BY_NAME = (
    (re.compile(r"(?i)caterr|\bierr|mcerr"), "critical", "processor failure (catastrophic error)"),
    (re.compile(r"(?i)therm(?:al)?\s*trip"), "critical", "thermal trip"),
)


def asserted_state_health(name: str | None, state: str) -> tuple[str, str] | None:
    """(severity, meaning) of a generic discrete sensor's "State Asserted" by the sensor's name (an Intel
    board's "CATERR", "IERR", "SSB Therm Trip"); None for any other state or name."""
    if state.strip().lower() != "state asserted":
        return None
    for pattern, severity, meaning in ASSERTED_BY_NAME:
        if pattern.search(name or ""):
            return severity, meaning
    return None


def state_health(state: str, kind: str | None = None) -> tuple[str, str] | None:
    """(severity, meaning) of one discrete state or event text; None when it is no fault ("Presence
    detected", "Device Absent", "Fully Redundant"). `kind` is the sensor's type ("battery": "Failed" is
    one)."""
    for pattern, severity, meaning in HEALTH_STATES:
        if pattern.search(state):
            return severity, meaning
    if kind and kind.lower() == "battery" and BATTERY_STATES.match(state.strip()):
        return "warning", "battery failed or low (CMOS/RTC battery)"
    return None


def sensor_label(sensor: dict[str, Any]) -> str:
    """How a finding names a sensor: "sensor PS1 Status (power supply)"."""
    return f"sensor {sensor.get('name') or '?'} ({sensor.get('type') or 'other'})"


def threshold_text(sensor: dict[str, Any]) -> str:
    """The crossed threshold of a sensor read with `ipmitool sensor`, e.g. " (upper critical 85)"."""
    thresholds, reading = sensor.get("thresholds") or {}, sensor.get("reading")
    if reading is None:
        return ""
    for key in reversed(SENSOR_THRESHOLDS[3:]):
        if thresholds.get(key) is not None and reading >= thresholds[key]:
            return f" (over the {key.replace('_', ' ')} threshold {thresholds[key]:g})"
    for key in SENSOR_THRESHOLDS[:3]:
        if thresholds.get(key) is not None and reading <= thresholds[key]:
            return f" (under the {key.replace('_', ' ')} threshold {thresholds[key]:g})"
    return ""


def supply_number(text: str | None) -> int | None:
    """The number in a power supply's name ("Power Supply 1", "PS2 Status", "PSU 3", "PWS-1") or None."""
    match = re.search(r"(?i)(?:power\s*supply|\bpsu?|\bpws|\bpower)\s*[-_#]?\s*(\d+)", text or "")
    return int(match[1]) if match else None


def psu_ref(document: dict[str, Any], sensor: dict[str, Any]) -> str | None:
    """The `/psu/power_supplies/N` of the one power supply whose name or location has a power supply
    sensor's number ("Power Supply 1" and "PS1"), else None."""
    number_ = supply_number(sensor.get("name"))
    supplies = (document.get("psu") or {}).get("power_supplies") or []
    if number_ is None:
        return None
    same = [i for i, psu in enumerate(supplies)
            if number_ in (supply_number(psu.get("name")), supply_number(psu.get("location")))]
    return f"/psu/power_supplies/{same[0]}" if len(same) == 1 else None


def is_ecc_state(state: str) -> str | None:
    """"UE" or "CE" when a discrete state is a memory ECC one, else None."""
    if re.search(r"(?i)uncorrectable ecc", state):
        return "UE"
    if re.search(r"(?i)correctable ecc", state):
        return "CE"
    return None


@finding_rule
def sensor_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One finding per faulty sensor, naming it: past a critical or non-recoverable threshold (critical) or
    a non-critical one (warning), and faulty discrete states (a power supply's failure or lost AC, lost
    redundancy...), the worst of them its severity. A memory sensor's ECC states are told with the DIMM's
    story (memory_error_findings). Nothing for sensors without a reading (ns), absent devices or "Presence
    detected" alone. A power supply's sensor points at that supply in /psu when one matches."""
    found = []
    for index, sensor in enumerate(document.get("sensors") or []):
        status = sensor.get("status")
        if status in (None, "ns"):
            continue
        reading = "" if sensor.get("reading") is None else f"{sensor['reading']:g} {sensor.get('unit') or ''}"
        reading = reading.strip()
        told, severities = [], []
        state = sensor.get("state") or ""
        if status in ("cr", "nr", "nc"):
            level = {"cr": "critical", "nr": "non-recoverable", "nc": "non-critical"}[status]
            severities.append("warning" if status == "nc" else "critical")
            value = reading or ("" if state and not state.lower().startswith("0x") else state) or ""
            told.append(f"{level}" + (f" at {value}" if value else "") + threshold_text(sensor))
        rated = []
        if not state.lower().startswith("0x"):
            rated = [(health, part.strip()) for part in state.split(",") if not is_ecc_state(part) and (
                health := state_health(part.strip(), sensor.get("type"))
                or asserted_state_health(sensor.get("name"), part))]
        if rated:
            severities += [h[0] for h, _ in rated]
            states = ", ".join(f'"{part}"' for _, part in rated)
            meanings = "; ".join(dict.fromkeys(meaning for (_, meaning), _ in rated))
            told.append(f"state {states}: {meanings}" + (f" (reading {reading})" if reading and not
                                                          told else ""))
        if not told:
            continue
        severity = "critical" if "critical" in severities else "warning"
        ref = (psu_ref(document, sensor) if sensor.get("type") == "power supply" else None) or \
            f"/sensors/{index}"
        found.append({**finding(severity, sensor_label(sensor),
                                f"BMC sensor {sensor.get('name') or '?'}: " + "; ".join(told)),
                      "ref": ref, "sources": ["sensors"]})
    return found


# -- event_log: the BMC's System Event Log (ipmitool sel info, sel list) -------------------------------------

SEL_KEEP = 1000  # records kept in the document (the newest); the summary counts them all
SEL_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})$")
SEL_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
SEL_TIME = re.compile(
    r"^(\d{1,2}):(\d{2}):(\d{2})(?:\s*([AaPp][Mm]))?(?:\s+([A-Za-z]{2,6}|[+-]\d{2}:?\d{2}))?$")
SEL_SENSOR_NUMBER = re.compile(r"^(.*?)\s*#0x([0-9a-fA-F]{1,2})$")
# ipmitool's sensor type names, which `sel elist` prints before the SDR name ("Temperature Inlet_Temp")
SEL_SENSOR_TYPES = (
    "Temperature", "Voltage", "Current", "Fan", "Physical Security", "Platform Security", "Processor",
    "Power Supply", "Power Unit", "Cooling Device", "Other", "Memory", "Drive Slot / Bay", "Drive Slot",
    "POST Memory Resize", "System Firmwares", "System Firmware Progress", "System Firmware Error",
    "Event Logging Disabled", "Watchdog1", "Watchdog2", "Watchdog", "System Event", "Critical Interrupt",
    "Button", "Module / Board", "Microcontroller", "Add-in Card", "Chassis", "Chip Set", "Other FRU",
    "Cable / Interconnect", "Terminator", "System Boot Initiated", "Boot Error", "OS Boot",
    "OS Critical Stop", "Slot / Connector", "System ACPI Power State", "Platform Alert", "Entity Presence",
    "Monitor ASIC", "LAN", "Management Subsys Health", "Battery", "Session Audit", "Version Change",
    "FRU State",
)
SEL_SENSOR_TYPES_LONGEST_FIRST = tuple(sorted(SEL_SENSOR_TYPES, key=len, reverse=True))  # "Drive Slot / Bay"
SEL_COMPONENTS = {"memory": "memory", "processor": "cpu", "power supply": "psu", "power unit": "psu",
                  "critical interrupt": "pcie", "fan": "fan", "cooling device": "fan",
                  "temperature": "temperature", "drive slot": "storage", "drive slot / bay": "storage",
                  "battery": "battery"}
THRESHOLD_EVENT = re.compile(r"(?i)^(upper|lower) (non-critical|critical|non-recoverable) going (high|low)$")
# ipmitool's OEM decoding appended to an event in parentheses (a Supermicro BMC: "IERR ()", "Correctable ECC
# (@DIMMA1(CPU1))"): the event is the text before it, the decoding its detail.
SEL_OEM_SUFFIX = re.compile(r"^(.*\S)\s+\(([^()]*(?:\([^()]*\)[^()]*)*)\)$")
TRIGGER = re.compile(r"(?i)reading\s+(-?[\d.]+)\s*([<>]=?|=)\s*threshold\s+(-?[\d.]+)\s*(.*)$")


def sel_time(date: str, clock: str) -> tuple[str | None, str | None]:
    """(ISO local time, zone as printed) of a SEL record's date and time columns, in every form ipmitool
    prints: 06/29/2021 | 08:18:06, 12/14/22 | 23:09:44 CET, 05:15:35 PM CEST; (None, None) otherwise."""
    match, clock_match = SEL_DATE.match(date.strip()), SEL_TIME.match(clock.strip())
    iso = SEL_ISO_DATE.match(date.strip())
    if not clock_match or not (match or iso):
        return None, None
    if match:
        month, day, year = int(match[1]), int(match[2]), int(match[3])
        year += 2000 if len(match[3]) == 2 and year < 70 else 1900 if len(match[3]) == 2 else 0
    else:
        year, month, day = int(iso[1]), int(iso[2]), int(iso[3])
    hour, minute, second = int(clock_match[1]), int(clock_match[2]), int(clock_match[3])
    if clock_match[4]:
        hour = hour % 12 + (12 if clock_match[4].lower() == "pm" else 0)
    try:
        when = dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None, None
    return when.isoformat(), clock_match[5]


def split_sel_sensor(text: str) -> tuple[str | None, int | None, str]:
    """(sensor type, sensor number, name) of a SEL sensor column: "Fan #0x46" (sel list) or
    "Temperature Inlet_Temp" (sel elist: the type, then the SDR name)."""
    numbered = SEL_SENSOR_NUMBER.match(text)
    if numbered:
        return numbered[1] or None, int(numbered[2], 16), text
    for kind in SEL_SENSOR_TYPES_LONGEST_FIRST:
        if text.lower().startswith(kind.lower() + " "):
            return kind, None, text[len(kind) + 1:].strip()
    return None, None, text


def parse_sel_record(fields: list[str]) -> dict[str, Any] | None:
    """One `sel list` / `sel elist` line's columns as a record; None for a line that is not one."""
    if len(fields) < 4 or not re.fullmatch(r"[0-9a-fA-F]{1,8}", fields[0]):
        return None
    record: dict[str, Any] = {"id": fields[0].lower(), "time": None, "zone": None,
                              "seconds_after_power_on": None, "sensor": None, "sensor_type": None,
                              "sensor_number": None, "event": None,
                              "direction": None, "trigger": None, "oem": False}
    if fields[1].lower().startswith("pre-init"):
        record["seconds_after_power_on"] = to_int(fields[2])
    else:
        record["time"], record["zone"] = sel_time(fields[1], fields[2])
    rest = fields[3:]
    if rest[0].lower().startswith("oem record") or len(rest) == 1:
        record["oem"] = rest[0].lower().startswith("oem record")
        record["sensor"] = rest[0] or None
        record["event"] = " | ".join(rest[1:]) or None
        return record
    kind, sensor_no, name = split_sel_sensor(rest[0])
    record["sensor"], record["sensor_type"], record["sensor_number"] = rest[0] or None, kind, sensor_no
    if name != rest[0]:
        record["sensor_name"] = name
    event = SEL_OEM_SUFFIX.match(rest[1])
    record["event"] = (event[1] if event else rest[1]) or None
    if len(rest) > 2 and rest[2].lower() in ("asserted", "deasserted"):
        record["direction"] = rest[2].lower()
        extra = " | ".join(part for part in rest[3:] if part)
    else:
        extra = " | ".join(part for part in rest[2:] if part)
    if event and event[2]:
        extra = " | ".join(part for part in (event[2], extra) if part)
    trigger = TRIGGER.search(extra) if extra else None
    if trigger:
        record["trigger"] = {"text": extra, "reading": number(trigger[1]), "threshold": number(trigger[3]),
                             "unit": trigger[4].strip() or None}
    elif extra:  # what else ipmitool adds: "CPU 1 DIMM 2" for a memory event of sensor 0, OEM details
        record["detail"] = extra
    return record


def parse_sel_list(text: str | None) -> list[dict[str, Any]]:
    """Every record of `ipmitool sel list` or `sel elist`, in the order printed (oldest first).

    Each: id (hex as printed; BMCs do repeat ids, both records stay), time (ISO, the BMC's local time) and
    zone, or seconds_after_power_on for Pre-Init records, sensor (as printed), sensor_type and
    sensor_number when printed, event, direction (asserted/deasserted), trigger (the reading and threshold
    of a threshold event), detail (any other column ipmitool adds) and oem (an OEM record, which has fewer
    columns)."""
    records = []
    for raw in (text or "").replace("\r", "").split("\n"):
        if "|" not in raw:
            continue
        record = parse_sel_record([field.strip() for field in raw.split("|")])
        if record is not None:
            records.append(record)
    return records


def parse_sel_info(text: str | None) -> dict[str, Any] | None:
    """`ipmitool sel info`: entries, free_bytes, percent_used, last_add_time, last_del_time (as printed,
    None for "Not Available") and overflow."""
    fields = parse_fru_fields(text)  # "Name : value" lines, as ipmitool prints FRUs too
    if not fields:
        return None
    return {
        "version": clean(fields.get("Version")),
        "entries": to_int(fields.get("Entries")),
        "free_bytes": leading_int(fields.get("Free Space")),  # "56682 bytes"
        "percent_used": leading_int(fields.get("Percent Used")),  # "12%", "unknown"
        "last_add_time": clean(fields.get("Last Add Time")),
        "last_del_time": clean(fields.get("Last Del Time")),
        "overflow": to_bool(fields.get("Overflow")),
    }


def sel_when(record: dict[str, Any]) -> str | None:
    """A record's time for a person: the ISO time (with its zone), or "+N s after power-on" (Pre-Init)."""
    if record.get("time"):
        return record["time"] + (f" {record['zone']}" if record.get("zone") else "")
    if record.get("seconds_after_power_on") is not None:
        return f"{record['seconds_after_power_on']} s after power-on"
    return None


def sel_event_health(record: dict[str, Any]) -> tuple[str, str] | None:
    """(severity, meaning) of a SEL event as it was asserted: threshold crossings (critical and
    non-recoverable are critical, non-critical a warning) and the faults of HEALTH_STATES."""
    event = record.get("event") or ""
    threshold = THRESHOLD_EVENT.match(event.strip())
    if threshold:
        severity = "warning" if threshold[2].lower() == "non-critical" else "critical"
        return severity, f"{threshold[1].lower()} {threshold[2].lower()} threshold crossed"
    if (record.get("sensor") or "").lower().startswith("linux kernel panic"):  # OEM record f0h
        return "critical", "the operating system panicked"
    if record.get("oem"):
        return None
    return state_health(event, record.get("sensor_type")) or asserted_state_health(
        record.get("sensor_name"), event)


def summarize_sel(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per sensor and event (and per DIMM an ECC event names in its detail): how often it was
    asserted, first and last time, whether it is still asserted (no later deassertion), and its severity
    and meaning when it is a fault."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in records:
        ecc_detail = record.get("detail") if "ecc" in (record.get("event") or "").lower() else None
        key = (record.get("sensor") or "", record.get("event") or "", ecc_detail or "")
        group = groups.get(key)
        if group is None:
            health = sel_event_health(record)
            group = groups[key] = {
                "sensor": record.get("sensor"), "sensor_type": record.get("sensor_type"),
                "sensor_number": record.get("sensor_number"), "event": record.get("event"),
                "severity": health[0] if health else None, "meaning": health[1] if health else None,
                "count": 0, "first": None, "last": None, "first_id": None, "last_id": None, "active": False,
            }
            if ecc_detail:  # the DIMM an ECC event names ("CPU 1 DIMM 2"): one entry per DIMM
                group["detail"] = ecc_detail
        if record.get("direction") == "deasserted":
            group["active"] = False
            continue
        group["count"] += 1
        group["active"] = True
        group["first"] = group["first"] or sel_when(record)
        group["first_id"] = group["first_id"] or record["id"]
        group["last"], group["last_id"] = sel_when(record) or group["last"], record["id"]
    return [group for group in groups.values() if group["count"]]


@collector("event_log")
def collect_event_log(ctx: Context) -> dict[str, Any] | None:
    """The BMC's System Event Log: `ipmitool sel info` and every record of `ipmitool sel list` (only when
    /dev/ipmi0 exists). `sel list` does not walk the SDR repository (`sel elist` would, a second time after
    the sensors collector): the sensors' names are linked from the sensors collector's SDR instead. The
    document keeps the newest SEL_KEEP records, the total, and a summary of all of them. bee never clears
    the log."""
    if not ipmi_present(ctx):
        return ctx.skip(NO_IPMI_DEVICE)
    info_text = ipmitool_text(ctx, ["ipmitool", "sel", "info"])
    list_text = ipmitool_text(ctx, ["ipmitool", "sel", "list"], slow=True)
    if info_text is None and list_text is None:
        return None
    info = parse_sel_info(info_text)
    if info_text and info_text.strip() and (info is None or not any(
            info[key] is not None for key in ("entries", "free_bytes", "percent_used", "overflow"))):
        ctx.error(["ipmitool", "sel", "info"], f"no SEL information in the output: {first_line(info_text)} "
                  "(run `ipmitool sel info` by hand to see what the BMC answers)")
        info = None
    records = parse_sel_list(list_text)
    if list_text and list_text.strip() and not records and not re.search(r"(?i)no entries", list_text):
        ctx.error(["ipmitool", "sel", "list"], f"no event records in the output: {first_line(list_text)} "
                  "(run `ipmitool sel list` by hand to see what the BMC answers)")
    counts: dict[str, int] = {}
    for record in records:
        counts[record["id"]] = counts.get(record["id"], 0) + 1
    return {
        "info": info,
        "total_records": len(records),
        "records": records[-SEL_KEEP:],
        "duplicate_ids": sorted(key for key, count in counts.items() if count > 1),
        "summary": summarize_sel(records),
    }


@linker
def name_sel_sensors(document: dict[str, Any]) -> None:
    """Give SEL records and summary entries printed as "Fan #0x46" the name of that sensor in the SDR
    (sensor_name), when exactly one sensor has that number; a "State Asserted" of a sensor so named
    "CATERR", "IERR" or "... Therm Trip" is then rated (asserted_state_health)."""
    by_number: dict[int, list[str]] = {}
    for sensor in document.get("sensors") or []:
        if sensor.get("number") is not None and sensor.get("name"):
            by_number.setdefault(sensor["number"], []).append(sensor["name"])
    event_log = document.get("event_log") or {}
    for item in (event_log.get("records") or []) + (event_log.get("summary") or []):
        names = by_number.get(item.get("sensor_number"), [])
        if len(set(names)) == 1 and not item.get("sensor_name"):
            item["sensor_name"] = names[0]
    for group in event_log.get("summary") or []:  # "State Asserted" of a sensor now named "CATERR"
        health = None if group.get("severity") else asserted_state_health(group.get("sensor_name"),
                                                                          group.get("event") or "")
        if health:
            group["severity"], group["meaning"] = health


def sel_label(group: dict[str, Any]) -> str:
    """A summary entry's sensor for a person: "Memory #0x2b", with its SDR name when known."""
    name = group.get("sensor_name")
    sensor = group.get("sensor") or "?"
    return f"{sensor} ({name})" if name and name not in sensor else sensor


def is_memory_ecc(group: dict[str, Any]) -> str | None:
    """"UE" or "CE" when a summary entry is a memory ECC event, else None."""
    event = group.get("event") or ""
    if (group.get("sensor_type") or "").lower() not in ("memory", "") and "ecc" not in event.lower():
        return None
    if re.search(r"(?i)uncorrectable ecc", event):
        return "UE"
    if re.search(r"(?i)correctable ecc", event):
        return "CE"
    return None


def sel_group_finding(group: dict[str, Any]) -> dict[str, Any]:
    """The finding of one rated summary entry; a fault deasserted since then is one level lower."""
    severity = group["severity"]
    if not group["active"]:
        severity = {"critical": "warning", "warning": "info"}.get(severity, severity)
    kind = (group.get("sensor_type") or "").lower()
    times = "once" if group["count"] == 1 else f"{group['count']} times"
    span = group["first"] if group["count"] == 1 or group["first"] == group["last"] else \
        f"{group['first']} to {group['last']}"
    event = f" \"{group['event']}\"" if group.get("event") else ""
    message = (f"BMC event log: {sel_label(group)}{event} ({group['meaning']}), {times}"
               + (f", {span}" if span else "") + ("" if group["active"] else ", deasserted since"))
    return {**finding(severity, SEL_COMPONENTS.get(kind, "bmc"), message), "count": group["count"],
            "first": group["first"], "last": group["last"], "sources": ["event_log"]}


SEL_FULL_MIN_ENTRIES = 64  # no real SEL holds fewer records when it is full (16 bytes each)
# Manufacturer ids of OpenBMC firmware: IANA's number of the OpenBMC project, and 42817 (0xA741), which
# phosphor-ipmid reports on IBM's OpenPOWER machines (the Witherspoon `mc info` of the fixtures)
OPENBMC_MANUFACTURER_IDS = (49871, 42817)


def sel_looks_full(info: dict[str, Any], bmc: dict[str, Any] | None) -> bool:
    """Whether `sel info` says the log is full (no free space, or 100 % used) and that can be believed: an
    OpenBMC BMC always says "Free Space : 0 bytes" and "100%" whatever it holds (openbmc/openbmc#3518), and
    a log of fewer than SEL_FULL_MIN_ENTRIES records is no full one either (Witherspoon: 2 entries)."""
    if not (info.get("free_bytes") == 0 or (info.get("percent_used") or 0) >= 100):
        return False
    bmc = bmc or {}
    if bmc.get("manufacturer_id") in OPENBMC_MANUFACTURER_IDS or "openbmc" in squash(bmc.get("manufacturer")):
        return False
    entries = info.get("entries")
    return entries is None or entries >= SEL_FULL_MIN_ENTRIES


@finding_rule
def event_log_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One finding per faulty sensor and event of the SEL (with its count and first and last time), and a
    warning when the log is full or overflowed. Memory ECC events are told with the DIMM they concern, in
    memory_error_findings."""
    event_log = document.get("event_log") or {}
    found = []
    info = event_log.get("info") or {}
    if info.get("overflow"):
        found.append(finding("warning", "bmc", "BMC event log overflowed: new events are being lost (read "
                                               "it, then clear it: ipmitool sel clear)"))
    elif sel_looks_full(info, document.get("bmc")):
        found.append(finding("warning", "bmc", "BMC event log is full: new events are being lost (read it, "
                                               "then clear it: ipmitool sel clear)"))
    for position, group in enumerate(event_log.get("summary") or []):
        if group.get("severity") and not is_memory_ecc(group):
            found.append({**sel_group_finding(group), "ref": f"/event_log/summary/{position}"})
    return found


# -- kernel_log: hardware errors in the kernel log (dmesg) ---------------------------------------------------

PCI_ADDR = r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"
DEVICE_PREFIX = re.compile(rf"^\S+ ({PCI_ADDR}): ")
MCE_BANK = re.compile(r"CPU (\d+): Machine Check(?: Exception| Event)?: (\w+) Bank (\d+): ([0-9a-fA-F]+)")
MCE_LOGGED = re.compile(r"Machine check events logged")
MCE_FATAL = re.compile(r"(?i)Kernel panic.*machine check|Uncorrected hardware memory error|"
                       r"Processor context corrupt")
GHES_SEVERITY = re.compile(r"\{(\d+)\}\[Hardware Error\]:\s+event severity: (\w+)")
GHES_DETAIL = re.compile(rf"\{{(\d+)\}}\[Hardware Error\]:\s+(?:DIMM location: (.+?)\s*$|"
                         rf"device_id: ({PCI_ADDR})|section_type: (.+?)\s*$)")
EDAC_COUNTED = re.compile(r"EDAC (?:\S+ )?MC(\d+): (\d+) (CE|UE) (.*?)\s*on (.+?) \((.*)\)\s*$")
RAS_MEMORY = re.compile(r"(\d+) (Corrected|Uncorrected) error\(s\): .*? at (\S+) location")
EDAC_OLD = re.compile(r"EDAC (?:\S+ )?MC(\d+): (CE|UE) (.*?)labels? \"([^\"]*)\"")
AER_RECEIVED = re.compile(r"AER: (?:Multiple )?(Corrected|Correctable|Uncorrected|Uncorrectable)"
                          r"(?: \((Non-Fatal|Fatal)\))? error(?: message)? received(?: from|:)\s*(?:id=)?"
                          rf"({PCI_ADDR}|[0-9a-fA-F]{{4}})")
AER_BUS_ERROR = re.compile(r"PCIe Bus Error: severity=(Corrected|Correctable|Uncorrected|Uncorrectable)(?: \("
                           r"(Non-Fatal|Fatal)\))?, type=([^,]+),\s*(?:id=([0-9a-fA-F]{4}))?")
AER_ERROR_NAME = re.compile(r"^\s*\[\s*\d+\]\s*([A-Za-z][\w ]*?)\s*(?:\(First\))?\s*$")
XID = re.compile(r"NVRM: Xid \((?:PCI:)?([0-9a-fA-F:.]+)\): (\d+),?\s*(.*)")
NVIDIA_GPU_ADDRESS = re.compile(r"NVRM: (?:The NVIDIA GPU |GPU at PCI:|GPU )([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:"
                                r"[0-9a-fA-F]{2}(?:\.[0-7])?)")
NVME_DOWN = re.compile(r"nvme (nvme\d+): (controller is down|Removing after probe failure|Device not ready|"
                       r"Disabling device after reset failure)")
NVME_TIMEOUT = re.compile(r"nvme (nvme\d+): I/O (?:tag )?\d+ (?:\([0-9a-f]+\) )?(?:opcode \S+ )?\(?.*?QID \d+"
                          r" timeout")
NVME_RESET = re.compile(r"nvme (nvme\d+): (?:resetting controller|Abort status)")
NVME_IO = re.compile(r"(nvme\d+n\d+): I/O Cmd\(0x[0-9a-fA-F]+\) @ LBA \d+, \d+ blocks, I/O Error")
DISK_MEDIUM = re.compile(r"critical medium error, dev (\w+)")
DISK_SENSE_MEDIUM = re.compile(r"\[(\w+)\] (?:tag#\d+ )?Sense Key : (?:Medium Error|0x3)\b")
ATA_UNC = re.compile(r"(ata\d+(?:\.\d+)?): error: \{ .*\bUNC\b")
DISK_IO = re.compile(r"(?<!critical medium error, )(?:^|: |\s)I/O error, dev (\w+)")
BUFFER_IO = re.compile(r"Buffer I/O error on dev (\w+)")

# What an NVIDIA Xid means (NVIDIA's Xid catalog), and how bad it is for the machine.
XID_MEANINGS = {
    13: ("warning", "graphics engine exception (often the application)"),
    31: ("warning", "GPU memory page fault (often the application)"),
    32: ("warning", "invalid or corrupted push buffer stream"),
    38: ("warning", "driver firmware error"),
    43: ("warning", "GPU stopped processing (often the application)"),
    45: ("warning", "preemptive cleanup, due to a previous error"),
    48: ("critical", "double-bit ECC error"),
    56: ("warning", "display engine error"),
    57: ("warning", "error programming video memory interface"),
    61: ("warning", "internal micro-controller breakpoint/warning"),
    62: ("critical", "internal micro-controller halt"),
    63: ("warning", "ECC page retirement or row remapping recorded"),
    64: ("critical", "ECC page retirement or row remapping failed"),
    68: ("warning", "video processor exception"),
    69: ("warning", "graphics engine class error"),
    74: ("critical", "NVLink error"),
    79: ("critical", "GPU has fallen off the bus"),
    92: ("warning", "high single-bit ECC error rate"),
    94: ("warning", "contained ECC error (the application was stopped)"),
    95: ("critical", "uncontained ECC error (reset the GPU)"),
    109: ("warning", "context switch timeout"),
    119: ("critical", "GSP RPC timeout"),
    120: ("critical", "GSP error"),
    121: ("warning", "C2C link corrected error"),
    123: ("warning", "SPI PMU RPC write failure"),
    136: ("warning", "link training failure"),
    140: ("critical", "unrecovered ECC error"),
    143: ("critical", "GPU initialization failure"),
    144: ("critical", "NVLink error"), 145: ("critical", "NVLink error"), 146: ("critical", "NVLink error"),
    147: ("critical", "NVLink error"), 148: ("critical", "NVLink error"), 149: ("critical", "NVLink error"),
    150: ("critical", "NVLink error"), 154: ("critical", "GPU recovery action required"),
}
KERNEL_SAMPLE = 300  # characters of a sample line kept per event
KERNEL_LINE_MAX = 1024  # the kernel's own line limit; longer (garbage) lines are cut before matching


def kernel_lines(text: str) -> list[tuple[str, str | None, str]]:
    """(message, time, raw line) of every log entry; an indented line without a prefix continues the one
    before it (dmesg prints a multi-line message so)."""
    entries: list[tuple[str, str | None, str]] = []
    for raw in text.replace("\r", "").split("\n"):
        if not raw.strip():
            continue
        message, when, uptime = strip_kernel_prefix(raw)
        if raw[:1].isspace() and message == raw and entries:
            previous = entries[-1]
            joined = (previous[0] + " " + raw.strip())[:KERNEL_LINE_MAX]
            entries[-1] = (joined, previous[1], previous[2] + "\n" + raw)
            continue
        stamp = when or (f"{uptime:.6f} s after boot" if uptime is not None else None)
        entries.append((message[:KERNEL_LINE_MAX], stamp, raw))
    return entries


def pci_from_aer_id(text: str, domain: str = "0000") -> str | None:
    """A PCI address from AER's source: "0000:80:1b.4", or the old 4-hex-digit requester id "00e8"
    (bus 0x00, device 0x1d, function 0)."""
    if re.fullmatch(PCI_ADDR, text):
        return text.lower()
    value = int(text, 16)
    return f"{domain}:{value >> 8:02x}:{(value >> 3) & 0x1F:02x}.{value & 7}"


def disk_name(device: str) -> str:
    """The whole disk of a block device name: sdb1 -> sdb, nvme0n1p2 -> nvme0n1."""
    nvme = re.match(r"(nvme\d+n\d+)", device)
    if nvme:
        return nvme[1]
    return re.sub(r"(?<=[a-z])\d+$", "", device)


def aer_severity(kind: str, fatal: str | None) -> tuple[str, str]:
    """(finding severity, wording) of an AER error class."""
    if kind.lower().startswith("correct"):
        return "info", "corrected"
    if (fatal or "").lower() == "fatal":
        return "critical", "uncorrectable fatal"
    return "warning", "uncorrectable non-fatal"


def kernel_log_events(text: str | None, ata_disks: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every hardware error of a kernel log, one event per line that tells one (in order): each
    {kind, severity, device, message, time, raw, pattern, ...}. See parse_kernel_log for the kinds.
    `ata_disks` names the disk of a libata device ("ata3.00" -> "sdb") for its errors."""
    ata_disks = ata_disks or {}
    events: list[dict[str, Any]] = []
    last_gpu: str | None = None
    ghes: dict[str, dict[str, Any]] = {}

    def add(kind: str, severity: str, device: str | None, message: str, pattern: str = "", **extra: Any):
        event = {"kind": kind, "severity": severity, "device": device, "message": message, "time": when,
                 "raw": raw, "pattern": pattern, "index": index, **extra}
        events.append(event)
        return event

    for index, entry in enumerate(kernel_lines(text or "")):
        message, when, raw = entry
        prefix = DEVICE_PREFIX.match(message)
        if match := MCE_BANK.search(message):
            status = int(match[4], 16)
            uncorrected = bool(status >> 61 & 1)
            add("machine_check", "critical" if uncorrected else "warning", f"CPU {match[1]}",
                f"{'uncorrected' if uncorrected else 'corrected'} machine check, bank {match[3]}",
                bank=int(match[3]))
        elif MCE_FATAL.search(message):
            add("machine_check", "critical", None, "fatal machine check / uncorrected hardware memory error")
        elif MCE_LOGGED.search(message):
            add("machine_check", "warning", None, "machine check events logged", "logged")
        elif match := GHES_SEVERITY.search(message):
            severity = {"fatal": "critical", "recoverable": "critical", "corrected": "warning"}.get(
                match[2].lower(), "info")
            ghes[match[1]] = add("hardware_error", severity, None,
                                 f"firmware-reported (APEI GHES) {match[2]} hardware error")
        elif (match := GHES_DETAIL.search(message)) and match[1] in ghes:
            event = ghes[match[1]]
            if match[2]:
                event["device"] = match[2]
            elif match[3]:
                event["device"] = match[3].lower()
            elif match[4]:
                event["message"] += f" ({match[4]})"
        elif match := EDAC_COUNTED.search(message):
            slot = re.search(r"channel:(\d+) slot:(\d+)", match[6])
            location = f"channel {slot[1]} slot {slot[2]}" if slot else None
            add("memory", "critical" if match[3] == "UE" else "warning", match[5].strip(),
                f"{'uncorrected' if match[3] == 'UE' else 'corrected'} memory errors", errors=int(match[2]),
                memory_controller=int(match[1]), location=location, error_class=match[3])
        elif match := EDAC_OLD.search(message):
            add("memory", "critical" if match[2] == "UE" else "warning", match[4].strip() or None,
                f"{'uncorrected' if match[2] == 'UE' else 'corrected'} memory errors", errors=1,
                memory_controller=int(match[1]), location=None, error_class=match[2])
        elif match := RAS_MEMORY.search(message):
            error_class = "UE" if match[2] == "Uncorrected" else "CE"
            add("memory", "critical" if error_class == "UE" else "warning", match[3],
                f"{match[2].lower()} memory errors", errors=int(match[1]), memory_controller=None,
                location=None, error_class=error_class)
        elif match := AER_RECEIVED.search(message):
            domain = prefix[1][:4] if prefix else "0000"
            severity, wording = aer_severity(match[1], match[2])
            add("pcie_aer", severity, pci_from_aer_id(match[3], domain), f"PCIe AER {wording} errors",
                wording, reporter=prefix[1].lower() if prefix else None, errors_seen=[])
        elif match := AER_BUS_ERROR.search(message):
            severity, wording = aer_severity(match[1], match[2])
            recent = [event for event in events[-3:] if event["kind"] == "pcie_aer"
                      and event["pattern"] == wording and index - event["index"] <= 3]
            if not recent:
                device = pci_from_aer_id(match[4], prefix[1][:4] if prefix else "0000") if match[4] else \
                    prefix[1].lower() if prefix else None
                add("pcie_aer", severity, device, f"PCIe AER {wording} errors", wording,
                    reporter=prefix[1].lower() if prefix else None, errors_seen=[match[3].strip()])
            else:
                recent[-1]["errors_seen"].append(match[3].strip())
        elif prefix and (name := AER_ERROR_NAME.match(message[prefix.end():])):
            for event in reversed(events[-6:]):
                if event["kind"] == "pcie_aer" and event.get("reporter") == prefix[1].lower():
                    event["errors_seen"].append(name[1].strip())
                    break
        elif match := XID.search(message):
            address = match[1] if re.search(r"\.[0-7]$", match[1]) else match[1] + ".0"
            address = normalize_pci_address(address) or match[1]
            xid = int(match[2])
            severity, meaning = XID_MEANINGS.get(xid, ("warning", "see NVIDIA's Xid catalog"))
            cause = re.search(r"caused by previous Xid (\d+)", match[3])
            if cause and XID_MEANINGS.get(int(cause[1]), ("",))[0] == "critical":
                severity = "critical"  # Xid 45 after an NVLink Xid 149: the cause's severity
            add("nvidia_xid", severity, address, f"NVIDIA Xid {xid}: {meaning}"
                + (f" (after Xid {cause[1]})" if cause else ""), str(xid), xid=xid)
        elif "fallen off the bus" in message:
            gpu = NVIDIA_GPU_ADDRESS.search(message)
            address = gpu[1] if gpu else last_gpu
            if address and not re.search(r"\.[0-7]$", address):
                address += ".0"
            add("gpu_lost", "critical", normalize_pci_address(address) if address else None,
                "GPU has fallen off the bus (not responding)")
        elif match := NVME_DOWN.search(message):
            add("nvme", "critical", match[1], f"NVMe {match[2].lower()}", "down")
        elif match := NVME_TIMEOUT.search(message):
            add("nvme", "warning", match[1], "NVMe I/O timeouts", "timeout")
        elif match := NVME_RESET.search(message):
            add("nvme", "warning", match[1], "NVMe controller resets", "reset")
        elif match := NVME_IO.search(message):
            add("disk_io", "warning", match[1], "I/O errors", "nvme")
        elif match := DISK_MEDIUM.search(message):
            add("disk_medium", "critical", disk_name(match[1]), "medium errors (unreadable sectors)", "block")
        elif match := DISK_SENSE_MEDIUM.search(message):
            add("disk_medium", "critical", disk_name(match[1]), "medium errors (unreadable sectors)", "sense")
        elif match := ATA_UNC.search(message):
            port = match[1] if "." in match[1] else match[1] + ".00"
            add("disk_medium", "critical", ata_disks.get(port, match[1]),
                "medium errors (unreadable sectors)", "ata", port=port)
        elif match := DISK_IO.search(message):
            add("disk_io", "warning", disk_name(match[1]), "I/O errors", "block")
        elif match := BUFFER_IO.search(message):
            add("disk_io", "warning", disk_name(match[1]), "I/O errors", "buffer")
        if gpu := NVIDIA_GPU_ADDRESS.search(message):
            last_gpu = gpu[1]
    return events


def dimm_named(name: str | None, text: str | None) -> bool:
    """Whether `text` (another name of a DIMM: EDAC's label, a GHES "DIMM location", a SEL event's detail)
    names the DIMM `name`, letters and digits compared: its name found in the text and not followed by a
    digit ("DIMM_A1" in "CPU0_DIMM_A1" and in "@DIMMA1(CPU1)", never in "DIMM_A10"); names shorter than 3
    letters and digits name nothing."""
    key, within = (re.sub(r"[^a-z0-9]", "", (value or "").lower()) for value in (name, text))
    return len(key) >= 3 and re.search(re.escape(key) + r"(?!\d)", within) is not None


def fold_machine_checks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One memory error is told by the MCE lines (or a firmware GHES memory record) and by EDAC's line about
    the DIMM: the MCE lines within the 8 entries, and a GHES memory error record within the 16 entries,
    before an EDAC line are that error (EDAC names the DIMM) when they have its severity (uncorrected and
    critical, corrected and warning) and name no other DIMM; any other record stays (a fatal machine check
    before a corrected error on another DIMM is never lost). "Machine check events logged" is only the
    header of the lines after it."""
    drop = set()
    for position, event in enumerate(events):
        if event["kind"] != "memory":
            continue
        for earlier in events[max(0, position - 16):position]:
            distance = event["index"] - earlier["index"]
            if earlier["severity"] != event["severity"]:
                continue
            ghes_memory = earlier["kind"] == "hardware_error" and "memory" in earlier["message"]
            named = (dimm_named(earlier["device"], event["device"])
                     or dimm_named(event["device"], earlier["device"]))
            if ghes_memory and earlier["device"] and not named:
                continue
            if (earlier["kind"] == "machine_check" and distance <= 8) or (ghes_memory and distance <= 16):
                drop.add(id(earlier))
    for position, event in enumerate(events):
        if event["kind"] == "machine_check" and event["pattern"] == "logged":
            following = [later for later in events[position + 1:position + 6]
                         if later["index"] - event["index"] <= 5]
            if any(later["kind"] in ("machine_check", "memory") for later in following):
                drop.add(id(event))
    return [event for event in events if id(event) not in drop]


def parse_kernel_log(text: str | None, source: str = "dmesg",
                     ata_disks: dict[str, str] | None = None) -> dict[str, Any]:
    """Hardware errors of a kernel log in any form (dmesg, dmesg -T/-H, journal, syslog, RFC 5424), one
    event per kind, device and error with its count and first and last time (as the log prints it):

    machine_check (MCE, per CPU: uncorrected ones critical), hardware_error (APEI GHES records), memory
    (EDAC CE/UE per DIMM, both wordings; count = the errors the lines report), pcie_aer (corrected: info,
    non-fatal: warning, fatal: critical, per source device, with the error names), nvidia_xid (per GPU and
    Xid, with its meaning), gpu_lost ("fallen off the bus", unless the same GPU's Xid 79 tells it), nvme
    (controller down, timeouts, resets), disk_medium and disk_io (per disk). rasdaemon's `ras-mc-ctl
    --errors` rows read as memory events too. The same failure told by several lines of one kind (the
    block layer's and the SCSI layer's) counts as the larger of their counts, not their sum. `ata_disks`
    maps libata devices to their disks (ata_disk_names), so an `ataN.00: error: { UNC }` joins its disk."""
    events = fold_machine_checks(kernel_log_events(text, ata_disks))
    groups: dict[tuple, dict[str, Any]] = {}
    for event in events:
        key = (event["kind"], event["device"], event["message"], event.get("memory_controller"))
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"kind": event["kind"], "severity": event["severity"],
                                   "device": event["device"], "message": event["message"], "count": 0,
                                   "first": event["time"], "last": event["time"],
                                   "sample": event["raw"][:KERNEL_SAMPLE], "_patterns": {}}
            for extra in ("xid", "memory_controller", "location"):
                if extra in event:
                    group[extra] = event[extra]
            if event["kind"] == "pcie_aer":
                group["errors"] = []
        weight = event.get("errors", 1)
        group["_patterns"][event["pattern"]] = group["_patterns"].get(event["pattern"], 0) + weight
        group["count"] = max(group["_patterns"].values())
        group["last"] = event["time"] or group["last"]
        group["first"] = group["first"] or event["time"]
        for name in event.get("errors_seen") or []:
            if name not in group["errors"]:
                group["errors"].append(name)
    xid79 = {group["device"]: group for group in groups.values() if group.get("xid") == 79}
    for key, group in list(groups.items()):
        group.pop("_patterns")
        if group["kind"] == "gpu_lost" and group["device"] in xid79:  # Xid 79 says it too: one fault
            xid79[group["device"]]["count"] = max(xid79[group["device"]]["count"], group["count"])
            del groups[key]
    lines = len([line for line in (text or "").split("\n") if line.strip()])
    return {"source": source, "lines": lines, "events": list(groups.values())}


ATA_DEVICE_PATH = re.compile(r"/(ata\d+)/host\d+/target\d+:\d+:(\d+)/")


def ata_disk_names(ctx: Context) -> dict[str, str]:
    """libata's name of each disk ("ata3.00" -> "sdb"), from where /sys/block/<disk> points (a device
    under .../ata3/host2/target2:0:0/)."""
    names = {}
    for name in ctx.listdir("sysfs", "block"):
        match = ATA_DEVICE_PATH.search("/" + (ctx.realpath("sysfs", f"block/{name}") or ""))
        if match:
            names[f"{match[1]}.{int(match[2]):02d}"] = name
    return names


@collector("kernel_log")
def collect_kernel_log(ctx: Context) -> dict[str, Any] | None:
    """Hardware errors in the kernel's ring buffer (`dmesg`, plain: busybox's dmesg has few options). An
    empty ring buffer (cleared with `dmesg -C`) is a log without errors, not a failure. libata's errors are
    put on their disk through sysfs."""
    result = kernel_log_run(ctx)
    if result is None:
        return None
    if result.timed_out or result.returncode != 0:
        ctx.check(result)
        return None
    return parse_kernel_log(result.stdout, ata_disks=ata_disk_names(ctx))


@linker
def link_kernel_events(document: dict[str, Any]) -> None:
    """Point each kernel log event at the part of the document it is about (`ref`, a JSON pointer): an Xid
    or a lost GPU at that GPU (else its pcie entry), an AER error at its pcie entry, a disk or NVMe error at
    that disk."""
    kernel_log = document.get("kernel_log") or {}
    nvidia = (document.get("nvidia") or {}).get("gpus") or []
    gpus = {gpu.get("bus_id"): f"/nvidia/gpus/{i}" for i, gpu in enumerate(nvidia)}
    pcie = {entry.get("address"): f"/pcie/{i}" for i, entry in enumerate(document.get("pcie") or [])}
    disks = {disk.get("name"): f"/storage/{i}" for i, disk in enumerate(document.get("storage") or [])}
    for event in kernel_log.get("events") or []:
        device, ref = event.get("device"), None
        if event["kind"] in ("nvidia_xid", "gpu_lost"):
            ref = gpus.get(device) or pcie.get(device)
        elif event["kind"] == "pcie_aer":
            ref = pcie.get(device)
        elif event["kind"] in ("disk_io", "disk_medium"):
            ref = disks.get(device)
        elif event["kind"] == "nvme" and device:
            names = sorted(name for name in disks if re.fullmatch(rf"{device}n\d+", name or ""))
            ref = disks[names[0]] if names else None
        if ref:
            event["ref"] = ref


def kernel_event_component(document: dict[str, Any], event: dict[str, Any]) -> str:
    """How a finding names what a kernel event is about: the document's label of that GPU, PCIe function
    or disk when the event points at one, else "gpu 0000:b3:00.0", "disk sde", "CPU 0"..."""
    ref, device = event.get("ref") or "", event.get("device")
    section, _, index = ref.strip("/").partition("/")
    items = document.get(section) if section else None
    known = isinstance(items, list) and index.isdigit() and int(index) < len(items)
    item = items[int(index)] if known else None
    if section == "storage" and item:
        return disk_label(item)
    if section == "pcie" and item and event["kind"] == "pcie_aer":
        return pcie_label(item)
    kind = event["kind"]
    if kind in ("nvidia_xid", "gpu_lost"):
        return f"gpu {device or '?'}"
    if kind == "pcie_aer":
        return f"pcie {device or '?'}"
    if kind in ("disk_io", "disk_medium", "nvme"):
        return f"disk {device or '?'}"
    return device or "cpu"


def when_text(first: str | None, last: str | None, count: int) -> str:
    """", first X, last Y" for a person (or ", at X" once)."""
    if not first:
        return ""
    if count == 1 or not last or first == last:
        return f", at {first}"
    return f", first {first}, last {last}"


AER_COUNTERS = {"warning": "nonfatal", "critical": "fatal"}  # a kernel AER event's severity -> sysfs counter


def told_by_aer_counters(document: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether a kernel AER event's fault is already a finding of its PCIe function's sysfs AER counters
    (pcie_findings tells non-fatal and fatal counts): the same errors, one story."""
    counter = AER_COUNTERS.get(event.get("severity") or "") if event["kind"] == "pcie_aer" else None
    section, _, index = (event.get("ref") or "").strip("/").partition("/")
    entries = document.get("pcie") or []
    if counter is None or section != "pcie" or not index.isdigit() or int(index) >= len(entries):
        return False
    return bool((entries[int(index)].get("aer") or {}).get(counter))


SEVERITY_RANK = {"critical": 3, "warning": 2, "info": 1}


def kernel_story(event: dict[str, Any]) -> tuple:
    """Which kernel events tell one fault: the medium and I/O errors of one disk, the timeouts, resets, down
    controller and I/O errors of one NVMe controller; any other event is its own."""
    kind, device = event["kind"], event.get("device") or ""
    nvme = re.fullmatch(r"(nvme\d+)(?:n\d+)?", device)
    if kind in ("disk_io", "disk_medium", "nvme") and nvme:
        return ("nvme", nvme[1])
    if kind in ("disk_io", "disk_medium") and device:
        return ("disk", device)
    return ("event", id(event))


@finding_rule
def kernel_log_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One finding per fault of the kernel log, naming its device: per event (kind, device and error), but
    one per disk (its medium and I/O errors: one bad sector) and per NVMe controller (timeout, reset,
    down, removed: one dying drive), at the worst severity of its parts, each part with its count; memory
    errors are told per DIMM with the other sources in memory_error_findings."""
    stories: dict[tuple, list[tuple[int, dict[str, Any]]]] = {}
    for index, event in enumerate((document.get("kernel_log") or {}).get("events") or []):
        if event["kind"] == "memory" or told_by_aer_counters(document, event):
            continue
        stories.setdefault(kernel_story(event), []).append((index, event))
    found = []
    for parts in stories.values():
        index, lead = next(((i, e) for i, e in parts if e.get("ref")), parts[0])
        severity = max((e["severity"] for _, e in parts), key=lambda s: SEVERITY_RANK.get(s, 0))
        told = []
        for _, event in parts:
            errors = f" ({', '.join(event['errors'])})" if event.get("errors") else ""
            plural = "s" if event["count"] != 1 else ""
            told.append(f"{event['message']}{errors}, {event['count']} time{plural}")
        count = max(event["count"] for _, event in parts)
        first = next((e.get("first") for _, e in parts if e.get("first")), None)
        last = next((e.get("last") for _, e in reversed(parts) if e.get("last")), None)
        component = kernel_event_component(document, lead)
        told_times = sum(event["count"] for _, event in parts)
        message = f"kernel log: {component}: " + "; ".join(told) + when_text(first, last, told_times)
        found.append({**finding(severity, component, message),
                      "ref": lead.get("ref") or f"/kernel_log/events/{index}", "count": count,
                      "first": first, "last": last, "sources": ["kernel_log"]})
    return found


# -- memory errors from every source: one story per DIMM -----------------------------------------------------


def edac_key(controller: int | None, label: str | None) -> tuple[int | None, str]:
    """How two sources name the same DIMM: its memory controller and its label, compared loosely."""
    return controller, squash(label)


def sel_dimm_story(stories: dict[tuple, dict[str, Any]], group: dict[str, Any],
                   error_class: str) -> dict[str, Any] | None:
    """The one story of `error_class` whose DIMM a SEL ECC event names in its detail ("CPU 1 DIMM 2",
    a Supermicro's "@DIMMA1(CPU1)"), else None."""
    detail = group.get("detail") or ""
    if not detail:
        return None
    same = [item for (_, c), item in stories.items()
            if c == error_class and dimm_named(item["name"], detail)]
    return same[0] if len(same) == 1 else None


@finding_rule
def memory_error_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Memory errors told once per DIMM and kind (uncorrected: critical, corrected: warning), whichever
    sources saw them: EDAC's counters in sysfs (memory.edac), the kernel log's EDAC lines and the BMC
    event log's ECC events (which name no DIMM: they join the one DIMM with errors of that kind, or stand
    alone). The finding points at the DIMM's slot (by EDAC's link, else when its label is a DMI locator).
    Uncorrected errors EDAC could not place on a DIMM are their own finding."""
    memory = document.get("memory") or {}
    edac = memory.get("edac") or {}
    slots = {slot.get("handle"): (i, slot) for i, slot in enumerate(memory.get("slots") or [])}
    stories: dict[tuple, dict[str, Any]] = {}

    def story(key: tuple, name: str, error_class: str) -> dict[str, Any]:
        return stories.setdefault((key, error_class), {"name": name, "class": error_class, "ref": None,
                                                        "edac": None, "kernel": None, "sel": None})

    by_location: dict[tuple, tuple] = {}
    for i, dimm in enumerate(edac.get("dimms") or []):
        controller = to_int(re.sub(r"\D", "", dimm.get("controller") or ""))
        name = dimm.get("label") or f"{dimm.get('controller')}/{dimm.get('name')}"
        key = edac_key(controller, name)
        location = squash(dimm.get("location"))
        if location:
            by_location[(controller, location)] = key
        slot = slots.get(dimm.get("slot_handle"))
        ref = f"/memory/slots/{slot[0]}" if slot else f"/memory/edac/dimms/{i}"
        for error_class, field_name in (("UE", "uncorrected"), ("CE", "corrected")):
            if (dimm.get(field_name) or 0) > 0:
                item = story(key, name, error_class)
                item["edac"], item["ref"] = dimm[field_name], ref
    for event in (document.get("kernel_log") or {}).get("events") or []:
        if event["kind"] != "memory":
            continue
        controller = event.get("memory_controller")
        key = edac_key(controller, event.get("device"))
        if not any(known == key for known, _ in stories) and event.get("location"):
            key = by_location.get((controller, squash(event["location"])), key)
        error_class = "UE" if event["severity"] == "critical" else "CE"
        item = story(key, event.get("device") or "?", error_class)
        item["kernel"] = (item["kernel"] or 0) + event["count"]
        first = (item.get("kernel_span") or (event.get("first"),))[0]  # several lines of one DIMM: the span
        item["kernel_span"] = (first, event.get("last"))
    found = []
    sel_told: dict[tuple[int | None, str], dict[str, Any]] = {}  # (sensor number, class) -> story or finding
    for position, group in enumerate((document.get("event_log") or {}).get("summary") or []):
        error_class = is_memory_ecc(group)
        if not error_class:
            continue
        same = [item for (_, c), item in stories.items() if c == error_class]
        named = sel_dimm_story(stories, group, error_class)
        if named is not None or len(same) == 1:
            target = named if named is not None else same[0]
            target["sel"] = group
        else:
            target = {**sel_group_finding(group), "ref": f"/event_log/summary/{position}"}
            found.append(target)
        if group.get("sensor_number") is not None:
            sel_told.setdefault((group["sensor_number"], error_class), target)
    for position, sensor in enumerate(document.get("sensors") or []):
        if sensor.get("status") == "ns" or (sensor.get("state") or "").lower().startswith("0x"):
            continue
        for error_class in ("UE", "CE"):
            states = [part.strip() for part in (sensor.get("state") or "").split(",")
                      if is_ecc_state(part) == error_class]
            if not states:
                continue
            told = f"BMC sensor {sensor.get('name') or '?'} " + ", ".join(f'"{state}"' for state in states)
            same = [item for (_, c), item in stories.items() if c == error_class]
            target = sel_told.get((sensor.get("number"), error_class))
            if target is None and len(same) == 1:
                target = same[0]
            if target is None:
                severity = "critical" if error_class == "UE" else "warning"
                kind = "uncorrected" if error_class == "UE" else "corrected"
                found.append({**finding(severity, "memory", f"{kind} memory errors: {told}"),
                              "ref": f"/sensors/{position}", "sources": ["sensors"]})
            elif "message" in target:  # a SEL finding of its own: the sensor joins it
                target["message"] += f"; {told}"
                target["sources"] = [*target["sources"], "sensors"]
            else:
                target["sensor"] = told
    by_locator: dict[str, list[int]] = {}
    for i, slot in enumerate(memory.get("slots") or []):
        locator = slot.get("locator") or ""
        for name in (squash(locator), squash(f"{slot.get('bank') or ''} {locator}")):
            by_locator.setdefault(name, []).append(i)
    for item in stories.values():
        slots_named = by_locator.get(squash(item["name"]), [])
        if item["ref"] is None and len(set(slots_named)) == 1:  # a kernel label that is a DMI locator
            item["ref"] = f"/memory/slots/{slots_named[0]}"
        uncorrected = item["class"] == "UE"
        kind = "uncorrected" if uncorrected else "corrected"
        parts, sources = [], []
        if item["edac"] is not None:
            parts.append(f"{item['edac']} {kind} memory errors (EDAC)")
            sources.append("memory")
        if item["kernel"] is not None:
            first, last = item.get("kernel_span") or (None, None)
            parts.append(f"{item['kernel']} in the kernel log{when_text(first, last, item['kernel'])}")
            sources.append("kernel_log")
        if item["sel"] is not None:
            group = item["sel"]
            parts.append(f"BMC event log \"{group.get('event')}\" {group['count']} "
                         f"time{'s' if group['count'] != 1 else ''}"
                         + when_text(group.get("first"), group.get("last"), group["count"]))
            sources.append("event_log")
        if item.get("sensor"):
            parts.append(item["sensor"])
            sources.append("sensors")
        if item["edac"] is None:
            parts[0] = f"{kind} memory errors: " + parts[0]
        severity = "critical" if uncorrected else "warning"
        entry = {**finding(severity, "memory", f"DIMM {item['name']}: " + "; ".join(parts)),
                 "sources": sources}
        if item["ref"]:
            entry["ref"] = item["ref"]
        found.append(entry)
    for controller in edac.get("controllers") or []:
        if (controller.get("uncorrected_noinfo") or 0) > 0:
            count = controller["uncorrected_noinfo"]
            found.append(finding("critical", "memory", f"memory controller {controller['name']}: "
                                 f"{count} uncorrected errors on no known DIMM (EDAC)"))
    return found


# -- document assembly: run the collectors, link, derive findings --------------------------------------------


def run_collector(name: str, function: CollectorFunction, runner: Runner) -> tuple[Any, dict[str, Any]]:
    """Run one collector; return its data and its report (status, duration_s, errors). Never raises."""
    ctx = Context(name, runner)
    started = time.monotonic()
    data = None
    try:
        data = function(ctx)
    except Exception as exc:  # a collector bug must not lose the rest of the document
        ctx.error(None, f"collector failed: {type(exc).__name__}: {exc}")
        data = None
    duration = round(time.monotonic() - started, 3)
    status = collector_status(data, ctx.errors)
    report: dict[str, Any] = {"status": status, "duration_s": duration, "errors": ctx.errors}
    if status == "skipped":
        missing = f"{', '.join(ctx.missing)} not installed" if ctx.missing else None
        report["reason"] = ctx.reason or missing or "nothing to read"
    return data, report


def collector_status(data: Any, errors: list) -> str:
    """ok: data, no errors; partial: data and errors; error: errors, no data; skipped: neither."""
    if errors:
        return "partial" if data else "error"
    return "ok" if data is not None else "skipped"


def wait_result(future: concurrent.futures.Future) -> Any:
    """A future's result, waited for in POLL slices: a signal the kernel handed to a worker thread would not
    wake a main thread blocked for good, so Ctrl-C and SIGTERM are handled within POLL seconds."""
    while True:
        try:
            return future.result(timeout=POLL)
        except TimeoutError:
            continue


def build_document(
    runner: Runner, collectors: list[tuple[str, CollectorFunction]] | None = None
) -> dict[str, Any]:
    """Run every collector concurrently and assemble the document in registration (document) order, never
    in the order they finished."""
    collectors = COLLECTORS if collectors is None else collectors
    started = time.monotonic()
    host = host_facts(runner)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(collectors)))
    try:
        with shielded_from_signals():  # an interrupt inside Thread.start() would corrupt threading's books
            futures = [(name, pool.submit(run_collector, name, fn, runner)) for name, fn in collectors]
        results = [(name, wait_result(future)) for name, future in futures]
    except BaseException:  # interrupted: no waiting for threads still in a tool (stopped, they end soon)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
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
    link_documents(document, errors)
    document["findings"] = derive_findings(document, errors)
    document["errors"] = errors
    document["duration_s"] = round(time.monotonic() - started, 3)
    return document


SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's (first) IPv4 address


def local_addresses(procfs: Path = Path("/proc")) -> list[dict[str, str]]:
    """The machine's IP addresses now, for `ssh bee@...`: each interface's IPv4 address in the kernel's
    interface order, then global IPv6 addresses (/proc/net/if_inet6); no loopback or link-local ones."""
    found: list[dict[str, str]] = []
    try:
        interfaces = socket.if_nameindex()
    except OSError:
        interfaces = []
    for _, name in interfaces:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                packed = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            continue
        address = socket.inet_ntoa(packed[20:24])
        if not address.startswith("127."):
            found.append({"interface": name, "address": address})
    try:
        lines = (procfs / "net" / "if_inet6").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) == 6 and fields[3] == "00" and len(fields[0]) == 32:  # scope 00: global
            with contextlib.suppress(ValueError):
                address = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(fields[0]))
                found.append({"interface": fields[5], "address": address})
    return found


def host_facts(runner: Runner) -> dict[str, Any]:
    """Host name, kernel release, IP addresses and the time of the audit (from the capture when
    replaying)."""
    if runner.replay is not None:
        try:
            facts = json.loads((runner.replay / "host.json").read_text())
        except (OSError, ValueError):
            facts = None
        if not isinstance(facts, dict):
            return {"generated_at": None, "hostname": None, "kernel": None, "addresses": []}
        facts.setdefault("addresses", [])  # a capture older than the addresses
        return facts
    facts = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "addresses": local_addresses(),
    }
    if runner.capture is not None:
        try:
            runner.capture.mkdir(parents=True, exist_ok=True)
            (runner.capture / "host.json").write_text(json.dumps(facts, indent=1) + "\n")
        except OSError as exc:
            log(f"--capture: cannot save host.json: {exc.strerror or exc}")
    return facts


def audit_error(message: str) -> dict[str, Any]:
    """An error of the audit itself (a linker or finding rule that failed), said on stderr: a finding that
    could not be derived must show in the document, not vanish."""
    log(message)
    return {"collector": "audit", "command": None, "message": message}


def link_documents(document: dict[str, Any], errors: list[dict[str, Any]] | None = None) -> None:
    """Run every linker; a failing linker is an entry in `errors` (and a line on stderr), not a lost
    document."""
    for function in LINKERS:
        try:
            function(document)
        except Exception as exc:
            failure = audit_error(f"linking failed in {function.__name__}: {type(exc).__name__}: {exc}")
            if errors is not None:
                errors.append(failure)


def derive_findings(
    document: dict[str, Any], errors: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Every finding the registered rules derive from the document; a failing rule is an entry in `errors`
    (and a line on stderr) and the other rules still run."""
    findings: list[dict[str, Any]] = []
    for rule in FINDING_RULES:
        try:
            findings.extend(rule(document))
        except Exception as exc:
            failure = audit_error(f"finding rule {rule.__name__} failed: {type(exc).__name__}: {exc}")
            if errors is not None:
                errors.append(failure)
    return findings


def machine_serial(document: dict[str, Any]) -> str | None:
    """The serial that names the machine: the system's (SMBIOS type 1), else the chassis' (type 3), else
    the baseboard's (type 2); None when all are unknown or placeholders."""
    board = document.get("board") or {}
    for part in ("system", "chassis", "baseboard"):
        serial = (board.get(part) or {}).get("serial")
        if serial:
            return serial
    return None


# -- USB helpers: removable USB filesystems, mounted for a while ---------------------------------------------

USB_LSBLK = ["lsblk", "-J", "-b", "-o", "NAME,PATH,RM,HOTPLUG,TRAN,TYPE,FSTYPE,MOUNTPOINT,SERIAL"]
UNWRITABLE_FILESYSTEMS = {"iso9660", "udf", "squashfs", "swap", "crypto_LUKS", "LVM2_member",
                          "linux_raid_member", "zfs_member", "erofs"}


def usb_targets(lsblk: Any) -> list[dict[str, Any]]:
    """Filesystems on removable USB disks, mounted ones first. A disk that holds an ISO 9660 filesystem is
    the boot medium and is left alone."""
    def tree(device: dict[str, Any]) -> list[dict[str, Any]]:
        found = [device]
        for child in as_list(device.get("children")):
            if not isinstance(child, dict):
                continue
            found.extend(tree(child))
        return found

    targets = []
    devices = lsblk.get("blockdevices") if isinstance(lsblk, dict) else None
    for disk in as_list(devices):
        if not isinstance(disk, dict) or disk.get("type") != "disk" or disk.get("tran") != "usb":
            continue
        if not removable(disk):
            continue
        members = tree(disk)
        if any(member.get("fstype") == "iso9660" for member in members):
            continue
        for member in members:
            fstype = member.get("fstype")
            if isinstance(fstype, str) and fstype and fstype not in UNWRITABLE_FILESYSTEMS:
                targets.append({
                    "path": member.get("path") or f"/dev/{member.get('name')}",
                    "fstype": fstype,
                    "mountpoint": member.get("mountpoint") or None,
                    "disk_serial": clean(disk.get("serial")),
                })
    return sorted(targets, key=lambda target: target["mountpoint"] is None)


def unmount_here(folder: str, who: str, mounted: bool) -> None:
    """Unmount what the audit mounted on the temporary `folder` (when `mount` said so, or when the folder is
    a mount point: an interrupted mount may or may not have happened) and remove the folder, to the end
    even under Ctrl-C or SIGTERM; a failed unmount is one line telling to unmount it before unplugging."""
    with shielded_from_signals():
        if mounted or os.path.ismount(folder):
            result = run_plain(["umount", folder])
            if result is None or not result.ok:
                log(f"{who}: could not unmount {folder}; unmount it before unplugging the disk")
                return
        with contextlib.suppress(OSError):
            os.rmdir(folder)


@contextlib.contextmanager
def mounted_usb(target: dict[str, Any], who: str | None, read_only: bool = False):
    """The folder of a usb_targets filesystem for the block: its mount point, else a temporary folder it is
    mounted on (read-only when asked), unmounted and removed after the block (unmount_here, also under
    Ctrl-C). None when it could not be mounted: one line on stderr prefixed `who` (silent without)."""
    if target["mountpoint"] is not None:
        yield target["mountpoint"]
        return
    folder, mounted = tempfile.mkdtemp(prefix="bee-usb-"), False
    try:
        result = run_plain(["mount", *(["-o", "ro"] if read_only else []), target["path"], folder])
        if result is None or not result.ok:
            if who is not None:
                detail = "mount is not installed" if result is None else (
                    first_line(result.stderr) or f"exit status {result.returncode}")
                log(f"{who}: cannot mount {target['path']}: {detail}")
            yield None
            return
        mounted = True
        yield folder
    finally:
        unmount_here(folder, who or "acceptance", mounted)


# -- HTTP: what fetching a profile and sending a report share ------------------------------------------------


def reason_of(exc: BaseException) -> str:
    """An exception in a few words: its strerror, its reason or its text."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    return str(getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc) or type(exc).__name__


def connection_error(exc: BaseException, ca_hint: str = "") -> tuple[str, bool]:
    """A failed connection in words, and whether trying again can help (a wrong certificate cannot: it is
    final at once, followed by `ca_hint` when the certificate did not verify)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLError):
        hint = ca_hint if isinstance(reason, ssl.SSLCertVerificationError) else ""
        return f"TLS: {reason_of(reason)}{hint}", False
    if isinstance(reason, TimeoutError | socket.timeout):
        return "no answer in time", True
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name ({reason_of(reason)})", True
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused", True
    return reason_of(reason) if isinstance(reason, BaseException) else str(reason), True


# -- acceptance: the profile language, what a profile of what was ordered can say ----------------------------
#
# A profile is a JSON object; every part is optional and what it leaves out is not checked. Each section
# lists the things it checks (populated CPU sockets, populated DIMMs, disks, GPUs, NIC ports, HCAs, PSUs,
# the BMC) as flat items; a key of the section is either `count` (how many items; at least 1 when absent),
# a field every item must satisfy (PROFILE_SECTIONS), or one of the section's own keys (memory
# `total_bytes`, `slots`). `disks`, `nics` and `hcas` are lists of groups: each group's `match` chooses its
# items by the same fields, and an item belongs to the first group that matches it (so a last
# {"match": {}, "count": 0} forbids any other).
# A value is a spec: a number or a string (exact; a string may be a glob), a list (any of these), or
# {"min": .., "max": ..}. Versions compare as versions (2.9.1 < 2.10.0), sizes take "64 GiB" or bytes.

PROFILE_NAME = "bee-profile.json"        # looked for at the root of a removable USB filesystem
PROFILE_FETCH_ATTEMPTS = 6               # bee.profile=URL at boot: tries, PROFILE_FETCH_BACKOFF doubling
PROFILE_EXPECT_ATTEMPTS = 3              # --expect URL on the command line: a person is waiting
PROFILE_FETCH_BACKOFF = 2.0              # seconds before the second try (2+4+8+16+32: about a minute)
PROFILE_FETCH_TIMEOUT = 10.0             # seconds per try
PROFILE_MAX_BYTES = 1 << 20
SEVERITIES = ("critical", "warning", "info")
SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
              "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "pib": 1 << 50}
PCIE_GEN_GTS = {1: 2.5, 2: 5.0, 3: 8.0, 4: 16.0, 5: 32.0, 6: 64.0, 7: 128.0}
LINK_CLASSES = {"gpu": ("03", "12"), "nic": ("02",), "storage": ("01",), "any": ("",)}  # PCI class prefixes


class ProfileError(Exception):
    """A profile that cannot be used; the message says where in it and what is wrong."""


@dataclass(frozen=True)
class ProfileField:
    """A field of the items of a profile section: its kind (count, number, size, text, version, bool), the
    words a message names it by, and for a field that some machines cannot show (NVLinks without a fabric
    manager) what says why a document cannot be judged on it (None: it can)."""

    kind: str
    words: str
    unjudgeable: Callable[[dict[str, Any]], str | None] | None = None


@dataclass(frozen=True)
class ProfileSection:
    """One section of the profile language: how to list its items from a document, their fields, how a
    message names one item and the items together, whether it is a list of groups, and its own keys."""

    items: Callable[[dict[str, Any]], list[dict[str, Any]]]
    collector: str                                      # whose data the items are: skipped/failed = unknown
    fields: dict[str, ProfileField]
    label: Callable[[dict[str, Any]], str]
    noun: str
    groups: bool = False
    counted: bool = True
    own: dict[str, str] = field(default_factory=dict)   # section keys that are not item fields -> kind
    own_checks: Callable[[dict[str, Any], dict[str, Any]], list[dict[str, Any]]] | None = None
    count_note: Callable[[dict[str, Any]], str] | None = None   # added to a failed count's message
    # when the collector gave nothing: why the document still shows there are none (else None: unknown)
    known_none: Callable[[dict[str, Any]], str | None] | None = None


class SizeText(int):
    """A size a profile wrote with a unit ("3.84 TB", "32 GiB"): its bytes (what a range bound means), the
    text, and the sizes it stands for as an exact value: those that read the same at its precision, at
    least 3 significant digits (a disk sold as 3.84 TB holds 3,840,755,982,336 bytes; "4 TB" is not 3.84)."""

    text: str
    low: int
    high: int

    def __new__(cls, text: str, number: decimal.Decimal, factor: int) -> SizeText:
        size = super().__new__(cls, round(number * factor))
        size._args = (text, number, factor)  # for copy and pickle (__getnewargs__)
        size.text = " ".join(text.split())
        step = min(number.as_tuple().exponent, number.adjusted() - 2)  # the last digit that counts
        half = decimal.Decimal(5).scaleb(step - 1)
        size.low, size.high = math.ceil((number - half) * factor), math.ceil((number + half) * factor)
        return size

    def __getnewargs__(self) -> tuple[str, decimal.Decimal, int]:
        return self._args

    def holds(self, found: Any) -> bool:
        """Whether a size found reads as this text: low <= found < high."""
        number = isinstance(found, int | float) and not isinstance(found, bool)
        return number and self.low <= found < self.high


def parse_size(value: Any) -> int | None:
    """A size in bytes from an integer or a text with a unit ("64 GiB", "3.84 TB", "512MB"): a text with a
    unit larger than a byte is a SizeText (it holds at its precision); None if not a size."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b)\s*", value.lower())
        if match and match[2] in SIZE_UNITS:
            if match[2] == "b":
                return round(float(match[1]))
            return SizeText(value, decimal.Decimal(match[1]), SIZE_UNITS[match[2]])
    return None


def version_key(text: Any) -> tuple:
    """A key that orders version strings as versions: 2.9.1 < 2.10.0, U46 < U47, case ignored."""
    parts = re.findall(r"\d+|[a-z]+", str(text).lower())
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts)


def is_glob(text: str, kind: str = "text") -> bool:
    """Whether a profile's text is a pattern: * ? [..] for texts, only * and ? for versions (BIOS versions
    such as "-[G0E188BUS-1.88]-" hold brackets)."""
    return any(char in text for char in ("*?" if kind == "version" else "*?["))


def glob_escape(text: str) -> str:
    """A text as a glob that matches only itself (runs of blanks made one, as found texts are compared)."""
    return re.sub(r"([*?\[])", r"[\1]", " ".join(str(text).split()))


def _scalar_ok(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("text", "version"):
        return isinstance(value, str)
    if kind == "size":
        return parse_size(value) is not None
    if kind == "count":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return isinstance(value, int | float) and not isinstance(value, bool)  # number


def _scalar(kind: str, value: Any) -> Any:
    return parse_size(value) if kind == "size" else value


def normalize_spec(kind: str, spec: Any, where: str) -> Any:
    """A profile value checked and made ready for comparing: sizes in bytes. Raises ProfileError naming
    `where` when the value does not fit the kind."""
    what = {"count": "a whole number", "number": "a number", "size": 'bytes or a size like "64 GiB"',
            "text": "a text (a glob)", "version": "a version text", "bool": "true or false"}[kind]
    if isinstance(spec, dict) and kind not in ("text", "bool"):
        unknown = set(spec) - {"min", "max"}
        if unknown or not spec:
            raise ProfileError(f"{where}: a range has only \"min\" and/or \"max\" (got {sorted(spec)})")
        for bound, value in spec.items():
            if not _scalar_ok(kind, value):
                raise ProfileError(f"{where}.{bound}: expected {what}, got {json.dumps(value)}")
        bounds = {bound: _scalar(kind, value) for bound, value in spec.items()}
        key = version_key if kind == VERSION else (lambda value: value)
        if len(bounds) == 2 and key(bounds["min"]) > key(bounds["max"]):
            low, high = json.dumps(spec["min"]), json.dumps(spec["max"])
            raise ProfileError(f"{where}: min {low} is above max {high}, so nothing could pass; swap them")
        return bounds
    if isinstance(spec, list) and kind != "bool":
        if not spec:
            raise ProfileError(f"{where}: an empty list allows nothing; remove the key to check nothing")
        for index, value in enumerate(spec):
            if not _scalar_ok(kind, value):
                raise ProfileError(f"{where}[{index}]: expected {what}, got {json.dumps(value)}")
        return [_scalar(kind, value) for value in spec]
    if not _scalar_ok(kind, spec):
        ranges = ", a list or {\"min\", \"max\"}" if kind not in ("text", "bool") else (
            " or a list" if kind == "text" else "")
        raise ProfileError(f"{where}: expected {what}{ranges}, got {json.dumps(spec)}")
    return _scalar(kind, spec)


def _one_holds(kind: str, spec: Any, found: Any) -> bool:
    if isinstance(spec, SizeText):
        return spec.holds(found)
    if kind == "text":
        return fnmatch.fnmatchcase(" ".join(str(found).split()).lower(), " ".join(spec.split()).lower())
    if kind == "version":
        if is_glob(spec, kind):
            return fnmatch.fnmatchcase(str(found).lower(), spec.lower())
        return version_key(found) == version_key(spec)
    return found == spec


def spec_holds(kind: str, spec: Any, found: Any) -> bool:
    """Whether a value found in the document satisfies a normalized spec; an unknown value never does."""
    if found is None:
        return False
    if isinstance(spec, list):
        return any(_one_holds(kind, one, found) for one in spec)
    if isinstance(spec, dict):
        key = version_key if kind == "version" else (lambda value: value)
        try:
            return (("min" not in spec or key(found) >= key(spec["min"]))
                    and ("max" not in spec or key(found) <= key(spec["max"])))
        except TypeError:
            return False
    return _one_holds(kind, spec, found)


def show(kind: str, value: Any) -> str:
    """A value for a message: sizes as "32 GiB", unknown as "unknown"."""
    if value is None:
        return "unknown"
    if isinstance(value, SizeText):
        return value.text
    if kind == "size":
        return human_size(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe_spec(kind: str, spec: Any) -> str:
    """What a spec expects, in words: "2.17.1", "at least 5600", "one of DDR4, DDR5", "matching H100*"."""
    if isinstance(spec, list):
        return "one of " + ", ".join(describe_spec(kind, one) for one in spec)
    if isinstance(spec, dict):
        if "min" in spec and "max" in spec:
            if spec["min"] == spec["max"]:
                return show(kind, spec["min"])
            return f"{show(kind, spec['min'])} to {show(kind, spec['max'])}"
        bound, words = ("min", "at least") if "min" in spec else ("max", "at most")
        return f"{words} {show(kind, spec[bound])}"
    if kind in ("text", "version") and is_glob(spec, kind):
        return f"matching {spec}"
    return show(kind, spec)


# -- acceptance: the items each section checks, flat, from the document --------------------------------------


def _board_items(document: dict[str, Any]) -> list[dict[str, Any]]:
    board = document.get("board") or {}
    system, baseboard = board.get("system") or {}, board.get("baseboard") or {}
    bios = board.get("bios") or {}
    if not board:
        return []
    return [{
        "manufacturer": system.get("manufacturer") or baseboard.get("manufacturer"),
        "product": system.get("product") or baseboard.get("product"),
        "baseboard_product": baseboard.get("product"),
        "bios_vendor": bios.get("vendor"),
        "bios_version": bios.get("version"),
    }]


def _cpu_items(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"socket": socket.get("designation"), "model": socket.get("model"), "cores": socket.get("cores"),
         "threads": socket.get("threads"), "max_speed_mhz": socket.get("max_speed_mhz")}
        for socket in (document.get("cpu") or {}).get("sockets") or [] if socket.get("populated")
    ]


def slot_keys(slots: list[dict[str, Any]]) -> list[str]:
    """The name of each memory slot in a profile: its locator, or "<bank>/<locator>" when the locator is
    not unique in the table (some firmware repeats "DIMM 0" once per channel), with " #1", " #2" when even
    that repeats."""
    locators = [str(slot.get("locator")) for slot in slots]
    keys = [f"{slot.get('bank')}/{name}" if locators.count(name) > 1 else name
            for slot, name in zip(slots, locators, strict=True)]
    seen: dict[str, int] = {}
    for index, key in enumerate(keys):  # the same bank and locator twice: numbered in table order
        if keys.count(key) > 1:
            seen[key] = seen.get(key, 0) + 1
            keys[index] = f"{key} #{seen[key]}"
    return keys


def _memory_items(document: dict[str, Any]) -> list[dict[str, Any]]:
    slots = (document.get("memory") or {}).get("slots") or []
    return [
        {"slot": key, "size_bytes": slot.get("size_bytes"), "type": slot.get("type"),
         "speed_mts": slot.get("speed_mts"), "configured_speed_mts": slot.get("configured_speed_mts"),
         "manufacturer": slot.get("manufacturer"), "part_number": slot.get("part_number")}
        for slot, key in zip(slots, slot_keys(slots), strict=True) if slot.get("populated")
    ]


def _disk_items(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"path": disk.get("path"), "serial": disk.get("serial"), "transport": disk.get("transport"),
         "model": disk.get("model"), "size_bytes": disk.get("size_bytes"), "firmware": disk.get("firmware"),
         "rotational": disk.get("rotational"), "removable": bool(disk.get("removable"))}
        for disk in document.get("storage") or []
    ]


def _pcie_by_address(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry.get("address"): entry for entry in document.get("pcie") or []}


def _gpu_items(document: dict[str, Any]) -> list[dict[str, Any]]:
    pcie = _pcie_by_address(document)
    items = []
    for gpu in (document.get("nvidia") or {}).get("gpus") or []:
        entry = pcie.get(gpu.get("pcie_address") or gpu.get("bus_id")) or {}
        link, upstream, smi = entry.get("link") or {}, entry.get("upstream") or {}, gpu.get("pcie") or {}
        width = link.get("current_width") or smi.get("current_width")
        # GPUs lower their link speed when idle: the speed checked is the best both ends support
        speeds = [s for s in (link.get("max_speed_gts"), upstream.get("max_speed_gts")) if s]
        speed = min(speeds) if speeds else PCIE_GEN_GTS.get(smi.get("max_gen"))
        items.append({
            "address": gpu.get("bus_id"), "serial": gpu.get("serial"), "product": gpu.get("product"),
            "memory_total_bytes": gpu.get("memory_total_bytes"), "vbios_version": gpu.get("vbios_version"),
            "driver_version": gpu.get("driver_version"), "link_width": width, "link_speed_gts": speed,
            "nvlinks_active": (gpu.get("nvlink") or {}).get("active_links"),
        })
    return items


PCI_GPU_CLASS_NAMES = ("vga compatible controller", "3d controller")  # lspci's names of classes 0300, 0302


def no_nvidia_gpu_in_pcie(document: dict[str, Any]) -> str | None:
    """Why the GPU count is known to be 0 without the nvidia collector: a pcie section that can be trusted
    lists functions and none of them is an NVIDIA display or 3D controller (vendor 10de, class 0300 or
    0302, by id or by lspci's names). None when that cannot be told (the pcie collector was skipped or met
    an error, listed nothing, or lists a function of unknown vendor or class) or an NVIDIA GPU is there."""
    pcie = document.get("pcie")
    if not isinstance(pcie, list) or not pcie or collector_gap(document, "pcie", True) is not None:
        return None
    vendor_id, classes = NVIDIA_VENDOR_ID.removeprefix("0x"), tuple(c[2:] for c in NVIDIA_GPU_CLASSES)
    for entry in pcie:
        if not isinstance(entry, dict):
            return None
        vendor = str(entry.get("vendor_id") or entry.get("vendor") or "").lower()
        klass = str(entry.get("class_id") or entry.get("class") or "").lower()
        if not vendor or not klass:
            return None
        nvidia = vendor == vendor_id or "nvidia" in vendor
        if nvidia and (klass.startswith(classes) or klass in PCI_GPU_CLASS_NAMES):
            return None
    return "the pcie section lists no NVIDIA GPU"


def _nic_items(document: dict[str, Any]) -> list[dict[str, Any]]:
    pcie = _pcie_by_address(document)
    items = []
    for interface in document.get("network") or []:
        entry = pcie.get(interface.get("pci_address")) or {}
        firmware = interface.get("firmware") or {}
        items.append({"name": interface.get("name"), "vendor": entry.get("vendor"),
                      "model": entry.get("device"), "driver": interface.get("driver"),
                      "speed_mbps": interface.get("speed_mbps"), "firmware": firmware.get("version"),
                      "psid": firmware.get("psid")})
    return items


def _hca_items(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One item per InfiniBand/RoCE HCA: its ports' lowest rate, and ACTIVE only when every port is."""
    items = []
    for hca in document.get("infiniband") or []:
        ports = [port for port in hca.get("ports") or [] if isinstance(port, dict)]
        rates = [port.get("rate_gbps") for port in ports]
        states = [port.get("state") for port in ports]
        items.append({
            "name": hca.get("name"), "hca_type": hca.get("hca_type"), "firmware": hca.get("firmware_version"),
            "psid": hca.get("psid"), "link_layer": ports[0].get("link_layer") if ports else None,
            "rate_gbps": min(rates) if rates and None not in rates else None,
            "state": next((state for state in states if state != "ACTIVE"), "ACTIVE") if ports else None,
        })
    return items


def _bmc_items(document: dict[str, Any]) -> list[dict[str, Any]]:
    bmc = document.get("bmc")
    if not isinstance(bmc, dict):
        return []
    return [{"firmware": bmc.get("firmware_revision"), "manufacturer": bmc.get("manufacturer"),
             "ipmi_version": bmc.get("ipmi_version")}]


def _psu_items(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": psu.get("name") or psu.get("location"), "serial": psu.get("serial"),
         "manufacturer": psu.get("manufacturer"), "part_number": psu.get("part_number"),
         "max_power_w": psu.get("max_power_w")}
        for psu in (document.get("psu") or {}).get("power_supplies") or []
    ]


def _named(prefix: str, key: str, *extra: str) -> Callable[[dict[str, Any]], str]:
    def label(item: dict[str, Any]) -> str:
        names = [str(item[name]) for name in extra if item.get(name)]
        return f"{prefix} {item.get(key) or '?'}" + (f" ({', '.join(names)})" if names else "")
    return label


def _empty_slots_note(document: dict[str, Any]) -> str:
    """"; empty slots: A2, B2" for a failed DIMM count (where to put the missing DIMMs)."""
    slots = (document.get("memory") or {}).get("slots") or []
    empty = [key for key, slot in zip(slot_keys(slots), slots, strict=True) if slot.get("populated") is False]
    return "; empty slots: " + ", ".join(empty) if empty else ""


def _memory_own_checks(document: dict[str, Any], part: dict[str, Any]) -> list[dict]:
    checks = []
    memory = document.get("memory") or {}
    if "total_bytes" in part:
        found = memory.get("total_bytes")
        passed = spec_holds(SIZE, part["total_bytes"], found)
        checks.append(_check("memory.total_bytes", part["total_bytes"], found, passed, part["severity"],
                             f"memory: total {human_size(found)}, expected "
                             f"{describe_spec(SIZE, part['total_bytes'])}"))
    if "slots" in part:
        slots = memory.get("slots") or []
        by_key = dict(zip(slot_keys(slots), slots, strict=True))
        for key, spec in part["slots"].items():
            slot = by_key.get(key)
            if slot is None:
                found, passed = None, False
                message = f"memory: slot {key} not found (slots: {', '.join(by_key) or 'none'})"
            else:
                found = slot.get("size_bytes") if slot.get("populated") else "empty"
                if spec == "empty":
                    passed = found == "empty"
                elif spec == "populated":
                    passed = bool(slot.get("populated"))
                else:
                    passed = spec_holds(SIZE, spec, found if found != "empty" else None)
                wanted = spec if spec in ("empty", "populated") else describe_spec(SIZE, spec)
                message = f"memory: slot {key} expected {wanted}, found " + (
                    "empty" if found == "empty" else human_size(found))
            checks.append(_check(f"memory.slots.{key}", spec, found, passed, part["severity"], message))
    return checks


TEXT, VERSION, SIZE, COUNT, NUMBER = "text", "version", "size", "count", "number"

# The profile language, one table: each section, its items and the fields a profile may check on them.
PROFILE_SECTIONS: dict[str, ProfileSection] = {
    "board": ProfileSection(_board_items, "board", {
        "manufacturer": ProfileField(TEXT, "manufacturer"),
        "product": ProfileField(TEXT, "product"),
        "baseboard_product": ProfileField(TEXT, "baseboard"),
        "bios_vendor": ProfileField(TEXT, "BIOS vendor"),
        "bios_version": ProfileField(VERSION, "BIOS version"),
    }, lambda item: "board", "board", counted=False),
    "cpu": ProfileSection(_cpu_items, "cpu", {
        "model": ProfileField(TEXT, "model"),
        "cores": ProfileField(COUNT, "cores"),
        "threads": ProfileField(COUNT, "threads"),
        "max_speed_mhz": ProfileField(NUMBER, "max speed (MHz)"),
    }, _named("cpu", "socket"), "populated CPU sockets"),
    "memory": ProfileSection(_memory_items, "memory", {
        "size_bytes": ProfileField(SIZE, "size"),
        "type": ProfileField(TEXT, "type"),
        "speed_mts": ProfileField(NUMBER, "speed (MT/s)"),
        "configured_speed_mts": ProfileField(NUMBER, "configured speed (MT/s)"),
        "manufacturer": ProfileField(TEXT, "manufacturer"),
        "part_number": ProfileField(TEXT, "part number"),
    }, _named("memory: slot", "slot"), "DIMMs", own={"total_bytes": SIZE, "slots": "slots"},
        own_checks=_memory_own_checks, count_note=_empty_slots_note),
    "disks": ProfileSection(_disk_items, "storage", {
        "transport": ProfileField(TEXT, "transport"),
        "model": ProfileField(TEXT, "model"),
        "size_bytes": ProfileField(SIZE, "size"),
        "firmware": ProfileField(VERSION, "firmware"),
        "rotational": ProfileField("bool", "rotational"),
        "removable": ProfileField("bool", "removable"),
    }, _named("disk", "path", "model", "serial"), "disks", groups=True),
    "gpus": ProfileSection(_gpu_items, "nvidia", {
        "product": ProfileField(TEXT, "product"),
        "memory_total_bytes": ProfileField(SIZE, "memory"),
        "vbios_version": ProfileField(VERSION, "VBIOS"),
        "driver_version": ProfileField(VERSION, "driver"),
        "link_width": ProfileField(COUNT, "PCIe link width"),
        "link_speed_gts": ProfileField(NUMBER, "PCIe link speed (GT/s)"),
        "nvlinks_active": ProfileField(COUNT, "active NVLinks",
                                       lambda doc: NVLINKS_UNTRAINED if nvlinks_untrained(doc) else None),
    }, _named("gpu", "address", "product", "serial"), "GPUs", known_none=no_nvidia_gpu_in_pcie),
    "nics": ProfileSection(_nic_items, "network", {
        "vendor": ProfileField(TEXT, "vendor"),
        "model": ProfileField(TEXT, "model"),
        "driver": ProfileField(TEXT, "driver"),
        "speed_mbps": ProfileField(NUMBER, "speed (Mb/s)"),
        "firmware": ProfileField(VERSION, "firmware"),
        "psid": ProfileField(TEXT, "PSID"),
    }, _named("nic", "name", "model"), "NIC ports", groups=True),
    "hcas": ProfileSection(_hca_items, "infiniband", {
        "hca_type": ProfileField(TEXT, "HCA type"),
        "firmware": ProfileField(VERSION, "firmware"),
        "psid": ProfileField(TEXT, "PSID"),
        "link_layer": ProfileField(TEXT, "link layer"),
        "rate_gbps": ProfileField(NUMBER, "port rate (Gb/s)"),
        "state": ProfileField(TEXT, "port state"),
    }, _named("hca", "name", "hca_type"), "HCAs", groups=True),
    "psus": ProfileSection(_psu_items, "psu", {
        "manufacturer": ProfileField(TEXT, "manufacturer"),
        "part_number": ProfileField(TEXT, "part number"),
        "max_power_w": ProfileField(NUMBER, "max power (W)"),
    }, _named("psu", "name", "serial"), "PSUs"),
    "bmc": ProfileSection(_bmc_items, "bmc", {
        "firmware": ProfileField(VERSION, "firmware"),
        "manufacturer": ProfileField(TEXT, "manufacturer"),
        "ipmi_version": ProfileField(VERSION, "IPMI version"),
    }, lambda item: "bmc", "BMC", counted=False),
}
HEALTH_KEYS = {"no_critical_findings": "bool", "no_warnings": "bool", "no_degraded_links": "classes"}
PROFILE_TOP_KEYS = ("$schema", "name", "description", "severity", *PROFILE_SECTIONS, "health")
SECTION_COMMON = ("severity",)


def _check_keys(data: dict[str, Any], known: list[str], where: str) -> None:
    for key in data:
        if key not in known:
            raise ProfileError(f"{where}{key}: unknown key (known here: {', '.join(known)})")


def _severity(data: dict[str, Any], where: str, default: str) -> str:
    severity = data.get("severity", default)
    if severity not in SEVERITIES:
        raise ProfileError(f"{where}severity: expected one of {', '.join(SEVERITIES)}, "
                           f"got {json.dumps(severity)}")
    return severity


def _normalize_fields(section: ProfileSection, data: dict[str, Any], where: str) -> dict[str, Any]:
    return {key: normalize_spec(section.fields[key].kind, value, f"{where}{key}")
            for key, value in data.items() if key in section.fields}


def _normalize_slots(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProfileError(f'{where}: expected an object of slot: size, "populated" or "empty"')
    slots = {}
    for slot, spec in value.items():
        if spec in ("empty", "populated"):
            slots[slot] = spec
        else:
            try:
                slots[slot] = normalize_spec(SIZE, spec, f"{where}.{slot}")
            except ProfileError:
                raise ProfileError(f'{where}.{slot}: expected a size, "populated" or "empty", '
                                   f"got {json.dumps(spec)}") from None
    return slots


def _split_required(section: ProfileSection, data: dict[str, Any], where: str) -> tuple[dict, list[str]]:
    """The part without the `"required": true|false` of its fields that some machines cannot show, and the
    names of those required (a check that cannot be judged then fails instead of staying unknown)."""
    required, plain = [], dict(data)
    for key, value in data.items():
        field_ = section.fields.get(key)
        if field_ is None or field_.unjudgeable is None or not isinstance(value, dict):
            continue
        if "required" not in value:
            continue
        if not isinstance(value["required"], bool):
            raise ProfileError(f"{where}{key}.required: expected true or false, "
                               f"got {json.dumps(value['required'])}")
        if value["required"]:
            required.append(key)
        plain[key] = {bound: spec for bound, spec in value.items() if bound != "required"}
    return plain, required


def _normalize_part(name: str, section: ProfileSection, data: Any, where: str, severity: str) -> dict:
    if not isinstance(data, dict):
        raise ProfileError(f"{where.rstrip('.')}: expected an object, got {json.dumps(data)}")
    known = [*SECTION_COMMON, *(("count",) if section.counted else ()),
             *(("match",) if section.groups else ()), *section.own, *section.fields]
    _check_keys(data, known, where)
    data, required = _split_required(section, data, where)
    part: dict[str, Any] = {"severity": _severity(data, where, severity),
                            "fields": _normalize_fields(section, data, where), "required": required}
    if section.counted:
        part["count"] = normalize_spec(COUNT, data["count"], f"{where}count") if "count" in data else None
    if section.groups:
        match = data.get("match", {})
        if not isinstance(match, dict):
            raise ProfileError(f"{where}match: expected an object of fields, got {json.dumps(match)}")
        _check_keys(match, list(section.fields), f"{where}match.")
        part["match"] = _normalize_fields(section, match, f"{where}match.")
    for key, kind in section.own.items():
        if key in data:
            part[key] = (_normalize_slots(data[key], f"{where}{key}") if kind == "slots"
                         else normalize_spec(kind, data[key], f"{where}{key}"))
    return part


def normalize_profile(data: Any) -> dict[str, Any]:
    """A parsed profile checked against the language and normalized (sizes in bytes, defaults filled in).
    Raises ProfileError with the key path and the problem; an unknown key is an error, so a typo never
    silently turns a check off."""
    if not isinstance(data, dict):
        raise ProfileError("a profile is a JSON object ({...})")
    _check_keys(data, list(PROFILE_TOP_KEYS), "")
    for key in ("name", "description", "$schema"):
        if key in data and not isinstance(data[key], str):
            raise ProfileError(f"{key}: expected a text, got {json.dumps(data[key])}")
    severity = _severity(data, "", "critical")
    profile: dict[str, Any] = {"name": data.get("name"), "sections": {}}
    for name, section in PROFILE_SECTIONS.items():
        if name not in data:
            continue
        if section.groups:
            if not isinstance(data[name], list):
                raise ProfileError(f'{name}: expected a list of groups ([{{"match": ..., "count": ...}}])')
            profile["sections"][name] = [
                _normalize_part(name, section, group, f"{name}[{index}].", severity)
                for index, group in enumerate(data[name])
            ]
        else:
            profile["sections"][name] = _normalize_part(name, section, data[name], f"{name}.", severity)
    health = data.get("health", {})
    if not isinstance(health, dict):
        raise ProfileError(f"health: expected an object, got {json.dumps(health)}")
    _check_keys(health, [*SECTION_COMMON, *HEALTH_KEYS], "health.")
    normalized = {"severity": _severity(health, "health.", severity)}
    for key in ("no_critical_findings", "no_warnings"):
        if key in health:
            normalized[key] = normalize_spec("bool", health[key], f"health.{key}")
    if "no_degraded_links" in health:
        classes = health["no_degraded_links"]
        if not isinstance(classes, list) or any(c not in LINK_CLASSES for c in classes):
            raise ProfileError(f"health.no_degraded_links: expected a list of {', '.join(LINK_CLASSES)}, "
                               f"got {json.dumps(classes)}")
        normalized["no_degraded_links"] = classes
    profile["health"] = normalized
    return profile


# -- acceptance: loading a profile from a file, a URL or the live system's sources ---------------------------


@dataclass
class Profile:
    """A loaded profile: where it came from, its name, the sha256 of its bytes and its normalized rules."""

    source: str
    name: str
    sha256: str
    rules: dict[str, Any]


def parse_profile(data: bytes, source: str) -> Profile:
    """A profile from its bytes; a URL source is kept and named as shown_url shows it (no secrets). Raises
    ProfileError naming the problem (the JSON error with its line and column, or the key path)."""
    try:
        parsed = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ProfileError(f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    rules = normalize_profile(parsed)
    if re.match(r"(?i)https?://", source):
        source = shown_url(source)  # no user:password, no query (a presigned URL's signature)
        name = os.path.basename(urllib.parse.urlsplit(source).path.rstrip("/"))
    else:
        name = os.path.basename(source.rstrip("/"))
    return Profile(source, rules["name"] or name or source, hashlib.sha256(data).hexdigest(), rules)


def fetch_profile(url: str, attempts: int = PROFILE_EXPECT_ATTEMPTS) -> bytes:
    """The bytes at an http(s) URL, tried up to `attempts` times with doubling waits while the network may
    still be coming up (no route, refused, timeout, 5xx, a garbled answer), each failed try that is tried
    again one line on stderr naming the URL as shown_url shows it. Final at once, as for --report: a 4xx
    other than 408 and 429, a TLS failure (a wrong certificate), a URL that cannot be fetched, a profile
    that arrived but is larger than PROFILE_MAX_BYTES. Raises ProfileError saying why."""
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=PROFILE_FETCH_TIMEOUT) as response:
                data = response.read(PROFILE_MAX_BYTES + 1)
        except urllib.error.HTTPError as exc:
            last, final = f"HTTP {exc.code} {exc.reason}", exc.code < 500 and exc.code not in (408, 429)
        except OSError as exc:
            last, again = connection_error(exc)
            last, final = " ".join(last.split()), not again
        except http.client.HTTPException as exc:  # a garbled answer (a proxy, a captive portal)
            last, final = f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": "), False
        except ValueError as exc:  # not a URL urllib can fetch: no try will do better
            last, final = str(exc) or type(exc).__name__, True
        else:
            if len(data) > PROFILE_MAX_BYTES:  # it arrived: trying again would bring the same bytes
                raise ProfileError(f"larger than {PROFILE_MAX_BYTES} bytes")
            return data
        if final or attempt == attempts:
            break
        wait = PROFILE_FETCH_BACKOFF * (2 ** (attempt - 1))
        log(f"profile {shown_url(url)}: try {attempt} of {attempts} failed: {last}; "
            f"trying again in {wait:g} s")
        time.sleep(wait)
    raise ProfileError(f"cannot fetch it: {last} (after {attempt} tries)")


def load_profile(source: str) -> Profile:
    """A profile from a file or an http(s) URL (a few tries: PROFILE_EXPECT_ATTEMPTS). Raises ProfileError
    with one line naming the source and the problem."""
    try:
        if re.match(r"(?i)https?://", source):
            data = fetch_profile(source, PROFILE_EXPECT_ATTEMPTS)
        else:
            path = Path(source)
            if path.stat().st_size > PROFILE_MAX_BYTES:
                raise ProfileError(f"larger than {PROFILE_MAX_BYTES} bytes")
            data = path.read_bytes()
        return parse_profile(data, source)
    except ProfileError as exc:
        raise ProfileError(f"{shown_source(source)}: {exc}") from None
    except OSError as exc:
        raise ProfileError(f"{shown_source(source)}: {exc.strerror or exc}") from None


def shown_source(source: str) -> str:
    """A profile's source for messages: a URL as shown_url shows it, a file as given."""
    return shown_url(source) if re.match(r"(?i)https?://", source) else source


def kernel_profile_url(procfs: Path) -> str | None:
    """The URL of `bee.profile=URL` on the kernel command line, if any."""
    try:
        cmdline = (Path(procfs) / "cmdline").read_text(errors="replace")
    except OSError:
        return None
    for word in cmdline.split():
        if word.startswith("bee.profile="):
            return word.split("=", 1)[1] or None
    return None


def profile_from_usb() -> tuple[bytes, str] | None:
    """The bytes and device of bee-profile.json at the root of the first removable USB filesystem that has
    one (mounted read-only on a temporary folder when not mounted); None when there is none."""
    listing = run_plain(USB_LSBLK)
    if listing is None or not listing.ok:
        return None
    for target in usb_targets(load_json(listing.stdout)):
        try:
            with mounted_usb(target, None, read_only=True) as directory:
                path = Path(directory) / PROFILE_NAME if directory is not None else None
                if path is not None and path.is_file():
                    return path.read_bytes()[:PROFILE_MAX_BYTES + 1], f"{target['path']}:/{PROFILE_NAME}"
        except OSError as exc:
            log(f"acceptance: cannot read {PROFILE_NAME} on {target['path']}: {exc.strerror or exc}")
    return None


def live_profile(procfs: Path, fallback: Path | None) -> Profile | None:
    """The profile of the live system, from the first source that gives a valid one: bee.profile=URL on the
    kernel command line, bee-profile.json on a removable USB filesystem, then `fallback` (the build's).
    Each failure is one line on stderr and the next source applies; None when no source has one."""
    url = kernel_profile_url(procfs)
    if url is not None:
        try:
            if not re.match(r"(?i)https?://", url):
                raise ProfileError("bee.profile= takes an http:// or https:// URL")
            return parse_profile(fetch_profile(url, PROFILE_FETCH_ATTEMPTS), url)
        except ProfileError as exc:
            log(f"acceptance: profile {shown_url(url)}: {exc}; trying the next source")
    found = profile_from_usb()
    if found is not None:
        try:
            return parse_profile(*found)
        except ProfileError as exc:
            log(f"acceptance: profile {found[1]}: {exc}; trying the next source")
    if fallback is not None and fallback.exists():
        try:
            return load_profile(str(fallback))
        except ProfileError as exc:
            log(f"acceptance: profile {exc}")
    log("acceptance: no profile (no bee.profile=URL, no bee-profile.json on a USB stick, none built in)")
    return None


# -- acceptance: checking a document against a profile (--expect) --------------------------------------------


def _check(name: str, expected: Any, found: Any, passed: bool, severity: str, message: str) -> dict:
    return {"check": name, "expected": expected, "found": found, "passed": passed, "severity": severity,
            "message": message}


def _group_items(section: ProfileSection, items: list[dict[str, Any]], part: dict[str, Any]) -> list[dict]:
    match = part.get("match", {})
    if section.groups and "removable" not in match:
        items = [item for item in items if not item.get("removable")]  # a USB stick is never a server disk
    return [item for item in items
            if all(spec_holds(section.fields[key].kind, spec, item.get(key)) for key, spec in match.items())]


def _what(section: ProfileSection, part: dict[str, Any]) -> str:
    """How a count message names the items: the product or model the profile names, else the noun."""
    chosen = {**part["fields"], **part.get("match", {})}
    for key in ("product", "model"):
        if isinstance(chosen.get(key), str) and not is_glob(chosen[key]):
            return chosen[key]
    match = part.get("match", {})
    if match:
        return f"{section.noun} matching " + ", ".join(
            f"{key} {describe_spec(section.fields[key].kind, spec)}" for key, spec in match.items())
    return section.noun


def _count_check(name: str, section: ProfileSection, part: dict[str, Any], items: list[dict],
                 document: dict[str, Any], why: str = "") -> dict:
    spec = part["count"] if part["count"] is not None else {"min": 1}
    found = len(items)
    passed = spec_holds(COUNT, spec, found)
    what = _what(section, part)
    if isinstance(spec, int) and found < spec:
        message = f"{name}: {found} of {spec} {what} found"
    else:
        message = f"{name}: {found} {what} found, expected {describe_spec(COUNT, spec)}"
    if not passed and section.count_note is not None:
        message += section.count_note(document)
    if why:
        message += f" ({why})"
    return _check(f"{name}.count", part["count"], found, passed, part["severity"], message)


def _field_checks(name: str, section: ProfileSection, part: dict[str, Any], items: list[dict],
                  document: dict[str, Any]) -> list[dict]:
    checks = []
    for key, spec in part["fields"].items():
        field_ = section.fields[key]
        reason = field_.unjudgeable(document) if field_.unjudgeable is not None and items else None
        if reason is not None:  # one result for the section: unknown, or failed when the profile requires it
            required = key in part.get("required", ())
            message = f"{name}: {field_.words} not checkable: {reason}" + (
                "; the profile requires them" if required else "")
            checks.append(_check(f"{name}.{key}", spec, None, False if required else None, part["severity"],
                                 message))
            continue
        for item in items:
            found = item.get(key)
            passed = spec_holds(field_.kind, spec, found)
            message = (f"{section.label(item)}: {field_.words} {show(field_.kind, found)}, "
                       f"expected {describe_spec(field_.kind, spec)}")
            checks.append(_check(f"{name}.{key}", spec, found, passed, part["severity"], message))
    return checks


def _health_checks(document: dict[str, Any], health: dict[str, Any]) -> list[dict]:
    checks = []
    findings = [f for f in document.get("findings") or [] if f.get("component") != "acceptance"]
    for key, severity_name in (("no_critical_findings", "critical"), ("no_warnings", "warning")):
        if not health.get(key):
            continue
        bad = [f for f in findings if f.get("severity") == severity_name]
        message = f"health: {len(bad)} {severity_name} findings" + (
            ": " + "; ".join(f"{f.get('component')}: {f.get('message')}" for f in bad) if bad else "")
        checks.append(_check(f"health.{key}", True, len(bad), not bad, health["severity"], message))
    classes = health.get("no_degraded_links")
    gap = collector_gap(document, "pcie", not document.get("pcie")) if classes else None
    if gap is not None:
        checks.append(_check("health.no_degraded_links", classes, None, False, health["severity"],
                             f"health: PCIe links unknown, {gap}"))
    elif classes:
        prefixes = tuple(prefix for name in classes for prefix in LINK_CLASSES[name])
        entries = document.get("pcie") or []
        upstream_ports = switch_upstream_ports(entries)
        degraded = []
        for entry in entries:
            if not str(entry.get("class_id") or "").startswith(prefixes):
                continue
            degraded.extend(f for f in link_findings(entry, entry.get("address") in upstream_ports)
                            if f["severity"] != "info")  # GPUs and NICs slow down when idle
        for item in degraded:
            checks.append(_check("health.no_degraded_links", classes, item["message"], False,
                                 health["severity"], f"{item['component']}: {item['message']}"))
        if not degraded:
            checks.append(_check("health.no_degraded_links", classes, 0, True, health["severity"],
                                 f"health: no degraded PCIe link ({', '.join(classes)})"))
    return checks


def collector_gap(document: dict[str, Any], name: str, found_nothing: bool) -> str | None:
    """Why the document cannot say what a collector would have found: "the nvidia collector was skipped
    (driver not loaded)", "the memory collector failed (dmidecode -t 17: exit status 1: ...)" (also when it
    failed in part and found nothing); None when its data can be trusted (a document without the collector's
    report included)."""
    report = (document.get("collectors") or {}).get(name)
    if not isinstance(report, dict):
        return None
    status, errors = report.get("status"), report.get("errors") or []
    if status == "skipped":
        return f"the {name} collector was skipped ({report.get('reason') or 'no reason recorded'})"
    if status == "error" or (status == "partial" and found_nothing):
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        detail = ": ".join(str(part) for part in (first.get("command"), first.get("message")) if part)
        return f"the {name} collector failed" + (f" ({detail})" if detail else "")
    return None


def _unknown_check(name: str, parts: list[dict[str, Any]], gap: str) -> dict[str, Any]:
    """One failed check for a whole section whose collector gave nothing to check: we could not verify."""
    severity = min((part["severity"] for part in parts), key=SEVERITIES.index)
    return _check(name, None, None, False, severity, f"{name}: unknown, {gap}")


def _section_checks(document: dict[str, Any], name: str, part: Any) -> list[dict[str, Any]]:
    section = PROFILE_SECTIONS[name]
    items = section.items(document)
    gap = collector_gap(document, section.collector, not items)
    known_none = None
    if gap is not None and section.known_none is not None and not items:
        known_none = section.known_none(document)  # the collector gave nothing, but there is nothing
    if gap is not None and known_none is None:
        return [_unknown_check(name, part if section.groups else [part], gap)]
    why = f"{known_none}; {gap}" if known_none else ""
    checks = []
    for index, group in enumerate(part if section.groups else [part]):
        label = f"{name}[{index}]" if section.groups else name
        chosen = _group_items(section, items, group)
        if section.groups:  # an item belongs to the first group that matches it
            taken = {id(item) for item in chosen}
            items = [item for item in items if id(item) not in taken]
        if section.counted:
            checks.append(_count_check(label, section, group, chosen, document, why))
        elif not chosen and group["fields"]:
            checks.append(_check(f"{label}", None, None, False, group["severity"],
                                 f"{label}: not in the document"))
        checks.extend(_field_checks(label, section, group, chosen, document))
        if section.own_checks is not None:
            checks.extend(section.own_checks(document, group))
    return checks


def check_profile(document: dict[str, Any], profile: Profile) -> dict[str, Any]:
    """The acceptance section for a document: the profile's name and sha256, `passed` (no failed check of
    severity critical), the numbers of failed checks and of checks that cannot be judged on this machine
    (`passed` null: they fail nothing), and every check with what was expected, what was found and whether
    it held. Never raises: a missing part is a value found unknown, and a part of a (saved,
    hand-edited) document too odd to read is one failed check naming it."""
    checks: list[dict[str, Any]] = []
    parts = [*profile.rules["sections"].items(), ("health", profile.rules["health"])]
    for name, part in parts:
        try:
            checks.extend(_health_checks(document, part) if name == "health"
                          else _section_checks(document, name, part))
        except Exception as exc:  # an odd document: say so as a failed check, never lose the verdict
            severity = (part[0] if isinstance(part, list) else part).get("severity", "critical")
            checks.append(_check(name, None, None, False, severity,
                                 f"{name}: cannot be checked, the document's data is odd: "
                                 f"{type(exc).__name__}: {exc}"))
    failed = [check for check in checks if check["passed"] is False]
    return {
        "profile": profile.name,
        "source": profile.source,
        "sha256": profile.sha256,
        "passed": not any(check["severity"] == "critical" for check in failed),
        "checks_total": len(checks),
        "checks_failed": len(failed),
        "checks_unknown": sum(check["passed"] is None for check in checks),
        "checks": checks,
    }


def apply_acceptance(document: dict[str, Any], acceptance: dict[str, Any]) -> dict[str, Any]:
    """The document with its `acceptance` section (after `findings`, before `errors`) and a finding
    (component "acceptance") for every failed check; an earlier acceptance and its findings are replaced."""
    findings = [f for f in document.get("findings") or [] if f.get("component") != "acceptance"]
    findings += [finding(check["severity"], "acceptance", check["message"])
                 for check in acceptance["checks"] if check["passed"] is False]
    result: dict[str, Any] = {}
    for key, value in document.items():
        if key in ("acceptance", "errors", "duration_s"):
            continue
        result[key] = findings if key == "findings" else value
    result["findings"] = findings
    result["acceptance"] = acceptance
    for key in ("errors", "duration_s"):
        if key in document:
            result[key] = document[key]
    return result


def report_acceptance(acceptance: dict[str, Any]) -> None:
    """PASS or FAIL and every failed check, one line each, on stderr (the live system's log), then every
    check that cannot be judged on this machine."""
    verdict = "PASS" if acceptance["passed"] else "FAIL"
    unknown = acceptance.get("checks_unknown") or 0
    log(f"acceptance: {verdict}: {acceptance['checks_failed']} of {acceptance['checks_total']} checks failed"
        + (f", {unknown} not checkable" if unknown else "") + f" (profile {acceptance['profile']})")
    for check in acceptance["checks"]:
        if check["passed"] is False:
            log(f"acceptance: {check['severity']}: {check['message']}")
    for check in acceptance["checks"]:
        if check["passed"] is None:
            log(f"acceptance: unknown: {check['message']}")


# -- acceptance: making a profile from a document (--make-profile) -------------------------------------------


def _known(values: list[Any]) -> list[Any] | None:
    """The distinct values in order, or None when any is unknown (a profile never asks for an unknown)."""
    if not values or any(value is None for value in values):
        return None
    return list(dict.fromkeys(values))


def _exact(kind: str, values: list[Any]) -> Any:
    """The values as a profile writes them (texts escaped as globs, sizes as "3.84 TB"/"32 GiB", which hold
    at their precision): one value, or the distinct ones as a list."""
    distinct = _known(values)
    if distinct is None:
        return None
    out = list(dict.fromkeys(glob_escape(v) if kind == TEXT else human_size(v) if kind == SIZE else v
                             for v in distinct))
    return out[0] if len(out) == 1 else out


def _at_least(values: list[Any]) -> Any:
    distinct = _known(values)
    return None if distinct is None else {"min": min(distinct)}


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def _grouped(items: list[dict[str, Any]], keys: tuple[str, ...]) -> list[tuple[dict, list[dict]]]:
    groups: dict[tuple, list[dict]] = {}
    for item in items:
        groups.setdefault(tuple(item.get(key) for key in keys), []).append(item)
    made = [({key: glob_escape(value) for key, value in zip(keys, values, strict=True) if value is not None},
             members) for values, members in groups.items()]
    return sorted(made, key=lambda group: -len(group[0]))  # groups match in order: the vaguest last


def make_profile(document: dict[str, Any]) -> dict[str, Any]:
    """The profile of the audited machine, to be edited into a fleet spec: what it has, in the profile
    language, in a stable order (sizes exact, speeds and link widths as minimums, every slot by name).
    NVLinks left untrained for want of a fabric manager are written from `topo -m`'s NV# counts (or left
    out), with a `description` saying so.
    It passes on the document it was made from unless that machine has critical findings or degraded
    links (the health gates a made profile always holds)."""
    board = _board_items(document)
    system = ((document.get("board") or {}).get("system") or {})
    name = " ".join(str(v) for v in (system.get("product"), machine_serial(document)) if v) or "this server"
    notes: list[str] = []  # what the profile could not say as found, for its description
    profile: dict[str, Any] = {
        "name": f"{name} ({(document.get('generated_at') or '')[:10] or 'undated'})",
        "severity": "critical",
    }
    if board:
        part: dict[str, Any] = {}
        for key in ("manufacturer", "product", "bios_version"):
            _put(part, key, _exact(VERSION if key == "bios_version" else TEXT, [board[0][key]]))
        if part:
            profile["board"] = part
    cpus = _cpu_items(document)
    if cpus:
        part = {"count": len(cpus)}
        _put(part, "model", _exact(TEXT, [c["model"] for c in cpus]))
        _put(part, "cores", _exact(COUNT, [c["cores"] for c in cpus]))
        profile["cpu"] = part
    dimms = _memory_items(document)
    memory = document.get("memory") or {}
    if memory.get("slots"):
        part = {"count": len(dimms)}
        _put(part, "total_bytes", _exact(SIZE, [memory.get("total_bytes")]))
        if dimms:
            _put(part, "size_bytes", _exact(SIZE, [d["size_bytes"] for d in dimms]))
            _put(part, "type", _exact(TEXT, [d["type"] for d in dimms]))
            _put(part, "speed_mts", _at_least([d["speed_mts"] for d in dimms]))
            _put(part, "configured_speed_mts", _at_least([d["configured_speed_mts"] for d in dimms]))
        slots = memory["slots"]
        part["slots"] = {key: (_exact(SIZE, [slot.get("size_bytes")]) or "populated")
                         if slot.get("populated") else "empty"
                         for key, slot in zip(slot_keys(slots), slots, strict=True)
                         if slot.get("populated") is not None}
        profile["memory"] = part
    disks = [d for d in _disk_items(document) if not d["removable"]]
    if disks:
        groups = []
        for match, members in _grouped(disks, ("transport", "model")):
            group: dict[str, Any] = {"match": match, "count": len(members)}
            _put(group, "size_bytes", _exact(SIZE, [d["size_bytes"] for d in members]))
            _put(group, "firmware", _exact(VERSION, [d["firmware"] for d in members]))
            groups.append(group)
        profile["disks"] = groups
    gpus = _gpu_items(document)
    if gpus:
        part = {"count": len(gpus)}
        _put(part, "product", _exact(TEXT, [g["product"] for g in gpus]))
        _put(part, "memory_total_bytes", _exact(SIZE, [g["memory_total_bytes"] for g in gpus]))
        _put(part, "vbios_version", _exact(VERSION, [g["vbios_version"] for g in gpus]))
        _put(part, "link_width", _at_least([g["link_width"] for g in gpus]))
        _put(part, "link_speed_gts", _at_least([g["link_speed_gts"] for g in gpus]))
        if nvlinks_untrained(document):  # no fabric manager: the links nvidia-smi's topology shows
            wired = [topology_nvlinks(gpu) for gpu in (document.get("nvidia") or {}).get("gpus") or []]
            if wired and all(wired):
                part["nvlinks_active"] = {"min": min(wired)}
                notes.append("gpus.nvlinks_active is the NV# count of `nvidia-smi topo -m`: the NVLinks were "
                             "untrained (no fabric manager), so it stays unknown where none runs")
            else:
                notes.append("gpus.nvlinks_active left out: the NVLinks were untrained (no fabric manager) "
                             "and `nvidia-smi topo -m` showed no NV# count")
        elif any(g["nvlinks_active"] for g in gpus):  # an NVLink system: as many active links as now
            _put(part, "nvlinks_active", _at_least([g["nvlinks_active"] for g in gpus]))
        profile["gpus"] = part
    nics = _nic_items(document)
    if nics:
        profile["nics"] = []
        for match, members in _grouped(nics, ("vendor", "model", "driver")):
            group = {"match": match, "count": len(members)}
            _put(group, "firmware", _exact(VERSION, [n["firmware"] for n in members]))
            _put(group, "psid", _exact(TEXT, [n["psid"] for n in members]))
            profile["nics"].append(group)
    hcas = _hca_items(document)
    if hcas:
        profile["hcas"] = []
        for match, members in _grouped(hcas, ("hca_type", "link_layer")):
            group = {"match": match, "count": len(members)}
            for key, kind in (("firmware", VERSION), ("psid", TEXT), ("state", TEXT)):
                _put(group, key, _exact(kind, [h[key] for h in members]))
            _put(group, "rate_gbps", _at_least([h["rate_gbps"] for h in members]))
            profile["hcas"].append(group)
    psus = _psu_items(document)
    if psus:
        part = {"count": len(psus)}
        _put(part, "part_number", _exact(TEXT, [p["part_number"] for p in psus]))
        profile["psus"] = part
    bmc = _bmc_items(document)
    if bmc:
        part = {}
        _put(part, "firmware", _exact(VERSION, [bmc[0]["firmware"]]))
        _put(part, "manufacturer", _exact(TEXT, [bmc[0]["manufacturer"]]))
        if part:
            profile["bmc"] = part
    profile["health"] = {"no_critical_findings": True, "no_degraded_links": ["gpu", "nic", "storage"]}
    if notes:
        profile = {"name": profile.pop("name"), "description": "; ".join(notes), **profile}
    return profile


def render_profile(profile: dict[str, Any]) -> str:
    """A profile as JSON text: two-space indent, lists of scalars on one line, keys in the made order."""
    text = json.dumps(profile, indent=2, ensure_ascii=False)
    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]",
                  lambda m: "[" + ", ".join(part.strip() for part in m[1].split(",\n")) + "]", text) + "\n"


# -- outputs: the JSON document ------------------------------------------------------------------------------


def write_atomically(path: Path, text: str | bytes) -> None:
    """Write `text` (UTF-8) or bytes to `path` so a reader sees the old file or the whole new one, never a
    part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8") if isinstance(text, str) else text)
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


def output_refusal(option: str, path: Path | None) -> str | None:
    """Why `option PATH` (--output, --make-profile) is refused before anything runs (exit 2), looking at
    the path without opening it: a block device (`--output /dev/sdb` would overwrite a disk) or a socket;
    None for anything the audit may write (a file, nothing yet, a character device, a FIFO)."""
    if path is None:
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # nothing there yet, or a path the write itself will say is wrong
    if stat.S_ISBLK(mode):
        return (f"{option} {path} is a block device (a disk): the audit never writes over a disk; name a "
                "file, e.g. on a mounted stick")
    if stat.S_ISSOCK(mode):
        return f"{option} {path} is a socket, not a file; name a file"
    return None


def write_output(path: Path, text: str) -> None:
    """Write the document to --output PATH without damaging what is there: a regular file (or nothing yet)
    through write_atomically, a symlink's target rather than the link; a character device or FIFO
    (/dev/null, a named pipe, /dev/stdout) written in place, never replaced by a file; a block device or a
    socket refused before it is opened (OSError EINVAL, see output_refusal). Raises OSError."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if mode is not None and (stat.S_ISBLK(mode) or stat.S_ISSOCK(mode)):
        what = "a block device (a disk), never written over" if stat.S_ISBLK(mode) else "a socket"
        raise OSError(errno.EINVAL, what, str(path))
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    write_atomically(Path(os.path.realpath(path)), text)


def render(document: dict[str, Any]) -> str:
    """The document as JSON text."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# -- outputs: the QR summary ---------------------------------------------------------------------------------

QR_MAX_BYTES = 134  # what a version-6 QR code holds at level L: 45x45 modules with a 2-module margin,
QR_MAX_LINES = 24   # 23 text lines in ANSIUTF8 (two module rows per line) + a caption: an 80x25 console
QR_MAX_COLUMNS = 80
QRENCODE = ["qrencode", "-t", "ANSIUTF8", "-l", "L", "-m", "2", "-o", "-"]


def count_of(section: Any) -> int | None:
    """How many entries a list collector (storage) found; None when it found nothing to list (skipped or
    failed)."""
    return len(section) if isinstance(section, list) else None


def short_cpu_model(model: str | None) -> str:
    """A CPU model without trademarks, "CPU", "Processor" and the clock ("Xeon Gold 6338")."""
    text = re.sub(r"\((?:R|TM|C)\)|\bCPU\b|\bProcessor\b|@\s*[\d.]+\s*[GM]Hz", " ", model or "?", flags=re.I)
    return " ".join(text.split()) or "?"


def qr_summary_text(document: dict[str, Any]) -> str:
    """The compact summary the QR code carries: PASS or FAIL and the number of failed checks when the
    document has an acceptance section, machine serial (system, else chassis, else baseboard),
    product, CPU ("CPU unknown" without any, "unknown model" for sockets without a model) and memory
    totals, disk and GPU counts, number of findings, and the first IP address when the machine had one.
    ASCII only and at most QR_MAX_BYTES long: when it is longer, the CPU line is cut first, then the
    product, the serial last; a cut line ends with "~"."""
    board = document.get("board") or {}
    system = board.get("system") or {}
    baseboard = board.get("baseboard") or {}
    cpu = document.get("cpu") or {}
    memory = document.get("memory") or {}
    sockets = [socket for socket in cpu.get("sockets") or [] if socket.get("populated")]
    models = list(dict.fromkeys(short_cpu_model(socket.get("model")) for socket in sockets
                                if socket.get("model"))) or ["unknown model"]
    cores = cpu.get("total_cores")
    total = memory.get("total_bytes")
    findings = document.get("findings") or []
    critical = sum(1 for item in findings if item.get("severity") == "critical")
    disks = count_of(document.get("storage"))
    gpus = gpu_count(document)
    lines = [
        f"bee {AUDIT_VERSION}",
        f"SN {machine_serial(document) or '?'}",
        f"PN {system.get('product') or baseboard.get('product') or '?'}",
        f"CPU {len(sockets)}x {' / '.join(models)}" + (f" {cores}c" if cores else "") if sockets
        else "CPU unknown",
        f"MEM {human_size(total, '?')} {memory.get('populated_slots', '?')}/"
        f"{memory.get('total_slots', '?')} DIMM"
        if memory.get("source") != "/proc/meminfo"
        else f"MEM {round(total / (1 << 30), 1):g} GiB (kernel)",
        f"DISK {'?' if disks is None else disks} GPU {'?' if gpus is None else gpus}",
        f"FINDINGS {len(findings)}" + (f" ({critical} critical)" if critical else ""),
    ]
    addresses = [item.get("address") for item in as_list(document.get("addresses")) if isinstance(item, dict)]
    if addresses and isinstance(addresses[0], str):
        lines.append(f"IP {addresses[0]}")
    acceptance = document.get("acceptance")
    shift = 0
    if isinstance(acceptance, dict):
        lines.insert(0, f"{'PASS' if acceptance.get('passed') else 'FAIL'} {acceptance.get('checks_failed')}")
        shift = 1  # the acceptance line
    lines = [line.encode("ascii", "replace").decode("ascii") for line in lines]
    # CPU and product first down to a readable length, then as far as it takes; the serial last
    for index, shortest in ((3 + shift, 24), (2 + shift, 16), (3 + shift, 8), (2 + shift, 4), (1 + shift, 4)):
        excess = len("\n".join(lines)) - QR_MAX_BYTES
        if excess > 0 and len(lines[index]) > shortest:
            keep = max(len(lines[index]) - excess - 1, shortest - 1)
            lines[index] = lines[index][:keep] + "~"
    return "\n".join(lines)[:QR_MAX_BYTES]


def qr_code(text: str, timeout: float = 10.0) -> str | None:
    """`text` as a QR code for a terminal (qrencode -t ANSIUTF8); None when qrencode is not installed,
    failed, or drew a code larger than an 80x25 console."""
    done = run_plain(QRENCODE, timeout, stdin=text.encode())  # its own process group: Ctrl-C ends it
    if done is None or not done.ok or not done.stdout.strip():
        return None
    drawing = done.stdout
    rows = drawing.rstrip("\n").split("\n")
    widest = max(len(re.sub(r"\x1b\[[0-9;]*m", "", row)) for row in rows)
    if len(rows) > QR_MAX_LINES - 1 or widest > QR_MAX_COLUMNS:
        return None
    return drawing


def print_qr(document: dict[str, Any], stream) -> None:
    """Print the QR summary with a one-line caption on `stream`; a note on stderr when it cannot be drawn."""
    drawing = qr_code(qr_summary_text(document))
    if drawing is None:
        log("no QR summary (qrencode is not installed or failed)")
        return
    stream.write(f"bee audit summary, system serial {machine_serial(document) or 'unknown'}:\n{drawing}")
    stream.flush()


# -- outputs: the copy on a USB disk (--usb) -----------------------------------------------------------------

def machine_name(document: dict[str, Any]) -> str:
    """What names the machine in file names: its serial (machine_serial), else the system UUID, else the
    first permanent MAC address ("mac-" and 12 hex digits), else "unknown"; letters, digits and ".-_" only."""
    name = machine_serial(document)
    if not name:
        uuid = ((document.get("board") or {}).get("system") or {}).get("uuid")
        if isinstance(uuid, str) and re.fullmatch(r"[0-9A-Fa-f-]{32,36}", uuid) and uuid.strip("0-") \
                and uuid.strip("fF-"):
            name = uuid.lower()
    if not name:
        macs = [port.get("permanent_mac") for port in document.get("network") or [] if isinstance(port, dict)]
        mac = next((mac for mac in macs if isinstance(mac, str) and mac.strip("0:")), None)
        name = f"mac-{re.sub(r'[^0-9a-f]', '', mac.lower())}" if mac else None
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name or "").strip("._") or "unknown"


def usb_file_name(document: dict[str, Any], now: dt.datetime | None = None, suffix: str | None = None) -> str:
    """bee-audit-<machine>-<UTC time to the millisecond>-<4 random hex digits>.json, the one name of a
    document on USB, in the spool and at the collector: <machine> is machine_name (serial, else system UUID,
    else first permanent MAC); the time and the random suffix keep two runs (or two machines with nothing
    to name them) from overwriting each other. `suffix` replaces the random digits (tests)."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
    suffix = secrets.token_hex(2) if suffix is None else suffix
    return f"bee-audit-{machine_name(document)}-{stamp}-{suffix}.json"


def write_to_usb(document: dict[str, Any], text: str) -> bool | None:
    """Copy the document onto the first writable filesystem of a removable USB disk (mounting it on a
    temporary folder when needed, unmounting what it mounted). True: written; None: no USB disk (said
    on stderr); False: a USB disk was there but the file could not be written (said on stderr)."""
    listing = run_plain(USB_LSBLK)
    if listing is None or not listing.ok:
        detail = "lsblk is not installed" if listing is None else (
            first_line(listing.stderr) or f"exit status {listing.returncode}")
        log(f"--usb: cannot list the disks: {detail}; the document was not copied to USB")
        return False
    targets = usb_targets(load_json(listing.stdout))
    if not targets:
        log("--usb: no removable USB disk with a filesystem found; plug one in and run again")
        return None
    name = usb_file_name(document)
    for target in targets:
        try:
            with mounted_usb(target, "--usb") as directory:
                if directory is None:
                    continue
                write_atomically(Path(directory) / name, text)
                os.sync()
                log(f"--usb: wrote {name} to {target['path']}")
                return True
        except OSError as exc:
            log(f"--usb: cannot write to {target['path']}: {exc.strerror or exc}")
    return False


# -- outputs: the report to a collector (--report, --spool, --send-spool) ------------------------------------

REPORT_TIMEOUT = 300.0         # seconds --report keeps trying (--report-timeout)
REPORT_REQUEST_TIMEOUT = 30.0  # seconds one PUT may take, never more than what is left of --report-timeout
REPORT_BACKOFF = (1, 2, 4, 8, 15)  # seconds before each retry; the last one repeats
REPORT_FILES = re.compile(r"bee-audit-.+\.(?:json|tar\.gz)\Z")  # what a spool folder holds
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750's b64token


@dataclass
class Upload:
    """One file for the collector: its name there, its bytes and their type."""

    name: str
    body: bytes
    content_type: str


class ReportSetup:
    """What every PUT of one run shares: the collector URL, the TLS context, the bearer token (from a file,
    never shown) and the deadline."""

    def __init__(self, url: str, timeout: float, ca_file: Path | None, token_file: Path | None) -> None:
        self.url = url
        self.timeout = timeout
        self.context = ssl.create_default_context()  # the system's CA store
        if ca_file is not None:
            self.context.load_verify_locations(cafile=str(ca_file))
        self.token = token_file.read_text().strip() if token_file is not None else None
        # the *_proxy and no_proxy variables, as urllib reads them
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.context))
        self.deadline = time.monotonic() + timeout  # set again when the sending starts


def report_setup(args: argparse.Namespace) -> ReportSetup | str | None:
    """The ReportSetup of the command line (None without --report), or one line saying which argument is
    wrong."""
    if args.report is None:
        if args.send_spool is not None:
            return "--send-spool needs --report URL"
        if args.report_capture and args.spool is None:
            return "--report-capture needs --report URL or --spool DIR"
        return None
    url = urllib.parse.urlsplit(args.report)
    try:
        _ = url.port  # parsed only here
    except ValueError:
        return f"--report {url.scheme}://{url.netloc.rpartition('@')[2]}/...: the port is not a number"
    if url.scheme not in ("http", "https") or not url.hostname:
        return f"--report {shown_url(args.report)}: not an http:// or https:// URL"
    if "@" in url.netloc:
        return (f"--report {shown_url(args.report)}: a user name or password in the URL is not supported; "
                "put a bearer token into a file and give --report-token-file FILE")
    if args.report_capture and args.document is not None:
        return "--report-capture sends the raw capture of this run: a --document has none"
    if args.report_capture and not url.path.endswith("/"):
        return ("--report-capture needs a folder URL (ending in /) to put the capture beside the document; "
                "a presigned URL names one object")
    if args.report_token_file is not None:
        try:
            if not BEARER_TOKEN.fullmatch(args.report_token_file.read_text().strip()):
                return (f"--report-token-file {args.report_token_file}: not a bearer token (one line of "
                        "letters, digits and -._~+/=)")
        except (OSError, UnicodeDecodeError) as exc:
            return f"--report-token-file {args.report_token_file}: cannot be read: {reason_of(exc)}"
    try:
        return ReportSetup(args.report, args.report_timeout, args.report_ca, args.report_token_file)
    except (OSError, ssl.SSLError) as exc:
        return f"--report-ca {args.report_ca}: not a PEM certificate file: {reason_of(exc)}"


def upload_url(url: str, name: str) -> str:
    """Where a file goes: the URL plus the file name when the URL is a folder (its path ends in /), else
    the URL itself (a presigned PUT URL names one object)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.path.endswith("/"):
        return url
    return urllib.parse.urlunsplit(parts._replace(path=parts.path + urllib.parse.quote(name)))


def body_line(data: bytes) -> str:
    """The first line of a response body with text in it, markup removed, at most 200 characters."""
    for line in decode(data).splitlines():
        line = " ".join(re.sub(r"<[^>]*>", " ", line).split())
        if line:
            return line[:200]
    return ""


def put_once(setup: ReportSetup, url: str, upload: Upload) -> tuple[int, str, float | None]:
    """One HTTP PUT: (status, first line of the body, Retry-After seconds or None). Connection errors,
    timeouts and TLS errors are raised."""
    # If-None-Match: * asks the collector to refuse (412) rather than overwrite a file of that name: S3
    # honours it, nginx's WebDAV ignores it (README, "Fleet")
    headers = {"Content-Type": upload.content_type, "User-Agent": f"bee-audit/{AUDIT_VERSION}",
               "If-None-Match": "*"}
    if setup.token:
        headers["Authorization"] = f"Bearer {setup.token}"
    request = urllib.request.Request(url, data=upload.body, method="PUT", headers=headers)
    left = setup.deadline - time.monotonic()
    timeout = max(1.0, min(REPORT_REQUEST_TIMEOUT, left))
    try:
        with setup.opener.open(request, timeout=timeout) as response:
            return response.status, body_line(response.read(4096)), None
    except urllib.error.HTTPError as exc:
        retry_after = to_int(exc.headers.get("Retry-After")) if exc.headers else None
        with contextlib.suppress(OSError):
            return exc.code, body_line(exc.read(4096)), retry_after
        return exc.code, "", retry_after


def deliver(setup: ReportSetup, upload: Upload) -> str | None:
    """PUT one file, retrying connection failures, timeouts, 408, 429 and 5xx with backoff (each retry
    said on stderr) until the deadline; None when a 2xx came back, else why it was not delivered."""
    url = upload_url(setup.url, upload.name)
    tries = 0
    while True:
        tries += 1
        retry_after = None
        try:
            status, line, retry_after = put_once(setup, url, upload)
        except (OSError, http.client.HTTPException) as exc:
            reason, again = connection_error(exc, "; give the collector's CA with --report-ca FILE")
        except ValueError as exc:  # a URL urllib cannot use
            reason, again = str(exc), False
        else:
            if 200 <= status < 300:
                log(f"--report: delivered {upload.name} to {shown_url(url)} (HTTP {status})")
                return None
            reason = f"HTTP {status}" + (f": {line}" if line else "")
            if status == 412:
                reason += f"; the collector already holds a file named {upload.name}, it was not overwritten"
            elif status == 405 and not urllib.parse.urlsplit(setup.url).path.endswith("/"):
                reason += "; a folder URL ends in / (the file name is added to it)"
            again = status in (408, 429) or status >= 500
        if not again:
            return reason
        left = setup.deadline - time.monotonic()
        if left <= 0.05:
            counted = f"{tries} {'try' if tries == 1 else 'tries'}"
            return f"{reason} (gave up after {counted} in {setup.timeout:g} s)"
        wait = REPORT_BACKOFF[min(tries, len(REPORT_BACKOFF)) - 1]
        wait = min(retry_after if retry_after and retry_after > wait else wait, left)
        log(f"--report: {upload.name}: {reason}; trying again in {wait:.0f} s")
        time.sleep(wait)


def capture_archive(folder: Path, stem: str) -> bytes:
    """A capture folder as a .tar.gz (its links kept as links) under the folder name `stem`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(str(folder), arcname=stem)
    return buffer.getvalue()


def report_uploads(document_name: str, text: str, capture: Path | None) -> list[Upload]:
    """The document and, when a capture folder is given, its .tar.gz beside it (same name stem)."""
    uploads = [Upload(document_name, text.encode("utf-8"), "application/json")]
    if capture is not None:
        stem = document_name.removesuffix(".json")
        uploads.append(Upload(f"{stem}.tar.gz", capture_archive(capture, stem), "application/gzip"))
    return uploads


def spool_uploads(uploads: list[Upload], spool: Path) -> None:
    """Write each upload into the spool folder (atomically: a sender never sees half a file)."""
    spool.mkdir(parents=True, exist_ok=True)
    for upload in uploads:
        write_atomically(spool / upload.name, upload.body)


def spooled(spool: Path) -> list[Upload]:
    """What a spool folder holds, oldest name first (each document before its capture)."""
    uploads = []
    for path in sorted(spool.iterdir()) if spool.is_dir() else []:
        if REPORT_FILES.match(path.name) and path.is_file():
            kind = "application/json" if path.name.endswith(".json") else "application/gzip"
            uploads.append(Upload(path.name, path.read_bytes(), kind))
    return uploads


def send_report(setup: ReportSetup, uploads: list[Upload], spool: Path | None = None) -> bool:
    """Deliver every upload within --report-timeout from now (removing each delivered one from the spool,
    when there is one); True when all arrived. One line per file that did not."""
    setup.deadline = time.monotonic() + setup.timeout
    delivered = True
    for upload in uploads:
        reason = deliver(setup, upload)
        if reason is None:
            if spool is not None:
                with contextlib.suppress(FileNotFoundError):
                    (spool / upload.name).unlink()
            continue
        kept = f"; it stays in {spool}" if spool is not None else ""
        log(f"--report: could not deliver {upload.name} to {shown_url(setup.url)}: {reason}{kept}")
        delivered = False
    return delivered


def capture_folder(args: argparse.Namespace) -> Path | None:
    """A temporary folder to capture into when --report-capture needs a capture and the command line
    gives none (no --capture, no --replay): kept in args.report_scratch for report_outputs, which sends
    and removes it. None otherwise."""
    args.report_scratch = None
    if args.capture is None and args.report_capture and args.replay is None:
        args.report_scratch = Path(tempfile.mkdtemp(prefix="bee-capture-"))
    return args.report_scratch


def report_outputs(args: argparse.Namespace, setup: ReportSetup | None, document: dict[str, Any],
                   text: str) -> bool:
    """--spool and --report for a finished document: spool it (and its capture), then send what is to
    be sent. False (said on stderr) when something could not be spooled or delivered."""
    scratch = getattr(args, "report_scratch", None)
    capture = (args.capture or args.replay or scratch) if args.report_capture else None
    try:
        uploads = report_uploads(usb_file_name(document), text, capture)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.spool is not None:
        try:
            spool_uploads(uploads, args.spool)
        except OSError as exc:
            log(f"--spool: cannot write into {args.spool}: {exc.strerror or exc}")
            if setup is not None:  # still try to deliver what could not be spooled
                send_report(setup, uploads)
            return False
        if setup is None:
            return True
        return send_report(setup, spooled(args.spool), args.spool)
    return setup is None or send_report(setup, uploads)


def send_spool(setup: ReportSetup, spool: Path) -> int:
    """--send-spool: deliver what the spool holds, no audit; 0 when all arrived or nothing waited."""
    uploads = spooled(spool)
    if not uploads:
        log(f"--send-spool: nothing to send in {spool}")
        return 0
    return 0 if send_report(setup, uploads, spool) else 1


# -- command line --------------------------------------------------------------------------------------------


MAX_TIMEOUT = 86400.0  # one day: a --timeout past it is a mistake (1e9 overflowed every wait)


def positive_seconds(text: str) -> float:
    """A --timeout value: a number of seconds above 0 and at most MAX_TIMEOUT (one day)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds above 0 and at most {MAX_TIMEOUT:.0f} (one day), e.g. 30")
    return seconds


def output_path(text: str) -> Path | None:
    """An --output value: a path, `-` for stdout (None); an empty one is refused."""
    if text == "-":
        return None
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: name a file, or - for stdout")
    return Path(text)


def path_argument(text: str) -> Path:
    """A path value of an option; an empty one (which Path would read as the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: name a file or folder")
    return Path(text)


def existing_folder(text: str) -> Path:
    """A --sysfs/--procfs/--devfs value: a folder that exists (an empty value is not the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; name the root of a sysfs, procfs or devfs tree")
    path = Path(text)
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise argparse.ArgumentTypeError(f"{text!r} {what}; name the root of a sysfs, procfs or devfs tree")
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked: a bad value exits 2 with one line saying what is wrong."""
    parser = argparse.ArgumentParser(
        prog="audit",
        description="Write one JSON hardware inventory of this machine (stdout unless told otherwise).",
        epilog="Exit status: 0 document written (collector errors included), 1 an output or the capture "
               "could not be written, 2 bad arguments, 3 --strict and the acceptance failed, 130 Ctrl-C, "
               "143 SIGTERM.",
    )
    parser.add_argument("--output", type=output_path, metavar="FILE",
                        help="write the JSON to FILE (atomically; a device or FIFO in place; - is stdout)")
    parser.add_argument("--usb", action="store_true",
                        help="also write the JSON onto a removable USB disk "
                             "(bee-audit-<machine>-<time>-<random>.json)")
    parser.add_argument("--no-qr", action="store_true", help="do not print the QR summary")
    parser.add_argument("--sysfs", type=existing_folder, default=Path("/sys"), metavar="DIR",
                        help="sysfs root (/sys)")
    parser.add_argument("--procfs", type=existing_folder, default=Path("/proc"), metavar="DIR",
                        help="procfs root (/proc)")
    parser.add_argument("--devfs", type=existing_folder, default=Path("/dev"), metavar="DIR",
                        help="devfs root (/dev)")
    parser.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time limit for each tool run (default {DEFAULT_TIMEOUT:.0f}, at most one day)")
    parser.add_argument("--capture", type=path_argument, metavar="DIR",
                        help="also save every tool output and file read under DIR (a new or empty folder)")
    parser.add_argument("--replay", type=path_argument, metavar="DIR",
                        help="build the document from a capture in DIR, running nothing")
    parser.add_argument("--document", type=path_argument, metavar="FILE",
                        help="take a saved document instead of auditing (no tool runs)")
    parser.add_argument("--make-profile", type=path_argument, metavar="FILE",
                        help="also write the profile of this machine (to edit into a fleet spec) to FILE")
    parser.add_argument("--expect", metavar="PROFILE",
                        help="check the machine against a profile (a file or an http(s) URL): the "
                             "document gets an acceptance section, every failed check is a finding")
    parser.add_argument("--expect-live", type=path_argument, metavar="FILE",
                        help="find the profile as the live system does: bee.profile=URL on the kernel "
                             "command line, else bee-profile.json on a USB stick, else FILE (if it exists)")
    parser.add_argument("--strict", action="store_true", help="exit 3 when the acceptance failed")
    parser.add_argument("--nvidia-gpu-list", type=Path, metavar="FILE",
                        help="the GPU list the ISO ships beside the NVIDIA modules: names the legacy branch "
                             "of a GPU no driver took (absent or unreadable: the device id alone tells)")
    parser.add_argument("--report", metavar="URL",
                        help="also PUT the document to URL (a folder URL ending in /, or one object's URL)")
    parser.add_argument("--report-timeout", type=positive_seconds, default=REPORT_TIMEOUT, metavar="SECONDS",
                        help=f"keep retrying --report this long (default {REPORT_TIMEOUT:.0f})")
    parser.add_argument("--report-ca", type=path_argument, metavar="FILE",
                        help="also trust this CA (PEM) for an https collector")
    parser.add_argument("--report-token-file", type=path_argument, metavar="FILE",
                        help="send the bearer token in FILE with --report")
    parser.add_argument("--report-capture", action="store_true",
                        help="also send the raw capture as a .tar.gz beside the document")
    parser.add_argument("--spool", type=path_argument, metavar="DIR",
                        help="first write what is to be sent into DIR; what --report cannot deliver stays")
    parser.add_argument("--send-spool", type=path_argument, metavar="DIR",
                        help="run no audit: send what DIR holds to --report URL")
    return parser.parse_args(argv)


def load_document(path: Path) -> dict[str, Any]:
    """A saved audit document of this audit's SCHEMA_VERSION. Raises ProfileError with one line naming the
    problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ProfileError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}: not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict) or "schema_version" not in data or "collectors" not in data:
        raise ProfileError(f"{path}: not a bee audit document (no schema_version and collectors)")
    if data["schema_version"] != SCHEMA_VERSION:  # its keys mean other things: checks would read nothing
        raise ProfileError(f"{path}: schema_version {json.dumps(data['schema_version'])}, this audit reads "
                           f"{SCHEMA_VERSION}; audit the machine again with this audit")
    return data


def write_profile(path: Path, document: dict[str, Any]) -> bool:
    """Write the profile made from the document; say on stderr when it would not pass on this machine.
    False (and one line on stderr) when the file cannot be written."""
    try:
        text = render_profile(make_profile(document))
        own = check_profile(document, parse_profile(text.encode(), str(path)))
    except Exception as exc:  # a hand-edited saved document
        log(f"--make-profile: cannot make a profile from this document: {type(exc).__name__}: {exc}")
        return False
    if not own["passed"]:
        failed = [check["message"] for check in own["checks"] if check["passed"] is False]
        log(f"--make-profile: this machine fails its own profile ({'; '.join(failed)}); "
            "fix it or edit the health part of the profile")
    for name, section in PROFILE_SECTIONS.items():  # a section left out for want of data checks nothing
        gap = collector_gap(document, section.collector, not section.items(document))
        if gap is not None:
            log(f"--make-profile: no {name} in the profile: {gap}; add them by hand or audit again")
    try:
        write_output(path, text)  # as --output: a device or FIFO in place, never replaced
    except OSError as exc:
        log(f"cannot write {path}: {exc.strerror or exc}; choose another --make-profile path")
        return False
    return True


def capture_refusal(capture: Path | None) -> str | None:
    """Why --capture DIR is refused before anything runs (exit 2): a folder that already holds files (an
    older capture would mix with this one); None when it is new or empty."""
    if capture is None or not capture.is_dir():
        return None
    try:
        empty = next(capture.iterdir(), None) is None
    except OSError:
        return None  # unreadable: prepare_capture says so
    if empty:
        return None
    return f"--capture {capture}: the folder is not empty (an older capture?); name a new or empty folder"


def prepare_capture(capture: Path, replay: Path | None) -> str | None:
    """Make the --capture folder (and, with --replay, copy the whole replayed capture into it); the one line
    saying why it failed, or None. A failed capture never stops the audit: the document is still written."""
    try:
        capture.mkdir(parents=True, exist_ok=True)
        if replay is not None:
            shutil.copytree(replay, capture, symlinks=True, dirs_exist_ok=True)
        else:
            with tempfile.TemporaryFile(dir=capture):
                pass
    except (OSError, shutil.Error) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return (f"--capture {capture}: cannot write there ({detail}); the document is written without a "
                "capture")
    return None


@contextlib.contextmanager
def stopped_by_signals():
    """Within the block (the whole run), Ctrl-C (SIGINT) and SIGTERM stop every running tool's process group
    at once and raise Interrupted in the main thread, once (a later signal only stops tools again); inside
    shielded_from_signals the raise waits for its end. The handlers are installed explicitly, also where
    SIGINT was inherited as ignored (a background job), and the previous ones come back after the block.
    Only the main thread can set handlers: elsewhere (tests calling main from a thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    STOP.signum, STOP.raised, STOP.shielded = None, False, 0

    def stop(signum, frame):
        if STOP.signum is None:
            STOP.signum = signum
        if STOP.shielded:
            return
        stop_tools()
        if not STOP.raised:
            STOP.raised = True
            raise Interrupted(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    """Run the audit. Exit 0 whenever a document was produced and written (collector errors included, and
    --usb finding no USB disk); 1, with one line on stderr, when an output or the capture could not be
    written (the document is still written where it can be) or --report could not deliver; 2 for bad
    arguments (a missing, unreadable or invalid profile or document included, a --capture folder that is
    not empty); 3 with --strict when the acceptance failed and nothing else did; 130 on Ctrl-C and 143 on
    SIGTERM at any point of the run, with one line, after stopping every running tool's process group (a
    stick the audit mounted is unmounted first)."""
    args = parse_args(argv)
    done: list[str] = []  # what was written before an interrupt, for its one line
    try:
        with stopped_by_signals():
            return run_audit(args, done)
    except Interrupted as stop:
        name = signal.Signals(stop.signum).name
        how = " (Ctrl-C)" if stop.signum == signal.SIGINT else ""
        wrote = f"the document was written to {done[0]}, nothing after it was done" if done else \
            "no document was written"
        log(f"interrupted by {name}{how}: the running tools were stopped; {wrote}")
        return 128 + stop.signum


def run_audit(args: argparse.Namespace, done: list[str]) -> int:
    """The run main() describes, after the command line was parsed; appends where the document went to
    `done` once it is written."""
    if args.document is not None and (args.replay is not None or args.capture is not None):
        log("--document takes a saved document: it cannot be combined with --replay or --capture")
        return 2
    if args.replay is not None and not (args.replay / "commands").is_dir():
        log(f"{args.replay} is not a capture (no commands/ folder); make one with --capture")
        return 2
    report = report_setup(args)
    if isinstance(report, str):
        log(report)
        return 2
    if args.send_spool is not None:
        return send_spool(report, args.send_spool)
    profile = saved = None
    for option, load, source in (("--expect", load_profile, args.expect),
                                 ("--document", load_document, args.document)):
        try:
            loaded = load(source) if source is not None else None
        except ProfileError as exc:
            log(f"{option} {exc}")
            return 2
        profile, saved = (loaded, saved) if option == "--expect" else (profile, loaded)
    for refusal in (capture_refusal(args.capture), output_refusal("--output", args.output),
                    output_refusal("--make-profile", args.make_profile)):
        if refusal is not None:
            log(refusal)
            return 2
    status = 0
    capture = args.capture
    if capture is not None:
        failure = prepare_capture(capture, args.replay)
        if failure is not None:
            log(failure)
            status = 1
        if failure is not None or args.replay is not None:
            capture = None  # nothing more to save: failed, or the replayed capture is already copied whole
    if saved is not None:
        document = saved
    else:
        runner = Runner(args.sysfs, args.procfs, args.devfs, args.timeout,
                        capture if capture is not None else capture_folder(args), args.replay)
        runner.nvidia_gpu_list = read_nvidia_gpu_list(args.nvidia_gpu_list)
        document = build_document(runner)
    if args.make_profile is not None and not write_profile(args.make_profile, document):
        status = 1
    if profile is None and args.expect_live is not None:
        profile = live_profile(args.procfs, args.expect_live)
    if profile is not None:
        document = apply_acceptance(document, check_profile(document, profile))
        report_acceptance(document["acceptance"])
    text = render(document)
    if args.output is not None:
        try:
            write_output(args.output, text)
            done.append(str(args.output))
        except OSError as exc:
            log(f"cannot write {args.output}: {exc.strerror or exc}; choose another --output path")
            status = 1
    else:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
            done.append("stdout")
        except OSError as exc:  # a closed pipe
            log(f"cannot write the document to stdout: {exc.strerror or exc}")
            with contextlib.suppress(OSError):  # no second complaint when Python flushes at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    if args.usb and write_to_usb(document, text) is False:
        status = 1
    if not args.no_qr:
        print_qr(document, sys.stdout if args.output is not None else sys.stderr)
    wants_report = args.report is not None or args.spool is not None
    if wants_report and not report_outputs(args, report, document, text):
        status = 1
    if args.strict and status == 0 and not (document.get("acceptance") or {"passed": True})["passed"]:
        status = 3
    return status


if __name__ == "__main__":
    sys.exit(main())
