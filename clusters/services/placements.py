"""Which Ray node each CastRay node runs on, per cluster; nodes whose Ray node died; adoption."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clusters.models import Cluster, NodePlacement
from nodes.models import Node
from nodes.services import node_create, node_mark
from transfers.events import publish_transfer
from transfers.models import Target, Transfer


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
