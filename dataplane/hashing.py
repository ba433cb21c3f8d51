"""Checksums and durability on a receiver's file descriptors.

SHA-256 of a stream on its own thread (`SliceHasher`) or of a file read back (`sha_of_fd`),
CRC-32C of a range, and the directory fsync that makes a rename durable. Shared by the
streaming TCP receiver and by `PartFile`. Must not import Django.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path

from dataplane.storage import checksum

# A chunk is received, checksummed and written a slice at a time, so that each pass over its
# bytes finds them in the CPU cache; SHA-256 runs on a thread of its own over a ring of slices.
SLICE = 256 * 1024
RING = 8
# Reading a file back to hash it: large reads, so hashlib releases the GIL for long stretches.
READ_BACK = 8 * 1024 * 1024


class SliceHasher:
    """SHA-256 of the in-order stream on a thread of its own, over a ring of receive slices.

    hashlib releases the GIL for large buffers, so hashing slice i runs on one core while slice
    i+1 is received, checksummed and written on another. A slice returns to the ring once hashed.
    """

    def __init__(self, slice_size: int, slices: int = RING) -> None:
        self.views = [memoryview(bytearray(slice_size)) for _ in range(slices)]
        self.free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(slices):
            self.free.put(i)
        self.work: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self.sha = hashlib.sha256()
        self.thread = threading.Thread(target=self._run, daemon=True, name="castray-sha256")
        self.thread.start()

    def _run(self) -> None:
        while (item := self.work.get()) is not None:
            slot, length = item
            self.sha.update(self.views[slot][:length])
            self.free.put(slot)

    def take(self) -> tuple[int, memoryview]:
        slot = self.free.get()
        return slot, self.views[slot]

    def give(self, slot: int, length: int, *, hash_it: bool) -> None:
        if hash_it:
            self.work.put((slot, length))
        else:
            self.free.put(slot)

    def close(self) -> str:
        self.work.put(None)
        self.thread.join()
        return self.sha.hexdigest()


def crc_of_range(fd: int, offset: int, length: int) -> int:
    return checksum(os.pread(fd, length, offset))


def sha_of_fd(fd: int, size: int) -> str:
    """SHA-256 of the first `size` bytes of an open file (fewer if it is shorter)."""
    sha = hashlib.sha256()
    offset = 0
    while offset < size:
        data = os.pread(fd, min(READ_BACK, size - offset), offset)
        if not data:
            break
        sha.update(data)
        offset += len(data)
    return sha.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable: the directory entry is the directory's data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
