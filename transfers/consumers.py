"""WebSocket consumers. Thin: authenticate, join groups, relay events from transfers.events.

The mapping from channel-layer events to what clients receive is documented in
transfers/events.py. Every socket starts with the current state read from the database, so
a client that reconnects is up to date at once.
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
    STATUS_GROUP,
    TransferActivity,
    TransferActivityMessage,
    node_event,
    node_group,
    transfer_event,
    transfer_group,
)
from transfers.feed import feed
from transfers.models import Transfer

UNAUTHENTICATED = 4401
NOT_FOUND = 4404
# Node and cluster events arriving within this window give one status_update.
STATUS_COALESCE_SECONDS = 0.3
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
        self.statuses: dict[int, tuple[str, ...]] = {}  # per cast: its status and its targets'
        self.tasks: list[asyncio.Task[None]] = []
        self.status_due: asyncio.Task[None] | None = None
        await self.accept_and_join(STATUS_GROUP)
        # Built after joining: a change committed later comes as an event.
        await self.send_status(time.monotonic())
        self.tasks.append(asyncio.ensure_future(self.refresh_periodically()))

    async def disconnect(self, code: int) -> None:
        for task in [*getattr(self, "tasks", []), getattr(self, "status_due", None)]:
            if task is not None:
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

    def status_changed(self) -> None:
        # Several node events in a burst (a worker starting its actors) give one snapshot.
        if self.status_due is None or self.status_due.done():
            self.status_due = asyncio.ensure_future(self.send_status_soon(time.monotonic()))

    async def send_status_soon(self, heard: float) -> None:
        # Every client hears of a change within this window, so the first to wake builds
        # the snapshot that all of them send.
        await asyncio.sleep(STATUS_COALESCE_SECONDS)
        await self.send_status(heard)

    async def transfer_update(self, event: dict[str, Any]) -> None:
        transfer_id = event["transfer"]
        labels = await feed().transfer_labels(transfer_id)
        data: TransferActivity = {
            "event": "transfer.update",
            "transfer": transfer_id,
            "status": event["status"],
            "size": event["size"],
            "error": event["error"],
            "files": event.get("files"),
            "targets": event["targets"],
            **labels,  # type: ignore[typeddict-item]
        }
        message: TransferActivityMessage = {"type": "transfer_activity", "data": data}
        await self.send_json(message)
        # A cast that starts, a target that finishes: nodes' active counts move, and the
        # dashboard shows them from the status snapshot, not from this event.
        statuses = (event["status"], *(t["status"] for t in event["targets"]))
        if self.statuses.get(transfer_id) != statuses:
            if len(self.statuses) > 1000:
                self.statuses.clear()
            self.statuses[transfer_id] = statuses
            self.status_changed()

    async def node_update(self, event: dict[str, Any]) -> None:
        self.status_changed()

    async def cluster_update(self, event: dict[str, Any]) -> None:
        self.status_changed()


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
