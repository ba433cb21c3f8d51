"""Writes to nodes. Views, admin actions and the worker all call these."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from nodes.models import Node
from transfers.events import publish_node


@transaction.atomic
def node_create(
    *, name: str, enabled: bool = True, ray_node_id: str = "", storage_dir: str = "", port: int | None = None
) -> Node:
    node = Node(name=name, enabled=enabled, ray_node_id=ray_node_id, storage_dir=storage_dir, requested_port=port)
    node.full_clean()
    node.save()
    publish_node(node)
    return node


@transaction.atomic
def node_set_enabled(*, node: Node, enabled: bool) -> Node:
    node.enabled = enabled
    if not enabled:
        node.status = Node.Status.OFFLINE
        node.status_detail = "disabled by an operator"
    node.save(update_fields=["enabled", "status", "status_detail", "updated_at"])
    publish_node(node)
    return node


@transaction.atomic
def node_record_heartbeat(*, node: Node, info: dict[str, Any], seen: datetime | None = None) -> Node:
    changed = node.status != Node.Status.ONLINE
    node.status = Node.Status.ONLINE
    node.status_detail = ""
    node.last_heartbeat = seen or timezone.now()
    node.address = info.get("address", node.address)
    node.port = info.get("port", node.port)
    node.ray_node_id = node.ray_node_id or info.get("ray_node_id", "")
    node.actor_pid = info.get("pid")
    node.peak_rss_mib = info.get("peak_rss_mib")
    node.save(
        update_fields=[
            "status",
            "status_detail",
            "last_heartbeat",
            "address",
            "port",
            "ray_node_id",
            "actor_pid",
            "peak_rss_mib",
            "updated_at",
        ]
    )
    if changed:
        publish_node(node)
    return node


@transaction.atomic
def node_mark(*, node: Node, status: str, detail: str) -> Node:
    if node.status == status and node.status_detail == detail:
        return node
    node.status = status
    node.status_detail = detail[:2000]
    node.save(update_fields=["status", "status_detail", "updated_at"])
    publish_node(node)
    return node
