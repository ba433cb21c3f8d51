"""Casts: claim queued ones, start them on the source actor, follow their rounds and write results."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from django.conf import settings

from bridge.capacity import chunk_for, plan_cast, record_bounds
from bridge.config import RunConfig, origin_policy
from bridge.moves import MoveSteps, merge_moves
from bridge.running import Running
from castray_site.lib import short_error
from dataplane.contract import CastPlan, CastResult, Hop
from nodes.models import Node
from transfers import services
from transfers.models import Target, Transfer
from transfers.services import transfer_add_round

log = logging.getLogger("castray.worker")


class CastSteps(MoveSteps):
    """Each step takes the casts one stage further and returns what it did."""

    worker_id: str
    config: RunConfig
    node_prefix: str
    actors: dict[int, Any]
    actor_names: dict[int, str]
    running: dict[int, Running]  # transfer id -> its cast
    actor_for: Callable[[Node], Any]  # nodes.py
    actor_failed: Callable[[Node, BaseException], None]  # nodes.py
    forget: Callable[[int, set[int]], None]  # aborts.py

    def recover(self) -> list[int]:
        return services.transfer_recover_expired(worker_id=self.worker_id)

    def claim(self) -> list[int]:
        room = self.config.max_active_transfers - len(self.running)
        if room <= 0:
            return []
        # One indexed look-up first: a worker ticks many times a second while casts run, on
        # the same cores as the actors, and nothing queued is the common case.
        queued = Transfer.objects.queued()
        if self.node_prefix:
            queued = queued.filter(source__name__startswith=self.node_prefix)
        if not queued.exists():
            return []
        claimed = services.transfer_claim(
            worker_id=self.worker_id,
            lease_seconds=settings.CASTRAY_LEASE_SECONDS,
            limit=room,
            exclude_nodes=services.busy_nodes(default_limit=self.config.node_concurrency),
            source_prefix=self.node_prefix,
        )
        for transfer in claimed:
            self.begin(transfer)
        return [t.pk for t in claimed]

    def begin(self, transfer: Transfer) -> bool:
        """Ask the source for the file's size and SHA-256 (computed once, then cached); return whether asked."""
        source = transfer.source
        if not source.enabled or source.status != Node.Status.ONLINE:
            reason = f"source node {source.name} is {'disabled' if not source.enabled else source.status}"
            services.transfer_finish(transfer=transfer, results={}, error=reason)
            return False
        chunk = chunk_for(transfer, self.config)
        actor = self.actor_for(source)
        if transfer.origin:
            ref = actor.fetch_origin.remote(transfer.origin, transfer.file_name, chunk, origin_policy())
        else:
            ref = actor.file_info.remote(transfer.file_name, chunk)
        self.running[transfer.pk] = Running(transfer.pk, "info", ref)
        return True

    def live_hops(self, run: Running, transfer: Transfer) -> list[Hop]:
        """The targets still to serve whose node can take part; the others fail with the reason."""
        hops: list[Hop] = []
        for target in transfer.targets.select_related("node").exclude(status__in=Target.FINAL):
            node = target.node
            if not node.enabled:
                reason = f"target node {node.name} is disabled"
                services.targets_fail(transfer=transfer, targets=[target], reason=reason)
            elif node.status != Node.Status.ONLINE or not node.port or node.pk not in self.actors:
                detail = f": {node.status_detail}" if node.status_detail else ""
                reason = f"target node {node.name} is {node.status}{detail}"
                services.targets_fail(transfer=transfer, targets=[target], reason=reason)
            else:
                hops.append(Hop(target.pk, node.name, node.address, node.port))
                run.target_nodes[target.pk] = node.pk
                run.pids.setdefault(target.pk, node.actor_pid)
        return hops

    def launch(self, run: Running, transfer: Transfer) -> int:
        """Plan a tree over the live targets still to serve and start a round on the source.

        Returns how many targets the round serves (0: nothing left, the cast is finished).
        """
        chunk = chunk_for(transfer, self.config)
        hops = self.live_hops(run, transfer)
        children, tree = plan_cast(transfer, hops, self.config)
        assert run.info is not None  # launched only once the source answered file_info
        if run.rounds == 0:
            services.transfer_start(
                transfer=transfer,
                size=run.info.size,
                sha256=run.info.sha256,
                tree=tree,
                chunk_size=chunk,
                files=run.info.files if run.info.kind == "directory" else None,
                manifest=run.info.manifest,
            )
            record_bounds(transfer, run.info.size, self.config)
        else:
            transfer_add_round(transfer=transfer, tree=tree)
        services.targets_set_parents(transfer=transfer, parents=_parents(children, transfer.source_id, run))
        run.rounds += 1
        if not hops:
            self.finish(run, transfer, {})
            return 0
        plan = CastPlan(
            transfer=transfer.pk,
            name=transfer.file_name,
            dest_name=transfer.dest_name or transfer.file_name,
            chunk_size=chunk,
            sha256=run.info.sha256,
            children=children,
            mode=transfer.mode,
            actors={hop.target: self.actor_names.get(run.target_nodes[hop.target], "") for hop in hops},
            namespace=settings.CASTRAY_RAY_NAMESPACE,
            udp_rate=settings.CASTRAY_UDP_RATE,
            udp_drop_every=settings.CASTRAY_UDP_DROP_EVERY,
            mirror=transfer.mirror,
        )
        run.stage = "cast"
        run.ref = self.actor_for(transfer.source).cast.remote(plan)
        return len(hops)

    def finish(self, run: Running, transfer: Transfer, results: dict[int, dict[str, Any]], error: str = "") -> None:
        self.running.pop(run.transfer_id, None)
        services.transfer_finish(
            transfer=transfer,
            results=results,
            error=error,
            source_bytes=run.source_bytes,
            relay_bytes=run.relay_bytes,
        )
        self.forget_on_actors(run, transfer)

    def forget_on_actors(self, run: Running, transfer: Transfer) -> None:
        self.forget(run.transfer_id, set(run.target_nodes.values()) | {transfer.source_id})

    def add_round_totals(self, run: Running, transfer: Transfer, result: CastResult) -> dict[int, dict[str, Any]]:
        """Add a returned round's bytes to the run's totals; return its results as plain rows."""
        received = sum(row.bytes_received for row in result.results.values())
        source_bytes = result.source_bytes - run.source_bytes
        run.source_bytes += source_bytes
        run.relay_bytes += max(0, received - source_bytes)
        self.report_progress(run, transfer, force=True)
        # The services keep the results as plain rows (they also take them from tests and recovery).
        return {target: asdict(row) for target, row in result.results.items()}

    def round_done(self, run: Running, transfer: Transfer, result: CastResult) -> list[int]:
        """Record a finished round; re-parent live targets that failed with their relay.

        Returns the targets served again in a new round (none: the cast is finished).
        """
        if run.moves:
            result = replace(result, results=merge_moves(run, result.results))
            run.moves.clear()
        results = self.add_round_totals(run, transfer, result)
        if not result.ok:
            self.finish(run, transfer, results, error=result.error)
            return []
        failed = {tid: r for tid, r in results.items() if r.get("status") == Target.Status.FAILED}
        services.targets_record(transfer=transfer, results={k: v for k, v in results.items() if k not in failed})
        # A target the worker already recorded failed (its node went offline) was given up on
        # and told to abort (aborts.py): it is settled by that answer, never served again here.
        given_up = set(
            transfer.targets.filter(pk__in=list(failed), status__in=Target.FINAL).values_list("pk", flat=True)
        )
        live = {tid: r for tid, r in failed.items() if tid not in given_up}
        retry = self.alive_targets(run, live) if run.rounds <= settings.CASTRAY_REPAIR_ROUNDS else []
        if not retry:
            self.finish(run, transfer, failed)
            return []
        # Targets whose own node still answers failed because of their upstream: serve them
        # again from the source; they resume from the chunks they hold.
        services.targets_record(transfer=transfer, results={k: v for k, v in failed.items() if k not in retry})
        reasons = "; ".join(sorted({str(failed[t].get("error")) for t in retry}))[:500]
        services.targets_retry(transfer=transfer, target_ids=retry, reason=f"re-parented after: {reasons}")
        log.info("cast %s: re-parenting %d target(s) after a failed relay", transfer.pk, len(retry))
        for tid in list(run.target_nodes):
            if tid not in retry:
                run.target_nodes.pop(tid)
        self.launch(run, Transfer.objects.select_related("source").get(pk=transfer.pk))
        return retry

    def alive_targets(self, run: Running, failed: dict[int, dict[str, Any]]) -> list[int]:
        """The failed targets whose actor still answers, and is the same process that held the target."""
        import ray

        refs = {}
        for tid in failed:
            handle = self.actors.get(run.target_nodes.get(tid, -1))
            if handle is not None:
                refs[tid] = handle.ping.remote()
        if not refs:
            return []
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=3)
        alive = []
        for tid, ref in refs.items():
            if ref in ready:
                try:
                    pid = ray.get(ref).pid
                except Exception as exc:  # noqa: BLE001 - a dead actor is simply not alive
                    node = Node.objects.filter(pk=run.target_nodes.get(tid, -1)).first()
                    if node is not None:
                        self.actor_failed(node, exc)
                    continue
                # A restarted actor is a new process: the one that held this target died.
                if pid == run.pids.get(tid):
                    alive.append(tid)
        return alive

    def cancel_on_actors(self, run: Running, transfer: Transfer) -> int:
        """Tell every actor in the cast to stop it; return how many were told."""
        told = 0
        for node_id in set(run.target_nodes.values()) | {transfer.source_id}:
            handle = self.actors.get(node_id)
            if handle is not None:
                handle.cancel.remote(run.transfer_id)
                told += 1
        return told

    def poll(self) -> list[int]:
        """Advance every running cast; return the ids that finished."""
        import ray
        from ray.exceptions import RayError

        finished = []
        # One query a tick for all of them: the worker ticks many times a second while casts run.
        transfers = Transfer.objects.select_related("source").in_bulk(list(self.running))
        for run in list(self.running.values()):
            transfer = transfers.get(run.transfer_id)
            if transfer is not None and transfer.status == Transfer.Status.CANCELLED:
                if self.wind_down(run, transfer):
                    finished.append(run.transfer_id)
                continue
            if transfer is None or transfer.status != Transfer.Status.RUNNING or transfer.lease_owner != self.worker_id:
                # Deleted, or recovered by another worker after our lease ran out.
                del self.running[run.transfer_id]
                finished.append(run.transfer_id)
                continue
            moved_all = self.advance_moves(run, transfer) if run.moves else True
            ready, _ = ray.wait([run.ref], timeout=0)
            if not ready or not moved_all:  # a round ends once its moved targets' feeds answer too
                self.report_progress(run, transfer)
                continue
            try:
                result = ray.get(run.ref)
            except RayError as exc:
                self.finish(run, transfer, {}, error=self.failure(run, transfer, exc))
                finished.append(run.transfer_id)
                continue
            if run.stage == "info":
                run.info = result
                self.launch(run, transfer)
            else:
                self.round_done(run, transfer, result)
            if run.transfer_id not in self.running:
                finished.append(run.transfer_id)
        return finished

    def wind_down(self, run: Running, transfer: Transfer) -> bool:
        """A cancelled cast: stop its actors, then record what it moved. Returns True once done.

        The cancel ends the cast in the database at once; its round still returns, with each
        target's bytes, once the actors have stopped. Those bytes are recorded rather than lost
        (bounded by the I/O timeout, after which what progress reported is what stays).
        """
        import ray

        if run.cancelled_at is None:
            run.cancelled_at = time.monotonic()
            self.cancel_on_actors(run, transfer)
        ready: list[Any] = []
        if run.stage == "cast":
            ready, _ = ray.wait([run.ref], timeout=0)
            if not ready and time.monotonic() - run.cancelled_at < settings.CASTRAY_IO_TIMEOUT:
                self.report_progress(run, transfer)
                return False
        results: dict[int, dict[str, Any]] = {}
        if ready:
            try:
                results = self.add_round_totals(run, transfer, ray.get(run.ref))
            except Exception:  # noqa: BLE001 - the source died meanwhile: keep what progress said
                pass
        if run.stage == "cast":
            services.transfer_record_cancelled(
                transfer=transfer, source_bytes=run.source_bytes, relay_bytes=run.relay_bytes, results=results
            )
        self.running.pop(run.transfer_id, None)
        self.forget_on_actors(run, transfer)
        return True

    def failure(self, run: Running, transfer: Transfer, exc: BaseException) -> str:
        """Why a cast failed when its source's call raised, in the operator's words."""
        cause = getattr(exc, "cause", None)
        if run.stage == "info" and transfer.origin and isinstance(cause, (OSError, ValueError)):
            return f"cannot fetch {transfer.origin} on {transfer.source.name}: {cause}"
        if run.stage == "info" and isinstance(cause, (OSError, ValueError)):
            return f"cannot cast {transfer.file_name} from {transfer.source.name}: {cause}"
        return f"source node {transfer.source.name} failed: {short_error(exc)}"

    def report_progress(self, run: Running, transfer: Transfer, *, force: bool = False) -> bool:
        """Collect receivers' progress sent last time and ask again, a few times a second.

        Returns whether it asked the receivers again.
        """
        import ray
        from ray.exceptions import RayError

        if run.stage != "cast":
            return False
        if run.progress_refs:
            ready, _ = ray.wait(run.progress_refs, num_returns=len(run.progress_refs), timeout=0 if not force else 1)
            rows: dict[int, dict[str, Any]] = {}
            for ref in ready:
                try:
                    rows.update({target: asdict(row) for target, row in ray.get(ref).items()})
                except RayError:
                    continue
            if ready:
                run.progress_refs = [r for r in run.progress_refs if r not in ready]
                services.target_progress(transfer=transfer, rows=rows)
                self.rebalance(run, transfer)
        now = time.monotonic()
        if force or run.progress_refs or now - run.last_progress < settings.CASTRAY_PROGRESS_INTERVAL:
            return False
        run.last_progress = now
        for node_id in set(run.target_nodes.values()):
            handle = self.actors.get(node_id)
            if handle is not None:
                run.progress_refs.append(handle.progress_of.remote(run.transfer_id))
        return True

    def renew(self) -> int:
        return services.transfer_renew_leases(
            worker_id=self.worker_id, transfer_ids=list(self.running), lease_seconds=settings.CASTRAY_LEASE_SECONDS
        )


def _parents(children: tuple[Hop, ...], source_id: int, run: Running) -> dict[int, int | None]:
    """Target id -> the node id it receives from, read off the plan."""
    out: dict[int, int | None] = {hop.target: source_id for hop in children}
    for root in children:
        for hop in root.walk():
            out.update({child.target: run.target_nodes[hop.target] for child in hop.children})
    return out
