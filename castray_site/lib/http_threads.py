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
response is sent on the loop after.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import FileResponse, HttpRequest, HttpResponseBase

# Requests run at once, each on a thread of its own kept for the next ones; more wait.
REQUEST_THREADS = 8


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
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.give_back(executor)

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
            response.block_size = self.chunk_size
        return response


def get_asgi_application() -> PooledThreadsASGIHandler:
    import django

    django.setup(set_prefix=False)
    return PooledThreadsASGIHandler()
