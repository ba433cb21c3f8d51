"""The minimal resource API: who may do what, and bad input answered with a 4xx that says why."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from nodes.models import Node
from nodes.services import node_create, node_set_enabled
from transfers.models import Transfer

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_nodes(storage: Path) -> tuple[Node, Node]:
    a, b = node_create(name="node_1"), node_create(name="node_2")
    Path(a.storage_root).mkdir(parents=True)
    (Path(a.storage_root) / "hello.txt").write_text("hello")
    return a, b


def test_anonymous_clients_get_401() -> None:
    client = APIClient()
    for url in ["/api/v1/nodes/", "/api/v1/transfers/", "/api/v1/clusters/"]:
        response = client.get(url)
        assert response.status_code == 401, url
        assert response.json()["success"] is False
        assert "credentials" in response.json()["message"]


def test_token_authentication_works(alice, two_nodes) -> None:
    token = Token.objects.create(user=alice)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get("/api/v1/nodes/")
    assert response.status_code == 200
    assert [n["name"] for n in response.json()["results"]] == ["node_1", "node_2"]


def test_only_staff_create_nodes(api, staff_api, storage) -> None:
    # Alice may read nodes but not create them; root (staff) may.
    assert api.post("/api/v1/nodes/", {"name": "node_9"}, format="json").status_code == 403
    response = staff_api.post("/api/v1/nodes/", {"name": "node_9", "port": 47001}, format="json")
    assert response.status_code == 201, response.json()
    node = Node.objects.get(name="node_9")
    assert node.enabled and node.requested_port == 47001


def test_bad_node_names_are_rejected(staff_api, storage) -> None:
    for name in ["../x", "a b", "", "-x"]:
        response = staff_api.post("/api/v1/nodes/", {"name": name}, format="json")
        assert response.status_code == 400, name
        assert response.json()["message"].startswith("name:")


def test_it_creates_and_reads_a_transfer(api, two_nodes, alice) -> None:
    response = api.post(
        "/api/v1/transfers/", {"source": "node_1", "file_name": "hello.txt", "targets": ["node_2"]}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "queued"
    assert [r["node"] for r in body["recipients"]] == ["node_2"]
    transfer = Transfer.objects.get(pk=body["id"])
    assert transfer.requested_by == alice
    detail = api.get(f"/api/v1/transfers/{transfer.pk}/").json()
    assert detail["file_name"] == "hello.txt"
    assert detail["recipients"][0]["status"] == "pending"
    assert api.get("/api/v1/transfers/?status=queued").json()["count"] == 1


@pytest.mark.parametrize(
    ("file_name", "says"),
    [
        ("/etc/passwd", "is absolute"),
        ("../../etc/passwd", "contains '..'"),
        ("a/../../b", "contains '..'"),
        ("escape.txt", "symbolic link"),
        ("missing.txt", "does not exist"),
    ],
)
def test_unsafe_or_missing_file_names_are_rejected(api, two_nodes, file_name: str, says: str) -> None:
    source = two_nodes[0]
    outside = Path(source.storage_root).parent.parent / "outside.txt"
    outside.write_text("not yours")
    (Path(source.storage_root) / "escape.txt").symlink_to(outside)
    response = api.post(
        "/api/v1/transfers/", {"source": "node_1", "file_name": file_name, "targets": ["node_2"]}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["message"].startswith("file_name:")
    assert says in body["message"]
    assert not Transfer.objects.exists()


def test_disabled_or_unknown_targets_are_rejected(api, two_nodes) -> None:
    node_set_enabled(node=two_nodes[1], enabled=False)
    response = api.post(
        "/api/v1/transfers/", {"source": "node_1", "file_name": "hello.txt", "targets": ["node_2"]}, format="json"
    )
    assert response.status_code == 400
    assert "node_2 are disabled" in response.json()["message"]
    response = api.post(
        "/api/v1/transfers/", {"source": "node_1", "file_name": "hello.txt", "targets": ["node_77"]}, format="json"
    )
    assert response.status_code == 400
    assert "node_77" in response.json()["message"]
    assert not Transfer.objects.exists()


def test_casting_to_itself_or_to_nobody_is_rejected(api, two_nodes) -> None:
    for targets, says in [(["node_1"], "cannot cast to itself"), ([], "choose exactly one of")]:
        response = api.post(
            "/api/v1/transfers/", {"source": "node_1", "file_name": "hello.txt", "targets": targets}, format="json"
        )
        assert response.status_code == 400
        assert says in response.json()["message"]


def test_malformed_json_and_wrong_types_get_400(api, two_nodes) -> None:
    response = api.generic("POST", "/api/v1/transfers/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["message"]
    response = api.post("/api/v1/transfers/", {"source": 5, "file_name": ["x"], "targets": "node_2"}, format="json")
    assert response.status_code == 400
    assert response.json()["success"] is False


def test_health_answers_without_a_worker(client, db) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["live"] is True and body["ready"] is False
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["worker"]["ok"] is False
