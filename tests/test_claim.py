"""Claiming and recovering casts: compare-and-swap on status, leases recovered exactly once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from nodes.models import Node
from nodes.services import node_create
from transfers.models import Target, Transfer
from transfers.services import transfer_claim, transfer_create, transfer_recover_expired

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(storage: Path) -> list[Transfer]:
    a, b = node_create(name="a"), node_create(name="b")
    Node.objects.update(status=Node.Status.ONLINE)
    return [transfer_create(source=a, file_name=f"f{i}", targets=[b], priority=i % 3) for i in range(6)]


def test_each_transfer_is_claimed_once_highest_priority_first(queued) -> None:
    first = transfer_claim(worker_id="w1", lease_seconds=30, limit=4)
    second = transfer_claim(worker_id="w2", lease_seconds=30, limit=4)
    assert [t.priority for t in first] == [2, 2, 1, 1]
    assert len(second) == 2
    assert not {t.pk for t in first} & {t.pk for t in second}
    assert transfer_claim(worker_id="w3", lease_seconds=30, limit=4) == []
    assert set(Transfer.objects.values_list("status", flat=True)) == {"running"}
    assert Transfer.objects.filter(lease_owner="w1").count() == 4


def test_an_expired_lease_is_recovered_exactly_once(queued) -> None:
    claimed = transfer_claim(worker_id="dead", lease_seconds=30, limit=1)[0]
    Target.objects.filter(transfer=claimed).update(status=Target.Status.RECEIVING)
    assert transfer_recover_expired(worker_id="w2") == []  # lease still valid
    Transfer.objects.filter(pk=claimed.pk).update(lease_expires=timezone.now() - timedelta(seconds=1))
    assert transfer_recover_expired(worker_id="w2") == [claimed.pk]
    assert transfer_recover_expired(worker_id="w3") == []
    claimed.refresh_from_db()
    assert claimed.status == Transfer.Status.QUEUED
    assert claimed.lease_owner == ""
    assert claimed.targets.get().status == Target.Status.PENDING


def test_casts_wait_while_the_source_is_offline_or_a_target_is_starting(queued) -> None:
    Node.objects.filter(name="a").update(status=Node.Status.OFFLINE)
    assert transfer_claim(worker_id="w1", lease_seconds=30, limit=10) == []
    Node.objects.filter(name="a").update(status=Node.Status.ONLINE)
    Node.objects.filter(name="b").update(status=Node.Status.STARTING)
    assert transfer_claim(worker_id="w1", lease_seconds=30, limit=10) == []
    Node.objects.filter(name="b").update(status=Node.Status.OFFLINE)
    # An offline target does not hold the cast back: it fails with a reason when it starts.
    assert len(transfer_claim(worker_id="w1", lease_seconds=30, limit=10)) == 6
