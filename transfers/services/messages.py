"""Short text or JSON messages: queued one by one or in bulk, claimed in batches, delivered."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Count, Q, Subquery
from django.utils import timezone

from castray_site.env import format_size
from nodes.models import Node, NodeGroup
from transfers.models import Delivery, Message
from transfers.services.counters import counters_add
from transfers.services.targets import CastError, resolve_targets

MAX_MESSAGE_BYTES = 64 * 1024


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
        raise CastError("content", f"messages are at most {format_size(MAX_MESSAGE_BYTES)}; cast a file instead")
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
    counters_add({sender.pk: Counter(messages_sent=1)})
    return message


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
    delivering = batch.filter(status=Delivery.Status.PENDING)
    received = delivering.values_list("node_id").annotate(n=Count("id")).order_by()
    counters_add({node: Counter(messages_received=n) for node, n in received})
    delivering.update(status=Delivery.Status.DELIVERED, delivered_at=now)
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
            raise CastError("content", f"messages are at most {format_size(MAX_MESSAGE_BYTES)}; cast a file instead")
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
    counters_add({sender.pk: Counter(messages_sent=len(ids))})
    return ids


def _insert(model: Any, fields: list[str], rows: list[tuple[Any, ...]]) -> None:
    columns = ", ".join(connection.ops.quote_name(model._meta.get_field(f).column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns}) VALUES ({placeholders})", rows
        )
