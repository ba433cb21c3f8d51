"""A cast's life: queued, claimed under a lease, started, finished or cancelled."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from dataplane.storage import clean_name
from nodes.models import Node, NodeGroup
from transfers.events import publish_transfer
from transfers.models import Target, Transfer, TransferFile
from transfers.services.counters import counted
from transfers.services.origins import origin_check
from transfers.services.targets import RESULT_FIELDS, CastError, record_result, resolve_targets, targets_record


@transaction.atomic
def transfer_create(
    *,
    source: Node,
    file_name: str,
    targets: Iterable[Node] | None = None,
    group: NodeGroup | None = None,
    broadcast: bool = False,
    requested_by: AbstractBaseUser | None = None,
    mode: str = Transfer.Mode.TCP,
    priority: int = 0,
    fan_out: int = 0,
    dest_name: str = "",
    origin: str = "",
    mirror: bool = False,
) -> Transfer:
    """Queue a cast. Rejects what can never work: bad names, disabled or unknown targets.

    With an `origin` URL the source fetches it first, as `file_name` (default: the URL's
    last path segment); the URL is recorded without credentials.
    """
    if origin:
        origin, name = origin_check(url=origin, file_name=file_name)
    else:
        try:
            name = clean_name(file_name)
        except ValueError as exc:
            raise CastError("file_name", str(exc)) from None
    try:
        dest = clean_name(dest_name) if dest_name else ""
    except ValueError as exc:
        raise CastError("dest_name", str(exc)) from None
    if not source.enabled:
        raise CastError("source", f"source node {source.name} is disabled; enable it first")
    if mode not in Transfer.Mode.values:
        raise CastError("mode", f"mode must be one of {', '.join(Transfer.Mode.values)}")
    if fan_out < 0:
        raise CastError("fan_out", "fan_out must be 1 or more (0 uses the default)")
    cast_type, nodes = resolve_targets(source=source, targets=targets, group=group, broadcast=broadcast)
    transfer = Transfer.objects.create(
        source=source,
        file_name=name,
        origin=origin,
        mirror=mirror,
        dest_name=dest,
        mode=mode,
        priority=priority,
        cast_type=cast_type,
        group=group,
        fan_out=fan_out,
        requested_by=requested_by if requested_by and requested_by.is_authenticated else None,
    )
    Target.objects.bulk_create([Target(transfer=transfer, node=node) for node in nodes])
    publish_transfer(transfer)
    return transfer


def transfer_claim(
    *,
    worker_id: str,
    lease_seconds: int,
    limit: int,
    exclude_nodes: set[int] | None = None,
    source_prefix: str = "",
) -> list[Transfer]:
    """Atomically claim up to `limit` queued transfers, highest priority first.

    The claim is a compare-and-swap on status, so two workers never run the same cast; on
    PostgreSQL the candidates are also locked with SKIP LOCKED so workers do not contend.
    """
    if limit <= 0:
        return []
    now = timezone.now()
    claimed: list[Transfer] = []
    with transaction.atomic():
        # A cast waits while its source is not online or a target's actor is still starting;
        # casts from a disabled source are claimed so that they fail with the reason.
        candidates = (
            Transfer.objects.queued()
            .filter(Q(source__status=Node.Status.ONLINE) | Q(source__enabled=False))
            .exclude(targets__node__status=Node.Status.STARTING, targets__node__enabled=True)
        )
        if source_prefix:
            candidates = candidates.filter(source__name__startswith=source_prefix)
        if exclude_nodes:
            candidates = candidates.exclude(source_id__in=exclude_nodes).exclude(targets__node_id__in=exclude_nodes)
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        ids = list(candidates.values_list("id", flat=True)[:limit])
        for pk in ids:
            won = Transfer.objects.filter(pk=pk, status=Transfer.Status.QUEUED).update(
                status=Transfer.Status.RUNNING,
                lease_owner=worker_id,
                lease_expires=now + timedelta(seconds=lease_seconds),
                started_at=now,
            )
            if won:
                claimed.append(Transfer.objects.select_related("source").get(pk=pk))
    for transfer in claimed:
        publish_transfer(transfer)
    return claimed


def transfer_renew_leases(*, worker_id: str, transfer_ids: list[int], lease_seconds: int) -> int:
    if not transfer_ids:
        return 0
    return Transfer.objects.filter(pk__in=transfer_ids, status=Transfer.Status.RUNNING, lease_owner=worker_id).update(
        lease_expires=timezone.now() + timedelta(seconds=lease_seconds)
    )


def transfer_recover_expired(*, worker_id: str) -> list[int]:
    """Requeue running transfers whose worker's lease ran out. Each is recovered once.

    The update matches the exact lease it saw, so if two workers race only one wins.
    Targets that finished keep their result; the rest go back to pending and resume.
    """
    now = timezone.now()
    recovered = []
    stale = Transfer.objects.filter(status=Transfer.Status.RUNNING, lease_expires__lt=now).exclude(
        lease_owner=worker_id
    )
    for pk, owner, expires in stale.values_list("id", "lease_owner", "lease_expires"):
        with transaction.atomic():
            won = Transfer.objects.filter(
                pk=pk, status=Transfer.Status.RUNNING, lease_owner=owner, lease_expires=expires
            ).update(status=Transfer.Status.QUEUED, lease_owner="", lease_expires=None)
            if won:
                Target.objects.filter(transfer_id=pk).exclude(status__in=Target.FINAL).update(
                    status=Target.Status.PENDING
                )
                recovered.append(pk)
                publish_transfer(Transfer.objects.get(pk=pk))
    return recovered


@transaction.atomic
def transfer_start(
    *,
    transfer: Transfer,
    size: int | None,
    sha256: str,
    tree: dict[str, Any],
    chunk_size: int,
    files: int | None = None,
    manifest: Sequence[tuple[str, int, str]] = (),
) -> Transfer:
    """The first round starts: record what the source said (a directory: its file count and files)."""
    transfer.is_directory = files is not None
    transfer.files = files
    transfer.size = size
    transfer.sha256 = sha256
    transfer.tree = tree
    transfer.chunk_size = chunk_size
    transfer.attempts += 1
    transfer.save(update_fields=["size", "sha256", "tree", "chunk_size", "attempts", "is_directory", "files"])
    # A recovered cast starts again from the source's answer: its manifest replaces the old one.
    transfer.manifest_files.all().delete()
    TransferFile.objects.bulk_create(
        (TransferFile(transfer=transfer, path=path, size=size, sha256=sha) for path, size, sha in manifest),
        batch_size=2000,
    )
    now = timezone.now()
    transfer.targets.exclude(status__in=Target.FINAL).update(
        status=Target.Status.RECEIVING, started_at=now, attempts=transfer.attempts
    )
    publish_transfer(transfer)
    return transfer


@transaction.atomic
@counted
def transfer_finish(
    *,
    transfer: Transfer,
    results: dict[int, dict[str, Any]],
    error: str = "",
    source_bytes: int = 0,
    relay_bytes: int = 0,
) -> Transfer:
    """Write the remaining targets' results and the cast's status, derived from all targets."""
    targets_record(transfer=transfer, results=results)
    transfer.targets.exclude(status__in=Target.FINAL).update(
        status=Target.Status.FAILED,
        error=(error or "no result was reported for this target")[:4000],
        finished_at=timezone.now(),
    )
    if transfer.status != Transfer.Status.CANCELLED:
        transfer.status = _derived_status(transfer)
    if not error and transfer.status != Transfer.Status.COMPLETED:
        error = _failures(transfer)
    transfer.error = error[:4000]
    transfer.finished_at = timezone.now()
    transfer.source_bytes_sent += source_bytes
    transfer.relay_bytes_sent += relay_bytes
    transfer.lease_owner = ""
    transfer.lease_expires = None
    transfer.save(
        update_fields=[
            "status",
            "error",
            "finished_at",
            "source_bytes_sent",
            "relay_bytes_sent",
            "lease_owner",
            "lease_expires",
        ]
    )
    publish_transfer(transfer)
    return transfer


def busy_nodes(*, default_limit: int) -> set[int]:
    """Nodes already taking part in as many running casts as they may."""
    counts: dict[int, int] = {}
    running = Transfer.objects.filter(status=Transfer.Status.RUNNING)
    for node_id in running.values_list("source_id", flat=True):
        counts[node_id] = counts.get(node_id, 0) + 1
    for node_id, n in (
        Target.objects.filter(transfer__status=Transfer.Status.RUNNING)
        .exclude(status__in=Target.FINAL)
        .values_list("node_id")
        .annotate(n=Count("transfer_id", distinct=True))
    ):
        counts[node_id] = counts.get(node_id, 0) + n
    if not counts:
        return set()
    limits = dict(Node.objects.filter(pk__in=list(counts)).values_list("pk", "max_concurrent"))
    return {pk for pk, n in counts.items() if n >= (limits.get(pk) or default_limit)}


@transaction.atomic
@counted
def transfer_cancel(*, transfer: Transfer) -> bool:
    """Cancel a cast that has not finished. Returns False if it already had."""
    won = (
        Transfer.objects.filter(pk=transfer.pk)
        .filter(Q(status=Transfer.Status.QUEUED) | Q(status=Transfer.Status.RUNNING))
        .update(status=Transfer.Status.CANCELLED, finished_at=timezone.now(), lease_owner="", lease_expires=None)
    )
    if won:
        transfer.targets.exclude(status__in=Target.FINAL).update(
            status=Target.Status.CANCELLED, finished_at=timezone.now()
        )
        transfer.refresh_from_db()
        publish_transfer(transfer)
    return bool(won)


@transaction.atomic
def transfer_add_round(*, transfer: Transfer, tree: dict[str, Any]) -> Transfer:
    """Record the tree of a repair round (targets re-parented after their relay failed).

    The first round's tree is the cast's tree (`transfer_start`); later ones are kept under
    its "rounds" key, so the cast's page shows every tree the bytes took.
    """
    rounds = [*transfer.tree.get("rounds", []), tree]
    transfer.tree = {**transfer.tree, "rounds": rounds}
    transfer.save(update_fields=["tree"])
    publish_transfer(transfer)
    return transfer


@transaction.atomic
@counted
def transfer_record_cancelled(
    *,
    transfer: Transfer,
    source_bytes: int = 0,
    relay_bytes: int = 0,
    results: dict[int, dict[str, Any]] | None = None,
) -> Transfer:
    """Record what a cancelled cast moved before it stopped. The worker calls this once.

    transfer_cancel ends a cast at once, before its actors have stopped: the worker then
    tells them, waits for the source's round to return, and records here the bytes its
    source and relays sent (the totals of its run, as transfer_finish takes them) and each
    target's result. A target that was cancelled keeps that status with the bytes it
    received; one that completed (or was skipped) before the cancel reached it is recorded
    so, since the file is whole there. The cast stays cancelled.
    """
    transfer.refresh_from_db()
    if transfer.status != Transfer.Status.CANCELLED:
        raise CastError("status", f"transfer #{transfer.pk} is {transfer.status}, not cancelled")
    results = results or {}
    now = timezone.now()
    for target in transfer.targets.filter(pk__in=list(results), status=Target.Status.CANCELLED):
        result = dict(results[target.pk])
        if result.get("status") not in (Target.Status.COMPLETED, Target.Status.SKIPPED):
            # It stopped because of the cancel, whatever the receiver made of that.
            result.update(status=Target.Status.CANCELLED, error="")
        finished = target.finished_at
        record_result(target, result, size=transfer.size, now=now)
        if target.status == Target.Status.CANCELLED:
            target.finished_at = finished  # when the cancel stopped it, not when this ran
        target.save(update_fields=RESULT_FIELDS)
    transfer.source_bytes_sent += source_bytes
    transfer.relay_bytes_sent += relay_bytes
    transfer.save(update_fields=["source_bytes_sent", "relay_bytes_sent"])
    publish_transfer(transfer)
    return transfer


def _derived_status(transfer: Transfer) -> str:
    """completed (every target completed or skipped), partial (some did) or failed (none did)."""
    statuses = list(transfer.targets.values_list("status", flat=True))
    good = sum(s in (Target.Status.COMPLETED, Target.Status.SKIPPED) for s in statuses)
    if good == len(statuses):
        return Transfer.Status.COMPLETED
    return Transfer.Status.PARTIAL if good else Transfer.Status.FAILED


def _failures(transfer: Transfer) -> str:
    failed = transfer.targets.filter(status=Target.Status.FAILED).select_related("node")
    return "; ".join(f"{t.node.name}: {t.error}" for t in failed[:5])


@transaction.atomic
def target_settle_abort(*, target_id: int, row: dict[str, Any]) -> Target | None:
    """Record what a receiver did for a target the worker had already recorded failed.

    `row` is the receiver's answer to `CastNode.abort` (a `ProgressRow` as a dict), which
    counts the bytes of the abandoned attempt: `bytes_received` takes them in if progress had
    reported fewer (it never goes down), and at least the bytes the part holds on disk
    (`bytes_on_disk`), which also become the target's `bytes_done`: what a retry resumes from.
    A receiver that stopped leaves the target failed, with a note that it stopped and kept its
    part. One that had verified and renamed the file before it heard turns the target
    `completed`, with a note of what happened, and the cast's status is derived again: the
    record must not say that a file on the target's disk never came. Returns the target, or
    None when it was not (or no longer) failed.
    """
    target = Target.objects.select_for_update().select_related("transfer").filter(pk=target_id).first()
    if target is None or target.status != Target.Status.FAILED or "receiver stopped when told" in target.error:
        return None
    transfer = target.transfer
    reported = target.bytes_received - target.received_before
    target.received_before += max(int(row.get("bytes_received") or 0), reported)
    on_disk = row.get("bytes_on_disk")
    if on_disk is not None:
        # Every chunk the part's record holds arrived in some attempt, counted or not: the
        # receiver's row may be gone (a new actor) or behind its last chunks.
        target.received_before = max(target.received_before, int(on_disk))
    target.bytes_received = target.received_before
    digest = str(row.get("sha256") or "")
    if row.get("status") == Target.Status.COMPLETED and digest and digest == transfer.sha256:
        target.status = Target.Status.COMPLETED
        target.bytes_done = transfer.size or 0
        target.error = (
            f"reconciled to completed: recorded failed ({target.error}), but its receiver had verified "
            f"the file (SHA-256 {digest[:16]}…) and renamed it into place before it was told to stop"
        )
    else:
        held = int(on_disk if on_disk is not None else row.get("bytes_done") or 0)
        target.bytes_done = held  # what a retry resumes from
        target.error = f"{target.error}; its receiver stopped when told and kept its part ({held} bytes held)"
    target.error = target.error[:4000]
    target.save(update_fields=["status", "error", "bytes_done", "bytes_received", "received_before"])
    if target.status == Target.Status.COMPLETED and transfer.status in (
        Transfer.Status.PARTIAL,
        Transfer.Status.FAILED,
    ):
        transfer.status = _derived_status(transfer)
        transfer.error = "" if transfer.status == Transfer.Status.COMPLETED else _failures(transfer)[:4000]
        transfer.save(update_fields=["status", "error"])
    publish_transfer(transfer)
    return target
