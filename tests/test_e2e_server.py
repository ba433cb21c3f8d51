"""End to end: `manage.py castray_up` as a real process (server + worker inside), driven over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import sha256_of
from tests.servers import api_call, free_port

pytestmark = pytest.mark.ray
BASE_DIR = Path(__file__).resolve().parent.parent


class Server:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{port}"
        self.token = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return api_call(self.url, method, path, body, token=self.token)


@pytest.fixture
def server(ray_session, tmp_path: Path) -> Iterator[Server]:
    import ray

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        {
            "CASTRAY_DATA_DIR": str(tmp_path / "data"),
            # Attach to the session's Ray rather than starting a second one.
            "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "CASTRAY_RAY_SHIP_CODE": "0",
            "CASTRAY_WORKER_IN_PROCESS": "1",
            "CASTRAY_HEARTBEAT_SECONDS": "0.5",
        }
    )
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "manage.py", "castray_up", "--port", str(port)],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(tmp_path / "data", port)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                status, body = server.call("GET", "/health")
                if status == 200 and body["ready"]:
                    break
            except (OSError, ValueError):
                pass
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        else:
            raise AssertionError("server never became ready:\n" + (tmp_path / "server.log").read_text())
        token = subprocess.run(
            [sys.executable, "manage.py", "drf_create_token", "admin"],
            cwd=BASE_DIR,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[2]
        server.token = token
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["name"].startswith("castnode:") and str(tmp_path) in _storage_of(actor):
                ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]))


def _storage_of(actor: dict[str, str]) -> str:
    import ray

    try:
        handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
        return ray.get(handle.ping.remote(), timeout=5).storage_dir
    except Exception:  # noqa: BLE001 - a dead actor has nothing to clean
        return ""


def test_the_run_command_serves_demo_nodes_and_casts_through_the_api(server: Server) -> None:
    password = (server.data_dir / "admin_password").read_text().strip()
    assert len(password) >= 12

    def nodes() -> dict[str, str]:
        return {n["name"]: n["status"] for n in server.call("GET", "/api/v1/nodes/")[1]["results"]}

    deadline = time.monotonic() + 60
    while nodes() != {"node_1": "online", "node_2": "online", "node_3": "online"}:
        assert time.monotonic() < deadline, nodes()
        time.sleep(0.3)

    source = server.data_dir / "storage" / "node_1" / "e2e.bin"
    source.write_bytes(os.urandom(5_000_000))
    status, body = server.call(
        "POST", "/api/v1/transfers/", {"source": "node_1", "file_name": "e2e.bin", "targets": ["node_2"]}
    )
    assert status == 201, body
    deadline = time.monotonic() + 60
    while (detail := server.call("GET", f"/api/v1/transfers/{body['id']}/")[1])["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, detail
        time.sleep(0.2)
    assert detail["status"] == "completed", detail
    assert detail["size"] == 5_000_000
    assert detail["sha256"] == sha256_of(source)
    assert detail["duration"] is not None and detail["rate"] > 0
    assert sha256_of(server.data_dir / "storage" / "node_2" / "e2e.bin") == sha256_of(source)

    status, body = server.call(
        "POST", "/api/v1/transfers/", {"source": "node_1", "file_name": "../x", "targets": ["node_2"]}
    )
    assert status == 400 and "contains '..'" in body["message"]
