"""Ray node health: the heartbeat that reads Ray's node table and acts on what it finds.

Every heartbeat, before `sync_nodes`: read Ray's node table, probe the raylets that host
CastRay nodes, mark nodes on a dead Ray node offline (failing their part in running casts
with the reason), pin nodes again when their machine comes back as a new raylet, adopt new
Ray nodes (CASTRAY_ADOPT_RAY_NODES), record stats, and give the demo and file-request steps
their turn. No actor is started on a Ray node that is down (`node_held`): it would only fail
to schedule, every heartbeat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from bridge import connection as ray_connection
from bridge.aborts import GiveUp
from bridge.capacity import chunk_for
from bridge.config import RunConfig
from castray_site.lib import short_error
from clusters import services
from clusters.models import Cluster, NodePlacement
from dataplane.contract import PartOf
from nodes.models import Node
from transfers.models import Target, Transfer

log = logging.getLogger("castray.worker.clusters")

Row = dict[str, Any]  # one Ray node as `connection.ray_node_row` makes it


class HealthSteps:
    worker_id: str
    actors: dict[int, Any]
    pending_pings: dict[int, Any]
    heard_from: set[int]
    first_seen: dict[str, float]  # Ray node id -> when first seen alive
    failing_since: dict[str, float]  # Ray node id -> first refused probe
    down: dict[str, float]  # Ray node id -> when found down
    marked: dict[int, str]  # node pk -> Ray node id it was marked down for
    placements: dict[int, tuple[str, str]]  # node pk -> recorded (Ray node id, key)
    last_stats: float
    nodes: Callable[[], QuerySet[Node]]  # nodes.py
    demo_step: Callable[[], str]  # demo.py
    serve_file_requests: Callable[[], list[int]]  # file_requests.py
    give_up: Callable[[Any, dict[int, GiveUp]], int]  # aborts.py
    config: RunConfig  # worker.py

    def heartbeat(self) -> dict[str, Any]:
        import ray

        try:
            rows = [ray_connection.ray_node_row(n) for n in ray.nodes()]
        except Exception as exc:  # noqa: BLE001 - the GCS is away; refresh_cluster records it
            log.warning("cannot read Ray's node table: %s", exc)
            return {}
        cluster = services.cluster_active()
        did = self.check_health(cluster, rows)
        if settings.CASTRAY_ADOPT_RAY_NODES:
            made = services.nodes_adopt(cluster=cluster, ray_nodes=rows)
            if made:
                did["adopted"] = [n.name for n in made]
                log.info("adopted Ray nodes as %s", did["adopted"])
        if self.record_stats(cluster):
            did["stats"] = True
        demo = self.demo_step()
        if demo:
            did["demo"] = demo
        served = self.serve_file_requests()
        if served:
            did["file_requests"] = served
        return did

    def record_stats(self, cluster: Cluster) -> bool:
        """Every CASTRAY_RAY_STATS_SECONDS: record actors and resources; return whether it did."""
        now = time.monotonic()
        if now - self.last_stats < settings.CASTRAY_RAY_STATS_SECONDS:
            return False
        self.last_stats = now
        try:
            services.cluster_record_stats(cluster=cluster, stats=ray_connection.stats(settings.CASTRAY_RAY_NAMESPACE))
        except Exception as exc:  # noqa: BLE001 - stats are best effort
            log.warning("cannot collect Ray stats: %s", exc)
            return False
        return True

    def refresh_cluster(self) -> bool:
        """Record what Ray reports now; return False when it could not be read (the cluster is degraded)."""
        try:
            info = ray_connection.snapshot()
        except Exception as exc:  # noqa: BLE001 - the GCS went away: degraded, not dead
            services.cluster_record(
                cluster=services.cluster_active(), status=Cluster.Status.DEGRADED, error=short_error(exc)
            )
            return False
        services.cluster_record(
            cluster=services.cluster_active(), status=Cluster.Status.CONNECTED, info=info, worker_id=self.worker_id
        )
        return True

    def node_held(self, node: Node) -> bool:
        """True when the node's Ray node is down: starting its actor now could only fail."""
        return bool(node.ray_node_id) and node.ray_node_id in self.down

    def forget_cluster(self) -> None:
        """Drop what was learnt about the Ray nodes of a cluster this worker left."""
        self.first_seen.clear()
        self.failing_since.clear()
        self.down.clear()
        self.marked.clear()
        self.placements.clear()

    def check_health(self, cluster: Cluster, rows: list[Row]) -> dict[str, Any]:
        """Find Ray nodes that are down, take their CastRay nodes offline, pin them again when back."""
        now = time.monotonic()
        label = settings.CASTRAY_RAY_NODE_LABEL
        by_id = {r["node_id"]: r for r in rows}
        for row in rows:
            if row["alive"]:
                self.first_seen.setdefault(row["node_id"], now)
        nodes = [n for n in self.nodes().filter(enabled=True) if n.ray_node_id]
        reasons = self.down_reasons(nodes, by_id, now)
        did: dict[str, Any] = {}
        keys = dict(NodePlacement.objects.filter(cluster=cluster).values_list("node_id", "key"))
        adopted = set(NodePlacement.objects.filter(cluster=cluster, adopted=True).values_list("node_id", flat=True))
        for node in nodes:
            if node.ray_node_id not in reasons:
                self.marked.pop(node.pk, None)
                continue
            if self.mark_down(node, reasons[node.ray_node_id]):
                did.setdefault("down", []).append(node.name)
            moved = self.place_again(node, cluster, rows, by_id, keys.get(node.pk, ""), node.pk in adopted)
            if moved:
                did.setdefault(moved, []).append(node.name)
        self.record_placements(cluster, nodes, by_id, label)
        return did

    def down_reasons(self, nodes: list[Node], by_id: dict[str, Row], now: float) -> dict[str, str]:
        """Ray node id -> why it is down, for the Ray nodes `nodes` are pinned to; remembers since when."""
        pinned = {n.ray_node_id for n in nodes}
        probes = ray_connection.probe(
            {
                rid: (by_id[rid]["address"], int(by_id[rid]["node_manager_port"]))
                for rid in pinned
                if rid in by_id and by_id[rid]["alive"] and by_id[rid].get("node_manager_port")
            }
        )
        # A raylet that refuses, or cannot be reached, for a sixth of the bound (at least a
        # heartbeat) is gone, not busy.
        grace = max(settings.CASTRAY_HEARTBEAT_SECONDS, settings.CASTRAY_NODE_DOWN_AFTER_SECONDS / 6)
        # A pin to a Ray node this cluster does not know counts only when CastRay made it (it
        # recorded the placement): an operator's own pin to a wrong id is left for sync_nodes to
        # report with Ray's reason.
        recorded = set(
            NodePlacement.objects.filter(node__in=nodes, ray_node_id__in=pinned - set(by_id)).values_list(
                "ray_node_id", flat=True
            )
        )
        reasons: dict[str, str] = {}
        for rid in pinned:
            row = by_id.get(rid)
            if row is None and rid not in recorded:
                continue
            kind, error = probes.get(rid, ("", ""))
            if row is not None and row["alive"] and not kind:
                self.failing_since.pop(rid, None)
                continue
            failing_for = 0.0
            if row is not None and row["alive"]:
                failing_for = now - self.failing_since.setdefault(rid, now)
                if failing_for < grace:
                    continue
            reasons[rid] = down_reason(rid, row, kind, error, failing_for)
        for rid in list(self.down):
            if rid not in reasons:
                del self.down[rid]
        for rid in reasons:
            self.down.setdefault(rid, now)
        return reasons

    def _part_of(self, transfer: Transfer) -> PartOf | None:
        """The part a target of `transfer` writes, as its offer named it.

        None where no chunk record is kept: a directory (its staging has a journal instead),
        the udp and object-store modes, a cast whose source has not answered yet.
        """
        if transfer.mode != Transfer.Mode.TCP or transfer.files or not transfer.size or not transfer.sha256:
            return None
        name = transfer.dest_name or transfer.file_name
        return PartOf(name, transfer.size, chunk_for(transfer, self.config), transfer.sha256)

    def mark_down(self, node: Node, reason: str) -> bool:
        """Take the node offline (once per Ray node it lost) and forget its actor; return whether now."""
        if self.marked.get(node.pk) == node.ray_node_id:
            return False
        self.marked[node.pk] = node.ray_node_id
        receiving = {
            target.pk: GiveUp(target.transfer_id, self._part_of(target.transfer))
            for target in Target.objects.filter(node=node, transfer__status=Transfer.Status.RUNNING)
            .exclude(status__in=Target.FINAL)
            .select_related("transfer")
        }
        failed = services.node_mark_down(node=node, reason=reason)
        handle = self.actors.pop(node.pk, None)
        if handle is not None and receiving:
            # Its receivers may be alive behind a partition: they must not finish unrecorded.
            self.give_up(handle, receiving)
        self.pending_pings.pop(node.pk, None)
        self.heard_from.discard(node.pk)
        log.warning("node %s offline: %s (casts affected: %s)", node.name, reason, failed)
        return True

    def place_again(
        self, node: Node, cluster: Cluster, rows: list[Row], by_id: dict[str, Row], recorded_key: str, adopted: bool
    ) -> str:
        """Pin a node whose Ray node is down to where its machine is now; return "rebound", "unpinned" or ""."""
        rid = node.ray_node_id
        label = settings.CASTRAY_RAY_NODE_LABEL
        row = by_id.get(rid)
        key = services.ray_node_key(row, label) if row is not None else recorded_key
        new = self.rebind_candidate(rid, key, rows, label)
        if new is not None:
            detail = f"its machine is back as Ray node {new['node_id'][:12]}; starting its actor there"
            services.node_rebind(node=node, cluster=cluster, ray_node_id=new["node_id"], key=key, detail=detail)
            log.info("node %s pinned again to Ray node %s (%s)", node.name, new["node_id"][:12], key)
            moved = "rebound"
        elif row is None and not adopted:
            # Pinned to a Ray node this cluster never had (it was restarted, or the pin came
            # from another cluster): let Ray place it; its first heartbeat pins it again.
            detail = "placed again by Ray on this cluster"
            services.node_rebind(node=node, cluster=cluster, ray_node_id="", key=None, detail=detail)
            moved = "unpinned"
        else:
            return ""
        self.marked.pop(node.pk, None)
        self.placements.pop(node.pk, None)
        return moved

    def record_placements(self, cluster: Cluster, nodes: list[Node], by_id: dict[str, Row], label: str) -> int:
        """Remember where healthy nodes run (per cluster), so a switch back restores it; return how many changed."""
        fresh: dict[int, tuple[str, str | None]] = {}
        for node in nodes:
            row = by_id.get(node.ray_node_id)
            if row is None or not row["alive"] or node.status != Node.Status.ONLINE:
                continue
            key = services.ray_node_key(row, label)
            if self.placements.get(node.pk) != (node.ray_node_id, key):
                fresh[node.pk] = (node.ray_node_id, key)
        if fresh:
            services.placements_record(cluster=cluster, rows=fresh)
            self.placements.update({pk: (rid, key or "") for pk, (rid, key) in fresh.items()})
        return len(fresh)

    def rebind_candidate(self, old: str, key: str, rows: list[Row], label: str) -> Row | None:
        """The live Ray node that is the same machine as `old`, if exactly one is.

        A label names a machine outright. A host name is weaker (several raylets may share a
        host), so the candidate must also have joined after `old` went down.
        """
        if not key or key == "host:":
            return None
        same = [r for r in rows if r["alive"] and r["node_id"] != old and services.ray_node_key(r, label) == key]
        if len(same) != 1:
            return None
        if key.startswith("host:"):
            since = self.down.get(old, time.monotonic())
            if self.first_seen.get(same[0]["node_id"], 0.0) < since:
                return None
        return same[0]


def down_reason(rid: str, row: Row | None, kind: str, error: str, failing_for: float) -> str:
    """Why a Ray node counts as down, saying which of these it is and for how long.

    Not in the cluster; dead (Ray says so); refused (the host answers, the raylet's port is
    closed); unreachable (no route or no answer: the network or the host, not the raylet).
    """
    if row is None:
        return f"its Ray node {rid[:12]} is not part of this Ray cluster"
    where = f"{row['address']}:{row['node_manager_port']}"
    if not row["alive"]:
        return f"its Ray node {rid[:12]} at {row['address']} is dead ({row['death_reason'] or 'lost by the GCS'})"
    if kind == "unreachable":
        return (
            f"its Ray node {rid[:12]}: the host {row['address']} has been unreachable for {failing_for:.0f} s "
            f"({error}; the network or the host is down, the raylet did not refuse)"
        )
    if kind == "refused":
        return f"its Ray node {rid[:12]}: the raylet at {where} has refused connections for {failing_for:.0f} s"
    return f"its Ray node {rid[:12]}: the raylet at {where} has failed to answer for {failing_for:.0f} s ({error})"
