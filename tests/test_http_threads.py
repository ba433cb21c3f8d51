"""The request threads of castray_site/lib/http_threads.py: at most `threads` requests run at
once, the others wait their turn first come first served, and nothing is lost to a client
that leaves while waiting."""

from __future__ import annotations

import asyncio
import threading

import pytest

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
