"""Who may call the API, how hard, from which origins, and what errors look like."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clusters.models import Cluster
from nodes.services import node_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.clear()


def test_a_user_gets_a_token_with_a_password_and_uses_it(alice) -> None:
    client = APIClient()
    response = client.post("/api/v1/auth/token/", {"username": "alice", "password": "alice-password"}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    assert token == Token.objects.get(user=alice).key
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/transfers/").status_code == 200
    response = APIClient().post("/api/v1/auth/token/", {"username": "alice", "password": "wrong"}, format="json")
    assert response.status_code == 400
    assert response.json()["success"] is False


def test_a_bad_token_is_401(db) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = client.get("/api/v1/nodes/")
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid token."


def test_a_session_login_works(client, alice) -> None:
    client.force_login(alice)
    assert client.get("/api/v1/nodes/").status_code == 200


@pytest.mark.parametrize(
    "url",
    ["/api/v1/", "/api/v1/clusters/", "/api/v1/targets/", "/api/v1/messages/", "/api/status", "/api/send"],
)
def test_anonymous_clients_get_401(db, url: str) -> None:
    response = APIClient().get(url)
    assert response.status_code == 401, url
    assert response.json() == {"success": False, "message": "Authentication credentials were not provided."}


def test_anonymous_status_opens_only_status_and_health_details(db, settings) -> None:
    client = APIClient()
    health = client.get("/health").json()
    # Probes see what is up; the details need a login by default.
    assert health["checks"]["worker"] == {"ok": False}
    settings.CASTRAY_ANONYMOUS_STATUS = True
    assert client.get("/api/status").status_code == 200
    assert "error" in client.get("/health").json()["checks"]["worker"]
    for url in ["/api/v1/nodes/", "/api/file-transfers/status", "/api/file-generator/presets"]:
        assert client.get(url).status_code == 401, url
    assert client.post("/api/nodes", {"node_id": "x"}, format="json").status_code == 401


def test_health_details_for_authenticated_clients(api) -> None:
    checks = api.get("/health").json()["checks"]
    assert checks["worker"]["error"] == "no worker has reported yet"
    assert checks["database"]["ok"] is True


def test_clusters_are_read_only(api, staff_api) -> None:
    cluster = Cluster.objects.create(name="default", status=Cluster.Status.CONNECTED, ray_version="2.60.0")
    body = api.get("/api/v1/clusters/").json()
    assert [c["name"] for c in body["results"]] == ["default"]
    assert api.get(f"/api/v1/clusters/{cluster.pk}/").json()["ray_version"] == "2.60.0"
    assert api.get("/api/v1/clusters/?status=connected").json()["count"] == 1
    assert staff_api.post("/api/v1/clusters/", {"name": "x"}, format="json").status_code == 405
    assert staff_api.delete(f"/api/v1/clusters/{cluster.pk}/").status_code == 405


def test_requests_over_the_rate_are_throttled(api, settings) -> None:
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = {"user": "3/min", "anon": "2/min"}
    settings.REST_FRAMEWORK = rest
    for _ in range(3):
        assert api.get("/api/v1/nodes/").status_code == 200
    response = api.get("/api/v1/nodes/")
    assert response.status_code == 429
    assert response.json()["message"].startswith("Request was throttled")
    # Anonymous clients are throttled where they may call at all: guessing passwords, say.
    anonymous = APIClient()
    guess = {"username": "alice", "password": "guess"}
    codes = [anonymous.post("/api/v1/auth/token/", guess, format="json").status_code for _ in range(3)]
    assert codes == [400, 400, 429]


def test_throttling_is_on_by_default() -> None:
    from django.conf import settings

    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    assert rates["user"] and rates["anon"]


def test_cors_allows_configured_dashboard_origins_only(api, settings) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://dash.example.org"]
    response = api.get("/api/status", HTTP_ORIGIN="https://dash.example.org")
    assert response["Access-Control-Allow-Origin"] == "https://dash.example.org"
    response = api.get("/api/status", HTTP_ORIGIN="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in response
    # A preflight for a token-authenticated call from the dashboard.
    response = APIClient().options(
        "/api/v1/transfers/",
        HTTP_ORIGIN="https://dash.example.org",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    assert response["Access-Control-Allow-Origin"] == "https://dash.example.org"
    assert "authorization" in response["Access-Control-Allow-Headers"]


def test_unknown_api_paths_and_methods_answer_json(api, settings) -> None:
    settings.DEBUG = False
    response = api.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["success"] is False
    assert "see /api/docs/" in response.json()["message"]
    response = api.put("/api/status", {}, format="json")
    assert response.status_code == 405
    assert response.json()["message"] == 'Method "PUT" not allowed.'


def test_malformed_json_is_400_everywhere(staff_api, storage) -> None:
    node_create(name="node_1")
    for url in ["/api/v1/nodes/", "/api/v1/messages/", "/api/send", "/api/nodes", "/api/file-generator/create"]:
        response = staff_api.generic("POST", url, '{"node_id": ', content_type="application/json")
        assert response.status_code == 400, url
        assert response.json()["message"].startswith("JSON parse error"), url


def test_the_schema_and_docs_are_served(api) -> None:
    schema = api.get("/api/schema/?format=json").json()
    assert "/api/v1/transfers/{id}/retry/" in schema["paths"]
    assert "/api/file-transfers/manual" in schema["paths"]
    assert api.get("/api/docs/").status_code == 200


def test_the_schema_and_docs_need_a_login(client, alice) -> None:
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 401 and response.json()["success"] is False
    # The docs are pages: a browser is sent to log in and comes back.
    for page in ("/api/docs/", "/api/redoc/"):
        response = client.get(page)
        assert response.status_code == 302 and response["Location"] == f"/accounts/login/?next={page}"
    # A session and a token both do.
    client.force_login(alice)
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/redoc/").status_code == 200
    assert client.get("/api/schema/?format=json").status_code == 200
    token = Token.objects.create(user=alice).key
    assert APIClient().get("/api/schema/?format=json", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200


def test_the_schema_and_docs_can_be_opened_on_purpose(db, settings) -> None:
    settings.CASTRAY_PUBLIC_API_DOCS = True
    assert "/api/v1/transfers/" in APIClient().get("/api/schema/?format=json").json()["paths"]
    assert APIClient().get("/api/docs/").status_code == 200
    assert APIClient().get("/api/redoc/").status_code == 200
