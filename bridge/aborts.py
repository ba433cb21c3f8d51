"""Targets the worker gave up on: tell their receivers to stop, and settle what they answer.

When the worker records a target failed while its receiver may still be working (its node
went offline: a raylet that stopped answering, a link that went down), the receiver could
otherwise finish later and leave a complete file on a disk whose record says nothing came.
So the worker calls `CastNode.abort(transfer, target)` on that node's actor. The answer may
take as long as the partition does (Ray delivers the call when the host is reachable again),
so it is kept here and read each tick. It says how many bytes arrived in that attempt, and
whether the file had already been verified and renamed, in which case the target is
reconciled to completed (`transfers.services.target_settle_abort`).

Until a cast's aborts are answered, its actors are not told to forget it: `forget` drops the
receivers' progress rows, and called first (through the node's new handle after it came back;
calls through two handles are not ordered) it would leave the abort nothing to answer with, so
bytes that reached the disk would go uncounted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from dataplane.contract import PartOf
from transfers.services import target_settle_abort

log = logging.getLogger("castray.worker")

# How long to wait for an abort's answer: a host away longer is dead to Ray by then, and
# the call fails (nothing can have been renamed after the receiver's process died).
ANSWER_WITHIN = 900.0


@dataclass(frozen=True)
class GiveUp:
    """One target the worker gave up on: its cast, and the part its receiver was writing."""

    transfer: int
    part: PartOf | None = None  # None: no chunk record (a directory, udp, object store) or not known yet


class AbortSteps:
    # abort call -> (the actor, target id, what was given up, give up waiting at)
    aborts: dict[Any, tuple[Any, int, GiveUp, float]]
    # target id -> (the actor, what was given up, give up at, ask again at): calls to ask again
    abort_later: dict[int, tuple[Any, GiveUp, float, float]]
    # transfer id -> nodes to tell to forget it, once no abort of it is waiting
    forget_later: dict[int, set[int]]
    actors: dict[int, Any]  # nodes.py

    def forget(self, transfer_id: int, node_ids: set[int]) -> None:
        """Tell the nodes' actors that the cast is over, once none of its aborts is waiting."""
        if self._aborting(transfer_id):
            self.forget_later.setdefault(transfer_id, set()).update(node_ids)
            return
        for node_id in node_ids:
            handle = self.actors.get(node_id)
            if handle is not None:
                handle.forget.remote(transfer_id)

    def _aborting(self, transfer_id: int) -> bool:
        waiting = [e[2].transfer for e in self.aborts.values()] + [e[1].transfer for e in self.abort_later.values()]
        return transfer_id in waiting

    def forget_settled(self) -> None:
        for transfer_id in [t for t in self.forget_later if not self._aborting(t)]:
            self.forget(transfer_id, self.forget_later.pop(transfer_id))

    def give_up(self, handle: Any, targets: dict[int, GiveUp]) -> int:
        """Tell the actor `handle` to stop receiving these targets (by target id)."""
        deadline = time.monotonic() + ANSWER_WITHIN
        for target_id, given_up in targets.items():
            self._ask(handle, target_id, given_up, deadline)
        return len(targets)

    def _ask(self, handle: Any, target_id: int, given_up: GiveUp, deadline: float) -> None:
        try:
            ref = handle.abort.remote(given_up.transfer, target_id, given_up.part)
        except Exception as exc:  # noqa: BLE001 - an actor that cannot be called cannot rename either
            log.info("cannot tell the receiver of target %s to stop: %s", target_id, exc)
            return
        self.aborts[ref] = (handle, target_id, given_up, deadline)

    def settle_aborts(self) -> list[int]:
        """Record the answers that came in; return the targets settled."""
        now = time.monotonic()
        for target_id, (handle, given_up, deadline, at) in list(self.abort_later.items()):
            if at <= now:
                del self.abort_later[target_id]
                self._ask(handle, target_id, given_up, deadline)
        if not self.aborts:
            self.forget_settled()
            return []
        import ray
        from ray.exceptions import ActorUnavailableError

        ready, _ = ray.wait(list(self.aborts), num_returns=len(self.aborts), timeout=0)
        settled = []
        for ref in list(self.aborts):
            handle, target_id, given_up, deadline = self.aborts[ref]
            if ref not in ready:
                if now > deadline:
                    del self.aborts[ref]
                continue
            del self.aborts[ref]
            try:
                row = asdict(ray.get(ref))
            except ActorUnavailableError:
                # Alive but not reachable yet (a partition resets Ray's connection to it): ask
                # again, abort is idempotent. Measured: the first call failed this way.
                if now < deadline:
                    self.abort_later[target_id] = (handle, given_up, deadline, now + 1.0)
                continue
            except Exception as exc:  # noqa: BLE001 - the actor died: nothing more will land
                log.info("target %s: its receiver is gone (%s)", target_id, exc)
                continue
            target = target_settle_abort(target_id=target_id, row=row)
            if target is not None:
                settled.append(target_id)
                log.info("target %s settled after the worker gave up: %s", target_id, target.status)
        self.forget_settled()
        return settled
