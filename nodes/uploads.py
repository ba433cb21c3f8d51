"""Uploads streamed straight into a node's storage, hashed on the way, bounded in size.

Django's default handlers keep small uploads in memory and copy large ones through /tmp; this
handler writes each uploaded file once, into a staging file inside the node's storage, and
computes its manifest while the bytes arrive. The view then gives it its final name
(nodes.file_services.file_place) or removes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import IO, Any

from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest

from castray_site.env import format_size
from castray_site.errors import DomainError
from dataplane.storage import Digester, Manifest
from nodes.file_services import staging_path

# Multipart framing around the file: boundaries, part headers, the other form fields.
FORM_OVERHEAD = 64 * 1024


class UploadTooLarge(DomainError):
    status = 413

    def __init__(self, limit: int) -> None:
        limit_text = format_size(limit)
        super().__init__("file", f"the upload is larger than the limit of {limit_text} (CASTRAY_MAX_UPLOAD_SIZE)")


class UploadNoRoom(DomainError):
    status = 507

    def __init__(self, free: int | None = None) -> None:
        said = f": it has {format_size(free)} free" if free is not None else " while writing the upload"
        super().__init__("file", f"no space left on device (ENOSPC) in the node's storage{said}; free some space")


def free_space(root: Path) -> int:
    return shutil.disk_usage(root).free


class StagedUpload(UploadedFile):
    """An uploaded file already on disk in the node's storage, with its manifest."""

    def __init__(self, *, path: Path, name: str, size: int, content_type: str, manifest: Manifest) -> None:
        super().__init__(file=None, name=name, content_type=content_type, size=size)
        self.path = path
        self.manifest = manifest

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        # The handler closed the staging file when it was complete; there is no handle here.
        # Django closes every parsed file when a request fails (too many files, for one).
        return None


class StorageUploadHandler(FileUploadHandler):
    def __init__(self, request: HttpRequest, *, root: Path, limit: int, chunk_size: int) -> None:
        super().__init__(request)
        self.root = root
        self.limit = limit
        self.chunk_size = chunk_size
        self.handle: IO[bytes] | None = None
        self.path: Path | None = None
        self.digester = Digester(chunk_size)
        self.received = 0
        # Every file this request staged, so the view can remove what it does not keep.
        self.staged: list[Path] = []

    def handle_raw_input(
        self, input_data: Any, META: dict[str, Any], content_length: int, boundary: bytes, encoding: str | None = None
    ) -> None:
        # Refuse before reading a byte when the client says how much it will send.
        if content_length and content_length > self.limit + FORM_OVERHEAD:
            raise UploadTooLarge(self.limit)
        if content_length:
            free = free_space(self.root)
            if content_length > free + FORM_OVERHEAD:
                raise UploadNoRoom(free)
        return None

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.path = staging_path(self.root)
        self.staged.append(self.path)
        self.handle = open(self.path, "xb")  # noqa: SIM115 - closed in file_complete or cleanup
        self.digester = Digester(self.chunk_size)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        assert self.handle is not None
        self.received += len(raw_data)
        if self.received > self.limit:
            self.cleanup()
            raise UploadTooLarge(self.limit)
        with self.no_room_is_507():
            self.handle.write(raw_data)
        self.digester.update(raw_data)
        return None

    def file_complete(self, file_size: int) -> StagedUpload | None:
        if self.handle is None or self.path is None:
            return None
        with self.no_room_is_507():
            self.handle.flush()
            os.fsync(self.handle.fileno())
        self.handle.close()
        self.handle = None
        return StagedUpload(
            path=self.path,
            name=self.file_name or "upload",
            size=self.received,
            content_type=self.content_type or "application/octet-stream",
            manifest=self.digester.manifest(),
        )

    @contextlib.contextmanager
    def no_room_is_507(self) -> Any:
        """A disk that fills while the bytes arrive: the staged file goes and the client hears why."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self.cleanup()
            raise UploadNoRoom() from None

    def upload_interrupted(self) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Close and remove every staged file (the view calls this for what it did not keep)."""
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()
            self.handle = None
        for path in self.staged:
            path.unlink(missing_ok=True)
