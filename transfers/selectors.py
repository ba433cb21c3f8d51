"""Current state read from the database, in the shapes the live feed and the old API use.

`status_snapshot()` is the body of the earlier CastRay's `GET /api/status` (and of the
`status_update` messages on `/ws`), plus what the dashboard needs: the active cluster and the
active casts. It runs a fixed number of queries whatever the number of nodes and transfers.
Reads that several views share live here, as writes live in services/.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Prefetch
from django.utils import timezone

from castray_site.lib import iso, unix_seconds
from clusters.models import Cluster
from nodes.models import Node
from transfers.events import target_states
from transfers.models import NodeCounters, Target, Transfer

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


def _active_counts(active: list[Transfer]) -> dict[int, int]:
    """Per node: unfinished casts it sends plus unfinished receipts.

    Read through the active casts (the status index), so the cost follows what is running,
    not the history; a finished cast's targets are all final. `active` is the list the
    snapshot shows: when it holds every active cast (the usual case) the counts come from
    it, with no query of their own.
    """
    counts: dict[int, int] = {}
    if len(active) <= ACTIVE_TRANSFERS_SHOWN:
        for transfer in active:
            counts[transfer.source_id] = counts.get(transfer.source_id, 0) + 1
            for target in transfer.targets.all():
                if target.status not in Target.FINAL:
                    counts[target.node_id] = counts.get(target.node_id, 0) + 1
        return counts
    casts = Transfer.objects.active()
    for source, n in casts.values_list("source_id").annotate(n=Count("id")).order_by():
        counts[source] = counts.get(source, 0) + n
    receiving = Target.objects.filter(transfer__in=casts).exclude(status__in=Target.FINAL)
    for node, n in receiving.values_list("node_id").annotate(n=Count("id")).order_by():
        counts[node] = counts.get(node, 0) + n
    return counts


def status_snapshot() -> dict[str, Any]:
    """The cluster, every node with its counters, and the active casts, from the database.

    Per node (the old field names): `received_count`/`sent_count` count messages received and
    sent; `file_transfer_stats` counts finished casts the node sent plus finished receipts,
    with `bytes_transferred` = bytes it sent as a source + bytes it received;
    `active_transfers` counts unfinished casts it sends and unfinished receipts. The counters
    are NodeCounters rows the services keep (services/counters.py): the cost of a snapshot
    does not grow with the number of casts ever made.
    """
    counters = {c.node_id: c for c in NodeCounters.objects.all()}
    # One more than is shown: then the list tells whether it holds every active cast. The
    # targets come in one query with their nodes and parents.
    active = list(
        Transfer.objects.active()
        .select_related("source")
        .prefetch_related(Prefetch("targets", queryset=Target.objects.select_related("node", "parent")))
        .order_by("-created_at", "-id")[: ACTIVE_TRANSFERS_SHOWN + 1]
    )
    active_counts = _active_counts(active)
    empty = NodeCounters()

    statuses = []
    for node in Node.objects.all():
        c = counters.get(node.pk, empty)
        statuses.append(
            {
                "node_id": node.name,
                "port": node.port,
                "is_running": node.enabled and node.status == Node.Status.ONLINE,
                "received_count": c.messages_received,
                "sent_count": c.messages_sent,
                "last_activity": unix_seconds(node.last_heartbeat),
                "file_transfer_stats": {
                    "total_transfers": c.total_transfers,
                    "successful_transfers": c.successful_transfers,
                    "failed_transfers": c.failed_transfers,
                    "bytes_transferred": c.bytes_transferred,
                },
                "active_transfers": active_counts.get(node.pk, 0),
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
        "active_casts": [_transfer_summary(t) for t in active[:ACTIVE_TRANSFERS_SHOWN]],
        "timestamp": timezone.now().timestamp(),
    }
