"""The channel layer of the embedded default: Channels' in-memory layer, safe to send to from
another thread.

In the default one-process mode the worker runs in a thread of the server and publishes its
events from there (`async_to_sync` gives that thread an event loop of its own), and held-back
progress is sent from a timer thread (transfers/events.py). Channels' in-memory layer puts
such a message into an `asyncio.Queue` that the server's loop waits on, from the wrong
thread: the waiting consumer is marked ready but its loop is not woken, so the event reaches
the page only when something else wakes the loop (the next request, a timeout). Here a send
from another loop is handed to the receiving loop with `call_soon_threadsafe`.

With Redis (`REDIS_URL`) this layer is not used: Redis carries events between processes.
"""

from __future__ import annotations

import asyncio
import logging
from copy import deepcopy
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

log = logging.getLogger("castray.events")

# Channels whose receiving loop is remembered; beyond this, entries of closed loops and of
# channels in no group are forgotten.
MAX_REMEMBERED = 10_000


class InProcessChannelLayer(InMemoryChannelLayer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loops: dict[str, asyncio.AbstractEventLoop] = {}  # channel -> the loop receiving it

    async def receive(self, channel: str) -> dict[str, Any]:
        if len(self.loops) > MAX_REMEMBERED:
            self._forget_stale()
        self.loops[channel] = asyncio.get_running_loop()
        return await super().receive(channel)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        loop = self.loops.get(channel)
        if loop is None or loop is asyncio.get_running_loop():
            await super().send(channel, message)
            return
        if loop.is_closed():
            self.loops.pop(channel, None)
            await super().send(channel, message)
            return

        copy = deepcopy(message)  # now, as the layer does: the sender may reuse its dict

        async def deliver() -> None:
            try:
                await InMemoryChannelLayer.send(self, channel, copy)
            except ChannelFull:
                log.warning("channel %s is full: an event for it was dropped", channel)

        asyncio.run_coroutine_threadsafe(deliver(), loop)

    async def group_discard(self, group: str, channel: str) -> None:
        await super().group_discard(group, channel)
        if not any(channel in members for members in self.groups.values()):
            self.loops.pop(channel, None)

    async def flush(self) -> None:
        await super().flush()
        self.loops = {}

    def _forget_stale(self) -> None:
        grouped = {channel for members in self.groups.values() for channel in members}
        for channel, loop in list(self.loops.items()):
            if loop.is_closed() or (channel not in grouped and channel not in self.channels):
                self.loops.pop(channel, None)
