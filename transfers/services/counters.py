"""The per-node counters of `/api/status` (NodeCounters), kept as casts and messages change.

`/api/status` and the `/ws` status summed every cast, target, message and delivery ever
made on each request, so their cost grew with the history. Instead, each service that
changes a cast's or its targets' statuses or bytes runs inside `counting(transfer_id)`: it
reads that one cast's contribution before and after and adds the difference, with F()
increments in the same transaction. Reading before and after, rather than each service
working out its own delta, keeps every path right (a failed target retried, a cancelled one
recorded complete) with one rule: `_contribution`, the same sums the history gave.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from django.db import transaction
from django.db.models import F

from transfers.models import NodeCounters, Target, Transfer

P = ParamSpec("P")
R = TypeVar("R")
Deltas = dict[int, Counter[str]]  # node id -> field -> amount

_TRANSFER_OK = (Transfer.Status.COMPLETED,)
_TRANSFER_FAILED = (Transfer.Status.FAILED, Transfer.Status.PARTIAL)
_TARGET_OK = (Target.Status.COMPLETED, Target.Status.SKIPPED)


def _count(
    counts: Counter[str], status: str, final: tuple[str, ...], ok: tuple[str, ...], failed: tuple[str, ...]
) -> None:
    if status in final:
        counts["total_transfers"] += 1
        counts["successful_transfers"] += status in ok
        counts["failed_transfers"] += status in failed


def _contribution(transfer_id: int) -> Deltas:
    """What one cast adds to its nodes' counters as its rows are now."""
    out: Deltas = {}
    row = Transfer.objects.filter(pk=transfer_id).values_list("source_id", "status", "source_bytes_sent").first()
    if row is None:
        return out
    source, status, sent = row
    counts = out.setdefault(source, Counter())
    _count(counts, status, Transfer.FINAL, _TRANSFER_OK, _TRANSFER_FAILED)
    counts["bytes_transferred"] += sent
    for node, status, received in Target.objects.filter(transfer_id=transfer_id).values_list(
        "node_id", "status", "bytes_received"
    ):
        counts = out.setdefault(node, Counter())
        _count(counts, status, Target.FINAL, _TARGET_OK, (Target.Status.FAILED,))
        counts["bytes_transferred"] += received
    return out


_counting = threading.local()


@contextmanager
def counting(transfer_id: int) -> Iterator[None]:
    """Add to the counters what the block changes of this cast (inner blocks for it count nothing)."""
    active: set[int] = getattr(_counting, "ids", set())
    _counting.ids = active
    if transfer_id in active:
        yield
        return
    active.add(transfer_id)
    try:
        with transaction.atomic():
            before = _contribution(transfer_id)
            yield
            after = _contribution(transfer_id)
            deltas: Deltas = {}
            for node in before.keys() | after.keys():
                delta = Counter(after.get(node, Counter()))
                delta.subtract(before.get(node, Counter()))
                deltas[node] = delta
            counters_add(deltas)
    finally:
        active.discard(transfer_id)


def counted(service: Callable[P, R]) -> Callable[P, R]:
    """Run a service that takes `transfer=` inside `counting(transfer.pk)`."""

    @functools.wraps(service)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        transfer: Any = kwargs["transfer"]
        with counting(transfer.pk):
            return service(*args, **kwargs)

    return wrapper


def counters_add(deltas: Deltas | dict[int, Counter[str]]) -> None:
    """Add `deltas` to the nodes' counters, making the rows nodes do not have yet."""
    changes = {node: {k: v for k, v in delta.items() if v} for node, delta in deltas.items()}
    changes = {node: change for node, change in changes.items() if change}
    if not changes:
        return
    for node, change in changes.items():
        increments = {k: F(k) + v for k, v in change.items()}
        if not NodeCounters.objects.filter(node_id=node).update(**increments):
            # ignore_conflicts: another transaction may make the same row at the same time.
            NodeCounters.objects.bulk_create([NodeCounters(node_id=node)], ignore_conflicts=True)
            NodeCounters.objects.filter(node_id=node).update(**increments)
