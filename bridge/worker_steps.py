"""The bridge worker's cluster steps: switching clusters, Ray node health, adoption, stats, demo casts.

`bridge.worker.Worker` calls three things from here:

- `before_connect(worker)` at the top of every tick: applies the run-time configuration
  operators recorded (`RuntimeConfig`), carries out a recorded cluster switch
  (`ClusterOperation`), and follows a switch another worker made.
- `heartbeat(worker)` every heartbeat, before `sync_nodes`: reads Ray's node table, probes
  the raylets that host CastRay nodes, marks nodes on a dead Ray node offline (failing their
  part in running casts with the reason), pins nodes again when their machine comes back as
  a new raylet, adopts new Ray nodes (CASTRAY_ADOPT_RAY_NODES), records stats and runs demo
  casts.
- `node_held(worker, node)` from `sync_nodes`: no actor is started on a Ray node that is down
  (it would only fail to schedule, every heartbeat).

Each returns what it did, so tests can drive it step by step. State lives beside the worker
(a weak map), not on it, so the Worker class needs no fields for it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from django.conf import settings
from django.db.models import QuerySet

from bridge import connection as ray_connection
from bridge.connection import RayUnavailable
from clusters import services
from clusters.models import Cluster, ClusterOperation, NodeFileRequest, NodePlacement, RuntimeConfig
from nodes.models import Node

log = logging.getLogger("castray.worker.clusters")
DEMO_FILES = 5  # demo casts rotate over this many names per source, so storage does not fill up
SWITCH_TIMEOUT = 120.0
FETCH_BLOCK = 8 * 1024 * 1024
FETCH_IN_FLIGHT = 4
FILE_JOBS = 4  # file requests served at once per worker
SPOOL_KEEP_SECONDS = 3600.0  # fetched files stay downloadable this long


@dataclass
class StepState:
    first_seen: dict[str, float] = field(default_factory=dict)  # Ray node id -> when first seen alive
    failing_since: dict[str, float] = field(default_factory=dict)  # Ray node id -> first refused probe
    down: dict[str, float] = field(default_factory=dict)  # Ray node id -> when found down
    marked: dict[int, str] = field(default_factory=dict)  # node pk -> Ray node id it was marked down for
    placements: dict[int, tuple[str, str]] = field(default_factory=dict)  # node pk -> recorded (id, key)
    operation: int | None = None
    switch_from: int | None = None
    switch_started: float = 0.0
    last_control: float = float("-inf")
    last_stats: float = float("-inf")
    last_demo: float = 0.0
    demo_pending: tuple[Any, int, list[int], str] | None = None
    demo_count: int = 0
    file_pool: ThreadPoolExecutor | None = None
    file_jobs: dict[Future[tuple[dict[str, Any], str, str]], int] = field(default_factory=dict)
    last_spool_sweep: float = 0.0

    def forget_cluster(self) -> None:
        self.first_seen.clear()
        self.failing_since.clear()
        self.down.clear()
        self.marked.clear()
        self.placements.clear()


_states: WeakKeyDictionary[Any, StepState] = WeakKeyDictionary()


def state_of(worker: Any) -> StepState:
    state = _states.get(worker)
    if state is None:
        state = _states[worker] = StepState()
    return state


def _nodes(worker: Any) -> QuerySet[Node]:
    # A benchmark worker only looks after its own nodes (Worker.nodes(), when present).
    return worker.nodes() if hasattr(worker, "nodes") else Node.objects.all()


# --- run-time configuration ------------------------------------------------------------------
_originals: dict[str, Any] = {}
_config_lock = threading.Lock()


def apply_runtime_config(config: RuntimeConfig | None) -> dict[str, Any]:
    """Make this process's settings follow the recorded configuration; return what changed.

    The worker reads CASTRAY_* settings where it uses them, so setting them here is all it
    takes. A value cleared in the record goes back to what the environment had set.
    """
    changed: dict[str, Any] = {}
    with _config_lock:
        for field_name, name in services.CONFIG_SETTINGS.items():
            if field_name.startswith("demo_"):
                continue  # read by the demo step itself
            value = getattr(config, field_name, None) if config is not None else None
            if value is not None:
                _originals.setdefault(name, getattr(settings, name))
                if getattr(settings, name) != value:
                    setattr(settings, name, value)
                    changed[name] = value
            elif name in _originals:
                setattr(settings, name, _originals.pop(name))
                changed[name] = getattr(settings, name)
    return changed


def restore_runtime_config() -> None:
    with _config_lock:
        for name, value in _originals.items():
            setattr(settings, name, value)
        _originals.clear()


# --- switching clusters ----------------------------------------------------------------------
def before_connect(worker: Any) -> dict[str, Any]:
    state = state_of(worker)
    did: dict[str, Any] = {}
    now = time.monotonic()
    if now - state.last_control < settings.CASTRAY_HEARTBEAT_SECONDS and state.operation is None:
        return did
    state.last_control = now
    changed = apply_runtime_config(RuntimeConfig.objects.filter(pk=1).first())
    if changed:
        log.info("run-time configuration applied: %s", changed)
        did["config"] = changed
    if state.operation is not None:
        did["operation"] = finish_switch(worker)
        return did
    operation = services.operation_claim(worker_id=worker.worker_id)
    if operation is not None:
        did["operation"] = start_switch(worker, operation)
        return did
    follow_active(worker)
    return did


def start_switch(worker: Any, operation: ClusterOperation) -> str:
    """Leave the current cluster for the operation's target; the worker connects on its next step."""
    state = state_of(worker)
    if operation.kind == ClusterOperation.Kind.DISCONNECT:
        target = services.cluster_configured()
    else:
        target = services.cluster_for_address(operation.address)
    current = services.cluster_active()
    operation.target = target
    address = target.address or worker.ray_address
    where = address or "a local Ray started by CastRay"
    if target.pk == current.pk and worker.connected:
        services.operation_finish(
            operation=operation, ok=True, message=f"already on Ray cluster {target.name} ({where}); nothing changed"
        )
        return "already there"
    if address:
        try:
            ray_connection.precheck(address)
        except RayUnavailable as exc:
            services.operation_finish(operation=operation, ok=False, message=f"{exc}; stayed on {current.name}")
            return "unreachable"
    reason = f"interrupted: CastRay moved to Ray cluster {target.name} ({where}); queued again to resume there"
    operation.requeued = detach(worker, reason=reason)
    operation.save(update_fields=["target", "requeued"])
    services.cluster_switch(target=target, worker_id=worker.worker_id)
    state.operation = operation.pk
    state.switch_from = current.pk
    state.switch_started = time.monotonic()
    worker.next_connect = 0.0
    worker.backoff = 1.0
    log.info("operation %s: moving from %s to %s (%s)", operation.pk, current.name, target.name, where)
    return "switching"


def finish_switch(worker: Any) -> str:
    """Record how the switch ended: connected there, or back where it came from with the reason."""
    state = state_of(worker)
    operation = ClusterOperation.objects.filter(pk=state.operation).select_related("target").first()
    if operation is None:
        state.operation = None
        return "gone"
    target = operation.target or services.cluster_active()
    target.refresh_from_db()
    if worker.connected:
        alive = [r for r in target.ray_nodes if r.get("alive")]
        names = list(_nodes(worker).filter(enabled=True).values_list("name", flat=True))
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
        services.operation_finish(operation=operation, ok=True, message=message)
        state.operation = None
        log.info("operation %s succeeded: %s", operation.pk, message)
        return "succeeded"
    failed = worker.next_connect > 0.0  # ensure_connected tried and set its back-off
    if not failed and time.monotonic() - state.switch_started < SWITCH_TIMEOUT:
        return "waiting"
    error = target.last_error or f"no connection within {SWITCH_TIMEOUT:.0f} s"
    source = Cluster.objects.filter(pk=state.switch_from).first() or services.cluster_configured()
    services.cluster_switch(target=source, worker_id=worker.worker_id)
    services.operation_finish(
        operation=operation,
        ok=False,
        message=f"could not attach to Ray cluster {target.name}: {error}; back on {source.name}",
    )
    worker.connected = False
    worker.next_connect = 0.0
    worker.backoff = 1.0
    state.operation = None
    log.warning("operation %s failed: %s", operation.pk, error)
    return "failed"


def follow_active(worker: Any) -> str:
    """Another worker switched clusters: leave the old one too."""
    attached = ray_connection.attached()
    if not worker.connected or attached is None:
        return ""
    active = services.cluster_active()
    expected = active.address or worker.ray_address
    if expected == attached:
        return ""
    detach(worker, reason=f"interrupted: the active Ray cluster changed to {active.name}; queued again")
    return "detached"


def detach(worker: Any, *, reason: str) -> list[int]:
    """Stop this worker's actors and casts on the current cluster and let go of it.

    Running casts go back to the queue with `reason` (their targets keep their chunks and
    resume). The cluster itself is left running unless it is a local Ray this process
    started. Returns the requeued cast ids.
    """
    import ray

    ids = list(worker.running)
    if ray.is_initialized():
        for handle in worker.actors.values():
            for transfer_id in ids:
                try:
                    handle.cancel.remote(transfer_id)
                except Exception:  # noqa: BLE001 - best effort; the actor is killed next
                    pass
    requeued = services.transfers_requeue(worker_id=worker.worker_id, transfer_ids=ids, reason=reason)
    worker.running.clear()
    worker.message_refs.clear()
    services.messages_requeue(worker_id=worker.worker_id)
    if ray.is_initialized() and ray_connection.attached() is not None:
        for handle in worker.actors.values():
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone is fine
                pass
    worker.actors.clear()
    worker.actor_names.clear()
    worker.pending_pings.clear()
    worker.heard_from.clear()
    if ray_connection.attached() is not None:
        ray_connection.disconnect()
    worker.connected = False
    state_of(worker).forget_cluster()
    log.info("worker %s detached from Ray (%s); requeued %s", worker.worker_id, reason, requeued)
    return requeued


# --- health ----------------------------------------------------------------------------------
def node_held(worker: Any, node: Node) -> bool:
    """True when the node's Ray node is down: starting its actor now could only fail."""
    return bool(node.ray_node_id) and node.ray_node_id in state_of(worker).down


def heartbeat(worker: Any) -> dict[str, Any]:
    import ray

    state = state_of(worker)
    try:
        rows = [ray_connection.ray_node_row(n) for n in ray.nodes()]
    except Exception as exc:  # noqa: BLE001 - the GCS is away; refresh_cluster records it
        log.warning("cannot read Ray's node table: %s", exc)
        return {}
    cluster = services.cluster_active()
    did = check_health(worker, cluster, rows)
    if settings.CASTRAY_ADOPT_RAY_NODES:
        made = services.nodes_adopt(cluster=cluster, ray_nodes=rows)
        if made:
            did["adopted"] = [n.name for n in made]
            log.info("adopted Ray nodes as %s", did["adopted"])
    now = time.monotonic()
    if now - state.last_stats >= settings.CASTRAY_RAY_STATS_SECONDS:
        state.last_stats = now
        try:
            services.cluster_record_stats(cluster=cluster, stats=ray_connection.stats(settings.CASTRAY_RAY_NAMESPACE))
            did["stats"] = True
        except Exception as exc:  # noqa: BLE001 - stats are best effort
            log.warning("cannot collect Ray stats: %s", exc)
    demo = demo_step(worker)
    if demo:
        did["demo"] = demo
    served = serve_file_requests(worker)
    if served:
        did["file_requests"] = served
    return did


def _down_reason(rid: str, row: dict[str, Any] | None, error: str, failing_for: float) -> str:
    if row is None:
        return f"its Ray node {rid[:12]} is not part of this Ray cluster"
    where = f"{row['address']}:{row['node_manager_port']}"
    if not row["alive"]:
        return f"its Ray node {rid[:12]} at {row['address']} is dead ({row['death_reason'] or 'lost by the GCS'})"
    return f"its Ray node {rid[:12]}: the raylet at {where} has refused connections for {failing_for:.0f} s ({error})"


def check_health(worker: Any, cluster: Cluster, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Find Ray nodes that are down, take their CastRay nodes offline, pin them again when back."""
    state = state_of(worker)
    now = time.monotonic()
    label = settings.CASTRAY_RAY_NODE_LABEL
    by_id = {r["node_id"]: r for r in rows}
    for row in rows:
        if row["alive"]:
            state.first_seen.setdefault(row["node_id"], now)
    nodes = [n for n in _nodes(worker).filter(enabled=True) if n.ray_node_id]
    pinned = {n.ray_node_id for n in nodes}
    probes = ray_connection.probe(
        {
            rid: (by_id[rid]["address"], int(by_id[rid]["node_manager_port"]))
            for rid in pinned
            if rid in by_id and by_id[rid]["alive"] and by_id[rid].get("node_manager_port")
        }
    )
    # A raylet that refuses for a sixth of the bound (at least a heartbeat) is gone, not busy.
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
        error = probes.get(rid, "")
        if row is not None and row["alive"] and not error:
            state.failing_since.pop(rid, None)
            continue
        failing_for = 0.0
        if row is not None and row["alive"]:
            failing_for = now - state.failing_since.setdefault(rid, now)
            if failing_for < grace:
                continue
        reasons[rid] = _down_reason(rid, row, error, failing_for)
    for rid in list(state.down):
        if rid not in reasons:
            del state.down[rid]
    for rid in reasons:
        state.down.setdefault(rid, now)

    did: dict[str, Any] = {}
    keys = dict(NodePlacement.objects.filter(cluster=cluster).values_list("node_id", "key"))
    adopted = set(NodePlacement.objects.filter(cluster=cluster, adopted=True).values_list("node_id", flat=True))
    for node in nodes:
        rid = node.ray_node_id
        if rid not in reasons:
            state.marked.pop(node.pk, None)
            continue
        if state.marked.get(node.pk) != rid:
            state.marked[node.pk] = rid
            failed = services.node_mark_down(node=node, reason=reasons[rid])
            worker.actors.pop(node.pk, None)
            worker.pending_pings.pop(node.pk, None)
            worker.heard_from.discard(node.pk)
            did.setdefault("down", []).append(node.name)
            log.warning("node %s offline: %s (casts affected: %s)", node.name, reasons[rid], failed)
        row = by_id.get(rid)
        key = ray_node_key_of(row, label) if row is not None else keys.get(node.pk, "")
        new = rebind_candidate(state, rid, key, rows, label)
        if new is not None:
            services.node_rebind(
                node=node,
                cluster=cluster,
                ray_node_id=new["node_id"],
                key=key,
                detail=f"its machine is back as Ray node {new['node_id'][:12]}; starting its actor there",
            )
            state.marked.pop(node.pk, None)
            state.placements.pop(node.pk, None)
            did.setdefault("rebound", []).append(node.name)
            log.info("node %s pinned again to Ray node %s (%s)", node.name, new["node_id"][:12], key)
        elif row is None and node.pk not in adopted:
            # Pinned to a Ray node this cluster never had (it was restarted, or the pin came
            # from another cluster): let Ray place it; its first heartbeat pins it again.
            services.node_rebind(
                node=node, cluster=cluster, ray_node_id="", key=None, detail="placed again by Ray on this cluster"
            )
            state.marked.pop(node.pk, None)
            state.placements.pop(node.pk, None)
            did.setdefault("unpinned", []).append(node.name)

    # Remember where healthy nodes run (per cluster), so a switch back restores it.
    fresh: dict[int, tuple[str, str | None]] = {}
    for node in nodes:
        row = by_id.get(node.ray_node_id)
        if row is None or not row["alive"] or node.status != Node.Status.ONLINE:
            continue
        key = ray_node_key_of(row, label)
        if state.placements.get(node.pk) != (node.ray_node_id, key):
            fresh[node.pk] = (node.ray_node_id, key)
    if fresh:
        services.placements_record(cluster=cluster, rows=fresh)
        state.placements.update({pk: (rid, key or "") for pk, (rid, key) in fresh.items()})
    return did


def ray_node_key_of(row: dict[str, Any], label: str) -> str:
    return services.ray_node_key(row, label)


def rebind_candidate(
    state: StepState, old: str, key: str, rows: list[dict[str, Any]], label: str
) -> dict[str, Any] | None:
    """The live Ray node that is the same machine as `old`, if exactly one is.

    A label names a machine outright. A host name is weaker (several raylets may share a
    host), so the candidate must also have joined after `old` went down.
    """
    if not key or key == "host:":
        return None
    same = [r for r in rows if r["alive"] and r["node_id"] != old and ray_node_key_of(r, label) == key]
    if len(same) != 1:
        return None
    if key.startswith("host:"):
        since = state.down.get(old, time.monotonic())
        if state.first_seen.get(same[0]["node_id"], 0.0) < since:
            return None
    return same[0]


# --- demo casts ------------------------------------------------------------------------------
def demo_settings() -> tuple[bool, float, int]:
    effective = services.runtime_config_effective()
    return bool(effective["demo_enabled"]), float(effective["demo_interval"]), int(effective["demo_file_size"])


def demo_step(worker: Any) -> str:
    """Every interval: write a random file on a random online node, then cast it to up to two others."""
    import ray

    from transfers.services import CastError, transfer_create

    state = state_of(worker)
    if state.demo_pending is not None:
        ref, source_id, target_ids, name = state.demo_pending
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            return ""
        state.demo_pending = None
        try:
            ray.get(ref)
            source = Node.objects.get(pk=source_id)
            targets = list(Node.objects.filter(pk__in=target_ids, enabled=True))
            transfer = transfer_create(source=source, file_name=name, targets=targets)
        except (CastError, Node.DoesNotExist) as exc:
            return f"skipped: {exc}"
        except Exception as exc:  # noqa: BLE001 - the source failed to write the file
            log.warning("demo file on node %s failed: %s", source_id, exc)
            return f"failed: {exc}"
        return f"cast #{transfer.pk} {name} from {source.name} to {', '.join(t.name for t in targets)}"
    enabled, interval, size = demo_settings()
    now = time.monotonic()
    if not enabled or now - state.last_demo < interval:
        return ""
    state.last_demo = now
    online = [n for n in _nodes(worker).online() if n.pk in worker.actors]
    if len(online) < 2:
        return ""
    source = random.choice(online)
    others = [n for n in online if n.pk != source.pk]
    targets = random.sample(others, k=min(2, len(others)))
    name = f"demo/demo-{state.demo_count % DEMO_FILES}.bin"
    state.demo_count += 1
    ref = worker.actors[source.pk].generate_file.remote(name, size, "random", settings.CASTRAY_CHUNK_SIZE)
    state.demo_pending = (ref, source.pk, [t.pk for t in targets], name)
    return f"writing {name} on {source.name}"


# --- files on other hosts --------------------------------------------------------------------
def spool_dir() -> Path:
    return Path(settings.DATA_DIR) / "spool"


def serve_file_requests(worker: Any) -> list[int]:
    """Start the recorded file requests for nodes whose actor this worker has; return their ids.

    Each runs in a thread of the worker's, so a long download never holds up casts.
    """
    state = state_of(worker)
    now = time.monotonic()
    if now - state.last_spool_sweep > 60:
        state.last_spool_sweep = now
        sweep_spool()
    # Results are written here, in the worker's own thread (and database connection).
    for job in [j for j in state.file_jobs if j.done()]:
        request_id = state.file_jobs.pop(job)
        result, error, spool_path = job.result()
        services.file_request_finish(request_id=request_id, result=result, error=error, spool_path=spool_path)
    room = FILE_JOBS - len(state.file_jobs)
    if room <= 0:
        return []
    online = set(_nodes(worker).online().values_list("pk", flat=True)) & set(worker.actors)
    if not online:
        return []
    if state.file_pool is None:
        state.file_pool = ThreadPoolExecutor(max_workers=FILE_JOBS, thread_name_prefix="castray-files")
    started = []
    for request in services.file_request_claim(worker_id=worker.worker_id, node_ids=online, limit=room):
        state.file_jobs[state.file_pool.submit(serve_file_request, worker.actors[request.node_id], request)] = (
            request.pk
        )
        started.append(request.pk)
    return started


def serve_file_request(actor: Any, request: NodeFileRequest) -> tuple[dict[str, Any], str, str]:
    """Carry out one request (in a pool thread); return (result, error, spool path). No database here."""
    import ray

    try:
        if request.op == NodeFileRequest.Op.LIST:
            files = ray.get(actor.list_files.remote(), timeout=60)
            return {"files": files, "count": len(files)}, "", ""
        if request.op == NodeFileRequest.Op.DELETE:
            deleted = ray.get(actor.delete_file.remote(request.name), timeout=60)
            error = "" if deleted else f"{request.name} is not a file in {request.node.name}'s storage"
            return {"deleted": bool(deleted)}, error, ""
        result, path = fetch(request)
        return result, "", str(path)
    except Exception as exc:  # noqa: BLE001 - every failure is the request's result, in words
        cause = getattr(exc, "cause", None) or exc
        return {}, f"{type(cause).__name__}: {cause}"[:2000], ""


_remote: dict[str, Any] = {}


def _task(name: str) -> Any:
    import ray
    import ray.cloudpickle

    from dataplane import remote_read

    if not _remote:
        # By value: the Ray hosts have the shipped nodes/transfers packages, not clusters/.
        ray.cloudpickle.register_pickle_by_value(remote_read)
        _remote["stat"] = ray.remote(remote_read.stat_file)
        _remote["read"] = ray.remote(remote_read.read_range)
    return _remote[name]


def fetch(request: NodeFileRequest) -> tuple[dict[str, Any], Path]:
    """Copy a file from the node's host into the spool, a few blocks in flight; return (info, path)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = request.node
    options: dict[str, Any] = {"num_cpus": 0, "max_retries": 2}
    if node.ray_node_id:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node.ray_node_id, soft=False)
    root = str(node.storage_root)
    info = ray.get(_task("stat").options(**options).remote(root, request.name), timeout=60)
    size = int(info["size"])
    spool = spool_dir()
    spool.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(spool).free < size + 64 * 1024 * 1024:
        raise OSError(f"not enough space in {spool} for {size} bytes")
    path = spool / f"{request.pk}-{Path(request.name).name}"
    part = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    pending: deque[Any] = deque()
    offset = 0
    try:
        with open(part, "wb") as handle:
            while offset < size or pending:
                while offset < size and len(pending) < FETCH_IN_FLIGHT:
                    length = min(FETCH_BLOCK, size - offset)
                    pending.append(_task("read").options(**options).remote(root, request.name, offset, length))
                    offset += length
                block = ray.get(pending.popleft(), timeout=120)
                handle.write(block)
                digest.update(block)
            if handle.tell() != size:
                raise OSError(f"{request.name} changed while it was read ({handle.tell()} of {size} bytes)")
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return {"size": size, "sha256": digest.hexdigest(), "modified": info["modified"]}, path


def sweep_spool() -> int:
    """Delete fetched files older than SPOOL_KEEP_SECONDS and mark their requests expired."""
    from datetime import timedelta

    from django.utils import timezone

    cutoff = timezone.now() - timedelta(seconds=SPOOL_KEEP_SECONDS)
    old = NodeFileRequest.objects.filter(
        op=NodeFileRequest.Op.FETCH, status=NodeFileRequest.Status.DONE, finished_at__lt=cutoff
    )
    count = 0
    for pk, path in old.values_list("pk", "spool_path"):
        if path:
            Path(path).unlink(missing_ok=True)
        NodeFileRequest.objects.filter(pk=pk).update(status=NodeFileRequest.Status.EXPIRED)
        count += 1
    return count
