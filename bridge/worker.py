"""The bridge worker: the only code that calls Ray.

It connects to Ray (retrying with backoff, recording a degraded cluster meanwhile),
keeps one `CastNode` actor per enabled node, claims queued casts, starts them on the
source actor, polls receivers for progress and writes the results. Each step is a small
method that returns what it did, so tests can drive it one step at a time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from bridge import worker_steps
from bridge.connection import RayUnavailable, connect, snapshot
from bridge.planner import plan_tree
from clusters.models import Cluster
from clusters.services import cluster_active, cluster_record
from dataplane.contract import Caps, CastPlan, CastResult, FileInfo, Hop, InboxMessage, MessageBatch
from nodes.models import Node
from nodes.services import node_mark, node_record_heartbeat
from transfers import services
from transfers.models import Delivery, Message, Target, Transfer

log = logging.getLogger("castray.worker")
# Messages handed to actors per worker step: large enough for thousands per second.
MESSAGE_BATCH = 5000


def cluster_secret() -> bytes:
    """The key that signs offers between actors; generated once, kept in the data dir."""
    configured = os.environ.get("CASTRAY_CLUSTER_SECRET", "")
    if configured:
        return configured.encode()
    path = settings.DATA_DIR / "cluster_secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip().encode()


@dataclass
class Running:
    """A cast this worker has started and is watching."""

    transfer_id: int
    stage: str  # "info": asking the source for size and SHA-256; "cast": bytes moving
    ref: Any
    target_nodes: dict[int, int] = field(default_factory=dict)  # target id -> node id
    progress_refs: list[Any] = field(default_factory=list)
    last_progress: float = 0.0
    rounds: int = 0
    source_bytes: int = 0
    relay_bytes: int = 0
    info: FileInfo | None = None
    pids: dict[int, int | None] = field(default_factory=dict)  # target id -> its actor's pid at launch


class Worker:
    def __init__(self, *, worker_id: str = "", ray_address: str | None = None, node_prefix: str = "") -> None:
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.ray_address = settings.RAY_ADDRESS if ray_address is None else ray_address
        self.secret = cluster_secret()
        self.connected = False
        self.backoff = 1.0
        self.next_connect = 0.0
        # Benchmarks run a worker that only touches their own nodes (names with this prefix).
        self.node_prefix = node_prefix
        self.actors: dict[int, Any] = {}
        self.actor_names: dict[int, str] = {}
        self.running: dict[int, Running] = {}
        self.message_refs: list[tuple[list[Any], str]] = []  # (actor calls, batch lease token)
        self.pending_pings: dict[int, Any] = {}
        self.heard_from: set[int] = set()  # nodes whose actor answered this worker
        self.connected_at = 0.0
        self.last_nodes = 0.0
        self.last_lease = 0.0
        self.last_conn_check = 0.0
        self.last_recover = 0.0
        self.stop_event = threading.Event()

    # --- Ray connection ------------------------------------------------------------------
    def ensure_connected(self) -> bool:
        if self.connected:
            return True
        if time.monotonic() < self.next_connect:
            return False
        cluster = cluster_active()
        address = cluster.address or self.ray_address
        if cluster.status != Cluster.Status.DEGRADED:
            cluster_record(cluster=cluster, status=Cluster.Status.CONNECTING, worker_id=self.worker_id)
        try:
            info = connect(address)
        except RayUnavailable as exc:
            # Keep serving: record why, and try again later with a growing pause.
            cluster_record(cluster=cluster, status=Cluster.Status.DEGRADED, error=str(exc), worker_id=self.worker_id)
            log.warning("Ray unavailable, retrying in %.0fs: %s", self.backoff, exc)
            self.next_connect = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, 30.0)
            return False
        cluster_record(cluster=cluster, status=Cluster.Status.CONNECTED, info=info, worker_id=self.worker_id)
        self.connected = True
        self.connected_at = time.monotonic()
        self.heard_from.clear()
        self.backoff = 1.0
        return True

    def nodes(self) -> Any:
        return Node.objects.filter(name__startswith=self.node_prefix) if self.node_prefix else Node.objects.all()

    def ready_to_claim(self) -> bool:
        """Start casts only once every enabled node answered (or had its time to)."""
        if time.monotonic() - self.connected_at > settings.CASTRAY_OFFLINE_AFTER_SECONDS:
            return True
        enabled = set(self.nodes().filter(enabled=True).values_list("pk", flat=True))
        return enabled <= self.heard_from

    # --- nodes ---------------------------------------------------------------------------
    def actor_for(self, node: Node) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from dataplane.actor import CastNode

        handle = self.actors.get(node.pk)
        if handle is not None:
            return handle
        options: dict[str, Any] = {
            # The storage path is part of the name: a node moved to other storage gets a new actor.
            "name": f"{node.actor_name}:{hashlib.sha1(str(node.storage_root).encode()).hexdigest()[:10]}",
            "namespace": settings.CASTRAY_RAY_NAMESPACE,
            "get_if_exists": True,
            "lifetime": "detached",
            "num_cpus": 0,
            "max_concurrency": 256,
        }
        if node.ray_node_id:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node.ray_node_id, soft=False)
        self.actor_names[node.pk] = options["name"]
        handle = (
            ray.remote(CastNode)
            .options(**options)
            .remote(
                node.name,
                str(node.storage_root),
                self.secret,
                port=node.requested_port or 0,
                io_timeout=settings.CASTRAY_IO_TIMEOUT,
                inbox_size=settings.CASTRAY_INBOX_SIZE,
            )
        )
        self.actors[node.pk] = handle
        return handle

    def stop_actor(self, node_id: int) -> None:
        import ray

        handle = self.actors.pop(node_id, None)
        if handle is not None:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone is fine
                pass

    def sync_nodes(self) -> dict[str, list[str]]:
        """Start actors for enabled nodes, stop disabled ones, and read heartbeats."""
        import ray
        from ray.exceptions import RayError

        done: dict[str, list[str]] = {"online": [], "offline": [], "stopped": []}
        nodes = {n.pk: n for n in self.nodes()}
        for node_id in list(self.actors):
            node = nodes.get(node_id)
            if node is None or not node.enabled:
                self.stop_actor(node_id)
                done["stopped"].append(node.name if node else str(node_id))
        # Collect pings sent last time; send new ones. Nothing here waits on a slow actor.
        now = timezone.now()
        for node_id, ref in list(self.pending_pings.items()):
            node = nodes.get(node_id)
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                continue
            del self.pending_pings[node_id]
            if node is None or not node.enabled:
                continue
            try:
                info = ray.get(ref)
            except RayError as exc:
                self.actors.pop(node_id, None)
                node_mark(node=node, status=Node.Status.ERROR, detail=f"actor failed: {_short(exc)}")
                done["offline"].append(node.name)
                continue
            node_record_heartbeat(node=node, info=info.as_dict(), seen=now)
            self.heard_from.add(node_id)
            done["online"].append(node.name)
        for node in nodes.values():
            if not node.enabled:
                if node.status != Node.Status.OFFLINE:
                    node_mark(node=node, status=Node.Status.OFFLINE, detail="disabled")
                continue
            stale = node.last_heartbeat is None or (
                (now - node.last_heartbeat).total_seconds() > settings.CASTRAY_OFFLINE_AFTER_SECONDS
            )
            if stale and node.status == Node.Status.ONLINE:
                node_mark(node=node, status=Node.Status.OFFLINE, detail="no heartbeat from its actor")
                done["offline"].append(node.name)
            elif (
                node.status == Node.Status.STARTING
                and node.pk not in self.heard_from
                and time.monotonic() - self.connected_at > settings.CASTRAY_OFFLINE_AFTER_SECONDS
            ):
                # Casts waiting for it go ahead and fail that target with this reason.
                detail = f"its actor did not answer within {settings.CASTRAY_OFFLINE_AFTER_SECONDS:.0f}s"
                node_mark(node=node, status=Node.Status.OFFLINE, detail=detail)
                done["offline"].append(node.name)
            if node.pk in self.pending_pings or worker_steps.node_held(self, node):
                continue
            try:
                handle = self.actor_for(node)
                caps = Caps(
                    egress=node.egress_cap or settings.CASTRAY_DEFAULT_EGRESS_CAP or None,
                    ingress=node.ingress_cap or settings.CASTRAY_DEFAULT_INGRESS_CAP or None,
                )
                self.pending_pings[node.pk] = handle.ping.remote(caps)
            except Exception as exc:  # noqa: BLE001 - placement errors are reported per node
                node_mark(node=node, status=Node.Status.ERROR, detail=f"could not start actor: {_short(exc)}")
        for node in nodes.values():
            if node.enabled and node.last_heartbeat is None and node.status == Node.Status.OFFLINE:
                node_mark(node=node, status=Node.Status.STARTING, detail="starting its actor")
        return done

    # --- transfers -----------------------------------------------------------------------
    def recover(self) -> list[int]:
        return services.transfer_recover_expired(worker_id=self.worker_id)

    def claim(self) -> list[int]:
        room = settings.CASTRAY_MAX_ACTIVE_TRANSFERS - len(self.running)
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
            exclude_nodes=services.busy_nodes(default_limit=settings.CASTRAY_DEFAULT_NODE_CONCURRENCY),
            source_prefix=self.node_prefix,
        )
        for transfer in claimed:
            self.begin(transfer)
        return [t.pk for t in claimed]

    def begin(self, transfer: Transfer) -> None:
        """Ask the source for the file's size and SHA-256 (computed once, then cached)."""
        source = transfer.source
        if not source.enabled or source.status != Node.Status.ONLINE:
            reason = f"source node {source.name} is {'disabled' if not source.enabled else source.status}"
            services.transfer_finish(transfer=transfer, results={}, error=reason)
            return
        chunk = transfer.chunk_size or settings.CASTRAY_CHUNK_SIZE
        ref = self.actor_for(source).file_info.remote(transfer.file_name, chunk)
        self.running[transfer.pk] = Running(transfer.pk, "info", ref)

    def launch(self, run: Running, transfer: Transfer) -> None:
        """Plan a tree over the live targets still to serve and start a round on the source."""
        chunk = transfer.chunk_size or settings.CASTRAY_CHUNK_SIZE
        hops: list[Hop] = []
        names: dict[int, str] = {}
        for target in transfer.targets.select_related("node").exclude(status__in=Target.FINAL):
            node = target.node
            if not node.enabled:
                services.targets_fail(
                    transfer=transfer, targets=[target], reason=f"target node {node.name} is disabled"
                )
            elif node.status != Node.Status.ONLINE or not node.port or node.pk not in self.actors:
                detail = f": {node.status_detail}" if node.status_detail else ""
                services.targets_fail(
                    transfer=transfer, targets=[target], reason=f"target node {node.name} is {node.status}{detail}"
                )
            else:
                hops.append(Hop(target.pk, node.name, node.address, node.port))
                run.target_nodes[target.pk] = node.pk
                run.pids.setdefault(target.pk, node.actor_pid)
                names[target.pk] = self.actor_names.get(node.pk, "")
        fan_out = transfer.fan_out or settings.CASTRAY_DEFAULT_FAN_OUT
        children, tree = plan_tree(transfer.source.name, hops, fan_out)
        assert run.info is not None  # launched only once the source answered file_info
        if run.rounds == 0:
            services.transfer_start(
                transfer=transfer, size=run.info.size, sha256=run.info.sha256, tree=tree, chunk_size=chunk
            )
        else:
            rounds = list(transfer.tree.get("rounds", [])) + [tree]
            Transfer.objects.filter(pk=transfer.pk).update(tree={**transfer.tree, "rounds": rounds})
        services.targets_set_parents(transfer=transfer, parents=_parents(children, transfer.source_id, run))
        run.rounds += 1
        if not hops:
            self.finish(run, transfer, {})
            return
        plan = CastPlan(
            transfer=transfer.pk,
            name=transfer.file_name,
            dest_name=transfer.dest_name or transfer.file_name,
            chunk_size=chunk,
            sha256=run.info.sha256,
            children=children,
            mode=transfer.mode,
            actors=names,
            namespace=settings.CASTRAY_RAY_NAMESPACE,
            udp_rate=settings.CASTRAY_UDP_RATE,
            udp_drop_every=settings.CASTRAY_UDP_DROP_EVERY,
        )
        run.stage = "cast"
        run.ref = self.actor_for(transfer.source).cast.remote(plan)

    def finish(self, run: Running, transfer: Transfer, results: dict[int, dict[str, Any]], error: str = "") -> None:
        self.running.pop(run.transfer_id, None)
        services.transfer_finish(
            transfer=transfer,
            results=results,
            error=error,
            source_bytes=run.source_bytes,
            relay_bytes=run.relay_bytes,
        )
        for node_id in set(run.target_nodes.values()) | {transfer.source_id}:
            handle = self.actors.get(node_id)
            if handle is not None:
                handle.forget.remote(run.transfer_id)

    def round_done(self, run: Running, transfer: Transfer, result: CastResult) -> None:
        """Record a finished round; re-parent live targets that failed with their relay."""
        # The services keep the results as plain rows (they also take them from tests and recovery).
        results = {target: asdict(row) for target, row in result.results.items()}
        received = sum(row.bytes_received for row in result.results.values())
        source_bytes = result.source_bytes - run.source_bytes
        run.source_bytes += source_bytes
        run.relay_bytes += max(0, received - source_bytes)
        self.report_progress(run, transfer, force=True)
        if not result.ok:
            self.finish(run, transfer, results, error=result.error)
            return
        failed = {tid: r for tid, r in results.items() if r.get("status") == Target.Status.FAILED}
        services.targets_record(transfer=transfer, results={k: v for k, v in results.items() if k not in failed})
        retry = self.alive_targets(run, failed) if run.rounds <= settings.CASTRAY_REPAIR_ROUNDS else []
        if not retry:
            self.finish(run, transfer, failed)
            return
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

    def alive_targets(self, run: Running, failed: dict[int, dict[str, Any]]) -> list[int]:
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
                except Exception:  # noqa: BLE001 - a dead actor is simply not alive
                    continue
                # A restarted actor is a new process: the one that held this target died.
                if pid == run.pids.get(tid):
                    alive.append(tid)
        return alive

    def cancel_on_actors(self, run: Running, transfer: Transfer) -> None:
        for node_id in set(run.target_nodes.values()) | {transfer.source_id}:
            handle = self.actors.get(node_id)
            if handle is not None:
                handle.cancel.remote(run.transfer_id)

    def poll(self) -> list[int]:
        """Advance every running cast; return the ids that finished."""
        import ray
        from ray.exceptions import RayError

        finished = []
        for run in list(self.running.values()):
            transfer = Transfer.objects.select_related("source").get(pk=run.transfer_id)
            if transfer.status != Transfer.Status.RUNNING or transfer.lease_owner != self.worker_id:
                # Cancelled, or recovered by another worker after our lease ran out.
                if transfer.status == Transfer.Status.CANCELLED:
                    self.cancel_on_actors(run, transfer)
                del self.running[run.transfer_id]
                finished.append(run.transfer_id)
                continue
            ready, _ = ray.wait([run.ref], timeout=0)
            if not ready:
                self.report_progress(run, transfer)
                continue
            try:
                result = ray.get(run.ref)
            except RayError as exc:
                cause = getattr(exc, "cause", None)
                if run.stage == "info" and isinstance(cause, (OSError, ValueError)):
                    reason = f"cannot cast {transfer.file_name} from {transfer.source.name}: {cause}"
                else:
                    reason = f"source node {transfer.source.name} failed: {_short(exc)}"
                self.finish(run, transfer, {}, error=reason)
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

    # --- messages ------------------------------------------------------------------------
    def deliver_messages(self) -> int:
        """Claim queued messages and hand each sender's batch to its actor; return how many."""
        if len(self.message_refs) >= 8:
            return 0
        if not Message.objects.filter(status=Message.Status.QUEUED).exists():
            return 0
        token = services.messages_claim(
            worker_id=self.worker_id,
            lease_seconds=settings.CASTRAY_LEASE_SECONDS,
            limit=MESSAGE_BATCH,
            sender_prefix=self.node_prefix,
        )
        if not token:
            return 0
        # Plain tuples: thousands of model instances per step would cost more than the sockets.
        rows = list(
            Delivery.objects.filter(message__lease_owner=token, status=Delivery.Status.PENDING).values_list(
                "pk",
                "node_id",
                "message_id",
                "message__sender_id",
                "message__kind",
                "message__content",
                "message__created_at",
            )
        )
        nodes = Node.objects.in_bulk({row[1] for row in rows} | {row[3] for row in rows})
        plans: dict[int, dict[int, tuple[Node, list[InboxMessage]]]] = {}  # sender -> node -> its messages
        unreachable: dict[int, str] = {}
        for pk, node_id, message_id, sender_id, kind, content, created in rows:
            node, sender = nodes[node_id], nodes[sender_id]
            if not node.enabled or node.status != Node.Status.ONLINE or not node.port:
                unreachable[pk] = f"recipient {node.name} is {'disabled' if not node.enabled else node.status}"
                continue
            if sender.status != Node.Status.ONLINE or sender_id not in self.actors:
                unreachable[pk] = f"sender {sender.name} is {sender.status}"
                continue
            batch = plans.setdefault(sender_id, {}).setdefault(node_id, (node, []))
            batch[1].append(InboxMessage(pk, message_id, sender.name, kind, content, created.isoformat()))
        # In-flight deliveries are recorded when their actor calls return.
        services.deliveries_record(token=token, failures=unreachable, final=not plans)
        if plans:
            refs = [
                self.actors[sender_id].send_messages.remote(
                    [MessageBatch(n.name, n.address, n.port, tuple(messages)) for n, messages in batches.values()]
                )
                for sender_id, batches in plans.items()
            ]
            self.message_refs.append((refs, token))
        return len(rows)

    def record_messages(self) -> int:
        import ray
        from ray.exceptions import RayError

        done = 0
        for refs, token in list(self.message_refs):
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            if len(ready) < len(refs):
                continue
            self.message_refs.remove((refs, token))
            failures: dict[int, str] = {}
            for ref in refs:
                try:
                    failures.update({pk: error for pk, error in ray.get(ref).items() if error})
                except RayError as exc:
                    error = f"sender failed: {_short(exc)}"
                    pending = Delivery.objects.filter(message__lease_owner=token, status=Delivery.Status.PENDING)
                    failures.update({pk: error for pk in pending.values_list("pk", flat=True)})
            services.deliveries_record(token=token, failures=failures)
            done += 1
        return done

    def report_progress(self, run: Running, transfer: Transfer, *, force: bool = False) -> None:
        """Collect receivers' progress sent last time and ask again, a few times a second."""
        import ray
        from ray.exceptions import RayError

        if run.stage != "cast":
            return
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
        now = time.monotonic()
        if force or run.progress_refs or now - run.last_progress < settings.CASTRAY_PROGRESS_INTERVAL:
            return
        run.last_progress = now
        for node_id in set(run.target_nodes.values()):
            handle = self.actors.get(node_id)
            if handle is not None:
                run.progress_refs.append(handle.progress_of.remote(run.transfer_id))

    def renew(self) -> int:
        return services.transfer_renew_leases(
            worker_id=self.worker_id, transfer_ids=list(self.running), lease_seconds=settings.CASTRAY_LEASE_SECONDS
        )

    # --- loop ------------------------------------------------------------------------------
    def tick(self) -> dict[str, Any]:
        # A long-lived loop must drop dead or expired connections, but never the one a
        # caller's transaction (a test, a one-shot command) is still using. Once a second is
        # enough: with CONN_MAX_AGE=0 every check closes the connection and the next query
        # opens it again.
        now = time.monotonic()
        if not connection.in_atomic_block and now - self.last_conn_check >= 1.0:
            self.last_conn_check = now
            close_old_connections()
        did: dict[str, Any] = {}
        worker_steps.before_connect(self)  # run-time config, cluster switches
        if not self.ensure_connected():
            return {"connected": False}
        now = time.monotonic()
        if now - self.last_nodes >= settings.CASTRAY_HEARTBEAT_SECONDS or any(
            n.status == Node.Status.STARTING for n in self.nodes().filter(enabled=True).only("status")
        ):
            self.last_nodes = now
            did["clusters"] = worker_steps.heartbeat(self)  # Ray node health, adoption, stats, demo
            did["nodes"] = self.sync_nodes()
            self.refresh_cluster()
        if now - self.last_recover >= settings.CASTRAY_LEASE_SECONDS / 3:
            self.last_recover = now
            did["recovered"] = self.recover()
            services.messages_recover_expired(worker_id=self.worker_id)
        did["claimed"] = self.claim() if self.ready_to_claim() else []
        did["finished"] = self.poll()
        did["messages"] = self.deliver_messages() + self.record_messages()
        if now - self.last_lease >= settings.CASTRAY_LEASE_SECONDS / 3:
            self.last_lease = now
            did["renewed"] = self.renew()
        return did

    def refresh_cluster(self) -> None:
        try:
            info = snapshot()
        except Exception as exc:  # noqa: BLE001 - the GCS went away: degraded, not dead
            cluster_record(cluster=cluster_active(), status=Cluster.Status.DEGRADED, error=_short(exc))
            return
        cluster_record(cluster=cluster_active(), status=Cluster.Status.CONNECTED, info=info, worker_id=self.worker_id)

    def wait_for_work(self, timeout: float) -> None:
        """Sleep up to `timeout`, waking as soon as a cast round or a message batch finishes.

        Waiting on the actors' replies instead of ticking at a fixed fast pace gives finished
        casts at once and spends less CPU on the cores the actors are using.
        """
        if timeout <= 0:
            return
        refs = [run.ref for run in self.running.values() if run.ref is not None]
        refs += [ref for batch, _ in self.message_refs for ref in batch]
        if refs and self.connected:
            import ray

            try:
                # Only replies still to come can wake us (a batch waits for all of its own).
                _, pending = ray.wait(refs, num_returns=len(refs), timeout=0)
                if pending:
                    ray.wait(pending, num_returns=1, timeout=timeout)
                return
            except Exception:  # noqa: BLE001 - Ray went away: the next tick records it
                pass
        self.stop_event.wait(timeout)

    def run(self, *, idle_sleep: float = 0.1) -> None:
        log.info("worker %s starting", self.worker_id)
        while not self.stop_event.is_set():
            try:
                did = self.tick()
            except Exception:  # noqa: BLE001 - the loop must survive any one bad step
                log.exception("worker step failed")
                did = {}
            busy = did.get("claimed") or did.get("finished") or did.get("messages")
            if not busy:
                self.wait_for_work(idle_sleep)
        log.info("worker %s stopped", self.worker_id)

    def run_until(self, predicate: Any, *, timeout: float = 60.0) -> bool:
        """Tick until `predicate()` is true (for tests and one-shot commands)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            did = self.tick()
            if predicate():
                return True
            if not (did.get("claimed") or did.get("finished") or did.get("messages")):
                self.wait_for_work(0.1)
        return False


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _parents(children: tuple[Hop, ...], source_id: int, run: Running) -> dict[int, int | None]:
    """Target id -> the node id it receives from, read off the plan."""
    out: dict[int, int | None] = {hop.target: source_id for hop in children}
    for root in children:
        for hop in root.walk():
            out.update({child.target: run.target_nodes[hop.target] for child in hop.children})
    return out
