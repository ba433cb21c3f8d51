"""Writes to a node's storage from the control plane: uploads, generated files, deletion.

Every new file is written in full to a staging file under the storage's `.castray/` directory
(never listed, never cast), fsynced, and only then given its final name, with its manifest
recorded so that casting it later does not hash it again. Nothing appears under a final name
unless it is complete.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.db.models import Q

from castray_site.env import format_size
from dataplane.generator import CONTENT_TYPES, write_generated
from dataplane.partfile import remove_part
from dataplane.storage import META_DIR, PART_SUFFIX, Manifest, ManifestCache, UnsafePath, clean_name, resolve_in
from nodes.files import FileInfo, StorageError, file_info, local_root
from nodes.models import Node

STAGING_DIR = "staging"


def staging_path(root: Path) -> Path:
    """A fresh, unique staging file name inside the storage (same file system: rename is atomic)."""
    directory = root / META_DIR / STAGING_DIR
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{uuid.uuid4().hex}.staged"


def _checked_name(name: str, field: str) -> str:
    try:
        return clean_name(name)
    except UnsafePath as exc:
        raise StorageError(field, str(exc)) from None


def file_place(*, root: Path, name: str, staged: Path, manifest: Manifest, overwrite: bool = False) -> FileInfo:
    """Give a complete staged file its final `name` and record its manifest."""
    cleaned = _checked_name(name, "name")
    try:
        path = resolve_in(root, cleaned)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Again after creating directories: a symlink could have appeared on the way.
        path = resolve_in(root, cleaned)
    except UnsafePath as exc:
        raise StorageError("name", str(exc)) from None
    except (FileExistsError, NotADirectoryError):
        raise StorageError("name", f"a part of {cleaned}'s directory is a file; choose another name", status=409)
    if path.is_dir():
        raise StorageError("name", f"{cleaned} is a directory; choose another name", status=409)
    if overwrite:
        os.replace(staged, path)
    else:
        # A hard link fails if the name exists, so two uploads of one name cannot both win.
        try:
            os.link(staged, path)
        except FileExistsError:
            raise StorageError(
                "name", f"{cleaned} already exists; choose another name or set overwrite", status=409
            ) from None
        staged.unlink()
    ManifestCache(root).put(cleaned, path, manifest)
    return file_info(root, cleaned)


def check_room(root: Path, size: int, *, field: str = "size", too_big_status: int = 400) -> None:
    """Refuse a file over CASTRAY_MAX_UPLOAD_SIZE or larger than the free space."""
    limit = settings.CASTRAY_MAX_UPLOAD_SIZE
    if size > limit:
        raise StorageError(
            field,
            f"{format_size(size)} is more than the limit of {format_size(limit)} (CASTRAY_MAX_UPLOAD_SIZE)",
            status=too_big_status,
        )
    free = shutil.disk_usage(root).free
    if size > free:
        raise StorageError(field, f"the node's storage has only {format_size(free)} free; free some space", status=507)


def file_generate(*, node: Node, name: str, size: int, content: str, overwrite: bool = False) -> FileInfo:
    """Write a file of exactly `size` bytes of `content` into the node's storage."""
    if content not in CONTENT_TYPES:
        raise StorageError("content_type", f"content_type must be one of {', '.join(CONTENT_TYPES)}")
    if size < 0:
        raise StorageError("size", "size must not be negative")
    cleaned = _checked_name(name, "file_name")
    root = local_root(node)
    check_room(root, size)
    try:
        resolve_in(root, cleaned)
    except UnsafePath as exc:
        raise StorageError("file_name", str(exc)) from None
    staged = staging_path(root)
    try:
        manifest = write_generated(staged, size=size, content=content, chunk_size=settings.CASTRAY_CHUNK_SIZE)
        return file_place(root=root, name=cleaned, staged=staged, manifest=manifest, overwrite=overwrite)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StorageError("size", "the node's storage ran out of space while writing", status=507) from None
        raise
    finally:
        staged.unlink(missing_ok=True)


def file_delete(*, node: Node, name: str) -> None:
    root = local_root(node)
    if name.endswith(PART_SUFFIX):
        _part_delete(node, root, name[: -len(PART_SUFFIX)])
        return
    cleaned = _checked_name(name, "name")
    try:
        path = resolve_in(root, cleaned)
    except UnsafePath as exc:
        raise StorageError("name", str(exc)) from None
    if path.is_dir():
        raise StorageError("name", f"{cleaned} is a directory; delete the files in it one by one")
    try:
        path.unlink()
    except FileNotFoundError:
        raise StorageError("name", f"{cleaned} does not exist in {node.name}'s storage", status=404) from None


def _part_delete(node: Node, root: Path, name: str) -> None:
    """Remove a failed receive's `.part` and chunk record, unless a cast still to finish resumes it."""
    from transfers.models import Target, Transfer  # transfers' models refer to nodes'

    cleaned = _checked_name(name, "name")
    active = Target.objects.filter(
        node=node, transfer__status__in=(Transfer.Status.QUEUED, Transfer.Status.RUNNING)
    ).filter(Q(transfer__dest_name=cleaned) | Q(transfer__dest_name="", transfer__file_name=cleaned))
    if active.exists():
        raise StorageError("name", f"{cleaned}{PART_SUFFIX} is being received or will be resumed by a cast", status=409)
    try:
        removed = remove_part(root, cleaned)
    except UnsafePath as exc:
        raise StorageError("name", str(exc)) from None
    if not removed:
        raise StorageError("name", f"{cleaned}{PART_SUFFIX} does not exist in {node.name}'s storage", status=404)
