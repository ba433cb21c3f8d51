"""Schema-driven fuzzing: every operation in /api/schema/, called in-process, answers as the schema says.

Each response is checked by schemathesis: no 5xx, only declared status codes and media types,
bodies that match their schema, schema-violating requests refused, and (for reads) valid
requests accepted. Then a stateful run chains operations (create, then read or act on what was
created). Bounded (a few examples per operation) and deterministic (derandomized), so it runs
in well under a minute and fails the same way twice. Alice (ordinary user) fuzzes every
operation; root (staff) fuzzes the staff-only operations that touch no files, because a staff
user may point a node's storage anywhere and the generated requests then would write there.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from nodes.edit_services import group_create
from nodes.services import node_create
from transfers.services import message_create, transfer_create

pytestmark = pytest.mark.django_db

FUZZ = hypothesis_settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    # A failure is reported as found: shrinking it would take longer than the whole run.
    phases=[Phase.explicit, Phase.generate],
)
STATEFUL = hypothesis_settings(FUZZ, max_examples=15, stateful_step_count=6)
FILES = r"/files/|/generate/|/file-generator/"
STAFF_ONLY = r"^/api/nodes(/\{node_id\})?$|^/api/v1/nodes/(\{name\}/(enable|disable)/)?$|^/api/v1/groups/|/auto/toggle"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Valid requests must be accepted only where the schema can say what valid is: reads. A write
# can be schema-valid and still rightly refused with a 400, because its rules span fields or
# rows that OpenAPI cannot express (a size or a preset; targets, a group or broadcast; a file
# that exists in the source's storage; a name not taken yet). A download's Range is valid or
# not (416) by the size of the file, which the schema cannot know either.
READ_CHECKS = [*CHECKS, positive_data_acceptance]
DOWNLOAD = "/api/v1/nodes/{name}/files/{file_path}"


def _checks(case: schemathesis.Case) -> list[Any]:
    if case.method.upper() == "GET":
        return READ_CHECKS if case.path != DOWNLOAD else CHECKS
    if (case.media_type or "").startswith("multipart/"):
        # In multipart/form-data every value is text: a `name` "mutated" to the boolean false
        # arrives as the text "false", which is a good name.
        return [check for check in CHECKS if check is not negative_data_rejection]
    return CHECKS


@pytest.fixture
def wsgi_app(storage: Path, settings) -> Iterator[WSGIHandler]:  # type: ignore[no-untyped-def]
    # The requests run inside this test's transaction: like Django's test client, keep the
    # request signals from closing the connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    settings.CASTRAY_MAX_UPLOAD_SIZE = 1024 * 1024  # a generated size must not fill the disk
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = {"user": None, "anon": None}
    settings.REST_FRAMEWORK = rest
    cache.clear()
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _seed_rows() -> dict[str, list[Any]]:
    """Rows for the requests to find, and the values that name them."""
    a, b = node_create(name="node_1"), node_create(name="node_2")
    for node in (a, b):
        Path(node.storage_root).mkdir(parents=True)
    (Path(a.storage_root) / "hello.txt").write_text("hello")
    group_create(name="edge", nodes=[b])
    transfer = transfer_create(source=a, file_name="hello.txt", targets=[b])
    message = message_create(sender=a, content="hi", targets=[b])
    nodes = ["node_1", "node_2"]
    return {
        # path and query parameters (a missing name or id is a 404, which reads may answer)
        "name": [*nodes, "edge"],
        "node_id": [*nodes, "nope"],
        "file_path": ["hello.txt", "missing.bin"],
        "id": [transfer.pk, message.pk, transfer.targets.get().pk, 999999],
        # body properties
        "source": nodes,
        "sender": nodes,
        "sender_id": nodes,
        "node": nodes,
        "targets": nodes,
        "recipients": nodes,
        "nodes": nodes,
        "group": ["edge"],
        "group_id": ["edge"],
        "file_name": ["hello.txt", "sub/new.bin"],
        "size": ["1KB", 0, 100, "2MB", "1.5KiB"],
    }


def _request_components(raw: dict[str, Any]) -> set[str]:
    """The components request bodies use (COMPONENT_SPLIT_REQUEST keeps them apart from answers)."""
    names: set[str] = set()
    todo = [
        operation["requestBody"]
        for item in raw["paths"].values()
        for operation in item.values()
        if "requestBody" in operation
    ]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] not in names:
                names.add(ref.rsplit("/", 1)[1])
                todo.append(raw["components"]["schemas"][ref.rsplit("/", 1)[1]])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return names


def _seeded(raw: dict[str, Any], values: dict[str, list[Any]], *, everywhere: bool) -> dict[str, Any]:
    """The schema with names that exist offered as enums, so requests reach past the 404s.

    Path parameters always; query parameters and request bodies only for valid requests
    (`everywhere`): an enum there would make every other name "invalid", though the API rightly
    takes any name for a new row or a filter.
    """
    raw = copy.deepcopy(raw)
    for item in raw["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] in values and (everywhere or parameter["in"] == "path"):
                    parameter["schema"] = {"enum": values[parameter["name"]]}
    if everywhere:
        for name in _request_components(raw):
            properties = raw["components"]["schemas"][name].get("properties", {})
            for prop, spec in properties.items():
                if prop in values:
                    if spec.get("type") == "array":
                        spec["items"] = {"enum": values[prop]}
                    else:
                        properties[prop] = {"enum": values[prop]}
    return raw


def _token(username: str, *, staff: bool) -> str:
    user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": staff})
    return Token.objects.get_or_create(user=user)[0].key


def _check(case: schemathesis.Case, token: str) -> None:
    headers = {"Authorization": f"Token {token}"}
    response = case.call(headers=headers)
    case.validate_response(response, checks=_checks(case), headers=headers)
    if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith("application/json"):
        body = response.json()
        assert body["success"] is False and body["message"], body


def _schemas(app: WSGIHandler, token: str) -> dict[schemathesis.GenerationMode, schemathesis.BaseSchema]:
    # The schema is for signed-in users (CASTRAY_PUBLIC_API_DOCS opens it).
    headers = {"Authorization": f"Token {token}"}
    raw = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app, headers=headers).raw_schema
    values = _seed_rows()
    schemas = {}
    for mode in schemathesis.GenerationMode:
        schema = schemathesis.openapi.from_dict(_seeded(raw, values, everywhere=mode.is_positive))
        schema.app = app  # calls go to the app in-process
        schemas[mode] = schema
    return schemas


def _fuzz(schemas: dict[schemathesis.GenerationMode, schemathesis.BaseSchema], token: str) -> int:
    # One bounded Hypothesis run per operation and mode: valid requests, then invalid ones
    # (schemathesis's pytest plugin does the same, but its lazy-fixture mode does not run here).
    labels = set()
    for mode, schema in schemas.items():
        for operation in [result.ok() for result in schema.get_all_operations()]:
            labels.add(operation.label)

            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                _check(case, token)

            try:
                run()
            except Unsatisfiable:
                # Nothing invalid to send (no parameters, no body): the valid run covered it.
                assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    return len(labels)


def _fuzz_stateful(schema: schemathesis.BaseSchema, token: str) -> None:
    """Sequences of calls linked by what one answers and the next takes (ids, names)."""
    headers = {"Authorization": f"Token {token}"}

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=_checks(case), headers=headers)

    Machine.run(settings=STATEFUL)


def test_every_operation_answers_as_its_schema_says(wsgi_app: WSGIHandler) -> None:
    token = _token("alice", staff=False)
    schemas = _schemas(wsgi_app, token)
    assert _fuzz(schemas, token) > 40
    _fuzz_stateful(schemas[schemathesis.GenerationMode.POSITIVE], token)


def test_every_staff_operation_answers_as_its_schema_says(wsgi_app: WSGIHandler) -> None:
    token = _token("root", staff=True)
    schemas = {
        mode: schema.include(path_regex=STAFF_ONLY).exclude(path_regex=FILES)
        for mode, schema in _schemas(wsgi_app, token).items()
    }
    assert _fuzz(schemas, token) >= 10
