"""A target's recorded finish is the receiver's own, reported before its relays finish."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nodes.models import Node
from nodes.services import node_create
from transfers.models import Target
from transfers.services import transfer_claim, transfer_create, transfer_start
from transfers.services.targets import target_progress

pytestmark = pytest.mark.django_db


def test_a_completed_row_records_the_receivers_finish_time_not_the_poll(storage: Path) -> None:
    a, b, c = node_create(name="a"), node_create(name="b"), node_create(name="c")
    Node.objects.update(status=Node.Status.ONLINE)
    transfer = transfer_create(source=a, file_name="f", targets=[b, c])
    transfer = transfer_claim(worker_id="w", lease_seconds=30, limit=1)[0]
    transfer_start(transfer=transfer, size=100, sha256="ab" * 32, tree={}, chunk_size=10)
    fast = transfer.targets.get(node=b)
    finished = time.time()  # the receiver's clock, before the worker polled
    time.sleep(0.2)
    row = {"status": "completed", "sha256": "ab" * 32, "finished": finished, "bytes_received": 100}
    target_progress(transfer=transfer, rows={fast.pk: row})
    fast.refresh_from_db()
    assert fast.status == Target.Status.COMPLETED
    assert fast.finished_at is not None
    assert abs(fast.finished_at.timestamp() - finished) < 0.01
    # The slow sibling is still receiving: the fast one did not wait for it.
    assert transfer.targets.get(node=c).status != Target.Status.COMPLETED
