"""Distribution trees: who sends to whom in a cast.

Targets are laid out breadth-first under the source; with fan-out k, target i (from 1)
receives from position (i - 1) // k, where position 0 is the source. k = 1 is a chain:
every node sends exactly one copy, which is what uses a per-node bandwidth cap best.
Pure code (no Django, no Ray), so tests check tree shapes directly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dataplane.contract import Hop

DEFAULT_FAN_OUT = 1


def plan_tree(source: str, hops: list[Hop], fan_out: int = DEFAULT_FAN_OUT) -> tuple[tuple[Hop, ...], dict[str, Any]]:
    """Return (the source's children, each with its subtree; a record of the tree for people).

    `hops` are the targets in the order they should be placed (their own children are ignored).
    """
    if fan_out < 1:
        raise ValueError("fan-out must be at least 1")
    parent_of = [(i - 1) // fan_out for i in range(1, len(hops) + 1)]  # 0 is the source
    kids: list[list[Hop]] = [[] for _ in range(len(hops) + 1)]
    built: list[Hop] = list(hops)  # replaced below; a copy, so no targets plans an empty tree
    # Hops are immutable: build the deepest first, so each parent is made with its children.
    for i in range(len(hops), 0, -1):
        built[i - 1] = replace(hops[i - 1], children=tuple(reversed(kids[i])))
        kids[parent_of[i - 1]].append(built[i - 1])
    edges = [[source if parent_of[i] == 0 else hops[parent_of[i] - 1].node, hops[i].node] for i in range(len(hops))]
    return tuple(reversed(kids[0])), {"root": source, "fan_out": fan_out, "edges": edges}
