"""What the worker's planner writes to a cast: its lower bounds, and targets moved mid-round."""

from __future__ import annotations

from django.db import transaction

from transfers.events import publish_transfer
from transfers.models import Transfer


@transaction.atomic
def transfer_set_bounds(*, transfer: Transfer, cast: float | None, targets: dict[int, float | None]) -> None:
    """Store the lower bounds on the cast's time and on each target's, computed from the caps."""
    transfer.bound_seconds = cast
    transfer.save(update_fields=["bound_seconds"])
    for target in transfer.targets.filter(pk__in=list(targets)):
        target.bound_seconds = targets[target.pk]
        target.save(update_fields=["bound_seconds"])
    publish_transfer(transfer)
