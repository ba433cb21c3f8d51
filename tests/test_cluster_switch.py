"""Discover a separate Ray cluster beside CastRay's own, move onto it, cast there, come back.

CastRay's own cluster is the test session's Ray; the separate one is a `ray start --head`
process with its own temp dir. CastRay runs as `manage.py castray_up` (server and worker in
one process) and is driven over HTTP. At the end CastRay's nodes are online on their own
cluster with their files, and the separate cluster is still running, as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_fixtures import BASE_DIR, CastRayServer, RayCluster
from tests.helpers import sha256_of

pytestmark = pytest.mark.ray
LABEL = "castray.io/node"


@pytest.fixture
def separate() -> Iterator[RayCluster]:
    cluster = RayCluster("sep")
    try:
        cluster.start_head(resources={"elsewhere": 1}, labels={LABEL: "elsewhere"})
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def server(ray_session, separate: RayCluster, tmp_path: Path) -> Iterator[CastRayServer]:
    import ray

    own = ray.get_runtime_context().gcs_address
    castray = CastRayServer(
        tmp_path / "data",
        own,
        # Discovery reads the separate cluster's temp dir as well as Ray's default one.
        {"CASTRAY_RAY_TEMP_DIRS": f"{separate.root / 'n0'},/tmp/ray"},
    )
    try:
        castray.start()
        yield castray
    finally:
        castray.stop()
        # The server's actors on the session's Ray (the ones it left running at the end).
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["name"].startswith("castnode:"):
                try:
                    handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
                    if str(tmp_path) in ray.get(handle.ping.remote(), timeout=5).storage_dir:
                        ray.kill(handle)
                except Exception:  # noqa: BLE001 - gone already
                    pass


def inspect(address: str) -> dict:
    """Nodes and CastRay actors of a cluster, read by a throwaway driver process."""
    script = (
        "import json, ray\n"
        f"ray.init(address={address!r}, log_to_driver=False)\n"
        "nodes = [n['NodeID'] for n in ray.nodes() if n['Alive']]\n"
        "actors = [a['name'] for a in ray.util.list_named_actors(all_namespaces=True)]\n"
        "print(json.dumps({'nodes': nodes, 'actors': actors}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "token"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def online(server: CastRayServer) -> dict[str, dict]:
    nodes = server.nodes()
    return nodes if all(n["status"] == "online" for n in nodes.values()) else {}


def test_discover_connect_cast_and_disconnect(server: CastRayServer, separate: RayCluster) -> None:
    import ray

    own_nodes = server.wait("demo nodes online on CastRay's own cluster", lambda: online(server), timeout=90)
    own_ray_node = ray.get_runtime_context().get_node_id()
    assert {n["ray_node_id"] for n in own_nodes.values()} == {own_ray_node}
    before = inspect(separate.address)
    assert len(before["nodes"]) == 1 and not [a for a in before["actors"] if a.startswith("castnode:")]

    # Discovery finds the separate cluster from its session files (and the session's own Ray
    # in /tmp/ray, marked as the current one) without touching either.
    status, body = server.call("POST", "/api/cluster/discover-external")
    assert status == 200, body
    found = [c for c in body["discovered_clusters"] if c["temp_dir"] == str(separate.root / "n0")]
    assert len(found) == 1, body["discovered_clusters"]
    assert found[0]["alive"] and not found[0]["is_current"]
    assert found[0]["address"].endswith(":" + separate.address.rpartition(":")[2])
    assert any(c["is_current"] for c in body["discovered_clusters"])
    assert body["connected_cluster"]["status"] == "connected"

    # Connect: recorded at once (202); the worker moves CastRay's nodes there.
    status, body = server.call("POST", "/api/cluster/connect-external", {"cluster_address": found[0]["address"]})
    assert status == 202 and body["success"], body
    op = server.operation(body["operation"]["id"])
    assert op["status"] == "succeeded", op
    print("connect:", op["message"])
    info = server.get("/api/cluster/external-info")
    assert info["is_connected"] and info["connected_cluster"]["external"]
    external = server.get("/api/nodes/external")
    assert external["count"] == 1
    elsewhere = external["external_nodes"][0]
    assert elsewhere["labels"][LABEL] == "elsewhere" and elsewhere["resources"]["elsewhere"] == 1
    assert elsewhere["status"] == "alive" and elsewhere["type"] == "head"
    there = server.wait("nodes online on the separate cluster", lambda: online(server), timeout=90)
    assert {n["ray_node_id"] for n in there.values()} == {elsewhere["id"]}

    # Cast there.
    source = server.data_dir / "storage" / "node_1" / "there.bin"
    source.write_bytes(os.urandom(3_000_000))
    status, body = server.call(
        "POST", "/api/v1/transfers/", {"source": "node_1", "file_name": "there.bin", "targets": ["node_2", "node_3"]}
    )
    assert status == 201, body
    done = server.transfer(body["id"])
    assert done["status"] == "completed", done
    for name in ("node_2", "node_3"):
        assert sha256_of(server.data_dir / "storage" / name / "there.bin") == sha256_of(source)

    # Disconnect: back to the configured cluster, the same way.
    status, body = server.call("DELETE", "/api/cluster/disconnect-external")
    assert status == 202, body
    op = server.operation(body["operation"]["id"])
    assert op["status"] == "succeeded", op
    print("disconnect:", op["message"])
    back = server.wait("nodes online on their own cluster again", lambda: online(server), timeout=90)
    assert {n["ray_node_id"] for n in back.values()} == {own_ray_node}
    info = server.get("/api/cluster/external-info")
    assert not info["connected_cluster"]["external"] and info["connected_cluster"]["status"] == "connected"
    # Their files are where they were, and they cast on their own cluster again.
    for name in ("node_1", "node_2", "node_3"):
        assert sha256_of(server.data_dir / "storage" / name / "there.bin") == sha256_of(source)
    status, body = server.call(
        "POST", "/api/v1/transfers/", {"source": "node_2", "file_name": "there.bin", "targets": ["node_1"]}
    )
    assert server.transfer(body["id"])["status"] == "completed"
    status, body = server.call("DELETE", "/api/cluster/disconnect-external")
    assert status == 409, body  # nothing to disconnect now

    # The separate cluster still runs, with the same node, and nothing of CastRay's left on it.
    assert all(n.running for n in separate.nodes)
    after = inspect(separate.address)
    assert after["nodes"] == before["nodes"]
    assert not [a for a in after["actors"] if a.startswith("castnode:")]
    ops = server.get("/api/cluster/operations")["operations"]
    assert [(o["kind"], o["status"]) for o in ops[:2]] == [("disconnect", "succeeded"), ("connect", "succeeded")]
