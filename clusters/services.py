"""Writes to cluster records."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from clusters.models import Cluster
from transfers.events import STATUS_GROUP, ClusterEvent, publish


def cluster_active() -> Cluster:
    cluster = Cluster.objects.filter(active=True).first()
    if cluster is None:
        cluster, _ = Cluster.objects.get_or_create(name="default", defaults={"active": True})
    return cluster


@transaction.atomic
def cluster_record(
    *, cluster: Cluster, status: str, error: str = "", info: dict[str, Any] | None = None, worker_id: str = ""
) -> Cluster:
    changed = cluster.status != status or cluster.last_error != error
    cluster.status = status
    cluster.last_error = error[:4000]
    cluster.worker_id = worker_id or cluster.worker_id
    cluster.worker_seen = timezone.now()
    fields = ["status", "last_error", "worker_id", "worker_seen", "updated_at"]
    if info:
        for key in ("ray_version", "gcs_address", "dashboard_url", "resources", "ray_nodes"):
            if key in info:
                setattr(cluster, key, info[key])
                fields.append(key)
        if status == Cluster.Status.CONNECTED and changed:
            cluster.connected_at = timezone.now()
            fields.append("connected_at")
    cluster.save(update_fields=fields)
    if changed:
        event: ClusterEvent = {
            "type": "cluster.update",
            "cluster": cluster.pk,
            "status": status,
            "last_error": cluster.last_error,
        }
        publish([STATUS_GROUP], event)
    return cluster
