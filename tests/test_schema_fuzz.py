"""Schema-driven fuzzing: every operation in /api/schema/, called in-process, never answers 5xx.

Bounded (a few examples per operation) and deterministic (derandomized), so it runs in well
under a minute and fails the same way twice. Alice (ordinary user) fuzzes every operation;
root (staff) fuzzes the staff-only operations that touch no files, because a staff user may
point a node's storage anywhere and the generated requests then would write there.
"""

from __future__ import annotations

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
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token

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
)
FILES = r"/files/|/generate/|/file-generator/"
STAFF_ONLY = r"^/api/nodes(/\{node_id\})?$|^/api/v1/nodes/(\{name\}/(enable|disable)/)?$|^/api/v1/groups/|/auto/toggle"


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
    """Rows for the requests to find, and the values that name them (and some that do not)."""
    a, b = node_create(name="node_1"), node_create(name="node_2")
    for node in (a, b):
        Path(node.storage_root).mkdir(parents=True)
    (Path(a.storage_root) / "hello.txt").write_text("hello")
    group_create(name="edge", nodes=[b])
    transfer = transfer_create(source=a, file_name="hello.txt", targets=[b])
    message = message_create(sender=a, content="hi", targets=[b])
    nodes = ["node_1", "node_2", "nope"]
    return {
        # path and query parameters
        "name": nodes,
        "node_id": nodes,
        "file_path": ["hello.txt", "missing.bin", "a/../../x"],
        "id": [transfer.pk, message.pk, transfer.targets.get().pk, 999999],
        # body properties
        "source": nodes,
        "sender": nodes,
        "sender_id": nodes,
        "node": nodes,
        "targets": nodes,
        "recipients": nodes,
        "nodes": nodes,
        "group": ["edge", "nope"],
        "group_id": ["edge", "nope"],
        "file_name": ["hello.txt", "sub/new.bin", "../escape"],
        "size": ["1KB", 0, 100, "2MB", "1.5KiB"],
    }


def _seeded(raw: dict[str, Any], values: dict[str, list[Any]]) -> dict[str, Any]:
    """The schema with names that exist offered as enums, so requests reach past the 404s."""
    for item in raw["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] in values:
                    parameter["schema"] = {"enum": values[parameter["name"]]}
    for component in raw["components"]["schemas"].values():
        for prop, spec in component.get("properties", {}).items():
            if prop in values and not spec.get("readOnly"):
                if spec.get("type") == "array":
                    spec["items"] = {"enum": values[prop]}
                else:
                    component["properties"][prop] = {"enum": values[prop]}
    return raw


def _token(username: str, *, staff: bool) -> str:
    user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": staff})
    return Token.objects.get_or_create(user=user)[0].key


def _check(case: schemathesis.Case, token: str) -> None:
    response = case.call(headers={"Authorization": f"Token {token}"})
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}\n{response.text}"
    if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith("application/json"):
        body = response.json()
        assert body["success"] is False and body["message"], body


def _schema(app: WSGIHandler, token: str) -> schemathesis.BaseSchema:
    # The schema is for signed-in users (CASTRAY_PUBLIC_API_DOCS opens it).
    headers = {"Authorization": f"Token {token}"}
    loaded = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app, headers=headers)
    schema = schemathesis.openapi.from_dict(_seeded(loaded.raw_schema, _seed_rows()))
    schema.app = app  # calls go to the app in-process
    return schema


def _fuzz(schema: schemathesis.BaseSchema, token: str) -> int:
    # One bounded Hypothesis run per operation and mode: valid requests, then invalid ones
    # (schemathesis's pytest plugin does the same, but its lazy-fixture mode does not run here).
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                _check(case, token)

            try:
                run()
            except Unsatisfiable:
                # Nothing invalid to send (no parameters, no body): the valid run covered it.
                assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    return len(operations)


def test_no_operation_answers_5xx_to_a_user(wsgi_app: WSGIHandler) -> None:
    token = _token("alice", staff=False)
    assert _fuzz(_schema(wsgi_app, token), token) > 40


def test_no_staff_operation_answers_5xx(wsgi_app: WSGIHandler) -> None:
    token = _token("root", staff=True)
    schema = _schema(wsgi_app, token).include(path_regex=STAFF_ONLY).exclude(path_regex=FILES)
    assert _fuzz(schema, token) >= 10
