"""WebSocket consumers. Thin: authenticate, join groups, relay events from transfers.events."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from transfers.events import STATUS_GROUP


class StatusConsumer(AsyncJsonWebsocketConsumer):
    """`/ws`: cluster, node and transfer events for dashboards. Authenticated users only."""

    groups: list[str] = []

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(STATUS_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(STATUS_GROUP, self.channel_name)

    async def transfer_update(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    async def node_update(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    async def cluster_update(self, event: dict[str, Any]) -> None:
        await self.send_json(event)
