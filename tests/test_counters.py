"""The node counters of GET /api/status: kept by the services, read without summing the history."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from nodes.models import Node
from nodes.services import node_create
from transfers import services
from transfers.models import Delivery, NodeCounters, Target, Transfer

pytestmark = pytest.mark.django_db

FIELDS = [
    "total_transfers",
    "successful_transfers",
    "failed_transfers",
    "bytes_transferred",
    "messages_sent",
    "messages_received",
]


def counters() -> dict[int, tuple[int, ...]]:
    rows = NodeCounters.objects.values_list("node_id", *FIELDS)
    return {pk: tuple(values) for pk, *values in rows if any(values)}


def history_sums() -> dict[int, tuple[int, ...]]:
    """The counters as the history gives them: the migration's backfill, the sums the status ran."""
    NodeCounters.objects.all().delete()
    importlib.import_module("transfers.migrations.0009_nodecounters").backfill(apps, None)
    return counters()


def ids(transfer: Transfer) -> dict[str, int]:
    return {t.node.name: t.pk for t in transfer.targets.select_related("node")}


def test_the_services_keep_the_counters_the_history_sums_give(storage) -> None:
    a, b, c, d = (node_create(name=f"n{i}") for i in range(4))
    Node.objects.update(status=Node.Status.ONLINE)
    # A cast with a target that completes early, one that fails, is retried and completes.
    cast = services.transfer_create(source=a, file_name="f.bin", targets=[b, c, d])
    t = ids(cast)
    services.transfer_start(transfer=cast, size=10, sha256="x", tree={}, chunk_size=4)
    services.target_progress(
        transfer=cast,
        rows={t["n1"]: {"status": "completed", "sha256": "x", "bytes_received": 10}, t["n2"]: {"bytes_received": 4}},
    )
    services.targets_record(transfer=cast, results={t["n2"]: {"status": "failed", "bytes_received": 4}})
    services.targets_retry(transfer=cast, target_ids=[t["n2"]], reason="again")
    services.transfer_finish(
        transfer=cast, results={t["n2"]: {"status": "completed", "bytes_received": 6}}, source_bytes=26
    )
    # A cast cancelled mid-way whose round reports later.
    cancelled = services.transfer_create(source=b, file_name="g.bin", targets=[a, c])
    services.transfer_cancel(transfer=cancelled)
    services.transfer_record_cancelled(
        transfer=cancelled, source_bytes=5, results={ids(cancelled)["n0"]: {"status": "completed", "bytes_received": 5}}
    )
    services.targets_fail(transfer=cast, targets=cast.targets.all(), reason="no effect: all final")
    services.message_create(sender=a, content="hi", targets=[b, c])
    services.messages_create_bulk(sender=d, contents=["x", "y"], targets=[a])
    token = services.messages_claim(worker_id="w", lease_seconds=60, limit=10)
    failed = Delivery.objects.filter(node=c).values_list("pk", flat=True)
    services.deliveries_record(token=token, failures=dict.fromkeys(failed, "down"))

    kept = counters()
    assert kept == history_sums()
    assert kept[b.pk][:4] == (2, 1, 0, 10 + 5)  # n1 received 10, sent 5 in the cancelled cast
    assert Target.objects.get(pk=t["n2"]).status == Target.Status.COMPLETED


def status_queries(api: Any) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        assert api.get("/api/status").status_code == 200
    return [q["sql"] for q in ctx.captured_queries]


def test_status_does_not_sum_the_history(api, storage) -> None:
    nodes = [node_create(name=f"n{i:02d}") for i in range(10)]
    api.get("/api/status")  # sessions, content types and the like, cached once
    empty = status_queries(api)
    for i in range(30):
        cast = services.transfer_create(source=nodes[i % 10], file_name="f.bin", targets=[nodes[(i + 1) % 10]])
        services.transfer_finish(transfer=cast, results={ids(cast)[nodes[(i + 1) % 10].name]: {"status": "completed"}})
        services.message_create(sender=nodes[i % 10], content="hi", targets=[nodes[(i + 3) % 10]])
    full = status_queries(api)
    assert len(full) == len(empty)
    for sql in full:
        # Nothing summed over casts, targets or messages: active casts are read by status.
        assert "SUM(" not in sql.upper(), sql
        assert "transfers_message" not in sql and "transfers_delivery" not in sql, sql
        if "transfers_target" in sql or "COUNT(" in sql.upper():
            assert "status" in sql and "IN (" in sql.upper(), sql
