"""Writes to transfers and targets. The API, the admin and the worker all call these."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Count, F, Q, Subquery
from django.utils import timezone

from castray_site.errors import DomainError
from dataplane.storage import clean_name
from nodes.models import Node, NodeGroup
from transfers.events import publish_transfer
from transfers.models import Delivery, Message, Target, Transfer

MAX_MESSAGE_BYTES = 64 * 1024


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
) -> Transfer:
    """Queue a cast. Rejects what can never work: bad names, disabled or unknown targets."""
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


@transaction.atomic
def message_create(
    *,
    sender: Node,
    content: str,
    kind: str = Message.Kind.TEXT,
    targets: Iterable[Node] | None = None,
    group: NodeGroup | None = None,
    broadcast: bool = False,
    requested_by: AbstractBaseUser | None = None,
) -> Message:
    """Queue a short text or JSON message for the worker to deliver to each recipient's inbox."""
    if kind not in Message.Kind.values:
        raise CastError("message_type", "message_type must be text or json")
    if len(content.encode()) > MAX_MESSAGE_BYTES:
        raise CastError("content", f"messages are at most {MAX_MESSAGE_BYTES} bytes; cast a file instead")
    if kind == Message.Kind.JSON:
        try:
            json.loads(content)
        except ValueError as exc:
            raise CastError("content", f"content is not valid JSON: {exc}") from None
    cast_type, nodes = resolve_targets(source=sender, targets=targets, group=group, broadcast=broadcast)
    message = Message.objects.create(
        sender=sender,
        content=content,
        kind=kind,
        cast_type=cast_type,
        group=group,
        requested_by=requested_by if requested_by and requested_by.is_authenticated else None,
    )
    Delivery.objects.bulk_create([Delivery(message=message, node=node) for node in nodes])
    return message


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
    *, transfer: Transfer, size: int | None, sha256: str, tree: dict[str, Any], chunk_size: int
) -> Transfer:
    transfer.size = size
    transfer.sha256 = sha256
    transfer.tree = tree
    transfer.chunk_size = chunk_size
    transfer.attempts += 1
    transfer.save(update_fields=["size", "sha256", "tree", "chunk_size", "attempts"])
    now = timezone.now()
    transfer.targets.exclude(status__in=Target.FINAL).update(
        status=Target.Status.RECEIVING, started_at=now, attempts=transfer.attempts
    )
    publish_transfer(transfer)
    return transfer


@transaction.atomic
def targets_fail(*, transfer: Transfer, targets: Iterable[Target], reason: str) -> None:
    ids = [t.pk for t in targets]
    Target.objects.filter(pk__in=ids).exclude(status__in=Target.FINAL).update(
        status=Target.Status.FAILED, error=reason[:4000], finished_at=timezone.now()
    )


def target_progress(*, transfer: Transfer, rows: dict[int, dict[str, Any]]) -> bool:
    """Record live progress reported by receivers (throttled by the caller). Returns changed."""
    changed = False
    with transaction.atomic():
        for target in transfer.targets.exclude(status__in=Target.FINAL):
            row = rows.get(target.pk)
            if not row:
                continue
            status = row.get("status", target.status)
            if status not in (Target.Status.RECEIVING, Target.Status.VERIFYING):
                continue  # final results come through transfer_finish
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


@transaction.atomic
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
    statuses = list(transfer.targets.values_list("status", flat=True))
    good = sum(s in (Target.Status.COMPLETED, Target.Status.SKIPPED) for s in statuses)
    if transfer.status == Transfer.Status.CANCELLED:
        pass
    elif good == len(statuses):
        transfer.status = Transfer.Status.COMPLETED
    elif good:
        transfer.status = Transfer.Status.PARTIAL
    else:
        transfer.status = Transfer.Status.FAILED
    if not error and transfer.status != Transfer.Status.COMPLETED:
        failed = transfer.targets.filter(status=Target.Status.FAILED).select_related("node")
        error = "; ".join(f"{t.node.name}: {t.error}" for t in failed[:5])
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


def messages_claim(*, worker_id: str, lease_seconds: int, limit: int, sender_prefix: str = "") -> str:
    """Claim up to `limit` queued messages (oldest first) with a compare-and-swap.

    Returns the batch's lease token (empty if nothing was claimed): later steps select the
    batch by it rather than by thousands of ids.
    """
    token = f"{worker_id}/{uuid.uuid4().hex[:8]}"
    with transaction.atomic():
        candidates = Message.objects.filter(status=Message.Status.QUEUED).order_by("created_at", "id")
        if sender_prefix:
            candidates = candidates.filter(sender__name__startswith=sender_prefix)
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = candidates.values_list("id", flat=True)[:limit]
        won = Message.objects.filter(pk__in=Subquery(ids), status=Message.Status.QUEUED).update(
            status=Message.Status.RUNNING,
            lease_owner=token,
            lease_expires=timezone.now() + timedelta(seconds=lease_seconds),
        )
    return token if won else ""


def messages_recover_expired(*, worker_id: str) -> int:
    """Requeue messages whose worker died before recording their deliveries (at least once)."""
    return (
        Message.objects.filter(status=Message.Status.RUNNING, lease_expires__lt=timezone.now())
        .exclude(lease_owner__startswith=f"{worker_id}/")
        .update(status=Message.Status.QUEUED, lease_owner="", lease_expires=None)
    )


@transaction.atomic
def deliveries_record(*, token: str, failures: dict[int, str], final: bool = True) -> None:
    """Record a claimed batch's outcome: `failures` maps delivery ids to reasons.

    With `final`, every other delivery of the batch still pending was delivered (the actor
    reported on all it was given), and each message gets its status.
    """
    now = timezone.now()
    batch = Delivery.objects.filter(message__lease_owner=token)
    by_error: dict[str, list[int]] = {}
    for pk, error in failures.items():
        by_error.setdefault(error[:2000], []).append(pk)
    for error, pks in by_error.items():
        Delivery.objects.filter(pk__in=pks).update(status=Delivery.Status.FAILED, error=error)
    if not final:
        return
    batch.filter(status=Delivery.Status.PENDING).update(status=Delivery.Status.DELIVERED, delivered_at=now)
    messages = Message.objects.filter(lease_owner=token)
    unfinished = set(batch.exclude(status=Delivery.Status.DELIVERED).values_list("message_id", flat=True).distinct())
    counts = (
        Delivery.objects.filter(message_id__in=unfinished)
        .values("message_id")
        .annotate(ok=Count("id", filter=Q(status=Delivery.Status.DELIVERED)))
    )
    partial = [row["message_id"] for row in counts if row["ok"]]
    messages.filter(pk__in=partial).update(status=Message.Status.PARTIAL)
    messages.filter(pk__in=unfinished).exclude(pk__in=partial).update(status=Message.Status.FAILED)
    messages.exclude(pk__in=unfinished).update(status=Message.Status.COMPLETED)
    messages.update(delivered_at=now, lease_owner="", lease_expires=None)


@transaction.atomic
def messages_create_bulk(
    *,
    sender: Node,
    contents: list[str],
    targets: Iterable[Node],
    kind: str = Message.Kind.TEXT,
    requested_by: AbstractBaseUser | None = None,
) -> list[int]:
    """Queue many messages to the same targets in one transaction; return their ids.

    Rows go in with executemany: the ORM's bulk insert is bounded by SQLite's 999 query
    parameters and would cost more than delivering the messages.
    """
    if not contents:
        return []
    if kind not in Message.Kind.values:
        raise CastError("message_type", "message_type must be text or json")
    for content in contents:
        if len(content.encode()) > MAX_MESSAGE_BYTES:
            raise CastError("content", f"messages are at most {MAX_MESSAGE_BYTES} bytes; cast a file instead")
    cast_type, nodes = resolve_targets(source=sender, targets=targets)
    user_id = requested_by.pk if requested_by and requested_by.is_authenticated else None
    created = Message._meta.get_field("created_at").get_db_prep_value(timezone.now(), connection)
    # A tag only this transaction knows finds the new ids; it is cleared before commit.
    tag = f"new:{uuid.uuid4().hex}"
    _insert(
        Message,
        ["sender", "cast_type", "kind", "content", "status", "error", "created_at", "lease_owner", "requested_by"],
        [(sender.pk, cast_type, kind, c, Message.Status.QUEUED, "", created, tag, user_id) for c in contents],
    )
    fresh = Message.objects.filter(lease_owner=tag)
    ids = list(fresh.order_by("id").values_list("id", flat=True))
    fresh.update(lease_owner="")
    _insert(
        Delivery,
        ["message", "node", "status", "error"],
        [(pk, node.pk, Delivery.Status.PENDING, "") for pk in ids for node in nodes],
    )
    return ids


def _insert(model: Any, fields: list[str], rows: list[tuple[Any, ...]]) -> None:
    columns = ", ".join(connection.ops.quote_name(model._meta.get_field(f).column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns}) VALUES ({placeholders})", rows
        )
