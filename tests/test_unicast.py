"""Unicast through the whole system: rows, the worker, real actors, real sockets, real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from nodes.services import node_set_enabled
from tests.helpers import finished, random_file, sha256_of
from transfers.models import Target, Transfer
from transfers.services import transfer_create

pytestmark = [pytest.mark.ray, pytest.mark.django_db]
CHUNK = 64 * 1024


def test_chunk_size_is_the_small_test_chunk() -> None:
    # The edge sizes below are only edges if the chunk is what they assume.
    assert settings.CASTRAY_CHUNK_SIZE == CHUNK


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 64 * 1024 * 1024])
def test_it_delivers_byte_identical_files(worker, nodes, size: int) -> None:
    src, dst = nodes["node_1"], nodes["node_2"]
    path = random_file(src, f"data/f{size}.bin", size)
    transfer = transfer_create(source=src, file_name=f"data/f{size}.bin", targets=[dst])
    assert worker.run_until(finished(transfer), timeout=120)

    received = Path(dst.storage_root) / "data" / f"f{size}.bin"
    assert received.read_bytes() == path.read_bytes() if size < 1 << 20 else sha256_of(received) == sha256_of(path)
    assert not received.with_name(received.name + ".part").exists()
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    assert transfer.size == size
    assert transfer.sha256 == sha256_of(path)
    assert transfer.duration is not None and transfer.duration >= 0
    assert transfer.source_bytes_sent == size
    target = transfer.targets.get()
    assert target.status == Target.Status.COMPLETED
    assert target.bytes_done == size
    assert target.finished_at is not None
    if size:
        assert transfer.rate and transfer.rate > 0
        assert target.rate and target.rate > 0


def test_a_corrupted_chunk_is_detected_and_nothing_is_left_under_the_final_name(worker, nodes) -> None:
    src, dst = nodes["node_1"], nodes["node_2"]
    path = random_file(src, "rot.bin", 10 * CHUNK)
    first = transfer_create(source=src, file_name="rot.bin", targets=[nodes["node_3"]])
    assert worker.run_until(finished(first))  # the source has now hashed the file once
    assert first.status == Transfer.Status.COMPLETED
    # Bit rot after hashing: same size, same mtime, so the cached checksums no longer
    # match the bytes that will be sent.
    stat = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(5 * CHUNK + 17)
        byte = handle.read(1)
        handle.seek(5 * CHUNK + 17)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    transfer = transfer_create(source=src, file_name="rot.bin", targets=[dst])
    assert worker.run_until(finished(transfer))
    target = transfer.targets.get()
    assert transfer.status == Transfer.Status.FAILED
    assert target.status == Target.Status.FAILED
    assert "chunk 5 failed its checksum" in target.error
    assert "chunk 5" in transfer.error
    assert not (Path(dst.storage_root) / "rot.bin").exists()


def test_a_transfer_to_a_node_disabled_after_queueing_fails_with_the_reason(worker, nodes) -> None:
    src, dst = nodes["node_1"], nodes["node_2"]
    random_file(src, "a.bin", 1000)
    transfer = transfer_create(source=src, file_name="a.bin", targets=[dst, nodes["node_3"]])
    node_set_enabled(node=dst, enabled=False)
    assert worker.run_until(finished(transfer))
    assert transfer.status == Transfer.Status.PARTIAL
    failed = transfer.targets.get(node=dst)
    assert failed.status == Target.Status.FAILED
    assert failed.error == "target node node_2 is disabled"
    assert transfer.targets.get(node=nodes["node_3"]).status == Target.Status.COMPLETED
    assert not (Path(dst.storage_root) / "a.bin").exists()


def test_a_missing_source_file_fails_with_the_reason(worker, nodes) -> None:
    transfer = transfer_create(source=nodes["node_1"], file_name="nope.bin", targets=[nodes["node_2"]])
    assert worker.run_until(finished(transfer))
    assert transfer.status == Transfer.Status.FAILED
    assert "nope.bin does not exist" in transfer.error
    assert transfer.targets.get().status == Target.Status.FAILED


def test_a_target_that_has_the_file_is_skipped_without_receiving_it(worker, nodes) -> None:
    src, dst = nodes["node_1"], nodes["node_2"]
    path = random_file(src, "same.bin", 3 * CHUNK + 5)
    (Path(dst.storage_root) / "same.bin").write_bytes(path.read_bytes())
    transfer = transfer_create(source=src, file_name="same.bin", targets=[dst])
    assert worker.run_until(finished(transfer))
    assert transfer.status == Transfer.Status.COMPLETED
    target = transfer.targets.get()
    assert target.status == Target.Status.SKIPPED
    assert transfer.source_bytes_sent == 0
