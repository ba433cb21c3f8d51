"""The embedded default's channel layer: an event sent from another thread wakes the loop that
waits for it at once (the in-process worker and held-back progress send from other threads)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import async_to_sync

from castray_site.channel_layer import InProcessChannelLayer

pytestmark = pytest.mark.asyncio


def send_later(layer: InProcessChannelLayer, group: str, message: dict) -> threading.Thread:
    def run() -> None:
        time.sleep(0.2)  # while the receiver waits
        async_to_sync(layer.group_send)(group, message)  # a loop of this thread's own

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def test_a_send_from_another_thread_wakes_the_receiver() -> None:
    layer = InProcessChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("status", channel)
    sent = {"type": "transfer.update", "transfer": 1}
    thread = send_later(layer, "status", sent)
    # Nothing else wakes this loop: with a send that only marks the waiter ready from the
    # other thread, the loop sleeps until wait_for's timer fires, 20 s later.
    started = time.monotonic()
    received = await asyncio.wait_for(layer.receive(channel), timeout=20)
    assert time.monotonic() - started < 10
    assert received == sent and received is not sent
    thread.join()


async def test_a_send_within_the_loop_and_forgetting_a_channel() -> None:
    layer = InProcessChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("status", channel)
    await layer.group_send("status", {"type": "a"})
    assert await layer.receive(channel) == {"type": "a"}
    assert channel in layer.loops
    await layer.group_discard("status", channel)
    assert channel not in layer.loops
