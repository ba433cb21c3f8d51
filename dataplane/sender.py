"""Sending a file down a distribution tree over TCP: one thread per child, chunks by sendfile.

A relay sends from its own `.part` while it is still being received: `ChunkSource` tells a
sender thread when each chunk is on disk (and verified) there. Must not import Django.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplane import wire
from dataplane.contract import Hop, Results, fail_subtree, results_from_wire
from dataplane.flow import Counters, Limits
from dataplane.storage import Manifest


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
                    if select.select([sock], [], [], 0)[0]:
                        break  # the receiver answered early (it failed, a full disk say): read why
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
                else:
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
