from __future__ import annotations

from django.urls import path

from transfers.consumers import StatusConsumer

websocket_urlpatterns = [
    path("ws", StatusConsumer.as_asgi()),
]
