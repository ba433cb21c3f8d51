"""The API does what its schema says: every status an operation can answer is declared, with one
error body, and parameters the schema calls invalid are refused rather than silently ignored.

tests/test_schema_fuzz.py checks the same by generated requests; these are the cases it found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from nodes.services import node_create
from transfers.services import transfer_create

pytestmark = pytest.mark.django_db
ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.clear()


@pytest.fixture
def schema(api: APIClient) -> dict[str, Any]:
    return api.get("/api/schema/?format=json").json()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]


def test_every_operation_declares_the_errors_every_view_can_answer(schema: dict[str, Any]) -> None:
    for path, method, operation in operations(schema):
        label = f"{method.upper()} {path}"
        responses = operation["responses"]
        parameters = operation.get("parameters", [])
        assert {"401", "503"} <= set(responses), label
        if path != "/health":  # open to anyone, never throttled
            assert {"403", "429"} <= set(responses), label
        if "requestBody" in operation or any(p["in"] != "path" for p in parameters):
            assert "400" in responses, label
        if "requestBody" in operation:
            assert "415" in responses, label
        if any(p["in"] == "path" for p in parameters):
            assert "404" in responses, label
        # Every error has a body: the one error shape unless the view declares its own.
        assert responses["401"]["content"]["application/json"]["schema"] == ERROR, label
        assert all("content" in r for status, r in responses.items() if int(status) >= 400), label
    assert "Error" in schema["components"]["schemas"]
    assert "/api/schema/" not in schema["paths"]


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("post", "/api/v1/transfers/{id}/cancel/", {"409"}),
        ("post", "/api/v1/transfers/{id}/retry/", {"409"}),
        ("post", "/api/v1/nodes/{name}/files/", {"409", "413"}),
        ("get", "/api/v1/nodes/{name}/files/{file_path}", {"400", "409", "416"}),
        ("delete", "/api/v1/nodes/{name}/files/{file_path}", {"400", "409"}),
        ("post", "/api/v1/nodes/{name}/generate/", {"409", "507"}),
        ("post", "/api/nodes", {"409"}),
        ("post", "/api/cluster/file-requests", {"409"}),
        ("get", "/api/cluster/file-requests/{id}/download", {"409"}),
    ],
)
def test_errors_particular_to_a_view_are_declared(schema: dict[str, Any], method: str, path: str, statuses) -> None:
    assert statuses <= set(schema["paths"][path][method]["responses"])


def test_request_bodies_are_json_and_their_own_components(schema: dict[str, Any]) -> None:
    body = schema["paths"]["/api/v1/transfers/"]["post"]["requestBody"]["content"]
    assert list(body) == ["application/json"]
    request = schema["components"]["schemas"][body["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert "status" not in request["properties"]  # read-only: answered, never taken
    upload = schema["paths"]["/api/v1/nodes/{name}/files/"]["post"]["requestBody"]["content"]
    assert list(upload) == ["multipart/form-data"]


def test_fields_that_may_be_empty_are_declared_nullable(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["Transfer"]["properties"]["duration"]["nullable"] is True
    assert components["Transfer"]["properties"]["requested_by"]["nullable"] is True
    assert components["Node"]["properties"]["listen_port"]["nullable"] is True
    assert components["TargetDetail"]["properties"]["parent"]["nullable"] is True


# --- parameters are taken as declared, or refused ----------------------------------------
@pytest.mark.parametrize(
    "query", ["limit=abc", "limit=0", "limit=1.5", "limit=%D9%A3", "offset=-1", "offset=x", "offset=" + "9" * 30]
)
def test_a_limit_or_offset_that_is_not_a_whole_number_in_range_is_a_400(api: APIClient, query: str) -> None:
    response = api.get(f"/api/v1/nodes/?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["message"].startswith(("limit: give a whole number", "offset: give a whole number"))


def test_empty_or_huge_limits_are_the_default_and_the_maximum(api: APIClient, storage: Path) -> None:
    for i in range(3):
        node_create(name=f"n{i}")
    assert len(api.get("/api/v1/nodes/?limit=&offset=").json()["results"]) == 3
    assert len(api.get("/api/v1/nodes/?limit=" + "9" * 40).json()["results"]) == 3
    assert len(api.get("/api/v1/nodes/?limit=2&offset=2").json()["results"]) == 1


def test_boolean_filters_take_true_or_false_only(api: APIClient, storage: Path) -> None:
    node_create(name="n1")
    assert api.get("/api/v1/nodes/?enabled=true").json()["count"] == 1
    assert api.get("/api/v1/nodes/?enabled=0").json()["count"] == 0
    assert api.get("/api/v1/nodes/?enabled=").json()["count"] == 1
    for word in ("yes", "null", "maybe"):
        response = api.get(f"/api/v1/nodes/?enabled={word}")
        assert response.status_code == 400, word
        assert response.json()["message"] == "enabled: give true or false"
    assert api.get("/api/v1/clusters/?active=nope").status_code == 400


def test_the_file_list_s_hash_is_a_boolean(api: APIClient, storage: Path) -> None:
    Path(node_create(name="node_1").storage_root).mkdir(parents=True)
    assert api.get("/api/v1/nodes/node_1/files/?hash=true").status_code == 200
    assert api.get("/api/v1/nodes/node_1/files/?hash=null").status_code == 400


def test_targets_of_a_transfer_that_does_not_exist_are_none(api: APIClient, storage: Path) -> None:
    a, b = node_create(name="a"), node_create(name="b")
    transfer = transfer_create(source=a, file_name="f", targets=[b])
    assert api.get(f"/api/v1/targets/?transfer={transfer.pk}").json()["count"] == 1
    assert api.get("/api/v1/targets/?transfer=-327").json()["count"] == 0
    assert api.get("/api/v1/targets/?transfer=1.5").status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/nodes/a%00b/files/",
        "/api/nodes/a%00b/messages",
        "/api/v1/nodes/not%20a%20name/generate/",
    ],
)
def test_a_name_no_node_can_have_is_a_404_not_a_database_error(api: APIClient, url: str) -> None:
    # PostgreSQL refuses a query with a NUL in it: such a name is not looked up.
    method = api.post if url.endswith("generate/") else api.get
    assert method(url, {"name": "x", "size": 1}, format="json").status_code == 404


def test_a_node_or_group_name_no_row_can_have_is_a_400(api: APIClient, storage: Path) -> None:
    node_create(name="node_1")
    response = api.post("/api/send", {"sender": "node_1", "content": "hi", "group_id": "\x00x"}, format="json")
    assert response.status_code == 400
    assert "no group named" in response.json()["message"]
