"""The `hetero` benchmark: one slow node among fast ones must not slow the others.

N targets and the source all capped at C, one target at C/4 (both ways, or egress only),
placed early or last in the order the cast lists its targets. Each target's time is set
against its own lower bound, the cast's against the Kumar-Ross bound; the reference is the
same cast in the same run with every node at C.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.bench.casts import BenchCluster, sha256_file
from bridge.bounds import cast_bounds
from dataplane.contract import Caps
from nodes.models import Node
from transfers.models import Transfer

# case -> (position of the slow target in the order given, its egress and ingress as a fraction of C)
CASES: dict[str, tuple[int, float, float] | None] = {
    "equal": None,
    "slow-both-early": (0, 0.25, 0.25),
    "slow-egress": (0, 0.25, 1.0),
    "slow-at-end": (-1, 0.25, 0.25),
}


def set_caps(cluster: BenchCluster, node: Node, egress: int, ingress: int) -> None:
    Node.objects.filter(pk=node.pk).update(egress_cap=egress, ingress_cap=ingress)
    cluster.call(node, "ping", Caps(egress, ingress))


def bench_hetero(*, size: int, targets: int, cap: int) -> list[dict[str, Any]]:
    cluster = BenchCluster()
    results = []
    try:
        cluster.connect()
        members = cluster.make_nodes(targets + 1, cap=cap)
        source, name = members[0], "hetero.bin"
        info = cluster.generate(source, name, size)
        for case, slow in CASES.items():
            order = members[1:]
            for node in order:
                set_caps(cluster, node, cap, cap)
            slow_node = None
            if slow is not None:
                slow_node = order[slow[0]]
                set_caps(cluster, slow_node, int(cap * slow[1]), int(cap * slow[2]))
            transfer, wall = cluster.cast(source=source, file_name=name, targets=order)
            results.append(measure(cluster, case, transfer, wall, info.sha256, slow_node, cap))
            cluster.remove(order, name)
    finally:
        cluster.close()
    return results


def measure(
    cluster: BenchCluster, case: str, transfer: Transfer, wall: float, sha256: str, slow: Node | None, cap: int
) -> dict[str, Any]:
    rows = list(transfer.targets.select_related("node"))
    size = int(transfer.size or 0)
    caps = {t.pk: (float(t.node.egress_cap or 0), float(t.node.ingress_cap or 0)) for t in rows}
    bounds = cast_bounds(size, float(cap), caps)
    assert transfer.started_at is not None
    times = {t.pk: (t.finished_at - transfer.started_at).total_seconds() for t in rows if t.finished_at}
    ratios = {t.node.name: round(times[t.pk] / (bounds.targets[t.pk] or 1), 3) for t in rows if t.pk in times}
    fast = [ratios[t.node.name] for t in rows if slow is None or t.node_id != slow.pk]
    cast_seconds = max(times.values(), default=0.0)
    ok = transfer.status == Transfer.Status.COMPLETED and all(
        sha256_file(Path(t.node.storage_root) / transfer.file_name) == sha256 for t in rows
    )
    return {
        "bench": "hetero",
        "case": case,
        "size_bytes": size,
        "seconds": round(cast_seconds, 3),
        "wall_seconds": round(wall, 3),
        "ratio": round(cast_seconds / (bounds.cast or 1), 3),
        "worst_fast_ratio": max(fast, default=0.0),
        "slow_ratio": ratios.get(slow.name) if slow else None,
        "bound_seconds": round(bounds.cast or 0, 3),
        "target_ratios": ratios,
        "source_bytes_ratio": round(transfer.source_bytes_sent / size, 3) if size else None,
        "chunk_size": transfer.chunk_size,
        "edges": (transfer.tree or {}).get("edges"),
        "peak_rss_mib": cluster.peak_rss(cluster.nodes),
        "ok": ok,
        "cap_mib_s": cap / (1024 * 1024),
    }
