"""GET /metrics: Prometheus text exposition (format 0.0.4) of what the database records.

A prometheus_client collector reads the database at each scrape, so every web process answers
the same figures and nothing is counted in memory. Counters are totals since the database
began (Prometheus's `rate()` turns them into rates); gauges are the state now. A few aggregate
queries whatever the number of casts. Scrapers send `Authorization: Bearer <CASTRAY_METRICS_TOKEN>`;
staff may read it with their session; anyone else is refused (401), so that casts, nodes and
file sizes are not public when no token was set. CASTRAY_METRICS=off removes it (404).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db.models import Count, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry

from clusters.models import Cluster
from nodes.models import Node
from transfers.models import Message, Target, Transfer

# Scrapers and the tests read the 0.0.4 text format; prometheus_client's default is newer.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
Samples = Iterable[tuple[dict[str, str], float]]


def _family(kind: type[GaugeMetricFamily | CounterMetricFamily], name: str, doc: str, samples: Samples) -> Metric:
    rows = list(samples)
    family = kind(name, doc, labels=list(rows[0][0]) if rows else [])
    for labels, value in rows:
        family.add_metric(list(labels.values()), float(value))
    return family


def gauge(name: str, doc: str, samples: Samples) -> Metric:
    return _family(GaugeMetricFamily, name, doc, samples)


def counter(name: str, doc: str, samples: Samples) -> Metric:
    # prometheus_client names the family without `_total` and its samples with it.
    return _family(CounterMetricFamily, name, doc, samples)


class DatabaseCollector:
    """Casts, bytes, targets, nodes, messages and the active Ray cluster, as the rows say now."""

    def collect(self) -> Iterator[Metric]:
        by_status = dict(Transfer.objects.values_list("status").annotate(n=Count("id")))
        yield gauge(
            "castray_transfers",
            "Casts by current status.",
            [({"status": s}, by_status.get(s, 0)) for s in Transfer.Status.values],
        )
        yield counter(
            "castray_transfers_finished_total",
            "Casts that ended, by outcome.",
            [({"status": s}, by_status.get(s, 0)) for s in Transfer.FINAL],
        )
        yield gauge("castray_queue_depth", "Casts waiting to be claimed.", [({}, by_status.get("queued", 0))])
        sent = Transfer.objects.aggregate(source=Sum("source_bytes_sent"), relay=Sum("relay_bytes_sent"))
        yield counter(
            "castray_bytes_sent_total",
            "Bytes sent by casts: by the source, and forwarded by relays.",
            [({"by": "source"}, sent["source"] or 0), ({"by": "relay"}, sent["relay"] or 0)],
        )
        received = Target.objects.aggregate(b=Sum("bytes_received"))["b"] or 0
        delivered = Target.objects.filter(status=Target.Status.COMPLETED).aggregate(b=Sum("bytes_done"))["b"] or 0
        yield counter("castray_bytes_received_total", "Bytes that crossed the network to targets.", [({}, received)])
        yield counter("castray_bytes_delivered_total", "Bytes of files completed at targets.", [({}, delivered)])
        target_status = dict(Target.objects.values_list("status").annotate(n=Count("id")))
        yield gauge(
            "castray_targets",
            "Cast recipients by current status.",
            [({"status": s}, target_status.get(s, 0)) for s in Target.Status.values],
        )
        receiving = Target.objects.filter(status=Target.Status.RECEIVING, transfer__status=Transfer.Status.RUNNING)
        yield gauge(
            "castray_receive_rate_bytes_per_second",
            "Sum of the current receive rates of targets receiving now.",
            [({}, receiving.aggregate(r=Sum("rate"))["r"] or 0)],
        )
        yield from self.nodes_and_messages()
        yield from self.ray()

    def nodes_and_messages(self) -> Iterator[Metric]:
        node_status = dict(Node.objects.values_list("status").annotate(n=Count("id")))
        yield gauge(
            "castray_nodes",
            "CastRay nodes by observed state.",
            [({"status": s}, node_status.get(s, 0)) for s in Node.Status.values],
        )
        yield gauge(
            "castray_node_up",
            "1 when the node is enabled and its actor answers.",
            [
                ({"node": name}, 1 if enabled and status == Node.Status.ONLINE else 0)
                for name, enabled, status in Node.objects.values_list("name", "enabled", "status")
            ],
        )
        message_status = dict(Message.objects.values_list("status").annotate(n=Count("id")))
        yield gauge(
            "castray_messages",
            "Messages by status.",
            [({"status": s}, message_status.get(s, 0)) for s in Message.Status.values],
        )

    def ray(self) -> Iterator[Metric]:
        cluster = Cluster.objects.filter(active=True).first()
        if cluster is None:
            return
        yield gauge(
            "castray_ray_connected",
            "1 when the worker is connected to the active Ray cluster.",
            [({"cluster": cluster.name}, 1 if cluster.status == Cluster.Status.CONNECTED else 0)],
        )
        alive = sum(1 for r in cluster.ray_nodes if r.get("alive"))
        yield gauge(
            "castray_ray_nodes",
            "Ray nodes of the active cluster, alive or dead.",
            [({"state": "alive"}, alive), ({"state": "dead"}, len(cluster.ray_nodes) - alive)],
        )
        store = (cluster.stats or {}).get("object_store", {})
        yield gauge(
            "castray_ray_object_store_bytes",
            "Ray object store size and use, as the worker last saw them.",
            [({"kind": "total"}, store.get("total_bytes", 0)), ({"kind": "used"}, store.get("used_bytes", 0))],
        )
        if cluster.worker_seen:
            age = (timezone.now() - cluster.worker_seen).total_seconds()
            yield gauge("castray_worker_last_seen_seconds", "Seconds since a worker reported.", [({}, age)])


# A registry of our own: the default one would add this process's Python and GC metrics, which
# differ from one web process to the next. Without `describe`, registering reads nothing.
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DatabaseCollector())


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """Why this request may not read the metrics, or None: the scrape token, or a staff login."""
    token = settings.CASTRAY_METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if token and given.startswith("Bearer "):
        if hmac.compare_digest(given.removeprefix("Bearer ").strip().encode(), token.encode()):
            return None
    elif request.user.is_authenticated:
        if request.user.is_staff:
            return None
        return HttpResponse("metrics are for staff and Prometheus\n", status=403, content_type=CONTENT_TYPE)
    how = "Authorization: Bearer <CASTRAY_METRICS_TOKEN> or a staff login" if token else "a staff login"
    response = HttpResponse(f"metrics need {how}\n", status=401, content_type=CONTENT_TYPE)
    response["WWW-Authenticate"] = 'Bearer realm="castray-metrics"'
    return response


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.CASTRAY_METRICS:
        raise Http404("metrics are off (CASTRAY_METRICS=off)")
    refused = _refusal(request)
    if refused is not None:
        return refused
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE)
