"""Ray tasks that read a node's storage on the node's own host. Nothing here imports Django.

The worker sends these functions by value (cloudpickle), so hosts that only received the
shipped `nodes` and `transfers` packages can run them; names are confined to the storage root
exactly as the actor confines them (`dataplane.storage.resolve_in`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def stat_file(root: str, name: str) -> dict[str, Any]:
    from dataplane.storage import resolve_in

    path = resolve_in(Path(root), name)
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not a file in this node's storage")
    st = path.stat()
    return {"size": st.st_size, "modified": st.st_mtime}


def read_range(root: str, name: str, offset: int, length: int) -> bytes:
    from dataplane.storage import resolve_in

    with open(resolve_in(Path(root), name), "rb") as handle:
        handle.seek(offset)
        return handle.read(length)
