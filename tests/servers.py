"""CastRay as a real process for end-to-end tests: `manage.py castray_up` attached to the
test session's Ray, with its own data directory, reachable over HTTP and WebSockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_call(
    url: str, method: str, path: str, body: dict[str, Any] | None = None, *, token: str = "", timeout: float = 10
) -> tuple[int, Any]:
    """One JSON request to a running CastRay: (HTTP status, decoded body), errors included."""
    request = urllib.request.Request(
        url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Token {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def stop(process: subprocess.Popen[Any]) -> None:
    """Ask a server process to stop; kill it if it has not within 20 s."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


class RunningServer:
    def __init__(self, data_dir: Path, port: int, log: Path) -> None:
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.token = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def admin_password(self) -> str:
        return (self.data_dir / "admin_password").read_text().strip()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return api_call(self.url, method, path, body, token=self.token)


def _storage_of(actor: dict[str, str]) -> str:
    import ray

    try:
        handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
        return ray.get(handle.ping.remote(), timeout=5).storage_dir
    except Exception:  # noqa: BLE001 - a dead actor has nothing to clean
        return ""


@contextmanager
def castray_up(tmp_path: Path, **extra_env: str) -> Iterator[RunningServer]:
    """Start the server (worker inside) on a free port; stop it and its node actors after."""
    import ray

    env = {
        # Attach to the session's Ray rather than starting a second one.
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "CASTRAY_RAY_SHIP_CODE": "0",
        "CASTRAY_WORKER_IN_PROCESS": "1",
        "CASTRAY_HEARTBEAT_SECONDS": "0.5",
        **extra_env,
    }
    try:
        with _castray_up_process(tmp_path, env, until=lambda body: body["ready"]) as server:
            yield server
    finally:
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["name"].startswith("castnode:") and str(tmp_path) in _storage_of(actor):
                ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]))


@contextmanager
def castray_up_without_worker(tmp_path: Path, **extra_env: str) -> Iterator[RunningServer]:
    """The same server process with no worker and no Ray: HTTP, WebSockets and the database only.

    Ready as soon as /health says it is live (it is never `ready` without a worker).
    """
    env = {"CASTRAY_WORKER_IN_PROCESS": "0", **extra_env}
    with _castray_up_process(tmp_path, env, until=lambda body: body["live"]) as server:
        yield server


@contextmanager
def _castray_up_process(
    tmp_path: Path, extra_env: dict[str, str], until: Callable[[dict[str, Any]], bool]
) -> Iterator[RunningServer]:
    """`manage.py castray_up` on a free port with its own data directory, until /health says `until`."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update({"CASTRAY_DATA_DIR": str(tmp_path / "data"), **extra_env})
    log_path = tmp_path / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "manage.py", "castray_up", "--port", str(port)],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own session, so that a test can tell its process tree from the test run's.
        start_new_session=True,
    )
    server = RunningServer(tmp_path / "data", port, log_path)
    server.process = process
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                status, body = server.call("GET", "/health")
                if status == 200 and until(body):
                    break
            except (OSError, ValueError):
                pass
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.3)
        else:
            raise AssertionError("server never became ready:\n" + log_path.read_text())
        yield server
    finally:
        stop(process)
        log.close()
