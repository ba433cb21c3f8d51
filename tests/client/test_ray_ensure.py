"""`castray_client.ray.ensure` in a real Ray driver connected to the server's Ray cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import pytest

from tests.helpers import sha256_of, write_random

pytestmark = pytest.mark.ray
MiB = 1024 * 1024

DRIVER = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
from castray_client.ray import ensure
live = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
held = ensure(sys.argv[2], to="all", timeout=120)
print(json.dumps({"live": live, "held": held}))
"""


def run_driver(ray_cluster, server, source: str) -> dict:
    # A driver as a Ray job would run one: its own process, joined to the cluster by address.
    env = {k: v for k, v in ray_cluster.env.items() if k != "PYTHONPATH"}
    env.update({"CASTRAY_URL": server.url, "CASTRAY_TOKEN": server.token, "RAY_AUTH_MODE": "token"})
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, ray_cluster.address, source],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tempfile.gettempdir(),  # not the repository: the driver sees the installed client only
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_ensure_returns_the_ray_nodes_holding_the_file(ray_cluster, server) -> None:
    source = write_random(server.storage("edge-0") / "models" / "weights.bin", 8 * MiB)
    nodes = server.nodes()
    head, worker = nodes["edge-0"]["ray_node_id"], nodes["edge-1"]["ray_node_id"]
    assert head and worker and head != worker

    first = run_driver(ray_cluster, server, "edge-0:models/weights.bin")

    assert sorted(first["live"]) == sorted([head, worker])
    assert sorted(first["held"]) == sorted([head, worker])
    # On the worker's Ray node, the CastRay node ensure chose (edge-1: online there, first by
    # name) holds the same bytes on disk.
    assert sha256_of(server.storage("edge-1") / "models" / "weights.bin") == sha256_of(source)
    casts = server.get("/api/v1/transfers/?search=weights.bin&ordering=id")["results"]
    assert len(casts) == 1 and [r["node"] for r in casts[0]["recipients"]] == ["edge-1"]

    # Again: every Ray node holds it; the server skips the copy that is already there.
    again = run_driver(ray_cluster, server, "edge-0:models/weights.bin")
    assert sorted(again["held"]) == sorted([head, worker])
    casts = server.get("/api/v1/transfers/?search=weights.bin&ordering=id")["results"]
    assert [r["status"] for r in casts[-1]["recipients"]] == ["skipped"]
