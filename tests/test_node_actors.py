"""Node actors follow their node: a moved storage directory gets a new actor, and in the
one-machine default (a local Ray started by CastRay) the data-plane ports listen on loopback."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from nodes.models import Node
from tests.helpers import finished, random_file, sha256_of
from transfers.models import Transfer
from transfers.services import transfer_create

pytestmark = [pytest.mark.ray, pytest.mark.django_db]
MiB = 1024 * 1024


def test_a_cast_after_a_storage_move_lands_in_the_new_directory(worker, nodes, staff_api, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    response = staff_api.patch("/api/v1/nodes/node_2/", {"storage_dir": str(moved)}, format="json")
    assert response.status_code == 200, response.json()
    old_pid = nodes["node_2"].actor_pid
    assert worker.run_until(
        lambda: Node.objects.filter(name="node_2", status=Node.Status.ONLINE).exclude(actor_pid=old_pid).exists(),
        timeout=60,
    ), Node.objects.filter(name="node_2").values_list("status", "status_detail").first()

    path = random_file(nodes["node_1"], "m.bin", 1024 * 1024)
    transfer = transfer_create(source=nodes["node_1"], file_name="m.bin", targets=[nodes["node_2"]])
    assert worker.run_until(finished(transfer), timeout=60)
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    assert sha256_of(moved / "m.bin") == sha256_of(path)
    assert not (Path(nodes["node_1"].storage_root).parent / "node_2" / "m.bin").exists()


def test_actors_listen_on_loopback_when_castray_started_ray_itself(worker, nodes) -> None:
    assert {n.address for n in Node.objects.filter(name__in=nodes)} == {"127.0.0.1"}


def _thread_nices(pid: int) -> set[int]:
    nices = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            nices.add(os.getpriority(os.PRIO_PROCESS, int(tid)))
        except OSError:
            continue  # ended meanwhile
    return nices


def test_actors_on_the_workers_host_give_the_cpu_to_the_control_plane(worker, nodes, settings) -> None:
    # Every thread, the data plane's included, at CASTRAY_LOCAL_NODE_NICE: the server's API
    # and feed come first on a shared host (castray_bench load).
    node = Node.objects.get(name="node_1")
    random_file(nodes["node_1"], "n.bin", 1024 * 1024)
    transfer = transfer_create(source=nodes["node_1"], file_name="n.bin", targets=[nodes["node_2"]])
    assert worker.run_until(finished(transfer), timeout=60)
    assert _thread_nices(node.actor_pid) == {settings.CASTRAY_LOCAL_NODE_NICE} == {10}


def _named_actors() -> set[str]:
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}


def test_a_starting_worker_ends_actors_an_earlier_run_left_and_a_stopping_one_ends_its_own(
    worker, db, tmp_path: Path
) -> None:
    import ray
    from django.conf import settings

    from dataplane.actor import CastNode
    from nodes.services import node_create

    leftover = "castnode:gone:0123456789"
    ghost = (
        ray.remote(CastNode)
        .options(name=leftover, namespace=settings.CASTRAY_RAY_NAMESPACE, lifetime="detached", num_cpus=0)
        .remote("gone", str(tmp_path / "gone"), b"secret")
    )
    ray.get(ghost.ping.remote())
    node_create(name="node_1")
    assert worker.run_until(lambda: Node.objects.online().count() == 1, timeout=60)
    assert leftover not in _named_actors()
    kept = worker.actor_names[Node.objects.get().pk]
    assert kept in _named_actors()

    worker.shutdown()
    deadline = time.monotonic() + 10
    while kept in _named_actors() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kept not in _named_actors()


def test_the_worker_expires_parts_that_no_cast_will_resume(worker, nodes, settings) -> None:
    import ray

    root = Path(nodes["node_2"].storage_root)
    parts = {name: root / f"{name}.part" for name in ("old.bin", "resumed.bin", "fresh.bin")}
    for path in parts.values():
        path.write_bytes(b"part")
    for name in ("old.bin", "resumed.bin"):
        os.utime(parts[name], (time.time() - 7200, time.time() - 7200))
    random_file(nodes["node_1"], "resumed.bin", 10)
    transfer_create(source=nodes["node_1"], file_name="resumed.bin", targets=[nodes["node_2"]])  # queued
    settings.CASTRAY_PART_MAX_AGE = 3600

    ray.get(worker.expire_parts())
    assert {name for name, path in parts.items() if path.exists()} == {"resumed.bin", "fresh.bin"}


def test_a_receiver_killed_mid_file_goes_out_of_online_and_the_retry_resumes(worker, make_nodes, settings) -> None:
    import ray

    from dataplane.contract import Caps

    source, target_node = make_nodes(2)
    ray.get(worker.actors[target_node.pk].ping.remote(Caps(None, 8 * MiB)))  # slow enough to kill it midway
    size = 32 * MiB
    path = random_file(source, "k.bin", size)
    first = transfer_create(source=source, file_name="k.bin", targets=[target_node])
    # No heartbeat meanwhile: only the cast itself can tell that the actor died.
    settings.CASTRAY_HEARTBEAT_SECONDS = 3600
    worker.last_nodes = time.monotonic()
    assert worker.run_until(lambda: first.targets.get().bytes_done >= 12 * MiB, timeout=60)
    target_node.refresh_from_db()
    os.kill(target_node.actor_pid, signal.SIGKILL)
    assert worker.run_until(finished(first), timeout=60)
    assert first.targets.get().status == "failed"
    target_node.refresh_from_db()
    assert target_node.status != Node.Status.ONLINE, "a node whose actor died still shows online"

    settings.CASTRAY_HEARTBEAT_SECONDS = 0.5
    dead_pid = target_node.actor_pid
    assert worker.run_until(
        lambda: Node.objects.filter(pk=target_node.pk, status=Node.Status.ONLINE).exclude(actor_pid=dead_pid).exists(),
        timeout=60,
    )
    second = transfer_create(source=source, file_name="k.bin", targets=[target_node])
    assert worker.run_until(finished(second), timeout=60)
    assert second.status == Transfer.Status.COMPLETED, second.error
    assert 0 < second.targets.get().bytes_received < size
    assert sha256_of(Path(target_node.storage_root) / "k.bin") == sha256_of(path)
