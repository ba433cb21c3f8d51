"""The API does what its schema says: every status an operation can answer is declared, with one
error body.

tests/test_schema_fuzz.py checks the same by generated requests; these are the cases it found.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

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
