"""WebSocket consumers. Thin: authenticate, join groups, relay events from transfers.events.

The mapping from channel-layer events to what clients receive is documented in
transfers/events.py. Every socket starts with the current state read from the database, so
a client that reconnects is up to date at once. `/ws` clients do not join the `status` group
each: one relay per process does and sends them every event (transfers/feed.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from castray_site.ws_auth import chosen_subprotocol
from nodes.models import Node
from transfers.events import (
    node_event,
    node_group,
    transfer_event,
    transfer_group,
)
from transfers.feed import feed
from transfers.models import Transfer

UNAUTHENTICATED = 4401
NOT_FOUND = 4404
# The old feed pushed its status periodically; dashboards written for it expect that.
STATUS_REFRESH_SECONDS = 10.0


@database_sync_to_async
def _transfer_state(transfer_id: int) -> dict[str, Any] | None:
    transfer = Transfer.objects.filter(pk=transfer_id).first()
    return dict(transfer_event(transfer)) if transfer else None


@database_sync_to_async
def _node_state(node_id: int) -> dict[str, Any] | None:
    node = Node.objects.filter(pk=node_id).first()
    return dict(node_event(node)) if node else None


class _Authenticated(AsyncJsonWebsocketConsumer):
    async def refuse(self, code: int) -> None:
        """Accept, then close with `code`: a close before accepting reaches the client as an
        HTTP 403 on the handshake, and the documented 4401/4404 would never arrive."""
        await self.accept(subprotocol=chosen_subprotocol(self.scope))
        await self.close(code=code)

    async def authenticated(self) -> bool:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.refuse(UNAUTHENTICATED)
            return False
        return True

    async def accept_and_join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined = group
        await self.accept(subprotocol=chosen_subprotocol(self.scope))

    async def disconnect(self, code: int) -> None:
        joined = getattr(self, "joined", None)
        if joined:
            await self.channel_layer.group_discard(joined, self.channel_name)


class StatusConsumer(_Authenticated):
    """`/ws`: the cluster-wide feed for dashboards, in the earlier CastRay's message names."""

    async def connect(self) -> None:
        if not await self.authenticated():
            return
        self.tasks: list[asyncio.Task[None]] = []
        await self.accept(subprotocol=chosen_subprotocol(self.scope))
        await feed().join(self)
        # Built after joining: a change committed later comes through the relay.
        await self.send_status(time.monotonic())
        self.tasks.append(asyncio.ensure_future(self.refresh_periodically()))

    async def disconnect(self, code: int) -> None:
        feed().leave(self)
        for task in getattr(self, "tasks", []):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().disconnect(code)

    async def send_status(self, newer_than: float) -> None:
        """Send a snapshot built after `newer_than`, the one every client shares (transfers/feed.py)."""
        await self.send(text_data=await feed().snapshot.get(newer_than))

    async def refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(STATUS_REFRESH_SECONDS)
            # Any snapshot from this period will do: the clients' timers share a few builds.
            await self.send_status(time.monotonic() - STATUS_REFRESH_SECONDS / 2)

    # Events reach this client through the process's relay (transfers/feed.py), which
    # sends each one encoded once to every client.


class TransferConsumer(_Authenticated):
    """`/ws/transfers/<id>`: one cast's `transfer.update` events for its page."""

    async def connect(self) -> None:
        if not await self.authenticated():
            return
        transfer_id = int(self.scope["url_route"]["kwargs"]["transfer_id"])
        state = await _transfer_state(transfer_id)
        if state is None:
            await self.refuse(NOT_FOUND)
            return
        await self.accept_and_join(transfer_group(transfer_id))
        await self.send_json(state)

    async def transfer_update(self, event: dict[str, Any]) -> None:
        await self.send_json(event)


class NodeConsumer(_Authenticated):
    """`/ws/nodes/<id>`: one node's `node.update` events for its page."""

    async def connect(self) -> None:
        if not await self.authenticated():
            return
        node_id = int(self.scope["url_route"]["kwargs"]["node_id"])
        state = await _node_state(node_id)
        if state is None:
            await self.refuse(NOT_FOUND)
            return
        await self.accept_and_join(node_group(node_id))
        await self.send_json(state)

    async def node_update(self, event: dict[str, Any]) -> None:
        await self.send_json(event)
