"""Writes to cluster records: status, switches between clusters, placements, adoption, run-time config."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from castray_site.errors import DomainError
from clusters.discovery import Found
from clusters.models import (
    Cluster,
    ClusterOperation,
    DiscoveredCluster,
    NodeFileRequest,
    NodePlacement,
    RuntimeConfig,
)
from nodes.models import Node
from nodes.services import node_create, node_mark
from transfers.events import publish_cluster, publish_transfer
from transfers.models import Message, Target, Transfer

ADDRESS_RE = re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")


class OperationError(DomainError):
    """A cluster operation (switch, file request, configuration change) that cannot be recorded."""


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


# --- switching clusters --------------------------------------------------------------------
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


# --- placement, health, adoption -----------------------------------------------------------
def ray_node_key(row: dict[str, Any], label: str) -> str:
    """What names a Ray node's machine: its label, else its host name (or address)."""
    value = (row.get("labels") or {}).get(label)
    if value:
        return f"label:{value}"
    return f"host:{row.get('hostname') or row.get('address') or ''}"


def placements_record(*, cluster: Cluster, rows: dict[int, tuple[str, str | None]], adopted: bool = False) -> None:
    """Remember node id -> (Ray node id, machine key or None to keep the old key) on `cluster`."""
    for node_id, (ray_node_id, key) in rows.items():
        placement, created = NodePlacement.objects.get_or_create(
            cluster=cluster,
            node_id=node_id,
            defaults={"ray_node_id": ray_node_id, "key": key or "", "adopted": adopted},
        )
        if created:
            continue
        fields = []
        if placement.ray_node_id != ray_node_id:
            placement.ray_node_id = ray_node_id
            fields.append("ray_node_id")
        if key is not None and placement.key != key:
            placement.key = key
            fields.append("key")
        if adopted and not placement.adopted:
            placement.adopted = True
            fields.append("adopted")
        if fields:
            placement.save(update_fields=[*fields, "updated_at"])


@transaction.atomic
def node_rebind(*, node: Node, cluster: Cluster, ray_node_id: str, key: str | None, detail: str) -> Node:
    """Pin `node` to another Ray node (its machine came back as a new raylet), or unpin it ("")."""
    Node.objects.filter(pk=node.pk).update(ray_node_id=ray_node_id)
    node.ray_node_id = ray_node_id
    placements_record(cluster=cluster, rows={node.pk: (ray_node_id, key)})
    return node_mark(node=node, status=Node.Status.STARTING, detail=detail)


@transaction.atomic
def node_mark_down(*, node: Node, reason: str) -> list[int]:
    """The node's Ray node is gone: mark it offline and fail its part in running casts.

    Returns the ids of the casts whose targets on this node were failed. The cast itself
    ends when its round does (the other targets go on), `partial` with this reason.
    """
    node_mark(node=node, status=Node.Status.OFFLINE, detail=reason)
    affected = []
    targets = Target.objects.filter(node=node, transfer__status=Transfer.Status.RUNNING).exclude(
        status__in=Target.FINAL
    )
    for target in targets.select_related("transfer"):
        target.status = Target.Status.FAILED
        target.error = f"{node.name} went offline: {reason}"[:4000]
        target.finished_at = timezone.now()
        target.save(update_fields=["status", "error", "finished_at"])
        affected.append(target.transfer_id)
    for transfer in Transfer.objects.filter(pk__in=affected):
        publish_transfer(transfer)
    return affected


def _adopted_name(row: dict[str, Any], label: str, taken: set[str]) -> str:
    value = (row.get("labels") or {}).get(label, "")
    host = row.get("hostname") or row.get("address") or "ray"
    candidates = [value] if value else []
    candidates.append(f"ray-{host}-{str(row.get('node_id'))[:6]}")
    for raw in candidates:
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", raw).strip("-._")[:63] or "ray"
        if name not in taken:
            return name
    return f"ray-{str(row.get('node_id'))[:12]}"


@transaction.atomic
def nodes_adopt(*, cluster: Cluster, ray_nodes: list[dict[str, Any]] | None = None) -> list[Node]:
    """Create one CastRay node, pinned to it, for every live Ray node that has none.

    Reads the Ray nodes the worker recorded on the cluster (no Ray call). A Ray node counts
    as served when an enabled node is pinned to it, or when a node adopted on the same
    machine waits for it (its raylet restarted; the worker pins it again).
    """
    label = settings.CASTRAY_RAY_NODE_LABEL
    rows = [r for r in (cluster.ray_nodes if ray_nodes is None else ray_nodes) if r.get("alive")]
    pinned = set(Node.objects.filter(enabled=True).exclude(ray_node_id="").values_list("ray_node_id", flat=True))
    adopted_keys = set(
        NodePlacement.objects.filter(cluster=cluster, adopted=True, node__enabled=True).values_list("key", flat=True)
    )
    taken = set(Node.objects.values_list("name", flat=True))
    made = []
    for row in rows:
        key = ray_node_key(row, label)
        if row["node_id"] in pinned or (key.startswith("label:") and key in adopted_keys):
            continue
        name = _adopted_name(row, label, taken)
        node = node_create(name=name, ray_node_id=row["node_id"])
        placements_record(cluster=cluster, rows={node.pk: (row["node_id"], key)}, adopted=True)
        taken.add(name)
        pinned.add(row["node_id"])
        made.append(node)
    return made


# --- discovery -----------------------------------------------------------------------------
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


# --- run-time configuration ----------------------------------------------------------------
CONFIG_SETTINGS = {
    "chunk_size": "CASTRAY_CHUNK_SIZE",
    "default_fan_out": "CASTRAY_DEFAULT_FAN_OUT",
    "default_egress_cap": "CASTRAY_DEFAULT_EGRESS_CAP",
    "default_ingress_cap": "CASTRAY_DEFAULT_INGRESS_CAP",
    "node_concurrency": "CASTRAY_DEFAULT_NODE_CONCURRENCY",
    "max_active_transfers": "CASTRAY_MAX_ACTIVE_TRANSFERS",
    "demo_enabled": "CASTRAY_DEMO_MODE",
    "demo_interval": "CASTRAY_DEMO_INTERVAL",
    "demo_file_size": "CASTRAY_DEMO_FILE_SIZE",
}


def runtime_config_effective(config: RuntimeConfig | None = None) -> dict[str, Any]:
    """Each setting's value now: the recorded one, or the CASTRAY_* default."""
    config = config or RuntimeConfig.objects.filter(pk=1).first()
    out = {}
    for field, name in CONFIG_SETTINGS.items():
        value = getattr(config, field, None) if config is not None else None
        out[field] = value if value is not None else getattr(settings, name)
    return out


@transaction.atomic
def runtime_config_update(*, changes: dict[str, Any], user: AbstractBaseUser | None = None) -> RuntimeConfig:
    """Record new values (None: back to the default). Validation happens in the caller's serializer."""
    config = RuntimeConfig.objects.select_for_update().get_or_create(pk=1)[0]
    for field, value in changes.items():
        if field not in CONFIG_SETTINGS:
            raise OperationError(field, f"{field} cannot be configured; use one of {', '.join(CONFIG_SETTINGS)}")
        setattr(config, field, value)
    config.updated_by = user if user is not None and user.is_authenticated else None
    config.save()
    return config


# --- files on other hosts ------------------------------------------------------------------
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
