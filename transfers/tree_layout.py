"""Positions for drawing a cast's distribution tree as SVG (Transfer.tree -> boxes and lines).

Transfer.tree is `{"root", "fan_out", "edges": [[parent, child], ...]}`, plus `rounds` (each
with its own edges) when targets were re-parented after a relay failed: the latest round's
parent wins. Leaves take consecutive columns and each parent sits over its children.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COLUMN = 120
ROW = 76
BOX_WIDTH = 104
BOX_HEIGHT = 30
MARGIN = 12
LABEL_CHARS = 13


@dataclass
class TreeNode:
    name: str
    status: str
    x: float = 0.0
    y: float = 0.0
    label: str = ""
    is_root: bool = False


@dataclass
class TreePicture:
    nodes: list[TreeNode] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # SVG path data, parent to child
    width: float = 0.0
    height: float = 0.0
    fan_out: int = 0
    rounds: int = 1
    box_width: int = BOX_WIDTH
    box_height: int = BOX_HEIGHT
    box_x: float = -BOX_WIDTH / 2
    box_y: float = -BOX_HEIGHT / 2


def _parents(tree: dict[str, Any]) -> dict[str, str]:
    parents: dict[str, str] = {}
    for rnd in [tree, *tree.get("rounds", [])]:
        for edge in rnd.get("edges", []):
            if isinstance(edge, list | tuple) and len(edge) == 2:
                parents[str(edge[1])] = str(edge[0])
    return parents


def layout(tree: dict[str, Any], statuses: dict[str, str]) -> TreePicture | None:
    """Lay out `tree`, colouring each node by `statuses` (node name -> target status)."""
    root = tree.get("root") if isinstance(tree, dict) else None
    if not root:
        return None
    parents = _parents(tree)
    children: dict[str, list[str]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    picture = TreePicture(fan_out=int(tree.get("fan_out") or 0), rounds=1 + len(tree.get("rounds", [])))
    # Depth-first order without recursion (a chain of a thousand nodes is a valid tree).
    placed: dict[str, TreeNode] = {}
    kids: dict[str, list[str]] = {}
    order: list[tuple[str, int]] = []
    stack = [(str(root), 0, "")]
    while stack:
        name, depth, parent = stack.pop()
        if name in placed:
            continue
        status = "source" if depth == 0 else statuses.get(name, "pending")
        label = name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "…"
        placed[name] = TreeNode(name, status, label=label, is_root=depth == 0)
        kids[name] = []
        if parent:
            kids[parent].append(name)
        order.append((name, depth))
        stack.extend((kid, depth + 1, name) for kid in reversed(children.get(name, [])))
    columns: dict[str, float] = {}
    leaves = 0
    for name, _depth in order:
        if not kids[name]:
            columns[name] = leaves
            leaves += 1
    for name, depth in reversed(order):
        if kids[name]:
            columns[name] = (columns[kids[name][0]] + columns[kids[name][-1]]) / 2
        node = placed[name]
        node.x = MARGIN + columns[name] * COLUMN + BOX_WIDTH / 2
        node.y = MARGIN + depth * ROW + BOX_HEIGHT / 2
        picture.height = max(picture.height, node.y + BOX_HEIGHT / 2 + MARGIN)
    picture.nodes = list(placed.values())
    picture.width = MARGIN * 2 + max(leaves, 1) * COLUMN - (COLUMN - BOX_WIDTH)
    for child, parent in parents.items():
        if child in placed and parent in placed:
            a, b = placed[parent], placed[child]
            y1, y2 = a.y + BOX_HEIGHT / 2, b.y - BOX_HEIGHT / 2
            bend = (y2 - y1) / 2
            picture.links.append(f"M{a.x:g},{y1:g} C{a.x:g},{y1 + bend:g} {b.x:g},{y2 - bend:g} {b.x:g},{y2:g}")
    return picture
