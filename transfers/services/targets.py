"""Choosing a cast's targets, and writing each target's progress and result."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from castray_site.errors import DomainError
from nodes.models import Node, NodeGroup
from transfers.events import publish_transfer
from transfers.models import Target, Transfer


class CastError(DomainError):
    """A cast or message request that cannot be carried out; `field` names what to fix."""


def resolve_targets(
    *, source: Node, targets: Iterable[Node] | None = None, group: NodeGroup | None = None, broadcast: bool = False
) -> tuple[str, list[Node]]:
    """Turn a request's target choice into (cast type, target nodes), rejecting what cannot work.

    A group or a broadcast casts to the members that are enabled (a broadcast: online)
    apart from the source; an explicit list must name only enabled nodes.
    """
    targets = list(targets) if targets is not None else None
    chosen = sum([bool(targets), group is not None, broadcast])
    if chosen != 1:
        raise CastError("targets", "choose exactly one of: a list of target nodes, a group, or broadcast")
    if broadcast:
        nodes = list(Node.objects.online().exclude(pk=source.pk))
        if not nodes:
            raise CastError("broadcast", "no other node is online to broadcast to")
        return Transfer.Cast.BROADCAST, nodes
    if group is not None:
        nodes = list(group.nodes.filter(enabled=True).exclude(pk=source.pk))
        if not nodes:
            raise CastError("group", f"group {group.name} has no enabled member other than the source")
        return Transfer.Cast.MULTICAST, nodes
    nodes = list(dict.fromkeys(targets or []))
    if source in nodes:
        raise CastError("targets", f"{source.name} is the source; a node cannot cast to itself")
    disabled = [n.name for n in nodes if not n.enabled]
    if disabled:
        raise CastError("targets", f"target node(s) {', '.join(disabled)} are disabled; enable them or leave them out")
    return (Transfer.Cast.UNICAST if len(nodes) == 1 else Transfer.Cast.MULTICAST), nodes


@transaction.atomic
def targets_fail(*, transfer: Transfer, targets: Iterable[Target], reason: str) -> None:
    ids = [t.pk for t in targets]
    Target.objects.filter(pk__in=ids).exclude(status__in=Target.FINAL).update(
        status=Target.Status.FAILED, error=reason[:4000], finished_at=timezone.now()
    )


def _verified(transfer: Transfer, row: dict[str, Any]) -> bool:
    """A receiver's final row is believed when its digest is the cast's (skips carry none)."""
    if row.get("status") == Target.Status.SKIPPED:
        return True
    return bool(row.get("sha256")) and (not transfer.sha256 or row["sha256"] == transfer.sha256)


def target_progress(*, transfer: Transfer, rows: dict[int, dict[str, Any]]) -> bool:
    """Record live progress reported by receivers (throttled by the caller). Returns changed."""
    changed = False
    with transaction.atomic():
        for target in transfer.targets.exclude(status__in=Target.FINAL):
            row = rows.get(target.pk)
            if not row:
                continue
            status = row.get("status", target.status)
            if status in (Target.Status.COMPLETED, Target.Status.SKIPPED) and _verified(transfer, row):
                # A receiver that verified and renamed its file is done whatever the others do:
                # recording it now lets clients waiting for `min_ready` copies go on at once.
                targets_record(transfer=transfer, results={target.pk: row})
                changed = True
                continue
            if status not in (Target.Status.RECEIVING, Target.Status.VERIFYING):
                continue  # failures and the rest come through transfer_finish (they may be repaired)
            bytes_done = int(row.get("bytes_done", target.bytes_done))
            if bytes_done == target.bytes_done and status == target.status:
                continue
            started = row.get("started")
            elapsed = (row.get("updated") or 0) - (started or 0)
            target.rate = bytes_done / elapsed if started and elapsed > 0 else None
            target.bytes_done = bytes_done
            target.status = status
            target.save(update_fields=["bytes_done", "status", "rate"])
            changed = True
        if changed:
            publish_transfer(transfer)
    return changed


@transaction.atomic
def targets_record(*, transfer: Transfer, results: dict[int, dict[str, Any]]) -> list[int]:
    """Write the final result of the targets in `results`; return the ids written."""
    now = timezone.now()
    written = []
    for target in transfer.targets.exclude(status__in=Target.FINAL).filter(pk__in=list(results)):
        result = results[target.pk]
        status = result.get("status")
        target.status = status if status in Target.FINAL else Target.Status.FAILED
        target.error = str(result.get("error") or "")[:4000]
        target.bytes_received += int(result.get("bytes_received") or 0)
        if target.status in (Target.Status.COMPLETED, Target.Status.SKIPPED):
            target.bytes_done = transfer.size or 0
        target.finished_at = now
        if target.started_at and target.status == Target.Status.COMPLETED and transfer.size:
            seconds = (now - target.started_at).total_seconds()
            target.rate = transfer.size / seconds if seconds > 0 else None
        target.save(update_fields=["status", "error", "bytes_done", "bytes_received", "finished_at", "rate"])
        written.append(target.pk)
    return written


@transaction.atomic
def targets_retry(*, transfer: Transfer, target_ids: list[int], reason: str) -> None:
    """Put failed targets back in play for another round (they resume from their chunks)."""
    Target.objects.filter(transfer=transfer, pk__in=target_ids).update(
        status=Target.Status.RECEIVING, error=reason[:4000], finished_at=None, attempts=F("attempts") + 1
    )


@transaction.atomic
def targets_set_parents(*, transfer: Transfer, parents: dict[int, int | None]) -> None:
    for target in transfer.targets.filter(pk__in=list(parents)):
        target.parent_id = parents[target.pk]
        target.save(update_fields=["parent"])
