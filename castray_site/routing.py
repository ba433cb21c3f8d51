"""WebSocket routes. What each sends is documented in transfers/events.py."""

from __future__ import annotations

from django.urls import path

from transfers.consumers import NodeConsumer, StatusConsumer, TransferConsumer

websocket_urlpatterns = [
    path("ws", StatusConsumer.as_asgi()),
    path("ws/transfers/<int:transfer_id>", TransferConsumer.as_asgi()),
    path("ws/nodes/<int:node_id>", NodeConsumer.as_asgi()),
]
