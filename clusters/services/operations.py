"""Cluster switches (connect, disconnect) recorded for a worker to carry out, one at a time."""

from __future__ import annotations

import re

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from castray_site.errors import DomainError
from clusters.models import Cluster, ClusterOperation
from clusters.services.records import cluster_active

ADDRESS_RE = re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")


class OperationError(DomainError):
    """A cluster operation (switch, file request, configuration change) that cannot be recorded."""


def clean_address(address: str) -> str:
    """`host:port` of a Ray cluster's GCS, or a 400 naming the field and the fix."""
    address = (address or "").strip()
    if address.startswith("ray://"):
        raise OperationError(
            "cluster_address", "Ray Client addresses (ray://) are not supported; give the GCS address host:port"
        )
    for prefix in ("http://", "https://"):
        if address.startswith(prefix):
            raise OperationError(
                "cluster_address",
                f"{address} is a URL (a dashboard?); give the cluster's GCS address host:port, e.g. 10.0.0.5:6379",
            )
    match = ADDRESS_RE.match(address)
    if not match or not 0 < int(match["port"]) < 65536:
        raise OperationError("cluster_address", "give the Ray cluster's GCS address as host:port, e.g. 10.0.0.5:6379")
    return address


@transaction.atomic
def operation_request(
    *, kind: str, address: str = "", requested_by: AbstractBaseUser | None = None
) -> ClusterOperation:
    """Record a switch for the worker to carry out. One at a time: a second one is a 409."""
    if kind not in ClusterOperation.Kind.values:
        raise OperationError("kind", f"kind must be one of {', '.join(ClusterOperation.Kind.values)}")
    if kind == ClusterOperation.Kind.CONNECT:
        address = clean_address(address)
    busy = ClusterOperation.objects.select_for_update().exclude(status__in=ClusterOperation.FINAL).first()
    if busy is not None:
        raise OperationError(
            "cluster_address",
            f"operation #{busy.pk} ({busy}) is still under way; wait for it (GET /api/cluster/operations/{busy.pk})",
            status=409,
        )
    return ClusterOperation.objects.create(
        kind=kind,
        address=address,
        source=cluster_active(),
        requested_by=requested_by if requested_by and requested_by.is_authenticated else None,
    )


def operation_claim(*, worker_id: str) -> ClusterOperation | None:
    """Take the oldest pending operation (compare-and-swap, so one worker carries it out)."""
    for op in ClusterOperation.objects.filter(status=ClusterOperation.Status.PENDING).order_by("created_at", "id")[:5]:
        won = ClusterOperation.objects.filter(pk=op.pk, status=ClusterOperation.Status.PENDING).update(
            status=ClusterOperation.Status.RUNNING, worker_id=worker_id, started_at=timezone.now()
        )
        if won:
            return ClusterOperation.objects.get(pk=op.pk)
    return None


@transaction.atomic
def operation_finish(*, operation: ClusterOperation, ok: bool, message: str) -> ClusterOperation:
    operation.status = ClusterOperation.Status.SUCCEEDED if ok else ClusterOperation.Status.FAILED
    operation.message = message[:4000]
    operation.finished_at = timezone.now()
    operation.save(update_fields=["status", "message", "finished_at", "target", "requeued"])
    return operation


@transaction.atomic
def operation_switching(*, operation: ClusterOperation, target: Cluster, requeued: list[int]) -> ClusterOperation:
    """Record where a switch goes and which casts it sent back to the queue, before it connects."""
    operation.target = target
    operation.requeued = requeued
    operation.save(update_fields=["target", "requeued"])
    return operation
