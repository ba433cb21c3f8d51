from __future__ import annotations

import hashlib
import os
from pathlib import Path

from nodes.models import Node
from transfers.models import Target, Transfer


def write_file(node: Node, name: str, data: bytes) -> Path:
    path = Path(node.storage_root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_random(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            handle.write(block)
            left -= len(block)
    return path


def random_file(node: Node, name: str, size: int) -> Path:
    return write_random(Path(node.storage_root) / name, size)


def finished(transfer: Transfer):  # type: ignore[no-untyped-def]
    def check() -> bool:
        transfer.refresh_from_db()
        return transfer.status in Transfer.FINAL

    return check


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def receiving_rate(target: Target) -> float:
    """Bytes per second while the target's receiver received: from its first rate sample (the
    receiver's own start) to its last (its own finish).

    What a cap governs. The record's started_at..finished_at also holds the worker's claiming
    and planning and the connection set-up, which on a loaded machine take seconds of a
    four-second cast.
    """
    (start, first), (end, last) = target.samples[0], target.samples[-1]
    assert end > start, target.samples
    return (last - first) / (end - start)
