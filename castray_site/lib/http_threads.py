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
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import FileResponse, HttpRequest, HttpResponseBase

# Idle request threads kept for the next requests; a burst beyond them gets threads that end
# after their request, as before.
KEPT_THREADS = 8


class PooledThreadsASGIHandler(ASGIHandler):
    def __init__(self, kept: int = KEPT_THREADS) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.kept = kept
        self.idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        # One request at a time per executor: taken off the idle list, put back after.
        executor = self.idle.pop() if self.idle else ThreadPoolExecutor(1, thread_name_prefix="castray-http")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            if len(self.idle) < self.kept:
                self.idle.append(executor)
            else:
                executor.shutdown(wait=False)

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
