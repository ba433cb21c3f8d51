"""Directory casts between threads over loopback TCP, the way node actors do, without Ray:
a nested tree down a relay tree, delta by file, atomic publish under a reader, mirror,
resume after a broken link, cancel, and refused paths and links."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.contract import Hop, Results
from dataplane.flow import Counters, Limits
from dataplane.storage import ManifestCache, UnsafePath
from dataplane.tree import Entry, TreeManifest, build_manifest, staging_dir, versions_dir
from dataplane.tree_cast import discard_all_staging, expire_staging
from dataplane.tree_wire import send_tree_children, tree_offer
from tests.dataplane.test_transfer import CHUNK, SECRET, Node

pytestmark = pytest.mark.unit


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    made = [Node(tmp_path / f"t{i}", f"t{i}") for i in range(3)]
    yield made
    for node in made:
        node.close()


def make_tree(top: Path) -> None:
    """Empty dir, 0-byte file, files of chunk-1 / chunk / chunk+1 bytes, an in-tree symlink, modes."""
    (top / "empty").mkdir(parents=True)
    (top / "a" / "b").mkdir(parents=True)
    (top / "zero").touch()
    for size, name in ((CHUNK - 1, "a/minus"), (CHUNK, "a/exact"), (CHUNK + 1, "a/b/plus")):
        (top / name).write_bytes(os.urandom(size))
    (top / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(top / "run.sh", 0o755)
    os.chmod(top / "a" / "minus", 0o600)
    os.symlink("a/b/plus", top / "latest")


def snapshot(top: Path) -> dict[str, tuple[str, int, str]]:
    """path -> (kind, mode, sha256 or link target) of everything under `top`."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for item in dirnames + filenames:
            path = Path(dirpath) / item
            st = path.lstat()
            rel = path.relative_to(top).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def cast(
    source_root: Path,
    name: str,
    children: tuple[Hop, ...],
    *,
    transfer: int = 1,
    mirror: bool = False,
    limits: Limits | None = None,
) -> tuple[Results, int]:
    """What a source actor does: build the manifest, send it down the tree; (results, bytes the source sent)."""
    manifest = build_manifest(source_root, ManifestCache(source_root), name, CHUNK)
    counters = Counters()
    results = send_tree_children(
        source_root / name,
        manifest,
        children,
        tree_offer(transfer, name, manifest, mirror=mirror),
        secret=SECRET,
        limits=limits or Limits(io_timeout=10),
        counters=counters,
    )
    return results, counters.of(transfer)


def test_a_nested_tree_reaches_three_nodes_through_a_relay_chain_identical(tmp_path, nodes) -> None:
    src = tmp_path / "src"
    make_tree(src / "ckpt")
    chain = (nodes[0].hop(1, nodes[1].hop(2, nodes[2].hop(3))),)
    results, sent = cast(src, "ckpt", chain)
    assert {t: r.status for t, r in results.items()} == {1: "completed", 2: "completed", 3: "completed"}, results
    expected = snapshot(src / "ckpt")
    for node in nodes:
        assert snapshot((node.root / "ckpt").resolve()) == expected, node.name
        assert not list(versions_dir(node.root, "ckpt").glob("staging-*"))
    assert sent == 3 * CHUNK + len(b"#!/bin/sh\necho hi\n")  # the source sent one copy; relays the rest
    assert results[3].files == 5 and results[3].files_skipped == 0


def test_a_relay_that_holds_the_tree_serves_a_new_child_from_its_own_copy(tmp_path, nodes) -> None:
    src = tmp_path / "src"
    make_tree(src / "ckpt")
    cast(src, "ckpt", (nodes[0].hop(1),))
    results, sent = cast(src, "ckpt", (nodes[0].hop(1, nodes[1].hop(2)),), transfer=2)
    assert sent == 0 and results[1].files_skipped == 5
    assert results[2].status == "completed" and results[2].bytes_received == 3 * CHUNK + 18
    assert snapshot((nodes[1].root / "ckpt").resolve()) == snapshot(src / "ckpt")


def test_a_recast_with_one_file_changed_moves_only_that_file(tmp_path, nodes) -> None:
    src = tmp_path / "src"
    top = src / "shards"
    top.mkdir(parents=True)
    for i in range(10):
        (top / f"shard-{i}.bin").write_bytes(os.urandom(CHUNK + i))
    chain = (nodes[0].hop(1, nodes[1].hop(2)),)
    cast(src, "shards", chain)
    (top / "shard-3.bin").write_bytes(os.urandom(CHUNK + 3))
    results, sent = cast(src, "shards", chain, transfer=2)
    assert sent == CHUNK + 3
    for target in (1, 2):
        assert results[target].bytes_received == CHUNK + 3
        assert results[target].files_skipped == 9 and results[target].files == 10
    assert snapshot((nodes[1].root / "shards").resolve()) == snapshot(top)


def test_mirror_removes_extraneous_files_and_its_absence_keeps_them(tmp_path, nodes) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "keep").write_bytes(b"k")
    hop = (nodes[0].hop(1),)
    cast(src, "d", hop)
    local = (nodes[0].root / "d").resolve()
    (local / "extra").write_bytes(b"only on the target")
    (src / "d" / "new").write_bytes(b"n")
    cast(src, "d", hop, transfer=2)
    assert sorted(os.listdir(nodes[0].root / "d")) == ["extra", "keep", "new"]
    cast(src, "d", hop, transfer=3, mirror=True)
    assert sorted(os.listdir(nodes[0].root / "d")) == ["keep", "new"]


def test_a_reader_sees_only_the_whole_old_or_the_whole_new_tree(tmp_path, nodes) -> None:
    src = tmp_path / "src"
    top = src / "m"
    top.mkdir(parents=True)
    versions = []
    for v in range(4):
        for i in range(20):
            (top / f"f{i}").write_bytes(f"v{v}-{i}".encode() * 500)
        versions.append(snapshot(top))
    hop = (nodes[0].hop(1),)
    for i in range(20):
        (top / f"f{i}").write_bytes(b"v0-%d" % i * 500)
    versions[0] = snapshot(top)
    cast(src, "m", hop)
    seen: list[dict[str, tuple[str, int, str]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(snapshot((nodes[0].root / "m").resolve()))
            except OSError as exc:  # a file vanishing under the reader would be a failure too
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    for v in range(1, 4):
        for i in range(20):
            (top / f"f{i}").write_bytes(f"v{v}-{i}".encode() * 500)
        cast(src, "m", hop, transfer=10 + v)
    stop.set()
    thread.join()
    assert seen and not errors
    contents = [{k: v[2] for k, v in version.items()} for version in versions]
    for observed in seen:
        assert {k: v[2] for k, v in observed.items()} in contents


def _cut_after_three_files(src: Path, nodes: list[Node]) -> Path:
    """Cast six one-chunk files to nodes[0] as transfer 1, cut after three; return the tree."""
    top = src / "r"
    top.mkdir(parents=True)
    for i in range(6):
        (top / f"f{i}").write_bytes(os.urandom(CHUNK))
    limits = Limits(io_timeout=10)
    # The source's cap stops it after three files, as a killed sender or receiver would.
    budget = {"frames": 3}

    class Cut:
        rate = 1.0

        def consume(self, n: int) -> None:
            budget["frames"] -= 1
            if budget["frames"] < 0:
                raise ConnectionResetError("link cut")

    limits.egress = Cut()  # type: ignore[assignment]
    results, _ = cast(src, "r", (nodes[0].hop(1),), limits=limits)
    assert results[1].status == "failed"
    # The sender's side ends first; the receiver notices the broken link a moment later.
    deadline = time.monotonic() + 10
    while (row := nodes[0].progress.snapshot(1).get(1)) is None or row.status == "receiving":
        assert time.monotonic() < deadline, row
        time.sleep(0.01)
    assert not (nodes[0].root / "r").exists()  # nothing published
    return top


def test_a_broken_link_resumes_without_resending_verified_files(tmp_path, nodes) -> None:
    top = _cut_after_three_files(tmp_path / "src", nodes)
    results, sent = cast(tmp_path / "src", "r", (nodes[0].hop(1),))
    assert results[1].status == "completed", results
    assert sent == 3 * CHUNK and results[1].bytes_received == 3 * CHUNK
    assert snapshot((nodes[0].root / "r").resolve()) == snapshot(top)


def test_a_retry_as_a_new_cast_takes_the_files_the_failed_one_verified(tmp_path, nodes) -> None:
    top = _cut_after_three_files(tmp_path / "src", nodes)
    discard_all_staging(nodes[0].root, 1)  # the worker's forget at the end of the failed cast
    assert staging_dir(nodes[0].root, "r", 1).exists()
    # One of them was damaged on disk meanwhile: it is hashed again and asked for.
    (staging_dir(nodes[0].root, "r", 1) / "f0").write_bytes(b"rot")
    results, sent = cast(tmp_path / "src", "r", (nodes[0].hop(1),), transfer=2)
    assert results[1].status == "completed", results
    assert sent == 4 * CHUNK and results[1].bytes_received == 4 * CHUNK
    assert snapshot((nodes[0].root / "r").resolve()) == snapshot(top)
    assert not list(versions_dir(nodes[0].root, "r").glob("staging-*"))  # the published version supersedes it


def test_staging_no_retry_can_use_goes_at_forget_or_when_it_expires(tmp_path, nodes) -> None:
    root = nodes[0].root
    _cut_after_three_files(tmp_path / "src", nodes)
    empty = staging_dir(root, "r", 7)
    empty.mkdir()
    discard_all_staging(root, 7)
    assert not empty.exists()
    now = time.time()
    assert expire_staging(root, 3600, now, keep=[]) == []
    assert expire_staging(root, 3600, now + 7200, keep=["r"]) == []  # a queued cast of r will resume it
    assert expire_staging(root, 3600, now + 7200, keep=[]) == [str(staging_dir(root, "r", 1).relative_to(root))]
    assert not list(versions_dir(root, "r").glob("staging-*"))


def test_a_cancelled_cast_leaves_the_old_version_and_no_staging(tmp_path, nodes) -> None:
    src = tmp_path / "src"
    (src / "c").mkdir(parents=True)
    (src / "c" / "x").write_bytes(b"old")
    hop = (nodes[0].hop(1),)
    cast(src, "c", hop)
    (src / "c" / "x").write_bytes(os.urandom(3 * CHUNK))
    nodes[0].limits.cancelled.add(2)
    results, _ = cast(src, "c", hop, transfer=2)
    assert results[1].status in ("cancelled", "failed")
    assert (nodes[0].root / "c" / "x").read_bytes() == b"old"
    assert not staging_dir(nodes[0].root, "c", 2).exists()


def test_an_escaping_symlink_and_a_dotdot_path_are_refused(tmp_path) -> None:
    src = tmp_path / "src"
    (src / "e").mkdir(parents=True)
    (tmp_path / "secret").write_text("s")
    os.symlink("../../secret", src / "e" / "leak")
    with pytest.raises(UnsafePath, match="e/leak is a symbolic link leading outside e"):
        build_manifest(src, ManifestCache(src), "e", CHUNK)
    with pytest.raises(UnsafePath, match=r"'\.\.'"):
        TreeManifest.from_wire([Entry("../x", "file").to_wire()])
    with pytest.raises(UnsafePath, match="outside the tree"):
        TreeManifest.from_wire([Entry("a/l", "link", target="../../x").to_wire()])


def test_an_unchanged_tree_is_walked_from_its_record_and_a_changed_file_is_hashed_again(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    make_tree(root / "ckpt")
    manifests = ManifestCache(root)
    first = build_manifest(root, manifests, "ckpt", CHUNK)
    hashed: list[str] = []
    real = manifests.sha256

    def counting(name: str, path: Path, chunk_size: int) -> str:
        hashed.append(name)
        return real(name, path, chunk_size)

    manifests.sha256 = counting  # type: ignore[method-assign]
    assert build_manifest(root, manifests, "ckpt", CHUNK) == first
    assert hashed == [], "an unchanged tree was looked up file by file"

    changed = next(e for e in first.files if e.size > 0)
    (root / "ckpt" / changed.path).write_bytes(b"new bytes")
    again = build_manifest(root, manifests, "ckpt", CHUNK)
    assert hashed == [f"ckpt/{changed.path}"]
    assert {e.path: e.sha256 for e in again.files}[changed.path] == hashlib.sha256(b"new bytes").hexdigest()
