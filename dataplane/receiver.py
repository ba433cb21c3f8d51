"""Receiving a file safely on one accepted TCP connection, relaying it to the offer's children.

Runs inside a node actor's threads. A receiver writes `<name>.part`, verifies each chunk's
CRC-32C and the whole file's SHA-256, fsyncs and renames into place; a relay forwards every
chunk to its children (from its own `.part`, with sendfile) as soon as the chunk is on disk.
The same listener takes message batches (into the inbox) and UDP-mode control connections
(handed to `udp.udp_receive`). Must not import Django.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

from dataplane import wire
from dataplane.contract import Hop, Results, TargetResult, fail_subtree, results_to_wire
from dataplane.flow import Counters, Limits, Progress
from dataplane.hashing import SLICE, SliceHasher, crc_of_range, fsync_dir, sha_of_fd
from dataplane.inbox import Inbox
from dataplane.partfile import PartKeeper, PartRecord
from dataplane.sender import ChunkSource, send_children
from dataplane.storage import (
    PART_SUFFIX,
    Manifest,
    ManifestCache,
    UnsafePath,
    checksum,
    chunk_count,
    no_space,
    resolve_in,
)
from dataplane.tree_wire import TreeReceiver
from dataplane.udp import udp_receive

log = logging.getLogger("castray.receiver")

# How often a receiver rewrites its chunk record while chunks arrive: every few chunks or every
# second, whichever comes first. A killed actor runs no clean-up, so what the record last said
# is all a retry resumes from; writing a few KiB of JSON per few chunks costs next to nothing.
RECORD_EVERY_CHUNKS = 4
RECORD_EVERY_SECONDS = 1.0


class NameLocks:
    """One lock per destination name, made on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def hold(self, name: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(name, threading.Lock())


class Receiver:
    """Receives one file on one accepted connection, relaying it to the offer's children."""

    def __init__(
        self,
        *,
        root: Path,
        secret: bytes,
        progress: Progress,
        manifests: ManifestCache,
        limits: Limits,
        counters: Counters,
        locks: NameLocks,
        address: str = "0.0.0.0",
        inbox: Inbox | None = None,
    ) -> None:
        self.inbox = inbox
        self.locks = locks
        self.address = address
        self.root = root
        self.secret = secret
        self.progress = progress
        self.manifests = manifests
        self.limits = limits
        self.counters = counters

    def handle(self, sock: socket.socket) -> None:
        sock.settimeout(self.limits.io_timeout)
        try:
            offer = wire.recv_json(sock, magic=True)
        except (OSError, wire.ProtocolError) as exc:
            log.warning("dropped a connection before its offer: %s", exc)
            return
        if not wire.verify(self.secret, offer):
            wire.send_json(sock, {"status": "error", "error": "offer is not signed with this cluster's key"})
            return
        if offer.get("kind") == "messages":
            if self.inbox is None:
                wire.send_json(sock, {"error": "this node keeps no inbox"})
            else:
                wire.send_json(sock, {"delivered": self.inbox.put(list(offer.get("messages") or []))})
            return
        if offer.get("kind") == "tree":  # a directory version (dataplane/tree_wire.py)
            with self.locks.hold(str(offer.get("name"))):
                TreeReceiver(
                    root=self.root,
                    secret=self.secret,
                    progress=self.progress,
                    manifests=self.manifests,
                    limits=self.limits,
                    counters=self.counters,
                ).handle(sock, offer)
            return
        transfer, target = int(offer["transfer"]), int(offer["target"])
        self.progress.set(
            transfer,
            target,
            status="receiving",
            started=time.time(),
            bytes_done=0,
            bytes_received=0,  # this attempt's; an earlier round on this actor counted its own
            size=int(offer["size"]),
        )
        children: tuple[Hop, ...] = ()
        subtree: tuple[Results, list[threading.Thread]] = ({}, [])
        try:
            children = tuple(Hop.from_wire(child) for child in offer.get("children") or ())
            # One receive per destination name at a time: a second offer for the same file
            # (a recovered cast, say) waits, then finds the file complete and skips it.
            with self.locks.hold(str(offer["name"])):
                outcome, subtree = self._receive(sock, offer, transfer, target, children)
        except (OSError, wire.ProtocolError, TimeoutError, UnsafePath, ValueError) as exc:
            outcome = TargetResult(status="failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a receiver must report, never die silently
            log.exception("receiver failed")
            outcome = TargetResult(status="failed", error=f"{type(exc).__name__}: {exc}")
        results, relay_threads = subtree
        # This node's own receive is over: say so now, with its own finish time, so that the
        # worker records it while slower children are still being fed from the file here.
        self.progress.finish(transfer, target, outcome)
        for thread in relay_threads:
            thread.join()
        results[target] = outcome
        # Children this node never reached fail with its reason rather than vanish.
        for child in children:
            for key, row in fail_subtree(child, f"relay {target} failed: {outcome.error}").items():
                results.setdefault(key, row)
        try:
            wire.send_json(sock, {"results": results_to_wire(results)})
            wire.drain(sock, self.limits.io_timeout)
        except OSError:
            pass

    def _receive(
        self, sock: socket.socket, offer: dict[str, Any], transfer: int, target: int, children: tuple[Hop, ...]
    ) -> tuple[TargetResult, tuple[Results, list[threading.Thread]]]:
        size, chunk_size, sha256 = int(offer["size"]), int(offer["chunk_size"]), str(offer["sha256"])
        if size < 0 or not 1 <= chunk_size <= 256 * 1024 * 1024:
            raise wire.ProtocolError("offer has an invalid size or chunk size")
        name = str(offer["name"])
        if offer.get("mode") == "udp":
            outcome = udp_receive(
                sock,
                offer,
                root=self.root,
                address=self.address,
                manifests=self.manifests,
                progress=self.progress,
                limits=self.limits,
            )
            return outcome, ({}, [])
        dest = resolve_in(self.root, name)
        count = chunk_count(size, chunk_size)

        if dest.is_file() and dest.stat().st_size == size and self.manifests.sha256(name, dest, chunk_size) == sha256:
            wire.send_json(sock, {"status": "skip"})
            return TargetResult(status="skipped"), self._relay_from_file(dest, name, transfer, children, chunk_size)

        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + PART_SUFFIX)
        record = PartRecord.of(self.root, name, size, chunk_size, sha256)
        have = record.load(part)
        # Refused before a byte is sent: a file that cannot fit would only fill the disk.
        need = size - (part.stat().st_size if any(have) else 0)
        free = shutil.disk_usage(dest.parent).free
        if need > free:
            error = no_space(free, need)
            wire.send_json(sock, {"status": "error", "error": error})
            return TargetResult(status="failed", error=error), ({}, [])
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # A fresh .part grows as chunks arrive: writing into a pre-sized sparse file was
            # measured ~50% slower on ext4. Only a stale, longer one is cut back.
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
            source = ChunkSource(part, size, chunk_size, sha256, [None] * count, complete=False)
            wire.send_json(sock, {"status": "ready", "have": wire.bitmap_to_hex(have)})
            subtree = self._send_children(source, children, transfer, name)
            try:
                result = self._receive_chunks(sock, fd, source, have, record, transfer, target)
            except ConnectionAbortedError as exc:
                source.finish(str(exc))
                result = TargetResult(status="cancelled", error=str(exc))
            except (OSError, wire.ProtocolError, TimeoutError, ValueError) as exc:
                error = str(exc)
                if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                    # A full disk: what was written is worth less than the space it holds, and
                    # the node must take files that fit afterwards.
                    part.unlink(missing_ok=True)
                    record.remove()
                    error = no_space(shutil.disk_usage(dest.parent).free)
                # Children stop waiting for chunks that will not come, and fail with this reason.
                source.finish(error)
                result = TargetResult(status="failed", error=error)
            return result, subtree
        finally:
            os.close(fd)

    def _receive_chunks(
        self,
        sock: socket.socket,
        fd: int,
        source: ChunkSource,
        have: bytearray,
        record: PartRecord,
        transfer: int,
        target: int,
    ) -> TargetResult:
        count, size, chunk_size = len(source.crcs), source.size, source.chunk_size
        # Chunks already held (resume) can be relayed at once; their CRC is read back lazily.
        for index in range(count):
            if wire.bit_get(have, index):
                source.mark(index, crc_of_range(fd, index * chunk_size, source.chunk_len(index)))
        resumed = any(have)
        held = sum(source.chunk_len(i) for i in range(count) if wire.bit_get(have, i))
        self.progress.add_bytes(transfer, target, held)
        hasher = SliceHasher(max(1, min(SLICE, chunk_size)))
        keeper = PartKeeper(fd, record)
        next_index = 0
        received = 0
        since_record = 0
        recorded_at = time.monotonic()
        self.limits.streams[(transfer, target)] = sock
        try:
            while True:
                index, offset, length, crc = wire.recv_chunk_header(sock)
                if index == wire.END_INDEX:
                    break
                if index >= count or offset != index * chunk_size or length != source.chunk_len(index):
                    raise wire.ProtocolError(f"chunk frame {index} at {offset}+{length} does not fit the file")
                self.limits.check(transfer, target)
                self.limits.check_target(transfer, target)
                if self.limits.ingress:
                    # Not reading is what slows the sender down: TCP flow control does the rest.
                    self.limits.ingress.consume(length)
                in_order = not resumed and index == next_index
                actual = 0
                done = 0
                while done < length:
                    slot, view = hasher.take()
                    got = 0
                    try:
                        # Take what the socket has rather than waiting for a full slice: a plain
                        # receive-and-write loop that filled 256 KiB slices first spent 3x the
                        # kernel time of one taking what came (a harness on this machine).
                        got = sock.recv_into(view, min(len(view), length - done))
                        if not got:
                            raise ConnectionError(f"sender closed the connection inside chunk {index}")
                        piece = view[:got]
                        actual = checksum(piece, actual)
                        os.pwrite(fd, piece, offset + done)
                    finally:
                        hasher.give(slot, got, hash_it=in_order and got > 0)
                    done += got
                # Written but not yet trusted: only a verified chunk is marked held or relayed.
                if actual != crc:
                    raise wire.ProtocolError(
                        f"chunk {index} failed its checksum (crc32c {actual:08x}, expected {crc:08x}); "
                        "nothing was written under the final name"
                    )
                keeper.wrote(length)
                if in_order:
                    next_index += 1
                else:
                    resumed = True
                wire.bit_set(have, index)
                source.mark(index, crc)
                received += length
                since_record += 1
                self.progress.add_bytes(transfer, target, length, received=length)
                if since_record >= RECORD_EVERY_CHUNKS or time.monotonic() - recorded_at >= RECORD_EVERY_SECONDS:
                    keeper.save(have)
                    since_record = 0
                    recorded_at = time.monotonic()
        except BaseException:
            hasher.close()
            with contextlib.suppress(OSError):
                keeper.close()  # the error being raised is the one to report
            # Keep what arrived intact so that the next attempt resumes from it.
            os.fdatasync(fd)
            record.save(have)
            self.limits.check(transfer, target)  # dropped by an abort: say so, not "closed"
            raise
        finally:
            self.limits.streams.pop((transfer, target), None)
        streamed = hasher.close()
        keeper.close()
        missing = count - wire.bit_count(have, count)
        if missing:
            record.save(have)
            raise ConnectionError(f"sender finished with {missing} of {count} chunks missing")

        self.progress.set(transfer, target, status="verifying")
        digest = streamed if not resumed else sha_of_fd(fd, size)
        if digest != source.sha256:
            # The data is wrong somewhere: resuming from it would be wrong too.
            os.unlink(source.path)
            record.remove()
            raise ValueError(f"SHA-256 mismatch: got {digest}, expected {source.sha256}")
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)  # an empty file, or one whose chunks came out of order
        os.fsync(fd)
        dest = source.path.with_name(source.path.name[: -len(PART_SUFFIX)])
        try:
            with self.limits.committing(transfer, target, digest):
                source.finish()
                os.replace(source.path, dest)
        except ConnectionAbortedError:
            record.save(have)  # verified and whole: a later attempt resumes with every chunk
            raise
        fsync_dir(dest.parent)
        record.remove()
        name = str(dest.relative_to(self.root))
        self.manifests.put(name, dest, Manifest(size, digest, chunk_size, list(source.crcs)))  # type: ignore[arg-type]
        return TargetResult(status="completed", bytes_received=received, sha256=digest)

    def _relay_from_file(
        self, path: Path, name: str, transfer: int, children: tuple[Hop, ...], chunk_size: int
    ) -> tuple[Results, list[threading.Thread]]:
        if not children:
            return {}, []
        source = ChunkSource.from_manifest(path, self.manifests.get(name, path, chunk_size))
        return self._send_children(source, children, transfer, name)

    def _send_children(
        self, source: ChunkSource, children: tuple[Hop, ...], transfer: int, name: str
    ) -> tuple[Results, list[threading.Thread]]:
        return send_children(
            source,
            children,
            transfer=transfer,
            name=name,
            secret=self.secret,
            limits=self.limits,
            counters=self.counters,
        )
