"""The live-event contract: every event CastRay publishes, the one place that builds each
payload from its row, and the one helper that sends them.

The database is the truth; these only notify. Events go out after the transaction commits,
to channel-layer groups `status`, `transfer-<id>` and `node-<id>`. They are throttled here,
per transfer and group:

- `transfer-<id>` (a transfer's page): progress-only events closer together than
  `MIN_PROGRESS_INTERVAL` are held back; an event that changes anything but bytes, rates
  and samples (a status, a parent, the tree, the checksum) always goes out, so the page
  never misses a state, only intermediate bytes.
- `status` (every `/ws` dashboard): at most one event per transfer per `FEED_INTERVAL`,
  whatever it changes, except the cast's end (completed, partial, failed, cancelled),
  which goes out at once. A dashboard may skip a state that lasted less than the
  interval (planned, then running), never the latest one.

The latest event held back goes out when its interval ends, unless a newer one went out
first, so the last state and bytes are never missed.

A `transfer.update` carries what the transfer page shows, so the page fills in as the cast
runs: the size and SHA-256 once the source answered, the tree once the worker planned it,
each target's parent, attempts, bytes and latest rate sample (transfers/samples.py).

What clients receive (transfers/consumers.py):

- `/ws` (dashboards; the earlier CastRay's feed). On connect: `{"type": "status_update",
  "data": <status snapshot>}`. Then `transfer.update` -> `{"type": "transfer_activity",
  "data": TransferActivity}`, and when a cast started or ended or a target ended, a fresh
  `status_update` (nodes' active counts moved); `node.update` and `cluster.update` -> a fresh
  `status_update`. Several in a burst give one `status_update`.
- `/ws/transfers/<id>` (transfer page). On connect the transfer's current `transfer.update`;
  then its `transfer.update` events as they are.
- `/ws/nodes/<id>` (node page). On connect the node's current `node.update`; then its
  `node.update` events as they are.

`/ws` also repeats `status_update` every `STATUS_REFRESH_SECONDS` (the old feed was periodic).
The status snapshot has the shape of the old `GET /api/status` (transfers/selectors.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

if TYPE_CHECKING:
    # Types only: the builders read attributes, and models import services that import this.
    from clusters.models import Cluster
    from nodes.models import Node
    from transfers.models import Target, Transfer

log = logging.getLogger("castray.events")

STATUS_GROUP = "status"
# Progress-only events for one transfer closer together than this are held back (per process):
# only the latest goes out, when the interval ends.
MIN_PROGRESS_INTERVAL = 0.25
# Any event but a cast's end, for the `status` group. Every `/ws` dashboard gets each of its
# events: at 500 dashboards one event is 500 WebSocket sends on the server's loop, some
# 50-100 ms of it on two cores, and the five state changes of a cast's first half second
# (claimed, sized, planned, each target receiving) held API requests up for that long.
FEED_INTERVAL = 1.0
# Samples per target an event carries; the page adds the ones it has not seen.
RECENT_SAMPLES = 3


def transfer_group(transfer_id: int) -> str:
    return f"transfer-{transfer_id}"


def node_group(node_id: int) -> str:
    return f"node-{node_id}"


class TargetState(TypedDict):
    id: int
    node: str
    status: str
    bytes_done: int  # held, chunks resumed from an earlier cast included
    bytes_received: int  # crossed the network to it
    rate: float | None
    error: str
    parent: str | None  # the node it receives from, once the tree is planned
    attempts: int
    # Its latest rate-chart samples, [unix seconds, bytes received] (transfers/samples.py):
    # a few, so that an attempt's start and first report arrive together.
    samples: list[list[float]]
    files_done: int  # directory casts: files verified or already held


class TransferEvent(TypedDict):
    type: Literal["transfer.update"]
    transfer: int
    status: str
    size: int | None
    sha256: str  # "" until the source answered
    tree: dict[str, Any]  # {} until the worker planned it
    attempts: int
    source_bytes_sent: int  # as the worker recorded them (at the end of each round)
    relay_bytes_sent: int
    error: str
    files: int | None  # directory casts: regular files in the tree
    targets: list[TargetState]


class NodeEvent(TypedDict):
    type: Literal["node.update"]
    node: int
    name: str
    status: str
    enabled: bool


class ClusterEvent(TypedDict):
    type: Literal["cluster.update"]
    cluster: int
    status: str
    last_error: str


Event = TransferEvent | NodeEvent | ClusterEvent


# --- payloads, built from the rows (services publish these; consumers send them on connect) ---
def target_states(targets: Iterable[Target]) -> list[TargetState]:
    """The targets as events carry them (select or prefetch their node and parent)."""
    return [
        {
            "id": t.pk,
            "node": t.node.name,
            "status": t.status,
            "bytes_done": t.bytes_done,
            "bytes_received": t.bytes_received,
            "rate": t.rate,
            "error": t.error,
            "parent": t.parent.name if t.parent_id else None,
            "attempts": t.attempts,
            "samples": t.samples[-RECENT_SAMPLES:],
            "files_done": t.files_done,
        }
        for t in targets
    ]


def transfer_event(transfer: Transfer) -> TransferEvent:
    """The `transfer.update` event for a transfer's current row: what its page shows."""
    return {
        "type": "transfer.update",
        "transfer": transfer.pk,
        "status": transfer.status,
        "size": transfer.size,
        "sha256": transfer.sha256,
        "tree": transfer.tree,
        "attempts": transfer.attempts,
        "source_bytes_sent": transfer.source_bytes_sent,
        "relay_bytes_sent": transfer.relay_bytes_sent,
        "error": transfer.error,
        "files": transfer.files,
        "targets": target_states(transfer.targets.select_related("node", "parent")),
    }


def node_event(node: Node, status: str | None = None) -> NodeEvent:
    """The `node.update` event; `status` overrides the row's (a deleted node has no row to read)."""
    return {
        "type": "node.update",
        "node": node.pk,
        "name": node.name,
        "status": status or node.status,
        "enabled": node.enabled,
    }


def cluster_event(cluster: Cluster) -> ClusterEvent:
    return {"type": "cluster.update", "cluster": cluster.pk, "status": cluster.status, "last_error": cluster.last_error}


# --- what `/ws` sends to clients ---------------------------------------------------------------
class TransferActivity(TypedDict):
    """`data` of a `transfer_activity` message: the transfer event plus what a dashboard shows."""

    event: Literal["transfer.update"]
    transfer: int
    status: str
    size: int | None
    error: str
    files: NotRequired[int | None]
    targets: list[TargetState]
    file_name: NotRequired[str]
    source: NotRequired[str]
    cast_type: NotRequired[str]


class StatusUpdateMessage(TypedDict):
    type: Literal["status_update"]
    data: dict[str, Any]


class TransferActivityMessage(TypedDict):
    type: Literal["transfer_activity"]
    data: TransferActivity


def _shape(event: TransferEvent) -> str:
    """Everything an event says but bytes, rates and samples: a change here is never dropped."""
    targets = [(t["status"], t.get("parent"), t.get("attempts"), t["error"]) for t in event["targets"]]
    rest = [event.get(k) for k in ("sha256", "tree", "attempts", "source_bytes_sent", "relay_bytes_sent")]
    return json.dumps([event["status"], event["size"], event["error"], rest, targets], sort_keys=True)


class _Throttle:
    """Per group and transfer: when its last event went out, what it said besides progress, and
    the latest event held back since.

    A held event goes out when its interval ends unless a newer one went out first, so the
    last state before a pause is never lost: the page shows it during the pause, not the
    bytes of a quarter of a second earlier.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: dict[tuple[str, int], tuple[float, str]] = {}
        self.held: dict[tuple[str, int], TransferEvent] = {}

    def allow(self, event: TransferEvent, group: str) -> bool:
        """True: send `event` now. False: it is held, and sent when the interval ends."""
        shape = _shape(event)
        now = time.monotonic()
        key = (group, event["transfer"])
        interval = FEED_INTERVAL if group == STATUS_GROUP else MIN_PROGRESS_INTERVAL
        with self.lock:
            last = self.sent.get(key)
            if last is not None and now - last[0] < interval and self._may_wait(event, group, last[1], shape):
                if key not in self.held:
                    timer = threading.Timer(last[0] + interval - now, self._release, (key,))
                    timer.daemon = True
                    timer.start()
                self.held[key] = event
                return False
            if len(self.sent) > 10_000:
                self.sent.clear()  # bounded: forgetting only lets one extra event through
            self.sent[key] = (now, shape)
            self.held.pop(key, None)  # this one is newer
            return True

    @staticmethod
    def _may_wait(event: TransferEvent, group: str, last_shape: str, shape: str) -> bool:
        if group == STATUS_GROUP:
            from transfers.models import Transfer  # here: models import this module

            return event["status"] not in Transfer.FINAL  # a dashboard: anything but the end
        return shape == last_shape  # a transfer's page: progress only

    def _release(self, key: tuple[str, int]) -> None:
        with self.lock:
            event = self.held.pop(key, None)
            if event is not None:
                self.sent[key] = (time.monotonic(), _shape(event))
        if event is not None:
            _send(key[0], event)


_throttle = _Throttle()


def _send(group: str, event: Event) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, dict(event))
    except Exception:  # noqa: BLE001 - a notification must never break a write
        log.warning("could not publish %s to %s", event["type"], group, exc_info=True)


def publish(groups: list[str], event: Event) -> None:
    """Send `event` to `groups` once the current transaction commits (at once outside one)."""

    def send() -> None:
        for group in groups:
            if event["type"] == "transfer.update" and not _throttle.allow(event, group):
                continue  # held: goes out when the group's interval ends, unless a newer one did
            _send(group, event)

    transaction.on_commit(send)


def publish_transfer(transfer: Transfer) -> None:
    publish([STATUS_GROUP, transfer_group(transfer.pk)], transfer_event(transfer))


def publish_node(node: Node, status: str | None = None) -> None:
    publish([STATUS_GROUP, node_group(node.pk)], node_event(node, status))


def publish_cluster(cluster: Cluster) -> None:
    publish([STATUS_GROUP], cluster_event(cluster))
