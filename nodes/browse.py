"""A node's storage as directories: what one directory holds, and every directory castable as one.

Names come from people (a page's `?dir=`): each is checked by `resolve_in`, the one path check
of the storage, so nothing here joins a path that may leave it. CastRay's bookkeeping (the
storage's META_DIR, partial files, the links a published version is swapped in through) is hidden.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dataplane.storage import META_DIR, PART_SUFFIX, ManifestCache, resolve_in

LINK_SUFFIX = ".castray-link"  # dataplane/tree.py's publish step: `.<name>.castray-link`


@dataclass(frozen=True)
class DirEntry:
    name: str  # the last part
    path: str  # relative to the storage root, '/'-separated
    is_dir: bool
    size: int  # a directory: the bytes of its regular files, at any depth
    files: int  # a directory: its regular files, at any depth
    modified: datetime
    partial: bool = False
    sha256: str | None = None  # a file whose SHA-256 is cached


def _hidden(root: Path, here: Path, name: str) -> bool:
    return (here == root and name == META_DIR) or name.endswith(LINK_SUFFIX)


def _inside(root: Path, path: Path) -> bool:
    resolved = path.resolve()
    return resolved == root or root in resolved.parents


def tree_totals(path: Path) -> tuple[int, int]:
    """Regular files under the directory `path` (followed if a link) and their bytes.

    Counted as a directory cast's manifest counts them: links inside are not files, and are not followed.
    """
    files = size = 0
    for directory, _dirs, names in os.walk(path.resolve()):
        for name in names:
            item = os.path.join(directory, name)
            try:
                st = os.lstat(item)
            except OSError:
                continue  # removed while we looked
            if stat.S_ISREG(st.st_mode) and not name.endswith(PART_SUFFIX):
                files += 1
                size += st.st_size
    return files, size


def _entry(root: Path, path: Path) -> DirEntry | None:
    try:
        if path.is_symlink() and not _inside(root, path):
            return None  # leads outside the storage: not shown, not followed
        st = path.stat()
    except OSError:
        return None  # removed while we looked, or a dangling link
    rel = path.relative_to(root).as_posix()
    modified = datetime.fromtimestamp(st.st_mtime, tz=UTC)
    if path.is_dir():
        files, size = tree_totals(path)
        return DirEntry(path.name, rel, True, size, files, modified)
    partial = path.name.endswith(PART_SUFFIX)
    sha = None if partial else ManifestCache(root).peek_sha256(rel, path)
    return DirEntry(path.name, rel, False, st.st_size, 0, modified, partial=partial, sha256=sha)


def list_dir(root: Path, name: str = "") -> list[DirEntry]:
    """What the directory `name` (empty: the storage root) holds, directories first, each by name.

    Raises UnsafePath for a name that leaves the storage, NotADirectoryError or FileNotFoundError.
    """
    root = root.resolve()
    here = resolve_in(root, name) if name else root
    if not here.is_dir():
        if here.exists():
            raise NotADirectoryError(f"{name} is a file, not a directory")
        raise FileNotFoundError(f"{name} does not exist in this node's storage")
    found = [
        e for item in os.scandir(here) if not _hidden(root, here, item.name) and (e := _entry(root, here / item.name))
    ]
    found.sort(key=lambda e: (not e.is_dir, e.name))
    return found


def castable_dirs(root: Path) -> list[DirEntry]:
    """Every directory of the storage that holds a file, at any depth, by path.

    A directory that is a link (a received directory's published version) is listed, not walked into.
    """
    root = root.resolve()
    found: list[DirEntry] = []
    for directory, dirs, _names in os.walk(root):
        here = Path(directory)
        dirs[:] = sorted(d for d in dirs if not _hidden(root, here, d))
        for name in list(dirs):
            entry = _entry(root, here / name)
            if entry is not None and entry.is_dir and entry.files:
                found.append(entry)
    found.sort(key=lambda e: e.path)
    return found
