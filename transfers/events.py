"""The live-event contract: every event CastRay publishes, and the one helper that sends them.

The database is the truth; these only notify. Events go out after the transaction commits,
to channel-layer groups `status`, `transfer-<id>` and `node-<id>`. A client that reconnects
refetches state over HTTP.
"""

from __future__ import annotations

import logging
from typing import Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger("castray.events")

STATUS_GROUP = "status"


def transfer_group(transfer_id: int) -> str:
    return f"transfer-{transfer_id}"


def node_group(node_id: int) -> str:
    return f"node-{node_id}"


class TargetState(TypedDict):
    id: int
    node: str
    status: str
    bytes_done: int
    rate: float | None
    error: str


class TransferEvent(TypedDict):
    type: Literal["transfer.update"]
    transfer: int
    status: str
    size: int | None
    error: str
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


def publish(groups: list[str], event: Event) -> None:
    """Send `event` to `groups` once the current transaction commits (at once outside one)."""

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        for group in groups:
            try:
                async_to_sync(layer.group_send)(group, dict(event))
            except Exception:  # noqa: BLE001 - a notification must never break a write
                log.warning("could not publish %s to %s", event["type"], group, exc_info=True)

    transaction.on_commit(send)
