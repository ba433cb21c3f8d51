"""For a Ray driver: make sure a file is on the Ray nodes a job will use, then schedule there.

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from castray_client.ray import ensure

    ray.init(address="auto")
    for node_id in ensure("node_1:models/llama.bin", to="all", min_ready=4, timeout=600):
        work.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()

Ray is imported only here, and only when `ensure` runs: `pip install ./client[ray]`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from castray_client import config
from castray_client.client import CastRayError, Client
from castray_client.models import Node


def _ray() -> Any:
    try:
        import ray
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("castray_client.ray needs Ray: pip install 'castray-client[ray]'") from None
    if not ray.is_initialized():
        # Join the cluster this process runs in (or RAY_ADDRESS); never start a new one here.
        ray.init(address=os.environ.get("RAY_ADDRESS") or "auto", log_to_driver=False)
    return ray


def live_ray_nodes() -> list[str]:
    """The ids of the live nodes of the Ray cluster this driver is connected to."""
    return [row["NodeID"] for row in _ray().nodes() if row.get("Alive")]


def placement(nodes: Iterable[Node]) -> dict[str, list[Node]]:
    """CastRay nodes that are online, by the Ray node they are pinned to (names in order)."""
    by_ray: dict[str, list[Node]] = {}
    for node in sorted(nodes, key=lambda n: n.name):
        if node.online and node.ray_node_id:
            by_ray.setdefault(node.ray_node_id, []).append(node)
    return by_ray


def ensure(
    source: str,
    to: str | Iterable[str] = "all",
    min_ready: int | None = None,
    timeout: float | None = None,
    *,
    client: Client | None = None,
    mode: str = "tcp",
    fan_out: int = 0,
) -> list[str]:
    """Cast `source` (NODE:PATH) to the Ray nodes that lack it; return the Ray node ids that hold it.

    `to` is "all" (every live node of the driver's Ray cluster) or Ray node ids. Each Ray node
    is served by one CastRay node pinned to it (the source where it is there, else the first
    online one by name); Ray nodes with no online CastRay node cannot get the file and are left
    out of the result. A node that already has the file is skipped by the server, so calling
    `ensure` again moves nothing. Returns as soon as `min_ready` Ray nodes hold the file (the
    cast goes on for the others), or when the cast ends; raises `WaitTimeout` after `timeout`.
    The server and token come from `client`, else CASTRAY_URL/CASTRAY_TOKEN or `castray login`.
    """
    node_name, _, path = source.partition(":")
    if not node_name or not path:
        raise ValueError(f"source must be NODE:PATH, got {source!r}")
    live = live_ray_nodes()
    if isinstance(to, str) and to == "all":
        wanted = live
    else:
        asked = [to] if isinstance(to, str) else list(to)
        unknown = [rid for rid in asked if rid not in live]
        if unknown:
            raise ValueError(f"not live nodes of this Ray cluster: {', '.join(unknown)}")
        wanted = asked
    own = client is None
    if client is None:
        settings = config.resolve(None, None)
        client = Client(settings.url, settings.token)
    try:
        return _ensure(client, node_name, path, wanted, min_ready, timeout, mode, fan_out)
    finally:
        if own:
            client.close()


def _ensure(
    client: Client,
    node_name: str,
    path: str,
    wanted: list[str],
    min_ready: int | None,
    timeout: float | None,
    mode: str,
    fan_out: int,
) -> list[str]:
    nodes = client.nodes()
    source = next((n for n in nodes if n.name == node_name), None)
    if source is None:
        raise CastRayError(f"no CastRay node named {node_name}", status=404)
    by_ray = placement(nodes)
    holders = {source.ray_node_id} & set(wanted)
    chosen: dict[str, str] = {}  # CastRay node name -> the Ray node it stands for
    for rid in wanted:
        if rid in holders:
            continue
        candidates = [n for n in by_ray.get(rid, []) if n.name != source.name]
        if candidates:
            chosen[candidates[0].name] = rid
    need = None if min_ready is None else max(0, min_ready - len(holders))
    if chosen and need != 0:
        cast = client.cast(node_name, path, to=list(chosen), mode=mode, fan_out=fan_out)
        done = cast.wait(timeout=timeout, min_ready=need)
        holders |= {chosen[t.node] for t in done.ready_targets if t.node in chosen}
    elif chosen:
        # Enough Ray nodes hold it already; the others still get it, without waiting.
        client.cast(node_name, path, to=list(chosen), mode=mode, fan_out=fan_out)
    return [rid for rid in wanted if rid in holders]
