"""Reads of what the worker recorded about Ray, in the shapes the cluster endpoints answer with.

Nothing here calls Ray: the worker writes `Cluster.ray_nodes`, `resources` and `stats` every
heartbeat, and these functions only format them. Reads that several views share live here, as
writes live in services/.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.conf import settings

from castray_site.lib import iso
from clusters.discovery import local_addresses
from clusters.models import Cluster, ClusterOperation, DiscoveredCluster
from nodes.models import Node


def cluster_summary(cluster: Cluster) -> dict[str, Any]:
    return {
        "name": cluster.name,
        "address": cluster.address or settings.RAY_ADDRESS or "local",
        "gcs_address": cluster.gcs_address,
        "status": cluster.status,
        "last_error": cluster.last_error,
        "external": cluster.external,
        "ray_version": cluster.ray_version,
        "dashboard_url": cluster.dashboard_url,
        "connected_at": iso(cluster.connected_at),
        "worker_id": cluster.worker_id,
        "worker_seen": iso(cluster.worker_seen),
    }


def ray_node_entry(row: dict[str, Any], cluster: Cluster, hosted: dict[str, list[str]]) -> dict[str, Any]:
    """One Ray node in the earlier CastRay's `external_nodes` shape, plus what we know of it."""
    return {
        "id": row.get("node_id"),
        "address": row.get("address"),
        "hostname": row.get("hostname", ""),
        "status": "alive" if row.get("alive") else "dead",
        "alive": bool(row.get("alive")),
        "type": "head" if row.get("is_head") else "worker",
        "cluster_source": cluster.name,
        "last_seen": iso(cluster.worker_seen) if row.get("alive") else None,
        "resources": row.get("resources", {}),
        "labels": row.get("labels", {}),
        "death_reason": row.get("death_reason", ""),
        "castray_nodes": hosted.get(row.get("node_id") or "", []),
    }


def nodes_by_ray_node() -> dict[str, list[str]]:
    """Ray node id -> names of the CastRay nodes pinned to it."""
    hosted: dict[str, list[str]] = {}
    for name, rid in Node.objects.exclude(ray_node_id="").values_list("name", "ray_node_id"):
        hosted.setdefault(rid, []).append(name)
    return hosted


def ray_nodes(cluster: Cluster) -> list[dict[str, Any]]:
    hosted = nodes_by_ray_node()
    return [ray_node_entry(row, cluster, hosted) for row in cluster.ray_nodes]


def castray_nodes() -> list[dict[str, Any]]:
    return [
        {
            "name": n.name,
            "enabled": n.enabled,
            "status": n.status,
            "status_detail": n.status_detail,
            "ray_node_id": n.ray_node_id,
            "address": n.address,
            "port": n.port,
            "last_heartbeat": iso(n.last_heartbeat),
        }
        for n in Node.objects.all()
    ]


def totals(cluster: Cluster) -> dict[str, Any]:
    total, free = cluster.resources or {}, cluster.available_resources or {}
    store = (cluster.stats or {}).get("object_store", {})
    alive = [r for r in cluster.ray_nodes if r.get("alive")]
    return {
        "ray_nodes": len(cluster.ray_nodes),
        "ray_nodes_alive": len(alive),
        "cpus": total.get("CPU", 0),
        "cpus_available": free.get("CPU", 0),
        "gpus": total.get("GPU", 0),
        "memory_bytes": int(total.get("memory", 0)),
        "object_store_bytes": int(total.get("object_store_memory", 0)),
        "object_store_used_bytes": store.get("used_bytes"),
        "castray_nodes": dict(Counter(Node.objects.values_list("status", flat=True))),
    }


def operation_entry(op: ClusterOperation) -> dict[str, Any]:
    return {
        "id": op.pk,
        "kind": op.kind,
        "address": op.address,
        "status": op.status,
        "message": op.message,
        "source": op.source.name if op.source_id and op.source else None,
        "target": op.target.name if op.target_id and op.target else None,
        "requeued": op.requeued,
        "requested_by": op.requested_by.get_username() if op.requested_by_id and op.requested_by else None,
        "worker_id": op.worker_id,
        "created_at": iso(op.created_at),
        "started_at": iso(op.started_at),
        "finished_at": iso(op.finished_at),
        "url": f"/api/cluster/operations/{op.pk}",
    }


def same_cluster(a: str, b: str) -> bool:
    """Whether two GCS addresses are the same cluster (hosts that both mean this host count as one)."""
    if not a or not b:
        return False
    host_a, _, port_a = a.rpartition(":")
    host_b, _, port_b = b.rpartition(":")
    if port_a != port_b:
        return False
    local = local_addresses()
    return host_a == host_b or (host_a in local and host_b in local)


def discovered_entry(row: DiscoveredCluster, active: Cluster) -> dict[str, Any]:
    current = same_cluster(row.address, active.gcs_address)
    return {
        "address": row.address,
        "alive": row.alive,
        "is_current": current,
        "session_name": row.session_name,
        "temp_dir": row.temp_dir,
        "head_node_id": row.head_node_id,
        "dashboard_url": row.dashboard_url,
        "sources": row.sources,
        "started_by_pid": row.started_by_pid,
        "last_seen": iso(row.last_seen),
        # Only the connected cluster's nodes are known (the worker records them).
        "nodes": len([r for r in active.ray_nodes if r.get("alive")]) if current else None,
        "resources": active.resources if current else None,
    }
