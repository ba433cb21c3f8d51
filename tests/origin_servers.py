"""Origins for the tests: an HTTP server on loopback with a request log and failure modes,
and moto's standalone S3 server."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Logged:
    method: str
    path: str
    range: str


@dataclass
class OriginState:
    """What the server serves (path -> bytes) and how it misbehaves."""

    files: dict[str, bytes] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)
    drop_first_get: bool = False  # the first full GET sends half the body, then closes
    after_drop: Callable[[OriginState, str], None] | None = None  # called with the path once it dropped
    stall: threading.Event = field(default_factory=threading.Event)  # set: requests to /slow answer
    etags: dict[str, str] = field(default_factory=dict)

    def put(self, path: str, data: bytes) -> None:
        self.files[path] = data
        self.etags[path] = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'

    def gets(self, path: str) -> list[Logged]:
        return [r for r in self.log if r.method == "GET" and r.path == path]


def _handler(state: OriginState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def _serve(self, body: bool) -> None:
            state.log.append(Logged(self.command, self.path, self.headers.get("Range", "")))
            if self.path.startswith("/slow"):
                state.stall.wait(60)
                return
            data = state.files.get(self.path.split("?")[0])
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            etag = state.etags[self.path.split("?")[0]]
            start = 0
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes=") and self.headers.get("If-Range", etag) == etag:
                start = int(wanted[6:].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", "Mon, 30 Nov 2026 00:00:00 GMT")
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if not body:
                return
            if state.drop_first_get and not start and len(state.gets(self.path)) == 1:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                if state.after_drop is not None:
                    state.after_drop(state, self.path)  # e.g. the object changes before the resume
                return
            self.wfile.write(data[start:])

        def do_GET(self) -> None:
            self._serve(True)

        def do_HEAD(self) -> None:
            self._serve(False)

    return Handler


@contextmanager
def http_origin() -> Iterator[tuple[str, OriginState]]:
    """A server on 127.0.0.1: (base URL, its state)."""
    state = OriginState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        state.stall.set()
        server.shutdown()
        server.server_close()


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's standalone S3 server on loopback; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:  # wait until it accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            threading.Event().wait(0.05)
    try:
        yield endpoint
    finally:
        server.stop()
