"""Moving a lagging target to a better feeder in the middle of a cast round.

A leaf target receiving at under half the rate it could take (its ingress, at most the
source's egress; with unknown caps, its parent's rate) and under half its parent's is ended on its own node, keeping
its chunks, and fed the rest by a node that already holds the whole file (a finished
target other than its parent, else the source). The round is reported only once every
feed has answered.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from bridge.capacity import capacity_of
from bridge.config import RunConfig
from bridge.running import Running
from dataplane.contract import Hop, Results, TargetResult
from nodes.models import Node
from transfers.models import Target, Transfer
from transfers.services.plan import target_moved

log = logging.getLogger("castray.worker")

SLOW = 0.5  # moved below this fraction of the rate it could take
SETTLE_SECONDS = 2.0  # rates measured over less than this are not trusted


@dataclass
class Move:
    target: int
    feeder: Node
    ref: Any  # move() on the target's actor, then feed() on the feeder's
    stage: str = "ending"
    old_bytes: int = 0
    result: TargetResult | None = None


class MoveSteps:
    config: RunConfig
    actors: dict[int, Any]

    def rebalance(self, run: Running, transfer: Transfer) -> list[int]:
        """Start moving the targets that lag; return their ids."""
        if transfer.mode != Transfer.Mode.TCP or not transfer.size:
            return []
        targets = list(transfer.targets.select_related("node", "parent"))
        feeding = {t.parent_id for t in targets if t.status not in Target.FINAL}
        done = [t for t in targets if t.status == Target.Status.COMPLETED]
        moved = []
        for target in targets:
            if target.status != Target.Status.RECEIVING or target.pk in run.moves:
                continue
            if target.node_id in feeding or target.parent_id in (None, transfer.source_id):
                continue  # only leaves fed by a relay: moving a relay would orphan its subtree
            if not self.lags(transfer, target, targets):
                continue
            holders = [t.node for t in done if t.node_id != target.parent_id and t.node_id in self.actors]
            feeder = holders[0] if holders else transfer.source
            handle = self.actors.get(target.node_id)
            if handle is None or feeder.pk not in self.actors:
                continue
            run.moves[target.pk] = Move(target.pk, feeder, handle.move.remote(transfer.pk, target.pk))
            log.info("cast %s: moving target %s from %s to %s", transfer.pk, target.pk, target.parent, feeder.name)
            moved.append(target.pk)
        return moved

    def lags(self, transfer: Transfer, target: Target, targets: list[Target]) -> bool:
        if not target.started_at or not target.rate or target.bytes_done >= 0.9 * (transfer.size or 0):
            return False
        if time.time() - target.started_at.timestamp() < SETTLE_SECONDS:
            return False
        parent = next((t for t in targets if t.node_id == target.parent_id), None)
        if parent is None or not parent.rate or target.rate >= SLOW * parent.rate:
            # Its parent goes as slowly (a loaded host, a slow source): another feeder is no
            # better, and moving it would only cost the source copies.
            return False
        own, source = capacity_of(target.node, self.config), capacity_of(transfer.source, self.config)
        could = min(own.ingress, source.egress) if own.ingress and source.egress else parent.rate
        return target.rate < SLOW * could

    def advance_moves(self, run: Running, transfer: Transfer) -> bool:
        """Take each move a stage further; return whether all have answered."""
        import ray
        from ray.exceptions import RayError

        for move in run.moves.values():
            if move.result is not None:
                continue
            ready, _ = ray.wait([move.ref], timeout=0)
            if not ready:
                continue
            try:
                answer = ray.get(move.ref)
            except RayError as exc:
                move.result = TargetResult(status="failed", error=f"moving to {move.feeder.name} failed: {exc}")
                continue
            if move.stage == "ending":
                move.old_bytes = int(answer.get("bytes_received") or 0)
                move.stage = "feeding"
                node = transfer.targets.select_related("node").get(pk=move.target).node
                hop = Hop(move.target, node.name, node.address, node.port or 0)
                name = transfer.file_name if move.feeder.pk == transfer.source_id else transfer.dest_name
                move.ref = self.actors[move.feeder.pk].feed.remote(
                    transfer.pk,
                    name or transfer.file_name,
                    transfer.chunk_size,
                    transfer.dest_name or transfer.file_name,
                    hop,
                )
                target_moved(
                    transfer=transfer, target_id=move.target, feeder=move.feeder, bytes_received=move.old_bytes
                )
            else:
                result = (answer or {}).get(move.target) or TargetResult(
                    status="failed", error="the feeder sent no result"
                )
                move.result = result
        return all(move.result is not None for move in run.moves.values())


def merge_moves(run: Running, results: Results) -> Results:
    """The round's results with each moved target's taken from its new feeder."""
    merged = dict(results)
    merged.update({move.target: move.result for move in run.moves.values() if move.result is not None})
    return merged
