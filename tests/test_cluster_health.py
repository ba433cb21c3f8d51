"""The worker's cluster steps against the session's Ray: health, rebinding, run-time config, demo, stats."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from bridge.connection import snapshot
from bridge.worker import Worker
from clusters.models import Cluster, ClusterOperation, NodePlacement, RuntimeConfig
from clusters.services import cluster_active, operation_claim, operation_request, placements_record
from nodes.models import Node
from tests.helpers import finished, sha256_of
from transfers.models import Target, Transfer
from transfers.services import transfer_create

pytestmark = pytest.mark.django_db


def row(node_id: str, *, alive: bool = True, host: str = "h1", label: str = "") -> dict:
    return {
        "node_id": node_id,
        "address": "10.0.0.1",
        "hostname": host,
        "node_manager_port": 1,
        "alive": alive,
        "is_head": False,
        "resources": {},
        "labels": {"castray.io/node": label} if label else {},
        "death_reason": "" if alive else "received SIGKILL",
    }


def test_a_labelled_machine_is_found_again_under_its_new_raylet() -> None:
    worker = Worker(worker_id="w")
    rows = [row("old", alive=False, label="m1"), row("new", label="m1"), row("other", label="m2")]
    assert worker.rebind_candidate("old", "label:m1", rows, "castray.io/node")["node_id"] == "new"
    # Two live raylets claiming the same machine: ambiguous, nobody is moved.
    rows.append(row("twin", label="m1"))
    assert worker.rebind_candidate("old", "label:m1", rows, "castray.io/node") is None


def test_by_host_name_only_a_raylet_that_joined_after_the_loss_counts() -> None:
    worker = Worker(worker_id="w")
    worker.first_seen["sibling"] = 100.0  # was already there: another raylet on the same host
    worker.down["old"] = 200.0
    rows = [row("old", alive=False), row("sibling")]
    assert worker.rebind_candidate("old", "host:h1", rows, "castray.io/node") is None
    worker.first_seen["sibling"] = 250.0  # joined after the old one went down: the machine is back
    assert worker.rebind_candidate("old", "host:h1", rows, "castray.io/node")["node_id"] == "sibling"


def test_operations_are_claimed_once() -> None:
    op = operation_request(kind=ClusterOperation.Kind.CONNECT, address="10.0.0.9:6379")
    assert operation_claim(worker_id="w1").pk == op.pk
    assert operation_claim(worker_id="w2") is None
    op.refresh_from_db()
    assert (op.status, op.worker_id) == ("running", "w1")


@pytest.mark.ray
def test_the_worker_applies_recorded_configuration_and_restores_defaults(worker) -> None:  # type: ignore[no-untyped-def]
    default_fan_out = django_settings.CASTRAY_DEFAULT_FAN_OUT
    RuntimeConfig.objects.create(pk=1, default_fan_out=5, max_active_transfers=3)
    assert worker.before_connect()["config"] == {
        "CASTRAY_DEFAULT_FAN_OUT": 5,
        "CASTRAY_MAX_ACTIVE_TRANSFERS": 3,
    }
    assert worker.config.default_fan_out == 5 and worker.config.max_active_transfers == 3
    # The worker holds the values; the process's settings stay what the environment set.
    assert default_fan_out == django_settings.CASTRAY_DEFAULT_FAN_OUT
    RuntimeConfig.objects.filter(pk=1).update(default_fan_out=None)
    worker.last_control = float("-inf")
    worker.before_connect()
    assert default_fan_out == worker.config.default_fan_out


@pytest.mark.ray
def test_a_dead_ray_node_takes_its_nodes_offline_and_fails_their_part_in_casts(worker, nodes) -> None:  # type: ignore[no-untyped-def]
    src, dst = nodes["node_1"], nodes["node_2"]
    transfer = transfer_create(source=src, file_name="x.bin", targets=[dst])
    Transfer.objects.filter(pk=transfer.pk).update(status=Transfer.Status.RUNNING)
    transfer.targets.update(status=Target.Status.RECEIVING)
    Node.objects.filter(pk=dst.pk).update(ray_node_id="d" * 56)
    rows = [*snapshot()["ray_nodes"], row("d" * 56, alive=False)]
    did = worker.check_health(cluster_active(), rows)
    assert did["down"] == ["node_2"]
    dst.refresh_from_db()
    assert dst.status == Node.Status.OFFLINE
    assert dst.status_detail == f"its Ray node {'d' * 12} at 10.0.0.1 is dead (received SIGKILL)"
    target = transfer.targets.get()
    assert target.status == Target.Status.FAILED and target.error.startswith("node_2 went offline: its Ray node")
    assert dst.pk not in worker.actors and worker.node_held(dst)
    # Marked once: the next heartbeat does not mark it again.
    assert "down" not in worker.check_health(cluster_active(), rows)


@pytest.mark.ray
def test_a_node_pinned_to_a_ray_node_its_cluster_lost_comes_back_by_itself(worker, nodes) -> None:  # type: ignore[no-untyped-def]
    # As after a return to a restarted cluster: CastRay's recorded pin names a Ray node that
    # is no longer in the cluster. The node goes offline with the reason, then Ray places it.
    node = nodes["node_3"]
    ghost = "e" * 56
    Node.objects.filter(pk=node.pk).update(ray_node_id=ghost)
    placements_record(cluster=cluster_active(), rows={node.pk: (ghost, "host:gone")})
    worker.last_nodes = 0
    worker.tick()
    node.refresh_from_db()
    assert node.ray_node_id == "" or node.status != Node.Status.ONLINE
    assert worker.run_until(lambda: Node.objects.get(pk=node.pk).status == Node.Status.ONLINE, timeout=60)
    node.refresh_from_db()
    assert node.ray_node_id not in ("", ghost)
    worker.last_nodes = 0
    worker.tick()  # the next heartbeat records where it runs now
    assert NodePlacement.objects.get(cluster=cluster_active(), node=node).ray_node_id == node.ray_node_id


@pytest.mark.ray
def test_an_operator_pin_to_a_wrong_ray_node_is_left_for_ray_to_report(worker, storage) -> None:  # type: ignore[no-untyped-def]
    Node.objects.create(name="ghost", ray_node_id="ab" * 28)
    assert worker.run_until(lambda: Node.objects.get(name="ghost").status == Node.Status.ERROR, timeout=30)
    assert Node.objects.get(name="ghost").ray_node_id == "ab" * 28


@pytest.mark.ray
def test_stats_are_recorded(worker, nodes) -> None:  # type: ignore[no-untyped-def]
    worker.last_stats = float("-inf")
    worker.last_nodes = 0
    worker.tick()
    stats = Cluster.objects.get(active=True).stats
    assert stats["object_store"]["total_bytes"] > 0
    names = {a["name"].split(":")[1] for a in stats["actors"]["castray"]}
    assert {"node_1", "node_2", "node_3"} <= names
    assert stats["collected_at"]


@pytest.mark.ray
def test_demo_mode_casts_a_random_file_to_up_to_two_nodes(worker, nodes) -> None:  # type: ignore[no-untyped-def]
    RuntimeConfig.objects.create(pk=1, demo_enabled=True, demo_interval=1.0, demo_file_size=200_000)

    def demo_cast() -> Transfer | None:
        return Transfer.objects.filter(file_name__startswith="demo/").first()

    assert worker.run_until(lambda: demo_cast() is not None, timeout=30)
    transfer = demo_cast()
    assert worker.run_until(finished(transfer), timeout=60)
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    assert 1 <= transfer.targets.count() <= 2
    source = Path(transfer.source.storage_root) / transfer.file_name
    assert source.stat().st_size == 200_000
    for target in transfer.targets.select_related("node"):
        assert sha256_of(Path(target.node.storage_root) / transfer.file_name) == sha256_of(source)
    # Switched off, no more demo casts start.
    RuntimeConfig.objects.filter(pk=1).update(demo_enabled=False)
    count = Transfer.objects.count()
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        worker.tick()
        time.sleep(0.05)
    assert Transfer.objects.count() <= count + 1  # at most the one being written when it was switched off


@pytest.mark.ray
def test_a_switch_to_an_unreachable_cluster_fails_and_changes_nothing(worker, nodes) -> None:  # type: ignore[no-untyped-def]
    op = operation_request(kind=ClusterOperation.Kind.CONNECT, address="127.0.0.1:1")
    worker.last_control = float("-inf")
    assert worker.before_connect()["operation"] == "unreachable"
    op.refresh_from_db()
    assert op.status == "failed" and "cannot reach Ray at 127.0.0.1:1" in op.message
    assert "stayed on default" in op.message
    assert worker.connected and cluster_active().name == "default"
    assert Node.objects.online().count() == 3
