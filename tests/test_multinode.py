"""A real three-node Ray cluster on this machine: adoption, broadcast, a raylet killed mid-cast, its return.

The cluster is three `ray start` processes (a head and two raylets, each with its own temp dir,
ports, `castray.io/node` label and custom resource). CastRay runs as `manage.py castray_up`
attached to it (see tests/cluster_fixtures.py for why a separate process) and is driven over
HTTP only, as an operator would.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_fixtures import CastRayServer, RayCluster
from tests.helpers import sha256_of, write_random

pytestmark = pytest.mark.ray
LABEL = "castray.io/node"


@pytest.fixture
def cluster() -> Iterator[RayCluster]:
    ray_cluster = RayCluster("mn")
    try:
        ray_cluster.start_head(resources={"host_0": 1}, labels={LABEL: "host-0"})
        ray_cluster.add_worker("n1", resources={"host_1": 1}, labels={LABEL: "host-1"})
        ray_cluster.add_worker("n2", resources={"host_2": 1}, labels={LABEL: "host-2"})
        yield ray_cluster
    finally:
        ray_cluster.stop()


@pytest.fixture
def server(cluster: RayCluster, tmp_path: Path) -> Iterator[CastRayServer]:
    castray = CastRayServer(tmp_path / "data", cluster.address)
    # The demo nodes castray_up creates are switched off: this cluster gets adopted nodes only.
    castray.manage("castray_up", "--setup-only")
    castray.manage("shell", "-c", "from nodes.models import Node; Node.objects.update(enabled=False)")
    try:
        castray.start()
        yield castray
    finally:
        castray.stop()


def test_adopt_broadcast_lose_a_raylet_mid_cast_and_get_it_back(cluster: RayCluster, server: CastRayServer) -> None:
    storage = server.data_dir / "storage"
    # The worker records the three Ray nodes (with their labels) once it is connected.
    try:
        server.wait("three live Ray nodes", lambda: server.get("/api/nodes/external")["count"] == 3, timeout=120)
    except AssertionError as exc:
        # Once seen in CI: say whether a raylet never joined or the worker never recorded it.
        raise AssertionError(f"{exc}\n{cluster.logs()}") from None
    ray_nodes = {n["labels"][LABEL]: n for n in server.get("/api/nodes/external")["external_nodes"]}
    assert set(ray_nodes) == {"host-0", "host-1", "host-2"}
    assert ray_nodes["host-0"]["type"] == "head" and ray_nodes["host-1"]["resources"]["host_1"] == 1

    # Ordinary users may not adopt; staff adopt one CastRay node per Ray node, pinned to it.
    status, body = server.call("POST", "/api/cluster/adopt-ray-nodes")
    assert status == 201, body
    assert sorted(n["name"] for n in body["nodes"]) == ["host-0", "host-1", "host-2"]
    assert {n["name"]: n["ray_node_id"] for n in body["nodes"]} == {k: v["id"] for k, v in ray_nodes.items()}
    server.wait(
        "adopted nodes online",
        lambda: all(server.nodes()[n]["status"] == "online" for n in ("host-0", "host-1", "host-2")),
        timeout=90,
    )
    # Adopting again finds nothing new.
    assert server.call("POST", "/api/cluster/adopt-ray-nodes")[1]["nodes"] == []

    # A broadcast reaches every other node; the bytes on each node's storage are the source's.
    write_random(storage / "host-0" / "first.bin", 6 * 1024 * 1024)
    status, body = server.call(
        "POST", "/api/v1/transfers/", {"source": "host-0", "file_name": "first.bin", "broadcast": True}
    )
    assert status == 201, body
    done = server.transfer(body["id"])
    assert done["status"] == "completed", done
    for name in ("host-1", "host-2"):
        assert sha256_of(storage / name / "first.bin") == sha256_of(storage / "host-0" / "first.bin")

    # Slow casts down (8 MiB/s per node, recorded through /ray/configure) so one is in flight
    # long enough to lose a machine under it.
    status, body = server.call("POST", "/ray/configure", {"default_egress_cap": "8MiB"})
    assert status == 200 and body["config"]["default_egress_cap"] == 8 * 1024 * 1024, body
    write_random(storage / "host-0" / "big.bin", 48 * 1024 * 1024)
    time.sleep(1.5)  # a heartbeat or two: the worker applies the new cap and passes it to the actors
    status, body = server.call(
        "POST", "/api/v1/transfers/", {"source": "host-0", "file_name": "big.bin", "broadcast": True}
    )
    assert status == 201, body
    cast_id = body["id"]

    def receiving() -> bool:
        detail = server.get(f"/api/v1/transfers/{cast_id}/")
        return any(r["node"] == "host-2" and r["bytes_done"] > 2 * 1024 * 1024 for r in detail["recipients"])

    server.wait("host-2 receiving", receiving, timeout=60, interval=0.1)
    # The machine behind host-2 dies: its raylet and every process it started, at once.
    victim = next(n for n in cluster.nodes if n.name == "n2")
    killed_at = time.monotonic()
    victim.kill(signal.SIGKILL)

    def offline() -> dict | None:
        node = server.nodes()["host-2"]
        return node if node["status"] == "offline" else None

    node = server.wait("host-2 offline", offline, timeout=40, interval=0.1)
    went_offline = time.monotonic() - killed_at
    print(f"host-2 offline {went_offline:.1f} s after its raylet was killed: {node['status_detail']}")
    assert went_offline <= 30, went_offline
    assert "Ray node" in node["status_detail"] or "actor" in node["status_detail"]

    done = server.transfer(cast_id, timeout=120)
    by_node = {r["node"]: r for r in done["recipients"]}
    print("cast ended", done["status"], "-", done["error"])
    assert done["status"] == "partial", done
    assert by_node["host-1"]["status"] == "completed", by_node
    assert by_node["host-2"]["status"] == "failed" and by_node["host-2"]["error"], by_node
    assert "host-2" in done["error"]
    assert sha256_of(storage / "host-1" / "big.bin") == sha256_of(storage / "host-0" / "big.bin")
    # The other Ray nodes and their CastRay nodes are untouched.
    nodes = server.nodes()
    assert nodes["host-0"]["status"] == nodes["host-1"]["status"] == "online"

    # The machine comes back: a new raylet with the same label (a new Ray node id). The node is
    # pinned to it and comes back online by itself.
    old_ray_id = nodes["host-2"]["ray_node_id"]
    restarted_at = time.monotonic()
    victim.start()
    node = server.wait("host-2 online again", lambda: server.nodes()["host-2"]["status"] == "online", timeout=90)
    back = time.monotonic() - restarted_at
    node = server.nodes()["host-2"]
    print(f"host-2 online again {back:.1f} s after its raylet restarted, on Ray node {node['ray_node_id'][:12]}")
    assert node["ray_node_id"] != old_ray_id
    alive = {n["labels"].get(LABEL): n for n in server.get("/api/nodes/external")["external_nodes"] if n["alive"]}
    assert alive["host-2"]["id"] == node["ray_node_id"]

    # And it receives again: cast the big file to it, from a relay this time.
    server.call("POST", "/ray/configure", {"default_egress_cap": None})
    status, body = server.call(
        "POST", "/api/v1/transfers/", {"source": "host-1", "file_name": "big.bin", "targets": ["host-2"]}
    )
    assert status == 201, body
    done = server.transfer(body["id"])
    assert done["status"] == "completed", done
    assert sha256_of(storage / "host-2" / "big.bin") == sha256_of(storage / "host-0" / "big.bin")
