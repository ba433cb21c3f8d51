"""The cluster rows: which one is active, what the worker saw of it, switching between them, discovery."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from clusters.discovery import Found
from clusters.models import Cluster, DiscoveredCluster, NodePlacement
from clusters.services.placements import placements_record
from nodes.models import Node
from nodes.services import node_mark
from transfers.events import publish_cluster, publish_transfer
from transfers.models import Message, Target, Transfer


def cluster_active() -> Cluster:
    cluster = Cluster.objects.filter(active=True).first()
    if cluster is None:
        cluster, _ = Cluster.objects.get_or_create(name="default", defaults={"active": True})
    return cluster


def cluster_configured() -> Cluster:
    """The cluster CastRay runs on when nobody switched it elsewhere (RAY_ADDRESS, or a local Ray)."""
    cluster, _ = Cluster.objects.get_or_create(name="default", defaults={"active": not Cluster.objects.exists()})
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
        for key in ("ray_version", "gcs_address", "dashboard_url", "resources", "available_resources", "ray_nodes"):
            if key in info:
                setattr(cluster, key, info[key])
                fields.append(key)
        if status == Cluster.Status.CONNECTED and changed:
            cluster.connected_at = timezone.now()
            fields.append("connected_at")
    cluster.save(update_fields=fields)
    if changed:
        publish_cluster(cluster)
    return cluster


@transaction.atomic
def cluster_record_stats(*, cluster: Cluster, stats: dict[str, Any]) -> None:
    Cluster.objects.filter(pk=cluster.pk).update(stats={**stats, "collected_at": timezone.now().isoformat()})


def cluster_for_address(address: str) -> Cluster:
    """The cluster row for `address`: the configured one if it is that, else an external one."""
    configured = cluster_configured()
    if address == (configured.address or settings.RAY_ADDRESS):
        return configured
    existing = Cluster.objects.filter(address=address).first()
    if existing is not None:
        return existing
    base = slugify(f"external-{address.replace(':', '-').replace('.', '-')}")[:60] or "external"
    name, n = base, 1
    while Cluster.objects.filter(name=name).exists():
        n += 1
        name = f"{base[:56]}-{n}"
    return Cluster.objects.create(name=name, address=address, active=False, external=True)


@transaction.atomic
def cluster_switch(*, target: Cluster, worker_id: str = "") -> Cluster:
    """Make `target` the active cluster; nodes keep their records and files and start there again.

    Each node's placement on the cluster it leaves is remembered, and the one it had on
    `target` (if it ever ran there) restored; otherwise Ray places it and its first
    heartbeat pins it.
    """
    current = cluster_active()
    nodes = list(Node.objects.select_for_update().all())
    if current.pk != target.pk:
        placements_record(cluster=current, rows={n.pk: (n.ray_node_id, None) for n in nodes if n.ray_node_id})
    remembered = dict(NodePlacement.objects.filter(cluster=target).values_list("node_id", "ray_node_id"))
    Cluster.objects.exclude(pk=target.pk).filter(active=True).update(active=False)
    Cluster.objects.filter(pk=target.pk).update(active=True)
    if current.pk != target.pk:
        cluster_record(cluster=current, status=Cluster.Status.DISCONNECTED, error="CastRay moved to another cluster")
        Cluster.objects.filter(pk=current.pk).update(active=False)
    target.refresh_from_db()
    for node in nodes:
        pin = remembered.get(node.pk, "")
        if node.ray_node_id != pin:
            Node.objects.filter(pk=node.pk).update(ray_node_id=pin)
        if node.enabled:
            node.ray_node_id = pin
            node_mark(node=node, status=Node.Status.STARTING, detail=f"starting again on Ray cluster {target.name}")
    return target


@transaction.atomic
def transfers_requeue(*, worker_id: str, transfer_ids: Iterable[int], reason: str) -> list[int]:
    """Send this worker's running casts back to the queue; their targets resume from their chunks."""
    done = []
    for pk in transfer_ids:
        won = Transfer.objects.filter(pk=pk, status=Transfer.Status.RUNNING, lease_owner=worker_id).update(
            status=Transfer.Status.QUEUED, lease_owner="", lease_expires=None, error=reason[:4000]
        )
        if won:
            Target.objects.filter(transfer_id=pk).exclude(status__in=Target.FINAL).update(
                status=Target.Status.PENDING, error=reason[:4000]
            )
            done.append(pk)
            publish_transfer(Transfer.objects.get(pk=pk))
    return done


def messages_requeue(*, worker_id: str) -> int:
    """Messages this worker was delivering go back to the queue (deliveries not yet recorded stay pending)."""
    return Message.objects.filter(status=Message.Status.RUNNING, lease_owner=worker_id).update(
        status=Message.Status.QUEUED, lease_owner="", lease_expires=None
    )


@transaction.atomic
def discovered_record(*, found: list[Found]) -> list[DiscoveredCluster]:
    """Record what discovery found; clusters not found again are marked gone."""
    now = timezone.now()
    rows = []
    for item in found:
        row, _ = DiscoveredCluster.objects.get_or_create(address=item.address)
        row.session_name = item.session_name
        row.temp_dir = item.temp_dir
        row.head_node_id = item.head_node_id
        row.sources = item.sources
        row.alive = item.alive
        row.dashboard_url = item.dashboard_url
        row.started_by_pid = item.started_by_pid
        row.last_checked = now
        if item.alive:
            row.last_seen = now
        row.save()
        rows.append(row)
    DiscoveredCluster.objects.exclude(address__in=[f.address for f in found]).update(alive=False, last_checked=now)
    return rows
