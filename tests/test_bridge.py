"""The worker's steps that need no Ray: its run-time configuration, its one-query poll, its writes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from bridge.aborts import GiveUp
from bridge.config import RunConfig
from bridge.running import Running
from bridge.worker import Worker
from clusters.models import NodeFileRequest, RuntimeConfig
from dataplane.contract import FileInfo
from nodes.services import node_create
from transfers.models import Target, Transfer
from transfers.services import transfer_add_round, transfer_create

pytestmark = pytest.mark.django_db


def test_run_config_is_the_settings_with_the_recorded_values_over_them() -> None:
    defaults = RunConfig.from_settings()
    assert defaults.chunk_size == settings.CASTRAY_CHUNK_SIZE
    record = RuntimeConfig(pk=1, default_fan_out=4, demo_enabled=True)
    config = RunConfig.load(record)
    assert (config.default_fan_out, config.demo_enabled) == (4, True)
    assert config.chunk_size == defaults.chunk_size  # not recorded: the environment's value
    assert config.changes(defaults) == {"CASTRAY_DEFAULT_FAN_OUT": 4, "CASTRAY_DEMO_MODE": True}
    assert RunConfig.load(None) == defaults


def test_poll_reads_every_running_cast_in_one_query(storage, django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    source, target = node_create(name="a"), node_create(name="b")
    worker = Worker(worker_id="w")
    for _ in range(3):
        transfer = transfer_create(source=source, file_name="f.bin", targets=[target])
        # Taken over by another worker: this one lets go without asking Ray anything.
        Transfer.objects.filter(pk=transfer.pk).update(status=Transfer.Status.RUNNING, lease_owner="other")
        worker.running[transfer.pk] = Running(transfer.pk, "cast", ref=None)
    worker.running[10**9] = Running(10**9, "cast", ref=None)  # deleted meanwhile
    with django_assert_num_queries(1):
        finished = worker.poll()
    assert len(finished) == 4 and not worker.running


def test_a_cast_with_no_target_left_to_serve_finishes_without_asking_ray(storage) -> None:  # type: ignore[no-untyped-def]
    # Its only target's node is offline (it never answered): the round has nobody to send to.
    source, target = node_create(name="a"), node_create(name="b")
    transfer = transfer_create(source=source, file_name="f.bin", targets=[target])
    worker = Worker(worker_id="w")
    run = worker.running[transfer.pk] = Running(transfer.pk, "info", ref=None, info=FileInfo("f.bin", 1, "0" * 64))
    assert worker.launch(run, transfer) == 0
    transfer.refresh_from_db()
    assert transfer.status == Transfer.Status.FAILED and not worker.running
    assert transfer.targets.get().status == Target.Status.FAILED
    assert transfer.targets.get().error.startswith("target node b is offline")


def test_a_repair_round_is_recorded_and_published(storage, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    source, target = node_create(name="a"), node_create(name="b")
    transfer = transfer_create(source=source, file_name="f.bin", targets=[target])
    Transfer.objects.filter(pk=transfer.pk).update(tree={"root": "a", "edges": [["a", "b"]]})
    transfer.refresh_from_db()
    with django_capture_on_commit_callbacks() as sent:
        transfer_add_round(transfer=transfer, tree={"root": "a", "edges": []})
    transfer.refresh_from_db()
    assert transfer.tree == {"root": "a", "edges": [["a", "b"]], "rounds": [{"root": "a", "edges": []}]}
    assert len(sent) == 1  # the transfer's event


def test_sweeping_the_spool_expires_old_fetches_and_deletes_their_files(storage, tmp_path: Path) -> None:
    node = node_create(name="a")
    old_file, new_file = tmp_path / "old.bin", tmp_path / "new.bin"
    old_file.write_bytes(b"x")
    new_file.write_bytes(b"y")
    done = {"node": node, "op": NodeFileRequest.Op.FETCH, "name": "f.bin", "status": NodeFileRequest.Status.DONE}
    old = NodeFileRequest.objects.create(
        **done, spool_path=str(old_file), finished_at=timezone.now() - timedelta(hours=2)
    )
    new = NodeFileRequest.objects.create(**done, spool_path=str(new_file), finished_at=timezone.now())
    assert Worker(worker_id="w").sweep_spool() == 1
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.status == NodeFileRequest.Status.EXPIRED and not old_file.exists()
    assert new.status == NodeFileRequest.Status.DONE and new_file.exists()


class Handle:
    """A node's actor as the worker calls it: records `forget` calls."""

    def __init__(self, calls: list[tuple[str, int]], name: str) -> None:
        self.forget = self
        self.calls, self.name = calls, name

    def remote(self, transfer_id: int) -> None:
        self.calls.append((self.name, transfer_id))


def test_a_cast_is_forgotten_only_once_its_aborts_are_answered() -> None:
    # forget drops the receivers' progress; before a pending abort it would leave the abort
    # nothing to answer with (seen after long partitions: bytes on disk went uncounted).
    worker = Worker(worker_id="w")
    calls: list[tuple[str, int]] = []
    worker.actors = {1: Handle(calls, "a"), 2: Handle(calls, "b")}
    worker.aborts = {"abort-call": (worker.actors[2], 70, GiveUp(7), float("inf"))}
    worker.forget(7, {1, 2})
    worker.forget(8, {1})  # another cast, with no abort waiting
    assert calls == [("a", 8)]
    worker.forget_settled()
    assert calls == [("a", 8)]  # still waiting
    worker.aborts = {}
    worker.abort_later = {70: (worker.actors[2], GiveUp(7), float("inf"), 0.0)}  # to be asked again: still waiting
    worker.forget_settled()
    assert calls == [("a", 8)]
    worker.abort_later = {}
    worker.forget_settled()
    assert sorted(calls) == [("a", 7), ("a", 8), ("b", 7)]
    assert worker.forget_later == {}
