"""Discovery of Ray clusters on this host: Ray's files and loopback ports, read and never changed."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from clusters.discovery import discover, scan
from clusters.models import DiscoveredCluster
from tests.servers import free_port

SESSION = "session_2026-11-01_10-00-00_123456_4242"
OLD_SESSION = "session_2026-10-01_10-00-00_654321_17"


@pytest.fixture
def gcs() -> Iterator[int]:
    """Something listening where a live cluster's GCS would be."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture
def ray_tmp(tmp_path: Path, gcs: int) -> Path:
    """A Ray temp dir as `ray start --head` leaves it: a live session, an old one, the address file."""
    root = tmp_path / "ray"
    live = root / SESSION
    live.mkdir(parents=True)
    (live / f"gcs_server_port_{'ab' * 28}").write_text(str(gcs))
    (live / "logs").mkdir()
    old = root / OLD_SESSION
    old.mkdir()
    (old / f"gcs_server_port_{'cd' * 28}").write_text(str(free_port()))  # nothing listens there now
    (root / "session_latest").symlink_to(live)
    (root / "ray_current_cluster").write_text(f"192.0.2.2:{gcs}")
    return root


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime) for p in root.rglob("*")}


def test_it_finds_the_live_cluster_and_knows_the_old_one_is_gone(ray_tmp: Path, gcs: int) -> None:
    before = snapshot(ray_tmp)
    found = {f.session_name: f for f in scan([str(ray_tmp)])}
    assert set(found) == {SESSION, OLD_SESSION}
    live = found[SESSION]
    assert live.alive and live.address == f"192.0.2.2:{gcs}" and live.started_by_pid == 4242
    assert live.head_node_id == "ab" * 28
    assert any("address file" in s for s in live.sources) and any("session files" in s for s in live.sources)
    assert not found[OLD_SESSION].alive
    assert snapshot(ray_tmp) == before  # read, never written


def test_a_missing_or_unreadable_temp_dir_is_nothing_found(tmp_path: Path) -> None:
    assert scan([str(tmp_path / "absent")]) == []
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("garbage")
    assert scan([str(tmp_path / "ray")]) == []


@pytest.fixture
def dashboard() -> Iterator[int]:
    """A stand-in for a Ray dashboard on loopback: it answers /api/version."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = json.dumps({"ray_version": "2.60.0", "session_name": SESSION}).encode()
            self.send_response(200 if self.path == "/api/version" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_a_dashboard_is_matched_to_its_session(ray_tmp: Path, dashboard: int) -> None:
    found = {f.session_name: f for f in discover([str(ray_tmp)], [free_port(), dashboard])}
    assert found[SESSION].dashboard_url == f"http://127.0.0.1:{dashboard}"
    assert found[OLD_SESSION].dashboard_url == ""


@pytest.mark.django_db
def test_the_endpoint_records_what_it_found(staff_api: APIClient, ray_tmp: Path, gcs: int, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CASTRAY_RAY_TEMP_DIRS = [str(ray_tmp)]
    settings.CASTRAY_DASHBOARD_PORTS = [free_port()]
    DiscoveredCluster.objects.create(address="10.9.9.9:6379", alive=True)  # found earlier, gone now
    response = staff_api.post("/api/cluster/discover-external")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["success"] is True
    assert [c["address"] for c in body["discovered_clusters"]] == [f"192.0.2.2:{gcs}"]
    assert body["stale_sessions"] == 1
    assert set(body) >= {"discovered_clusters", "connected_cluster", "external_nodes"}
    rows = {r.address: r for r in DiscoveredCluster.objects.all()}
    assert rows[f"192.0.2.2:{gcs}"].alive and rows[f"192.0.2.2:{gcs}"].last_seen
    assert not rows["10.9.9.9:6379"].alive


@pytest.mark.skipif(not os.path.isdir("/tmp/ray"), reason="no Ray has run on this machine")
def test_the_default_location_is_read_without_error() -> None:
    for found in scan(["/tmp/ray"]):
        assert found.address.rpartition(":")[2].isdigit()
