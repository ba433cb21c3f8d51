"""Multicast and broadcast through relay trees, failures inside a tree, resume, skip and caps."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dataplane.contract import Caps
from nodes.models import Node, NodeGroup
from tests.helpers import finished, random_file, receiving_rate, sha256_of
from transfers.models import Target, Transfer
from transfers.services import transfer_cancel, transfer_create

pytestmark = [pytest.mark.ray, pytest.mark.django_db]
MiB = 1024 * 1024


def apply_caps(worker, node: Node) -> None:  # type: ignore[no-untyped-def]
    """Push a node's caps to its actor now (the worker also does it with every heartbeat)."""
    import ray

    node.refresh_from_db()
    ray.get(worker.actors[node.pk].ping.remote(Caps(node.egress_cap, node.ingress_cap)))


@pytest.mark.parametrize("fan_out", [1, 2])
def test_broadcast_to_six_nodes_delivers_everywhere_with_one_copy_from_the_source(worker, make_nodes, fan_out) -> None:
    nodes = make_nodes(7)
    source = nodes[0]
    path = random_file(source, "b.bin", 3 * MiB + 123)
    transfer = transfer_create(source=source, file_name="b.bin", broadcast=True, fan_out=fan_out)
    assert worker.run_until(finished(transfer), timeout=120)

    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    assert transfer.cast_type == Transfer.Cast.BROADCAST
    assert transfer.targets.count() == 6
    digest = sha256_of(path)
    for node in nodes[1:]:
        assert sha256_of(Path(node.storage_root) / "b.bin") == digest, node.name
    # The source sends one copy; the other five come from relays.
    assert transfer.source_bytes_sent == path.stat().st_size * (1 if fan_out == 1 else 2)
    assert transfer.relay_bytes_sent == path.stat().st_size * (5 if fan_out == 1 else 4)
    parents = dict(transfer.targets.values_list("node__name", "parent__name"))
    edges = {child: parent for parent, child in transfer.tree["edges"]}
    assert parents == edges
    assert transfer.tree["fan_out"] == fan_out
    assert sum(1 for p in parents.values() if p == source.name) == fan_out


def test_multicast_to_a_group(worker, make_nodes) -> None:
    nodes = make_nodes(7)
    group = NodeGroup.objects.create(name="racks")
    group.nodes.set(nodes[1:])
    path = random_file(nodes[0], "g.bin", 2 * MiB)
    transfer = transfer_create(source=nodes[0], file_name="g.bin", group=group, fan_out=2)
    assert worker.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    assert transfer.cast_type == Transfer.Cast.MULTICAST and transfer.group == group
    for node in nodes[1:]:
        assert sha256_of(Path(node.storage_root) / "g.bin") == sha256_of(path)


def test_a_relay_killed_mid_cast_leaves_the_others_complete_and_the_cast_partial(worker, make_nodes) -> None:
    import ray

    # Caps slow the cast down enough to kill a relay in the middle of it.
    nodes = make_nodes(7, egress_cap=4 * MiB)
    for node in nodes:
        apply_caps(worker, node)
    source, relay = nodes[0], nodes[1]
    size = 12 * MiB
    path = random_file(source, "k.bin", size)
    transfer = transfer_create(source=source, file_name="k.bin", targets=nodes[1:], fan_out=2)

    def relay_half_way() -> bool:
        target = transfer.targets.get(node=relay)
        return target.bytes_done > 2 * MiB

    assert worker.run_until(relay_half_way, timeout=60)
    assert transfer.targets.get(node=relay).parent_id == source.pk
    children = list(transfer.targets.filter(parent=relay).values_list("node__name", flat=True))
    assert children, "the killed node must have been relaying to someone"
    ray.kill(worker.actors[relay.pk], no_restart=True)
    killed_at = time.monotonic()

    assert worker.run_until(finished(transfer), timeout=120)
    assert time.monotonic() - killed_at < 60
    assert transfer.status == Transfer.Status.PARTIAL
    dead = transfer.targets.get(node=relay)
    assert dead.status == Target.Status.FAILED
    assert "link to c1 failed" in dead.error
    assert "c1" in transfer.error
    digest = sha256_of(path)
    for node in nodes[2:]:
        target = transfer.targets.get(node=node)
        assert target.status == Target.Status.COMPLETED, (node.name, target.error)
        assert sha256_of(Path(node.storage_root) / "k.bin") == digest
    # The orphans were re-parented and resumed: none received the whole file twice.
    for name in children:
        target = transfer.targets.get(node__name=name)
        assert target.attempts == 2 and "re-parented" in target.error or target.error == ""
        assert target.bytes_received <= size
    assert not (Path(relay.storage_root) / "k.bin").exists()
    assert len(transfer.tree["rounds"]) >= 1


def test_an_interrupted_target_resumes_and_receives_only_the_missing_chunks(worker, make_nodes) -> None:
    nodes = make_nodes(2)
    source, target_node = nodes
    Node.objects.filter(pk=target_node.pk).update(ingress_cap=2 * MiB)
    apply_caps(worker, target_node)
    size = 8 * MiB
    path = random_file(source, "r.bin", size)
    first = transfer_create(source=source, file_name="r.bin", targets=[target_node])

    def some_arrived() -> bool:
        return first.targets.get().bytes_done >= 2 * MiB

    assert worker.run_until(some_arrived, timeout=60)
    assert transfer_cancel(transfer=first)
    worker.run_until(lambda: not worker.running, timeout=30)
    time.sleep(0.5)  # the receiver notices the cancel at its next chunk and keeps its record
    assert not (Path(target_node.storage_root) / "r.bin").exists()
    assert (Path(target_node.storage_root) / "r.bin.part").exists()
    Node.objects.filter(pk=target_node.pk).update(ingress_cap=None)
    apply_caps(worker, target_node)

    second = transfer_create(source=source, file_name="r.bin", targets=[target_node])
    assert worker.run_until(finished(second), timeout=60)
    assert second.status == Transfer.Status.COMPLETED, second.error
    target = second.targets.get()
    assert 0 < target.bytes_received <= size - 2 * MiB
    assert second.source_bytes_sent == target.bytes_received
    assert sha256_of(Path(target_node.storage_root) / "r.bin") == sha256_of(path)


def test_a_cancelled_cast_records_what_its_source_sent_and_its_target_received(worker, make_nodes) -> None:
    source, target_node = make_nodes(2)
    Node.objects.filter(pk=target_node.pk).update(ingress_cap=2 * MiB)
    apply_caps(worker, target_node)
    random_file(source, "c.bin", 8 * MiB)
    cast = transfer_create(source=source, file_name="c.bin", targets=[target_node])
    assert worker.run_until(lambda: cast.targets.get().bytes_done >= 2 * MiB, timeout=60)
    assert transfer_cancel(transfer=cast)
    # The worker tells the actors, waits for the round to come back, then records its bytes.
    assert worker.run_until(lambda: not worker.running, timeout=60)

    cast.refresh_from_db()
    target = cast.targets.get()
    assert cast.status == Transfer.Status.CANCELLED
    assert target.status == Target.Status.CANCELLED
    assert 2 * MiB <= target.bytes_received < 8 * MiB
    assert 2 * MiB <= cast.source_bytes_sent < 8 * MiB
    assert cast.rate is None
    assert not (Path(target_node.storage_root) / "c.bin").exists()


def test_casting_a_finished_cast_again_is_a_no_op_for_targets_that_have_the_file(worker, make_nodes) -> None:
    nodes = make_nodes(4)
    random_file(nodes[0], "again.bin", MiB)
    first = transfer_create(source=nodes[0], file_name="again.bin", targets=nodes[1:])
    assert worker.run_until(finished(first), timeout=60)
    again = transfer_create(source=nodes[0], file_name="again.bin", targets=nodes[1:])
    assert worker.run_until(finished(again), timeout=60)
    assert again.status == Transfer.Status.COMPLETED
    assert set(again.targets.values_list("status", flat=True)) == {"skipped"}
    assert again.source_bytes_sent == 0 and again.relay_bytes_sent == 0
    assert set(again.targets.values_list("bytes_received", flat=True)) == {0}


@pytest.mark.parametrize("side", ["egress_cap", "ingress_cap"])
def test_caps_hold_the_rate_within_ten_percent(worker, make_nodes, side) -> None:
    nodes = make_nodes(2)
    cap = 4 * MiB
    capped = nodes[0] if side == "egress_cap" else nodes[1]
    Node.objects.filter(pk=capped.pk).update(**{side: cap})
    apply_caps(worker, capped)
    size = 16 * MiB
    random_file(nodes[0], "cap.bin", size)
    transfer = transfer_create(source=nodes[0], file_name="cap.bin", targets=[nodes[1]])
    assert worker.run_until(finished(transfer), timeout=60)
    assert transfer.status == Transfer.Status.COMPLETED
    rate = receiving_rate(transfer.targets.get())
    assert 0.9 * cap <= rate <= 1.1 * cap, f"{rate / MiB:.2f} MiB/s against a cap of {cap / MiB} MiB/s"
