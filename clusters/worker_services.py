"""Writes to clusters and file requests that only the bridge worker makes, beside clusters/services.py.

Cluster operations and file requests have no live event (transfers/events.py has none for
them), so these, like `operation_finish` and `file_request_finish`, publish nothing; clients
read their state from the API.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from clusters.models import Cluster, ClusterOperation, NodeFileRequest


@transaction.atomic
def operation_switching(*, operation: ClusterOperation, target: Cluster, requeued: list[int]) -> ClusterOperation:
    """Record where a switch goes and which casts it sent back to the queue, before it connects."""
    operation.target = target
    operation.requeued = requeued
    operation.save(update_fields=["target", "requeued"])
    return operation


@transaction.atomic
def file_requests_expire(*, finished_before: datetime) -> list[str]:
    """Mark fetched files older than `finished_before` expired; return their spool paths to delete.

    The rows change first: a download checks the status, so none starts on a file being deleted.
    """
    old = NodeFileRequest.objects.select_for_update().filter(
        op=NodeFileRequest.Op.FETCH, status=NodeFileRequest.Status.DONE, finished_at__lt=finished_before
    )
    rows = list(old.values_list("pk", "spool_path"))
    NodeFileRequest.objects.filter(pk__in=[pk for pk, _ in rows]).update(status=NodeFileRequest.Status.EXPIRED)
    return [path for _, path in rows]
