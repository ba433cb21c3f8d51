"""GET /metrics: Prometheus text exposition (format 0.0.4), written by hand from the database.

Counters are totals since the database began (Prometheus's `rate()` turns them into rates);
gauges are the state now. A few aggregate queries whatever the number of casts. With
CASTRAY_METRICS_TOKEN set, scrapers must send `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from clusters.models import Cluster
from nodes.models import Node
from transfers.models import Message, Target, Transfer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            number = repr(float(value))
            self.lines.append(f"{name}{{{text}}} {number}" if text else f"{name} {number}")

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def collect() -> str:
    out = Exposition()
    by_status = dict(Transfer.objects.values_list("status").annotate(n=Count("id")))
    out.metric(
        "castray_transfers",
        "gauge",
        "Casts by current status.",
        [({"status": s}, by_status.get(s, 0)) for s in Transfer.Status.values],
    )
    out.metric(
        "castray_transfers_finished_total",
        "counter",
        "Casts that ended, by outcome.",
        [({"status": s}, by_status.get(s, 0)) for s in Transfer.FINAL],
    )
    out.metric("castray_queue_depth", "gauge", "Casts waiting to be claimed.", [({}, by_status.get("queued", 0))])
    sent = Transfer.objects.aggregate(source=Sum("source_bytes_sent"), relay=Sum("relay_bytes_sent"))
    out.metric(
        "castray_bytes_sent_total",
        "counter",
        "Bytes sent by casts: by the source, and forwarded by relays.",
        [({"by": "source"}, sent["source"] or 0), ({"by": "relay"}, sent["relay"] or 0)],
    )
    targets = Target.objects.aggregate(received=Sum("bytes_received"))
    delivered = Target.objects.filter(status=Target.Status.COMPLETED).aggregate(b=Sum("bytes_done"))["b"] or 0
    out.metric(
        "castray_bytes_received_total",
        "counter",
        "Bytes that crossed the network to targets.",
        [({}, targets["received"] or 0)],
    )
    out.metric("castray_bytes_delivered_total", "counter", "Bytes of files completed at targets.", [({}, delivered)])
    target_status = dict(Target.objects.values_list("status").annotate(n=Count("id")))
    out.metric(
        "castray_targets",
        "gauge",
        "Cast recipients by current status.",
        [({"status": s}, target_status.get(s, 0)) for s in Target.Status.values],
    )
    rate = Target.objects.filter(status=Target.Status.RECEIVING, transfer__status=Transfer.Status.RUNNING).aggregate(
        r=Sum("rate")
    )["r"]
    out.metric(
        "castray_receive_rate_bytes_per_second",
        "gauge",
        "Sum of the current receive rates of targets receiving now.",
        [({}, rate or 0)],
    )
    node_status = dict(Node.objects.values_list("status").annotate(n=Count("id")))
    out.metric(
        "castray_nodes",
        "gauge",
        "CastRay nodes by observed state.",
        [({"status": s}, node_status.get(s, 0)) for s in Node.Status.values],
    )
    out.metric(
        "castray_node_up",
        "gauge",
        "1 when the node is enabled and its actor answers.",
        [
            ({"node": name}, 1 if enabled and status == Node.Status.ONLINE else 0)
            for name, enabled, status in Node.objects.values_list("name", "enabled", "status")
        ],
    )
    message_status = dict(Message.objects.values_list("status").annotate(n=Count("id")))
    out.metric(
        "castray_messages",
        "gauge",
        "Messages by status.",
        [({"status": s}, message_status.get(s, 0)) for s in Message.Status.values],
    )
    cluster = Cluster.objects.filter(active=True).first()
    if cluster is not None:
        out.metric(
            "castray_ray_connected",
            "gauge",
            "1 when the worker is connected to the active Ray cluster.",
            [({"cluster": cluster.name}, 1 if cluster.status == Cluster.Status.CONNECTED else 0)],
        )
        alive = sum(1 for r in cluster.ray_nodes if r.get("alive"))
        out.metric(
            "castray_ray_nodes",
            "gauge",
            "Ray nodes of the active cluster, alive or dead.",
            [({"state": "alive"}, alive), ({"state": "dead"}, len(cluster.ray_nodes) - alive)],
        )
        store = (cluster.stats or {}).get("object_store", {})
        out.metric(
            "castray_ray_object_store_bytes",
            "gauge",
            "Ray object store size and use, as the worker last saw them.",
            [({"kind": "total"}, store.get("total_bytes", 0)), ({"kind": "used"}, store.get("used_bytes", 0))],
        )
        if cluster.worker_seen:
            age = (timezone.now() - cluster.worker_seen).total_seconds()
            out.metric("castray_worker_last_seen_seconds", "gauge", "Seconds since a worker reported.", [({}, age)])
    return out.render()


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.CASTRAY_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse(
                "metrics need Authorization: Bearer <CASTRAY_METRICS_TOKEN>\n", status=401, content_type=CONTENT_TYPE
            )
    return HttpResponse(collect(), content_type=CONTENT_TYPE)
