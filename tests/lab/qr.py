"""Decode a QR code drawn on a terminal by `qrencode -t ANSIUTF8` (the audit's summary) with zbarimg.

Each character cell holds two module rows: full block = both light, upper half = top light, lower half =
bottom light, space = both dark (qrencode draws light modules in the foreground colour). The modules
become a scaled PGM image that zbarimg (zbar-tools) reads.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

CELLS = {"\u2588": (True, True), "\u2580": (True, False), "\u2584": (False, True), " ": (False, False)}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SCALE = 6
QUIET = 4


def qr_rows(drawing: str) -> list[list[bool]]:
    """Return the module rows (True = light) of an ANSIUTF8 drawing; lines with other text are skipped."""
    rows: list[list[bool]] = []
    for line in drawing.splitlines():
        plain = ANSI.sub("", line)
        if not plain or any(char not in CELLS for char in plain):
            continue
        cells = [CELLS[char] for char in plain]
        rows.append([top for top, _ in cells])
        rows.append([bottom for _, bottom in cells])
    return rows


def to_pgm(rows: list[list[bool]]) -> bytes:
    """Return the modules as a binary PGM, each module SCALE pixels wide, with a light quiet zone."""
    width = max(len(row) for row in rows) + 2 * QUIET
    padded = [[True] * width] * QUIET + [[True] * QUIET + row + [True] * (width - QUIET - len(row))
                                         for row in rows] + [[True] * width] * QUIET
    pixels = bytearray()
    for row in padded:
        line = b"".join((b"\xff" if light else b"\x00") * SCALE for light in row)
        pixels += line * SCALE
    return b"P5\n%d %d\n255\n" % (width * SCALE, len(padded) * SCALE) + bytes(pixels)


def decode_drawing(drawing: str, workdir: Path) -> str:
    """Return the text of the QR code in an ANSIUTF8 drawing, decoded by zbarimg; fail clearly if none."""
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        raise RuntimeError("zbarimg is not installed; apt-get install zbar-tools (./test.sh does)")
    rows = qr_rows(drawing)
    if not rows:
        raise ValueError("no QR drawing found in the text")
    image = workdir / "qr.pgm"
    image.write_bytes(to_pgm(rows))
    result = subprocess.run([zbarimg, "--raw", "-q", "-Sbinary", str(image)], capture_output=True)
    if result.returncode != 0:
        raise ValueError(f"zbarimg found no QR code in {image} (exit {result.returncode})")
    return result.stdout.decode().removesuffix("\n")
