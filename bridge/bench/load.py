"""`castray_bench load`: the control plane under load during a broadcast.

It starts a real server (`manage.py castray_up`, worker inside, its own data directory and
loopback port), opens N WebSocket clients on `/ws` with token auth and drives R API requests
per second while the server broadcasts a file among its three demo nodes. It measures the
API's p50/p99, the time from the API reporting the cast complete to the last client having
the completion event, and the server process's peak memory. The reference, in the same run
and on the same server, is the same requests during the same broadcast with no WebSocket
client. Everything is bounded in count and time; the data directory is removed at the end.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from django.conf import settings
from websockets.asyncio.client import connect

TARGET_P99_MS = 150.0
TARGET_FEED_LAG_S = 1.0
TARGET_RSS_MIB = 400.0
PATHS = ["/api/status", "/api/v1/transfers/"]
CONNECT_BATCH = 50  # sockets opened at once: a burst of 500 SYNs overflows the listen backlog
CAST_TIMEOUT = 300.0
# How often the bench asks the API whether the cast ended: requests on top of --rps, so not
# as fast as it can (every 20 ms, it added 30-40 requests/s to the 50 measured).
POLL_SECONDS = 0.1


class Server:
    """`castray_up` as a child process on a free loopback port."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.root = root
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
        # Its own SQLite and storage; no throttle, or the requests measured would be 429s.
        env.update(CASTRAY_DATA_DIR=str(root), CASTRAY_THROTTLE_USER="off", CASTRAY_WORKER_IN_PROCESS="1")
        self.log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "castray_up", "--port", str(self.port)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 10) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Token {self.token}"} if self.token else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None

    def wait_ready(self, timeout: float = 180) -> None:
        """Until the worker is ready and the demo nodes are online; then log in as admin."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the server stopped; see " + str(self.root / "server.log"))
            try:
                status, body = self.call("GET", "/health")
                if status == 200 and body["ready"]:
                    if not self.token:
                        password = (self.root / "admin_password").read_text().strip()
                        _, answer = self.call(
                            "POST", "/api/v1/auth/token/", {"username": "admin", "password": password}
                        )
                        self.token = answer["token"]
                    nodes = self.call("GET", "/api/v1/nodes/")[1]["results"]
                    if len(nodes) >= 3 and all(n["status"] == "online" for n in nodes):
                        return
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.5)
        raise RuntimeError("the server did not become ready; see " + str(self.root / "server.log"))

    def peak_rss_mib(self) -> float | None:
        """The server process's peak resident memory (VmHWM), while it still runs."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


class ApiLoad:
    """R requests per second from a thread pool, on a fixed schedule, until stopped."""

    def __init__(self, server: Server, rps: float) -> None:
        self.server, self.rps = server, rps
        self.latencies: list[float] = []
        self.errors = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def one(self, path: str) -> None:
        started = time.perf_counter()
        try:
            status, _ = self.server.call("GET", path, timeout=30)
        except OSError:
            status = 0
        self.latencies.append((time.perf_counter() - started) * 1000)
        if status != 200:
            self.errors += 1

    def run(self) -> None:
        with ThreadPoolExecutor(max_workers=32) as pool:
            start, sent = time.monotonic(), 0
            while not self.stopped.is_set():
                due = start + sent / self.rps
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                pool.submit(self.one, PATHS[sent % len(PATHS)])
                sent += 1

    def summary(self) -> dict[str, Any]:
        samples = sorted(self.latencies)
        return {
            "p50_ms": round(statistics.median(samples), 1) if samples else None,
            "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1) if samples else None,
            "requests": len(samples),
            "errors": self.errors,
        }


def _client_process(url: str, protocols: list[str], count: int, out: Connection) -> None:
    """The clients' process: it reports ("ready", connected) once all tried, then
    ("done", transfer id, monotonic time) for each client's first `completed` event.

    A process of its own, so that relaying hundreds of sockets does not take the GIL from
    the threads that time the API requests (CLOCK_MONOTONIC is the same in both processes).
    """
    connected = 0

    async def client(opened: asyncio.Event) -> None:
        nonlocal connected
        seen: set[int] = set()
        try:
            async with connect(url, subprotocols=protocols, open_timeout=60, max_size=None) as ws:  # type: ignore[arg-type]
                await ws.recv()  # the status on connect: the client is in the feed from here
                connected += 1
                opened.set()
                async for raw in ws:
                    message = json.loads(raw)
                    data = message.get("data") or {}
                    done = message.get("type") == "transfer_activity" and data.get("status") == "completed"
                    if done and data["transfer"] not in seen:
                        seen.add(data["transfer"])
                        out.send(("done", data["transfer"], time.monotonic()))
        except Exception:  # noqa: BLE001 - a client that failed is counted by the parent
            opened.set()

    async def main() -> None:
        tasks = []
        for first in range(0, count, CONNECT_BATCH):
            batch = []
            for _ in range(first, min(count, first + CONNECT_BATCH)):
                opened = asyncio.Event()
                tasks.append(asyncio.ensure_future(client(opened)))
                batch.append(opened.wait())
            await asyncio.wait_for(asyncio.gather(*batch), timeout=120)
        out.send(("ready", connected, 0.0))
        await asyncio.gather(*tasks)

    asyncio.run(main())


class Clients:
    """N `/ws` clients in a child process, and when each first saw each cast complete."""

    def __init__(self, server: Server, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe(duplex=False)
        protocols = ["castray.v1", f"castray.token.{server.token}"]
        url = f"ws://127.0.0.1:{server.port}/ws"
        self.process = context.Process(target=_client_process, args=(url, protocols, count, child), daemon=True)
        self.connected = 0
        self.completed: dict[int, list[float]] = {}
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self.read, daemon=True)

    def read(self) -> None:
        try:
            while True:
                kind, value, when = self.pipe.recv()
                if kind == "ready":
                    self.connected = value
                    self.ready.set()
                else:
                    self.completed.setdefault(value, []).append(when)
        except (EOFError, OSError):
            self.ready.set()

    def start(self) -> None:
        self.process.start()
        self.reader.start()
        if not self.ready.wait(timeout=300):
            raise RuntimeError("the WebSocket clients did not connect within 300 s")

    def received(self, transfer_id: int) -> list[float]:
        return list(self.completed.get(transfer_id, []))

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(timeout=30)


def _cast(server: Server, file_name: str, clients: Clients | None, rps: float) -> dict[str, Any]:
    """Broadcast `file_name` from node_1 under API load; when the API and the clients saw it end."""
    load = ApiLoad(server, rps)
    load.thread.start()
    time.sleep(1.0)  # the load is steady before the cast starts
    status, body = server.call(
        "POST", "/api/v1/transfers/", {"source": "node_1", "file_name": file_name, "broadcast": True}
    )
    if status != 201:
        load.stopped.set()
        raise RuntimeError(f"the broadcast was refused: {status} {body}")
    api_done = time.monotonic()  # it cannot have ended before it was asked for
    deadline = api_done + CAST_TIMEOUT
    while True:
        # The lag is counted from the last answer that still said running, the earliest the
        # API could have reported the end: never in CastRay's favour by the poll's period.
        asked = time.monotonic()
        detail = server.call("GET", f"/api/v1/transfers/{body['id']}/", timeout=30)[1]
        if detail["status"] not in ("queued", "running") or time.monotonic() > deadline:
            break
        api_done = asked
        time.sleep(POLL_SECONDS)
    lag, have = None, 0
    if clients is not None:
        # Every client has it, or 10 s have passed.
        while len(clients.received(body["id"])) < clients.connected and time.monotonic() < api_done + 10:
            time.sleep(0.02)
        seen = clients.received(body["id"])
        have = len(seen)
        lag = round(max(seen) - api_done, 3) if seen else None
    time.sleep(1.0)
    load.stopped.set()
    load.thread.join(timeout=60)
    return {"status": detail["status"], "feed_lag_s": lag, "have": have, **load.summary()}


def bench_load(*, clients: int = 500, rps: float = 50, size: int = 256 << 20) -> list[dict[str, Any]]:
    root = Path(settings.DATA_DIR) / "bench" / f"load-{uuid.uuid4().hex[:6]}"
    root.mkdir(parents=True)
    server = Server(root)
    sockets: Clients | None = None
    try:
        server.wait_ready()
        storage = root / "storage" / "node_1"
        storage.mkdir(parents=True, exist_ok=True)
        for name in ("load-reference.bin", "load.bin"):
            with open(storage / name, "wb") as handle:
                for _ in range(0, size, 1 << 20):
                    handle.write(os.urandom(1 << 20))
        reference = _cast(server, "load-reference.bin", None, rps)
        sockets = Clients(server, clients)
        sockets.start()
        measured = _cast(server, "load.bin", sockets, rps)
        peak = server.peak_rss_mib()
    finally:
        if sockets is not None:
            sockets.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    connected = sockets.connected if sockets else 0
    ok = (
        measured["status"] == reference["status"] == "completed"
        and connected == clients
        and measured["have"] == clients
        and measured["errors"] == 0
        and (measured["p99_ms"] or 1e9) <= TARGET_P99_MS
        and measured["feed_lag_s"] is not None
        and measured["feed_lag_s"] <= TARGET_FEED_LAG_S
        and peak is not None
        and peak <= TARGET_RSS_MIB
    )
    return [
        {
            "bench": "load",
            "case": f"clients={clients},rps={rps:g}",
            "size_bytes": size,
            "seconds": measured["feed_lag_s"],
            "ratio": round(reference["p99_ms"] / measured["p99_ms"], 3) if measured["p99_ms"] else None,
            "peak_rss_mib": peak,
            "ok": ok,
            "p50_ms": measured["p50_ms"],
            "p99_ms": measured["p99_ms"],
            "reference_p50_ms": reference["p50_ms"],
            "reference_p99_ms": reference["p99_ms"],
            "feed_lag_s": measured["feed_lag_s"],
            "clients": clients,
            "clients_connected": connected,
            "clients_with_event": measured["have"],
            "requests": measured["requests"],
            "errors": measured["errors"] + reference["errors"],
        }
    ]
