"""Sending and receiving files between threads over loopback TCP, the way node actors do, without Ray.

Each `Node` is a storage root with a listener whose connections are served by `Receiver.handle`
on threads of their own, as `CastNode` serves them; the tests send with `send_subtree` (TCP)
and `udp_cast` (UDP) and check the bytes that land on disk.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dataplane import wire
from dataplane.contract import CastPlan, Hop, Results, TargetResult
from dataplane.flow import Counters, Limits, Progress, TokenBucket
from dataplane.inbox import Inbox, send_messages
from dataplane.partfile import PartRecord
from dataplane.receiver import NameLocks, Receiver
from dataplane.sender import ChunkSource, send_subtree
from dataplane.storage import Manifest, ManifestCache, checksum, compute_manifest
from dataplane.udp import DATAGRAM, DATAGRAM_PAYLOAD, UDP_MAX_PASSES, udp_cast

pytestmark = pytest.mark.unit

SECRET = b"test-cluster-secret"
CHUNK = 4096
LOOPBACK = "127.0.0.1"


class Node:
    """A receiving node: its storage, and a listener serving each connection on a thread."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        root.mkdir(parents=True)
        self.progress = Progress()
        self.manifests = ManifestCache(root)
        self.limits = Limits(io_timeout=10)
        self.counters = Counters()
        self.locks = NameLocks()
        self.inbox = Inbox(10)
        self.listener = socket.create_server((LOOPBACK, 0))
        self.listener.settimeout(0.1)  # so that close() is noticed without a connection
        self.port = self.listener.getsockname()[1]
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            Receiver(
                root=self.root,
                secret=SECRET,
                progress=self.progress,
                manifests=self.manifests,
                limits=self.limits,
                counters=self.counters,
                locks=self.locks,
                address=LOOPBACK,
                inbox=self.inbox,
            ).handle(conn)

    def hop(self, target: int, *children: Hop) -> Hop:
        return Hop(target, self.name, LOOPBACK, self.port, children)

    def close(self) -> None:
        self.closed.set()
        self.thread.join()
        self.listener.close()

    def leftovers(self) -> list[str]:
        """What an unfinished receive leaves: `.part` files and resume records."""
        found = [*self.root.rglob("*.part"), *(self.root / ".castray" / "partial").glob("*")]
        return sorted(str(p.relative_to(self.root)) for p in found)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = Node(tmp_path / "n1", "n1")
    yield made
    made.close()


@pytest.fixture
def node2(tmp_path: Path) -> Iterator[Node]:
    made = Node(tmp_path / "n2", "n2")
    yield made
    made.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source" / "file.bin"
    path.parent.mkdir()
    path.write_bytes(os.urandom(5 * CHUNK + 123))  # six chunks, the last one short
    return path


def send(
    path: Path, hop: Hop, *, manifest: Manifest | None = None, counters: Counters | None = None, name: str = "f.bin"
) -> Results:
    """What a source actor does for one child: send the file from its storage down `hop`."""
    manifest = manifest or compute_manifest(path, CHUNK)
    return send_subtree(
        ChunkSource.from_manifest(path, manifest),
        hop,
        transfer=1,
        name=name,
        secret=SECRET,
        limits=Limits(io_timeout=10),
        counters=counters or Counters(),
        handle=open(path, "rb"),  # noqa: SIM115 - send_subtree closes it
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_arrives_byte_identical(node: Node, source: Path) -> None:
    counters = Counters()
    results = send(source, node.hop(1), counters=counters, name="in/dir/f.bin")
    size = source.stat().st_size
    assert results == {1: TargetResult(status="completed", bytes_received=size, sha256=sha256(source))}
    assert (node.root / "in/dir/f.bin").read_bytes() == source.read_bytes()
    assert node.leftovers() == []
    assert counters.of(1) == size
    row = node.progress.snapshot(1)[1]
    assert (row.status, row.bytes_done, row.bytes_received, row.size) == ("completed", size, size, size)
    # The receiver cached the manifest, so relaying or checking the file later does not rehash it.
    assert node.manifests.peek_sha256("in/dir/f.bin", node.root / "in/dir/f.bin") == sha256(source)


def test_a_relay_forwards_the_file_down_the_tree(node: Node, node2: Node, source: Path) -> None:
    results = send(source, node.hop(1, node2.hop(2)))
    assert {t: r.status for t, r in results.items()} == {1: "completed", 2: "completed"}
    assert (node.root / "f.bin").read_bytes() == source.read_bytes()
    assert (node2.root / "f.bin").read_bytes() == source.read_bytes()


def test_an_empty_file_arrives(node: Node, tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert send(empty, node.hop(1))[1].status == "completed"
    assert (node.root / "f.bin").read_bytes() == b""


def test_a_file_the_target_already_has_is_skipped(node: Node, source: Path) -> None:
    (node.root / "f.bin").write_bytes(source.read_bytes())
    counters = Counters()
    assert send(source, node.hop(1), counters=counters) == {1: TargetResult(status="skipped")}
    assert counters.of(1) == 0


def test_a_corrupt_chunk_fails_with_the_reason_and_names_nothing(node: Node, source: Path) -> None:
    manifest = compute_manifest(source, CHUNK)
    crcs = list(manifest.crcs)
    crcs[2] ^= 1  # the offer promises other bytes than the sender sends for chunk 2
    results = send(source, node.hop(1), manifest=replace(manifest, crcs=crcs))
    assert results[1].status == "failed"
    assert "chunk 2 failed its checksum" in results[1].error
    assert not (node.root / "f.bin").exists()


def test_a_source_changed_after_its_manifest_fails_and_names_nothing(node: Node, source: Path) -> None:
    manifest = compute_manifest(source, CHUNK)
    with open(source, "r+b") as handle:
        handle.seek(3 * CHUNK + 17)
        byte = handle.read(1)
        handle.seek(3 * CHUNK + 17)
        handle.write(bytes([byte[0] ^ 0xFF]))
    results = send(source, node.hop(1), manifest=manifest)
    assert results[1].status == "failed"
    assert "chunk 3 failed its checksum" in results[1].error
    assert not (node.root / "f.bin").exists()


def test_a_wrong_sha256_fails_and_leaves_nothing_to_resume(node: Node, source: Path) -> None:
    manifest = replace(compute_manifest(source, CHUNK), sha256=hashlib.sha256(b"other").hexdigest())
    results = send(source, node.hop(1), manifest=manifest)
    assert results[1].status == "failed"
    assert "SHA-256 mismatch" in results[1].error
    assert not (node.root / "f.bin").exists()
    assert node.leftovers() == []


def test_a_second_attempt_receives_only_the_chunks_the_first_did_not(node: Node, source: Path) -> None:
    manifest = compute_manifest(source, CHUNK)
    crcs = list(manifest.crcs)
    crcs[4] ^= 1  # the first attempt breaks off at chunk 4, having verified chunks 0-3
    first = send(source, node.hop(1), manifest=replace(manifest, crcs=crcs))
    assert first[1].status == "failed"
    assert node.leftovers() != []  # the .part and its record are kept for the next attempt

    counters = Counters()
    second = send(source, node.hop(1), manifest=manifest, counters=counters)
    size = source.stat().st_size
    assert second == {1: TargetResult(status="completed", bytes_received=size - 4 * CHUNK, sha256=sha256(source))}
    assert counters.of(1) == size - 4 * CHUNK
    assert (node.root / "f.bin").read_bytes() == source.read_bytes()
    assert node.leftovers() == []
    row = node.progress.snapshot(1)[1]
    assert (row.bytes_done, row.bytes_received) == (size, size - 4 * CHUNK)


def test_the_chunk_record_is_kept_while_chunks_arrive(node: Node, tmp_path: Path) -> None:
    """A killed actor runs no clean-up: the record written as chunks came is all a retry has."""
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(64 * CHUNK))
    manifest = compute_manifest(path, CHUNK)
    offer = {"transfer": 1, "target": 1, "name": "f.bin", "size": manifest.size, "sha256": manifest.sha256}
    offer |= {"chunk_size": CHUNK, "children": []}
    offer["mac"] = wire.sign(SECRET, offer)
    record = PartRecord.of(node.root, "f.bin", manifest.size, CHUNK, manifest.sha256)
    part = node.root / "f.bin.part"
    with socket.create_connection((LOOPBACK, node.port), timeout=10) as conn:
        wire.send_json(conn, offer, magic=True)
        assert wire.recv_json(conn)["status"] == "ready"
        data = path.read_bytes()
        for index in range(8):  # 8 of 64 chunks, then the sender goes quiet, the connection open
            piece = data[index * CHUNK : (index + 1) * CHUNK]
            conn.sendall(wire.CHUNK.pack(index, index * CHUNK, CHUNK, manifest.crcs[index]) + piece)
        deadline = time.monotonic() + 10
        while wire.bit_count(record.load(part), 64) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        held = wire.bit_count(record.load(part), 64)
    assert 4 <= held <= 8, "the receiver wrote no record while the receive was still running"


def test_a_record_slow_to_save_does_not_hold_the_receive(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saving the record can wait for a flush of the part under way: the chunks keep coming."""
    release = threading.Event()
    save = PartRecord.save

    def slow_save(self: PartRecord, have: bytearray) -> None:
        release.wait(10)
        save(self, have)

    monkeypatch.setattr(PartRecord, "save", slow_save)
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(64 * CHUNK))
    results: list[Results] = []
    sender = threading.Thread(target=lambda: results.append(send(path, node.hop(1))), daemon=True)
    sender.start()
    deadline = time.monotonic() + 10
    row = None
    while time.monotonic() < deadline:
        row = node.progress.snapshot(1).get(1)
        if row is not None and row.bytes_done == 64 * CHUNK:
            break
        time.sleep(0.01)
    done = row.bytes_done if row else 0
    release.set()
    sender.join(10)
    assert done == 64 * CHUNK, f"the receive stopped at {done} bytes while a record was being saved"
    assert results and results[0][1].status == "completed"
    assert (node.root / "f.bin").read_bytes() == path.read_bytes()


def test_an_offer_signed_with_another_key_is_refused(node: Node, source: Path) -> None:
    manifest = compute_manifest(source, CHUNK)
    results = send_subtree(
        ChunkSource.from_manifest(source, manifest),
        node.hop(1),
        transfer=1,
        name="f.bin",
        secret=b"another cluster",
        limits=Limits(io_timeout=10),
        counters=Counters(),
        handle=open(source, "rb"),  # noqa: SIM115 - send_subtree closes it
    )
    assert results[1].status == "failed"
    assert "not signed with this cluster's key" in results[1].error
    assert list(node.root.iterdir()) == []


def test_an_unsafe_name_is_refused_at_the_receiver(node: Node, source: Path) -> None:
    results = send(source, node.hop(1), name="../escape.bin")
    assert results[1].status == "failed"
    assert "'..'" in results[1].error
    assert not (node.root.parent / "escape.bin").exists()


def test_a_target_that_cannot_be_reached_fails_with_its_subtree(node: Node, source: Path) -> None:
    with socket.create_server((LOOPBACK, 0)) as closed:
        port = closed.getsockname()[1]
    unreachable = Hop(1, "gone", LOOPBACK, port, (node.hop(2),))
    results = send(source, unreachable)
    assert {t: r.status for t, r in results.items()} == {1: "failed", 2: "failed"}
    assert all("link to gone failed" in r.error for r in results.values())
    assert not (node.root / "f.bin").exists()


def test_udp_mode_repairs_lost_datagrams(node: Node, source: Path) -> None:
    manifest = compute_manifest(source, CHUNK)
    plan = CastPlan(
        transfer=1,
        name="file.bin",
        dest_name="f.bin",
        chunk_size=CHUNK,
        sha256=manifest.sha256,
        children=(node.hop(1),),
        mode="udp",
        udp_drop_every=2,  # the first pass loses every other datagram
    )
    results = udp_cast(plan, source, manifest, secret=SECRET, limits=Limits(io_timeout=10), counters=Counters())
    assert results[1].status == "completed", results[1].error
    assert results[1].udp_passes >= 2
    assert (node.root / "f.bin").read_bytes() == source.read_bytes()
    assert node.leftovers() == []


def test_udp_progress_counts_a_repeated_datagram_once(node: Node, source: Path) -> None:
    """Repairs that cross late originals arrive twice: progress must not pass the file's size."""
    data = source.read_bytes()
    offer = {"transfer": 1, "target": 1, "name": "f.bin", "size": len(data), "sha256": sha256(source)}
    offer |= {"chunk_size": CHUNK, "children": [], "mode": "udp", "datagram": DATAGRAM_PAYLOAD}
    offer["mac"] = wire.sign(SECRET, offer)
    count = -(-len(data) // DATAGRAM_PAYLOAD)
    with (
        socket.create_connection((LOOPBACK, node.port), timeout=10) as control,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        wire.send_json(control, offer, magic=True)
        answer = wire.recv_json(control)
        dest = (LOOPBACK, int(answer["udp_port"]))
        reply: dict = {"missing": [[0, count]]}
        for attempt in range(UDP_MAX_PASSES):
            if "results" in reply:
                break
            # Every datagram is sent twice, every pass, whether or not it is missing.
            for seq in [*range(count), *range(count)]:
                piece = data[seq * DATAGRAM_PAYLOAD : (seq + 1) * DATAGRAM_PAYLOAD]
                udp.sendto(DATAGRAM.pack(1, seq, checksum(piece)) + piece, dest)
            wire.send_json(control, {"op": "end", "pass": attempt})
            reply = wire.recv_json(control)
    assert reply["results"]["1"]["status"] == "completed"
    assert node.progress.snapshot(1)[1].bytes_done == len(data)


def test_messages_reach_the_inbox_once(node: Node) -> None:
    batch = [{"id": 1, "message": 50, "sender": "n0", "kind": "text", "content": "hello", "created": ""}]
    assert send_messages(LOOPBACK, node.port, batch, secret=SECRET, timeout=10) == {1}
    assert send_messages(LOOPBACK, node.port, batch, secret=SECRET, timeout=10) == {1}
    assert [m["content"] for m in node.inbox.latest(10)] == ["hello"]
    with pytest.raises(ConnectionError, match="not signed"):
        send_messages(LOOPBACK, node.port, batch, secret=b"another cluster", timeout=10)


def test_a_relay_reports_its_own_finish_before_its_slow_child(node: Node, node2: Node, source: Path) -> None:
    size = source.stat().st_size
    node2.limits.ingress = TokenBucket(size / 1.5)  # the child takes ~1.5 s
    started = time.time()
    results = send(source, node.hop(1, node2.hop(2)))
    assert {t: r.status for t, r in results.items()} == {1: "completed", 2: "completed"}
    relay, child = node.progress.snapshot(1)[1], node2.progress.snapshot(1)[2]
    assert relay.status == "completed" and relay.finished is not None and child.finished is not None
    # The relay's row says completed, with its own time, while its child still receives.
    assert relay.finished - started < 0.5
    assert child.finished - relay.finished > 0.8
