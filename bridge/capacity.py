"""What the worker tells the planner about a cast's nodes: their caps and achieved rates."""

from __future__ import annotations

from typing import Any

from bridge.bounds import cast_bounds
from bridge.config import RunConfig
from bridge.planner import Capacity, choose_chunk_size, known, plan_capacity, plan_tree
from dataplane.contract import Hop
from nodes.models import Node
from transfers.models import Transfer
from transfers.services.plan import transfer_set_bounds


def capacity_of(node: Node, config: RunConfig) -> Capacity:
    """A node's caps as its actor applies them (its own, else the configured default)."""
    return Capacity(
        egress=node.egress_cap or config.default_egress_cap or None,
        ingress=node.ingress_cap or config.default_ingress_cap or None,
        achieved=node.achieved_rate,
    )


def target_capacities(transfer: Transfer, config: RunConfig) -> dict[int, Capacity]:
    return {target.pk: capacity_of(target.node, config) for target in transfer.targets.select_related("node")}


def plan_cast(transfer: Transfer, hops: list[Hop], config: RunConfig) -> tuple[tuple[Hop, ...], dict[str, Any]]:
    """The tree for a round: capacity-aware unless the cast asked for a fan-out of its own."""
    if transfer.fan_out:
        return plan_tree(transfer.source.name, hops, transfer.fan_out)  # someone chose the shape: keep it
    caps = target_capacities(transfer, config)
    return plan_capacity(transfer.source.name, capacity_of(transfer.source, config), hops, caps, config.default_fan_out)


def chunk_for(transfer: Transfer, config: RunConfig) -> int:
    """The cast's chunk size: the one asked for, else one fitted to its caps and target count."""
    if transfer.chunk_size:
        return transfer.chunk_size
    if transfer.mode != Transfer.Mode.TCP:
        return config.chunk_size
    caps = target_capacities(transfer, config)
    source = capacity_of(transfer.source, config)
    capped = known(source) and all(known(c) for c in caps.values())
    return choose_chunk_size(source.egress if capped else None, len(caps), config.chunk_size)


def record_bounds(transfer: Transfer, size: int, config: RunConfig) -> None:
    """Store the cast's lower bounds from the caps its nodes have as it starts."""
    caps = target_capacities(transfer, config)
    bounds = cast_bounds(
        size, capacity_of(transfer.source, config).egress, {tid: (c.egress, c.ingress) for tid, c in caps.items()}
    )
    transfer_set_bounds(transfer=transfer, cast=bounds.cast, targets=bounds.targets)
