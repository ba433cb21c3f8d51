"""The byte-moving half of a cast: sending a file down a tree and receiving it safely.

Runs inside a node actor's threads. A receiver writes `<name>.part`, verifies each chunk's
CRC32 and the whole file's SHA-256, fsyncs and renames into place; a relay forwards every
chunk to its children (from its own `.part`, with sendfile) as soon as the chunk is on disk.
Must not import Django.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dataplane import wire
from dataplane.contract import (
    Hop,
    ProgressRow,
    Results,
    TargetResult,
    fail_subtree,
    results_from_wire,
    results_to_wire,
)
from dataplane.hashing import SLICE, SliceHasher, crc_of_range, fsync_dir, sha_of_fd, start_writeback
from dataplane.partfile import PartRecord
from dataplane.storage import (
    PART_SUFFIX,
    Manifest,
    ManifestCache,
    UnsafePath,
    checksum,
    chunk_count,
    resolve_in,
)

log = logging.getLogger("castray.engine")

# How often a receiver makes its chunk record durable (bytes between fsyncs of the .part).
RECORD_EVERY = 64 * 1024 * 1024


class NameLocks:
    """One lock per destination name, made on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def hold(self, name: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(name, threading.Lock())


class Inbox:
    """A node's received messages: bounded, newest kept, each message stored once."""

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._items: deque[dict[str, Any]] = deque(maxlen=size)
        self._seen: deque[int] = deque(maxlen=size * 2)
        self._seen_set: set[int] = set()

    def put(self, messages: list[dict[str, Any]]) -> list[int]:
        delivered = []
        with self._lock:
            for message in messages:
                key = int(message["message"])
                if key not in self._seen_set:  # a redelivery after a worker died is not a new message
                    self._items.append(message)
                    if len(self._seen) == self._seen.maxlen:
                        self._seen_set.discard(self._seen[0])
                    self._seen.append(key)
                    self._seen_set.add(key)
                delivered.append(int(message["id"]))
        return delivered

    def latest(self, count: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)[-count:][::-1]


def send_messages(
    address: str, port: int, messages: list[dict[str, Any]], *, secret: bytes, timeout: float
) -> set[int]:
    """Deliver a batch of messages to one node's inbox; return the delivery ids it acknowledged."""
    offer: dict[str, Any] = {"kind": "messages", "messages": messages}
    offer["mac"] = wire.sign(secret, offer)
    with socket.create_connection((address, port), timeout=timeout) as sock:
        wire.send_json(sock, offer, magic=True)
        answer = wire.recv_json(sock)
    if "error" in answer:
        raise ConnectionError(str(answer["error"]))
    return {int(i) for i in answer.get("delivered", [])}


class Progress:
    """Thread-safe table of what this node is doing for each (transfer, target)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[int, int], ProgressRow] = {}

    def set(self, transfer: int, target: int, **fields: Any) -> None:
        with self._lock:
            row = self._rows.setdefault((transfer, target), ProgressRow())
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated = time.time()

    def add_bytes(self, transfer: int, target: int, n: int, *, received: int = 0) -> None:
        with self._lock:
            row = self._rows.setdefault((transfer, target), ProgressRow(status="receiving"))
            row.bytes_done += n
            row.bytes_received += received

    def snapshot(self, transfer: int) -> dict[int, ProgressRow]:
        """This node's rows for `transfer`, by target id (copies: the table keeps changing)."""
        with self._lock:
            return {g: replace(row) for (t, g), row in self._rows.items() if t == transfer}

    def forget(self, transfer: int) -> None:
        with self._lock:
            for key in [k for k in self._rows if k[0] == transfer]:
                del self._rows[key]


@dataclass
class ChunkSource:
    """A file that chunks are sent from: a finished file, or a `.part` still being received."""

    path: Path
    size: int
    chunk_size: int
    sha256: str
    crcs: list[int | None]
    complete: bool = True
    failed: str | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def from_manifest(cls, path: Path, manifest: Manifest) -> ChunkSource:
        return cls(path, manifest.size, manifest.chunk_size, manifest.sha256, list(manifest.crcs))

    def chunk_len(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def mark(self, index: int, crc: int) -> None:
        with self.cond:
            self.crcs[index] = crc
            self.cond.notify_all()

    def finish(self, error: str | None = None) -> None:
        with self.cond:
            self.complete = error is None
            self.failed = error
            self.cond.notify_all()

    def wait_chunk(self, index: int, timeout: float) -> int:
        """Block until chunk `index` is on disk here; return its CRC32."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.crcs[index] is None:
                if self.failed:
                    raise ConnectionError(f"upstream failed: {self.failed}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"chunk {index} did not arrive upstream within {timeout:.0f}s")
                self.cond.wait(left)
            return self.crcs[index]  # type: ignore[return-value]


class TokenBucket:
    """A shared byte budget refilled at `rate` bytes/s; callers sleep off any debt.

    Starting empty and allowing debt keeps the long-run rate at or just under the cap
    whatever the chunk size, which is what a per-node cap promises.
    """

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self._lock = threading.Lock()
        self._tokens = 0.0
        self._stamp = time.monotonic()

    def consume(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            # Unused budget does not pile up beyond a quarter second of traffic.
            self._tokens = min(self._tokens + (now - self._stamp) * self.rate, self.rate * 0.25)
            self._stamp = now
            self._tokens -= n
            debt = -self._tokens
        if debt > 0:
            time.sleep(debt / self.rate)


@dataclass
class Limits:
    """What a node's threads share: timeouts, bandwidth caps, cancelled casts."""

    io_timeout: float = 60.0
    egress: TokenBucket | None = None
    ingress: TokenBucket | None = None
    cancelled: set[int] = field(default_factory=set)

    def set_caps(self, egress: int | None, ingress: int | None) -> None:
        # Replace a bucket only when its rate changes, so in-flight sends keep their budget.
        if (self.egress.rate if self.egress else 0) != (egress or 0):
            self.egress = TokenBucket(egress) if egress else None
        if (self.ingress.rate if self.ingress else 0) != (ingress or 0):
            self.ingress = TokenBucket(ingress) if ingress else None

    def check(self, transfer: int) -> None:
        if transfer in self.cancelled:
            raise ConnectionAbortedError("the cast was cancelled")


class Counters:
    """Bytes this node sent, per transfer (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: dict[int, int] = {}
        self.total = 0

    def add(self, transfer: int, n: int) -> None:
        with self._lock:
            self.sent[transfer] = self.sent.get(transfer, 0) + n
            self.total += n

    def of(self, transfer: int) -> int:
        with self._lock:
            return self.sent.get(transfer, 0)


def send_subtree(
    source: ChunkSource,
    hop: Hop,
    *,
    transfer: int,
    name: str,
    secret: bytes,
    limits: Limits,
    counters: Counters,
    handle: Any,
) -> Results:
    """Send the file to one child (`hop`), which relays to its own children.

    Returns the result of every target in that subtree, keyed by target id. A child that
    cannot be reached fails with its subtree, each with the reason.
    """
    target = hop.target
    offer = {
        "transfer": transfer,
        "target": target,
        "name": name,
        "size": source.size,
        "sha256": source.sha256,
        "chunk_size": source.chunk_size,
        "children": [child.to_wire() for child in hop.children],
    }
    offer["mac"] = wire.sign(secret, offer)
    try:
        with socket.create_connection((hop.address, hop.port), timeout=10) as sock:
            sock.settimeout(limits.io_timeout)
            wire.send_json(sock, offer, magic=True)
            answer = wire.recv_json(sock)
            if isinstance(answer.get("results"), dict):
                return results_from_wire(answer["results"])  # refused before it got as far as answering
            status = answer.get("status")
            if status == "error":
                return fail_subtree(hop, f"{hop.node} refused the file: {answer.get('error')}")
            if status == "ready":
                have = wire.bitmap_from_hex(answer.get("have", ""), len(source.crcs))
                for index in range(len(source.crcs)):
                    if wire.bit_get(have, index):
                        continue
                    crc = source.wait_chunk(index, limits.io_timeout)
                    length = source.chunk_len(index)
                    offset = index * source.chunk_size
                    limits.check(transfer)
                    if limits.egress:
                        limits.egress.consume(length)
                    # MSG_MORE: the header leaves with the chunk's first bytes, not on its own.
                    sock.sendall(wire.CHUNK.pack(index, offset, length, crc), socket.MSG_MORE)
                    sent = sock.sendfile(handle, offset, length)
                    if sent != length:
                        raise ConnectionError(f"sent {sent} of {length} bytes of chunk {index}")
                    counters.add(transfer, length)
                sock.sendall(wire.CHUNK.pack(wire.END_INDEX, 0, 0, 0))
            # The receiver verifies, fsyncs and waits for its own subtree before it answers;
            # allow for that at a slow 1 MiB/s rather than hanging forever on a lost host.
            sock.settimeout(limits.io_timeout + source.size / (1024 * 1024))
            result = wire.recv_json(sock)
    except ConnectionAbortedError as exc:
        return fail_subtree(hop, str(exc), status="cancelled")
    except (OSError, wire.ProtocolError, TimeoutError) as exc:
        return fail_subtree(hop, f"link to {hop.node} failed: {exc}")
    finally:
        handle.close()
    try:
        return results_from_wire(result.get("results"))
    except (ValueError, TypeError):
        return fail_subtree(hop, f"{hop.node} sent no result")


def send_children(
    source: ChunkSource,
    children: tuple[Hop, ...],
    **kwargs: Any,
) -> tuple[Results, list[threading.Thread]]:
    """Start one sender thread per child; the caller joins them, then reads the results."""
    results: Results = {}
    threads = []

    def run(child: Hop, handle: Any) -> None:
        results.update(send_subtree(source, child, handle=handle, **kwargs))

    for child in children:
        # Opened now, before the .part can be renamed: the handle follows the inode.
        handle = open(source.path, "rb")  # noqa: SIM115 - closed by send_subtree
        thread = threading.Thread(target=run, args=(child, handle), daemon=True, name=f"send-{child.target}")
        thread.start()
        threads.append(thread)
    return results, threads


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
        transfer, target = int(offer["transfer"]), int(offer["target"])
        self.progress.set(
            transfer, target, status="receiving", started=time.time(), bytes_done=0, size=int(offer["size"])
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
        for thread in relay_threads:
            thread.join()
        self.progress.set(
            transfer,
            target,
            finished=time.time(),
            status=outcome.status,
            error=outcome.error,
            sha256=outcome.sha256,
            bytes_received=outcome.bytes_received,
        )
        results[target] = outcome
        # Children this node never reached fail with its reason rather than vanish.
        for child in children:
            for key, row in fail_subtree(child, f"relay {target} failed: {outcome.error}").items():
                results.setdefault(key, row)
        try:
            wire.send_json(sock, {"results": results_to_wire(results)})
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
            from dataplane.modes import udp_receive

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

        if dest.is_file() and dest.stat().st_size == size and self._sha_of(name, dest, chunk_size) == sha256:
            wire.send_json(sock, {"status": "skip"})
            return TargetResult(status="skipped"), self._relay_from_file(dest, name, transfer, children, chunk_size)

        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + PART_SUFFIX)
        record = PartRecord.of(self.root, name, size, chunk_size, sha256)
        have = record.load(part)
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # A fresh .part grows as chunks arrive: writing into a pre-sized sparse file was
            # measured ~50% slower on ext4. Only a stale, longer one is cut back.
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
            source = ChunkSource(part, size, chunk_size, sha256, [None] * count, complete=False)
            wire.send_json(sock, {"status": "ready", "have": wire.bitmap_to_hex(have)})
            subtree = send_children(
                source,
                children,
                transfer=transfer,
                name=name,
                secret=self.secret,
                limits=self.limits,
                counters=self.counters,
            )
            try:
                result = self._receive_chunks(sock, fd, source, have, record, transfer, target)
            except ConnectionAbortedError as exc:
                source.finish(str(exc))
                result = TargetResult(status="cancelled", error=str(exc))
            except (OSError, wire.ProtocolError, TimeoutError, ValueError) as exc:
                # Children stop waiting for chunks that will not come, and fail with this reason.
                source.finish(str(exc))
                result = TargetResult(status="failed", error=str(exc))
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
        next_index = 0
        received = 0
        since_record = 0
        try:
            while True:
                index, offset, length, crc = wire.recv_chunk_header(sock)
                if index == wire.END_INDEX:
                    break
                if index >= count or offset != index * chunk_size or length != source.chunk_len(index):
                    raise wire.ProtocolError(f"chunk frame {index} at {offset}+{length} does not fit the file")
                self.limits.check(transfer)
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
                start_writeback(fd, offset, length)
                if in_order:
                    next_index += 1
                else:
                    resumed = True
                wire.bit_set(have, index)
                source.mark(index, crc)
                received += length
                since_record += length
                self.progress.add_bytes(transfer, target, length, received=length)
                if since_record >= RECORD_EVERY:
                    # No fdatasync here: the record is a hint for resuming, and a resumed file is
                    # verified whole against its SHA-256 before it is renamed, so a chunk the
                    # record claims but the disk lost only costs a retry, never a wrong file.
                    record.save(have)
                    since_record = 0
        except BaseException:
            hasher.close()
            # Keep what arrived intact so that the next attempt resumes from it.
            os.fdatasync(fd)
            record.save(have)
            raise
        streamed = hasher.close()
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
        source.finish()
        dest = source.path.with_name(source.path.name[: -len(PART_SUFFIX)])
        os.replace(source.path, dest)
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
        manifest = self.manifests.get(name, path, chunk_size)
        source = ChunkSource.from_manifest(path, manifest)
        return send_children(
            source,
            children,
            transfer=transfer,
            name=name,
            secret=self.secret,
            limits=self.limits,
            counters=self.counters,
        )

    def _sha_of(self, name: str, path: Path, chunk_size: int) -> str:
        cached = self.manifests.peek_sha256(name, path)
        return cached if cached else self.manifests.get(name, path, chunk_size).sha256


def manifest_for(root: Path, manifests: ManifestCache, name: str, chunk_size: int) -> tuple[Path, Manifest]:
    path = resolve_in(root, name)
    if not path.is_file():
        raise FileNotFoundError(f"{name} does not exist in this node's storage")
    return path, manifests.get(name, path, chunk_size)
