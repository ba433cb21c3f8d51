"""`castray_bench api`: latency of the status and transfer-list endpoints under a full history.

It fills the configured database with 50 nodes and 10,000 finished transfers (two targets
each), then times requests through Django's whole stack (middleware, authentication, DRF,
serializers, the real database) in this process, with the queries each request ran. The
reference, measured in the same run, is `GET /health` through the same stack. The rows it
made are removed at the end.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from nodes.models import Node
from transfers.models import NodeCounters, Target, Transfer

TARGET_P99_MS = 50.0
CASES = {"status": "/api/status", "transfers": "/api/v1/transfers/"}


def _fill(tag: str, nodes: int, transfers: int) -> list[Node]:
    Node.objects.bulk_create(
        Node(name=f"{tag}{i}", storage_dir=f"/tmp/{tag}{i}", status=Node.Status.ONLINE) for i in range(nodes)
    )
    made = list(Node.objects.filter(name__startswith=tag).order_by("pk"))
    now = timezone.now()
    statuses = [Transfer.Status.COMPLETED] * 8 + [Transfer.Status.FAILED, Transfer.Status.PARTIAL]
    batch = 2000
    for start in range(0, transfers, batch):
        rows = []
        for i in range(start, min(transfers, start + batch)):
            finished = now - timedelta(seconds=transfers - i)
            rows.append(
                Transfer(
                    source=made[i % nodes],
                    file_name=f"{tag}file-{i}.bin",
                    size=1 << 20,
                    sha256="0" * 64,
                    status=statuses[i % len(statuses)],
                    cast_type=Transfer.Cast.MULTICAST,
                    started_at=finished - timedelta(seconds=2),
                    finished_at=finished,
                    source_bytes_sent=1 << 20,
                )
            )
        Transfer.objects.bulk_create(rows)
    ids = list(Transfer.objects.filter(source__in=made).values_list("pk", "source_id"))
    targets = []
    for pk, source_id in ids:
        for step in (1, 2):
            node = made[(source_id - made[0].pk + step) % nodes]
            targets.append(Target(transfer_id=pk, node=node, status=Target.Status.COMPLETED, bytes_done=1 << 20))
    Target.objects.bulk_create(targets, batch_size=5000)
    # The counters the services would have kept for that history (the status reads these).
    per_node = transfers // nodes
    NodeCounters.objects.bulk_create(
        NodeCounters(node=n, total_transfers=3 * per_node, successful_transfers=3 * per_node, bytes_transferred=3 << 20)
        for n in made
    )
    return made


def _time(client: Client, path: str, headers: dict[str, str], requests: int) -> dict[str, Any]:
    for _ in range(10):  # warm caches, connections and imports before timing
        client.get(path, **headers)
    samples, queries, statuses = [], 0, set()
    for _ in range(requests):
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            response = client.get(path, **headers)
            samples.append((time.perf_counter() - started) * 1000)
        queries = max(queries, len(ctx.captured_queries))
        statuses.add(response.status_code)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
        "queries": queries,
        "http_ok": statuses == {200},
        "bytes": len(response.content),
    }


def _token_headers(username: str) -> dict[str, str]:
    user = get_user_model().objects.create_user(username=username, password=uuid.uuid4().hex)
    return {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=user).key}"}


def bench_api(*, nodes: int = 50, transfers: int = 10000, requests: int = 300) -> list[dict[str, Any]]:
    tag = f"bench-api-{uuid.uuid4().hex[:6]}-"
    made: list[Node] = []
    results = []
    try:
        made = _fill(tag, nodes, transfers)
        client = Client()
        reference = _time(client, "/health", _token_headers(f"{tag}health"), requests)
        for case, path in CASES.items():
            # One user per case keeps each case under the API's default throttle.
            measured = _time(client, path, _token_headers(f"{tag}{case}"), requests)
            results.append(
                {
                    "bench": "api",
                    "case": case,
                    "size_bytes": measured["bytes"],
                    "seconds": round(measured["p99_ms"] / 1000, 4),
                    # Latency: the reference's p99 over ours, so that higher is better as elsewhere.
                    "ratio": round(reference["p99_ms"] / measured["p99_ms"], 3) if measured["p99_ms"] else None,
                    "peak_rss_mib": None,
                    "ok": measured["http_ok"] and measured["p99_ms"] < TARGET_P99_MS,
                    "p50_ms": measured["p50_ms"],
                    "p99_ms": measured["p99_ms"],
                    "reference_p99_ms": reference["p99_ms"],
                    "queries": measured["queries"],
                    "nodes": Node.objects.count(),
                    "transfers": Transfer.objects.count(),
                    "requests": requests,
                }
            )
    finally:
        # Targets go with their casts; every target of a bench node belongs to a bench cast.
        Transfer.objects.filter(source__in=made).delete()
        Node.objects.filter(name__startswith=tag).delete()
        get_user_model().objects.filter(username__startswith=tag).delete()
    return results
