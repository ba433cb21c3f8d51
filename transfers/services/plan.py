"""What the worker's planner writes to a cast: its lower bounds, and targets moved mid-round."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from nodes.models import Node
from transfers.events import publish_transfer
from transfers.models import Transfer
from transfers.services.counters import counted


@transaction.atomic
def transfer_set_bounds(*, transfer: Transfer, cast: float | None, targets: dict[int, float | None]) -> None:
    """Store the lower bounds on the cast's time and on each target's, computed from the caps."""
    transfer.bound_seconds = cast
    transfer.save(update_fields=["bound_seconds"])
    for target in transfer.targets.filter(pk__in=list(targets)):
        target.bound_seconds = targets[target.pk]
        target.save(update_fields=["bound_seconds"])
    publish_transfer(transfer)


@transaction.atomic
@counted
def target_moved(*, transfer: Transfer, target_id: int, feeder: Node, bytes_received: int) -> None:
    """A lagging target now receives from `feeder`; the bytes its ended receive took in stay counted.

    They join the bytes of its earlier attempts (`received_before`): its next receive counts
    from zero, and its progress adds to those.
    """
    total = F("received_before") + bytes_received
    transfer.targets.filter(pk=target_id).update(parent=feeder, received_before=total, bytes_received=total)
    publish_transfer(transfer)
