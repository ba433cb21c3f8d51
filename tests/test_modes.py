"""The udp and object_store modes deliver byte-identical files, including when datagrams are lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import finished, random_file, sha256_of
from transfers.models import Target, Transfer
from transfers.services import transfer_create

pytestmark = [pytest.mark.ray, pytest.mark.django_db]
MiB = 1024 * 1024


@pytest.mark.parametrize("mode", ["object_store", "udp"])
@pytest.mark.parametrize("size", [0, 1, 5 * MiB + 7])
def test_modes_deliver_byte_identical_files(worker, make_nodes, mode: str, size: int) -> None:
    nodes = make_nodes(3)
    path = random_file(nodes[0], f"m{size}.bin", size)
    transfer = transfer_create(source=nodes[0], file_name=f"m{size}.bin", targets=nodes[1:], mode=mode)
    assert worker.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    for node in nodes[1:]:
        received = Path(node.storage_root) / f"m{size}.bin"
        assert sha256_of(received) == sha256_of(path)
        assert not received.with_name(received.name + ".part").exists()
    if mode == "object_store":
        assert transfer.source_bytes_sent == size  # one copy into the object store, whatever N
    for target in transfer.targets.all():
        assert target.status == Target.Status.COMPLETED
        assert target.bytes_received == size


def test_udp_repairs_datagrams_dropped_on_purpose(worker, make_nodes, settings) -> None:
    settings.CASTRAY_UDP_DROP_EVERY = 7
    nodes = make_nodes(2)
    size = 3 * MiB + 5
    path = random_file(nodes[0], "lossy.bin", size)
    transfer = transfer_create(source=nodes[0], file_name="lossy.bin", targets=[nodes[1]], mode="udp")
    assert worker.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    assert sha256_of(Path(nodes[1].storage_root) / "lossy.bin") == sha256_of(path)
    # The source sent the lost datagrams a second time: more than one copy in all.
    assert transfer.source_bytes_sent > size
    assert transfer.targets.get().bytes_received == size


def test_a_target_with_the_file_is_skipped_in_every_mode(worker, make_nodes) -> None:
    nodes = make_nodes(2)
    path = random_file(nodes[0], "have.bin", MiB)
    (Path(nodes[1].storage_root) / "have.bin").write_bytes(path.read_bytes())
    for mode in ("object_store", "udp"):
        transfer = transfer_create(source=nodes[0], file_name="have.bin", targets=[nodes[1]], mode=mode)
        assert worker.run_until(finished(transfer), timeout=60)
        assert transfer.status == Transfer.Status.COMPLETED, (mode, transfer.error)
        assert transfer.targets.get().status == Target.Status.SKIPPED, mode
        assert transfer.targets.get().bytes_received == 0
