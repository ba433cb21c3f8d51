"""A file being received: `<name>.part`, its chunk record, verification and the final rename.

Used by the object-store and UDP modes (the TCP receiver in engine.py streams, hashing as it
goes). Must not import Django.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dataplane import wire
from dataplane.storage import META_DIR, PART_SUFFIX, Manifest, ManifestCache, checksum, chunk_count, resolve_in


class PartFile:
    """Chunks written at their offsets, each checked against its CRC32, then verified whole."""

    def __init__(self, root: Path, name: str, size: int, sha256: str, chunk_size: int, *, record: bool = True) -> None:
        self.root = root
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.chunk_size = chunk_size
        self.count = chunk_count(size, chunk_size)
        self.dest = resolve_in(root, name)
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.part = self.dest.with_name(self.dest.name + PART_SUFFIX)
        self.record_path = root / META_DIR / "partial" / (hashlib.sha1(name.encode()).hexdigest() + ".json")
        self.keep_record = record
        self.have = self._load_record() if record else wire.new_bitmap(self.count)
        self.crcs: list[int | None] = [None] * self.count
        self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(self.fd).st_size != size:
            os.ftruncate(self.fd, size)
        self.received = 0

    def already_complete(self, manifests: ManifestCache) -> bool:
        if not self.dest.is_file() or self.dest.stat().st_size != self.size:
            return False
        sha = manifests.peek_sha256(self.name, self.dest) or manifests.get(self.name, self.dest, self.chunk_size).sha256
        return sha == self.sha256

    def held_bytes(self) -> int:
        return sum(self.chunk_len(i) for i in range(self.count) if wire.bit_get(self.have, i))

    def chunk_len(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def write(self, index: int, data: bytes | memoryview, crc: int) -> None:
        if not 0 <= index < self.count or len(data) != self.chunk_len(index):
            raise wire.ProtocolError(f"chunk {index} of {len(data)} bytes does not fit the file")
        actual = checksum(data)
        if actual != crc:
            raise wire.ProtocolError(f"chunk {index} failed its checksum (crc32c {actual:08x}, expected {crc:08x})")
        os.pwrite(self.fd, data, index * self.chunk_size)
        if not wire.bit_get(self.have, index):
            wire.bit_set(self.have, index)
            self.received += len(data)
        self.crcs[index] = crc

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if not wire.bit_get(self.have, i)]

    def save_record(self) -> None:
        if not self.keep_record:
            return
        os.fdatasync(self.fd)
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "sha256": self.sha256,
                    "size": self.size,
                    "chunk_size": self.chunk_size,
                    "have": wire.bitmap_to_hex(self.have),
                }
            )
        )
        os.replace(tmp, self.record_path)

    def finish(self, manifests: ManifestCache) -> str:
        """Verify the whole file, fsync and rename into place; return its SHA-256."""
        missing = self.missing()
        if missing:
            self.save_record()
            raise ConnectionError(f"{len(missing)} of {self.count} chunks are missing")
        sha = hashlib.sha256()
        offset = 0
        while offset < self.size:
            data = os.pread(self.fd, min(8 * 1024 * 1024, self.size - offset), offset)
            sha.update(data)
            offset += len(data)
        digest = sha.hexdigest()
        if digest != self.sha256:
            self.abandon(delete=True)
            raise ValueError(f"SHA-256 mismatch: got {digest}, expected {self.sha256}")
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.replace(self.part, self.dest)
        dir_fd = os.open(self.dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.record_path.unlink(missing_ok=True)
        # Chunks resumed from an earlier attempt have no CRC here: the cache computes them
        # when this node first sends the file on.
        if all(c is not None for c in self.crcs):
            manifests.put(self.name, self.dest, Manifest(self.size, digest, self.chunk_size, list(self.crcs)))  # type: ignore[arg-type]
        return digest

    def abandon(self, *, delete: bool = False) -> None:
        if self.fd >= 0:
            if not delete:
                self.save_record()
            os.close(self.fd)
            self.fd = -1
        if delete:
            self.part.unlink(missing_ok=True)
            self.record_path.unlink(missing_ok=True)

    def _load_record(self) -> bytearray:
        try:
            stored = json.loads(self.record_path.read_text())
            if (
                self.part.exists()
                and stored["sha256"] == self.sha256
                and stored["size"] == self.size
                and stored["chunk_size"] == self.chunk_size
            ):
                return wire.bitmap_from_hex(stored["have"], self.count)
        except (OSError, ValueError, KeyError, TypeError, wire.ProtocolError):
            pass
        return wire.new_bitmap(self.count)
