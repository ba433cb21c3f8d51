"""What every `/ws` client of this process shares: the status snapshot and the casts' labels.

Every `/ws` client receives the same `status_update` after a change. Built per client, 500
dashboards meant 500 snapshots per change, each a round of database queries: the server
fell seconds behind and API requests queued behind the snapshots. Here one snapshot is
built per change and handed to every client that asks for one at least as new as the
change it heard of; a client asking while a build is under way waits for that build when
the build started after its change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from transfers.events import (
    STATUS_GROUP,
    StatusUpdateMessage,
    TransferActivity,
    TransferActivityMessage,
)
from transfers.models import Target, Transfer
from transfers.selectors import status_snapshot

# A cast's labels never change; the most the cache keeps before it starts over.
MAX_LABELS = 1000
# Node and cluster events arriving within this window give one status_update.
STATUS_COALESCE_SECONDS = 0.3
# Sends of one message to the clients before the loop's other work gets a turn: at 500
# clients one message held the loop for 50-100 ms, and every request that arrived meanwhile
# waited that long.
SENDS_BETWEEN_TURNS = 50
# The relay joins the group again this often: channel layers expire group memberships.
RELAY_REJOIN_SECONDS = 3600.0

log = logging.getLogger("castray.feed")


class SharedSnapshot:
    """The latest `status_update` message, as sent, and when its build started (monotonic seconds).

    Kept as JSON text: encoded once, not once per client.
    """

    def __init__(self, build: Callable[[], dict[str, Any]]) -> None:
        self.build = database_sync_to_async(build)
        self.latest: str | None = None
        self.started = float("-inf")  # when the build of `latest` started
        self.pending: asyncio.Future[str] | None = None
        self.pending_started = float("-inf")

    async def get(self, newer_than: float) -> str:
        """A `status_update` message whose snapshot's build started after `newer_than` (time.monotonic()).

        A build started after that moment has read every change committed before it.
        """
        while True:
            if self.latest is not None and self.started >= newer_than:
                return self.latest
            if self.pending is None or self.pending.done():
                self.pending_started = time.monotonic()
                self.pending = asyncio.ensure_future(self._build(self.pending_started))
            pending, fresh = self.pending, self.pending_started >= newer_than
            # Shielded: a client that disconnects must not cancel the build others await.
            snapshot = await asyncio.shield(pending)
            if fresh:
                return snapshot
            # That build started too early for this caller: one build at a time, so the
            # callers that waited share the next one instead of each starting their own.

    async def _build(self, started: float) -> str:
        message: StatusUpdateMessage = {"type": "status_update", "data": await self.build()}
        text = json.dumps(message)
        if started > self.started:
            self.latest, self.started = text, started
        return text


class Client(Protocol):
    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None: ...


class Feed:
    """One event loop's `/ws` clients, the one member of the `status` group that relays to them,
    the shared snapshot and the casts' labels.

    Each event is received once per process and encoded once, then sent to every client: with
    a group member per client, the channel layer copied each event and the consumers decoded
    and encoded it once per client, and 500 clients kept the loop from answering requests.
    """

    def __init__(self) -> None:
        self.snapshot = SharedSnapshot(lambda: status_snapshot())
        self.labels: dict[int, asyncio.Future[dict[str, str]]] = {}
        self.clients: set[Client] = set()
        self.relay: asyncio.Task[None] | None = None
        self.statuses: dict[int, tuple[str | bool, ...]] = {}  # per cast: its status, which targets ended
        self.status_due: asyncio.Task[None] | None = None

    async def join(self, client: Client) -> None:
        self.clients.add(client)
        if self.relay is None or self.relay.done():
            layer = get_channel_layer()
            name = await layer.new_channel()
            await layer.group_add(STATUS_GROUP, name)
            self.relay = asyncio.ensure_future(self.run_relay(layer, name))

    def leave(self, client: Client) -> None:
        self.clients.discard(client)

    async def run_relay(self, layer: Any, name: str) -> None:
        while True:
            try:
                event = await asyncio.wait_for(layer.receive(name), timeout=RELAY_REJOIN_SECONDS)
            except TimeoutError:
                await layer.group_add(STATUS_GROUP, name)  # memberships expire in the layer
                continue
            try:
                await self.relay_event(event)
            except Exception:  # noqa: BLE001 - one bad event must not end the feed
                log.warning("could not relay %s", event.get("type"), exc_info=True)

    async def relay_event(self, event: dict[str, Any]) -> None:
        if event["type"] != "transfer.update":
            self.status_changed()  # node.update, cluster.update: the nodes moved
            return
        transfer_id = event["transfer"]
        labels = await self.transfer_labels(transfer_id)
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
        await self.send_all(json.dumps(message))
        # A cast that starts or ends, a target that finishes: nodes' active counts move, and
        # the dashboard shows them from the status snapshot, not from this event. A target
        # that starts receiving or verifying moves no count: no snapshot for 500 clients.
        statuses = (event["status"], *(t["status"] in Target.FINAL for t in event["targets"]))
        if self.statuses.get(transfer_id) != statuses:
            if len(self.statuses) > MAX_LABELS:
                self.statuses.clear()
            self.statuses[transfer_id] = statuses
            self.status_changed()

    def status_changed(self) -> None:
        # Several events in a burst (a worker starting its actors) give one snapshot.
        if self.status_due is None or self.status_due.done():
            self.status_due = asyncio.ensure_future(self.send_status_soon(time.monotonic()))

    async def send_status_soon(self, heard: float) -> None:
        await asyncio.sleep(STATUS_COALESCE_SECONDS)
        await self.send_all(await self.snapshot.get(heard))

    async def send_all(self, text: str) -> None:
        for n, client in enumerate(list(self.clients), 1):
            try:
                await client.send(text_data=text)
            except Exception:  # noqa: BLE001 - a client going away must not stop the others
                self.clients.discard(client)
            if n % SENDS_BETWEEN_TURNS == 0:
                await asyncio.sleep(0)  # the loop's other work (HTTP requests) takes its turn

    async def transfer_labels(self, transfer_id: int) -> dict[str, str]:
        """What a dashboard shows of a cast besides its event, read once per process, not per client."""
        if transfer_id not in self.labels:
            if len(self.labels) >= MAX_LABELS:
                self.labels.clear()
            self.labels[transfer_id] = asyncio.ensure_future(_read_labels(transfer_id))
        future = self.labels[transfer_id]
        labels = await asyncio.shield(future)
        if not labels and self.labels.get(transfer_id) is future:
            del self.labels[transfer_id]  # not committed yet: read again next time
        return labels


@database_sync_to_async
def _read_labels(transfer_id: int) -> dict[str, str]:
    row = Transfer.objects.filter(pk=transfer_id).values("file_name", "source__name", "cast_type").first()
    if row is None:
        return {}
    return {"file_name": row["file_name"], "source": row["source__name"], "cast_type": row["cast_type"]}


_current: tuple[asyncio.AbstractEventLoop, Feed] | None = None


def feed() -> Feed:
    """This event loop's feed (futures belong to one loop; tests run one loop after another)."""
    global _current
    loop = asyncio.get_running_loop()
    if _current is None or _current[0] is not loop:
        _current = (loop, Feed())
    return _current[1]
