"""The file generator: exact sizes, `text` / `random` / `pattern` content, fast for large sizes.

Free of Django (like nodes/storage.py), so a node actor can use the same code for storage on
other hosts. The file is written in 4 MiB blocks to a staging file, its manifest (SHA-256 and
per-chunk CRC32) is computed while writing, and it is renamed into place when complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

from dataplane.storage import Digester, Manifest

BLOCK = 4 * 1024 * 1024
CONTENT_TYPES = ("text", "random", "pattern")


class Preset(TypedDict):
    size_bytes: int
    size_formatted: str
    description: str


# The earlier CastRay's presets (its KB/MB were 1024-based).
PRESETS: dict[str, Preset] = {
    "tiny": {"size_bytes": 1024, "size_formatted": "1 KB", "description": "Tiny file (1 KB) for quick checks"},
    "small": {"size_bytes": 10 * 1024, "size_formatted": "10 KB", "description": "Small file (10 KB)"},
    "medium": {"size_bytes": 100 * 1024, "size_formatted": "100 KB", "description": "Medium file (100 KB)"},
    "large": {"size_bytes": 1024**2, "size_formatted": "1 MB", "description": "Large file (1 MB)"},
    "huge": {"size_bytes": 10 * 1024**2, "size_formatted": "10 MB", "description": "Huge file (10 MB)"},
    "massive": {
        "size_bytes": 100 * 1024**2,
        "size_formatted": "100 MB",
        "description": "Massive file (100 MB) for throughput tests",
    },
}

# The same bytes the node actor's generator writes: byte k of a file is unit[k % len(unit)].
_TEXT_LINE = b"CastRay test data: the quick brown fox jumps over the lazy dog 0123456789\n"
_PATTERN = bytes(range(256))


def format_size(size: int) -> str:
    """1024-based, as the presets are: `10 MB`, `1.5 GB`, `512 B`."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def block_source(content: str) -> Callable[[int], bytes | memoryview]:
    """A function giving the next `n` (<= BLOCK) bytes of the chosen content."""
    if content == "random":
        return os.urandom
    if content == "text":
        unit = _TEXT_LINE
    elif content == "pattern":
        unit = _PATTERN
    else:
        raise ValueError(f"content must be one of {', '.join(CONTENT_TYPES)}")
    # One block built once; every block of the file is (a prefix of) the same bytes. Its length
    # is a multiple of the unit, so the content repeats seamlessly across blocks.
    block = memoryview(unit * (BLOCK // len(unit)))
    return lambda n: block[:n]


def write_generated(path: Path, *, size: int, content: str, chunk_size: int) -> Manifest:
    """Write exactly `size` bytes of `content` to `path` (a new staging file), fsync it, and
    return its manifest. The caller renames it into place."""
    if size < 0:
        raise ValueError("size must not be negative")
    source = block_source(content)
    digester = Digester(chunk_size)
    with open(path, "xb") as handle:
        left = size
        while left:
            piece = source(min(BLOCK, left))
            handle.write(piece)
            digester.update(piece)
            left -= len(piece)
        handle.flush()
        os.fsync(handle.fileno())
    return digester.manifest()
