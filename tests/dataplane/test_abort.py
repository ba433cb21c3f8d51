"""The worker gives up on a target: its receiver stops, never renames, keeps its part (no Ray)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from dataplane.contract import ProgressRow, TargetResult
from dataplane.flow import Limits, Progress
from dataplane.partfile import PartFile
from dataplane.storage import ManifestCache, checksum
from tests.dataplane.test_transfer import CHUNK, Node, node, send, sha256, source  # noqa: F401 - fixtures

pytestmark = pytest.mark.unit


def test_abort_and_rename_exclude_each_other() -> None:
    limits = Limits()
    with limits.committing(1, 7, "abc"):
        pass
    assert limits.abort(1, 7) == "abc"  # renamed first: abort answers with the digest
    assert limits.abort(1, 8) == ""  # not renamed: stopped
    with pytest.raises(ConnectionAbortedError, match="gave up"), limits.committing(1, 8, "abc"):
        raise AssertionError("never reached: the rename must not run")
    limits.check(1, 9)  # other targets of the cast go on
    limits.check(1)


def test_an_aborted_target_stops_keeps_its_part_and_names_nothing(node: Node, source: Path) -> None:  # noqa: F811
    assert node.limits.abort(1, 1) == ""
    results = send(source, node.hop(1))
    assert results[1].status == "cancelled" and "gave up" in results[1].error
    assert not (node.root / "f.bin").exists()
    assert node.leftovers() != []  # the .part and its record stay for a later attempt
    # A later attempt is another cast (a retry), which the abort does not touch.
    assert node.limits.abort(1, 1) == ""


def test_a_target_renamed_before_the_abort_is_reported_with_its_digest(node: Node, source: Path) -> None:  # noqa: F811
    assert send(source, node.hop(1))[1].status == "completed"
    assert node.limits.abort(1, 1) == sha256(source)
    assert (node.root / "f.bin").read_bytes() == source.read_bytes()


def test_a_part_file_whose_rename_is_refused_keeps_every_chunk(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK)
    part = PartFile(tmp_path, "g.bin", len(data), hashlib.sha256(data).hexdigest(), CHUNK)
    for i in range(3):
        piece = data[i * CHUNK : (i + 1) * CHUNK]
        part.write(i, piece, checksum(piece))
    limits = Limits()
    limits.abort(5, 6)
    with pytest.raises(ConnectionAbortedError):
        part.finish(ManifestCache(tmp_path), lambda digest: limits.committing(5, 6, digest))
    part.abandon()  # what the modes do with a failed finish: close it, keep it and its record
    assert not (tmp_path / "g.bin").exists()
    assert (tmp_path / "g.bin.part").read_bytes() == data
    again = PartFile(tmp_path, "g.bin", len(data), hashlib.sha256(data).hexdigest(), CHUNK)
    assert again.held_bytes() == len(data)
    again.abandon()


def test_a_stopped_receive_keeps_its_count_of_bytes() -> None:
    progress = Progress()
    progress.add_bytes(1, 2, 3 * CHUNK, received=3 * CHUNK)
    progress.finish(1, 2, TargetResult(status="cancelled", error="the worker gave up on this target"))
    row = progress.snapshot(1)[2]
    assert (row.status, row.bytes_received) == ("cancelled", 3 * CHUNK)


def test_an_abort_drops_a_slow_receive_at_once_and_counts_what_it_holds(node: Node, source: Path) -> None:  # noqa: F811
    node.limits.set_caps(None, CHUNK)  # one chunk a second: the receive is still going when aborted
    results: list[dict[int, TargetResult]] = []
    sending = threading.Thread(target=lambda: results.append(send(source, node.hop(1))))
    sending.start()
    deadline = time.monotonic() + 10
    while node.progress.snapshot(1).get(1, ProgressRow()).bytes_received < CHUNK:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    aborted_at = time.monotonic()
    assert node.limits.abort(1, 1) == ""
    sending.join(timeout=10)
    assert time.monotonic() - aborted_at < 2.5  # not after the rest of the file
    assert results[0][1].status == "failed"  # the sender lost the connection it was sending on
    assert not (node.root / "f.bin").exists()
    while (row := node.progress.snapshot(1)[1]).status == "receiving":  # its thread ends soon after
        assert time.monotonic() - aborted_at < 5
        time.sleep(0.01)
    assert row.status == "cancelled" and "gave up" in row.error
    # What it counts is what it keeps: a retry needs exactly the rest.
    again = send(source, node.hop(2))
    assert again[2].status == "completed"
    assert row.bytes_received + again[2].bytes_received == source.stat().st_size


def test_a_receive_still_running_keeps_its_row_when_its_cast_is_forgotten() -> None:
    progress = Progress()
    progress.add_bytes(1, 2, 3 * CHUNK, received=3 * CHUNK)  # behind a partition, still receiving
    progress.add_bytes(1, 3, CHUNK, received=CHUNK)
    progress.finish(1, 3, TargetResult(status="completed", bytes_received=CHUNK))
    progress.forget(1)  # the worker finished the cast without it
    assert list(progress.snapshot(1)) == [2]
    progress.add_bytes(1, 2, CHUNK, received=CHUNK)
    progress.finish(1, 2, TargetResult(status="cancelled", error="the worker gave up on this target"))
    assert progress.snapshot(1)[2].bytes_received == 4 * CHUNK
