"""`PartFile`: a file received chunk by chunk (object-store and UDP modes), resumed and verified;
`PartKeeper`: the TCP receiver's flushes and records, off its loop."""

from __future__ import annotations

import errno
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from dataplane import wire
from dataplane.partfile import PartFile, PartKeeper, PartRecord
from dataplane.storage import ManifestCache, checksum

pytestmark = pytest.mark.unit

CHUNK = 4096
DATA = os.urandom(3 * CHUNK + 100)  # four chunks, the last one short
SHA = hashlib.sha256(DATA).hexdigest()
NAME = "dir/file.bin"


def chunk(index: int) -> bytes:
    return DATA[index * CHUNK : (index + 1) * CHUNK]


def write(part: PartFile, *indexes: int) -> None:
    for index in indexes:
        part.write(index, chunk(index), checksum(chunk(index)))


def leftovers(root: Path) -> list[str]:
    """What an unfinished receive leaves: `.part` files and resume records."""
    parts = [*root.rglob("*.part"), *(root / ".castray" / "partial").glob("*")]
    return sorted(str(p.relative_to(root)) for p in parts)


def test_chunks_written_out_of_order_make_the_file(tmp_path: Path) -> None:
    manifests = ManifestCache(tmp_path)
    part = PartFile(tmp_path, NAME, len(DATA), SHA, CHUNK)
    write(part, 3, 1)
    assert part.missing() == [0, 2]
    assert part.received == CHUNK + 100
    write(part, 0, 2)
    assert part.missing() == []
    assert part.finish(manifests) == SHA
    assert (tmp_path / NAME).read_bytes() == DATA
    assert manifests.peek_sha256(NAME, tmp_path / NAME) == SHA
    assert leftovers(tmp_path) == []


def test_a_chunk_with_a_bad_checksum_or_the_wrong_place_is_refused(tmp_path: Path) -> None:
    part = PartFile(tmp_path, NAME, len(DATA), SHA, CHUNK)
    with pytest.raises(wire.ProtocolError, match="failed its checksum"):
        part.write(1, chunk(1), checksum(chunk(1)) ^ 1)
    with pytest.raises(wire.ProtocolError, match="does not fit"):
        part.write(1, chunk(1)[:-1], checksum(chunk(1)[:-1]))
    with pytest.raises(wire.ProtocolError, match="does not fit"):
        part.write(4, b"x", checksum(b"x"))
    assert part.missing() == [0, 1, 2, 3]
    assert part.received == 0
    part.abandon(delete=True)


def test_a_saved_record_lets_a_reopened_part_resume(tmp_path: Path) -> None:
    first = PartFile(tmp_path, NAME, len(DATA), SHA, CHUNK)
    write(first, 0, 2)
    first.save_record()
    first.abandon()  # an interrupted receive: the .part and its record stay
    assert not (tmp_path / NAME).exists()

    second = PartFile(tmp_path, NAME, len(DATA), SHA, CHUNK)
    assert second.missing() == [1, 3]
    assert second.held_bytes() == 2 * CHUNK
    write(second, 1, 3)
    assert second.received == CHUNK + 100  # only what this attempt wrote
    assert second.finish(ManifestCache(tmp_path)) == SHA
    assert (tmp_path / NAME).read_bytes() == DATA
    assert not PartRecord.of(tmp_path, NAME, len(DATA), CHUNK, SHA).path.exists()


def test_a_record_of_another_version_of_the_file_is_not_resumed(tmp_path: Path) -> None:
    first = PartFile(tmp_path, NAME, len(DATA), SHA, CHUNK)
    write(first, 0, 1, 2)
    first.abandon()
    other = hashlib.sha256(b"another file").hexdigest()
    assert PartFile(tmp_path, NAME, len(DATA), other, CHUNK).missing() == [0, 1, 2, 3]


def test_finishing_with_chunks_missing_keeps_them_for_the_next_attempt(tmp_path: Path) -> None:
    part = PartFile(tmp_path, NAME, len(DATA), SHA, CHUNK)
    write(part, 0, 1)
    with pytest.raises(ConnectionError, match="2 of 4 chunks are missing"):
        part.finish(ManifestCache(tmp_path))
    part.abandon()
    assert PartFile(tmp_path, NAME, len(DATA), SHA, CHUNK).missing() == [2, 3]


def test_a_wrong_sha256_removes_the_part_and_names_nothing(tmp_path: Path) -> None:
    wrong = hashlib.sha256(b"not this file").hexdigest()
    part = PartFile(tmp_path, NAME, len(DATA), wrong, CHUNK)
    write(part, 0, 1, 2, 3)
    part.save_record()
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        part.finish(ManifestCache(tmp_path))
    assert not (tmp_path / NAME).exists()
    assert leftovers(tmp_path) == []


def test_a_file_already_there_with_the_same_sha256_is_complete(tmp_path: Path) -> None:
    manifests = ManifestCache(tmp_path)
    (tmp_path / "dir").mkdir()
    (tmp_path / NAME).write_bytes(DATA)
    part = PartFile(tmp_path, NAME, len(DATA), SHA, CHUNK)
    assert part.already_complete(manifests)
    part.abandon(delete=True)
    assert leftovers(tmp_path) == []
    other = PartFile(tmp_path, NAME, len(DATA), hashlib.sha256(b"other").hexdigest(), CHUNK)
    assert not other.already_complete(manifests)
    other.abandon(delete=True)
    assert (tmp_path / NAME).read_bytes() == DATA


def test_a_records_held_bytes_count_each_chunk_once_and_the_short_last_one_as_it_is(tmp_path: Path) -> None:
    record = PartRecord.of(tmp_path, "f.bin", 10_000, 4096, "ab" * 32)  # chunks of 4096, 4096, 1808
    part = tmp_path / "f.bin.part"
    part.write_bytes(b"\0" * 10_000)
    have = wire.new_bitmap(3)
    wire.bit_set(have, 0)
    wire.bit_set(have, 2)
    record.save(have)
    assert record.held_bytes(part) == 4096 + 1808
    assert PartRecord.of(tmp_path, "f.bin", 10_000, 4096, "cd" * 32).held_bytes(part) == 0  # another version
    part.unlink()
    assert record.held_bytes(part) == 0  # no part, nothing held


def test_abort_answers_what_the_part_holds_even_without_a_row(tmp_path: Path) -> None:
    # A node actor that came back after a partition knows nothing of the receive (no row),
    # but its disk does: the answer carries the bytes of the chunks the part's record holds.
    from types import SimpleNamespace

    from dataplane.actor import CastNode
    from dataplane.contract import PartOf
    from dataplane.flow import Limits, Progress

    record = PartRecord.of(tmp_path, "d/f.bin", 10_000, 4096, "ab" * 32)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.bin.part").write_bytes(b"\0" * 8192)
    have = wire.new_bitmap(3)
    wire.bit_set(have, 1)
    record.save(have)
    actor = SimpleNamespace(limits=Limits(), progress=Progress(), root=tmp_path)
    row = CastNode.abort(actor, 7, 3, PartOf("d/f.bin", 10_000, 4096, "ab" * 32))  # type: ignore[arg-type]
    assert row.bytes_on_disk == 4096 and row.bytes_received == 0
    assert CastNode.abort(actor, 7, 3).bytes_on_disk is None  # not asked  # type: ignore[arg-type]
    escaping = CastNode.abort(actor, 7, 3, PartOf("../x.bin", 10_000, 4096, "ab" * 32))  # type: ignore[arg-type]
    assert escaping.bytes_on_disk is None


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keeper_for(tmp_path: Path, **kwargs: Any) -> tuple[PartKeeper, PartRecord, int]:
    record = PartRecord.of(tmp_path, NAME, len(DATA), CHUNK, SHA)
    part = tmp_path / "file.bin.part"
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, DATA)
    kwargs.setdefault("clock", Clock())
    return PartKeeper(fd, record, **kwargs), record, fd


def test_the_keeper_flushes_each_time_enough_bytes_were_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[int] = []
    monkeypatch.setattr(os, "fdatasync", flushed.append)
    keeper, _, fd = keeper_for(tmp_path, flush_every=10)
    keeper.wrote(6)
    keeper.close()
    assert flushed == []  # 6 of 10 bytes: nothing to flush yet
    keeper = PartKeeper(fd, PartRecord.of(tmp_path, NAME, len(DATA), CHUNK, SHA), flush_every=10, clock=Clock())
    keeper.wrote(6)
    keeper.wrote(6)  # 12 bytes: a flush, on the keeper's thread
    deadline = time.monotonic() + 10
    while not flushed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flushed == [fd]
    keeper.wrote(6)
    keeper.wrote(6)  # 12 more: another
    keeper.close()
    assert flushed == [fd, fd]
    os.close(fd)


def test_the_keeper_flushes_what_came_slowly_once_enough_time_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A capped receive gathers few bytes a second: its part is flushed by time, not size."""
    flushed: list[int] = []
    monkeypatch.setattr(os, "fdatasync", flushed.append)
    clock = Clock()
    keeper, _, fd = keeper_for(tmp_path, flush_every=1000, flush_seconds=0.5, clock=clock)
    keeper.wrote(10)
    clock.now += 0.4
    keeper.wrote(10)  # 20 bytes in 0.4 s: not yet
    clock.now += 0.2
    keeper.wrote(10)  # 0.6 s since the last flush: now
    clock.now += 5
    keeper.close()  # nothing written since: no flush for time alone
    assert flushed == [fd]
    os.close(fd)


def test_the_keeper_saves_the_newest_record_it_was_given(tmp_path: Path) -> None:
    keeper, record, fd = keeper_for(tmp_path)
    have = wire.new_bitmap(4)
    for index in (0, 2):
        wire.bit_set(have, index)
        keeper.save(have)
    keeper.close()
    os.close(fd)
    assert record.load(tmp_path / "file.bin.part") == have


def test_a_failed_flush_is_raised_by_the_next_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    keeper, _, fd = keeper_for(tmp_path, flush_every=1)
    keeper.wrote(1)
    with pytest.raises(OSError) as raised:
        keeper.close()
    assert raised.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        keeper.wrote(1)
    os.close(fd)
