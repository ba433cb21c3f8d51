"""What the planner remembers of a node's speed (Node.achieved_rate) after a cast.

A target fed by a relay cannot go faster than the relay. A fast node behind a slow one must
not be remembered as slow, or the planner keeps it behind the slow one in every later cast.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from nodes.models import Node
from nodes.services import node_create
from transfers.models import Target, Transfer
from transfers.services import targets_record, transfer_create

pytestmark = pytest.mark.django_db
MIB = 1024 * 1024
SIZE = 64 * MIB


def chain(fast_before: float | None) -> tuple[Transfer, Target, Target]:
    """source → slow relay → fast leaf, both receiving; the leaf known at `fast_before` bytes/s."""
    source, slow, fast = (node_create(name=n) for n in ("src", "slow", "fast"))
    Node.objects.update(status=Node.Status.ONLINE)
    Node.objects.filter(pk=fast.pk).update(achieved_rate=fast_before)
    transfer = transfer_create(source=source, file_name="f.bin", targets=[slow, fast])
    Transfer.objects.filter(pk=transfer.pk).update(status=Transfer.Status.RUNNING, size=SIZE, sha256="ab" * 32)
    started = timezone.now() - timedelta(seconds=60)
    Target.objects.filter(transfer=transfer).update(status=Target.Status.RECEIVING, started_at=started)
    Target.objects.filter(transfer=transfer, node=slow).update(parent=source)
    Target.objects.filter(transfer=transfer, node=fast).update(parent=slow)
    transfer.refresh_from_db()
    return transfer, transfer.targets.get(node=slow), transfer.targets.get(node=fast)


def finish(transfer: Transfer, target: Target, seconds: float) -> None:
    """The target completed `seconds` after it started, all 64 MiB received in this attempt."""
    finished = target.started_at.timestamp() + seconds  # type: ignore[union-attr]
    row = {"status": "completed", "bytes_received": SIZE, "sha256": "ab" * 32, "finished": finished}
    targets_record(transfer=transfer, results={target.pk: row})


def achieved(target: Target) -> float | None:
    return Node.objects.get(pk=target.node_id).achieved_rate


def test_a_fast_node_paced_by_a_slow_relay_keeps_what_was_known_of_it() -> None:
    transfer, slow, fast = chain(fast_before=16 * MIB)
    finish(transfer, slow, 16)  # 4 MiB/s from the source: the relay's own rate
    finish(transfer, fast, 19.5)  # the relay's pace: a shaped relay forwards a little slower than it takes in
    assert achieved(slow) == pytest.approx(4 * MIB)
    assert achieved(fast) == 16 * MIB, "the fast node would now be planned as slow as its relay"


def test_a_node_never_measured_is_known_at_least_at_its_relays_pace() -> None:
    transfer, slow, fast = chain(fast_before=None)
    finish(transfer, slow, 16)
    finish(transfer, fast, 19.5)
    assert achieved(fast) == pytest.approx(SIZE / 19.5)


def test_a_paced_rate_only_raises_what_was_known() -> None:
    transfer, slow, fast = chain(fast_before=1 * MIB)
    finish(transfer, slow, 16)
    finish(transfer, fast, 16.2)
    assert achieved(fast) == pytest.approx(SIZE / 16.2)


def test_a_node_slower_than_its_relay_is_remembered_at_its_own_rate() -> None:
    transfer, slow, fast = chain(fast_before=16 * MIB)
    finish(transfer, slow, 4)  # the relay took 16 MiB/s
    finish(transfer, fast, 16)  # the leaf only 4: it is the slow one
    assert achieved(slow) == pytest.approx(16 * MIB)
    assert achieved(fast) == pytest.approx(4 * MIB)
