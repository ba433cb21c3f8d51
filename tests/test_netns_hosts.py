"""Hosts as network namespaces (tests/netns.py): CastRay across machines with their own addresses.

A Ray head on a bridge in the root namespace (node host-0, the source) and three hosts, each a
network namespace with its own address and raylet (host-1..host-3). CastRay runs as
`manage.py castray_up` in the root namespace, adopts the four Ray nodes and is driven over HTTP.
Every test checks that teardown left no process, namespace or link behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_fixtures import CastRayServer
from tests.netns import NetnsHosts, unavailable
from tests.test_multinode import sha256_of, write_random

pytestmark = [pytest.mark.ray, pytest.mark.netns]
HOSTS = ("host-1", "host-2", "host-3")


def _require_netns() -> None:
    why = unavailable()
    if why:
        # CI has root: a skip there would hide that these tests never ran.
        assert os.environ.get("CI") != "true", f"network namespaces must work in CI: {why}"
        pytest.skip(why)


@pytest.fixture
def hosts() -> Iterator[NetnsHosts]:
    _require_netns()
    net = NetnsHosts(len(HOSTS))
    try:
        net.up()
        net.start_ray()
        yield net
    finally:
        net.down()
    assert net.leftovers() == [], "teardown left these behind"


@pytest.fixture
def server(hosts: NetnsHosts, tmp_path: Path) -> Iterator[CastRayServer]:
    castray = CastRayServer(tmp_path / "data", hosts.cluster.address, {"CASTRAY_ADOPT_RAY_NODES": "1"})
    castray.manage("castray_up", "--setup-only")
    castray.manage("shell", "-c", "from nodes.models import Node; Node.objects.update(enabled=False)")
    try:
        castray.start()
        castray.wait(
            "every host adopted and online",
            lambda: all(castray.nodes().get(n, {}).get("status") == "online" for n in ("host-0", *HOSTS)),
            timeout=150,
        )
        yield castray
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{hosts.cluster.logs()}") from None
    finally:
        castray.stop()


def test_broadcast_across_namespace_hosts(hosts: NetnsHosts, server: CastRayServer) -> None:
    nodes = server.nodes()
    # Each host's actor listens on its own address.
    for host in hosts.hosts:
        assert nodes[host.name]["address"] == host.address, nodes[host.name]
    storage = server.data_dir / "storage"
    write_random(storage / "host-0" / "wide.bin", 12 * 1024 * 1024)
    status, body = server.call(
        "POST", "/api/v1/transfers/", {"source": "host-0", "file_name": "wide.bin", "broadcast": True}
    )
    assert status == 201, body
    done = server.transfer(body["id"])
    assert done["status"] == "completed", done
    want = sha256_of(storage / "host-0" / "wide.bin")
    for name in HOSTS:
        assert sha256_of(storage / name / "wide.bin") == want


def test_teardown_leaves_nothing_even_after_a_failure() -> None:
    _require_netns()
    net = NetnsHosts(2, name="nsdown")
    stray = None
    try:
        net.up()
        # A process in a host's namespace that names nothing of ours: only `ip netns pids` finds it.
        stray = subprocess.Popen(["ip", "netns", "exec", net.hosts[0].netns, "sleep", "600"])
        assert net.leftovers(wait=0)
        raise RuntimeError("the test fails half-way")
    except RuntimeError:
        pass
    finally:
        net.down()
    assert stray is not None and stray.wait(timeout=10) == -signal.SIGKILL
    assert net.leftovers() == []
    net.down()  # twice is harmless
