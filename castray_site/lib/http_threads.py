"""Django's ASGI handler with its request threads kept, and their database connections with them.

Django runs each HTTP request's sync code (middleware, DRF views) in a thread-sensitive
context of its own, and by default asgiref makes that context a new one-thread executor: a
new thread per request, so a new database connection per request (connections belong to a
thread), opened, set up and closed again. Under `castray_bench load` that was about half of
the request threads' time: connecting, SQLite reading the schema on a fresh connection's
first query (the token lookup), closing. Here each request still gets a context and a
thread of its own, but the one-thread executors are kept and reused, so their connections
live on (CONN_MAX_AGE) like a WSGI server's worker threads.

And the middleware chain runs as a WSGI server runs it, in one call on that thread. In its
async mode Django calls each sync-only middleware's process_request and process_response
through sync_to_async: about twenty thread hops per request with ten middlewares, each a
future, a wake-up of the event loop and a context copy, paid on the loop that also relays
the `/ws` feed. None of CastRay's middlewares or views is async.

The threads are bounded: at most `REQUEST_THREADS` requests run at once and the others wait
their turn on the loop, first come first served. Without a bound, a burst beyond the kept
threads started new ones, each opening its own connection; under `castray_bench load` one
slow moment became dozens of threads (79 in 12 s) contending for the GIL with the loop
that relays the feed, every request slower, so more in flight, so more threads. Nothing in
a request thread waits on a client: the body is read on the loop before the view, and the
response is sent on the loop after; a streamed one (a file download) gives its thread to
the next request as soon as the view returned, and its chunks are read in the loop's
default executor one at a time, as the client takes them. Django reads a streamed response
with a sync iterator into memory whole under ASGI (a 512 MiB download took the server from
174 to 1,224 MiB), and daphne queues whatever it is sent without limit (reading 1 MiB at a
time raised it to 600 MiB for a client on loopback), so the next chunk is read only once
what daphne still holds for the client's socket is under `CLIENT_BUFFER`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, cast

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import FileResponse, HttpRequest, HttpResponseBase

# Requests run at once, each on a thread of its own kept for the next ones; more wait.
REQUEST_THREADS = 8

# A file response's reads, each one hop to a thread (sent as 64 KiB ASGI messages): at 64 KiB
# a 512 MiB download took 2.6 s on loopback, at 1 MiB 1.2 s as when Django read it whole.
READ_BLOCK = 1024 * 1024

# What daphne may hold for one client before the next chunk of a download is read.
CLIENT_BUFFER = 4 * READ_BLOCK
# How often a download waiting for its client looks again.
DRAIN_POLL_SECONDS = 0.005

# The current request's way to hand its thread on before it ends (a streamed response), and
# its ASGI send (daphne's tells how much it holds for the client).
_release: ContextVar[Callable[[], None] | None] = ContextVar("castray_release_thread", default=None)
_send: ContextVar[Any] = ContextVar("castray_asgi_send", default=None)


class PooledThreadsASGIHandler(ASGIHandler):
    def __init__(self, threads: int = REQUEST_THREADS) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.threads = threads
        self.started = 0  # executors made; never more than `threads`
        self.idle: list[ThreadPoolExecutor] = []
        self.waiting: deque[asyncio.Future[ThreadPoolExecutor]] = deque()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        # One request at a time per executor: taken, and handed to the next in line after.
        executor = await self.take()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.give_back(executor)

        tokens = _release.set(release), _send.set(send)
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            release()
            _release.reset(tokens[0])
            _send.reset(tokens[1])

    async def take(self) -> ThreadPoolExecutor:
        if self.idle:
            return self.idle.pop()
        if self.started < self.threads:
            self.started += 1
            return ThreadPoolExecutor(1, thread_name_prefix="castray-http")
        turn: asyncio.Future[ThreadPoolExecutor] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            return await turn
        except asyncio.CancelledError:
            # The client went away while waiting; an executor already handed over goes on.
            if turn.done() and not turn.cancelled():
                self.give_back(turn.result())
            raise

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done() and not turn.get_loop().is_closed():
                turn.set_result(executor)
                return
        self.idle.append(executor)

    async def run_get_response(self, request: HttpRequest) -> HttpResponseBase:
        """The whole middleware chain and the view in one thread-sensitive call."""
        response = await sync_to_async(self.get_response, thread_sensitive=True)(request)
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        if isinstance(response, FileResponse):
            response.block_size = READ_BLOCK
        if response.streaming and not response.is_async:  # type: ignore[attr-defined]
            # Sent for as long as the client takes: the thread goes on to the next request
            # (its response.close() later queues on it), the chunks are read one at a time.
            response.streaming_content = _chunks_off_the_loop(  # type: ignore[attr-defined]
                response.streaming_content,  # type: ignore[attr-defined]
                _send.get(),
            )
            if (release := _release.get()) is not None:
                release()
        return response


async def _chunks_off_the_loop(chunks: Iterator[bytes], send: Any) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    end = object()
    while (chunk := await loop.run_in_executor(None, next, chunks, end)) is not end:
        yield cast(bytes, chunk)
        while (held := _held_for_client(send)) is not None and held > CLIENT_BUFFER:
            await asyncio.sleep(DRAIN_POLL_SECONDS)


def _held_for_client(send: Any) -> int | None:
    """Bytes daphne's transport holds for this request's client, or None elsewhere.

    Daphne's send is `partial(Server.handle_reply, <its twisted Request>)`; the Request's
    channel has the TCP transport, whose write buffer is `dataBuffer` plus `_tempDataLen`.
    """
    request = getattr(send, "args", (None,))[0]
    transport = getattr(getattr(request, "channel", None), "transport", None)
    if transport is None or not hasattr(transport, "dataBuffer"):
        return None
    return len(transport.dataBuffer) + getattr(transport, "_tempDataLen", 0)


def get_asgi_application() -> PooledThreadsASGIHandler:
    import django

    django.setup(set_prefix=False)
    return PooledThreadsASGIHandler()
