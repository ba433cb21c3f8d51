"""Which Ray cluster the worker is on: connecting, the run-time configuration, and switching clusters.

`before_connect` runs at the top of every tick: it takes the run-time configuration operators
recorded (`RuntimeConfig`), carries out a recorded cluster switch (`ClusterOperation`), and
follows a switch another worker made. `ensure_connected` then attaches to the active cluster,
retrying with back-off while it cannot (the cluster is recorded as degraded meanwhile).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from bridge import connection as ray_connection
from bridge.config import RunConfig
from bridge.connection import RayUnavailable
from bridge.running import Running
from clusters import services
from clusters.models import Cluster, ClusterOperation, RuntimeConfig
from clusters.services import operation_switching
from nodes.models import Node

log = logging.getLogger("castray.worker.clusters")
SWITCH_TIMEOUT = 120.0  # seconds a switch may take to connect before it goes back


class SwitchSteps:
    worker_id: str
    ray_address: str
    config: RunConfig
    connected: bool
    connected_at: float
    local_ray: bool  # attached to a Ray this process started: actors listen on loopback
    backoff: float  # seconds until the next try after a failed connect
    next_connect: float  # monotonic time of the next try
    actors: dict[int, Any]
    actor_names: dict[int, str]
    pending_pings: dict[int, Any]
    heard_from: set[int]
    running: dict[int, Running]
    message_refs: list[tuple[list[Any], str]]
    operation: int | None  # the ClusterOperation this worker is carrying out
    switch_from: int | None  # the cluster it left for it
    switch_started: float
    last_control: float
    nodes: Callable[[], QuerySet[Node]]  # nodes.py
    end_stale_actors: Callable[[], list[str]]  # nodes.py
    forget_cluster: Callable[[], None]  # health.py

    def ensure_connected(self) -> bool:
        if self.connected:
            return True
        if time.monotonic() < self.next_connect:
            return False
        cluster = services.cluster_active()
        address = cluster.address or self.ray_address
        if cluster.status != Cluster.Status.DEGRADED:
            services.cluster_record(cluster=cluster, status=Cluster.Status.CONNECTING, worker_id=self.worker_id)
        try:
            info = ray_connection.connect(address)
        except RayUnavailable as exc:
            # Keep serving: record why, and try again later with a growing pause.
            services.cluster_record(
                cluster=cluster, status=Cluster.Status.DEGRADED, error=str(exc), worker_id=self.worker_id
            )
            log.warning("Ray unavailable, retrying in %.0fs: %s", self.backoff, exc)
            self.next_connect = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, 30.0)
            return False
        services.cluster_record(cluster=cluster, status=Cluster.Status.CONNECTED, info=info, worker_id=self.worker_id)
        self.connected = True
        self.local_ray = not address
        self.connected_at = time.monotonic()
        self.heard_from.clear()
        self.backoff = 1.0
        ended = self.end_stale_actors()
        if ended:
            log.info("ended %d node actor(s) left by an earlier run: %s", len(ended), ", ".join(ended))
        return True

    def before_connect(self) -> dict[str, Any]:
        """Once a heartbeat (at once while switching): configuration, then a switch; return what happened."""
        did: dict[str, Any] = {}
        now = time.monotonic()
        if now - self.last_control < settings.CASTRAY_HEARTBEAT_SECONDS and self.operation is None:
            return did
        self.last_control = now
        changed = self.refresh_config()
        if changed:
            log.info("run-time configuration applied: %s", changed)
            did["config"] = changed
        if self.operation is not None:
            did["operation"] = self.finish_switch()
            return did
        operation = services.operation_claim(worker_id=self.worker_id)
        if operation is not None:
            did["operation"] = self.start_switch(operation)
            return did
        self.follow_active()
        return did

    def refresh_config(self) -> dict[str, Any]:
        """Take the recorded run-time configuration; return the settings it changed (CASTRAY_* name -> value).

        A value cleared in the record goes back to what the environment set.
        """
        config = RunConfig.load(RuntimeConfig.objects.filter(pk=1).first())
        changed = config.changes(self.config)
        self.config = config
        return changed

    def start_switch(self, operation: ClusterOperation) -> str:
        """Leave the current cluster for the operation's target; the worker connects on its next step."""
        if operation.kind == ClusterOperation.Kind.DISCONNECT:
            target = services.cluster_configured()
        else:
            target = services.cluster_for_address(operation.address)
        current = services.cluster_active()
        operation.target = target  # recorded with the outcome, whichever it is
        address = target.address or self.ray_address
        where = address or "a local Ray started by CastRay"
        if target.pk == current.pk and self.connected:
            message = f"already on Ray cluster {target.name} ({where}); nothing changed"
            services.operation_finish(operation=operation, ok=True, message=message)
            return "already there"
        if address:
            try:
                ray_connection.precheck(address)
            except RayUnavailable as exc:
                services.operation_finish(operation=operation, ok=False, message=f"{exc}; stayed on {current.name}")
                return "unreachable"
        reason = f"interrupted: CastRay moved to Ray cluster {target.name} ({where}); queued again to resume there"
        operation_switching(operation=operation, target=target, requeued=self.detach(reason=reason))
        services.cluster_switch(target=target, worker_id=self.worker_id)
        self.operation = operation.pk
        self.switch_from = current.pk
        self.switch_started = time.monotonic()
        self.next_connect = 0.0
        self.backoff = 1.0
        log.info("operation %s: moving from %s to %s (%s)", operation.pk, current.name, target.name, where)
        return "switching"

    def finish_switch(self) -> str:
        """Record how the switch ended: connected there, or back where it came from with the reason."""
        operation = ClusterOperation.objects.filter(pk=self.operation).select_related("target").first()
        if operation is None:
            self.operation = None
            return "gone"
        target = operation.target or services.cluster_active()
        target.refresh_from_db()
        if self.connected:
            message = self.arrival_message(target, operation)
            services.operation_finish(operation=operation, ok=True, message=message)
            self.operation = None
            log.info("operation %s succeeded: %s", operation.pk, message)
            return "succeeded"
        failed = self.next_connect > 0.0  # ensure_connected tried and set its back-off
        if not failed and time.monotonic() - self.switch_started < SWITCH_TIMEOUT:
            return "waiting"
        error = target.last_error or f"no connection within {SWITCH_TIMEOUT:.0f} s"
        source = Cluster.objects.filter(pk=self.switch_from).first() or services.cluster_configured()
        services.cluster_switch(target=source, worker_id=self.worker_id)
        services.operation_finish(
            operation=operation,
            ok=False,
            message=f"could not attach to Ray cluster {target.name}: {error}; back on {source.name}",
        )
        self.connected = False
        self.next_connect = 0.0
        self.backoff = 1.0
        self.operation = None
        log.warning("operation %s failed: %s", operation.pk, error)
        return "failed"

    def arrival_message(self, target: Cluster, operation: ClusterOperation) -> str:
        """What a switch that connected tells the operator: where, what runs there, what was requeued."""
        alive = [r for r in target.ray_nodes if r.get("alive")]
        names = list(self.nodes().filter(enabled=True).values_list("name", flat=True))
        message = (
            f"connected to Ray cluster {target.name} at {target.gcs_address or target.address or 'local'} "
            f"(Ray {target.ray_version}, {len(alive)} node(s) alive); "
            f"CastRay nodes start again there: {', '.join(names) or 'none'}"
        )
        if operation.requeued:
            message += (
                f"; casts {', '.join(f'#{i}' for i in operation.requeued)} were in flight and are queued again "
                "(their targets resume from the chunks they hold)"
            )
        return message

    def follow_active(self) -> str:
        """Another worker switched clusters: leave the old one too."""
        attached = ray_connection.attached()
        if not self.connected or attached is None:
            return ""
        active = services.cluster_active()
        expected = active.address or self.ray_address
        if expected == attached:
            return ""
        self.detach(reason=f"interrupted: the active Ray cluster changed to {active.name}; queued again")
        return "detached"

    def detach(self, *, reason: str) -> list[int]:
        """Stop this worker's actors and casts on the current cluster and let go of it.

        Running casts go back to the queue with `reason` (their targets keep their chunks and
        resume). The cluster itself is left running unless it is a local Ray this process
        started. Returns the requeued cast ids.
        """
        import ray

        ids = list(self.running)
        if ray.is_initialized():
            for handle in self.actors.values():
                for transfer_id in ids:
                    try:
                        handle.cancel.remote(transfer_id)
                    except Exception:  # noqa: BLE001 - best effort; the actor is killed next
                        pass
        requeued = services.transfers_requeue(worker_id=self.worker_id, transfer_ids=ids, reason=reason)
        self.running.clear()
        self.message_refs.clear()
        services.messages_requeue(worker_id=self.worker_id)
        if ray.is_initialized() and ray_connection.attached() is not None:
            for handle in self.actors.values():
                try:
                    ray.kill(handle, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone is fine
                    pass
        self.actors.clear()
        self.actor_names.clear()
        self.pending_pings.clear()
        self.heard_from.clear()
        if ray_connection.attached() is not None:
            ray_connection.disconnect()
        self.connected = False
        self.forget_cluster()
        log.info("worker %s detached from Ray (%s); requeued %s", self.worker_id, reason, requeued)
        return requeued
