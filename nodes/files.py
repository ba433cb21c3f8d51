"""Reading a node's storage from the control plane: where it is, what it holds.

The web server reaches a node's files directly only when the storage directory is on this
host. Files on other hosts go through the node's actor, which only the worker calls.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from castray_site.errors import DomainError
from dataplane.storage import META_DIR, PART_SUFFIX, ManifestCache, UnsafePath, resolve_in
from nodes.models import Node


class StorageError(DomainError):
    """A file operation on a node's storage that cannot be done."""


class NotOnThisHost(StorageError):
    """The node's storage directory is not on the host that runs the web server."""

    status = 409

    def __init__(self, node: Node) -> None:
        from clusters.models import Cluster  # here: clusters' models refer to nodes'

        self.node = node
        cluster = Cluster.objects.filter(active=True).first()
        if cluster is None or cluster.status != Cluster.Status.CONNECTED:
            # A node's actor creates its storage directory: while Ray is down, a local storage
            # that was never used does not exist yet, and "not on this host" would mislead.
            state = cluster.status if cluster else Cluster.Status.DISCONNECTED
            why = f": {cluster.last_error}" if cluster and cluster.last_error else ""
            message = (
                f"{node.name}'s storage ({node.storage_root}) does not exist yet, and the worker is not "
                f"connected to Ray (the cluster is {state}{why}); the node's actor creates it once Ray is up"
            )
        else:
            message = (
                f"{node.name}'s storage ({node.storage_root}) is not on this host; files on other hosts "
                "go through the worker, which this server does not do yet"
            )
        super().__init__("node", message)


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    modified: datetime
    sha256: str | None
    partial: bool


def local_root(node: Node) -> Path:
    """The node's storage root if it is a directory here; `NotOnThisHost` otherwise."""
    root = Path(node.storage_root)
    if not root.is_dir():
        raise NotOnThisHost(node)
    return root.resolve()


def _info(root: Path, name: str, path: Path, *, partial: bool, st: os.stat_result) -> FileInfo:
    sha = None if partial else ManifestCache(root).peek_sha256(name, path)
    return FileInfo(
        name=name,
        size=st.st_size,
        modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
        sha256=sha,
        partial=partial,
    )


def file_info(root: Path, name: str) -> FileInfo:
    """One file's size, time and cached SHA-256. Raises UnsafePath or FileNotFoundError."""
    path = resolve_in(root, name)
    if path.is_dir():
        raise IsADirectoryError(f"{name} is a directory; list its files instead")
    st = path.stat()
    return _info(root, path.relative_to(root).as_posix(), path, partial=False, st=st)


def list_files(root: Path, *, compute_sha256: bool = False, chunk_size: int = 0) -> list[FileInfo]:
    """Every file under `root`, sorted by name; CastRay's bookkeeping is hidden.

    Files still being received (`<name>.part`) are listed with `partial=True`. Symbolic links
    are listed only when they lead to a file inside the storage. With `compute_sha256`, files
    whose checksum is not cached yet are hashed now (and the result cached).
    """
    cache = ManifestCache(root)
    found: list[FileInfo] = []
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        if here == root:
            dirs[:] = [d for d in dirs if d != META_DIR]
        dirs.sort()
        for filename in files:
            path = here / filename
            name = path.relative_to(root).as_posix()
            partial = filename.endswith(PART_SUFFIX)
            try:
                if path.is_symlink():
                    target = path.resolve()
                    if root not in target.parents or not target.is_file():
                        continue
                st = path.stat()
            except OSError:
                continue  # removed while we looked, or a dangling link
            info = _info(root, name, path, partial=partial, st=st)
            if compute_sha256 and info.sha256 is None and not partial and chunk_size:
                try:
                    sha = cache.get(name, path, chunk_size).sha256
                except OSError:
                    sha = None
                info = FileInfo(info.name, info.size, info.modified, sha, False)
            found.append(info)
    found.sort(key=lambda f: f.name)
    return found


def source_file_problem(node: Node, name: str) -> str | None:
    """Why `name` cannot be cast from `node`, if the storage is here and says so; None if fine.

    Where the storage is on another host, the actor checks when the cast starts.
    """
    root = Path(node.storage_root)
    if not root.is_dir():
        return None
    try:
        path = resolve_in(root, name)
    except UnsafePath as exc:
        return str(exc)
    if not path.is_file() and not path.is_dir():  # a directory is cast as one version
        return f"{name} does not exist in {node.name}'s storage"
    return None
