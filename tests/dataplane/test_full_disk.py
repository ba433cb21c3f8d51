"""A target whose storage fills up: refused up front when the file cannot fit, and when the disk
fills during the receive, the reason says so and the `.part` is removed (no Ray, loopback TCP)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.contract import Results
from dataplane.flow import Counters, Limits
from dataplane.sender import ChunkSource, send_subtree
from dataplane.storage import compute_manifest
from tests.dataplane.test_transfer import SECRET, Node, send
from tests.tmpfs import small_tmpfs

pytestmark = pytest.mark.unit

CHUNK = 1024 * 1024


@pytest.fixture
def full_node(tmp_path: Path) -> Iterator[Node]:
    with small_tmpfs(tmp_path / "disk", "32m") as disk:
        made = Node(disk / "n1", "n1")
        yield made
        made.close()


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_a_file_larger_than_the_free_space_is_refused_before_a_byte_is_sent(full_node: Node, tmp_path: Path) -> None:
    path = random_file(tmp_path / "src" / "big.bin", 40 * CHUNK)
    counters = Counters()
    results = send(path, full_node.hop(1), manifest=compute_manifest(path, CHUNK), counters=counters)
    assert results[1].status == "failed"
    assert "no space left on device" in results[1].error and "bytes free" in results[1].error
    assert counters.of(1) == 0
    assert full_node.leftovers() == []


def test_a_disk_that_fills_during_the_receive_fails_with_enospc_and_frees_the_part(
    full_node: Node, tmp_path: Path
) -> None:
    path = random_file(tmp_path / "src" / "f.bin", 20 * CHUNK)
    manifest = compute_manifest(path, CHUNK)
    # Chunks become available only when the test says, as from a relay still receiving, so
    # that the disk can be filled after the receiver accepted the offer.
    source = ChunkSource(path, manifest.size, CHUNK, manifest.sha256, [None] * len(manifest.crcs), complete=False)
    results: Results = {}

    def run() -> None:
        results.update(
            send_subtree(
                source,
                full_node.hop(1),
                transfer=1,
                name="f.bin",
                secret=SECRET,
                limits=Limits(io_timeout=10),
                counters=Counters(),
                handle=open(path, "rb"),  # noqa: SIM115 - send_subtree closes it
            )
        )

    sender = threading.Thread(target=run, daemon=True)
    sender.start()
    part = full_node.root / "f.bin.part"
    deadline = time.monotonic() + 10
    while not part.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert part.exists(), "the receiver never accepted the offer"
    filler = full_node.root.parent / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(filler.parent).free - 4 * CHUNK))
    for index, crc in enumerate(manifest.crcs):
        source.mark(index, crc)
    sender.join(30)
    assert results[1].status == "failed"
    assert "no space left on device" in results[1].error, results[1].error
    assert full_node.leftovers() == []

    # With the space back, the node takes the file.
    filler.unlink()
    again = send(path, full_node.hop(1), manifest=manifest, name="f.bin")
    assert again[1].status == "completed", again[1].error


def test_a_disk_that_fills_during_a_tree_fails_naming_enospc_and_frees_the_staging(
    full_node: Node, tmp_path: Path
) -> None:
    from dataplane.tree import versions_dir
    from tests.dataplane.test_tree import cast

    src = tmp_path / "src"
    for i in range(3):
        random_file(src / "t" / f"f{i}", 2 * CHUNK)
    filler = full_node.root.parent / "filler"

    class FillsTheDisk:
        """The sender's cap: before its first frame, everything but 1 MiB of the target's disk fills."""

        rate = 1.0

        def consume(self, n: int) -> None:
            if not filler.exists():
                filler.write_bytes(b"\0" * (shutil.disk_usage(filler.parent).free - CHUNK))

    limits = Limits(io_timeout=10)
    limits.egress = FillsTheDisk()  # type: ignore[assignment]
    results, _sent = cast(src, "t", (full_node.hop(1),), limits=limits)
    assert results[1].status == "failed"
    assert "no space left on device (ENOSPC)" in results[1].error, results[1].error
    assert not list(versions_dir(full_node.root, "t").glob("staging-*"))
    filler.unlink()
    assert shutil.disk_usage(full_node.root).used < CHUNK  # nothing of the tree holds space

    # A tree that cannot fit at all is refused before a byte is sent.
    random_file(src / "t" / "big", 40 * CHUNK)
    results, sent = cast(src, "t", (full_node.hop(1),), transfer=2)
    assert "no space left on device (ENOSPC): the tree needs" in results[1].error, results[1].error
    assert sent == 0
