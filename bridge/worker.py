"""The bridge worker: the only code that calls Ray.

It connects to Ray (retrying with backoff, recording a degraded cluster meanwhile), keeps
one `CastNode` actor per enabled node, claims queued casts, starts them on the source actor,
polls receivers for progress and writes the results. Each job is a module of its own,
mixed into `Worker`; each step is a small method that returns what it did, so tests drive
it one step at a time. All the worker's state is declared here, in `Worker.__init__`.

- bridge/switching.py: connecting, the run-time configuration, switching clusters
- bridge/nodes.py: node actors and their heartbeats
- bridge/health.py: Ray node health, rebinding, cluster records and stats
- bridge/casts.py: claiming, running and finishing casts
- bridge/messages.py: delivering messages
- bridge/demo.py: demo casts
- bridge/file_requests.py: files on other hosts (list, fetch, delete)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from bridge import connection as ray_connection
from bridge.aborts import AbortSteps, GiveUp
from bridge.casts import CastSteps
from bridge.config import RunConfig, cluster_secret
from bridge.demo import DemoSteps, PendingDemo
from bridge.file_requests import FileRequestSteps, Outcome, ReadTasks
from bridge.health import HealthSteps
from bridge.messages import MessageSteps
from bridge.nodes import NodeSteps
from bridge.running import Running
from bridge.switching import SwitchSteps
from nodes.models import Node
from transfers import services

log = logging.getLogger("castray.worker")


class Worker(SwitchSteps, NodeSteps, HealthSteps, AbortSteps, CastSteps, MessageSteps, DemoSteps, FileRequestSteps):
    def __init__(self, *, worker_id: str = "", ray_address: str | None = None, node_prefix: str = "") -> None:
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.ray_address: str = settings.RAY_ADDRESS if ray_address is None else ray_address
        self.secret = cluster_secret()
        # The environment's settings until the first tick reads the recorded ones.
        self.config = RunConfig.from_settings()
        # Benchmarks run a worker that only touches their own nodes (names with this prefix).
        self.node_prefix = node_prefix
        self.stop_event = threading.Event()

        # Connection and switching (switching.py).
        self.connected = False
        self.local_ray = False  # attached to a Ray this process started: actors listen on loopback
        self.connected_at = 0.0
        self.backoff = 1.0
        self.next_connect = 0.0
        self.operation: int | None = None
        self.switch_from: int | None = None
        self.switch_started = 0.0

        # Node actors (nodes.py).
        self.actors: dict[int, Any] = {}
        self.actor_names: dict[int, str] = {}
        self.pending_pings: dict[int, Any] = {}
        self.heard_from: set[int] = set()
        self.last_part_sweep = float("-inf")

        # Ray node health (health.py); forgotten when the worker leaves a cluster.
        self.first_seen: dict[str, float] = {}
        self.failing_since: dict[str, float] = {}
        self.down: dict[str, float] = {}
        self.marked: dict[int, str] = {}
        self.placements: dict[int, tuple[str, str]] = {}

        # Casts and messages in flight (casts.py, messages.py).
        self.running: dict[int, Running] = {}
        self.message_refs: list[tuple[list[Any], str]] = []
        self.aborts: dict[Any, tuple[Any, int, GiveUp, float]] = {}  # targets given up on (aborts.py)
        self.abort_later: dict[int, tuple[Any, GiveUp, float, float]] = {}
        self.forget_later: dict[int, set[int]] = {}  # transfer -> nodes to forget it once its aborts settle

        # Demo casts (demo.py) and file requests (file_requests.py).
        self.last_demo = 0.0
        self.demo_pending: PendingDemo | None = None
        self.demo_count = 0
        self.file_pool: ThreadPoolExecutor | None = None
        self.file_jobs: dict[Future[Outcome], int] = {}
        self.read_tasks: ReadTasks | None = None
        self.last_spool_sweep = 0.0

        # When each periodic step last ran (monotonic seconds); -inf: at the first tick.
        self.last_control = float("-inf")
        self.last_stats = float("-inf")
        self.last_nodes = 0.0
        self.last_lease = 0.0
        self.last_conn_check = 0.0
        self.last_recover = 0.0

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
        self.before_connect()  # run-time config, cluster switches
        if not self.ensure_connected():
            return {"connected": False}
        now = time.monotonic()
        if now - self.last_nodes >= settings.CASTRAY_HEARTBEAT_SECONDS or any(
            n.status == Node.Status.STARTING for n in self.nodes().filter(enabled=True).only("status")
        ):
            self.last_nodes = now
            did["clusters"] = self.heartbeat()  # Ray node health, adoption, stats, demo, files
            did["nodes"] = self.sync_nodes()
            self.refresh_cluster()
        if now - self.last_recover >= settings.CASTRAY_LEASE_SECONDS / 3:
            self.last_recover = now
            did["recovered"] = self.recover()
            services.messages_recover_expired(worker_id=self.worker_id)
        did["claimed"] = self.claim() if self.ready_to_claim() else []
        did["finished"] = self.poll()
        did["settled"] = self.settle_aborts()
        did["messages"] = self.deliver_messages() + self.record_messages()
        if now - self.last_lease >= settings.CASTRAY_LEASE_SECONDS / 3:
            self.last_lease = now
            did["renewed"] = self.renew()
        return did

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
            if not _busy(did):
                self.wait_for_work(idle_sleep)
        self.shutdown()
        log.info("worker %s stopped", self.worker_id)

    def shutdown(self) -> None:
        """End this worker's node actors, and the local Ray it started, with the worker.

        The actors are detached (they outlive a worker that dies, so another can go on), but a
        CastRay that stops must not leave them, or a local Ray's agents, running on the host.
        """
        if not self.connected:
            return
        for node_id in list(self.actors):
            self.stop_actor(node_id)
        if ray_connection.started_here():
            ray_connection.disconnect()
        self.connected = False

    def run_until(self, predicate: Callable[[], bool], *, timeout: float = 60.0) -> bool:
        """Tick until `predicate()` is true (for tests and one-shot commands)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            did = self.tick()
            if predicate():
                return True
            if not _busy(did):
                self.wait_for_work(0.1)
        return False


def _busy(did: dict[str, Any]) -> bool:
    """Whether a tick moved casts or messages: then the next one follows at once."""
    return bool(did.get("claimed") or did.get("finished") or did.get("messages"))
