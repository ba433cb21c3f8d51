"""The cluster endpoints without Ray: they read what the worker recorded and record what people ask.

Alice is an ordinary user (reads); root is staff (switches clusters, adopts nodes, configures).
"""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from clusters.models import Cluster, ClusterOperation, NodePlacement, RuntimeConfig
from clusters.services import cluster_active, runtime_config_effective
from nodes.models import Node

pytestmark = pytest.mark.django_db

HEAD = "a" * 56
WORKER = "b" * 56
DEAD = "c" * 56


def record_cluster() -> Cluster:
    """What a connected worker writes: three Ray nodes, one of them dead."""
    cluster = cluster_active()
    cluster.status = Cluster.Status.CONNECTED
    cluster.gcs_address = "10.0.0.5:6379"
    cluster.ray_version = "2.60.0"
    cluster.worker_seen = timezone.now()
    cluster.resources = {"CPU": 8.0, "memory": 1e10, "object_store_memory": 4e9}
    cluster.available_resources = {"CPU": 6.0, "object_store_memory": 3e9}
    cluster.ray_nodes = [
        {
            "node_id": HEAD,
            "address": "10.0.0.5",
            "hostname": "head",
            "node_manager_port": 4000,
            "alive": True,
            "is_head": True,
            "resources": {"CPU": 4.0},
            "labels": {"castray.io/node": "gpu-01"},
            "death_reason": "",
        },
        {
            "node_id": WORKER,
            "address": "10.0.0.6",
            "hostname": "worker-a",
            "node_manager_port": 4000,
            "alive": True,
            "is_head": False,
            "resources": {"CPU": 4.0},
            "labels": {},
            "death_reason": "",
        },
        {
            "node_id": DEAD,
            "address": "10.0.0.7",
            "hostname": "worker-b",
            "node_manager_port": 4000,
            "alive": False,
            "is_head": False,
            "resources": {},
            "labels": {},
            "death_reason": "received SIGTERM",
        },
    ]
    cluster.stats = {
        "object_store": {"total_bytes": 4_000_000_000, "used_bytes": 1_000_000_000},
        "actors": {"total": 3, "alive": 2, "by_state": {"ALIVE": 2, "DEAD": 1}, "castray": []},
        "nodes": {HEAD: {"cpu": 4, "cpu_free": 3}},
        "collected_at": timezone.now().isoformat(),
    }
    cluster.save()
    return cluster


def test_the_endpoints_need_a_login() -> None:
    anonymous = APIClient()
    for method, path in [
        ("get", "/api/cluster/external-info"),
        ("get", "/api/nodes/external"),
        ("get", "/api/ray-dashboard"),
        ("get", "/ray/stats"),
        ("post", "/api/cluster/discover-external"),
        ("post", "/api/cluster/connect-external"),
        ("delete", "/api/cluster/disconnect-external"),
        ("post", "/ray/configure"),
    ]:
        response = getattr(anonymous, method)(path)
        assert response.status_code in (401, 403), (path, response.status_code)
        assert response.json()["success"] is False


def test_ordinary_users_read_but_do_not_switch_adopt_or_configure(api: APIClient) -> None:
    record_cluster()
    assert api.get("/api/cluster/external-info").status_code == 200
    for method, path, body in [
        ("post", "/api/cluster/discover-external", None),
        ("post", "/api/cluster/connect-external", {"cluster_address": "10.0.0.9:6379"}),
        ("delete", "/api/cluster/disconnect-external", None),
        ("post", "/api/cluster/adopt-ray-nodes", None),
        ("post", "/ray/configure", {"chunk_size": "8MiB"}),
        ("post", "/api/demo", {"enabled": True}),
    ]:
        response = getattr(api, method)(path, body, format="json")
        assert response.status_code == 403, (path, response.json())
        assert "staff" in response.json()["message"]
    assert not ClusterOperation.objects.exists() and not RuntimeConfig.objects.exists()


def test_external_nodes_lists_the_recorded_ray_nodes(api: APIClient) -> None:
    record_cluster()
    Node.objects.create(name="n-head", ray_node_id=HEAD)
    body = api.get("/api/nodes/external").json()
    assert body["count"] == 3 and body["success"] is True
    by_id = {n["id"]: n for n in body["external_nodes"]}
    head = by_id[HEAD]
    assert (head["address"], head["status"], head["type"], head["cluster_source"]) == (
        "10.0.0.5",
        "alive",
        "head",
        "default",
    )
    assert head["last_seen"] and head["resources"] == {"CPU": 4.0} and head["castray_nodes"] == ["n-head"]
    assert by_id[DEAD]["status"] == "dead" and by_id[DEAD]["last_seen"] is None
    assert by_id[DEAD]["death_reason"] == "received SIGTERM"

    info = api.get("/api/cluster/external-info").json()
    assert set(info) >= {"is_connected", "connected_cluster", "external_nodes"}
    assert info["connected_cluster"]["gcs_address"] == "10.0.0.5:6379"
    assert set(info["external_nodes"]) == {HEAD, WORKER, DEAD}


def test_connect_external_records_an_operation_for_the_worker(staff_api: APIClient) -> None:
    response = staff_api.post("/api/cluster/connect-external", {"cluster_address": "10.0.0.9:6379"}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["success"] is True and "/api/cluster/operations/" in body["message"]
    op = ClusterOperation.objects.get()
    assert (op.kind, op.address, op.status, op.requested_by.username) == ("connect", "10.0.0.9:6379", "pending", "root")
    assert staff_api.get(f"/api/cluster/operations/{op.pk}").json()["status"] == "pending"
    # Nothing changed yet: the active cluster is the worker's to switch.
    assert cluster_active().name == "default"

    # One switch at a time.
    response = staff_api.post("/api/cluster/connect-external", {"cluster_address": "10.0.0.8:6379"}, format="json")
    assert response.status_code == 409 and f"operation #{op.pk}" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "fix"),
    [
        ({}, "cluster_address"),
        ({"cluster_address": ""}, "cluster_address"),
        ({"cluster_address": 6379}, "cluster_address"),
        ({"cluster_address": "10.0.0.9"}, "host:port"),
        ({"cluster_address": "http://10.0.0.9:8265"}, "dashboard"),
        ({"cluster_address": "ray://10.0.0.9:10001"}, "Ray Client"),
        ({"cluster_address": "10.0.0.9:99999"}, "host:port"),
    ],
)
def test_connect_external_rejects_what_cannot_be_an_address(staff_api: APIClient, body: dict, fix: str) -> None:
    response = staff_api.post("/api/cluster/connect-external", body, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["message"].startswith("cluster_address:")
    assert fix in response.json()["message"]
    assert not ClusterOperation.objects.exists()


def test_disconnect_when_on_the_configured_cluster_is_a_conflict(staff_api: APIClient) -> None:
    response = staff_api.delete("/api/cluster/disconnect-external")
    assert response.status_code == 409
    assert "nothing to disconnect" in response.json()["message"]


def test_disconnect_records_a_return_to_the_configured_cluster(staff_api: APIClient) -> None:
    Cluster.objects.create(name="default", active=False)
    Cluster.objects.create(name="external-x", address="10.0.0.9:6379", active=True, external=True)
    response = staff_api.delete("/api/cluster/disconnect-external")
    assert response.status_code == 202, response.json()
    op = ClusterOperation.objects.get()
    assert op.kind == "disconnect" and op.source.name == "external-x"
    assert "external-x (left running)" in response.json()["message"]


def test_adopting_creates_one_pinned_node_per_live_ray_node(staff_api: APIClient) -> None:
    cluster = record_cluster()
    response = staff_api.post("/api/cluster/adopt-ray-nodes")
    assert response.status_code == 201, response.json()
    made = {n["name"]: n["ray_node_id"] for n in response.json()["nodes"]}
    # The label names the machine; without one the host name and id do.
    assert made == {"gpu-01": HEAD, f"ray-worker-a-{WORKER[:6]}": WORKER}
    placements = NodePlacement.objects.filter(cluster=cluster, adopted=True)
    assert {(p.node.name, p.key) for p in placements} == {
        ("gpu-01", "label:gpu-01"),
        (f"ray-worker-a-{WORKER[:6]}", "host:worker-a"),
    }
    # Again: nothing new. A labelled machine whose raylet restarted (new id) is not adopted twice.
    assert staff_api.post("/api/cluster/adopt-ray-nodes").json()["nodes"] == []
    cluster.ray_nodes[0]["node_id"] = "d" * 56
    cluster.save()
    assert staff_api.post("/api/cluster/adopt-ray-nodes").json()["nodes"] == []


def test_adopting_before_the_worker_recorded_anything_is_a_conflict(staff_api: APIClient) -> None:
    response = staff_api.post("/api/cluster/adopt-ray-nodes")
    assert response.status_code == 409 and "no live Ray node is recorded" in response.json()["message"]


def test_ray_dashboard_and_stats_read_the_record(api: APIClient) -> None:
    record_cluster()
    Node.objects.create(name="n1", status=Node.Status.ONLINE, ray_node_id=HEAD)
    body = api.get("/api/ray-dashboard").json()
    assert body["success"] is True and body["cluster"]["status"] == "connected"
    assert body["totals"]["ray_nodes"] == 3 and body["totals"]["ray_nodes_alive"] == 2
    assert body["totals"]["cpus"] == 8.0 and body["totals"]["object_store_used_bytes"] == 1_000_000_000
    assert body["totals"]["castray_nodes"] == {"online": 1}
    assert [n["name"] for n in body["castray_nodes"]] == ["n1"]
    assert {n["id"] for n in body["ray_nodes"]} == {HEAD, WORKER, DEAD}

    stats = api.get("/ray/stats").json()
    assert stats["resources"]["available"]["CPU"] == 6.0
    assert stats["actors"]["alive"] == 2 and stats["object_store"]["used_bytes"] == 1_000_000_000
    assert {n["id"]: n["usage"] for n in stats["nodes"]}[HEAD] == {"cpu": 4, "cpu_free": 3}
    assert stats["collected_at"]


def test_configure_records_validated_settings(staff_api: APIClient, api: APIClient, settings) -> None:  # type: ignore[no-untyped-def]
    response = staff_api.post(
        "/ray/configure",
        {"chunk_size": "8MiB", "default_fan_out": 3, "default_egress_cap": "100MB", "node_concurrency": 2},
        format="json",
    )
    assert response.status_code == 200, response.json()
    config = response.json()["config"]
    assert config["chunk_size"] == 8 * 1024 * 1024 and config["default_fan_out"] == 3
    assert config["default_egress_cap"] == 100 * 1024 * 1024
    assert config["max_active_transfers"] == settings.CASTRAY_MAX_ACTIVE_TRANSFERS  # not set: the default
    record = RuntimeConfig.objects.get()
    assert record.updated_by.username == "root" and record.node_concurrency == 2
    assert api.get("/ray/configure").json()["config"]["default_fan_out"] == 3

    # null puts a default back.
    staff_api.post("/ray/configure", {"default_fan_out": None}, format="json")
    assert runtime_config_effective()["default_fan_out"] == settings.CASTRAY_DEFAULT_FAN_OUT


@pytest.mark.parametrize(
    ("body", "fix"),
    [
        ({"chunk_size": "1KB"}, "chunk_size: must be between 64 KiB and 64 MiB"),
        ({"chunk_size": "lots"}, "chunk_size: 'lots' is not a size"),
        ({"default_fan_out": 0}, "default_fan_out"),
        ({"node_concurrency": "x"}, "node_concurrency"),
        ({"colour": "blue"}, "colour: not a setting"),
        ({}, "give at least one setting"),
    ],
)
def test_configure_rejects_bad_values(staff_api: APIClient, body: dict, fix: str) -> None:
    response = staff_api.post("/ray/configure", body, format="json")
    assert response.status_code == 400, response.json()
    assert fix in response.json()["message"], response.json()
    assert not RuntimeConfig.objects.exists()


def test_demo_mode_is_off_by_default_and_switched_from_the_api(staff_api: APIClient, api: APIClient) -> None:
    assert api.get("/api/demo").json()["enabled"] is False
    response = staff_api.post("/api/demo", {"enabled": True, "interval": 5, "file_size": "64KB"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["enabled"] is True and "every 5 s" in response.json()["message"]
    assert api.get("/api/demo").json() == {"enabled": True, "interval": 5.0, "file_size": 65536}
    staff_api.post("/api/demo", {"enabled": False}, format="json")
    assert api.get("/api/demo").json()["enabled"] is False
    assert staff_api.post("/api/demo", {}, format="json").status_code == 400
