"""The request threads of castray_site/lib/http_threads.py: at most `threads` requests run at
once, the others wait their turn first come first served, and nothing is lost to a client
that leaves while waiting."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.http import StreamingHttpResponse

from castray_site.lib import http_threads
from castray_site.lib.http_threads import PooledThreadsASGIHandler

pytestmark = pytest.mark.asyncio


async def test_no_more_threads_than_the_bound_and_waiters_served_in_order() -> None:
    handler = PooledThreadsASGIHandler(threads=2)
    first, second = await handler.take(), await handler.take()
    assert first is not second
    waiting = [asyncio.ensure_future(handler.take()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiting)  # a third request waits instead of a new thread
    handler.give_back(second)
    handler.give_back(first)
    assert await waiting[0] is second and await waiting[1] is first
    assert not waiting[2].done()
    handler.give_back(await waiting[0])
    assert await waiting[2] is second
    assert handler.started == 2


async def test_a_request_that_leaves_while_waiting_loses_no_thread() -> None:
    handler = PooledThreadsASGIHandler(threads=1)
    only = await handler.take()
    gone = asyncio.ensure_future(handler.take())
    await asyncio.sleep(0)
    gone.cancel()
    handler.give_back(only)
    assert handler.idle == [only]
    assert await handler.take() is only


async def test_requests_run_in_parallel_up_to_the_bound() -> None:
    handler = PooledThreadsASGIHandler(threads=3)
    executors = [await handler.take() for _ in range(3)]
    # Each executor is one thread of its own: three blocking calls run at once.
    barrier = threading.Barrier(3, timeout=10)
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(e, barrier.wait) for e in executors))
    for e in executors:
        handler.give_back(e)


def _get(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


async def test_a_streamed_response_is_read_as_sent_and_frees_its_thread() -> None:
    # One thread: while a download is being sent, the next request must still get it.
    handler = PooledThreadsASGIHandler(threads=1)
    gate, produced = threading.Event(), []

    def chunks() -> Iterator[bytes]:
        produced.append(1)
        yield b"a" * 10
        gate.wait(30)  # the client has not read on yet
        produced.append(2)
        yield b"b" * 10

    handler.get_response = lambda request: StreamingHttpResponse(chunks())  # type: ignore[method-assign]
    download = ApplicationCommunicator(handler, _get("/download"))
    await download.send_input({"type": "http.request", "body": b"", "more_body": False})
    assert (await download.receive_output(timeout=10))["status"] == 200
    # Django would read the whole iterator into a list first: the gate would hold it there.
    first = await download.receive_output(timeout=10)
    assert (first["body"], produced) == (b"a" * 10, [1])
    other = await asyncio.wait_for(handler.take(), timeout=10)
    handler.give_back(other)
    gate.set()
    rest = b""
    while (message := await download.receive_output(timeout=10)).get("more_body"):
        rest += message["body"]
    assert rest + message.get("body", b"") == b"b" * 10 and produced == [1, 2]
    await download.wait(timeout=10)


async def test_a_download_reads_on_only_as_the_client_takes_what_daphne_holds() -> None:
    # Daphne's send is partial(handle_reply, request); the request's channel has the transport.
    transport = SimpleNamespace(dataBuffer=b"", _tempDataLen=0)
    send = functools.partial(print, SimpleNamespace(channel=SimpleNamespace(transport=transport)))
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        for n in range(3):
            read.append(n)
            yield bytes(10)

    stream = http_threads._chunks_off_the_loop(chunks(), send)
    assert await stream.__anext__() == bytes(10)
    transport._tempDataLen = http_threads.CLIENT_BUFFER + 1  # the client is not reading
    second = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(20 * http_threads.DRAIN_POLL_SECONDS)
    assert not second.done() and read == [0]
    transport._tempDataLen = 0  # it read
    assert await asyncio.wait_for(second, timeout=10) == bytes(10)
    assert [c async for c in stream] == [bytes(10)] and read == [0, 1, 2]
