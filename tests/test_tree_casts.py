"""Directory casts with real actors: a nested tree through a relay chain, a re-cast that moves
only the changed file (read off the record), mirror, and the API's view of it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dataplane.tree import versions_dir
from nodes.models import Node
from tests.dataplane.test_tree import make_tree, snapshot
from tests.helpers import finished
from transfers.models import Transfer
from transfers.services import transfer_create

pytestmark = [pytest.mark.ray, pytest.mark.django_db]
CHUNK = 64 * 1024


def test_a_tree_reaches_three_nodes_identical_and_a_recast_moves_only_the_changed_file(worker, make_nodes) -> None:
    nodes = make_nodes(4)
    top = Path(nodes[0].storage_root) / "ckpt"
    make_tree(top)  # chunk-sized files of the data-plane tests: 4096 bytes each side
    (top / "big.bin").write_bytes(os.urandom(3 * CHUNK + 1))
    transfer = transfer_create(source=nodes[0], file_name="ckpt", targets=nodes[1:], fan_out=1)
    assert worker.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.COMPLETED, (transfer.error, list(transfer.targets.values()))
    assert transfer.is_directory and transfer.files == 6
    # The manifest the source reported is kept: each file's path, size and SHA-256.
    recorded = {f.path: (f.size, f.sha256) for f in transfer.manifest_files.all()}
    on_disk = {p.relative_to(top).as_posix(): p for p in top.rglob("*") if p.is_file() and not p.is_symlink()}
    assert sorted(recorded) == sorted(on_disk)
    assert recorded["big.bin"] == (3 * CHUNK + 1, hashlib.sha256(on_disk["big.bin"].read_bytes()).hexdigest())
    for node in nodes[1:]:
        assert snapshot((Path(node.storage_root) / "ckpt").resolve()) == snapshot(top), node.name
        assert not list(versions_dir(Path(node.storage_root), "ckpt").glob("staging-*"))
    assert transfer.source_bytes_sent == transfer.size  # a chain: one copy from the source

    (top / "big.bin").write_bytes(os.urandom(3 * CHUNK + 1))
    again = transfer_create(source=nodes[0], file_name="ckpt", targets=nodes[1:], fan_out=1)
    assert worker.run_until(finished(again), timeout=120)
    assert again.status == Transfer.Status.COMPLETED, again.error
    changed = 3 * CHUNK + 1
    assert again.source_bytes_sent == changed
    for target in again.targets.all():
        assert target.bytes_received == changed
        assert (target.files_done, target.files_skipped) == (6, 5)
        assert target.bytes_skipped == again.size - changed
    for node in nodes[1:]:
        assert snapshot((Path(node.storage_root) / "ckpt").resolve()) == snapshot(top), node.name


def test_mirror_through_the_api_drops_what_the_source_lacks(worker, make_nodes, api) -> None:
    nodes = make_nodes(2)
    top = Path(nodes[0].storage_root) / "cfg"
    top.mkdir()
    (top / "a.json").write_text("{}")
    body = {"source": nodes[0].name, "file_name": "cfg", "targets": [nodes[1].name]}
    first = Transfer.objects.get(pk=api.post("/api/v1/transfers/", body, format="json").json()["id"])
    assert worker.run_until(finished(first), timeout=120) and first.status == Transfer.Status.COMPLETED, first.error
    here = (Path(nodes[1].storage_root) / "cfg").resolve()
    (here / "stale.json").write_text("{}")
    response = api.post("/api/v1/transfers/", {**body, "mirror": True}, format="json")
    assert response.status_code == 201, response.json()
    second = Transfer.objects.get(pk=response.json()["id"])
    assert worker.run_until(finished(second), timeout=120) and second.status == Transfer.Status.COMPLETED
    assert sorted(os.listdir(Path(nodes[1].storage_root) / "cfg")) == ["a.json"]
    shown = api.get(f"/api/v1/transfers/{second.pk}/").json()
    assert shown["is_directory"] and shown["files"] == 1 and shown["mirror"]
    assert shown["recipients"][0]["files_skipped"] == 1 and shown["recipients"][0]["files_done"] == 1


def test_a_tree_with_a_link_out_of_it_is_refused_naming_the_link(worker, make_nodes) -> None:
    nodes = make_nodes(2)
    root = Path(nodes[0].storage_root)
    (root / "d").mkdir()
    (root / "d" / "ok.bin").write_bytes(b"fine")
    (root / "secret.txt").write_text("not part of the tree")
    os.symlink("../secret.txt", root / "d" / "leak")
    transfer = transfer_create(source=nodes[0], file_name="d", targets=[nodes[1]])
    assert worker.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.FAILED
    assert "d/leak is a symbolic link leading outside d" in transfer.error
    assert not (Path(nodes[1].storage_root) / "d").exists()


def test_a_cancelled_directory_cast_leaves_the_old_version_and_no_staging(worker, make_nodes) -> None:
    import ray

    from dataplane.contract import Caps
    from transfers.services import transfer_cancel

    nodes = make_nodes(2)
    top = Path(nodes[0].storage_root) / "d"
    top.mkdir()
    (top / "x").write_bytes(b"old")
    first = transfer_create(source=nodes[0], file_name="d", targets=[nodes[1]])
    assert worker.run_until(finished(first), timeout=120) and first.status == Transfer.Status.COMPLETED
    for name in ("x", "y"):
        (top / name).write_bytes(os.urandom(4 * 1024 * 1024))
    # A capped source keeps the cast going long enough to cancel it in the middle (the
    # worker passes the node's cap with every heartbeat; the ping applies it at once).
    Node.objects.filter(pk=nodes[0].pk).update(egress_cap=1024 * 1024)
    ray.get(worker.actors[nodes[0].pk].ping.remote(Caps(egress=1024 * 1024)))
    second = transfer_create(source=nodes[0], file_name="d", targets=[nodes[1]])
    target = second.targets.get()

    def receiving() -> bool:
        target.refresh_from_db()
        return target.bytes_done > 0

    assert worker.run_until(receiving, timeout=120)
    assert transfer_cancel(transfer=second), second.status
    here = Path(nodes[1].storage_root)
    assert worker.run_until(lambda: not list(versions_dir(here, "d").glob("staging-*")), timeout=60)
    assert (here / "d" / "x").read_bytes() == b"old" and not (here / "d" / "y").exists()
