"""Real Ray clusters and CastRay servers as processes, for the multi-node and cluster-switch tests.

Why processes: the pytest process already runs the test session's own Ray (`ray_session`), and
one Python process is attached to one Ray cluster at a time. So each scenario runs CastRay as
`manage.py castray_up` (server and worker in one process, its own SQLite data directory) and
drives it over HTTP, while this process starts and kills the Ray nodes it needs with
`ray start --block` (bridge/bench/raynodes.py: each in its own session and temp dir, killed by
those; `ray stop` is never used, it would stop the session's Ray too).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The Ray node processes live beside the namespace-host benchmark, which uses them too.
from bridge.bench.raynodes import RayCluster, RayNodeProcess, kill_by_marker, processes_naming
from tests.servers import api_call, free_port

__all__ = [
    "BASE_DIR",
    "CastRayServer",
    "RayCluster",
    "RayNodeProcess",
    "kill_by_marker",
    "processes_naming",
]

BASE_DIR = Path(__file__).resolve().parent.parent


class CastRayServer:
    """`manage.py castray_up` with its own data directory, attached to `ray_address`."""

    def __init__(self, data_dir: Path, ray_address: str, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / "server.log"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "RAY_AUTH_MODE", "RAY_ADDRESS")
        }
        self.env.update(
            {
                "CASTRAY_DATA_DIR": str(data_dir),
                "RAY_ADDRESS": ray_address,
                "CASTRAY_WORKER_IN_PROCESS": "1",
                "CASTRAY_HEARTBEAT_SECONDS": "0.5",
                "CASTRAY_CHUNK_SIZE": "1MiB",
                "CASTRAY_THROTTLE_USER": "off",
            }
        )
        self.env.update(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "castray_up", "--port", str(self.port)],
            cwd=BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                status, body = self.call("GET", "/health")
                if status == 200 and body["checks"]["ray"]["ok"]:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("CastRay never connected to Ray:\n" + self.log())
        self.token = self.manage("drf_create_token", "admin").split()[2]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return api_call(self.url, method, path, body, token=self.token, timeout=15)

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["name"]: n for n in self.get("/api/v1/nodes/?limit=500")["results"]}

    def wait(self, what: str, predicate: Any, timeout: float = 60.0, interval: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            assert self.proc is not None and self.proc.poll() is None, self.log()
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what}; last: {last}\n{self.log()}")

    def operation(self, op_id: int, timeout: float = 90.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            op = self.get(f"/api/cluster/operations/{op_id}")
            return op if op["status"] in ("succeeded", "failed") else None

        return self.wait(f"operation {op_id}", done, timeout=timeout, interval=0.3)

    def transfer(self, transfer_id: int, timeout: float = 120.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            body = self.get(f"/api/v1/transfers/{transfer_id}/")
            return body if body["status"] not in ("queued", "running") else None

        return self.wait(f"cast {transfer_id}", done, timeout=timeout)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
