"""Read the files in the root folder of a FAT32 image (the lab's USB stick) without mounting it.

The stick is made with `busybox mkdosfs` (FAT32); after the guest ran `audit --usb`, the test reads the
file the audit wrote straight from the image. Long (VFAT) names are joined from their LFN entries.
"""

from __future__ import annotations

import struct
from pathlib import Path

ATTR_LFN = 0x0F
ATTR_DIRECTORY = 0x10
ATTR_VOLUME = 0x08


class FatImage:
    """A FAT32 image: its geometry from the boot sector and a way to read cluster chains."""

    def __init__(self, data: bytes):
        self.data = data
        self.sector = struct.unpack_from("<H", data, 11)[0]
        self.per_cluster = data[13]
        reserved = struct.unpack_from("<H", data, 14)[0]
        fats = data[16]
        fat_sectors = struct.unpack_from("<I", data, 36)[0]
        if struct.unpack_from("<H", data, 22)[0] != 0 or fat_sectors == 0:
            raise ValueError("not a FAT32 image")
        self.root_cluster = struct.unpack_from("<I", data, 44)[0]
        self.fat_offset = reserved * self.sector
        self.data_offset = (reserved + fats * fat_sectors) * self.sector

    def chain(self, cluster: int) -> bytes:
        """Return the bytes of the cluster chain that starts at `cluster`."""
        size = self.sector * self.per_cluster
        parts, seen = [], set()
        while 2 <= cluster < 0x0FFFFFF8 and cluster not in seen:
            seen.add(cluster)
            start = self.data_offset + (cluster - 2) * size
            parts.append(self.data[start: start + size])
            cluster = struct.unpack_from("<I", self.data, self.fat_offset + 4 * cluster)[0] & 0x0FFFFFFF
        return b"".join(parts)

    def root_files(self) -> dict[str, bytes]:
        """Return {name: content} of the regular files in the root folder."""
        directory = self.chain(self.root_cluster)
        files: dict[str, bytes] = {}
        long_parts: list[str] = []
        for offset in range(0, len(directory), 32):
            entry = directory[offset: offset + 32]
            if entry[0] == 0:
                break
            if entry[0] == 0xE5:
                long_parts = []
                continue
            if entry[11] == ATTR_LFN:
                chars = entry[1:11] + entry[14:26] + entry[28:32]
                long_parts.insert(0, chars.decode("utf-16-le").split("\0")[0].rstrip("\uffff"))
                continue
            short = entry[:8].decode("ascii", "replace").rstrip() + (
                "." + entry[8:11].decode("ascii", "replace").rstrip() if entry[8:11].strip() else "")
            name = "".join(long_parts) or short
            long_parts = []
            if entry[11] & (ATTR_DIRECTORY | ATTR_VOLUME):
                continue
            high, low = struct.unpack_from("<H", entry, 20)[0], struct.unpack_from("<H", entry, 26)[0]
            size = struct.unpack_from("<I", entry, 28)[0]
            files[name] = self.chain((high << 16) | low)[:size]
        return files


def root_files(image: Path) -> dict[str, bytes]:
    """Return {name: content} of the files in the root folder of the FAT32 image at `image`."""
    return FatImage(image.read_bytes()).root_files()
