"""Current state read from the database, in the shapes the live feed and the old API use.

`status_snapshot()` is the body of the earlier CastRay's `GET /api/status` (and of the
`status_update` messages on `/ws`), plus what the dashboard needs: the active cluster and the
active casts. It runs a fixed number of queries whatever the number of nodes and transfers.
Reads that several views share live here, as writes live in services/.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, Sum
from django.utils import timezone

from castray_site.lib import iso, unix_seconds
from clusters.models import Cluster
from nodes.models import Node
from transfers.events import target_states
from transfers.models import Delivery, Message, Target, Transfer

ACTIVE_TRANSFERS_SHOWN = 50


def cluster_state(cluster: Cluster | None) -> dict[str, Any] | None:
    if cluster is None:
        return None
    return {
        "id": cluster.pk,
        "name": cluster.name,
        "address": cluster.address,
        "status": cluster.status,
        "last_error": cluster.last_error,
        "ray_version": cluster.ray_version,
        "dashboard_url": cluster.dashboard_url,
        "worker_id": cluster.worker_id,
        "worker_seen": iso(cluster.worker_seen),
        "connected_at": iso(cluster.connected_at),
    }


def _transfer_summary(transfer: Transfer) -> dict[str, Any]:
    targets = list(transfer.targets.all())
    done = sum(t.bytes_done for t in targets)
    whole = (transfer.size or 0) * len(targets)
    return {
        "id": transfer.pk,
        "file_name": transfer.file_name,
        "source": transfer.source.name,
        "status": transfer.status,
        "cast_type": transfer.cast_type,
        "mode": transfer.mode,
        "size": transfer.size,
        "created_at": iso(transfer.created_at),
        "started_at": iso(transfer.started_at),
        "progress": done / whole if whole else 0.0,
        "targets": target_states(targets),
    }


def _per_node(rows: Any, key: str) -> dict[int, dict[str, Any]]:
    return {row[key]: row for row in rows}


def status_snapshot() -> dict[str, Any]:
    """The cluster, every node with its counters, and the active casts, from the database.

    Per node (the old field names): `received_count`/`sent_count` count messages received and
    sent; `file_transfer_stats` counts finished casts the node sent plus finished receipts,
    with `bytes_transferred` = bytes it sent as a source + bytes it received;
    `active_transfers` counts unfinished casts it sends and unfinished receipts.
    """
    final = list(Transfer.FINAL)
    sent = _per_node(
        Transfer.objects.values("source_id").annotate(
            total=Count("id", filter=Q(status__in=final)),
            ok=Count("id", filter=Q(status=Transfer.Status.COMPLETED)),
            failed=Count("id", filter=Q(status__in=[Transfer.Status.FAILED, Transfer.Status.PARTIAL])),
            active=Count("id", filter=~Q(status__in=final)),
            bytes=Sum("source_bytes_sent"),
        ),
        "source_id",
    )
    received = _per_node(
        Target.objects.values("node_id").annotate(
            total=Count("id", filter=Q(status__in=Target.FINAL)),
            ok=Count("id", filter=Q(status__in=[Target.Status.COMPLETED, Target.Status.SKIPPED])),
            failed=Count("id", filter=Q(status=Target.Status.FAILED)),
            active=Count("id", filter=~Q(status__in=Target.FINAL)),
            bytes=Sum("bytes_received"),
        ),
        "node_id",
    )
    messages_sent = dict(Message.objects.values_list("sender_id").annotate(n=Count("id")))
    messages_received = dict(
        Delivery.objects.filter(status=Delivery.Status.DELIVERED).values_list("node_id").annotate(n=Count("id"))
    )

    def count(table: dict[int, dict[str, Any]], pk: int, field: str) -> int:
        return int((table.get(pk) or {}).get(field) or 0)

    statuses = []
    for node in Node.objects.all():
        statuses.append(
            {
                "node_id": node.name,
                "port": node.port,
                "is_running": node.enabled and node.status == Node.Status.ONLINE,
                "received_count": messages_received.get(node.pk, 0),
                "sent_count": messages_sent.get(node.pk, 0),
                "last_activity": unix_seconds(node.last_heartbeat),
                "file_transfer_stats": {
                    "total_transfers": count(sent, node.pk, "total") + count(received, node.pk, "total"),
                    "successful_transfers": count(sent, node.pk, "ok") + count(received, node.pk, "ok"),
                    "failed_transfers": count(sent, node.pk, "failed") + count(received, node.pk, "failed"),
                    "bytes_transferred": count(sent, node.pk, "bytes") + count(received, node.pk, "bytes"),
                },
                "active_transfers": count(sent, node.pk, "active") + count(received, node.pk, "active"),
                "auto_transfer_enabled": False,
                # Beyond the old fields: what the pages show.
                "id": node.pk,
                "status": node.status,
                "status_detail": node.status_detail,
                "enabled": node.enabled,
                "address": node.address,
            }
        )
    cluster = Cluster.objects.filter(active=True).first()
    active = (
        Transfer.objects.active()
        .select_related("source")
        .prefetch_related("targets__node", "targets__parent")
        .order_by("-created_at", "-id")[:ACTIVE_TRANSFERS_SHOWN]
    )
    return {
        "total_nodes": len(statuses),
        "active_nodes": sum(1 for s in statuses if s["is_running"]),
        "node_statuses": statuses,
        "ray_cluster": {
            "cluster_resources": cluster.resources if cluster else {},
            # The worker records the cluster's totals only; what is free is Ray's to know.
            "available_resources": {},
            "nodes": cluster.ray_nodes if cluster else [],
        },
        "node_ports": {s["node_id"]: s["port"] for s in statuses},
        "cluster": cluster_state(cluster),
        "active_casts": [_transfer_summary(t) for t in active],
        "timestamp": timezone.now().timestamp(),
    }
