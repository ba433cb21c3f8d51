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
import time
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async

from transfers.events import StatusUpdateMessage
from transfers.models import Transfer
from transfers.selectors import status_snapshot

# A cast's labels never change; the most the cache keeps before it starts over.
MAX_LABELS = 1000


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


class Feed:
    """The shared snapshot and the casts' labels of one event loop."""

    def __init__(self) -> None:
        self.snapshot = SharedSnapshot(lambda: status_snapshot())
        self.labels: dict[int, asyncio.Future[dict[str, str]]] = {}

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
