"""Requests to list, fetch or delete files on a node whose storage is on another host."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from clusters.models import NodeFileRequest
from clusters.services.operations import OperationError
from nodes.models import Node


@transaction.atomic
def file_request_create(
    *, node: Node, op: str, name: str = "", requested_by: AbstractBaseUser | None = None
) -> NodeFileRequest:
    """Record a list, fetch or delete on `node`'s storage for a worker to carry out."""
    from dataplane.storage import UnsafePath, clean_name

    if op not in NodeFileRequest.Op.values:
        raise OperationError("op", f"op must be one of {', '.join(NodeFileRequest.Op.values)}")
    if op == NodeFileRequest.Op.LIST:
        name = ""
    else:
        try:
            name = clean_name(name)
        except (UnsafePath, ValueError) as exc:
            raise OperationError("name", str(exc)) from None
    if not node.enabled:
        raise OperationError("node", f"node {node.name} is disabled; enable it first", status=409)
    return NodeFileRequest.objects.create(
        node=node,
        op=op,
        name=name,
        requested_by=requested_by if requested_by is not None and requested_by.is_authenticated else None,
    )


def file_request_claim(*, worker_id: str, node_ids: Iterable[int], limit: int = 8) -> list[NodeFileRequest]:
    """Take pending requests for nodes this worker has actors for (compare-and-swap, once each)."""
    claimed = []
    pending = NodeFileRequest.objects.filter(status=NodeFileRequest.Status.PENDING, node_id__in=list(node_ids))
    for pk in pending.order_by("created_at", "id").values_list("id", flat=True)[:limit]:
        won = NodeFileRequest.objects.filter(pk=pk, status=NodeFileRequest.Status.PENDING).update(
            status=NodeFileRequest.Status.RUNNING, worker_id=worker_id
        )
        if won:
            claimed.append(NodeFileRequest.objects.select_related("node").get(pk=pk))
    return claimed


@transaction.atomic
def file_request_finish(
    *, request_id: int, result: dict[str, Any] | None = None, error: str = "", spool_path: str = ""
) -> None:
    NodeFileRequest.objects.filter(pk=request_id).update(
        status=NodeFileRequest.Status.FAILED if error else NodeFileRequest.Status.DONE,
        result=result or {},
        error=error[:4000],
        spool_path=spool_path,
        finished_at=timezone.now(),
    )


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
