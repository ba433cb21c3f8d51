"""Server-side failures leave a trace: each is logged with its traceback under the request's id,
and the JSON answer repeats that id (also in X-Request-ID on every response)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db.utils import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.test import APIClient

from castray_site.lib.logformat import JsonFormatter
from castray_site.urls import urlpatterns as site_urlpatterns
from nodes.file_views import GeneratorPresetsView
from nodes.services import node_create
from tests.cluster_fixtures import BASE_DIR
from transfers.models import Transfer

pytestmark = pytest.mark.django_db
PRESETS = "/api/v1/generator/presets/"


def database_gone(request: HttpRequest) -> HttpResponse:
    raise OperationalError("connection to server at 127.0.0.1, port 5432 failed: Connection refused")


# For @pytest.mark.urls: the site, plus a plain Django view under /api/ (outside DRF's handler).
urlpatterns = [path("api/test-only/database-gone", database_gone), *site_urlpatterns]
handler500 = "castray_site.api_errors.server_error"


@pytest.fixture
def request_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    # django.request does not propagate to the root logger (its handler prints it): listen there.
    logger = logging.getLogger("django.request")
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


@pytest.fixture
def failing_client(alice, monkeypatch: pytest.MonkeyPatch) -> APIClient:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaput in the presets")

    monkeypatch.setattr(GeneratorPresetsView, "get", boom)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(alice)
    return client


def test_an_unhandled_exception_is_logged_with_its_traceback_under_the_id_the_answer_gives(
    failing_client: APIClient, request_log: pytest.LogCaptureFixture
) -> None:
    response = failing_client.get(PRESETS)
    assert response.status_code == 500
    body = response.json()
    request_id = body["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert response["X-Request-ID"] == request_id
    assert body["success"] is False and f"request_id {request_id}" in body["message"]

    [record] = [r for r in request_log.records if r.exc_info]
    assert record.levelno == logging.ERROR and record.exc_info[0] is RuntimeError
    # What the configured handler prints: the traceback and the id, in both log formats.
    console = next(h for h in logging.getLogger("django.request").handlers if h.name == "console")
    assert console.filter(record)
    plain = console.format(record)
    assert f"request_id={request_id}" in plain.splitlines()[0]
    assert "Traceback (most recent call last)" in plain and "RuntimeError: kaput in the presets" in plain
    entry = json.loads(JsonFormatter().format(record))
    assert entry["request_id"] == request_id and "RuntimeError: kaput in the presets" in entry["exception"]


def test_a_well_formed_incoming_request_id_is_kept_and_others_replaced(
    failing_client: APIClient, api: APIClient
) -> None:
    response = failing_client.get(PRESETS, HTTP_X_REQUEST_ID="lb-7f3a9c0e.42")
    assert response["X-Request-ID"] == response.json()["request_id"] == "lb-7f3a9c0e.42"
    for forged in ("a b c d e f g h", "x" * 200, "abc\nERROR forged line", "short"):
        response = api.get("/api/v1/nodes/", HTTP_X_REQUEST_ID=forged)
        assert response.status_code == 200
        assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"]), forged
    # Every answer has one, not only errors.
    assert re.fullmatch(r"[0-9a-f]{32}", APIClient().get("/health")["X-Request-ID"])


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_the_configured_logging_prints_the_traceback_in_both_formats(tmp_path: Path, log_format: str) -> None:
    # The process's own logging configuration, as a deployment has it: Django's path for an
    # unhandled exception (log, then handler500) and what reaches stderr.
    code = (
        "from django.core.handlers.exception import response_for_exception\n"
        "from django.test import RequestFactory\n"
        "request = RequestFactory().get('/api/v1/anything/')\n"
        "request.id = 'feedc0de-0001'\n"
        "try:\n"
        "    raise RuntimeError('kaput in a view')\n"
        "except RuntimeError as exc:\n"
        "    response = response_for_exception(request, exc)\n"
        "print(response.status_code, response.content.decode())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CASTRAY_", "DATABASE_URL"))}
    env.update({"CASTRAY_DATA_DIR": str(tmp_path), "CASTRAY_LOG_FORMAT": log_format})
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    status, _, body = result.stdout.strip().splitlines()[-1].partition(" ")
    assert status == "500", result.stdout + result.stderr
    assert json.loads(body)["request_id"] == "feedc0de-0001"
    if log_format == "json":
        [entry] = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
        assert entry["level"] == "ERROR" and entry["logger"] == "django.request"
        assert entry["request_id"] == "feedc0de-0001" and "RuntimeError: kaput in a view" in entry["exception"]
    else:
        assert "ERROR django.request Internal Server Error: /api/v1/anything/ request_id=feedc0de-0001" in result.stderr
        assert "Traceback (most recent call last)" in result.stderr
        assert "RuntimeError: kaput in a view" in result.stderr


@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_a_post_while_the_database_is_down_is_a_503(
    api: APIClient, storage: Path, monkeypatch: pytest.MonkeyPatch, request_log: pytest.LogCaptureFixture, error: type
) -> None:
    for name in ("node_1", "node_2"):
        Path(node_create(name=name).storage_root).mkdir(parents=True)
    (storage / "node_1" / "any.bin").write_bytes(b"x")

    def refused(*args: object, **kwargs: object) -> None:
        raise error("server closed the connection unexpectedly")

    monkeypatch.setattr(Transfer.objects, "create", refused)
    api.raise_request_exception = False
    body = {"source": "node_1", "file_name": "any.bin", "targets": ["node_2"]}
    response = api.post("/api/v1/transfers/", body, format="json")
    assert response.status_code == 503, response.content
    answer = response.json()
    assert answer["success"] is False and answer["message"] == "the database is not reachable; try again"
    assert answer["request_id"] == response["X-Request-ID"]
    # Answered, not raised: the reason is logged all the same.
    [logged] = [r for r in request_log.records if r.name == "castray.api"]
    assert logged.exc_info and "server closed the connection" in logged.getMessage()


@pytest.mark.urls("tests.test_api_errors")
def test_outside_drf_an_api_path_whose_database_is_down_is_a_503_too(db) -> None:
    response = APIClient(raise_request_exception=False).get("/api/test-only/database-gone")
    assert response.status_code == 503
    assert response.json() == {
        "success": False,
        "message": "the database is not reachable; try again",
        "request_id": response["X-Request-ID"],
    }
