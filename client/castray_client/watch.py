"""Following one cast live: `/ws/transfers/<id>` when it opens, polling the API when it does not."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from castray_client.transport import WaitTimeout

if TYPE_CHECKING:
    from castray_client.client import Client
    from castray_client.models import Cast

# Events only notify (the database is the truth), and progress events are throttled; with no
# event for this long the cast is read again, so a missed event never stalls a watcher.
QUIET_REFRESH = 5.0
SUBPROTOCOL = "castray.v1"
TOKEN_PREFIX = "castray.token."


def ws_url(client: Client, cast_id: int) -> str:
    base = client.url
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return f"{base}/ws/transfers/{int(cast_id)}"


class _Clock:
    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def left(self, cap: float) -> float:
        if self.deadline is None:
            return cap
        return max(0.0, min(cap, self.deadline - time.monotonic()))

    @property
    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def _timeout_error(cast: Cast, clock: _Clock) -> WaitTimeout:
    return WaitTimeout(f"cast #{cast.id} is still {cast.status} after {clock.timeout:g} s; it goes on on the server")


def watch_cast(client: Client, cast: Cast, *, timeout: float | None, poll_interval: float) -> Iterator[Cast]:
    clock = _Clock(timeout)
    current = cast
    yield current
    if current.final:
        return
    try:
        for event in _over_websocket(client, current, clock):
            current = event
            yield current
    except _SocketUnavailable:
        pass  # a proxy without WebSockets, an old server: the API says the same, more slowly
    if current.final:
        return
    while True:
        if clock.expired:
            raise _timeout_error(current, clock)
        time.sleep(clock.left(poll_interval))
        fresh = client.get_cast(current.id)
        if fresh != current:
            current = fresh
            yield current
        if current.final:
            return


class _SocketUnavailable(Exception):
    pass


def _over_websocket(client: Client, cast: Cast, clock: _Clock) -> Iterator[Cast]:
    """Yield the cast as its events arrive, until final; _SocketUnavailable to fall back to polling."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    protocols: list[Any] = [SUBPROTOCOL]
    if client.token:
        protocols.append(TOKEN_PREFIX + client.token)
    try:
        socket = connect(
            ws_url(client, cast.id),
            subprotocols=protocols,
            open_timeout=max(1.0, clock.left(10.0)),
            close_timeout=2,
            user_agent_header=client.http.headers.get("User-Agent"),
        )
    except Exception as exc:  # noqa: BLE001 - refused, no upgrade, DNS, TLS: all mean "poll instead"
        raise _SocketUnavailable(str(exc)) from exc
    current = cast
    with socket:
        while True:
            if clock.expired:
                raise _timeout_error(current, clock)
            try:
                raw = socket.recv(timeout=clock.left(QUIET_REFRESH) or 0.01)
            except TimeoutError:
                fresh = client.get_cast(current.id)
            except ConnectionClosed as exc:
                raise _SocketUnavailable(str(exc)) from exc
            else:
                event = json.loads(raw)
                if event.get("type") != "transfer.update":
                    continue
                fresh = current.with_event(event)
                if fresh.final:
                    # The event carries progress only; the API has the SHA-256, duration and bytes.
                    fresh = client.get_cast(current.id)
            if fresh != current:
                current = fresh
                yield current
            if current.final:
                return
