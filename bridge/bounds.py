"""Lower bounds on a cast's time from its nodes' caps (pure: no Django, no Ray).

Broadcasting S bytes from a source with upload u_s to N targets with download d_i and
upload u_i takes at least max(S/u_s, S/min d_i, N*S/(u_s + sum u_i)) (Kumar and Ross);
one target cannot finish before S / min(d_i, u_s). A cast is measured against these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    cast: float | None  # seconds; None when a cap is unknown (uncapped)
    targets: dict[int, float | None]  # target id -> seconds


def cast_bounds(
    size: int, source_egress: float | None, targets: dict[int, tuple[float | None, float | None]]
) -> Bounds:
    """`targets`: id -> (egress, ingress) in bytes/s; None is uncapped."""
    per = {
        tid: size / min(ingress, source_egress) if ingress and source_egress else None
        for tid, (_egress, ingress) in targets.items()
    }
    ups = [egress for egress, _ in targets.values()]
    downs = [ingress for _, ingress in targets.values()]
    if not targets or not source_egress or not all(ups) or not all(downs):
        return Bounds(None, per)
    n = len(targets)
    total_up = source_egress + sum(float(u or 0) for u in ups)
    cast = max(size / source_egress, size / min(float(d or 0) for d in downs), n * size / total_up)
    return Bounds(cast, per)
