"""A target the worker gave up on is settled by its receiver's answer to abort (no Ray).

The answer counts the bytes of the abandoned attempt, and a file that was verified and
renamed before the receiver heard turns the failed record into completed, with a note.
"""

from __future__ import annotations

import pytest

from clusters.services import node_mark_down
from nodes.models import Node
from nodes.services import node_create
from transfers.models import Target, Transfer
from transfers.services import target_settle_abort, transfer_create, transfer_finish

pytestmark = pytest.mark.django_db
SHA = "ab" * 32
MIB = 1024 * 1024


def running_cast() -> tuple[Transfer, Target, Target]:
    nodes = [node_create(name=n) for n in ("src", "t1", "t2")]
    Node.objects.update(status=Node.Status.ONLINE)
    transfer = transfer_create(source=nodes[0], file_name="f.bin", targets=nodes[1:])
    Transfer.objects.filter(pk=transfer.pk).update(status=Transfer.Status.RUNNING, size=64 * MIB, sha256=SHA)
    # 5 MiB came in an earlier attempt; progress has reported 3 MiB of this one.
    Target.objects.filter(transfer=transfer).update(
        status=Target.Status.RECEIVING, received_before=5 * MIB, bytes_received=8 * MIB
    )
    transfer.refresh_from_db()
    t1, t2 = transfer.targets.order_by("node__name")
    return transfer, t1, t2


def test_a_file_renamed_before_the_abort_reconciles_the_target_and_the_cast() -> None:
    transfer, t1, t2 = running_cast()
    node_mark_down(node=t2.node, reason="its Ray node x: the host 10.77.0.4 has been unreachable for 5 s")
    transfer_finish(transfer=transfer, results={t1.pk: {"status": "completed", "sha256": SHA}})
    transfer.refresh_from_db()
    assert transfer.status == Transfer.Status.PARTIAL and "unreachable" in transfer.error

    row = {"status": "completed", "sha256": SHA, "bytes_received": 59 * MIB, "bytes_done": 64 * MIB}
    assert target_settle_abort(target_id=t2.pk, row=row) is not None
    t2.refresh_from_db()
    transfer.refresh_from_db()
    assert t2.status == Target.Status.COMPLETED and t2.bytes_done == 64 * MIB
    assert "reconciled to completed" in t2.error and "unreachable" in t2.error
    assert t2.bytes_received == 64 * MIB  # 5 MiB before and 59 MiB in the attempt given up on
    assert transfer.status == Transfer.Status.COMPLETED and transfer.error == ""
    # Settled once: a second answer changes nothing.
    assert target_settle_abort(target_id=t2.pk, row=row) is None


def test_a_stopped_receiver_keeps_the_target_failed_and_counts_its_bytes() -> None:
    _, _, t2 = running_cast()
    node_mark_down(node=t2.node, reason="gone")
    row = {"status": "cancelled", "sha256": "", "bytes_received": 11 * MIB}
    target_settle_abort(target_id=t2.pk, row=row)
    t2.refresh_from_db()
    assert t2.status == Target.Status.FAILED and t2.error.startswith("t2 went offline: gone")
    assert "receiver stopped when told and kept its part" in t2.error
    assert t2.bytes_received == 16 * MIB  # never reset: 5 MiB before, 11 MiB in this attempt
    assert target_settle_abort(target_id=t2.pk, row=row) is None  # settled once


def test_bytes_received_never_go_down() -> None:
    _, _, t2 = running_cast()
    node_mark_down(node=t2.node, reason="gone")
    target_settle_abort(target_id=t2.pk, row={"status": "cancelled", "bytes_received": 1 * MIB})
    t2.refresh_from_db()
    assert t2.bytes_received == 8 * MIB  # progress had reported more of this attempt


def test_a_renamed_file_with_another_digest_is_not_believed() -> None:
    _, _, t2 = running_cast()
    node_mark_down(node=t2.node, reason="gone")
    target_settle_abort(target_id=t2.pk, row={"status": "completed", "sha256": "cd" * 32, "bytes_received": 0})
    t2.refresh_from_db()
    assert t2.status == Target.Status.FAILED


def test_bytes_on_disk_that_no_row_counted_are_counted_and_are_what_a_retry_resumes_from() -> None:
    # The node came back with a new actor: its answer has no row, but the part's record holds
    # 20 MiB, of which progress had reported 8 MiB (5 before this attempt, 3 in it).
    _, _, t2 = running_cast()
    node_mark_down(node=t2.node, reason="gone")
    target_settle_abort(target_id=t2.pk, row={"status": "pending", "bytes_received": 0, "bytes_on_disk": 20 * MIB})
    t2.refresh_from_db()
    assert t2.status == Target.Status.FAILED
    assert t2.bytes_received == 20 * MIB and t2.bytes_done == 20 * MIB
    assert "kept its part (20971520 bytes held)" in t2.error


def test_a_part_record_behind_the_count_never_lowers_it() -> None:
    _, _, t2 = running_cast()
    node_mark_down(node=t2.node, reason="gone")
    row = {"status": "cancelled", "bytes_received": 4 * MIB, "bytes_on_disk": 6 * MIB}
    target_settle_abort(target_id=t2.pk, row=row)
    t2.refresh_from_db()
    assert t2.bytes_received == 9 * MIB  # 5 before + 4 in this attempt; the disk's 6 is no news
    assert t2.bytes_done == 6 * MIB  # but a retry resumes from what the disk holds
