"""Nodes, node groups and node inboxes through the resource API.

Alice is an ordinary user: she reads nodes and groups. Root is staff: he creates, changes,
enables and disables nodes and manages groups.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from nodes.models import Node, NodeGroup
from nodes.services import node_create
from transfers.models import Delivery, Message
from transfers.services import message_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.clear()


@pytest.fixture
def three(storage: Path) -> list[Node]:
    return [node_create(name=name) for name in ("node_1", "node_2", "node.3")]


# --- nodes -------------------------------------------------------------------------------
def test_it_lists_and_reads_nodes(api, three) -> None:
    body = api.get("/api/v1/nodes/").json()
    assert body["count"] == 3
    assert [n["name"] for n in body["results"]] == ["node.3", "node_1", "node_2"]
    # A name with a dot is addressable.
    detail = api.get("/api/v1/nodes/node.3/").json()
    assert detail["name"] == "node.3"
    assert set(detail) >= {"status", "enabled", "listen_port", "port", "groups", "egress_cap", "last_heartbeat"}
    assert api.get("/api/v1/nodes/nope/").status_code == 404


def test_nodes_filter_and_order(api, three) -> None:
    Node.objects.filter(name="node_2").update(status=Node.Status.ONLINE)
    assert [n["name"] for n in api.get("/api/v1/nodes/?status=online").json()["results"]] == ["node_2"]
    names = [n["name"] for n in api.get("/api/v1/nodes/?ordering=-name").json()["results"]]
    assert names == ["node_2", "node_1", "node.3"]
    response = api.get("/api/v1/nodes/?status=sleeping")
    assert response.status_code == 400
    assert response.json()["message"].startswith("status:")


def test_staff_create_a_node_with_limits(staff_api, storage) -> None:
    body = {"name": "node_9", "port": 47001, "egress_cap": 1000000, "max_concurrent": 2, "storage_dir": "/srv/n9"}
    response = staff_api.post("/api/v1/nodes/", body, format="json")
    assert response.status_code == 201, response.json()
    node = Node.objects.get(name="node_9")
    assert (node.requested_port, node.egress_cap, node.max_concurrent) == (47001, 1000000, 2)
    assert node.storage_dir == "/srv/n9"
    assert response.json()["port"] == 47001


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "port": 70000}, "port"),
        ({"name": "x", "port": "http"}, "port"),
        ({"name": "x", "storage_dir": "relative/dir"}, "storage_dir"),
        ({"name": "x", "egress_cap": -1}, "egress_cap"),
        ({"name": "node_1"}, "name"),
        ({}, "name"),
    ],
)
def test_bad_node_input_is_400_naming_the_field(staff_api, three, body, field: str) -> None:
    response = staff_api.post("/api/v1/nodes/", body, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["message"].startswith(f"{field}:")


def test_staff_change_a_node_but_not_its_name(api, staff_api, three) -> None:
    assert api.patch("/api/v1/nodes/node_1/", {"egress_cap": 5}, format="json").status_code == 403
    response = staff_api.patch(
        "/api/v1/nodes/node_1/", {"egress_cap": 5, "name": "renamed", "enabled": False}, format="json"
    )
    assert response.status_code == 200, response.json()
    node = Node.objects.get(pk=three[0].pk)
    assert node.name == "node_1" and node.enabled  # read-only here: enabling is an action
    assert node.egress_cap == 5
    response = staff_api.put("/api/v1/nodes/node_1/", {"ray_node_id": "abc", "port": 5000}, format="json")
    assert response.status_code == 200, response.json()
    node.refresh_from_db()
    assert (node.ray_node_id, node.requested_port) == ("abc", 5000)
    assert staff_api.delete("/api/v1/nodes/node_1/").status_code == 405


def test_staff_enable_and_disable_nodes(api, staff_api, three) -> None:
    assert api.post("/api/v1/nodes/node_2/disable/").status_code == 403
    response = staff_api.post("/api/v1/nodes/node_2/disable/")
    assert response.status_code == 200
    assert response.json()["enabled"] is False
    node = Node.objects.get(name="node_2")
    assert not node.enabled and node.status == Node.Status.OFFLINE
    assert staff_api.post("/api/v1/nodes/node_2/enable/").json()["enabled"] is True
    assert Node.objects.get(name="node_2").enabled
    assert staff_api.post("/api/v1/nodes/nope/enable/").status_code == 404


# --- groups ------------------------------------------------------------------------------
def test_staff_manage_groups_by_node_name(api, staff_api, three) -> None:
    body = {"name": "edge", "description": "edge nodes", "nodes": ["node_1", "node.3"]}
    assert api.post("/api/v1/groups/", body, format="json").status_code == 403
    response = staff_api.post("/api/v1/groups/", body, format="json")
    assert response.status_code == 201, response.json()
    group = NodeGroup.objects.get(name="edge")
    assert sorted(n.name for n in group.nodes.all()) == ["node.3", "node_1"]
    assert api.get("/api/v1/groups/edge/").json()["nodes"] == ["node.3", "node_1"]
    assert api.get("/api/v1/nodes/node_1/").json()["groups"] == ["edge"]

    response = staff_api.patch("/api/v1/groups/edge/", {"nodes": ["node_2"]}, format="json")
    assert response.status_code == 200
    assert [n.name for n in group.nodes.all()] == ["node_2"]
    assert NodeGroup.objects.get(pk=group.pk).description == "edge nodes"

    response = staff_api.post("/api/v1/groups/", {"name": "bad", "nodes": ["node_77"]}, format="json")
    assert response.status_code == 400
    assert "no node named node_77" in response.json()["message"]
    response = staff_api.post("/api/v1/groups/", {"name": "edge"}, format="json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("name:")

    assert staff_api.delete("/api/v1/groups/edge/").status_code == 204
    assert not NodeGroup.objects.exists()


# --- inbox -------------------------------------------------------------------------------
def test_a_node_inbox_lists_its_deliveries_newest_first(api, three) -> None:
    a, b, c = three
    first = message_create(sender=a, content="first", targets=[b])
    second = message_create(sender=c, content='{"k": 1}', kind=Message.Kind.JSON, targets=[b, a])
    Delivery.objects.filter(message=first).update(status=Delivery.Status.DELIVERED)
    body = api.get("/api/v1/nodes/node_2/inbox/").json()
    assert body.get("count") == 2, body
    assert [(m["message"], m["sender"], m["content"]) for m in body["results"]] == [
        (second.pk, "node.3", '{"k": 1}'),
        (first.pk, "node_1", "first"),
    ]
    assert body["results"][0]["message_type"] == "json"
    assert body["results"][0]["cast_type"] == "multicast"
    delivered = api.get("/api/v1/nodes/node_2/inbox/?status=delivered").json()
    assert [m["content"] for m in delivered["results"]] == ["first"]
    assert api.get("/api/v1/nodes/node_2/inbox/?status=lost").status_code == 400
    assert api.get("/api/v1/nodes/node.3/inbox/").json()["count"] == 0


def test_anonymous_clients_get_401_everywhere(three) -> None:
    client = APIClient()
    for url in ["/api/v1/nodes/", "/api/v1/groups/", "/api/v1/nodes/node_1/inbox/", "/api/v1/nodes/node_1/files/"]:
        response = client.get(url)
        assert response.status_code == 401, url
        assert response.json()["success"] is False
