"""One slow node does not slow the others, and a cast is shown against its lower bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import finished, random_file, receiving_rate, sha256_of
from tests.test_casting import apply_caps
from transfers.models import Target, Transfer
from transfers.services import transfer_create

pytestmark = [pytest.mark.ray, pytest.mark.django_db]
MiB = 1024 * 1024
C = 4 * MiB


def test_a_slow_child_does_not_slow_its_parent_or_siblings(worker, make_nodes, client, root_user) -> None:
    source, relay, fast1, fast2, slow = make_nodes(5, egress_cap=C, ingress_cap=C)
    # The relay can feed three children; the planner puts all three under it.
    for node, egress, ingress in ((relay, 3 * C, C), (slow, C // 4, C // 4)):
        type(node).objects.filter(pk=node.pk).update(egress_cap=egress, ingress_cap=ingress)
    for node in (source, relay, fast1, fast2, slow):
        apply_caps(worker, node)
    size = 16 * MiB
    path = random_file(source, "s.bin", size)
    transfer = transfer_create(source=source, file_name="s.bin", targets=[slow, fast1, relay, fast2])
    assert worker.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    assert {child: parent for parent, child in transfer.tree["edges"]} == {
        relay.name: source.name,
        fast1.name: relay.name,
        fast2.name: relay.name,
        slow.name: relay.name,
    }
    rows = {t.node.name: t for t in transfer.targets.select_related("node")}
    assert receiving_rate(rows[slow.name]) <= C / 4 * 1.15  # its caps hold
    rates = {node.name: receiving_rate(rows[node.name]) for node in (relay, fast1, fast2)}
    for node in (relay, fast1, fast2):
        assert rates[node.name] <= C * 1.15, (node.name, rates[node.name] / MiB)  # its caps hold
        assert rows[node.name].finished_at < rows[slow.name].finished_at
    if not all(rate == pytest.approx(C, rel=0.15) for rate in rates.values()):
        # A machine too busy to carry the caps: the reference is the same cast without the
        # slow child, in this run. Held back by the slow child the others would be at a
        # quarter of it.
        alone = transfer_create(source=source, file_name="s.bin", targets=[fast1, relay, fast2], dest_name="r.bin")
        assert worker.run_until(finished(alone), timeout=120)
        reference = {t.node.name: receiving_rate(t) for t in alone.targets.select_related("node")}
        for name, rate in rates.items():
            assert rate == pytest.approx(reference[name], rel=0.15), (name, rate / MiB, reference[name] / MiB)
    for node in (relay, fast1, fast2, slow):
        assert sha256_of(Path(node.storage_root) / "s.bin") == sha256_of(path)

    # The bounds stored and shown are the formula's for these caps.
    ups = C + 3 * C + C + C + C / 4
    assert transfer.bound_seconds == pytest.approx(max(size / C, size / (C / 4), 4 * size / ups))
    assert rows[fast1.name].bound_seconds == pytest.approx(size / C)
    assert rows[slow.name].bound_seconds == pytest.approx(size / (C / 4))
    assert all(t.status == Target.Status.COMPLETED and t.vs_bound for t in rows.values())
    client.force_login(root_user)
    page = client.get(f"/transfers/{transfer.pk}/").content.decode()
    assert "Against the bound" in page and "Copies from source" in page and "Efficiency" not in page
    assert f"{transfer.vs_bound:.2f}×" in page
    body = client.get(f"/api/v1/transfers/{transfer.pk}/").json()
    assert body["bound_seconds"] == pytest.approx(transfer.bound_seconds)
    assert body["vs_bound"] == pytest.approx(transfer.vs_bound)
    by_node = {r["node"]: r for r in body["recipients"]}
    assert by_node[slow.name]["bound_seconds"] == pytest.approx(size / (C / 4))
    assert by_node[fast1.name]["vs_bound"] == pytest.approx(rows[fast1.name].vs_bound)


def test_a_lagging_target_is_moved_to_the_source_and_receives_no_chunk_twice(worker, make_nodes) -> None:
    source, relay, leaf = make_nodes(3, egress_cap=C, ingress_cap=C)
    # The relay takes the file in at C but sends at C/8: its child lags far behind what it could take.
    type(relay).objects.filter(pk=relay.pk).update(egress_cap=C // 8)
    for node in (source, relay, leaf):
        apply_caps(worker, node)
    size = 16 * MiB
    path = random_file(source, "m.bin", size)
    transfer = transfer_create(source=source, file_name="m.bin", targets=[relay, leaf], fan_out=1)
    assert worker.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    assert transfer.tree["edges"] == [[source.name, relay.name], [relay.name, leaf.name]]
    rows = {t.node_id: t for t in transfer.targets.all()}
    # The relay whose child was moved completes; the child finished from the source, in one round,
    # well before the relay alone could have fed it (size / (C/8) = 32 s).
    assert rows[relay.pk].status == Target.Status.COMPLETED
    assert rows[leaf.pk].status == Target.Status.COMPLETED and rows[leaf.pk].parent_id == source.pk
    assert rows[leaf.pk].attempts == transfer.attempts
    assert rows[leaf.pk].duration < size / (C / 8) / 2
    # Its two receives together took in the file exactly once.
    assert rows[leaf.pk].bytes_received == size
    assert sha256_of(Path(leaf.storage_root) / "m.bin") == sha256_of(path)
