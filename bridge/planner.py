"""Distribution trees: who sends to whom in a cast.

Targets are laid out breadth-first under the source; with fan-out k, target i (from 1)
receives from position (i - 1) // k, where position 0 is the source. k = 1 is a chain:
every node sends exactly one copy, which is what uses a per-node bandwidth cap best.
Pure code (no Django, no Ray), so tests check tree shapes directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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


@dataclass(frozen=True)
class Capacity:
    """What the planner knows of one node's bandwidth, in bytes/s (None: not known, or uncapped)."""

    egress: float | None = None
    ingress: float | None = None
    achieved: float | None = None  # the receive rate it reached in recent casts


def known(caps: Capacity) -> bool:
    return bool(caps.egress) and bool(caps.ingress)


# A node whose achieved rate is under this fraction of the best known one is planned as slow.
SLOW_NODE = 0.5


def order_by_achieved(hops: list[Hop], caps: dict[int, Capacity]) -> list[Hop]:
    """The nodes known to be slow last (slowest last), so they end up at the leaves.

    Slow means under half the best achieved rate among the hops; the others, and nodes never
    measured, keep the listed order. Sorting them by rate would reorder equal nodes by the
    noise of their last casts (15.35 against 15.36 MiB/s), putting whichever node happened to
    be a hair faster last time ahead of the rest, even the one that has just become slow.
    """
    rates = {hop.target: caps.get(hop.target, Capacity()).achieved or 0.0 for hop in hops}
    best = max(rates.values(), default=0.0)

    def slow(hop: Hop) -> bool:
        return 0 < rates[hop.target] < SLOW_NODE * best

    return [hop for hop in hops if not slow(hop)] + sorted(
        (hop for hop in hops if slow(hop)), key=lambda hop: -rates[hop.target]
    )


def plan_capacity(
    source: str, source_caps: Capacity, hops: list[Hop], caps: dict[int, Capacity], fan_out: int = DEFAULT_FAN_OUT
) -> tuple[tuple[Hop, ...], dict[str, Any]]:
    """Plan a tree from each node's caps: fast relays near the source, slow nodes at the leaves.

    Every node has an egress budget. Each target, relay-capable ones first (highest egress,
    then ingress), is attached to the earliest placed node whose remaining budget covers
    what it can take in (its ingress, at most the source's rate), so a relay's fan-out is
    its egress over its children's ingress, and with equal caps the tree is a chain: the
    source sends one copy. A target whose egress is below the stream rate is placed after
    every full-rate node, so it relays to no one who could go faster elsewhere. Without
    caps for every node it falls back to `plan_tree`, slowest achieved rates last.
    """
    if not known(source_caps) or not all(known(caps.get(h.target, Capacity())) for h in hops):
        return plan_tree(source, order_by_achieved(hops, caps), fan_out)
    rate = float(source_caps.egress or 0)

    def demand(hop: Hop) -> float:
        return min(float(caps[hop.target].ingress or 0), rate)

    def relay_worth(hop: Hop) -> tuple[float, float]:
        return (min(float(caps[hop.target].egress or 0), rate), demand(hop))

    ordered = sorted(hops, key=relay_worth, reverse=True)
    budget: dict[int, float] = {0: rate}  # 0 is the source, others by target id
    placed: list[int] = [0]
    parent_of: dict[int, int] = {}
    for hop in ordered:
        need = demand(hop) * 0.99  # a child that fills its parent's budget exactly still fits
        feeder = next((p for p in placed if budget[p] >= need), None)
        if feeder is None:  # everyone is oversubscribed: the one with the most left
            feeder = max(placed, key=lambda p: budget[p])
        budget[feeder] -= demand(hop)
        parent_of[hop.target] = feeder
        placed.append(hop.target)
        budget[hop.target] = float(caps[hop.target].egress or 0)
    return _build(source, ordered, parent_of)


def _build(source: str, ordered: list[Hop], parent_of: dict[int, int]) -> tuple[tuple[Hop, ...], dict[str, Any]]:
    """Immutable hops from a parent map (0: the source), with the record people see."""
    kids: dict[int, list[int]] = {}
    for hop in ordered:
        kids.setdefault(parent_of[hop.target], []).append(hop.target)
    by_id = {hop.target: hop for hop in ordered}

    def make(target: int) -> Hop:
        return replace(by_id[target], children=tuple(make(k) for k in kids.get(target, [])))

    children = tuple(make(k) for k in kids.get(0, []))
    edges = [[source if parent_of[h.target] == 0 else by_id[parent_of[h.target]].node, h.node] for h in ordered]
    fan_out = max((len(v) for v in kids.values()), default=0)
    return children, {"root": source, "fan_out": fan_out, "edges": edges, "planner": "capacity"}


def depth(children: tuple[Hop, ...]) -> int:
    return max((1 + depth(hop.children) for hop in children), default=0)


MIN_CHUNK = 256 * 1024


def choose_chunk_size(rate: float | None, hops: int, default: int) -> int:
    """A chunk small enough that relaying whole verified chunks adds little to a deep tree.

    A relay forwards a chunk once it has all of it, so each hop adds one chunk's time at the
    stream's `rate`: `hops` of them down a chain. Keep their sum near 0.1 s, as a power of two
    between 256 KiB and the default. Uncapped casts (and unicast) keep the default: there the
    per-chunk costs, not the pipeline's fill, are what limit the rate.
    """
    if not rate or hops <= 1:
        return default
    want = int(rate * 0.1 / hops)
    chunk = MIN_CHUNK
    while chunk * 2 <= min(want, default):
        chunk *= 2
    return min(chunk, default)
