"""Files in a node's storage on this host, for the web pages: list, generate, save an upload.

These touch only the node's storage directory, never Ray. A generated or uploaded file gets
its manifest computed while it is written and stored with ManifestCache, as the node actor
does, so its first cast does not read it again. A file is written to `<name>.part` and
renamed into place only when complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from nodes.models import Node
from nodes.storage import META_DIR, PART_SUFFIX, Digester, ManifestCache, clean_name, resolve_in

CONTENT_TYPES = ("text", "random", "pattern")
BLOCK = 4 * 1024 * 1024
MAX_LISTED = 500


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    modified: datetime
    sha256: str | None  # None until a cast, upload or generation computed it


def list_files(node: Node, *, limit: int = MAX_LISTED) -> list[FileInfo]:
    """Complete files under the node's storage, by name (no bookkeeping, no partial files)."""
    root = Path(node.storage_root)
    if not root.is_dir():
        return []
    cache = ManifestCache(root)
    found: list[FileInfo] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not (directory == str(root) and d == META_DIR))
        for filename in sorted(names):
            if filename.endswith(PART_SUFFIX):
                continue
            path = Path(directory) / filename
            if path.is_symlink() or not path.is_file():
                continue
            name = path.relative_to(root).as_posix()
            stat = path.stat()
            modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
            found.append(FileInfo(name, stat.st_size, modified, cache.peek_sha256(name, path)))
            if len(found) >= limit:
                return sorted(found, key=lambda f: f.name)
    return sorted(found, key=lambda f: f.name)


def _content(content: str) -> Callable[[int, int], bytes]:
    """(offset, n) -> the generator's bytes at that offset; the same bytes the node actor writes."""
    if content == "random":
        return lambda _offset, n: os.urandom(n)
    if content == "text":
        line = b"CastRay test data: the quick brown fox jumps over the lazy dog 0123456789\n"
        text = line * (BLOCK // len(line) + 2)
        return lambda offset, n: text[offset % len(line) : offset % len(line) + n]
    if content == "pattern":
        pattern = bytes(range(256)) * (BLOCK // 256 + 2)
        return lambda offset, n: pattern[offset % 256 : offset % 256 + n]
    raise ValueError(f"unknown content {content!r}; use text, random or pattern")


def _write(node: Node, name: str, blocks: Iterable[bytes]) -> FileInfo:
    name = clean_name(name)
    root = Path(node.storage_root)
    root.mkdir(parents=True, exist_ok=True)
    path = resolve_in(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + PART_SUFFIX)
    digester = Digester(settings.CASTRAY_CHUNK_SIZE)
    try:
        with open(tmp, "wb") as handle:
            for block in blocks:
                handle.write(block)
                digester.update(block)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    manifest = digester.manifest()
    ManifestCache(root).put(name, path, manifest)
    return FileInfo(name, manifest.size, datetime.now(tz=UTC), manifest.sha256)


def generate_file(*, node: Node, name: str, size: int, content: str) -> FileInfo:
    """Write exactly `size` bytes of `content` (text, random or pattern) as `name`."""
    if size < 0:
        raise ValueError("size must not be negative")
    produce = _content(content)

    def blocks() -> Iterable[bytes]:
        written = 0
        while written < size:
            piece = produce(written, min(BLOCK, size - written))
            written += len(piece)
            yield piece

    return _write(node, name, blocks())


def save_upload(*, node: Node, name: str, chunks: Iterable[bytes]) -> FileInfo:
    """Store an uploaded file's chunks as `name` (the caller has checked its size)."""
    return _write(node, name, chunks)
