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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_fixtures import CastRayServer
from tests.netns import NetnsHosts, tcp_rate, unavailable
from tests.test_multinode import sha256_of, write_random

pytestmark = [pytest.mark.ray, pytest.mark.netns]
HOSTS = ("host-1", "host-2", "host-3")
MIB = 1024 * 1024


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
        net.start_ray(one_by_one=True)
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


def target_of(server: CastRayServer, cast_id: int, node: str) -> dict:
    return next(r for r in server.get(f"/api/v1/transfers/{cast_id}/")["recipients"] if r["node"] == node)


def start_cast(server: CastRayServer, name: str) -> int:
    # A star (fan-out 3): each host receives straight from host-0, so a cut host is nobody's relay.
    status, body = server.call(
        "POST", "/api/v1/transfers/", {"source": "host-0", "file_name": name, "broadcast": True, "fan_out": 3}
    )
    assert status == 201, body
    return int(body["id"])


def test_partitions_pause_or_end_a_target_and_the_record_matches_the_disk(
    hosts: NetnsHosts, server: CastRayServer
) -> None:
    storage = server.data_dir / "storage"
    size = 32 * MIB
    write_random(storage / "host-0" / "p.bin", size)
    want = sha256_of(storage / "host-0" / "p.bin")
    for name in HOSTS:
        hosts.shape(name, rate="40mbit")  # 5 MB/s per host: ~10 s for the file, time to cut it

    # 3 s without a link: shorter than the bound, so the cast only pauses.
    cast_id = start_cast(server, "p.bin")
    server.wait("host-1 receiving", lambda: target_of(server, cast_id, "host-1")["bytes_done"] > 8 * MIB, 60, 0.1)
    hosts.cut("host-1")
    time.sleep(3)  # the partition itself
    assert server.nodes()["host-1"]["status"] == "online"
    hosts.restore("host-1")
    done = server.transfer(cast_id, timeout=120)
    assert done["status"] == "completed", done
    for name in HOSTS:
        assert sha256_of(storage / name / "p.bin") == want

    # 20 s: longer than the bound. The host goes offline as unreachable, its target fails.
    (storage / "host-0" / "p.bin").rename(storage / "host-0" / "q.bin")
    cast_id = start_cast(server, "q.bin")
    server.wait("host-2 receiving", lambda: target_of(server, cast_id, "host-2")["bytes_done"] > 8 * MIB, 60, 0.1)
    hosts.cut("host-2")
    cut_at = time.monotonic()
    node = server.wait("host-2 offline", lambda: _offline(server, "host-2"), timeout=30, interval=0.2)
    print(f"host-2 offline {time.monotonic() - cut_at:.1f} s after its link went down: {node['status_detail']}")
    assert "unreachable" in node["status_detail"] and "refused connections" not in node["status_detail"]
    time.sleep(max(0.0, 20 - (time.monotonic() - cut_at)))  # the rest of the partition
    hosts.restore("host-2")
    done = server.transfer(cast_id, timeout=120)
    by_node = {r["node"]: r for r in done["recipients"]}
    assert by_node["host-1"]["status"] == by_node["host-3"]["status"] == "completed", by_node
    server.wait("host-2 online again", lambda: server.nodes()["host-2"]["status"] == "online", timeout=90)

    # The receiver answers the abort once the host is reachable: stopped (bytes counted), or
    # already renamed (reconciled). Either way the record and the disk then agree, both ways.
    def settled() -> dict | None:
        row = target_of(server, cast_id, "host-2")
        return row if row["status"] == "completed" or "receiver stopped when told" in row["error"] else None

    row = server.wait("host-2's receiver answered", settled, timeout=90, interval=0.5)
    final, part = storage / "host-2" / "q.bin", storage / "host-2" / "q.bin.part"
    print("host-2 after the partition:", row["status"], row["bytes_received"], row["error"])
    assert "unreachable" in row["error"], row
    if row["status"] == "completed":
        assert "reconciled to completed" in row["error"] and sha256_of(final) == want
        return
    assert row["status"] == "failed" and not final.exists() and part.exists(), row
    # What the part's record holds on disk is what the record says is held, and was counted.
    held = row["bytes_done"]
    assert 0 < held < size and held <= row["bytes_received"], row

    # A retry resumes from the chunks host-2 holds.
    status, body = server.call("POST", f"/api/v1/transfers/{cast_id}/retry/")
    assert status in (200, 201), body
    retried = server.transfer(body["id"], timeout=120)
    assert retried["status"] == "completed", retried
    again = next(r for r in retried["recipients"] if r["node"] == "host-2")
    print(f"retry received {again['bytes_received']} of {size} bytes")
    # It resumed: it was sent exactly the chunks the record says it did not hold.
    assert again["bytes_received"] == size - held, (again, row)
    assert sha256_of(final) == want and not part.exists()


def _offline(server: CastRayServer, name: str) -> dict | None:
    node = server.nodes()[name]
    return node if node["status"] == "offline" else None


def test_broadcast_across_hosts_then_a_killed_raylet_and_its_return(hosts: NetnsHosts, server: CastRayServer) -> None:
    # One cluster for both (starting four raylets is most of a test's time on a loaded box).
    nodes = server.nodes()
    # Each host's actor listens on its own address.
    for host in hosts.hosts:
        assert nodes[host.name]["address"] == host.address, nodes[host.name]
    storage = server.data_dir / "storage"
    write_random(storage / "host-0" / "wide.bin", 12 * MIB)
    status, body = server.call(
        "POST", "/api/v1/transfers/", {"source": "host-0", "file_name": "wide.bin", "broadcast": True}
    )
    assert status == 201, body
    done = server.transfer(body["id"])
    assert done["status"] == "completed", done
    want = sha256_of(storage / "host-0" / "wide.bin")
    for name in HOSTS:
        assert sha256_of(storage / name / "wide.bin") == want

    killed_at = time.monotonic()
    hosts.kill_raylet("host-3")
    node = server.wait("host-3 offline", lambda: _offline(server, "host-3"), timeout=40, interval=0.2)
    took = time.monotonic() - killed_at
    print(f"host-3 offline {took:.1f} s after its raylet was killed: {node['status_detail']}")
    # The documented bound: max(heartbeat, CASTRAY_NODE_DOWN_AFTER_SECONDS / 6) = 5 s of refusals
    # (or Ray's own verdict, "dead"), plus heartbeats and a loaded machine's slack.
    assert took <= 20, took
    detail = node["status_detail"]
    assert "refused connections" in detail or "is dead" in detail, detail
    assert "unreachable" not in detail
    hosts.start_raylet("host-3")
    if not hosts.wait_raylet("host-3"):  # a loaded machine can miss `ray start`'s 30 s to register
        hosts.start_raylet("host-3")
    server.wait("host-3 online again", lambda: server.nodes()["host-3"]["status"] == "online", timeout=90)


def test_a_shaped_link_runs_near_its_rate_both_ways() -> None:
    _require_netns()
    net = NetnsHosts(2, name="nsrate")
    try:
        net.up()
        net.shape("host-1", rate="16mbit", burst="32kb", latency="50ms")  # 2 MB/s
        slow, fast = net.host("host-1"), net.host("host-2")
        into = tcp_rate(slow.netns, slow.address, None, 3_000_000)
        out = tcp_rate(None, net.head_address, slow.netns, 3_000_000)
        free = tcp_rate(fast.netns, fast.address, None, 3_000_000)
        print(f"shaped 2 MB/s: in {into / 1e6:.2f} MB/s, out {out / 1e6:.2f} MB/s; unshaped {free / 1e6:.0f} MB/s")
        for rate in (into, out):
            assert 1.3e6 < rate < 2.4e6, rate
        assert free > 4 * into
    finally:
        net.down()
    assert net.leftovers() == []
