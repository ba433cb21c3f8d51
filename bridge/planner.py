"""Distribution trees: who sends to whom in a cast.

Targets are laid out breadth-first under the source; with fan-out k, target i (from 1)
receives from position (i - 1) // k, where position 0 is the source. k = 1 is a chain:
every node sends exactly one copy, which is what uses a per-node bandwidth cap best.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_FAN_OUT = 1


@dataclass(frozen=True)
class Hop:
    target: int  # Target row id
    node: str
    address: str
    port: int


def plan_tree(
    source: str, hops: list[Hop], fan_out: int = DEFAULT_FAN_OUT
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return (children plan for the source actor, a record of the tree for people)."""
    if fan_out < 1:
        raise ValueError("fan-out must be at least 1")
    plans: list[dict[str, Any]] = [
        {"target": hop.target, "node": hop.node, "address": hop.address, "port": hop.port, "children": []}
        for hop in hops
    ]
    roots: list[dict[str, Any]] = []
    edges: list[list[str]] = []
    for i, plan in enumerate(plans, start=1):
        parent = (i - 1) // fan_out
        if parent == 0:
            roots.append(plan)
            edges.append([source, plan["node"]])
        else:
            plans[parent - 1]["children"].append(plan)
            edges.append([plans[parent - 1]["node"], plan["node"]])
    return roots, {"root": source, "fan_out": fan_out, "edges": edges}
