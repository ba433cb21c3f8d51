"""CastRay's own server process (`manage.py castray_up`, daphne, no worker and no Ray) as a
person and a real WebSocket client meet it: the login line it prints, and the close codes the
README promises (4401 not authenticated, 4404 unknown cast or node) seen over a real socket.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.servers import RunningServer, castray_up_without_worker


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with castray_up_without_worker(tmp_path_factory.mktemp("live")) as running:
        status, body = running.call(
            "POST", "/api/v1/auth/token/", {"username": "admin", "password": running.admin_password}
        )
        assert status == 200, body
        running.token = body["token"]
        yield running


def ws_url(server: RunningServer, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def close_code(url: str, **kw: object) -> int | None:
    """Open a socket and wait for the server to close it; the close code it sent."""
    with connect(url, open_timeout=10, **kw) as socket:  # type: ignore[arg-type]
        try:
            socket.recv(timeout=10)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
    raise AssertionError(f"{url} stayed open")


def test_anonymous_sockets_are_accepted_then_closed_with_4401(server: RunningServer) -> None:
    for path in ["/ws", "/ws/transfers/1", "/ws/nodes/1", "/ws?token=not-a-token"]:
        assert close_code(ws_url(server, path)) == 4401, path


def test_unknown_casts_and_nodes_are_closed_with_4404(server: RunningServer) -> None:
    for path in ["/ws/transfers/999", "/ws/nodes/999"]:
        assert close_code(ws_url(server, f"{path}?token={server.token}")) == 4404, path


def test_a_token_opens_the_feed_and_the_protocol_is_answered(server: RunningServer) -> None:
    protocols = ["castray.v1", f"castray.token.{server.token}"]
    with connect(ws_url(server, "/ws"), subprotocols=protocols, open_timeout=10) as socket:  # type: ignore[arg-type]
        assert socket.subprotocol == "castray.v1"
        first = json.loads(socket.recv(timeout=10))
        assert first["type"] == "status_update" and first["data"]["total_nodes"] == 3


def test_a_foreign_origin_is_refused_at_the_handshake_with_403(server: RunningServer) -> None:
    # The origin check runs before any consumer, so it refuses the handshake itself (README).
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(server, f"/ws?token={server.token}"), origin="http://evil.example.com", open_timeout=10)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


def test_castray_up_prints_the_login_line_last_with_the_dashboard_url(tmp_path: Path) -> None:
    with castray_up_without_worker(tmp_path) as running:
        pass
    lines = [line for line in running.log.read_text().splitlines() if line.strip()]
    login = next(i for i, line in enumerate(lines) if "admin" in line and "password" in line)
    serving = next(i for i, line in enumerate(lines) if "serving on" in line)
    assert login > serving, lines
    assert f"http://127.0.0.1:{running.port}/ " in lines[login] and "/admin/" not in lines[login], lines[login]
    assert running.admin_password in lines[login]
