"""Node actors and their heartbeats: one `CastNode` actor per enabled node, pinged every heartbeat."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from bridge.config import RunConfig
from castray_site.lib import short_error
from dataplane.contract import Caps
from nodes.models import Node
from nodes.services import node_mark, node_record_heartbeat
from transfers.models import Target, Transfer

LOOPBACK = "127.0.0.1"
PART_SWEEP_SECONDS = 600.0  # how often the actors look for .part files past CASTRAY_PART_MAX_AGE


def actor_name(node: Node) -> str:
    # The storage path is part of the name: a node moved to other storage gets a new actor.
    return f"{node.actor_name}:{hashlib.sha1(str(node.storage_root).encode()).hexdigest()[:10]}"


class NodeSteps:
    """Starts and stops node actors; records their heartbeats and which nodes went quiet."""

    secret: bytes
    config: RunConfig
    node_prefix: str
    actors: dict[int, Any]  # node id -> its actor
    actor_names: dict[int, str]  # node id -> its actor's Ray name
    pending_pings: dict[int, Any]  # node id -> the ping sent last heartbeat
    heard_from: set[int]  # nodes whose actor answered this worker since it connected
    connected_at: float
    last_part_sweep: float  # monotonic time the actors last removed stale .part files
    local_ray: bool  # switching.py: attached to a Ray this process started on its own
    node_held: Callable[[Node], bool]  # health.py

    def nodes(self) -> QuerySet[Node]:
        # Benchmarks run a worker that only touches their own nodes (names with this prefix).
        return Node.objects.filter(name__startswith=self.node_prefix) if self.node_prefix else Node.objects.all()

    def ready_to_claim(self) -> bool:
        """Start casts only once every enabled node answered (or had its time to)."""
        if time.monotonic() - self.connected_at > settings.CASTRAY_OFFLINE_AFTER_SECONDS:
            return True
        enabled = set(self.nodes().filter(enabled=True).values_list("pk", flat=True))
        return enabled <= self.heard_from

    def actor_for(self, node: Node) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from dataplane.actor import CastNode

        handle = self.actors.get(node.pk)
        if handle is not None:
            return handle
        options: dict[str, Any] = {
            "name": actor_name(node),
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
                # A local Ray started here runs every actor on this machine: nothing outside it
                # needs to reach their ports, so they listen on loopback only.
                bind_address=LOOPBACK if self.local_ray else None,
                nice=settings.CASTRAY_LOCAL_NODE_NICE if self.on_this_host(node) else 0,
            )
        )
        self.actors[node.pk] = handle
        return handle

    def on_this_host(self, node: Node) -> bool:
        """Whether the node's actor runs on this worker's host (a local Ray runs them all here)."""
        import ray

        return self.local_ray or node.ray_node_id == ray.get_runtime_context().get_node_id()

    def stop_actor(self, node_id: int) -> bool:
        """Kill the node's actor; return whether this worker had one."""
        import ray

        handle = self.actors.pop(node_id, None)
        if handle is None:
            return False
        try:
            ray.kill(handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone is fine
            pass
        return True

    def end_stale_actors(self) -> list[str]:
        """End node actors an earlier run left behind that no enabled node will use; return their names.

        Actors are detached, so a CastRay that died leaves them running. The ones whose name is
        an enabled node's current one are adopted (`actor_for` gets them by name); the others
        (deleted or disabled nodes, moved storage) would only hold ports and memory.
        """
        import ray

        namespace = settings.CASTRAY_RAY_NAMESPACE
        wanted = {actor_name(node) for node in self.nodes().filter(enabled=True)}
        prefix = f"castnode:{self.node_prefix}"
        ended = []
        for entry in ray.util.list_named_actors(all_namespaces=True):
            name = entry["name"]
            if entry["namespace"] != namespace or not name.startswith(prefix) or name in wanted:
                continue
            try:
                ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
                ended.append(name)
            except Exception:  # noqa: BLE001 - gone meanwhile is fine
                pass
        return ended

    def expire_parts(self) -> list[Any]:
        """Have every actor remove `.part` files older than CASTRAY_PART_MAX_AGE that no queued or
        running cast will resume; return the calls' references (nothing waits on them)."""
        keep: dict[int, list[str]] = {}
        active = Target.objects.filter(
            transfer__status__in=(Transfer.Status.QUEUED, Transfer.Status.RUNNING)
        ).values_list("node_id", "transfer__dest_name", "transfer__file_name")
        for node_id, dest_name, file_name in active:
            keep.setdefault(node_id, []).append(dest_name or file_name)
        self.last_part_sweep = time.monotonic()
        return [
            handle.expire_parts.remote(settings.CASTRAY_PART_MAX_AGE, keep.get(node_id, []))
            for node_id, handle in self.actors.items()
        ]

    def sync_nodes(self) -> dict[str, list[str]]:
        """Start actors for enabled nodes, stop disabled ones, and read heartbeats."""
        done: dict[str, list[str]] = {"online": [], "offline": [], "stopped": []}
        nodes = {n.pk: n for n in self.nodes()}
        for node_id in list(self.actors):
            node = nodes.get(node_id)
            if node is None or not node.enabled:
                self.stop_actor(node_id)
                done["stopped"].append(node.name if node else str(node_id))
            elif self.actor_names.get(node_id) != actor_name(node):
                # Its storage moved: the old actor would keep writing into the old directory.
                self.stop_actor(node_id)
                self.pending_pings.pop(node_id, None)
                self.heard_from.discard(node_id)
                node_mark(node=node, status=Node.Status.STARTING, detail="storage moved: starting a new actor")
                done["stopped"].append(node.name)
        # Collect pings sent last time; send new ones. Nothing here waits on a slow actor.
        now = timezone.now()
        for name, online in self.collect_pings(nodes, now):
            done["online" if online else "offline"].append(name)
        for node in nodes.values():
            if not node.enabled:
                if node.status != Node.Status.OFFLINE:
                    node_mark(node=node, status=Node.Status.OFFLINE, detail="disabled")
                continue
            if self.mark_quiet(node, now):
                done["offline"].append(node.name)
            if node.pk not in self.pending_pings and not self.node_held(node):
                self.send_ping(node)
        for node in nodes.values():
            if node.enabled and node.last_heartbeat is None and node.status == Node.Status.OFFLINE:
                node_mark(node=node, status=Node.Status.STARTING, detail="starting its actor")
        if time.monotonic() - self.last_part_sweep >= PART_SWEEP_SECONDS:
            self.expire_parts()
        return done

    def collect_pings(self, nodes: dict[int, Node], now: datetime) -> list[tuple[str, bool]]:
        """Record the answers to last heartbeat's pings; return (node name, answered) for each."""
        import ray
        from ray.exceptions import RayError

        heard: list[tuple[str, bool]] = []
        for node_id, ref in list(self.pending_pings.items()):
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                continue
            del self.pending_pings[node_id]
            node = nodes.get(node_id)
            if node is None or not node.enabled:
                continue
            try:
                info = ray.get(ref)
            except RayError as exc:
                self.actor_failed(node, exc)
                heard.append((node.name, False))
                continue
            node_record_heartbeat(node=node, info=info.as_dict(), seen=now)
            self.heard_from.add(node_id)
            heard.append((node.name, True))
        return heard

    def actor_failed(self, node: Node, exc: BaseException) -> None:
        """Take a node whose actor died out of `online` at once, so no cast is planned onto it;
        the next heartbeat starts a new actor."""
        self.actors.pop(node.pk, None)
        self.pending_pings.pop(node.pk, None)
        node_mark(node=node, status=Node.Status.ERROR, detail=f"actor failed: {short_error(exc)}")

    def mark_quiet(self, node: Node, now: datetime) -> bool:
        """Take an enabled node offline when its actor stopped answering, or never did; return whether."""
        bound = settings.CASTRAY_OFFLINE_AFTER_SECONDS
        stale = node.last_heartbeat is None or (now - node.last_heartbeat).total_seconds() > bound
        if stale and node.status == Node.Status.ONLINE:
            node_mark(node=node, status=Node.Status.OFFLINE, detail="no heartbeat from its actor")
            return True
        if (
            node.status == Node.Status.STARTING
            and node.pk not in self.heard_from
            and time.monotonic() - self.connected_at > bound
        ):
            # Casts waiting for it go ahead and fail that target with this reason.
            node_mark(node=node, status=Node.Status.OFFLINE, detail=f"its actor did not answer within {bound:.0f}s")
            return True
        return False

    def send_ping(self, node: Node) -> bool:
        """Ping the node's actor (starting it if needed) with its caps; return whether it was sent."""
        try:
            handle = self.actor_for(node)
            caps = Caps(
                egress=node.egress_cap or self.config.default_egress_cap or None,
                ingress=node.ingress_cap or self.config.default_ingress_cap or None,
            )
            self.pending_pings[node.pk] = handle.ping.remote(caps)
        except Exception as exc:  # noqa: BLE001 - placement errors are reported per node
            node_mark(node=node, status=Node.Status.ERROR, detail=f"could not start actor: {short_error(exc)}")
            return False
        return True
