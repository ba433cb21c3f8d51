"""Directory casts over TCP: a whole tree on one connection per hop, down a relay tree.

    sender   -> receiver : MAGIC, signed JSON offer {"kind": "tree", name, manifest, mirror, children, ...}
    receiver -> sender   : {"status": "ready", "need": [file indices]} | {"status": "error", ...}
    sender   -> receiver : frames (file index, offset, length, crc32c) + bytes, small files one
                           frame each, back to back with no round trip; then an END frame
    receiver -> sender   : {"results": {...}} for the receiver and its subtree

A receiver asks only for files it does not already hold at the same path with the same
SHA-256 (in its current version, or verified in its staging area by an earlier attempt),
writes them into the staging version, verifies each file's SHA-256 as its last frame lands,
forwards frames to the children that need them, and publishes the version once every file
is verified (dataplane/tree.py). Must not import Django.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import queue
import select
import shutil
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dataplane import wire
from dataplane.contract import Hop, Results, TargetResult, fail_subtree, results_from_wire, results_to_wire
from dataplane.flow import Counters, Limits, Progress
from dataplane.storage import ManifestCache, checksum, no_space
from dataplane.tree import (
    Entry,
    TreeManifest,
    adopt_verified,
    assemble,
    current_version,
    drop_staging,
    journal_of,
    publish,
    read_journal,
    read_sums,
    sha_of,
    staging_dir,
    verified_elsewhere,
    write_sums,
)

log = logging.getLogger("castray.tree")
FRAME = 1024 * 1024  # what one frame of a large file carries
QUEUE_FRAMES = 64  # frames a relay holds for a slow child before it slows down itself
Frame = tuple[int, int, int, bytes | memoryview]  # file index, offset, crc, data


def local_frames(paths: dict[int, Path], manifest: TreeManifest, limits: Limits, transfer: int) -> Iterator[Frame]:
    """Frames of the files in `paths` (file index -> where this node holds it).

    Every frame is read into the same buffer: a frame's data is valid until the next frame
    is taken (`send_tree` sends each before it asks for the next). A new buffer per frame cost
    a page fault for each of its pages: a third of the actors' time on 2,000 small files.
    """
    buffer = memoryview(bytearray(FRAME))
    for index, path in sorted(paths.items()):
        entry = manifest.entries[index]
        with open(path, "rb", buffering=0) as handle:
            offset = 0
            while offset < entry.size:
                limits.check(transfer)
                got = handle.readinto(buffer[: min(FRAME, entry.size - offset)])
                if not got:
                    raise ConnectionError(f"{entry.path} shrank while it was being sent")
                data = buffer[:got]
                yield index, offset, checksum(data), data
                offset += got


def send_tree(
    hop: Hop,
    offer: dict[str, Any],
    frames_for: Any,  # callable(need: list[int]) -> Iterator[Frame]
    *,
    secret: bytes,
    limits: Limits,
    counters: Counters,
    answered: threading.Event | None = None,
) -> Results:
    """Offer the tree to `hop`, stream the frames of the files it needs, return its subtree's results."""
    transfer = int(offer["transfer"])
    offer = {**offer, "target": hop.target, "children": [c.to_wire() for c in hop.children]}
    offer["mac"] = wire.sign(secret, offer)
    try:
        with socket.create_connection((hop.address, hop.port), timeout=10) as sock:
            sock.settimeout(limits.io_timeout)
            wire.send_json(sock, offer, magic=True)
            answer = wire.recv_json(sock)
            if isinstance(answer.get("results"), dict):
                return results_from_wire(answer["results"])
            if answer.get("status") != "ready":
                return fail_subtree(hop, f"{hop.node} refused the tree: {answer.get('error')}")
            need = [int(i) for i in answer.get("need") or ()]
            sent = 0
            for index, offset, crc, data in frames_for(need):
                if select.select([sock], [], [], 0)[0]:
                    break  # the receiver answered early (it failed, a full disk say): read why
                limits.check(transfer)
                if limits.egress:
                    limits.egress.consume(len(data))
                # MSG_MORE: the header leaves with the frame's first bytes, and is not copied onto them.
                sock.sendall(wire.CHUNK.pack(index, offset, len(data), crc), socket.MSG_MORE)
                sock.sendall(data)
                counters.add(transfer, len(data))
                sent += len(data)
            else:
                sock.sendall(wire.CHUNK.pack(wire.END_INDEX, 0, 0, 0))
            # Verification, one sync and the children come before the answer.
            sock.settimeout(limits.io_timeout + sent / (1024 * 1024))
            result = wire.recv_json(sock)
    except ConnectionAbortedError as exc:
        return fail_subtree(hop, str(exc), status="cancelled")
    except (OSError, wire.ProtocolError, TimeoutError) as exc:
        return fail_subtree(hop, f"link to {hop.node} failed: {exc}")
    try:
        return results_from_wire(result.get("results"))
    except (ValueError, TypeError):
        return fail_subtree(hop, f"{hop.node} sent no result")


class _Child:
    """A relay's sender to one child: files the relay holds go first, then frames as they arrive."""

    def __init__(self, hop: Hop, receiver: TreeReceiver, offer: dict[str, Any]) -> None:
        self.hop = hop
        self.need: set[int] = set()
        self.frames: queue.Queue[Frame | None] = queue.Queue(QUEUE_FRAMES)
        self.ready = threading.Event()
        self.done = threading.Event()
        self.results: Results = {}
        self.thread = threading.Thread(target=self._run, args=(receiver, offer), daemon=True, name=f"tree-{hop.target}")

    def _run(self, receiver: TreeReceiver, offer: dict[str, Any]) -> None:
        def frames_for(need: list[int]) -> Iterator[Frame]:
            self.need = set(need)
            self.ready.set()
            held = {i: receiver.held[i] for i in need if i in receiver.held}
            yield from local_frames(held, receiver.manifest, receiver.limits, receiver.transfer)
            while (frame := self.frames.get()) is not None:
                yield frame

        try:
            self.results = send_tree(
                self.hop, offer, frames_for, secret=receiver.secret, limits=receiver.limits, counters=receiver.counters
            )
        finally:
            self.need = set()
            self.done.set()
            self.ready.set()

    def put(self, frame: Frame | None) -> None:
        """Queue a frame for this child, unless its link has ended (then it is dropped)."""
        while not self.done.is_set():
            try:
                self.frames.put(frame, timeout=0.2)
                return
            except queue.Full:
                continue


class TreeReceiver:
    """Receives one directory version on one accepted connection, relaying it to the offer's children."""

    def __init__(
        self,
        *,
        root: Path,
        secret: bytes,
        progress: Progress,
        manifests: ManifestCache,
        limits: Limits,
        counters: Counters,
    ) -> None:
        self.root, self.secret, self.progress = root, secret, progress
        self.manifests, self.limits, self.counters = manifests, limits, counters
        self.need: set[int] = set()
        self.transfer = 0
        self.manifest = TreeManifest()
        self.held: dict[int, Path] = {}  # files this node holds already: children may need them

    def handle(self, sock: socket.socket, offer: dict[str, Any]) -> Results:
        """Serve the offer; return the results sent back (this target and its subtree)."""
        self.transfer, target = int(offer["transfer"]), int(offer["target"])
        self.progress.set(
            self.transfer, target, status="receiving", started=time.time(), bytes_done=0, bytes_received=0
        )  # an attempt counts from 0
        children: list[_Child] = []
        try:
            hops = tuple(Hop.from_wire(c) for c in offer.get("children") or ())
            self.manifest = TreeManifest.from_wire(offer.get("manifest"))
            children = [_Child(hop, self, offer) for hop in hops]
            outcome = self._receive(sock, offer, target, children)
        except Exception as exc:  # noqa: BLE001 - a receiver must report, never die silently
            if not isinstance(exc, (OSError, ValueError, wire.ProtocolError)):
                log.exception("tree receiver failed")
            # The sender may stop first: the link then breaks here before this node checks the flag.
            cancelled = isinstance(exc, ConnectionAbortedError) or self.transfer in self.limits.cancelled
            full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
            outcome = TargetResult(status="cancelled" if cancelled else "failed", error=str(exc))
            if cancelled or full:
                # A full disk, like a cancel: what was staged holds space the node needs for
                # the files that fit; a retry after space was freed receives it again.
                discard_staging(self.root, str(offer.get("name", "")), self.transfer)
            if full:
                outcome.error = exc.strerror if "ENOSPC" in str(exc.strerror) else no_space(self._free())
            for child in children:
                child.put(None)
        results: Results = {}
        for child in children:
            child.thread.join()
            results.update(child.results)
        self.progress.finish(self.transfer, target, outcome)
        results[target] = outcome
        for hop in (c.hop for c in children):
            for key, row in fail_subtree(hop, f"relay {target} failed: {outcome.error}").items():
                results.setdefault(key, row)
        try:
            wire.send_json(sock, {"results": results_to_wire(results)})
            wire.drain(sock, self.limits.io_timeout)  # so that the sender reads the reason, not a reset
        except OSError:
            pass
        return results

    def _free(self) -> int:
        return shutil.disk_usage(self.root).free

    def _receive(self, sock: socket.socket, offer: dict[str, Any], target: int, children: list[_Child]) -> TargetResult:
        name, transfer, manifest = str(offer["name"]), self.transfer, self.manifest
        current = current_version(self.root, name)
        staging = staging_dir(self.root, name, transfer)
        staging.mkdir(parents=True, exist_ok=True)
        journal = journal_of(staging)
        verified, elsewhere = read_journal(journal), verified_elsewhere(staging)
        held: list[int] = []
        sums = read_sums(current) if current is not None else {}
        for index, entry in enumerate(manifest.entries):
            if entry.kind != "file":
                continue
            staged = staging / entry.path
            if current is not None and self._holds(current, name, entry, sums):
                held.append(index)
                self.held[index] = current / entry.path
            elif verified.get(entry.path) == entry.sha256 and sha_of(staged) == entry.sha256:
                self.held[index] = staged  # verified by an earlier attempt; hashed again, never trusted blind
            elif adopt_verified(elsewhere.get(entry.path, ()), entry, staged, journal):
                self.held[index] = staged  # verified by an earlier cast that failed; hashed again too
            elif entry.size == 0:
                staged.parent.mkdir(parents=True, exist_ok=True)
                staged.touch()
                self.held[index] = staged
            else:
                self.need.add(index)
        # Refused before a byte is sent: a tree that cannot fit would only fill the disk.
        wanted_bytes = sum(manifest.entries[i].size for i in self.need)
        if wanted_bytes > self._free():
            raise OSError(errno.ENOSPC, no_space(self._free(), wanted_bytes, "the tree"))
        files = manifest.files
        skipped_bytes = sum(manifest.entries[i].size for i in held)
        self.progress.set(
            transfer,
            target,
            files_total=len(files),
            files_done=len(files) - len(self.need),
            size=manifest.size - skipped_bytes,
        )
        for child in children:
            child.thread.start()
        for child in children:
            child.ready.wait(self.limits.io_timeout)
        wanted = sorted(self.need)
        wire.send_json(sock, {"status": "ready", "need": wanted})
        received = self._frames(sock, staging, journal, target, children)
        for child in children:
            child.put(None)
        for child in children:
            child.thread.join()
        self.progress.set(transfer, target, status="verifying")
        assemble(staging, manifest, current, mirror=bool(offer.get("mirror")))
        final = publish(self.root, name, staging, f"v-{manifest.digest()[:16]}-{transfer}")
        write_sums(final, manifest)  # the next cast's delta reads these instead of hashing the version
        journal.unlink(missing_ok=True)
        # The worker may record the target from this row before the round's result arrives.
        self.progress.set(transfer, target, files_done=len(files), files_skipped=len(held), bytes_skipped=skipped_bytes)
        return TargetResult(
            status="completed",
            bytes_received=received,
            sha256=manifest.digest(),
            files=len(files),
            files_skipped=len(held),
            bytes_skipped=skipped_bytes,
        )

    def _holds(self, current: Path, name: str, entry: Entry, sums: dict[str, list[Any]]) -> bool:
        path = current / entry.path
        try:
            st = path.lstat()
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
            return False
        known = sums.get(entry.path)
        if known and known[:3] == [st.st_size, st.st_mtime_ns, st.st_ino]:
            return known[3] == entry.sha256
        return self.manifests.sha256(f"{name}/{entry.path}", path, 4 * 1024 * 1024) == entry.sha256

    def _frames(self, sock: socket.socket, staging: Path, journal: Path, target: int, children: list[_Child]) -> int:
        """Take frames until END; return the bytes received."""
        received = 0
        open_file: tuple[int, Any, Any] | None = None  # index, handle, sha
        made: set[Path] = set()  # folders known to exist: one mkdir per folder, not per file
        buffer = bytearray(FRAME)  # every frame is received into it (grown for a larger frame)
        try:
            with open(journal, "a") as log_file:
                while True:
                    index, offset, length, crc = wire.recv_chunk_header(sock)
                    if index == wire.END_INDEX:
                        break
                    if index not in self.need or length > 64 * 1024 * 1024:
                        raise wire.ProtocolError(f"frame for file {index} that was not asked for")
                    entry = self.manifest.entries[index]
                    if length > len(buffer):
                        buffer = bytearray(length)
                    data = memoryview(buffer)[:length]
                    wire.recv_exact(sock, data)
                    self.limits.check(self.transfer)
                    if self.limits.ingress:
                        self.limits.ingress.consume(length)
                    if checksum(data) != crc:
                        raise wire.ProtocolError(f"{entry.path}: a frame failed its CRC-32C check")
                    for child in children:
                        if index in child.need:
                            child.put((index, offset, crc, bytes(data)))
                    if open_file is None or open_file[0] != index:
                        if open_file is not None:
                            raise wire.ProtocolError("a file's frames were interleaved with another's")
                        path = staging / entry.path
                        if path.parent not in made:
                            path.parent.mkdir(parents=True, exist_ok=True)
                            made.add(path.parent)
                        open_file = (index, open(path, "wb"), hashlib.sha256())  # noqa: SIM115 - closed below
                    _, handle, sha = open_file
                    if offset != handle.tell():
                        raise wire.ProtocolError(f"{entry.path}: frame at {offset}, expected {handle.tell()}")
                    handle.write(data)
                    sha.update(data)
                    received += length
                    self.progress.add_bytes(self.transfer, target, length, received=length)
                    if handle.tell() == entry.size:
                        handle.close()
                        open_file = None
                        if sha.hexdigest() != entry.sha256:
                            raise wire.ProtocolError(f"{entry.path}: SHA-256 does not match the manifest")
                        log_file.write(f"{entry.sha256} {entry.path}\n")
                        log_file.flush()  # survives the process; the version is hashed again on resume
                        self.need.discard(index)
                        row = self.progress.snapshot(self.transfer).get(target)
                        self.progress.set(self.transfer, target, files_done=(row.files_done if row else 0) + 1)
        finally:
            if open_file is not None:  # a file cut short (a full disk, a broken link) holds no space after
                with contextlib.suppress(OSError):
                    open_file[1].close()
        if self.need:
            raise wire.ProtocolError(f"the sender ended with {len(self.need)} file(s) not sent")
        return received


def discard_staging(root: Path, name: str, transfer: int) -> None:
    """Drop what a cancelled or finished cast staged for `name`; the published version is untouched."""
    if name:
        drop_staging(staging_dir(root, name, transfer))


def send_tree_children(
    top: Path,
    manifest: TreeManifest,
    children: tuple[Hop, ...],
    offer: dict[str, Any],
    *,
    secret: bytes,
    limits: Limits,
    counters: Counters,
) -> Results:
    """The source's side: offer the tree at `top` to each child on its own thread; wait for all."""
    paths = {i: top / e.path for i, e in enumerate(manifest.entries) if e.kind == "file"}
    transfer = int(offer["transfer"])
    results: Results = {}

    def run(hop: Hop) -> None:
        def frames_for(need: list[int]) -> Iterator[Frame]:
            return local_frames({i: paths[i] for i in need if i in paths}, manifest, limits, transfer)

        results.update(send_tree(hop, offer, frames_for, secret=secret, limits=limits, counters=counters))

    threads = [threading.Thread(target=run, args=(hop,), daemon=True) for hop in children]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def tree_offer(transfer: int, name: str, manifest: TreeManifest, *, mirror: bool) -> dict[str, Any]:
    return {"kind": "tree", "transfer": transfer, "name": name, "mirror": mirror, "manifest": manifest.to_wire()}
