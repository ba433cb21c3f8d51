"""GET /metrics: Prometheus text exposition of casts, bytes, rates, node states and queue depth."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from clusters.services import cluster_active
from nodes.models import Node
from transfers.models import Target, Transfer

pytestmark = pytest.mark.django_db
TOKEN = "scrape-token-of-the-tests"
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(\{(?P<labels>[^}]*)\})? (?P<value>[-+0-9.eE]+|NaN)$")


@pytest.fixture(autouse=True)
def _scrape_token(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CASTRAY_METRICS_TOKEN = TOKEN


def scrape():  # type: ignore[no-untyped-def]
    """What Prometheus does: GET /metrics with the token."""
    return Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


def parse(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert line.startswith(("# HELP ", "# TYPE ")) or not line, line
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        out[(match["name"], match["labels"] or "")] = float(match["value"])
    return out


def test_it_exposes_casts_bytes_nodes_and_the_queue() -> None:
    a = Node.objects.create(name="a", status=Node.Status.ONLINE)
    b = Node.objects.create(name="b", status=Node.Status.OFFLINE)
    done = Transfer.objects.create(
        source=a,
        file_name="f",
        status=Transfer.Status.COMPLETED,
        size=1000,
        source_bytes_sent=1000,
        relay_bytes_sent=500,
    )
    Target.objects.create(transfer=done, node=b, status=Target.Status.COMPLETED, bytes_done=1000, bytes_received=1000)
    Transfer.objects.create(source=a, file_name="g", status=Transfer.Status.QUEUED)
    running = Transfer.objects.create(source=a, file_name="h", status=Transfer.Status.RUNNING)
    Target.objects.create(transfer=running, node=b, status=Target.Status.RECEIVING, rate=2.5e6)
    cluster = cluster_active()
    cluster.ray_nodes = [{"node_id": "x", "alive": True}, {"node_id": "y", "alive": False}]
    cluster.stats = {"object_store": {"total_bytes": 100, "used_bytes": 40}}
    cluster.status = "connected"
    cluster.save()

    response = scrape()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    m = parse(response.content.decode())
    assert m[("castray_queue_depth", "")] == 1
    assert m[("castray_transfers", 'status="running"')] == 1
    assert m[("castray_transfers_finished_total", 'status="completed"')] == 1
    assert m[("castray_bytes_sent_total", 'by="source"')] == 1000
    assert m[("castray_bytes_sent_total", 'by="relay"')] == 500
    assert m[("castray_bytes_delivered_total", "")] == 1000
    assert m[("castray_receive_rate_bytes_per_second", "")] == 2.5e6
    assert m[("castray_nodes", 'status="online"')] == 1 and m[("castray_nodes", 'status="offline"')] == 1
    assert m[("castray_node_up", 'node="a"')] == 1 and m[("castray_node_up", 'node="b"')] == 0
    assert m[("castray_ray_nodes", 'state="alive"')] == 1 and m[("castray_ray_nodes", 'state="dead"')] == 1
    assert m[("castray_ray_connected", 'cluster="default"')] == 1
    assert m[("castray_ray_object_store_bytes", 'kind="used"')] == 40


def test_with_a_token_scrapers_must_send_it(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CASTRAY_METRICS_TOKEN = "s3cret-token"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200 and b"castray_queue_depth" in response.content


def test_label_values_are_escaped() -> None:
    Node.objects.create(name='we"ird', status=Node.Status.ONLINE)
    text = scrape().content.decode()
    assert 'castray_node_up{node="we\\"ird"} 1' in text


def test_it_parses_as_prometheus_text() -> None:
    # Prometheus's own parser reads every family; counters are named without `_total` there.
    Node.objects.create(name="a", status=Node.Status.ONLINE)
    cluster = cluster_active()
    cluster.ray_nodes = [{"node_id": "x", "alive": True}]
    cluster.save()

    text = scrape().content.decode()
    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert families == {
        "castray_transfers": "gauge",
        "castray_transfers_finished": "counter",
        "castray_queue_depth": "gauge",
        "castray_bytes_sent": "counter",
        "castray_bytes_received": "counter",
        "castray_bytes_delivered": "counter",
        "castray_targets": "gauge",
        "castray_receive_rate_bytes_per_second": "gauge",
        "castray_nodes": "gauge",
        "castray_node_up": "gauge",
        "castray_messages": "gauge",
        "castray_ray_connected": "gauge",
        "castray_ray_nodes": "gauge",
        "castray_ray_object_store_bytes": "gauge",
    }


def test_without_a_token_only_staff_sessions_read_it(settings, alice, root_user) -> None:  # type: ignore[no-untyped-def]
    settings.CASTRAY_METRICS_TOKEN = ""
    response = Client().get("/metrics")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert b"staff login" in response.content
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    client = Client()
    client.force_login(alice)
    assert client.get("/metrics").status_code == 403
    client.force_login(root_user)
    response = client.get("/metrics")
    assert response.status_code == 200 and b"castray_queue_depth" in response.content


def test_with_a_token_staff_sessions_still_read_it(root_user) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(root_user)
    assert client.get("/metrics").status_code == 200


def test_metrics_can_be_switched_off(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CASTRAY_METRICS = False
    assert scrape().status_code == 404
