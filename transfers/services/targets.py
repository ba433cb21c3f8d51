"""Choosing a cast's targets, and writing each target's progress and result."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from castray_site.errors import DomainError
from nodes.models import Node, NodeGroup
from transfers.events import publish_transfer
from transfers.models import Target, Transfer
from transfers.samples import add_sample
from transfers.services.counters import counted


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
@counted
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


@counted
def target_progress(*, transfer: Transfer, rows: dict[int, dict[str, Any]]) -> bool:
    """Record live progress reported by receivers (throttled by the caller). Returns changed.

    A row is what a receiver measured (dataplane.contract.ProgressRow). Its bytes are recorded
    for targets still under way and for cancelled ones: a cast cancelled mid-way keeps what
    its targets had when they stopped, which may be reported after the cancel. Statuses move
    between receiving and verifying; a verified file is recorded as the target's result, and
    failures and the rest come through transfer_finish (they may be repaired).
    """
    changed = False
    with transaction.atomic():
        settled = [s for s in Target.FINAL if s != Target.Status.CANCELLED]
        for target in transfer.targets.filter(pk__in=list(rows)).exclude(status__in=settled):
            row = rows[target.pk]
            if _progress(target, row):
                changed = True
            done = row.get("status") in (Target.Status.COMPLETED, Target.Status.SKIPPED)
            if target.status not in Target.FINAL and done and _verified(transfer, row):
                # A receiver that verified and renamed its file is done whatever the others do:
                # recording it now lets clients waiting for `min_ready` copies go on at once.
                record_result(target, row, size=transfer.size, now=timezone.now())
                target.save(update_fields=RESULT_FIELDS)
                changed = True
        if changed:
            publish_transfer(transfer)
    return changed


def _progress(target: Target, row: dict[str, Any]) -> bool:
    """Apply one progress row to `target`; True if anything changed (and was saved)."""
    fields = []
    status = row.get("status", target.status)
    moving = (Target.Status.RECEIVING, Target.Status.VERIFYING)
    if target.status not in Target.FINAL and status in moving and status != target.status:
        target.status = status
        fields.append("status")
    bytes_done = int(row.get("bytes_done", target.bytes_done))
    if bytes_done != target.bytes_done:
        target.bytes_done = bytes_done
        fields.append("bytes_done")
    files_done = int(row.get("files_done") or target.files_done)  # directory casts
    if files_done != target.files_done:
        target.files_done = files_done
        fields.append("files_done")
    attempt = row.get("bytes_received")
    received = target.received_before + int(attempt) if attempt is not None else target.bytes_received
    if received != target.bytes_received:
        target.bytes_received = received
        fields.append("bytes_received")
    started, updated = row.get("started"), row.get("updated") or 0
    if fields and target.status not in Target.FINAL:
        # This attempt's bytes over this attempt's time: chunks held from an earlier attempt
        # arrived then, not now (a row without bytes_received counts what it holds).
        moved = int(attempt) if attempt is not None else bytes_done
        elapsed = updated - (started or 0)
        target.rate = moved / elapsed if started and elapsed > 0 else None
        fields.append("rate")
    # An attempt's first sample is its start, with nothing of it received yet; the next is
    # when the receiver measured these bytes (its finish once done), not when they got here.
    sampled = False
    if started and (not target.samples or started > target.samples[-1][0]):
        sampled = add_sample(target.samples, started, target.received_before)
    when = row.get("finished") or updated
    if when and add_sample(target.samples, when, target.bytes_received):
        sampled = True
    if sampled:
        fields.append("samples")
    if not fields:
        return False
    target.save(update_fields=list(dict.fromkeys(fields)))
    return True


def record_result(target: Target, result: dict[str, Any], *, size: int | None, now: datetime) -> None:
    """Write one target's result of an attempt (not saved): its status, bytes and rate.

    `result` is a round's TargetResult as a dict; its bytes_received counts that attempt.
    """
    status = result.get("status")
    target.status = status if status in Target.FINAL else Target.Status.FAILED
    target.error = str(result.get("error") or "")[:4000]
    # This attempt's bytes: the result's count, or what progress last reported if that is more
    # (a receive that fails mid-way reports none of the bytes it took in).
    reported = target.bytes_received - target.received_before
    target.received_before += max(int(result.get("bytes_received") or 0), reported)
    target.bytes_received = target.received_before
    if target.status in (Target.Status.COMPLETED, Target.Status.SKIPPED):
        target.bytes_done = size or 0
        # A directory: the version it published holds `files`, `files_skipped` of them not sent.
        target.files_done = int(result.get("files") or result.get("files_done") or target.files_done)
    target.files_skipped = int(result.get("files_skipped") or target.files_skipped)
    target.bytes_skipped = int(result.get("bytes_skipped") or target.bytes_skipped)
    target.finished_at = _finished_at(result, target, now)
    if target.started_at and target.status == Target.Status.COMPLETED and size:
        # What crossed the network over the time since the target started: chunks it held
        # from an earlier cast did not move now (unknown bytes count as the whole file).
        seconds = (target.finished_at - target.started_at).total_seconds()
        target.rate = (target.bytes_received or size) / seconds if seconds > 0 else None
        if target.rate:
            remember_rate(target, target.rate)
    # The last sample: what arrived by now. If the receiver's own final report came first it
    # holds the same bytes at the true finish time, and a later equal sample adds nothing. A
    # target done before any report has its start as its first sample: its average is drawn.
    if not target.samples and target.started_at:
        add_sample(target.samples, target.started_at.timestamp(), 0)
    if not target.samples or target.samples[-1][1] != target.bytes_received:
        add_sample(target.samples, target.finished_at.timestamp(), target.bytes_received)


# A target above this fraction of its relay's rate went at the relay's pace, not its own: a
# relay behind a shaped link delivered ~85% of what it took in, so a tighter bound misjudged it.
PACED = 0.5


def remember_rate(target: Target, rate: float) -> None:
    """The planner's memory of a node (Node.achieved_rate), for casts whose caps are unknown.

    A target fed by a relay goes no faster than that relay: a fast node behind a slow one
    finishes at about the slow one's rate. Taken as its own, that rate would cut what is known
    of the fast node to the slow one's, and the planner, which moves only nodes known to be
    slow, could no longer tell them apart. So a rate set by the relay's pace is a lower bound:
    it only ever raises what is known (or is the first thing known); a rate below half the
    relay's (the node itself was the bottleneck) or from the source's own stream is taken as
    it is.
    """
    nodes = Node.objects.filter(pk=target.node_id)
    relay = target.parent_id is not None and target.parent_id != target.transfer.source_id
    if relay:
        relay_rate = (
            Target.objects.filter(transfer_id=target.transfer_id, node_id=target.parent_id)
            .values_list("rate", flat=True)
            .first()
        )
        if relay_rate is None or rate >= PACED * relay_rate:
            # At least this fast: a lower bound for a node never measured, never a cut.
            nodes.filter(Q(achieved_rate__isnull=True) | Q(achieved_rate__lt=rate)).update(achieved_rate=rate)
            return
    nodes.update(achieved_rate=rate)


def _finished_at(result: dict[str, Any], target: Target, now: datetime) -> datetime:
    """When the receiver itself finished (its row's `finished`), not when the worker heard of it.

    The worker learns of a finish up to a progress interval (or a whole round) later; that
    delay is not the target's. Clamped to [started_at, now] against clock skew between hosts.
    """
    finished = result.get("finished")
    if not finished:
        return now
    at = min(datetime.fromtimestamp(float(finished), tz=UTC), now)
    return max(at, target.started_at) if target.started_at else at


RESULT_FIELDS = [
    "status",
    "error",
    "bytes_done",
    "bytes_received",
    "received_before",
    "finished_at",
    "rate",
    "samples",
    "files_done",
    "files_skipped",
    "bytes_skipped",
]


@transaction.atomic
@counted
def targets_record(*, transfer: Transfer, results: dict[int, dict[str, Any]]) -> list[int]:
    """Write the final result of the targets in `results`; return the ids written."""
    now = timezone.now()
    written = []
    for target in transfer.targets.exclude(status__in=Target.FINAL).filter(pk__in=list(results)):
        record_result(target, results[target.pk], size=transfer.size, now=now)
        target.save(update_fields=RESULT_FIELDS)
        written.append(target.pk)
    return written


@transaction.atomic
@counted
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
    # The page's From column follows the tree as it is planned, not only at the next progress.
    publish_transfer(transfer)
