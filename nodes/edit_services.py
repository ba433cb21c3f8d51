"""Writes to nodes and groups that operators make through the API, beside nodes/services.py."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import ProtectedError

from nodes.models import Node, NodeGroup
from nodes.services import node_create, node_set_enabled
from transfers.events import publish_node

# What an operator may change on an existing node (its name is its identity).
NODE_EDITABLE = ("ray_node_id", "storage_dir", "requested_port", "egress_cap", "ingress_cap", "max_concurrent")


@transaction.atomic
def node_register(
    *,
    name: str,
    enabled: bool = True,
    ray_node_id: str = "",
    storage_dir: str = "",
    port: int | None = None,
    egress_cap: int | None = None,
    ingress_cap: int | None = None,
    max_concurrent: int | None = None,
) -> Node:
    """Create a node with its limits in one step."""
    node = node_create(name=name, enabled=enabled, ray_node_id=ray_node_id, storage_dir=storage_dir, port=port)
    limits = {"egress_cap": egress_cap, "ingress_cap": ingress_cap, "max_concurrent": max_concurrent}
    if any(value is not None for value in limits.values()):
        node = node_update(node=node, **limits)
    return node


@transaction.atomic
def node_update(*, node: Node, **fields: Any) -> Node:
    """Change a node's placement, storage, port or limits; the worker applies them."""
    unknown = set(fields) - set(NODE_EDITABLE)
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))} here")
    for field, value in fields.items():
        setattr(node, field, value)
    node.full_clean()
    node.save(update_fields=[*fields, "updated_at"])
    publish_node(node)
    return node


@transaction.atomic
def node_remove(*, node: Node) -> bool:
    """Delete a node that never took part in a cast or a message; disable one that did.

    Its history (casts, deliveries) refers to it, so such a node stays as a disabled record.
    Returns True when the row was deleted. The worker stops the actor either way; files in
    its storage stay on disk.
    """
    has_history = (
        node.sent_transfers.exists() or node.targets.exists() or node.sent_messages.exists() or node.deliveries.exists()
    )
    if not has_history:
        try:
            with transaction.atomic():
                pk = node.pk
                node.delete()
        except ProtectedError:  # history written since we looked
            has_history = True
    if has_history:
        node_set_enabled(node=node, enabled=False)
        return False
    node.pk = pk
    publish_node(node, status="deleted")
    return True


@transaction.atomic
def group_create(*, name: str, description: str = "", nodes: Iterable[Node] = ()) -> NodeGroup:
    group = NodeGroup(name=name, description=description)
    group.full_clean()
    group.save()
    group.nodes.set(list(nodes))
    return group


@transaction.atomic
def group_update(
    *, group: NodeGroup, name: str | None = None, description: str | None = None, nodes: Iterable[Node] | None = None
) -> NodeGroup:
    if name is not None:
        group.name = name
    if description is not None:
        group.description = description
    group.full_clean()
    group.save(update_fields=["name", "description"])
    if nodes is not None:
        group.nodes.set(list(nodes))
    return group


@transaction.atomic
def group_delete(*, group: NodeGroup) -> None:
    # Casts to the group keep their targets; their `group` becomes empty.
    group.delete()
