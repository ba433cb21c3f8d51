"""What the client tests share: running `castray` as a process, files, and a proxy that stalls."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "castray_client"]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment for `castray` whose config lives under `home`, never the real user's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CASTRAY_URL", "CASTRAY_TOKEN", "CASTRAY_CONFIG", "CASTRAY_PASSWORD")
    }
    env.update({"XDG_CONFIG_HOME": str(home / "config"), "HOME": str(home), "COLUMNS": "120", **extra})
    return env


def castray(
    *args: str, env: dict[str, str], timeout: float = 180, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL
    )


def castray_json(*args: str, env: dict[str, str], timeout: float = 180) -> tuple[int, Any]:
    result = castray(*args, "--json", env=env, timeout=timeout)
    try:
        return result.returncode, json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (exit {result.returncode}):\n{result.stdout}\n{result.stderr}") from None


def said(stream: str) -> str:
    """What a person reads in the output: the words, without rich's boxes and line wrapping."""
    return " ".join(stream.translate(str.maketrans("", "", "│╭╮╰╯─")).split())


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class StallingProxy:
    """A TCP proxy to the server that passes `budget` bytes of answers per connection, then
    holds the connection open and silent: a download that stops half-way, as on a network
    that hangs. Requests pass untouched."""

    def __init__(self, upstream_port: int, budget: int) -> None:
        self.upstream_port = upstream_port
        self.budget = budget
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:  # the server behind it has stopped (its test is over)
                client.close()
                continue
            self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.budget), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, budget: int | None) -> None:
        sent = 0
        try:
            while not self.stop.is_set():
                size = 65536 if budget is None else min(65536, budget - sent)
                if size <= 0:
                    self.stop.wait()  # the stall: keep the connection, send nothing more
                    return
                data = src.recv(size)
                if not data:
                    return
                dst.sendall(data)
                sent += len(data)
        except OSError:
            return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


class FlakyProxy:
    """A TCP proxy to the server that drops its first `drops` connections without a word (a
    restarting load balancer, a flaky link), then passes everything through."""

    def __init__(self, upstream_port: int, drops: int) -> None:
        self.upstream_port = upstream_port
        self.drops = drops
        self.dropped = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.dropped < self.drops:
                self.dropped += 1
                client.recv(65536)  # the request arrives; the answer never does
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:  # the server behind it has stopped (its test is over)
                client.close()
                continue
            self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            return
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass
