"""Full disks with real actors: a source whose storage cannot hold the object it fetches from
an origin, and a directory cast to a target whose storage cannot hold the tree. Each cast
ends with a reason naming the lack of space, and the filesystem is not left full."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import finished, write_random
from tests.origin_servers import http_origin
from tests.tmpfs import small_tmpfs
from transfers.models import Transfer
from transfers.services import transfer_create

pytestmark = [pytest.mark.ray, pytest.mark.django_db]
MiB = 1024 * 1024


def _left_on(disk: Path) -> list[str]:
    """Files still on `disk` (what the node keeps for itself is small: its indexes)."""
    return sorted(
        p.relative_to(disk).as_posix() for p in disk.rglob("*") if p.is_file() and p.stat().st_size > 64 * 1024
    )


def test_an_origin_larger_than_the_source_disk_fails_naming_no_space_and_frees_the_fetch(
    worker, make_nodes, storage, settings
) -> None:
    settings.CASTRAY_ORIGIN_ALLOW_PRIVATE = True  # the origin is on loopback
    with http_origin() as (base, state), small_tmpfs(storage / "c0", "8m") as disk:
        state.put("/big.bin", os.urandom(12 * MiB))
        nodes = make_nodes(2)
        assert Path(nodes[0].storage_root) == disk
        transfer = transfer_create(source=nodes[0], file_name="", origin=f"{base}/big.bin", targets=[nodes[1]])
        assert worker.run_until(finished(transfer), timeout=120)
        assert transfer.status == Transfer.Status.FAILED
        assert "no space left" in transfer.error, transfer.error
        assert _left_on(disk) == [] and shutil.disk_usage(disk).used < MiB, _left_on(disk)
        assert not (Path(nodes[1].storage_root) / "big.bin").exists()


def test_a_tree_larger_than_the_target_disk_fails_naming_no_space_and_frees_the_staging(
    worker, make_nodes, storage
) -> None:
    with small_tmpfs(storage / "c1", "8m") as disk:
        nodes = make_nodes(2)
        assert Path(nodes[1].storage_root) == disk
        top = Path(nodes[0].storage_root) / "ckpt"
        for i in range(3):
            write_random(top / f"part-{i}.bin", 4 * MiB)
        transfer = transfer_create(source=nodes[0], file_name="ckpt", targets=[nodes[1]])
        assert worker.run_until(finished(transfer), timeout=120)
        assert transfer.status == Transfer.Status.FAILED
        target = transfer.targets.get()
        assert "no space left" in target.error, target.error
        assert not (disk / "ckpt").exists()
        assert worker.run_until(lambda: _left_on(disk) == [], timeout=30), _left_on(disk)
        assert shutil.disk_usage(disk).used < MiB
