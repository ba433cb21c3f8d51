"""The earlier CastRay's endpoints: same paths, the field names its clients read, 4xx errors.

Alice is an ordinary user: she reads status, sends messages and casts. Root is staff: he adds
and removes nodes and flips the auto-transfer switch.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone

from clusters.models import Cluster
from nodes.edit_services import group_create
from nodes.models import Node
from nodes.services import node_create, node_set_enabled
from tests.helpers import finished, sha256_of
from transfers.models import Message, Transfer
from transfers.services import deliveries_record, message_create, messages_claim, transfer_create, transfer_finish

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()  # throttle counters and auto-transfer switches of this process


@pytest.fixture
def demo(storage: Path) -> dict[str, Node]:
    made = {name: node_create(name=name) for name in ("node_1", "node_2", "node_3")}
    for node in made.values():
        Path(node.storage_root).mkdir(parents=True)
    (Path(made["node_1"].storage_root) / "config.json").write_text('{"a": 1}')
    return made


def assert_error(response, status: int, starts: str = "") -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False
    assert body["message"].startswith(starts), body


# --- GET /api/status ---------------------------------------------------------------------
def test_status_has_the_fields_old_clients_read(api, demo) -> None:
    n1, n2, n3 = demo.values()
    Node.objects.filter(pk=n1.pk).update(status=Node.Status.ONLINE, port=47001, last_heartbeat=timezone.now())
    Cluster.objects.create(name="default", resources={"CPU": 2.0}, ray_nodes=[{"id": "abc", "alive": True}])
    done = transfer_create(source=n1, file_name="config.json", targets=[n2, n3])
    # Through the services, which keep the counters the status reads.
    ids = dict(done.targets.values_list("node_id", "pk"))
    results = {ids[n2.pk]: {"status": "completed", "bytes_received": 8}, ids[n3.pk]: {"status": "failed"}}
    transfer_finish(transfer=done, results=results, source_bytes=8)
    assert Transfer.objects.get(pk=done.pk).status == Transfer.Status.PARTIAL
    transfer_create(source=n2, file_name="x", targets=[n1])  # still queued
    message_create(sender=n1, content="hi", targets=[n2])
    deliveries_record(token=messages_claim(worker_id="w", lease_seconds=60, limit=10), failures={})

    body = api.get("/api/status").json()
    assert body["total_nodes"] == 3
    assert body["active_nodes"] == 1
    assert body["node_ports"] == {"node_1": 47001, "node_2": None, "node_3": None}
    assert body["ray_cluster"]["cluster_resources"] == {"CPU": 2.0}
    assert set(body["ray_cluster"]) == {"cluster_resources", "available_resources", "nodes"}
    by_id = {s["node_id"]: s for s in body["node_statuses"]}
    first = by_id["node_1"]
    assert set(first) >= {
        "node_id",
        "port",
        "is_running",
        "received_count",
        "sent_count",
        "last_activity",
        "file_transfer_stats",
        "active_transfers",
        "auto_transfer_enabled",
    }
    assert first["is_running"] is True and first["port"] == 47001
    assert isinstance(first["last_activity"], float)
    assert (first["sent_count"], by_id["node_2"]["received_count"]) == (1, 1)
    assert first["file_transfer_stats"] == {
        "total_transfers": 1,
        "successful_transfers": 0,
        "failed_transfers": 1,
        "bytes_transferred": 8,
    }
    assert first["active_transfers"] == 1  # node_1 is a target of the queued cast
    assert by_id["node_2"]["file_transfer_stats"]["successful_transfers"] == 1
    assert by_id["node_2"]["file_transfer_stats"]["bytes_transferred"] == 8
    assert by_id["node_3"]["file_transfer_stats"]["failed_transfers"] == 1
    assert first["auto_transfer_enabled"] is False


def test_status_runs_a_fixed_number_of_queries(api, storage, django_assert_max_num_queries) -> None:
    nodes = [node_create(name=f"n{i:02d}") for i in range(50)]
    for i in range(200):
        transfer_create(source=nodes[i % 50], file_name="f.bin", targets=[nodes[(i + 1) % 50], nodes[(i + 2) % 50]])
    with django_assert_max_num_queries(12):
        body = api.get("/api/status").json()
    assert body["total_nodes"] == 50
    assert sum(s["active_transfers"] for s in body["node_statuses"]) == 200 * 3


# --- POST /api/nodes, DELETE /api/nodes/{node_id} ----------------------------------------
def test_staff_add_nodes(api, staff_api, storage) -> None:
    assert_error(api.post("/api/nodes", {"node_id": "node_9"}, format="json"), 403, "only staff")
    response = staff_api.post("/api/nodes", {"node_id": "node_9", "port": 47009}, format="json")
    assert response.status_code == 200
    assert response.json()["success"] is True and "node_9" in response.json()["message"]
    assert Node.objects.get(name="node_9").requested_port == 47009
    staff_api.post("/api/nodes", {"node_id": "node_8", "port": 0}, format="json")
    assert Node.objects.get(name="node_8").requested_port is None  # 0 meant "any port"
    assert_error(staff_api.post("/api/nodes", {"node_id": "node_9"}, format="json"), 409, "node_id:")
    assert_error(staff_api.post("/api/nodes", {"node_id": "../x"}, format="json"), 400, "node_id:")
    assert_error(staff_api.post("/api/nodes", {"port": 1}, format="json"), 400, "node_id:")
    assert_error(staff_api.post("/api/nodes", {"node_id": "y", "port": "high"}, format="json"), 400, "port:")


def test_staff_remove_nodes_and_nodes_with_history_are_disabled(api, staff_api, demo) -> None:
    transfer_create(source=demo["node_1"], file_name="config.json", targets=[demo["node_2"]])
    assert_error(api.delete("/api/nodes/node_3"), 403)
    response = staff_api.delete("/api/nodes/node_3")
    assert response.status_code == 200 and response.json()["success"] is True
    assert "deleted" in response.json()["message"]
    assert not Node.objects.filter(name="node_3").exists()
    response = staff_api.delete("/api/nodes/node_2")
    assert response.json()["success"] is True
    assert "disabled" in response.json()["message"]
    assert Node.objects.get(name="node_2").enabled is False
    assert_error(staff_api.delete("/api/nodes/node_77"), 404, "no node named 'node_77'")


# --- POST /api/send ----------------------------------------------------------------------
def test_send_unicast_multicast_and_broadcast(api, demo, alice) -> None:
    response = api.post(
        "/api/send",
        {"cast_type": "unicast", "message_type": "text", "content": "hi", "sender": "node_1", "recipients": ["node_2"]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["success"] is True
    assert body["recipients_count"] == 1
    assert body["failed_recipients"] == []
    assert isinstance(body["delivery_time"], float)
    message = Message.objects.get(pk=body["message_id"])
    assert (message.content, message.cast_type, message.requested_by) == ("hi", "unicast", alice)

    group_create(name="g", nodes=[demo["node_2"], demo["node_3"]])
    body = api.post(
        "/api/send",
        {
            "cast_type": "multicast",
            "message_type": "json",
            "content": {"x": [1, 2]},
            "sender": "node_1",
            "group_id": "g",
        },
        format="json",
    ).json()
    assert body["recipients_count"] == 2
    assert Message.objects.get(pk=body["message_id"]).content == '{"x": [1, 2]}'

    Node.objects.update(status=Node.Status.ONLINE)
    body = api.post("/api/send", {"cast_type": "broadcast", "content": "all", "sender": "node_2"}, format="json").json()
    assert body["recipients_count"] == 2
    assert Message.objects.get(pk=body["message_id"]).cast_type == "broadcast"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": "x", "sender": "node_77", "recipients": ["node_2"]}, "sender"),
        ({"content": "x", "sender": "node_1", "recipients": ["node_77"]}, "recipients"),
        ({"content": "x", "sender": "node_1", "recipients": ["node_2", "node_3"]}, "recipients"),
        ({"content": "x", "sender": "node_1"}, "recipients"),
        ({"content": "x", "sender": "node_1", "recipients": ["node_1"]}, "targets"),
        ({"cast_type": "multicast", "content": "x", "sender": "node_1"}, "recipients"),
        ({"cast_type": "multicast", "content": "x", "sender": "node_1", "group_id": "nope"}, "group_id"),
        ({"cast_type": "anycast", "content": "x", "sender": "node_1", "recipients": ["node_2"]}, "cast_type"),
        ({"message_type": "xml", "content": "x", "sender": "node_1", "recipients": ["node_2"]}, "message_type"),
        ({"content": {"a": 1}, "sender": "node_1", "recipients": ["node_2"]}, "content"),
        ({"message_type": "json", "content": "{oops", "sender": "node_1", "recipients": ["node_2"]}, "content"),
        ({"sender": "node_1", "recipients": ["node_2"]}, "content"),
        ({"content": "x", "sender": "node_1", "recipients": "node_2"}, "recipients"),
        ({"cast_type": "broadcast", "content": "x", "sender": "node_1"}, "broadcast"),
    ],
)
def test_bad_sends_are_400_and_queue_nothing(api, demo, body, field: str) -> None:
    assert_error(api.post("/api/send", body, format="json"), 400, f"{field}:")
    assert not Message.objects.exists()


# --- GET /api/nodes/{node_id}/messages ---------------------------------------------------
def test_node_messages_newest_first_both_directions(api, demo) -> None:
    n1, n2, n3 = demo.values()
    message_create(sender=n1, content="one", targets=[n2])
    message_create(sender=n2, content="two", targets=[n1, n3])
    message_create(sender=n3, content="three", targets=[n2])
    body = api.get("/api/nodes/node_2/messages").json()
    assert body["node_id"] == "node_2"
    assert [(m["content"], m["direction"]) for m in body["messages"]] == [
        ("three", "received"),
        ("two", "sent"),
        ("one", "received"),
    ]
    sent = body["messages"][1]
    assert sent["recipients"] == ["node_1", "node_3"] and sent["sender"] == "node_2"
    assert set(sent) >= {"id", "message_type", "cast_type", "content", "sender", "status", "timestamp"}
    assert [m["content"] for m in api.get("/api/nodes/node_2/messages?count=2").json()["messages"]] == [
        "three",
        "two",
    ]
    assert_error(api.get("/api/nodes/node_2/messages?count=zero"), 400, "count:")
    assert_error(api.get("/api/nodes/node_2/messages?count=0"), 400, "count:")
    assert_error(api.get("/api/nodes/node_77/messages"), 404)


# --- file transfers ----------------------------------------------------------------------
def test_file_transfer_status_per_node(api, demo) -> None:
    transfer_create(source=demo["node_1"], file_name="config.json", targets=[demo["node_2"]])
    body = api.get("/api/file-transfers/status").json()
    assert set(body) == {"node_1", "node_2", "node_3"}
    assert body["node_1"]["node_id"] == "node_1"
    assert body["node_1"]["active_transfers"] == 1
    assert set(body["node_1"]["file_transfer_stats"]) == {
        "total_transfers",
        "successful_transfers",
        "failed_transfers",
        "bytes_transferred",
    }


def test_manual_transfer_queues_a_cast(api, demo, alice) -> None:
    response = api.post(
        "/api/file-transfers/manual",
        {"sender_id": "node_1", "file_name": "config.json", "recipients": ["node_3", "node_2"]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["success"] is True
    assert body["results"] == [
        {"recipient": "node_2", "success": True, "message": "queued"},
        {"recipient": "node_3", "success": True, "message": "queued"},
    ]
    transfer = Transfer.objects.get(pk=body["transfer_id"])
    assert (transfer.source.name, transfer.file_name, transfer.requested_by) == ("node_1", "config.json", alice)
    assert body["transfer_url"].endswith(f"/api/v1/transfers/{transfer.pk}/")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sender_id": "node_1", "file_name": "missing.json", "recipients": ["node_2"]}, "file_name"),
        ({"sender_id": "node_1", "file_name": "../../etc/passwd", "recipients": ["node_2"]}, "file_name"),
        ({"sender_id": "node_1", "file_name": "/etc/passwd", "recipients": ["node_2"]}, "file_name"),
        ({"sender_id": "node_1", "file_name": "config.json", "recipients": []}, "recipients"),
        ({"sender_id": "node_1", "file_name": "config.json", "recipients": ["node_77"]}, "recipients"),
        ({"sender_id": "node_1", "file_name": "config.json", "recipients": ["node_1"]}, "targets"),
        ({"file_name": "config.json", "recipients": ["node_2"]}, "sender_id"),
        ({"sender_id": 1, "file_name": "config.json", "recipients": ["node_2"]}, "sender_id"),
    ],
)
def test_bad_manual_transfers_are_400(api, demo, body, field: str) -> None:
    assert_error(api.post("/api/file-transfers/manual", body, format="json"), 400, f"{field}:")
    assert not Transfer.objects.exists()


def test_auto_toggle_is_remembered_and_reported(api, staff_api, demo) -> None:
    assert_error(api.post("/api/file-transfers/auto/toggle", {"node_id": "node_2", "enabled": True}), 403)
    response = staff_api.post("/api/file-transfers/auto/toggle", {"node_id": "node_2", "enabled": True}, format="json")
    assert response.status_code == 200
    assert response.json()["success"] is True
    flags = {s["node_id"]: s["auto_transfer_enabled"] for s in api.get("/api/status").json()["node_statuses"]}
    assert flags == {"node_1": False, "node_2": True, "node_3": False}
    assert api.get("/api/file-transfers/status").json()["node_2"]["auto_transfer_enabled"] is True
    staff_api.post("/api/file-transfers/auto/toggle", {"node_id": "node_2", "enabled": False}, format="json")
    assert api.get("/api/file-transfers/status").json()["node_2"]["auto_transfer_enabled"] is False
    body = {"node_id": "node_2", "enabled": "perhaps"}
    assert_error(staff_api.post("/api/file-transfers/auto/toggle", body, format="json"), 400, "enabled:")
    body = {"node_id": "node_77", "enabled": True}
    assert_error(staff_api.post("/api/file-transfers/auto/toggle", body, format="json"), 400, "node_id:")


# --- file generator ----------------------------------------------------------------------
def test_generator_presets(api) -> None:
    body = api.get("/api/file-generator/presets").json()
    assert body["content_types"] == ["text", "random", "pattern"]
    assert body["presets"]["tiny"] == {
        "size_bytes": 1024,
        "size_formatted": "1 KB",
        "description": body["presets"]["tiny"]["description"],
    }
    assert {k: v["size_formatted"] for k, v in body["presets"].items()} == {
        "tiny": "1 KB",
        "small": "10 KB",
        "medium": "100 KB",
        "large": "1 MB",
        "huge": "10 MB",
        "massive": "100 MB",
    }


def test_generator_creates_a_file(api, demo) -> None:
    response = api.post(
        "/api/file-generator/create",
        {"size": "10MB", "content_type": "pattern", "file_name": "gen/ten.bin", "node_id": "node_2"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["success"] is True
    info = body["file_info"]
    path = Path(demo["node_2"].storage_root) / "gen" / "ten.bin"
    assert info["file_name"] == "gen/ten.bin"
    assert info["actual_size"] == 10 * 1024**2 == path.stat().st_size
    assert info["content_type"] == "pattern"
    assert info["sha256"] == sha256_of(path)
    assert info["created_time"]
    download = api.get(info["download_url"], HTTP_RANGE="bytes=0-3")
    assert b"".join(download.streaming_content) == bytes([0, 1, 2, 3])


def test_generator_names_files_itself_and_takes_presets(api, demo) -> None:
    body = api.post("/api/file-generator/create", {"preset": "tiny", "node": "node_1"}, format="json").json()
    info = body["file_info"]
    assert info["actual_size"] == 1024 and info["content_type"] == "random"
    assert (Path(demo["node_1"].storage_root) / info["file_name"]).stat().st_size == 1024


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"size": "10MB"}, "node_id", 400),
        ({"size": "10MB", "node_id": "node_77"}, "node_id", 400),
        ({"size": "ten", "node_id": "node_1"}, "size", 400),
        ({"size": [1], "node_id": "node_1"}, "size", 400),
        ({"node_id": "node_1"}, "size", 400),
        ({"size": "1KB", "content_type": "zeros", "node_id": "node_1"}, "content_type", 400),
        ({"size": "1KB", "file_name": "../up.bin", "node_id": "node_1"}, "file_name", 400),
        ({"size": "1KB", "file_name": "config.json", "node_id": "node_1"}, "name", 409),
        ({"size": "1TB", "node_id": "node_1"}, "size", 400),
    ],
)
def test_bad_generator_requests(api, demo, body, field: str, status: int) -> None:
    assert_error(api.post("/api/file-generator/create", body, format="json"), status, f"{field}:")
    assert (Path(demo["node_1"].storage_root) / "config.json").read_text() == '{"a": 1}'


def test_generate_and_transfer(api, demo) -> None:
    response = api.post(
        "/api/file-generator/create-and-transfer",
        {"size": "1KB", "content_type": "text", "sender_id": "node_1", "recipients": ["node_2", "node_3"]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["success"] is True
    assert body["file_info"]["actual_size"] == 1024
    summary = body["transfer_summary"]
    transfer = Transfer.objects.get(pk=summary["transfer_id"])
    assert transfer.file_name == body["file_info"]["file_name"]
    assert summary["recipients"] == ["node_2", "node_3"]
    assert summary["status"] == "queued" and summary["cast_type"] == "multicast"


def test_generate_and_transfer_to_a_disabled_node_writes_nothing(api, demo) -> None:
    node_set_enabled(node=demo["node_2"], enabled=False)
    response = api.post(
        "/api/file-generator/create-and-transfer",
        {"size": "1KB", "sender_id": "node_1", "recipients": ["node_2"], "file_name": "never.bin"},
        format="json",
    )
    assert_error(response, 400, "targets:")
    assert not (Path(demo["node_1"].storage_root) / "never.bin").exists()
    assert not Transfer.objects.exists()


def test_compat_endpoints_need_a_login(db) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    for method, url in [
        ("get", "/api/status"),
        ("post", "/api/nodes"),
        ("delete", "/api/nodes/node_1"),
        ("post", "/api/send"),
        ("get", "/api/nodes/node_1/messages"),
        ("get", "/api/file-transfers/status"),
        ("post", "/api/file-transfers/manual"),
        ("post", "/api/file-transfers/auto/toggle"),
        ("get", "/api/file-generator/presets"),
        ("post", "/api/file-generator/create"),
        ("post", "/api/file-generator/create-and-transfer"),
    ]:
        assert_error(getattr(client, method)(url), 401)


# --- through real actors -----------------------------------------------------------------
@pytest.mark.ray
def test_generate_and_transfer_delivers_identical_bytes(api, worker, nodes) -> None:
    response = api.post(
        "/api/file-generator/create-and-transfer",
        {"size": "3MB", "content_type": "random", "sender_id": "node_1", "recipients": ["node_2", "node_3"]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    transfer = Transfer.objects.get(pk=body["transfer_summary"]["transfer_id"])
    assert worker.run_until(finished(transfer), timeout=120)
    assert transfer.status == Transfer.Status.COMPLETED, transfer.error
    name = body["file_info"]["file_name"]
    for node in ("node_2", "node_3"):
        received = Path(nodes[node].storage_root) / name
        assert sha256_of(received) == body["file_info"]["sha256"]
    # The source did not hash the file again: the manifest from generation was used.
    assert transfer.sha256 == body["file_info"]["sha256"]
    # And the status the old dashboard reads has counted it.
    stats = {s["node_id"]: s["file_transfer_stats"] for s in api.get("/api/status").json()["node_statuses"]}
    assert stats["node_1"]["successful_transfers"] == 1
    assert stats["node_2"]["bytes_transferred"] == 3 * 1024**2
    assert os.path.getsize(Path(nodes["node_1"].storage_root) / name) == 3 * 1024**2
