from __future__ import annotations

import os
from pathlib import Path

from nodes.models import Node
from transfers.models import Transfer


def write_file(node: Node, name: str, data: bytes) -> Path:
    path = Path(node.storage_root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def random_file(node: Node, name: str, size: int) -> Path:
    path = Path(node.storage_root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            handle.write(block)
            left -= len(block)
    return path


def finished(transfer: Transfer):  # type: ignore[no-untyped-def]
    def check() -> bool:
        transfer.refresh_from_db()
        return transfer.status in Transfer.FINAL

    return check
