"""The worker against a real Ray: recovery after a killed worker, and a Ray it cannot reach."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from bridge.worker import Worker
from clusters.models import Cluster
from clusters.services import cluster_active
from nodes.models import Node
from tests.helpers import finished, random_file, sha256_of
from transfers.models import Target, Transfer
from transfers.services import transfer_create

pytestmark = [pytest.mark.ray, pytest.mark.django_db]


def test_it_recovers_a_transfer_left_running_by_a_killed_worker(worker, nodes) -> None:
    src, dst = nodes["node_1"], nodes["node_2"]
    path = random_file(src, "big.bin", 16 * 1024 * 1024)
    transfer = transfer_create(source=src, file_name="big.bin", targets=[dst])

    # The first worker claims the cast and starts it on the actors, then dies: it never
    # ticks again, never writes a result, and its lease stops being renewed.
    def started() -> bool:
        transfer.refresh_from_db()
        return transfer.status == Transfer.Status.RUNNING and transfer.attempts == 1

    assert worker.run_until(started)
    assert transfer.lease_owner == "test-worker"
    Transfer.objects.filter(pk=transfer.pk).update(lease_expires=timezone.now() - timedelta(seconds=1))

    second = Worker(worker_id="second-worker")
    assert second.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    assert transfer.attempts == 2  # recovered once, run once more
    target = transfer.targets.get()
    assert target.status in (Target.Status.COMPLETED, Target.Status.SKIPPED)
    assert sha256_of(Path(dst.storage_root) / "big.bin") == sha256_of(path)
    assert not (Path(dst.storage_root) / "big.bin.part").exists()
    # Nothing is left to recover: the cast was picked up exactly once.
    assert second.recover() == []


def test_a_recovered_cast_keeps_the_bytes_its_first_attempt_moved(worker, nodes) -> None:
    import ray

    from dataplane.contract import Caps

    src, dst = nodes["node_1"], nodes["node_2"]
    ray.get(worker.actors[dst.pk].ping.remote(Caps(None, 8 * 1024 * 1024)))
    random_file(src, "moved.bin", 16 * 1024 * 1024)
    transfer = transfer_create(source=src, file_name="moved.bin", targets=[dst])
    # The first worker dies with 8 MiB moved: no result of its attempt is ever written.
    assert worker.run_until(lambda: transfer.targets.get().bytes_done >= 8 * 1024 * 1024, timeout=60)
    Transfer.objects.filter(pk=transfer.pk).update(lease_expires=timezone.now() - timedelta(seconds=1))

    second = Worker(worker_id="second-worker")
    assert second.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    target = transfer.targets.get()
    assert target.bytes_received >= 8 * 1024 * 1024, (target.status, target.bytes_received)


def test_when_ray_is_unreachable_the_api_answers_and_queued_work_waits(ray_session, storage, api) -> None:
    import ray

    cluster = cluster_active()
    cluster.address = "127.0.0.1:1"  # nothing listens there
    cluster.save()
    worker = Worker(worker_id="degraded-worker")
    assert worker.tick() == {"connected": False}

    cluster.refresh_from_db()
    assert cluster.status == Cluster.Status.DEGRADED
    assert "cannot reach Ray at 127.0.0.1:1" in cluster.last_error
    body = api.get("/api/v1/clusters/").json()["results"][0]
    assert body["status"] == "degraded" and "127.0.0.1:1" in body["last_error"]
    health = api.get("/health").json()
    assert health["live"] is True and health["checks"]["ray"]["ok"] is False

    # Nodes and casts can still be recorded; the cast waits in the queue.
    src = Node.objects.create(name="node_1")
    dst = Node.objects.create(name="node_2")
    path = random_file(src, "wait.bin", 300_000)
    response = api.post(
        "/api/v1/transfers/", {"source": "node_1", "file_name": "wait.bin", "targets": ["node_2"]}, format="json"
    )
    assert response.status_code == 201
    transfer = Transfer.objects.get(pk=response.json()["id"])
    worker.next_connect = 0
    worker.tick()
    transfer.refresh_from_db()
    assert transfer.status == Transfer.Status.QUEUED

    # The cluster becomes reachable (the operator points CastRay at the live one): the
    # worker connects on its next try and the queued cast runs.
    cluster.address = ray.get_runtime_context().gcs_address
    cluster.save()
    worker.next_connect = 0
    try:
        assert worker.run_until(finished(transfer), timeout=120)
        cluster.refresh_from_db()
        assert cluster.status == Cluster.Status.CONNECTED and cluster.last_error == ""
        assert transfer.status == Transfer.Status.COMPLETED, transfer.error
        assert sha256_of(Path(dst.storage_root) / "wait.bin") == sha256_of(path)
    finally:
        for node_id in list(worker.actors):
            worker.stop_actor(node_id)


def test_a_node_whose_actor_cannot_be_placed_shows_the_reason(worker, storage) -> None:
    # Pinned to a Ray node that does not exist: Ray can never place its actor.
    Node.objects.create(name="ghost", ray_node_id="ab" * 28)

    def reported() -> bool:
        return Node.objects.get(name="ghost").status == Node.Status.ERROR

    assert worker.run_until(reported, timeout=30)
    assert "NodeAffinitySchedulingStrategy doesn't exist" in Node.objects.get(name="ghost").status_detail
